//! Kernel mappings shared by many page directories.
//!
//! Every address space maps the same kernel half. New kernel mappings (the
//! vmalloc area, say) are made in one *reference* directory; the other
//! directories learn about a new top-level entry in one of two ways:
//!
//! - **eager** ([`KernelSync::publish`]): copy it into every registered
//!   directory right away. Registration and publication take the same lock,
//!   so a directory registered concurrently either gets the entry copied by
//!   `register` or is in the list `publish` walks: it cannot miss it.
//! - **lazy** ([`sync_kernel_entry`]): do nothing until a CPU faults on the
//!   address in a directory that lacks the entry; the page-fault handler copies
//!   that one entry and retries. This path takes no lock, so it is safe in an
//!   interrupt or NMI, and it is idempotent: if a nested fault (an interrupt
//!   arriving between the outer check and the outer fill) has already filled
//!   the entry, the outer call finds it equal to the reference and reports
//!   [`SyncOutcome::AlreadySynced`] instead of mistaking the fault for a bad
//!   access (the 2001 vmalloc-fault race).
//!
//! | | eager | lazy |
//! |---|---|---|
//! | cost of a new kernel top-level entry | one copy per registered directory, under a lock | nothing |
//! | cost on first use in a directory | nothing | one page fault |
//! | works in NMI / with interrupts off | needs the registry lock (not in NMI) | yes, lock-free |
//! | bookkeeping | a registry of every directory | none |
//! | wins when | few directories, or kernel mappings used from contexts that must not fault | many short-lived address spaces, rare new kernel top-level entries |
//!
//! **2-level mode**: the kernel's PGD entries (each covers 4 MiB) are copied
//! into each directory; new vmalloc page tables create new PGD entries, which
//! is what both paths synchronise.
//!
//! **PAE mode**: the kernel half is one PDPT entry (the top GiB) whose PMD
//! table is *shared* by every directory: it is copied once when a directory
//! is registered (the top level changes at most once) and every later
//! kernel mapping, being below it, is visible everywhere at once. The lazy
//! path then has nothing to do and reports [`SyncOutcome::NotSyncFault`]. A
//! directory with a *private* copy of the kernel PMD (as Xen PV guests use)
//! is synchronised one PMD entry at a time by the same functions.
//!
//! # Changing a kernel large page in every directory
//!
//! Linux's `__set_pmd_pte` walks `pgd_list` when the kernel PMD is not
//! shared; [`KernelSync::set_memory`] and
//! [`KernelSync::merge_large_pages`] are that walk.
//!
//! In 2-level mode each directory holds its own *copy* of every kernel PGD
//! entry. A [`Mapper::set_memory`](crate::Mapper::set_memory) on the reference changes the
//! reference's entry only: the copies keep the old large entry, so a page
//! made read-only in the reference stays writable through every other
//! directory, and a
//! [`Mapper::merge_large_pages`](crate::Mapper::merge_large_pages) frees a PTE table the
//! copies still link. [`KernelSync::set_memory`] and
//! [`KernelSync::merge_large_pages`] do the same work and bring every
//! registered directory's copy in step, under the registry lock (so a
//! directory registered meanwhile copies the entry either before the
//! change, and is updated, or after it).
//!
//! The lock-free lazy fill ([`sync_kernel_entry`])
//! may have read the reference's entry just before it changed and fill
//! the old value later. In 2-level mode an entry is one 32-bit word and
//! the fill a compare-and-swap from empty, so the rewrite stores the new
//! entry into *empty* copies too: a late fill then fails, and a fill that
//! landed first is replaced.
//!
//! In PAE the kernel PMD is normally shared by every directory: there are
//! no copies, and these calls are the mapper's calls plus the checks. A
//! directory with a *private* kernel PMD (the Xen PV arrangement) is
//! refused ([`SyncError::PrivateKernelPmd`]): its lazy fill writes a
//! 64-bit entry as two 32-bit halves, safe only because the reference's
//! entry never changes, and a late fill's high half could land over a
//! rewritten entry.

use core::fmt;

mod attr;

pub use attr::{SyncedAttrStats, SyncedMergeStats};

use crate::access::{AccessError, TableAccess, reach};
use crate::addr::{PhysAddr, VirtAddr};
use crate::entry::{Entry, Level, PgdEntry, PmdEntry};
use crate::error::{ErrorKind, PagingError};
use crate::hooks::TableHooks;
use crate::mode::PagingMode;
use crate::table::RawTable;
use crate::walk::{Slot, Walker};

