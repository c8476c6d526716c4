//! One persistent pool shared by 4 simulated CPUs (one RAM, one MMU and TLB
//! each), flushed through a shootdown that counts IPIs
//! (`support/smp.rs`). Operations run round robin: on each step one CPU
//! maps (reading through its own MMU), reads a mapping another CPU holds,
//! and releases its oldest mapping; CPUs reload CR3 (the slots are not
//! global, so that flushes them) or toggle PGE now and then.
//!
//! Checked, for every policy: no CPU ever reads a stale translation, and no
//! CPU's TLB holds one for a live slot; the global policy sends at most
//! CPUs - 1 IPIs per wrap; the accessed-bit policy invalidates a slot only
//! another CPU walked, and invalidates strictly less than per-page;
//! local kmaps send no IPI; the generations policy sends fewer IPIs than
//! the global one, and a shootdown that wrongly skips CPUs is caught.
//!
//! `cargo test -p kmap --test smp -- --nocapture ipis_per_100k` prints the
//! IPI figures of kmap's README.

#[path = "support/smp.rs"]
mod smp_tlb;
mod support;

use std::collections::VecDeque;
use std::sync::atomic::Ordering;

use kmap::{
    AccessedBit, FlushPolicy, Generations, GlobalFlush, Kmap, KmapStats, KmapTask, LocalSlots,
    NowaitKmap, PerPage, PersistentPool, RangeFlush, SpinWait,
};
use paging_core::{MapFlags, PhysFrame};
use paging_sim::{Mmu, SimAccess, SimRam};
use smp_tlb::{LocalTlb, SMP_CPUS, SmpTlb};
use support::{Kernel, ModeUnderTest, PKMAP_BASE, Rng, TestFixmap, pattern, read_u64, va};

type SmpPool<'t, 'r, M, P, const N: usize> =
    PersistentPool<M, SimAccess<'r>, &'t SmpTlb<'r>, P, SpinWait, N>;

fn pool<'t, 'r, M: ModeUnderTest, P: FlushPolicy, const N: usize>(
    k: &Kernel<'r, M>,
    tlb: &'t SmpTlb<'r>,
    policy: P,
) -> SmpPool<'t, 'r, M, P, N>
where
    kmap::PoolSize<N>: kmap::ValidPoolSize,
{
    // A CR3 load only counts as a full flush of the slots if they are not
    // global.
    assert!(!policy.pte_flags().contains(MapFlags::GLOBAL));
    PersistentPool::new(
        &k.window,
        va(PKMAP_BASE),
        k.direct,
        SimAccess::new(k.ram()),
        tlb,
        policy,
        SpinWait,
    )
    .unwrap()
}

/// The workload.
#[derive(Clone, Copy)]
struct Workload {
    pages: usize,
    maps: usize,
    /// Mappings each CPU holds (a FIFO: its oldest is released beyond this).
    held: usize,
    /// Each CPU reloads CR3 every this many of its own maps (0: never).
    switch_every: usize,
    /// After every step, look into every CPU's TLB for a stale entry of a
    /// live slot (slow: the figures run without it).
    peek: bool,
    seed: u64,
}

const COHERENCE_SLOTS: usize = 64;

/// The coherence runs: 64 slots, of which the CPUs hold 8 at once; each CPU
/// flushes everything every 4 of its maps (16 pool maps, less than the
/// generations policy's half-lap of about 25).
const COHERENCE: Workload = Workload {
    pages: 200,
    maps: 4000,
    held: 2,
    switch_every: 4,
    peek: true,
    seed: 0x5EED_0004,
};

/// What a run counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Run {
    stats: KmapStats,
    ipis: u64,
    skipped: u64,
    page_requests: u64,
}

fn check_read(mmu: &Mmu<'_>, cpu: usize, g: &Kmap<'_>, step: usize) -> Result<(), String> {
    let got = read_u64(mmu, g.va());
    if got != Ok(pattern(g.frame())) {
        return Err(format!(
            "step {step}: CPU {cpu} read {got:x?} at {} for {:?}: stale translation",
            g.va(),
            g.frame()
        ));
    }
    Ok(())
}

