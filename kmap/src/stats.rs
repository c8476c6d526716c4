//! Counters every pool keeps.

// Counters are `AtomicUsize`: 32 bits on i586, where a 64-bit atomic load
// compiles to x87 `fild`/`fistp` (kernel code must not touch the FPU). They
// wrap after 2^32 events there; the snapshot widens them to u64.
use core::sync::atomic::{AtomicUsize, Ordering};

use crate::policy::FlushCounts;

/// A snapshot of a persistent pool's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KmapStats {
    /// Successful maps, of every kind.
    pub maps: u64,
    /// Maps that reused a slot already holding the page.
    pub hits: u64,
    /// Maps of lowmem pages answered from the direct map (no slot).
    pub direct: u64,
    /// Times a task waited for capacity.
    pub waits: u64,
    /// Times the cursor wrapped and stale slots were cleared.
    pub wraps: u64,
    /// Flushes by kind (and avoided ones).
    pub flushes: FlushCounts,
    /// Most slots in use at once, as seen by maps under the pool's lock and
    /// by lock-free hits that take an unused slot when their capacity shard
    /// reaches a new high: a peak reached only through lock-free hits may
    /// be missed.
    pub peak_in_use: u64,
    /// Guard drops whose unmap failed (a raw unmap had already removed the
    /// mapping); each is also reported as a typed error by the raw call.
    pub release_errors: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) maps: AtomicUsize,
    pub(crate) hits: AtomicUsize,
    pub(crate) direct: AtomicUsize,
    pub(crate) waits: AtomicUsize,
    pub(crate) wraps: AtomicUsize,
    pub(crate) pages: AtomicUsize,
    pub(crate) ranges: AtomicUsize,
    pub(crate) globals: AtomicUsize,
    pub(crate) avoided: AtomicUsize,
    pub(crate) deferred: AtomicUsize,
    pub(crate) peak_in_use: AtomicUsize,
    pub(crate) release_errors: AtomicUsize,
}

fn bump(c: &AtomicUsize, n: u64) {
    c.fetch_add(n as usize, Ordering::Relaxed);
}

impl Counters {
    pub(crate) fn add(&self, c: &AtomicUsize) {
        bump(c, 1);
    }

    pub(crate) fn add_flushes(&self, f: &FlushCounts) {
        bump(&self.pages, f.pages);
        bump(&self.ranges, f.ranges);
        bump(&self.globals, f.globals);
        bump(&self.avoided, f.avoided);
        bump(&self.deferred, f.deferred);
    }

    pub(crate) fn snapshot(&self) -> KmapStats {
        let get = |c: &AtomicUsize| c.load(Ordering::Relaxed) as u64;
        KmapStats {
            maps: get(&self.maps),
            hits: get(&self.hits),
            direct: get(&self.direct),
            waits: get(&self.waits),
            wraps: get(&self.wraps),
            flushes: FlushCounts {
                pages: get(&self.pages),
                ranges: get(&self.ranges),
                globals: get(&self.globals),
                avoided: get(&self.avoided),
                deferred: get(&self.deferred),
            },
            peak_in_use: get(&self.peak_in_use),
            release_errors: get(&self.release_errors),
        }
    }
}
