//! Every error path of the mapper: a typed error, tables byte-for-byte
//! unchanged, no frame leaked or double-freed, and the hardware sees the
//! same translations as before.
mod mapper_support;

use mapper_support::{Rig, frame, machine, pa, unreachable_frame, va};
use paging_core::{
    Entry, ErrorKind, LargePages, Level, MapError, MapFlags, Page, PagingError, PagingMode,
    PhysFrame, RootError, TranslateError, UnmapError,
};

fn page(x: u32) -> Page {
    Page::from_start_address(va(x)).unwrap()
}

/// A rig with a 4 KiB page at 0xC000_1000, a large page at the second large
/// slot above 0x8000_0000, and TLB entries for both.
fn populated<M: PagingMode>() -> Rig<M> {
    let mut rig = machine::<M>();
    let size = M::LARGE_PAGE_SIZE.bytes();
    rig.mapper
        .map(
            page(0xC000_1000),
            frame(0x5_0000),
            MapFlags::KERNEL_RW,
            &mut rig.alloc,
        )
        .unwrap()
        .flush(&rig.mmu);
    rig.mapper
        .map_large(
            va(0x8000_0000 + size as u32),
            pa(size),
            MapFlags::KERNEL_RW,
            &mut rig.alloc,
        )
        .unwrap()
        .flush(&rig.mmu);
    assert!(rig.hw(va(0xC000_1000)).is_ok());
    rig
}

fn large<M: PagingMode>() -> u32 {
    M::LARGE_PAGE_SIZE.bytes() as u32
}

fn unaligned_addresses<M: PagingMode>() {
    let mut rig = populated::<M>();
    let size = large::<M>();
    let e = rig.assert_unchanged(|r| {
        r.mapper
            .map_large(va(0x4000_1000), pa(0), MapFlags::KERNEL_RW, &mut r.alloc)
    });
    assert_eq!(e.unwrap_err().kind(), ErrorKind::Unaligned);
    let e = rig.assert_unchanged(|r| {
        r.mapper.map_large(
            va(0x4000_0000),
            pa(u64::from(size) / 2),
            MapFlags::KERNEL_RW,
            &mut r.alloc,
        )
    });
    assert_eq!(
        e.unwrap_err(),
        MapError::Unaligned {
            addr: u64::from(size) / 2,
            align: u64::from(size)
        }
    );
    for (v, p, len) in [
        (0x4000_0800, 0x1000, 0x1000),
        (0x4000_0000, 0x1008, 0x1000),
        (0x4000_0000, 0x1000, 0x1001),
    ] {
        let e = rig.assert_unchanged(|r| {
            r.mapper.map_range(
                va(v),
                pa(p),
                len,
                MapFlags::KERNEL_RW,
                LargePages::Use,
                &mut r.alloc,
            )
        });
        assert_eq!(e.unwrap_err().kind(), ErrorKind::Unaligned);
    }
    // `map` takes a VirtAddr as the other operations do; one inside a page
    // is refused, not rounded down to the page around it.
    let e = rig.assert_unchanged(|r| {
        r.mapper.map(
            va(0xC000_2004),
            frame(0x6_0000),
            MapFlags::KERNEL_RW,
            &mut r.alloc,
        )
    });
    assert_eq!(
        e.unwrap_err(),
        MapError::Unaligned {
            addr: 0xC000_2004,
            align: 0x1000
        }
    );
    rig.mapper
        .map(
            va(0xC000_2000),
            frame(0x6_0000),
            MapFlags::KERNEL_RW,
            &mut rig.alloc,
        )
        .unwrap()
        .flush(&rig.mmu);
    assert_eq!(rig.hw(va(0xC000_2004)), Ok(pa(0x6_0004)));
    let e = rig.assert_unchanged(|r| r.mapper.unmap(va(0xC000_1004)));
    assert_eq!(
        e.unwrap_err(),
        UnmapError::Unaligned {
            addr: va(0xC000_1004)
        }
    );
    let e = rig.assert_unchanged(|r| r.mapper.update_flags(va(0xC000_1004), MapFlags::KERNEL_RO));
    assert_eq!(e.unwrap_err().kind(), ErrorKind::Unaligned);
}

