//! `Mapper::set_memory` and `Mapper::merge_large_pages` through the
//! simulated MMU: attributes changed inside a large page by splitting it
//! into a PTE table that keeps every bit, the TLB left with no stale large
//! translation, every refusal changing nothing, and the merge back.
//!
//! Expected values come from the SDM (Vol. 3A 4.3/4.4 tables 4-4 to 4-11:
//! bit positions in a 4 KiB PTE; 11.12.3: memory type = PAT entry
//! `PAT * 4 + PCD * 2 + PWT`), never from the mapper's code.
mod mapper_support;
mod racing_support;

use mapper_support::{Rig, pa, va};
use paging_core::{
    AttrChange, AttrError, CacheType, CpuFeature, Entry, LargePages, Level, MapFlags, PAGE_SIZE,
    PagingMode, PatLayout, TlbOps,
};
use paging_sim::{Access, Machine, MemoryType, SimConfig, SimRam};
use paging_x86_2level::TwoLevel;
use paging_x86_pae::Pae;
use racing_support::racing_mapper;

/// A virtual block aligned to 4 MiB (so to 2 MiB too).
const BASE: u32 = 0x1000_0000;
/// The physical base of the large pages (aligned to 4 MiB).
const PHYS: u64 = 0x0800_0000;
/// The large page's flags: kernel RW, global, PAT + PWT (entry 5: WP in the
/// recommended layout), software bit 1.
const ODD: MapFlags = MapFlags::KERNEL_RW
    .union(MapFlags::GLOBAL)
    .union(MapFlags::PAT)
    .union(MapFlags::WRITE_THROUGH)
    .union(MapFlags::SOFTWARE_1);

/// The bits, at SDM positions, that a 4 KiB PTE mapping `ODD` must carry:
/// P (0), R/W (1), PWT (3), PAT (7 in a PTE), G (8), AVL bit 10.
const ODD_PTE_BITS: u64 = 1 | 1 << 1 | 1 << 3 | 1 << 7 | 1 << 8 | 1 << 10;

fn rig<M: PagingMode>(config: SimConfig) -> Rig<M> {
    let ram: &'static SimRam = Box::leak(Box::new(SimRam::new()));
    Machine::with_config(ram, config)
}

/// The CPU of mode `M` with the recommended PAT programmed (WC at 4, WP at 5).
fn recommended<M: PagingMode>() -> SimConfig {
    SimConfig {
        pat: PatLayout::RECOMMENDED.to_msr(),
        ..SimConfig::for_mode::<M>()
    }
}

fn span<M: PagingMode>() -> u64 {
    M::pmd_span()
}

/// `blocks` large pages from `BASE` to `PHYS` with `flags`, each read once
/// so the TLB holds the large translation.
fn map_large<M: PagingMode>(rig: &mut Rig<M>, blocks: u64, flags: MapFlags) {
    rig.mapper
        .map_range(
            va(BASE),
            pa(PHYS),
            blocks * span::<M>(),
            flags,
            LargePages::Use,
            &mut rig.alloc,
        )
        .unwrap()
        .flush(&rig.mmu);
    for b in 0..blocks {
        let t = rig
            .mmu
            .translate(va(BASE + (b * span::<M>()) as u32), Access::READ)
            .unwrap();
        assert_eq!(t.size, M::LARGE_PAGE_SIZE);
    }
}

fn raw_leaf<M: PagingMode>(rig: &Rig<M>, at: u32) -> u64 {
    let walk = rig.mapper.walk(va(at)).unwrap();
    walk.pte
        .map_or_else(|| walk.pmd.unwrap().1.raw(), |(_, e)| e.raw())
}

fn fault<M: PagingMode>(rig: &Rig<M>, at: u32, access: Access) -> u32 {
    rig.mmu
        .translate(va(at), access)
        .map_or_else(|f| f.code, |_| 0)
}

/// No TLB entry of the large size covers `[BASE, BASE + span)`.
fn no_large_tlb_entry<M: PagingMode>(rig: &Rig<M>) -> bool {
    rig.mmu.tlb_snapshot().entries().iter().all(|(v, e)| {
        e.size != M::LARGE_PAGE_SIZE || u64::from(v.as_u32()) >= u64::from(BASE) + span::<M>()
    })
}

fn split_ro_keeps_every_other_page_and_faults_writes<M: PagingMode>() {
    let mut rig = rig::<M>(recommended::<M>());
    map_large(&mut rig, 1, ODD);
    let (at, len) = (BASE + 0x3000, 2 * PAGE_SIZE);
    let stats = rig
        .mapper
        .set_memory(va(at), len, AttrChange::RO, &rig.mmu, &mut rig.alloc)
        .unwrap();
    assert_eq!((stats.split, stats.pages, stats.changed), (1, 2, 2));
    assert!(
        no_large_tlb_entry(&rig),
        "a stale large translation survived"
    );
    let pages = (span::<M>() / PAGE_SIZE) as u32;
    for i in [0, 1, 2, 5, 6, pages / 2, pages - 1] {
        let v = BASE + i * 0x1000;
        let want_pa = PHYS + u64::from(i) * PAGE_SIZE;
        // A: the CPU set it in the large entry on the first read, and the
        // split kept it (SDM: bit 5).
        let want = want_pa | ODD_PTE_BITS | 1 << 5;
        assert_eq!(raw_leaf(&rig, v), want, "PTE {i}");
        let t = rig.mmu.translate(va(v), Access::WRITE).unwrap();
        assert_eq!(t.pa, pa(want_pa));
        assert_eq!(t.size, paging_core::PageSize::Size4KiB);
        assert!(t.writable && !t.user && t.global && !t.nx);
        assert_eq!(t.memory_type, MemoryType::Wp, "PAT entry 5 (PAT + PWT)");
    }
    for v in [at, at + 0x1000] {
        // P = 1, W/R = 1 (SDM 4.7): a supervisor write to a present page.
        assert_eq!(fault(&rig, v, Access::WRITE), 0b11);
        let t = rig.mmu.translate(va(v), Access::READ).unwrap();
        assert_eq!(t.memory_type, MemoryType::Wp);
        assert!(t.global);
    }
}

#[test]
fn split_ro_keeps_every_other_page_and_faults_writes_pae() {
    split_ro_keeps_every_other_page_and_faults_writes::<Pae>();
}

#[test]
fn split_ro_keeps_every_other_page_and_faults_writes_two_level() {
    split_ro_keeps_every_other_page_and_faults_writes::<TwoLevel>();
}

fn split_wc_changes_the_memory_type_of_the_asked_pages_only<M: PagingMode>() {
    let mut rig = rig::<M>(recommended::<M>());
    map_large(&mut rig, 1, MapFlags::KERNEL_RW);
    let wc = AttrChange::cache(CacheType::WriteCombining, PatLayout::RECOMMENDED);
    let at = BASE + 0x10_0000;
    rig.mapper
        .set_memory(va(at), 4 * PAGE_SIZE, wc, &rig.mmu, &mut rig.alloc)
        .unwrap();
    for i in 0..4 {
        let t = rig
            .mmu
            .translate(va(at + i * 0x1000), Access::READ)
            .unwrap();
        assert_eq!(t.memory_type, MemoryType::Wc);
        // PAT entry 4: bit 7 of the PTE, PCD and PWT clear.
        assert_eq!(raw_leaf(&rig, at + i * 0x1000) & 0b1001_1000, 1 << 7);
    }
    for v in [BASE, at - 0x1000, at + 0x4000] {
        let t = rig.mmu.translate(va(v), Access::WRITE).unwrap();
        assert_eq!(t.memory_type, MemoryType::Wb);
    }
}

