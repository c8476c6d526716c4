//! Building on tables someone else made (a loader, a hypervisor), handing
//! early tables over to final ones, and the order in which table-lifecycle
//! hooks see it all.
mod mapper_support;

use std::sync::Mutex;

use mapper_support::{Rig, frame, machine, pa, unreachable_frame, va};
use paging_core::{
    Entry, ErrorKind, FreshTables, InstallError, LargePages, Level, MapFlags, Mapper, Page,
    PagingError, PagingMode, PhysFrame, PmdEntry, PteEntry, TableHooks,
};
use paging_sim::{Mmu, SimAccess};

fn page(x: u32) -> Page {
    Page::from_start_address(va(x)).unwrap()
}

/// Write raw entry `index` of the table in `table` (a "foreign" writer).
fn poke<M: PagingMode>(rig: &Rig<M>, table: PhysFrame, index: usize, raw: u64) {
    let addr = pa(table.start_address().as_u64() + (index * M::ENTRY_BYTES) as u64);
    if M::ENTRY_BYTES == 4 {
        rig.ram.write_u32(addr, raw as u32).unwrap();
    } else {
        rig.ram.write_u64(addr, raw).unwrap();
    }
}

fn a_loaders_mappings_are_kept<M: PagingMode>() {
    let mut rig = machine::<M>();
    // The "loader" maps 0xC000_0000 -> 0x10_0000 with its own PTE table,
    // built with the backend's entry types but written behind the mapper's back.
    let pte_table = frame(0x3F_0000);
    let pte = M::Pte::page(frame(0x10_0000), MapFlags::KERNEL_RW | MapFlags::PRESENT).unwrap();
    poke(&rig, pte_table, M::pte_index(va(0xC000_0000)), pte.raw());
    let pmd_slot = if M::PMD_FOLDED {
        rig.mapper.walker().pgd_slot(va(0xC000_0000))
    } else {
        // PAE: give the loader's PMD table a PDPTE via the mapper (a harmless
        // page elsewhere in the same GiB), then poke the PMD entry.
        rig.mapper
            .map(
                page(0xFFC0_0000),
                frame(0x1000),
                MapFlags::KERNEL_RW,
                &mut rig.alloc,
            )
            .unwrap()
            .flush(&rig.mmu);
        let walk = rig.mapper.walk(va(0xC000_0000)).unwrap();
        walk.pmd.unwrap().0
    };
    let pmd = M::Pmd::table(pte_table, false).unwrap();
    poke(&rig, pmd_slot.table, pmd_slot.index, pmd.raw());
    paging_core::TlbOps::flush_everything(&rig.mmu);
    assert_eq!(rig.hw(va(0xC000_0123)), Ok(pa(0x10_0123)));

    // Mapping next to it, in the loader's table, keeps the loader's entry.
    rig.mapper
        .map(
            page(0xC000_1000),
            frame(0x20_0000),
            MapFlags::KERNEL_RW,
            &mut rig.alloc,
        )
        .unwrap()
        .flush(&rig.mmu);
    assert_eq!(rig.hw(va(0xC000_0123)), Ok(pa(0x10_0123)));
    assert_eq!(rig.hw(va(0xC000_1123)), Ok(pa(0x20_0123)));
    // A range over it is refused as a whole and changes nothing.
    let e = rig.assert_unchanged(|r| {
        r.mapper.map_range(
            va(0xBFFF_E000),
            pa(0x30_0000),
            0x4000,
            MapFlags::KERNEL_RW,
            LargePages::Use,
            &mut r.alloc,
        )
    });
    assert_eq!(e.unwrap_err().kind(), ErrorKind::AlreadyMapped);
    assert_eq!(rig.hw(va(0xC000_0123)), Ok(pa(0x10_0123)));
}

