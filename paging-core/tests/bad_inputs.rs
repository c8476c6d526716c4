//! Bad inputs of the mapper that `mapper_errors.rs` does not cover, each
//! refused with a typed error while tables, frames and translations stay as
//! they were (see `docs/bad-inputs.md` for the whole matrix).
mod mapper_support;

use mapper_support::{Rig, frame, machine, pa, va};
use paging_core::{
    AccessError, ErrorKind, FreeError, FreshTables, InstallError, LargePages, MapError, MapFlags,
    Mapper, Page, PagingError, PagingMode, PgtBuf, PhysFrame, RootError, TranslateError,
    UnmapError,
};
use paging_sim::SimAccess;

fn page(x: u32) -> Page {
    Page::from_start_address(va(x)).unwrap()
}

/// A rig with a page at 0x4000_0000 and an emptied PTE table at
/// 0x8000_0000 (mapped once, then unmapped): something to free.
fn with_an_empty_table<M: PagingMode>() -> Rig<M> {
    let mut rig = machine::<M>();
    for at in [0x4000_0000, 0x8000_0000] {
        rig.mapper
            .map(
                page(at),
                frame(0x5_0000),
                MapFlags::KERNEL_RW,
                &mut rig.alloc,
            )
            .unwrap()
            .flush(&rig.mmu);
    }
    rig.mapper.unmap(va(0x8000_0000)).unwrap().1.flush(&rig.mmu);
    rig
}

fn freeing_a_bad_range_changes_nothing<M: PagingMode>() {
    let mut rig = with_an_empty_table::<M>();
    let span = M::pmd_span();
    let e = rig.assert_unchanged(|r| {
        r.mapper
            .free_empty_tables(va(0x8000_0800), span, &r.mmu, &mut r.alloc)
    });
    assert_eq!(e, Err(FreeError::Unaligned { addr: 0x8000_0800 }));
    let e = rig.assert_unchanged(|r| {
        r.mapper
            .free_empty_tables(va(0x8000_0000), span + 8, &r.mmu, &mut r.alloc)
    });
    assert_eq!(e, Err(FreeError::Unaligned { addr: span + 8 }));
    let e = rig.assert_unchanged(|r| {
        r.mapper
            .free_empty_tables(va(0x8000_0000), 1 << 32, &r.mmu, &mut r.alloc)
    });
    assert_eq!(
        e,
        Err(FreeError::VirtOutOfRange {
            start: va(0x8000_0000),
            len: 1 << 32
        })
    );
    assert_eq!(e.unwrap_err().kind(), ErrorKind::OutOfRange);
    // The same call with a good range frees the table: there was something
    // the refused calls could have changed.
    let freed = rig
        .mapper
        .free_empty_tables(va(0x8000_0000), span, &rig.mmu, &mut rig.alloc)
        .unwrap();
    assert_eq!(freed.pte_tables, 1);
    assert_eq!(rig.hw(va(0x4000_0000)), Ok(pa(0x5_0000)));
}

fn re_flagging_inside_a_large_page_changes_nothing<M: PagingMode>() {
    let mut rig = machine::<M>();
    let size = M::LARGE_PAGE_SIZE.bytes();
    let base = 0x8000_0000u32;
    rig.mapper
        .map_large(va(base), pa(size), MapFlags::KERNEL_RW, &mut rig.alloc)
        .unwrap()
        .flush(&rig.mmu);
    let inside = va(base + 0x3000);
    let e = rig.assert_unchanged(|r| r.mapper.update_flags(inside, MapFlags::KERNEL_RO));
    assert_eq!(
        e,
        Err(UnmapError::InLargePage {
            va: inside,
            base: va(base),
            size: M::LARGE_PAGE_SIZE
        })
    );
    assert_eq!(e.unwrap_err().kind(), ErrorKind::SizeConflict);
    assert_eq!(rig.hw(inside), Ok(pa(size + 0x3000)));
}