#[test]
fn split_wc_changes_the_memory_type_of_the_asked_pages_only_pae() {
    split_wc_changes_the_memory_type_of_the_asked_pages_only::<Pae>();
}

#[test]
fn split_wc_changes_the_memory_type_of_the_asked_pages_only_two_level() {
    split_wc_changes_the_memory_type_of_the_asked_pages_only::<TwoLevel>();
}

#[test]
fn split_nx_faults_fetches_of_the_asked_page_only_pae() {
    let mut rig = rig::<Pae>(recommended::<Pae>());
    map_large(&mut rig, 1, MapFlags::KERNEL_RW);
    assert_eq!(fault(&rig, BASE + 0x7000, Access::EXEC), 0);
    rig.mapper
        .set_memory(
            va(BASE + 0x7000),
            PAGE_SIZE,
            AttrChange::NX,
            &rig.mmu,
            &mut rig.alloc,
        )
        .unwrap();
    // P = 1, I/D = 1 (SDM 4.7): a fetch from a present no-execute page.
    assert_eq!(fault(&rig, BASE + 0x7000, Access::EXEC), 0b1_0001);
    assert_eq!(fault(&rig, BASE + 0x6000, Access::EXEC), 0);
    assert_eq!(fault(&rig, BASE + 0x8000, Access::EXEC), 0);
    assert_eq!(raw_leaf(&rig, BASE + 0x7000) >> 63, 1);
    // And back: executable, then uniform again.
    rig.mapper
        .set_memory(
            va(BASE + 0x7000),
            PAGE_SIZE,
            AttrChange::X,
            &rig.mmu,
            &mut rig.alloc,
        )
        .unwrap();
    assert_eq!(fault(&rig, BASE + 0x7000, Access::EXEC), 0);
}

fn split_a_range_over_three_large_pages_splits_the_ends_only<M: PagingMode>() {
    let mut rig = rig::<M>(recommended::<M>());
    map_large(&mut rig, 3, MapFlags::KERNEL_RW);
    let s = span::<M>() as u32;
    let (at, len) = (BASE + s - 0x2000, u64::from(s) + 0x4000);
    let stats = rig
        .mapper
        .set_memory(va(at), len, AttrChange::RO, &rig.mmu, &mut rig.alloc)
        .unwrap();
    assert_eq!((stats.split, stats.large_pages), (2, 1));
    // The middle large page is read-only whole, still one large page.
    let t = rig
        .mmu
        .translate(va(BASE + s + 0x5000), Access::READ)
        .unwrap();
    assert_eq!(t.size, M::LARGE_PAGE_SIZE);
    assert!(!t.writable);
    assert_eq!(fault(&rig, at, Access::WRITE), 0b11);
    assert_eq!(fault(&rig, at - 0x1000, Access::WRITE), 0);
    assert_eq!(fault(&rig, BASE + 2 * s + 0x1000, Access::WRITE), 0b11);
    assert_eq!(fault(&rig, BASE + 2 * s + 0x2000, Access::WRITE), 0);
}

#[test]
fn split_a_range_over_three_large_pages_splits_the_ends_only_pae() {
    split_a_range_over_three_large_pages_splits_the_ends_only::<Pae>();
}

#[test]
fn split_a_range_over_three_large_pages_splits_the_ends_only_two_level() {
    split_a_range_over_three_large_pages_splits_the_ends_only::<TwoLevel>();
}

fn split_then_merge_restores_one_large_entry<M: PagingMode>() {
    let mut rig = rig::<M>(recommended::<M>());
    map_large(&mut rig, 1, ODD);
    let large = raw_leaf(&rig, BASE);
    let live = rig.alloc.live();
    rig.mapper
        .set_memory(
            va(BASE + 0x5000),
            PAGE_SIZE,
            AttrChange::RO,
            &rig.mmu,
            &mut rig.alloc,
        )
        .unwrap();
    assert_eq!(rig.alloc.live(), live + 1, "one PTE table");
    // Not uniform yet: kept.
    let kept = rig
        .mapper
        .merge_large_pages(va(BASE), span::<M>(), &rig.mmu, &mut rig.alloc)
        .unwrap();
    assert_eq!((kept.merged, kept.kept), (0, 1));
    rig.mapper
        .set_memory(
            va(BASE + 0x5000),
            PAGE_SIZE,
            AttrChange::RW,
            &rig.mmu,
            &mut rig.alloc,
        )
        .unwrap();
    // A translation through the small pages, cached before the merge.
    rig.mmu.translate(va(BASE + 0x9000), Access::READ).unwrap();
    let merged = rig
        .mapper
        .merge_large_pages(va(BASE), span::<M>(), &rig.mmu, &mut rig.alloc)
        .unwrap();
    assert_eq!((merged.merged, merged.kept), (1, 0));
    assert_eq!(rig.alloc.live(), live, "the PTE table was given back");
    assert_eq!(raw_leaf(&rig, BASE), large, "the very entry it was");
    assert!(
        rig.mmu
            .tlb_snapshot()
            .entries()
            .iter()
            .all(|(_, e)| e.size == M::LARGE_PAGE_SIZE),
        "a small translation survived the merge"
    );
    let t = rig.mmu.translate(va(BASE + 0x5123), Access::WRITE).unwrap();
    assert_eq!(t.size, M::LARGE_PAGE_SIZE);
    assert_eq!(t.pa, pa(PHYS + 0x5123));
    assert_eq!(t.memory_type, MemoryType::Wp);
}

#[test]
fn split_then_merge_restores_one_large_entry_pae() {
    split_then_merge_restores_one_large_entry::<Pae>();
}

#[test]
fn split_then_merge_restores_one_large_entry_two_level() {
    split_then_merge_restores_one_large_entry::<TwoLevel>();
}

/// A large entry someone else built, with every legal bit a leaf may have
/// (A, D, PCD, PAT, G, all three AVL bits; XD under PAE), split: each PTE
/// holds exactly the SDM's bits for the same page.
fn split_keeps_a_foreign_large_entrys_odd_bits<M: PagingMode>() {
    let mut rig = rig::<M>(recommended::<M>());
    map_large(&mut rig, 1, MapFlags::KERNEL_RW);
    let slot = rig.mapper.walk(va(BASE)).unwrap().pmd.unwrap().0;
    // P, R/W, PCD, A, D, PS, G, AVL 9-11, PAT (bit 12 of a large entry).
    let low = 1 | 1 << 1 | 1 << 4 | 1 << 5 | 1 << 6 | 1 << 7 | 1 << 8 | 0b111 << 9 | 1 << 12;
    let xd = if M::SUPPORTS_NX { 1 << 63 } else { 0 };
    poke(&rig, slot, PHYS | low | xd);
    rig.mapper
        .set_memory(
            va(BASE + 0x1000),
            PAGE_SIZE,
            AttrChange::RO,
            &rig.mmu,
            &mut rig.alloc,
        )
        .unwrap();
    // In a PTE: PAT at bit 7, no PS, the rest where it was.
    let pte = 1 | 1 << 1 | 1 << 4 | 1 << 5 | 1 << 6 | 1 << 7 | 1 << 8 | 0b111 << 9;
    for i in [0u32, 2, 3, 100] {
        let want = (PHYS + u64::from(i) * PAGE_SIZE) | pte | xd;
        assert_eq!(raw_leaf(&rig, BASE + i * 0x1000), want, "PTE {i}");
    }
    let changed = raw_leaf(&rig, BASE + 0x1000);
    assert_eq!(changed, (PHYS + PAGE_SIZE) | (pte & !(1 << 1)) | xd);
    let t = rig.mmu.translate(va(BASE + 0x2000), Access::WRITE).unwrap();
    assert_eq!(
        t.memory_type,
        MemoryType::UcMinus,
        "PAT entry 6 (PAT + PCD)"
    );
    assert!(t.global && t.writable && t.nx == M::SUPPORTS_NX);
}

