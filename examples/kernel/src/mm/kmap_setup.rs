//! Boot step 7: the kmap pools over the contiguous window.
//!
//! Demonstrates `kmap::PersistentPool` (refcounted slots below the fixmap,
//! flushing at wrap through the chosen policy), `kmap::LocalSlots` (per-CPU
//! LIFO slots in the fixmap, with guard slots), `kmap::DirectMap` (lowmem
//! needs no slot), `kmap::KmapTask` (the main task's token, which makes the
//! two-kmaps deadlock a compile error), `kmap::HighmemTables` (page tables
//! in highmem for the mapper), `paging_core::cpu::NativeTlb` as the TLB and
//! `paging_core::DirectVirt` for kernel virtual access.

use core::sync::atomic::{AtomicU32, Ordering};
use fixmap::ContiguousWindow;

use kmap::{DirectMap, HighmemTables, KmapTask, WaitHook};
use paging_core::cpu::NativeTlb;
use paging_core::{DirectVirt, NativeHooks, VirtAddr};

use crate::arch::mode::Mode;
use crate::base::config::CPUS;
use crate::base::error::Error;
use crate::mm::direct_map::DirectMapAccess;
use crate::mm::early_fixmap::KernelFixmapT;
use crate::mm::kmap_policy::KernelPolicy;
use crate::mm::layout::{
    KMAP_LOCAL_DEPTH, KMAP_LOCAL_GUARDS, KMAP_POOL_SLOTS, KernelFixmap, Layout, PAGE_OFFSET,
    PKMAP_BASE,
};
use crate::mm::shootdown::{KernelTlb, SHOOTDOWN};
use crate::{failure, println};

/// This kernel's kmap types, named once: every pool and local-slot set
/// below is one short line.
pub enum KernelKmap {}

impl kmap::Platform for KernelKmap {
    type Mode = Mode;
    type Access = DirectMapAccess;
    type Tlb = KernelTlb;
    type Hooks = NativeHooks;
    type Fixmap = KernelFixmap;
}

/// The local (atomic) kmap slots of every CPU. Not `kmap::Local`: their
/// flushes stay on this CPU (`NativeTlb`), since no other CPU uses a
/// CPU's local slots; the pool's go to every CPU ([`KernelTlb`]).
pub type KernelLocalSlots = kmap::LocalSlots<
    'static,
    KernelFixmap,
    Mode,
    DirectMapAccess,
    NativeHooks,
    NativeTlb,
    KMAP_LOCAL_DEPTH,
    CPUS,
>;

/// The kernel's persistent kmap pool.
pub type KernelPool = kmap::Pool<KernelKmap, KMAP_POOL_SLOTS, KernelPolicy, KernelWait>;

/// How a task waits for pool capacity and for the pool's lock: spinning,
/// and answering TLB shootdowns meanwhile (`WaitHook::relax`), so a CPU
/// spinning with interrupts off (in an interrupt handler) never holds up a
/// wrap's shootdown that another CPU makes under the pool's lock.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KernelWait;

impl WaitHook for KernelWait {
    fn wait(&self, epoch: &AtomicU32, seen: u32) {
        while epoch.load(Ordering::Acquire) == seen {
            crate::base::spin::spin("a free kmap pool slot", epoch as *const AtomicU32 as usize);
            answer_shootdowns();
        }
        crate::base::spin::done();
    }

    fn wake(&self, _epoch: &AtomicU32) {
        crate::base::spin::progress();
    }

    fn relax(&self) {
        crate::base::spin::spin("the kmap pool's lock", 0);
        answer_shootdowns();
    }
}

/// Services this CPU's shootdown mailbox, then pauses: one round of a kmap
/// wait.
fn answer_shootdowns() {
    crate::arch::cpu::without_interrupts(|| SHOOTDOWN.service(&NativeTlb));
    core::hint::spin_loop();
}

