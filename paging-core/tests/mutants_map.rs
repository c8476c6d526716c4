//! The translation a refused map reports for a large page in the way (the
//! same one the walker gives for that address: base, offset, size, flags),
//! the page a refused range names, and the last frame of physical space
//! and the last page of virtual space are mappable, one page or a range.
//! Written for mutants that `cargo xtask mutants` found no test noticed
//! (docs/testing.md).
mod mapper_support;

use mapper_support::{frame, machine, pa, va};
use paging_core::{LargePages, MapError, MapFlags, Page, PagingMode};
use paging_x86_2level::TwoLevel;
use paging_x86_pae::Pae;

fn a_large_page_in_the_way_is_reported_exactly<M: PagingMode>() {
    let mut rig = machine::<M>();
    let size = M::LARGE_PAGE_SIZE.bytes() as u32;
    let at = 0x4000_0000u32;
    let base = pa(2 * size as u64);
    rig.mapper
        .map_large(va(at), base, MapFlags::KERNEL_RW, &mut rig.alloc)
        .unwrap()
        .flush(&rig.mmu);
    let inside = at + size - 0x3000;
    let seen = rig.mapper.translate(va(inside)).unwrap();
    assert_eq!((seen.base, seen.offset), (base, size - 0x3000));

    let e = rig.mapper.map(
        Page::from_start_address(va(inside)).unwrap(),
        frame(0x9000),
        MapFlags::KERNEL_RW,
        &mut rig.alloc,
    );
    assert_eq!(
        e,
        Err(MapError::InLargePage {
            va: va(inside),
            existing: seen
        })
    );
    let e = rig.mapper.map_range(
        va(inside),
        pa(0x9000),
        0x2000,
        MapFlags::KERNEL_RW,
        LargePages::Avoid,
        &mut rig.alloc,
    );
    assert_eq!(
        e,
        Err(MapError::InLargePage {
            va: va(inside),
            existing: seen
        })
    );
    let e = rig
        .mapper
        .map_large(va(at), base, MapFlags::KERNEL_RW, &mut rig.alloc);
    assert_eq!(
        e,
        Err(MapError::AlreadyMapped {
            va: va(at),
            existing: rig.mapper.translate(va(at)).unwrap()
        })
    );
}

fn the_last_frame_of_physical_space_is_mappable<M: PagingMode>() {
    let mut rig = machine::<M>();
    let top = 1u64 << M::MAX_PHYS_BITS;
    let last = top - 0x1000;
    rig.mapper
        .map(
            Page::from_start_address(va(0x5000_0000)).unwrap(),
            frame(last),
            MapFlags::KERNEL_RW,
            &mut rig.alloc,
        )
        .unwrap()
        .flush(&rig.mmu);
    assert_eq!(
        rig.mapper.translate(va(0x5000_0FFF)).unwrap().phys_addr(),
        pa(top - 1)
    );
    rig.mapper
        .map_range(
            va(0x6000_0000),
            pa(top - 0x3000),
            0x3000,
            MapFlags::KERNEL_RW,
            LargePages::Avoid,
            &mut rig.alloc,
        )
        .unwrap()
        .flush(&rig.mmu);
    assert_eq!(
        rig.mapper.translate(va(0x6000_2FFF)).unwrap().phys_addr(),
        pa(top - 1)
    );
    // One page further is out of range.
    let e = rig.mapper.map_range(
        va(0x7000_0000),
        pa(top - 0x3000),
        0x4000,
        MapFlags::KERNEL_RW,
        LargePages::Avoid,
        &mut rig.alloc,
    );
    assert_eq!(
        e,
        Err(MapError::PhysOutOfRange {
            addr: pa(top - 0x3000),
            max_bits: M::MAX_PHYS_BITS
        })
    );
}

fn a_range_may_end_at_4_gib<M: PagingMode>() {
    let mut rig = machine::<M>();
    rig.mapper
        .map_range(
            va(0xFFFF_E000),
            pa(0x9000),
            0x2000,
            MapFlags::KERNEL_RW,
            LargePages::Avoid,
            &mut rig.alloc,
        )
        .unwrap()
        .flush(&rig.mmu);
    assert_eq!(
        rig.mapper.translate(va(0xFFFF_FFFF)).unwrap().phys_addr(),
        pa(0xAFFF)
    );
    let e = rig.mapper.map_range(
        va(0xFFFF_D000),
        pa(0x9000),
        0x4000,
        MapFlags::KERNEL_RW,
        LargePages::Avoid,
        &mut rig.alloc,
    );
    assert_eq!(
        e,
        Err(MapError::VirtOutOfRange {
            start: va(0xFFFF_D000),
            len: 0x4000
        })
    );
}

fn a_refused_range_names_the_page_in_the_way<M: PagingMode>() {
    let mut rig = machine::<M>();
    rig.mapper
        .map(
            Page::from_start_address(va(0x5000_3000)).unwrap(),
            frame(0x9000),
            MapFlags::KERNEL_RW,
            &mut rig.alloc,
        )
        .unwrap()
        .flush(&rig.mmu);
    // From the second PTE of the table, over the mapped fourth.
    let e = rig.mapper.map_range(
        va(0x5000_1000),
        pa(0x20_0000),
        0x5000,
        MapFlags::KERNEL_RW,
        LargePages::Avoid,
        &mut rig.alloc,
    );
    assert!(
        matches!(e, Err(MapError::AlreadyMapped { va: at, .. }) if at == va(0x5000_3000)),
        "{e:?}"
    );
}

#[test]
fn two_level() {
    a_large_page_in_the_way_is_reported_exactly::<TwoLevel>();
    the_last_frame_of_physical_space_is_mappable::<TwoLevel>();
    a_range_may_end_at_4_gib::<TwoLevel>();
    a_refused_range_names_the_page_in_the_way::<TwoLevel>();
}

#[test]
fn pae() {
    a_large_page_in_the_way_is_reported_exactly::<Pae>();
    the_last_frame_of_physical_space_is_mappable::<Pae>();
    a_range_may_end_at_4_gib::<Pae>();
    a_refused_range_names_the_page_in_the_way::<Pae>();
}
