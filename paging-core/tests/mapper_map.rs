//! Map, translate, unmap, large pages, ranges and table freeing, each seen
//! through the simulated MMU (what the hardware does), not the mapper's own
//! reader.
mod mapper_support;

use mapper_support::{frame, machine, pa, va};
use paging_core::{LargePages, MapFlags, Page, PageSize, PagingMode, TlbOps};
use paging_sim::Access;

fn page(x: u32) -> Page {
    Page::from_start_address(va(x)).unwrap()
}

fn map_translate_unmap<M: PagingMode>() {
    let mut rig = machine::<M>();
    let live = rig.alloc.live();
    let flush = rig
        .mapper
        .map(
            page(0xC012_3000),
            frame(0x7_5000),
            MapFlags::KERNEL_RW,
            &mut rig.alloc,
        )
        .unwrap();
    flush.flush(&rig.mmu);
    // One PTE table (2-level), or a PMD and a PTE table (PAE).
    let tables = if M::PMD_FOLDED { 1 } else { 2 };
    assert_eq!(rig.alloc.live(), live + tables);
    assert_eq!(rig.hw(va(0xC012_3ABC)), Ok(pa(0x7_5ABC)));
    // Writes work (and set Dirty), user access does not.
    rig.mmu.write_u32(va(0xC012_3000), 0xfeed_f00d).unwrap();
    assert_eq!(rig.ram.read_u32(pa(0x7_5000)).unwrap(), 0xfeed_f00d);
    let user = rig
        .mmu
        .translate(va(0xC012_3000), Access::USER_READ)
        .unwrap_err();
    assert!(user.is_protection() && user.is_user());
    // Neighbours are not mapped.
    assert_eq!(rig.hw(va(0xC012_4000)).unwrap_err() & 1, 0);

    let (unmapped, flush) = rig.mapper.unmap(va(0xC012_3000)).unwrap();
    assert_eq!(unmapped.base, pa(0x7_5000));
    assert_eq!(unmapped.size, PageSize::Size4KiB);
    assert!(
        unmapped
            .flags
            .contains(MapFlags::ACCESSED | MapFlags::DIRTY)
    );
    flush.flush(&rig.mmu);
    assert_eq!(rig.hw(va(0xC012_3000)), Err(0), "not-present read fault");
}

fn missing_flush_leaves_a_stale_translation<M: PagingMode>() {
    let mut rig = machine::<M>();
    rig.mapper
        .map(
            page(0x4000_0000),
            frame(0x8000),
            MapFlags::KERNEL_RW,
            &mut rig.alloc,
        )
        .unwrap()
        .flush(&rig.mmu);
    assert_eq!(rig.hw(va(0x4000_0010)), Ok(pa(0x8010)));
    let (_, token) = rig.mapper.unmap(va(0x4000_0000)).unwrap();
    // The tables say "not mapped", the TLB still says 0x8000.
    assert!(rig.hw_uncached(va(0x4000_0000)).is_err());
    assert_eq!(rig.hw(va(0x4000_0010)), Ok(pa(0x8010)), "stale TLB entry");
    token.flush(&rig.mmu);
    assert!(rig.hw(va(0x4000_0010)).is_err());

    // The same for a flag change: read-only in the tables, writable in the TLB.
    rig.mapper
        .map(
            page(0x4000_0000),
            frame(0x9000),
            MapFlags::KERNEL_RW,
            &mut rig.alloc,
        )
        .unwrap()
        .flush(&rig.mmu);
    rig.mmu.write_u32(va(0x4000_0000), 1).unwrap();
    let token = rig
        .mapper
        .update_flags(va(0x4000_0000), MapFlags::KERNEL_RO)
        .unwrap();
    rig.mmu.write_u32(va(0x4000_0000), 2).unwrap();
    token.flush(&rig.mmu);
    let fault = rig.mmu.write_u32(va(0x4000_0000), 3).unwrap_err();
    assert!(fault.is_protection() && fault.is_write());
    assert_eq!(rig.ram.read_u32(pa(0x9000)).unwrap(), 2);
}

