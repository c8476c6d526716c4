//! Bad requests get typed errors and change nothing: not the slot PTEs,
//! not the counts, not the counters, not the TLB.

mod support;

use kmap::{GlobalFlush, KmapError, KmapStats, KmapTask, PersistentPool, SpinWait};
use paging_core::{ErrorKind, PagingError, PhysFrame};
use paging_sim::{SimAccess, SimRam, TlbStats};
use support::{DEPTH, Kernel, ModeUnderTest, PKMAP_BASE, TestFixmap, frame, reads_frame, va};

type Pool<'k, 'r, M> = PersistentPool<M, SimAccess<'r>, &'k paging_sim::Mmu<'r>>;

/// Everything an error must leave as it was.
#[derive(Debug, PartialEq, Eq)]
struct State {
    ptes: Vec<u64>,
    in_use: usize,
    stats: KmapStats,
    tlb: TlbStats,
}

fn state<M: ModeUnderTest, const N: usize>(
    k: &Kernel<'_, M>,
    pool: &PersistentPool<M, SimAccess<'_>, &paging_sim::Mmu<'_>, GlobalFlush, SpinWait, N>,
) -> State {
    State {
        ptes: k.window_ptes(),
        in_use: pool.in_use(),
        stats: pool.stats(),
        tlb: k.m.mmu.tlb_stats(),
    }
}

fn exhaustion_and_reservations<M: ModeUnderTest>() {
    let ram = SimRam::new();
    let k = Kernel::<M>::new(&ram);
    let pool = k.pool::<GlobalFlush, SpinWait, 4>(GlobalFlush, SpinWait);
    // SAFETY: this task's token; `other` below stands for a second task.
    let mut task = unsafe { KmapTask::new() };
    let p: Vec<_> = (0..6).map(|i| k.high_page(i)).collect();

    // A reservation of 2 holds capacity: only 2 unreserved maps fit.
    let r = pool.try_reserve(&mut task, 2).unwrap();
    // Reservations hold the task, so unreserved maps here need a second
    // thread of execution; a shared token models it.
    // SAFETY: the other token is never used to wait while this one lives.
    let other = unsafe { KmapTask::new() };
    let a = pool.try_map(&other, p[0]).unwrap();
    let b = pool.try_map(&other, p[1]).unwrap();
    let before = state(&k, &pool);
    assert_eq!(
        pool.try_map(&other, p[2]).unwrap_err(),
        KmapError::Exhausted
    );
    assert_eq!(state(&k, &pool), before);
    assert_eq!(pool.lookup(p[2]), None);
    // A page already mapped takes no capacity: a hit still works.
    let a2 = pool.try_map(&other, p[0]).unwrap();
    assert_eq!(a2.va(), a.va());
    assert_eq!(pool.slot_count(a.va()), Some(3));
    // The reservation's maps never wait and never fail for capacity.
    let c = r.map(p[2]).unwrap();
    let d = r.map(p[3]).unwrap();
    assert_eq!(pool.in_use(), 4);
    for g in [&a, &b, &c, &d] {
        assert!(reads_frame(&k.m.mmu, g.va(), g.frame()));
    }
    // Single use: the third map of a reservation of 2 is refused.
    let before = state(&k, &pool);
    assert_eq!(r.map(p[4]).unwrap_err(), KmapError::ReservationSpent);
    assert_eq!(r.map(p[0]).unwrap_err(), KmapError::ReservationSpent);
    assert_eq!(state(&k, &pool), before);
    assert_eq!(r.remaining(), 0);
    drop(c);
    drop(d);
    drop(r);
    drop((a, a2, b));
    assert_eq!(pool.in_use(), 0);

    // Too large a reservation is refused outright, whatever is free.
    let err = pool.try_reserve(&mut task, 5).unwrap_err();
    assert_eq!(err, KmapError::ReservationTooLarge { asked: 5, slots: 4 });
    assert_eq!(err.kind(), ErrorKind::OutOfRange);
    let err = pool.reserve(&mut task, 5).unwrap_err();
    assert_eq!(err, KmapError::ReservationTooLarge { asked: 5, slots: 4 });
    // A full pool refuses try_reserve without waiting.
    let held: Vec<_> = (0..4)
        .map(|i| pool.try_map(&other, p[i]).unwrap())
        .collect();
    let before = state(&k, &pool);
    assert_eq!(
        pool.try_reserve(&mut task, 1).unwrap_err(),
        KmapError::Exhausted
    );
    assert_eq!(state(&k, &pool), before);
    drop(held);
    // Unused promises come back when a reservation is dropped.
    drop(pool.try_reserve(&mut task, 4).unwrap());
    assert_eq!(pool.try_reserve(&mut task, 4).unwrap().remaining(), 4);
}

