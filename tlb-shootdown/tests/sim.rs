//! The shootdown driven on the host model: several simulated CPUs (each an
//! `Mmu` with its own TLB) over one RAM, the mapper's real flush tokens,
//! and one thread per CPU whose "interrupt handler" services the shootdown
//! when its pending flag is set. After `flush` returns, no CPU may still
//! translate to the old frame.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};

use paging_core::{
    Flush, FlushBatch, MapFlags, Page, PagingMode, PhysAddr, PhysFrame, TlbMark, TlbOps, VirtAddr,
};
use paging_sim::{Access, Machine, Mmu, SimRam};
use tlb_shootdown::{CpuSet, IpiPlatform, Shootdown, ShootdownError, ShootdownTlb, Targets};

const CPUS: usize = 4;
const VA: u32 = 0xC000_0000;
const OLD: u64 = 0x5000;
const NEW: u64 = 0x6000;

std::thread_local!(static CPU: Cell<usize> = const { Cell::new(0) });

/// The test's LAPIC: a pending flag per CPU, optionally dropping every
/// interrupt (a broken delivery).
struct Lapic {
    pending: [AtomicBool; CPUS],
    deliver: bool,
    sent: AtomicUsize,
}

impl Lapic {
    fn new(deliver: bool) -> Self {
        Self {
            pending: [const { AtomicBool::new(false) }; CPUS],
            deliver,
            sent: AtomicUsize::new(0),
        }
    }
}

impl IpiPlatform for Lapic {
    fn current_cpu(&self) -> usize {
        CPU.with(Cell::get)
    }
    fn send(&self, targets: CpuSet) {
        assert!(!targets.contains(self.current_cpu()), "no IPI to oneself");
        self.sent.fetch_add(targets.len(), SeqCst);
        if self.deliver {
            targets
                .iter()
                .for_each(|cpu| self.pending[cpu].store(true, SeqCst));
        }
    }
    fn relax(&self) {
        std::thread::yield_now();
    }
}

type Sd = Shootdown<Lapic, CPUS>;

fn va(x: u32) -> VirtAddr {
    VirtAddr::new(x)
}

fn frame(pa: u64) -> PhysFrame {
    PhysFrame::from_start_address(PhysAddr::new(pa).unwrap()).unwrap()
}

fn page(x: u32) -> Page {
    Page::from_start_address(va(x)).unwrap()
}

/// Where `cpu` translates `at` now (through its TLB), if anywhere.
fn seen(cpu: &Mmu<'_>, at: u32) -> Option<u64> {
    cpu.translate(va(at), Access::READ)
        .ok()
        .map(|t| t.pa.as_u64())
}

/// A machine (CPU 0 is its `mmu`) and three more CPUs on the same tables;
/// `pages` pages from `VA` mapped to `OLD..`, every CPU online and holding
/// them in its TLB.
struct Rig<'r, M: PagingMode> {
    m: Machine<'r, M>,
    others: Vec<Mmu<'r>>,
}

impl<'r, M: PagingMode> Rig<'r, M> {
    fn new(ram: &'r SimRam, sd: &Sd, pages: u32) -> Self {
        let mut m = Machine::<M>::new(ram);
        let others: Vec<Mmu<'r>> = (1..CPUS)
            .map(|_| {
                let cpu = Mmu::new(ram, m.mmu.config());
                cpu.load_cr3(m.mmu.cr3()).unwrap();
                cpu
            })
            .collect();
        for i in 0..pages {
            m.mapper
                .map(
                    page(VA + i * 0x1000),
                    frame(OLD + u64::from(i) * 0x10_000),
                    MapFlags::KERNEL_RW,
                    &mut m.alloc,
                )
                .unwrap()
                .flush(&m.mmu);
        }
        let rig = Self { m, others };
        for c in 0..CPUS {
            sd.set_online(c, rig.cpu(c)).unwrap();
            for i in 0..pages {
                assert_eq!(
                    seen(rig.cpu(c), VA + i * 0x1000),
                    Some(OLD + u64::from(i) * 0x10_000)
                );
            }
        }
        rig
    }

