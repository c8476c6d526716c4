//! Capacity bookkeeping of the persistent pool: promised slots are not
//! promised twice, a task that waited is woken once and no longer counted
//! as waiting, slot counts are read at the right slot, and a stale guard
//! whose slot now serves another page leaves that page alone; slot PTEs
//! carry the policy's flags, so a kmap can be written through; after a
//! wrap the search goes on past a busy slot 0; lock-free hits raise the
//! peak; a ticket takes a cached slot under the lock; `Generations` clears
//! a slot at its last release, and a map finds a lone released slot
//! wherever it is; a reservation beats a lock-free hit.
//! Written for mutants that `cargo xtask mutants` found no
//! test noticed (docs/testing.md).

mod support;

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

use kmap::{Generations, GlobalFlush, KmapError, KmapTask, SpinWait, WaitHook};
use paging_core::PAGE_SIZE;
use paging_sim::SimRam;
use paging_x86_2level::TwoLevel;
use paging_x86_pae::Pae;
use support::{Kernel, ModeUnderTest, PKMAP_BASE, pattern, read_u64, va};

/// Spins like `SpinWait`, and counts the wake-ups it is asked for.
struct CountingWait<'a> {
    wakes: &'a AtomicUsize,
}

impl WaitHook for CountingWait<'_> {
    fn wait(&self, epoch: &AtomicU32, seen: u32) {
        while epoch.load(Ordering::Acquire) == seen {
            std::thread::yield_now();
        }
    }

    fn wake(&self, _epoch: &AtomicU32) {
        self.wakes.fetch_add(1, Ordering::SeqCst);
    }
}

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
    let wakes = AtomicUsize::new(0);
    let pool = k.pool::<GlobalFlush, _, 2>(GlobalFlush, CountingWait { wakes: &wakes });
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
    // Woken once: the release that let it through.
    assert_eq!(wakes.load(Ordering::SeqCst), 1);
    let text = format!("{pool:?}");
    assert!(text.contains("waiters: 0"), "{text}");
    assert!(text.contains("reserved: 0"), "{text}");
}

fn slot_counts_are_read_at_their_slot<M: ModeUnderTest>() {
    let ram = SimRam::new();
    let k = Kernel::<M>::new(&ram);
    let pool = k.pool::<GlobalFlush, SpinWait, 4>(GlobalFlush, SpinWait);
    // SAFETY: the only token of this test thread.
    let task = unsafe { KmapTask::new() };
    let (p, q) = (k.high_page(0), k.high_page(1));
    let p1 = pool.try_map(&task, p).unwrap();
    let p2 = pool.try_map(&task, p).unwrap();
    let q1 = pool.try_map(&task, q).unwrap();
    assert_eq!(pool.slot_count(p1.va()), Some(3));
    assert_eq!(pool.slot_count(q1.va()), Some(2));
    assert_eq!(pool.slot_count(va(PKMAP_BASE)), Some(0));
    assert_eq!(pool.slot_count(va(PKMAP_BASE - PAGE_SIZE as u32)), None);
    assert_eq!(pool.slot_count(va(PKMAP_BASE + 4 * PAGE_SIZE as u32)), None);
    drop((p1, p2, q1));
}

fn a_stale_guard_leaves_the_slots_new_page_alone<M: ModeUnderTest>() {
    let ram = SimRam::new();
    let k = Kernel::<M>::new(&ram);
    let pool = k.pool::<GlobalFlush, SpinWait, 4>(GlobalFlush, SpinWait);
    // SAFETY: the only token of this test thread.
    let task = unsafe { KmapTask::new() };
    let p = k.high_page(0);
    let g = pool.try_map(&task, p).unwrap();
    let at = g.va();
    // The guard's use is taken by a raw unmap: slot 1 is unused (count 1).
    pool.kunmap_raw(p).unwrap();
    // Slots 2, 3, the wrap (clearing slot 1), slot 0, then slot 1 again
    // for another page.
    let others: Vec<_> = (1..5)
        .map(|i| pool.try_map(&task, k.high_page(i)).unwrap())
        .collect();
    assert_eq!(others[3].va(), at);
    assert_eq!(pool.slot_count(at), Some(2));
    // Dropping the stale guard must not take the new page's user.
    drop(g);
    assert_eq!(pool.stats().release_errors, 1);
    assert_eq!(pool.slot_count(at), Some(2));
    assert_eq!(pool.lookup(k.high_page(4)), Some(at));
    drop(others);
}