/// What the lazy path found for one faulting kernel address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncOutcome {
    /// The entry was missing and has been copied from the reference: retry
    /// the access.
    Filled,
    /// The entry already equals the reference (filled by a nested fault, by
    /// another CPU, or by `publish`): retry the access.
    AlreadySynced,
    /// Not a synchronisation fault: the reference has no entry either, the
    /// address is not in the kernel half, or the directory holds a different
    /// entry. Handle it as a real fault.
    NotSyncFault,
}

/// Why an eager-sync call did nothing (or, for
/// [`KernelSync::set_memory`] and [`KernelSync::merge_large_pages`], what
/// stopped it: see each).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SyncError {
    /// The registry holds as many directories as it can.
    RegistryFull {
        /// Its capacity.
        capacity: usize,
    },
    /// The directory is not registered.
    NotRegistered(PhysAddr),
    /// The directory is already registered.
    AlreadyRegistered(PhysAddr),
    /// The directory holds a different kernel entry than the reference.
    Conflict {
        /// The directory.
        root: PhysAddr,
        /// An address the conflicting entry covers.
        va: VirtAddr,
    },
    /// A table could not be reached.
    Access(AccessError),
    /// The mapper given is not bound to this registry's reference
    /// directory.
    NotReference {
        /// The mapper's root.
        root: PhysAddr,
        /// The reference directory.
        reference: PhysAddr,
    },
    /// The attribute change or merge in the reference failed.
    Attr(crate::error::AttrError),
    /// A registered PAE directory holds a private copy of the kernel PMD
    /// (the Xen PV arrangement) over the range, and a large kernel page
    /// cannot change size under it: the lock-free lazy fill writes such a
    /// copy in two 32-bit halves on the promise that the reference's
    /// entry never changes (see [`sync_kernel_entry`]).
    PrivateKernelPmd {
        /// The directory.
        root: PhysAddr,
        /// An address its private PMD entry covers.
        va: VirtAddr,
    },
}

impl fmt::Display for SyncError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::RegistryFull { capacity } => write!(f, "registry full ({capacity} directories)"),
            Self::NotRegistered(r) => write!(f, "directory {r} is not registered"),
            Self::AlreadyRegistered(r) => write!(f, "directory {r} is already registered"),
            Self::Conflict { root, va } => {
                write!(
                    f,
                    "directory {root} maps {va} differently from the reference"
                )
            }
            Self::Access(e) => write!(f, "{e}"),
            Self::NotReference { root, reference } => write!(
                f,
                "the mapper's root {root} is not the reference directory {reference}"
            ),
            Self::Attr(e) => write!(f, "{e}"),
            Self::PrivateKernelPmd { root, va } => write!(
                f,
                "directory {root} has a private kernel PMD at {va}: its large pages cannot change"
            ),
        }
    }
}

impl core::error::Error for SyncError {}

impl PagingError for SyncError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::RegistryFull { .. } => ErrorKind::Exhausted,
            Self::NotRegistered(_) | Self::AlreadyRegistered(_) => ErrorKind::InvalidState,
            Self::Conflict { .. } => ErrorKind::AlreadyMapped,
            Self::Access(e) => e.kind(),
            Self::NotReference { .. } => ErrorKind::InvalidState,
            Self::Attr(e) => e.kind(),
            Self::PrivateKernelPmd { .. } => ErrorKind::Unsupported,
        }
    }
}

impl From<AccessError> for SyncError {
    fn from(e: AccessError) -> Self {
        Self::Access(e)
    }
}

/// The slot (and reference value) that `va` synchronises through in a
/// directory: the PGD entry in 2-level mode, the PMD entry of a private
/// kernel PMD in PAE mode, or nothing (shared PMD, or no reference entry).
fn sync_point<M: PagingMode, A: TableAccess + ?Sized>(
    access: &A,
    reference: PhysAddr,
    active: PhysAddr,
    va: VirtAddr,
) -> Result<Option<(Slot, u64, Level)>, AccessError> {
    let r = Walker::<M, &A>::new(reference, access);
    let a = Walker::<M, &A>::new(active, access);
    let rpgd: M::Pgd = r.pgd_slot(va).read(access)?;
    if !rpgd.is_present() {
        return Ok(None);
    }
    if M::PMD_FOLDED {
        return Ok(Some((a.pgd_slot(va), rpgd.raw(), Level::Pgd)));
    }
    let apgd: M::Pgd = a.pgd_slot(va).read(access)?;
    if !apgd.is_present() || apgd.addr() == rpgd.addr() {
        // No kernel PMD in this directory (register it first), or the shared
        // one: nothing below the PGD ever differs.
        return Ok(None);
    }
    let (Some(rslot), Some(aslot)) = (r.pmd_slot(va, rpgd), a.pmd_slot(va, apgd)) else {
        return Ok(None);
    };
    let rpmd: M::Pmd = rslot.read(access)?;
    Ok(rpmd.is_present().then_some((aslot, rpmd.raw(), Level::Pmd)))
}

