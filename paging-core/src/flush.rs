//! TLB operations and the flush tokens every table change returns.
//!
//! The TLB keeps translations after the entries they came from change, until
//! told otherwise. Every mapper call that changes a live entry returns a
//! [`Flush`] that says exactly what must be invalidated; it is `#[must_use]`,
//! so dropping it is a compiler warning (an error under `-D warnings`).
//! In PAE mode a change to the PDPT is invisible until CR3 is reloaded: the
//! token then carries a CR3 reload, so forgetting it is just as loud.

use crate::addr::{PAGE_SIZE, VirtAddr};

/// The TLB maintenance a platform offers.
///
/// On x86 these are `invlpg`, a CR3 reload, and a CR4.PGE toggle; on a
/// multiprocessor kernel they also send shootdown IPIs. The host model
/// implements them on its simulated TLB and counts each kind.
pub trait TlbOps {
    /// Invalidate the translation of the page containing `va` (`invlpg`),
    /// including a global one.
    fn flush_page(&self, va: VirtAddr);

    /// Invalidate `pages` pages starting at `start`. The default issues one
    /// `invlpg` per page up to [`RANGE_FLUSH_CEILING`] pages, and a full flush
    /// (globals included) beyond that, as Linux does.
    fn flush_range(&self, start: VirtAddr, pages: u32) {
        if pages > RANGE_FLUSH_CEILING {
            self.flush_everything();
            return;
        }
        for i in 0..pages {
            self.flush_page(VirtAddr::new(
                start
                    .as_u32()
                    .wrapping_add(i.wrapping_mul(PAGE_SIZE as u32)),
            ));
        }
    }

    /// Invalidate every non-global translation by reloading CR3. In PAE mode
    /// this also makes the CPU re-read the four PDPTEs.
    fn flush_all(&self);

    /// Invalidate every translation, global ones included (toggle CR4.PGE).
    fn flush_everything(&self);

    /// A point in this TLB's flush history, to take *after* clearing entries
    /// whose invalidation is deferred, and to hand to
    /// [`flush_range_since`](Self::flush_range_since) later.
    ///
    /// A TLB that keeps no history (the default, and a uniprocessor's
    /// `NativeTlb`) returns [`TlbMark::NONE`]; a multiprocessor's shootdown
    /// returns its clock, which advances at each mark.
    fn mark(&self) -> TlbMark {
        TlbMark::NONE
    }

    /// Invalidate `pages` pages from `start` whose entries were cleared before
    /// `since` was taken with [`mark`](Self::mark). A CPU that has flushed its
    /// whole TLB (globals included) after `since` can no longer hold them, so
    /// an implementation that tracks full flushes per CPU may skip it: this
    /// is how a deferred flush saves IPIs (NetBSD's per-CPU TLB generations).
    /// The default flushes as [`flush_range`](Self::flush_range) does.
    fn flush_range_since(&self, start: VirtAddr, pages: u32, since: TlbMark) {
        let _ = since;
        self.flush_range(start, pages);
    }
}

/// A point in a TLB's flush history: see [`TlbOps::mark`] and
/// [`TlbOps::flush_range_since`]. Later marks compare greater.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TlbMark(pub u64);

impl TlbMark {
    /// The mark of a TLB that keeps no history: every CPU counts as not
    /// having flushed since.
    pub const NONE: TlbMark = TlbMark(0);
}

impl<T: TlbOps + ?Sized> TlbOps for &T {
    fn flush_page(&self, va: VirtAddr) {
        (**self).flush_page(va)
    }
    fn flush_range(&self, start: VirtAddr, pages: u32) {
        (**self).flush_range(start, pages)
    }
    fn flush_all(&self) {
        (**self).flush_all()
    }
    fn flush_everything(&self) {
        (**self).flush_everything()
    }
    fn mark(&self) -> TlbMark {
        (**self).mark()
    }
    fn flush_range_since(&self, start: VirtAddr, pages: u32, since: TlbMark) {
        (**self).flush_range_since(start, pages, since)
    }
}

/// Above this many pages the default [`TlbOps::flush_range`] flushes
/// everything instead of issuing one `invlpg` per page (Linux's
/// `tlb_single_page_flush_ceiling`).
pub const RANGE_FLUSH_CEILING: u32 = 33;

/// What a change needs from the TLB before the new state is what every access
/// sees.
#[must_use = "the TLB may still hold the old translation: call flush(), or add it to a FlushBatch"]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flush {
    pages: Option<(VirtAddr, u32)>,
    reload_cr3: bool,
}

impl Flush {
    /// Invalidate the page containing `va`.
    pub const fn page(va: VirtAddr) -> Self {
        Self {
            pages: Some((va.align_down(PAGE_SIZE), 1)),
            reload_cr3: false,
        }
    }

