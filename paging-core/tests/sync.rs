//! Kernel mappings shared by many directories: eager publication and the
//! lazy, lock-free fault path, across 100 directories in both modes, and the
//! 2001 race (a nested fault between check and fill) driven at every point.
mod mapper_support;
mod sync_support;

use std::cell::Cell;

use mapper_support::{frame, pa, va};
use paging_core::{
    Entry, KernelSync, MapFlags, Mapper, NativeHooks, Page, PagingMode, PhysAddr, SyncError,
    SyncOutcome, VirtAddr, sync_kernel_entry,
};
use paging_sim::{Access, Machine, SimAccess, SimRam};
use sync_support::Interrupting;

const KERNEL: u32 = 0xC000_0000;
const VMALLOC: u32 = 0xE000_0000;

fn page(x: u32) -> Page {
    Page::from_start_address(va(x)).unwrap()
}

/// A machine whose reference directory maps the kernel image page.
fn with_kernel<M: PagingMode>(ram: &SimRam) -> Machine<'_, M> {
    let mut m = Machine::<M>::new(ram);
    m.mapper
        .map(
            page(KERNEL),
            frame(0x10_0000),
            MapFlags::KERNEL_RW,
            &mut m.alloc,
        )
        .unwrap()
        .flush(&m.mmu);
    m
}

/// Eager sync of the kernel half `[KERNEL, 4 GiB)` against `m`'s directory.
fn kernel_sync<'r, M: PagingMode, const CAP: usize>(
    m: &Machine<'r, M>,
    ram: &'r SimRam,
) -> KernelSync<M, SimAccess<'r>, NativeHooks, CAP> {
    KernelSync::new_isolated(
        m.mapper.root(),
        va(KERNEL),
        SimAccess::new(ram),
        NativeHooks,
    )
}

/// What `root` translates `va` to, through the MMU, after loading it.
fn hw_in<M: PagingMode>(m: &Machine<'_, M>, root: PhysAddr, at: VirtAddr) -> Result<PhysAddr, u32> {
    m.mmu.load_cr3(root.as_u64() as u32).unwrap();
    m.mmu
        .translate(at, Access::READ)
        .map(|t| t.pa)
        .map_err(|f| f.code)
}

fn eager_and_lazy_sync_across_100_directories<M: PagingMode>() {
    let ram = SimRam::new();
    let mut m = with_kernel::<M>(&ram);
    let sync = kernel_sync::<M, 128>(&m, &ram);
    let mut dirs = Vec::new();
    for i in 0..100u64 {
        let mut d = Mapper::<M, _>::create_isolated(
            SimAccess::new(&ram),
            paging_core::CpuFeatures::full::<M>(),
            &mut m.alloc,
        )
        .unwrap();
        d.map(
            page(0x0800_0000),
            frame(0x200_0000 + i * 0x1000),
            MapFlags::KERNEL_RW | MapFlags::USER,
            &mut m.alloc,
        )
        .unwrap()
        .ignore();
        assert_eq!(
            sync.register(d.root()).unwrap(),
            1,
            "the kernel PGD entry is copied"
        );
        dirs.push(d.root());
    }
    assert_eq!(sync.registered(), 100);

    // A vmalloc mapping made only in the reference, in a new top-level region.
    m.mapper
        .map(
            page(VMALLOC),
            frame(0x30_0000),
            MapFlags::KERNEL_RW,
            &mut m.alloc,
        )
        .unwrap()
        .flush(&m.mmu);
    let written = sync.publish(va(VMALLOC), 0x1000).unwrap();
    if M::PMD_FOLDED {
        assert_eq!(written, 100, "one new PGD entry per directory");
    } else {
        assert_eq!(written, 0, "PAE: the kernel PMD is shared, nothing to copy");
    }
    for (i, &d) in dirs.iter().enumerate() {
        assert_eq!(hw_in(&m, d, va(VMALLOC + 8)), Ok(pa(0x30_0008)));
        assert_eq!(
            hw_in(&m, d, va(0x0800_0000)),
            Ok(pa(0x200_0000 + i as u64 * 0x1000))
        );
    }

    // Lazy: another new region, never published.
    let lazy = VMALLOC + 0x0100_0000;
    m.mapper
        .map(
            page(lazy),
            frame(0x31_0000),
            MapFlags::KERNEL_RW,
            &mut m.alloc,
        )
        .unwrap()
        .flush(&m.mmu);
    for &d in &dirs {
        if M::PMD_FOLDED {
            assert_eq!(hw_in(&m, d, va(lazy)), Err(0), "missing PGD entry");
            assert_eq!(sync.sync_fault(d, va(lazy)), Ok(SyncOutcome::Filled));
            assert_eq!(hw_in(&m, d, va(lazy)), Ok(pa(0x31_0000)));
            assert_eq!(sync.sync_fault(d, va(lazy)), Ok(SyncOutcome::AlreadySynced));
        } else {
            assert_eq!(
                hw_in(&m, d, va(lazy)),
                Ok(pa(0x31_0000)),
                "shared kernel PMD"
            );
            assert_eq!(sync.sync_fault(d, va(lazy)), Ok(SyncOutcome::NotSyncFault));
        }
        // Real faults are not sync faults.
        assert_eq!(
            sync.sync_fault(d, va(0x0900_0000)),
            Ok(SyncOutcome::NotSyncFault)
        );
        assert_eq!(
            sync.sync_fault(d, va(0xF000_0000)),
            Ok(SyncOutcome::NotSyncFault)
        );
    }
}

