//! The mapper never writes a bit the bound CPU treats as reserved: on each
//! simulated CPU family (Pentium, P6, P6 with NX), every write path (`map`,
//! `map_large`, `map_range`, `update_flags`, `protect_range`) refuses a
//! request that needs a missing feature with a typed error naming it, and
//! leaves the tables byte-for-byte unchanged; flags chosen from the
//! features work on the simulated CPU; the opt-in `NxPolicy::Drop` maps
//! executable and says so.
mod mapper_support;

use mapper_support::{frame, pa, va};
use paging_core::{
    CpuFeature, CpuFeatures, ErrorKind, LargePages, MapError, MapFlags, Mapper, NxPolicy, Page,
    PageSize, PagingError, PagingMode, UnmapError,
};
use paging_sim::{Access, Machine, SimAccess, SimConfig, SimPaging, SimRam};
use paging_x86_2level::TwoLevel;
use paging_x86_pae::Pae;

fn page(x: u32) -> Page {
    Page::from_start_address(va(x)).unwrap()
}

fn leak() -> &'static SimRam {
    Box::leak(Box::new(SimRam::new()))
}

/// A machine on `config` with one present 4 KiB page at 0xC000_1000 and one
/// large page at 0x8000_0000 + large (if the CPU has large pages).
fn machine<M: PagingMode>(config: SimConfig) -> Machine<'static, M> {
    let mut m = Machine::<M>::with_config(leak(), config);
    m.mapper
        .map(
            page(0xC000_1000),
            frame(0x5_0000),
            MapFlags::KERNEL_RW,
            &mut m.alloc,
        )
        .unwrap()
        .flush(&m.mmu);
    if m.mapper.features().large_pages::<M>() {
        let size = M::LARGE_PAGE_SIZE.bytes();
        m.mapper
            .map_large(
                va(0x8000_0000 + size as u32),
                pa(size),
                MapFlags::KERNEL_RW,
                &mut m.alloc,
            )
            .unwrap()
            .flush(&m.mmu);
    }
    m
}

/// Every write path asked for `flags` on `m` fails with `feature` missing,
/// changing nothing.
fn every_path_refuses<M: PagingMode>(m: &mut Machine<'_, M>, flags: MapFlags, feature: CpuFeature) {
    let size = M::LARGE_PAGE_SIZE.bytes();
    let want = MapError::MissingFeature(feature);
    let e = m.assert_unchanged(|r| {
        r.mapper
            .map(page(0xC000_2000), frame(0x6_0000), flags, &mut r.alloc)
    });
    assert_eq!(e.unwrap_err(), want, "map");
    assert_eq!(want.kind(), ErrorKind::MissingFeature);
    // A fresh PMD (and, in PAE, PGD) slot: the error comes before any table
    // is allocated.
    let e = m.assert_unchanged(|r| {
        r.mapper
            .map(page(0x4000_0000), frame(0x6_0000), flags, &mut r.alloc)
    });
    assert_eq!(e.unwrap_err(), want, "map needing tables");
    let e = m.assert_unchanged(|r| {
        r.mapper.map_large(
            va(0x8000_0000 + 2 * size as u32),
            pa(0),
            flags,
            &mut r.alloc,
        )
    });
    assert_eq!(e.unwrap_err(), want, "map_large");
    for large in [LargePages::Use, LargePages::Avoid] {
        let e = m.assert_unchanged(|r| {
            r.mapper
                .map_range(va(0x4000_0000), pa(0), 4 * size, flags, large, &mut r.alloc)
        });
        assert_eq!(e.unwrap_err(), want, "map_range {large:?}");
    }
    let e = m.assert_unchanged(|r| r.mapper.update_flags(va(0xC000_1000), flags));
    assert_eq!(
        e.unwrap_err(),
        UnmapError::MissingFeature(feature),
        "update_flags"
    );
    let e = m.assert_unchanged(|r| {
        r.mapper
            .protect_range(va(0xC000_0000), 0x40_0000, MapFlags::empty(), flags)
    });
    assert_eq!(
        e.unwrap_err(),
        UnmapError::MissingFeature(feature),
        "protect_range"
    );
    assert!(!want.to_string().is_empty());
}