fn poke<M: PagingMode>(rig: &Rig<M>, slot: paging_core::Slot, raw: u64) {
    let addr = pa(slot.table.start_address().as_u64() + (slot.index * M::ENTRY_BYTES) as u64);
    if M::ENTRY_BYTES == 4 {
        rig.ram.write_u32(addr, raw as u32).unwrap();
    } else {
        rig.ram.write_u64(addr, raw).unwrap();
    }
    rig.mmu.flush_everything();
}

#[test]
fn split_keeps_a_foreign_large_entrys_odd_bits_pae() {
    split_keeps_a_foreign_large_entrys_odd_bits::<Pae>();
}

#[test]
fn split_keeps_a_foreign_large_entrys_odd_bits_two_level() {
    split_keeps_a_foreign_large_entrys_odd_bits::<TwoLevel>();
}

#[test]
fn split_refuses_a_large_entry_with_a_reserved_bit_pae() {
    let mut rig = rig::<Pae>(recommended::<Pae>());
    map_large(&mut rig, 1, MapFlags::KERNEL_RW);
    let slot = rig.mapper.walk(va(BASE)).unwrap().pmd.unwrap().0;
    // Bit 13 of a 2 MiB PDE is reserved (SDM table 4-9).
    let raw = PHYS | 1 | 1 << 1 | 1 << 7 | 1 << 13;
    poke(&rig, slot, raw);
    let e = rig.assert_unchanged(|m| {
        m.mapper
            .set_memory(va(BASE), PAGE_SIZE, AttrChange::RO, &m.mmu, &mut m.alloc)
    });
    assert_eq!(e, Err(AttrError::Unsplittable { va: va(BASE), raw }));
}

#[test]
fn split_refuses_a_pse36_page_above_4_gib_two_level() {
    let mut rig = rig::<TwoLevel>(SimConfig {
        pse36: true,
        max_phys_bits: 36,
        ..SimConfig::two_level()
    });
    map_large(&mut rig, 1, MapFlags::KERNEL_RW);
    let slot = rig.mapper.walk(va(BASE)).unwrap().pmd.unwrap().0;
    // PSE-36: bit 13 is physical address bit 32 (SDM table 4-4); 4 KiB
    // entries cannot reach it.
    let raw = PHYS | 1 | 1 << 1 | 1 << 7 | 1 << 13;
    poke(&rig, slot, raw);
    assert_eq!(
        rig.mmu.translate(va(BASE), Access::READ).unwrap().pa,
        pa((1 << 32) + PHYS)
    );
    // The walk set A (bit 5).
    let raw = raw | 1 << 5;
    assert_eq!(raw_leaf(&rig, BASE), raw);
    let e = rig.assert_unchanged(|m| {
        m.mapper
            .set_memory(va(BASE), PAGE_SIZE, AttrChange::RO, &m.mmu, &mut m.alloc)
    });
    assert_eq!(e, Err(AttrError::Unsplittable { va: va(BASE), raw }));
}

fn split_allocator_failure_changes_nothing<M: PagingMode>() {
    let mut rig = rig::<M>(recommended::<M>());
    map_large(&mut rig, 2, MapFlags::KERNEL_RW);
    let s = span::<M>() as u32;
    for fail_after in [0, 1] {
        rig.alloc.fail_after(fail_after);
        // Cuts both large pages: two tables, the second one refused when
        // `fail_after` is 1 (the first is given back).
        let e = rig.assert_unchanged(|m| {
            m.mapper.set_memory(
                va(BASE + s - 0x1000),
                2 * PAGE_SIZE,
                AttrChange::RO,
                &m.mmu,
                &mut m.alloc,
            )
        });
        assert_eq!(e, Err(AttrError::OutOfFrames));
        rig.alloc.never_fail();
    }
    assert_eq!(fault(&rig, BASE + s - 0x1000, Access::WRITE), 0);
}

#[test]
fn split_allocator_failure_changes_nothing_pae() {
    split_allocator_failure_changes_nothing::<Pae>();
}

#[test]
fn split_allocator_failure_changes_nothing_two_level() {
    split_allocator_failure_changes_nothing::<TwoLevel>();
}

fn split_refuses_bad_ranges<M: PagingMode>() {
    let mut rig = rig::<M>(recommended::<M>());
    map_large(&mut rig, 1, MapFlags::KERNEL_RW);
    let s = span::<M>();
    let cases: [(u32, u64, AttrError); 4] = [
        (
            BASE + 0x800,
            PAGE_SIZE,
            AttrError::Unaligned {
                addr: va(BASE + 0x800),
            },
        ),
        (BASE, 0x800, AttrError::Unaligned { addr: va(0x800) }),
        // Runs off the large page into nothing.
        (
            BASE + s as u32 - 0x1000,
            2 * PAGE_SIZE,
            AttrError::NotMapped {
                va: va(BASE + s as u32),
                level: Level::Pmd,
            },
        ),
        (
            0xFFFF_F000,
            2 * PAGE_SIZE,
            AttrError::VirtOutOfRange {
                start: va(0xFFFF_F000),
                len: 2 * PAGE_SIZE,
            },
        ),
    ];
    for (at, len, want) in cases {
        let e = rig.assert_unchanged(|m| {
            m.mapper
                .set_memory(va(at), len, AttrChange::RO, &m.mmu, &mut m.alloc)
        });
        assert_eq!(e, Err(want));
    }
    // A hole in a PTE table: the page after a 4 KiB mapping.
    rig.mapper
        .map_range(
            va(BASE + s as u32 * 2),
            pa(PHYS),
            PAGE_SIZE,
            MapFlags::KERNEL_RW,
            LargePages::Avoid,
            &mut rig.alloc,
        )
        .unwrap()
        .ignore();
    let e = rig.assert_unchanged(|m| {
        m.mapper.set_memory(
            va(BASE + s as u32 * 2),
            2 * PAGE_SIZE,
            AttrChange::RO,
            &m.mmu,
            &mut m.alloc,
        )
    });
    assert_eq!(
        e,
        Err(AttrError::NotMapped {
            va: va(BASE + s as u32 * 2 + 0x1000),
            level: Level::Pte
        })
    );
}

#[test]
fn split_refuses_bad_ranges_pae() {
    split_refuses_bad_ranges::<Pae>();
}

#[test]
fn split_refuses_bad_ranges_two_level() {
    split_refuses_bad_ranges::<TwoLevel>();
}

