//! What shootdowns did: per call, and counted since boot. Reports, not
//! protocol: relaxed atomics, outside the model checker.

use core::sync::atomic::{AtomicU32, Ordering::Relaxed};

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
    pub(crate) shootdowns: AtomicU32,
    pub(crate) ipis_sent: AtomicU32,
    pub(crate) ipis_coalesced: AtomicU32,
    pub(crate) ipis_saved: AtomicU32,
    pub(crate) wait_rounds: AtomicU32,
}

impl Counters {
    pub(crate) const fn new() -> Self {
        Self {
            shootdowns: AtomicU32::new(0),
            ipis_sent: AtomicU32::new(0),
            ipis_coalesced: AtomicU32::new(0),
            ipis_saved: AtomicU32::new(0),
            wait_rounds: AtomicU32::new(0),
        }
    }

    pub(crate) fn snapshot(&self) -> ShootdownStats {
        ShootdownStats {
            shootdowns: u64::from(self.shootdowns.load(Relaxed)),
            ipis_sent: u64::from(self.ipis_sent.load(Relaxed)),
            ipis_coalesced: u64::from(self.ipis_coalesced.load(Relaxed)),
            ipis_saved: u64::from(self.ipis_saved.load(Relaxed)),
            wait_rounds: u64::from(self.wait_rounds.load(Relaxed)),
        }
    }
}

pub(crate) struct CpuCounters {
    pub(crate) served: AtomicU32,
    pub(crate) invalidations: AtomicU32,
}

impl CpuCounters {
    pub(crate) const fn new() -> Self {
        Self {
            served: AtomicU32::new(0),
            invalidations: AtomicU32::new(0),
        }
    }

    pub(crate) fn snapshot(&self) -> CpuStats {
        CpuStats {
            served: u64::from(self.served.load(Relaxed)),
            invalidations: u64::from(self.invalidations.load(Relaxed)),
        }
    }
}

/// Add `n` to a counter. The counters are 32-bit atomics (they wrap after
/// 2^32): a 64-bit atomic on a 32-bit x86 without `cmpxchg8b` in the
/// compiler's baseline (i586) is done with x87 loads and stores, and
/// kernel code must not touch the FPU.
pub(crate) fn add(counter: &AtomicU32, n: u64) {
    if n != 0 {
        counter.fetch_add(n as u32, Relaxed);
    }
}