fn slot_ptes_carry_the_policy_flags<M: ModeUnderTest>() {
    let ram = SimRam::new();
    let k = Kernel::<M>::new(&ram);
    let pool = k.pool::<GlobalFlush, SpinWait, 4>(GlobalFlush, SpinWait);
    // SAFETY: the only token of this test thread.
    let task = unsafe { KmapTask::new() };
    let p = k.high_page(0);
    let g = pool.try_map(&task, p).unwrap();
    // Present, writable, accessed, dirty (bits 0, 1, 5, 6 in both modes).
    assert_eq!(k.pte(g.va()) & 0x63, 0x63);
    k.m.mmu
        .write_u32(va(g.va().as_u32() + 8), 0x1234_5678)
        .unwrap();
    let at = paging_core::PhysAddr::new(p.start_address().as_u64() + 8).unwrap();
    assert_eq!(ram.read_u32(at).unwrap(), 0x1234_5678);
}

fn after_a_wrap_the_search_goes_past_a_busy_slot_0<M: ModeUnderTest>() {
    let ram = SimRam::new();
    let k = Kernel::<M>::new(&ram);
    let pool = k.pool::<GlobalFlush, SpinWait, 4>(GlobalFlush, SpinWait);
    // SAFETY: the only token of this test thread.
    let task = unsafe { KmapTask::new() };
    // Slots 1, 2, 3, then slot 0 after the first wrap.
    let mut held: Vec<_> = (0..4)
        .map(|i| pool.try_map(&task, k.high_page(i)).unwrap())
        .collect();
    assert_eq!(held[3].va(), va(PKMAP_BASE));
    let slot1 = held[0].va();
    drop(held.remove(0));
    // The next page: the second wrap clears slot 1; slot 0 is busy, slot 1
    // is taken.
    let next = pool.try_map(&task, k.high_page(9)).unwrap();
    assert_eq!(next.va(), slot1);
    assert_eq!(pool.stats().wraps, 2);
}

/// A map paid with a ticket always goes through the lock: a cached unused
/// slot is taken as is (one user, one slot of capacity), and a slot in use
/// is shared (one more user, no capacity).
fn a_ticket_takes_a_cached_slot_under_the_lock<M: ModeUnderTest>() {
    let ram = SimRam::new();
    let k = Kernel::<M>::new(&ram);
    let pool = k.pool::<GlobalFlush, SpinWait, 4>(GlobalFlush, SpinWait);
    // SAFETY: the only token of this test thread; it never waits (only
    // `try_` calls).
    let mut task = unsafe { KmapTask::new() };
    let page = k.high_page(0);
    let at = {
        let g = pool.try_map(&task, page).unwrap();
        g.va()
    };
    assert_eq!((pool.slot_count(at), pool.in_use()), (Some(1), 0));
    let tickets = pool.try_reserve(&mut task, 2).unwrap();
    let first = tickets.map(page).unwrap();
    assert_eq!(first.va(), at, "the cached slot, as is");
    assert_eq!((pool.slot_count(at), pool.in_use()), (Some(2), 1));
    let second = tickets.map(page).unwrap();
    assert_eq!(second.va(), at, "shared");
    assert_eq!((pool.slot_count(at), pool.in_use()), (Some(3), 1));
    let s = pool.stats();
    assert_eq!((s.maps, s.hits), (3, 2), "{s:?}");
    drop((first, second));
    assert_eq!((pool.slot_count(at), pool.in_use()), (Some(1), 0));
}

