//! Accessed/dirty harvesting (`Mapper::harvest`, `test_and_clear_accessed`,
//! `test_and_clear_dirty`) against the simulated MMU, in both modes.
//!
//! What the hardware does, from the SDM (vol. 3A 4.8, 4.10.4.3): a walk sets
//! Accessed (bit 5) in the leaf it uses and Dirty (bit 6) on a write, and a
//! translation cached in the TLB with the bit already set does not set it
//! again. The simulated MMU models exactly that; these tests check that a
//! harvest clears only the bit asked for, counts what the CPU marked, and
//! returns the flush that makes the next use leave a mark again.

mod mapper_support;
mod racing_support;

use mapper_support::{Rig, frame, machine, pa, va};
use paging_core::access::AccessError;
use paging_core::{
    CpuFeatures, MapFlags, Mapper, Page, PageSize, PagingMode, PhysFrame, StatusBit, UnmapError,
};
use paging_sim::{Access, SimAccess};
use racing_support::racing_mapper;

/// Accessed and Dirty in a leaf entry (SDM tables 4-4, 4-6, 4-9, 4-11).
const A: u64 = 1 << 5;
const D: u64 = 1 << 6;

const BASE: u32 = 0x4000_0000;

/// `n` 4 KiB pages mapped read-write from `BASE` to frames 0x200.., flushed.
fn mapped<M: PagingMode>(n: u32) -> Rig<M> {
    let mut m = machine::<M>();
    for i in 0..n {
        let page = Page::containing_address(va(BASE + i * 0x1000));
        m.mapper
            .map(
                page,
                frame(0x20_0000 + u64::from(i) * 0x1000),
                MapFlags::KERNEL_RW,
                &mut m.alloc,
            )
            .unwrap()
            .flush(&m.mmu);
    }
    m
}

/// The raw leaf entry mapping `at` (a PTE, or a large PDE).
fn leaf<M: PagingMode>(m: &Rig<M>, at: u32) -> u64 {
    use paging_core::Entry;
    let walk = m.mapper.walker().walk(va(at)).unwrap();
    match walk.pte {
        Some((_, pte)) => pte.raw(),
        None => walk.pmd.unwrap().1.raw(),
    }
}

fn touch<M: PagingMode>(m: &Rig<M>, at: u32, access: Access) {
    m.mmu.translate(va(at), access).unwrap();
}

fn young_pages_are_counted_and_the_flush_lets_the_next_use_mark_again_harvest<M: PagingMode>() {
    let mut m = mapped::<M>(8);
    for i in [1, 3, 6] {
        touch(&m, BASE + i * 0x1000, Access::READ);
    }
    let mut seen = Vec::new();
    let (stats, flush) = m
        .mapper
        .harvest(va(BASE), 8 * 0x1000, StatusBit::Accessed, |found| {
            seen.push(found)
        })
        .unwrap();
    assert_eq!((stats.pages, stats.large_pages, stats.harvested), (8, 0, 3));
    let vas: Vec<u32> = seen.iter().map(|m| m.va.as_u32()).collect();
    assert_eq!(vas, [BASE + 0x1000, BASE + 0x3000, BASE + 0x6000]);
    assert!(
        seen.iter()
            .all(|found| found.flags.contains(MapFlags::ACCESSED))
    );
    assert_eq!(seen[1].base, pa(0x20_3000));
    for i in 0..8 {
        assert_eq!(leaf(&m, BASE + i * 0x1000) & A, 0, "page {i}");
    }
    // The token covers the young pages, from the first to the last.
    assert_eq!(flush.pages(), Some((va(BASE + 0x1000), 6)));
    flush.flush(&m.mmu);
    // After the flush, a use walks again and marks the page.
    touch(&m, BASE + 0x3000, Access::READ);
    assert_ne!(leaf(&m, BASE + 0x3000) & A, 0);
    let (stats, _) = m
        .mapper
        .test_and_clear_accessed(va(BASE), 8 * 0x1000)
        .unwrap();
    assert_eq!(stats.harvested, 1);
}