fn unknown_flag_bits_change_nothing<M: PagingMode>() {
    let mut rig = with_an_empty_table::<M>();
    let unknown = MapFlags::from_bits_retain(1 << 14);
    let flags = MapFlags::KERNEL_RW | unknown;
    let e = rig.assert_unchanged(|r| {
        r.mapper
            .map(page(0x4000_1000), frame(0x6_0000), flags, &mut r.alloc)
    });
    assert_eq!(e, Err(MapError::Unsupported(unknown)));
    let e = rig.assert_unchanged(|r| {
        r.mapper
            .map_large(va(0xC000_0000), pa(0), flags, &mut r.alloc)
    });
    assert_eq!(e, Err(MapError::Unsupported(unknown)));
    let e = rig.assert_unchanged(|r| {
        r.mapper.map_range(
            va(0xC000_0000),
            pa(0),
            0x3000,
            flags,
            LargePages::Avoid,
            &mut r.alloc,
        )
    });
    assert_eq!(e.unwrap_err().kind(), ErrorKind::Unsupported);
    let e = rig.assert_unchanged(|r| r.mapper.update_flags(va(0x4000_0000), flags));
    assert_eq!(e.unwrap_err().kind(), ErrorKind::Unsupported);
    assert_eq!(rig.hw(va(0x4000_0000)), Ok(pa(0x5_0000)));
}

fn unreachable_tables_change_nothing<M: PagingMode>() {
    let mut rig = with_an_empty_table::<M>();
    // The same hierarchy through an access that reaches only the PGD's
    // frame: every other table (allocated after it) is out of reach.
    let root = rig.mapper.root();
    let limit = PhysFrame::containing_address(root).start_address().as_u64() + 4096;
    let ram = rig.ram;
    let mut short = Mapper::<M, _>::new_isolated(
        root,
        SimAccess::below(ram, limit),
        paging_core::CpuFeatures::full::<M>(),
    )
    .unwrap();
    let unreachable = |e: &dyn PagingError| e.kind() == ErrorKind::Unreachable;

    let e = rig.assert_unchanged(|r| {
        short.map(
            page(0x4000_1000),
            frame(0x6_0000),
            MapFlags::KERNEL_RW,
            &mut r.alloc,
        )
    });
    assert!(
        matches!(e, Err(MapError::Access(AccessError::Unreachable(_)))),
        "{e:?}"
    );
    // A new table is allocated, cannot be reached to be filled, and goes
    // back to the allocator.
    let e = rig.assert_unchanged(|r| {
        short.map(
            page(0x1000_0000),
            frame(0x6_0000),
            MapFlags::KERNEL_RW,
            &mut r.alloc,
        )
    });
    assert!(unreachable(&e.unwrap_err()));
    let e = rig.assert_unchanged(|_| short.unmap(va(0x4000_0000)));
    assert!(matches!(e, Err(UnmapError::Access(_))), "{e:?}");
    let e = rig.assert_unchanged(|_| short.update_flags(va(0x4000_0000), MapFlags::KERNEL_RO));
    assert!(unreachable(&e.unwrap_err()));
    let e = rig.assert_unchanged(|r| {
        short.free_empty_tables(va(0x8000_0000), M::pmd_span(), &r.mmu, &mut r.alloc)
    });
    assert!(matches!(e, Err(FreeError::Access(_))), "{e:?}");
    assert!(matches!(
        short.translate(va(0x4000_0000)),
        Err(TranslateError::Access(AccessError::Unreachable(_)))
    ));
    // A new hierarchy whose PGD cannot be zeroed: the frame is given back.
    let e = rig.assert_unchanged(|r| {
        Mapper::<M, _>::create_isolated(
            SimAccess::below(ram, 0),
            paging_core::CpuFeatures::full::<M>(),
            &mut r.alloc,
        )
    });
    assert!(
        matches!(e, Err(RootError::Access(_))),
        "{:?}",
        e.map(|m| m.root())
    );
    assert_eq!(rig.hw(va(0x4000_0000)), Ok(pa(0x5_0000)));
}