fn split_wc_without_pat_is_a_missing_feature<M: PagingMode>() {
    let mut rig = rig::<M>(SimConfig {
        has_pat: false,
        ..SimConfig::for_mode::<M>()
    });
    map_large(&mut rig, 1, MapFlags::KERNEL_RW);
    for cache in [CacheType::WriteCombining, CacheType::WriteProtected] {
        let e = rig.assert_unchanged(|m| {
            m.mapper.set_memory(
                va(BASE + 0x1000),
                PAGE_SIZE,
                AttrChange::cache(cache, PatLayout::RECOMMENDED),
                &m.mmu,
                &mut m.alloc,
            )
        });
        assert_eq!(e, Err(AttrError::MissingFeature(CpuFeature::Pat)));
    }
    // UC needs no PAT: PCD + PWT, entry 3 of the power-on PAT.
    rig.mapper
        .set_memory(
            va(BASE + 0x1000),
            PAGE_SIZE,
            AttrChange::cache(CacheType::Uncached, PatLayout::RECOMMENDED),
            &rig.mmu,
            &mut rig.alloc,
        )
        .unwrap();
    let t = rig.mmu.translate(va(BASE + 0x1000), Access::READ).unwrap();
    assert_eq!(t.memory_type, MemoryType::Uc);
}

#[test]
fn split_wc_without_pat_is_a_missing_feature_pae() {
    split_wc_without_pat_is_a_missing_feature::<Pae>();
}

#[test]
fn split_wc_without_pat_is_a_missing_feature_two_level() {
    split_wc_without_pat_is_a_missing_feature::<TwoLevel>();
}

#[test]
fn split_wc_missing_from_the_layout_is_a_cache_error() {
    let mut rig = rig::<Pae>(SimConfig::pae());
    map_large(&mut rig, 1, MapFlags::KERNEL_RW);
    let e = rig.assert_unchanged(|m| {
        m.mapper.set_memory(
            va(BASE),
            PAGE_SIZE,
            AttrChange::cache(CacheType::WriteCombining, PatLayout::POWER_ON),
            &m.mmu,
            &mut m.alloc,
        )
    });
    assert!(matches!(e, Err(AttrError::Cache(_))), "{e:?}");
}

#[test]
fn split_nx_without_nx_is_a_missing_feature_pae() {
    let mut rig = rig::<Pae>(SimConfig::p6(paging_sim::SimPaging::Pae));
    map_large(&mut rig, 1, MapFlags::KERNEL_RW);
    let e = rig.assert_unchanged(|m| {
        m.mapper
            .set_memory(va(BASE), PAGE_SIZE, AttrChange::NX, &m.mmu, &mut m.alloc)
    });
    assert_eq!(e, Err(AttrError::MissingFeature(CpuFeature::NoExecute)));
}

#[test]
fn split_nx_in_two_level_mode_is_unsupported() {
    let mut rig = rig::<TwoLevel>(SimConfig::two_level());
    map_large(&mut rig, 1, MapFlags::KERNEL_RW);
    let e = rig.assert_unchanged(|m| {
        m.mapper
            .set_memory(va(BASE), PAGE_SIZE, AttrChange::NX, &m.mmu, &mut m.alloc)
    });
    assert!(matches!(e, Err(AttrError::Unsupported(_))), "{e:?}");
}

#[test]
fn split_refuses_a_table_frame_out_of_reach_pae() {
    // PTE tables from highmem (above 4 GiB) on a CPU whose entries reach
    // 32 bits only: refused, and the frame given back.
    let config = SimConfig {
        max_phys_bits: 32,
        ..recommended::<Pae>()
    };
    let mut rig = rig::<Pae>(config);
    map_large(&mut rig, 1, MapFlags::KERNEL_RW);
    rig.mapper = paging_core::Mapper::new_isolated(
        rig.mapper.root(),
        paging_sim::SimAccess::new(rig.ram),
        config.features(),
    )
    .unwrap()
    .with_pte_zone(paging_core::Zone::PreferHighmem);
    let e = rig.assert_unchanged(|m| {
        m.mapper
            .set_memory(va(BASE), PAGE_SIZE, AttrChange::RO, &m.mmu, &mut m.alloc)
    });
    assert!(
        matches!(e, Err(AttrError::TableOutOfReach { max_bits: 32, .. })),
        "{e:?}"
    );
}

#[test]
fn split_is_not_needed_for_a_whole_large_page() {
    let mut rig = rig::<Pae>(recommended::<Pae>());
    map_large(&mut rig, 1, MapFlags::KERNEL_RW);
    let live = rig.alloc.live();
    let stats = rig
        .mapper
        .set_memory(
            va(BASE),
            span::<Pae>(),
            AttrChange::RO,
            &rig.mmu,
            &mut rig.alloc,
        )
        .unwrap();
    assert_eq!((stats.split, stats.large_pages, stats.changed), (0, 1, 1));
    assert_eq!(rig.alloc.live(), live);
    assert_eq!(fault(&rig, BASE + 0x1234, Access::WRITE), 0b11);
}

#[test]
fn split_merge_refuses_misaligned_ranges() {
    let mut rig = rig::<Pae>(recommended::<Pae>());
    let e = rig.assert_unchanged(|m| {
        m.mapper
            .merge_large_pages(va(BASE + 1), PAGE_SIZE, &m.mmu, &mut m.alloc)
    });
    assert_eq!(e, Err(AttrError::Unaligned { addr: va(BASE + 1) }));
    let e = rig.assert_unchanged(|m| {
        m.mapper
            .merge_large_pages(va(0xFFE0_0000), 1 << 22, &m.mmu, &mut m.alloc)
    });
    assert!(matches!(e, Err(AttrError::VirtOutOfRange { .. })), "{e:?}");
}

fn split_table_restricts_is_refused_with_nothing_changed<M: PagingMode>() {
    let mut rig = rig::<M>(recommended::<M>());
    // A read-only page and a writable one below one table entry a loader
    // made read-only: opening the entry for the first would let the
    // second be written.
    for (off, flags) in [(0, MapFlags::KERNEL_RO), (0x1000, MapFlags::KERNEL_RW)] {
        rig.mapper
            .map_range(
                va(BASE + off),
                pa(PHYS + u64::from(off)),
                PAGE_SIZE,
                flags,
                LargePages::Avoid,
                &mut rig.alloc,
            )
            .unwrap()
            .ignore();
    }
    let (slot, pmd) = rig.mapper.walk(va(BASE)).unwrap().pmd.unwrap();
    let raw = pmd.raw() & !(1 << 1);
    poke(&rig, slot, raw);
    let e = rig.assert_unchanged(|m| {
        m.mapper
            .set_memory(va(BASE), PAGE_SIZE, AttrChange::RW, &m.mmu, &mut m.alloc)
    });
    assert_eq!(
        e,
        Err(AttrError::TableRestricts {
            va: va(BASE),
            level: Level::Pmd,
            raw
        })
    );
}

#[test]
fn split_table_restricts_is_refused_with_nothing_changed_pae() {
    split_table_restricts_is_refused_with_nothing_changed::<Pae>();
}

#[test]
fn split_table_restricts_is_refused_with_nothing_changed_two_level() {
    split_table_restricts_is_refused_with_nothing_changed::<TwoLevel>();
}

