//! Processes: ring-3 programs ([`crate::proc::user`]) in address spaces of their
//! own, on every CPU.
//!
//! - **Address space.** A directory made with `Mapper::create` and
//!   registered with the kernel sync (the kernel half), whose user PTE
//!   tables come from highmem (`Zone::PreferHighmem`) and are reached
//!   through local kmaps (`kmap::HighmemTables`): Linux's pte-highmem. The
//!   text is copied into fresh pages at [`user::TEXT_BASE`] (read-only,
//!   executable); the heap (`sbrk`) and the stack are anonymous: nothing is
//!   mapped until the first touch, which maps a zeroed highmem page
//!   (writable, no-execute).
//! - **fork** shares every page: the writable ones are made read-only and
//!   marked copy-on-write with one `Mapper::protect_range` per region (bit
//!   `MapFlags::SOFTWARE_0`), and the child maps the same frames, walked
//!   with `Mapper::mappings` (the parent's PTE table through one local
//!   kmap, the child's through a second: LIFO). A write fault on a shared
//!   copy-on-write page copies it (two local kmaps again); on a page no
//!   longer shared it just makes it writable.
//! - **Faults** that are neither demand-zero nor copy-on-write kill the
//!   process with a reason; the kernel and the other processes go on.
//! - **exit** tears the user half down with `Mapper::teardown_releasing`:
//!   every page is released (a shared frame only loses a reference), every
//!   table freed after the flush.
//! - **Scheduling.** Each process is pinned to one CPU (chosen round-robin
//!   at creation), which runs it from its own scheduler loop
//!   ([`super::sched::run_until_done`]); each process has its own kernel stack (the TSS's
//!   ring-0 stack while it runs). A local-APIC timer preempts user code,
//!   and kernel code that declared itself preemptible
//!   ([`user::nr::KMAP_HOLD`]); the switch saves the CPU's local-kmap stack
//!   with the process and puts it back when it runs again. Pinning keeps
//!   the local kmaps' addresses valid, and means a user-space flush only
//!   ever targets the one CPU that ran the space.
//!
//! - **Hostile processes** (issue 21): a system call that fails returns -1
//!   and records why ([`nr::LAST_ERROR`], [`err`]); per-process limits on
//!   children ([`MAX_CHILDREN`]), heap ([`HEAP_MAX`]) and console output
//!   ([`CONSOLE_BUDGET`]); a refused fork frees what it built; zombies go
//!   with their parent; round-robin picks; the x87 state is switched by
//!   [`crate::arch::fpu`]; user memory is reached only through
//!   [`crate::proc::usercopy`]; SMEP/SMAP/UMIP are on while processes run
//!   ([`crate::arch::guards`]).
//!
//! Locks are taken with interrupts off: the timer cannot preempt a holder.
//!
//! This file holds the process table, its counters and the registry of
//! frames shared copy-on-write; the jobs on it are in
//! [`super::spawn`] (creation and teardown), [`super::sched`] (the
//! per-CPU scheduler and the switch), [`super::syscall`] (system calls)
//! and [`super::fault`] (user faults, fork's copy-on-write sharing).

use core::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};

use kmap::SavedLocal;
use paging_core::{FrameAllocator, MapFlags, PhysFrame, Zone};

use crate::base::config::CPUS;
use crate::base::error::Error;
use crate::base::ticket::TicketLock;
use crate::mm::address_space::AddressSpace;
use crate::mm::frames::{Frames, ZoneId};
use crate::mm::kmap_setup::{self, KernelHighmemTables};
use crate::mm::layout::KMAP_LOCAL_DEPTH;
use crate::mm::shootdown::AddressSpaceTlb;
use crate::proc::user::TEXT_BASE;
use crate::proc::user::err;
use crate::{arch::cpu, arch::gdt, arch::mode, failure};

pub use crate::base::config::MAX_PROCESSES;

