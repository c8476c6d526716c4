//! `Mapper::teardown_releasing` through the simulated MMU: every data frame
//! of the user half is handed to the caller exactly once, only after the
//! TLB can no longer translate to it, and every table goes back to the
//! allocator.
mod mapper_support;

use std::cell::RefCell;
use std::collections::BTreeSet;

use mapper_support::{pa, va};
use paging_core::{
    Entry, FrameAllocator, FreeError, LargePages, MapFlags, Mapper, PAGE_SIZE, Page, PageSize,
    PagingMode, PhysFrame, TEARDOWN_BATCH, TableAccess, Unmapped, VirtAddr, Zone,
};
use paging_sim::{Access, Machine, Mmu, SimAccess, SimConfig, SimRam, ZonedAllocator};

const USER_END: u32 = 0xC000_0000;
const USER_RW: MapFlags = MapFlags::KERNEL_RW.union(MapFlags::USER);
const COW: MapFlags = MapFlags::SOFTWARE_0;

/// Build a user half in `space` (data frames from `alloc`), touch it all
/// through `cpu`, tear it down, and check every release against the CPU.
/// Returns the released data frames, for the caller to give back.
fn populate_and_tear_down<M: PagingMode, A: TableAccess>(
    mut space: Mapper<M, A>,
    alloc: &mut ZonedAllocator,
    cpu: &Mmu<'_>,
) -> Vec<PhysFrame> {
    let span = M::pmd_span() as u32;
    let mut mapped = Vec::new();
    // More PTE tables than one batch holds, a few pages in each.
    let tables = 2 * TEARDOWN_BATCH as u32 + 3;
    for t in 0..tables {
        for p in [0u32, 7, 300] {
            let at = 0x0800_0000 + t * span + p * 0x1000;
            let f = alloc.allocate_frame(Zone::Lowmem).unwrap();
            let flags = if p == 7 { USER_RW | COW } else { USER_RW };
            space
                .map(Page::from_start_address(va(at)).unwrap(), f, flags, alloc)
                .unwrap()
                .flush(cpu);
            mapped.push((va(at), f));
        }
    }
    // A physically contiguous run, and a global user page.
    let run = alloc.allocate_contiguous(20, Zone::Lowmem).unwrap();
    let run_at = 0x0400_0000u32;
    space
        .map_range(
            va(run_at),
            run.start_address(),
            20 * PAGE_SIZE,
            USER_RW,
            LargePages::Avoid,
            alloc,
        )
        .unwrap()
        .flush(cpu);
    for i in 0..20u32 {
        mapped.push((
            va(run_at + i * 0x1000),
            run.checked_add(u64::from(i)).unwrap(),
        ));
    }
    let global_at = 0x0040_0000u32;
    let g = alloc.allocate_frame(Zone::Lowmem).unwrap();
    space
        .map(
            Page::from_start_address(va(global_at)).unwrap(),
            g,
            USER_RW | MapFlags::GLOBAL,
            alloc,
        )
        .unwrap()
        .flush(cpu);
    mapped.push((va(global_at), g));
    // A copy-on-write large page (not the allocator's memory), and a swap
    // entry (not present, with content) that must not be reported.
    let big_at = 0x8000_0000u32;
    let big_pa = 0x1000_0000u64;
    space
        .map_large(
            va(big_at),
            pa(big_pa),
            MapFlags::PRESENT | MapFlags::USER | COW,
            alloc,
        )
        .unwrap()
        .flush(cpu);
    let swap_at = 0x0800_0000 + 0x2000;
    let slot = space.walk(va(swap_at)).unwrap().pte.unwrap().0;
    let swap = <M::Pte as Entry>::from_raw(0x0012_3000 | 0b110 << 9);
    let table = space.access().table(slot.table).unwrap();
    <M::Pte as Entry>::store(&table, slot.index, swap);
    drop(table);

    // Every page in the TLB (written, so A and D are set); the large page
    // read only.
    for &(at, _) in &mapped {
        cpu.translate(at, Access::USER_WRITE).unwrap();
        assert!(cpu.tlb_snapshot().peek(at).is_some());
    }
    cpu.translate(va(big_at + 0x1234), Access::USER_READ)
        .unwrap();
    let before = cpu.tlb_stats();

    let released = RefCell::new(Vec::<(VirtAddr, Unmapped)>::new());
    let (unmapped, freed) = space
        .teardown_releasing(va(USER_END), cpu, alloc, |at, leaf| {
            // Released only once no translation of it is left.
            assert!(
                cpu.tlb_snapshot().peek(at).is_none(),
                "{at} still in the TLB"
            );
            assert!(
                cpu.translate(at, Access::USER_READ).is_err(),
                "{at} still translates"
            );
            released.borrow_mut().push((at, leaf));
        })
        .unwrap();
    let released = released.into_inner();
    let after = cpu.tlb_stats();

    assert_eq!(unmapped.pages, mapped.len());
    assert_eq!(unmapped.large_pages, 1);
    assert_eq!(released.len(), mapped.len() + 1, "each leaf released once");
    let mut small: Vec<(VirtAddr, PhysFrame)> = released
        .iter()
        .filter(|(_, u)| u.size == PageSize::Size4KiB)
        .map(|&(at, u)| (at, PhysFrame::containing_address(u.base)))
        .collect();
    small.sort();
    mapped.sort();
    assert_eq!(small, mapped, "every data frame, at its address");
    let distinct: BTreeSet<_> = small.iter().map(|&(_, f)| f).collect();
    assert_eq!(distinct.len(), small.len(), "no frame released twice");
    for &(at, u) in &released {
        if u.size == PageSize::Size4KiB {
            assert!(
                u.flags
                    .contains(USER_RW | MapFlags::ACCESSED | MapFlags::DIRTY)
            );
            let cow = at.as_u32() >= 0x0800_0000
                && (at.as_u32() - 0x0800_0000) % (M::pmd_span() as u32) == 0x7000;
            assert_eq!(u.flags.contains(COW), cow, "{at}");
        } else {
            assert_eq!(
                (at, u.base, u.size),
                (va(big_at), pa(big_pa), M::LARGE_PAGE_SIZE)
            );
            assert_eq!(
                u.flags,
                MapFlags::PRESENT | MapFlags::USER | COW | MapFlags::ACCESSED
            );
        }
    }
    // Tables: one per block of `tables`, the run's, the global page's.
    assert_eq!(freed.pte_tables, tables as usize + 2);
    // PAE: the PMD tables of the first and the third GiB.
    assert_eq!(freed.pmd_tables, if M::PMD_FOLDED { 0 } else { 2 });
    // One CR3 reload per batch (plus PAE's for the PMD tables), one invlpg
    // for the global page (plus PAE's one per PMD table).
    let batches = (tables as usize + 3).div_ceil(TEARDOWN_BATCH) as u64;
    let pmd_reload = u64::from(!M::PMD_FOLDED);
    assert_eq!(after.cr3_loads - before.cr3_loads, batches + pmd_reload);
    assert_eq!(after.invlpg - before.invlpg, 1 + 2 * pmd_reload);
    assert_eq!(after.global_flushes, before.global_flushes);
    small.into_iter().map(|(_, f)| f).collect()
}