#[test]
fn p6_without_nx_refuses_no_execute_on_every_path() {
    let mut m = machine::<Pae>(SimConfig::p6(SimPaging::Pae));
    assert!(!m.mapper.features().nx);
    every_path_refuses(
        &mut m,
        MapFlags::KERNEL_RW | MapFlags::NO_EXECUTE,
        CpuFeature::NoExecute,
    );
    assert_eq!(
        MapError::MissingFeature(CpuFeature::NoExecute).to_string(),
        "the CPU has no NX (execute-disable, EFER.NXE)"
    );
}

fn pat_without_pat_is_refused_on_every_path<M: PagingMode>() {
    let config = SimConfig {
        has_pat: false,
        ..SimConfig::for_mode::<M>()
    };
    let mut m = machine::<M>(config);
    every_path_refuses(&mut m, MapFlags::KERNEL_RW | MapFlags::PAT, CpuFeature::Pat);
}

#[test]
fn pentium_refuses_the_pat_bit_on_every_path() {
    let mut m = machine::<TwoLevel>(SimConfig::pentium());
    every_path_refuses(&mut m, MapFlags::KERNEL_RW | MapFlags::PAT, CpuFeature::Pat);
}

#[test]
fn two_level_without_pse_refuses_a_large_page_and_ranges_use_small_ones() {
    let config = SimConfig {
        pse: false,
        ..SimConfig::pentium()
    };
    let mut m = machine::<TwoLevel>(config);
    let e = m.assert_unchanged(|r| {
        r.mapper.map_large(
            va(0x8000_0000),
            pa(0x40_0000),
            MapFlags::KERNEL_RW,
            &mut r.alloc,
        )
    });
    assert_eq!(
        e.unwrap_err(),
        MapError::MissingFeature(CpuFeature::LargePages)
    );
    // A range asking for large pages gets 4 KiB ones, which this CPU walks.
    m.mapper
        .map_range(
            va(0x8000_0000),
            pa(0x40_0000),
            0x80_0000,
            MapFlags::KERNEL_RW,
            LargePages::Use,
            &mut m.alloc,
        )
        .unwrap()
        .flush(&m.mmu);
    let t = m.mmu.walk_uncached(va(0x8040_1234), Access::WRITE).unwrap();
    assert_eq!((t.pa, t.size), (pa(0x80_1234), PageSize::Size4KiB));
}

#[test]
fn pae_large_pages_need_no_pse() {
    let config = SimConfig {
        pse: false,
        ..SimConfig::p6(SimPaging::Pae)
    };
    let mut m = machine::<Pae>(config);
    m.mapper
        .map_large(
            va(0x8000_0000),
            pa(0x20_0000),
            MapFlags::KERNEL_RW,
            &mut m.alloc,
        )
        .unwrap()
        .flush(&m.mmu);
    let t = m.mmu.walk_uncached(va(0x8000_0010), Access::READ).unwrap();
    assert_eq!((t.pa, t.size), (pa(0x20_0010), PageSize::Size2MiB));
}

