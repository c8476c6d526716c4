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

/// Every flush a policy asks for, in order.
#[derive(Default)]
struct Recorder(std::cell::RefCell<Vec<String>>);

impl paging_core::TlbOps for Recorder {
    fn flush_page(&self, va: paging_core::VirtAddr) {
        self.0.borrow_mut().push(format!("page {va}"));
    }
    fn flush_range(&self, start: paging_core::VirtAddr, pages: u32) {
        self.0.borrow_mut().push(format!("range {start} {pages}"));
    }
    fn flush_all(&self) {
        self.0.borrow_mut().push("all".into());
    }
    fn flush_everything(&self) {
        self.0.borrow_mut().push("everything".into());
    }
    fn flush_range_since(
        &self,
        start: paging_core::VirtAddr,
        pages: u32,
        since: paging_core::TlbMark,
    ) {
        self.0
            .borrow_mut()
            .push(format!("range {start} {pages} since {since:?}"));
    }
}

/// `Generations` called directly (not through the pool): a wrap that
/// cleared nothing flushes nothing; one that cleared slots flushes the
/// window once, as a plain range without a mark and as a marked range with
/// one, and counts it as such.
#[test]
fn generations_flushes_a_wrap_once_and_only_if_it_cleared_slots() {
    use kmap::{FlushCounts, Generations};
    let base = paging_core::VirtAddr::new(0xFF80_0000);
    let tlb = Recorder::default();
    let mut counts = FlushCounts::default();
    assert_eq!(Generations.name(), "generations");
    Generations.wrap_done(&tlb, base, 512, 0, &mut counts);
    Generations.wrap_done_since(
        &tlb,
        base,
        512,
        0,
        paging_core::TlbMark::default(),
        &mut counts,
    );
    assert!(tlb.0.borrow().is_empty());
    assert_eq!(counts, FlushCounts::default());
    Generations.wrap_done(&tlb, base, 512, 3, &mut counts);
    assert_eq!(*tlb.0.borrow(), [format!("range {base} 512")]);
    assert_eq!((counts.ranges, counts.deferred), (1, 0));
    Generations.wrap_done(&tlb, base, 512, 1, &mut counts);
    assert_eq!(counts.ranges, 2);
    tlb.0.borrow_mut().clear();
    let mark = paging_core::TlbMark(7);
    Generations.wrap_done_since(&tlb, base, 512, 1, mark, &mut counts);
    assert_eq!(
        *tlb.0.borrow(),
        [format!("range {base} 512 since {mark:?}")]
    );
    assert_eq!((counts.ranges, counts.deferred), (2, 1));
}
