//! The criterion groups. Every comparison's two sides are measured in the
//! same run, one after the other, by the same kind of loop.
//!
//! Timed sections:
//! - `map`: mapping a batch of [`BATCH`] pages into existing tables; the
//!   unmap of the batch is outside the timed section, on both sides.
//! - `translate`: translating [`BATCH`] addresses, on both sides.
//! - `range`: one `map_range` of 1 GiB into a fresh hierarchy (creating the
//!   empty PGD is inside, resetting the bump allocator outside), versus
//!   the plain loop filling preallocated tables (and the same loop with
//!   one volatile store per entry).
//! - `kmap`: one `try_map` + guard drop (kmap + kunmap), and the baseline:
//!   one lock round trip plus one hash lookup.
//! - `kmap-threads`: the same hit and baseline run by 1, 2 and 4 threads at
//!   once on one shared pool (one shared lock): each thread's time per
//!   operation, from a common start to the last thread's end.

use std::hint::black_box;
use std::ops::Range;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use criterion::{BenchmarkGroup, Criterion, SamplingMode, measurement::WallTime};
use kmap::{AccessedBit, FlushPolicy, GlobalFlush, KmapTask, PerPage, RangeFlush};
use paging_benches::kmap_host::{KmapHost, MISS_PAGES, highmem_frame, hit_frame};
use paging_benches::{LockLookup, OursPages, OursRange, PAGES, RawBound, TheirPages};
use paging_core::PagingMode;
use paging_x86_2level::TwoLevel;
use paging_x86_pae::Pae;

/// Pages mapped (or translated) per timed section.
pub const BATCH: usize = 256;

/// The policy names used in benchmark ids (kmap's own names).
pub const POLICIES: [&str; 4] = ["per-page", "range", "global", "accessed-bit"];

/// Run `batch` over `iters` pages split into batches of at most [`BATCH`];
/// `batch` returns the time of its timed part.
fn batched(iters: u64, mut batch: impl FnMut(Range<usize>) -> Duration) -> Duration {
    let mut total = Duration::ZERO;
    let mut left = iters as usize;
    let mut start = 0;
    while left > 0 {
        let n = left.min(BATCH);
        if start + n > PAGES {
            start = 0;
        }
        total += batch(start..start + n);
        start += n;
        left -= n;
    }
    total
}

fn timed<T>(op: impl FnOnce() -> T) -> (T, Duration) {
    let t = Instant::now();
    let out = op();
    (black_box(out), t.elapsed())
}

fn map_ours<M: PagingMode>(g: &mut BenchmarkGroup<'_, WallTime>, id: &str) {
    let mut f = OursPages::<M>::new().expect("fixture");
    g.bench_function(id, |b| {
        b.iter_custom(|iters| {
            batched(iters, |p| {
                let (r, d) = timed(|| f.map_pages(p.clone()));
                r.expect("map");
                f.unmap_pages(p).expect("unmap");
                d
            })
        })
    });
}

/// Single pages into existing tables: ours in both modes, then `x86_64`.
pub fn map(c: &mut Criterion) {
    let mut g = c.benchmark_group("map");
    map_ours::<TwoLevel>(&mut g, "ours-2level");
    map_ours::<Pae>(&mut g, "ours-pae");
    let mut t = TheirPages::new().expect("fixture");
    g.bench_function("x86_64", |b| {
        b.iter_custom(|iters| {
            batched(iters, |p| {
                let (r, d) = timed(|| t.map_pages(p.clone()));
                r.expect("map");
                t.unmap_pages(p).expect("unmap");
                d
            })
        })
    });
    g.finish();
}

fn translate_ours<M: PagingMode>(g: &mut BenchmarkGroup<'_, WallTime>, id: &str) {
    let mut f = OursPages::<M>::new().expect("fixture");
    f.map_pages(0..PAGES).expect("map");
    g.bench_function(id, |b| {
        b.iter_custom(|iters| {
            batched(iters, |p| {
                let (r, d) = timed(|| f.translate_pages(p));
                r.expect("translate");
                d
            })
        })
    });
}

/// Translations of mapped addresses: ours in both modes, then `x86_64`.
pub fn translate(c: &mut Criterion) {
    let mut g = c.benchmark_group("translate");
    translate_ours::<TwoLevel>(&mut g, "ours-2level");
    translate_ours::<Pae>(&mut g, "ours-pae");
    let mut t = TheirPages::new().expect("fixture");
    t.map_pages(0..PAGES).expect("map");
    g.bench_function("x86_64", |b| {
        b.iter_custom(|iters| {
            batched(iters, |p| {
                let (r, d) = timed(|| t.translate_pages(p));
                r.expect("translate");
                d
            })
        })
    });
    g.finish();
}

