//! The contiguous window: the PTE tables behind the fixmap and the pkmap
//! area, as one physically contiguous chunk.
//!
//! kmap finds the PTE of slot `i` by indexing one array; that only works if
//! the tables behind the window are consecutive frames. A [`ContiguousWindow`]
//! can only be made by [`WindowBuilder`], which either gets the frames in one
//! contiguous allocation (or from static tables that are contiguous by
//! construction), or refuses with a typed error. It never hands out a window
//! whose contiguity is an accident of allocation order.

use core::marker::PhantomData;

use paging_core::{
    CpuFeatures, EntryError, FrameAllocator, FreshTables, IsolatedTables, MapFlags, Mapper,
    PAGE_SIZE, PageSize, PagingMode, PhysAddr, PhysFrame, PteEntry, Replaced, Slot, TableAccess,
    TableHooks, TlbOps, VirtAddr, Zone,
};

use crate::error::WindowError;

/// PTE tables that cover `[start, start + tables * pmd_span)` and are the
/// physically consecutive frames `first_frame, first_frame + 1, ...`.
///
/// Only [`WindowBuilder`] constructs it, after installing those tables. It
/// carries the [`CpuFeatures`] of the mapper it was built with: every PTE
/// written into it (fixmap slots, kmap slots) is checked against them with
/// [`pte`](Self::pte).
#[derive(Debug, PartialEq, Eq)]
pub struct ContiguousWindow<M: PagingMode> {
    start: VirtAddr,
    tables: usize,
    first_frame: PhysFrame,
    features: CpuFeatures,
    _mode: PhantomData<M>,
}

impl<M: PagingMode> Clone for ContiguousWindow<M> {
    fn clone(&self) -> Self {
        Self { ..*self }
    }
}

impl<M: PagingMode> ContiguousWindow<M> {
    /// The features of the CPU this window's entries are written for (the
    /// building mapper's).
    pub fn features(&self) -> CpuFeatures {
        self.features
    }

    /// The PTE mapping `frame` with `flags` (`PRESENT` added) as the bound
    /// CPU may hold it: [`EntryError::MissingFeature`] for a flag it lacks
    /// (XD without NX, unless dropped by
    /// [`NxPolicy::Drop`](paging_core::NxPolicy::Drop); the PAT bit
    /// without the PAT), [`EntryError::PhysOutOfRange`] at or above its
    /// MAXPHYADDR, and the mode's own refusals.
    pub fn pte(&self, frame: PhysFrame, flags: MapFlags) -> Result<M::Pte, EntryError> {
        let flags = self
            .features
            .leaf_flags::<M>(flags | MapFlags::PRESENT, PageSize::Size4KiB)
            .map_err(EntryError::MissingFeature)?;
        let entry = M::Pte::page(frame, flags)?;
        let bits = self.features.phys_bits::<M>();
        if !frame.start_address().fits_bits(bits) {
            return Err(EntryError::PhysOutOfRange {
                addr: frame.start_address(),
                max_bits: bits,
            });
        }
        Ok(entry)
    }

    /// First virtual address the tables cover (aligned to the PMD span).
    pub fn start(&self) -> VirtAddr {
        self.start
    }

    /// One past the last virtual address covered (up to `2^32`).
    pub fn end(&self) -> u64 {
        self.start.as_u64() + self.tables as u64 * M::pmd_span()
    }

    /// Number of PTE tables.
    pub fn tables(&self) -> usize {
        self.tables
    }

    /// The first table frame; table `k` is `first_frame + k`.
    pub fn first_frame(&self) -> PhysFrame {
        self.first_frame
    }

    /// Whether `va` is covered.
    pub fn contains(&self, va: VirtAddr) -> bool {
        va >= self.start && va.as_u64() < self.end()
    }

    /// Whether every page of `[start, end)` is covered.
    pub fn covers(&self, start: VirtAddr, end: u64) -> bool {
        start >= self.start && end <= self.end() && start.as_u64() <= end
    }

    /// The position of `va`'s PTE in the window's entry array.
    pub fn pte_number(&self, va: VirtAddr) -> Option<usize> {
        self.contains(va)
            .then(|| ((va.as_u64() - self.start.as_u64()) / PAGE_SIZE) as usize)
    }