/// Page-table access that reaches highmem tables through local kmaps.
pub type KernelHighmemTables = HighmemTables<'static, KernelLocalSlots, DirectVirt, fn() -> usize>;

static LOCAL: spin::Once<KernelLocalSlots> = spin::Once::new();
static POOL: spin::Once<KernelPool> = spin::Once::new();
static DIRECT: spin::Once<DirectMap> = spin::Once::new();
/// The main (and only) task's kmap token, lent to whoever maps.
static MAIN_TASK: spin::Mutex<Option<KmapTask>> = spin::Mutex::new(None);

/// The CPU running now: its local kmap stack is the one used.
fn this_cpu() -> usize {
    crate::arch::gdt::cpu_index()
}

/// Creates the local slots, the persistent pool with `policy`, and the main
/// task's token.
pub fn init(
    fixmap: &'static KernelFixmapT,
    window: &ContiguousWindow<Mode>,
    layout: &Layout,
    policy: KernelPolicy,
) -> Result<(), Error> {
    let direct = *DIRECT.call_once(|| DirectMap::new(PAGE_OFFSET, layout.lowmem_limit));
    // Local slots hold data, never code: no-execute where the mode has NX.
    let local = KernelLocalSlots::new(
        fixmap,
        KernelFixmap::KMAP_LOCAL,
        KMAP_LOCAL_GUARDS,
        direct,
        NativeTlb,
    )
    .and_then(|slots| {
        let flags = slots.flags() | crate::arch::mode::no_execute();
        slots.with_flags(flags)
    })
    .map_err(|e| failure!("local kmap slots: {e}"))?;
    LOCAL.call_once(|| local);
    let pool = KernelPool::new(
        window,
        VirtAddr::new(PKMAP_BASE),
        direct,
        DirectMapAccess,
        KernelTlb,
        policy,
        KernelWait,
    )
    .map_err(|e| failure!("persistent kmap pool: {e}"))?;
    POOL.call_once(|| pool);
    // SAFETY: the kernel runs one task (this one), and this is the only
    // token ever created.
    *MAIN_TASK.lock() = Some(unsafe { KmapTask::new() });
    println!(
        "kmap: persistent pool of {KMAP_POOL_SLOTS} slots at {PKMAP_BASE:#x} ({} flushes), \
         {KMAP_LOCAL_DEPTH} local slots per CPU (with guard slots), lowmem below {:#x} direct",
        kmap::FlushPolicy::name(&policy),
        layout.lowmem_limit
    );
    Ok(())
}

/// The local slots.
pub fn local() -> Option<&'static KernelLocalSlots> {
    LOCAL.get()
}

/// The persistent pool.
pub fn pool() -> Option<&'static KernelPool> {
    POOL.get()
}

/// Which frames are lowmem, and where the direct map is.
pub fn direct_map() -> Option<DirectMap> {
    DIRECT.get().copied()
}

/// Runs `f` with the main task's kmap token (`None` if it is lent out).
pub fn with_task<R>(f: impl FnOnce(&mut KmapTask) -> R) -> Option<R> {
    let mut guard = MAIN_TASK.try_lock()?;
    guard.as_mut().map(f)
}

/// A table access for the mapper that keeps PTE tables in highmem
/// reachable: lowmem frames through the direct map, highmem frames through
/// a local kmap held while the mapper uses the table.
pub fn highmem_tables() -> Option<KernelHighmemTables> {
    let local = LOCAL.get()?;
    let direct = direct_map()?;
    // SAFETY: `direct` is the kernel's direct map, mapped writable for
    // every lowmem frame below its limit, and `local`'s slots are this
    // CPU's kmap slots in the kernel's fixmap, each mapping the frame it
    // was given while the mapping lives; page tables are only accessed
    // atomically or by the MMU.
    Some(unsafe { HighmemTables::new(local, DirectVirt::new(), direct, this_cpu as fn() -> usize) })
}