    fn cpu(&self, c: usize) -> &Mmu<'r> {
        if c == 0 {
            &self.m.mmu
        } else {
            &self.others[c - 1]
        }
    }

    /// Repoint page `i` from `OLD + i * 64 KiB` to `NEW + i * 64 KiB` (or
    /// back) in RAM only; returns the tokens (no CPU flushed yet).
    fn repoint(&mut self, i: u32) -> FlushBatch {
        let mut batch = FlushBatch::new();
        let (unmapped, flush) = self.m.mapper.unmap(va(VA + i * 0x1000)).unwrap();
        batch.add(flush);
        let to = if unmapped.base.as_u64() == OLD + u64::from(i) * 0x10_000 {
            NEW
        } else {
            OLD
        };
        batch.add(
            self.m
                .mapper
                .map(
                    page(VA + i * 0x1000),
                    frame(to + u64::from(i) * 0x10_000),
                    MapFlags::KERNEL_RW,
                    &mut self.m.alloc,
                )
                .unwrap(),
        );
        batch
    }
}

/// Run `main` as CPU 0 while CPUs `1..CPUS` take interrupts on their own
/// threads (each services when its pending flag is set).
fn with_cpus<M: PagingMode, T>(sd: &Sd, rig: &Rig<'_, M>, main: impl FnOnce() -> T) -> T {
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        for c in 1..CPUS {
            let (stop, cpu) = (&stop, rig.cpu(c));
            s.spawn(move || {
                CPU.with(|x| x.set(c));
                while !stop.load(SeqCst) {
                    if sd.platform().pending[c].swap(false, SeqCst) {
                        sd.service(cpu);
                    } else {
                        std::thread::yield_now();
                    }
                }
            });
        }
        let out = main();
        stop.store(true, SeqCst);
        out
    })
}

fn no_cpu_keeps_the_old_frame<M: PagingMode>() {
    let ram = SimRam::new();
    let sd = Sd::new(Lapic::new(true));
    let mut rig = Rig::<M>::new(&ram, &sd, 1);
    let batch = rig.repoint(0);
    // The others still use the old frame: what the shootdown must fix.
    for c in 1..CPUS {
        assert_eq!(seen(rig.cpu(c), VA), Some(OLD), "cpu {c} before");
    }
    let report = with_cpus(&sd, &rig, || {
        let report = sd.flush(batch, Targets::AllCpus, rig.cpu(0)).unwrap();
        // Checked before the other CPUs stop: the flush's return is the
        // point after which none of them may use the old frame.
        for c in 0..CPUS {
            assert_eq!(seen(rig.cpu(c), VA), Some(NEW), "cpu {c} after");
        }
        report
    });
    let others = CpuSet::first(CPUS).minus(CpuSet::single(0));
    assert_eq!(report.ipis, others);
    assert_eq!(report.acknowledged, others);
    assert!(report.local);
    assert_eq!(sd.stats().ipis_sent, 3, "one interrupt per target");
    assert_eq!(sd.platform().sent.load(SeqCst), 3);
    for c in 1..CPUS {
        assert_eq!(sd.cpu_stats(c).unwrap().served, 1);
    }
}

