//! [`ZonedAllocator`]: lowmem and highmem zones, lowest address first.

use core::ops::Range;
use std::vec::Vec;

use super::ledger::{Ledger, ledger_accessors};
use super::pool::RangePool;
use paging_core::addr::PhysFrame;
use paging_core::alloc::{FrameAllocator, Zone};

/// A frame allocator with a lowmem and a highmem zone, like a kernel's.
///
/// Within a zone the lowest free frame is handed out first, freed frames are
/// reused, and [`allocate_contiguous`](FrameAllocator::allocate_contiguous)
/// returns a real physically contiguous run (lowest first fit).
///
/// | zone asked | taken from |
/// |---|---|
/// | [`Zone::Lowmem`] | low only |
/// | [`Zone::PreferHighmem`] | high, then low |
/// | [`Zone::Any`] | low, then high |
///
/// ```
/// use paging_sim::ZonedAllocator;
/// use paging_core::{FrameAllocator, Zone};
///
/// let mut alloc = ZonedAllocator::new(0x10_0000..0x20_0000, 0x1_0000_0000..0x1_0010_0000);
/// let table = alloc.allocate_frame(Zone::PreferHighmem).unwrap();
/// assert_eq!(table.start_address().as_u64(), 0x1_0000_0000);
/// alloc.deallocate_frame(table);
/// assert_eq!(alloc.live(), 0);
/// ```
#[derive(Debug, Clone)]
pub struct ZonedAllocator {
    low: RangePool,
    high: RangePool,
    ledger: Ledger,
}

impl ZonedAllocator {
    /// Lowmem frames from the byte range `low`, highmem frames from `high`
    /// (each rounded inwards to whole frames; either may be empty). The
    /// ranges should not overlap.
    pub fn new(low: Range<u64>, high: Range<u64>) -> Self {
        Self {
            low: RangePool::new(&low),
            high: RangePool::new(&high),
            ledger: Ledger::default(),
        }
    }

    /// Whether `frame` belongs to the lowmem zone.
    pub fn is_lowmem(&self, frame: PhysFrame) -> bool {
        self.low.contains(frame.number())
    }

    /// Whether `frame` belongs to the highmem zone.
    pub fn is_highmem(&self, frame: PhysFrame) -> bool {
        self.high.contains(frame.number())
    }

    fn pools(&mut self, zone: Zone) -> [Option<&mut RangePool>; 2] {
        match zone {
            Zone::Lowmem => [Some(&mut self.low), None],
            Zone::PreferHighmem => [Some(&mut self.high), Some(&mut self.low)],
            Zone::Any => [Some(&mut self.low), Some(&mut self.high)],
        }
    }

    ledger_accessors!();
}

impl ZonedAllocator {
    /// Give `frame` back. Safe, unlike
    /// [`FrameAllocator::deallocate_frame`]: the frames are simulated RAM,
    /// so a frame given back while the model still uses it (a linked table)
    /// corrupts the model's hierarchy, which tests may want to show, but no
    /// memory of this program. The trait method calls this.
    pub fn deallocate_frame(&mut self, frame: PhysFrame) {
        let pfn = frame.number();
        if self.ledger.release(pfn) {
            self.low.free(pfn);
            self.high.free(pfn);
        }
    }
}

// SAFETY: frames of simulated RAM (no Rust object lives there), each
// handed out at most once until given back (the ledger checks it).
unsafe impl FrameAllocator for ZonedAllocator {
    fn allocate_frame(&mut self, zone: Zone) -> Option<PhysFrame> {
        if !self.ledger.may_allocate() {
            return None;
        }
        let pfn = self
            .pools(zone)
            .into_iter()
            .flatten()
            .find_map(RangePool::alloc_one);
        self.ledger.record(pfn, 1)
    }

    fn allocate_contiguous(&mut self, count: usize, zone: Zone) -> Option<PhysFrame> {
        if !self.ledger.may_allocate() {
            return None;
        }
        let count = count as u64;
        let pfn = self
            .pools(zone)
            .into_iter()
            .flatten()
            .find_map(|pool| pool.alloc_run(count));
        self.ledger.record(pfn, count)
    }

    unsafe fn deallocate_frame(&mut self, frame: PhysFrame) {
        Self::deallocate_frame(self, frame);
    }
}