/// Run `w` on a pool of `N` slots with `policy`; the first wrong read (or,
/// with `w.peek`, stale TLB entry), as an error.
fn run<M: ModeUnderTest, P: FlushPolicy, const N: usize>(
    policy: P,
    w: Workload,
    lie: bool,
) -> Result<Run, String>
where
    kmap::PoolSize<N>: kmap::ValidPoolSize,
{
    let ram = SimRam::new();
    let k = Kernel::<M>::new(&ram);
    let tlb = SmpTlb::new(&k.m.mmu);
    tlb.lie.store(lie, Ordering::Relaxed);
    let pool = pool::<M, P, N>(&k, &tlb, policy);
    let pages: Vec<PhysFrame> = (0..w.pages).map(|i| k.high_page(i)).collect();
    // SAFETY: the only token of this thread; the simulated CPUs only call
    // `try_map`, which never waits.
    let task = unsafe { KmapTask::new() };
    let mut rng = Rng::new(w.seed);
    let mut held: Vec<VecDeque<Kmap<'_>>> = (0..SMP_CPUS).map(|_| VecDeque::new()).collect();
    for step in 0..w.maps {
        let cpu = step % SMP_CPUS;
        tlb.on(cpu);
        let mmu = tlb.cpu(cpu);
        if w.switch_every > 0 && (step / SMP_CPUS) % w.switch_every == w.switch_every - 1 {
            // Even CPUs switch address space, odd ones toggle PGE.
            if cpu.is_multiple_of(2) {
                tlb.context_switch(cpu);
            } else {
                tlb.pge_toggle(cpu);
            }
        }
        let f = pages[rng.below(w.pages)];
        let g = pool
            .try_map(&task, f)
            .map_err(|e| format!("step {step}: {e}"))?;
        // Three maps in four are dereferenced by the CPU that made them.
        if rng.below(4) != 0 {
            check_read(mmu, cpu, &g, step)?;
        }
        held[cpu].push_back(g);
        if held[cpu].len() > w.held {
            drop(held[cpu].pop_front());
        }
        // A mapping another CPU holds, read here (persistent kmaps are
        // shared).
        let other = (cpu + 1 + rng.below(SMP_CPUS - 1)) % SMP_CPUS;
        if let Some(g) = held[other].get(rng.below(w.held)) {
            check_read(mmu, cpu, g, step)?;
        }
        if w.peek {
            for c in 0..SMP_CPUS {
                let snapshot = tlb.cpu(c).tlb_snapshot();
                for g in held.iter().flatten() {
                    if let Some((_, e)) = snapshot.peek(g.va())
                        && e.base != g.frame().start_address()
                    {
                        return Err(format!(
                            "step {step}: CPU {c}'s TLB holds a stale entry for {}",
                            g.va()
                        ));
                    }
                }
            }
        }
    }
    drop(held);
    assert_eq!(pool.in_use(), 0);
    Ok(Run {
        stats: pool.stats(),
        ipis: tlb.ipis.load(Ordering::Relaxed),
        skipped: tlb.skipped.load(Ordering::Relaxed),
        page_requests: tlb.page_requests.load(Ordering::Relaxed),
    })
}

