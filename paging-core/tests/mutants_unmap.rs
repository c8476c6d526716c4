//! unmap_range at its edges: a range may end exactly at 4 GiB, a range
//! that starts at a large page but does not cover all of it is refused, and
//! a PTE table out of reach is found before the first write, while the
//! frame behind a large page is never reached as if it were a table; the
//! pages after the range in the same table stay mapped, and leave the TLB
//! (the token flushes); a hole with no table is skipped, not read as one;
//! a teardown that cannot reach a table says so; update_flags keeps the
//! Accessed and Dirty bits the CPU set, with one entry write when the CPU
//! did not race it; freeing empty tables flushes them all before releasing
//! any (one batch).
//! Written for mutants that `cargo xtask mutants` found no test noticed
//! (docs/testing.md).
mod mapper_support;

use std::cell::Cell;

use mapper_support::{frame, machine, pa, va};
use paging_core::{
    Entry, FreeError, LargePages, MapFlags, Mapper, Page, PagingMode, PhysFrame, UnmapError,
};
use paging_sim::SimAccess;
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

fn an_unreachable_table_is_found_before_any_write<M: PagingMode>() {
    let mut rig = machine::<M>();
    let span = M::pmd_span() as u32;
    let a = 0x4000_0000u32;
    let b = a + span;
    for (at, pfn) in [(a, 0x9000u64), (b, 0xA000)] {
        rig.mapper
            .map(
                Page::from_start_address(va(at)).unwrap(),
                frame(pfn),
                MapFlags::KERNEL_RW,
                &mut rig.alloc,
            )
            .unwrap()
            .flush(&rig.mmu);
    }
    let table_of = |at: u32| {
        let pmd = rig.mapper.walk(va(at)).unwrap().pmd.unwrap().1;
        PhysFrame::containing_address(pmd.addr())
    };
    let (ta, tb) = (table_of(a), table_of(b));
    assert!(tb > ta, "tables come from a bump allocator");
    // Everything up to the first PTE table is reachable, the second not.
    let limit = ta.start_address().as_u64() + 4096;
    let mut short = Mapper::<M, _>::new_isolated(
        rig.mapper.root(),
        SimAccess::below(rig.ram, limit),
        paging_core::CpuFeatures::full::<M>(),
    )
    .unwrap();
    let e = short.unmap_range(va(a), 2 * span as u64).map(|_| ());
    assert!(matches!(e, Err(UnmapError::Access(_))), "{e:?}");
    // Nothing was unmapped, not even under the reachable table.
    assert_eq!(rig.hw(va(a)), Ok(pa(0x9000)));
    assert_eq!(rig.mapper.translate(va(a)).unwrap().base, pa(0x9000));
    assert_eq!(rig.mapper.translate(va(b)).unwrap().base, pa(0xA000));
}

fn a_large_pages_frame_is_not_reached<M: PagingMode>() {
    let mut rig = machine::<M>();
    let at = va(0x4000_0000);
    // The large page's frames lie far above every table.
    rig.mapper
        .map_large(at, pa(0x4000_0000), MapFlags::KERNEL_RW, &mut rig.alloc)
        .unwrap()
        .flush(&rig.mmu);
    let pmd_table = rig.mapper.walk(at).unwrap().pmd.unwrap().0.table;
    let limit = pmd_table.start_address().as_u64() + 4096;
    assert!(limit <= 0x4000_0000);
    let mut short = Mapper::<M, _>::new_isolated(
        rig.mapper.root(),
        SimAccess::below(rig.ram, limit),
        paging_core::CpuFeatures::full::<M>(),
    )
    .unwrap();
    let size = M::LARGE_PAGE_SIZE.bytes();
    let (stats, flush) = short.unmap_range(at, size).unwrap();
    flush.flush(&rig.mmu);
    assert_eq!((stats.pages, stats.large_pages), (0, 1));
    assert!(rig.hw(at).is_err());
}

fn the_pages_after_the_range_stay_mapped<M: PagingMode>() {
    let mut rig = machine::<M>();
    rig.mapper
        .map_range(
            va(0x4000_0000),
            pa(0x9000),
            0x4000,
            MapFlags::KERNEL_RW,
            LargePages::Avoid,
            &mut rig.alloc,
        )
        .unwrap()
        .flush(&rig.mmu);
    // In the TLB before the unmap: only the returned token removes it.
    assert_eq!(rig.hw(va(0x4000_1000)), Ok(pa(0xA000)));
    let (stats, flush) = rig.mapper.unmap_range(va(0x4000_1000), 0x1000).unwrap();
    flush.flush(&rig.mmu);
    assert_eq!(stats.pages, 1);
    assert_eq!(rig.hw(va(0x4000_0000)), Ok(pa(0x9000)));
    assert!(rig.hw(va(0x4000_1000)).is_err());
    assert_eq!(rig.hw(va(0x4000_2000)), Ok(pa(0xB000)));
    assert_eq!(rig.hw(va(0x4000_3000)), Ok(pa(0xC000)));
}

