//! The persistent pool's life cycle, lowmem and forced mapping, the
//! `map_nowait` fallback and the counters, seen through the simulated MMU.

mod support;

use std::sync::atomic::AtomicU32;

use kmap::{
    AccessedBit, GlobalFlush, KmapTask, NowaitKmap, PerPage, PersistentPool, RangeFlush, SpinWait,
    WaitHook,
};
use paging_core::PAGE_SIZE;
use paging_sim::{SimAccess, SimRam};
use support::{Kernel, ModeUnderTest, PAGE_OFFSET, PKMAP_BASE, read_u64, reads_frame, va};

fn slot_life_cycle<M: ModeUnderTest>() {
    let ram = SimRam::new();
    let k = Kernel::<M>::new(&ram);
    let pool = k.pool::<GlobalFlush, SpinWait, 4>(GlobalFlush, SpinWait);
    // SAFETY: the only token of this test thread.
    let task = unsafe { KmapTask::new() };
    let p: Vec<_> = (0..5).map(|i| k.high_page(i)).collect();
    let tlb0 = k.m.mmu.tlb_stats();

    // count 2: one user. The first slot handed out is slot 1.
    let a = pool.try_map(&task, p[0]).unwrap();
    let at = a.va();
    assert_eq!(at, va(PKMAP_BASE + PAGE_SIZE as u32));
    assert_eq!(pool.slot_count(at), Some(2));
    assert!(reads_frame(&k.m.mmu, at, p[0]));
    // A second user of the same page: same slot, count 3, no new PTE.
    let a2 = pool.try_map(&task, p[0]).unwrap();
    assert_eq!((a2.va(), pool.slot_count(at)), (at, Some(3)));
    drop(a2);
    drop(a);
    // count 1: unused, PTE kept (and the TLB may hold it).
    assert_eq!(pool.slot_count(at), Some(1));
    assert_eq!(pool.lookup(p[0]), Some(at));
    assert_ne!(k.pte(at), 0);
    assert!(k.m.mmu.tlb_snapshot().peek(at).is_some());
    // Mapping it again reuses the slot as is: a hit, no write, no flush.
    let ptes = k.window_ptes();
    let again = pool.try_map(&task, p[0]).unwrap();
    assert_eq!(again.va(), at);
    assert_eq!(k.window_ptes(), ptes);
    drop(again);
    assert_eq!(pool.stats().hits, 2);

    // Fill the other slots (2, 3, then 0 after the wrap): the wrap clears
    // slot 1 and flushes once.
    let held: Vec<_> = p[1..4]
        .iter()
        .map(|&f| pool.try_map(&task, f).unwrap())
        .collect();
    assert_eq!(pool.stats().wraps, 1);
    assert_eq!(pool.slot_count(at), Some(0));
    assert_eq!(pool.lookup(p[0]), None);
    assert_eq!(k.pte(at), 0);
    assert!(k.m.mmu.tlb_snapshot().peek(at).is_none());
    assert_eq!(k.m.mmu.tlb_stats().global_flushes, tlb0.global_flushes + 1);
    assert_eq!(held[2].va(), va(PKMAP_BASE));
    // count 0 again: the next page takes it.
    let b = pool.try_map(&task, p[4]).unwrap();
    assert_eq!(b.va(), at);
    assert!(reads_frame(&k.m.mmu, at, p[4]));
    for g in &held {
        assert!(reads_frame(&k.m.mmu, g.va(), g.frame()));
    }
    let s = pool.stats();
    assert_eq!((s.maps, s.hits, s.wraps, s.flushes.globals), (7, 2, 1, 1));
    assert_eq!(s.peak_in_use, 4);
    assert_eq!(pool.in_use(), 4);
}

fn lowmem_is_direct_unless_forced<M: ModeUnderTest>() {
    let ram = SimRam::new();
    let mut k = Kernel::<M>::new(&ram);
    let low = k.low_page();
    let direct_va = va(PAGE_OFFSET + low.start_address().as_u64() as u32);
    // SAFETY: the only token of this test thread.
    let mut task = unsafe { KmapTask::new() };
    {
        let pool = k.pool::<GlobalFlush, SpinWait, 4>(GlobalFlush, SpinWait);
        let ptes = k.window_ptes();
        let g = pool.map(&mut task, low).unwrap();
        assert!(g.is_direct());
        assert_eq!(g.va(), direct_va);
        assert!(reads_frame(&k.m.mmu, g.va(), low));
        assert_eq!(pool.in_use(), 0);
        assert_eq!(k.window_ptes(), ptes);
        drop(g);
        let r = pool.reserve(&mut task, 1).unwrap();
        assert!(r.map(low).unwrap().is_direct());
        drop(r);
        let s = pool.stats();
        assert_eq!((s.maps, s.direct, s.peak_in_use), (2, 2, 0));
        let local = k.local(false, k.direct);
        let l = local.map(0, low).unwrap();
        assert!(l.is_direct() && l.va() == direct_va);
        assert_eq!(local.depth(0), Some(0));
    }
    let forced = k.direct.with_force_map(true);
    assert!(forced.is_lowmem(low) && forced.direct_va(low).is_none());
    let pool = PersistentPool::<M, _, _, RangeFlush, SpinWait, 4>::new(
        &k.window,
        va(PKMAP_BASE),
        forced,
        SimAccess::new(&ram),
        &k.m.mmu,
        RangeFlush,
        SpinWait,
    )
    .unwrap();
    let g = pool.map(&mut task, low).unwrap();
    assert!(!g.is_direct());
    assert_ne!(g.va(), direct_va);
    assert!(reads_frame(&k.m.mmu, g.va(), low));
    assert_eq!(pool.in_use(), 1);
    drop(g);
    let local = k.local(false, forced);
    let l = local.map(0, low).unwrap();
    assert!(!l.is_direct());
    assert_eq!(local.depth(0), Some(1));
    assert!(reads_frame(&k.m.mmu, l.va(), low));
}