fn large_pages<M: PagingMode>() {
    let mut rig = machine::<M>();
    let size = M::LARGE_PAGE_SIZE.bytes();
    let base = 0xC000_0000u32 + 2 * size as u32;
    let live = rig.alloc.live();
    rig.mapper
        .map_large(
            va(base),
            pa(8 * size),
            MapFlags::KERNEL_RW | MapFlags::GLOBAL,
            &mut rig.alloc,
        )
        .unwrap()
        .flush(&rig.mmu);
    // No PTE table; a PMD table in PAE.
    assert_eq!(rig.alloc.live(), live + usize::from(!M::PMD_FOLDED));
    let t = rig
        .mmu
        .translate(va(base + size as u32 - 4), Access::WRITE)
        .unwrap();
    assert_eq!(t.pa, pa(9 * size - 4));
    assert_eq!(t.size, M::LARGE_PAGE_SIZE);
    assert!(t.global);
    let seen = rig.mapper.translate(va(base + 0x1234)).unwrap();
    assert_eq!(
        (seen.size, seen.phys_addr()),
        (M::LARGE_PAGE_SIZE, pa(8 * size + 0x1234))
    );

    let (gone, flush) = rig.mapper.unmap(va(base)).unwrap();
    assert_eq!((gone.base, gone.size), (pa(8 * size), M::LARGE_PAGE_SIZE));
    flush.flush(&rig.mmu);
    assert!(
        rig.hw(va(base + size as u32 - 4)).is_err(),
        "invlpg at the base drops the whole page"
    );
}

fn range_mapping_uses_large_pages_where_aligned<M: PagingMode>() {
    let mut rig = machine::<M>();
    let size = M::LARGE_PAGE_SIZE.bytes();
    // 4 KiB head, three large pages, 4 KiB tail.
    let start = 0x8000_0000u32 + size as u32 - 0x3000;
    let len = 0x3000 + 3 * size + 0x5000;
    let phys = 0x4000_0000 + size - 0x3000;
    let live = rig.alloc.live();
    rig.mapper
        .map_range(
            va(start),
            pa(phys),
            len,
            MapFlags::KERNEL_RW,
            LargePages::Use,
            &mut rig.alloc,
        )
        .unwrap()
        .flush(&rig.mmu);
    // Two PTE tables (head and tail), plus one PMD table in PAE.
    assert_eq!(rig.alloc.live(), live + 2 + usize::from(!M::PMD_FOLDED));
    for off in (0..len).step_by(0x1_1000) {
        let t = rig
            .mmu
            .translate(va(start + off as u32), Access::READ)
            .unwrap();
        assert_eq!(t.pa, pa(phys + off), "offset {off:#x}");
        let large = off >= 0x3000 && off < 0x3000 + 3 * size;
        assert_eq!(t.size == M::LARGE_PAGE_SIZE, large, "offset {off:#x}");
    }
    assert!(rig.hw(va(start - 0x1000)).is_err());
    assert!(rig.hw(va(start + len as u32)).is_err());

    // Without large pages: the same translations, all 4 KiB.
    let mut rig2 = machine::<M>();
    rig2.mapper
        .map_range(
            va(start),
            pa(phys),
            len,
            MapFlags::KERNEL_RW,
            LargePages::Avoid,
            &mut rig2.alloc,
        )
        .unwrap()
        .flush(&rig2.mmu);
    for off in (0..len).step_by(0x1_1000) {
        let t = rig2
            .mmu
            .translate(va(start + off as u32), Access::READ)
            .unwrap();
        assert_eq!((t.pa, t.size), (pa(phys + off), PageSize::Size4KiB));
    }
}