fn a_hole_without_a_table_is_skipped<M: PagingMode>() {
    let mut rig = machine::<M>();
    // A table for the first PMD span (and, under PAE, a PMD table for the
    // GiB); nothing in the second span.
    rig.mapper
        .map(
            Page::from_start_address(va(0x4000_0000)).unwrap(),
            frame(0x9000),
            MapFlags::KERNEL_RW,
            &mut rig.alloc,
        )
        .unwrap()
        .flush(&rig.mmu);
    // Physical frame 0 holds data that looks like a present entry where a
    // PTE table at frame 0 would hold the hole's PTE.
    let hole = 0x4000_0000 + M::pmd_span() as u32;
    let word = pa((M::pte_index(va(hole)) * M::ENTRY_BYTES) as u64);
    rig.ram.write_u32(word, 0x0007_7003).unwrap();
    let (stats, flush) = rig.mapper.unmap_range(va(hole), 0x1000).unwrap();
    flush.flush(&rig.mmu);
    assert_eq!((stats.pages, stats.large_pages), (0, 0));
    assert_eq!(rig.ram.read_u32(word).unwrap(), 0x0007_7003);
    assert_eq!(rig.hw(va(0x4000_0000)), Ok(pa(0x9000)));
}

fn a_teardown_that_cannot_reach_a_table_says_so<M: PagingMode>() {
    let mut rig = machine::<M>();
    rig.mapper
        .map(
            Page::from_start_address(va(0x4000_0000)).unwrap(),
            frame(0x9000),
            MapFlags::KERNEL_RW | MapFlags::USER,
            &mut rig.alloc,
        )
        .unwrap()
        .flush(&rig.mmu);
    let root = rig.mapper.root();
    let limit = PhysFrame::containing_address(root).start_address().as_u64() + 4096;
    let short = Mapper::<M, _>::new_isolated(
        root,
        SimAccess::below(rig.ram, limit),
        paging_core::CpuFeatures::full::<M>(),
    )
    .unwrap();
    let e = short.teardown(va(0xC000_0000), &rig.mmu, &mut rig.alloc);
    assert!(matches!(e, Err(FreeError::Access(_))), "{e:?}");
    assert_eq!(rig.hw(va(0x4000_0000)), Ok(pa(0x9000)));
}

fn update_flags_keeps_accessed_and_dirty<M: PagingMode>() {
    let mut rig = machine::<M>();
    let size = M::LARGE_PAGE_SIZE.bytes();
    let (small, large) = (va(0x4000_0000), va(0x8000_0000));
    rig.mapper
        .map(
            Page::from_start_address(small).unwrap(),
            frame(0x9000),
            MapFlags::KERNEL_RW,
            &mut rig.alloc,
        )
        .unwrap()
        .flush(&rig.mmu);
    rig.mapper
        .map_large(large, pa(2 * size), MapFlags::KERNEL_RW, &mut rig.alloc)
        .unwrap()
        .flush(&rig.mmu);
    // The CPU sets Accessed and Dirty.
    rig.mmu.write_u32(small, 1).unwrap();
    rig.mmu.write_u32(large, 1).unwrap();
    let status = MapFlags::ACCESSED | MapFlags::DIRTY;
    for (at, asked) in [
        (small, MapFlags::KERNEL_RO),
        (small, MapFlags::KERNEL_RO | MapFlags::ACCESSED),
        (large, MapFlags::KERNEL_RO),
        (large, MapFlags::KERNEL_RO | MapFlags::ACCESSED),
    ] {
        rig.mapper.update_flags(at, asked).unwrap().flush(&rig.mmu);
        let flags = rig.mapper.translate(at).unwrap().flags;
        assert!(flags.contains(status), "{at:?} {asked:?}: {flags:?}");
        assert!(!flags.contains(MapFlags::WRITABLE));
    }
}

/// Counts the entries the mapper writes.
#[derive(Default)]
struct Writes(Cell<usize>);

impl paging_core::TableHooks for Writes {
    fn entry_written(&self, _: PhysFrame, _: paging_core::Level, _: usize, _: u64, _: u64) {
        self.0.set(self.0.get() + 1);
    }
}

