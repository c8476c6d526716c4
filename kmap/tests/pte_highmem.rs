//! pte-highmem: the paging-core mapper running over `HighmemTables`, with
//! every PTE table in a highmem frame reached through a one-deep local kmap
//! stack, gives the same translations as the same operations on a
//! hierarchy with lowmem tables. Every table access goes through the
//! simulated MMU and TLB of the CPU doing the work; afterwards no local slot
//! is left mapped, not even in the TLB.

mod support;

use std::cell::RefCell;
use std::collections::BTreeSet;

use kmap::{HighmemTables, LocalSlots};
use paging_core::{
    FrameAllocator, LargePages, MapFlags, Mapper, PAGE_SIZE, Page, PageSize, PhysFrame,
    TEARDOWN_BATCH, TableAccess, Unmapped, VirtAddr, Zone,
};
use paging_sim::{Access, Mmu, MmuVirt, SimAccess, SimConfig, SimRam, ZonedAllocator};
use support::{CPUS, Kernel, LOWMEM_LIMIT, ModeUnderTest, PAGE_OFFSET, TestFixmap, frame, va};

/// The user addresses the operations touch: many PTE tables' worth.
fn addresses() -> Vec<VirtAddr> {
    let dense = (0..300u32).map(|i| va(0x0800_0000 + i * 0x5000));
    let sparse = (0..40u32).map(|i| va(0x4000_0000 + i * 0x40_0000 + 0x3000));
    let range = (0..64u32).map(|i| va(0x6000_0000 + i * 0x1000));
    dense.chain(sparse).chain(range).collect()
}

/// The same operations on any hierarchy; their results, as text.
fn operate<M: ModeUnderTest, A: TableAccess>(
    mapper: &mut Mapper<M, A>,
    alloc: &mut ZonedAllocator,
    cpu: &Mmu<'_>,
) -> Vec<String> {
    let data = |i: usize| frame(M::DATA + 0x100_0000 + i as u64 * PAGE_SIZE);
    let user = MapFlags::KERNEL_RW | MapFlags::USER;
    let mut log = Vec::new();
    let addrs = addresses();
    for (i, &a) in addrs.iter().take(340).enumerate() {
        let page = Page::from_start_address(a).unwrap();
        let r = mapper.map(page, data(i), user, alloc).map(|f| f.flush(cpu));
        log.push(format!("map {a}: {r:?}"));
    }
    let r = mapper
        .map_range(
            va(0x6000_0000),
            data(1000).start_address(),
            64 * PAGE_SIZE,
            user,
            LargePages::Avoid,
            alloc,
        )
        .map(|f| f.flush(cpu));
    log.push(format!("range: {r:?}"));
    // Populate the TLB, so the flushes below matter.
    for &a in &addrs {
        let _ = cpu.translate(a, Access::USER_READ);
    }
    // Mapping over a mapping is refused the same way.
    let r = mapper.map(
        Page::from_start_address(addrs[0]).unwrap(),
        data(9),
        user,
        alloc,
    );
    log.push(format!("remap: {:?}", r.map(|f| f.flush(cpu))));
    for (i, &a) in addrs.iter().enumerate() {
        if i % 3 == 0 {
            let r = mapper.unmap(a).map(|(u, f)| {
                f.flush(cpu);
                u
            });
            log.push(format!("unmap {a}: {r:?}"));
        } else if i % 3 == 1 {
            let r = mapper
                .update_flags(a, MapFlags::KERNEL_RO | MapFlags::USER)
                .map(|f| f.flush(cpu));
            log.push(format!("ro {a}: {r:?}"));
        }
    }
    // Empty the sparse region and give its tables back.
    for &a in &addrs[300..340] {
        if let Ok((_, f)) = mapper.unmap(a) {
            f.flush(cpu);
        }
    }
    let r = mapper.free_empty_tables(va(0x4000_0000), 0x1000_0000, cpu, alloc);
    log.push(format!("free: {r:?}"));
    log
}

/// What the CPU running on `root` makes of every address.
fn hardware_view(cpu: &Mmu<'_>) -> Vec<String> {
    let mut probe = addresses();
    probe.extend([va(0x0800_1000), va(0x5000_0000), va(0x6004_0000)]);
    probe
        .iter()
        .flat_map(|&a| {
            [Access::USER_READ, Access::USER_WRITE]
                .map(|acc| format!("{a} {acc:?}: {:?}", cpu.translate(a, acc)))
        })
        .collect()
}

/// A user CPU with its own CR3 over the same RAM.
fn user_cpu<'r, M: ModeUnderTest>(ram: &'r SimRam, root: u64) -> Mmu<'r> {
    let cpu = Mmu::new(ram, SimConfig::for_mode::<M>());
    cpu.load_cr3(root as u32).unwrap();
    cpu
}

