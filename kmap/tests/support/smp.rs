//! A 4-CPU shootdown over [`SimCpus`] for kmap's SMP tests: every flush
//! the pool asks for reaches every simulated CPU, and each one that is not
//! the initiating CPU counts as one IPI. Each CPU's last full flush (a
//! CR3 reload: the slots are not global; a PGE toggle; a range flush above
//! the `invlpg` ceiling) is stamped on one clock that
//! [`TlbOps::mark`] also reads, so [`TlbOps::flush_range_since`] skips the
//! CPUs that flushed everything after the mark, as NetBSD's per-CPU TLB
//! generations do.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use paging_core::flush::RANGE_FLUSH_CEILING;
use paging_core::{TlbMark, TlbOps, VirtAddr};
use paging_sim::{Mmu, SimCpus};

/// Simulated CPUs of the SMP tests.
pub const SMP_CPUS: usize = 4;

/// The shootdown: a [`TlbOps`] that flushes every CPU (the pool's).
pub struct SmpTlb<'r> {
    cpus: SimCpus<'r>,
    /// The CPU running the current operation (the initiator).
    current: AtomicUsize,
    clock: AtomicU64,
    /// Per CPU: the clock when its last full flush began.
    stamps: Vec<AtomicU64>,
    /// IPIs sent (one per remote CPU per flush request).
    pub ipis: AtomicU64,
    /// IPIs `flush_range_since` did not send: the CPU had flushed since.
    pub skipped: AtomicU64,
    /// Single-page invalidation requests (each reaching every CPU).
    pub page_requests: AtomicU64,
    /// Flushes of the local CPU only (through [`LocalTlb`]).
    pub local_flushes: AtomicU64,
    /// Negative control: `flush_range_since` pretends every CPU has flushed
    /// since, and flushes none.
    pub lie: AtomicBool,
}

impl<'r> SmpTlb<'r> {
    /// `SMP_CPUS` CPUs with `cr3` loaded, like `like`.
    pub fn new(like: &Mmu<'r>) -> Self {
        let cpus = SimCpus::new(like.ram(), like.config(), SMP_CPUS);
        cpus.load_cr3_all(like.cr3()).unwrap();
        Self {
            cpus,
            current: AtomicUsize::new(0),
            clock: AtomicU64::new(1),
            stamps: (0..SMP_CPUS).map(|_| AtomicU64::new(0)).collect(),
            ipis: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            page_requests: AtomicU64::new(0),
            local_flushes: AtomicU64::new(0),
            lie: AtomicBool::new(false),
        }
    }

    /// CPU `i`'s MMU.
    pub fn cpu(&self, i: usize) -> &Mmu<'r> {
        self.cpus.cpu(i).unwrap()
    }

    /// From now on, operations run on CPU `i`.
    pub fn on(&self, i: usize) {
        self.current.store(i, Ordering::Relaxed);
    }

    /// The CPU operations run on.
    pub fn current(&self) -> usize {
        self.current.load(Ordering::Relaxed)
    }

    fn tick(&self) -> u64 {
        self.clock.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// Run a full flush on CPU `i`: the stamp is read *before* the flush
    /// starts, so a stamp above a mark means the whole flush came after it.
    fn full_flush_on(&self, i: usize, flush: impl FnOnce(&Mmu<'r>)) {
        let t = self.tick();
        flush(self.cpu(i));
        self.stamps[i].store(t, Ordering::Release);
    }

    /// CPU `i` switches address space: a CR3 load (the pool's slots are not
    /// global, so it drops them too). No IPI.
    pub fn context_switch(&self, i: usize) {
        let cr3 = self.cpu(i).cr3();
        self.full_flush_on(i, |m| m.load_cr3(cr3).unwrap());
    }

    /// CPU `i` toggles CR4.PGE. No IPI.
    pub fn pge_toggle(&self, i: usize) {
        self.full_flush_on(i, |m| m.flush_global());
    }

    fn each(&self, mut f: impl FnMut(usize, &Mmu<'r>)) {
        let me = self.current();
        for i in 0..SMP_CPUS {
            if i != me {
                self.ipis.fetch_add(1, Ordering::Relaxed);
            }
            f(i, self.cpu(i));
        }
    }

    fn range_on(&self, i: usize, start: VirtAddr, pages: u32) {
        if pages > RANGE_FLUSH_CEILING {
            self.full_flush_on(i, |m| m.flush_range(start, pages));
        } else {
            self.cpu(i).flush_range(start, pages);
        }
    }
}

impl TlbOps for SmpTlb<'_> {
    fn flush_page(&self, va: VirtAddr) {
        self.page_requests.fetch_add(1, Ordering::Relaxed);
        self.each(|_, m| m.invlpg(va));
    }

    fn flush_range(&self, start: VirtAddr, pages: u32) {
        self.each(|i, _| self.range_on(i, start, pages));
    }

    fn flush_all(&self) {
        self.each(|i, _| self.full_flush_on(i, TlbOps::flush_all));
    }

    fn flush_everything(&self) {
        self.each(|i, _| self.full_flush_on(i, TlbOps::flush_everything));
    }

    fn mark(&self) -> TlbMark {
        TlbMark(self.tick())
    }

    fn flush_range_since(&self, start: VirtAddr, pages: u32, since: TlbMark) {
        let me = self.current();
        let lie = self.lie.load(Ordering::Relaxed);
        for i in 0..SMP_CPUS {
            if lie || self.stamps[i].load(Ordering::Acquire) > since.0 {
                if i != me {
                    self.skipped.fetch_add(1, Ordering::Relaxed);
                }
                continue;
            }
            if i != me {
                self.ipis.fetch_add(1, Ordering::Relaxed);
            }
            self.range_on(i, start, pages);
        }
    }
}

/// The local CPU's own TLB operations (what `LocalSlots` gets on SMP):
/// they never leave the CPU running the operation.
pub struct LocalTlb<'a, 'r>(pub &'a SmpTlb<'r>);

impl TlbOps for LocalTlb<'_, '_> {
    fn flush_page(&self, va: VirtAddr) {
        self.0.local_flushes.fetch_add(1, Ordering::Relaxed);
        self.0.cpu(self.0.current()).invlpg(va);
    }
    fn flush_all(&self) {
        self.0.local_flushes.fetch_add(1, Ordering::Relaxed);
        self.0.cpu(self.0.current()).flush_all();
    }
    fn flush_everything(&self) {
        self.0.local_flushes.fetch_add(1, Ordering::Relaxed);
        self.0.cpu(self.0.current()).flush_everything();
    }
}
