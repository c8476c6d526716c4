//! The kmap races on every CPU at once (design point 2, on real
//! processors): a storm of pool kmaps that wraps a shared pool many times
//! under each flush policy (and the soak's storm rounds). The two-kmap
//! deadlock is in [`super::smp_kmap_deadlock`], local kmaps and interrupts
//! in [`super::smp_kmap_local`].

use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

use kmap::{DirectMap, FlushPolicy, KmapStats, KmapTask};
use paging_core::{PhysFrame, VirtAddr};

use super::flush_policies::clear_area;
use super::memory_access::{give_back, pattern, read_word, test_pages, write_word};
use crate::base::config::CPUS;
use crate::mm::direct_map::DirectMapAccess;
use crate::mm::kernel::Kernel;
use crate::mm::kmap_policy::KernelPolicy;
use crate::mm::kmap_setup::KernelWait;
use crate::mm::layout::{KMAP_BENCH_SLOTS, PAGE_OFFSET, kmap_bench_base};
use crate::mm::shootdown::{self, KernelTlb, SHOOTDOWN};
use crate::selftests::harness::{Failure, TestResult};
use crate::{arch::mode, arch::pit, ensure, fail, failure, println, smp};

/// A storm pool at the start of one flush-policy test area.
type StormPool = kmap::PersistentPool<
    crate::arch::mode::Mode,
    DirectMapAccess,
    KernelTlb,
    KernelPolicy,
    KernelWait,
    STORM_SLOTS,
>;

/// Slots of the storm's pool: a whole flush-policy test area.
const STORM_SLOTS: usize = KMAP_BENCH_SLOTS;
/// Pages the storm cycles through (4x the slots: few cache hits).
const STORM_PAGES: usize = 4 * STORM_SLOTS;
/// Map+unmap operations per policy, shared out among the CPUs (every other
/// one checks and writes the page; the others leave the mapping
/// untouched, as a zero-copy path might, which is where the accessed-bit
/// policy saves).
const STORM_OPS: usize = 2048;
/// Every this many operations a CPU reloads CR3 (a context switch): a full
/// flush of the pool's non-global slots, which the generations count.
const SWITCH_EVERY: usize = 4;

/// The storm's shared state, on the boot CPU's stack.
struct Storm<'a> {
    pool: &'a StormPool,
    pages: &'a [PhysFrame; STORM_PAGES],
    cpus: usize,
    arrived: AtomicUsize,
    /// Wrong words read (a stale translation).
    bad: AtomicU32,
    first_bad: spin::Mutex<Option<(usize, PhysFrame, VirtAddr, u32)>>,
    errors: AtomicU32,
    /// The longest `map` call, in TSC ticks (saturating; 0 without a TSC).
    worst_map: AtomicU32,
}

/// The offset of the second checked word of `page`.
fn word_offset(page: PhysFrame) -> usize {
    ((page.number() as usize * 61) % 1023 + 1) * 4
}

/// The storm, once per policy, each on a fresh pool; prints the figures.
pub fn smp_kmap_storm_under_every_flush_policy(kernel: &Kernel) -> TestResult {
    let (pages, highmem) = test_pages::<STORM_PAGES>()?;
    let direct = DirectMap::new(PAGE_OFFSET, kernel.layout.lowmem_limit).with_force_map(!highmem);
    let result = storms(kernel, &pages, direct);
    let hits = match result {
        Ok(_) => hit_rates(kernel, &pages, direct),
        Err(_) => Ok(heapless::Vec::new()),
    };
    give_back(&pages);
    let rows = result?;
    let hits = hits?;
    let cpus = smp::online_count();
    println!(
        "    {cpus} CPUs x {} map+unmap (every other one checked and written) of {STORM_PAGES} {} pages through one {STORM_SLOTS}-slot pool, CR3 reload every {SWITCH_EVERY}:",
        STORM_OPS / cpus,
        if highmem {
            "highmem"
        } else {
            "lowmem (force-mapped)"
        }
    );
    for row in &rows {
        println!(
            "    {:<13} wraps {:>4}  IPIs {:>6} ({:>3}.{}/wrap, {} saved)  rounds {:>5}  waits {:>4}  invalidations per cpu {:?}",
            row.policy.name(),
            row.kmap.wraps,
            row.ipis,
            row.ipis / row.kmap.wraps.max(1),
            row.ipis * 10 / row.kmap.wraps.max(1) % 10,
            row.saved,
            row.rounds,
            row.kmap.waits,
            &row.invalidations[..cpus]
        );
    }
    for rate in &hits {
        println!(
            "    kmap hit rate, {} CPU{} on one pool (global, each CPU its own cached page): {} hits/s per CPU ({} cycles per map+unmap; slowest CPU)",
            rate.cpus,
            if rate.cpus == 1 { "" } else { "s" },
            rate.per_second,
            rate.cycles
        );
    }
    // The figures, checked.
    let by = |p: KernelPolicy| rows.iter().find(|r| r.policy == p);
    if let Some(global) = by(KernelPolicy::Global) {
        ensure!(
            global.ipis <= (cpus as u64 - 1) * global.kmap.wraps,
            "global: {} IPIs for {} wraps on {cpus} CPUs",
            global.ipis,
            global.kmap.wraps
        );
    }
    if let (Some(per_page), Some(accessed)) =
        (by(KernelPolicy::PerPage), by(KernelPolicy::AccessedBit))
    {
        let total = |r: &Row| r.invalidations.iter().sum::<u64>();
        ensure!(
            total(accessed) < total(per_page),
            "accessed-bit: {} invalidations, per-page {}",
            total(accessed),
            total(per_page)
        );
    }
    if cpus > 1
        && let Some(generations) = by(KernelPolicy::Generations)
    {
        ensure!(
            generations.saved > 0,
            "generations skipped no CPU although every CPU reloads CR3 every {SWITCH_EVERY} maps"
        );
    }
    Ok(())
}