/// (a), (b), (c) in bulk, (e): every policy on 4 CPUs, many wraps of 32
/// slots.
fn every_policy_is_coherent_on_four_cpus<M: ModeUnderTest>() {
    let per_page = run::<M, _, COHERENCE_SLOTS>(PerPage, COHERENCE, false).unwrap();
    let range = run::<M, _, COHERENCE_SLOTS>(RangeFlush, COHERENCE, false).unwrap();
    let global = run::<M, _, COHERENCE_SLOTS>(GlobalFlush, COHERENCE, false).unwrap();
    let accessed = run::<M, _, COHERENCE_SLOTS>(AccessedBit, COHERENCE, false).unwrap();
    let generations = run::<M, _, COHERENCE_SLOTS>(Generations, COHERENCE, false).unwrap();
    for r in [per_page, range, global, accessed, generations] {
        assert!(r.stats.wraps > 40, "{r:?}");
    }
    let cpus = SMP_CPUS as u64;
    // Global: one full flush per wrap at most, reaching the other CPUs once.
    let g = global.stats;
    assert!(g.flushes.globals > 0 && g.flushes.globals <= g.wraps);
    assert_eq!(global.ipis, (cpus - 1) * g.flushes.globals);
    assert!(global.ipis <= (cpus - 1) * g.wraps);
    // Range: the same, one range per wrap.
    assert_eq!(range.ipis, (cpus - 1) * range.stats.flushes.ranges);
    // Per-page and accessed-bit: one shootdown per invalidated slot, and
    // the accessed-bit policy invalidates strictly fewer (a quarter of the
    // maps are never dereferenced by anyone).
    assert_eq!(per_page.page_requests, per_page.stats.flushes.pages);
    assert_eq!(accessed.page_requests, accessed.stats.flushes.pages);
    assert!(accessed.stats.flushes.avoided > 0);
    assert!(accessed.page_requests < per_page.page_requests);
    assert_eq!(accessed.ipis, (cpus - 1) * accessed.page_requests);
    // Generations: every wrap that freed slots flushed from a mark; CPUs
    // that reloaded CR3 since were skipped, so fewer IPIs than global.
    let gen_ = generations.stats;
    assert!(gen_.flushes.deferred > 0);
    assert_eq!(gen_.flushes.globals + gen_.flushes.ranges, 0);
    assert!(generations.skipped > 0);
    assert!(
        generations.ipis < global.ipis,
        "generations {generations:?} vs global {global:?}"
    );
}

/// (e), the negative control: a shootdown that claims every CPU flushed
/// since the mark (and so flushes none) lets a CPU read a stale
/// translation, and the read check sees it.
fn a_shootdown_that_skips_wrongly_is_caught<M: ModeUnderTest>() {
    let w = Workload {
        peek: false,
        switch_every: 0,
        ..COHERENCE
    };
    let err = run::<M, _, COHERENCE_SLOTS>(Generations, w, true).unwrap_err();
    assert!(err.contains("stale translation"), "{err}");
    // The same workload with an honest shootdown passes.
    run::<M, _, COHERENCE_SLOTS>(Generations, w, false).unwrap();
}