fn without_the_flush_a_use_through_the_tlb_leaves_no_mark_harvest<M: PagingMode>() {
    // Why the token exists: the CPU does not set Accessed again while its
    // TLB holds the page with the bit set.
    let mut m = mapped::<M>(1);
    touch(&m, BASE, Access::READ);
    let (stats, flush) = m.mapper.test_and_clear_accessed(va(BASE), 0x1000).unwrap();
    assert_eq!(stats.harvested, 1);
    flush.ignore();
    touch(&m, BASE, Access::READ);
    assert_eq!(leaf(&m, BASE) & A, 0, "a TLB hit sets nothing");
}

fn dirty_pages_are_counted_and_a_write_after_the_flush_marks_again_harvest<M: PagingMode>() {
    let mut m = mapped::<M>(4);
    touch(&m, BASE, Access::WRITE);
    touch(&m, BASE + 0x2000, Access::WRITE);
    touch(&m, BASE + 0x3000, Access::READ);
    let before: Vec<u64> = (0..4).map(|i| leaf(&m, BASE + i * 0x1000)).collect();
    let (stats, flush) = m.mapper.test_and_clear_dirty(va(BASE), 4 * 0x1000).unwrap();
    assert_eq!((stats.pages, stats.harvested), (4, 2));
    for (i, old) in before.iter().enumerate() {
        // Only Dirty changed; Accessed stays as the CPU left it.
        assert_eq!(leaf(&m, BASE + i as u32 * 0x1000), old & !D, "page {i}");
    }
    flush.flush(&m.mmu);
    touch(&m, BASE + 0x2000, Access::WRITE);
    assert_ne!(
        leaf(&m, BASE + 0x2000) & D,
        0,
        "a write after the flush sets Dirty"
    );
}

fn without_the_flush_a_write_is_lost_to_the_dirty_bit_harvest<M: PagingMode>() {
    // The correctness half: a write-back that skipped the flush would miss
    // this write.
    let mut m = mapped::<M>(1);
    touch(&m, BASE, Access::WRITE);
    let (stats, flush) = m.mapper.test_and_clear_dirty(va(BASE), 0x1000).unwrap();
    assert_eq!(stats.harvested, 1);
    flush.ignore();
    touch(&m, BASE, Access::WRITE);
    assert_eq!(leaf(&m, BASE) & D, 0, "the TLB held the page dirty");
}

fn a_large_page_is_harvested_whole_and_flushed_whole_harvest<M: PagingMode>() {
    let mut m = machine::<M>();
    let span = M::pmd_span() as u32;
    let base = 0x8000_0000u32;
    m.mapper
        .map_large(va(base), pa(0x4000_0000), MapFlags::KERNEL_RW, &mut m.alloc)
        .unwrap()
        .flush(&m.mmu);
    touch(&m, base + span - 0x1000, Access::WRITE);
    let mut seen = Vec::new();
    // A range of two pages in the middle of the large page.
    let (stats, flush) = m
        .mapper
        .harvest(va(base + 0x10_0000), 0x2000, StatusBit::Dirty, |f| {
            seen.push(f)
        })
        .unwrap();
    assert_eq!((stats.pages, stats.large_pages, stats.harvested), (0, 1, 1));
    assert_eq!(seen.len(), 1);
    assert_eq!((seen[0].va, seen[0].size), (va(base), M::LARGE_PAGE_SIZE));
    assert_eq!(flush.pages(), Some((va(base), span / 0x1000)));
    assert_eq!(leaf(&m, base) & D, 0);
    assert_ne!(leaf(&m, base) & A, 0);
    flush.flush(&m.mmu);
    touch(&m, base, Access::WRITE);
    assert_ne!(leaf(&m, base) & D, 0);
}

fn the_memory_a_large_page_maps_is_never_reached_harvest<M: PagingMode>() {
    // A large page of memory the table access cannot reach (device memory,
    // RAM above what the kernel maps): a harvest reads and writes tables
    // only, so it works there, and never treats the page as a table.
    let mut m = machine::<M>();
    let base = 0x8000_0000u32;
    m.mapper
        .map_large(va(base), pa(0x4000_0000), MapFlags::KERNEL_RW, &mut m.alloc)
        .unwrap()
        .flush(&m.mmu);
    touch(&m, base, Access::WRITE);
    let ram = m.ram;
    let limited = SimAccess::below(ram, 0x4000_0000);
    // SAFETY: the tables are in simulated RAM below the limit; this mapper
    // only reads and clears status bits there, and nothing else runs on it
    // meanwhile.
    let mut mapper =
        unsafe { Mapper::<M, _>::new(m.mapper.root(), limited, CpuFeatures::full::<M>()).unwrap() };
    let (stats, flush) = mapper
        .test_and_clear_dirty(va(base), M::pmd_span())
        .unwrap();
    assert_eq!((stats.large_pages, stats.harvested), (1, 1));
    assert!(!flush.is_empty());
    assert_eq!(leaf(&m, base) & D, 0);
}

