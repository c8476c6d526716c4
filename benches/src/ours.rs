//! This workspace's mapper on host memory: single pages into existing
//! tables, translations, and whole ranges into fresh tables.

use core::marker::PhantomData;

use paging_core::{
    Entry, LargePages, MapFlags, Mapper, OffsetAccess, Page, PagingMode, PhysAddr, PhysFrame,
    VirtAddr,
};

use crate::host::{BumpFrames, HostMemory, frame_at};
use crate::{DATA_PA, FixtureError, PAGES, RANGE_BYTES, RANGE_VA, REGION_VA};

/// A hierarchy whose PTE tables for [`PAGES`] pages from [`REGION_VA`]
/// already exist (and map nothing): mapping page `i` writes one entry.
pub struct OursPages<M: PagingMode> {
    mapper: Mapper<M, OffsetAccess>,
    alloc: BumpFrames,
    // Last: dropped after the mapper that reaches it.
    memory: HostMemory,
}

impl<M: PagingMode> core::fmt::Debug for OursPages<M> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("OursPages")
            .field("mode", &M::NAME)
            .field("memory", &self.memory)
            .finish()
    }
}

fn page(i: usize) -> Page {
    Page::containing_address(VirtAddr::new(REGION_VA + (i as u32) * 4096))
}

impl<M: PagingMode> OursPages<M> {
    /// Build the tables (by mapping and unmapping every page once).
    pub fn new() -> Result<Self, FixtureError> {
        let memory = HostMemory::new(64);
        let mut alloc = BumpFrames::over(&memory);
        // SAFETY: `memory` is the struct's last field, so it outlives the
        // mapper holding this access.
        let access = unsafe { memory.access() };
        // SAFETY: the tables live in a host buffer no CPU walks.
        let mut mapper = unsafe {
            Mapper::<M, _>::create(access, paging_core::CpuFeatures::full::<M>(), &mut alloc)
        }
        .map_err(FixtureError::from)?;
        mapper
            .map_range(
                VirtAddr::new(REGION_VA),
                paging_core::PhysAddr::new(DATA_PA).map_err(FixtureError::from)?,
                PAGES as u64 * 4096,
                MapFlags::KERNEL_RW,
                LargePages::Avoid,
                &mut alloc,
            )
            .map_err(FixtureError::from)?
            .ignore();
        let mut fixture = Self {
            mapper,
            alloc,
            memory,
        };
        fixture.unmap_pages(0..PAGES)?;
        Ok(fixture)
    }

    /// Map pages `pages` (indexes below [`PAGES`]) to their data frames.
    /// The flush tokens are ignored: no CPU uses these tables.
    #[inline]
    pub fn map_pages(&mut self, pages: core::ops::Range<usize>) -> Result<(), FixtureError> {
        for i in pages {
            let frame =
                PhysFrame::containing_address(PhysAddr::new_truncate(DATA_PA + i as u64 * 4096));
            self.mapper
                .map(page(i), frame, MapFlags::KERNEL_RW, &mut self.alloc)
                .map_err(FixtureError::from)?
                .ignore();
        }
        Ok(())
    }

    /// Unmap pages `pages`.
    #[inline]
    pub fn unmap_pages(&mut self, pages: core::ops::Range<usize>) -> Result<(), FixtureError> {
        for i in pages {
            let (_, flush) = self
                .mapper
                .unmap(page(i).start_address())
                .map_err(FixtureError::from)?;
            flush.ignore();
        }
        Ok(())
    }

    /// Translate one address in each page of `pages`; returns the sum of
    /// the physical addresses (so the work cannot be optimised away).
    #[inline]
    pub fn translate_pages(&self, pages: core::ops::Range<usize>) -> Result<u64, FixtureError> {
        let mut sum = 0u64;
        for i in pages {
            let va = VirtAddr::new(REGION_VA + (i as u32) * 4096 + 0x123);
            let t = self.mapper.translate(va).map_err(FixtureError::from)?;
            sum = sum.wrapping_add(t.phys_addr().as_u64());
        }
        Ok(sum)
    }

    /// Frames the tables took.
    pub fn table_frames(&self) -> u64 {
        self.alloc.used()
    }
}

/// Room for a fresh hierarchy mapping [`RANGE_BYTES`] in 4 KiB pages.
pub struct OursRange<M: PagingMode> {
    access: OffsetAccess,
    alloc: BumpFrames,
    // Last: dropped after everything that reaches it.
    memory: HostMemory,
    _mode: PhantomData<M>,
}

impl<M: PagingMode> core::fmt::Debug for OursRange<M> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("OursRange")
            .field("mode", &M::NAME)
            .field("memory", &self.memory)
            .finish()
    }
}

impl<M: PagingMode> OursRange<M> {
    /// Enough memory for the PGD, a PMD table and every PTE table.
    pub fn new() -> Self {
        let tables = (RANGE_BYTES / 4096) as usize / M::PTRS_PER_PTE;
        let memory = HostMemory::new(tables + 16);
        let alloc = BumpFrames::over(&memory);
        // SAFETY: `memory` is the struct's last field, so it outlives every
        // use of this access (which never leaves the struct).
        let access = unsafe { memory.access() };
        Self {
            access,
            alloc,
            memory,
            _mode: PhantomData,
        }
    }

    /// Forget the previous hierarchy: the allocator starts over.
    pub fn reset(&mut self) {
        self.alloc.reset();
    }

    /// Create an empty hierarchy and map the whole range into it with one
    /// `map_range` call (4 KiB pages only). Returns the frames taken.
    #[inline]
    pub fn map_range(&mut self) -> Result<u64, FixtureError> {
        // SAFETY: the tables live in a host buffer no CPU walks.
        let mut mapper = unsafe {
            Mapper::<M, _>::create(
                self.access,
                paging_core::CpuFeatures::full::<M>(),
                &mut self.alloc,
            )
        }
        .map_err(FixtureError::from)?;
        mapper
            .map_range(
                VirtAddr::new(RANGE_VA),
                paging_core::PhysAddr::new(DATA_PA).map_err(FixtureError::from)?,
                RANGE_BYTES,
                MapFlags::KERNEL_RW,
                LargePages::Avoid,
                &mut self.alloc,
            )
            .map_err(FixtureError::from)?
            .ignore();
        Ok(self.alloc.used())
    }

    /// The hierarchy built by the last [`map_range`](Self::map_range).
    fn last(&self) -> Result<Mapper<M, OffsetAccess>, FixtureError> {
        // The PGD is the first frame the allocator handed out.
        let root = frame_at(4096).ok_or(FixtureError::Frame)?;
        // SAFETY: the tables live in a host buffer no CPU walks.
        Ok(unsafe {
            Mapper::<M, _>::new(
                root.start_address(),
                self.access,
                paging_core::CpuFeatures::full::<M>(),
            )
        }?)
    }

    /// What the last hierarchy says about `va`.
    pub fn translate_last(&self, va: VirtAddr) -> Result<u64, FixtureError> {
        Ok(self.last()?.translate(va)?.phys_addr().as_u64())
    }

    /// The raw PMD entry (PDE in 2-level mode) and PTE the last hierarchy
    /// has for `va`.
    pub fn entries_last(&self, va: VirtAddr) -> Result<(u64, u64), FixtureError> {
        let walk = self.last()?.walk(va)?;
        let pmd = walk.pmd.ok_or(FixtureError::Frame)?.1.raw();
        let pte = walk.pte.ok_or(FixtureError::Frame)?.1.raw();
        Ok((pmd, pte))
    }
}

impl<M: PagingMode> Default for OursRange<M> {
    fn default() -> Self {
        Self::new()
    }
}
