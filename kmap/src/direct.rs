//! Lowmem: pages the kernel reaches through its direct map need no kmap.

use paging_core::{PAGE_SIZE, PhysFrame, VirtAddr};

/// Where the kernel's direct map of lowmem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirectMap {
    /// Virtual address of physical address 0 (`PAGE_OFFSET`, 0xC000_0000 on i386).
    pub page_offset: u32,
    /// First physical address that is *not* directly mapped (the start of
    /// highmem, typically 896 MiB).
    pub lowmem_limit: u64,
    /// Debug mode: map lowmem pages through slots too, so code that assumes
    /// every page is lowmem fails on a small machine as it would on a big
    /// one (Linux's `DEBUG_KMAP_LOCAL_FORCE_MAP`).
    pub force_map: bool,
}

impl DirectMap {
    /// A direct map at `page_offset` of physical `[0, lowmem_limit)`.
    pub const fn new(page_offset: u32, lowmem_limit: u64) -> Self {
        Self {
            page_offset,
            lowmem_limit,
            force_map: false,
        }
    }

    /// The same, with forced mapping of lowmem pages turned on or off.
    pub const fn with_force_map(mut self, force_map: bool) -> Self {
        self.force_map = force_map;
        self
    }

    /// Whether `frame` is lowmem (directly mapped), whatever `force_map` says.
    pub const fn is_lowmem(&self, frame: PhysFrame) -> bool {
        frame.start_address().as_u64() + PAGE_SIZE <= self.lowmem_limit
    }

    /// The direct-map address of `frame`, if it has one and forced mapping
    /// is off.
    pub fn direct_va(&self, frame: PhysFrame) -> Option<VirtAddr> {
        if self.force_map || !self.is_lowmem(frame) {
            return None;
        }
        let va = self.page_offset as u64 + frame.start_address().as_u64();
        (va <= u32::MAX as u64).then(|| VirtAddr::new(va as u32))
    }
}