fn update_flags_writes_the_entry_once<M: PagingMode>() {
    let mut rig = machine::<M>();
    let size = M::LARGE_PAGE_SIZE.bytes();
    let (small, large) = (va(0x4000_0000), va(0x8000_0000));
    rig.mapper
        .map(
            Page::from_start_address(small).unwrap(),
            frame(0x9000),
            MapFlags::KERNEL_RW,
            &mut rig.alloc,
        )
        .unwrap()
        .flush(&rig.mmu);
    rig.mapper
        .map_large(large, pa(2 * size), MapFlags::KERNEL_RW, &mut rig.alloc)
        .unwrap()
        .flush(&rig.mmu);
    let mut m = Mapper::<M, _>::new_isolated(
        rig.mapper.root(),
        SimAccess::new(rig.ram),
        paging_core::CpuFeatures::full::<M>(),
    )
    .unwrap()
    .with_hooks(Writes::default());
    for at in [small, large] {
        let before = m.hooks().0.get();
        m.update_flags(at, MapFlags::KERNEL_RO)
            .unwrap()
            .flush(&rig.mmu);
        assert_eq!(m.hooks().0.get() - before, 1, "{at:?}");
    }
}

/// Flushes and releases, in order.
#[derive(Default)]
struct Events(std::cell::RefCell<Vec<&'static str>>);

impl paging_core::TlbOps for &Events {
    fn flush_page(&self, _: paging_core::VirtAddr) {
        self.0.borrow_mut().push("flush");
    }
    fn flush_all(&self) {
        self.0.borrow_mut().push("flush");
    }
    fn flush_everything(&self) {
        self.0.borrow_mut().push("flush");
    }
}

impl paging_core::TableHooks for &Events {
    fn table_released(&self, _: PhysFrame, level: paging_core::Level) {
        if level == paging_core::Level::Pte {
            self.0.borrow_mut().push("release");
        }
    }
}

fn empty_tables_are_flushed_then_released_in_one_batch<M: PagingMode>() {
    let mut rig = machine::<M>();
    let span = M::pmd_span() as u32;
    for k in 0..3 {
        let at = va(0x4000_0000 + k * span);
        rig.mapper
            .map(
                Page::from_start_address(at).unwrap(),
                frame(0x9000),
                MapFlags::KERNEL_RW,
                &mut rig.alloc,
            )
            .unwrap()
            .flush(&rig.mmu);
        rig.mapper.unmap(at).unwrap().1.flush(&rig.mmu);
    }
    let events = Events::default();
    let mut m = Mapper::<M, _>::new_isolated(
        rig.mapper.root(),
        SimAccess::new(rig.ram),
        paging_core::CpuFeatures::full::<M>(),
    )
    .unwrap()
    .with_hooks(&events);
    let stats = m
        .free_empty_tables(va(0x4000_0000), 3 * span as u64, &&events, &mut rig.alloc)
        .unwrap();
    assert_eq!(stats.pte_tables, 3);
    let log = events.0.borrow();
    let first_release = log.iter().position(|&e| e == "release").unwrap();
    assert!(
        log[first_release..].iter().all(|&e| e == "release"),
        "every flush comes before the first release: {log:?}"
    );
    assert_eq!(log.iter().filter(|&&e| e == "release").count(), 3);
}

#[test]
fn two_level() {
    a_range_may_end_at_4_gib::<TwoLevel>();
    the_head_of_a_large_page_is_not_cut::<TwoLevel>();
    an_unreachable_table_is_found_before_any_write::<TwoLevel>();
    a_large_pages_frame_is_not_reached::<TwoLevel>();
    the_pages_after_the_range_stay_mapped::<TwoLevel>();
    a_hole_without_a_table_is_skipped::<TwoLevel>();
    a_teardown_that_cannot_reach_a_table_says_so::<TwoLevel>();
    update_flags_keeps_accessed_and_dirty::<TwoLevel>();
    update_flags_writes_the_entry_once::<TwoLevel>();
    empty_tables_are_flushed_then_released_in_one_batch::<TwoLevel>();
}

#[test]
fn pae() {
    a_range_may_end_at_4_gib::<Pae>();
    the_head_of_a_large_page_is_not_cut::<Pae>();
    an_unreachable_table_is_found_before_any_write::<Pae>();
    a_large_pages_frame_is_not_reached::<Pae>();
    the_pages_after_the_range_stay_mapped::<Pae>();
    a_hole_without_a_table_is_skipped::<Pae>();
    a_teardown_that_cannot_reach_a_table_says_so::<Pae>();
    update_flags_keeps_accessed_and_dirty::<Pae>();
    update_flags_writes_the_entry_once::<Pae>();
    empty_tables_are_flushed_then_released_in_one_batch::<Pae>();
}