fn a_one_gib_range_of_small_pages<M: PagingMode>() {
    let mut rig = machine::<M>();
    let live = rig.alloc.live();
    rig.mapper
        .map_range(
            va(0x4000_0000),
            pa(0x1_0000_0000 >> u32::from(M::PMD_FOLDED)),
            1 << 30,
            MapFlags::KERNEL_RW,
            LargePages::Avoid,
            &mut rig.alloc,
        )
        .unwrap()
        .flush(&rig.mmu);
    let pte_tables = (1usize << 30) / (M::PTRS_PER_PTE * 4096);
    assert_eq!(
        rig.alloc.live(),
        live + pte_tables + usize::from(!M::PMD_FOLDED)
    );
    let phys = 0x1_0000_0000u64 >> u32::from(M::PMD_FOLDED);
    for off in (0u64..1 << 30).step_by(0x3f_f000) {
        assert_eq!(rig.hw(va(0x4000_0000 + off as u32)), Ok(pa(phys + off)));
    }
}

fn user_mappings_open_their_tables<M: PagingMode>() {
    let mut rig = machine::<M>();
    // A kernel page first: its table entry is supervisor-only.
    rig.mapper
        .map(
            page(0x0040_0000),
            frame(0x10_0000),
            MapFlags::KERNEL_RW,
            &mut rig.alloc,
        )
        .unwrap()
        .flush(&rig.mmu);
    assert!(
        rig.mmu
            .translate(va(0x0040_0000), Access::USER_READ)
            .is_err()
    );
    // A user page in the same table opens the table entry to ring 3 ...
    rig.mapper
        .map(
            page(0x0040_1000),
            frame(0x10_1000),
            MapFlags::KERNEL_RW | MapFlags::USER,
            &mut rig.alloc,
        )
        .unwrap()
        .flush(&rig.mmu);
    assert_eq!(
        rig.mmu
            .translate(va(0x0040_1008), Access::USER_WRITE)
            .map(|t| t.pa),
        Ok(pa(0x10_1008))
    );
    // ... without exposing the kernel page next to it.
    let f = rig
        .mmu
        .translate(va(0x0040_0000), Access::USER_READ)
        .unwrap_err();
    assert!(f.is_protection() && f.is_user());
}

fn empty_tables_are_freed_after_the_flush<M: PagingMode>() {
    let mut rig = machine::<M>();
    let live = rig.alloc.live();
    let size = M::LARGE_PAGE_SIZE.bytes() as u32;
    for i in 0..3 {
        rig.mapper
            .map(
                page(0x1000_0000 + i * size),
                frame(0x20_0000 + u64::from(i) * 0x1000),
                MapFlags::KERNEL_RW,
                &mut rig.alloc,
            )
            .unwrap()
            .flush(&rig.mmu);
        rig.mmu.read_u32(va(0x1000_0000 + i * size)).unwrap();
    }
    let (_, f0) = rig.mapper.unmap(va(0x1000_0000)).unwrap();
    let (_, f1) = rig.mapper.unmap(va(0x1000_0000 + size)).unwrap();
    f0.and(f1).flush(&rig.mmu);
    // Only the two emptied tables go; the third still maps a page.
    let stats = rig
        .mapper
        .free_empty_tables(
            va(0x1000_0000),
            3 * u64::from(size),
            &rig.mmu,
            &mut rig.alloc,
        )
        .unwrap();
    assert_eq!((stats.pte_tables, stats.pmd_tables), (2, 0));
    assert_eq!(rig.alloc.live(), live + 1 + usize::from(!M::PMD_FOLDED));
    assert_eq!(rig.hw(va(0x1000_0000 + 2 * size)), Ok(pa(0x20_2000)));
    // No cached PDE still points at a freed table.
    let freed: Vec<_> = rig.mmu.tlb_snapshot().pde_entries();
    assert!(freed.iter().all(|(_, e)| rig.alloc.is_live(e.table)));

    // Empty the last one: in PAE the PMD table goes too (a PDPT change).
    let (_, f) = rig.mapper.unmap(va(0x1000_0000 + 2 * size)).unwrap();
    f.flush(&rig.mmu);
    let before = rig.mmu.tlb_stats().cr3_loads;
    let stats = rig
        .mapper
        .free_empty_tables(va(0), 1 << 32, &rig.mmu, &mut rig.alloc)
        .unwrap();
    assert_eq!(
        (stats.pte_tables, stats.pmd_tables),
        (1, usize::from(!M::PMD_FOLDED))
    );
    assert_eq!(rig.alloc.live(), live);
    assert_eq!(
        rig.mmu.tlb_stats().cr3_loads - before,
        u64::from(!M::PMD_FOLDED)
    );
}