fn a_batch_costs_one_interrupt_per_target<M: PagingMode>() {
    let ram = SimRam::new();
    let sd = Sd::new(Lapic::new(true));
    let mut rig = Rig::<M>::new(&ram, &sd, 3);
    let before: Vec<u64> = (0..CPUS).map(|c| rig.cpu(c).tlb_stats().invlpg).collect();
    let mut batch = FlushBatch::new();
    for i in 0..3 {
        let b = rig.repoint(i);
        // One batch of three pages (each with an unmap and a map token).
        let r = tlb_shootdown::FlushRequest::from(b);
        for &p in r.pages() {
            batch.add(Flush::page(p));
        }
    }
    with_cpus(&sd, &rig, || {
        sd.flush(batch, Targets::AllCpus, rig.cpu(0)).unwrap();
        for c in 0..CPUS {
            for i in 0..3 {
                let want = NEW + u64::from(i) * 0x10_000;
                assert_eq!(seen(rig.cpu(c), VA + i * 0x1000), Some(want));
            }
        }
    });
    let stats = sd.stats();
    println!(
        "a FlushBatch of 3 pages on {CPUS} CPUs: {} IPIs ({} per target), {} wait rounds",
        stats.ipis_sent,
        stats.ipis_sent as f64 / (CPUS - 1) as f64,
        stats.wait_rounds
    );
    assert_eq!(stats.ipis_sent, (CPUS - 1) as u64);
    for (c, before) in before.into_iter().enumerate() {
        let invlpg = rig.cpu(c).tlb_stats().invlpg - before;
        assert_eq!(invlpg, 3, "cpu {c}: each page once");
    }
}

fn an_address_space_reaches_only_its_cpus<M: PagingMode>() {
    let ram = SimRam::new();
    let sd = Sd::new(Lapic::new(true));
    let mut rig = Rig::<M>::new(&ram, &sd, 1);
    let batch = rig.repoint(0);
    let mm_cpus = CpuSet::from_iter([0, 2]);
    let report = with_cpus(&sd, &rig, || {
        sd.flush(batch, Targets::Cpus(mm_cpus), rig.cpu(0)).unwrap()
    });
    assert_eq!(report.ipis, CpuSet::single(2));
    assert_eq!(seen(rig.cpu(0), VA), Some(NEW));
    assert_eq!(seen(rig.cpu(2), VA), Some(NEW));
    // CPUs 1 and 3 were not named: not interrupted (their stale entry
    // shows it; a kernel names every CPU that ran the address space).
    assert_eq!(seen(rig.cpu(1), VA), Some(OLD));
    assert_eq!(sd.cpu_stats(3).unwrap().served, 0);
    // A local flush sends nothing.
    let before = sd.stats().ipis_sent;
    let r = sd
        .flush(Flush::page(va(VA)), Targets::Local, rig.cpu(0))
        .unwrap();
    assert!(r.local && r.ipis.is_empty());
    assert_eq!(sd.stats().ipis_sent, before);
}

fn dropped_interrupts_are_reported_and_leave_the_tlb_stale<M: PagingMode>() {
    let ram = SimRam::new();
    let sd = Sd::new(Lapic::new(false)).with_ack_limit(1000);
    let mut rig = Rig::<M>::new(&ram, &sd, 1);
    let batch = rig.repoint(0);
    let err = with_cpus(&sd, &rig, || {
        sd.flush(batch, Targets::AllCpus, rig.cpu(0)).unwrap_err()
    });
    let others = CpuSet::first(CPUS).minus(CpuSet::single(0));
    assert_eq!(err, ShootdownError::NoAck { cpus: others });
    assert_eq!(sd.platform().sent.load(SeqCst), 3, "sent, then lost");
    // The initiator is clean, the others are stale: what a lost IPI does.
    assert_eq!(seen(rig.cpu(0), VA), Some(NEW));
    for c in 1..CPUS {
        assert_eq!(seen(rig.cpu(c), VA), Some(OLD), "cpu {c}");
    }
    // The request stayed in their mailboxes: servicing performs it.
    for c in 1..CPUS {
        CPU.with(|x| x.set(c));
        assert!(sd.service(rig.cpu(c)));
        assert_eq!(seen(rig.cpu(c), VA), Some(NEW), "cpu {c}");
    }
    CPU.with(|x| x.set(0));
}