/// The last fault each process took (its address; the error code is the
/// fault handler's own) and how many times in a row: kept by
/// [`crate::proc::fault`], reset when a process is spawned in the slot.
pub(super) static LAST_FAULT: [AtomicU32; MAX_PROCESSES] =
    [const { AtomicU32::new(0) }; MAX_PROCESSES];
/// See [`LAST_FAULT`].
pub(super) static REPEATS: [AtomicU32; MAX_PROCESSES] =
    [const { AtomicU32::new(0) }; MAX_PROCESSES];
/// Processes each CPU has picked to run (counted by the scheduler; a
/// process that becomes ready notes it, [`Process::ready_pick`]).
pub(super) static PICKS: [AtomicU32; CPUS] = [const { AtomicU32::new(0) }; CPUS];
/// Start of the heap (`sbrk` grows it up).
pub const HEAP_START: u32 = 0x1000_0000;
/// The most text a program may have ([`super::spawn::spawn`] refuses a
/// longer one): the working-set harvest walks this much from
/// [`TEXT_BASE`], not the 127 MiB up to the heap.
pub const TEXT_MAX: u32 = 64 * 1024;
/// Most the heap may grow.
pub const HEAP_MAX: u32 = 64 << 20;
/// Top of the user stack (it grows down, demand-zero, [`STACK_PAGES`]).
pub const STACK_TOP: u32 = 0xBFFF_F000;
/// Pages of user stack.
pub const STACK_PAGES: u32 = 16;
/// Pages of each process's kernel stack (lowmem, through the direct map,
/// which has no guard pages: a canary at the bottom is checked at every
/// switch instead).
pub(super) const KSTACK_PAGES: usize = 4;
/// The word at the bottom of every kernel stack.
pub(super) const STACK_CANARY: u32 = 0x57AC_CA11;
/// The copy-on-write marker in a leaf (a software-available bit).
pub const COW: MapFlags = MapFlags::SOFTWARE_0;
/// Exit code of a killed process.
pub const KILLED: u32 = 0xDEAD_0000;
/// Children (alive or zombie) one process may have; one more fork returns
/// -1 with [`err::CHILD_LIMIT`].
pub const MAX_CHILDREN: usize = 16;
/// Console bytes one process may write in its life; the rest are dropped
/// and counted (reported at its exit), the write returns what was written
/// and `last_error` is [`err::CONSOLE_BUDGET`].
pub const CONSOLE_BUDGET: u32 = 1024;
/// Most preemptions `kmap_hold` waits for; more is [`err::INVALID`].
pub const KMAP_HOLD_MAX: u32 = 16;

/// A process's address space: user PTE tables in highmem.
pub(super) type Space = AddressSpace<KernelHighmemTables>;

/// Where a process is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Runnable, waiting for its CPU.
    Ready,
    /// On its CPU now.
    Running,
    /// In `wait`, for a child to exit.
    Waiting,
    /// Exited (or killed): the exit code is kept for `wait`.
    Zombie,
}

/// Page-table frames a process's mappers allocated, by zone.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TableFrames {
    /// In lowmem (the directory, PAE PMD tables, PTE tables when highmem
    /// is not used).
    pub low: u32,
    /// In highmem.
    pub high: u32,
    /// Of those, above 4 GiB (PAE with RAM there).
    pub above_4g: u32,
}