/// One storm's figures.
struct Row {
    policy: KernelPolicy,
    kmap: KmapStats,
    ipis: u64,
    saved: u64,
    rounds: u64,
    invalidations: [u64; CPUS],
    worst_map: u32,
}

fn invalidations() -> [u64; CPUS] {
    core::array::from_fn(|cpu| SHOOTDOWN.cpu_stats(cpu).map_or(0, |s| s.invalidations))
}

fn storms(
    kernel: &Kernel,
    pages: &[PhysFrame; STORM_PAGES],
    direct: DirectMap,
) -> Result<heapless::Vec<Row, 8>, Failure> {
    let mut rows = heapless::Vec::new();
    for (k, policy) in KernelPolicy::ALL.into_iter().enumerate() {
        let _ = rows.push(storm_once(kernel, pages, direct, k, policy)?);
    }
    Ok(rows)
}

/// One storm under `policy` on a fresh pool in test area `k % 4`; checks
/// that no CPU read a stale word and that every slot came back.
fn storm_once(
    kernel: &Kernel,
    pages: &[PhysFrame; STORM_PAGES],
    direct: DirectMap,
    k: usize,
    policy: KernelPolicy,
) -> Result<Row, Failure> {
    let base = VirtAddr::new(kmap_bench_base(k % 4));
    let pool = StormPool::new(
        &kernel.window,
        base,
        direct,
        DirectMapAccess,
        KernelTlb,
        policy,
        KernelWait,
    )
    .map_err(|e| failure!("{} pool: {e}", policy.name()))?;
    prefill(&pool, pages)?;
    let storm = Storm {
        pool: &pool,
        pages,
        cpus: smp::online_count(),
        arrived: AtomicUsize::new(0),
        bad: AtomicU32::new(0),
        first_bad: spin::Mutex::new(None),
        errors: AtomicU32::new(0),
        worst_map: AtomicU32::new(0),
    };
    let (before, inv_before) = (SHOOTDOWN.stats(), invalidations());
    crate::smp::work::run_on_all(storm_worker, &storm as *const Storm<'_> as usize);
    let (after, inv_after) = (SHOOTDOWN.stats(), invalidations());
    let kmap = pool.stats();
    let in_use = pool.in_use();
    clear_area(kernel, base)?;
    if let Some((cpu, page, va, seen)) = *storm.first_bad.lock() {
        fail!(
            "{}: CPU {cpu} read {seen:#x} from {page:?} at {va} (expected {:#x}): a stale translation; {} bad reads",
            policy.name(),
            pattern(page.number()),
            storm.bad.load(Ordering::SeqCst)
        );
    }
    ensure!(
        storm.errors.load(Ordering::SeqCst) == 0,
        "{}: {} kmap errors",
        policy.name(),
        storm.errors.load(Ordering::SeqCst)
    );
    ensure!(
        in_use == 0,
        "{}: {in_use} slots still in use after every mapping was dropped",
        policy.name()
    );
    ensure!(
        kmap.wraps >= 8,
        "{}: only {} wraps",
        policy.name(),
        kmap.wraps
    );
    Ok(Row {
        policy,
        kmap,
        ipis: after.ipis_sent - before.ipis_sent,
        saved: after.ipis_saved - before.ipis_saved,
        rounds: after.shootdowns - before.shootdowns,
        invalidations: core::array::from_fn(|c| inv_after[c] - inv_before[c]),
        worst_map: storm.worst_map.load(Ordering::SeqCst),
    })
}

/// What one soak storm did: the policy's figures, and the operations.
pub struct SoakStorm {
    /// Map+unmap operations done, over every CPU.
    pub ops: u64,
    /// Times a CPU waited for a slot.
    pub waits: u64,
    /// The longest `map` call, in TSC ticks.
    pub worst_map: u32,
    /// Pool wraps.
    pub wraps: u64,
}

/// One storm of the soak (`cargo xtask soak`): flush policy `k % 5` on its
/// own test pages, which go back afterwards.
pub fn soak_storm(kernel: &Kernel, k: usize) -> Result<SoakStorm, Failure> {
    let policy = KernelPolicy::ALL[k % KernelPolicy::ALL.len()];
    let (pages, highmem) = test_pages::<STORM_PAGES>()?;
    let direct = DirectMap::new(PAGE_OFFSET, kernel.layout.lowmem_limit).with_force_map(!highmem);
    let row = storm_once(kernel, &pages, direct, k, policy);
    give_back(&pages);
    let row = row?;
    Ok(SoakStorm {
        ops: (STORM_OPS / smp::online_count().max(1) * smp::online_count().max(1)) as u64,
        waits: row.kmap.waits,
        worst_map: row.worst_map,
        wraps: row.kmap.wraps,
    })
}

/// The TSC, or 0 on a CPU without one.
fn tsc() -> u64 {
    if crate::arch::cpu::has_tsc() {
        crate::arch::cpu::rdtsc()
    } else {
        0
    }
}

/// Map+unmap pairs each CPU runs in the hit-rate figure.
const HIT_OPS: u32 = 20_000;

/// The hit rate with `cpus` CPUs on one pool.
struct HitRate {
    cpus: usize,
    /// Hits per second per CPU (the slowest CPU's).
    per_second: u64,
    /// Time-stamp counter cycles per map+unmap (the slowest CPU's).
    cycles: u32,
}

/// The hit-rate run's shared state, on the boot CPU's stack.
struct Hits<'a> {
    pool: &'a StormPool,
    pages: &'a [PhysFrame; STORM_PAGES],
    /// CPUs taking part (the first ones); the others return at once.
    cpus: usize,
    arrived: AtomicUsize,
    /// Cycles per map+unmap, per CPU (32-bit: no x87 on i586).
    cycles: [AtomicU32; CPUS],
    errors: AtomicU32,
}

