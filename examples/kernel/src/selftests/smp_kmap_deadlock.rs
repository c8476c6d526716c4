//! The two-kmap deadlock on every CPU at once: a pool smaller than CPUs x
//! mappings, kept deadlock-free by reservations and watched by the boot
//! CPU.

use core::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};

use kmap::{DirectMap, KmapTask};
use paging_core::{PhysFrame, VirtAddr};

use super::flush_policies::clear_area;
use super::memory_access::{give_back, pattern, read_word, test_pages, write_word};
use crate::base::config::CPUS;
use crate::mm::direct_map::DirectMapAccess;
use crate::mm::kernel::Kernel;
use crate::mm::kmap_policy::KernelPolicy;
use crate::mm::kmap_setup::KernelWait;
use crate::mm::layout::{PAGE_OFFSET, kmap_bench_base};
use crate::mm::shootdown::KernelTlb;
use crate::selftests::harness::TestResult;
use crate::{arch::pit, ensure, failure, println, smp};

/// Pool of the deadlock test: fewer slots than CPUs x mappings.
type TinyPool = kmap::PersistentPool<
    crate::arch::mode::Mode,
    DirectMapAccess,
    KernelTlb,
    KernelPolicy,
    KernelWait,
    TINY_SLOTS,
>;
const TINY_SLOTS: usize = 4;
/// Mappings each worker holds at once.
const DEPTH: usize = 2;
/// Rounds per worker.
const ROUNDS: u32 = 200;
/// Spins each worker holds its mappings for.
const HOLD_SPINS: u32 = 20_000;
/// The watchdog gives up after this long without progress.
const STALL_MS: u32 = 3000;

struct Deadlock<'a> {
    pool: &'a TinyPool,
    pages: &'a [PhysFrame; 16],
    workers: usize,
    arrived: AtomicUsize,
    progress: AtomicU32,
    finished: AtomicUsize,
    waits: [AtomicU32; CPUS],
    bad: AtomicU32,
    stalled: AtomicBool,
}

