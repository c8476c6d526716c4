//! Non-maskable interrupts (vector 2).
//!
//! The NMI gate is an interrupt gate like every exception's
//! ([`crate::arch::idt`]), so the handler runs on the interrupted stack, with the
//! interrupted CR3, as on 32-bit Linux. A task gate (as the double fault
//! has) would give it a stack of its own, but a task switch also loads CR3
//! from the TSS, so the handler would not run in the address space it
//! interrupted, and the return switch would load the main TSS's CR3 field,
//! which the CPU never saves: every CR3 switch would have to update it.
//! The kernel's stack has room (128 KiB) for an NMI and a page fault
//! nested in it.
//!
//! What the handler does: count the NMI, and if a test armed a read
//! ([`arm_read`]), read that word through a fault probe (saving any probe
//! the interrupted code armed), as a driver's NMI
//! handler touching vmalloc'd memory would. A page fault there is handled
//! by the lazy kernel sync path (lock-free) before anything else. The
//! handler saves CR2 and puts it back, so an NMI that hits a page-fault
//! handler before it read CR2 cannot corrupt it with its own fault. The
//! `iretd` of a fault nested in the NMI unblocks NMIs early (an x86
//! quirk); nothing here sends a second one.

use core::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};

use crate::arch::exceptions::ExceptionFrame;
use crate::base::config::CPUS;
use crate::base::sync_faults::SyncFaults;
use crate::{arch::cpu, arch::fault_probe, arch::gdt, arch::mode};

/// The lazy kernel-sync path's counters (`fn() -> SyncFaults`, registered
/// by [`crate::mm::kernel_sync`]: [`set_sync_faults`]); 0 until then.
static SYNC_FAULTS: AtomicUsize = AtomicUsize::new(0);
/// This CPU's line of the hang watchdog's report (`fn(&ExceptionFrame) ->
/// !`, registered by [`crate::smp::watchdog`]: [`set_watchdog_report`]).
static WATCHDOG_REPORT: AtomicUsize = AtomicUsize::new(0);

/// Registers what reads the lazy kernel-sync path's fault counters, which
/// an armed read records the growth of.
pub fn set_sync_faults(faults: fn() -> SyncFaults) {
    SYNC_FAULTS.store(faults as usize, Ordering::SeqCst);
}

/// Registers what prints this CPU's line while the hang watchdog reports
/// ([`crate::base::spin::reporting`]); it never returns.
pub fn set_watchdog_report(report: fn(&ExceptionFrame) -> !) {
    WATCHDOG_REPORT.store(report as usize, Ordering::SeqCst);
}

/// The lazy kernel-sync path's counters (zero before they are registered,
/// as they are before the registry exists).
fn sync_faults() -> SyncFaults {
    let faults = SYNC_FAULTS.load(Ordering::SeqCst);
    if faults == 0 {
        return SyncFaults::default();
    }
    // SAFETY: stored from a `fn() -> SyncFaults` by `set_sync_faults`.
    let faults: fn() -> SyncFaults = unsafe { core::mem::transmute(faults) };
    faults()
}

/// One CPU's NMI state: the count, and the armed read and its result.
struct NmiState {
    /// NMIs handled on this CPU.
    count: AtomicU32,
    /// Address to read in the next NMI (0: nothing armed).
    read_address: AtomicU32,
    /// Set when an armed read has run.
    read_done: AtomicBool,
    read_value: AtomicU32,
    read_faulted: AtomicBool,
    read_cr3: AtomicU32,
    read_filled: AtomicU32,
    read_already: AtomicU32,
}

static STATE: [NmiState; CPUS] = [const {
    NmiState {
        count: AtomicU32::new(0),
        read_address: AtomicU32::new(0),
        read_done: AtomicBool::new(false),
        read_value: AtomicU32::new(0),
        read_faulted: AtomicBool::new(false),
        read_cr3: AtomicU32::new(0),
        read_filled: AtomicU32::new(0),
        read_already: AtomicU32::new(0),
    }
}; CPUS];