/// Hits per second per CPU with 1, 2 and 4 CPUs (as many as are online)
/// mapping and unmapping each its own cached page of one pool: the
/// persistent pool's lock-free hit path, timed with the time-stamp counter
/// (calibrated against the PIT).
fn hit_rates(
    kernel: &Kernel,
    pages: &[PhysFrame; STORM_PAGES],
    direct: DirectMap,
) -> Result<heapless::Vec<HitRate, 3>, Failure> {
    let base = VirtAddr::new(kmap_bench_base(0));
    let pool = StormPool::new(
        &kernel.window,
        base,
        direct,
        DirectMapAccess,
        KernelTlb,
        KernelPolicy::Global,
        KernelWait,
    )
    .map_err(|e| failure!("hit-rate pool: {e}"))?;
    let t0 = crate::arch::cpu::rdtsc();
    pit::delay_us(20_000);
    let tsc_hz = (crate::arch::cpu::rdtsc() - t0) * 50;
    let result = measure_hits(&pool, pages, tsc_hz);
    clear_area(kernel, base)?;
    result
}

/// [`hit_rates`] on `pool`, whose time-stamp counter runs at `tsc_hz`.
fn measure_hits(
    pool: &StormPool,
    pages: &[PhysFrame; STORM_PAGES],
    tsc_hz: u64,
) -> Result<heapless::Vec<HitRate, 3>, Failure> {
    // SAFETY: one token for this boot-CPU task while it warms the pool.
    let mut task = unsafe { KmapTask::new() };
    for page in &pages[..CPUS] {
        drop(pool.map(&mut task, *page).map_err(|e| failure!("{e}"))?);
    }
    let mut rates = heapless::Vec::new();
    for cpus in [1, 2, 4] {
        if cpus > smp::online_count() {
            break;
        }
        let run = Hits {
            pool,
            pages,
            cpus,
            arrived: AtomicUsize::new(0),
            cycles: core::array::from_fn(|_| AtomicU32::new(0)),
            errors: AtomicU32::new(0),
        };
        crate::smp::work::run_on_all(hit_worker, &run as *const Hits<'_> as usize);
        ensure!(
            run.errors.load(Ordering::SeqCst) == 0,
            "hit rate: {} kmap errors",
            run.errors.load(Ordering::SeqCst)
        );
        let cycles = run.cycles[..cpus]
            .iter()
            .map(|c| c.load(Ordering::SeqCst))
            .max()
            .unwrap_or(0);
        let _ = rates.push(HitRate {
            cpus,
            per_second: tsc_hz / u64::from(cycles.max(1)),
            cycles,
        });
    }
    Ok(rates)
}

fn hit_worker(cpu: usize, arg: usize) {
    // SAFETY: `arg` is the `Hits` on the boot CPU's stack, alive until
    // `run_on_all` returns.
    let run = unsafe { &*(arg as *const Hits<'_>) };
    if cpu >= run.cpus {
        return;
    }
    // SAFETY: this worker is a task of its own on this CPU: the token is
    // its only one, and it lives until the worker returns.
    let mut task = unsafe { KmapTask::new() };
    let page = run.pages[cpu];
    run.arrived.fetch_add(1, Ordering::SeqCst);
    while run.arrived.load(Ordering::SeqCst) < run.cpus {
        core::hint::spin_loop();
    }
    let start = crate::arch::cpu::rdtsc();
    for _ in 0..HIT_OPS {
        match run.pool.map(&mut task, page) {
            Ok(k) => drop(core::hint::black_box(k)),
            Err(_) => {
                run.errors.fetch_add(1, Ordering::SeqCst);
            }
        }
    }
    let cycles = (crate::arch::cpu::rdtsc() - start) / u64::from(HIT_OPS);
    run.cycles[cpu].store(cycles.min(u64::from(u32::MAX)) as u32, Ordering::SeqCst);
}

/// Writes each page's two checked words.
fn prefill(pool: &StormPool, pages: &[PhysFrame; STORM_PAGES]) -> Result<(), Failure> {
    // SAFETY: one token for this boot-CPU task while it fills.
    let mut task = unsafe { KmapTask::new() };
    for page in pages {
        let k = pool.map(&mut task, *page).map_err(|e| failure!("{e}"))?;
        let va = k.va().as_u32() as usize;
        // SAFETY: the slot maps `page`, a frame allocated for this test.
        unsafe {
            write_word(va, pattern(page.number()));
            write_word(va + word_offset(*page), pattern(page.number()));
        }
    }
    Ok(())
}

fn storm_worker(cpu: usize, arg: usize) {
    // SAFETY: `arg` is the `Storm` on the boot CPU's stack, alive until
    // `run_on_all` returns.
    let storm = unsafe { &*(arg as *const Storm<'_>) };
    // SAFETY: this worker is a task of its own on this CPU: the token is
    // its only one, and it lives until the worker returns.
    let mut task = unsafe { KmapTask::new() };
    let mut rng = 0x9E37_79B9u32 ^ (cpu as u32).wrapping_mul(0x85EB_CA6B) | 1;
    storm.arrived.fetch_add(1, Ordering::SeqCst);
    while storm.arrived.load(Ordering::SeqCst) < storm.cpus {
        core::hint::spin_loop();
    }
    for i in 0..STORM_OPS / storm.cpus {
        rng ^= rng << 13;
        rng ^= rng >> 17;
        rng ^= rng << 5;
        let page = storm.pages[rng as usize % STORM_PAGES];
        let started = tsc();
        let mapped = storm.pool.map(&mut task, page);
        let took = tsc().wrapping_sub(started).min(u64::from(u32::MAX)) as u32;
        storm.worst_map.fetch_max(took, Ordering::Relaxed);
        let Ok(k) = mapped else {
            storm.errors.fetch_add(1, Ordering::SeqCst);
            continue;
        };
        let va = k.va().as_u32() as usize;
        let expected = pattern(page.number());
        if i % 2 == 1 {
            drop(k);
            continue;
        }
        let off = if i % 4 == 0 { 0 } else { word_offset(page) };
        // SAFETY: the slot maps `page`, a test frame holding plain words.
        let seen = unsafe { read_word(va + off) };
        if seen != expected {
            storm.bad.fetch_add(1, Ordering::SeqCst);
            storm
                .first_bad
                .lock()
                .get_or_insert((cpu, page, k.va(), seen));
        }
        // Write it back: a write through a stale slot would corrupt the
        // other page, and its next reader would see it.
        // SAFETY: as above.
        unsafe { write_word(va + off, expected) };
        drop(k);
        if i % SWITCH_EVERY == SWITCH_EVERY - 1 {
            // SAFETY: reloading the directory this CPU runs on.
            let _ = unsafe { shootdown::load_root(mode::current_root()) };
        }
    }
}
