//! Ranges of 4 KiB pages and frames: `start..end`, end excluded, iterable.
//!
//! ```
//! use paging_core::{Page, PageRange, PhysFrame, FrameRange, VirtAddr};
//!
//! let first = Page::containing_address(VirtAddr::new(0xC000_0000));
//! let pages = PageRange::new(first, 4);
//! assert_eq!(pages.len(), 4);
//! assert_eq!(pages.bytes(), 0x4000);
//! assert_eq!(pages.end_address(), Some(VirtAddr::new(0xC000_4000)));
//! let starts: Vec<u32> = pages.map(|p| p.start_address().as_u32()).collect();
//! assert_eq!(starts, [0xC000_0000, 0xC000_1000, 0xC000_2000, 0xC000_3000]);
//!
//! let frames = FrameRange::new(PhysFrame::from_number(0x100).unwrap(), 2);
//! assert!(frames.contains(PhysFrame::from_number(0x101).unwrap()));
//! assert!(!frames.contains(PhysFrame::from_number(0x102).unwrap()));
//! ```

use core::iter::FusedIterator;

use crate::addr::{PAGE_SIZE, Page, PhysAddr, PhysFrame, VirtAddr};

/// `count` consecutive 4 KiB pages from `start`, clipped at 4 GiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PageRange {
    start: Page,
    count: u32,
}

impl PageRange {
    /// `count` pages from `start`; pages that would lie past 4 GiB are left
    /// out (the range is clipped, never wrapped).
    pub const fn new(start: Page, count: u32) -> Self {
        let room = (1 << 20) - start.number();
        Self {
            start,
            count: if count < room { count } else { room },
        }
    }

    /// The pages covering `[start, start + len)` (`start` rounded down,
    /// the end rounded up), clipped at 4 GiB.
    pub const fn covering(start: VirtAddr, len: u64) -> Self {
        let first = Page::containing_address(start);
        let end = start.as_u64() - first.start_address().as_u64() + len;
        let count = end.div_ceil(PAGE_SIZE);
        Self::new(
            first,
            if count > u32::MAX as u64 {
                u32::MAX
            } else {
                count as u32
            },
        )
    }

    /// The first page (even if the range is empty).
    pub const fn start(&self) -> Page {
        self.start
    }

    /// The number of pages left.
    pub const fn len(&self) -> u32 {
        self.count
    }

    /// Whether no page is left.
    pub const fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The size of the range in bytes.
    pub const fn bytes(&self) -> u64 {
        self.count as u64 * PAGE_SIZE
    }

    /// The first address past the range, or `None` if the range reaches
    /// the end of the 4 GiB space.
    pub const fn end_address(&self) -> Option<VirtAddr> {
        self.start.start_address().checked_add(self.bytes())
    }

    /// Whether `page` is in the range.
    pub const fn contains(&self, page: Page) -> bool {
        page.number() >= self.start.number()
            && ((page.number() - self.start.number()) as u64) < self.count as u64
    }
}

impl Iterator for PageRange {
    type Item = Page;

    fn next(&mut self) -> Option<Page> {
        if self.count == 0 {
            return None;
        }
        let page = self.start;
        self.count -= 1;
        if let Some(next) = self.start.checked_add(1) {
            self.start = next;
        }
        Some(page)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.count as usize, Some(self.count as usize))
    }
}

impl ExactSizeIterator for PageRange {}
impl FusedIterator for PageRange {}

/// `count` consecutive 4 KiB physical frames from `start`, clipped at the
/// 52-bit limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FrameRange {
    start: PhysFrame,
    count: u64,
}

impl FrameRange {
    /// `count` frames from `start`, clipped at the 52-bit limit.
    pub const fn new(start: PhysFrame, count: u64) -> Self {
        let room = (1 << 40) - start.number();
        Self {
            start,
            count: if count < room { count } else { room },
        }
    }

