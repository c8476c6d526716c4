//! The generic `paging_core::Mapper` driving 2-level tables in host memory:
//! what lands in the tables, what translates, and the folded PMD.

mod common;

use common::{HostRam, TestAlloc, TlbLog};
use paging_core::{
    Entry, LargePages, Level, MapError, MapFlags, Mapper, OffsetAccess, Page, PageSize, PagingMode,
    PhysAddr, PhysFrame, RootError, TranslateError, UnmapError, VirtAddr,
};
use paging_x86_2level::TwoLevel;

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

fn setup(ram: &HostRam) -> (Mapper<TwoLevel, OffsetAccess>, TestAlloc) {
    let mut alloc = TestAlloc::new(1, FRAMES as u64);
    // SAFETY: the tables live in a host buffer no CPU walks.
    let mapper = unsafe {
        Mapper::<TwoLevel, _>::create(
            ram.access(),
            paging_core::CpuFeatures::full::<TwoLevel>(),
            &mut alloc,
        )
    }
    .unwrap();
    assert_eq!(mapper.root(), pa(0x1000));
    (mapper, alloc)
}

/// The raw PDE for `va` in the directory at 0x1000.
fn pde(ram: &HostRam, va: u32) -> u32 {
    ram.read32(0x1000 + (va >> 22) as u64 * 4)
}

#[test]
fn geometry_is_1024_by_1024_with_a_one_entry_pmd() {
    assert_eq!(TwoLevel::pgd_index(va(0xC040_0000)), 0x301);
    assert_eq!(TwoLevel::pgd_index(va(0xFFFF_FFFF)), 1023);
    for x in [0, 0x0040_0000, 0xC000_0000, 0xFFFF_F000] {
        assert_eq!(TwoLevel::pmd_index(va(x)), 0);
    }
    assert_eq!(TwoLevel::pte_index(va(0xC010_3000)), 0x103);
    assert_eq!(TwoLevel::pmd_span(), 4 << 20);
    assert_eq!(TwoLevel::pgd_span(), TwoLevel::pmd_span());
    const { assert!(TwoLevel::PMD_FOLDED && !TwoLevel::PGD_LATCHED && !TwoLevel::SUPPORTS_NX) };
}

#[test]
fn maps_translates_and_unmaps_a_page_through_the_folded_pmd() {
    let ram = HostRam::new(FRAMES);
    let (mut mapper, mut alloc) = setup(&ram);

    let flush = mapper
        .map(
            page(0xC010_3000),
            frame(0x0ABC_D000),
            MapFlags::KERNEL_RW,
            &mut alloc,
        )
        .unwrap();
    // Only non-present entries were filled: nothing to invalidate.
    assert_eq!(flush.pages(), None);
    assert!(!flush.needs_cr3_reload());
    assert_eq!(alloc.in_use, 2, "the PGD and one PTE table");

    // The PDE sits in the directory at index va >> 22 and points at the new
    // PTE table (frame 2) as a kernel table entry.
    assert_eq!(pde(&ram, 0xC000_0000), 0x2000 | 0x23);
    assert_eq!(ram.read32(0x2000 + 0x103 * 4), 0x0ABC_D003);

    let walk = mapper.walk(va(0xC010_3000)).unwrap();
    let (pmd_slot, pmd) = walk.pmd.unwrap();
    assert_eq!(pmd_slot, walk.pgd.0, "the PMD slot is the PGD slot");
    assert_eq!(pmd_slot.index, 0x300);
    assert_eq!(pmd.raw(), walk.pgd.1.raw());
    let (pte_slot, pte) = walk.pte.unwrap();
    assert_eq!((pte_slot.table, pte_slot.index), (frame(0x2000), 0x103));
    assert_eq!(pte.raw(), 0x0ABC_D003);

    let t = mapper.translate(va(0xC010_3ABC)).unwrap();
    assert_eq!(t.phys_addr(), pa(0x0ABC_DABC));
    assert_eq!(t.size, PageSize::Size4KiB);
    assert_eq!(t.flags, MapFlags::KERNEL_RW);

    // Same 4 MiB: same PTE table. Next 4 MiB: a new one, in the next PDE.
    mapper
        .map(
            page(0xC03F_F000),
            frame(0x5000),
            MapFlags::KERNEL_RO,
            &mut alloc,
        )
        .unwrap()
        .ignore();
    assert_eq!(alloc.in_use, 2);
    mapper
        .map(
            page(0xC040_0000),
            frame(0x6000),
            MapFlags::KERNEL_RO,
            &mut alloc,
        )
        .unwrap()
        .ignore();
    assert_eq!(alloc.in_use, 3);
    assert_eq!(pde(&ram, 0xC040_0000), 0x3000 | 0x23);
    let used: Vec<u64> = (0..1024)
        .filter(|i| ram.read32(0x1000 + i * 4) != 0)
        .collect();
    assert_eq!(used, [0x300, 0x301], "no PMD table was ever allocated");

    let (unmapped, flush) = mapper.unmap(va(0xC010_3000)).unwrap();
    assert_eq!(unmapped.base, pa(0x0ABC_D000));
    assert_eq!(unmapped.size, PageSize::Size4KiB);
    assert_eq!(flush.pages(), Some((va(0xC010_3000), 1)));
    flush.ignore();
    assert_eq!(ram.read32(0x2000 + 0x103 * 4), 0);
    assert_eq!(
        mapper.translate(va(0xC010_3000)),
        Err(TranslateError::NotMapped { level: Level::Pte })
    );
    assert_eq!(
        mapper.unmap(va(0xC010_3000)),
        Err(UnmapError::NotMapped {
            va: va(0xC010_3000),
            level: Level::Pte
        })
    );
    assert_eq!(
        mapper.translate(va(0x0000_0000)),
        Err(TranslateError::NotMapped { level: Level::Pmd })
    );
}

