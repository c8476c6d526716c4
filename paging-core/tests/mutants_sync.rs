//! The lazy sync path never takes a directory's own, different entry for
//! the reference's: same flags, different table is a real fault. Written
//! for mutants that `cargo xtask mutants` found no test noticed
//! (docs/testing.md).
#![cfg(feature = "sim")]

mod mapper_support;

use mapper_support::{frame, pa, va};
use paging_core::sim::{Access, Machine, SimAccess, SimRam};
use paging_core::{
    MapFlags, Mapper, NativeHooks, Page, PagingMode, PhysAddr, SyncOutcome, VirtAddr,
    sync_kernel_entry,
};
use paging_x86_2level::TwoLevel;
use paging_x86_pae::Pae;

const VMALLOC: u32 = 0xE000_0000;

fn page(x: u32) -> Page {
    Page::from_start_address(va(x)).unwrap()
}

fn hw_in<M: PagingMode>(m: &Machine<'_, M>, root: PhysAddr, at: VirtAddr) -> Result<PhysAddr, u32> {
    m.mmu.load_cr3(root.as_u64() as u32).unwrap();
    m.mmu
        .translate(at, Access::READ)
        .map(|t| t.pa)
        .map_err(|f| f.code)
}

fn a_different_entry_with_the_same_flags_is_a_real_fault<M: PagingMode>() {
    let ram = SimRam::new();
    let mut m = Machine::<M>::new(&ram);
    m.mapper
        .map(
            page(VMALLOC),
            frame(0x30_0000),
            MapFlags::KERNEL_RW,
            &mut m.alloc,
        )
        .unwrap()
        .flush(&m.mmu);
    // The directory has its own table where the reference has its own:
    // same kind of entry (present, same table flags), another table.
    let mut d = Mapper::<M, _>::create(SimAccess::new(&ram), &mut m.alloc).unwrap();
    d.map(
        page(VMALLOC + 0x1000),
        frame(0x40_0000),
        MapFlags::KERNEL_RW,
        &mut m.alloc,
    )
    .unwrap()
    .ignore();
    let before = ram.frame_words(frame(d.root().as_u64() & !0xFFF));
    let outcome = sync_kernel_entry::<M, _, _>(
        &SimAccess::new(&ram),
        &NativeHooks,
        m.mapper.root(),
        d.root(),
        va(VMALLOC),
    );
    assert_eq!(outcome, Ok(SyncOutcome::NotSyncFault));
    assert_eq!(ram.frame_words(frame(d.root().as_u64() & !0xFFF)), before);
    // The directory still sees its own page and not the reference's.
    assert_eq!(hw_in(&m, d.root(), va(VMALLOC + 0x1000)), Ok(pa(0x40_0000)));
    assert!(hw_in(&m, d.root(), va(VMALLOC)).is_err());
    assert_eq!(hw_in(&m, m.mapper.root(), va(VMALLOC)), Ok(pa(0x30_0000)));
}

#[test]
fn two_level() {
    a_different_entry_with_the_same_flags_is_a_real_fault::<TwoLevel>();
}

#[test]
fn pae() {
    a_different_entry_with_the_same_flags_is_a_real_fault::<Pae>();
}