fn split_unreachable_new_table_is_an_access_error<M: PagingMode>() {
    let config = recommended::<M>();
    let mut rig = rig::<M>(config);
    map_large(&mut rig, 1, MapFlags::KERNEL_RW);
    // The access reaches the tables there are, not the frame the split
    // would take next.
    let limit = rig
        .alloc
        .live_frames()
        .iter()
        .map(|f| f.start_address().as_u64() + PAGE_SIZE)
        .max()
        .unwrap();
    rig.mapper = paging_core::Mapper::new_isolated(
        rig.mapper.root(),
        paging_sim::SimAccess::below(rig.ram, limit),
        config.features(),
    )
    .unwrap();
    let e = rig.assert_unchanged(|m| {
        m.mapper
            .set_memory(va(BASE), PAGE_SIZE, AttrChange::RO, &m.mmu, &mut m.alloc)
    });
    assert!(
        matches!(
            e,
            Err(AttrError::Access(paging_core::AccessError::Unreachable(_)))
        ),
        "{e:?}"
    );
}

#[test]
fn split_unreachable_new_table_is_an_access_error_pae() {
    split_unreachable_new_table_is_an_access_error::<Pae>();
}

#[test]
fn split_unreachable_new_table_is_an_access_error_two_level() {
    split_unreachable_new_table_is_an_access_error::<TwoLevel>();
}

/// A uniform table under a table entry a loader made read-only: the merged
/// large page is read-only too (SDM 4.6: R/W is ANDed over the levels), so
/// every address translates as it did.
fn split_merge_keeps_a_restrictive_table_entrys_rights<M: PagingMode>() {
    let mut rig = rig::<M>(recommended::<M>());
    rig.mapper
        .map_range(
            va(BASE),
            pa(PHYS),
            span::<M>(),
            MapFlags::KERNEL_RW,
            LargePages::Avoid,
            &mut rig.alloc,
        )
        .unwrap()
        .ignore();
    let (slot, pmd) = rig.mapper.walk(va(BASE)).unwrap().pmd.unwrap();
    poke(&rig, slot, pmd.raw() & !(1 << 1));
    assert_eq!(fault(&rig, BASE + 0x3000, Access::WRITE), 0b11);
    let stats = rig
        .mapper
        .merge_large_pages(va(BASE), span::<M>(), &rig.mmu, &mut rig.alloc)
        .unwrap();
    assert_eq!(stats.merged, 1);
    let t = rig.mmu.translate(va(BASE + 0x3000), Access::READ).unwrap();
    assert_eq!((t.size, t.writable), (M::LARGE_PAGE_SIZE, false));
    assert_eq!(fault(&rig, BASE + 0x3000, Access::WRITE), 0b11);
}

#[test]
fn split_merge_keeps_a_restrictive_table_entrys_rights_pae() {
    split_merge_keeps_a_restrictive_table_entrys_rights::<Pae>();
}

#[test]
fn split_merge_keeps_a_restrictive_table_entrys_rights_two_level() {
    split_merge_keeps_a_restrictive_table_entrys_rights::<TwoLevel>();
}

/// Split one large page at `BASE` by making page 5 read-only, then put it
/// back: the table is uniform again, not merged yet.
fn split_and_restore<M: PagingMode>(rig: &mut Rig<M>) {
    for change in [AttrChange::RO, AttrChange::RW] {
        rig.mapper
            .set_memory(
                va(BASE + 0x5000),
                PAGE_SIZE,
                change,
                &rig.mmu,
                &mut rig.alloc,
            )
            .unwrap();
    }
}

fn split_merge_looks_only_at_whole_large_pages<M: PagingMode>() {
    let mut rig = rig::<M>(recommended::<M>());
    map_large(&mut rig, 1, ODD);
    split_and_restore(&mut rig);
    // Half the block: not looked at, the table stays.
    let half = rig
        .mapper
        .merge_large_pages(va(BASE), span::<M>() / 2, &rig.mmu, &mut rig.alloc)
        .unwrap();
    assert_eq!((half.merged, half.kept), (0, 0));
    assert!(rig.mapper.walk(va(BASE)).unwrap().pte.is_some());
    let whole = rig
        .mapper
        .merge_large_pages(va(BASE), span::<M>(), &rig.mmu, &mut rig.alloc)
        .unwrap();
    assert_eq!((whole.merged, whole.kept), (1, 0));
}

#[test]
fn split_merge_looks_only_at_whole_large_pages_pae() {
    split_merge_looks_only_at_whole_large_pages::<Pae>();
}

#[test]
fn split_merge_looks_only_at_whole_large_pages_two_level() {
    split_merge_looks_only_at_whole_large_pages::<TwoLevel>();
}

fn split_merge_carries_a_dirty_bit_the_cpu_set_in_a_pte<M: PagingMode>() {
    // SDM 4.8: the CPU sets D in the 4 KiB entry it writes through. After
    // the merge, the large entry must still say the memory was written.
    let mut rig = rig::<M>(recommended::<M>());
    map_large(&mut rig, 1, ODD);
    let clean = raw_leaf(&rig, BASE);
    assert_eq!(clean & 1 << 6, 0, "read only so far: D clear");
    split_and_restore(&mut rig);
    rig.mmu.translate(va(BASE + 0x7000), Access::WRITE).unwrap();
    assert_ne!(raw_leaf(&rig, BASE + 0x7000) & 1 << 6, 0);
    let merged = rig
        .mapper
        .merge_large_pages(va(BASE), span::<M>(), &rig.mmu, &mut rig.alloc)
        .unwrap();
    assert_eq!(merged.merged, 1);
    assert_eq!(
        raw_leaf(&rig, BASE),
        clean | 1 << 6,
        "the same entry, plus D"
    );
}

#[test]
fn split_merge_carries_a_dirty_bit_the_cpu_set_in_a_pte_pae() {
    split_merge_carries_a_dirty_bit_the_cpu_set_in_a_pte::<Pae>();
}

#[test]
fn split_merge_carries_a_dirty_bit_the_cpu_set_in_a_pte_two_level() {
    split_merge_carries_a_dirty_bit_the_cpu_set_in_a_pte::<TwoLevel>();
}

fn split_a_hole_is_reported_at_its_address<M: PagingMode>() {
    let mut rig = rig::<M>(recommended::<M>());
    map_large(&mut rig, 1, ODD);
    split_and_restore(&mut rig);
    let hole = BASE + 0x9000;
    rig.mapper.unmap(va(hole)).unwrap().1.flush(&rig.mmu);
    let before = rig
        .mapper
        .walk(va(BASE + 0x8000))
        .unwrap()
        .pte
        .unwrap()
        .1
        .raw();
    let err = rig.mapper.set_memory(
        va(BASE + 0x8000),
        4 * PAGE_SIZE,
        AttrChange::RO,
        &rig.mmu,
        &mut rig.alloc,
    );
    assert_eq!(
        err,
        Err(AttrError::NotMapped {
            va: va(hole),
            level: Level::Pte
        })
    );
    let after = rig
        .mapper
        .walk(va(BASE + 0x8000))
        .unwrap()
        .pte
        .unwrap()
        .1
        .raw();
    assert_eq!(after, before, "nothing changed");
}

#[test]
fn split_a_hole_is_reported_at_its_address_pae() {
    split_a_hole_is_reported_at_its_address::<Pae>();
}

#[test]
fn split_a_hole_is_reported_at_its_address_two_level() {
    split_a_hole_is_reported_at_its_address::<TwoLevel>();
}