fn an_exhausted_boot_buffer_gets_every_frame_back<M: PagingMode>() {
    let mut rig = machine::<M>();
    // Two frames of early page-table buffer; a range over three large-page
    // blocks of 4 KiB pages needs three PTE tables (and a PMD table in PAE).
    let first = rig.alloc_contiguous(2);
    // SAFETY: frames of simulated RAM that nothing else uses.
    let mut buf = unsafe { PgtBuf::new(first, 2) };
    let len = 3 * M::pmd_span();
    // The buffer's free frames may hold scratch data; the tables may not
    // change.
    let tables = |r: &Rig<M>| {
        let mut s = r.snapshot();
        s.retain(|&pfn, _| pfn < first.number() || pfn >= first.number() + 2);
        s
    };
    let before = tables(&rig);
    let e = rig.mapper.map_range(
        va(0x4000_0000),
        pa(0x100_0000),
        len,
        MapFlags::KERNEL_RW,
        LargePages::Avoid,
        &mut buf,
    );
    assert!(tables(&rig) == before, "tables changed");
    assert_eq!(e, Err(MapError::OutOfFrames));
    assert_eq!(e.unwrap_err().kind(), ErrorKind::OutOfMemory);
    // A bump allocator only takes back its latest frame: every frame came
    // back, so the mapper returned them newest first.
    assert_eq!(buf.remaining(), 2);
    rig.mapper
        .map(
            page(0xC000_0000),
            frame(0x5_0000),
            MapFlags::KERNEL_RW,
            &mut buf,
        )
        .unwrap()
        .flush(&rig.mmu);
    assert_eq!(buf.remaining(), u64::from(M::PMD_FOLDED));
    assert_eq!(rig.hw(va(0xC000_0000)), Ok(pa(0x5_0000)));
}

fn installing_over_a_non_empty_entry_changes_nothing<M: PagingMode>() {
    let mut rig = machine::<M>();
    // A page at 0x4000_0000 gives its block's PGD entry (and in PAE its PMD
    // table); the next block's PMD entry then holds a swap-like value.
    rig.mapper
        .map(
            page(0x4000_0000),
            frame(0x5_0000),
            MapFlags::KERNEL_RW,
            &mut rig.alloc,
        )
        .unwrap()
        .flush(&rig.mmu);
    let next = va(0x4000_0000 + M::pmd_span() as u32);
    let slot = rig.mapper.walk(next).unwrap().pmd.unwrap().0;
    let at = slot.table.start_address().as_u64() + (slot.index * M::ENTRY_BYTES) as u64;
    let swap = 0x1234_5000u32;
    rig.ram.write_u32(pa(at), swap).unwrap();
    let first = rig.alloc_contiguous(1);
    let e = rig.assert_unchanged(|r| {
        r.mapper.install_pte_tables_isolated(
            next,
            first,
            1,
            FreshTables::Zero,
            &r.mmu,
            &mut r.alloc,
        )
    });
    assert!(
        matches!(e, Err(InstallError::NotEmpty { raw, .. }) if raw == u64::from(swap)),
        "{e:?}"
    );
    assert_eq!(e.unwrap_err().kind(), ErrorKind::AlreadyMapped);
    assert_eq!(rig.hw(va(0x4000_0000)), Ok(pa(0x5_0000)));
}

paging_sim::for_each_mode!(
    an_exhausted_boot_buffer_gets_every_frame_back,
    installing_over_a_non_empty_entry_changes_nothing,
    freeing_a_bad_range_changes_nothing,
    re_flagging_inside_a_large_page_changes_nothing,
    unknown_flag_bits_change_nothing,
    unreachable_tables_change_nothing,
);