/// Whether two entries say the same thing, ignoring the Accessed and Dirty
/// bits the MMU sets on its own in each directory.
fn same_entry<E: PmdEntry>(a: E, b: E) -> bool {
    a.is_present() == b.is_present()
        && a.addr() == b.addr()
        && a.flags().without_status() == b.flags().without_status()
}

/// Copy `reference` into `slot` if it is empty. Lock-free and idempotent.
///
/// Every access to the entry is a 32-bit atomic, like every other software
/// access to table memory: no 64-bit `cmpxchg8b` racing other threads'
/// 32-bit loads of the same entry, a mixed-size race Rust does not define
/// (issue 19). The fill, from an empty entry:
///
/// 1. (PAE) store the reference's high half. The low half, which holds P,
///    is still 0, so the MMU ignores the entry (SDM Vol. 3A 4.4.2).
/// 2. compare-and-swap the low half (the whole entry in 2-level mode) from
///    0 to the reference's. The entry becomes present in this one store,
///    with the high half already in place.
///
/// Every fill of this entry copies the same reference value: the
/// reference's entry, once present, is not replaced while directories may
/// copy it (the binding contract forbids freeing, through the reference, a
/// kernel table another directory links, and a fill in flight is about to
/// link it). The one exception is [`KernelSync::set_memory`] and
/// [`KernelSync::merge_large_pages`] in 2-level mode, which write the new
/// entry into every registered copy, empty ones included, so that a fill
/// that read the old entry fails its compare-and-swap (see the module
/// docs; in PAE they refuse a private kernel PMD). So two CPUs (or a nested fault and the code it interrupted)
/// filling one entry store the *same* high half, whatever the order, and
/// exactly one of them moves the low half from 0: every state the MMU can
/// read is empty, not present with the right high half, or the whole
/// reference entry, never a torn one. The loser's compare-and-swap fails
/// and it reports [`SyncOutcome::AlreadySynced`]; a fill that finds another
/// between its two steps (the high half already there, P clear) does both
/// steps itself rather than call the fault a real one.
fn fill<M: PagingMode, A: TableAccess + ?Sized, H: TableHooks + ?Sized>(
    access: &A,
    hooks: &H,
    slot: Slot,
    reference: u64,
    level: Level,
) -> Result<SyncOutcome, AccessError> {
    let table = reach(access, slot.table)?;
    let current = M::Pmd::load(&table, slot.index);
    let want = M::Pmd::from_raw(reference);
    if same_entry(current, want) {
        return Ok(SyncOutcome::AlreadySynced);
    }
    // Empty, or (PAE) a fill of the same entry between its two steps: the
    // reference's high half over a low half still 0. Anything else is not
    // ours to fill.
    let (raw, high) = (current.raw(), reference >> 32);
    if raw as u32 != 0 || (raw >> 32 != 0 && raw >> 32 != high) {
        return Ok(SyncOutcome::NotSyncFault);
    }
    let lo = slot.index * M::ENTRY_BYTES / 4;
    if M::ENTRY_BYTES == 8 {
        table.store32(lo + 1, high as u32);
    }
    if table.compare_exchange32(lo, 0, reference as u32).is_err() {
        // Someone filled it first (or wrote something else): say which.
        let now = M::Pmd::load(&table, slot.index);
        return Ok(if same_entry(now, want) {
            SyncOutcome::AlreadySynced
        } else {
            SyncOutcome::NotSyncFault
        });
    }
    drop(table);
    hooks.entry_written(slot.table, level, slot.index, 0, reference);
    Ok(SyncOutcome::Filled)
}

