//! Host memory standing in for physical memory, and a bump frame allocator
//! over it that serves both this workspace's mapper and the `x86_64` crate.
//!
//! Physical address `p` of a benchmark is byte `p` of a [`HostMemory`]
//! buffer: the tables are real memory, read and written by real loads and
//! stores, at `virtual = buffer + physical` (an offset mapping, like a
//! kernel's direct map). Data pages that are mapped but never touched get
//! physical addresses past the end of the buffer.

use core::ptr::NonNull;

use paging_core::{FrameAllocator, OffsetAccess, PhysAddr, PhysFrame, Zone};

/// Bytes in one frame.
pub const FRAME_BYTES: usize = 4096;

/// One 4 KiB, 4 KiB-aligned frame of host memory.
#[repr(C, align(4096))]
#[derive(Clone, Copy)]
struct Frame([u8; FRAME_BYTES]);

/// A zeroed, page-aligned host buffer of whole frames.
///
/// It is reached only through raw pointers (table accessors), never through
/// references, so tables built in it may be read and written by several
/// accessors (ours, the `x86_64` crate's) without aliasing references.
pub struct HostMemory {
    frames: NonNull<Frame>,
    len: usize,
}

impl core::fmt::Debug for HostMemory {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("HostMemory")
            .field("base", &self.base())
            .field("frames", &self.len)
            .finish()
    }
}

impl HostMemory {
    /// `frames` zeroed frames (at least one).
    pub fn new(frames: usize) -> Self {
        let boxed: Box<[Frame]> = vec![Frame([0; FRAME_BYTES]); frames.max(1)].into_boxed_slice();
        let len = boxed.len();
        let raw = Box::into_raw(boxed).cast::<Frame>();
        // A `Box` never holds a null pointer.
        let frames = NonNull::new(raw).unwrap_or(NonNull::dangling());
        Self { frames, len }
    }

    /// Host address of physical address 0.
    pub fn base(&self) -> usize {
        self.frames.as_ptr() as usize
    }

    /// Number of frames.
    pub fn frames(&self) -> usize {
        self.len
    }

    /// First physical address past the buffer.
    pub fn limit(&self) -> u64 {
        (self.len * FRAME_BYTES) as u64
    }

    /// The offset access this workspace's mapper uses to reach tables here.
    ///
    /// # Safety
    /// The returned value (and every copy) must not be used after `self`
    /// is dropped. Owners keep the memory in their last field, so it is
    /// dropped after everything that holds an access to it.
    pub unsafe fn access(&self) -> OffsetAccess {
        // SAFETY: every frame below `limit()` is inside this live, 4 KiB
        // aligned allocation, which is only ever reached through raw
        // pointers (volatile/atomic table accesses); the caller keeps the
        // allocation alive for as long as the access is used.
        unsafe { OffsetAccess::new(self.base(), self.limit()) }
    }
}

impl Drop for HostMemory {
    fn drop(&mut self) {
        let slice = core::ptr::slice_from_raw_parts_mut(self.frames.as_ptr(), self.len);
        // SAFETY: `slice` is exactly the pointer and length `Box::into_raw`
        // gave back in `new`, and it is freed only here, once.
        drop(unsafe { Box::from_raw(slice) });
    }
}

/// Hands out the frames of `[first, end)` in order; frames given back are
/// not reused (a benchmark resets the whole allocator instead).
#[derive(Debug, Clone)]
pub struct BumpFrames {
    first: u64,
    next: u64,
    end: u64,
}

impl BumpFrames {
    /// Frames numbered `first..end`.
    pub fn new(first: u64, end: u64) -> Self {
        Self {
            first,
            next: first,
            end,
        }
    }

    /// Every frame of `memory` but frame 0.
    pub fn over(memory: &HostMemory) -> Self {
        Self::new(1, memory.frames() as u64)
    }

    /// Hand out every frame again, from the first.
    pub fn reset(&mut self) {
        self.next = self.first;
    }

    /// Frames handed out since the last reset.
    pub fn used(&self) -> u64 {
        self.next - self.first
    }

    /// The number of the next frame, taken.
    pub fn take_one(&mut self) -> Option<u64> {
        self.take(1)
    }

    fn take(&mut self, count: u64) -> Option<u64> {
        let start = self.next;
        let end = start.checked_add(count)?;
        if end > self.end {
            return None;
        }
        self.next = end;
        Some(start)
    }
}

// SAFETY: hands out each frame of its own host buffer once, in order, and
// takes none back: no frame is ever in two hands.
unsafe impl FrameAllocator for BumpFrames {
    fn allocate_frame(&mut self, _zone: Zone) -> Option<PhysFrame> {
        self.take(1).and_then(|n| PhysFrame::from_number(n).ok())
    }

    fn allocate_contiguous(&mut self, count: usize, _zone: Zone) -> Option<PhysFrame> {
        self.take(count as u64)
            .and_then(|n| PhysFrame::from_number(n).ok())
    }

    unsafe fn deallocate_frame(&mut self, _frame: PhysFrame) {}
}

// SAFETY: every frame handed out is a distinct, otherwise unused frame of
// the host buffer (the bump pointer never goes back except on `reset`,
// which benchmarks call only after discarding every table).
unsafe impl x86_64::structures::paging::FrameAllocator<x86_64::structures::paging::Size4KiB>
    for BumpFrames
{
    fn allocate_frame(
        &mut self,
    ) -> Option<x86_64::structures::paging::PhysFrame<x86_64::structures::paging::Size4KiB>> {
        let n = self.take(1)?;
        x86_64::structures::paging::PhysFrame::from_start_address(x86_64::PhysAddr::new(
            n * FRAME_BYTES as u64,
        ))
        .ok()
    }
}

/// The 4 KiB frame at physical address `addr` (page aligned).
pub fn frame_at(addr: u64) -> Option<PhysFrame> {
    PhysFrame::from_start_address(PhysAddr::new(addr).ok()?).ok()
}