fn flags_round_trip_through_the_hardware<M: PagingMode>() {
    let mut rig = machine::<M>();
    let mut flags =
        MapFlags::KERNEL_RO | MapFlags::USER | MapFlags::GLOBAL | MapFlags::CACHE_DISABLE;
    if M::SUPPORTS_NX {
        flags |= MapFlags::NO_EXECUTE;
    }
    rig.mapper
        .map(page(0x0800_0000), frame(0x3000), flags, &mut rig.alloc)
        .unwrap()
        .flush(&rig.mmu);
    let t = rig
        .mmu
        .translate(va(0x0800_0000), Access::USER_READ)
        .unwrap();
    assert!(!t.writable && t.user && t.global);
    assert_eq!(t.nx, M::SUPPORTS_NX);
    if M::SUPPORTS_NX {
        assert!(
            rig.mmu
                .translate(va(0x0800_0000), Access::EXEC)
                .unwrap_err()
                .is_fetch()
        );
    }
    let seen = rig.mapper.translate(va(0x0800_0000)).unwrap().flags;
    assert!(seen.contains(flags | MapFlags::ACCESSED));
}

fn batches_flush_once<M: PagingMode>() {
    let mut rig = machine::<M>();
    for i in 0..4u32 {
        rig.mapper
            .map(
                page(0x0100_0000 + i * 0x1000),
                frame(0x5_0000 + u64::from(i) * 0x1000),
                MapFlags::KERNEL_RW,
                &mut rig.alloc,
            )
            .unwrap()
            .flush(&rig.mmu);
        rig.mmu.read_u32(va(0x0100_0000 + i * 0x1000)).unwrap();
    }
    let before = rig.mmu.tlb_stats();
    let mut batch = paging_core::FlushBatch::new();
    for i in 0..4u32 {
        let (_, f) = rig.mapper.unmap(va(0x0100_0000 + i * 0x1000)).unwrap();
        batch.add(f);
        assert!(rig.hw(va(0x0100_0000 + i * 0x1000)).is_ok(), "still cached");
    }
    batch.flush(&rig.mmu);
    let after = rig.mmu.tlb_stats();
    assert_eq!(after.invlpg - before.invlpg, 4);
    for i in 0..4u32 {
        assert!(rig.hw(va(0x0100_0000 + i * 0x1000)).is_err());
    }
    rig.mmu.flush_everything();
}

paging_sim::for_each_mode!(
    map_translate_unmap,
    missing_flush_leaves_a_stale_translation,
    large_pages,
    range_mapping_uses_large_pages_where_aligned,
    a_one_gib_range_of_small_pages,
    user_mappings_open_their_tables,
    empty_tables_are_freed_after_the_flush,
    flags_round_trip_through_the_hardware,
    batches_flush_once,
);

fn a_range_takes_exactly_the_frames_it_needs<M: PagingMode>() {
    let mut rig = machine::<M>();
    let span = M::pmd_span();
    // Three PTE tables, and in PAE one new PMD table for the empty GiB.
    let needed = 3 + usize::from(!M::PMD_FOLDED);
    rig.alloc.fail_after(needed);
    let live = rig.alloc.live();
    rig.mapper
        .map_range(
            va(0x4000_0000),
            pa(0x100_0000),
            3 * span,
            MapFlags::KERNEL_RW,
            LargePages::Avoid,
            &mut rig.alloc,
        )
        .unwrap()
        .flush(&rig.mmu);
    assert_eq!(rig.alloc.live(), live + needed);
    assert_eq!(
        rig.alloc.allocated_total() as usize,
        needed + 1,
        "no frame taken and given back"
    );
    assert_eq!(
        rig.hw(va(0x4000_0000 + 2 * span as u32)),
        Ok(pa(0x100_0000 + 2 * span))
    );
}