#[test]
fn maxphyaddr_below_the_modes_width_is_the_limit() {
    // A Pentium M: PAE with NX, 32 physical address bits.
    let mut m = machine::<Pae>(SimConfig::p6_nx(SimPaging::Pae));
    assert_eq!(m.mapper.phys_bits(), 32);
    let high = 1u64 << 32;
    let want = MapError::PhysOutOfRange {
        addr: pa(high),
        max_bits: 32,
    };
    let e = m.assert_unchanged(|r| {
        r.mapper.map(
            page(0xC000_2000),
            frame(high),
            MapFlags::KERNEL_RW,
            &mut r.alloc,
        )
    });
    assert_eq!(e.unwrap_err(), want);
    let e = m.assert_unchanged(|r| {
        r.mapper
            .map_large(va(0x8000_0000), pa(high), MapFlags::KERNEL_RW, &mut r.alloc)
    });
    assert_eq!(e.unwrap_err(), want);
    let e = m.assert_unchanged(|r| {
        r.mapper.map_range(
            va(0x4000_0000),
            pa(high - 0x1000),
            0x2000,
            MapFlags::KERNEL_RW,
            LargePages::Use,
            &mut r.alloc,
        )
    });
    assert_eq!(
        e.unwrap_err(),
        MapError::PhysOutOfRange {
            addr: pa(high - 0x1000),
            max_bits: 32
        }
    );
    // A PTE table from highmem (above 4 GiB) cannot be pointed at either:
    // given back, nothing written.
    let mut m = Machine::<Pae>::with_config(leak(), SimConfig::p6_nx(SimPaging::Pae));
    m.mapper = m.mapper.with_pte_zone(paging_core::Zone::PreferHighmem);
    let e = m.assert_unchanged(|r| {
        r.mapper.map(
            page(0xC000_2000),
            frame(0x5000),
            MapFlags::KERNEL_RW,
            &mut r.alloc,
        )
    });
    assert!(
        matches!(e, Err(MapError::TableOutOfReach { max_bits: 32, .. })),
        "{e:?}"
    );
    let e = m.assert_unchanged(|r| {
        r.mapper.map_range(
            va(0xC000_0000),
            pa(0x5000),
            0x2000,
            MapFlags::KERNEL_RW,
            LargePages::Avoid,
            &mut r.alloc,
        )
    });
    assert!(
        matches!(e, Err(MapError::TableOutOfReach { max_bits: 32, .. })),
        "{e:?}"
    );
    // Consecutive PTE tables above 4 GiB (a window) are refused too.
    let e = m.assert_unchanged(|r| {
        r.mapper.install_pte_tables_isolated(
            va(0xFF80_0000),
            frame(high),
            2,
            paging_core::FreshTables::Zero,
            &r.mmu,
            &mut r.alloc,
        )
    });
    assert_eq!(
        e.unwrap_err(),
        paging_core::InstallError::PhysOutOfRange {
            first: pa(high),
            max_bits: 32
        }
    );
    // The same frame on a P6 (MAXPHYADDR 36) maps.
    let mut p6 = machine::<Pae>(SimConfig::p6(SimPaging::Pae));
    p6.mapper
        .map(
            page(0xC000_2000),
            frame(high),
            MapFlags::KERNEL_RW,
            &mut p6.alloc,
        )
        .unwrap()
        .flush(&p6.mmu);
    assert_eq!(p6.hw(va(0xC000_2008)), Ok(pa(high + 8)));
}

/// The `map_kernel` of the guides: data no-execute where the CPU can, text
/// executable, every page global where it can. On each preset, the
/// simulated CPU walks every mapping without a reserved-bit fault.
fn map_kernel<M: PagingMode>(config: SimConfig) {
    let mut m = Machine::<M>::with_config(leak(), config);
    let f = m.mapper.features();
    let data = MapFlags::KERNEL_RW | f.no_execute() | f.global();
    let text = MapFlags::KERNEL_RO | f.global();
    m.mapper
        .map_range(
            va(0xC000_0000),
            pa(0),
            0x80_0000,
            data,
            LargePages::Use,
            &mut m.alloc,
        )
        .unwrap()
        .flush(&m.mmu);
    m.mapper
        .map(page(0xD000_0000), frame(0x10_0000), text, &mut m.alloc)
        .unwrap()
        .flush(&m.mmu);
    let t = m.mmu.translate(va(0xC040_0008), Access::WRITE).unwrap();
    assert_eq!(t.pa, pa(0x40_0008));
    assert_eq!(t.nx, f.nx);
    let e = m.mmu.translate(va(0xC040_0008), Access::EXEC);
    assert_eq!(
        e.is_err(),
        f.nx,
        "data is no-execute exactly where NX is on"
    );
    assert!(m.mmu.translate(va(0xD000_0000), Access::EXEC).is_ok());
}