/// One process.
pub struct Process {
    pub(super) pid: u32,
    pub(super) parent: u32,
    pub(super) state: State,
    pub(super) cpu: usize,
    pub(super) program: &'static str,
    pub(super) space: Option<Space>,
    /// Base of the kernel stack (lowmem, through the direct map).
    pub(super) kstack: u32,
    pub(super) heap_end: u32,
    pub(super) exit_code: u32,
    pub(super) kill_reason: Option<&'static str>,
    pub(super) kill_address: u32,
    pub(super) tables: TableFrames,
    pub(super) pte_zone: Zone,
    pub(super) saved_local: Option<SavedLocal<KMAP_LOCAL_DEPTH>>,
    /// Why the last failed system call failed ([`err`]).
    pub(super) last_error: u32,
    /// Console bytes written, and dropped once over [`CONSOLE_BUDGET`].
    pub(super) console_written: u32,
    pub(super) console_dropped: u32,
    /// Its parent exited first: the kernel frees its slot when it ends.
    pub(super) orphan: bool,
    /// Its CPU's timer tick when it last became ready (fairness).
    pub(super) ready_tick: u32,
    /// This CPU's pick count ([`PICKS`]) when it last became ready.
    pub(super) ready_pick: u32,
    /// The exception vector that killed it (not a page fault).
    pub(super) kill_vector: Option<u32>,
    /// Its writes are copied from its memory but not printed, and its
    /// death is counted, not reported (the fuzzers); inherited by fork.
    pub(super) quiet: bool,
    /// Young pages per window ([`super::working_set`]).
    pub(super) working_set: super::working_set::WorkingSet,
}

impl Process {
    /// A new ready process (no PID or slot yet).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        parent: u32,
        cpu: usize,
        program: &'static str,
        space: Space,
        kstack: u32,
        heap_end: u32,
        tables: TableFrames,
        pte_zone: Zone,
    ) -> Self {
        Self {
            pid: 0,
            parent,
            state: State::Ready,
            cpu,
            program,
            space: Some(space),
            kstack,
            heap_end,
            exit_code: 0,
            kill_reason: None,
            kill_address: 0,
            tables,
            pte_zone,
            saved_local: None,
            last_error: err::NONE,
            console_written: 0,
            console_dropped: 0,
            orphan: false,
            ready_tick: 0,
            ready_pick: 0,
            kill_vector: None,
            quiet: false,
            working_set: super::working_set::WorkingSet::default(),
        }
    }
}

/// The process table.
pub(super) struct Table {
    pub(super) slots: [Option<Process>; MAX_PROCESSES],
    pub(super) next_pid: u32,
    pub(super) next_cpu: usize,
}

/// The process table, behind a fair lock: every CPU's scheduler loop takes
/// it, and an unfair lock let idle schedulers starve a CPU that needed it
/// once (see [`crate::base::ticket`]).
pub(super) static TABLE: TicketLock<Table> = TicketLock::new(
    "the process table's lock",
    Table {
        slots: [const { None }; MAX_PROCESSES],
        next_pid: 1,
        next_cpu: 0,
    },
);

/// Saved kernel ESP of each process slot (switch_context writes it).
pub(super) static mut CONTEXTS: [u32; MAX_PROCESSES] = [0; MAX_PROCESSES];
/// Saved ESP of each CPU's scheduler loop.
pub(super) static mut SCHEDULERS: [u32; CPUS] = [0; CPUS];
/// The slot each CPU runs now (`usize::MAX`: none).
pub(super) static CURRENT: [AtomicUsize; CPUS] = [const { AtomicUsize::new(usize::MAX) }; CPUS];
/// Kernel code of this slot's process may be preempted (set around
/// `kmap_hold`'s wait).
pub(super) static PREEMPTIBLE: [AtomicBool; MAX_PROCESSES] =
    [const { AtomicBool::new(false) }; MAX_PROCESSES];
/// Times each slot's process was preempted.
pub(super) static PREEMPTIONS: [AtomicU32; MAX_PROCESSES] =
    [const { AtomicU32::new(0) }; MAX_PROCESSES];

/// Counters the self-tests read.
pub struct Counters {
    /// Demand-zero faults resolved.
    pub demand_zero: AtomicU32,
    /// Copy-on-write faults that copied the page.
    pub cow_copies: AtomicU32,
    /// Copy-on-write faults on a page no longer shared (made writable).
    pub cow_reuses: AtomicU32,
    /// Most references one frame had at once.
    pub max_sharing: AtomicU32,
    /// Pages fork shared.
    pub shared_by_fork: AtomicU32,
    /// Context switches into a process that held local kmaps.
    pub local_restores: AtomicU32,
    /// Timer preemptions.
    pub preemptions: AtomicU32,
    /// Forks refused (limits, a full table, no memory).
    pub forks_refused: AtomicU32,
    /// Of those, refused because the process table was full.
    pub forks_table_full: AtomicU32,
    /// System calls made.
    pub syscalls: AtomicU32,
    /// Processes killed (a fault or an exception from ring 3).
    pub kills: AtomicU32,
    /// Processes that exited with [`crate::proc::user::FUZZ_CORRUPT`]: they read
    /// a value they had not written.
    pub corrupt: AtomicU32,
}