fn map_nowait_falls_back_to_a_local_slot<M: ModeUnderTest>() {
    let ram = SimRam::new();
    let k = Kernel::<M>::new(&ram);
    let pool = k.pool::<PerPage, SpinWait, 2>(PerPage, SpinWait);
    let local = k.local(false, k.direct);
    // SAFETY: the only token of this test thread.
    let task = unsafe { KmapTask::new() };
    let p: Vec<_> = (0..4).map(|i| k.high_page(i)).collect();
    let first = pool.map_nowait(&task, &local, 3, p[0]).unwrap();
    assert!(matches!(first, NowaitKmap::Persistent(_)));
    let second = pool.try_map(&task, p[1]).unwrap();
    // Full: the next one comes from CPU 3's local stack.
    let third = pool.map_nowait(&task, &local, 3, p[2]).unwrap();
    let NowaitKmap::Local(l) = &third else {
        panic!("expected a local fallback, got {third:?}");
    };
    assert_eq!(l.va(), local.slot_va(3, 0).unwrap());
    assert_eq!(local.depth(3), Some(1));
    for (g, f) in [(first.va(), p[0]), (second.va(), p[1]), (third.va(), p[2])] {
        assert!(reads_frame(&k.m.mmu, g, f));
    }
    // A page already in the pool is still a hit, not a fallback.
    let hit = pool.map_nowait(&task, &local, 3, p[1]).unwrap();
    assert!(matches!(hit, NowaitKmap::Persistent(_)));
    assert_eq!(hit.va(), second.va());
    drop(third);
    assert_eq!(local.depth(3), Some(0));
    assert_eq!(local.stats().maps, 1);
}

fn counters_count_waits_and_flushes<M: ModeUnderTest>() {
    let ram = SimRam::new();
    let k = Kernel::<M>::new(&ram);
    let pool = k.pool::<AccessedBit, SpinWait, 2>(AccessedBit, SpinWait);
    let p: Vec<_> = (0..3).map(|i| k.high_page(i)).collect();
    std::thread::scope(|s| {
        // SAFETY: one token per thread.
        let holder = unsafe { KmapTask::new() };
        let a = pool.try_map(&holder, p[0]).unwrap();
        let b = pool.try_map(&holder, p[1]).unwrap();
        // Touch only a: its slot will need an invlpg, b's will not.
        assert!(reads_frame(&k.m.mmu, a.va(), p[0]));
        let waiter = s.spawn(|| {
            // SAFETY: one token per thread.
            let mut task = unsafe { KmapTask::new() };
            let g = pool.map(&mut task, p[2]).unwrap();
            read_u64(&k.m.mmu, g.va()).unwrap()
        });
        while pool.stats().waits == 0 {
            std::thread::yield_now();
        }
        drop((a, b));
        assert_eq!(waiter.join().unwrap(), support::pattern(p[2]));
    });
    let s = pool.stats();
    assert!(s.waits >= 1);
    assert_eq!(s.maps, 3);
    // Slot 1 first, then the cursor wraps to slot 0 (nothing to clear yet),
    // and wraps again for the waiter.
    assert_eq!(s.wraps, 2);
    assert_eq!(s.peak_in_use, 2);
    // At the wrap both old slots were unused: one had been dereferenced.
    assert_eq!((s.flushes.pages, s.flushes.avoided), (1, 1));
    assert_eq!(s.flushes.globals + s.flushes.ranges, 0);
}

/// A wait hook for code that must never wait.
struct MustNotWait;

impl WaitHook for MustNotWait {
    fn wait(&self, _: &AtomicU32, _: u32) {
        panic!("waited for capacity");
    }
    fn wake(&self, _: &AtomicU32) {}
}

fn a_page_in_use_is_shared_without_waiting<M: ModeUnderTest>() {
    let ram = SimRam::new();
    let k = Kernel::<M>::new(&ram);
    let pool = k.pool::<GlobalFlush, MustNotWait, 2>(GlobalFlush, MustNotWait);
    let (a, b) = (k.high_page(0), k.high_page(1));
    // SAFETY: one token per thread of execution; `other` stands for a
    // second task and never waits.
    let (mut task, other) = unsafe { (KmapTask::new(), KmapTask::new()) };
    let held_a = pool.try_map(&other, a).unwrap();
    let held_b = pool.try_map(&other, b).unwrap();
    // The pool is full, but `a` is mapped: `map` shares its slot at once.
    let shared = pool.map(&mut task, a).unwrap();
    assert_eq!(shared.va(), held_a.va());
    assert_eq!(pool.slot_count(held_a.va()), Some(3));
    drop(shared);
    // So does a reservation's map, and the promise it did not need comes
    // back: with the whole pool in use, a reservation of 1 cannot be had...
    assert!(pool.try_reserve(&mut task, 1).is_err());
    drop(held_b);
    let r = pool.try_reserve(&mut task, 1).unwrap();
    let via_ticket = r.map(a).unwrap();
    assert_eq!(via_ticket.va(), held_a.va());
    drop(via_ticket);
    drop(r);
    // ...but after the hit it can again.
    assert_eq!(pool.try_reserve(&mut task, 1).unwrap().remaining(), 1);
    assert_eq!(pool.stats().waits, 0);
}

paging_sim::for_each_mode!(
    a_page_in_use_is_shared_without_waiting,
    slot_life_cycle,
    lowmem_is_direct_unless_forced,
    map_nowait_falls_back_to_a_local_slot,
    counters_count_waits_and_flushes,
);
