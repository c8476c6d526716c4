//! The early page-table buffer: a bump allocator over a physical range set
//! aside for boot page tables, whose unused tail is handed back properly.
//!
//! Boot code reserves `[start, top)` for the tables it is about to build,
//! allocates from `start` upwards (`end` is the first unused frame), and when
//! it is done keeps `[start, end)` reserved and returns `[end, top)`. Under a
//! hypervisor that made the whole buffer read-only up front (because it would
//! hold page tables), the tail must be made writable again *before* anyone
//! else uses it: that is what [`PgtBuf::finish`] does through
//! [`TableHooks::frames_returned`]. The 2011 Xen boot crash was exactly this
//! tail, handed to another subsystem while still read-only.

use crate::addr::PhysFrame;
use crate::alloc::{FrameAllocator, Zone};
use crate::hooks::TableHooks;

/// A bump allocator over the frames `[start, top)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgtBuf {
    start: u64,
    end: u64,
    top: u64,
}

/// What [`PgtBuf::finish`] leaves: frames to keep reserved (they hold
/// tables) and frames given back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PgtBufReport {
    /// First frame used (`start`).
    pub start: u64,
    /// First unused frame (`end`): `[start, end)` stays reserved.
    pub end: u64,
    /// One past the buffer (`top`): `[end, top)` was returned.
    pub top: u64,
}

impl PgtBufReport {
    /// Frames that hold tables and stay reserved.
    pub fn reserved(&self) -> impl Iterator<Item = PhysFrame> + use<> {
        (self.start..self.end).filter_map(|n| PhysFrame::from_number(n).ok())
    }

    /// Frames handed back, now free for any use.
    pub fn returned(&self) -> impl Iterator<Item = PhysFrame> + use<> {
        (self.end..self.top).filter_map(|n| PhysFrame::from_number(n).ok())
    }
}

impl PgtBuf {
    /// A buffer over `count` frames from `first`.
    ///
    /// # Safety
    /// The frames `first .. first + count` must be unused memory (the boot
    /// code's page-table area) for as long as the buffer hands them out:
    /// tables are written into them from safe code.
    pub const unsafe fn new(first: PhysFrame, count: u64) -> Self {
        let start = first.number();
        Self {
            start,
            end: start,
            top: start.saturating_add(count),
        }
    }

    /// First frame of the buffer.
    pub fn start(&self) -> u64 {
        self.start
    }

    /// First unused frame.
    pub fn end(&self) -> u64 {
        self.end
    }

    /// One past the last frame.
    pub fn top(&self) -> u64 {
        self.top
    }

    /// Frames still free.
    pub fn remaining(&self) -> u64 {
        self.top - self.end
    }

    /// Boot table building is over: tell `hooks` the unused tail is no
    /// longer set aside for tables (so a hypervisor makes it writable), and
    /// report what to keep reserved and what the frame allocator may take.
    pub fn finish<H: TableHooks + ?Sized>(self, hooks: &H) -> PgtBufReport {
        if self.end < self.top
            && let Ok(first) = PhysFrame::from_number(self.end)
        {
            hooks.frames_returned(first, self.top - self.end);
        }
        PgtBufReport {
            start: self.start,
            end: self.end,
            top: self.top,
        }
    }
}

// SAFETY: hands out each frame of `[start, top)` once, which `PgtBuf::new`'s
// caller promised is unused memory; only the newest can come back.
unsafe impl FrameAllocator for PgtBuf {
    /// The next frame of the buffer, whatever the zone (the buffer is
    /// lowmem by construction).
    fn allocate_frame(&mut self, _zone: Zone) -> Option<PhysFrame> {
        if self.end == self.top {
            return None;
        }
        let frame = PhysFrame::from_number(self.end).ok()?;
        self.end += 1;
        Some(frame)
    }

    fn allocate_contiguous(&mut self, count: usize, _zone: Zone) -> Option<PhysFrame> {
        if (count as u64) > self.remaining() || count == 0 {
            return None;
        }
        let frame = PhysFrame::from_number(self.end).ok()?;
        self.end += count as u64;
        Some(frame)
    }

    /// Only the most recent frame can be given back (a bump allocator); any
    /// other frame stays used until `finish`.
    unsafe fn deallocate_frame(&mut self, frame: PhysFrame) {
        if frame.number() + 1 == self.end && self.end > self.start {
            self.end -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::cell::Cell;

    #[derive(Default)]
    struct Returned(Cell<Option<(u64, u64)>>);
    impl TableHooks for Returned {
        fn frames_returned(&self, first: PhysFrame, count: u64) {
            self.0.set(Some((first.number(), count)));
        }
    }

    #[test]
    fn bump_allocates_then_returns_its_tail() {
        // SAFETY: the frames are never touched; only the bookkeeping is.
        let mut b = unsafe { PgtBuf::new(PhysFrame::from_number(0x100).unwrap(), 8) };
        assert_eq!(b.allocate_frame(Zone::Lowmem).unwrap().number(), 0x100);
        assert_eq!(b.allocate_contiguous(3, Zone::Any).unwrap().number(), 0x101);
        assert_eq!(b.allocate_contiguous(5, Zone::Any), None, "only 4 left");
        let last = b.allocate_frame(Zone::Any).unwrap();
        // SAFETY: the frames are never touched; only the bookkeeping is.
        unsafe { b.deallocate_frame(last) };
        // SAFETY: the frames are never touched; only the bookkeeping is.
        unsafe { b.deallocate_frame(PhysFrame::from_number(0x100).unwrap()) };
        assert_eq!((b.end(), b.remaining()), (0x104, 4));
        let hooks = Returned::default();
        let report = b.finish(&hooks);
        assert_eq!(hooks.0.get(), Some((0x104, 4)));
        assert_eq!(report.reserved().count(), 4);
        assert_eq!(
            report
                .returned()
                .map(|f| f.number())
                .collect::<std::vec::Vec<_>>(),
            [0x104, 0x105, 0x106, 0x107]
        );
    }

    #[test]
    fn a_full_buffer_returns_nothing() {
        // SAFETY: the frame is never touched; only the bookkeeping is.
        let mut b = unsafe { PgtBuf::new(PhysFrame::from_number(7).unwrap(), 1) };
        assert!(b.allocate_frame(Zone::Lowmem).is_some());
        assert!(b.allocate_frame(Zone::Lowmem).is_none());
        let hooks = Returned::default();
        assert_eq!(b.finish(&hooks).returned().count(), 0);
        assert_eq!(hooks.0.get(), None);
    }
}
