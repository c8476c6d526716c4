//! Flush tokens, precisely: the range-flush ceiling is inclusive, and a
//! `&T` (or `&&T`) passes every operation on to `T` unchanged, its flush
//! history (`mark`, `flush_range_since`) included. Written for
//! mutants that `cargo xtask mutants` found no test noticed
//! (docs/testing.md).

use std::cell::RefCell;

use paging_core::flush::RANGE_FLUSH_CEILING;
use paging_core::{Flush, FlushBatch, TlbMark, TlbOps, VirtAddr};

/// Every TLB operation, in order: (kind, address, pages).
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

/// A TLB whose range flush is its own (not the default per-page loop), to
/// see that `&T` forwards `flush_range` instead of falling back to the
/// trait's default.
#[derive(Default)]
struct RangedLog(Log);

impl TlbOps for RangedLog {
    fn flush_page(&self, va: VirtAddr) {
        self.0.flush_page(va);
    }
    fn flush_range(&self, start: VirtAddr, pages: u32) {
        self.0.0.borrow_mut().push(("range", start.as_u32(), pages));
    }
    fn flush_all(&self) {
        self.0.flush_all();
    }
    fn flush_everything(&self) {
        self.0.flush_everything();
    }
}

fn va(x: u32) -> VirtAddr {
    VirtAddr::new(x)
}

#[test]
fn a_range_of_exactly_the_ceiling_is_flushed_page_by_page() {
    let log = Log::default();
    log.flush_range(va(0x40_0000), RANGE_FLUSH_CEILING);
    let log = log.0.into_inner();
    assert_eq!(log.len(), RANGE_FLUSH_CEILING as usize);
    for (i, &entry) in log.iter().enumerate() {
        assert_eq!(entry, ("page", 0x40_0000 + i as u32 * 4096, 1));
    }
}

#[test]
fn one_page_past_the_ceiling_flushes_everything_once() {
    let log = Log::default();
    log.flush_range(va(0x40_0000), RANGE_FLUSH_CEILING + 1);
    assert_eq!(log.0.into_inner(), [("everything", 0, 0)]);
}

#[test]
fn a_range_of_zero_pages_flushes_nothing() {
    let log = Log::default();
    log.flush_range(va(0x40_0000), 0);
    assert!(log.0.into_inner().is_empty());
}

#[test]
fn a_reference_forwards_every_operation() {
    let inner = RangedLog::default();
    let by_ref: &RangedLog = &inner;
    let by_ref_ref: &&RangedLog = &by_ref;
    // Called through `<&T as TlbOps>` and `<&&T as TlbOps>`.
    TlbOps::flush_page(&by_ref, va(0x1000));
    TlbOps::flush_range(&by_ref, va(0x2000), 5);
    TlbOps::flush_all(&by_ref);
    TlbOps::flush_everything(&by_ref);
    TlbOps::flush_page(&by_ref_ref, va(0x3000));
    TlbOps::flush_range(&by_ref_ref, va(0x4000), 7);
    TlbOps::flush_all(&by_ref_ref);
    TlbOps::flush_everything(&by_ref_ref);
    assert_eq!(
        inner.0.0.into_inner(),
        [
            ("page", 0x1000, 1),
            ("range", 0x2000, 5),
            ("all", 0, 0),
            ("everything", 0, 0),
            ("page", 0x3000, 1),
            ("range", 0x4000, 7),
            ("all", 0, 0),
            ("everything", 0, 0),
        ]
    );
}

/// A TLB with a flush history: its marks advance, and a deferred range
/// flush records the mark it was given.
#[derive(Default)]
struct MarkedLog {
    log: RangedLog,
    clock: std::cell::Cell<u64>,
}

impl TlbOps for MarkedLog {
    fn flush_page(&self, va: VirtAddr) {
        self.log.flush_page(va);
    }
    fn flush_range(&self, start: VirtAddr, pages: u32) {
        self.log.flush_range(start, pages);
    }
    fn flush_all(&self) {
        self.log.flush_all();
    }
    fn flush_everything(&self) {
        self.log.flush_everything();
    }
    fn mark(&self) -> TlbMark {
        self.clock.set(self.clock.get() + 1);
        TlbMark(self.clock.get())
    }
    fn flush_range_since(&self, start: VirtAddr, pages: u32, since: TlbMark) {
        let mark = u32::try_from(since.0).unwrap();
        self.log
            .0
            .0
            .borrow_mut()
            .push(("since", start.as_u32(), pages + (mark << 16)));
    }
}