fn early_tables_are_copied_on_handover<M: PagingMode>() {
    let mut rig = machine::<M>();
    let span = M::pmd_span() as u32;
    let start = 0xFF00_0000u32 & !(span - 1);
    // An "early" table for the second slot, holding one mapping, in use
    // (so the CPU caches its PDE).
    rig.mapper
        .map(
            page(start + span + 0x5000),
            frame(0xB_8000),
            MapFlags::KERNEL_UNCACHED,
            &mut rig.alloc,
        )
        .unwrap()
        .flush(&rig.mmu);
    assert_eq!(rig.hw(va(start + span + 0x5000)), Ok(pa(0xB_8000)));
    let early = rig
        .mapper
        .walk(va(start + span))
        .unwrap()
        .pmd
        .unwrap()
        .1
        .addr();

    // Three consecutive frames become the tables of three slots.
    let first = rig.alloc_contiguous(3);
    let replaced = rig
        .mapper
        .install_pte_tables_isolated(
            va(start),
            first,
            3,
            FreshTables::Zero,
            &rig.mmu,
            &mut rig.alloc,
        )
        .unwrap();
    assert_eq!(
        replaced.frames().collect::<Vec<_>>(),
        [PhysFrame::containing_address(early)]
    );
    // The early mapping survived, now served by frame first + 1 ...
    assert_eq!(rig.hw(va(start + span + 0x5000)), Ok(pa(0xB_8000)));
    for k in 0..3u32 {
        let walk = rig.mapper.walk(va(start + k * span)).unwrap();
        assert_eq!(
            walk.pmd.unwrap().1.addr(),
            first.checked_add(k.into()).unwrap().start_address()
        );
    }
    // ... and the CPU really walks the new table: a mapping written only
    // into it is seen (a stale cached PDE would still point at the old one).
    let slot = rig
        .mapper
        .walk(va(start + span + 0x6000))
        .unwrap()
        .pte
        .unwrap()
        .0;
    assert_eq!(slot.table, first.checked_add(1).unwrap());
    poke(
        &rig,
        slot.table,
        slot.index,
        M::Pte::page(frame(0xC_0000), MapFlags::KERNEL_RW | MapFlags::PRESENT)
            .unwrap()
            .raw(),
    );
    assert_eq!(rig.hw(va(start + span + 0x6000)), Ok(pa(0xC_0000)));
    // Installing the same frames again changes nothing.
    let again = rig.assert_unchanged(|r| {
        r.mapper.install_pte_tables_isolated(
            va(start),
            first,
            3,
            FreshTables::Zero,
            &r.mmu,
            &mut r.alloc,
        )
    });
    assert!(again.unwrap().is_empty());
}

