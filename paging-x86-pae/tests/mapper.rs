//! The generic `paging_core::Mapper` driving PAE tables in host memory:
//! what lands in the tables, what translates, and the CR3 reload a new PDPT
//! entry needs.

mod common;

use common::{HostRam, TestAlloc, TlbLog};
use paging_core::{
    Entry, LargePages, Level, MapError, MapFlags, Mapper, OffsetAccess, Page, PageSize, PagingMode,
    PhysAddr, PhysFrame, RootError, TranslateError, UnmapError, VirtAddr,
};
use paging_x86_pae::{Pae, Pdpte};

const FRAMES: usize = 64;

fn va(x: u32) -> VirtAddr {
    VirtAddr::new(x)
}

fn pa(x: u64) -> PhysAddr {
    PhysAddr::new(x).unwrap()
}

fn page(x: u32) -> Page {
    Page::from_start_address(va(x)).unwrap()
}

fn frame(x: u64) -> PhysFrame {
    PhysFrame::from_start_address(pa(x)).unwrap()
}

fn setup<const B: u32>(ram: &HostRam) -> (Mapper<Pae<B>, OffsetAccess>, TestAlloc) {
    let mut alloc = TestAlloc::new(1, FRAMES as u64);
    // SAFETY: the tables live in a host buffer no CPU walks.
    let mapper = unsafe {
        Mapper::<Pae<B>, _>::create(
            ram.access(),
            paging_core::CpuFeatures::full::<Pae<B>>(),
            &mut alloc,
        )
    }
    .unwrap();
    assert_eq!(mapper.root(), pa(0x1000));
    (mapper, alloc)
}

/// The raw PDPTE for `va` in the PDPT at 0x1000.
fn pdpte(ram: &HostRam, va: u32) -> u64 {
    ram.read64(0x1000 + (va >> 30) as u64 * 8)
}

#[test]
fn geometry_is_4_by_512_by_512() {
    type M = Pae;
    assert_eq!(M::pgd_index(va(0xC000_0000)), 3);
    assert_eq!(M::pgd_index(va(0x3FFF_FFFF)), 0);
    assert_eq!(M::pmd_index(va(0xC020_0000)), 1);
    assert_eq!(M::pmd_index(va(0xFFFF_FFFF)), 511);
    assert_eq!(M::pte_index(va(0xC010_3000)), 0x103);
    assert_eq!(M::pte_index(va(0xC020_3000)), 3);
    assert_eq!(M::pmd_span(), 2 << 20);
    assert_eq!(M::pgd_span(), 1 << 30);
    const { assert!(!M::PMD_FOLDED && M::PGD_LATCHED && M::SUPPORTS_NX) };
    assert_eq!(M::MAX_PHYS_BITS, 36);
}