fn offline_and_unknown_cpus_are_errors_that_change_nothing<M: PagingMode>() {
    let ram = SimRam::new();
    let sd = Sd::new(Lapic::new(true)).with_ack_limit(1000);
    let mut rig = Rig::<M>::new(&ram, &sd, 1);
    CPU.with(|x| x.set(2));
    sd.set_offline(2, rig.cpu(2)).unwrap();
    CPU.with(|x| x.set(0));
    assert_eq!(sd.online(), CpuSet::from_iter([0, 1, 3]));
    let batch = rig.repoint(0);
    let req = tlb_shootdown::FlushRequest::from(batch);
    let stats0 = rig.cpu(0).tlb_stats();
    assert_eq!(
        sd.flush(req, Targets::Cpus(CpuSet::from_iter([1, 2])), rig.cpu(0)),
        Err(ShootdownError::Offline { cpu: 2 })
    );
    assert_eq!(
        sd.flush(req, Targets::Cpus(CpuSet::single(7)), rig.cpu(0)),
        Err(ShootdownError::NoSuchCpu { cpu: 7 })
    );
    CPU.with(|x| x.set(9));
    assert_eq!(
        sd.flush(req, Targets::Local, rig.cpu(0)),
        Err(ShootdownError::NoSuchCpu { cpu: 9 })
    );
    CPU.with(|x| x.set(0));
    assert_eq!(
        sd.set_online(4, rig.cpu(0)),
        Err(ShootdownError::NoSuchCpu { cpu: 4 })
    );
    // Nothing was sent, and no TLB was touched, not even the local one.
    assert_eq!(sd.platform().sent.load(SeqCst), 0);
    assert_eq!(sd.stats().shootdowns, 0);
    assert_eq!(rig.cpu(0).tlb_stats().invlpg, stats0.invlpg);
    assert_eq!(seen(rig.cpu(0), VA), Some(OLD));
    // Every online CPU is reached without waiting for the offline one;
    // the adapter leaves offline CPUs out of an address space's set.
    with_cpus(&sd, &rig, || {
        let r = sd.flush(req, Targets::AllCpus, rig.cpu(0)).unwrap();
        assert_eq!(r.ipis, CpuSet::from_iter([1, 3]));
        let tlb = ShootdownTlb::address_space(&sd, rig.cpu(0), CpuSet::from_iter([0, 2]));
        tlb.flush_page(va(VA));
    });
    // Back online, CPU 2 starts from an empty TLB.
    sd.set_online(2, rig.cpu(2)).unwrap();
    assert_eq!(seen(rig.cpu(2), VA), Some(NEW));
}

fn generations_skip_cpus_that_flushed_everything_since<M: PagingMode>() {
    let ram = SimRam::new();
    let sd = Sd::new(Lapic::new(true));
    let mut rig = Rig::<M>::new(&ram, &sd, 1);
    // CPU 2 begins a full flush *before* the entry is cleared, loads the
    // entry again, and records the flush only after the mark: it must not
    // count.
    CPU.with(|x| x.set(2));
    let early = sd.begin_full_flush();
    rig.cpu(2).flush_everything();
    assert_eq!(seen(rig.cpu(2), VA), Some(OLD));
    CPU.with(|x| x.set(0));
    let batch = rig.repoint(0);
    let req = tlb_shootdown::FlushRequest::from(batch);
    let tlb = ShootdownTlb::kernel(&sd, rig.cpu(0));
    let since = tlb.mark();
    assert!(since > TlbMark::NONE);
    CPU.with(|x| x.set(2));
    sd.record_full_flush(early);
    // CPU 1 flushes everything after the mark: it cannot hold the entry.
    CPU.with(|x| x.set(1));
    sd.flush_everything_local(rig.cpu(1));
    CPU.with(|x| x.set(0));
    let report = with_cpus(&sd, &rig, || {
        let r = sd
            .flush_since(req, since, Targets::AllCpus, rig.cpu(0))
            .unwrap();
        for c in 0..CPUS {
            assert_eq!(seen(rig.cpu(c), VA), Some(NEW), "cpu {c}");
        }
        r
    });
    assert_eq!(report.skipped, CpuSet::single(1));
    assert_eq!(report.ipis, CpuSet::from_iter([2, 3]));
    let stats = sd.stats();
    println!(
        "generations: {} IPIs sent, {} saved",
        stats.ipis_sent, stats.ipis_saved
    );
    assert_eq!(stats.ipis_saved, 1);
    // Through the adapter, after everyone flushed everything (a remote
    // `everything` counts): no interrupt at all.
    let since = tlb.mark();
    with_cpus(&sd, &rig, || tlb.flush_everything());
    let sent = sd.stats().ipis_sent;
    with_cpus(&sd, &rig, || tlb.flush_range_since(va(VA), 1, since));
    assert_eq!(sd.stats().ipis_sent, sent);
    assert_eq!(sd.stats().ipis_saved, 1 + 3);
}

