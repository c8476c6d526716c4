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
///
/// # Safety
/// The mapper, fixmap and kmap write page tables into the frames an
/// allocator returns, from safe code. So an implementation must only return
/// frames that nothing else uses (no Rust object, no other table, no device
/// buffer) and must not return a frame again until it has been given back
/// with [`deallocate_frame`](Self::deallocate_frame);
/// [`allocate_contiguous`](Self::allocate_contiguous) must return the first
/// of `count` such frames that are really consecutive. Returning a frame
/// beyond what the paging mode can address is allowed: the mapper checks
/// and gives it back. See `docs/safety.md`.
pub unsafe trait FrameAllocator {
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
    ///
    /// An allocator may hand `frame` out again at once, and the mapper then
    /// writes a table into it from safe code; that is why this is `unsafe`,
    /// like `GlobalAlloc::dealloc` (issue 19, item 6: giving back a live
    /// table made the next `map` link it as a second table).
    ///
    /// # Safety
    /// `frame` is owned by the caller (this allocator handed it out and it
    /// has not been given back since, or the allocator documents that it
    /// accepts frames from elsewhere) and nothing uses it any more: no page
    /// table links it or maps it, no TLB or paging-structure cache may still
    /// hold it as a table (the flush is done), no Rust object or device uses
    /// its memory. The caller stops using it with this call.
    ///
    /// Calling it without `unsafe` does not compile:
    ///
    /// ```compile_fail,E0133
    /// use paging_core::{FrameAllocator, NoFrames, PhysAddr, PhysFrame};
    /// let frame = PhysFrame::from_start_address(PhysAddr::new(0x1000).unwrap()).unwrap();
    /// NoFrames.deallocate_frame(frame);
    /// ```
    unsafe fn deallocate_frame(&mut self, frame: PhysFrame);
}

// SAFETY: every frame comes from `A`, which keeps the contract.
unsafe impl<A: FrameAllocator + ?Sized> FrameAllocator for &mut A {
    fn allocate_frame(&mut self, zone: Zone) -> Option<PhysFrame> {
        (**self).allocate_frame(zone)
    }
    fn allocate_contiguous(&mut self, count: usize, zone: Zone) -> Option<PhysFrame> {
        (**self).allocate_contiguous(count, zone)
    }
    unsafe fn deallocate_frame(&mut self, frame: PhysFrame) {
        // SAFETY: the caller keeps the contract, forwarded unchanged.
        unsafe { (**self).deallocate_frame(frame) }
    }
}

/// A frame allocator with nothing in it: what exists before the real one
/// (early tables built from static memory). Anything that needs a frame
/// from it fails with a typed error.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NoFrames;

// SAFETY: it never returns a frame.
unsafe impl FrameAllocator for NoFrames {
    fn allocate_frame(&mut self, _zone: Zone) -> Option<PhysFrame> {
        None
    }

    unsafe fn deallocate_frame(&mut self, _frame: PhysFrame) {}
}
