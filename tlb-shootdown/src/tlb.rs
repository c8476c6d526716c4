//! [`TlbOps`] through the shootdown: what the mapper, fixmap and kmap call.

use paging_core::{TlbMark, TlbOps, VirtAddr};

use crate::{CpuSet, FlushRequest, IpiPlatform, Report, Shootdown, ShootdownError, Targets};

/// The TLBs of a set of CPUs as one [`TlbOps`]: every flush is a shootdown
/// with the current CPU's TLB `L` as the local one.
///
/// [`kernel`](Self::kernel) reaches every online CPU (kernel mappings: the
/// kmap pool, vmalloc, fixmap); [`address_space`](Self::address_space) the
/// online CPUs of a set (a user address space's). Offline CPUs are left
/// out, never an error: they flush everything when they come back.
/// [`mark`](TlbOps::mark) and [`flush_range_since`](TlbOps::flush_range_since)
/// use the per-CPU TLB generations, so a deferred flush skips CPUs that
/// flushed everything since.
///
/// Each `TlbOps` call is one shootdown round; to flush a whole
/// [`FlushBatch`](paging_core::FlushBatch) in one round, pass it to
/// [`flush`](Self::flush) rather than calling its own `flush` with this
/// adapter (which would make one round per kind of invalidation).
///
/// Use it with the shootdown interrupt masked ([`IpiPlatform`]).
///
/// # Panics
/// A `TlbOps` method cannot return an error, so it panics if the platform's
/// current CPU is not below `CPUS`, or if an acknowledgement limit is set
/// ([`Shootdown::with_ack_limit`]) and reached: a stale translation is not
/// to be ignored. [`flush`](Self::flush) returns these errors instead.
pub struct ShootdownTlb<'a, P, L, const CPUS: usize> {
    shootdown: &'a Shootdown<P, CPUS>,
    local: &'a L,
    cpus: Option<CpuSet>,
}

impl<'a, P: IpiPlatform, L: TlbOps, const CPUS: usize> ShootdownTlb<'a, P, L, CPUS> {
    /// Every online CPU, and the current one (whose TLB is `local`).
    pub fn kernel(shootdown: &'a Shootdown<P, CPUS>, local: &'a L) -> Self {
        Self {
            shootdown,
            local,
            cpus: None,
        }
    }

    /// The online CPUs of `cpus` (the CPUs that have run an address space),
    /// the current one flushed on `local` if it is in the set.
    pub fn address_space(shootdown: &'a Shootdown<P, CPUS>, local: &'a L, cpus: CpuSet) -> Self {
        Self {
            shootdown,
            local,
            cpus: Some(cpus),
        }
    }

    /// Flush `request` (a [`Flush`](paging_core::Flush), a whole
    /// [`FlushBatch`](paging_core::FlushBatch)) on these CPUs in one round.
    ///
    /// # Errors
    /// [`ShootdownError::NoSuchCpu`] if the current CPU is not below `CPUS`;
    /// [`ShootdownError::NoAck`] if the acknowledgement limit is reached.
    pub fn flush(&self, request: impl Into<FlushRequest>) -> Result<Report, ShootdownError> {
        self.shoot(request.into(), TlbMark::NONE)
    }

    fn shoot(&self, request: FlushRequest, since: TlbMark) -> Result<Report, ShootdownError> {
        let targets = match self.cpus {
            None => Targets::AllCpus,
            Some(set) => Targets::Cpus(set),
        };
        self.shootdown
            .shoot(request, targets, true, since, self.local)
    }

    fn must(&self, request: FlushRequest, since: TlbMark) {
        if let Err(e) = self.shoot(request, since) {
            panic!("TLB shootdown failed: {e}");
        }
    }
}

impl<P: IpiPlatform, L: TlbOps, const CPUS: usize> TlbOps for ShootdownTlb<'_, P, L, CPUS> {
    fn flush_page(&self, va: VirtAddr) {
        let mut r = FlushRequest::new();
        r.add_page(va);
        self.must(r, TlbMark::NONE);
    }

    fn flush_range(&self, start: VirtAddr, pages: u32) {
        let mut r = FlushRequest::new();
        r.add_range(start, pages);
        self.must(r, TlbMark::NONE);
    }

    fn flush_all(&self) {
        let mut r = FlushRequest::new();
        r.add_reload_cr3();
        self.must(r, TlbMark::NONE);
    }

    fn flush_everything(&self) {
        self.must(FlushRequest::everything(), TlbMark::NONE);
    }

    fn mark(&self) -> TlbMark {
        self.shootdown.mark()
    }

    fn flush_range_since(&self, start: VirtAddr, pages: u32, since: TlbMark) {
        let mut r = FlushRequest::new();
        r.add_range(start, pages);
        self.must(r, since);
    }
}