fn physical_addresses_beyond_the_mode<M: PagingMode>() {
    let mut rig = populated::<M>();
    let beyond = unreachable_frame::<M>();
    let e = rig.assert_unchanged(|r| {
        r.mapper.map(
            page(0x4000_0000),
            frame(beyond),
            MapFlags::KERNEL_RW,
            &mut r.alloc,
        )
    });
    assert_eq!(
        e.unwrap_err(),
        MapError::PhysOutOfRange {
            addr: pa(beyond),
            max_bits: M::MAX_PHYS_BITS
        }
    );
    // A range whose *end* crosses the limit fails as a whole.
    let e = rig.assert_unchanged(|r| {
        r.mapper.map_range(
            va(0x4000_0000),
            pa(beyond - 0x2000),
            0x4000,
            MapFlags::KERNEL_RW,
            LargePages::Avoid,
            &mut r.alloc,
        )
    });
    assert_eq!(e.unwrap_err().kind(), ErrorKind::OutOfRange);
    let e = rig.assert_unchanged(|r| {
        r.mapper.map_large(
            va(0x4000_0000),
            pa(beyond),
            MapFlags::KERNEL_RW,
            &mut r.alloc,
        )
    });
    assert_eq!(e.unwrap_err().kind(), ErrorKind::OutOfRange);
}

fn ranges_past_four_gib<M: PagingMode>() {
    let mut rig = populated::<M>();
    let e = rig.assert_unchanged(|r| {
        r.mapper.map_range(
            va(0xFFFF_F000),
            pa(0x1000),
            0x2000,
            MapFlags::KERNEL_RW,
            LargePages::Avoid,
            &mut r.alloc,
        )
    });
    assert_eq!(
        e.unwrap_err(),
        MapError::VirtOutOfRange {
            start: va(0xFFFF_F000),
            len: 0x2000
        }
    );
}

fn no_execute<M: PagingMode>() {
    let mut rig = populated::<M>();
    let nx = MapFlags::KERNEL_RW | MapFlags::NO_EXECUTE;
    if M::SUPPORTS_NX {
        // PAE expresses it (the positive side is in mapper_map.rs).
        rig.mapper
            .map(page(0x4000_0000), frame(0x1000), nx, &mut rig.alloc)
            .unwrap()
            .flush(&rig.mmu);
        rig.mapper
            .update_flags(va(0xC000_1000), nx)
            .unwrap()
            .flush(&rig.mmu);
        return;
    }
    let e = rig.assert_unchanged(|r| {
        r.mapper
            .map(page(0x4000_0000), frame(0x1000), nx, &mut r.alloc)
    });
    assert_eq!(e.unwrap_err(), MapError::Unsupported(MapFlags::NO_EXECUTE));
    let e = rig.assert_unchanged(|r| r.mapper.update_flags(va(0xC000_1000), nx));
    assert_eq!(e.unwrap_err().kind(), ErrorKind::Unsupported);
    let e = rig.assert_unchanged(|r| r.mapper.map_large(va(0x4000_0000), pa(0), nx, &mut r.alloc));
    assert_eq!(e.unwrap_err().kind(), ErrorKind::Unsupported);
    let e = rig.assert_unchanged(|r| {
        r.mapper.map_range(
            va(0x4000_0000),
            pa(0),
            0x2000,
            nx,
            LargePages::Use,
            &mut r.alloc,
        )
    });
    assert_eq!(e.unwrap_err().kind(), ErrorKind::Unsupported);
}

fn never_overwrite<M: PagingMode>() {
    let mut rig = populated::<M>();
    let size = large::<M>();
    // Over a present 4 KiB page: the error carries what is there.
    let e = rig.assert_unchanged(|r| {
        r.mapper.map(
            page(0xC000_1000),
            frame(0x9000),
            MapFlags::KERNEL_RW,
            &mut r.alloc,
        )
    });
    match e.unwrap_err() {
        MapError::AlreadyMapped { va: v, existing } => {
            assert_eq!((v, existing.base), (va(0xC000_1000), pa(0x5_0000)));
        }
        other => panic!("{other:?}"),
    }
    // Inside a large page.
    let e = rig.assert_unchanged(|r| {
        r.mapper.map(
            page(0x8000_0000 + size + 0x3000),
            frame(0x9000),
            MapFlags::KERNEL_RW,
            &mut r.alloc,
        )
    });
    assert!(
        matches!(e.unwrap_err(), MapError::InLargePage { existing, .. } if existing.base == pa(u64::from(size)))
    );
    // A large page over a large page, and over an installed PTE table.
    let e = rig.assert_unchanged(|r| {
        r.mapper.map_large(
            va(0x8000_0000 + size),
            pa(0),
            MapFlags::KERNEL_RW,
            &mut r.alloc,
        )
    });
    assert_eq!(e.unwrap_err().kind(), ErrorKind::AlreadyMapped);
    let e = rig.assert_unchanged(|r| {
        r.mapper
            .map_large(va(0xC000_0000), pa(0), MapFlags::KERNEL_RW, &mut r.alloc)
    });
    assert_eq!(
        e.unwrap_err(),
        MapError::TableInTheWay {
            va: va(0xC000_0000)
        }
    );
    // A range whose last page is taken writes nothing, not even its first pages.
    let e = rig.assert_unchanged(|r| {
        r.mapper.map_range(
            va(0xBFFF_0000),
            pa(0x100_0000),
            0x12000,
            MapFlags::KERNEL_RW,
            LargePages::Avoid,
            &mut r.alloc,
        )
    });
    assert_eq!(e.unwrap_err().kind(), ErrorKind::AlreadyMapped);
    assert!(rig.hw_uncached(va(0xBFFF_0000)).is_err());
    // A range running into a large page.
    let e = rig.assert_unchanged(|r| {
        r.mapper.map_range(
            va(0x8000_0000 + size - 0x1000),
            pa(0),
            0x2000,
            MapFlags::KERNEL_RW,
            LargePages::Use,
            &mut r.alloc,
        )
    });
    assert_eq!(e.unwrap_err().kind(), ErrorKind::SizeConflict);
}

