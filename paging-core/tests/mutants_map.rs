//! The translation a refused map reports for a large page in the way: the
//! same one the walker gives for that address (base, offset, size, flags).
//! Written for mutants that `cargo xtask mutants` found no test noticed
//! (docs/testing.md).
#![cfg(feature = "sim")]

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

#[test]
fn two_level() {
    a_large_page_in_the_way_is_reported_exactly::<TwoLevel>();
}

#[test]
fn pae() {
    a_large_page_in_the_way_is_reported_exactly::<Pae>();
}