#[test]
fn flags_from_the_features_work_on_every_preset() {
    map_kernel::<TwoLevel>(SimConfig::pentium());
    map_kernel::<TwoLevel>(SimConfig::p6(SimPaging::TwoLevel));
    map_kernel::<Pae>(SimConfig::p6(SimPaging::Pae));
    map_kernel::<Pae>(SimConfig::p6_nx(SimPaging::Pae));
    map_kernel::<Pae>(SimConfig::pae());
}

#[test]
fn flags_from_the_mode_alone_fault_rsvd_on_a_p6() {
    // The bug the features prevent: a mapper told the CPU has NX (the
    // mode's default) writes XD, and a P6 faults RSVD on it.
    let ram = leak();
    let mut m = Machine::<Pae>::with_config(ram, SimConfig::p6(SimPaging::Pae));
    let access = SimAccess::new(ram);
    let mut wrong =
        Mapper::<Pae, _>::new_isolated(m.mapper.root(), access, CpuFeatures::full::<Pae>())
            .unwrap();
    wrong
        .map(
            page(0xC000_0000),
            frame(0x5000),
            MapFlags::KERNEL_RW | MapFlags::NO_EXECUTE,
            &mut m.alloc,
        )
        .unwrap()
        .flush(&m.mmu);
    let e = m.mmu.translate(va(0xC000_0000), Access::READ).unwrap_err();
    assert!(
        e.is_reserved(),
        "bit 63 without EFER.NXE is reserved: {e:?}"
    );
}

#[test]
fn drop_policy_maps_executable_and_says_so() {
    let ram = leak();
    // A P6 whose PAT is off as well.
    let config = SimConfig {
        has_pat: false,
        ..SimConfig::p6(SimPaging::Pae)
    };
    let m = Machine::<Pae>::with_config(ram, config);
    let features = m.mapper.features().with_nx_policy(NxPolicy::Drop);
    assert!(features.drops_nx::<Pae>());
    assert!(!m.mapper.features().drops_nx::<Pae>());
    let mut alloc = m.alloc;
    let mut mapper =
        Mapper::<Pae, _>::new_isolated(m.mapper.root(), SimAccess::new(ram), features).unwrap();
    let rw_nx = MapFlags::KERNEL_RW | MapFlags::NO_EXECUTE;
    mapper
        .map(page(0xC000_0000), frame(0x5000), rw_nx, &mut alloc)
        .unwrap()
        .flush(&m.mmu);
    mapper
        .map_large(va(0x8000_0000), pa(0x20_0000), rw_nx, &mut alloc)
        .unwrap()
        .flush(&m.mmu);
    mapper
        .update_flags(va(0xC000_0000), MapFlags::KERNEL_RO | MapFlags::NO_EXECUTE)
        .unwrap()
        .flush(&m.mmu);
    for at in [0xC000_0000, 0x8000_0000] {
        let t = m.mmu.translate(va(at), Access::EXEC).unwrap();
        assert!(!t.nx, "XD dropped: the page is executable");
        assert!(
            !mapper
                .translate(va(at))
                .unwrap()
                .flags
                .contains(MapFlags::NO_EXECUTE)
        );
    }
    // The PAT bit is still refused: only XD has a drop policy.
    let e = mapper.map(
        page(0xC000_3000),
        frame(0x6000),
        MapFlags::KERNEL_RW | MapFlags::PAT,
        &mut alloc,
    );
    assert_eq!(e.unwrap_err(), MapError::MissingFeature(CpuFeature::Pat));
}

