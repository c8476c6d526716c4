//! A wrap that finds no unused slot to clear flushes nothing, whatever the
//! policy; one that clears slots flushes once. Written for mutants that
//! `cargo xtask mutants` found no test noticed (docs/testing.md).

mod support;

use kmap::{FlushPolicy, GlobalFlush, KmapTask, RangeFlush, SpinWait};
use paging_sim::SimRam;
use paging_x86_2level::TwoLevel;
use paging_x86_pae::Pae;
use support::{Kernel, ModeUnderTest};

fn wraps_flush_only_what_they_cleared<M: ModeUnderTest, P: FlushPolicy + Copy>(policy: P) {
    let ram = SimRam::new();
    let k = Kernel::<M>::new(&ram);
    let pool = k.pool::<P, SpinWait, 4>(policy, SpinWait);
    // SAFETY: the only token of this test thread.
    let task = unsafe { KmapTask::new() };
    let tlb0 = k.m.mmu.tlb_stats();
    // Four pages held at once: slots 1, 2, 3, then the cursor wraps with
    // every other slot in use, clears nothing and takes slot 0.
    let held: Vec<_> = (0..4)
        .map(|i| pool.try_map(&task, k.high_page(i)).unwrap())
        .collect();
    let s = pool.stats();
    assert_eq!(s.wraps, 1);
    assert_eq!(
        (s.flushes.ranges, s.flushes.globals, s.flushes.pages),
        (0, 0, 0)
    );
    let tlb = k.m.mmu.tlb_stats();
    assert_eq!(
        (tlb.global_flushes, tlb.invlpg),
        (tlb0.global_flushes, tlb0.invlpg)
    );
    // Release them all; the next new page wraps again and clears four.
    drop(held);
    let _again = pool.try_map(&task, k.high_page(9)).unwrap();
    let s = pool.stats();
    assert_eq!(s.wraps, 2);
    assert_eq!(s.flushes.ranges + s.flushes.globals, 1);
}

#[test]
fn two_level() {
    wraps_flush_only_what_they_cleared::<TwoLevel, _>(RangeFlush);
    wraps_flush_only_what_they_cleared::<TwoLevel, _>(GlobalFlush);
}

#[test]
fn pae() {
    wraps_flush_only_what_they_cleared::<Pae, _>(RangeFlush);
    wraps_flush_only_what_they_cleared::<Pae, _>(GlobalFlush);
}
