//! Bad inputs of kmap that `errors.rs` does not cover, each refused with a
//! typed error while slot PTEs, counts and capacity stay as they were (see
//! `docs/bad-inputs.md` for the whole matrix): slot tables the pool cannot
//! reach, and page tables in highmem with no local slot (or no CPU) to map
//! them through.

mod support;

use kmap::{GlobalFlush, HighmemTables, KmapError, KmapTask, LocalSlots, SpinWait};
use paging_core::{
    AccessError, ErrorKind, MapError, MapFlags, Mapper, Page, PagingError, PhysFrame, Zone,
};
use paging_sim::{MmuVirt, SimAccess, SimRam};
use support::{CPUS, Kernel, ModeUnderTest, PKMAP_BASE, TestFixmap, reads_frame, va};

fn unreachable_slot_tables_keep_every_slot_and_promise<M: ModeUnderTest>() {
    let ram = SimRam::new();
    let k = Kernel::<M>::new(&ram);
    // The pool reaches its slot PTEs through an access that reaches
    // nothing: every claim of a new slot fails.
    let pool = kmap::PersistentPool::<M, _, _, GlobalFlush, SpinWait, 4>::new(
        &k.window,
        va(PKMAP_BASE),
        k.direct,
        SimAccess::below(&ram, 0),
        &k.m.mmu,
        GlobalFlush,
        SpinWait,
    )
    .unwrap();
    // SAFETY: the only token of this thread.
    let mut task = unsafe { KmapTask::new() };
    let high = k.high_page(0);
    let window_table = k.window.pte_slot(va(PKMAP_BASE)).unwrap().table;
    let refused = KmapError::Access(AccessError::Unreachable(window_table));
    let before = k.window_ptes();

    assert_eq!(pool.try_map(&task, high).unwrap_err(), refused);
    assert_eq!(refused.kind(), ErrorKind::Unreachable);
    // The waiting map gives back the capacity it took for the claim.
    assert_eq!(pool.map(&mut task, high).unwrap_err(), refused);
    // A reservation's ticket is not spent by a refused map.
    {
        let r = pool.try_reserve(&mut task, 2).unwrap();
        assert_eq!(r.map(high).unwrap_err(), refused);
        assert_eq!(r.remaining(), 2);
        // Lowmem needs no slot: the direct map still answers.
        let low = r
            .map(PhysFrame::containing_address(k.m.mapper.root()))
            .unwrap();
        assert!(low.is_direct());
        assert_eq!(r.remaining(), 1);
    }
    assert_eq!(k.window_ptes(), before);
    assert_eq!(pool.in_use(), 0);
    assert_eq!(pool.lookup(high), None);
    // Every promise came back: the whole pool can be reserved.
    assert_eq!(pool.try_reserve(&mut task, 4).unwrap().remaining(), 4);
}

fn highmem_tables_without_a_slot_or_a_cpu_change_nothing<M: ModeUnderTest>() {
    let ram = SimRam::new();
    let mut k = Kernel::<M>::new(&ram);
    let walk_slots = LocalSlots::<_, _, _, _, _, 1, CPUS>::new(
        &k.fixmap,
        TestFixmap::PTE_WALK,
        false,
        k.direct,
        &k.m.mmu,
    )
    .unwrap();
    let virt = MmuVirt::new(&k.m.mmu);
    let data = |i: u64| support::frame(M::DATA + 0x100_0000 + i * 4096);
    let page = |x: u32| Page::from_start_address(va(x)).unwrap();
    let tables = HighmemTables::new_isolated(&walk_slots, &virt, k.direct, || 0);
    let mut hi = Mapper::<M, _>::create_isolated(
        tables,
        paging_core::CpuFeatures::full::<M>(),
        &mut k.m.alloc,
    )
    .unwrap()
    .with_pte_zone(Zone::PreferHighmem);
    hi.map(
        page(0x0800_0000),
        data(0),
        MapFlags::KERNEL_RW,
        &mut k.m.alloc,
    )
    .unwrap()
    .ignore();
    let pte_table = hi.walk(va(0x0800_0000)).unwrap().pte.unwrap().0.table;
    assert!(
        !k.direct.is_lowmem(pte_table),
        "the PTE table is in highmem"
    );

    // CPU 0's only walk slot is taken (a nested kmap, say): the PTE table
    // cannot be mapped, and the mapper says so without writing anything.
    let held = walk_slots.map(0, k.high_page(1)).unwrap();
    let (snapshot, live) = (k.m.snapshot(), k.m.alloc.live());
    let e = hi.map(
        page(0x0800_1000),
        data(1),
        MapFlags::KERNEL_RW,
        &mut k.m.alloc,
    );
    assert_eq!(e.unwrap_err(), MapError::Access(AccessError::NoSlot));
    assert_eq!(
        hi.unmap(va(0x0800_0000)).unwrap_err().kind(),
        ErrorKind::Exhausted
    );
    assert!(k.m.snapshot() == snapshot, "tables changed");
    assert_eq!(k.m.alloc.live(), live);
    assert!(reads_frame(&k.m.mmu, held.va(), held.frame()));
    assert_eq!(walk_slots.depth(0), Some(1));
    drop(held);

    // A CPU number with no stack: the table is unreachable, nothing changes.
    let (snapshot, live) = (k.m.snapshot(), k.m.alloc.live());
    let tables = HighmemTables::new_isolated(&walk_slots, &virt, k.direct, || CPUS);
    let mut wrong_cpu =
        Mapper::<M, _>::new_isolated(hi.root(), tables, paging_core::CpuFeatures::full::<M>())
            .unwrap();
    let e = wrong_cpu.map(
        page(0x0800_1000),
        data(1),
        MapFlags::KERNEL_RW,
        &mut k.m.alloc,
    );
    assert_eq!(
        e.unwrap_err(),
        MapError::Access(AccessError::Unreachable(pte_table))
    );
    assert!(k.m.snapshot() == snapshot, "tables changed");
    assert_eq!(k.m.alloc.live(), live);
    // With the slot free again, the same map succeeds.
    hi.map(
        page(0x0800_1000),
        data(1),
        MapFlags::KERNEL_RW,
        &mut k.m.alloc,
    )
    .unwrap()
    .ignore();
    assert_eq!(walk_slots.depth(0), Some(0));
}

paging_sim::for_each_mode!(
    unreachable_slot_tables_keep_every_slot_and_promise,
    highmem_tables_without_a_slot_or_a_cpu_change_nothing,
);
