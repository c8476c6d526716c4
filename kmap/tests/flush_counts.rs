//! Flush counts of each policy for 100,000 maps over 10,000 pages with
//! 1,024 slots, against their bounds, and against what the simulated TLB
//! itself saw. A quarter of the mappings (chosen by a fixed-seed PRNG) are
//! never dereferenced, which is what the accessed-bit policy exploits.
//!
//! `cargo test -p kmap --test flush_counts -- --nocapture` prints the table
//! that kmap's README reproduces.

mod support;

use std::collections::VecDeque;

use kmap::{AccessedBit, FlushPolicy, GlobalFlush, KmapStats, PerPage, RangeFlush, SpinWait};
use paging_core::PAGE_SIZE;
use paging_sim::TlbStats;
use support::{Kernel, ModeUnderTest, PKMAP_BASE, Rng, read_u64};

const SLOTS: usize = 1024;
const PAGES: usize = 10_000;
const MAPS: usize = 100_000;
/// Mappings held at once (a FIFO: each map drops the oldest beyond this).
const HELD: usize = 3;

/// What the test's own shadow of the slots counted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Shadow {
    /// Slots cleared at wraps (count 1 at the time).
    cleared: u64,
    /// Of those, slots whose mapping had been dereferenced through the MMU.
    cleared_dereferenced: u64,
    /// Wraps seen (the pool's counter moved during a map).
    wraps: u64,
    /// Maps that were never dereferenced.
    untouched_maps: u64,
}

struct Run {
    stats: KmapStats,
    shadow: Shadow,
    tlb: TlbStats,
}

fn run<M: ModeUnderTest, P: FlushPolicy>(policy: P) -> Run {
    let ram = paging_sim::SimRam::new();
    let k = Kernel::<M>::new(&ram);
    let pages: Vec<_> = (0..PAGES).map(|i| k.high_page(i)).collect();
    let pool = k.pool::<P, SpinWait, SLOTS>(policy, SpinWait);
    // SAFETY: the only token of this test thread.
    let task = unsafe { kmap::KmapTask::new() };
    let mut rng = Rng::new(0xF1A5_4C0E);
    let mut present = vec![false; SLOTS];
    let mut dereferenced = vec![false; SLOTS];
    let mut users = vec![0u32; SLOTS];
    let mut held = VecDeque::new();
    let mut shadow = Shadow::default();
    let tlb_before = k.m.mmu.tlb_stats();
    for _ in 0..MAPS {
        let f = pages[rng.below(PAGES)];
        let touch = rng.below(4) != 0;
        let hit = pool.lookup(f).is_some();
        let wraps = pool.stats().wraps;
        let g = pool.try_map(&task, f).unwrap();
        let slot = ((g.va().as_u32() - PKMAP_BASE) as u64 / PAGE_SIZE) as usize;
        if pool.stats().wraps != wraps {
            // Every slot with no user was cleared at this wrap.
            assert!(!hit);
            shadow.wraps += 1;
            for s in 0..SLOTS {
                if present[s] && users[s] == 0 {
                    shadow.cleared += 1;
                    shadow.cleared_dereferenced += u64::from(dereferenced[s]);
                    present[s] = false;
                }
            }
        }
        if !hit {
            assert!(!present[slot], "slot {slot} handed out while still mapped");
            present[slot] = true;
            dereferenced[slot] = false;
        }
        if touch {
            assert_eq!(read_u64(&k.m.mmu, g.va()), Ok(support::pattern(f)));
            dereferenced[slot] = true;
        } else {
            shadow.untouched_maps += 1;
        }
        users[slot] += 1;
        held.push_back((slot, g));
        if held.len() > HELD {
            let (s, g) = held.pop_front().unwrap();
            users[s] -= 1;
            drop(g);
        }
    }
    drop(held);
    let after = k.m.mmu.tlb_stats();
    let tlb = TlbStats {
        invlpg: after.invlpg - tlb_before.invlpg,
        global_flushes: after.global_flushes - tlb_before.global_flushes,
        cr3_loads: after.cr3_loads - tlb_before.cr3_loads,
        ..after
    };
    let stats = pool.stats();
    assert_eq!(stats.maps, MAPS as u64);
    assert_eq!(stats.wraps, shadow.wraps);
    assert!(stats.peak_in_use <= HELD as u64 + 1);
    assert_eq!(pool.in_use(), 0);
    Run { stats, shadow, tlb }
}