#[test]
fn a_reference_forwards_the_flush_history() {
    // A reference that fell back to the trait's defaults would return
    // `TlbMark::NONE` and turn the deferred flush into a plain range flush.
    let inner = MarkedLog::default();
    let by_ref: &MarkedLog = &inner;
    let by_ref_ref: &&MarkedLog = &by_ref;
    assert_eq!(TlbOps::mark(&by_ref), TlbMark(1));
    assert_eq!(TlbOps::mark(&by_ref_ref), TlbMark(2));
    assert_ne!(TlbMark(1), TlbMark::NONE);
    TlbOps::flush_range_since(&by_ref, va(0x6000), 3, TlbMark(1));
    TlbOps::flush_range_since(&by_ref_ref, va(0x7000), 4, TlbMark(2));
    assert_eq!(
        inner.log.0.0.into_inner(),
        [
            ("since", 0x6000, 3 + (1 << 16)),
            ("since", 0x7000, 4 + (2 << 16))
        ]
    );
}

#[test]
fn tokens_flushed_through_a_reference_reach_the_tlb() {
    let inner = RangedLog::default();
    let tlb = &inner;
    Flush::page(va(0x5000)).flush(&tlb);
    Flush::range(va(0x6000), 3).flush(&tlb);
    Flush::reload_cr3().flush(&tlb);
    let mut batch = FlushBatch::new();
    batch.add(Flush::page(va(0x7000)));
    batch.flush(&tlb);
    assert_eq!(
        inner.0.0.into_inner(),
        [
            ("page", 0x5000, 1),
            ("range", 0x6000, 3),
            ("all", 0, 0),
            ("page", 0x7000, 1),
        ]
    );
}

#[test]
fn and_covers_both_spans_whichever_ends_last() {
    // The second span ends last.
    let f = Flush::page(va(0x2000)).and(Flush::range(va(0x5000), 2));
    assert_eq!(f.pages(), Some((va(0x2000), 5)));
    // The first span ends last.
    let f = Flush::range(va(0x5000), 3).and(Flush::page(va(0x2000)));
    assert_eq!(f.pages(), Some((va(0x2000), 6)));
    // One inside the other.
    let f = Flush::page(va(0x3000)).and(Flush::range(va(0x1000), 8));
    assert_eq!(f.pages(), Some((va(0x1000), 8)));
    let f = Flush::range(va(0x1000), 8).and(Flush::page(va(0x3000)));
    assert_eq!(f.pages(), Some((va(0x1000), 8)));
    // Nothing with something is the something.
    assert_eq!(
        Flush::none().and(Flush::range(va(0x4000), 2)).pages(),
        Some((va(0x4000), 2))
    );
    assert_eq!(
        Flush::range(va(0x4000), 2).and(Flush::none()).pages(),
        Some((va(0x4000), 2))
    );
}

#[test]
fn a_batch_with_only_a_reload_or_only_a_range_is_not_empty() {
    let mut cr3 = FlushBatch::new();
    cr3.add(Flush::reload_cr3());
    assert!(!cr3.is_empty());
    let mut range = FlushBatch::new();
    range.add(Flush::range(va(0x8000), 2));
    assert!(!range.is_empty());
    let mut nothing = FlushBatch::new();
    nothing.add(Flush::none());
    assert!(nothing.is_empty());
    let log = RangedLog::default();
    cr3.flush(&log);
    range.flush(&log);
    nothing.flush(&log);
    assert_eq!(log.0.0.into_inner(), [("all", 0, 0), ("range", 0x8000, 2)]);
}

#[test]
fn once_a_batch_holds_a_range_single_pages_widen_it() {
    let mut b = FlushBatch::new();
    b.add(Flush::range(va(0x10_0000), 2));
    b.add(Flush::page(va(0x10_4000)));
    b.add(Flush::page(va(0x10_0000)));
    let log = RangedLog::default();
    b.flush(&log);
    // One range from the first page to the last: no separate page flushes.
    assert_eq!(log.0.0.into_inner(), [("range", 0x10_0000, 5)]);
}
