//! What one CPU's TLB must invalidate: requests that merge, and degrade to a
//! coarser flush when they overflow, never to a missed one.

use core::cell::Cell;

use paging_core::flush::RANGE_FLUSH_CEILING;
use paging_core::{Flush, FlushBatch, PAGE_SIZE, TlbOps, VirtAddr};

/// How many distinct pages a [`FlushRequest`] keeps before merging them into
/// one covering range.
pub const REQUEST_PAGES: usize = 8;

/// The invalidations a CPU owes: a few pages, a range, a CR3 reload
/// ([`TlbOps::flush_all`]) and/or everything, globals included
/// ([`TlbOps::flush_everything`]).
///
/// Requests from several initiators merge into one per target CPU
/// ([`merge`](Self::merge)). Merging only ever makes a request coarser:
/// pages beyond [`REQUEST_PAGES`] become one covering range, a range longer
/// than [`RANGE_FLUSH_CEILING`] pages becomes a flush of everything, and
/// everything absorbs the rest. Whatever was asked is still invalidated.
///
/// It is built from a [`Flush`] token or a [`FlushBatch`] (`From`), which it
/// consumes: the shootdown performs them.
///
/// ```
/// use paging_core::{Flush, VirtAddr};
/// use tlb_shootdown::FlushRequest;
///
/// let mut r = FlushRequest::from(Flush::page(VirtAddr::new(0xC000_0000)));
/// r.merge(&FlushRequest::from(Flush::reload_cr3()));
/// assert!(r.reloads_cr3() && !r.is_everything());
/// assert_eq!(r.pages().len(), 1);
/// r.merge(&FlushRequest::everything());
/// assert!(r.is_everything() && r.pages().is_empty());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlushRequest {
    pages: [VirtAddr; REQUEST_PAGES],
    count: u8,
    range: Option<(VirtAddr, u32)>,
    reload_cr3: bool,
    everything: bool,
}

impl Default for FlushRequest {
    fn default() -> Self {
        Self::new()
    }
}

impl FlushRequest {
    /// Nothing to invalidate.
    pub const fn new() -> Self {
        Self {
            pages: [VirtAddr::ZERO; REQUEST_PAGES],
            count: 0,
            range: None,
            reload_cr3: false,
            everything: false,
        }
    }

    /// Invalidate every translation, globals included.
    pub const fn everything() -> Self {
        let mut r = Self::new();
        r.everything = true;
        r
    }

    /// Whether there is nothing to invalidate.
    pub const fn is_empty(&self) -> bool {
        self.count == 0 && self.range.is_none() && !self.reload_cr3 && !self.everything
    }

    /// Whether this is a flush of everything (globals included).
    pub const fn is_everything(&self) -> bool {
        self.everything
    }

    /// Whether CR3 is reloaded (not set when [`is_everything`](Self::is_everything),
    /// which covers it).
    pub const fn reloads_cr3(&self) -> bool {
        self.reload_cr3
    }

    /// The single pages kept, each invalidated with `invlpg`.
    pub fn pages(&self) -> &[VirtAddr] {
        &self.pages[..self.count as usize]
    }

    /// The range kept, as `(start, pages)`.
    pub const fn range(&self) -> Option<(VirtAddr, u32)> {
        self.range
    }

    /// Add the page containing `va`.
    pub fn add_page(&mut self, va: VirtAddr) {
        let va = va.align_down(PAGE_SIZE);
        if self.everything || self.pages().contains(&va) {
            return;
        }
        if let Some((start, n)) = self.range {
            let offset = u64::from(va.as_u32().wrapping_sub(start.as_u32()));
            if offset < u64::from(n) * PAGE_SIZE {
                return;
            }
        }
        if (self.count as usize) < REQUEST_PAGES {
            self.pages[self.count as usize] = va;
            self.count += 1;
        } else {
            self.add_range(va, 1);
        }
    }

    /// Add `pages` pages from `start`: merged with the range and the single
    /// pages kept into one covering range, or everything if that range would
    /// be longer than [`RANGE_FLUSH_CEILING`] pages.
    pub fn add_range(&mut self, start: VirtAddr, pages: u32) {
        if self.everything || pages == 0 {
            return;
        }
        let mut merged = Flush::range(start, pages);
        if let Some((s, n)) = self.range {
            merged = merged.and(Flush::range(s, n));
        }
        for &va in self.pages() {
            merged = merged.and(Flush::page(va));
        }
        self.count = 0;
        self.range = merged.pages();
        // Too long for `invlpg`s, or (an end beyond 4 GiB) not one range of
        // 32-bit addresses: coarser, never lost.
        let too_wide = |(s, n): (VirtAddr, u32)| {
            n > RANGE_FLUSH_CEILING || u64::from(s.as_u32()) + u64::from(n) * PAGE_SIZE > 1 << 32
        };
        if self.range.is_some_and(too_wide) {
            self.set_everything();
        }
    }