fn registry_errors_change_nothing<M: PagingMode>() {
    let ram = SimRam::new();
    let mut m = with_kernel::<M>(&ram);
    let sync = kernel_sync::<M, 2>(&m, &ram);
    let a = Mapper::<M, _>::create_isolated(
        SimAccess::new(&ram),
        paging_core::CpuFeatures::full::<M>(),
        &mut m.alloc,
    )
    .unwrap();
    let b = Mapper::<M, _>::create_isolated(
        SimAccess::new(&ram),
        paging_core::CpuFeatures::full::<M>(),
        &mut m.alloc,
    )
    .unwrap();
    let mut c = Mapper::<M, _>::create_isolated(
        SimAccess::new(&ram),
        paging_core::CpuFeatures::full::<M>(),
        &mut m.alloc,
    )
    .unwrap();
    sync.register(a.root()).unwrap();
    assert_eq!(
        sync.register(a.root()),
        Err(SyncError::AlreadyRegistered(a.root()))
    );
    sync.register(b.root()).unwrap();
    let e = m.assert_unchanged(|_| sync.register(c.root()));
    assert_eq!(e, Err(SyncError::RegistryFull { capacity: 2 }));
    sync.unregister(b.root()).unwrap();
    assert_eq!(
        sync.unregister(b.root()),
        Err(SyncError::NotRegistered(b.root()))
    );
    // A directory mapping the kernel half differently is refused untouched.
    c.map(
        page(KERNEL),
        frame(0x40_0000),
        MapFlags::KERNEL_RW,
        &mut m.alloc,
    )
    .unwrap()
    .ignore();
    let e = m.assert_unchanged(|_| sync.register(c.root()));
    assert!(matches!(e, Err(SyncError::Conflict { .. })), "{e:?}");
    assert_eq!(sync.registered(), 1);
}

/// A reference with a vmalloc mapping, and a directory lacking the entry
/// that synchronises it: its PGD entry (2-level), or, in PAE, the PMD entry
/// of a private copy of the kernel PMD (the Xen PV arrangement).
fn race_setup<M: PagingMode>(ram: &SimRam) -> (Machine<'_, M>, PhysAddr) {
    let mut m = with_kernel::<M>(ram);
    let mut d = Mapper::<M, _>::create_isolated(
        SimAccess::new(ram),
        paging_core::CpuFeatures::full::<M>(),
        &mut m.alloc,
    )
    .unwrap();
    if M::PMD_FOLDED {
        let sync = kernel_sync::<M, 1>(&m, ram);
        sync.register(d.root()).unwrap();
    } else {
        // Private kernel PMD: the directory maps the kernel image itself.
        d.map(
            page(KERNEL),
            frame(0x10_0000),
            MapFlags::KERNEL_RW,
            &mut m.alloc,
        )
        .unwrap()
        .ignore();
    }
    m.mapper
        .map(
            page(VMALLOC),
            frame(0x30_0000),
            MapFlags::KERNEL_RW,
            &mut m.alloc,
        )
        .unwrap()
        .flush(&m.mmu);
    (m, d.root())
}