/// (c): a slot only CPU 2 walked has its Accessed bit set in the shared
/// PTE, so when CPU 0 wraps the pool, the slot is invalidated on every CPU;
/// a slot nobody walked is not.
fn accessed_bit_sees_another_cpus_walk<M: ModeUnderTest>() {
    let ram = SimRam::new();
    let k = Kernel::<M>::new(&ram);
    let tlb = SmpTlb::new(&k.m.mmu);
    let pool = pool::<M, AccessedBit, 4>(&k, &tlb, AccessedBit);
    let pages: Vec<_> = (0..8).map(|i| k.high_page(i)).collect();
    // SAFETY: the only token of this thread.
    let task = unsafe { KmapTask::new() };
    // CPU 2 maps page 0 (slot 1) and reads it: its walk sets Accessed and
    // its TLB caches the slot.
    tlb.on(2);
    let g = pool.try_map(&task, pages[0]).unwrap();
    let walked = g.va();
    assert_eq!(read_u64(tlb.cpu(2), walked), Ok(pattern(pages[0])));
    drop(g);
    // CPU 0 maps page 1 (slot 2) and never reads it.
    tlb.on(0);
    let untouched = pool.try_map(&task, pages[1]).unwrap();
    let untouched_va = untouched.va();
    drop(untouched);
    assert!(tlb.cpu(2).tlb_snapshot().peek(walked).is_some());
    for c in [0, 1, 3] {
        assert!(tlb.cpu(c).tlb_snapshot().peek(walked).is_none());
    }
    // CPU 0 maps two more pages: slot 3, then the cursor wraps and clears
    // slots 1 and 2.
    let a = pool.try_map(&task, pages[2]).unwrap();
    let b = pool.try_map(&task, pages[3]).unwrap();
    let s = pool.stats();
    assert_eq!(s.wraps, 1);
    // One invalidation, for the slot CPU 2 walked; none for the other.
    assert_eq!(s.flushes.pages, 1);
    assert_eq!(s.flushes.avoided, 1);
    assert_eq!(tlb.page_requests.load(Ordering::Relaxed), 1);
    assert_eq!(tlb.ipis.load(Ordering::Relaxed), SMP_CPUS as u64 - 1);
    assert!(tlb.cpu(2).tlb_snapshot().peek(walked).is_none());
    // Slot 1 and 2 are handed out again: CPU 2 reads the new page there.
    let c = pool.try_map(&task, pages[4]).unwrap();
    let d = pool.try_map(&task, pages[5]).unwrap();
    assert_eq!(c.va(), walked);
    assert_eq!(d.va(), untouched_va);
    for (g, p) in [(&c, pages[4]), (&d, pages[5])] {
        for cpu in 0..SMP_CPUS {
            assert_eq!(read_u64(tlb.cpu(cpu), g.va()), Ok(pattern(p)));
        }
    }
    drop((a, b, c, d));
}

/// Generations keeps released slots out of use until a flush covers them,
/// but never at the cost of capacity: with 3 of 4 slots held, the fourth is
/// reused map after map (every stale slot freed at once when a lap finds
/// none free), a reservation of every slot is honoured, and no slot is
/// ever handed out while a CPU may still hold its old translation.
fn generations_never_runs_short_of_slots<M: ModeUnderTest>() {
    let ram = SimRam::new();
    let k = Kernel::<M>::new(&ram);
    let tlb = SmpTlb::new(&k.m.mmu);
    let pool = pool::<M, Generations, 4>(&k, &tlb, Generations);
    let pages: Vec<_> = (0..12).map(|i| k.high_page(i)).collect();
    // SAFETY: the only token of this thread.
    let mut task = unsafe { KmapTask::new() };
    {
        let held: Vec<_> = pages[..3]
            .iter()
            .map(|&p| pool.try_map(&task, p).unwrap())
            .collect();
        for (i, &p) in pages[3..].iter().enumerate() {
            let cpu = i % SMP_CPUS;
            tlb.on(cpu);
            let g = pool.try_map(&task, p).unwrap();
            assert_eq!(read_u64(tlb.cpu(cpu), g.va()), Ok(pattern(p)));
            // Released: its PTE is clear at once and its page forgotten.
            drop(g);
            assert_eq!(pool.lookup(p), None);
        }
        for (g, &p) in held.iter().zip(&pages) {
            for cpu in 0..SMP_CPUS {
                assert_eq!(read_u64(tlb.cpu(cpu), g.va()), Ok(pattern(p)));
            }
        }
    }
    // Every slot is stale or free now; a reservation of all four is served.
    let r = pool.try_reserve(&mut task, 4).unwrap();
    let maps: Vec<_> = pages[4..8].iter().map(|&p| r.map(p).unwrap()).collect();
    for (g, &p) in maps.iter().zip(&pages[4..8]) {
        for cpu in 0..SMP_CPUS {
            assert_eq!(read_u64(tlb.cpu(cpu), g.va()), Ok(pattern(p)));
        }
    }
}

type SmpLocal<'f, 'a, 'r, M> =
    LocalSlots<'f, TestFixmap, M, SimAccess<'r>, paging_core::NativeHooks, LocalTlb<'a, 'r>, 4, 8>;