#[test]
fn the_first_map_under_an_empty_pdpt_slot_needs_a_cr3_reload() {
    let ram = HostRam::new(FRAMES);
    let (mut mapper, mut alloc) = setup::<36>(&ram);

    let flush = mapper
        .map(
            page(0xC010_3000),
            frame(0x1_2345_6000),
            MapFlags::KERNEL_RW,
            &mut alloc,
        )
        .unwrap();
    assert!(
        flush.needs_cr3_reload(),
        "the CPU only sees a new PDPTE after a CR3 load"
    );
    flush.ignore();
    assert_eq!(alloc.in_use, 3, "PDPT, page directory, page table");

    // Page directory = frame 2, PTE table = frame 3.
    let e = pdpte(&ram, 0xC000_0000);
    assert_eq!(e, 0x2000 | 1, "a PDPTE holds P and the address only");
    assert_eq!(Pdpte::from_raw(e).reserved_bits(36), 0);
    assert_eq!(ram.read64(0x2000), 0x3000 | 0x23);
    assert_eq!(ram.read64(0x3000 + 0x103 * 8), 0x1_2345_6003);

    let walk = mapper.walk(va(0xC010_3000)).unwrap();
    assert_eq!((walk.pgd.0.table, walk.pgd.0.index), (frame(0x1000), 3));
    let (pmd_slot, pmd) = walk.pmd.unwrap();
    assert_eq!((pmd_slot.table, pmd_slot.index), (frame(0x2000), 0));
    assert_eq!(pmd.raw(), 0x3023);
    let (pte_slot, pte) = walk.pte.unwrap();
    assert_eq!((pte_slot.table, pte_slot.index), (frame(0x3000), 0x103));
    assert_eq!(pte.addr(), pa(0x1_2345_6000));

    let t = mapper.translate(va(0xC010_3ABC)).unwrap();
    assert_eq!(t.phys_addr(), pa(0x1_2345_6ABC));
    assert_eq!((t.size, t.flags), (PageSize::Size4KiB, MapFlags::KERNEL_RW));

    // Same GiB: the PDPTE is already there, nothing to reload.
    let flush = mapper
        .map(
            page(0xC060_0000),
            frame(0x5000),
            MapFlags::KERNEL_RO,
            &mut alloc,
        )
        .unwrap();
    assert!(!flush.needs_cr3_reload());
    assert_eq!(flush.pages(), None);
    assert_eq!(alloc.in_use, 4, "one more PTE table, same page directory");
    // Another GiB: another PDPTE, another reload.
    let flush = mapper
        .map(
            page(0x4000_0000),
            frame(0x6000),
            MapFlags::KERNEL_RO,
            &mut alloc,
        )
        .unwrap();
    assert!(flush.needs_cr3_reload());
    flush.ignore();
    assert_ne!(pdpte(&ram, 0x4000_0000), 0);
    assert_eq!(pdpte(&ram, 0), 0);
    assert_eq!(pdpte(&ram, 0x8000_0000), 0);
    assert_eq!(
        mapper.translate(va(0x8000_0000)),
        Err(TranslateError::NotMapped { level: Level::Pgd })
    );

    let (unmapped, flush) = mapper.unmap(va(0xC010_3000)).unwrap();
    assert_eq!(
        (unmapped.base, unmapped.size),
        (pa(0x1_2345_6000), PageSize::Size4KiB)
    );
    assert_eq!(flush.pages(), Some((va(0xC010_3000), 1)));
    flush.ignore();
    assert_eq!(ram.read64(0x3000 + 0x103 * 8), 0);
    assert_eq!(
        mapper.translate(va(0xC010_3000)),
        Err(TranslateError::NotMapped { level: Level::Pte })
    );
}

#[test]
fn no_execute_lands_in_bit_63() {
    let ram = HostRam::new(FRAMES);
    let (mut mapper, mut alloc) = setup::<36>(&ram);
    let flags = MapFlags::KERNEL_RW | MapFlags::NO_EXECUTE;
    mapper
        .map(page(0x1000), frame(0x7000), flags, &mut alloc)
        .unwrap()
        .ignore();
    assert_eq!(ram.read64(0x3000 + 8), 1 << 63 | 0x7003);
    assert_eq!(mapper.translate(va(0x1000)).unwrap().flags, flags);
}

#[test]
fn maps_translates_and_unmaps_a_2_mib_page_above_4_gib() {
    let ram = HostRam::new(FRAMES);
    let (mut mapper, mut alloc) = setup::<36>(&ram);
    let flags = MapFlags::KERNEL_RW | MapFlags::GLOBAL;
    let flush = mapper
        .map_large(va(0xC040_0000), pa(0x2_0000_0000), flags, &mut alloc)
        .unwrap();
    assert!(flush.needs_cr3_reload());
    flush.ignore();
    assert_eq!(alloc.in_use, 2, "PDPT and one page directory");
    assert_eq!(
        ram.read64(0x2000 + 2 * 8),
        0x2_0000_0000 | 1 << 8 | 1 << 7 | 0b11
    );

    let t = mapper.translate(va(0xC05A_BCDE)).unwrap();
    assert_eq!(t.phys_addr(), pa(0x2_001A_BCDE));
    assert_eq!((t.size, t.flags), (PageSize::Size2MiB, flags));

    assert!(matches!(
        mapper.map(
            page(0xC050_0000),
            frame(0x5000),
            MapFlags::KERNEL_RW,
            &mut alloc
        ),
        Err(MapError::InLargePage { .. })
    ));
    for (v, p) in [(0xC010_0000, 0x2_0000_0000), (0xC060_0000, 0x2_0010_0000)] {
        assert!(matches!(
            mapper.map_large(va(v), pa(p), flags, &mut alloc),
            Err(MapError::Unaligned {
                align: 0x20_0000,
                ..
            })
        ));
    }
    assert_eq!(
        mapper.unmap(va(0xC041_0000)),
        Err(UnmapError::InLargePage {
            va: va(0xC041_0000),
            base: va(0xC040_0000),
            size: PageSize::Size2MiB
        })
    );
    let (unmapped, flush) = mapper.unmap(va(0xC040_0000)).unwrap();
    flush.ignore();
    assert_eq!(
        (unmapped.base, unmapped.size),
        (pa(0x2_0000_0000), PageSize::Size2MiB)
    );
    assert_eq!(
        mapper.translate(va(0xC040_0000)),
        Err(TranslateError::NotMapped { level: Level::Pmd })
    );
}