fn install_errors_change_nothing<M: PagingMode>() {
    let mut rig = machine::<M>();
    let span = M::pmd_span() as u32;
    let size = M::LARGE_PAGE_SIZE.bytes();
    rig.mapper
        .map_large(
            va(0x8000_0000 + span),
            pa(size),
            MapFlags::KERNEL_RW,
            &mut rig.alloc,
        )
        .unwrap()
        .flush(&rig.mmu);
    let first = rig.alloc_contiguous(40);
    let e = rig.assert_unchanged(|r| {
        r.mapper.install_pte_tables_isolated(
            va(0x8000_1000),
            first,
            1,
            FreshTables::Zero,
            &r.mmu,
            &mut r.alloc,
        )
    });
    assert_eq!(e.unwrap_err().kind(), ErrorKind::Unaligned);
    let e = rig.assert_unchanged(|r| {
        r.mapper.install_pte_tables_isolated(
            va(0x8000_0000),
            first,
            40,
            FreshTables::Zero,
            &r.mmu,
            &mut r.alloc,
        )
    });
    assert_eq!(
        e.unwrap_err(),
        InstallError::TooManyTables { count: 40, max: 32 }
    );
    let e = rig.assert_unchanged(|r| {
        r.mapper.install_pte_tables_isolated(
            va(0x8000_0000),
            first,
            3,
            FreshTables::Zero,
            &r.mmu,
            &mut r.alloc,
        )
    });
    assert!(matches!(
        e.unwrap_err(),
        InstallError::LargePageInTheWay { .. }
    ));
    let e = rig.assert_unchanged(|r| {
        r.mapper.install_pte_tables_isolated(
            va(0u32.wrapping_sub(span)),
            first,
            2,
            FreshTables::Zero,
            &r.mmu,
            &mut r.alloc,
        )
    });
    assert_eq!(e.unwrap_err().kind(), ErrorKind::OutOfRange);
    let beyond = frame(unreachable_frame::<M>());
    let e = rig.assert_unchanged(|r| {
        r.mapper.install_pte_tables_isolated(
            va(0x4000_0000),
            beyond,
            1,
            FreshTables::Zero,
            &r.mmu,
            &mut r.alloc,
        )
    });
    assert_eq!(e.unwrap_err().kind(), ErrorKind::OutOfRange);
    if !M::PMD_FOLDED {
        // PAE: an empty GiB needs a PMD table from the allocator.
        rig.alloc.fail_after(0);
        let e = rig.assert_unchanged(|r| {
            r.mapper.install_pte_tables_isolated(
                va(0x4000_0000),
                first,
                1,
                FreshTables::Zero,
                &r.mmu,
                &mut r.alloc,
            )
        });
        assert_eq!(e.unwrap_err(), InstallError::OutOfFrames);
        rig.alloc.never_fail();
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Event {
    Allocated(PhysFrame, Level),
    Released(PhysFrame, Level),
    Written(PhysFrame, Level, usize, u64),
}

/// Hooks that record every call and check, at release time, that no CPU
/// still caches a PDE pointing at the released table.
struct Recorder {
    events: Mutex<Vec<Event>>,
    mmu: &'static Mmu<'static>,
}

impl TableHooks for &Recorder {
    fn table_allocated(&self, frame: PhysFrame, level: Level) {
        self.events
            .lock()
            .unwrap()
            .push(Event::Allocated(frame, level));
    }
    fn table_released(&self, frame: PhysFrame, level: Level) {
        let cached = self.mmu.tlb_snapshot().pde_entries();
        assert!(
            cached.iter().all(|(_, e)| e.table != frame),
            "released while cached"
        );
        self.events
            .lock()
            .unwrap()
            .push(Event::Released(frame, level));
    }
    fn entry_written(&self, table: PhysFrame, level: Level, index: usize, _old: u64, new: u64) {
        self.events
            .lock()
            .unwrap()
            .push(Event::Written(table, level, index, new));
    }
}

fn hooks_see_tables_complete_before_linking_and_released_after_flushing<M: PagingMode>() {
    let rig = machine::<M>();
    let mmu: &'static Mmu<'static> = Box::leak(Box::new(Mmu::new(
        rig.ram,
        paging_sim::SimConfig::for_mode::<M>(),
    )));
    let recorder: &'static Recorder = Box::leak(Box::new(Recorder {
        events: Mutex::new(Vec::new()),
        mmu,
    }));
    let mut alloc = rig.alloc;
    let live = alloc.live();
    let mut mapper = Mapper::<M, _>::create_isolated(
        SimAccess::new(rig.ram),
        paging_core::CpuFeatures::full::<M>(),
        &mut alloc,
    )
    .unwrap()
    .with_hooks(recorder);
    mmu.load_cr3(mapper.root().as_u64() as u32).unwrap();
    mapper
        .map(
            page(0x4000_0000),
            frame(0x7000),
            MapFlags::KERNEL_RW,
            &mut alloc,
        )
        .unwrap()
        .flush(mmu);
    mmu.read_u32(va(0x4000_0000)).unwrap();
    let events = recorder.events.lock().unwrap().clone();
    // Every new table is complete and announced before anything links it:
    // all announcements come before the first write into a live table.
    let first_write = events
        .iter()
        .position(|e| matches!(e, Event::Written(..)))
        .unwrap();
    let announced = events
        .iter()
        .filter(|e| matches!(e, Event::Allocated(..)))
        .count();
    assert_eq!(announced, if M::PMD_FOLDED { 1 } else { 2 }, "{events:?}");
    assert!(
        events[..first_write]
            .iter()
            .all(|e| matches!(e, Event::Allocated(..))),
        "{events:?}"
    );
    assert_eq!(first_write, announced, "{events:?}");
    let pte_table = events.iter().find_map(|e| match e {
        Event::Allocated(f, Level::Pte) => Some(*f),
        _ => None,
    });
    let (_, f) = mapper.unmap(va(0x4000_0000)).unwrap();
    f.flush(mmu);
    mapper
        .free_empty_tables(va(0), 1 << 32, mmu, &mut alloc)
        .unwrap();
    let events = recorder.events.lock().unwrap().clone();
    assert!(
        events.contains(&Event::Released(pte_table.unwrap(), Level::Pte)),
        "{events:?}"
    );
    assert_eq!(alloc.live(), live + 1, "only the new PGD is left");
}