/// Maps and unmaps `rounds` local kmaps per CPU through `local`, each read
/// by its CPU, and `map_nowait` on every CPU with the pool exhausted.
fn local_round<M: ModeUnderTest>(
    tlb: &SmpTlb<'_>,
    local: &SmpLocal<'_, '_, '_, M>,
    pages: &[PhysFrame],
    rounds: usize,
) {
    for r in 0..rounds {
        let cpu = r % SMP_CPUS;
        tlb.on(cpu);
        let p = pages[r % pages.len()];
        let q = pages[(r + 1) % pages.len()];
        let a = local.map(cpu, p).unwrap();
        let b = local.map(cpu, q).unwrap();
        assert_eq!(read_u64(tlb.cpu(cpu), a.va()), Ok(pattern(p)));
        assert_eq!(read_u64(tlb.cpu(cpu), b.va()), Ok(pattern(q)));
        drop(b);
        drop(a);
    }
}

/// (d): local kmaps flush only the CPU that maps, so they send no IPI, on
/// any CPU; `map_nowait` from any CPU with the pool full falls back to them.
fn local_kmaps_send_no_ipi<M: ModeUnderTest>() {
    let ram = SimRam::new();
    let k = Kernel::<M>::new(&ram);
    let tlb = SmpTlb::new(&k.m.mmu);
    let local: SmpLocal<'_, '_, '_, M> = LocalSlots::new(
        &k.fixmap,
        TestFixmap::KMAP_LOCAL,
        false,
        k.direct,
        LocalTlb(&tlb),
    )
    .unwrap();
    let pages: Vec<_> = (0..6).map(|i| k.high_page(i)).collect();
    let before: Vec<_> = (0..SMP_CPUS).map(|c| tlb.cpu(c).tlb_stats()).collect();
    local_round::<M>(&tlb, &local, &pages, 400);
    assert_eq!(tlb.ipis.load(Ordering::Relaxed), 0);
    // Each CPU did its own invalidations (two maps and two unmaps per
    // round), and nothing else reached it.
    for (c, b) in before.iter().enumerate() {
        let invlpg = tlb.cpu(c).tlb_stats().invlpg - b.invlpg;
        assert_eq!(invlpg, 400 / SMP_CPUS as u64 * 4, "CPU {c}");
    }
    assert_eq!(tlb.local_flushes.load(Ordering::Relaxed), 400 * 4);

    // A full pool: map_nowait on each CPU, as from an interrupt handler,
    // takes a local slot, and still no IPI.
    let pool = pool::<M, GlobalFlush, 2>(&k, &tlb, GlobalFlush);
    // SAFETY: the only token of this thread.
    let task = unsafe { KmapTask::new() };
    let held: Vec<_> = pages[..2]
        .iter()
        .map(|&p| pool.try_map(&task, p).unwrap())
        .collect();
    for cpu in 0..SMP_CPUS {
        tlb.on(cpu);
        let g = pool.map_nowait(&task, &local, cpu, pages[3]).unwrap();
        assert!(matches!(g, NowaitKmap::Local(_)));
        assert_eq!(read_u64(tlb.cpu(cpu), g.va()), Ok(pattern(pages[3])));
    }
    drop(held);
    assert_eq!(tlb.ipis.load(Ordering::Relaxed), 0);
}

