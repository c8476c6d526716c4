//! Host stand-ins for physical memory and a frame allocator.

#![allow(dead_code)]

use std::alloc::{Layout, alloc_zeroed, dealloc};
use std::vec::Vec;

use paging_core::{FrameAllocator, OffsetAccess, PhysFrame, Zone};

/// Page-aligned host memory used as physical memory from address 0.
pub struct HostRam {
    base: *mut u8,
    layout: Layout,
}

impl HostRam {
    pub fn new(frames: usize) -> Self {
        let layout = Layout::from_size_align(frames * 4096, 4096).unwrap();
        // SAFETY: the layout has a non-zero size.
        let base = unsafe { alloc_zeroed(layout) };
        assert!(!base.is_null());
        Self { base, layout }
    }

    pub fn len(&self) -> u64 {
        self.layout.size() as u64
    }

    /// Table access over this memory. The `HostRam` must outlive its use.
    pub fn access(&self) -> OffsetAccess {
        // SAFETY: every frame below `len` is inside the allocation, which
        // lives until `self` is dropped (tests drop mappers first); tests
        // only touch it volatilely.
        unsafe { OffsetAccess::new(self.base as usize, self.len()) }
    }

    pub fn read32(&self, pa: u64) -> u32 {
        assert!(pa + 4 <= self.len() && pa.is_multiple_of(4));
        // SAFETY: in bounds and aligned (checked above).
        unsafe { self.base.add(pa as usize).cast::<u32>().read_volatile() }
    }

    pub fn write32(&self, pa: u64, value: u32) {
        assert!(pa + 4 <= self.len() && pa.is_multiple_of(4));
        // SAFETY: in bounds and aligned (checked above).
        unsafe {
            self.base
                .add(pa as usize)
                .cast::<u32>()
                .write_volatile(value)
        }
    }

    pub fn snapshot(&self) -> Vec<u32> {
        (0..self.len() / 4).map(|w| self.read32(w * 4)).collect()
    }
}

impl Drop for HostRam {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { dealloc(self.base, self.layout) }
    }
}

/// Bump allocator over frames `[first, end)`, reusing frames given back.
pub struct TestAlloc {
    next: u64,
    end: u64,
    free: Vec<PhysFrame>,
    pub in_use: usize,
}

impl TestAlloc {
    pub fn new(first: u64, end: u64) -> Self {
        Self {
            next: first,
            end,
            free: Vec::new(),
            in_use: 0,
        }
    }
}

// SAFETY: hands out frames of the test's own host buffer, each at most once
// until it is given back.
unsafe impl FrameAllocator for TestAlloc {
    fn allocate_frame(&mut self, _zone: Zone) -> Option<PhysFrame> {
        let frame = match self.free.pop() {
            Some(f) => f,
            None if self.next < self.end => {
                self.next += 1;
                PhysFrame::from_number(self.next - 1).ok()?
            }
            None => return None,
        };
        self.in_use += 1;
        Some(frame)
    }

    unsafe fn deallocate_frame(&mut self, frame: PhysFrame) {
        assert!(!self.free.contains(&frame), "double free of {frame:?}");
        self.in_use -= 1;
        self.free.push(frame);
    }
}

/// A `TlbOps` that records what it was asked to do.
#[derive(Default)]
pub struct TlbLog(pub std::cell::RefCell<Vec<(&'static str, u32)>>);

impl paging_core::TlbOps for TlbLog {
    fn flush_page(&self, va: paging_core::VirtAddr) {
        self.0.borrow_mut().push(("page", va.as_u32()));
    }
    fn flush_all(&self) {
        self.0.borrow_mut().push(("all", 0));
    }
    fn flush_everything(&self) {
        self.0.borrow_mut().push(("everything", 0));
    }
}
