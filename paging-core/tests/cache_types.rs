//! Memory types: a mapping made with `MapFlags::with_cache` gets, on the
//! simulated CPU, the memory type asked for. The CPU model computes the type
//! from the leaf's PAT/PCD/PWT bits and its IA32_PAT on its own (from the
//! SDM), so these tests check the library's bits against the hardware's
//! reading of them, for 4 KiB and large pages, in both modes.
mod mapper_support;

use mapper_support::{frame, pa, va};
use paging_core::{
    CacheType, CacheTypeError, ErrorKind, MapFlags, Page, PagingError, PagingMode, PatLayout,
    VirtAddr,
};
use paging_sim::{Access, Machine, MemoryType, Mmu, PAT_POWER_ON, SimConfig, SimRam};

/// What the SDM calls each type (table 11-10), as the model names it.
fn sdm_name(t: CacheType) -> MemoryType {
    match t {
        CacheType::WriteBack => MemoryType::Wb,
        CacheType::WriteThrough => MemoryType::Wt,
        CacheType::UncachedMinus => MemoryType::UcMinus,
        CacheType::Uncached => MemoryType::Uc,
        CacheType::WriteCombining => MemoryType::Wc,
        CacheType::WriteProtected => MemoryType::Wp,
    }
}

/// A layout unlike both built-in ones, with every type in a place of its
/// own and WB not at entry 0, so that no bit can be right by accident.
const SHUFFLED: PatLayout = PatLayout::new([
    CacheType::Uncached,
    CacheType::WriteCombining,
    CacheType::WriteProtected,
    CacheType::WriteThrough,
    CacheType::UncachedMinus,
    CacheType::WriteBack,
    CacheType::Uncached,
    CacheType::WriteCombining,
]);

fn machine_with_pat<M: PagingMode>(pat: u64) -> Machine<'static, M> {
    let ram: &'static SimRam = Box::leak(Box::new(SimRam::new()));
    Machine::with_config(
        ram,
        SimConfig {
            pat,
            ..SimConfig::for_mode::<M>()
        },
    )
}

fn every_cache_type_reaches_the_cpu_for_both_page_sizes<M: PagingMode>() {
    let large = M::LARGE_PAGE_SIZE.bytes();
    for layout in [PatLayout::RECOMMENDED, SHUFFLED, PatLayout::POWER_ON] {
        let mut m = machine_with_pat::<M>(layout.to_msr());
        for (i, t) in CacheType::ALL.into_iter().enumerate() {
            let Ok(flags) = MapFlags::KERNEL_RW.with_cache(t, &layout) else {
                assert!(layout.index_of(t).is_none(), "{t} refused by {layout:?}");
                continue;
            };
            // A 4 KiB page and a large page per type, each at its own place.
            let small = VirtAddr::new(0x1000_0000 + (i as u32) * 0x1000);
            let big = VirtAddr::new(0x4000_0000 + (i as u32) * large as u32);
            m.mapper
                .map(
                    Page::from_start_address(small).unwrap(),
                    frame(0x20_0000 + (i as u64) * 0x1000),
                    flags,
                    &mut m.alloc,
                )
                .unwrap()
                .flush(&m.mmu);
            m.mapper
                .map_large(big, pa(0x4000_0000 + i as u64 * large), flags, &mut m.alloc)
                .unwrap()
                .flush(&m.mmu);
            for va in [small, big] {
                let hw = m.mmu.translate(va, Access::WRITE).unwrap();
                assert_eq!(
                    hw.memory_type,
                    sdm_name(t),
                    "{t} at {va} ({:?} page) under {layout:?}",
                    hw.size
                );
                // The mapper reads the type back from the entry.
                let tr = m.mapper.translate(va).unwrap();
                assert_eq!(tr.size, hw.size);
                assert_eq!(tr.flags.cache_type(&layout), t);
                assert!(tr.flags.contains(MapFlags::KERNEL_RW));
            }
        }
    }
}

