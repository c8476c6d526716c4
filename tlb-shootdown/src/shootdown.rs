//! The protocol: per-CPU mailboxes, requests, acknowledgements, waiting
//! that keeps answering, and per-CPU TLB generations.
//!
//! # Requests and acknowledgements
//!
//! Each CPU has a mailbox: the [`FlushRequest`] it owes, merged from every
//! initiator, and `posted`, a counter bumped (under the mailbox lock) by
//! every merge. An initiator merges its request into each target's mailbox,
//! keeps the `posted` value it produced as its *ticket*, sends the
//! interrupt to the targets that had none pending, and waits until each
//! target's `done` counter reaches its ticket. A CPU services its mailbox by
//! taking the request and the `posted` value under the lock, performing the
//! request, and then storing that value in `done` (release): everything
//! merged up to that value was in what it took, so `done >= ticket` means
//! the initiator's invalidation has been performed (the initiator loads
//! `done` with acquire). Counters compare with wrapping arithmetic; fewer
//! than 2^31 requests are ever outstanding at one CPU.
//!
//! # Why waiting cannot deadlock
//!
//! An initiator waits with its shootdown interrupt masked; two initiators
//! waiting for each other would never take each other's interrupt. So every
//! wait round first services the waiting CPU's own mailbox: whatever
//! another initiator asked of this CPU is performed and acknowledged
//! without the interrupt.
//!
//! # Offline CPUs
//!
//! A CPU's online flag lives in its mailbox (and in a mask for a quick
//! look). `set_offline` clears it under the lock and then services what is
//! left; an initiator posts only under the lock and only if the flag is
//! set, so every request posted to a CPU is either drained on its way out
//! or never posted. `set_online` sets the flag and then flushes the CPU's
//! whole TLB, so an initiator that saw it offline (and skipped it) cannot
//! leave it a stale entry.

use core::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release};

use paging_core::{TlbMark, TlbOps};

use crate::stats::{self, Counters, CpuCounters};
use crate::sync::{AtomicU32, Mutex};
use crate::{
    CpuSet, CpuStats, FlushRequest, IpiPlatform, Report, ShootdownError, ShootdownStats, Targets,
};

/// One CPU's mailbox, under its lock.
struct Mailbox {
    /// What it owes, merged from every initiator.
    request: FlushRequest,
    /// Bumped by every merge: the tickets.
    posted: u32,
    /// An interrupt was sent and the mailbox not taken since.
    ipi_pending: bool,
    /// Whether the CPU takes shootdowns.
    online: bool,
}

impl Mailbox {
    const fn new() -> Self {
        Self {
            request: FlushRequest::new(),
            posted: 0,
            ipi_pending: false,
            online: false,
        }
    }
}

/// Everything the shootdown keeps for one CPU.
struct PerCpu {
    mailbox: Mutex<Mailbox>,
    /// A copy of `mailbox.posted`, so that a service with nothing to do
    /// needs no lock.
    posted: AtomicU32,
    /// The last ticket whose request this CPU has performed.
    done: AtomicU32,
    /// The clock's value when this CPU's latest full flush began. A
    /// 64-bit value under a lock, not a 64-bit atomic: on a 32-bit x86
    /// without `cmpxchg8b` in the compiler's baseline (i586) that is x87
    /// code, and kernel code must not touch the FPU; and a 32-bit clock
    /// would wrap. It is taken once per full flush and per target of a
    /// deferred flush.
    last_full: Mutex<u64>,
    stats: CpuCounters,
}

impl PerCpu {
    #[cfg(not(loom))]
    const fn new() -> Self {
        Self {
            mailbox: Mutex::new(Mailbox::new()),
            posted: AtomicU32::new(0),
            done: AtomicU32::new(0),
            last_full: Mutex::new(0),
            stats: CpuCounters::new(),
        }
    }

    #[cfg(loom)]
    fn new() -> Self {
        Self {
            mailbox: Mutex::new(Mailbox::new()),
            posted: AtomicU32::new(0),
            done: AtomicU32::new(0),
            last_full: Mutex::new(0),
            stats: CpuCounters::new(),
        }
    }
}