/// The lazy path: called by a page-fault handler for a kernel address that
/// faulted in the directory `active`. Copies the one missing entry from
/// `reference` and tells the handler to retry, or says the fault is not a
/// synchronisation fault. Takes no lock: safe in interrupts and NMIs, and
/// safe to re-enter.
///
/// # Safety
/// `reference` and `active` are page directories (PDPTs in PAE mode) that
/// `access` reaches: an entry is written into `active` from safe code.
/// (Over an [`IsolatedTables`](crate::IsolatedTables) access this holds for
/// any value.)
pub unsafe fn sync_kernel_entry<M, A, H>(
    access: &A,
    hooks: &H,
    reference: PhysAddr,
    active: PhysAddr,
    va: VirtAddr,
) -> Result<SyncOutcome, AccessError>
where
    M: PagingMode,
    A: TableAccess + ?Sized,
    H: TableHooks + ?Sized,
{
    // Only a fault on an address the reference really maps is a sync fault
    // (Linux's vmalloc_fault checks the reference PTE too): a guard page, or
    // any hole, under a top-level entry both directories share must be
    // reported as a real fault, or the handler would retry it forever.
    if Walker::<M, &A>::new(reference, access)
        .translate(va)
        .is_err()
    {
        return Ok(SyncOutcome::NotSyncFault);
    }
    sync_entry::<M, A, H>(access, hooks, reference, active, va)
}

/// Copy the entry through which `va` synchronises, if the reference has one
/// and `active` lacks it (whatever the reference maps below it).
fn sync_entry<M, A, H>(
    access: &A,
    hooks: &H,
    reference: PhysAddr,
    active: PhysAddr,
    va: VirtAddr,
) -> Result<SyncOutcome, AccessError>
where
    M: PagingMode,
    A: TableAccess + ?Sized,
    H: TableHooks + ?Sized,
{
    match sync_point::<M, A>(access, reference, active, va)? {
        Some((slot, raw, level)) => fill::<M, A, H>(access, hooks, slot, raw, level),
        None => Ok(SyncOutcome::NotSyncFault),
    }
}

/// The eager path: a registry of directories kept in step with a reference
/// directory for the kernel half `[kernel_start, 4 GiB)`.
pub struct KernelSync<M: PagingMode, A, H, const CAP: usize> {
    reference: PhysAddr,
    kernel_start: VirtAddr,
    access: A,
    hooks: H,
    dirs: spin::Mutex<heapless::Vec<PhysAddr, CAP>>,
    _mode: core::marker::PhantomData<fn() -> M>,
}

impl<M: PagingMode, A, H, const CAP: usize> fmt::Debug for KernelSync<M, A, H, CAP> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KernelSync")
            .field("reference", &self.reference)
            .field("kernel_start", &self.kernel_start)
            .field("registered", &self.dirs.lock().len())
            .finish()
    }
}

impl<M: PagingMode, A: TableAccess, H: TableHooks, const CAP: usize> KernelSync<M, A, H, CAP> {
    /// Keep directories in step with `reference` for `[kernel_start, 4 GiB)`.
    ///
    /// # Safety
    /// `reference`, and every root later passed to [`register`](Self::register),
    /// [`publish`](Self::publish) (through the registry) and
    /// [`sync_fault`](Self::sync_fault), is a page directory (a PDPT in PAE
    /// mode) that `access` reaches: entries are written into it from safe
    /// code. What the copied kernel mappings mean is covered by the binding
    /// of the reference hierarchy ([`Mapper::new`](crate::Mapper::new)),
    /// which also forbids freeing, through the reference, a kernel table
    /// that registered directories still link (`free_empty_tables` over the
    /// kernel half: they would walk the freed table's next owner).
    /// Over an [`IsolatedTables`](crate::IsolatedTables) access, use
    /// [`new_isolated`](Self::new_isolated).
    pub const unsafe fn new(
        reference: PhysAddr,
        kernel_start: VirtAddr,
        access: A,
        hooks: H,
    ) -> Self {
        Self {
            reference,
            kernel_start,
            access,
            hooks,
            dirs: spin::Mutex::new(heapless::Vec::new()),
            _mode: core::marker::PhantomData,
        }
    }

    /// The reference directory.
    pub fn reference(&self) -> PhysAddr {
        self.reference
    }

    /// How many directories are registered.
    pub fn registered(&self) -> usize {
        self.dirs.lock().len()
    }

    /// Start of each kernel PGD entry's span, in order.
    fn kernel_pgd_spans(&self) -> impl Iterator<Item = VirtAddr> + use<M, A, H, CAP> {
        let span = M::pgd_span();
        let first = self.kernel_start.as_u64() / span;
        (first..(1 << 32) / span).map(move |i| VirtAddr::new((i * span) as u32))
    }