fn pte_frames<M: ModeUnderTest, A: TableAccess>(mapper: &Mapper<M, A>) -> Vec<PhysFrame> {
    addresses()
        .into_iter()
        .filter_map(|a| mapper.walk(a).ok()?.pte.map(|(slot, _)| slot.table))
        .collect()
}

fn mapper_with_highmem_tables_matches_lowmem<M: ModeUnderTest>() {
    let ram = SimRam::new();
    let mut k = Kernel::<M>::new(&ram);
    // One slot per CPU is enough: the mapper holds one table at a time.
    let walk_slots = LocalSlots::<_, _, _, _, _, 1, CPUS>::new(
        &k.fixmap,
        TestFixmap::PTE_WALK,
        false,
        k.direct,
        &k.m.mmu,
    )
    .unwrap();
    let virt = MmuVirt::new(&k.m.mmu);
    let alloc = &mut k.m.alloc;

    // Reference: every table in lowmem, reached physically.
    let mut lo = Mapper::<M, _>::create_isolated(
        SimAccess::new(&ram),
        paging_core::CpuFeatures::full::<M>(),
        alloc,
    )
    .unwrap();
    let lo_cpu = user_cpu::<M>(&ram, lo.root().as_u64());
    let lo_log = operate(&mut lo, alloc, &lo_cpu);
    let lo_view = hardware_view(&lo_cpu);

    // Lowmem tables through HighmemTables: all direct, no slot used.
    let tables = HighmemTables::new_isolated(&walk_slots, &virt, k.direct, || 0);
    let mut ld =
        Mapper::<M, _>::create_isolated(tables, paging_core::CpuFeatures::full::<M>(), alloc)
            .unwrap();
    let ld_cpu = user_cpu::<M>(&ram, ld.root().as_u64());
    assert_eq!(operate(&mut ld, alloc, &ld_cpu), lo_log);
    assert_eq!(hardware_view(&ld_cpu), lo_view);
    assert_eq!(walk_slots.stats().maps, 0);
    let direct_accesses = virt.accesses();
    assert!(direct_accesses > 0);

    // PTE tables in highmem, each reached through a local kmap.
    let tables = HighmemTables::new_isolated(&walk_slots, &virt, k.direct, || 0);
    let mut hi =
        Mapper::<M, _>::create_isolated(tables, paging_core::CpuFeatures::full::<M>(), alloc)
            .unwrap()
            .with_pte_zone(Zone::PreferHighmem);
    let hi_cpu = user_cpu::<M>(&ram, hi.root().as_u64());
    let hi_log = operate(&mut hi, alloc, &hi_cpu);
    assert_eq!(hi_log, lo_log);
    assert_eq!(hardware_view(&hi_cpu), lo_view);
    assert!(walk_slots.stats().maps > 0);
    assert!(virt.accesses() > direct_accesses);

    // The mapping iterator reaches the highmem tables through local kmaps
    // and reports exactly what the lowmem hierarchy reports.
    let maps_before = walk_slots.stats().maps;
    let lo_list: Vec<_> = lo
        .mappings(VirtAddr::ZERO, 1 << 32)
        .map(Result::unwrap)
        .collect();
    let hi_list: Vec<_> = hi
        .mappings(VirtAddr::ZERO, 1 << 32)
        .map(Result::unwrap)
        .collect();
    assert!(!lo_list.is_empty());
    assert_eq!(hi_list, lo_list);
    assert!(
        walk_slots.stats().maps > maps_before,
        "highmem tables were kmapped"
    );

    // Where the tables are.
    let (lo_ptes, hi_ptes) = (pte_frames(&lo), pte_frames(&hi));
    assert!(!hi_ptes.is_empty() && hi_ptes.len() == lo_ptes.len());
    for t in &hi_ptes {
        let pa = t.start_address().as_u64();
        assert!(pa >= LOWMEM_LIMIT && M::HIGHMEM.contains(&pa), "{t:?}");
        if M::MAX_PHYS_BITS > 32 {
            assert!(pa >= 1 << 32, "{t:?}");
        }
    }
    assert!(
        lo_ptes
            .iter()
            .all(|t| t.start_address().as_u64() < LOWMEM_LIMIT)
    );
    // The freed highmem tables went back to the allocator.
    let live_high =
        k.m.alloc
            .live_frames()
            .into_iter()
            .filter(|&f| k.m.alloc.is_highmem(f))
            .count();
    let mut distinct = hi_ptes.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(live_high, distinct.len());

    // Nothing left mapped: no slot PTE, no TLB entry, no fault.
    for cpu in 0..CPUS {
        assert_eq!(walk_slots.depth(cpu), Some(0));
        let slot = walk_slots.slot_va(cpu, 0).unwrap();
        assert_eq!(k.pte(slot), 0);
        assert!(k.m.mmu.tlb_snapshot().peek(slot).is_none());
    }
    assert_eq!(walk_slots.stats().lifo_violations, 0);
    assert_eq!(virt.faults(), 0, "{:?}", virt.last_fault());
    // The highmem path is real: without a slot to map into, the mapper
    // reports it, and changes nothing.
    let held = walk_slots.map(0, k.high_page(0)).unwrap();
    let before = k.m.alloc.live();
    let r = hi.map(
        Page::from_start_address(va(0x0800_0000)).unwrap(),
        k.high_page(1),
        MapFlags::KERNEL_RW,
        &mut k.m.alloc,
    );
    assert!(r.is_err(), "{r:?}");
    assert_eq!(k.m.alloc.live(), before);
    drop(held);
}