fn teardown_releases_every_frame_after_the_flush<M: PagingMode>() {
    let ram = SimRam::new();
    let mut m = Machine::<M>::new(&ram);
    let before: BTreeSet<_> = m.alloc.live_frames().into_iter().collect();
    let space = Mapper::<M, _>::create_isolated(
        SimAccess::new(&ram),
        paging_core::CpuFeatures::full::<M>(),
        &mut m.alloc,
    )
    .unwrap();
    let cpu = Mmu::new(&ram, SimConfig::for_mode::<M>());
    cpu.load_cr3(space.root().as_u64() as u32).unwrap();
    let data = populate_and_tear_down(space, &mut m.alloc, &cpu);
    for f in data {
        m.alloc.deallocate_frame(f);
    }
    let after: BTreeSet<_> = m.alloc.live_frames().into_iter().collect();
    assert_eq!(
        after, before,
        "every table, the PGD and every data frame are back"
    );
    assert_eq!(m.alloc.double_frees(), 0);
}

fn an_unaligned_user_end_is_refused_before_anything_changes<M: PagingMode>() {
    let ram = SimRam::new();
    let mut m = Machine::<M>::new(&ram);
    let space = Mapper::<M, _>::create_isolated(
        SimAccess::new(&ram),
        paging_core::CpuFeatures::full::<M>(),
        &mut m.alloc,
    )
    .unwrap();
    let live = m.alloc.live();
    let end = USER_END - 0x1000;
    let e = space
        .teardown_releasing(va(end), &m.mmu, &mut m.alloc, |_, _| {
            panic!("nothing to release")
        })
        .unwrap_err();
    assert_eq!(
        e,
        FreeError::Unaligned {
            addr: u64::from(end)
        }
    );
    assert_eq!(m.alloc.live(), live);
}

