//! A range of frames handed out lowest-first, with reuse and first-fit runs.

use core::ops::Range;
use std::collections::BTreeSet;

use paging_core::addr::PAGE_SIZE;

/// Frames `start..end` (frame numbers): `start..next` have been handed out
/// at some point, `freed` holds those among them that came back.
#[derive(Debug, Clone)]
pub(super) struct RangePool {
    start: u64,
    end: u64,
    next: u64,
    freed: BTreeSet<u64>,
}

impl RangePool {
    /// The whole frames inside the byte range `bytes`.
    pub(super) fn new(bytes: &Range<u64>) -> Self {
        let start = bytes.start.div_ceil(PAGE_SIZE);
        let end = (bytes.end / PAGE_SIZE).max(start);
        Self {
            start,
            end,
            next: start,
            freed: BTreeSet::new(),
        }
    }

    /// Whether frame `pfn` belongs to this pool.
    pub(super) fn contains(&self, pfn: u64) -> bool {
        (self.start..self.end).contains(&pfn)
    }

    /// The lowest free frame.
    pub(super) fn alloc_one(&mut self) -> Option<u64> {
        if let Some(pfn) = self.freed.pop_first() {
            return Some(pfn);
        }
        (self.next < self.end).then(|| {
            self.next += 1;
            self.next - 1
        })
    }

    /// The lowest run of `count` free frames (first fit).
    pub(super) fn alloc_run(&mut self, count: u64) -> Option<u64> {
        if count == 0 {
            return None;
        }
        let mut run = (0, 0);
        let mut found = None;
        for &pfn in &self.freed {
            if run.1 > 0 && pfn == run.0 + run.1 {
                run.1 += 1;
            } else {
                run = (pfn, 1);
            }
            if run.1 >= count {
                found = Some(run.0);
                break;
            }
        }
        let untouched = self.end - self.next;
        let found = found.or_else(|| {
            if run.1 > 0 && run.0 + run.1 == self.next && run.1 + untouched >= count {
                Some(run.0)
            } else {
                (untouched >= count).then_some(self.next)
            }
        })?;
        for pfn in found..found + count {
            self.freed.remove(&pfn);
        }
        self.next = self.next.max(found + count);
        Some(found)
    }

    /// Take `pfn` back (the caller checked it was live).
    pub(super) fn free(&mut self, pfn: u64) {
        if self.contains(pfn) && pfn < self.next {
            self.freed.insert(pfn);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_are_first_fit_across_freed_and_untouched_frames() {
        let mut pool = RangePool::new(&(0x1800..0x10_000));
        assert_eq!(pool.alloc_one(), Some(2));
        assert_eq!(pool.alloc_run(3), Some(3));
        assert_eq!(pool.alloc_one(), Some(6));
        pool.free(4);
        pool.free(6);
        // 4 alone is too short; 6 joins the untouched 7.. to make a run.
        assert_eq!(pool.alloc_run(2), Some(6));
        assert_eq!(pool.alloc_one(), Some(4));
        assert_eq!(pool.alloc_run(8), Some(8));
        assert_eq!(pool.alloc_run(1), None);
        assert_eq!(pool.alloc_one(), None);
    }
}
