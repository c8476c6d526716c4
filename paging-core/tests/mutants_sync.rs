//! The lazy sync path never takes a directory's own, different entry for
//! the reference's (same flags, different table is a real fault), and
//! publishing copies kernel entries only (never the reference's user half)
//! and exactly the range asked for; the fault path starts at the kernel
//! start, inclusive.
//! Written for mutants that `cargo xtask mutants` found no test noticed
//! (docs/testing.md).
mod mapper_support;

use mapper_support::{frame, pa, va};
use paging_core::{
    CpuFeatures, KernelSync, MapFlags, Mapper, NativeHooks, Page, PagingMode, PhysAddr,
    SyncOutcome, VirtAddr, sync_kernel_entry,
};
use paging_sim::{Access, Machine, SimAccess, SimRam};
use paging_x86_2level::TwoLevel;
use paging_x86_pae::Pae;

const VMALLOC: u32 = 0xE000_0000;

fn page(x: u32) -> Page {
    Page::from_start_address(va(x)).unwrap()
}

/// The reference maps the page at `at` to the frame at `pfn`, kernel
/// read-write, and flushes it.
fn map_kernel<M: PagingMode>(m: &mut Machine<'_, M>, at: u32, pfn: u64) {
    m.mapper
        .map(page(at), frame(pfn), MapFlags::KERNEL_RW, &mut m.alloc)
        .unwrap()
        .flush(&m.mmu);
}

/// A directory of its own (a private kernel half), its tables taken from
/// `m`'s allocator.
fn isolated<'r, M: PagingMode>(
    ram: &'r SimRam,
    m: &mut Machine<'r, M>,
) -> Mapper<M, SimAccess<'r>> {
    Mapper::create_isolated(SimAccess::new(ram), CpuFeatures::full::<M>(), &mut m.alloc).unwrap()
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
    map_kernel(&mut m, VMALLOC, 0x30_0000);
    // The directory has its own table where the reference has its own:
    // same kind of entry (present, same table flags), another table.
    let mut d = isolated(&ram, &mut m);
    d.map(
        page(VMALLOC + 0x1000),
        frame(0x40_0000),
        MapFlags::KERNEL_RW,
        &mut m.alloc,
    )
    .unwrap()
    .ignore();
    let before = ram.frame_words(frame(d.root().as_u64() & !0xFFF));
    // SAFETY: both roots are directories in simulated RAM.
    let outcome = unsafe {
        sync_kernel_entry::<M, _, _>(
            &SimAccess::new(&ram),
            &NativeHooks,
            m.mapper.root(),
            d.root(),
            va(VMALLOC),
        )
    };
    assert_eq!(outcome, Ok(SyncOutcome::NotSyncFault));
    assert_eq!(ram.frame_words(frame(d.root().as_u64() & !0xFFF)), before);
    // The directory still sees its own page and not the reference's.
    assert_eq!(hw_in(&m, d.root(), va(VMALLOC + 0x1000)), Ok(pa(0x40_0000)));
    assert!(hw_in(&m, d.root(), va(VMALLOC)).is_err());
    assert_eq!(hw_in(&m, m.mapper.root(), va(VMALLOC)), Ok(pa(0x30_0000)));
}

fn publish_copies_kernel_entries_only<M: PagingMode>() {
    let ram = SimRam::new();
    let mut m = Machine::<M>::new(&ram);
    for (at, pfn) in [(0x0040_0000, 0x50_0000), (0xC000_0000, 0x10_0000)] {
        map_kernel(&mut m, at, pfn);
    }
    let sync = KernelSync::<M, _, _, 4>::new_isolated(
        m.mapper.root(),
        va(0xC000_0000),
        SimAccess::new(&ram),
        NativeHooks,
    );
    let d = isolated(&ram, &mut m);
    sync.register(d.root()).unwrap();
    map_kernel(&mut m, VMALLOC, 0x30_0000);
    let new_entries = if M::PMD_FOLDED { 1 } else { 0 };
    assert_eq!(sync.publish(va(VMALLOC), 0x1000), Ok(new_entries));
    assert_eq!(hw_in(&m, d.root(), va(VMALLOC)), Ok(pa(0x30_0000)));
    assert!(hw_in(&m, d.root(), va(0x0040_0000)).is_err(), "user half");
    // All of memory: still only the kernel half, and nothing new.
    assert_eq!(sync.publish(va(0), 1 << 32), Ok(0));
    assert!(hw_in(&m, d.root(), va(0x0040_0000)).is_err(), "user half");
    assert_eq!(hw_in(&m, d.root(), va(0xC000_0000)), Ok(pa(0x10_0000)));
}

fn publish_copies_exactly_the_range_asked_for<M: PagingMode>() {
    let ram = SimRam::new();
    let mut m = Machine::<M>::new(&ram);
    map_kernel(&mut m, 0xC000_0000, 0x10_0000);
    let sync = KernelSync::<M, _, _, 4>::new_isolated(
        m.mapper.root(),
        va(0xC000_0000),
        SimAccess::new(&ram),
        NativeHooks,
    );
    let d = isolated(&ram, &mut m);
    sync.register(d.root()).unwrap();
    // Three new 4 MiB regions (three PGD entries in 2-level mode).
    let regions = [VMALLOC, VMALLOC + 0x40_0000, VMALLOC + 0x80_0000];
    for (i, &at) in regions.iter().enumerate() {
        map_kernel(&mut m, at, 0x30_0000 + i as u64 * 0x1000);
    }
    let sees = |at: u32| hw_in(&m, d.root(), va(at)).is_ok();
    if M::PMD_FOLDED {
        // Exactly the first region: its end is the second one's start.
        assert_eq!(sync.publish(va(VMALLOC), 0x40_0000), Ok(1));
        assert_eq!(regions.map(sees), [true, false, false]);
        // The other two, in one call.
        assert_eq!(sync.publish(va(regions[1]), 0x80_0000), Ok(2));
    } else {
        // PAE: the kernel PMD is shared; nothing to copy, all visible.
        assert_eq!(sync.publish(va(VMALLOC), 0xC0_0000), Ok(0));
    }
    assert_eq!(regions.map(sees), [true, true, true]);
}