    /// Add `root` to the registry, first copying every kernel PGD entry of
    /// the reference into it. Never overwrites: a different entry already
    /// there is a [`SyncError::Conflict`], and then nothing is changed.
    /// Returns how many entries were copied.
    pub fn register(&self, root: PhysAddr) -> Result<usize, SyncError> {
        let mut dirs = self.dirs.lock();
        if dirs.contains(&root) {
            return Err(SyncError::AlreadyRegistered(root));
        }
        if dirs.is_full() {
            return Err(SyncError::RegistryFull { capacity: CAP });
        }
        let r = Walker::<M, &A>::new(self.reference, &self.access);
        let d = Walker::<M, &A>::new(root, &self.access);
        // Check everything before the first write.
        for va in self.kernel_pgd_spans() {
            let want: M::Pgd = r.pgd_slot(va).read(&self.access)?;
            let have: M::Pgd = d.pgd_slot(va).read(&self.access)?;
            let same = have.addr() == want.addr()
                && have.table_flags().without_status() == want.table_flags().without_status();
            if !have.is_none() && !same {
                return Err(SyncError::Conflict { root, va });
            }
        }
        let mut copied = 0;
        for va in self.kernel_pgd_spans() {
            let want: M::Pgd = r.pgd_slot(va).read(&self.access)?;
            let slot = d.pgd_slot(va);
            let have: M::Pgd = slot.read(&self.access)?;
            if want.is_present() && have.is_none() {
                // Only bits the CPU accepts in a top-level entry: an
                // emulator may have set reserved ones in the reference.
                let want = want.without_reserved_bits();
                let table = reach(&self.access, slot.table)?;
                M::Pgd::store(&table, slot.index, want);
                drop(table);
                self.hooks
                    .entry_written(slot.table, Level::Pgd, slot.index, 0, want.raw());
                copied += 1;
            }
        }
        // Cannot fail: capacity was checked under the same lock.
        let _ = dirs.push(root);
        Ok(copied)
    }

    /// Remove `root` from the registry (when its address space dies).
    pub fn unregister(&self, root: PhysAddr) -> Result<(), SyncError> {
        let mut dirs = self.dirs.lock();
        let i = dirs
            .iter()
            .position(|&d| d == root)
            .ok_or(SyncError::NotRegistered(root))?;
        dirs.swap_remove(i);
        Ok(())
    }

    /// The eager path: after a kernel mapping in `[start, start + len)` was
    /// made in the reference, copy every entry the registered directories
    /// lack. Returns how many entries were written.
    pub fn publish(&self, start: VirtAddr, len: u64) -> Result<usize, SyncError> {
        let dirs = self.dirs.lock();
        let span = if M::PMD_FOLDED {
            M::pgd_span()
        } else {
            M::pmd_span()
        };
        let from = start.as_u64().max(self.kernel_start.as_u64()) / span * span;
        let to = (start.as_u64() + len).min(1 << 32);
        let mut written = 0;
        for &root in dirs.iter() {
            let mut at = from;
            while at < to {
                let va = VirtAddr::new(at as u32);
                match sync_entry::<M, A, H>(&self.access, &self.hooks, self.reference, root, va)? {
                    SyncOutcome::Filled => written += 1,
                    SyncOutcome::AlreadySynced | SyncOutcome::NotSyncFault => {}
                }
                at += span;
            }
        }
        Ok(written)
    }

    /// The lazy path for a fault at `va` in directory `active` (lock-free:
    /// see [`sync_kernel_entry`]). Addresses below the kernel half are never
    /// synchronisation faults.
    pub fn sync_fault(&self, active: PhysAddr, va: VirtAddr) -> Result<SyncOutcome, AccessError> {
        if va < self.kernel_start {
            return Ok(SyncOutcome::NotSyncFault);
        }
        // SAFETY: `new`'s caller promised `active` and the reference are
        // directories `self.access` reaches.
        unsafe {
            sync_kernel_entry::<M, A, H>(&self.access, &self.hooks, self.reference, active, va)
        }
    }
}

impl<M: PagingMode, A: crate::IsolatedTables, H: TableHooks, const CAP: usize>
    KernelSync<M, A, H, CAP>
{
    /// [`new`](Self::new) over tables no CPU running this program walks.
    pub const fn new_isolated(
        reference: PhysAddr,
        kernel_start: VirtAddr,
        access: A,
        hooks: H,
    ) -> Self {
        // SAFETY: writes through an isolated access cannot touch this
        // program's memory or the tables its CPUs use.
        unsafe { Self::new(reference, kernel_start, access, hooks) }
    }
}
