//! The early page-table buffer at its edges: exact bounds, a contiguous
//! request of exactly what is left, giving back only the last frame and
//! never below the start, and the report of what is kept and returned.
//! Written for mutants that `cargo xtask mutants` found no test noticed
//! (docs/testing.md).

use std::cell::RefCell;

use paging_core::{FrameAllocator, PgtBuf, PhysFrame, TableHooks, Zone};

/// Every `frames_returned` call: (first frame number, count).
#[derive(Default)]
struct Returned(RefCell<Vec<(u64, u64)>>);

impl TableHooks for Returned {
    fn frames_returned(&self, first: PhysFrame, count: u64) {
        self.0.borrow_mut().push((first.number(), count));
    }
}

fn frame(n: u64) -> PhysFrame {
    PhysFrame::from_number(n).unwrap()
}

fn numbers(frames: impl Iterator<Item = PhysFrame>) -> Vec<u64> {
    frames.map(|f| f.number()).collect()
}

#[test]
fn a_new_buffer_spans_exactly_its_frames() {
    // SAFETY: frame numbers only; no memory behind them is touched.
    let b = unsafe { PgtBuf::new(frame(0x200), 5) };
    assert_eq!(
        (b.start(), b.end(), b.top(), b.remaining()),
        (0x200, 0x200, 0x205, 5)
    );
}

#[test]
fn a_contiguous_request_of_exactly_what_is_left_succeeds() {
    // SAFETY: frame numbers only; no memory behind them is touched.
    let mut b = unsafe { PgtBuf::new(frame(0x200), 5) };
    assert_eq!(b.allocate_contiguous(0, Zone::Lowmem), None, "zero frames");
    assert_eq!(b.end(), 0x200);
    assert_eq!(b.allocate_contiguous(6, Zone::Lowmem), None, "one too many");
    assert_eq!(b.allocate_contiguous(5, Zone::Lowmem), Some(frame(0x200)));
    assert_eq!((b.end(), b.remaining()), (0x205, 0));
    assert_eq!(b.allocate_contiguous(1, Zone::Lowmem), None);
    assert_eq!(b.allocate_frame(Zone::Lowmem), None);
}

#[test]
fn single_frames_come_in_order_until_the_top() {
    // SAFETY: frame numbers only; no memory behind them is touched.
    let mut b = unsafe { PgtBuf::new(frame(0x200), 3) };
    let got: Vec<_> = std::iter::from_fn(|| b.allocate_frame(Zone::Any))
        .map(|f| f.number())
        .collect();
    assert_eq!(got, [0x200, 0x201, 0x202]);
    assert_eq!((b.end(), b.remaining()), (0x203, 0));
}

#[test]
fn only_the_last_frame_goes_back_and_never_below_the_start() {
    // SAFETY: frame numbers only; no memory behind them is touched.
    let mut b = unsafe { PgtBuf::new(frame(0x200), 4) };
    // Nothing allocated: the frame just below the buffer is not ours.
    // SAFETY: frame numbers only, no memory behind them; a `PgtBuf` ignores frames it did not hand out.
    unsafe { b.deallocate_frame(frame(0x1FF)) };
    assert_eq!(b.end(), 0x200);
    b.allocate_contiguous(3, Zone::Lowmem).unwrap();
    // Not the last one: stays used.
    // SAFETY: frame numbers only, no memory behind them; a `PgtBuf` ignores frames it did not hand out.
    unsafe { b.deallocate_frame(frame(0x200)) };
    // SAFETY: frame numbers only, no memory behind them; a `PgtBuf` ignores frames it did not hand out.
    unsafe { b.deallocate_frame(frame(0x201)) };
    assert_eq!(b.end(), 0x203);
    // A frame past the end: nothing.
    // SAFETY: frame numbers only, no memory behind them; a `PgtBuf` ignores frames it did not hand out.
    unsafe { b.deallocate_frame(frame(0x203)) };
    assert_eq!(b.end(), 0x203);
    // The last one, then the one before it.
    // SAFETY: frame numbers only, no memory behind them; a `PgtBuf` ignores frames it did not hand out.
    unsafe { b.deallocate_frame(frame(0x202)) };
    assert_eq!(b.end(), 0x202);
    // SAFETY: frame numbers only, no memory behind them; a `PgtBuf` ignores frames it did not hand out.
    unsafe { b.deallocate_frame(frame(0x201)) };
    // SAFETY: frame numbers only, no memory behind them; a `PgtBuf` ignores frames it did not hand out.
    unsafe { b.deallocate_frame(frame(0x200)) };
    assert_eq!(b.end(), 0x200);
    // SAFETY: frame numbers only, no memory behind them; a `PgtBuf` ignores frames it did not hand out.
    unsafe { b.deallocate_frame(frame(0x1FF)) };
    assert_eq!((b.end(), b.remaining()), (0x200, 4));
}

#[test]
fn finish_reports_the_used_head_and_returns_the_tail() {
    // SAFETY: frame numbers only; no memory behind them is touched.
    let mut b = unsafe { PgtBuf::new(frame(0x300), 6) };
    b.allocate_frame(Zone::Lowmem).unwrap();
    b.allocate_frame(Zone::Lowmem).unwrap();
    let hooks = Returned::default();
    let report = b.finish(&hooks);
    assert_eq!(
        (report.start, report.end, report.top),
        (0x300, 0x302, 0x306)
    );
    assert_eq!(numbers(report.reserved()), [0x300, 0x301]);
    assert_eq!(numbers(report.returned()), [0x302, 0x303, 0x304, 0x305]);
    assert_eq!(hooks.0.into_inner(), [(0x302, 4)]);
}

#[test]
fn an_unused_buffer_is_returned_whole() {
    // SAFETY: frame numbers only; no memory behind them is touched.
    let b = unsafe { PgtBuf::new(frame(0x300), 3) };
    let hooks = Returned::default();
    let report = b.finish(&hooks);
    assert_eq!(numbers(report.reserved()), Vec::<u64>::new());
    assert_eq!(numbers(report.returned()), [0x300, 0x301, 0x302]);
    assert_eq!(hooks.0.into_inner(), [(0x300, 3)]);
}
