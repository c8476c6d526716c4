//! Non-maskable interrupts (vector 2).
//!
//! The NMI gate is an interrupt gate like every exception's
//! ([`crate::idt`]), so the handler runs on the interrupted stack, with the
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

use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use crate::kernel_sync::{self, SyncFaults};
use crate::{cpu, fault_probe, mode};

/// NMIs handled.
static COUNT: AtomicU32 = AtomicU32::new(0);
/// Address to read in the next NMI (0: nothing armed).
static READ_ADDRESS: AtomicU32 = AtomicU32::new(0);
/// Set when an armed read has run.
static READ_DONE: AtomicBool = AtomicBool::new(false);
static READ_VALUE: AtomicU32 = AtomicU32::new(0);
static READ_FAULTED: AtomicBool = AtomicBool::new(false);
static READ_CR3: AtomicU32 = AtomicU32::new(0);
static READ_FILLED: AtomicU32 = AtomicU32::new(0);
static READ_ALREADY: AtomicU32 = AtomicU32::new(0);

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

/// NMIs handled so far.
pub fn count() -> u32 {
    COUNT.load(Ordering::SeqCst)
}

/// Arms a read of the `u32` at `address` in the next NMI.
///
/// # Safety
/// `address` must be 4-aligned and, once mapped, ordinary memory (the read
/// goes through a fault probe, so an unmapped address is reported, not
/// fatal).
pub unsafe fn arm_read(address: usize) {
    READ_DONE.store(false, Ordering::SeqCst);
    READ_ADDRESS.store(address as u32, Ordering::SeqCst);
}

/// The armed read's result, once an NMI has run it.
pub fn read_result() -> Option<NmiRead> {
    READ_DONE.load(Ordering::SeqCst).then(|| NmiRead {
        value: (!READ_FAULTED.load(Ordering::SeqCst)).then(|| READ_VALUE.load(Ordering::SeqCst)),
        root: READ_CR3.load(Ordering::SeqCst),
        sync: SyncFaults {
            filled: READ_FILLED.load(Ordering::SeqCst),
            already_synced: READ_ALREADY.load(Ordering::SeqCst),
        },
    })
}

/// Called by the exception dispatcher for vector 2.
pub fn handle() {
    let cr2 = cpu::cr2();
    COUNT.fetch_add(1, Ordering::SeqCst);
    let address = READ_ADDRESS.swap(0, Ordering::SeqCst);
    if address != 0 {
        let before = kernel_sync::faults();
        // SAFETY: `arm_read`'s caller vouched for the address.
        let read = fault_probe::preserving(|| unsafe { fault_probe::read_u32(address as usize) });
        let sync = kernel_sync::faults().since(before);
        READ_VALUE.store(read.unwrap_or(0), Ordering::SeqCst);
        READ_FAULTED.store(read.is_err(), Ordering::SeqCst);
        READ_CR3.store(mode::current_root().as_u64() as u32, Ordering::SeqCst);
        READ_FILLED.store(sync.filled, Ordering::SeqCst);
        READ_ALREADY.store(sync.already_synced, Ordering::SeqCst);
        READ_DONE.store(true, Ordering::SeqCst);
    }
    if cpu::cr2() != cr2 {
        // SAFETY: puts back the value CR2 had when the NMI arrived.
        unsafe { cpu::write_cr2(cr2) };
    }
}