/// Every entry write a hooks object saw: (level, index, before, after).
#[derive(Default)]
struct Seen(std::cell::RefCell<Vec<(paging_core::Level, usize, u64, u64)>>);

impl paging_core::TableHooks for Seen {
    fn entry_written(
        &self,
        _: PhysFrame,
        level: paging_core::Level,
        index: usize,
        before: u64,
        after: u64,
    ) {
        self.0.borrow_mut().push((level, index, before, after));
    }
}

fn the_hooks_see_the_whole_entry_before_and_after_harvest<M: PagingMode>() {
    // A hypervisor's hooks (Xen's read-only tables) learn each cleared bit
    // as the whole entry before and after: high half (XD in PAE) included.
    let mut m = machine::<M>();
    let flags = if M::SUPPORTS_NX {
        MapFlags::KERNEL_RW | MapFlags::NO_EXECUTE
    } else {
        MapFlags::KERNEL_RW
    };
    m.mapper
        .map(
            Page::containing_address(va(BASE)),
            frame(0x20_0000),
            flags,
            &mut m.alloc,
        )
        .unwrap()
        .flush(&m.mmu);
    touch(&m, BASE, Access::WRITE);
    let entry = leaf(&m, BASE);
    assert_ne!(entry & D, 0);
    let mut mapper = Mapper::<M, _>::new_isolated(
        m.mapper.root(),
        SimAccess::new(m.ram),
        CpuFeatures::full::<M>(),
    )
    .unwrap()
    .with_hooks(Seen::default());
    let (_, flush) = mapper.test_and_clear_dirty(va(BASE), 0x1000).unwrap();
    flush.flush(&m.mmu);
    let seen = mapper.hooks().0.borrow().clone();
    assert_eq!(
        seen,
        [(
            paging_core::Level::Pte,
            M::pte_index(va(BASE)),
            entry,
            entry & !D
        )]
    );
    if M::SUPPORTS_NX {
        assert_ne!(entry >> 32, 0, "XD is in the high half");
    }
}

fn only_the_bit_changes_in_entries_someone_else_built_harvest<M: PagingMode>() {
    // A loader's entries with every bit the CPU allows in a present leaf:
    // PWT, PCD, PAT (bit 7), Global, the three AVL bits and, in PAE, XD.
    let mut m = mapped::<M>(2);
    let xd = if M::ENTRY_BYTES == 8 { 1u64 << 63 } else { 0 };
    let odd = 0xFFF | xd; // P RW U PWT PCD A D PAT G AVL*3
    let walk = m.mapper.walker().walk(va(BASE)).unwrap();
    let (slot, _) = walk.pte.unwrap();
    let addr = slot.table.start_address().as_u64() + slot.index as u64 * M::ENTRY_BYTES as u64;
    let raw = 0x20_0000 | odd;
    if M::ENTRY_BYTES == 8 {
        m.ram.write_u64(pa(addr), raw).unwrap();
    } else {
        m.ram.write_u32(pa(addr), raw as u32).unwrap();
    }
    let (stats, flush) = m.mapper.test_and_clear_accessed(va(BASE), 0x2000).unwrap();
    flush.ignore();
    assert_eq!(stats.harvested, 1, "the second page was never used");
    assert_eq!(leaf(&m, BASE), raw & !A);
    let (stats, flush) = m.mapper.test_and_clear_dirty(va(BASE), 0x2000).unwrap();
    flush.ignore();
    assert_eq!(stats.harvested, 1);
    assert_eq!(leaf(&m, BASE), raw & !A & !D);
}

