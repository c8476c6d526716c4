//! The bookkeeping both test allocators share.

use std::collections::BTreeSet;
use std::vec::Vec;

use paging_core::addr::PhysFrame;

/// Which frames are live, totals, bad frees, and the failure budget.
#[derive(Debug, Clone, Default)]
pub(super) struct Ledger {
    live: BTreeSet<u64>,
    allocated_total: u64,
    freed_total: u64,
    double_frees: u64,
    failed: u64,
    /// `Some(n)`: n more allocations may succeed, then all fail.
    budget: Option<usize>,
}

impl Ledger {
    /// Whether the failure budget allows another allocation; counts a
    /// failure if not.
    pub(super) fn may_allocate(&mut self) -> bool {
        if self.budget == Some(0) {
            self.failed += 1;
            false
        } else {
            true
        }
    }

    /// Record a successful allocation of `count` frames from `first`, or a
    /// failure if `first` is `None`.
    pub(super) fn record(&mut self, first: Option<u64>, count: u64) -> Option<PhysFrame> {
        let Some(first) = first.filter(|_| count > 0) else {
            self.failed += 1;
            return None;
        };
        let frame = PhysFrame::from_number(first).ok()?;
        self.live.extend(first..first + count);
        self.allocated_total += count;
        if let Some(n) = self.budget.as_mut() {
            *n = n.saturating_sub(1);
        }
        Some(frame)
    }

    /// Record a free; false (and a counted double free) if `pfn` was not
    /// live.
    pub(super) fn release(&mut self, pfn: u64) -> bool {
        if self.live.remove(&pfn) {
            self.freed_total += 1;
            true
        } else {
            self.double_frees += 1;
            false
        }
    }

    pub(super) fn fail_after(&mut self, n: usize) {
        self.budget = Some(n);
    }

    pub(super) fn never_fail(&mut self) {
        self.budget = None;
    }

    pub(super) fn live(&self) -> usize {
        self.live.len()
    }

    pub(super) fn is_live(&self, frame: PhysFrame) -> bool {
        self.live.contains(&frame.number())
    }

    pub(super) fn live_frames(&self) -> Vec<PhysFrame> {
        self.live
            .iter()
            .filter_map(|&pfn| PhysFrame::from_number(pfn).ok())
            .collect()
    }

    pub(super) fn allocated_total(&self) -> u64 {
        self.allocated_total
    }

    pub(super) fn freed_total(&self) -> u64 {
        self.freed_total
    }

    pub(super) fn double_frees(&self) -> u64 {
        self.double_frees
    }

    pub(super) fn failed(&self) -> u64 {
        self.failed
    }
}

/// The ledger accessors every test allocator exposes, with the same docs.
macro_rules! ledger_accessors {
    () => {
        /// Frames allocated and not yet freed.
        pub fn live(&self) -> usize {
            self.ledger.live()
        }

        /// Whether `frame` is allocated now.
        pub fn is_live(&self, frame: PhysFrame) -> bool {
            self.ledger.is_live(frame)
        }

        /// The frames allocated now, in address order.
        pub fn live_frames(&self) -> Vec<PhysFrame> {
            self.ledger.live_frames()
        }

        /// Frames ever handed out (a contiguous run counts each frame).
        pub fn allocated_total(&self) -> u64 {
            self.ledger.allocated_total()
        }

        /// Frames given back that were live.
        pub fn freed_total(&self) -> u64 {
            self.ledger.freed_total()
        }

        /// Frees of a frame that was not live (freed twice, never allocated,
        /// or not this allocator's). Recorded, never a panic.
        pub fn double_frees(&self) -> u64 {
            self.ledger.double_frees()
        }

        /// Allocation requests that returned `None`.
        pub fn failed_allocations(&self) -> u64 {
            self.ledger.failed()
        }

        /// Let the next `n` allocations (single frames or runs) succeed if
        /// frames are free, then fail every allocation until
        /// [`never_fail`](Self::never_fail).
        pub fn fail_after(&mut self, n: usize) {
            self.ledger.fail_after(n);
        }

        /// Undo [`fail_after`](Self::fail_after).
        pub fn never_fail(&mut self) {
            self.ledger.never_fail();
        }
    };
}

pub(super) use ledger_accessors;
