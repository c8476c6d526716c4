//! What shootdowns did: per call, and counted since boot. Reports, not
//! protocol: relaxed atomics, outside the model checker.

use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::CpuSet;

/// What one [`Shootdown::flush`](crate::Shootdown::flush) did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Report {
    /// The CPUs this call sent the interrupt to: at most once each. A
    /// target that already had one pending is not sent another (its
    /// handler will find this request too).
    pub ipis: CpuSet,
    /// The other CPUs that acknowledged this request.
    pub acknowledged: CpuSet,
    /// Targets skipped because they flushed their whole TLB after the
    /// request's mark ([`Shootdown::flush_since`](crate::Shootdown::flush_since)).
    pub skipped: CpuSet,
    /// Whether the current CPU's TLB was flushed by this call.
    pub local: bool,
    /// Rounds spent waiting for acknowledgements.
    pub wait_rounds: u32,
}

/// Counters of a [`Shootdown`](crate::Shootdown) since it was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShootdownStats {
    /// Calls that had something to flush.
    pub shootdowns: u64,
    /// Interrupts sent (one per target CPU per call at most).
    pub ipis_sent: u64,
    /// Interrupts not sent because the target had one pending already.
    pub ipis_coalesced: u64,
    /// Interrupts not sent because the target had flushed its whole TLB
    /// since the request's mark (per-CPU TLB generations).
    pub ipis_saved: u64,
    /// Rounds spent waiting for acknowledgements, over all calls.
    pub wait_rounds: u64,
}

/// Counters of one CPU.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuStats {
    /// Requests from other CPUs this CPU took from its mailbox and
    /// performed.
    pub served: u64,
    /// TLB operations it performed for shootdowns, its own and others'
    /// (one per `invlpg`, per range, per CR3 reload, per full flush).
    pub invalidations: u64,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) shootdowns: AtomicU64,
    pub(crate) ipis_sent: AtomicU64,
    pub(crate) ipis_coalesced: AtomicU64,
    pub(crate) ipis_saved: AtomicU64,
    pub(crate) wait_rounds: AtomicU64,
}

impl Counters {
    pub(crate) const fn new() -> Self {
        Self {
            shootdowns: AtomicU64::new(0),
            ipis_sent: AtomicU64::new(0),
            ipis_coalesced: AtomicU64::new(0),
            ipis_saved: AtomicU64::new(0),
            wait_rounds: AtomicU64::new(0),
        }
    }

    pub(crate) fn snapshot(&self) -> ShootdownStats {
        ShootdownStats {
            shootdowns: self.shootdowns.load(Relaxed),
            ipis_sent: self.ipis_sent.load(Relaxed),
            ipis_coalesced: self.ipis_coalesced.load(Relaxed),
            ipis_saved: self.ipis_saved.load(Relaxed),
            wait_rounds: self.wait_rounds.load(Relaxed),
        }
    }
}

pub(crate) struct CpuCounters {
    pub(crate) served: AtomicU64,
    pub(crate) invalidations: AtomicU64,
}

impl CpuCounters {
    pub(crate) const fn new() -> Self {
        Self {
            served: AtomicU64::new(0),
            invalidations: AtomicU64::new(0),
        }
    }

    pub(crate) fn snapshot(&self) -> CpuStats {
        CpuStats {
            served: self.served.load(Relaxed),
            invalidations: self.invalidations.load(Relaxed),
        }
    }
}

/// Add `n` to a counter.
pub(crate) fn add(counter: &AtomicU64, n: u64) {
    if n != 0 {
        counter.fetch_add(n, Relaxed);
    }
}