    /// Where the PTE for `va` lives (table frame and index).
    pub fn pte_slot(&self, va: VirtAddr) -> Option<Slot> {
        let n = self.pte_number(va)?;
        Some(Slot {
            table: self.first_frame.checked_add((n / M::PTRS_PER_PTE) as u64)?,
            index: n % M::PTRS_PER_PTE,
        })
    }

    /// The physical address of the PTE for `va`: `first_frame` plus the
    /// entry's position times the entry size. One linear array, which is
    /// exactly what contiguity buys.
    pub fn pte_phys(&self, va: VirtAddr) -> Option<PhysAddr> {
        let n = self.pte_number(va)?;
        self.first_frame
            .start_address()
            .checked_add((n * M::ENTRY_BYTES) as u64)
    }
}

/// Builds a [`ContiguousWindow`] over `[start, end)`, widened to whole PTE
/// tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowBuilder {
    start: VirtAddr,
    end: u64,
}

impl WindowBuilder {
    /// A window covering at least `[start, end)` (`end` exclusive, up to
    /// `2^32`).
    pub fn new(start: VirtAddr, end: u64) -> Result<Self, WindowError> {
        if end <= start.as_u64() || end > 1 << 32 {
            return Err(WindowError::BadRange { start, end });
        }
        Ok(Self { start, end })
    }

    /// The table-aligned start and the number of tables for mode `M`.
    pub fn geometry<M: PagingMode>(&self) -> (VirtAddr, usize) {
        let span = M::pmd_span();
        let first = self.start.align_down(span);
        let count = (self.end - first.as_u64()).div_ceil(span) as usize;
        (first, count)
    }

    /// Take the tables from `alloc` in one contiguous lowmem allocation and
    /// install them into `mapper`'s hierarchy (copying any table already
    /// there, such as the early fixmap's). If the allocator has no
    /// contiguous allocation, frames are taken one at a time and the window
    /// is refused unless each is the successor of the last.
    ///
    /// Returns the window and the tables it replaced (owned by the caller).
    #[allow(unsafe_code)]
    pub fn build<M, A, H, T, F>(
        &self,
        mapper: &mut Mapper<M, A, H>,
        tlb: &T,
        alloc: &mut F,
    ) -> Result<(ContiguousWindow<M>, Replaced), WindowError>
    where
        M: PagingMode,
        A: TableAccess,
        H: TableHooks,
        T: TlbOps + ?Sized,
        F: FrameAllocator + ?Sized,
    {
        let (_, count) = self.geometry::<M>();
        let first = match alloc.allocate_contiguous(count, Zone::Lowmem) {
            Some(first) => first,
            None => one_by_one(alloc, count)?,
        };
        // SAFETY: the `count` frames from `first` were just handed out by
        // `alloc` (one contiguous allocation, or checked consecutive), so
        // the caller owns them and nothing else uses them.
        let result = unsafe { self.build_on(mapper, first, count, FreshTables::Zero, tlb, alloc) };
        if result.is_err() {
            for k in 0..count as u64 {
                if let Some(f) = first.checked_add(k) {
                    // SAFETY: allocated above; a failed install changed
                    // nothing, so none of them is linked.
                    unsafe { alloc.deallocate_frame(f) };
                }
            }
        }
        result
    }

