//! What the frame contracts of issue 19 (items 5, 6 and 7) exclude, shown on
//! the host model, where breaking them corrupts only the simulated machine.
//!
//! On a live hierarchy each of these is a use-after-free of a page table,
//! so the calls that trust a caller's frame are `unsafe fn` there:
//! `Mapper::install_pte_tables` and `WindowBuilder::build_static` (items 5),
//! `FrameAllocator::deallocate_frame` (item 6), and freeing tables another
//! hierarchy shares is excluded by the binding contract of `Mapper::new` /
//! `Mapper::create` and `KernelSync::new` (item 7). Over the model
//! (`IsolatedTables`) the `_isolated` variants and the simulated
//! allocators' own `deallocate_frame` stay safe: no memory of this program
//! is at stake, which is what lets these tests break the contracts on
//! purpose and show what the simulated MMU then sees.
mod mapper_support;

use mapper_support::{Rig, frame, machine, pa, va};
use paging_core::{
    FreshTables, KernelSync, MapFlags, Mapper, NativeHooks, Page, PagingMode, PhysFrame, Walker,
};
use paging_sim::SimAccess;

const FIRST: u32 = 0x4000_0000;
const SECOND: u32 = 0x8000_0000;
/// In the same GiB as `FIRST` (one PAE PMD table), at the same PTE index.
const THIRD: u32 = 0x5000_0000;
const DATA: u64 = 0x20_0000;
const OTHER: u64 = 0x30_0000;

fn page(x: u32) -> Page {
    Page::from_start_address(va(x)).unwrap()
}

/// A machine with `FIRST` mapped (writable) to `DATA`; returns it and the
/// PTE table behind `FIRST`.
fn first_region<M: PagingMode>() -> (Rig<M>, PhysFrame) {
    let mut rig = machine::<M>();
    rig.mapper
        .map(
            page(FIRST),
            frame(DATA),
            MapFlags::KERNEL_RW,
            &mut rig.alloc,
        )
        .unwrap()
        .flush(&rig.mmu);
    let table = rig.mapper.walk(va(FIRST)).unwrap().pte.unwrap().0.table;
    (rig, table)
}

/// Item 5 (a) and (b): linking a live PTE table a second time makes a
/// second writable mapping of its frames appear, and unmapping through the
/// second region removes the first region's mapping.
fn a_live_table_linked_twice<M: PagingMode>() {
    let (mut rig, table) = first_region::<M>();
    assert_eq!(rig.hw(va(SECOND)), Err(0), "nobody mapped SECOND");
    rig.mapper
        .install_pte_tables_isolated(
            va(SECOND),
            table,
            1,
            FreshTables::Keep,
            &rig.mmu,
            &mut rig.alloc,
        )
        .unwrap();
    // (a) A writable mapping of DATA nobody asked for.
    assert_eq!(rig.hw(va(SECOND)), Ok(pa(DATA)));
    // (b) Unmapping SECOND unmaps FIRST too.
    rig.mapper.unmap(va(SECOND)).unwrap().1.flush(&rig.mmu);
    assert!(rig.hw(va(FIRST)).is_err(), "FIRST lost its mapping");
}

/// Item 5 (c): freeing the second region's (empty) table gives back a table
/// that is still linked under the first; the allocator hands it out again
/// and the first region translates through the new owner's entries.
fn a_shared_table_freed_and_reused<M: PagingMode>() {
    let (mut rig, table) = first_region::<M>();
    rig.mapper
        .install_pte_tables_isolated(
            va(SECOND),
            table,
            1,
            FreshTables::Keep,
            &rig.mmu,
            &mut rig.alloc,
        )
        .unwrap();
    rig.mapper.unmap(va(SECOND)).unwrap().1.flush(&rig.mmu);
    let freed = rig
        .mapper
        .free_empty_tables(va(SECOND), M::pmd_span(), &rig.mmu, &mut rig.alloc)
        .unwrap();
    assert_eq!(freed.pte_tables, 1, "the shared table went back");
    // The next new table is that frame, still linked under FIRST.
    rig.mapper
        .map(
            page(THIRD),
            frame(OTHER),
            MapFlags::KERNEL_RW,
            &mut rig.alloc,
        )
        .unwrap()
        .flush(&rig.mmu);
    assert_eq!(
        rig.mapper.walk(va(THIRD)).unwrap().pte.unwrap().0.table,
        table
    );
    // FIRST (same index in the table as THIRD) now maps THIRD's frame.
    assert_eq!(rig.hw(va(FIRST)), Ok(pa(OTHER)));
}