    /// Add a CR3 reload (non-global translations, and PAE PDPTEs).
    pub fn add_reload_cr3(&mut self) {
        if !self.everything {
            self.reload_cr3 = true;
        }
    }

    /// Make this a flush of everything.
    pub fn set_everything(&mut self) {
        *self = Self::everything();
    }

    /// Add everything `other` asks for.
    pub fn merge(&mut self, other: &FlushRequest) {
        if other.everything {
            self.set_everything();
            return;
        }
        if other.reload_cr3 {
            self.add_reload_cr3();
        }
        for &va in other.pages() {
            self.add_page(va);
        }
        if let Some((s, n)) = other.range {
            self.add_range(s, n);
        }
    }

    /// Perform the request on `tlb`: everything, or a CR3 reload then the
    /// pages and the range. Returns how many TLB operations that took (one
    /// per `invlpg`, per range, per reload).
    pub fn perform<T: TlbOps + ?Sized>(&self, tlb: &T) -> u32 {
        if self.everything {
            tlb.flush_everything();
            return 1;
        }
        let mut ops = 0;
        if self.reload_cr3 {
            tlb.flush_all();
            ops += 1;
        }
        for &va in self.pages() {
            tlb.flush_page(va);
            ops += 1;
        }
        if let Some((s, n)) = self.range {
            tlb.flush_range(s, n);
            ops += 1;
        }
        ops
    }
}

/// Records what a token or batch would flush, as a request.
struct Recorder(Cell<FlushRequest>);

impl Recorder {
    fn update(&self, f: impl FnOnce(&mut FlushRequest)) {
        let mut r = self.0.get();
        f(&mut r);
        self.0.set(r);
    }
}

impl TlbOps for Recorder {
    fn flush_page(&self, va: VirtAddr) {
        self.update(|r| r.add_page(va));
    }
    fn flush_range(&self, start: VirtAddr, pages: u32) {
        self.update(|r| r.add_range(start, pages));
    }
    fn flush_all(&self) {
        self.update(FlushRequest::add_reload_cr3);
    }
    fn flush_everything(&self) {
        self.update(FlushRequest::set_everything);
    }
}

impl From<Flush> for FlushRequest {
    fn from(flush: Flush) -> Self {
        let recorder = Recorder(Cell::new(Self::new()));
        flush.flush(&recorder);
        recorder.0.get()
    }
}

