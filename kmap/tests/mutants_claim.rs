//! A claim that fails after taking a reservation's ticket gives the
//! promised capacity back (and an unreserved claim takes none): when the
//! slot's table cannot be reached, and when every slot is unused but cannot
//! be cleared. Written for mutants that `cargo xtask mutants` found no test
//! noticed (docs/testing.md).

mod support;

use std::sync::atomic::{AtomicBool, Ordering};

use kmap::{GlobalFlush, KmapError, KmapTask, PersistentPool, SpinWait};
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
    let pool = PersistentPool::<M, _, _, GlobalFlush, SpinWait, 2>::new(
        &k.window,
        va(PKMAP_BASE),
        k.direct,
        Switchable {
            inner: SimAccess::new(&ram),
            off: &off,
        },
        &k.m.mmu,
        GlobalFlush,
        SpinWait,
    )
    .unwrap();
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

#[test]
fn two_level() {
    failed_claims_give_the_ticket_back::<TwoLevel>();
}

#[test]
fn pae() {
    failed_claims_give_the_ticket_back::<Pae>();
}