/// Item 5 (d): `FreshTables::Zero` zeroes a frame nobody allocated (here,
/// the data page behind `FIRST`).
fn zeroing_a_frame_nobody_allocated<M: PagingMode>() {
    let (mut rig, _) = first_region::<M>();
    rig.ram.write_u32(pa(DATA), 0x1234_5678).unwrap();
    rig.mapper
        .install_pte_tables_isolated(
            va(SECOND),
            frame(DATA),
            1,
            FreshTables::Zero,
            &rig.mmu,
            &mut rig.alloc,
        )
        .unwrap();
    assert_eq!(
        rig.ram.read_u32(pa(DATA)),
        Ok(0),
        "the data page was zeroed"
    );
}

/// Item 6: giving a live table frame back lets the next `map` link it as a
/// second table: two regions share one PTE table.
fn a_live_table_given_back<M: PagingMode>() {
    let (mut rig, table) = first_region::<M>();
    // The model's allocator takes it back without `unsafe` (simulated RAM);
    // `FrameAllocator::deallocate_frame` is `unsafe` for real allocators.
    rig.alloc.deallocate_frame(table);
    rig.mapper
        .map(
            page(THIRD),
            frame(OTHER),
            MapFlags::KERNEL_RW,
            &mut rig.alloc,
        )
        .unwrap()
        .flush(&rig.mmu);
    assert_eq!(
        rig.mapper.walk(va(THIRD)).unwrap().pte.unwrap().0.table,
        table
    );
    assert_eq!(rig.hw(va(FIRST)), Ok(pa(OTHER)), "FIRST follows THIRD");
}

/// Item 7: `free_empty_tables` on the reference directory frees a kernel
/// table every registered directory still links; reused, it maps the new
/// owner's pages in those directories.
fn freeing_a_table_the_kernel_sync_shares<M: PagingMode>() {
    let (mut rig, _) = first_region::<M>();
    let ram = rig.ram;
    let sync = KernelSync::<M, _, _, 4>::new_isolated(
        rig.mapper.root(),
        va(FIRST),
        SimAccess::new(ram),
        NativeHooks,
    );
    let other = Mapper::<M, _>::create_isolated(
        SimAccess::new(ram),
        paging_core::CpuFeatures::full::<M>(),
        &mut rig.alloc,
    )
    .unwrap();
    sync.register(other.root()).unwrap();
    let seen_by_other = |at: u32| {
        Walker::<M, _>::new(other.root(), SimAccess::new(ram))
            .translate(va(at))
            .map(|t| t.base.as_u64() + u64::from(t.offset))
    };
    assert_eq!(seen_by_other(FIRST), Ok(DATA));
    // The tables the directories share: the PTE table in 2-level mode
    // (each directory links it), the PMD table of the GiB in PAE (each
    // PDPT links that, and the PTE table below it).
    let (span, next) = if M::PMD_FOLDED {
        (M::pmd_span(), THIRD)
    } else {
        (M::pgd_span(), SECOND)
    };
    rig.mapper.unmap(va(FIRST)).unwrap().1.flush(&rig.mmu);
    let freed = rig
        .mapper
        .free_empty_tables(va(FIRST), span, &rig.mmu, &mut rig.alloc)
        .unwrap();
    assert_eq!(freed.pte_tables, 1);
    assert_eq!(freed.pmd_tables, usize::from(!M::PMD_FOLDED));
    rig.mapper
        .map(
            page(next),
            frame(OTHER),
            MapFlags::KERNEL_RW,
            &mut rig.alloc,
        )
        .unwrap()
        .flush(&rig.mmu);
    // The other directory still links the freed tables, now the new
    // owner's: it sees `next`'s page at FIRST, a mapping its own hierarchy
    // never made.
    assert_eq!(seen_by_other(FIRST), Ok(OTHER));
}

macro_rules! both_modes {
    ($($name:ident),* $(,)?) => {
        mod two_level {
            $(#[test] fn $name() { super::$name::<paging_x86_2level::TwoLevel>(); })*
        }
        mod pae {
            $(#[test] fn $name() { super::$name::<paging_x86_pae::Pae>(); })*
        }
    };
}

both_modes!(
    a_live_table_linked_twice,
    a_shared_table_freed_and_reused,
    zeroing_a_frame_nobody_allocated,
    a_live_table_given_back,
    freeing_a_table_the_kernel_sync_shares,
);