impl From<FlushBatch> for FlushRequest {
    /// The batch's pages (up to [`REQUEST_PAGES`], else a covering range),
    /// range and CR3 reload.
    fn from(batch: FlushBatch) -> Self {
        let recorder = Recorder(Cell::new(Self::new()));
        batch.flush(&recorder);
        recorder.0.get()
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use core::cell::RefCell;
    use std::collections::BTreeSet;
    use std::vec::Vec;

    fn va(x: u32) -> VirtAddr {
        VirtAddr::new(x)
    }

    /// The pages a TLB loses when `r` is performed (`None`: all of them).
    #[derive(Default)]
    struct Covered(RefCell<(BTreeSet<u32>, bool, bool)>);
    impl TlbOps for Covered {
        fn flush_page(&self, va: VirtAddr) {
            self.0.borrow_mut().0.insert(va.as_u32());
        }
        fn flush_all(&self) {
            self.0.borrow_mut().1 = true;
        }
        fn flush_everything(&self) {
            self.0.borrow_mut().2 = true;
        }
    }
    impl Covered {
        fn covers(&self, page: u32) -> bool {
            let c = self.0.borrow();
            c.2 || c.0.contains(&page)
        }
    }

    #[test]
    fn tokens_and_batches_become_requests() {
        assert!(FlushRequest::from(Flush::none()).is_empty());
        let r = FlushRequest::from(Flush::range(va(0x4000), 3).and(Flush::reload_cr3()));
        assert_eq!(r.range(), Some((va(0x4000), 3)));
        assert!(r.reloads_cr3());
        let mut b = FlushBatch::new();
        b.add(Flush::page(va(0x1000)));
        b.add(Flush::page(va(0x3000)));
        let r = FlushRequest::from(b);
        assert_eq!(r.pages(), [va(0x1000), va(0x3000)]);
        assert!(!r.reloads_cr3() && r.range().is_none());
    }

    #[test]
    fn pages_dedup_and_overflow_into_a_covering_range() {
        let mut r = FlushRequest::new();
        r.add_page(va(0x1234));
        r.add_page(va(0x1000));
        assert_eq!(r.pages(), [va(0x1000)]);
        let pages: Vec<u32> = (0..=REQUEST_PAGES as u32)
            .map(|i| 0x3000 + i * 0x2000)
            .collect();
        for &p in &pages {
            r.add_page(va(p));
        }
        // The ninth page merged the eight kept (0x1000, 0x3000..=0x11000)
        // into one range; the tenth, beyond it, is kept on its own.
        assert_eq!(r.range(), Some((va(0x1000), 17)), "{r:?}");
        assert_eq!(r.pages(), [va(0x13000)]);
        assert!(!r.is_everything());
        let tlb = Covered::default();
        assert_eq!(r.perform(&tlb), 2);
        // Nothing asked for is lost.
        for p in pages.iter().copied().chain([0x1000]) {
            assert!(tlb.covers(p), "page {p:#x} lost");
        }
        assert_eq!(tlb.0.borrow().0.len(), 18);
        // A page inside the range is not kept again.
        r.add_page(va(0x4000));
        assert_eq!(r.pages(), [va(0x13000)]);
    }

    #[test]
    fn a_long_merged_range_becomes_everything() {
        let mut r = FlushRequest::from(Flush::page(va(0x1000)));
        r.merge(&FlushRequest::from(Flush::page(va(0xC000_0000))));
        assert_eq!(r.pages().len(), 2);
        r.add_range(va(0x8000_0000), 2);
        assert!(r.is_everything());
        assert!(r.pages().is_empty() && r.range().is_none() && !r.reloads_cr3());
        let tlb = Covered::default();
        assert_eq!(r.perform(&tlb), 1);
        assert!(tlb.covers(0x1000) && tlb.covers(0xC000_0000));
        // A range running past 4 GiB too.
        let mut r = FlushRequest::new();
        r.add_range(va(0xFFFF_F000), 2);
        assert!(r.is_everything());
        let mut r = FlushRequest::new();
        r.add_range(va(0), RANGE_FLUSH_CEILING + 1);
        assert!(r.is_everything());
    }

    #[test]
    fn range_ends_and_the_ceiling_are_exact() {
        // The page right after a range is not inside it.
        let mut r = FlushRequest::from(Flush::range(va(0x1000), 2));
        r.add_page(va(0x3000));
        assert_eq!(r.pages(), [va(0x3000)]);
        r.add_page(va(0x2000));
        assert_eq!(r.pages(), [va(0x3000)], "inside the range");
        // Exactly the ceiling is still a range of invlpgs; one more is not.
        let mut r = FlushRequest::new();
        r.add_range(va(0x10_0000), RANGE_FLUSH_CEILING);
        assert_eq!(r.range(), Some((va(0x10_0000), RANGE_FLUSH_CEILING)));
        assert!(!r.is_everything());
        // High ranges that end at 4 GiB or below stay ranges...
        for (start, pages) in [(0xC000_0000, 4), (0xFFFF_E000, 2), (0x8000_0000, 2)] {
            let mut r = FlushRequest::new();
            r.add_range(va(start), pages);
            assert_eq!(r.range(), Some((va(start), pages)), "{start:#x}");
        }
        // ...and one that runs past it, by a page, becomes everything.
        let mut r = FlushRequest::new();
        r.add_range(va(0xFFFF_0000), 17);
        assert!(r.is_everything());
    }

    #[test]
    fn merge_keeps_every_kind() {
        let mut r = FlushRequest::new();
        r.merge(&FlushRequest::from(Flush::reload_cr3()));
        r.merge(&FlushRequest::from(Flush::range(va(0x8000), 2)));
        r.merge(&FlushRequest::from(Flush::page(va(0x2000))));
        let tlb = Covered::default();
        assert_eq!(r.perform(&tlb), 3);
        assert!(tlb.0.borrow().1, "the CR3 reload is kept");
        for p in [0x2000, 0x8000, 0x9000] {
            assert!(tlb.covers(p));
        }
        let mut e = FlushRequest::everything();
        e.merge(&r);
        e.add_reload_cr3();
        e.add_page(va(0));
        assert_eq!(e, FlushRequest::everything());
        assert!(!e.is_empty() && FlushRequest::default().is_empty());
    }
}