/// Under `Generations` (a policy that clears on release) the last user of
/// a slot leaves under the lock: its PTE is cleared and its page forgotten
/// at once, the slot is stale (count 1) until the cursor frees it, and the
/// page's next map takes another slot. Users before the last leave without
/// the lock.
fn generations_clears_at_the_last_release<M: ModeUnderTest>() {
    let ram = SimRam::new();
    let k = Kernel::<M>::new(&ram);
    let pool = k.pool::<Generations, SpinWait, 4>(Generations, SpinWait);
    // SAFETY: the only token of this test thread; only `try_` calls.
    let task = unsafe { KmapTask::new() };
    let page = k.high_page(0);
    let first = pool.try_map(&task, page).unwrap();
    let at = first.va();
    let second = pool.try_map(&task, page).unwrap();
    assert_eq!(second.va(), at);
    assert_eq!((pool.slot_count(at), pool.in_use()), (Some(3), 1));
    drop(second);
    assert_eq!((pool.slot_count(at), pool.in_use()), (Some(2), 1));
    assert_ne!(k.pte(at), 0, "still mapped for its last user");
    drop(first);
    assert_eq!((pool.slot_count(at), pool.in_use()), (Some(1), 0));
    assert_eq!(k.pte(at), 0, "cleared at the last release");
    assert_eq!(pool.lookup(page), None, "forgotten");
    assert_eq!(
        pool.kunmap_raw(page),
        Err(KmapError::NotMapped { frame: page })
    );
    // The stale slot is not handed out again before the cursor frees it.
    let again = pool.try_map(&task, page).unwrap();
    assert_ne!(again.va(), at);
    assert_eq!((pool.slot_count(at), pool.in_use()), (Some(1), 1));
    assert_eq!(pool.slot_count(again.va()), Some(2));
}

/// While reservations hold every slot of capacity the gate is up: a map of
/// a cached unused page may not take that slot without the lock (it would
/// break the reservations' promise); under the lock it finds no capacity.
fn a_reservation_beats_a_lock_free_hit<M: ModeUnderTest>() {
    let ram = SimRam::new();
    let k = Kernel::<M>::new(&ram);
    let pool = k.pool::<GlobalFlush, SpinWait, 4>(GlobalFlush, SpinWait);
    // SAFETY: two tokens for two tasks of this thread; only `try_` calls.
    let (mut a, b) = unsafe { (KmapTask::new(), KmapTask::new()) };
    let page = k.high_page(0);
    let at = pool.try_map(&b, page).unwrap().va();
    assert_eq!(pool.slot_count(at), Some(1), "cached, unused");
    let all = pool.try_reserve(&mut a, 4).unwrap();
    assert_eq!(
        pool.try_map(&b, page).map(|g| g.va()).err(),
        Some(KmapError::Exhausted)
    );
    assert_eq!((pool.slot_count(at), pool.in_use()), (Some(1), 0));
    // The reservation gets it, and its three other promises still hold.
    let mine: Vec<_> = (0..4).map(|i| all.map(k.high_page(i)).unwrap()).collect();
    assert_eq!(mine[0].va(), at);
    assert_eq!(pool.in_use(), 4);
}

fn lock_free_hits_raise_the_peak<M: ModeUnderTest>() {
    let ram = SimRam::new();
    let k = Kernel::<M>::new(&ram);
    let pool = k.pool::<GlobalFlush, SpinWait, 16>(GlobalFlush, SpinWait);
    // SAFETY: the only token of this test thread.
    let task = unsafe { KmapTask::new() };
    // Four pages mapped one at a time: four slots cached, unused, and never
    // more than one in use under the lock.
    for i in 0..4 {
        drop(pool.try_map(&task, k.high_page(i)).unwrap());
    }
    assert_eq!(pool.stats().peak_in_use, 1);
    // All four again, held: each is a lock-free hit that puts an unused
    // slot in use (its shard reaches a new high every time).
    let held: Vec<_> = (0..4)
        .map(|i| pool.try_map(&task, k.high_page(i)).unwrap())
        .collect();
    let s = pool.stats();
    assert_eq!((s.maps, s.hits), (8, 4), "{s:?}");
    assert_eq!(pool.in_use(), 4);
    assert_eq!(s.peak_in_use, 4, "{s:?}");
    drop(held);
}

