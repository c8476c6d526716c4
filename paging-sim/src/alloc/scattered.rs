//! [`ScatteredAllocator`]: no two frames it hands out are ever adjacent.

use core::ops::Range;
use std::collections::VecDeque;
use std::vec::Vec;

use super::ledger::{Ledger, ledger_accessors};
use super::pool::RangePool;
use paging_core::addr::{PAGE_SIZE, PhysFrame};
use paging_core::alloc::{FrameAllocator, Zone};

/// What [`ScatteredAllocator::allocate_contiguous`] does.
///
/// [`ScatteredAllocator::allocate_contiguous`]: FrameAllocator::allocate_contiguous
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Contiguous {
    /// Always return `None`, like an allocator that cannot promise
    /// contiguity.
    Refuse,
    /// Return real contiguous runs from this separate byte range (which
    /// should not touch the scattered ranges). It serves [`Zone::Lowmem`]
    /// only if it lies wholly below the end of the lowmem range.
    Provide(Range<u64>),
}

/// Even frame numbers of a byte range, in a fixed pseudo-random order.
#[derive(Debug, Clone)]
struct Scatter {
    /// Frame numbers of the range.
    frames: Range<u64>,
    first: u64,
    count: u64,
    bits: u32,
    handed: u64,
    recycled: VecDeque<u64>,
}

impl Scatter {
    fn new(bytes: &Range<u64>) -> Self {
        let start = bytes.start.div_ceil(PAGE_SIZE);
        let end = (bytes.end / PAGE_SIZE).max(start);
        let first = (start + 1) & !1;
        let count = end.saturating_sub(first).div_ceil(2);
        Self {
            frames: start..end,
            first,
            count,
            bits: count.next_power_of_two().trailing_zeros(),
            handed: 0,
            recycled: VecDeque::new(),
        }
    }

    /// A bijection on `0..2^bits` (odd multiply, add, xor-shift: each is one).
    fn mix(&self, x: u64) -> u64 {
        let mask = (1u64 << self.bits).wrapping_sub(1);
        let mut x = x;
        for round in 0..3u64 {
            x = x
                .wrapping_mul(0x9E37_79B9_7F4A_7C15)
                .wrapping_add(round * 0x632B_E5AB)
                & mask;
            x ^= x >> (self.bits / 2 + 1);
        }
        x
    }

    /// The `i`-th frame of the order: a permutation of `0..count` by cycle
    /// walking, so no frame repeats.
    fn nth(&self, i: u64) -> u64 {
        let mut x = self.mix(i);
        while x >= self.count {
            x = self.mix(x);
        }
        self.first + 2 * x
    }

    fn alloc(&mut self) -> Option<u64> {
        if self.handed < self.count {
            self.handed += 1;
            return Some(self.nth(self.handed - 1));
        }
        self.recycled.pop_front()
    }
}

/// A frame allocator that never hands out two physically adjacent frames:
/// only even frame numbers are used, in a scrambled but deterministic order,
/// so code that assumes consecutive single-frame allocations are contiguous
/// breaks at once. Freed frames are reused after the fresh ones run out.
///
/// Zones behave as in [`ZonedAllocator`](super::ZonedAllocator): lowmem
/// from `low`, highmem from `high`, `PreferHighmem` tries high first and
/// `Any` low first.
///
/// ```
/// use paging_sim::{Contiguous, ScatteredAllocator};
/// use paging_core::{FrameAllocator, Zone};
///
/// let mut alloc = ScatteredAllocator::new(0..0x100_0000, 0..0, Contiguous::Refuse);
/// let a = alloc.allocate_frame(Zone::Lowmem).unwrap().number();
/// let b = alloc.allocate_frame(Zone::Lowmem).unwrap().number();
/// assert!(a.abs_diff(b) > 1);
/// assert!(alloc.allocate_contiguous(2, Zone::Lowmem).is_none());
/// ```
#[derive(Debug, Clone)]
pub struct ScatteredAllocator {
    low: Scatter,
    high: Scatter,
    runs: Option<RangePool>,
    runs_are_lowmem: bool,
    ledger: Ledger,
}

impl ScatteredAllocator {
    /// Scattered lowmem frames from the byte range `low`, highmem from
    /// `high`, and contiguous runs as `contiguous` says.
    pub fn new(low: Range<u64>, high: Range<u64>, contiguous: Contiguous) -> Self {
        let (runs, runs_are_lowmem) = match contiguous {
            Contiguous::Refuse => (None, false),
            Contiguous::Provide(range) => {
                let lowmem = range.end <= low.end;
                (Some(RangePool::new(&range)), lowmem)
            }
        };
        Self {
            low: Scatter::new(&low),
            high: Scatter::new(&high),
            runs,
            runs_are_lowmem,
            ledger: Ledger::default(),
        }
    }

    ledger_accessors!();
}

impl ScatteredAllocator {
    /// Give `frame` back. Safe, unlike
    /// [`FrameAllocator::deallocate_frame`]: the frames are simulated RAM,
    /// so a frame given back while the model still uses it (a linked table)
    /// corrupts the model's hierarchy, which tests may want to show, but no
    /// memory of this program. The trait method calls this.
    pub fn deallocate_frame(&mut self, frame: PhysFrame) {
        let pfn = frame.number();
        if !self.ledger.release(pfn) {
            return;
        }
        if let Some(pool) = self.runs.as_mut().filter(|p| p.contains(pfn)) {
            pool.free(pfn);
        } else if self.low.frames.contains(&pfn) {
            self.low.recycled.push_back(pfn);
        } else {
            self.high.recycled.push_back(pfn);
        }
    }
}

// SAFETY: frames of simulated RAM (no Rust object lives there), each
// handed out at most once until given back (the ledger checks it).
unsafe impl FrameAllocator for ScatteredAllocator {
    fn allocate_frame(&mut self, zone: Zone) -> Option<PhysFrame> {
        if !self.ledger.may_allocate() {
            return None;
        }
        let pfn = match zone {
            Zone::Lowmem => self.low.alloc(),
            Zone::PreferHighmem => self.high.alloc().or_else(|| self.low.alloc()),
            Zone::Any => self.low.alloc().or_else(|| self.high.alloc()),
        };
        self.ledger.record(pfn, 1)
    }

    fn allocate_contiguous(&mut self, count: usize, zone: Zone) -> Option<PhysFrame> {
        if !self.ledger.may_allocate() {
            return None;
        }
        let allowed = zone != Zone::Lowmem || self.runs_are_lowmem;
        let pfn = match self.runs.as_mut() {
            Some(pool) if allowed => pool.alloc_run(count as u64),
            _ => None,
        };
        self.ledger.record(pfn, count as u64)
    }

    unsafe fn deallocate_frame(&mut self, frame: PhysFrame) {
        Self::deallocate_frame(self, frame);
    }
}