#[test]
fn maps_translates_and_unmaps_a_4_mib_page() {
    let ram = HostRam::new(FRAMES);
    let (mut mapper, mut alloc) = setup(&ram);
    let flags = MapFlags::KERNEL_RW | MapFlags::GLOBAL;

    mapper
        .map_large(va(0xC080_0000), pa(0x0100_0000), flags, &mut alloc)
        .unwrap()
        .ignore();
    assert_eq!(alloc.in_use, 1, "a large page needs no table");
    assert_eq!(pde(&ram, 0xC080_0000), 0x0100_0000 | 1 << 8 | 1 << 7 | 0b11);

    let t = mapper.translate(va(0xC09A_BCDE)).unwrap();
    assert_eq!(t.phys_addr(), pa(0x011A_BCDE));
    assert_eq!(t.size, PageSize::Size4MiB);
    assert_eq!(t.flags, flags);

    assert!(matches!(
        mapper.map(
            page(0xC090_0000),
            frame(0x5000),
            MapFlags::KERNEL_RW,
            &mut alloc
        ),
        Err(MapError::InLargePage { .. })
    ));
    assert!(matches!(
        mapper.map_large(va(0xC080_0000), pa(0x0200_0000), flags, &mut alloc),
        Err(MapError::AlreadyMapped { .. })
    ));
    assert_eq!(
        mapper.unmap(va(0xC080_1000)),
        Err(UnmapError::InLargePage {
            va: va(0xC080_1000),
            base: va(0xC080_0000),
            size: PageSize::Size4MiB
        })
    );
    for (v, p) in [(0xC020_0000, 0x0100_0000), (0xC080_0000, 0x0120_0000)] {
        assert!(matches!(
            mapper.map_large(va(v), pa(p), flags, &mut alloc),
            Err(MapError::Unaligned {
                align: 0x40_0000,
                ..
            })
        ));
    }

    let (unmapped, flush) = mapper.unmap(va(0xC080_0000)).unwrap();
    flush.ignore();
    assert_eq!(unmapped.base, pa(0x0100_0000));
    assert_eq!(unmapped.size, PageSize::Size4MiB);
    assert_eq!(pde(&ram, 0xC080_0000), 0);
    assert_eq!(
        mapper.translate(va(0xC080_0000)),
        Err(TranslateError::NotMapped { level: Level::Pmd })
    );
}

#[test]
fn bad_input_is_refused_and_changes_nothing() {
    let ram = HostRam::new(FRAMES);
    let (mut mapper, mut alloc) = setup(&ram);
    mapper
        .map(
            page(0x0040_0000),
            frame(0x7000),
            MapFlags::KERNEL_RW,
            &mut alloc,
        )
        .unwrap()
        .ignore();
    let before = ram.snapshot();
    let in_use = alloc.in_use;

    let nx = MapFlags::KERNEL_RW | MapFlags::NO_EXECUTE;
    for target in [0x0040_1000, 0x0080_0000] {
        assert_eq!(
            mapper.map(page(target), frame(0x8000), nx, &mut alloc),
            Err(MapError::Unsupported(MapFlags::NO_EXECUTE))
        );
    }
    assert_eq!(
        mapper.map_large(va(0x00C0_0000), pa(0x00C0_0000), nx, &mut alloc),
        Err(MapError::Unsupported(MapFlags::NO_EXECUTE))
    );
    let high = pa(0x1_0000_0000);
    let out_of_range = Err(MapError::PhysOutOfRange {
        addr: high,
        max_bits: 32,
    });
    assert_eq!(
        mapper.map(
            page(0x0080_0000),
            frame(high.as_u64()),
            MapFlags::KERNEL_RW,
            &mut alloc
        ),
        out_of_range
    );
    assert_eq!(
        mapper.map_large(va(0x00C0_0000), high, MapFlags::KERNEL_RW, &mut alloc),
        out_of_range
    );
    assert!(matches!(
        mapper.map_range(
            va(0x0100_0000),
            pa(0xFFFF_F000),
            0x2000,
            MapFlags::KERNEL_RW,
            LargePages::Use,
            &mut alloc
        ),
        Err(MapError::PhysOutOfRange { max_bits: 32, .. })
    ));

    assert!(
        ram.snapshot() == before,
        "a refused call wrote to the tables"
    );
    assert_eq!(alloc.in_use, in_use, "a refused call kept a frame");
}