fn the_fault_path_syncs_from_the_kernel_start_and_never_below<M: PagingMode>() {
    let ram = SimRam::new();
    let mut m = Machine::<M>::new(&ram);
    // The kernel half starts at VMALLOC here; the reference also maps a
    // page just below it.
    for (at, pfn) in [(VMALLOC - 0x1000, 0x50_0000), (VMALLOC, 0x30_0000)] {
        map_kernel(&mut m, at, pfn);
    }
    let sync = KernelSync::<M, _, _, 4>::new_isolated(
        m.mapper.root(),
        va(VMALLOC),
        SimAccess::new(&ram),
        NativeHooks,
    );
    let d = isolated(&ram, &mut m);
    if !M::PMD_FOLDED {
        // PAE: registering links the shared kernel PMD, after which there
        // is nothing left to fault on; check the 2-level rules only.
        return;
    }
    assert_eq!(
        sync.sync_fault(d.root(), va(VMALLOC - 0x1000)),
        Ok(SyncOutcome::NotSyncFault)
    );
    assert!(hw_in(&m, d.root(), va(VMALLOC - 0x1000)).is_err());
    assert_eq!(
        sync.sync_fault(d.root(), va(VMALLOC)),
        Ok(SyncOutcome::Filled)
    );
    assert_eq!(hw_in(&m, d.root(), va(VMALLOC)), Ok(pa(0x30_0000)));
    assert_eq!(
        sync.sync_fault(d.root(), va(VMALLOC)),
        Ok(SyncOutcome::AlreadySynced)
    );
}

#[test]
fn two_level() {
    a_different_entry_with_the_same_flags_is_a_real_fault::<TwoLevel>();
    publish_copies_kernel_entries_only::<TwoLevel>();
    publish_copies_exactly_the_range_asked_for::<TwoLevel>();
    the_fault_path_syncs_from_the_kernel_start_and_never_below::<TwoLevel>();
}

#[test]
fn pae() {
    a_different_entry_with_the_same_flags_is_a_real_fault::<Pae>();
    publish_copies_kernel_entries_only::<Pae>();
    publish_copies_exactly_the_range_asked_for::<Pae>();
    the_fault_path_syncs_from_the_kernel_start_and_never_below::<Pae>();
}

/// The address of `slot`'s entry (8-byte PAE entries).
fn entry_addr(slot: paging_core::Slot) -> PhysAddr {
    pa(slot.table.start_address().as_u64() + slot.index as u64 * 8)
}

/// PAE: a kernel PDE whose high half is not zero (XD, bit 63, set in the
/// reference's table entry). A directory with a private kernel PMD table
/// gets it by the two-step fill (high half, then a compare-and-swap of the
/// low half), so its entry may be found empty, half-filled with the
/// reference's high half (a fill interrupted between its steps: complete
/// it), or holding a high half of its own (not ours: a real fault, left
/// as it is).
#[test]
fn pae_fill_checks_the_high_half_it_finds() {
    const XD_HIGH: u32 = 1 << 31;
    for (found_high, want) in [
        (0, SyncOutcome::Filled),
        (XD_HIGH, SyncOutcome::Filled),
        (1, SyncOutcome::NotSyncFault),
        (XD_HIGH | 1, SyncOutcome::NotSyncFault),
    ] {
        let ram = SimRam::new();
        let mut m = Machine::<Pae>::new(&ram);
        map_kernel(&mut m, VMALLOC, 0x30_0000);
        let rslot = m.mapper.walk(va(VMALLOC)).unwrap().pmd.unwrap().0;
        let high = entry_addr(rslot).as_u64() + 4;
        ram.write_u32(pa(high), ram.read_u32(pa(high)).unwrap() | XD_HIGH)
            .unwrap();
        let reference = ram.read_u64(entry_addr(rslot)).unwrap();
        assert_eq!(reference >> 63, 1);
        // The directory's own kernel PMD table, with another PDE in use.
        let mut d = isolated(&ram, &mut m);
        d.map(
            page(VMALLOC + 0x40_0000),
            frame(0x40_0000),
            MapFlags::KERNEL_RW,
            &mut m.alloc,
        )
        .unwrap()
        .ignore();
        let aslot = d.walk(va(VMALLOC)).unwrap().pmd.unwrap().0;
        let found = u64::from(found_high) << 32;
        ram.write_u64(entry_addr(aslot), found).unwrap();
        // SAFETY: both roots are directories in simulated RAM.
        let outcome = unsafe {
            sync_kernel_entry::<Pae, _, _>(
                &SimAccess::new(&ram),
                &NativeHooks,
                m.mapper.root(),
                d.root(),
                va(VMALLOC),
            )
        };
        assert_eq!(outcome, Ok(want), "found high half {found_high:#x}");
        let now = ram.read_u64(entry_addr(aslot)).unwrap();
        if want == SyncOutcome::Filled {
            assert_eq!(now, reference, "found high half {found_high:#x}");
            assert_eq!(hw_in(&m, d.root(), va(VMALLOC)), Ok(pa(0x30_0000)));
        } else {
            assert_eq!(now, found, "left as it was");
        }
    }
}
