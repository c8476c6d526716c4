//! Under every flush policy, random map/unmap sequences never let the CPU
//! use a stale translation for a live slot: every live mapping is read
//! through the simulated MMU, with its TLB, after every step. A policy that
//! never flushes is caught by the same check.

mod support;

use kmap::{AccessedBit, FlushCounts, FlushPolicy, GlobalFlush, PerPage, RangeFlush, SpinWait};
use paging_core::{TlbOps, VirtAddr};
use paging_sim::Access;
use support::{Kernel, ModeUnderTest, Rng, read_u64};

/// Test-only policy that forgets to flush.
struct NeverFlush;

impl FlushPolicy for NeverFlush {
    fn name(&self) -> &'static str {
        "never (broken)"
    }
    fn slot_cleared<T: TlbOps + ?Sized>(&self, _: &T, _: VirtAddr, _: bool, _: &mut FlushCounts) {}
    fn wrap_done<T: TlbOps + ?Sized>(
        &self,
        _: &T,
        _: VirtAddr,
        _: u32,
        _: usize,
        _: &mut FlushCounts,
    ) {
    }
}

const STEPS: usize = 3000;
const PAGES: usize = 40;
const MAX_LIVE: usize = 6;

/// Run the random sequence; the first wrong read, as an error. With
/// `read_all` every live mapping is read through the MMU after every step;
/// otherwise a third of the mappings are never dereferenced (what the
/// accessed-bit policy exploits), and for those the test checks that the
/// TLB holds no translation but the right one.
fn run<M: ModeUnderTest, P: FlushPolicy>(
    policy: P,
    read_all: bool,
) -> Result<kmap::KmapStats, String> {
    let ram = paging_sim::SimRam::new();
    let k = Kernel::<M>::new(&ram);
    let pool = k.pool::<P, SpinWait, 16>(policy, SpinWait);
    let pages: Vec<_> = (0..PAGES).map(|i| k.high_page(i)).collect();
    // SAFETY: the only token of this test thread.
    let task = unsafe { kmap::KmapTask::new() };
    let mut rng = Rng::new(0x6B6D_6170);
    // (guard, dereferenced?) -- untouched mappings are never read, so the
    // accessed-bit policy has something to skip.
    let mut live = Vec::new();
    for step in 0..STEPS {
        if live.len() < MAX_LIVE && (live.is_empty() || rng.below(2) == 0) {
            let f = pages[rng.below(PAGES)];
            match pool.try_map(&task, f) {
                Ok(g) => live.push((g, read_all || rng.below(3) != 0)),
                Err(kmap::KmapError::Exhausted) => {}
                Err(e) => return Err(format!("step {step}: {e}")),
            }
        } else {
            drop(live.swap_remove(rng.below(live.len())));
        }
        let tlb = k.m.mmu.tlb_snapshot();
        for (g, touched) in &live {
            // Whatever the TLB holds for a live slot is the right frame.
            if let Some((_, e)) = tlb.peek(g.va())
                && e.base != g.frame().start_address()
            {
                return Err(format!("step {step}: stale TLB entry for {}", g.va()));
            }
            // The tables say the right thing...
            let walked = k.m.mmu.walk_uncached(g.va(), Access::READ);
            if walked.map(|t| t.pa) != Ok(g.frame().start_address()) {
                return Err(format!("step {step}: PTE of {} is wrong", g.va()));
            }
            // ...and so does the CPU, through its TLB.
            if *touched {
                let got = read_u64(&k.m.mmu, g.va());
                if got != Ok(support::pattern(g.frame())) {
                    return Err(format!(
                        "step {step}: {} read {got:x?}, expected {:?}: stale TLB entry",
                        g.va(),
                        g.frame()
                    ));
                }
            }
        }
    }
    drop(live);
    assert_eq!(pool.in_use(), 0);
    Ok(pool.stats())
}

fn every_policy_keeps_live_slots_coherent<M: ModeUnderTest>() {
    for read_all in [true, false] {
        let per_page = run::<M, _>(PerPage, read_all).unwrap();
        let range = run::<M, _>(RangeFlush, read_all).unwrap();
        let global = run::<M, _>(GlobalFlush, read_all).unwrap();
        let accessed = run::<M, _>(AccessedBit, read_all).unwrap();
        check(per_page, range, global, accessed, read_all);
    }
}

fn check(
    per_page: kmap::KmapStats,
    range: kmap::KmapStats,
    global: kmap::KmapStats,
    accessed: kmap::KmapStats,
    read_all: bool,
) {
    for s in [per_page, range, global, accessed] {
        // Many wraps happened, so slots really were recycled.
        assert!(s.wraps > 50, "{s:?}");
        assert!(s.hits > 0, "{s:?}");
    }
    assert!(per_page.flushes.pages > 0 && per_page.flushes.globals == 0);
    assert!(range.flushes.ranges > 0 && range.flushes.pages == 0);
    assert!(global.flushes.globals > 0 && global.flushes.pages == 0);
    assert!(accessed.flushes.pages > 0, "{accessed:?}");
    if read_all {
        // Every mapping was dereferenced: every cleared slot needed it.
        assert_eq!(accessed.flushes.avoided, 0, "{accessed:?}");
        assert_eq!(accessed.flushes.pages, per_page.flushes.pages);
    } else {
        // Some cleared slots were never dereferenced: no invlpg for them.
        assert!(accessed.flushes.avoided > 0, "{accessed:?}");
    }
}

fn a_policy_that_never_flushes_is_caught<M: ModeUnderTest>() {
    for read_all in [true, false] {
        let err = run::<M, _>(NeverFlush, read_all).unwrap_err();
        assert!(err.contains("stale TLB entry"), "{err}");
    }
}

paging_sim::for_each_mode!(
    every_policy_keeps_live_slots_coherent,
    a_policy_that_never_flushes_is_caught
);
