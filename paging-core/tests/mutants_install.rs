//! What an install reports it replaced: how many tables, in order, and
//! whether any. Written for mutants that `cargo xtask mutants` found no
//! test noticed (docs/testing.md).
#![cfg(feature = "sim")]

mod mapper_support;

use mapper_support::{frame, machine, pa, va};
use paging_core::{Entry, FreshTables, MapFlags, Page, PagingMode, PhysFrame};
use paging_x86_2level::TwoLevel;
use paging_x86_pae::Pae;

fn two_early_tables_are_reported_replaced<M: PagingMode>() {
    let mut rig = machine::<M>();
    let span = M::pmd_span() as u32;
    let start = 0xFF00_0000u32 & !(span - 1);
    // Early tables under the first and third of four slots.
    let mut early = Vec::new();
    for (k, pfn) in [(0u32, 0xB_8000u64), (2, 0xB_9000)] {
        let at = start + k * span + 0x3000;
        rig.mapper
            .map(
                Page::from_start_address(va(at)).unwrap(),
                frame(pfn),
                MapFlags::KERNEL_RW,
                &mut rig.alloc,
            )
            .unwrap()
            .flush(&rig.mmu);
        let table = rig.mapper.walk(va(at)).unwrap().pmd.unwrap().1.addr();
        early.push(PhysFrame::containing_address(table));
    }
    let first = rig.alloc_contiguous(4);
    let replaced = rig
        .mapper
        .install_pte_tables(
            va(start),
            first,
            4,
            FreshTables::Zero,
            &rig.mmu,
            &mut rig.alloc,
        )
        .unwrap();
    assert_eq!(replaced.len(), 2);
    assert!(!replaced.is_empty());
    assert_eq!(replaced.frames().collect::<Vec<_>>(), early);
    assert_eq!(rig.hw(va(start + 0x3000)), Ok(pa(0xB_8000)));
    assert_eq!(rig.hw(va(start + 2 * span + 0x3000)), Ok(pa(0xB_9000)));

    // Installing the same tables again replaces nothing.
    let again = rig
        .mapper
        .install_pte_tables(
            va(start),
            first,
            4,
            FreshTables::Zero,
            &rig.mmu,
            &mut rig.alloc,
        )
        .unwrap();
    assert_eq!(again.len(), 0);
    assert!(again.is_empty());
    assert_eq!(again.frames().count(), 0);
}

#[test]
fn two_level() {
    two_early_tables_are_reported_replaced::<TwoLevel>();
}

#[test]
fn pae() {
    two_early_tables_are_reported_replaced::<Pae>();
}
