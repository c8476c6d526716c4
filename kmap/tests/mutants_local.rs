//! Local kmaps of frames above 16 TiB (frame numbers past 32 bits, under
//! 52-bit PAE) survive a context switch whole, and a saved stack knows its
//! CPU; slot flags always include PRESENT; a slot table the fixmap cannot
//! reach is a typed access error; slot addresses exist only for real CPUs
//! and depths; a guard dropped out of order is unmapped with the one above
//! it, whatever its depth. Written for mutants that `cargo xtask mutants` found no test
//! noticed (docs/testing.md).

mod support;

use std::ops::Range;

use fixmap::Fixmap;
use kmap::{KmapError, LocalSlots};
use paging_core::{AccessError, MapFlags};
use paging_sim::{MACHINE_HIGHMEM, SimAccess, SimRam};
use paging_x86_2level::TwoLevel;
use paging_x86_pae::Pae;
use support::{CPUS, DEPTH, Kernel, ModeUnderTest, TestFixmap, fill, frame, reads_frame};

/// PAE with the architecture's full 52-bit physical width.
type Pae52 = Pae<52>;

impl ModeUnderTest for Pae52 {
    const HIGHMEM: Range<u64> = MACHINE_HIGHMEM;
    const DATA: u64 = 0x2_0000_0000;
}

#[test]
fn frames_past_32_bit_numbers_survive_save_and_restore() {
    let ram = SimRam::new();
    let k = Kernel::<Pae52>::new(&ram);
    let local = k.local(false, k.direct);
    // Frame numbers 2^32 + 5 and 2^39 + 7: their high halves matter.
    let pages = [frame((1 << 44) + 0x5000), frame((1 << 51) + 0x7000)];
    for &p in &pages {
        fill(&ram, p);
    }
    let mmu = &k.m.mmu;
    let guards: Vec<_> = pages.iter().map(|&p| local.map(3, p).unwrap()).collect();
    for (g, &p) in guards.iter().zip(&pages) {
        assert!(reads_frame(mmu, g.va(), p));
    }
    let saved = local.save(3).unwrap();
    assert_eq!((saved.cpu(), saved.depth()), (3, 2));
    assert_eq!(local.depth(3), Some(0));
    local.restore(&saved).unwrap();
    for (g, &p) in guards.iter().zip(&pages) {
        assert!(reads_frame(mmu, g.va(), p), "{p:?} after restore");
    }
    // A saved stack goes back to its own CPU only.
    let again = local.save(3).unwrap();
    assert_eq!(again, saved);
    local.restore(&again).unwrap();
    for g in guards.into_iter().rev() {
        g.try_unmap().unwrap();
    }
    assert_eq!(local.depth(3), Some(0));
}

fn slot_flags_always_include_present<M: ModeUnderTest>() {
    let ram = SimRam::new();
    let k = Kernel::<M>::new(&ram);
    for asked in [MapFlags::KERNEL_RO, MapFlags::KERNEL_RO | MapFlags::PRESENT] {
        let local = k.local(false, k.direct).with_flags(asked).unwrap();
        assert_eq!(local.flags(), MapFlags::KERNEL_RO | MapFlags::PRESENT);
        let p = k.high_page(1);
        let g = local.map(2, p).unwrap();
        assert!(reads_frame(&k.m.mmu, g.va(), p));
    }
}

fn an_unreachable_slot_table_is_an_access_error<M: ModeUnderTest>() {
    let ram = SimRam::new();
    let k = Kernel::<M>::new(&ram);
    // A fixmap on the same window that cannot reach any table frame.
    let mut fixmap = Fixmap::<TestFixmap, M, _>::new(SimAccess::below(&ram, 0));
    fixmap.attach(k.window.clone()).unwrap();
    let local = LocalSlots::<_, M, _, _, _, DEPTH, CPUS>::new(
        &fixmap,
        TestFixmap::KMAP_LOCAL,
        false,
        k.direct,
        &k.m.mmu,
    )
    .unwrap();
    let e = local.map(0, k.high_page(0)).map(|g| g.va());
    assert!(
        matches!(e, Err(KmapError::Access(AccessError::Unreachable(_)))),
        "{e:?}"
    );
    assert_eq!(local.depth(0), Some(0));
}

fn slot_addresses_exist_for_real_cpus_and_depths_only<M: ModeUnderTest>() {
    let ram = SimRam::new();
    let k = Kernel::<M>::new(&ram);
    let local = k.local(true, k.direct);
    assert!(local.slot_va(CPUS - 1, DEPTH - 1).is_some());
    assert_eq!(local.slot_va(CPUS, 0), None);
    assert_eq!(local.slot_va(0, DEPTH), None);
    assert_eq!(local.depth(CPUS), None);
}

fn an_out_of_order_drop_is_deferred_at_its_own_depth<M: ModeUnderTest>() {
    let ram = SimRam::new();
    let k = Kernel::<M>::new(&ram);
    let local = k.local(false, k.direct);
    let mmu = &k.m.mmu;
    let p: Vec<_> = (0..3).map(|i| k.high_page(i)).collect();
    let g0 = local.map(4, p[0]).unwrap();
    let g1 = local.map(4, p[1]).unwrap();
    let g2 = local.map(4, p[2]).unwrap();
    let (v0, v1) = (g0.va(), g1.va());
    // Depth 1 goes first: deferred, still mapped.
    drop(g1);
    assert_eq!(local.stats().lifo_violations, 1);
    assert_eq!(local.depth(4), Some(3));
    assert!(reads_frame(mmu, v1, p[1]));
    // Depth 2 goes: depth 1 goes with it, depth 0 stays.
    drop(g2);
    assert_eq!(local.depth(4), Some(1));
    assert_eq!(k.pte(v1), 0);
    assert!(reads_frame(mmu, v0, p[0]));
    drop(g0);
    assert_eq!(local.depth(4), Some(0));
    assert_eq!(local.stats().lifo_violations, 1);
}

#[test]
fn two_level() {
    slot_flags_always_include_present::<TwoLevel>();
    an_unreachable_slot_table_is_an_access_error::<TwoLevel>();
    slot_addresses_exist_for_real_cpus_and_depths_only::<TwoLevel>();
    an_out_of_order_drop_is_deferred_at_its_own_depth::<TwoLevel>();
}

#[test]
fn pae() {
    slot_flags_always_include_present::<Pae>();
    an_unreachable_slot_table_is_an_access_error::<Pae>();
    slot_addresses_exist_for_real_cpus_and_depths_only::<Pae>();
    an_out_of_order_drop_is_deferred_at_its_own_depth::<Pae>();
}