/// The counters.
pub static COUNTERS: Counters = Counters {
    demand_zero: AtomicU32::new(0),
    cow_copies: AtomicU32::new(0),
    cow_reuses: AtomicU32::new(0),
    max_sharing: AtomicU32::new(0),
    shared_by_fork: AtomicU32::new(0),
    local_restores: AtomicU32::new(0),
    preemptions: AtomicU32::new(0),
    forks_refused: AtomicU32::new(0),
    forks_table_full: AtomicU32::new(0),
    syscalls: AtomicU32::new(0),
    kills: AtomicU32::new(0),
    corrupt: AtomicU32::new(0),
};

/// Extra references of user frames shared by fork (absent: one owner).
static SHARED: spin::Mutex<heapless::index_map::FnvIndexMap<u64, u32, 4096>> =
    spin::Mutex::new(heapless::index_map::FnvIndexMap::new());

pub(super) fn with_table<R>(f: impl FnOnce(&mut Table) -> R) -> R {
    cpu::without_interrupts(|| f(&mut TABLE.lock()))
}

/// One more mapping of `frame` (fork).
pub(super) fn share(frame: PhysFrame) -> Result<(), Error> {
    let mut shared = SHARED.lock();
    let extra = shared.get(&frame.number()).copied().unwrap_or(0) + 1;
    shared
        .insert(frame.number(), extra)
        .map_err(|_| failure!("the shared-frame table is full"))?;
    COUNTERS.max_sharing.fetch_max(extra + 1, Ordering::Relaxed);
    Ok(())
}

/// One mapping of `frame` fewer; whether it was the last (free it).
pub(super) fn unshare(frame: PhysFrame) -> bool {
    let mut shared = SHARED.lock();
    match shared.get(&frame.number()).copied() {
        Some(1) => {
            shared.swap_remove(&frame.number());
            false
        }
        Some(extra) => {
            let _ = shared.insert(frame.number(), extra - 1);
            false
        }
        None => true,
    }
}

/// Makes process `pid` quiet: its writes are checked and copied but not
/// printed, its death counted but not reported (inherited by its
/// children). Whether it exists.
pub fn make_quiet(pid: u32) -> bool {
    with_table(|t| {
        t.slots
            .iter_mut()
            .flatten()
            .find(|p| p.pid == pid)
            .map(|p| p.quiet = true)
            .is_some()
    })
}

/// Processes that hold an address space now (each registered with the
/// kernel sync).
pub fn live_spaces() -> usize {
    with_table(|t| {
        t.slots
            .iter()
            .flatten()
            .filter(|p| p.space.is_some())
            .count()
    })
}

/// Frames in the shared-page table now (each shared by fork).
pub fn shared_frames() -> usize {
    cpu::without_interrupts(|| SHARED.lock().len())
}

pub(super) fn is_shared(frame: PhysFrame) -> bool {
    SHARED.lock().contains_key(&frame.number())
}

/// Frames handed to a process's mapper, counted by zone (its page tables).
pub(super) struct Counting<'a> {
    pub(super) inner: &'a mut Frames,
    pub(super) tables: &'a mut TableFrames,
}