    /// Invalidate `pages` pages from `start` (nothing if `pages` is zero).
    pub const fn range(start: VirtAddr, pages: u32) -> Self {
        Self {
            pages: if pages == 0 {
                None
            } else {
                Some((start.align_down(PAGE_SIZE), pages))
            },
            reload_cr3: false,
        }
    }

    /// Reload CR3 (a PAE PDPT entry changed).
    pub const fn reload_cr3() -> Self {
        Self {
            pages: None,
            reload_cr3: true,
        }
    }

    /// Nothing to invalidate (the change only filled entries that were not
    /// present, which the TLB does not cache).
    pub const fn none() -> Self {
        Self {
            pages: None,
            reload_cr3: false,
        }
    }

    /// This token and `other` as one.
    pub fn and(self, other: Flush) -> Self {
        let pages = match (self.pages, other.pages) {
            (None, p) | (p, None) => p,
            (Some((a, an)), Some((b, bn))) => {
                let start = a.min(b).as_u64();
                let end =
                    (a.as_u64() + an as u64 * PAGE_SIZE).max(b.as_u64() + bn as u64 * PAGE_SIZE);
                Some((
                    VirtAddr::new(start as u32),
                    ((end - start) / PAGE_SIZE) as u32,
                ))
            }
        };
        Self {
            pages,
            reload_cr3: self.reload_cr3 || other.reload_cr3,
        }
    }

    /// Whether this token asks nothing of the TLB (no page, no CR3
    /// reload): [`Flush::none`], or a change that only filled empty
    /// entries. Flushing it is free, and it may be dropped with
    /// [`ignore`](Self::ignore) without a stale translation surviving.
    pub const fn is_empty(&self) -> bool {
        self.pages.is_none() && !self.reload_cr3
    }

    /// Whether this token will reload CR3.
    pub const fn needs_cr3_reload(&self) -> bool {
        self.reload_cr3
    }

    /// The pages this token invalidates, as `(start, count)`.
    pub const fn pages(&self) -> Option<(VirtAddr, u32)> {
        self.pages
    }

    /// Perform the invalidation.
    pub fn flush<T: TlbOps + ?Sized>(self, tlb: &T) {
        if self.reload_cr3 {
            tlb.flush_all();
        }
        match self.pages {
            Some((va, 1)) => tlb.flush_page(va),
            Some((va, n)) => tlb.flush_range(va, n),
            None => {}
        }
    }

    /// Drop the token without flushing. Only correct when no CPU can be
    /// using these tables (paging not enabled yet, or a directory no CPU has
    /// loaded), or when the caller flushes everything itself afterwards.
    pub fn ignore(self) {}
}

/// Many tokens, flushed at once: distinct pages are kept (up to
/// `BATCH_PAGES`), then merged into one range, and a CR3 reload is done once.
#[must_use = "the TLB may still hold old translations: call flush()"]
#[derive(Debug, Clone, Default)]
pub struct FlushBatch {
    pages: [VirtAddr; BATCH_PAGES],
    count: usize,
    range: Option<(VirtAddr, u32)>,
    reload_cr3: bool,
}

/// How many distinct pages a [`FlushBatch`] tracks before merging them into a
/// range.
pub const BATCH_PAGES: usize = 8;

impl FlushBatch {
    /// An empty batch.
    pub const fn new() -> Self {
        Self {
            pages: [VirtAddr::ZERO; BATCH_PAGES],
            count: 0,
            range: None,
            reload_cr3: false,
        }
    }

    /// Add a token to the batch.
    pub fn add(&mut self, flush: Flush) {
        self.reload_cr3 |= flush.reload_cr3;
        match flush.pages {
            None => {}
            Some((va, 1)) if self.range.is_none() => {
                if self.pages[..self.count].contains(&va) {
                    return;
                }
                if self.count < BATCH_PAGES {
                    self.pages[self.count] = va;
                    self.count += 1;
                } else {
                    self.merge_into_range(Flush::page(va));
                }
            }
            Some(_) => self.merge_into_range(flush),
        }
    }

    fn merge_into_range(&mut self, flush: Flush) {
        let mut merged = Flush {
            pages: self.range,
            reload_cr3: false,
        }
        .and(Flush {
            pages: flush.pages,
            reload_cr3: false,
        });
        for &va in &self.pages[..self.count] {
            merged = merged.and(Flush::page(va));
        }
        self.count = 0;
        self.range = merged.pages;
    }

    /// Whether nothing needs flushing.
    pub fn is_empty(&self) -> bool {
        self.count == 0 && self.range.is_none() && !self.reload_cr3
    }