fn split_clearing_present_is_not_an_attribute<M: PagingMode>() {
    // `set_memory` changes attributes of mapped pages; P is not one, so a
    // change that names it in `clear` leaves every page mapped.
    let mut rig = rig::<M>(recommended::<M>());
    map_large(&mut rig, 1, ODD);
    rig.mapper
        .set_memory(
            va(BASE + 0x3000),
            PAGE_SIZE,
            AttrChange::flags(MapFlags::PRESENT | MapFlags::WRITABLE, MapFlags::empty()),
            &rig.mmu,
            &mut rig.alloc,
        )
        .unwrap();
    let t = rig.mmu.translate(va(BASE + 0x3000), Access::READ).unwrap();
    assert_eq!(t.pa, pa(PHYS + 0x3000));
    assert!(!t.writable);
}

#[test]
fn split_clearing_present_is_not_an_attribute_pae() {
    split_clearing_present_is_not_an_attribute::<Pae>();
}

#[test]
fn split_clearing_present_is_not_an_attribute_two_level() {
    split_clearing_present_is_not_an_attribute::<TwoLevel>();
}

/// A PAE rig whose CPU reaches `bits` physical address bits, with the
/// highest large page below 2^`bits` mapped at `BASE`.
fn top_large_page_rig(bits: u32) -> Rig<Pae> {
    let config = SimConfig {
        max_phys_bits: bits,
        ..recommended::<Pae>()
    };
    let mut rig = rig::<Pae>(config);
    let top = (1u64 << bits) - span::<Pae>();
    rig.mapper
        .map_range(
            va(BASE),
            pa(top),
            span::<Pae>(),
            MapFlags::KERNEL_RW,
            LargePages::Use,
            &mut rig.alloc,
        )
        .unwrap()
        .flush(&rig.mmu);
    rig
}

#[test]
fn split_of_the_highest_large_page_the_cpu_reaches_pae() {
    // Its last 4 KiB page ends exactly at 2^MAXPHYADDR: every PTE can
    // carry it (SDM 4.4.2: address bits up to MAXPHYADDR-1).
    let mut rig = top_large_page_rig(36);
    let stats = rig
        .mapper
        .set_memory(
            va(BASE),
            PAGE_SIZE,
            AttrChange::RO,
            &rig.mmu,
            &mut rig.alloc,
        )
        .unwrap();
    assert_eq!(stats.split, 1);
    let last = BASE + span::<Pae>() as u32 - 0x1000;
    let t = rig.mmu.translate(va(last), Access::WRITE).unwrap();
    assert_eq!(t.pa, pa((1 << 36) - 0x1000));
}

#[test]
fn split_refuses_a_large_page_beyond_the_cpus_reach_pae() {
    // A large entry someone else built at 4 GiB, on a CPU whose entries
    // reach 32 bits: the mode could express its PTEs, the CPU could not
    // use them (bit 32 would be reserved).
    let mut rig = top_large_page_rig(32);
    let slot = rig.mapper.walk(va(BASE)).unwrap().pmd.unwrap().0;
    let raw = (1u64 << 32) | 1 | 1 << 1 | 1 << 7;
    poke(&rig, slot, raw);
    let e = rig.assert_unchanged(|m| {
        m.mapper
            .set_memory(va(BASE), PAGE_SIZE, AttrChange::RO, &m.mmu, &mut m.alloc)
    });
    assert_eq!(e, Err(AttrError::Unsplittable { va: va(BASE), raw }));
}

/// The flushes a mapper asked for.
#[derive(Default)]
struct Flushes(std::cell::RefCell<Vec<(u32, u32)>>);

impl TlbOps for Flushes {
    fn flush_page(&self, va: paging_core::VirtAddr) {
        self.0.borrow_mut().push((va.as_u32(), 1));
    }
    fn flush_range(&self, start: paging_core::VirtAddr, pages: u32) {
        self.0.borrow_mut().push((start.as_u32(), pages));
    }
    fn flush_all(&self) {
        self.0.borrow_mut().push((0, u32::MAX));
    }
    fn flush_everything(&self) {
        self.0.borrow_mut().push((0, u32::MAX));
    }
}

fn split_flushes_the_whole_large_page<M: PagingMode>() {
    // SDM 4.10.2: after the split the TLB may hold the large translation
    // and small ones (some CPUs fracture a large page into 4 KiB entries),
    // so the sequence invalidates every page of the large page, not just
    // the one whose attributes change.
    let mut rig = rig::<M>(recommended::<M>());
    map_large(&mut rig, 1, ODD);
    let flushes = Flushes::default();
    rig.mapper
        .set_memory(
            va(BASE + 0x3000),
            PAGE_SIZE,
            AttrChange::RO,
            &flushes,
            &mut rig.alloc,
        )
        .unwrap();
    let pages = (span::<M>() / PAGE_SIZE) as u32;
    let whole = flushes
        .0
        .borrow()
        .iter()
        .any(|&(start, n)| n == u32::MAX || (start == BASE && n >= pages));
    assert!(whole, "flushes {:x?}", flushes.0.borrow());
}

#[test]
fn split_flushes_the_whole_large_page_pae() {
    split_flushes_the_whole_large_page::<Pae>();
}

#[test]
fn split_flushes_the_whole_large_page_two_level() {
    split_flushes_the_whole_large_page::<TwoLevel>();
}

fn split_setting_present_is_harmless<M: PagingMode>() {
    // P in `set` names what every page in the range already has: the
    // change is the writable bit alone.
    let mut rig = rig::<M>(recommended::<M>());
    map_large(&mut rig, 1, MapFlags::KERNEL_RO);
    let stats = rig
        .mapper
        .set_memory(
            va(BASE + 0x3000),
            PAGE_SIZE,
            AttrChange::flags(MapFlags::empty(), MapFlags::PRESENT | MapFlags::WRITABLE),
            &rig.mmu,
            &mut rig.alloc,
        )
        .unwrap();
    assert_eq!((stats.split, stats.changed), (1, 1));
    let t = rig.mmu.translate(va(BASE + 0x3000), Access::WRITE).unwrap();
    assert_eq!(t.pa, pa(PHYS + 0x3000));
    assert_eq!(fault(&rig, BASE + 0x4000, Access::WRITE), 0b11);
}

#[test]
fn split_setting_present_is_harmless_pae() {
    split_setting_present_is_harmless::<Pae>();
}

#[test]
fn split_setting_present_is_harmless_two_level() {
    split_setting_present_is_harmless::<TwoLevel>();
}

/// Dirty, bit 6 of a leaf (SDM tables 4-4 to 4-11).
const DIRTY: u64 = 1 << 6;

fn split_keeps_a_dirty_bit_the_cpu_sets_while_the_table_is_linked<M: PagingMode>() {
    // The CPU writes through the large page after the split read it and
    // before the table replaces it: every PTE must carry that D (the large
    // page was written; which 4 KiB of it is unknown).
    let mut rig = rig::<M>(recommended::<M>());
    map_large(&mut rig, 1, ODD);
    assert_eq!(raw_leaf(&rig, BASE) & DIRTY, 0);
    let slot = rig.mapper.walk(va(BASE)).unwrap().pmd.unwrap().0;
    let mut mapper = racing_mapper(&rig, slot, slot, DIRTY);
    mapper
        .set_memory(
            va(BASE + 0x3000),
            PAGE_SIZE,
            AttrChange::RO,
            &rig.mmu,
            &mut rig.alloc,
        )
        .unwrap();
    for page in [0u32, 3, 9, (span::<M>() / PAGE_SIZE) as u32 - 1] {
        // D added, and the A the large entry already had kept.
        let pte = raw_leaf(&rig, BASE + page * 0x1000);
        assert_eq!(
            pte & (1 << 5 | DIRTY),
            1 << 5 | DIRTY,
            "PTE {page}: {pte:#x}"
        );
    }
}

