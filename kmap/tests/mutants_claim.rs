//! A claim that fails after taking a reservation's ticket gives the
//! promised capacity back (and an unreserved claim takes none): when the
//! slot's table cannot be reached, and when every slot is unused but cannot
//! be cleared; and under `Generations` a search among slots it cannot clear
//! ends. Written for mutants that `cargo xtask mutants` found no test
//! noticed (docs/testing.md).

mod support;

use std::sync::atomic::{AtomicBool, Ordering};

use kmap::{Generations, GlobalFlush, KmapError, KmapTask, PersistentPool, SpinWait};
use paging_core::{AccessError, PhysFrame, TableAccess};
use paging_sim::{SimAccess, SimRam, SimTable};
use paging_x86_2level::TwoLevel;
use paging_x86_pae::Pae;
use support::{Kernel, ModeUnderTest, PKMAP_BASE, va};

/// The simulated RAM, unreachable while `off` is set.
struct Switchable<'r, 'o> {
    inner: SimAccess<'r>,
    off: &'o AtomicBool,
}

impl TableAccess for Switchable<'_, '_> {
    type Table<'a>
        = SimTable<'a>
    where
        Self: 'a;

    fn table(&self, frame: PhysFrame) -> Result<SimTable<'_>, AccessError> {
        if self.off.load(Ordering::SeqCst) {
            return Err(AccessError::Unreachable(frame));
        }
        self.inner.table(frame)
    }
}

/// A pool of `N` slots with `policy` whose slot tables are unreachable
/// while `off` is set.
fn switchable_pool<'a, M: ModeUnderTest, P: kmap::FlushPolicy, const N: usize>(
    k: &'a Kernel<'a, M>,
    ram: &'a SimRam,
    off: &'a AtomicBool,
    policy: P,
) -> PersistentPool<M, Switchable<'a, 'a>, &'a paging_sim::Mmu<'a>, P, SpinWait, N>
where
    kmap::PoolSize<N>: kmap::ValidPoolSize,
{
    PersistentPool::new(
        &k.window,
        va(PKMAP_BASE),
        k.direct,
        Switchable {
            inner: SimAccess::new(ram),
            off,
        },
        &k.m.mmu,
        policy,
        SpinWait,
    )
    .unwrap()
}

fn reserved(pool: &impl std::fmt::Debug) -> usize {
    let text = format!("{pool:?}");
    let at = text.find("reserved: ").unwrap() + "reserved: ".len();
    text[at..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

fn failed_claims_give_the_ticket_back<M: ModeUnderTest>() {
    let ram = SimRam::new();
    let k = Kernel::<M>::new(&ram);
    let off = AtomicBool::new(false);
    let pool = switchable_pool::<M, _, 2>(&k, &ram, &off, GlobalFlush);
    // SAFETY: the only token of this test thread.
    let mut task = unsafe { KmapTask::new() };

    // The slot's table cannot be reached.
    off.store(true, Ordering::SeqCst);
    let e = pool.try_map(&task, k.high_page(0)).map(|g| g.va());
    assert!(matches!(e, Err(KmapError::Access(_))), "{e:?}");
    assert_eq!(reserved(&pool), 0, "an unreserved claim took nothing");
    {
        let r = pool.reserve(&mut task, 1).unwrap();
        let e = r.map(k.high_page(0)).map(|g| g.va());
        assert!(matches!(e, Err(KmapError::Access(_))), "{e:?}");
        assert_eq!((r.remaining(), reserved(&pool)), (1, 1));
    }
    assert_eq!(reserved(&pool), 0);

    // Both slots unused (count 1), and they cannot be cleared at the wrap.
    off.store(false, Ordering::SeqCst);
    let both: Vec<_> = (1..3)
        .map(|i| pool.try_map(&task, k.high_page(i)).unwrap())
        .collect();
    drop(both);
    off.store(true, Ordering::SeqCst);
    {
        let r = pool.reserve(&mut task, 1).unwrap();
        let e = r.map(k.high_page(5)).map(|g| g.va());
        assert_eq!(e, Err(KmapError::Exhausted));
        assert_eq!((r.remaining(), reserved(&pool)), (1, 1));
    }
    assert_eq!(reserved(&pool), 0);
    // Reachable again: the next wrap clears them and the pool works.
    off.store(false, Ordering::SeqCst);
    let g = pool.try_map(&task, k.high_page(6)).unwrap();
    assert_eq!(pool.slot_count(g.va()), Some(2));
}

/// Under `Generations` a slot released while its table cannot be reached
/// keeps its page mapped (count 1, hits allowed). With every slot like
/// that the search for a free slot must end: past both half boundaries,
/// then one lap after trying to free every stale slot at once, it reports
/// the pool exhausted. Once the table is reachable again the next map
/// clears and frees them.
fn generations_gives_up_on_slots_it_cannot_clear<M: ModeUnderTest>() {
    let ram = SimRam::new();
    let k = Kernel::<M>::new(&ram);
    let off = AtomicBool::new(false);
    let pool = switchable_pool::<M, _, 4>(&k, &ram, &off, Generations);
    // SAFETY: the only token of this test thread; only `try_` calls.
    let task = unsafe { KmapTask::new() };
    let all: Vec<_> = (0..4)
        .map(|i| pool.try_map(&task, k.high_page(i)).unwrap())
        .collect();
    let slots: Vec<_> = all.iter().map(|g| g.va()).collect();
    off.store(true, Ordering::SeqCst);
    drop(all);
    for &at in &slots {
        assert_eq!(pool.slot_count(at), Some(1));
        assert_ne!(k.pte(at), 0, "not cleared: its table was unreachable");
    }
    assert_eq!(pool.in_use(), 0);
    let wraps = pool.stats().wraps;
    let e = pool.try_map(&task, k.high_page(7)).map(|g| g.va());
    assert_eq!(e, Err(KmapError::Exhausted));
    // Two half boundaries, then every stale slot at once: three tries.
    assert_eq!(pool.stats().wraps, wraps + 3);
    for &at in &slots {
        assert_eq!(pool.slot_count(at), Some(1));
        assert_ne!(k.pte(at), 0);
    }
    // Reachable again. The next half boundary clears every such slot (the
    // slots are stale from then on), the one after frees the stale slots
    // of the half it enters, and the map takes the first of them; the
    // other half's two stale slots wait for their own boundary.
    off.store(false, Ordering::SeqCst);
    let wraps = pool.stats().wraps;
    let g = pool.try_map(&task, k.high_page(8)).unwrap();
    assert_eq!(pool.stats().wraps, wraps + 2);
    assert!(slots.contains(&g.va()));
    assert_eq!(pool.slot_count(g.va()), Some(2));
    let mut counts: Vec<_> = slots.iter().map(|&at| pool.slot_count(at)).collect();
    counts.sort();
    assert_eq!(counts, [Some(0), Some(1), Some(1), Some(2)]);
    for &at in &slots {
        if at != g.va() {
            assert_eq!(k.pte(at), 0, "cleared");
        }
    }
    for i in 0..4 {
        assert_eq!(pool.lookup(k.high_page(i)), None, "cleared and forgotten");
    }
}

#[test]
fn two_level() {
    failed_claims_give_the_ticket_back::<TwoLevel>();
    generations_gives_up_on_slots_it_cannot_clear::<TwoLevel>();
}

#[test]
fn pae() {
    failed_claims_give_the_ticket_back::<Pae>();
    generations_gives_up_on_slots_it_cannot_clear::<Pae>();
}