#[test]
fn global_without_pge_is_written_and_harmless() {
    let mut m = Machine::<TwoLevel>::with_config(leak(), SimConfig::pentium());
    assert!(!m.mapper.features().pge);
    m.mapper
        .map(
            page(0xC000_0000),
            frame(0x5000),
            MapFlags::KERNEL_RW | MapFlags::GLOBAL,
            &mut m.alloc,
        )
        .unwrap()
        .flush(&m.mmu);
    let t = m.mmu.translate(va(0xC000_0000), Access::WRITE).unwrap();
    assert_eq!(t.pa, pa(0x5000));
    assert!(!t.global, "G is ignored without CR4.PGE");
}

#[test]
fn presets_report_their_features() {
    let pentium = SimConfig::pentium().features();
    assert!(pentium.pse && !pentium.pge && !pentium.pat && !pentium.nx && !pentium.pse36);
    assert_eq!(pentium.max_phys_bits, 32);
    let p6 = SimConfig::p6(SimPaging::Pae).features();
    assert!(p6.pse && p6.pge && p6.pat && p6.pse36 && !p6.nx);
    assert_eq!(p6.max_phys_bits, 36);
    let p6_nx = SimConfig::p6_nx(SimPaging::Pae).features();
    assert!(p6_nx.nx && p6_nx.pat);
    assert_eq!(p6_nx.max_phys_bits, 32);
    // 2-level has no XD: NXE is normalised away.
    assert!(!SimConfig::p6_nx(SimPaging::TwoLevel).features().nx);
    // What full::<M>() describes is the default simulated CPU.
    let full = CpuFeatures::full::<Pae>();
    let pae = SimConfig::pae().features();
    assert_eq!(
        (pae.nx, pae.pat, pae.pge, pae.max_phys_bits),
        (full.nx, full.pat, full.pge, full.max_phys_bits)
    );
}

#[test]
fn feature_errors_convert_and_display() {
    for feature in [
        CpuFeature::NoExecute,
        CpuFeature::Pat,
        CpuFeature::LargePages,
        CpuFeature::GlobalPages,
        CpuFeature::Pse36,
    ] {
        let any: paging_core::AnyError = MapError::MissingFeature(feature).into();
        assert_eq!(any.kind(), ErrorKind::MissingFeature);
        assert!(any.to_string().contains(&feature.to_string()));
        let entry = paging_core::EntryError::MissingFeature(feature);
        assert_eq!(entry.kind(), ErrorKind::MissingFeature);
        assert!(!entry.to_string().is_empty());
        assert_eq!(
            UnmapError::MissingFeature(feature).kind(),
            ErrorKind::MissingFeature
        );
        assert!(CpuFeatures::full::<Pae>().has(feature));
        assert!(!CpuFeatures::full::<Pae>().without(feature).has(feature));
    }
    assert!(!ErrorKind::MissingFeature.to_string().is_empty());
}

#[test]
fn leaf_flags_rule() {
    let nx = MapFlags::PRESENT | MapFlags::NO_EXECUTE;
    let p6 = CpuFeatures::full::<Pae>().without(CpuFeature::NoExecute);
    assert_eq!(
        p6.leaf_flags::<Pae>(nx, PageSize::Size4KiB),
        Err(CpuFeature::NoExecute)
    );
    // 2-level has no XD: the mode refuses it (Unsupported), not the CPU.
    assert_eq!(
        CpuFeatures::baseline().leaf_flags::<TwoLevel>(nx, PageSize::Size4KiB),
        Ok(nx)
    );
    let mut two = Machine::<TwoLevel>::with_config(leak(), SimConfig::pentium());
    let e = two
        .mapper
        .map(page(0xC000_0000), frame(0x5000), nx, &mut two.alloc);
    assert_eq!(e.unwrap_err(), MapError::Unsupported(MapFlags::NO_EXECUTE));
    assert_eq!(CpuFeatures::baseline().global(), MapFlags::empty());
    assert_eq!(
        CpuFeatures::full::<TwoLevel>().no_execute(),
        MapFlags::empty()
    );
    assert_eq!(CpuFeatures::baseline().phys_bits::<Pae<52>>(), 32);
}

paging_sim::for_each_mode!(pat_without_pat_is_refused_on_every_path);