fn row(name: &str, r: &Run) -> String {
    let f = r.stats.flushes;
    format!(
        "| {name:<12} | {:>5} | {:>7} | {:>6} | {:>6} | {:>6} | {:>7} | {:>10} | {:>8} |",
        r.stats.wraps,
        r.shadow.cleared,
        f.pages,
        f.ranges,
        f.globals,
        f.avoided,
        r.tlb.invlpg,
        r.tlb.global_flushes,
    )
}

fn flush_counts_meet_their_bounds<M: ModeUnderTest>() {
    let per_page = run::<M, _>(PerPage);
    let range = run::<M, _>(RangeFlush);
    let global = run::<M, _>(GlobalFlush);
    let accessed = run::<M, _>(AccessedBit);

    // The slot sequence does not depend on the policy.
    for r in [&range, &global, &accessed] {
        assert_eq!(r.shadow, per_page.shadow);
        assert_eq!(r.stats.hits, per_page.stats.hits);
    }
    let s = per_page.shadow;
    assert!(s.wraps > 0 && s.cleared > s.wraps);

    // Per-page: one invlpg per cleared slot, and the TLB saw exactly those.
    assert_eq!(per_page.stats.flushes.pages, s.cleared);
    assert_eq!(
        per_page.stats.flushes.globals + per_page.stats.flushes.ranges,
        0
    );
    assert_eq!(per_page.tlb.invlpg, s.cleared);
    assert_eq!(per_page.tlb.global_flushes, 0);

    // Range: one per wrap. A 1024-page range is above the invlpg ceiling,
    // so the TLB saw one full flush for each.
    assert_eq!(range.stats.flushes.ranges, s.wraps);
    assert_eq!(range.stats.flushes.pages, 0);
    assert_eq!(range.tlb.global_flushes, s.wraps);
    assert_eq!(range.tlb.invlpg, 0);

    // Global: at most one per wrap, and some.
    let g = global.stats.flushes.globals;
    assert!(
        g > 0 && g <= s.wraps,
        "{g} global flushes for {} wraps",
        s.wraps
    );
    assert_eq!(global.tlb.global_flushes, g);
    assert_eq!(global.tlb.invlpg, 0);

    // Accessed bit: an invlpg only for cleared slots that were
    // dereferenced; strictly fewer than per-page.
    let a = accessed.stats.flushes;
    assert_eq!(a.pages, s.cleared_dereferenced);
    assert_eq!(a.avoided, s.cleared - s.cleared_dereferenced);
    assert!(a.pages < per_page.stats.flushes.pages);
    assert_eq!(accessed.tlb.invlpg, a.pages);
    assert_eq!(accessed.tlb.global_flushes, 0);

    println!(
        "\n{}: {MAPS} maps of {PAGES} pages, {SLOTS} slots, {} hits, {} of the maps never dereferenced",
        M::NAME,
        per_page.stats.hits,
        s.untouched_maps
    );
    println!(
        "| policy       | wraps | cleared | invlpg | ranges | global | avoided | TLB invlpg | TLB full |"
    );
    println!(
        "|--------------|------:|--------:|-------:|-------:|-------:|--------:|-----------:|---------:|"
    );
    for (name, r) in [
        ("per-page", &per_page),
        ("range", &range),
        ("global", &global),
        ("accessed-bit", &accessed),
    ] {
        println!("{}", row(name, r));
    }
}

paging_sim::for_each_mode!(flush_counts_meet_their_bounds);