fn the_adapter_serves_the_mapper<M: PagingMode>() {
    let ram = SimRam::new();
    let sd = Sd::new(Lapic::new(true));
    let mut rig = Rig::<M>::new(&ram, &sd, 1);
    let (_, flush) = rig.m.mapper.unmap(va(VA)).unwrap();
    with_cpus(&sd, &rig, || {
        let tlb = ShootdownTlb::kernel(&sd, rig.cpu(0));
        flush.flush(&tlb);
        for c in 0..CPUS {
            assert_eq!(seen(rig.cpu(c), VA), None, "cpu {c}");
        }
    });
}

fn two_initiators_with_interrupts_masked_both_finish<M: PagingMode>() {
    let ram = SimRam::new();
    let sd = Sd::new(Lapic::new(true));
    let mut rig = Rig::<M>::new(&ram, &sd, 2);
    for round in 0..50 {
        // Both pages stale on every CPU again.
        let a = tlb_shootdown::FlushRequest::from(rig.repoint(0));
        let b = tlb_shootdown::FlushRequest::from(rig.repoint(1));
        let (old, new) = if round % 2 == 0 {
            (OLD, NEW)
        } else {
            (NEW, OLD)
        };
        for c in 0..CPUS {
            assert_eq!(seen(rig.cpu(c), VA), Some(old));
            assert_eq!(seen(rig.cpu(c), VA + 0x1000), Some(old + 0x10_000));
        }
        let stop = AtomicBool::new(false);
        let one_done = AtomicBool::new(false);
        std::thread::scope(|s| {
            for c in 1..CPUS {
                let (stop, one_done, rig, sd) = (&stop, &one_done, &rig, &sd);
                s.spawn(move || {
                    CPU.with(|x| x.set(c));
                    // CPU 1 shoots at CPU 0 with interrupts masked (it looks
                    // at no pending flag until its flush returns) while CPU 0
                    // does the same to it.
                    if c == 1 {
                        sd.flush(b, Targets::AllCpus, rig.cpu(1)).unwrap();
                        for c in 0..CPUS {
                            let want = new + 0x10_000;
                            assert_eq!(seen(rig.cpu(c), VA + 0x1000), Some(want));
                        }
                        one_done.store(true, SeqCst);
                    }
                    while !stop.load(SeqCst) {
                        if sd.platform().pending[c].swap(false, SeqCst) {
                            sd.service(rig.cpu(c));
                        } else {
                            std::thread::yield_now();
                        }
                    }
                });
            }
            sd.flush(a, Targets::AllCpus, rig.cpu(0)).unwrap();
            for c in 0..CPUS {
                assert_eq!(seen(rig.cpu(c), VA), Some(new));
            }
            // CPU 0 takes interrupts again until CPU 1's flush is done.
            while !one_done.load(SeqCst) {
                if sd.platform().pending[0].swap(false, SeqCst) {
                    sd.service(rig.cpu(0));
                } else {
                    std::thread::yield_now();
                }
            }
            stop.store(true, SeqCst);
        });
    }
}

paging_sim::for_each_mode!(
    no_cpu_keeps_the_old_frame,
    a_batch_costs_one_interrupt_per_target,
    an_address_space_reaches_only_its_cpus,
    dropped_interrupts_are_reported_and_leave_the_tlb_stale,
    offline_and_unknown_cpus_are_errors_that_change_nothing,
    generations_skip_cpus_that_flushed_everything_since,
    the_adapter_serves_the_mapper,
    two_initiators_with_interrupts_masked_both_finish,
);