    /// Perform every invalidation the batch holds, each once.
    pub fn flush<T: TlbOps + ?Sized>(self, tlb: &T) {
        if self.reload_cr3 {
            tlb.flush_all();
        }
        for &va in &self.pages[..self.count] {
            tlb.flush_page(va);
        }
        if let Some((va, n)) = self.range {
            tlb.flush_range(va, n);
        }
    }

    /// Drop the batch without flushing (see [`Flush::ignore`]).
    pub fn ignore(self) {}
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use core::cell::RefCell;
    use std::vec::Vec;

    #[derive(Default)]
    struct Log(RefCell<Vec<(&'static str, u32, u32)>>);

    impl TlbOps for Log {
        fn flush_page(&self, va: VirtAddr) {
            self.0.borrow_mut().push(("page", va.as_u32(), 1));
        }
        fn flush_all(&self) {
            self.0.borrow_mut().push(("all", 0, 0));
        }
        fn flush_everything(&self) {
            self.0.borrow_mut().push(("everything", 0, 0));
        }
    }

    fn va(x: u32) -> VirtAddr {
        VirtAddr::new(x)
    }

    #[test]
    fn is_empty_only_when_the_token_asks_nothing() {
        assert!(Flush::none().is_empty());
        assert!(Flush::range(va(0x4000), 0).is_empty());
        assert!(Flush::none().and(Flush::none()).is_empty());
        assert!(!Flush::page(va(0x1234)).is_empty());
        assert!(!Flush::range(va(0x4000), 2).is_empty());
        assert!(!Flush::reload_cr3().is_empty());
        assert!(!Flush::none().and(Flush::reload_cr3()).is_empty());
        // An empty token flushes nothing.
        let log = Log::default();
        Flush::none().flush(&log);
        assert!(log.0.borrow().is_empty());
    }

    #[test]
    fn single_tokens_do_exactly_their_kind() {
        let log = Log::default();
        Flush::page(va(0x1234)).flush(&log);
        Flush::reload_cr3().flush(&log);
        Flush::none().flush(&log);
        Flush::range(va(0x4000), 2).flush(&log);
        assert_eq!(
            *log.0.borrow(),
            [
                ("page", 0x1000, 1),
                ("all", 0, 0),
                ("page", 0x4000, 1),
                ("page", 0x5000, 1)
            ]
        );
    }

    #[test]
    fn long_ranges_fall_back_to_a_full_flush() {
        let log = Log::default();
        Flush::range(va(0), RANGE_FLUSH_CEILING + 1).flush(&log);
        assert_eq!(*log.0.borrow(), [("everything", 0, 0)]);
    }

    #[test]
    fn batch_dedups_pages_and_reloads_cr3_once() {
        let log = Log::default();
        let mut b = FlushBatch::new();
        assert!(b.is_empty());
        b.add(Flush::page(va(0x1000)));
        b.add(Flush::page(va(0x1000)));
        b.add(Flush::reload_cr3());
        b.add(Flush::reload_cr3());
        b.add(Flush::page(va(0x3000)));
        assert!(!b.is_empty());
        b.flush(&log);
        assert_eq!(
            *log.0.borrow(),
            [("all", 0, 0), ("page", 0x1000, 1), ("page", 0x3000, 1)]
        );
    }

    #[test]
    fn batch_merges_into_a_covering_range_when_full() {
        let log = Log::default();
        let mut b = FlushBatch::new();
        for i in 0..=BATCH_PAGES as u32 {
            b.add(Flush::page(va(0x10_0000 + i * 0x2000)));
        }
        b.flush(&log);
        let log = log.0.borrow();
        // One page every 8 KiB over 9 pages: a 17-page range, each page once.
        assert_eq!(log.len(), 17);
        assert_eq!(log[0], ("page", 0x10_0000, 1));
        assert_eq!(log[16], ("page", 0x11_0000, 1));
    }

    #[test]
    fn without_history_a_deferred_flush_is_a_range_flush() {
        let log = Log::default();
        // Through the `&T` forwarding impl.
        let mark = <&Log as TlbOps>::mark(&&log);
        assert_eq!(mark, TlbMark::NONE);
        <&Log as TlbOps>::flush_range_since(&&log, va(0x7000), 2, mark);
        assert_eq!(*log.0.borrow(), [("page", 0x7000, 1), ("page", 0x8000, 1)]);
        assert!(TlbMark(2) > TlbMark(1));
    }

    #[test]
    fn and_covers_both_spans() {
        let f = Flush::range(va(0x5000), 1).and(Flush::page(va(0x2000)));
        assert_eq!(f.pages(), Some((va(0x2000), 4)));
        assert!(!f.needs_cr3_reload());
        assert!(f.and(Flush::reload_cr3()).needs_cr3_reload());
        f.ignore();
    }
}