#[test]
fn split_keeps_a_dirty_bit_the_cpu_sets_while_the_table_is_linked_pae() {
    split_keeps_a_dirty_bit_the_cpu_sets_while_the_table_is_linked::<Pae>();
}

#[test]
fn split_keeps_a_dirty_bit_the_cpu_sets_while_the_table_is_linked_two_level() {
    split_keeps_a_dirty_bit_the_cpu_sets_while_the_table_is_linked::<TwoLevel>();
}

/// A mapper over `rig`'s split block through which the CPU ORs `bits` into
/// PTE 7 when the mapper exchanges the block's PMD entry.
fn racing_at_page_7<M: PagingMode>(
    rig: &Rig<M>,
    bits: u64,
) -> paging_core::Mapper<M, racing_support::CpuMarksDuringTheWrite<'static, M>> {
    let walk = rig.mapper.walk(va(BASE + 0x7000)).unwrap();
    racing_mapper(rig, walk.pmd.unwrap().0, walk.pte.unwrap().0, bits)
}

fn split_merge_keeps_a_dirty_bit_the_cpu_sets_while_the_large_entry_is_written<M: PagingMode>() {
    // The CPU writes through a 4 KiB page after the merge checked the table
    // and before the large entry replaces it: the large entry must carry D.
    let mut rig = rig::<M>(recommended::<M>());
    map_large(&mut rig, 1, ODD);
    let large = raw_leaf(&rig, BASE);
    split_and_restore(&mut rig);
    let mut mapper = racing_at_page_7(&rig, DIRTY);
    let merged = mapper
        .merge_large_pages(va(BASE), span::<M>(), &rig.mmu, &mut rig.alloc)
        .unwrap();
    assert_eq!(merged.merged, 1);
    assert_eq!(raw_leaf(&rig, BASE), large | DIRTY);
}

#[test]
fn split_merge_keeps_a_dirty_bit_the_cpu_sets_while_the_large_entry_is_written_pae() {
    split_merge_keeps_a_dirty_bit_the_cpu_sets_while_the_large_entry_is_written::<Pae>();
}

#[test]
fn split_merge_keeps_a_dirty_bit_the_cpu_sets_while_the_large_entry_is_written_two_level() {
    split_merge_keeps_a_dirty_bit_the_cpu_sets_while_the_large_entry_is_written::<TwoLevel>();
}

fn split_keeps_a_late_accessed_bit_and_invents_no_dirty_one<M: PagingMode>() {
    // The same race with a read: A arrives in the large entry during the
    // link, and the PTEs get A but not D (nobody wrote).
    let mut rig = rig::<M>(recommended::<M>());
    map_large(&mut rig, 1, ODD);
    clear_accessed(&mut rig);
    assert_eq!(raw_leaf(&rig, BASE) & (1 << 5 | DIRTY), 0);
    let slot = rig.mapper.walk(va(BASE)).unwrap().pmd.unwrap().0;
    let mut mapper = racing_mapper(&rig, slot, slot, 1 << 5);
    mapper
        .set_memory(
            va(BASE + 0x3000),
            PAGE_SIZE,
            AttrChange::RO,
            &rig.mmu,
            &mut rig.alloc,
        )
        .unwrap();
    for page in [0u32, 9] {
        let pte = raw_leaf(&rig, BASE + page * 0x1000);
        assert_eq!(pte & (1 << 5 | DIRTY), 1 << 5, "PTE {page}: {pte:#x}");
    }
}

#[test]
fn split_keeps_a_late_accessed_bit_and_invents_no_dirty_one_pae() {
    split_keeps_a_late_accessed_bit_and_invents_no_dirty_one::<Pae>();
}

#[test]
fn split_keeps_a_late_accessed_bit_and_invents_no_dirty_one_two_level() {
    split_keeps_a_late_accessed_bit_and_invents_no_dirty_one::<TwoLevel>();
}

/// Accessed, bit 5 of every entry (SDM tables 4-4 to 4-11).
const ACCESSED: u64 = 1 << 5;

fn clear_accessed<M: PagingMode>(rig: &mut Rig<M>) {
    let (_, flush) = rig
        .mapper
        .test_and_clear_accessed(va(BASE), span::<M>())
        .unwrap();
    flush.flush(&rig.mmu);
}

fn split_keeps_an_accessed_bit_the_cpu_sets_while_late_bits_are_carried<M: PagingMode>() {
    // Two walks race the split: a write through the large page while the
    // table is linked (D, which the split then ORs into every PTE), and a
    // read through PTE 0 just as that OR is stored into it (A). PTE 0 keeps
    // both; the other PTEs get D and no A nobody set.
    let mut rig = rig::<M>(recommended::<M>());
    map_large(&mut rig, 1, ODD);
    clear_accessed(&mut rig);
    assert_eq!(raw_leaf(&rig, BASE) & (ACCESSED | DIRTY), 0);
    let slot = rig.mapper.walk(va(BASE)).unwrap().pmd.unwrap().0;
    let mut mapper = racing_mapper(&rig, slot, slot, DIRTY);
    mapper.access().arm_next(ACCESSED);
    mapper
        .set_memory(
            va(BASE + 0x3000),
            PAGE_SIZE,
            AttrChange::RO,
            &rig.mmu,
            &mut rig.alloc,
        )
        .unwrap();
    let races = (mapper.access().armed(), mapper.access().armed_next());
    assert_eq!(races, (0, 0), "both races happened");
    assert_eq!(raw_leaf(&rig, BASE) & (ACCESSED | DIRTY), ACCESSED | DIRTY);
    for page in [1u32, 3, 9, (span::<M>() / PAGE_SIZE) as u32 - 1] {
        let pte = raw_leaf(&rig, BASE + page * 0x1000);
        assert_eq!(pte & (ACCESSED | DIRTY), DIRTY, "PTE {page}: {pte:#x}");
    }
}

#[test]
fn split_keeps_an_accessed_bit_the_cpu_sets_while_late_bits_are_carried_pae() {
    split_keeps_an_accessed_bit_the_cpu_sets_while_late_bits_are_carried::<Pae>();
}

#[test]
fn split_keeps_an_accessed_bit_the_cpu_sets_while_late_bits_are_carried_two_level() {
    split_keeps_an_accessed_bit_the_cpu_sets_while_late_bits_are_carried::<TwoLevel>();
}

fn split_merge_carries_a_late_accessed_bit_and_invents_no_dirty_one<M: PagingMode>() {
    // A read through PTE 7 (A, no D) lands while the merge writes the large
    // entry: the large entry gets A again, and still no D (nobody wrote).
    let mut rig = rig::<M>(recommended::<M>());
    map_large(&mut rig, 1, ODD);
    let large = raw_leaf(&rig, BASE);
    assert_eq!(large & (ACCESSED | DIRTY), ACCESSED, "read, never written");
    split_and_restore(&mut rig);
    clear_accessed(&mut rig);
    let mut mapper = racing_at_page_7(&rig, ACCESSED);
    let merged = mapper
        .merge_large_pages(va(BASE), span::<M>(), &rig.mmu, &mut rig.alloc)
        .unwrap();
    assert_eq!((merged.merged, mapper.access().armed()), (1, 0));
    assert_eq!(raw_leaf(&rig, BASE), large);
}