fn not_empty_entries_are_not_free<M: PagingMode>() {
    let mut rig = populated::<M>();
    // A non-present PTE holding data (a swap entry, say) next to the page.
    let walk = rig.mapper.walk(va(0xC000_1000)).unwrap();
    let (slot, _) = walk.pte.unwrap();
    let swap = 0x1234_5000u64 & !1;
    rig.ram
        .write_u32(
            pa(slot.table.start_address().as_u64() + ((slot.index + 1) * M::ENTRY_BYTES) as u64),
            swap as u32,
        )
        .unwrap();
    let e = rig.assert_unchanged(|r| {
        r.mapper.map(
            page(0xC000_2000),
            frame(0x9000),
            MapFlags::KERNEL_RW,
            &mut r.alloc,
        )
    });
    assert_eq!(
        e.unwrap_err(),
        MapError::NotEmpty {
            va: va(0xC000_2000),
            raw: swap,
            level: Level::Pte
        }
    );
}

fn unmapping_what_is_not_mapped<M: PagingMode>() {
    let mut rig = populated::<M>();
    let size = large::<M>();
    let e = rig.assert_unchanged(|r| r.mapper.unmap(va(0xC000_2000)));
    assert_eq!(
        e.unwrap_err(),
        UnmapError::NotMapped {
            va: va(0xC000_2000),
            level: Level::Pte
        }
    );
    let e = rig.assert_unchanged(|r| r.mapper.unmap(va(0x1000_0000)));
    assert_eq!(e.unwrap_err().kind(), ErrorKind::NotMapped);
    let e = rig.assert_unchanged(|r| r.mapper.update_flags(va(0x1000_0000), MapFlags::KERNEL_RO));
    assert_eq!(e.unwrap_err().kind(), ErrorKind::NotMapped);
    // Inside a large page but not at its base.
    let e = rig.assert_unchanged(|r| r.mapper.unmap(va(0x8000_0000 + size + 0x1000)));
    assert_eq!(
        e.unwrap_err(),
        UnmapError::InLargePage {
            va: va(0x8000_0000 + size + 0x1000),
            base: va(0x8000_0000 + size),
            size: M::LARGE_PAGE_SIZE
        }
    );
    assert_eq!(
        rig.mapper.translate(va(0x1000_0000)).unwrap_err().kind(),
        ErrorKind::NotMapped
    );
    assert!(matches!(
        rig.mapper.translate(va(0xC000_2000)),
        Err(TranslateError::NotMapped { level: Level::Pte })
    ));
}