fn a_nested_fault_between_check_and_fill_is_harmless<M: PagingMode>() {
    // How many loads the outer call makes, with no interruption.
    let probe = {
        let ram = SimRam::new();
        let (m, d) = race_setup::<M>(&ram);
        let access = Interrupting::new(&ram, usize::MAX, None);
        // SAFETY: both roots are directories in simulated RAM.
        let out = unsafe {
            sync_kernel_entry::<M, _, _>(&access, &NativeHooks, m.mapper.root(), d, va(VMALLOC))
        }
        .unwrap();
        assert_eq!(out, SyncOutcome::Filled);
        access.loads.get()
    };
    // The reference entry, then the directory's (the check): the 2001 race
    // is an interrupt right after the check, before the fill.
    assert!(probe >= 2, "reference and directory loads: {probe}");
    // Interrupt after every one of them, and once more after the last.
    for at in 0..=probe {
        let ram = SimRam::new();
        let (m, d) = race_setup::<M>(&ram);
        let reference = m.mapper.root();
        let inner = Cell::new(None);
        let nested = || {
            let plain = SimAccess::new(&ram);
            // SAFETY: both roots are directories in simulated RAM.
            let out = unsafe {
                sync_kernel_entry::<M, _, _>(&plain, &NativeHooks, reference, d, va(VMALLOC))
            };
            inner.set(Some(out.unwrap()));
        };
        let access = Interrupting::new(&ram, at, Some(&nested));
        // SAFETY: both roots are directories in simulated RAM.
        let outer = unsafe {
            sync_kernel_entry::<M, _, _>(&access, &NativeHooks, reference, d, va(VMALLOC))
        }
        .unwrap();
        let inner = inner.get();
        // Exactly one of the two filled the entry; neither saw a bad fault.
        let outcomes = [Some(outer), inner];
        assert!(
            !outcomes.contains(&Some(SyncOutcome::NotSyncFault)),
            "at {at}: {outcomes:?}"
        );
        let filled = outcomes
            .iter()
            .filter(|o| **o == Some(SyncOutcome::Filled))
            .count();
        assert_eq!(filled, 1, "at {at}: {outcomes:?}");
        // The hardware now translates in the directory.
        m.mmu.load_cr3(d.as_u64() as u32).unwrap();
        assert_eq!(m.hw(va(VMALLOC)), Ok(pa(0x30_0000)), "at {at}");
        let _ = <M::Pte as Entry>::NONE;
    }
}

paging_sim::for_each_mode!(
    eager_and_lazy_sync_across_100_directories,
    registry_errors_change_nothing,
    a_nested_fault_between_check_and_fill_is_harmless,
);

fn a_hole_under_a_synced_entry_is_a_real_fault<M: PagingMode>() {
    let ram = SimRam::new();
    let mut m = with_kernel::<M>(&ram);
    let sync = kernel_sync::<M, 4>(&m, &ram);
    let d = Mapper::<M, _>::create_isolated(
        SimAccess::new(&ram),
        paging_core::CpuFeatures::full::<M>(),
        &mut m.alloc,
    )
    .unwrap()
    .root();
    sync.register(d).unwrap();
    m.mapper
        .map(
            page(VMALLOC),
            frame(0x30_0000),
            MapFlags::KERNEL_RW,
            &mut m.alloc,
        )
        .unwrap()
        .ignore();
    if M::PMD_FOLDED {
        assert_eq!(sync.sync_fault(d, va(VMALLOC)), Ok(SyncOutcome::Filled));
    }
    // The guard page next to it shares the (now synced) top-level entry,
    // but the reference does not map it: a handler must not retry it.
    assert_eq!(
        sync.sync_fault(d, va(VMALLOC + 0x1000)),
        Ok(SyncOutcome::NotSyncFault)
    );
    assert_eq!(
        sync.sync_fault(d, va(VMALLOC)),
        Ok(if M::PMD_FOLDED {
            SyncOutcome::AlreadySynced
        } else {
            SyncOutcome::NotSyncFault
        })
    );
}

fn reregistering_ignores_accessed_bits<M: PagingMode>() {
    let ram = SimRam::new();
    let mut m = with_kernel::<M>(&ram);
    // Tables someone else built may leave Accessed clear in the reference
    // (2-level PDE bit 5; a PAE PDPTE has no Accessed bit).
    let slot = m.mapper.walker().pgd_slot(va(KERNEL));
    if M::PMD_FOLDED {
        let at = pa(slot.table.start_address().as_u64() + 4 * slot.index as u64);
        let raw = ram.read_u32(at).unwrap();
        ram.write_u32(at, raw & !0x20).unwrap();
    }
    let sync = kernel_sync::<M, 4>(&m, &ram);
    let d = Mapper::<M, _>::create_isolated(
        SimAccess::new(&ram),
        paging_core::CpuFeatures::full::<M>(),
        &mut m.alloc,
    )
    .unwrap()
    .root();
    assert_eq!(sync.register(d).unwrap(), 1);
    // The CPU walks the directory: it sets Accessed in its copy only.
    assert_eq!(hw_in(&m, d, va(KERNEL)), Ok(pa(0x10_0000)));
    sync.unregister(d).unwrap();
    assert_eq!(sync.register(d), Ok(0), "same entry, A bit aside");
}

paging_sim::for_each_mode!(
    a_hole_under_a_synced_entry_is_a_real_fault,
    reregistering_ignores_accessed_bits
);