    /// The first frame (even if the range is empty).
    pub const fn start(&self) -> PhysFrame {
        self.start
    }

    /// The number of frames left.
    pub const fn len(&self) -> u64 {
        self.count
    }

    /// Whether no frame is left.
    pub const fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The first address past the range.
    pub const fn end_address(&self) -> PhysAddr {
        PhysAddr::new_truncate(self.start.start_address().as_u64() + self.count * PAGE_SIZE)
    }

    /// Whether `frame` is in the range.
    pub const fn contains(&self, frame: PhysFrame) -> bool {
        frame.number() >= self.start.number() && frame.number() - self.start.number() < self.count
    }
}

impl Iterator for FrameRange {
    type Item = PhysFrame;

    fn next(&mut self) -> Option<PhysFrame> {
        if self.count == 0 {
            return None;
        }
        let frame = self.start;
        self.count -= 1;
        if let Some(next) = self.start.checked_add(1) {
            self.start = next;
        }
        Some(frame)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = usize::try_from(self.count).unwrap_or(usize::MAX);
        (n, usize::try_from(self.count).ok())
    }
}

impl FusedIterator for FrameRange {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_clip_at_the_end_of_their_space_instead_of_wrapping() {
        let last = Page::containing_address(VirtAddr::new(0xFFFF_F000));
        let r = PageRange::new(last, 5);
        assert_eq!(r.len(), 1);
        assert_eq!(r.end_address(), None);
        assert_eq!(r.collect::<std::vec::Vec<_>>(), [last]);
        let top = PhysFrame::from_number((1 << 40) - 2).unwrap();
        assert_eq!(FrameRange::new(top, 10).count(), 2);
    }

    #[test]
    fn covering_rounds_out_to_whole_pages() {
        let r = PageRange::covering(VirtAddr::new(0x1FFF), 2);
        assert_eq!(r.start().start_address(), VirtAddr::new(0x1000));
        assert_eq!(r.len(), 2);
        assert!(PageRange::covering(VirtAddr::new(0x1000), 0).is_empty());
        assert_eq!(PageRange::covering(VirtAddr::new(0x1000), 0x1000).len(), 1);
    }

    #[test]
    fn address_arithmetic_wraps_like_the_cpu_and_never_panics() {
        assert_eq!(VirtAddr::new(0xFFFF_F000) + 0x2000, VirtAddr::new(0x1000));
        assert_eq!(
            VirtAddr::new(0x1000) - 0x2000u32,
            VirtAddr::new(0xFFFF_F000)
        );
        assert_eq!(VirtAddr::new(0x3000) - VirtAddr::new(0x1000), 0x2000);
        let mut v = VirtAddr::new(0x10);
        v += 0x10;
        v -= 0x8;
        assert_eq!(v, VirtAddr::new(0x18));
        let top = PhysAddr::new((1 << 52) - 0x1000).unwrap();
        assert_eq!(top + 0x1000, PhysAddr::ZERO, "kept to 52 bits");
        assert_eq!(PhysAddr::ZERO - 0x1000u64, top);
        assert_eq!(
            PhysAddr::new(0x5000).unwrap() - PhysAddr::new(0x1000).unwrap(),
            0x4000
        );
        let mut p = PhysAddr::new(0x1000).unwrap();
        p += 0x10;
        assert_eq!(p.as_u64(), 0x1010);
        assert_eq!(
            VirtAddr::new(0xC000_0000).as_ptr::<u8>() as usize,
            0xC000_0000
        );
        let x = 7u8;
        assert_eq!(
            VirtAddr::from_ptr(&x).as_u32(),
            (&x as *const u8 as usize) as u32
        );
        let page = Page::containing_address(VirtAddr::new(0x5123));
        assert_eq!(VirtAddr::from(page), VirtAddr::new(0x5000));
        let frame = PhysFrame::from_number(3).unwrap();
        assert_eq!(PhysAddr::from(frame).as_u64(), 0x3000);
    }
}
