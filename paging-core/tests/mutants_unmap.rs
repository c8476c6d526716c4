//! unmap_range at its edges: a range may end exactly at 4 GiB, and a range
//! that starts at a large page but does not cover all of it is refused.
//! Written for mutants that `cargo xtask mutants` found no test noticed
//! (docs/testing.md).
#![cfg(feature = "sim")]

mod mapper_support;

use mapper_support::{machine, pa, va};
use paging_core::{LargePages, MapFlags, PagingMode, UnmapError};
use paging_x86_2level::TwoLevel;
use paging_x86_pae::Pae;

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
    let (_, flush) = rig.mapper.unmap_range(va(0xFFFF_E000), 0x2000).unwrap();
    flush.flush(&rig.mmu);
    assert!(rig.mapper.translate(va(0xFFFF_F000)).is_err());
    assert!(rig.hw(va(0xFFFF_F000)).is_err());
    assert_eq!(
        rig.mapper.unmap_range(va(0xFFFF_E000), 0x3000).map(|_| ()),
        Err(UnmapError::VirtOutOfRange {
            start: va(0xFFFF_E000),
            len: 0x3000
        })
    );
}

fn the_head_of_a_large_page_is_not_cut<M: PagingMode>() {
    let mut rig = machine::<M>();
    let size = M::LARGE_PAGE_SIZE.bytes();
    let at = va(0x4000_0000);
    rig.mapper
        .map_large(at, pa(2 * size), MapFlags::KERNEL_RW, &mut rig.alloc)
        .unwrap()
        .flush(&rig.mmu);
    let e = rig.mapper.unmap_range(at, 0x1000).map(|_| ());
    assert_eq!(
        e,
        Err(UnmapError::InLargePage {
            va: at,
            base: at,
            size: M::LARGE_PAGE_SIZE
        })
    );
    assert_eq!(rig.hw(va(0x4000_0123)), Ok(pa(2 * size + 0x123)));
    // The whole page goes.
    let (_, flush) = rig.mapper.unmap_range(at, size).unwrap();
    flush.flush(&rig.mmu);
    assert!(rig.hw(va(0x4000_0123)).is_err());
}

#[test]
fn two_level() {
    a_range_may_end_at_4_gib::<TwoLevel>();
    the_head_of_a_large_page_is_not_cut::<TwoLevel>();
}

#[test]
fn pae() {
    a_range_may_end_at_4_gib::<Pae>();
    the_head_of_a_large_page_is_not_cut::<Pae>();
}