#[test]
fn the_mode_width_limits_physical_addresses() {
    let ram = HostRam::new(FRAMES);
    let (mut narrow, mut alloc) = setup::<36>(&ram);
    narrow
        .map(
            page(0x1000),
            frame(0xF_FFFF_F000),
            MapFlags::KERNEL_RW,
            &mut alloc,
        )
        .unwrap()
        .ignore();
    let before = ram.snapshot();
    let in_use = alloc.in_use;
    let beyond = pa(0x10_0000_0000);
    assert_eq!(
        narrow.map(
            page(0x2000),
            frame(beyond.as_u64()),
            MapFlags::KERNEL_RW,
            &mut alloc
        ),
        Err(MapError::PhysOutOfRange {
            addr: beyond,
            max_bits: 36
        })
    );
    assert_eq!(
        narrow.map_large(va(0x4000_0000), beyond, MapFlags::KERNEL_RW, &mut alloc),
        Err(MapError::PhysOutOfRange {
            addr: beyond,
            max_bits: 36
        })
    );
    assert!(matches!(
        narrow.map_range(
            va(0x0040_0000),
            pa(0xF_FFFF_F000),
            0x2000,
            MapFlags::KERNEL_RW,
            LargePages::Use,
            &mut alloc
        ),
        Err(MapError::PhysOutOfRange { max_bits: 36, .. })
    ));
    assert!(
        ram.snapshot() == before,
        "a refused call wrote to the tables"
    );
    assert_eq!(alloc.in_use, in_use, "a refused call kept a frame");

    let wide_ram = HostRam::new(FRAMES);
    let (mut wide, mut alloc) = setup::<52>(&wide_ram);
    let top = frame((1 << 52) - 4096);
    wide.map(page(0x1000), top, MapFlags::KERNEL_RW, &mut alloc)
        .unwrap()
        .ignore();
    assert_eq!(
        wide.translate(va(0x1FFF)).unwrap().phys_addr(),
        pa((1 << 52) - 1)
    );
}

#[test]
fn unmap_returns_the_accessed_and_dirty_bits_the_cpu_set() {
    let ram = HostRam::new(FRAMES);
    let (mut mapper, mut alloc) = setup::<36>(&ram);
    mapper
        .map(
            page(0x5000),
            frame(0x3_0000_9000),
            MapFlags::KERNEL_RW,
            &mut alloc,
        )
        .unwrap()
        .ignore();
    let pte_pa = 0x3000 + 5 * 8;
    ram.write64(pte_pa, ram.read64(pte_pa) | 1 << 5 | 1 << 6);
    let (unmapped, flush) = mapper.unmap(va(0x5000)).unwrap();
    flush.ignore();
    assert_eq!(
        unmapped.flags,
        MapFlags::KERNEL_RW | MapFlags::ACCESSED | MapFlags::DIRTY
    );
    assert_eq!(ram.read64(pte_pa), 0);
}

#[test]
fn map_range_mixes_2_mib_and_4_kib_pages() {
    let ram = HostRam::new(FRAMES);
    let (mut mapper, mut alloc) = setup::<36>(&ram);
    // [1 MiB, 5 MiB) -> [4 GiB + 1 MiB, ...): 1 MiB small, 2 MiB large, 1 MiB small.
    let flush = mapper
        .map_range(
            va(0x0010_0000),
            pa(0x1_0010_0000),
            0x0040_0000,
            MapFlags::KERNEL_RW,
            LargePages::Use,
            &mut alloc,
        )
        .unwrap();
    assert!(flush.needs_cr3_reload());
    flush.ignore();
    assert_eq!(alloc.in_use, 4, "PDPT, page directory, two PTE tables");
    for (addr, size) in [
        (0x0010_0000, PageSize::Size4KiB),
        (0x001F_F000, PageSize::Size4KiB),
        (0x0020_0000, PageSize::Size2MiB),
        (0x003F_FFFF, PageSize::Size2MiB),
        (0x0040_0000, PageSize::Size4KiB),
        (0x004F_F123, PageSize::Size4KiB),
    ] {
        let t = mapper.translate(va(addr)).unwrap();
        assert_eq!(
            (t.phys_addr(), t.size),
            (pa(0x1_0000_0000 + addr as u64), size),
            "{addr:#x}"
        );
    }
    assert!(mapper.translate(va(0x0050_0000)).is_err());
}

