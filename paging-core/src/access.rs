//! How the mapper reaches a page-table frame.
//!
//! A kernel with every table in lowmem reaches them through its direct map
//! ([`OffsetAccess`]). A kernel that keeps PTE tables in highmem (the
//! pte-highmem design) hands out a short-lived guard that maps the frame
//! temporarily and unmaps it on drop: that is the `Table<'a>` associated type,
//! and the `kmap` crate provides such an implementation.

use core::fmt;

use crate::addr::PhysFrame;
use crate::table::{PtrTable, RawTable};

/// A table frame could not be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessError {
    /// The frame is outside what this access method can reach (for example
    /// above the direct map, with no temporary-mapping fallback).
    Unreachable(PhysFrame),
    /// No temporary mapping slot was free (a full per-CPU local-kmap stack).
    NoSlot,
}

impl fmt::Display for AccessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unreachable(frame) => write!(f, "table frame {frame:?} is not reachable"),
            Self::NoSlot => f.write_str("no temporary mapping slot is free"),
        }
    }
}

impl core::error::Error for AccessError {}

/// Reaches page-table frames for reading and writing.
///
/// The mapper holds at most one table view at a time and drops it before
/// asking for the next, so an implementation backed by a LIFO stack of
/// temporary mappings needs a depth of one.
///
/// # Failures
/// `table` may fail, and the mapper copes: an operation reaches every table
/// it will write while it plans, before its first write, so a failure there
/// returns a typed error with nothing changed; a failed access is always
/// tried once more. The contract an implementation keeps: once it has
/// reached a frame during an operation, it does not refuse that frame twice
/// in a row before the operation ends (a temporary-mapping stack that an
/// interrupt borrowed from and gave back keeps it).
pub trait TableAccess {
    /// A view of one table; dropping it ends the access (and may unmap it).
    type Table<'a>: RawTable
    where
        Self: 'a;

    /// Reach the table in `frame`.
    fn table(&self, frame: PhysFrame) -> Result<Self::Table<'_>, AccessError>;
}

/// Reach `frame` the way the walker and the mapper always do: an access
/// that fails is tried once more before the failure counts.
///
/// Every operation reaches each table it will write while it plans, before
/// its first write; a failure then changes nothing. What can still fail
/// later is transient by nature (an interrupt held the last temporary
/// mapping slot for a moment), and one retry is what lets an operation that
/// has started writing finish instead of stopping half-way. An access that
/// refuses the same frame twice in a row after the operation reached it is
/// outside the [`TableAccess`] contract.
#[inline]
pub(crate) fn reach<A: TableAccess + ?Sized>(
    access: &A,
    frame: PhysFrame,
) -> Result<A::Table<'_>, AccessError> {
    match access.table(frame) {
        Ok(table) => Ok(table),
        Err(_) => access.table(frame),
    }
}

impl<A: TableAccess + ?Sized> TableAccess for &A {
    type Table<'a>
        = A::Table<'a>
    where
        Self: 'a;

    fn table(&self, frame: PhysFrame) -> Result<Self::Table<'_>, AccessError> {
        (**self).table(frame)
    }
}

/// A [`TableAccess`] whose tables no CPU running this program walks: the
/// host model, a buffer a test fills, an image built for another machine.
///
/// Whatever a mapper writes into such tables, this program's memory stays
/// safe, so [`Mapper::new_isolated`](crate::Mapper::new_isolated) and its
/// siblings bind one without `unsafe` (see `docs/safety.md`).
///
/// # Safety
/// Implement it only if no table reached through this access is, or will
/// be, part of a hierarchy loaded into CR3 (or otherwise used for memory
/// accesses) on a CPU that runs this program, and if the memory behind it
/// is only ever reached through this access (or is not memory of this
/// program at all, as in the host model).
pub unsafe trait IsolatedTables: TableAccess {}

// SAFETY: the same tables, reached through a reference.
unsafe impl<A: IsolatedTables + ?Sized> IsolatedTables for &A {}

/// Tables reached at `virtual = physical + offset`, for physical addresses
/// below `limit`: a kernel's lowmem direct map (offset `0xC000_0000`, limit
/// 896 MiB), identity mapping (offset 0), or a host buffer standing in for
/// physical memory.
#[derive(Debug, Clone, Copy)]
pub struct OffsetAccess {
    offset: usize,
    limit: u64,
}