    /// Install `given` caller-owned consecutive frames from `first` (static
    /// tables, for an early fixmap that exists before any allocator). Their
    /// content is kept where the directory has no table yet (static tables
    /// start zeroed; an early table linked into a second hierarchy keeps its
    /// mappings), and replaced by a copy where it has one. `alloc` is only
    /// asked for a missing PAE PMD table.
    ///
    /// # Safety
    /// As for [`Mapper::install_pte_tables`] with [`FreshTables::Keep`]:
    /// the `given` frames from `first` are the caller's, used for nothing
    /// else (static tables in `.bss`, reserved for this), or tables of
    /// another hierarchy that are meant to be shared with this one and are
    /// kept alive while either links them.
    #[allow(unsafe_code)]
    pub unsafe fn build_static<M, A, H, T, F>(
        &self,
        mapper: &mut Mapper<M, A, H>,
        first: PhysFrame,
        given: usize,
        tlb: &T,
        alloc: &mut F,
    ) -> Result<(ContiguousWindow<M>, Replaced), WindowError>
    where
        M: PagingMode,
        A: TableAccess,
        H: TableHooks,
        T: TlbOps + ?Sized,
        F: FrameAllocator + ?Sized,
    {
        let (_, count) = self.geometry::<M>();
        if given < count {
            return Err(WindowError::TooFewTables {
                needed: count,
                given,
            });
        }
        // SAFETY: `build_static`'s caller made the same promise for these
        // frames (`count <= given`).
        unsafe { self.build_on(mapper, first, count, FreshTables::Keep, tlb, alloc) }
    }

    /// [`build_static`](Self::build_static) over tables no CPU running this
    /// program walks (the host model): safe, as
    /// [`Mapper::install_pte_tables_isolated`] is.
    #[allow(unsafe_code)]
    pub fn build_static_isolated<M, A, H, T, F>(
        &self,
        mapper: &mut Mapper<M, A, H>,
        first: PhysFrame,
        given: usize,
        tlb: &T,
        alloc: &mut F,
    ) -> Result<(ContiguousWindow<M>, Replaced), WindowError>
    where
        M: PagingMode,
        A: IsolatedTables,
        H: TableHooks,
        T: TlbOps + ?Sized,
        F: FrameAllocator + ?Sized,
    {
        // SAFETY: writes through an isolated access cannot touch this
        // program's memory or the tables its CPUs use.
        unsafe { self.build_static(mapper, first, given, tlb, alloc) }
    }

    /// # Safety
    /// As for [`Mapper::install_pte_tables`].
    #[allow(unsafe_code)]
    unsafe fn build_on<M, A, H, T, F>(
        &self,
        mapper: &mut Mapper<M, A, H>,
        first: PhysFrame,
        count: usize,
        fresh: FreshTables,
        tlb: &T,
        alloc: &mut F,
    ) -> Result<(ContiguousWindow<M>, Replaced), WindowError>
    where
        M: PagingMode,
        A: TableAccess,
        H: TableHooks,
        T: TlbOps + ?Sized,
        F: FrameAllocator + ?Sized,
    {
        let (start, _) = self.geometry::<M>();
        // SAFETY: `build_on`'s caller promised the frames.
        let replaced =
            unsafe { mapper.install_pte_tables(start, first, count, fresh, tlb, alloc)? };
        Ok((
            ContiguousWindow {
                start,
                tables: count,
                first_frame: first,
                features: mapper.features(),
                _mode: PhantomData,
            },
            replaced,
        ))
    }
}

/// Frames one at a time; refuse (giving them all back) at the first one
/// that does not follow its predecessor.
#[allow(unsafe_code)]
fn one_by_one<F: FrameAllocator + ?Sized>(
    alloc: &mut F,
    count: usize,
) -> Result<PhysFrame, WindowError> {
    let first = alloc
        .allocate_frame(Zone::Lowmem)
        .ok_or(WindowError::NoContiguousFrames { count })?;
    for k in 1..count as u64 {
        let expected = first.checked_add(k);
        let got = alloc.allocate_frame(Zone::Lowmem);
        if got.is_some() && got == expected {
            continue;
        }
        for j in 0..k {
            if let Some(f) = first.checked_add(j) {
                // SAFETY: handed out by `alloc` above, not used yet.
                unsafe { alloc.deallocate_frame(f) };
            }
        }
        return Err(match (got, expected) {
            (Some(got), Some(expected)) => {
                // SAFETY: handed out by `alloc` just now, not used.
                unsafe { alloc.deallocate_frame(got) };
                WindowError::Discontiguous { expected, got }
            }
            (Some(got), None) => {
                // SAFETY: handed out by `alloc` just now, not used.
                unsafe { alloc.deallocate_frame(got) };
                WindowError::NoContiguousFrames { count }
            }
            (None, _) => WindowError::NoContiguousFrames { count },
        });
    }
    Ok(first)
}
