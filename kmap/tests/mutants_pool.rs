//! Capacity bookkeeping of the persistent pool: promised slots are not
//! promised twice, and a task that waited is no longer counted as waiting. Written for mutants that `cargo xtask mutants` found no
//! test noticed (docs/testing.md).

mod support;

use kmap::{GlobalFlush, KmapError, KmapTask, SpinWait};
use paging_core::sim::SimRam;
use paging_x86_2level::TwoLevel;
use paging_x86_pae::Pae;
use support::{Kernel, ModeUnderTest};

fn reserved_slots_are_not_promised_again<M: ModeUnderTest>() {
    let ram = SimRam::new();
    let k = Kernel::<M>::new(&ram);
    let pool = k.pool::<GlobalFlush, SpinWait, 4>(GlobalFlush, SpinWait);
    // SAFETY: the two tokens stand for two tasks; neither waits here
    // (only `try_` calls, which fail instead of waiting).
    let (mut a, mut b) = unsafe { (KmapTask::new(), KmapTask::new()) };
    let first = pool.try_reserve(&mut a, 3).unwrap();
    assert_eq!(
        pool.try_reserve(&mut b, 2).err(),
        Some(KmapError::Exhausted)
    );
    let second = pool.try_reserve(&mut b, 1).unwrap();
    // Everything is promised: no map without a ticket.
    let page = k.high_page(0);
    // SAFETY: a third task, which only calls `try_map` (never waits).
    let task_c = unsafe { KmapTask::new() };
    assert_eq!(
        pool.try_map(&task_c, page).map(|g| g.va()).err(),
        Some(KmapError::Exhausted)
    );
    let g = second.map(page).unwrap();
    assert_eq!(pool.in_use(), 1);
    drop(g);
    drop(second);
    drop(first);
    assert_eq!(pool.in_use(), 0);
    // All four can be promised again.
    let all = pool.try_reserve(&mut a, 4).unwrap();
    assert_eq!(all.remaining(), 4);
}

fn a_task_that_waited_is_no_longer_a_waiter<M: ModeUnderTest>() {
    let ram = SimRam::new();
    let k = Kernel::<M>::new(&ram);
    let pool = k.pool::<GlobalFlush, SpinWait, 2>(GlobalFlush, SpinWait);
    // SAFETY: this thread's only token.
    let mut a = unsafe { KmapTask::new() };
    let everything = pool.reserve(&mut a, 2).unwrap();
    std::thread::scope(|s| {
        let waiter = s.spawn(|| {
            // SAFETY: the other thread's only token.
            let mut b = unsafe { KmapTask::new() };
            let one = pool.reserve(&mut b, 1).unwrap();
            assert_eq!(one.remaining(), 1);
        });
        while pool.stats().waits == 0 {
            std::thread::yield_now();
        }
        drop(everything);
        waiter.join().unwrap();
    });
    let text = format!("{pool:?}");
    assert!(text.contains("waiters: 0"), "{text}");
    assert!(text.contains("reserved: 0"), "{text}");
}

#[test]
fn two_level() {
    reserved_slots_are_not_promised_again::<TwoLevel>();
    a_task_that_waited_is_no_longer_a_waiter::<TwoLevel>();
}

#[test]
fn pae() {
    reserved_slots_are_not_promised_again::<Pae>();
    a_task_that_waited_is_no_longer_a_waiter::<Pae>();
}
