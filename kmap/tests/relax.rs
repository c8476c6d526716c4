//! A CPU spinning for the pool's lock keeps answering TLB shootdowns:
//! `WaitHook::relax` runs in every iteration of the spin.
//!
//! Two threads stand for two CPUs. CPU A wraps the pool: with the pool lock
//! held, its shootdown (a `TlbOps` over the simulated MMU) asks CPU B to
//! flush and waits for B's acknowledgement. CPU B, meanwhile, wants the pool
//! lock for a `map_nowait` (as from an interrupt handler, interrupts off:
//! the only way it can acknowledge is from inside its lock spin). With a
//! hook that services shootdowns in `relax`, A gets its answer and both
//! maps succeed; with a hook that only pauses, A would wait forever (the
//! test's shootdown gives up after a timeout and reports it, so the
//! negative control ends).

mod support;

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use kmap::{GlobalFlush, KmapTask, NowaitKmap, WaitHook};
use paging_core::{TlbOps, VirtAddr};
use paging_sim::{Mmu, SimAccess, SimRam};
use support::{Kernel, ModeUnderTest, PKMAP_BASE, reads_frame, va};

/// One pending shootdown request from A to B.
#[derive(Default)]
struct Shootdown {
    /// Set (with the pool lock held) when A's flush asks B to flush.
    armed: AtomicBool,
    requested: AtomicBool,
    acked: AtomicBool,
    timed_out: AtomicBool,
}

/// How long A waits for B's acknowledgement before giving up (a real
/// kernel would wait forever): long where B answers, so a loaded machine
/// cannot make the test flaky; short in the negative control, where nobody
/// answers.
const PATIENCE: Duration = Duration::from_secs(20);
const PATIENCE_UNANSWERED: Duration = Duration::from_millis(300);

/// A's shootdown: flush its own MMU, then, when armed, post a request to B
/// and wait for the acknowledgement.
struct AckTlb<'a> {
    mmu: &'a Mmu<'a>,
    shootdown: &'a Shootdown,
    patience: Duration,
}

impl AckTlb<'_> {
    fn shoot(&self) {
        if !self.shootdown.armed.load(Ordering::Acquire) {
            return;
        }
        self.shootdown.requested.store(true, Ordering::Release);
        let start = Instant::now();
        while !self.shootdown.acked.load(Ordering::Acquire) {
            if start.elapsed() > self.patience {
                self.shootdown.timed_out.store(true, Ordering::Release);
                return;
            }
            std::hint::spin_loop();
        }
    }
}

impl TlbOps for AckTlb<'_> {
    fn flush_page(&self, va: VirtAddr) {
        self.mmu.flush_page(va);
        self.shoot();
    }
    fn flush_all(&self) {
        self.mmu.flush_all();
        self.shoot();
    }
    fn flush_everything(&self) {
        self.mmu.flush_everything();
        self.shoot();
    }
}

/// B's wait hook: counts `relax` calls and, if `services`, acknowledges a
/// pending shootdown from inside the lock spin.
struct ServicingHook<'a> {
    shootdown: &'a Shootdown,
    services: bool,
    relaxes: AtomicUsize,
}

impl WaitHook for ServicingHook<'_> {
    fn wait(&self, epoch: &AtomicU32, seen: u32) {
        while epoch.load(Ordering::Acquire) == seen {
            std::hint::spin_loop();
        }
    }
    fn wake(&self, _epoch: &AtomicU32) {}
    fn relax(&self) {
        self.relaxes.fetch_add(1, Ordering::Relaxed);
        if self.services && self.shootdown.requested.swap(false, Ordering::AcqRel) {
            // (B's own flush would go here.)
            self.shootdown.acked.store(true, Ordering::Release);
        }
        std::hint::spin_loop();
    }
}

struct Outcome {
    relaxes: usize,
    timed_out: bool,
}

fn run<M: ModeUnderTest>(services: bool) -> Outcome {
    let ram = SimRam::new();
    let k = Kernel::<M>::new(&ram);
    let shootdown = Shootdown::default();
    let hook = ServicingHook {
        shootdown: &shootdown,
        services,
        relaxes: AtomicUsize::new(0),
    };
    let tlb = AckTlb {
        mmu: &k.m.mmu,
        shootdown: &shootdown,
        patience: if services {
            PATIENCE
        } else {
            PATIENCE_UNANSWERED
        },
    };
    let pool = kmap::PersistentPool::<M, _, _, _, _, 4>::new(
        &k.window,
        va(PKMAP_BASE),
        k.direct,
        SimAccess::new(&ram),
        tlb,
        GlobalFlush,
        hook,
    )
    .unwrap();
    let local = k.local(false, k.direct);
    let pages: Vec<_> = (0..5).map(|i| k.high_page(i)).collect();
    std::thread::scope(|s| {
        let a = s.spawn(|| {
            // SAFETY: the only token of this thread.
            let task = unsafe { KmapTask::new() };
            // Slots 1..3 used and released (count 1): the next new page
            // wraps the cursor, clears them and flushes every CPU.
            for &p in &pages[..3] {
                drop(pool.try_map(&task, p).unwrap());
            }
            shootdown.armed.store(true, Ordering::Release);
            let g = pool.try_map(&task, pages[3]).unwrap();
            assert_eq!(pool.stats().wraps, 1);
            assert!(reads_frame(&k.m.mmu, g.va(), pages[3]));
        });
        let b = s.spawn(|| {
            // B only asks for the lock once A holds it and waits for B.
            while !shootdown.requested.load(Ordering::Acquire)
                && !shootdown.timed_out.load(Ordering::Acquire)
            {
                std::thread::yield_now();
            }
            // SAFETY: the only token of this thread (an interrupt handler
            // would not have one to wait with; map_nowait never waits).
            let task = unsafe { KmapTask::new() };
            let g = pool.map_nowait(&task, &local, 1, pages[4]).unwrap();
            assert!(matches!(g, NowaitKmap::Persistent(_)));
            assert!(reads_frame(&k.m.mmu, g.va(), pages[4]));
        });
        a.join().unwrap();
        b.join().unwrap();
    });
    Outcome {
        relaxes: pool.wait_hook().relaxes.load(Ordering::Relaxed),
        timed_out: shootdown.timed_out.load(Ordering::Acquire),
    }
}

fn a_lock_spinner_answers_the_holders_shootdown<M: ModeUnderTest>() {
    let o = run::<M>(true);
    // B spun for the lock while A held it, relaxing every iteration...
    assert!(o.relaxes > 0);
    // ...and A got its acknowledgement from inside that spin.
    assert!(!o.timed_out, "the holder never got B's acknowledgement");
}

fn without_servicing_the_holder_waits_for_ever<M: ModeUnderTest>() {
    // The negative control: relax is called, but does not answer. The
    // holder only gets out because this test's shootdown gives up.
    let o = run::<M>(false);
    assert!(o.relaxes > 0);
    assert!(o.timed_out, "a shootdown nobody answered did not time out");
}

paging_sim::for_each_mode!(
    a_lock_spinner_answers_the_holders_shootdown,
    without_servicing_the_holder_waits_for_ever
);