/// Where a full flush began, from [`Shootdown::begin_full_flush`]: hand it
/// to [`Shootdown::record_full_flush`] once the flush is done.
#[must_use = "record the full flush, or it saves no interrupts"]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FullFlushStart(u64);

/// TLB shootdown among `CPUS` CPUs (at most [`CpuSet::MAX`]), sending
/// interrupts through `P`.
///
/// Made once (`new` is `const`, so it can be a `static`); every CPU that
/// comes up calls [`set_online`](Self::set_online), the shootdown
/// interrupt's handler calls [`service`](Self::service), and whoever changes
/// a mapping other CPUs may hold calls [`flush`](Self::flush) with the
/// token the change returned. See [`IpiPlatform`] for the masking rule.
pub struct Shootdown<P, const CPUS: usize> {
    platform: P,
    cpus: [PerCpu; CPUS],
    /// Bit `i` of word `i / 32`: CPU `i` is online (a copy of the
    /// mailboxes' flags). Two 32-bit words, not one 64-bit atomic: on a
    /// 32-bit x86 without `cmpxchg8b` in the compiler's baseline (i586) a
    /// 64-bit atomic is x87 code, and kernel code must not touch the FPU.
    /// Each CPU's bit lives in one word, so reading the two words at
    /// different moments still gives every CPU's own latest state.
    online: [AtomicU32; 2],
    /// The generation clock: advanced by each mark (a 64-bit value under a
    /// lock, for the reason given at `PerCpu::last_full`).
    clock: Mutex<u64>,
    ack_limit: Option<u32>,
    stats: Counters,
}

impl<P: IpiPlatform, const CPUS: usize> Shootdown<P, CPUS> {
    /// A shootdown with no CPU online, waiting without bound for
    /// acknowledgements.
    #[cfg(not(loom))]
    pub const fn new(platform: P) -> Self {
        const { assert!(CPUS <= CpuSet::MAX, "a CpuSet names at most 64 CPUs") };
        Self {
            platform,
            cpus: [const { PerCpu::new() }; CPUS],
            online: [AtomicU32::new(0), AtomicU32::new(0)],
            clock: Mutex::new(0),
            ack_limit: None,
            stats: Counters::new(),
        }
    }

    /// A shootdown with no CPU online, waiting without bound for
    /// acknowledgements.
    #[cfg(loom)]
    pub fn new(platform: P) -> Self {
        const { assert!(CPUS <= CpuSet::MAX, "a CpuSet names at most 64 CPUs") };
        Self {
            platform,
            cpus: core::array::from_fn(|_| PerCpu::new()),
            online: [AtomicU32::new(0), AtomicU32::new(0)],
            clock: Mutex::new(0),
            ack_limit: None,
            stats: Counters::new(),
        }
    }

    /// Give up waiting for acknowledgements after `rounds` wait rounds,
    /// with [`ShootdownError::NoAck`] (a debugging aid: a CPU that never
    /// answers is a kernel bug, and the stale translation it may still use
    /// is then reported rather than hung on).
    pub const fn with_ack_limit(mut self, rounds: u32) -> Self {
        self.ack_limit = Some(rounds);
        self
    }

    /// The platform.
    pub fn platform(&self) -> &P {
        &self.platform
    }

    /// The CPUs online now.
    pub fn online(&self) -> CpuSet {
        let lo = u64::from(self.online[0].load(Acquire));
        let hi = u64::from(self.online[1].load(Acquire));
        CpuSet::from_bits(lo | hi << 32)
    }

    fn check(cpu: usize) -> Result<(), ShootdownError> {
        if cpu < CPUS {
            Ok(())
        } else {
            Err(ShootdownError::NoSuchCpu { cpu })
        }
    }

