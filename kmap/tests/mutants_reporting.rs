//! What kmap reports about itself: policy names, the pool's and local
//! slots' accessors and `Debug` output, and the guards' `Debug` output.
//! Written for mutants that `cargo xtask mutants` found no test noticed
//! (docs/testing.md).

mod support;

use kmap::{AccessedBit, FlushPolicy, GlobalFlush, KmapTask, PerPage, RangeFlush, SpinWait};
use paging_core::MapFlags;
use paging_sim::SimRam;
use paging_x86_2level::TwoLevel;
use paging_x86_pae::Pae;
use support::{Kernel, ModeUnderTest, PKMAP_BASE, va};

#[test]
fn policies_have_their_names() {
    assert_eq!(PerPage.name(), "per-page");
    assert_eq!(RangeFlush.name(), "range");
    assert_eq!(GlobalFlush.name(), "global");
    assert_eq!(AccessedBit.name(), "accessed-bit");
    let status = MapFlags::KERNEL_RW | MapFlags::ACCESSED | MapFlags::DIRTY;
    assert_eq!(PerPage.pte_flags(), status);
    assert_eq!(RangeFlush.pte_flags(), status);
    assert_eq!(GlobalFlush.pte_flags(), status);
    assert_eq!(AccessedBit.pte_flags(), MapFlags::KERNEL_RW);
}

fn pool_reports<M: ModeUnderTest>() {
    let ram = SimRam::new();
    let k = Kernel::<M>::new(&ram);
    let pool = k.pool::<RangeFlush, SpinWait, 4>(RangeFlush, SpinWait);
    assert_eq!(pool.slots(), 4);
    assert_eq!(pool.base(), va(PKMAP_BASE));
    assert_eq!(pool.direct_map(), k.direct);
    assert_eq!(pool.policy().name(), "range");
    assert!(std::ptr::eq(*pool.tlb(), &k.m.mmu));
    // SAFETY: the only token of this test thread.
    let mut task = unsafe { KmapTask::new() };
    let page = k.high_page(0);
    {
        let r = pool.reserve(&mut task, 2).unwrap();
        assert_eq!(format!("{r:?}"), "Reservation { remaining: 2 }");
        let g = r.map(page).unwrap();
        let text = format!("{g:?}");
        assert!(text.starts_with("Kmap {"), "{text}");
        assert!(text.contains(&format!("va: {:?}", g.va())), "{text}");
        assert!(text.contains(&format!("frame: {:?}", page)), "{text}");
        assert!(text.contains("slotted: true"), "{text}");
        let text = format!("{pool:?}");
        assert!(text.starts_with("PersistentPool {"), "{text}");
        for field in [
            format!("mode: {:?}", M::NAME),
            format!("base: {:?}", va(PKMAP_BASE)),
            "slots: 4".to_string(),
            "policy: \"range\"".to_string(),
            "in_use: 1".to_string(),
            "reserved: 1".to_string(),
            "waiters: 0".to_string(),
            "stats: KmapStats {".to_string(),
        ] {
            assert!(text.contains(&field), "{field} missing in {text}");
        }
    }
}

fn local_reports<M: ModeUnderTest>() {
    let ram = SimRam::new();
    let k = Kernel::<M>::new(&ram);
    let local = k.local(true, k.direct);
    assert_eq!(
        local.flags(),
        MapFlags::KERNEL_RW | MapFlags::ACCESSED | MapFlags::DIRTY
    );
    let page = k.high_page(0);
    let g = local.map(1, page).unwrap();
    let text = format!("{g:?}");
    assert!(text.starts_with("LocalKmap {"), "{text}");
    for field in [
        "cpu: 1".to_string(),
        "depth: 0".to_string(),
        format!("va: {:?}", g.va()),
        format!("frame: {page:?}"),
    ] {
        assert!(text.contains(&field), "{field} missing in {text}");
    }
    let text = format!("{local:?}");
    assert!(text.starts_with("LocalSlots {"), "{text}");
    for field in [
        "guard_slots: true",
        "depths: [0, 1, 0, 0, 0, 0, 0, 0]",
        "maps: 1",
        "lifo_violations: 0",
    ] {
        assert!(text.contains(field), "{field} missing in {text}");
    }
    drop(g);
    let plain = k.local(false, k.direct);
    assert!(format!("{plain:?}").contains("guard_slots: false"));
}

#[test]
fn two_level() {
    pool_reports::<TwoLevel>();
    local_reports::<TwoLevel>();
}

#[test]
fn pae() {
    pool_reports::<Pae>();
    local_reports::<Pae>();
}
