//! Eight threads, each with its own `KmapTask` and simulated CPU, take
//! nested mappings (depth 2-4) through reservations from a pool of 8 slots
//! (far fewer than threads x depth), waiting through a real blocking hook
//! or by spinning. It must finish -- a watchdog fails the run after 60 s --
//! and no slot may ever hold two pages at once: a shared slot -> page
//! record catches that, and every mapping is read through the MMU of the
//! thread's own CPU.

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use kmap::{FlushPolicy, GlobalFlush, KmapTask, PerPage, PersistentPool, SpinWait, WaitHook};
use paging_core::{PhysFrame, VirtAddr};
use paging_sim::{SimAccess, SimConfig, SimCpus, SimRam};
use support::{CPUS, Kernel, ModeUnderTest, PKMAP_BASE, Rng, reads_frame, va};

/// Under Miri (`cargo xtask miri`) the run shrinks: 4 threads, 4 slots,
/// a round or two each.
const THREADS: usize = if cfg!(miri) { 4 } else { CPUS };
const SLOTS: usize = if cfg!(miri) { 4 } else { 8 };
/// Reservations per thread with a blocking wait.
const ROUNDS: usize = if cfg!(miri) { 2 } else { 100 };
/// Reservations per thread when waiters spin: a spinning waiter burns its
/// whole time slice whenever the holder it waits for is descheduled, so on
/// a small, busy host each wait costs milliseconds.
const SPIN_ROUNDS: usize = if cfg!(miri) { 1 } else { 12 };
const PAGES: usize = 24;

/// A blocking wait: sleep on a condition variable until the pool's epoch
/// moves on.
#[derive(Default)]
struct CondvarWait {
    lock: Mutex<()>,
    cv: Condvar,
    sleeps: AtomicU64,
}

impl WaitHook for CondvarWait {
    fn wait(&self, epoch: &AtomicU32, seen: u32) {
        let mut guard = self.lock.lock().unwrap();
        while epoch.load(Ordering::Acquire) == seen {
            self.sleeps.fetch_add(1, Ordering::Relaxed);
            guard = self.cv.wait(guard).unwrap();
        }
    }

    fn wake(&self, _epoch: &AtomicU32) {
        let _guard = self.lock.lock().unwrap();
        self.cv.notify_all();
    }
}

/// Which page each slot holds, and how many live mappings of it the
/// threads have: a slot may never be given to a second page while one lives.
#[derive(Default)]
struct Owners(Mutex<HashMap<u32, (PhysFrame, u32)>>);

impl Owners {
    fn mapped(&self, va: VirtAddr, f: PhysFrame) {
        let mut m = self.0.lock().unwrap();
        let e = m.entry(va.as_u32()).or_insert((f, 0));
        assert_eq!(e.0, f, "slot {va} given to {f:?} while it holds {:?}", e.0);
        e.1 += 1;
    }

    fn unmapping(&self, va: VirtAddr) {
        let mut m = self.0.lock().unwrap();
        let e = m.get_mut(&va.as_u32()).unwrap();
        e.1 -= 1;
        if e.1 == 0 {
            m.remove(&va.as_u32());
        }
    }
}

/// Fail the whole run if `body` does not return within 60 s.
fn with_watchdog(body: impl FnOnce()) {
    let (done, wait) = mpsc::channel::<()>();
    let dog = std::thread::spawn(move || {
        if let Err(RecvTimeoutError::Timeout) = wait.recv_timeout(Duration::from_secs(60)) {
            eprintln!("kmap stress: no progress for 60 s: deadlock");
            std::process::exit(1);
        }
    });
    body();
    done.send(()).unwrap();
    dog.join().unwrap();
}

fn stress<M: ModeUnderTest, P: FlushPolicy, W: WaitHook>(
    policy: P,
    wait: W,
    rounds: usize,
) -> kmap::KmapStats {
    let ram = SimRam::new();
    let k = Kernel::<M>::new(&ram);
    let cpus = SimCpus::new(&ram, SimConfig::for_mode::<M>(), THREADS);
    cpus.load_cr3_all(k.m.mapper.root().as_u64() as u32)
        .unwrap();
    let pool = PersistentPool::<_, _, _, _, _, SLOTS>::new(
        &k.window,
        va(PKMAP_BASE),
        k.direct,
        SimAccess::new(&ram),
        &cpus,
        policy,
        wait,
    )
    .unwrap();
    let pages: Vec<_> = (0..PAGES).map(|i| k.high_page(i)).collect();
    let owners = Owners::default();
    with_watchdog(|| {
        std::thread::scope(|s| {
            for t in 0..THREADS {
                let (pool, pages, owners, cpu) = (&pool, &pages, &owners, cpus.cpu(t).unwrap());
                s.spawn(move || {
                    // SAFETY: the only token of this thread.
                    let mut task = unsafe { KmapTask::new() };
                    let mut rng = Rng::new(t as u64 + 1);
                    for _ in 0..rounds {
                        let depth = 2 + rng.below(3);
                        let r = pool.reserve(&mut task, depth).unwrap();
                        let mut held = Vec::new();
                        for _ in 0..depth {
                            let f = pages[rng.below(PAGES)];
                            let g = r.map(f).unwrap();
                            owners.mapped(g.va(), f);
                            held.push(g);
                            std::thread::yield_now();
                            for g in &held {
                                assert!(reads_frame(cpu, g.va(), g.frame()), "{g:?}");
                            }
                        }
                        assert!(r.map(pages[0]).is_err(), "a reservation is single use");
                        while let Some(g) = held.pop() {
                            owners.unmapping(g.va());
                            drop(g);
                        }
                        drop(held);
                        drop(r);
                        // Sometimes a lone, unreserved map (it may wait too).
                        if rng.below(4) == 0 {
                            let f = pages[rng.below(PAGES)];
                            let g = pool.map(&mut task, f).unwrap();
                            owners.mapped(g.va(), f);
                            assert!(reads_frame(cpu, g.va(), f));
                            owners.unmapping(g.va());
                        }
                    }
                });
            }
        });
    });
    assert_eq!(pool.in_use(), 0);
    // Every promise was given back: the whole pool can be reserved again.
    // SAFETY: the only token of this thread.
    let mut task = unsafe { KmapTask::new() };
    assert_eq!(
        pool.try_reserve(&mut task, SLOTS).unwrap().remaining(),
        SLOTS
    );
    let stats = pool.stats();
    assert!(stats.peak_in_use <= SLOTS as u64);
    assert!(stats.wraps > 0, "{stats:?}");
    // Far more demand than slots: tasks really waited.
    assert!(stats.waits > 0, "{stats:?}");
    stats
}

fn eight_threads_with_a_blocking_wait_finish<M: ModeUnderTest>() {
    let stats = stress::<M, _, _>(GlobalFlush, CondvarWait::default(), ROUNDS);
    println!("{} blocking: {stats:?}", M::NAME);
}

fn eight_threads_spinning_finish<M: ModeUnderTest>() {
    let stats = stress::<M, _, _>(PerPage, SpinWait, SPIN_ROUNDS);
    println!("{} spinning: {stats:?}", M::NAME);
}

paging_sim::for_each_mode!(
    eight_threads_with_a_blocking_wait_finish,
    eight_threads_spinning_finish
);