impl OffsetAccess {
    /// Access tables at `physical + offset` for physical addresses `< limit`.
    ///
    /// # Safety
    /// For every 4 KiB frame below `limit`, `offset + frame address` must be
    /// a valid, 8-byte aligned, readable and writable address for as long as
    /// this value (or a copy) is used, and that memory may only be accessed
    /// atomically (another `PtrTable`, an `AtomicU32`) or by the MMU while
    /// a table view exists, with the `swap64` rule of [`PtrTable::new`].
    pub const unsafe fn new(offset: usize, limit: u64) -> Self {
        Self { offset, limit }
    }

    /// The offset added to a physical address.
    pub const fn offset(&self) -> usize {
        self.offset
    }

    /// The first physical address this access cannot reach.
    pub const fn limit(&self) -> u64 {
        self.limit
    }
}

impl TableAccess for OffsetAccess {
    type Table<'a> = PtrTable<'a>;

    fn table(&self, frame: PhysFrame) -> Result<PtrTable<'_>, AccessError> {
        let pa = frame.start_address().as_u64();
        match pa.checked_add(4096) {
            Some(end) if end <= self.limit => {}
            _ => return Err(AccessError::Unreachable(frame)),
        }
        let ptr = self.offset.wrapping_add(pa as usize) as *mut u8;
        // SAFETY: `frame` is below `limit`, so `new`'s caller promised this
        // address is a valid, aligned 4 KiB with only atomic/MMU users.
        Ok(unsafe { PtrTable::new(ptr) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::PhysAddr;

    #[repr(align(4096))]
    struct Mem([u64; 1024]);

    #[test]
    fn offset_access_reaches_frames_below_limit_only() {
        let mut mem = Mem([0; 1024]);
        let base = mem.0.as_mut_ptr() as usize;
        // SAFETY: the two frames at `base` are valid for the whole test and
        // only reached through `access`.
        let access = unsafe { OffsetAccess::new(base, 8192) };
        let f1 = PhysFrame::from_start_address(PhysAddr::new(4096).unwrap()).unwrap();
        access.table(f1).unwrap().store32(0, 0xabcd);
        let f2 = PhysFrame::from_start_address(PhysAddr::new(8192).unwrap()).unwrap();
        assert_eq!(access.table(f2).err(), Some(AccessError::Unreachable(f2)));
        assert_eq!(mem.0[512], 0xabcd);
    }
}

/// How the CPU reaches memory at a kernel *virtual* address, viewed as a
/// table: what a temporary mapping (kmap) gives access to.
///
/// On a real CPU this is a pointer dereference ([`DirectVirt`]); the host
/// model translates every access through its simulated MMU and TLB, so a
/// missing invalidation is seen exactly as the hardware would see it.
pub trait VirtTables {
    /// A view of the 4 KiB at one virtual address.
    type Table<'a>: RawTable
    where
        Self: 'a;

    /// The 4 KiB page at `va` (page aligned, currently mapped).
    ///
    /// # Safety
    /// `va` is page aligned and, for as long as the returned view lives,
    /// mapped writable to table memory that nothing else accesses but
    /// atomically or by the MMU, with the `swap64` rule of
    /// [`PtrTable::new`]: the view reads and writes it. The proof belongs
    /// to whoever picks `va` (kmap's `HighmemTables` picks its own slots
    /// and direct-map addresses, under its constructor's contract). For an
    /// [`IsolatedVirt`], whose addresses are not this program's memory,
    /// any address will do.
    unsafe fn table_at(&self, va: crate::addr::VirtAddr) -> Self::Table<'_>;
}

/// A [`VirtTables`] whose virtual addresses belong to a CPU that does not
/// run this program (the host model's simulated CPU): an access built on it
/// (kmap's `HighmemTables`) is then an [`IsolatedTables`].
///
/// # Safety
/// Implement it only if the addresses it reaches are not this program's
/// memory: no CPU running this program translates them.
pub unsafe trait IsolatedVirt: VirtTables {}

/// Virtual addresses dereferenced by the CPU.
#[derive(Debug, Clone, Copy)]
pub struct DirectVirt {
    _private: (),
}

impl DirectVirt {
    /// Reach kernel virtual addresses directly. Safe: every
    /// [`VirtTables::table_at`] call is `unsafe`, and its caller proves
    /// that address.
    pub const fn new() -> Self {
        Self { _private: () }
    }
}

impl Default for DirectVirt {
    fn default() -> Self {
        Self::new()
    }
}

impl VirtTables for DirectVirt {
    type Table<'a> = PtrTable<'a>;

    unsafe fn table_at(&self, va: crate::addr::VirtAddr) -> PtrTable<'_> {
        // SAFETY: our caller proves `va` is mapped, aligned and only shared
        // with atomic/MMU users (`table_at`'s contract), which is
        // `PtrTable::new`'s.
        unsafe { PtrTable::new(va.as_u32() as usize as *mut u8) }
    }
}