pub fn smp_two_kmap_deadlock_is_prevented_by_reservations(kernel: &Kernel) -> TestResult {
    let (pages, highmem) = test_pages::<16>()?;
    let direct = DirectMap::new(PAGE_OFFSET, kernel.layout.lowmem_limit).with_force_map(!highmem);
    let base = VirtAddr::new(kmap_bench_base(0));
    let result = (|| {
        let pool = TinyPool::new(
            &kernel.window,
            base,
            direct,
            DirectMapAccess,
            KernelTlb,
            KernelPolicy::Global,
            KernelWait,
        )
        .map_err(|e| failure!("pool: {e}"))?;
        {
            // SAFETY: a token for the filling task.
            let mut task = unsafe { KmapTask::new() };
            for page in &pages {
                let k = pool.map(&mut task, *page).map_err(|e| failure!("{e}"))?;
                // SAFETY: the slot maps a test frame.
                unsafe { write_word(k.va().as_u32() as usize, pattern(page.number())) };
            }
        }
        let online = smp::online_count();
        let state = Deadlock {
            pool: &pool,
            pages: &pages,
            workers: if online > 1 { online - 1 } else { 1 },
            arrived: AtomicUsize::new(0),
            progress: AtomicU32::new(0),
            finished: AtomicUsize::new(0),
            waits: [const { AtomicU32::new(0) }; CPUS],
            bad: AtomicU32::new(0),
            stalled: AtomicBool::new(false),
        };
        crate::smp::work::run_on_all(deadlock_worker, &state as *const Deadlock<'_> as usize);
        let stats = pool.stats();
        clear_area(kernel, base)?;
        ensure!(
            !state.stalled.load(Ordering::SeqCst),
            "no progress for {STALL_MS} ms: deadlock"
        );
        ensure!(
            state.finished.load(Ordering::SeqCst) == state.workers,
            "{} of {} workers finished",
            state.finished.load(Ordering::SeqCst),
            state.workers
        );
        ensure!(
            state.bad.load(Ordering::SeqCst) == 0,
            "{} wrong words",
            state.bad.load(Ordering::SeqCst)
        );
        let waits: [u32; CPUS] = core::array::from_fn(|c| state.waits[c].load(Ordering::SeqCst));
        println!(
            "    {} worker CPUs x {ROUNDS} rounds of {DEPTH} kmaps at once from a {TINY_SLOTS}-slot pool ({} > {TINY_SLOTS}); cpu 0 watched: every round finished, rounds that waited per CPU {:?} (pool waits {}), peak {} slots in use",
            state.workers,
            state.workers * DEPTH,
            &waits[..online],
            stats.waits,
            stats.peak_in_use
        );
        if state.workers * DEPTH > TINY_SLOTS {
            ensure!(
                stats.waits > 0,
                "the pool never ran out: the test did not contend"
            );
        }
        Ok(())
    })();
    give_back(&pages);
    result
}

fn deadlock_worker(cpu: usize, arg: usize) {
    // SAFETY: `arg` is the `Deadlock` on the boot CPU's stack, alive until
    // `run_on_all` returns.
    let state = unsafe { &*(arg as *const Deadlock<'_>) };
    if cpu == 0 && smp::online_count() > 1 {
        watchdog(state);
        return;
    }
    // SAFETY: this worker's only token, alive until it returns.
    let mut task = unsafe { KmapTask::new() };
    state.arrived.fetch_add(1, Ordering::SeqCst);
    while state.arrived.load(Ordering::SeqCst) < state.workers {
        core::hint::spin_loop();
    }
    let mut rng = 0x2545_F491u32 ^ (cpu as u32).wrapping_mul(0x9E37_79B9) | 1;
    for _ in 0..ROUNDS {
        if state.stalled.load(Ordering::SeqCst) {
            return;
        }
        let before = state.pool.stats().waits;
        let Ok(both) = state.pool.reserve(&mut task, DEPTH) else {
            state.bad.fetch_add(1, Ordering::SeqCst);
            continue;
        };
        if state.pool.stats().waits != before {
            state.waits[cpu].fetch_add(1, Ordering::Relaxed);
        }
        let mut held: heapless::Vec<kmap::Kmap<'_>, DEPTH> = heapless::Vec::new();
        for _ in 0..DEPTH {
            rng ^= rng << 13;
            rng ^= rng >> 17;
            rng ^= rng << 5;
            let page = state.pages[rng as usize % 16];
            match both.map(page) {
                Ok(k) => {
                    // SAFETY: the slot maps a test frame.
                    let seen = unsafe { read_word(k.va().as_u32() as usize) };
                    if seen != pattern(page.number()) {
                        state.bad.fetch_add(1, Ordering::SeqCst);
                    }
                    let _ = held.push(k);
                }
                Err(_) => {
                    state.bad.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
        // Hold both a while, so the other CPUs' reservations meet a full
        // pool (the situation that deadlocks without reservations).
        for _ in 0..HOLD_SPINS {
            core::hint::spin_loop();
        }
        drop(held);
        drop(both);
        state.progress.fetch_add(1, Ordering::SeqCst);
    }
    state.finished.fetch_add(1, Ordering::SeqCst);
}

/// The boot CPU: fails the test if no worker makes progress for
/// [`STALL_MS`].
fn watchdog(state: &Deadlock<'_>) {
    let mut last = state.progress.load(Ordering::SeqCst);
    let mut quiet_ms = 0;
    while state.finished.load(Ordering::SeqCst) < state.workers {
        pit::delay_us(1000);
        let now = state.progress.load(Ordering::SeqCst);
        if now == last {
            quiet_ms += 1;
            if quiet_ms >= STALL_MS {
                // The workers are stuck inside the pool: nothing returns
                // to the test runner, so the watchdog reports and ends the
                // run itself.
                state.stalled.store(true, Ordering::SeqCst);
                println!("FAILED");
                println!(
                    "    reason: watchdog: no kmap round finished for {STALL_MS} ms (deadlock); reservation waits per CPU {:?}",
                    core::array::from_fn::<u32, CPUS, _>(|c| state.waits[c].load(Ordering::SeqCst))
                );
                crate::arch::io::exit_qemu(false);
            }
        } else {
            last = now;
            quiet_ms = 0;
        }
    }
}