fn double_unmap_and_unmapped_pages<M: ModeUnderTest>() {
    let ram = SimRam::new();
    let k = Kernel::<M>::new(&ram);
    let pool = k.pool::<GlobalFlush, SpinWait, 4>(GlobalFlush, SpinWait);
    // SAFETY: the only token of this test thread.
    let task = unsafe { KmapTask::new() };
    let (p, q) = (k.high_page(0), k.high_page(1));

    // Never mapped.
    let before = state(&k, &pool);
    let err = pool.kunmap_raw(q).unwrap_err();
    assert_eq!(err, KmapError::NotMapped { frame: q });
    assert_eq!(err.kind(), ErrorKind::NotMapped);
    assert_eq!(state(&k, &pool), before);

    // SAFETY: this task waits for nothing until the raw mapping is gone.
    let (f, at) = unsafe { pool.try_map(&task, p).unwrap().into_raw() };
    assert_eq!(f, p);
    assert!(reads_frame(&k.m.mmu, at, p));
    pool.kunmap_raw(p).unwrap();
    // Unused now (count 1), PTE kept until the pool wraps.
    assert_eq!(pool.slot_count(at), Some(1));
    let before = state(&k, &pool);
    let err = pool.kunmap_raw(p).unwrap_err();
    assert_eq!(err, KmapError::DoubleUnmap { frame: p });
    assert_eq!(err.kind(), ErrorKind::InvalidState);
    assert_eq!(state(&k, &pool), before);
    assert_eq!(pool.slot_count(at), Some(1));
    assert!(reads_frame(&k.m.mmu, at, p));

    // A guard whose use was taken by a raw unmap reports it on drop.
    let g = pool.try_map(&task, p).unwrap();
    pool.kunmap_raw(p).unwrap();
    drop(g);
    assert_eq!(pool.stats().release_errors, 1);
    assert_eq!(pool.slot_count(at), Some(1));

    // Lowmem pages are not slotted: a raw unmap of one is a no-op.
    assert_eq!(pool.kunmap_raw(frame(0x20_0000)), Ok(()));
}

fn a_page_user_count_saturates<M: ModeUnderTest>() {
    let ram = SimRam::new();
    let k = Kernel::<M>::new(&ram);
    let pool = k.pool::<GlobalFlush, SpinWait, 4>(GlobalFlush, SpinWait);
    // SAFETY: the only token of this test thread.
    let task = unsafe { KmapTask::new() };
    let p = k.high_page(0);
    let users: Vec<_> = (0..u16::MAX - 1)
        .map(|_| pool.try_map(&task, p).unwrap())
        .collect();
    let at = users[0].va();
    assert_eq!(pool.slot_count(at), Some(u16::MAX));
    let before = state(&k, &pool);
    assert_eq!(pool.try_map(&task, p).unwrap_err(), KmapError::Exhausted);
    assert_eq!(state(&k, &pool), before);
    drop(users);
    assert_eq!(pool.slot_count(at), Some(1));
    assert_eq!(pool.stats().release_errors, 0);
}

fn unmappable_frames_and_bad_layouts<M: ModeUnderTest>() {
    let ram = SimRam::new();
    let k = Kernel::<M>::new(&ram);
    let pool = k.pool::<GlobalFlush, SpinWait, 4>(GlobalFlush, SpinWait);
    // SAFETY: the only token of this test thread.
    let mut task = unsafe { KmapTask::new() };
    let beyond = PhysFrame::from_number(1 << (M::MAX_PHYS_BITS - 12)).unwrap();
    let before = state(&k, &pool);
    let err = pool.try_map(&task, beyond).unwrap_err();
    assert!(matches!(err, KmapError::Entry(_)), "{err:?}");
    assert_eq!(err.kind(), ErrorKind::OutOfRange);
    {
        let r = pool.try_reserve(&mut task, 1).unwrap();
        assert!(matches!(r.map(beyond), Err(KmapError::Entry(_))));
        // The ticket was not spent.
        assert_eq!(r.remaining(), 1);
    }
    assert!(matches!(
        pool.map(&mut task, beyond),
        Err(KmapError::Entry(_))
    ));
    assert_eq!(state(&k, &pool), before);
    // Capacity is all back.
    assert_eq!(pool.try_reserve(&mut task, 4).unwrap().remaining(), 4);

    // Pools outside the window, unaligned, or running off its end.
    let make = |base: u32| -> Result<Pool<'_, '_, M>, KmapError> {
        PersistentPool::new(
            &k.window,
            va(base),
            k.direct,
            SimAccess::new(&ram),
            &k.m.mmu,
            GlobalFlush,
            SpinWait,
        )
    };
    assert!(matches!(
        make(0xFF00_0000),
        Err(KmapError::BadLayout { .. })
    ));
    assert!(matches!(
        make(PKMAP_BASE + 8),
        Err(KmapError::BadLayout { .. })
    ));
    assert!(matches!(
        make(0xFFE0_0000),
        Err(KmapError::BadLayout { .. })
    ));
    assert!(make(PKMAP_BASE).is_ok());
}