fn holes_and_swap_entries_are_left_alone_harvest<M: PagingMode>() {
    let mut m = mapped::<M>(3);
    touch(&m, BASE + 0x2000, Access::WRITE);
    // Page 1 becomes a swap entry: not present, data in the other bits
    // (including bits 5 and 6, which mean nothing there).
    let walk = m.mapper.walker().walk(va(BASE + 0x1000)).unwrap();
    let (slot, _) = walk.pte.unwrap();
    let addr = slot.table.start_address().as_u64() + slot.index as u64 * M::ENTRY_BYTES as u64;
    let swap = 0x1234_5000 | A | D;
    m.ram.write_u32(pa(addr), swap as u32).unwrap();
    // A hole of a whole table's span before the pages, and one after.
    let start = BASE - M::pmd_span() as u32;
    let len = 3 * M::pmd_span();
    let (stats, flush) = m.mapper.test_and_clear_dirty(va(start), len).unwrap();
    assert_eq!((stats.pages, stats.harvested), (2, 1));
    assert_eq!(flush.pages(), Some((va(BASE + 0x2000), 1)));
    flush.flush(&m.mmu);
    assert_eq!(m.ram.read_u32(pa(addr)).unwrap(), swap as u32);
}

fn nothing_used_means_no_flush_harvest<M: PagingMode>() {
    let mut m = mapped::<M>(4);
    let mut calls = 0;
    let (stats, flush) = m
        .mapper
        .harvest(va(BASE), 4 * 0x1000, StatusBit::Accessed, |_| calls += 1)
        .unwrap();
    assert_eq!((stats.pages, stats.harvested, calls), (4, 0, 0));
    assert_eq!((flush.pages(), flush.needs_cr3_reload()), (None, false));
    let (stats, _) = m.mapper.test_and_clear_dirty(va(BASE), 0).unwrap();
    assert_eq!(stats, paging_core::HarvestStats::default());
}

fn bad_ranges_are_refused_and_change_nothing_harvest<M: PagingMode>() {
    let mut m = mapped::<M>(2);
    touch(&m, BASE, Access::WRITE);
    let err = m.assert_unchanged(|m| m.mapper.test_and_clear_accessed(va(BASE + 4), 0x1000));
    assert_eq!(err, Err(UnmapError::Unaligned { addr: va(BASE + 4) }));
    let err = m.assert_unchanged(|m| m.mapper.test_and_clear_dirty(va(BASE), 0x800));
    assert_eq!(err, Err(UnmapError::Unaligned { addr: va(0x800) }));
    let err = m.assert_unchanged(|m| {
        m.mapper
            .harvest(va(0xFFFF_F000), 0x2000, StatusBit::Accessed, |_| {
                panic!("nothing may be handed out")
            })
    });
    assert_eq!(
        err,
        Err(UnmapError::VirtOutOfRange {
            start: va(0xFFFF_F000),
            len: 0x2000
        })
    );
}

fn a_table_out_of_reach_fails_before_the_first_bit_is_cleared_harvest<M: PagingMode>() {
    // Two PTE tables; the second (allocated later, at a higher frame) is out
    // of the access's reach. Pages under the first must keep their bits.
    let mut m = mapped::<M>(1);
    let far = BASE + M::pmd_span() as u32;
    m.mapper
        .map(
            Page::containing_address(va(far)),
            frame(0x30_0000),
            MapFlags::KERNEL_RW,
            &mut m.alloc,
        )
        .unwrap()
        .flush(&m.mmu);
    touch(&m, BASE, Access::WRITE);
    touch(&m, far, Access::WRITE);
    let second = m
        .mapper
        .walker()
        .walk(va(far))
        .unwrap()
        .pte
        .unwrap()
        .0
        .table;
    let first = m
        .mapper
        .walker()
        .walk(va(BASE))
        .unwrap()
        .pte
        .unwrap()
        .0
        .table;
    assert!(first < second);
    let ram = m.ram;
    let limited = SimAccess::below(ram, second.start_address().as_u64());
    // SAFETY: the tables are in simulated RAM; this mapper only reads and
    // clears status bits there, and nothing else runs on it meanwhile.
    let mut mapper =
        unsafe { Mapper::<M, _>::new(m.mapper.root(), limited, CpuFeatures::full::<M>()).unwrap() };
    let before = m.snapshot();
    let mut called = false;
    let err = mapper.harvest(va(BASE), 2 * M::pmd_span(), StatusBit::Dirty, |_| {
        called = true
    });
    assert!(
        matches!(err, Err(UnmapError::Access(AccessError::Unreachable(f))) if f == second),
        "{err:?}"
    );
    assert!(!called);
    assert_eq!(m.snapshot(), before, "nothing changed");
    assert_ne!(leaf(&m, BASE) & D, 0);
}