    /// Bring `cpu` online: from now on it is a target of
    /// [`Targets::AllCpus`]. Called on `cpu` itself (with its shootdown
    /// interrupt masked, `local` being its TLB) before it uses mappings
    /// that other CPUs change; it then flushes `local` entirely, so that no
    /// translation it loaded while offline survives.
    pub fn set_online(&self, cpu: usize, local: &impl TlbOps) -> Result<(), ShootdownError> {
        Self::check(cpu)?;
        {
            let mut mailbox = self.cpus[cpu].mailbox.lock();
            mailbox.online = true;
            self.online[cpu / 32].fetch_or(1 << (cpu % 32), AcqRel);
        }
        self.full_flush(cpu, local);
        Ok(())
    }

    /// Take `cpu` offline: it is no longer a target, and a flush naming it
    /// fails with [`ShootdownError::Offline`]. Called on `cpu` itself, with
    /// its shootdown interrupt masked, as the last thing before it stops
    /// taking interrupts; requests already posted to it are performed on
    /// `local` and acknowledged here, so no initiator waits for it forever.
    pub fn set_offline(&self, cpu: usize, local: &impl TlbOps) -> Result<(), ShootdownError> {
        Self::check(cpu)?;
        {
            let mut mailbox = self.cpus[cpu].mailbox.lock();
            mailbox.online = false;
            self.online[cpu / 32].fetch_and(!(1 << (cpu % 32)), AcqRel);
        }
        self.service_cpu(cpu, local);
        Ok(())
    }

    /// Perform what other CPUs asked of the current one, on `local`, and
    /// acknowledge it. The shootdown interrupt's handler calls this; so
    /// does every wait for acknowledgements. Returns whether there was
    /// anything to do. Does nothing for an index beyond `CPUS`.
    pub fn service(&self, local: &impl TlbOps) -> bool {
        let me = self.platform.current_cpu();
        me < CPUS && self.service_cpu(me, local)
    }

    fn service_cpu(&self, me: usize, local: &impl TlbOps) -> bool {
        let cpu = &self.cpus[me];
        if cpu.posted.load(Acquire) == cpu.done.load(Relaxed) {
            return false;
        }
        let (request, seen) = {
            let mut mailbox = cpu.mailbox.lock();
            mailbox.ipi_pending = false;
            (core::mem::take(&mut mailbox.request), mailbox.posted)
        };
        if !request.is_empty() {
            self.perform(me, &request, local);
            stats::add(&cpu.stats.served, 1);
        }
        // Release: the invalidation above happens before any initiator
        // that sees this value returns.
        cpu.done.store(seen, Release);
        self.platform.acked();
        true
    }

    /// Perform `request` on CPU `me`'s TLB, recording a full flush.
    fn perform(&self, me: usize, request: &FlushRequest, local: &impl TlbOps) {
        if request.is_everything() {
            self.full_flush(me, local);
        } else {
            let ops = request.perform(local);
            stats::add(&self.cpus[me].stats.invalidations, ops.into());
        }
    }

    /// Flush everything on `me`'s TLB and record it.
    fn full_flush(&self, me: usize, local: &impl TlbOps) {
        let start = FullFlushStart(*self.clock.lock());
        local.flush_everything();
        self.record(me, start);
        stats::add(&self.cpus[me].stats.invalidations, 1);
    }

    fn record(&self, me: usize, start: FullFlushStart) {
        // Release: the flush happens before any initiator that reads this
        // value and skips this CPU.
        // The lock orders the flush before any initiator that reads this
        // value and skips this CPU.
        let mut last = self.cpus[me].last_full.lock();
        *last = (*last).max(start.0);
    }

    /// Flush the current CPU's whole TLB (globals included) and record it,
    /// so that [`flush_since`](Self::flush_since) can skip this CPU for
    /// entries cleared before. Call with the shootdown interrupt masked.
    pub fn flush_everything_local(&self, local: &impl TlbOps) {
        let me = self.platform.current_cpu();
        if me < CPUS {
            self.full_flush(me, local);
        } else {
            local.flush_everything();
        }
    }

    /// For a full flush the kernel does by itself (a CR4.PGE toggle):
    /// take this *before* the flush begins, and hand it to
    /// [`record_full_flush`](Self::record_full_flush) after it is done. A
    /// CR3 reload does not count (it keeps global translations).
    pub fn begin_full_flush(&self) -> FullFlushStart {
        FullFlushStart(*self.clock.lock())
    }