fn local_lifo_violations_and_exhaustion<M: ModeUnderTest>() {
    let ram = SimRam::new();
    let k = Kernel::<M>::new(&ram);
    let local = k.local(false, k.direct);
    let p: Vec<_> = (0..DEPTH + 1).map(|i| k.high_page(i)).collect();
    let a = local.map(0, p[0]).unwrap();
    let b = local.map(0, p[1]).unwrap();
    let (va_a, va_b) = (a.va(), b.va());
    assert!(reads_frame(&k.m.mmu, va_a, p[0]) && reads_frame(&k.m.mmu, va_b, p[1]));

    // Out of order: refused, nothing changes, the guard comes back.
    let before = (
        k.window_ptes(),
        local.depth(0),
        local.stats(),
        k.m.mmu.tlb_stats(),
    );
    let (a, err) = a.try_unmap().unwrap_err();
    assert_eq!(err, KmapError::OutOfOrder { depth: 0, top: 1 });
    assert_eq!(err.kind(), ErrorKind::InvalidState);
    let after = (
        k.window_ptes(),
        local.depth(0),
        local.stats(),
        k.m.mmu.tlb_stats(),
    );
    assert_eq!(after, before);

    // Dropped out of order: deferred, counted, still mapped until b goes.
    drop(a);
    assert_eq!(local.stats().lifo_violations, 1);
    assert_eq!(local.depth(0), Some(2));
    assert!(reads_frame(&k.m.mmu, va_a, p[0]));
    b.try_unmap().unwrap();
    assert_eq!(local.depth(0), Some(0));
    assert_eq!((k.pte(va_a), k.pte(va_b)), (0, 0));
    // Cleared *and* invalidated: the CPU faults on both.
    assert!(support::read_u64(&k.m.mmu, va_a).is_err());
    assert!(support::read_u64(&k.m.mmu, va_b).is_err());

    // A full stack refuses without touching anything.
    let mut held: Vec<_> = (0..DEPTH).map(|i| local.map(0, p[i]).unwrap()).collect();
    let before = (
        k.window_ptes(),
        local.depth(0),
        local.stats(),
        k.m.mmu.tlb_stats(),
    );
    assert_eq!(local.map(0, p[DEPTH]).unwrap_err(), KmapError::Exhausted);
    assert_eq!(
        local.map(support::CPUS, p[DEPTH]).unwrap_err(),
        KmapError::BadCpu { cpu: support::CPUS }
    );
    let after = (
        k.window_ptes(),
        local.depth(0),
        local.stats(),
        k.m.mmu.tlb_stats(),
    );
    assert_eq!(after, before);

    // A frame the mode cannot map: refused, with a free slot available.
    drop(held.pop());
    let beyond = PhysFrame::from_number(1 << (M::MAX_PHYS_BITS - 12)).unwrap();
    let before = (
        k.window_ptes(),
        local.depth(0),
        local.stats(),
        k.m.mmu.tlb_stats(),
    );
    assert!(matches!(local.map(0, beyond), Err(KmapError::Entry(_))));
    let after = (
        k.window_ptes(),
        local.depth(0),
        local.stats(),
        k.m.mmu.tlb_stats(),
    );
    assert_eq!(after, before);
    while let Some(g) = held.pop() {
        drop(g);
    }
    assert_eq!(local.depth(0), Some(0));
    assert_eq!(local.stats().lifo_violations, 1);
}