/// What an armed read in an NMI saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NmiRead {
    /// The word read, or `None` if the read faulted for real.
    pub value: Option<u32>,
    /// The directory the NMI ran in (CR3 without cache bits).
    pub root: u32,
    /// Lazy sync faults resolved during the read, inside the NMI.
    pub sync: SyncFaults,
}

/// NMIs handled so far on this CPU.
pub fn count() -> u32 {
    count_on(gdt::cpu_index())
}

/// NMIs handled so far on CPU `cpu`.
pub fn count_on(cpu: usize) -> u32 {
    STATE.get(cpu).map_or(0, |s| s.count.load(Ordering::SeqCst))
}

/// Arms a read of the `u32` at `address` in the next NMI on this CPU.
///
/// # Safety
/// As [`arm_read_on`].
pub unsafe fn arm_read(address: usize) {
    // SAFETY: the caller's contract.
    unsafe { arm_read_on(gdt::cpu_index(), address) }
}

/// Arms a read of the `u32` at `address` in the next NMI on CPU `cpu`.
///
/// # Safety
/// `address` must be 4-aligned and, once mapped, ordinary memory (the read
/// goes through a fault probe, so an unmapped address is reported, not
/// fatal).
pub unsafe fn arm_read_on(cpu: usize, address: usize) {
    if let Some(state) = STATE.get(cpu) {
        state.read_done.store(false, Ordering::SeqCst);
        state.read_address.store(address as u32, Ordering::SeqCst);
    }
}

/// This CPU's armed read's result, once an NMI has run it.
pub fn read_result() -> Option<NmiRead> {
    read_result_of(gdt::cpu_index())
}

/// CPU `cpu`'s armed read's result, once an NMI has run it there. The
/// sync counts are the lazy-fault counters' growth during the read, which
/// includes fills made by other CPUs meanwhile.
pub fn read_result_of(cpu: usize) -> Option<NmiRead> {
    let s = STATE.get(cpu)?;
    s.read_done.load(Ordering::SeqCst).then(|| NmiRead {
        value: (!s.read_faulted.load(Ordering::SeqCst))
            .then(|| s.read_value.load(Ordering::SeqCst)),
        root: s.read_cr3.load(Ordering::SeqCst),
        sync: SyncFaults {
            filled: s.read_filled.load(Ordering::SeqCst),
            already_synced: s.read_already.load(Ordering::SeqCst),
        },
    })
}

/// Called by the exception dispatcher for vector 2.
pub fn handle(frame: &ExceptionFrame) {
    if crate::base::spin::reporting() {
        let report = WATCHDOG_REPORT.load(Ordering::SeqCst);
        if report != 0 {
            // SAFETY: stored from a `fn(&ExceptionFrame) -> !` by
            // `set_watchdog_report`.
            let report: fn(&ExceptionFrame) -> ! = unsafe { core::mem::transmute(report) };
            report(frame);
        }
    }
    let cr2 = cpu::cr2();
    let s = &STATE[gdt::cpu_index() % CPUS];
    s.count.fetch_add(1, Ordering::SeqCst);
    let address = s.read_address.swap(0, Ordering::SeqCst);
    if address != 0 {
        let before = sync_faults();
        // SAFETY: `arm_read`'s caller vouched for the address.
        let read = fault_probe::preserving(|| unsafe { fault_probe::read_u32(address as usize) });
        let sync = sync_faults().since(before);
        s.read_value.store(read.unwrap_or(0), Ordering::SeqCst);
        s.read_faulted.store(read.is_err(), Ordering::SeqCst);
        s.read_cr3
            .store(mode::current_root().as_u64() as u32, Ordering::SeqCst);
        s.read_filled.store(sync.filled, Ordering::SeqCst);
        s.read_already.store(sync.already_synced, Ordering::SeqCst);
        s.read_done.store(true, Ordering::SeqCst);
    }
    if cpu::cr2() != cr2 {
        // SAFETY: puts back the value CR2 had when the NMI arrived.
        unsafe { cpu::write_cr2(cr2) };
    }
}
