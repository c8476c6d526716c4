//! The soak (`cargo xtask soak`, and 20 seconds of it in `cargo xtask
//! test`): the seed races and the process workload, round after round on
//! every CPU, for `soak.seconds=N` seconds.
//!
//! Each round runs, in turn: the shared-pool kmap storm under the next of
//! the five flush policies (every CPU maps, checks and writes back random
//! pages through one pool that wraps again and again); the process
//! workload (a fork chain with copy-on-write, 64 demand-zero processes with
//! checksums, each reaped by exit and wait); and an NMI to every CPU while
//! the boot CPU holds the frame-allocator and kmap locks. After each round
//! the invariants are checked: no stale read (the storm's own check), no
//! kmap error and every pool slot back, every process reaped and every
//! frame back, and the round finished at all (a lost wake-up is a hang,
//! which the watchdog reports). The run ends with the rounds, the kmap
//! operations per second per CPU and the worst wait for a kmap slot.

use crate::mm::kernel::Kernel;
use crate::selftests::harness::TestResult;
use kmap::FlushPolicy;

use crate::{ensure, failure, println, smp, smp::watchdog};

use super::kernel_sync::VmallocPage;
use super::{processes, smp_kmap, smp_races};

/// Seconds of soak asked for on the command line, if any.
pub fn seconds(kernel: &Kernel) -> Option<u32> {
    kernel
        .context
        .cmdline
        .split_ascii_whitespace()
        .find_map(|w| w.strip_prefix("soak.seconds="))
        .and_then(|n| n.parse().ok())
}

pub fn soak_kmap_processes_and_nmis_on_every_cpu(kernel: &Kernel) -> TestResult {
    let seconds = seconds(kernel).unwrap_or(20);
    println!(
        "    soak: {seconds} s on {} CPU(s)",
        smp::online_count().max(1)
    );
    // One vmalloc page read by every round's NMIs: each vmalloc page takes
    // a region of its own for good, so a page per round would use the
    // area up in a long soak.
    let nmi_page = match crate::smp::no_apic() {
        Some(_) => None,
        None => Some(VmallocPage::new(&mut crate::mm::frames::lock())?),
    };
    let result = rounds_until(kernel, seconds, nmi_page.as_ref());
    if let Some(page) = nmi_page {
        page.release(&mut crate::mm::frames::lock())?;
    }
    result
}

/// The soak's rounds, for `seconds`, the NMIs reading `nmi_page`.
fn rounds_until(kernel: &Kernel, seconds: u32, nmi_page: Option<&VmallocPage>) -> TestResult {
    let cpus = smp::online_count().max(1) as u64;
    let frames_before = crate::proc::sched::free_frames();
    let mut frames_after_first = None;
    // Without a TSC there is no clock to run against: about five seconds
    // a round is assumed.
    let clock = || crate::base::spin::clock_ms().unwrap_or(0);
    let timed = crate::base::spin::clock_ms().is_some();
    let target_rounds = u64::from(seconds / 5).max(1);
    let start = clock();
    let mut rounds = 0u64;
    let mut ops = 0u64;
    let mut waits = 0u64;
    let mut wraps = 0u64;
    let mut worst = 0u32;
    let mut processes_run = 0u64;
    while rounds == 0
        || (timed && clock().wrapping_sub(start) < seconds.saturating_mul(1000))
        || (!timed && rounds < target_rounds)
    {
        // Each round is a test of its own for the watchdog's deadline.
        watchdog::test_started();
        let storm = smp_kmap::soak_storm(kernel, rounds as usize)
            .map_err(|e| failure!("round {rounds}, kmap storm: {}", e.message()))?;
        ops += storm.ops;
        waits += storm.waits;
        wraps += storm.wraps;
        worst = worst.max(storm.worst_map);
        processes::process_fork_chain_cow_depth_8(kernel)
            .map_err(|e| failure!("round {rounds}, fork chain: {}", e.message()))?;
        processes::process_demand_zero_64_processes_with_checksums(kernel)
            .map_err(|e| failure!("round {rounds}, demand-zero processes: {}", e.message()))?;
        processes_run += 9 + 64;
        if let Some(page) = nmi_page {
            smp_races::soak_nmi_round(page)
                .map_err(|e| failure!("round {rounds}, NMIs: {}", e.message()))?;
        }
        // The first round may leave kernel page tables behind for good
        // (a page table the kernel keeps once a region is used): every later round
        // must give back exactly what the first one ended with.
        let frames = crate::proc::sched::free_frames();
        let baseline = *frames_after_first.get_or_insert(frames);
        ensure!(
            frames == baseline,
            "round {}: frames free (lowmem, highmem) {frames:?}, after round 1 {baseline:?} (at the start {frames_before:?})",
            rounds + 1
        );
        rounds += 1;
        println!(
            "    soak: round {rounds} done at {} ms: kmap policy {}, {} maps, {} waits; 73 processes; NMIs on every CPU; every frame and slot back",
            clock().wrapping_sub(start),
            crate::mm::kmap_policy::KernelPolicy::ALL[(rounds as usize - 1) % 5].name(),
            storm.ops,
            storm.waits
        );
    }
    let elapsed_ms = u64::from(clock().wrapping_sub(start)).max(1);
    let worst_us = crate::base::spin::ticks_to_us(worst);
    println!(
        "    soak: {rounds} rounds in {} s on {cpus} CPU(s): {} kmap map+unmap per second per CPU ({ops} in all, {wraps} wraps, {waits} waits), {processes_run} processes, worst kmap map (slot waits included) {worst_us} us",
        elapsed_ms / 1000,
        ops * 1000 / elapsed_ms / cpus
    );
    Ok(())
}