/// Process exit with every PTE table in highmem: `teardown_releasing`
/// reads each detached table through a local kmap after the flush, hands
/// every data frame over once, never while the user CPU's TLB could still
/// translate to it, and gives every table back.
fn teardown_releasing_through_highmem_tables<M: ModeUnderTest>() {
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
    let alloc = &mut k.m.alloc;
    let before: BTreeSet<PhysFrame> = alloc.live_frames().into_iter().collect();

    let tables = HighmemTables::new_isolated(&walk_slots, &virt, k.direct, || 0);
    let mut space =
        Mapper::<M, _>::create_isolated(tables, paging_core::CpuFeatures::full::<M>(), alloc)
            .unwrap()
            .with_pte_zone(Zone::PreferHighmem);
    let cpu = user_cpu::<M>(&ram, space.root().as_u64());
    let span = M::pmd_span() as u32;
    let mut mapped = Vec::new();
    for t in 0..2 * TEARDOWN_BATCH as u32 + 1 {
        for p in [0u32, 5] {
            let at = va(0x0800_0000 + t * span + p * 0x1000);
            let f = alloc.allocate_frame(Zone::Lowmem).unwrap();
            let flags = MapFlags::KERNEL_RW | MapFlags::USER;
            let flags = if p == 5 {
                flags | MapFlags::SOFTWARE_0
            } else {
                flags
            };
            space
                .map(Page::from_start_address(at).unwrap(), f, flags, alloc)
                .unwrap()
                .flush(&cpu);
            mapped.push((at, f));
        }
    }
    for &(at, _) in &mapped {
        cpu.translate(at, Access::USER_WRITE).unwrap();
        let table = space.walk(at).unwrap().pte.unwrap().0.table;
        assert!(alloc.is_highmem(table), "{table:?}");
    }
    let maps = walk_slots.stats().maps;
    let released = RefCell::new(Vec::new());
    let (unmapped, freed) = space
        .teardown_releasing(va(PAGE_OFFSET), &cpu, alloc, |at, leaf: Unmapped| {
            assert!(cpu.tlb_snapshot().peek(at).is_none(), "{at} in the TLB");
            assert!(cpu.translate(at, Access::USER_READ).is_err(), "{at}");
            assert_eq!(leaf.size, PageSize::Size4KiB);
            let cow = leaf.flags.contains(MapFlags::SOFTWARE_0);
            assert_eq!(cow, (at.as_u32() >> 12) % 2 == 1, "{at}");
            assert!(leaf.flags.contains(MapFlags::DIRTY));
            released
                .borrow_mut()
                .push((at, PhysFrame::containing_address(leaf.base)));
        })
        .unwrap();
    assert!(
        walk_slots.stats().maps > maps,
        "detached tables were kmapped"
    );
    assert_eq!(unmapped.pages, mapped.len());
    assert_eq!(freed.pte_tables, 2 * TEARDOWN_BATCH + 1);
    let mut released = released.into_inner();
    released.sort();
    mapped.sort();
    assert_eq!(released, mapped, "each data frame once, at its address");
    for (_, f) in released {
        alloc.deallocate_frame(f);
    }
    let after: BTreeSet<PhysFrame> = alloc.live_frames().into_iter().collect();
    assert_eq!(after, before, "tables, PGD and data frames all back");
    assert_eq!(alloc.double_frees(), 0);
    for c in 0..CPUS {
        assert_eq!(walk_slots.depth(c), Some(0));
    }
    assert_eq!(walk_slots.stats().lifo_violations, 0);
    assert_eq!(virt.faults(), 0, "{:?}", virt.last_fault());
}

paging_sim::for_each_mode!(
    mapper_with_highmem_tables_matches_lowmem,
    teardown_releasing_through_highmem_tables
);
