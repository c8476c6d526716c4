//! The deterministic figures `cargo xtask bench` prints, with their targets
//! asserted: they are exact (the same on every machine), so a regression
//! fails here rather than in a noisy timing.

#[path = "../figures/mod.rs"]
mod figures;

use figures::flush_counts::{self, FlushFigure, SLOTS};
use figures::sim_kernel::SimMode;
use figures::{lowmem, metadata};
use paging_x86_2level::TwoLevel;
use paging_x86_pae::Pae;

fn flush_targets_hold<M: SimMode>() {
    let [per_page, range, global, accessed] = flush_counts::all::<M>().unwrap();
    println!(
        "{}",
        figures::flush_table(M::NAME, &[per_page, range, global, accessed])
    );
    // The slot sequence does not depend on the policy.
    for f in [&range, &global, &accessed] {
        assert_eq!((f.wraps, f.hits), (per_page.wraps, per_page.hits));
    }
    let wraps = per_page.wraps;
    assert!(wraps > 0, "the workload must wrap the pool");

    // Per-page: one invlpg per cleared slot, at most a pool's worth per
    // wrap, and exactly what the TLB received.
    let only_invlpg = |f: &FlushFigure| {
        assert_eq!(f.counts.ranges + f.counts.globals, 0, "{}", f.policy);
        assert_eq!(
            (f.tlb_invlpg, f.tlb_full),
            (f.counts.pages, 0),
            "{}",
            f.policy
        );
    };
    only_invlpg(&per_page);
    only_invlpg(&accessed);
    assert!(per_page.counts.pages > wraps && per_page.counts.pages <= wraps * SLOTS as u64);

    // Range: one per wrap; 1,024 pages is above the invlpg ceiling, so the
    // TLB saw one full flush each.
    assert_eq!(range.counts.ranges, wraps);
    assert_eq!((range.tlb_invlpg, range.tlb_full), (0, wraps));

    // Target: global policy at most one flush per wrap.
    assert!(global.counts.globals > 0 && global.counts.globals <= wraps);
    assert_eq!(
        (global.tlb_invlpg, global.tlb_full),
        (0, global.counts.globals)
    );

    // Target: the flush-avoiding policy strictly fewer invalidations than
    // per-page; what it skipped are exactly the slots it found untouched.
    assert!(accessed.invalidations() < per_page.invalidations());
    assert!(accessed.counts.avoided > 0);
    assert_eq!(
        accessed.counts.pages + accessed.counts.avoided,
        per_page.counts.pages
    );
}

#[test]
fn flush_targets_hold_two_level() {
    flush_targets_hold::<TwoLevel>();
}

#[test]
fn flush_targets_hold_pae() {
    flush_targets_hold::<Pae>();
}

fn pte_highmem_saves_lowmem<M: SimMode>() {
    let f = lowmem::figure::<M>().unwrap();
    let pte_tables = lowmem::BYTES / M::pmd_span();
    // PMD tables (PAE: one for the 1 GiB) and the PGD stay in lowmem.
    let upper = if M::PMD_FOLDED { 1 } else { 2 };
    assert_eq!(f.pte_highmem.lowmem_frames, upper);
    assert_eq!(f.pte_highmem.highmem_frames, pte_tables);
    assert_eq!(f.pte_lowmem.lowmem_frames, upper + pte_tables);
    assert_eq!(f.pte_lowmem.highmem_frames, 0);
    // Target: at least 100 times less lowmem.
    assert!(f.ratio() >= 100.0, "{f:?}");
}

#[test]
fn pte_highmem_saves_lowmem_two_level() {
    pte_highmem_saves_lowmem::<TwoLevel>();
}

#[test]
fn pte_highmem_saves_lowmem_pae() {
    pte_highmem_saves_lowmem::<Pae>();
}

#[test]
fn pool_metadata_is_linear_and_small_per_slot() {
    for f in [metadata::figure::<TwoLevel>(), metadata::figure::<Pae>()] {
        assert!(f.is_linear(), "{f:?}");
        // A slot needs at least its count and its page number...
        assert!(f.per_slot >= 10.0, "{f:?}");
        // ...and its whole bookkeeping stays under 1% of the page it maps.
        assert!(f.per_slot_at_1024() < 40.96, "{f:?}");
    }
}
