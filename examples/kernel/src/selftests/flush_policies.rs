//! The same kmap workload under each TLB flush policy: flush counts and
//! cycles per map+unmap, and every touched mapping shows the right page
//! (a policy that skipped a needed flush would show a stale one).

use kmap::{DirectMap, FlushPolicy, KmapStats};
use paging_core::{Entry, PagingMode, PhysFrame, TableAccess, TlbOps, VirtAddr};

use super::memory_access::{give_back, pattern, read_word, test_pages, write_word};
use crate::arch::mode::Mode;
use crate::arch::pit::{self, Stopwatch};
use crate::mm::direct_map::DirectMapAccess;
use crate::mm::kernel::Kernel;
use crate::mm::kmap_policy::KernelPolicy;
use crate::mm::kmap_setup::{self, KernelKmap, KernelWait};
use crate::mm::layout::{KMAP_BENCH_SLOTS, PAGE_OFFSET, kmap_bench_base};
use crate::mm::shootdown::KernelTlb;
use crate::selftests::harness::{Failure, TestResult};
use crate::{failure, println};

/// A pool over one flush-policy test area.
type BenchPool = kmap::Pool<KernelKmap, KMAP_BENCH_SLOTS, KernelPolicy, KernelWait>;

/// Distinct pages cycled through (4x the slots: the pool wraps often).
const PAGES: usize = 4 * KMAP_BENCH_SLOTS;
/// Map+unmap operations per policy.
const OPERATIONS: usize = 8192;

pub fn flush_policies_under_one_workload(kernel: &Kernel) -> TestResult {
    let (pages, highmem) = test_pages::<PAGES>()?;
    // Without highmem, lowmem pages go through the slots too (force_map),
    // so the workload is the same.
    let direct = DirectMap::new(PAGE_OFFSET, kernel.layout.lowmem_limit).with_force_map(!highmem);
    let result = run_all(kernel, &pages, direct);
    give_back(&pages);
    let rows = result?;
    println!(
        "    {OPERATIONS} map+unmap of {PAGES} {} pages through {KMAP_BENCH_SLOTS} slots, every other mapping touched:",
        if highmem {
            "highmem"
        } else {
            "lowmem (force-mapped: no highmem)"
        }
    );
    for (policy, stats, cycles) in rows {
        println!(
            "    {:<13} wraps {:>3}  invlpg {:>5}  range {:>3}  global {:>3}  avoided {:>5}  deferred {:>3}  {:>6} {} per map+unmap",
            policy.name(),
            stats.wraps,
            stats.flushes.pages,
            stats.flushes.ranges,
            stats.flushes.globals,
            stats.flushes.avoided,
            stats.flushes.deferred,
            cycles,
            Stopwatch::unit()
        );
    }
    Ok(())
}

/// Runs the workload under every policy, each on its own area of pkmap.
fn run_all(
    kernel: &Kernel,
    pages: &[PhysFrame; PAGES],
    direct: DirectMap,
) -> Result<[(KernelPolicy, KmapStats, u64); 5], Failure> {
    let mut rows = [(KernelPolicy::Global, KmapStats::default(), 0); 5];
    for (k, policy) in KernelPolicy::ALL.into_iter().enumerate() {
        // Five policies, four areas: the last reuses the first (cleared).
        let base = VirtAddr::new(kmap_bench_base(k % 4));
        let pool = BenchPool::new(
            &kernel.window,
            base,
            direct,
            DirectMapAccess,
            KernelTlb,
            policy,
            KernelWait,
        )
        .map_err(|e| failure!("{} pool: {e}", policy.name()))?;
        let cycles = workload(&pool, pages)?;
        let stats = pool.stats();
        clear_area(kernel, base)?;
        check_counts(policy, &stats)?;
        rows[k] = (policy, stats, cycles);
    }
    Ok(rows)
}

/// Writes each page's pattern, then maps and unmaps round-robin, checking
/// the pattern through every other mapping. Returns cycles per operation.
fn workload(pool: &BenchPool, pages: &[PhysFrame; PAGES]) -> Result<u64, Failure> {
    let result = kmap_setup::with_task(|task| -> Result<u64, Failure> {
        for page in pages {
            let kmap = pool.map(task, *page).map_err(|e| failure!("{e}"))?;
            // SAFETY: the slot maps `page`, a frame allocated for this test.
            unsafe { write_word(kmap.va().as_u32() as usize, pattern(page.number())) };
        }
        let watch = Stopwatch::start();
        for i in 0..OPERATIONS {
            pit::keep_time();
            let page = pages[(i * 7) % PAGES];
            let kmap = pool.map(task, page).map_err(|e| failure!("{e}"))?;
            if i % 2 == 0 {
                // SAFETY: as above.
                let seen = unsafe { read_word(kmap.va().as_u32() as usize) };
                if seen != pattern(page.number()) {
                    return Err(failure!(
                        "{page:?} at {} reads {seen:#x}: a stale translation",
                        kmap.va()
                    ));
                }
            }
        }
        Ok(watch.elapsed() / OPERATIONS as u64)
    });
    result.unwrap_or_else(|| Err(failure!("the main task's kmap token is in use")))
}

/// Each policy flushes the way it says it does.
fn check_counts(policy: KernelPolicy, stats: &KmapStats) -> Result<(), Failure> {
    let f = stats.flushes;
    let ok = stats.wraps > 0
        && match policy {
            KernelPolicy::PerPage => f.pages > 0 && f.ranges + f.globals + f.avoided == 0,
            KernelPolicy::Range => f.ranges > 0 && f.pages + f.globals + f.avoided == 0,
            KernelPolicy::Global => f.globals > 0 && f.pages + f.ranges + f.avoided == 0,
            KernelPolicy::AccessedBit => f.pages > 0 && f.avoided > 0 && f.ranges + f.globals == 0,
            KernelPolicy::Generations => f.deferred > 0 && f.pages + f.globals + f.avoided == 0,
        };
    if ok {
        Ok(())
    } else {
        Err(failure!("{} flushed {stats:?}", policy.name()))
    }
}

/// A dropped pool leaves its unused slots mapped (they are cleared at the
/// next wrap, which never comes): clear them and flush every CPU, so no
/// stale translation outlives the test.
pub(super) fn clear_area(kernel: &Kernel, base: VirtAddr) -> Result<(), Failure> {
    for slot in 0..KMAP_BENCH_SLOTS as u32 {
        let va = VirtAddr::new(base.as_u32() + slot * 4096);
        let Some(pte) = kernel.window.pte_slot(va) else {
            return Err(failure!("{va} is outside the window"));
        };
        let table = DirectMapAccess
            .table(pte.table)
            .map_err(|e| failure!("{e}"))?;
        <Mode as PagingMode>::Pte::store(
            &table,
            pte.index,
            <<Mode as PagingMode>::Pte as Entry>::NONE,
        );
    }
    KernelTlb.flush_range(base, KMAP_BENCH_SLOTS as u32);
    Ok(())
}