fn range_ours<M: PagingMode>(g: &mut BenchmarkGroup<'_, WallTime>, id: &str) {
    let mut f = OursRange::<M>::new();
    g.bench_function(id, |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                f.reset();
                let (r, d) = timed(|| f.map_range());
                r.expect("map_range");
                total += d;
            }
            total
        })
    });
}

fn range_bound<M: PagingMode>(g: &mut BenchmarkGroup<'_, WallTime>, id: &str, volatile: bool) {
    let mut bound = RawBound::new::<M>().expect("bound");
    g.bench_function(id, |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let ((), d) = if volatile {
                    timed(|| bound.fill_volatile())
                } else {
                    timed(|| bound.fill())
                };
                total += d;
            }
            total
        })
    });
}

/// 1 GiB of 4 KiB pages: ours (range API) and the plain-loop bound.
pub fn range(c: &mut Criterion, quick: bool) {
    let mut g = c.benchmark_group("range");
    g.sampling_mode(SamplingMode::Flat);
    g.sample_size(10);
    g.measurement_time(Duration::from_millis(if quick { 300 } else { 1500 }));
    range_ours::<TwoLevel>(&mut g, "ours-2level");
    range_ours::<Pae>(&mut g, "ours-pae");
    range_bound::<TwoLevel>(&mut g, "bound-2level", false);
    range_bound::<Pae>(&mut g, "bound-pae", false);
    range_bound::<TwoLevel>(&mut g, "volatile-2level", true);
    range_bound::<Pae>(&mut g, "volatile-pae", true);
    g.finish();
}

fn kmap_hit<M: PagingMode, P: FlushPolicy>(
    g: &mut BenchmarkGroup<'_, WallTime>,
    task: &KmapTask,
    id: &str,
    policy: P,
    held: bool,
) {
    let k = KmapHost::<M, P>::new(policy).expect("pool");
    k.warm(task).expect("warm");
    let frame = hit_frame().expect("frame");
    let holder = held.then(|| k.pool().try_map(task, frame).expect("hold"));
    g.bench_function(id, |b| {
        b.iter(|| k.kmap_kunmap(task, black_box(frame)).expect("kmap"))
    });
    drop(holder);
}

fn kmap_miss<M: PagingMode, P: FlushPolicy>(
    g: &mut BenchmarkGroup<'_, WallTime>,
    task: &KmapTask,
    id: &str,
    policy: P,
) {
    let k = KmapHost::<M, P>::new(policy).expect("pool");
    k.warm(task).expect("warm");
    let frames: Vec<_> = (0..MISS_PAGES)
        .map(|i| highmem_frame(i).expect("frame"))
        .collect();
    let mut next = 0;
    g.bench_function(id, |b| {
        b.iter(|| {
            next = (next + 1) % MISS_PAGES;
            k.kmap_kunmap(task, frames[next]).expect("kmap")
        })
    });
}

fn kmap_mode<M: PagingMode>(g: &mut BenchmarkGroup<'_, WallTime>, task: &KmapTask, mode: &str) {
    // The baseline right before the mode's kmap benchmarks, so load on a
    // shared machine drifts as little as possible between the two.
    let lock = LockLookup::new();
    let key = lock.present_key();
    g.bench_function(format!("lock-lookup-{mode}"), |b| {
        b.iter(|| lock.lookup(black_box(key)))
    });
    kmap_hit::<M, _>(g, task, &format!("hit-{mode}-per-page"), PerPage, false);
    kmap_hit::<M, _>(g, task, &format!("hit-{mode}-range"), RangeFlush, false);
    kmap_hit::<M, _>(g, task, &format!("hit-{mode}-global"), GlobalFlush, false);
    kmap_hit::<M, _>(
        g,
        task,
        &format!("hit-{mode}-accessed-bit"),
        AccessedBit,
        false,
    );
    kmap_hit::<M, _>(
        g,
        task,
        &format!("hit-held-{mode}-global"),
        GlobalFlush,
        true,
    );
    kmap_miss::<M, _>(g, task, &format!("miss-{mode}-per-page"), PerPage);
    kmap_miss::<M, _>(g, task, &format!("miss-{mode}-range"), RangeFlush);
    kmap_miss::<M, _>(g, task, &format!("miss-{mode}-global"), GlobalFlush);
    kmap_miss::<M, _>(g, task, &format!("miss-{mode}-accessed-bit"), AccessedBit);
}

/// Per mode: the baseline, then kmap + kunmap hits and misses per policy.
pub fn kmap(c: &mut Criterion) {
    let mut g = c.benchmark_group("kmap");
    // SAFETY: the only task token of this (the harness's) thread.
    let task = unsafe { KmapTask::new() };
    kmap_mode::<TwoLevel>(&mut g, &task, "2level");
    kmap_mode::<Pae>(&mut g, &task, "pae");
    g.finish();
}