fn changing_the_type_of_a_live_page_takes_effect_after_the_flush<M: PagingMode>() {
    let layout = PatLayout::RECOMMENDED;
    let mut m = machine_with_pat::<M>(layout.to_msr());
    let va = va(0x2000_0000);
    m.mapper
        .map(
            Page::from_start_address(va).unwrap(),
            frame(0x30_0000),
            MapFlags::KERNEL_RW,
            &mut m.alloc,
        )
        .unwrap()
        .flush(&m.mmu);
    assert_eq!(
        m.mmu.translate(va, Access::READ).unwrap().memory_type,
        MemoryType::Wb
    );
    let wc = MapFlags::KERNEL_RW
        .with_cache(CacheType::WriteCombining, &layout)
        .unwrap();
    let flush = m.mapper.update_flags(va, wc).unwrap();
    // The TLB still holds the write-back translation until the flush.
    assert_eq!(
        m.mmu.translate(va, Access::READ).unwrap().memory_type,
        MemoryType::Wb
    );
    flush.flush(&m.mmu);
    assert_eq!(
        m.mmu.translate(va, Access::READ).unwrap().memory_type,
        MemoryType::Wc
    );
}

fn a_type_the_layout_lacks_is_refused_and_changes_nothing<M: PagingMode>() {
    let mut m = machine_with_pat::<M>(PAT_POWER_ON);
    let page = Page::from_start_address(va(0x2000_0000)).unwrap();
    for t in [CacheType::WriteCombining, CacheType::WriteProtected] {
        let flags = MapFlags::KERNEL_RW | MapFlags::GLOBAL;
        let out = m.assert_unchanged(|m| {
            flags
                .with_cache(t, &PatLayout::POWER_ON)
                .map(|flags| m.mapper.map(page, frame(0x30_0000), flags, &mut m.alloc))
        });
        let err = out.unwrap_err();
        assert_eq!(
            err,
            CacheTypeError::NotInLayout {
                cache: t,
                layout: PatLayout::POWER_ON
            }
        );
        assert_eq!(err.kind(), ErrorKind::Unsupported);
        assert!(m.hw(page.start_address()).is_err(), "nothing is mapped");
    }
}

/// The model's own reading of PAT/PCD/PWT, on entries written by hand
/// (no backend, no `CacheType`): 2-level PTEs (PAT at bit 7) and 4 MiB PDEs
/// (PAT at bit 12) selecting each of the eight entries of a PAT whose
/// entries are all told apart by their encodings.
#[test]
fn the_model_selects_pat_entry_pat4_pcd2_pwt_from_raw_entries() {
    // PA0..PA7 = UC, WC, WT, WP, WB, UC-, WC, WT.
    let pat: u64 = 0x04_01_07_06_05_04_01_00;
    let ram = SimRam::new();
    let cpu = Mmu::new(
        &ram,
        SimConfig {
            pat,
            ..SimConfig::two_level()
        },
    );
    let set = |addr: u64, value: u32| ram.write_u32(pa(addr), value).unwrap();
    const PD: u64 = 0x1000;
    const PT: u64 = 0x2000;
    const P_RW: u32 = 0b11;
    set(PD, PT as u32 | P_RW);
    for index in 0..8u32 {
        let (pat_bit, pcd, pwt) = ((index >> 2) & 1, (index >> 1) & 1, index & 1);
        let cache = pcd << 4 | pwt << 3;
        set(
            PT + 4 * u64::from(index),
            0x10_0000 | P_RW | cache | pat_bit << 7,
        );
        // A 4 MiB page per index, from PDE 1 up.
        let pde = (index + 1) << 22 | P_RW | 1 << 7 | cache | pat_bit << 12;
        set(PD + 4 * u64::from(index + 1), pde);
    }
    cpu.load_cr3(PD as u32).unwrap();
    for index in 0..8u32 {
        let want = MemoryType::from_encoding((pat >> (8 * index)) as u8).unwrap();
        let small = cpu.translate(va(index << 12), Access::READ).unwrap();
        let large = cpu.translate(va((index + 1) << 22), Access::READ).unwrap();
        assert_eq!(small.memory_type, want, "PTE index {index}");
        assert_eq!(large.memory_type, want, "4 MiB PDE index {index}");
    }
}

#[test]
#[should_panic(expected = "reserved encoding")]
fn a_pat_with_a_reserved_entry_is_not_a_cpu() {
    let ram = SimRam::new();
    let _ = Mmu::new(
        &ram,
        SimConfig {
            pat: PAT_POWER_ON & !0xFF | 0x02,
            ..SimConfig::pae()
        },
    );
}

paging_sim::for_each_mode!(
    every_cache_type_reaches_the_cpu_for_both_page_sizes,
    changing_the_type_of_a_live_page_takes_effect_after_the_flush,
    a_type_the_layout_lacks_is_refused_and_changes_nothing,
);