    /// Record that the current CPU flushed its whole TLB, globals
    /// included, since `start` was taken.
    pub fn record_full_flush(&self, start: FullFlushStart) {
        let me = self.platform.current_cpu();
        if me < CPUS {
            self.record(me, start);
        }
    }

    /// A point in the flush history: take it *after* clearing entries whose
    /// invalidation is deferred, and hand it to
    /// [`flush_since`](Self::flush_since). Advances the clock.
    pub fn mark(&self) -> TlbMark {
        // AcqRel: the clearing before it is released to every CPU that
        // loads a value from here on as the start of its full flush.
        let mut clock = self.clock.lock();
        *clock += 1;
        TlbMark(*clock)
    }

    /// Counters since creation.
    pub fn stats(&self) -> ShootdownStats {
        self.stats.snapshot()
    }

    /// One CPU's counters (`None` beyond `CPUS`).
    pub fn cpu_stats(&self, cpu: usize) -> Option<CpuStats> {
        self.cpus.get(cpu).map(|c| c.stats.snapshot())
    }

    /// Invalidate `request` on the TLBs of `targets` and wait until each
    /// has done it. The current CPU, if a target, is flushed here on
    /// `local`; every other target gets its request merged into its
    /// mailbox and at most one interrupt from this call (so a whole
    /// [`FlushBatch`](paging_core::FlushBatch) costs one round), and while
    /// waiting this CPU keeps servicing its own mailbox.
    ///
    /// Call with this CPU's shootdown interrupt masked ([`IpiPlatform`]).
    ///
    /// # Errors
    /// - [`ShootdownError::NoSuchCpu`]: the current CPU or a target is not
    ///   below `CPUS`;
    /// - [`ShootdownError::Offline`]: a target other than the current CPU
    ///   is offline;
    ///
    /// both before anything is sent or flushed; and
    /// - [`ShootdownError::NoAck`] if an acknowledgement limit is set and
    ///   reached.
    pub fn flush(
        &self,
        request: impl Into<FlushRequest>,
        targets: Targets,
        local: &impl TlbOps,
    ) -> Result<Report, ShootdownError> {
        self.shoot(request.into(), targets, false, TlbMark::NONE, local)
    }

    /// As [`flush`](Self::flush), for entries cleared before `since` was
    /// taken with [`mark`](Self::mark): a target whose latest full flush
    /// began after `since` cannot hold them, and is skipped (no interrupt,
    /// counted in [`ShootdownStats::ipis_saved`]). With [`TlbMark::NONE`]
    /// no CPU is skipped.
    pub fn flush_since(
        &self,
        request: impl Into<FlushRequest>,
        since: TlbMark,
        targets: Targets,
        local: &impl TlbOps,
    ) -> Result<Report, ShootdownError> {
        self.shoot(request.into(), targets, false, since, local)
    }