fn allocator_failures_give_every_frame_back<M: PagingMode>() {
    let mut rig = populated::<M>();
    // A page needing a PTE table (and a PMD table in PAE): fail each step.
    let needed = if M::PMD_FOLDED { 1 } else { 2 };
    for ok in 0..needed {
        rig.alloc.fail_after(ok);
        let e = rig.assert_unchanged(|r| {
            r.mapper.map(
                page(0x4000_0000),
                frame(0x1000),
                MapFlags::KERNEL_RW,
                &mut r.alloc,
            )
        });
        assert_eq!(e.unwrap_err(), MapError::OutOfFrames);
    }
    // A range needing many tables: fail at the last one.
    let tables = 5 + usize::from(!M::PMD_FOLDED);
    let len = 5 * u64::from(large::<M>());
    rig.alloc.fail_after(tables - 1);
    let e = rig.assert_unchanged(|r| {
        r.mapper.map_range(
            va(0x4000_0000),
            pa(0x100_0000),
            len,
            MapFlags::KERNEL_RW,
            LargePages::Avoid,
            &mut r.alloc,
        )
    });
    assert_eq!(e.unwrap_err(), MapError::OutOfFrames);
    rig.alloc.never_fail();
    // With memory, the same calls succeed (so the failures were the allocator's).
    rig.mapper
        .map_range(
            va(0x4000_0000),
            pa(0x100_0000),
            len,
            MapFlags::KERNEL_RW,
            LargePages::Avoid,
            &mut rig.alloc,
        )
        .unwrap()
        .flush(&rig.mmu);
    assert_eq!(
        rig.hw(va(0x4000_0000 + 0x12_3000)),
        Ok(pa(0x100_0000 + 0x12_3000))
    );
    // A fresh hierarchy with no frame at all.
    rig.alloc.fail_after(0);
    let e = paging_core::Mapper::<M, _>::create_isolated(
        paging_sim::SimAccess::new(rig.ram),
        paging_core::CpuFeatures::full::<M>(),
        &mut rig.alloc,
    );
    assert_eq!(e.unwrap_err(), RootError::OutOfFrames);
}

/// A `map_range` that runs out of frames gives back the frames it had
/// reserved with their link words (the reservation list threaded through
/// their first 8 bytes) cleared and every other byte as handed out: no
/// frame number of the mapper's is left in memory the allocator owns again.
fn a_failed_range_gives_frames_back_without_link_words<M: PagingMode>() {
    let mut rig = populated::<M>();
    let tables = 5 + usize::from(!M::PMD_FOLDED);
    let script: Vec<PhysFrame> = (0..tables as u64)
        .map(|i| frame(0x3000_0000 + i * 0x1000))
        .collect();
    const PATTERN: u8 = 0xA5;
    for &f in &script {
        rig.ram.fill_frame(f, PATTERN);
    }
    let mut alloc = paging_sim::ScriptedAllocator::new(script.iter().copied());
    alloc.set_budget(Some(tables - 1));
    let e = rig.assert_unchanged(|r| {
        r.mapper.map_range(
            va(0x4000_0000),
            pa(0x100_0000),
            5 * u64::from(large::<M>()),
            MapFlags::KERNEL_RW,
            LargePages::Avoid,
            &mut alloc,
        )
    });
    assert_eq!(e.unwrap_err(), MapError::OutOfFrames);
    assert_eq!((alloc.live(), alloc.double_frees()), (0, 0));
    let pattern = u64::from_ne_bytes([PATTERN; 8]);
    for &f in &script[..tables - 1] {
        let words = rig.ram.frame_words(f);
        assert_eq!(words[0], 0, "link word left in {f:?}");
        assert!(
            words[1..].iter().all(|&w| w == pattern),
            "{f:?} changed beyond its link word"
        );
    }
    // The frame never handed out is untouched.
    assert!(
        rig.ram
            .frame_words(script[tables - 1])
            .iter()
            .all(|&w| w == pattern)
    );
}

fn bad_roots<M: PagingMode>() {
    let rig = machine::<M>();
    let access = paging_sim::SimAccess::new(rig.ram);
    let odd = pa(M::PGD_ALIGN / 2);
    assert_eq!(
        paging_core::Mapper::<M, _>::new_isolated(
            odd,
            access,
            paging_core::CpuFeatures::full::<M>()
        )
        .unwrap_err(),
        RootError::Unaligned {
            addr: odd,
            align: M::PGD_ALIGN
        }
    );
    let high = pa(1 << 32);
    assert_eq!(
        paging_core::Mapper::<M, _>::new_isolated(
            high,
            access,
            paging_core::CpuFeatures::full::<M>()
        )
        .unwrap_err(),
        RootError::AboveCr3Limit(high)
    );
    let _ = PhysFrame::containing_address(high);
    let _ = <M::Pte as Entry>::NONE;
}

paging_sim::for_each_mode!(
    unaligned_addresses,
    physical_addresses_beyond_the_mode,
    ranges_past_four_gib,
    no_execute,
    never_overwrite,
    not_empty_entries_are_not_free,
    unmapping_what_is_not_mapped,
    allocator_failures_give_every_frame_back,
    a_failed_range_gives_frames_back_without_link_words,
    bad_roots,
);