paging_sim::for_each_mode!(
    a_loaders_mappings_are_kept,
    early_tables_are_copied_on_handover,
    install_errors_change_nothing,
    hooks_see_tables_complete_before_linking_and_released_after_flushing,
);

fn a_populated_table_links_into_a_second_hierarchy_as_it_is<M: PagingMode>() {
    let mut rig = machine::<M>();
    let span = M::pmd_span() as u32;
    let start = 0xFF00_0000u32 & !(span - 1);
    // Hierarchy 1 (the boot tables) has a table with a console mapping.
    rig.mapper
        .map(
            page(start + 0x3000),
            frame(0xB_8000),
            MapFlags::KERNEL_UNCACHED,
            &mut rig.alloc,
        )
        .unwrap()
        .flush(&rig.mmu);
    let table =
        PhysFrame::containing_address(rig.mapper.walk(va(start)).unwrap().pmd.unwrap().1.addr());
    // Hierarchy 2 (the final tables) links that same frame, kept as it is.
    let mut second = Mapper::<M, _>::create_isolated(
        paging_sim::SimAccess::new(rig.ram),
        paging_core::CpuFeatures::full::<M>(),
        &mut rig.alloc,
    )
    .unwrap();
    let replaced = second
        .install_pte_tables_isolated(
            va(start),
            table,
            1,
            FreshTables::Keep,
            &rig.mmu,
            &mut rig.alloc,
        )
        .unwrap();
    assert!(replaced.is_empty());
    rig.mmu.load_cr3(second.root().as_u64() as u32).unwrap();
    assert_eq!(
        rig.hw(va(start + 0x3000)),
        Ok(pa(0xB_8000)),
        "seen through the second hierarchy"
    );
    rig.reload_cr3();
    assert_eq!(
        rig.hw(va(start + 0x3000)),
        Ok(pa(0xB_8000)),
        "and still through the first"
    );
    // Zeroing it instead would have wiped the live console.
    let mut third = Mapper::<M, _>::create_isolated(
        paging_sim::SimAccess::new(rig.ram),
        paging_core::CpuFeatures::full::<M>(),
        &mut rig.alloc,
    )
    .unwrap();
    let fresh = rig.alloc_contiguous(1);
    rig.ram.fill_frame(fresh, 0xAA);
    third
        .install_pte_tables_isolated(
            va(start),
            fresh,
            1,
            FreshTables::Zero,
            &rig.mmu,
            &mut rig.alloc,
        )
        .unwrap();
    assert!(
        rig.ram.frame_words(fresh).iter().all(|&w| w == 0),
        "a fresh frame is zeroed"
    );
}

paging_sim::for_each_mode!(a_populated_table_links_into_a_second_hierarchy_as_it_is);