    /// The protocol. `clip`: offline targets are dropped instead of
    /// reported (the TLB adapter's address-space flushes).
    pub(crate) fn shoot(
        &self,
        request: FlushRequest,
        targets: Targets,
        clip: bool,
        since: TlbMark,
        local: &impl TlbOps,
    ) -> Result<Report, ShootdownError> {
        let me = self.platform.current_cpu();
        Self::check(me)?;
        let here = CpuSet::single(me);
        let online = self.online();
        let mut set = match targets {
            Targets::AllCpus => online.union(here),
            Targets::Local => here,
            Targets::Cpus(set) if clip => set.intersection(online.union(here)),
            Targets::Cpus(set) => {
                if let Some(cpu) = set.minus(CpuSet::first(CPUS)).first_cpu() {
                    return Err(ShootdownError::NoSuchCpu { cpu });
                }
                if let Some(cpu) = set.minus(online).minus(here).first_cpu() {
                    return Err(ShootdownError::Offline { cpu });
                }
                set
            }
        };
        let mut report = Report::default();
        if request.is_empty() || set.is_empty() {
            return Ok(report);
        }
        stats::add(&self.stats.shootdowns, 1);

        // Per-CPU TLB generations. `since` was taken after the entries
        // were cleared (the caller's order); `mark`'s release and a full
        // flush's acquire load of its start make a start >= since mean
        // "the flush began after the clear", so that CPU cannot have
        // loaded the old translation after its flush. A flush that began
        // before the mark has a smaller start and never qualifies; one in
        // progress has not been recorded yet: both get the interrupt.
        if since != TlbMark::NONE {
            for cpu in set {
                if *self.cpus[cpu].last_full.lock() >= since.0 {
                    set.remove(cpu);
                    report.skipped.insert(cpu);
                }
            }
            stats::add(
                &self.stats.ipis_saved,
                report.skipped.minus(here).len() as u64,
            );
        }

        let mut tickets = [0u32; CPUS];
        for cpu in set.minus(here) {
            let per_cpu = &self.cpus[cpu];
            let mut mailbox = per_cpu.mailbox.lock();
            if !mailbox.online {
                // Went offline since the look above: it drained its
                // mailbox on the way out and flushes everything when it
                // comes back.
                continue;
            }
            mailbox.request.merge(&request);
            mailbox.posted = mailbox.posted.wrapping_add(1);
            tickets[cpu] = mailbox.posted;
            per_cpu.posted.store(mailbox.posted, Release);
            if mailbox.ipi_pending {
                stats::add(&self.stats.ipis_coalesced, 1);
            } else {
                mailbox.ipi_pending = true;
                report.ipis.insert(cpu);
            }
            report.acknowledged.insert(cpu);
        }
        if !report.ipis.is_empty() {
            self.platform.send(report.ipis);
            stats::add(&self.stats.ipis_sent, report.ipis.len() as u64);
        }

        // The local part, while the others work.
        if set.contains(me) {
            self.perform(me, &request, local);
            report.local = true;
        }

        let mut waiting = report.acknowledged;
        loop {
            for cpu in waiting {
                let done = self.cpus[cpu].done.load(Acquire);
                if done.wrapping_sub(tickets[cpu]) as i32 >= 0 {
                    waiting.remove(cpu);
                }
            }
            if waiting.is_empty() {
                break;
            }
            if self
                .ack_limit
                .is_some_and(|limit| report.wait_rounds >= limit)
            {
                report.acknowledged = report.acknowledged.minus(waiting);
                stats::add(&self.stats.wait_rounds, report.wait_rounds.into());
                return Err(ShootdownError::NoAck { cpus: waiting });
            }
            // Answer whoever waits for us, then pause.
            self.service_cpu(me, local);
            self.platform.relax();
            report.wait_rounds = report.wait_rounds.saturating_add(1);
        }
        stats::add(&self.stats.wait_rounds, report.wait_rounds.into());
        Ok(report)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use paging_core::{Flush, VirtAddr};

    use core::cell::Cell;
    use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering::SeqCst};

    /// A platform that delivers nothing (every CPU here is brought online
    /// and offline by the test itself) and records what it was asked to
    /// send; the current CPU is whatever the test sets.
    #[derive(Default)]
    struct Silent {
        cpu: AtomicUsize,
        sent: AtomicU64,
    }
    impl Silent {
        fn on(&self, cpu: usize) {
            self.cpu.store(cpu, SeqCst);
        }
        fn sent(&self) -> u64 {
            self.sent.load(SeqCst)
        }
    }
    impl IpiPlatform for Silent {
        fn current_cpu(&self) -> usize {
            self.cpu.load(SeqCst)
        }
        fn send(&self, targets: CpuSet) {
            self.sent.fetch_or(targets.bits(), SeqCst);
        }
    }

    /// A local TLB that counts full flushes.
    #[derive(Default)]
    struct NoTlb {
        everything: Cell<u32>,
    }
    impl TlbOps for NoTlb {
        fn flush_page(&self, _: VirtAddr) {}
        fn flush_all(&self) {}
        fn flush_everything(&self) {
            self.everything.set(self.everything.get() + 1);
        }
    }