#[test]
fn split_merge_carries_a_late_accessed_bit_and_invents_no_dirty_one_pae() {
    split_merge_carries_a_late_accessed_bit_and_invents_no_dirty_one::<Pae>();
}

#[test]
fn split_merge_carries_a_late_accessed_bit_and_invents_no_dirty_one_two_level() {
    split_merge_carries_a_late_accessed_bit_and_invents_no_dirty_one::<TwoLevel>();
}

fn split_merge_keeps_an_accessed_bit_the_cpu_sets_while_late_bits_are_carried<M: PagingMode>() {
    // A write through PTE 7 lands while the merge writes the large entry
    // (D, which the merge then stores into the large entry), and a read
    // through the large entry lands just as that store happens (A): the
    // large entry keeps both.
    let mut rig = rig::<M>(recommended::<M>());
    map_large(&mut rig, 1, ODD);
    let large = raw_leaf(&rig, BASE);
    split_and_restore(&mut rig);
    clear_accessed(&mut rig);
    let mut mapper = racing_at_page_7(&rig, DIRTY);
    mapper.access().arm_next(ACCESSED);
    let merged = mapper
        .merge_large_pages(va(BASE), span::<M>(), &rig.mmu, &mut rig.alloc)
        .unwrap();
    let races = (mapper.access().armed(), mapper.access().armed_next());
    assert_eq!((merged.merged, races), (1, (0, 0)));
    assert_eq!(raw_leaf(&rig, BASE), large | ACCESSED | DIRTY);
}

#[test]
fn split_merge_keeps_an_accessed_bit_the_cpu_sets_while_late_bits_are_carried_pae() {
    split_merge_keeps_an_accessed_bit_the_cpu_sets_while_late_bits_are_carried::<Pae>();
}

#[test]
fn split_merge_keeps_an_accessed_bit_the_cpu_sets_while_late_bits_are_carried_two_level() {
    split_merge_keeps_an_accessed_bit_the_cpu_sets_while_late_bits_are_carried::<TwoLevel>();
}

fn split_merge_keeps_a_table_with_one_page_out_of_line<M: PagingMode>() {
    // Merging needs every PTE to map the next 4 KiB with the same flags:
    // one page mapping another frame (same flags), or one page with other
    // flags (same frame), keeps the table as it is.
    for (what, change) in [("frame", 0x2000u64), ("flags", 1 << 1)] {
        let mut rig = rig::<M>(recommended::<M>());
        rig.mapper
            .map_range(
                va(BASE),
                pa(PHYS),
                span::<M>(),
                MapFlags::KERNEL_RW,
                LargePages::Avoid,
                &mut rig.alloc,
            )
            .unwrap()
            .ignore();
        let (slot, pte) = rig.mapper.walk(va(BASE + 0x5000)).unwrap().pte.unwrap();
        let odd = pte.raw() ^ change;
        poke(&rig, slot, odd);
        let stats = rig
            .mapper
            .merge_large_pages(va(BASE), span::<M>(), &rig.mmu, &mut rig.alloc)
            .unwrap();
        assert_eq!((stats.merged, stats.kept), (0, 1), "{what}");
        assert_eq!(raw_leaf(&rig, BASE + 0x5000), odd, "{what}");
        let t = rig.mmu.translate(va(BASE + 0x5000), Access::READ).unwrap();
        assert_eq!(t.size, paging_core::PageSize::Size4KiB, "{what}");
    }
}

#[test]
fn split_merge_keeps_a_table_with_one_page_out_of_line_pae() {
    split_merge_keeps_a_table_with_one_page_out_of_line::<Pae>();
}

#[test]
fn split_merge_keeps_a_table_with_one_page_out_of_line_two_level() {
    split_merge_keeps_a_table_with_one_page_out_of_line::<TwoLevel>();
}

#[test]
fn split_merge_under_a_no_execute_table_entry_stays_no_execute_pae() {
    // SDM 4.6: XD in any entry of the walk forbids fetches. A uniform
    // table under a PDE a loader marked XD merges into a large page with
    // XD, so every address translates as it did.
    let mut rig = rig::<Pae>(recommended::<Pae>());
    rig.mapper
        .map_range(
            va(BASE),
            pa(PHYS),
            span::<Pae>(),
            MapFlags::KERNEL_RW,
            LargePages::Avoid,
            &mut rig.alloc,
        )
        .unwrap()
        .ignore();
    let (slot, pmd) = rig.mapper.walk(va(BASE)).unwrap().pmd.unwrap();
    poke(&rig, slot, pmd.raw() | 1 << 63);
    // P = 1, I/D = 1 (SDM 4.7): a fetch from a present no-execute page.
    assert_eq!(fault(&rig, BASE + 0x3000, Access::EXEC), 0b1_0001);
    let stats = rig
        .mapper
        .merge_large_pages(va(BASE), span::<Pae>(), &rig.mmu, &mut rig.alloc)
        .unwrap();
    assert_eq!(stats.merged, 1);
    assert_eq!(raw_leaf(&rig, BASE) >> 63, 1);
    let t = rig.mmu.translate(va(BASE + 0x3000), Access::WRITE).unwrap();
    assert_eq!(
        (t.size, t.writable, t.nx),
        (<Pae>::LARGE_PAGE_SIZE, true, true)
    );
    assert_eq!(fault(&rig, BASE + 0x3000, Access::EXEC), 0b1_0001);
}

fn split_ignores_present_and_status_bits_in_a_change<M: PagingMode>() {
    // `AttrChange::flags`: A/D and P are ignored in both. Asked to clear
    // them (and R/W) on one page of a written large page, the split keeps
    // the page present with the CPU's A and D, and only R/W goes.
    let mut rig = rig::<M>(recommended::<M>());
    map_large(&mut rig, 1, ODD);
    rig.mmu.translate(va(BASE + 0x3000), Access::WRITE).unwrap();
    assert_eq!(raw_leaf(&rig, BASE) & (ACCESSED | DIRTY), ACCESSED | DIRTY);
    let pad = MapFlags::PRESENT | MapFlags::ACCESSED | MapFlags::DIRTY;
    rig.mapper
        .set_memory(
            va(BASE + 0x3000),
            PAGE_SIZE,
            AttrChange::flags(MapFlags::WRITABLE | pad, pad),
            &rig.mmu,
            &mut rig.alloc,
        )
        .unwrap();
    for page in [2u64, 3, 4] {
        let frame = PHYS + page * 0x1000;
        let rw = if page == 3 { 0 } else { 1 << 1 };
        let want = (ODD_PTE_BITS & !(1 << 1)) | rw | ACCESSED | DIRTY | frame;
        assert_eq!(
            raw_leaf(&rig, BASE + page as u32 * 0x1000),
            want,
            "page {page}"
        );
    }
    assert_eq!(fault(&rig, BASE + 0x3000, Access::WRITE), 0b11);
    assert_eq!(fault(&rig, BASE + 0x3000, Access::READ), 0);
}

#[test]
fn split_ignores_present_and_status_bits_in_a_change_pae() {
    split_ignores_present_and_status_bits_in_a_change::<Pae>();
}

#[test]
fn split_ignores_present_and_status_bits_in_a_change_two_level() {
    split_ignores_present_and_status_bits_in_a_change::<TwoLevel>();
}