// SAFETY: every call is forwarded to the kernel's allocator, whose frames
// are RAM nobody else uses until they are freed.
unsafe impl FrameAllocator for Counting<'_> {
    fn allocate_frame(&mut self, zone: Zone) -> Option<PhysFrame> {
        let frame = self.inner.allocate_frame(zone)?;
        if frame.number() < self.inner.zone_range(ZoneId::High).0 {
            self.tables.low += 1;
        } else {
            self.tables.high += 1;
            if frame.start_address().as_u64() >= 1 << 32 {
                self.tables.above_4g += 1;
            }
        }
        Some(frame)
    }

    unsafe fn deallocate_frame(&mut self, frame: PhysFrame) {
        // SAFETY: forwarded: our caller keeps the contract.
        unsafe { self.inner.deallocate_frame(frame) };
    }
}

/// The user regions a process with break `heap_end` may have pages in,
/// `(start, len)`: text (at most [`TEXT_MAX`]), heap, stack (the ones
/// [`super::fault`] maps). The working-set harvest goes over these, not
/// the whole user half, and skips the empty directory entries between.
pub fn regions(heap_end: u32) -> [(u32, u32); 3] {
    [
        (TEXT_BASE, TEXT_MAX),
        (HEAP_START, heap_end.saturating_sub(HEAP_START)),
        (STACK_TOP - STACK_PAGES * 4096, STACK_PAGES * 4096),
    ]
}

/// Ends process `slot`'s working-set window ([`super::working_set`]),
/// unless it is a zombie: harvests Accessed over its [`regions`], flushes
/// on `cpu` (the one CPU that runs it) and records the young pages.
///
/// The harvest runs with the table unlocked (the space is taken out of the
/// slot meanwhile, as a fault or a fork does): a walk over a process's
/// tables takes a while, and every CPU's switch needs the table lock.
/// Under the lock, four Bochs CPUs once spent their ticks queued behind
/// each other's harvests, and every process was preempted again before it
/// ran an instruction (a fuzz round that never ended).
pub(super) fn end_window(slot: usize, cpu: usize) {
    let taken = with_table(|t| {
        let p = t.slots[slot].as_mut()?;
        if p.state == State::Zombie {
            return None;
        }
        Some((p.space.take()?, p.heap_end))
    });
    let Some((mut space, heap_end)) = taken else {
        return;
    };
    let young = super::working_set::harvest(
        space.mapper(),
        &regions(heap_end),
        &AddressSpaceTlb(tlb_shootdown::CpuSet::single(cpu)),
    );
    with_table(|t| {
        if let Some(p) = t.slots[slot].as_mut() {
            p.space = Some(space);
            if let Ok(young) = young {
                p.working_set.record(young);
            }
        }
    });
}

/// Flags of user pages.
pub(super) fn text_flags() -> MapFlags {
    MapFlags::PRESENT | MapFlags::USER
}

pub(super) fn data_flags() -> MapFlags {
    MapFlags::PRESENT | MapFlags::WRITABLE | MapFlags::USER | mode::no_execute()
}

/// The table access for user tables: highmem tables through local kmaps.
pub(super) fn user_tables() -> Result<KernelHighmemTables, Error> {
    kmap_setup::highmem_tables().ok_or_else(|| failure!("kmap is not set up"))
}

/// Writes `f`'s bytes into `frame` through a local kmap (interrupts off).
pub(super) fn with_frame<R>(frame: PhysFrame, f: impl FnOnce(*mut u8) -> R) -> Result<R, Error> {
    let local = kmap_setup::local().ok_or_else(|| failure!("no local kmaps"))?;
    cpu::without_interrupts(|| {
        let k = local
            .map(gdt::cpu_index(), frame)
            .map_err(|e| failure!("local kmap: {e}"))?;
        Ok(f(k.va().as_u32() as *mut u8))
    })
}

/// A zeroed highmem frame (lowmem if there is none).
pub(super) fn zeroed_frame(frames: &mut Frames) -> Result<PhysFrame, Error> {
    let frame = frames
        .allocate_frame(Zone::PreferHighmem)
        .ok_or_else(|| failure!("out of memory"))?;
    // SAFETY: the slot maps the frame just allocated, writable, 4 KiB.
    with_frame(frame, |p| unsafe { core::ptr::write_bytes(p, 0, 4096) })?;
    Ok(frame)
}
