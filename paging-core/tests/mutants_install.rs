//! What an install reports it replaced (how many tables, in order, and
//! whether any), its inclusive limits (the table count, the top of the
//! address space), and the errors of the directory above the range. Written for mutants that `cargo xtask mutants` found no
//! test noticed (docs/testing.md).
mod mapper_support;

use mapper_support::{frame, machine, pa, va};
use paging_core::mapper::MAX_INSTALL_TABLES;
use paging_core::{
    AccessError, Entry, FreshTables, InstallError, Level, MapFlags, Mapper, Page, PagingMode,
    PhysFrame, RawTable, TableAccess, Walker,
};
use paging_sim::SimAccess;
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
        .install_pte_tables_isolated(
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
        .install_pte_tables_isolated(
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

fn the_limits_are_inclusive<M: PagingMode>() {
    let mut rig = machine::<M>();
    let span = M::pmd_span() as u32;
    // Exactly the most tables one call takes.
    let first = rig.alloc_contiguous(MAX_INSTALL_TABLES + 1);
    let r = rig.mapper.install_pte_tables_isolated(
        va(0x4000_0000),
        first,
        MAX_INSTALL_TABLES,
        FreshTables::Zero,
        &rig.mmu,
        &mut rig.alloc,
    );
    assert_eq!(r.map(|r| r.len()), Ok(0));
    let r = rig.mapper.install_pte_tables_isolated(
        va(0x8000_0000),
        first,
        MAX_INSTALL_TABLES + 1,
        FreshTables::Zero,
        &rig.mmu,
        &mut rig.alloc,
    );
    assert_eq!(
        r,
        Err(InstallError::TooManyTables {
            count: MAX_INSTALL_TABLES + 1,
            max: MAX_INSTALL_TABLES
        })
    );
    // Up to the last byte of the address space, not one table further.
    let top = rig.alloc_contiguous(3);
    let start = va(0u32.wrapping_sub(2 * span));
    let r = rig.mapper.install_pte_tables_isolated(
        start,
        top,
        3,
        FreshTables::Zero,
        &rig.mmu,
        &mut rig.alloc,
    );
    assert_eq!(r, Err(InstallError::VirtOutOfRange { start, count: 3 }));
    let r = rig.mapper.install_pte_tables_isolated(
        start,
        top,
        2,
        FreshTables::Zero,
        &rig.mmu,
        &mut rig.alloc,
    );
    assert!(r.is_ok(), "{r:?}");
    let pmd = rig.mapper.walk(va(0xFFFF_F000)).unwrap().pmd.unwrap().1;
    assert_eq!(pmd.addr(), top.checked_add(1).unwrap().start_address());
}

/// PAE only: the PDPT entry above the range is garbage, or its PMD table
/// cannot be reached.
fn errors_above_the_range_are_typed() {
    let mut rig = machine::<Pae>();
    let root = rig.mapper.root();
    let ram = rig.ram;
    // A non-present, non-empty PDPT entry for the second GiB.
    let slot = Walker::<Pae, _>::new(root, SimAccess::new(ram)).pgd_slot(va(0x4000_0000));
    SimAccess::new(ram)
        .table(slot.table)
        .unwrap()
        .store64(slot.index, 0x2);
    let first = rig.alloc_contiguous(2);
    let r = rig.mapper.install_pte_tables_isolated(
        va(0x4000_0000),
        first,
        2,
        FreshTables::Zero,
        &rig.mmu,
        &mut rig.alloc,
    );
    assert_eq!(
        r,
        Err(InstallError::NotEmpty {
            va: va(0x4000_0000),
            raw: 0x2,
            level: Level::Pgd
        })
    );
    // A PMD table for the third GiB, then a mapper that reaches only the
    // PDPT's frame.
    rig.mapper
        .map(
            Page::from_start_address(va(0x8000_0000)).unwrap(),
            frame(0xB_8000),
            MapFlags::KERNEL_RW,
            &mut rig.alloc,
        )
        .unwrap()
        .ignore();
    let limit = PhysFrame::containing_address(root).start_address().as_u64() + 4096;
    let mut short = Mapper::<Pae, _>::new_isolated(
        root,
        SimAccess::below(ram, limit),
        paging_core::CpuFeatures::full::<Pae>(),
    )
    .unwrap();
    let r = short.install_pte_tables_isolated(
        va(0x8000_0000),
        first,
        2,
        FreshTables::Zero,
        &rig.mmu,
        &mut rig.alloc,
    );
    assert!(
        matches!(r, Err(InstallError::Access(AccessError::Unreachable(_)))),
        "{r:?}"
    );
}

#[test]
fn two_level() {
    two_early_tables_are_reported_replaced::<TwoLevel>();
    the_limits_are_inclusive::<TwoLevel>();
}

#[test]
fn pae() {
    two_early_tables_are_reported_replaced::<Pae>();
    the_limits_are_inclusive::<Pae>();
    errors_above_the_range_are_typed();
}