#[test]
fn a_pdpt_inside_a_frame_is_indexed_from_its_own_offset() {
    let ram = HostRam::new(FRAMES);
    let mut alloc = TestAlloc::new(2, FRAMES as u64); // frame 1 holds PDPTs
    assert_eq!(
        // SAFETY: a host buffer no CPU walks.
        unsafe {
            Mapper::<Pae, _>::new(
                pa(0x1010),
                ram.access(),
                paging_core::CpuFeatures::full::<Pae>(),
            )
        }
        .err(),
        Some(RootError::Unaligned {
            addr: pa(0x1010),
            align: 32
        })
    );
    assert_eq!(
        // SAFETY: a host buffer no CPU walks.
        unsafe {
            Mapper::<Pae, _>::new(
                pa(0x1_0000_0000),
                ram.access(),
                paging_core::CpuFeatures::full::<Pae>(),
            )
        }
        .err(),
        Some(RootError::AboveCr3Limit(pa(0x1_0000_0000)))
    );
    // The fourth 32-byte PDPT in frame 1.
    let mut mapper = // SAFETY: a host buffer no CPU walks.
        unsafe { Mapper::<Pae, _>::new(pa(0x1060), ram.access(), paging_core::CpuFeatures::full::<Pae>()) }.unwrap();
    mapper
        .map(
            page(0x8000_0000),
            frame(0x9000),
            MapFlags::KERNEL_RW,
            &mut alloc,
        )
        .unwrap()
        .ignore();
    let used: Vec<u64> = (0..512)
        .filter(|i| ram.read64(0x1000 + i * 8) != 0)
        .collect();
    assert_eq!(used, [12 + 2], "PDPTE 2 of the PDPT at 0x1060");
    assert_eq!(
        mapper.translate(va(0x8000_0123)).unwrap().phys_addr(),
        pa(0x9123)
    );
}

#[test]
fn freeing_a_page_directory_reloads_cr3_before_the_frame_is_reused() {
    let ram = HostRam::new(FRAMES);
    let (mut mapper, mut alloc) = setup::<36>(&ram);
    mapper
        .map(
            page(0x4000_0000),
            frame(0xA000),
            MapFlags::KERNEL_RW,
            &mut alloc,
        )
        .unwrap()
        .ignore();
    mapper.unmap(va(0x4000_0000)).unwrap().1.ignore();
    let tlb = TlbLog::default();
    let stats = mapper
        .free_empty_tables(va(0x4000_0000), 1 << 30, &tlb, &mut alloc)
        .unwrap();
    assert_eq!((stats.pte_tables, stats.pmd_tables), (1, 1));
    assert_eq!(pdpte(&ram, 0x4000_0000), 0);
    assert_eq!(alloc.in_use, 1);
    let log = tlb.0.borrow();
    assert!(
        log.contains(&("all", 0)),
        "a PDPTE changed: CR3 must be reloaded ({log:?})"
    );
}

#[test]
fn bad_input_is_refused_and_changes_nothing() {
    let ram = HostRam::new(FRAMES);
    let (mut mapper, mut alloc) = setup::<36>(&ram);
    mapper
        .map(
            page(0x0020_0000),
            frame(0x7000),
            MapFlags::KERNEL_RW,
            &mut alloc,
        )
        .unwrap()
        .ignore();
    let before = ram.snapshot();
    let in_use = alloc.in_use;
    assert!(matches!(
        mapper.map(
            page(0x0020_0000),
            frame(0x8000),
            MapFlags::KERNEL_RW,
            &mut alloc
        ),
        Err(MapError::AlreadyMapped { .. })
    ));
    assert!(matches!(
        mapper.map_large(
            va(0x0020_0000),
            pa(0x0040_0000),
            MapFlags::KERNEL_RW,
            &mut alloc
        ),
        Err(MapError::TableInTheWay { .. })
    ));
    assert!(matches!(
        mapper.map_large(
            va(0x0030_0000),
            pa(0x0040_0000),
            MapFlags::KERNEL_RW,
            &mut alloc
        ),
        Err(MapError::Unaligned { .. })
    ));
    assert!(
        ram.snapshot() == before,
        "a refused call wrote to the tables"
    );
    assert_eq!(alloc.in_use, in_use);
}