    #[test]
    fn the_online_set_spans_both_words_of_64_cpus() {
        let sd = Shootdown::<Silent, 64>::new(Silent::default());
        assert!(sd.online().is_empty());
        for cpu in [0, 5, 31, 32, 40, 63] {
            sd.set_online(cpu, &NoTlb::default()).unwrap();
        }
        let online = sd.online();
        assert_eq!(online.len(), 6, "{online:?}");
        for cpu in 0..64 {
            assert_eq!(
                online.contains(cpu),
                [0, 5, 31, 32, 40, 63].contains(&cpu),
                "cpu {cpu}"
            );
        }
        sd.set_offline(40, &NoTlb::default()).unwrap();
        sd.set_offline(5, &NoTlb::default()).unwrap();
        let online = sd.online();
        assert!(!online.contains(40) && !online.contains(5));
        assert!(online.contains(32) && online.contains(31) && online.contains(63));
        assert_eq!(online.len(), 4);
        assert_eq!(
            sd.set_online(64, &NoTlb::default()),
            Err(ShootdownError::NoSuchCpu { cpu: 64 })
        );
    }

    #[test]
    fn a_cpu_beyond_the_table_is_served_nothing_and_flushes_only_itself() {
        let sd = Shootdown::<Silent, 4>::new(Silent::default());
        sd.platform().on(4);
        let tlb = NoTlb::default();
        assert!(!sd.service(&tlb));
        sd.flush_everything_local(&tlb);
        assert_eq!(tlb.everything.get(), 1, "its own TLB is still flushed");
        let start = sd.begin_full_flush();
        sd.record_full_flush(start);
        assert_eq!(
            sd.flush(Flush::page(VirtAddr::new(0x1000)), Targets::Local, &tlb),
            Err(ShootdownError::NoSuchCpu { cpu: 4 })
        );
    }

    #[test]
    fn a_recorded_full_flush_lets_flush_since_skip_that_cpu() {
        let sd = Shootdown::<Silent, 4>::new(Silent::default()).with_ack_limit(3);
        let tlb = NoTlb::default();
        sd.set_online(0, &tlb).unwrap();
        sd.set_online(1, &tlb).unwrap();
        // Entries cleared, then the mark; CPU 1 then flushes everything by
        // itself (a CR4.PGE toggle) and records it.
        let since = sd.mark();
        sd.platform().on(1);
        let start = sd.begin_full_flush();
        sd.record_full_flush(start);
        sd.platform().on(0);
        let report = sd
            .flush_since(
                Flush::page(VirtAddr::new(0x1000)),
                since,
                Targets::AllCpus,
                &tlb,
            )
            .unwrap();
        assert!(report.skipped.contains(1), "{report:?}");
        assert_eq!(sd.platform().sent(), 0, "no interrupt for CPU 1");
        // A full flush that began before the mark does not count.
        let early = sd.begin_full_flush();
        let since = sd.mark();
        sd.platform().on(1);
        sd.record_full_flush(early);
        sd.platform().on(0);
        assert_eq!(
            sd.flush_since(
                Flush::page(VirtAddr::new(0x1000)),
                since,
                Targets::AllCpus,
                &tlb
            ),
            Err(ShootdownError::NoAck {
                cpus: CpuSet::single(1)
            })
        );
        assert_eq!(sd.platform().sent(), 1 << 1);
    }

    #[test]
    fn an_empty_request_or_target_set_sends_nothing() {
        let sd = Shootdown::<Silent, 4>::new(Silent::default()).with_ack_limit(3);
        let tlb = NoTlb::default();
        sd.set_online(0, &tlb).unwrap();
        sd.set_online(2, &tlb).unwrap();
        let report = sd.flush(Flush::none(), Targets::AllCpus, &tlb).unwrap();
        assert!(report.ipis.is_empty() && !report.local, "{report:?}");
        let report = sd
            .flush(
                Flush::page(VirtAddr::new(0x1000)),
                Targets::Cpus(CpuSet::empty()),
                &tlb,
            )
            .unwrap();
        assert!(report.ipis.is_empty() && !report.local, "{report:?}");
        assert_eq!(sd.platform().sent(), 0);
        assert_eq!(sd.stats().shootdowns, 0);
    }
}