fn local_slots_refuse_bad_layouts<M: ModeUnderTest>() {
    let ram = SimRam::new();
    let k = Kernel::<M>::new(&ram);
    // PTE_WALK has CPUS slots: not enough for CPUS x 2.
    let err = kmap::LocalSlots::<_, _, _, _, _, 2, { support::CPUS }>::new(
        &k.fixmap,
        TestFixmap::PTE_WALK,
        false,
        k.direct,
        &k.m.mmu,
    )
    .unwrap_err();
    assert_eq!(
        err,
        KmapError::RangeTooSmall {
            needed: 2 * support::CPUS,
            slots: support::CPUS,
        }
    );
    assert_eq!(
        err.to_string(),
        format!(
            "the fixmap range holds {0} slots, {0} too few for the {1} local kmap slots \
             (CPUs x depth, x2 with guard slots)",
            support::CPUS,
            2 * support::CPUS
        )
    );
    // Guard slots double what is needed: depth 1 with guards needs 2 x CPUS.
    let err = kmap::LocalSlots::<_, _, _, _, _, 1, { support::CPUS }>::new(
        &k.fixmap,
        TestFixmap::PTE_WALK,
        true,
        k.direct,
        &k.m.mmu,
    )
    .unwrap_err();
    assert_eq!(
        err,
        KmapError::RangeTooSmall {
            needed: 2 * support::CPUS,
            slots: support::CPUS,
        }
    );
    // Exactly enough is accepted.
    assert!(
        kmap::LocalSlots::<_, _, _, _, _, 1, { support::CPUS }>::new(
            &k.fixmap,
            TestFixmap::PTE_WALK,
            false,
            k.direct,
            &k.m.mmu,
        )
        .is_ok()
    );
    // A fixmap with no tables attached.
    let bare = fixmap::Fixmap::<TestFixmap, M, _>::new(SimAccess::new(&ram));
    let err = kmap::LocalSlots::<_, _, _, _, _, 1, { support::CPUS }>::new(
        &bare,
        TestFixmap::PTE_WALK,
        false,
        k.direct,
        &k.m.mmu,
    )
    .unwrap_err();
    assert!(matches!(err, KmapError::BadLayout { .. }), "{err:?}");
    // Restoring onto a CPU that holds mappings.
    let local = k.local(false, k.direct);
    let saved = local.save(1).unwrap();
    let g = local.map(1, k.high_page(0)).unwrap();
    let depth = local.depth(1);
    assert_eq!(
        local.restore(&saved).unwrap_err(),
        KmapError::RestoreMismatch { cpu: 1 }
    );
    assert_eq!(local.depth(1), depth);
    drop(g);
    assert_eq!(local.save(99).unwrap_err(), KmapError::BadCpu { cpu: 99 });
}

paging_sim::for_each_mode!(
    exhaustion_and_reservations,
    double_unmap_and_unmapped_pages,
    a_page_user_count_saturates,
    unmappable_frames_and_bad_layouts,
    local_lifo_violations_and_exhaustion,
    local_slots_refuse_bad_layouts,
);

/// A kernel can propagate kmap errors with `?` into paging-core's
/// catch-all and still react to the kind.
#[test]
fn kmap_errors_convert_into_the_catch_all_error() {
    let any = paging_core::AnyError::from(KmapError::Exhausted);
    assert_eq!(any.kind(), ErrorKind::Exhausted);
    assert_eq!(any.to_string(), "kmap: exhausted");
    let spent = paging_core::AnyError::from(KmapError::ReservationSpent);
    assert_eq!(spent.kind(), KmapError::ReservationSpent.kind());
}

/// The conversion keeps the frame, address and CPU the error named (issue
/// 22): a kernel that logs the `AnyError` still sees which page it was.
#[test]
fn kmap_errors_keep_their_frame_address_and_cpu_in_the_catch_all_error() {
    use paging_core::{AnyError, Detail, PhysAddr, PhysFrame, VirtAddr};
    let frame = PhysFrame::containing_address(PhysAddr::new_truncate(0x1_2345_6000));
    let any = AnyError::from(KmapError::DoubleUnmap { frame });
    assert!(matches!(any, AnyError::Other { detail: Detail::Frame(f), .. } if f == frame));
    assert_eq!(any.to_string(), format!("kmap: double unmap: {frame:?}"));
    let va = VirtAddr::new(0xFF80_0000);
    let any = AnyError::from(KmapError::BadLayout { va });
    assert!(matches!(any, AnyError::Other { detail: Detail::Virt(v), .. } if v == va));
    let any = AnyError::from(KmapError::BadCpu { cpu: 7 });
    assert!(matches!(
        any,
        AnyError::Other {
            detail: Detail::Cpu(7),
            ..
        }
    ));
    assert_eq!(any.to_string(), "kmap: bad cpu: CPU 7");
    let any = AnyError::from(KmapError::OutOfOrder { depth: 1, top: 3 });
    assert!(matches!(
        any,
        AnyError::Other {
            detail: Detail::Depth { depth: 1, top: 3 },
            ..
        }
    ));
    let any = AnyError::from(KmapError::ReservationTooLarge { asked: 9, slots: 4 });
    assert!(matches!(
        any,
        AnyError::Other {
            detail: Detail::Count {
                asked: 9,
                available: 4
            },
            ..
        }
    ));
}