paging_sim::for_each_mode!(a_range_takes_exactly_the_frames_it_needs);

fn unmap_range_reaches_each_table_once<M: PagingMode>() {
    let mut rig = machine::<M>();
    let size = M::LARGE_PAGE_SIZE.bytes();
    let base = 0x4000_0000u32;
    // Small pages, a hole, a large page, more small pages.
    rig.mapper
        .map_range(
            va(base),
            pa(0x100_0000),
            0x5000,
            MapFlags::KERNEL_RW,
            LargePages::Avoid,
            &mut rig.alloc,
        )
        .unwrap()
        .flush(&rig.mmu);
    rig.mapper
        .map_large(
            va(base + size as u32),
            pa(4 * size),
            MapFlags::KERNEL_RW,
            &mut rig.alloc,
        )
        .unwrap()
        .flush(&rig.mmu);
    rig.mapper
        .map_range(
            va(base + 2 * size as u32),
            pa(0x200_0000),
            0x3000,
            MapFlags::KERNEL_RW,
            LargePages::Avoid,
            &mut rig.alloc,
        )
        .unwrap()
        .flush(&rig.mmu);
    for off in [0u32, 0x4000, size as u32 + 0x1234, 2 * size as u32 + 0x2000] {
        assert!(rig.hw(va(base + off)).is_ok());
    }
    // Cutting the large page is refused, and nothing changes.
    let e = rig.assert_unchanged(|r| {
        r.mapper
            .unmap_range(va(base + size as u32 + 0x1000), 0x1000)
    });
    assert_eq!(
        paging_core::PagingError::kind(&e.unwrap_err()),
        paging_core::ErrorKind::SizeConflict
    );
    let e = rig.assert_unchanged(|r| r.mapper.unmap_range(va(0xFFFF_F000), 0x2000));
    assert!(matches!(
        e,
        Err(paging_core::UnmapError::VirtOutOfRange { .. })
    ));
    let (stats, flush) = rig.mapper.unmap_range(va(base), 3 * size).unwrap();
    assert_eq!((stats.pages, stats.large_pages), (8, 1));
    flush.flush(&rig.mmu);
    for off in [0u32, 0x4000, size as u32 + 0x1234, 2 * size as u32 + 0x2000] {
        assert!(rig.hw(va(base + off)).is_err(), "offset {off:#x}");
    }
    // An empty range unmaps nothing and needs no flush.
    let (stats, flush) = rig.mapper.unmap_range(va(base), 3 * size).unwrap();
    assert_eq!(stats, paging_core::UnmapStats::default());
    assert_eq!(flush, paging_core::Flush::none());
}

fn teardown_gives_every_table_back<M: PagingMode>() {
    let ram = paging_sim::SimRam::new();
    let mut m = paging_sim::Machine::<M>::new(&ram);
    let before = m.alloc.live();
    let mut space = paging_core::Mapper::<M, _>::create_isolated(
        paging_sim::SimAccess::new(&ram),
        paging_core::CpuFeatures::full::<M>(),
        &mut m.alloc,
    )
    .unwrap();
    space
        .map_range(
            va(0x0800_0000),
            pa(0x100_0000),
            64 << 20,
            MapFlags::KERNEL_RW | MapFlags::USER,
            LargePages::Avoid,
            &mut m.alloc,
        )
        .unwrap()
        .ignore();
    space
        .map_large(va(0x8000_0000), pa(0), MapFlags::KERNEL_RW, &mut m.alloc)
        .unwrap()
        .ignore();
    assert!(m.alloc.live() > before + 16);
    let stats = space
        .teardown(va(0xC000_0000), &m.mmu, &mut m.alloc)
        .unwrap();
    assert!(stats.pte_tables >= 16);
    assert_eq!(m.alloc.live(), before, "every table and the PGD are back");
    assert_eq!(m.alloc.double_frees(), 0);
}

paging_sim::for_each_mode!(
    unmap_range_reaches_each_table_once,
    teardown_gives_every_table_back
);
