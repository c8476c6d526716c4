//! The frame allocator the mapper (and fixmap, kmap) take tables from.

use crate::addr::PhysFrame;

/// Where a frame should come from.
///
/// On i386 only *lowmem* (below ~896 MiB) is permanently mapped in the kernel;
/// *highmem* frames must be temporarily mapped (kmap) to be touched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Zone {
    /// Must be lowmem: the kernel reaches it through the direct map.
    Lowmem,
    /// Prefer highmem, fall back to lowmem (PTE tables with pte-highmem,
    /// user pages).
    PreferHighmem,
    /// Anywhere.
    Any,
}

/// Hands out and takes back 4 KiB physical frames.
///
/// Frames handed out are owned by the caller until given back. Their content
/// is unspecified: the mapper zeroes every frame before using it as a table.
pub trait FrameAllocator {
    /// One frame from `zone`, or `None` if that zone is exhausted.
    fn allocate_frame(&mut self, zone: Zone) -> Option<PhysFrame>;

    /// `count` physically contiguous frames from `zone`, returning the first,
    /// or `None` if no such run is free. The default refuses: an allocator
    /// that cannot guarantee contiguity must not pretend to.
    fn allocate_contiguous(&mut self, count: usize, zone: Zone) -> Option<PhysFrame> {
        let _ = (count, zone);
        None
    }

    /// Give `frame` back.
    fn deallocate_frame(&mut self, frame: PhysFrame);
}

impl<A: FrameAllocator + ?Sized> FrameAllocator for &mut A {
    fn allocate_frame(&mut self, zone: Zone) -> Option<PhysFrame> {
        (**self).allocate_frame(zone)
    }
    fn allocate_contiguous(&mut self, count: usize, zone: Zone) -> Option<PhysFrame> {
        (**self).allocate_contiguous(count, zone)
    }
    fn deallocate_frame(&mut self, frame: PhysFrame) {
        (**self).deallocate_frame(frame)
    }
}
