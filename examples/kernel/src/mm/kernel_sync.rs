//! Kernel mappings shared by every address space: the kernel's side of
//! `paging_core::sync`.
//!
//! The kernel's final tables are the *reference* directory. Every address
//! space registers with [`KernelSyncT`] when it is created
//! ([`crate::mm::address_space`]), which copies the reference's kernel
//! top-level entries into it. Kernel mappings made later (the vmalloc area:
//! [`crate::mm::vmalloc`]) go into the reference only, and reach the other
//! directories in one of two ways:
//!
//! - **lazily**: the page-fault handler calls [`handle_fault`] before it
//!   treats a fault as an error. For a kernel address whose top-level entry
//!   the running directory lacks, `KernelSync::sync_fault` copies that one
//!   entry and the faulting instruction is retried. No lock is taken, so
//!   this works in an interrupt or an NMI (see the NMI self-test);
//! - **eagerly**: `KernelSync::publish` copies the new entries into every
//!   registered directory at once, under the registry lock (not from an
//!   NMI).
//!
//! In 2-level mode the kernel half is 256 PGD entries, and a new vmalloc
//! page table is a new PGD entry that each directory must learn about. In
//! PAE mode the kernel half is one PDPT entry whose PMD table all
//! directories share from registration on: every later kernel mapping is
//! below it and visible everywhere at once, so the lazy path never has
//! anything to fill.

use core::sync::atomic::{AtomicU32, Ordering};

use paging_core::{KernelSync, NativeHooks, PhysAddr, SyncOutcome, VirtAddr, Walker};

use crate::arch::fault_probe::ErrorCode;
use crate::arch::mode::{self, Mode};
use crate::mm::direct_map::DirectMapAccess;
use crate::mm::layout::PAGE_OFFSET;

/// Directories the registry holds at most (the pte-highmem test makes 200
/// at once).
pub const SYNC_CAPACITY: usize = 256;

/// The kernel's registry of directories and its lazy path.
pub type KernelSyncT = KernelSync<Mode, DirectMapAccess, NativeHooks, SYNC_CAPACITY>;

static SYNC: spin::Once<KernelSyncT> = spin::Once::new();

/// Faults the lazy path resolved by copying an entry.
static FILLED: AtomicU32 = AtomicU32::new(0);
/// Faults whose entry was already there (filled by a nested fault or by
/// `publish` in between), retried.
static ALREADY_SYNCED: AtomicU32 = AtomicU32::new(0);

pub use crate::base::sync_faults::SyncFaults;

/// Makes the kernel's tables at `reference` the reference directory for
/// `[PAGE_OFFSET, 4 GiB)`. Called once, right after they are loaded.
pub fn init(reference: PhysAddr) -> &'static KernelSyncT {
    crate::arch::nmi::set_sync_faults(faults);
    SYNC.call_once(|| {
        // SAFETY: `reference` is the loaded kernel directory, and every root
        // registered or passed to `sync_fault` is a directory of this mode
        // (made by `AddressSpace::create`, or read from CR3), all in lowmem
        // where `DirectMapAccess` reaches them.
        unsafe {
            KernelSyncT::new(
                reference,
                VirtAddr::new(PAGE_OFFSET),
                DirectMapAccess,
                NativeHooks,
            )
        }
    })
}

/// The kernel's registry (`None` before [`init`]).
pub fn get() -> Option<&'static KernelSyncT> {
    SYNC.get()
}

/// The lazy path's counters.
pub fn faults() -> SyncFaults {
    SyncFaults {
        filled: FILLED.load(Ordering::SeqCst),
        already_synced: ALREADY_SYNCED.load(Ordering::SeqCst),
    }
}

/// Called first by the page-fault handler: whether the fault at `address`
/// was a kernel address missing only from the running directory, now
/// fixed, so that the instruction should simply be retried.
///
/// Only supervisor not-present faults can be synchronisation faults. Takes
/// no lock and allocates nothing: safe in any context, NMIs included.
pub fn handle_fault(address: u32, error_code: u32) -> bool {
    if error_code & (ErrorCode::PRESENT | ErrorCode::USER) != 0 {
        return false;
    }
    let Some(sync) = SYNC.get() else {
        return false;
    };
    let va = VirtAddr::new(address);
    match sync.sync_fault(mode::current_root(), va) {
        Ok(SyncOutcome::Filled) => {
            FILLED.fetch_add(1, Ordering::SeqCst);
            true
        }
        // The library reports `AlreadySynced` whenever the top-level entry
        // equals the reference's, also when the reference itself does not
        // map `va` (a guard page under a present entry): retrying that
        // would fault forever. Retry only if the reference maps it.
        Ok(SyncOutcome::AlreadySynced) if reference_maps(sync.reference(), va) => {
            ALREADY_SYNCED.fetch_add(1, Ordering::SeqCst);
            true
        }
        _ => false,
    }
}

/// Whether the reference directory translates `va` (down to a present leaf).
fn reference_maps(reference: PhysAddr, va: VirtAddr) -> bool {
    Walker::<Mode, _>::new(reference, DirectMapAccess)
        .translate(va)
        .is_ok()
}