fn a_bit_the_cpu_sets_during_the_swap_is_kept_harvest<M: PagingMode>() {
    let m = mapped::<M>(1);
    touch(&m, BASE, Access::READ);
    assert_eq!(leaf(&m, BASE) & (A | D), A);
    // The CPU sets D in the leaf just before the harvest's swap of it.
    let slot = m.mapper.walk(va(BASE)).unwrap().pte.unwrap().0;
    let mut mapper = racing_mapper(&m, slot, slot, D);
    let (stats, flush) = mapper.test_and_clear_accessed(va(BASE), 0x1000).unwrap();
    flush.ignore();
    assert_eq!(stats.harvested, 1);
    // Accessed cleared, and the Dirty the CPU set under the harvest kept.
    assert_eq!(leaf(&m, BASE) & (A | D), D);
    // And the other way round: Accessed set under a harvest of Dirty.
    mapper.access().arm(A);
    let (stats, flush) = mapper.test_and_clear_dirty(va(BASE), 0x1000).unwrap();
    flush.ignore();
    assert_eq!(stats.harvested, 1);
    assert_eq!(leaf(&m, BASE) & (A | D), A);
    assert_eq!(mapper.access().armed(), 0, "the race happened");
}

fn the_harvested_mapping_is_what_the_iterator_lists_harvest<M: PagingMode>() {
    // Harvesting hands out the same `Mapping`s the iterator lists, with
    // the bit still shown, so the two can be joined by address.
    let mut m = mapped::<M>(4);
    touch(&m, BASE + 0x1000, Access::WRITE);
    touch(&m, BASE + 0x3000, Access::WRITE);
    let listed: Vec<_> = m
        .mapper
        .walker()
        .mappings(va(BASE), 4 * 0x1000)
        .filter_map(Result::ok)
        .filter(|found| found.flags.contains(MapFlags::DIRTY))
        .collect();
    let mut harvested = Vec::new();
    let (_, flush) = m
        .mapper
        .harvest(va(BASE), 4 * 0x1000, StatusBit::Dirty, |f| {
            harvested.push(f)
        })
        .unwrap();
    flush.flush(&m.mmu);
    assert_eq!(harvested, listed);
    assert!(harvested.iter().all(|f| f.size == PageSize::Size4KiB));
    let after = m
        .mapper
        .walker()
        .mappings(va(BASE), 4 * 0x1000)
        .filter_map(Result::ok)
        .filter(|found| found.flags.contains(MapFlags::DIRTY))
        .count();
    assert_eq!(after, 0);
}

paging_sim::for_each_mode!(
    young_pages_are_counted_and_the_flush_lets_the_next_use_mark_again_harvest,
    without_the_flush_a_use_through_the_tlb_leaves_no_mark_harvest,
    dirty_pages_are_counted_and_a_write_after_the_flush_marks_again_harvest,
    without_the_flush_a_write_is_lost_to_the_dirty_bit_harvest,
    a_large_page_is_harvested_whole_and_flushed_whole_harvest,
    the_memory_a_large_page_maps_is_never_reached_harvest,
    the_hooks_see_the_whole_entry_before_and_after_harvest,
    only_the_bit_changes_in_entries_someone_else_built_harvest,
    holes_and_swap_entries_are_left_alone_harvest,
    nothing_used_means_no_flush_harvest,
    bad_ranges_are_refused_and_change_nothing_harvest,
    a_table_out_of_reach_fails_before_the_first_bit_is_cleared_harvest,
    a_bit_the_cpu_sets_during_the_swap_is_kept_harvest,
    the_harvested_mapping_is_what_the_iterator_lists_harvest,
);
