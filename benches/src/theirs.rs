//! The peer: the `x86_64` crate's `OffsetPageTable` on the same kind of host
//! memory, doing the same work as [`OursPages`](crate::OursPages).
//!
//! Its physical addresses are offsets into a [`HostMemory`] buffer and its
//! `phys_offset` is the buffer's address, exactly as ours. It is a 4-level
//! (x86-64) hierarchy: that is the crate's only format, and the comparison
//! is the one the issue asks for (the same operation, on the same host).

use x86_64::structures::paging::{
    Mapper, OffsetPageTable, Page, PageTable, PageTableFlags, PhysFrame, Size4KiB, Translate,
};
use x86_64::{PhysAddr, VirtAddr};

use crate::host::{BumpFrames, FRAME_BYTES, HostMemory};
use crate::{DATA_PA, FixtureError, PAGES, REGION_VA};

const FLAGS: PageTableFlags = PageTableFlags::PRESENT.union(PageTableFlags::WRITABLE);

/// An `OffsetPageTable` whose tables for [`PAGES`] pages from
/// [`REGION_VA`] already exist (and map nothing).
pub struct TheirPages {
    l4: *mut PageTable,
    alloc: BumpFrames,
    // Last: dropped after every use of `l4`.
    memory: HostMemory,
}

impl core::fmt::Debug for TheirPages {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("TheirPages")
            .field("memory", &self.memory)
            .finish()
    }
}

fn page(i: usize) -> Page<Size4KiB> {
    Page::containing_address(VirtAddr::new(u64::from(REGION_VA) + i as u64 * 4096))
}

fn data_frame(i: usize) -> PhysFrame<Size4KiB> {
    PhysFrame::containing_address(PhysAddr::new(DATA_PA + i as u64 * 4096))
}

fn error(e: impl core::fmt::Debug) -> FixtureError {
    FixtureError::Failed(format!("x86_64: {e:?}"))
}

impl TheirPages {
    /// Build the tables (by mapping and unmapping every page once).
    pub fn new() -> Result<Self, FixtureError> {
        let memory = HostMemory::new(64);
        let mut alloc = BumpFrames::over(&memory);
        let l4_frame = alloc.take_one().ok_or(FixtureError::Frame)?;
        let l4 = (memory.base() + l4_frame as usize * FRAME_BYTES) as *mut PageTable;
        let mut fixture = Self { l4, alloc, memory };
        fixture.map_pages(0..PAGES)?;
        fixture.unmap_pages(0..PAGES)?;
        Ok(fixture)
    }

    /// The mapper, built on the spot (it is two words).
    #[inline]
    fn table(&mut self) -> OffsetPageTable<'_> {
        // SAFETY: `l4` is a zeroed-then-initialised, 4 KiB aligned frame of
        // `memory`, borrowed mutably only through `self` for the returned
        // lifetime; every table it reaches is at `base + physical address`
        // inside `memory`, which lives as long as `self`.
        unsafe { OffsetPageTable::new(&mut *self.l4, VirtAddr::new(self.memory.base() as u64)) }
    }

    /// Map pages `pages` (indexes below [`PAGES`]) with `map_to`, ignoring
    /// the flush tokens.
    #[inline]
    pub fn map_pages(&mut self, pages: core::ops::Range<usize>) -> Result<(), FixtureError> {
        let l4 = self.l4;
        let offset = VirtAddr::new(self.memory.base() as u64);
        // SAFETY: as in `table`; the allocator is a separate field.
        let mut table = unsafe { OffsetPageTable::new(&mut *l4, offset) };
        for i in pages {
            // SAFETY: as in `new`: the data frames are never touched.
            unsafe { table.map_to(page(i), data_frame(i), FLAGS, &mut self.alloc) }
                .map_err(error)?
                .ignore();
        }
        Ok(())
    }

    /// Unmap pages `pages`.
    #[inline]
    pub fn unmap_pages(&mut self, pages: core::ops::Range<usize>) -> Result<(), FixtureError> {
        let mut table = self.table();
        for i in pages {
            let (_, flush) = table.unmap(page(i)).map_err(error)?;
            flush.ignore();
        }
        Ok(())
    }

    /// `translate_addr` of one address in each page of `pages`; returns the
    /// sum of the physical addresses.
    #[inline]
    pub fn translate_pages(&mut self, pages: core::ops::Range<usize>) -> Result<u64, FixtureError> {
        let table = self.table();
        let mut sum = 0u64;
        for i in pages {
            let va = VirtAddr::new(u64::from(REGION_VA) + i as u64 * 4096 + 0x123);
            let pa = table.translate_addr(va).ok_or(FixtureError::Frame)?;
            sum = sum.wrapping_add(pa.as_u64());
        }
        Ok(sum)
    }
}