/// The figures: IPIs per 100,000 pool kmaps on 4 CPUs (1,024 slots,
/// 10,000 pages, 3 mappings held per CPU, 3 in 4 dereferenced), per policy,
/// and for 100,000 local kmaps.
fn ipis_per_100k_kmaps<M: ModeUnderTest>() {
    const MAPS: usize = 100_000;
    let w = Workload {
        pages: 10_000,
        maps: MAPS,
        held: 3,
        switch_every: 0,
        peek: false,
        seed: 0xF1A5_4C0E,
    };
    let per_page = run::<M, _, 1024>(PerPage, w, false).unwrap();
    let range = run::<M, _, 1024>(RangeFlush, w, false).unwrap();
    let global = run::<M, _, 1024>(GlobalFlush, w, false).unwrap();
    let accessed = run::<M, _, 1024>(AccessedBit, w, false).unwrap();
    // Generations, with each CPU flushing everything (CR3 reload or PGE
    // toggle) every 64 / 512 of its own maps (every 256 / 2,048 pool maps),
    // and never.
    let gen_fast = run::<M, _, 1024>(
        Generations,
        Workload {
            switch_every: 64,
            ..w
        },
        false,
    )
    .unwrap();
    let gen_slow = run::<M, _, 1024>(
        Generations,
        Workload {
            switch_every: 512,
            ..w
        },
        false,
    )
    .unwrap();
    let gen_never = run::<M, _, 1024>(Generations, w, false).unwrap();
    // The other policies do not depend on context switches: a global run
    // with them sends exactly as many IPIs.
    let global_fast = run::<M, _, 1024>(
        GlobalFlush,
        Workload {
            switch_every: 64,
            ..w
        },
        false,
    )
    .unwrap();
    assert_eq!(global_fast.ipis, global.ipis);

    let cpus = SMP_CPUS as u64;
    assert!(global.ipis <= (cpus - 1) * global.stats.wraps);
    assert!(accessed.page_requests < per_page.page_requests);
    // Generations saves IPIs when CPUs flush everything more often than
    // the cursor crosses half the pool; slower, it sends about what global
    // sends (its own flushes of half the pool alternate between CPUs).
    assert_eq!(gen_fast.ipis, 0);
    assert!(gen_fast.ipis < global.ipis);

    // Local kmaps: 100,000 maps (50,000 rounds of two), no IPI.
    let ram = SimRam::new();
    let k = Kernel::<M>::new(&ram);
    let tlb = SmpTlb::new(&k.m.mmu);
    let local: SmpLocal<'_, '_, '_, M> = LocalSlots::new(
        &k.fixmap,
        TestFixmap::KMAP_LOCAL,
        false,
        k.direct,
        LocalTlb(&tlb),
    )
    .unwrap();
    let pages: Vec<_> = (0..16).map(|i| k.high_page(i)).collect();
    local_round::<M>(&tlb, &local, &pages, MAPS / 2);
    let local_ipis = tlb.ipis.load(Ordering::Relaxed);
    assert_eq!(local_ipis, 0);

    println!(
        "\n{}: {MAPS} pool kmaps on {SMP_CPUS} CPUs, 1,024 slots, 10,000 pages, 3 held per CPU",
        M::NAME
    );
    println!(
        "| policy | wraps | hits | invalidation requests | IPIs | IPIs skipped | IPIs per wrap |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let row = |name: &str, r: &Run| {
        let f = r.stats.flushes;
        let requests = f.pages + f.ranges + f.globals + f.deferred;
        println!(
            "| {name} | {} | {} | {requests} | {} | {} | {:.2} |",
            r.stats.wraps,
            r.stats.hits,
            r.ipis,
            r.skipped,
            r.ipis as f64 / r.stats.wraps.max(1) as f64,
        );
    };
    row("per-page", &per_page);
    row("range", &range);
    row("global", &global);
    row("accessed-bit", &accessed);
    row(
        "generations, each CPU flushes all every 256 maps",
        &gen_fast,
    );
    row(
        "generations, each CPU flushes all every 2,048 maps",
        &gen_slow,
    );
    row("generations, no full flushes", &gen_never);
    println!(
        "| local kmaps (100,000) | - | - | {} local | {local_ipis} | - | - |",
        MAPS * 2
    );
}

paging_sim::for_each_mode!(
    every_policy_is_coherent_on_four_cpus,
    a_shootdown_that_skips_wrongly_is_caught,
    accessed_bit_sees_another_cpus_walk,
    generations_never_runs_short_of_slots,
    local_kmaps_send_no_ipi,
    ipis_per_100k_kmaps
);
