//! Local (per-CPU, LIFO) kmaps through the simulated MMU: context switches
//! with save/restore, interrupts nesting on top of a task's mappings, and
//! guard slots.

mod support;

use paging_core::PAGE_SIZE;
use paging_sim::SimRam;
use support::{Kernel, ModeUnderTest, TestFixmap, read_u64, reads_frame, va};

fn save_and_restore_across_a_context_switch<M: ModeUnderTest>() {
    let ram = SimRam::new();
    let k = Kernel::<M>::new(&ram);
    let local = k.local(false, k.direct);
    let (a0, a1, b0) = (k.high_page(0), k.high_page(1), k.high_page(2));
    let mmu = &k.m.mmu;

    // Task A maps two pages on CPU 0.
    let ga0 = local.map(0, a0).unwrap();
    let ga1 = local.map(0, a1).unwrap();
    let (va0, va1) = (ga0.va(), ga1.va());
    assert!(reads_frame(mmu, va0, a0) && reads_frame(mmu, va1, a1));

    // Switch to task B: A's slots are cleared and invalidated.
    let saved = local.save(0).unwrap();
    assert_eq!((saved.depth(), saved.cpu()), (2, 0));
    assert_eq!(local.depth(0), Some(0));
    assert!(read_u64(mmu, va0).is_err() && read_u64(mmu, va1).is_err());

    // B maps on the same CPU: it gets A's first slot and reads its own page
    // (the TLB entry from A's read was invalidated).
    let gb = local.map(0, b0).unwrap();
    assert_eq!(gb.va(), va0);
    assert!(reads_frame(mmu, va0, b0));
    gb.try_unmap().unwrap();

    // Back to A: same addresses, A's pages, through the TLB.
    local.restore(&saved).unwrap();
    assert_eq!(local.depth(0), Some(2));
    assert!(reads_frame(mmu, va0, a0) && reads_frame(mmu, va1, a1));
    ga1.try_unmap().unwrap();
    ga0.try_unmap().unwrap();
    assert_eq!(local.depth(0), Some(0));
    assert_eq!((k.pte(va0), k.pte(va1)), (0, 0));
    assert_eq!(local.stats().lifo_violations, 0);
}

fn an_interrupt_nests_on_top_of_a_task<M: ModeUnderTest>() {
    let ram = SimRam::new();
    let k = Kernel::<M>::new(&ram);
    let local = k.local(false, k.direct);
    let mmu = &k.m.mmu;
    let (t, i) = (k.high_page(0), k.high_page(1));
    let task = local.map(5, t).unwrap();
    {
        // The interrupt pushes above the task's slot and pops before return.
        let irq = local.map(5, i).unwrap();
        assert_eq!(irq.depth(), 1);
        assert_ne!(irq.va(), task.va());
        assert!(reads_frame(mmu, irq.va(), i));
    }
    assert_eq!(local.depth(5), Some(1));
    assert!(reads_frame(mmu, task.va(), t));
    // Other CPUs' stacks are independent.
    assert_eq!(local.depth(4), Some(0));
    let other = local.map(4, i).unwrap();
    assert_eq!(other.depth(), 0);
    assert_ne!(other.va(), task.va());
    drop(other);
    drop(task);
    assert_eq!(local.stats().lifo_violations, 0);
    assert_eq!(local.stats().maps, 3);
}

fn guard_slots_leave_unmapped_pages_around_each_slot<M: ModeUnderTest>() {
    let ram = SimRam::new();
    let k = Kernel::<M>::new(&ram);
    let mmu = &k.m.mmu;
    let (p, q) = (k.high_page(0), k.high_page(1));
    {
        // Without guards, consecutive slots are adjacent pages.
        let local = k.local(false, k.direct);
        let a = local.map(0, p).unwrap();
        let b = local.map(0, q).unwrap();
        assert_eq!(a.va().as_u32() - b.va().as_u32(), PAGE_SIZE as u32);
        assert!(reads_frame(mmu, va(a.va().as_u32() - PAGE_SIZE as u32), q));
    }
    // The fixmap slot just above the local range is in use (a console):
    // the guard must still separate it from CPU 0's first slot.
    let console = k.high_page(2);
    k.fixmap
        .set_cached(TestFixmap::CONSOLE, console, mmu)
        .unwrap();
    let local = k.local(true, k.direct);
    let a = local.map(0, p).unwrap();
    let b = local.map(0, q).unwrap();
    let (at, bt) = (a.va().as_u32(), b.va().as_u32());
    assert_eq!(at - bt, 2 * PAGE_SIZE as u32);
    assert!(reads_frame(mmu, a.va(), p) && reads_frame(mmu, b.va(), q));
    // Running off either end of either mapping faults.
    for around in [at + 4096, at - 4096, bt + 4096, bt - 4096] {
        let fault = read_u64(mmu, va(around)).unwrap_err();
        assert!(!fault.is_protection(), "{fault}");
    }
    // An 8-byte read straddling the end of `a` faults too, changing nothing.
    assert!(read_u64(mmu, va(at + 4092)).is_err());
    assert!(reads_frame(mmu, TestFixmap::CONSOLE.virt(), console));
    assert_eq!(local.slot_va(0, 1), Some(b.va()));
    assert_eq!(local.slot_va(0, support::DEPTH), None);
}

fn slot_flags_are_configurable<M: ModeUnderTest>() {
    let ram = SimRam::new();
    let k = Kernel::<M>::new(&ram);
    let nx = paging_core::MapFlags::KERNEL_RW | paging_core::MapFlags::NO_EXECUTE;
    let local = k.local(false, k.direct).with_flags(nx);
    if !<M as paging_core::PagingMode>::SUPPORTS_NX {
        // Refused up front, not at the first map.
        assert_eq!(
            local.err(),
            Some(kmap::KmapError::Entry(
                paging_core::EntryError::Unsupported(paging_core::MapFlags::NO_EXECUTE)
            ))
        );
        return;
    }
    let local = local.unwrap();
    let page = k.high_page(0);
    let g = local.map(0, page).unwrap();
    let mmu = &k.m.mmu;
    assert!(reads_frame(mmu, g.va(), page));
    let fetch = mmu.translate(g.va(), paging_sim::Access::EXEC).unwrap_err();
    assert!(fetch.is_fetch() && fetch.is_protection(), "{fetch:?}");
    g.try_unmap().unwrap();
}

paging_sim::for_each_mode!(
    slot_flags_are_configurable,
    save_and_restore_across_a_context_switch,
    an_interrupt_nests_on_top_of_a_task,
    guard_slots_leave_unmapped_pages_around_each_slot,
);