/// A PTE table the access cannot reach stops the teardown before its entry
/// is unlinked: what came before (a large page, whose frame is never read
/// as a table, and a reachable table) is released, the unreachable table
/// stays linked and mapped, and the error names it.
fn an_unreachable_table_stops_the_teardown_with_its_entry_linked<M: PagingMode>() {
    let ram = SimRam::new();
    let mut m = Machine::<M>::new(&ram);
    let features = paging_core::CpuFeatures::full::<M>();
    let mut space =
        Mapper::<M, _>::create_isolated(SimAccess::new(&ram), features, &mut m.alloc).unwrap();
    let span = M::pmd_span() as u32;
    // A large page far above every table, then two PTE tables.
    let (big, a, b) = (0x0400_0000u32, 0x0800_0000u32, 0x0800_0000 + span);
    space
        .map_large(va(big), pa(0x4000_0000), USER_RW, &mut m.alloc)
        .unwrap()
        .ignore();
    for (at, to) in [(a, 0x0010_0000u64), (b, 0x0020_0000)] {
        space
            .map(
                Page::from_start_address(va(at)).unwrap(),
                PhysFrame::containing_address(pa(to)),
                USER_RW,
                &mut m.alloc,
            )
            .unwrap()
            .ignore();
    }
    let table_of = |at: u32| {
        let pmd = space.walk(va(at)).unwrap().pmd.unwrap().1;
        PhysFrame::containing_address(pmd.addr())
    };
    let (ta, tb) = (table_of(a), table_of(b));
    assert!(tb > ta, "tables come from a bump allocator");
    // Everything up to the first PTE table is reachable, the second not.
    let limit = ta.start_address().as_u64() + 4096;
    let short = Mapper::<M, _>::new_isolated(space.root(), SimAccess::below(&ram, limit), features)
        .unwrap();
    let released = RefCell::new(Vec::new());
    let e = short
        .teardown_releasing(va(USER_END), &m.mmu, &mut m.alloc, |at, _| {
            released.borrow_mut().push(at.as_u32());
        })
        .unwrap_err();
    assert_eq!(
        e,
        FreeError::Access(paging_core::AccessError::Unreachable(tb))
    );
    let released = released.into_inner();
    assert!(released.contains(&big), "{released:x?}");
    assert!(released.contains(&a), "{released:x?}");
    assert!(!released.contains(&b), "{released:x?}");
    // The unreachable table is still linked, and still maps its page.
    assert_eq!(space.translate(va(b)).unwrap().base, pa(0x0020_0000));
    assert!(space.translate(va(a)).is_err());
    assert!(space.translate(va(big)).is_err());
}

paging_sim::for_each_mode!(
    an_unreachable_table_stops_the_teardown_with_its_entry_linked,
    teardown_releases_every_frame_after_the_flush,
    an_unaligned_user_end_is_refused_before_anything_changes
);