/// Under `Generations` a released slot is stale (count 1, PTE clear, no
/// flush yet) until the cursor frees it: half a pool at a time, each half
/// flushed from the mark of the boundary before, or every stale slot at
/// once after a lap past both half boundaries found nothing free. With
/// every other slot in use a map must find the released one, whichever it
/// is, and a read through it then sees the new page (the TLB entry the old
/// page left was flushed before the slot was reused); with none released,
/// the search ends and the pool is exhausted.
fn generations_finds_the_one_released_slot<M: ModeUnderTest, const N: usize>()
where
    kmap::PoolSize<N>: kmap::ValidPoolSize,
{
    for released in 0..N {
        let ram = SimRam::new();
        let k = Kernel::<M>::new(&ram);
        let pool = k.pool::<Generations, SpinWait, N>(Generations, SpinWait);
        // SAFETY: the only token of this test thread; only `try_` calls.
        let task = unsafe { KmapTask::new() };
        let mut held: Vec<_> = (0..N)
            .map(|i| pool.try_map(&task, k.high_page(i)).unwrap())
            .collect();
        assert_eq!(pool.in_use(), N);
        // Every slot's translation in the TLB.
        for (i, g) in held.iter().enumerate() {
            assert_eq!(read_u64(&k.m.mmu, g.va()), Ok(pattern(k.high_page(i))));
        }
        assert_eq!(
            pool.try_map(&task, k.high_page(N)).err(),
            Some(KmapError::Exhausted),
            "{N} slots, all in use"
        );
        let at = held.remove(released).va();
        assert_eq!((pool.slot_count(at), k.pte(at)), (Some(1), 0), "stale");
        let next = pool.try_map(&task, k.high_page(N + 1)).unwrap();
        assert_eq!(next.va(), at, "{N} slots, slot of page {released} released");
        assert_eq!(pool.slot_count(at), Some(2));
        assert_eq!(pool.lookup(k.high_page(N + 1)), Some(at));
        assert_ne!(k.pte(at), 0);
        let page = k.high_page(N + 1);
        assert_eq!(
            read_u64(&k.m.mmu, at),
            Ok(pattern(page)),
            "{N} slots, slot of page {released} reused: a stale TLB entry"
        );
        drop((next, held));
    }
}

#[test]
fn two_level() {
    reserved_slots_are_not_promised_again::<TwoLevel>();
    a_task_that_waited_is_no_longer_a_waiter::<TwoLevel>();
    slot_counts_are_read_at_their_slot::<TwoLevel>();
    a_stale_guard_leaves_the_slots_new_page_alone::<TwoLevel>();
    slot_ptes_carry_the_policy_flags::<TwoLevel>();
    after_a_wrap_the_search_goes_past_a_busy_slot_0::<TwoLevel>();
    lock_free_hits_raise_the_peak::<TwoLevel>();
    a_ticket_takes_a_cached_slot_under_the_lock::<TwoLevel>();
    generations_clears_at_the_last_release::<TwoLevel>();
    a_reservation_beats_a_lock_free_hit::<TwoLevel>();
    generations_finds_the_one_released_slot::<TwoLevel, 4>();
    generations_finds_the_one_released_slot::<TwoLevel, 8>();
}

#[test]
fn pae() {
    reserved_slots_are_not_promised_again::<Pae>();
    a_task_that_waited_is_no_longer_a_waiter::<Pae>();
    slot_counts_are_read_at_their_slot::<Pae>();
    a_stale_guard_leaves_the_slots_new_page_alone::<Pae>();
    slot_ptes_carry_the_policy_flags::<Pae>();
    after_a_wrap_the_search_goes_past_a_busy_slot_0::<Pae>();
    lock_free_hits_raise_the_peak::<Pae>();
    a_ticket_takes_a_cached_slot_under_the_lock::<Pae>();
    generations_clears_at_the_last_release::<Pae>();
    a_reservation_beats_a_lock_free_hit::<Pae>();
    generations_finds_the_one_released_slot::<Pae, 4>();
    generations_finds_the_one_released_slot::<Pae, 8>();
}