/// Thread counts of the `kmap-threads` group (the project's machine has two
/// cores: the 4-thread row shares them, so it measures time slicing as much
/// as the pool).
pub const THREADS: [usize; 3] = [1, 2, 4];

/// Run `op(thread)` `iters` times on each of `threads` threads, released
/// together by a barrier: the wall time from the first thread's start to
/// the last thread's end (a thread scheduled late still counts in full; a
/// timer in a third thread would not be, on a two-core machine).
fn parallel(threads: usize, iters: u64, op: impl Fn(usize) + Sync) -> Duration {
    let start = Barrier::new(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (start, op) = (&start, &op);
                s.spawn(move || {
                    start.wait();
                    let t0 = Instant::now();
                    for _ in 0..iters {
                        op(t);
                    }
                    (t0, Instant::now())
                })
            })
            .collect();
        let spans: Vec<_> = handles
            .into_iter()
            .map(|h| h.join().expect("bench thread"))
            .collect();
        let first = spans.iter().map(|s| s.0).min();
        let last = spans.iter().map(|s| s.1).max();
        match (first, last) {
            (Some(a), Some(b)) => b - a,
            _ => Duration::ZERO,
        }
    })
}

/// A value alone on its cache lines (two, for the adjacent-line prefetcher).
#[repr(align(128))]
struct Padded<T>(T);

/// The pool's hit path (PAE, global policy: the hit never reaches the
/// policy) and the lock + lookup baseline, each run by 1 and 2 threads on
/// one shared pool or lock; thread `t` maps its own warm page.
pub fn kmap_threads(c: &mut Criterion) {
    let mut g = c.benchmark_group("kmap-threads");
    // SAFETY: the harness thread's only token (for warming).
    let task = unsafe { KmapTask::new() };
    let k = KmapHost::<Pae, GlobalFlush>::new(GlobalFlush).expect("pool");
    k.warm(&task).expect("warm");
    // Warm pages, mapped last-first by `warm`: thread 0 gets the usual hit
    // page, thread t the one mapped t maps after it (slot t + 1).
    let frames: [_; 4] =
        core::array::from_fn(|t| highmem_frame(MISS_PAGES - 1 - t).expect("frame"));
    assert_eq!(Some(frames[0]), hit_frame());
    for f in &frames {
        assert!(k.pool().lookup(*f).is_some(), "{f:?} not warm");
    }
    let pool = k.pool();
    let lock = LockLookup::new();
    let keys = frames.map(|f| f.number());
    // The control: one lock and map per thread, each on its own cache
    // lines, so threads share nothing.
    let private: [Padded<LockLookup>; 4] = core::array::from_fn(|_| Padded(LockLookup::new()));
    // The pool's control: one warm pool per thread (nothing shared), each
    // thread hitting its page in its own pool.
    let own: Vec<_> = (0..4)
        .map(|_| {
            let k = KmapHost::<Pae, GlobalFlush>::new(GlobalFlush).expect("pool");
            k.warm(&task).expect("warm");
            k
        })
        .collect();
    let own_pools: Vec<_> = own.iter().map(|k| k.pool()).collect();
    for threads in THREADS {
        g.bench_function(format!("own-pool-t{threads}"), |b| {
            b.iter_custom(|iters| {
                parallel(threads, iters, |t| {
                    thread_local! {
                        // SAFETY: one token per bench thread, made once.
                        static TASK: KmapTask = const { unsafe { KmapTask::new() } };
                    }
                    TASK.with(|task| {
                        let guard = own_pools[t]
                            .try_map(task, black_box(frames[0]))
                            .expect("kmap");
                        black_box(guard.va());
                        drop(guard);
                    })
                })
            })
        });
        g.bench_function(format!("private-t{threads}"), |b| {
            b.iter_custom(|iters| {
                parallel(threads, iters, |t| {
                    black_box(private[t].0.lookup(black_box(keys[t])));
                })
            })
        });
        g.bench_function(format!("lock-lookup-t{threads}"), |b| {
            b.iter_custom(|iters| {
                parallel(threads, iters, |t| {
                    black_box(lock.lookup(black_box(keys[t])));
                })
            })
        });
        g.bench_function(format!("hit-t{threads}"), |b| {
            b.iter_custom(|iters| {
                parallel(threads, iters, |t| {
                    thread_local! {
                        // SAFETY: one token per bench thread, made once.
                        static TASK: KmapTask = const { unsafe { KmapTask::new() } };
                    }
                    // What `KmapHost::kmap_kunmap` does, on the shared pool
                    // (the host memory behind it is not `Sync`).
                    TASK.with(|task| {
                        let guard = pool.try_map(task, black_box(frames[t])).expect("kmap");
                        black_box(guard.va());
                        drop(guard);
                    })
                })
            })
        });
    }
    g.finish();
}