#[test]
fn unmap_returns_the_accessed_and_dirty_bits_the_cpu_set() {
    let ram = HostRam::new(FRAMES);
    let (mut mapper, mut alloc) = setup(&ram);
    mapper
        .map(
            page(0x0000_5000),
            frame(0x9000),
            MapFlags::KERNEL_RW,
            &mut alloc,
        )
        .unwrap()
        .ignore();
    // Play the MMU: a write through the mapping sets A and D.
    let pte_pa = 0x2000 + 5 * 4;
    ram.write32(pte_pa, ram.read32(pte_pa) | 1 << 5 | 1 << 6);
    let (unmapped, flush) = mapper.unmap(va(0x5000)).unwrap();
    flush.ignore();
    assert_eq!(
        unmapped.flags,
        MapFlags::KERNEL_RW | MapFlags::ACCESSED | MapFlags::DIRTY
    );
}

#[test]
fn map_range_mixes_4_mib_and_4_kib_pages() {
    let ram = HostRam::new(FRAMES);
    let (mut mapper, mut alloc) = setup(&ram);
    // [3 MiB, 9 MiB): 1 MiB of small pages, one 4 MiB page, 1 MiB small.
    mapper
        .map_range(
            va(0x0030_0000),
            pa(0x0030_0000),
            0x0060_0000,
            MapFlags::KERNEL_RW,
            LargePages::Use,
            &mut alloc,
        )
        .unwrap()
        .ignore();
    assert_eq!(alloc.in_use, 3, "the PGD and two PTE tables");
    for (addr, size) in [
        (0x0030_0000, PageSize::Size4KiB),
        (0x003F_F123, PageSize::Size4KiB),
        (0x0040_0000, PageSize::Size4MiB),
        (0x007F_FFFF, PageSize::Size4MiB),
        (0x0080_0000, PageSize::Size4KiB),
        (0x008F_F000, PageSize::Size4KiB),
    ] {
        let t = mapper.translate(va(addr)).unwrap();
        assert_eq!(
            (t.phys_addr(), t.size),
            (pa(addr as u64), size),
            "{addr:#x}"
        );
    }
    assert_eq!(pde(&ram, 0x0040_0000), 0x0040_0000 | 0x83);
    assert!(mapper.translate(va(0x0090_0000)).is_err());
    assert!(mapper.translate(va(0x002F_F000)).is_err());
}

#[test]
fn update_flags_opens_the_table_entry_and_free_releases_empty_tables() {
    let ram = HostRam::new(FRAMES);
    let (mut mapper, mut alloc) = setup(&ram);
    mapper
        .map(
            page(0x0804_8000),
            frame(0xA000),
            MapFlags::KERNEL_RO,
            &mut alloc,
        )
        .unwrap()
        .ignore();
    assert_eq!(pde(&ram, 0x0804_8000) & 0b111, 0b011, "kernel table entry");

    let user = MapFlags::PRESENT | MapFlags::USER;
    let flush = mapper.update_flags(va(0x0804_8000), user).unwrap();
    assert_eq!(flush.pages(), Some((va(0x0804_8000), 1)));
    flush.ignore();
    assert_eq!(pde(&ram, 0x0804_8000) & 0b111, 0b111, "user table entry");
    assert_eq!(mapper.translate(va(0x0804_8000)).unwrap().flags, user);

    mapper.unmap(va(0x0804_8000)).unwrap().1.ignore();
    let tlb = TlbLog::default();
    let stats = mapper
        .free_empty_tables(va(0x0800_0000), 4 << 20, &tlb, &mut alloc)
        .unwrap();
    assert_eq!((stats.pte_tables, stats.pmd_tables), (1, 0));
    assert_eq!(pde(&ram, 0x0800_0000), 0);
    assert_eq!(alloc.in_use, 1);
    assert_eq!(*tlb.0.borrow(), [("page", 0x0800_0000)]);
}

#[test]
fn an_existing_directory_must_be_page_aligned() {
    let ram = HostRam::new(4);
    assert_eq!(
        // SAFETY: a host buffer no CPU walks.
        unsafe {
            Mapper::<TwoLevel, _>::new(
                pa(0x1020),
                ram.access(),
                paging_core::CpuFeatures::full::<TwoLevel>(),
            )
        }
        .err(),
        Some(RootError::Unaligned {
            addr: pa(0x1020),
            align: 4096
        })
    );
    assert!(
        // SAFETY: a host buffer no CPU walks.
        unsafe {
            Mapper::<TwoLevel, _>::new(
                pa(0x1000),
                ram.access(),
                paging_core::CpuFeatures::full::<TwoLevel>(),
            )
        }
        .is_ok()
    );
}
