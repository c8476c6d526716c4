//! Processes in ring 3 (design point 1, pte-highmem, for real): system
//! calls, demand-zero pages, copy-on-write after fork, processes killed by
//! bad accesses while the others go on, preemption of a process holding
//! local kmaps, and the lowmem each process costs with its page tables in
//! highmem or in lowmem. Every test checks the frame allocator's counts
//! are back when the processes are gone.

use core::sync::atomic::Ordering;

use paging_core::Zone;

use crate::base::config::CPUS;
use crate::mm::kernel::Kernel;
use crate::proc::process::{self, COUNTERS, KILLED};
use crate::proc::sched::Outcome;
use crate::proc::user::{self, Program};
use crate::selftests::harness::{Failure, TestResult};
use crate::{ensure, fail, failure, println, smp};

/// Address spaces registered with the kernel sync now.
fn registered() -> usize {
    crate::mm::kernel_sync::get().map_or(0, |s| s.registered())
}

/// Runs the processes spawned so far, reaps them all, checks every frame
/// came back, and that the kernel sync's registry and the shared-page
/// table are as before (empty of processes); returns the outcomes (at
/// most 96).
pub(super) fn run_and_reap(
    before: (u64, u64),
) -> Result<heapless::Vec<Outcome, { process::MAX_PROCESSES }>, Failure> {
    // Every process spawned so far is registered: those beyond the
    // baseline are the processes'.
    let spaces = process::live_spaces();
    let registry = registered() - spaces;
    let shared = process::shared_frames();
    crate::proc::sched::run_all();
    let mut outcomes = heapless::Vec::new();
    let left = crate::proc::sched::reap_all(|o| {
        let _ = outcomes.push(o);
    });
    ensure!(left == 0, "{left} processes left after the run");
    let after = crate::proc::sched::free_frames();
    ensure!(
        after == before,
        "frames free before the processes (lowmem {}, highmem {}) and after ({}, {})",
        before.0,
        before.1,
        after.0,
        after.1
    );
    ensure!(
        registered() == registry,
        "{} address spaces registered after the run, {registry} before the processes",
        registered()
    );
    ensure!(
        process::shared_frames() == shared,
        "{} frames in the shared-page table after the run, {shared} before",
        process::shared_frames()
    );
    Ok(outcomes)
}

fn spawn(program: Program, arg: u32) -> Result<u32, Failure> {
    crate::proc::spawn::spawn(program, arg, Zone::PreferHighmem, None)
}

pub fn process_runs_in_ring_3_and_makes_system_calls(_: &Kernel) -> TestResult {
    let before = crate::proc::sched::free_frames();
    let pid = spawn(user::hello(), 0)?;
    let outcomes = run_and_reap(before)?;
    let [o] = outcomes.as_slice() else {
        fail!("{} outcomes for one process", outcomes.len());
    };
    ensure!(
        o.pid == pid && o.exit_code == pid && o.kill_reason.is_none(),
        "hello (pid {pid}) ended with {o:?}"
    );
    println!(
        "    pid {pid} ran in ring 3 on cpu {}: write, getpid and exit through int 0x80; frames back",
        o.cpu
    );
    Ok(())
}

pub fn process_demand_zero_64_processes_with_checksums(_: &Kernel) -> TestResult {
    let before = crate::proc::sched::free_frames();
    let demand = COUNTERS.demand_zero.load(Ordering::Relaxed);
    let mut seeds = [0u32; 64];
    for (i, seed) in seeds.iter_mut().enumerate() {
        *seed = (i as u32).wrapping_mul(0x2545_F491) ^ 0x1357_9BDF;
        spawn(user::toucher(), *seed)?;
    }
    let outcomes = run_and_reap(before)?;
    ensure!(
        outcomes.len() == 64,
        "{} of 64 processes ended",
        outcomes.len()
    );
    let mut per_cpu = [0usize; CPUS];
    for (o, seed) in outcomes.iter().zip(seeds) {
        ensure!(
            o.kill_reason.is_none() && o.exit_code == user::toucher_checksum(seed),
            "pid {} exited {:#x}, expected {:#x} ({:?})",
            o.pid,
            o.exit_code,
            user::toucher_checksum(seed),
            o.kill_reason
        );
        per_cpu[o.cpu % CPUS] += 1;
    }
    let faults = COUNTERS.demand_zero.load(Ordering::Relaxed) - demand;
    ensure!(
        faults >= 64 * 16,
        "{faults} demand-zero faults for 64 x 16 heap pages"
    );
    let low: u32 = outcomes.iter().map(|o| o.tables.low).sum();
    let high: u32 = outcomes.iter().map(|o| o.tables.high).sum();
    let above: u32 = outcomes.iter().map(|o| o.tables.above_4g).sum();
    println!(
        "    64 processes x 16 heap pages, each checksum right at exit; {faults} demand-zero faults; processes per CPU {:?}; page tables: {low} lowmem frames, {high} highmem ({above} above 4 GiB); frames back",
        &per_cpu[..smp::online_count().max(1)]
    );
    Ok(())
}

pub fn process_fork_chain_cow_depth_8(_: &Kernel) -> TestResult {
    let before = crate::proc::sched::free_frames();
    let (copies, reuses, shared) = (
        COUNTERS.cow_copies.load(Ordering::Relaxed),
        COUNTERS.cow_reuses.load(Ordering::Relaxed),
        COUNTERS.shared_by_fork.load(Ordering::Relaxed),
    );
    COUNTERS.max_sharing.store(0, Ordering::Relaxed);
    let root = spawn(user::forker(), 8)?;
    let outcomes = run_and_reap(before)?;
    // The root's children were reaped by their parents' `wait`.
    let [o] = outcomes.as_slice() else {
        fail!(
            "{} outcomes reaped by the kernel, expected the root's",
            outcomes.len()
        );
    };
    ensure!(
        o.pid == root && o.exit_code == 0 && o.kill_reason.is_none(),
        "the chain's root ended with {o:?}"
    );
    let copies = COUNTERS.cow_copies.load(Ordering::Relaxed) - copies;
    let reuses = COUNTERS.cow_reuses.load(Ordering::Relaxed) - reuses;
    let shared = COUNTERS.shared_by_fork.load(Ordering::Relaxed) - shared;
    let max = COUNTERS.max_sharing.load(Ordering::Relaxed);
    // Each of the 8 forks: page 0 written by parent and child, each write
    // a copy-on-write fault: the first copies, the second finds the page
    // no longer shared and makes it writable (on SMP both may copy at
    // once, and the second copy frees the original); page 1 is never
    // copied, so all nine processes share it at the deepest point.
    ensure!(
        copies + reuses == 16 && copies >= 8,
        "{copies} copies and {reuses} reuses for 8 forks (expected 16 faults, at least 8 copies)"
    );
    ensure!(
        max >= 9,
        "at most {max} references to one frame; the untouched page should reach 9"
    );
    println!(
        "    9 processes, fork depth 8: each side read its own value; {shared} pages shared by fork, {copies} copied on write, {reuses} made writable again (last owner), one frame shared by {max}; frames back"
    );
    Ok(())
}

pub fn process_killed_on_bad_access_others_finish(_: &Kernel) -> TestResult {
    let before = crate::proc::sched::free_frames();
    let bad = [
        (
            user::bad_kernel(),
            "user access to a kernel address",
            0xC010_0000,
        ),
        (
            user::bad_text(),
            "write to a read-only page",
            user::TEXT_BASE,
        ),
        (user::bad_nx(), "no-execute fetch", process::HEAP_START),
        (
            user::bad_unmapped(),
            "access to an unmapped address",
            0x0040_0000,
        ),
    ];
    let mut pids = [0u32; 4];
    for (i, (program, _, _)) in bad.iter().enumerate() {
        pids[i] = spawn(*program, 0)?;
    }
    for seed in 0..4u32 {
        spawn(user::toucher(), seed)?;
    }
    let outcomes = run_and_reap(before)?;
    ensure!(
        outcomes.len() == 8,
        "{} of 8 processes ended",
        outcomes.len()
    );
    for (i, (program, reason, address)) in bad.iter().enumerate() {
        let Some(o) = outcomes.iter().find(|o| o.pid == pids[i]) else {
            fail!("{} never ended", program.name);
        };
        let nx_runs = program.name == "bad-nx-fetch" && !crate::arch::mode::nx_enabled();
        if nx_runs {
            ensure!(
                o.exit_code == 7 && o.kill_reason.is_none(),
                "2-level has no NX: the heap `ret` should run; {o:?}"
            );
            continue;
        }
        ensure!(
            o.exit_code == KILLED && o.kill_reason == Some(*reason) && o.kill_address == *address,
            "{} ended with {o:?}, expected killed for {reason} at {address:#x}",
            program.name
        );
    }
    for o in outcomes.iter().filter(|o| o.program == "toucher") {
        ensure!(o.kill_reason.is_none(), "a toucher was killed: {o:?}");
    }
    println!(
        "    4 processes killed with their reasons (above; in 2-level mode the NX one runs: no NX bit), 4 others finished; frames back"
    );
    Ok(())
}

pub fn process_preempt_while_holding_local_kmaps(_: &Kernel) -> TestResult {
    let before = crate::proc::sched::free_frames();
    let restores = COUNTERS.local_restores.load(Ordering::Relaxed);
    let preemptions = COUNTERS.preemptions.load(Ordering::Relaxed);
    // Three holders on one CPU: each is preempted while its two local
    // kmaps are held, the others map the same slots meanwhile.
    let cpu = (0..CPUS).rev().find(|&c| smp::is_online(c)).unwrap_or(0);
    for _ in 0..3 {
        crate::proc::spawn::spawn(user::holder(), 3, Zone::PreferHighmem, Some(cpu))?;
    }
    let outcomes = run_and_reap(before)?;
    for o in &outcomes {
        ensure!(
            o.exit_code == 0 && o.kill_reason.is_none(),
            "holder pid {} ended with {:#x} (1: wrong data after resuming, 4: never preempted)",
            o.pid,
            o.exit_code
        );
    }
    let restores = COUNTERS.local_restores.load(Ordering::Relaxed) - restores;
    let preemptions = COUNTERS.preemptions.load(Ordering::Relaxed) - preemptions;
    // Without highmem the holders' pages are lowmem: local kmaps of them
    // are direct-map addresses and there is no slot to save.
    let highmem = before.1 > 0;
    if highmem {
        ensure!(restores >= 3, "only {restores} local-kmap stacks restored");
    } else {
        println!("    no highmem: the held pages are lowmem, mapped directly, no slot to save");
    }
    println!(
        "    3 processes on cpu {cpu} each held 2 local kmaps across 3 timer preemptions: {preemptions} preemptions ({} timer ticks on that CPU so far), {restores} local-kmap stacks put back, every word right",
        crate::arch::timer::ticks(cpu)
    );
    Ok(())
}

pub fn process_page_tables_in_highmem_save_lowmem(kernel: &Kernel) -> TestResult {
    let before = crate::proc::sched::free_frames();
    for seed in 0..8u32 {
        crate::proc::spawn::spawn(user::toucher(), seed, Zone::PreferHighmem, None)?;
        crate::proc::spawn::spawn(user::toucher(), seed, Zone::Lowmem, None)?;
    }
    let outcomes = run_and_reap(before)?;
    let per = |zone: Zone| -> Result<(u32, u32), Failure> {
        let mut n = 0;
        let (mut low, mut high) = (0, 0);
        for o in outcomes.iter().filter(|o| o.pte_zone == zone) {
            n += 1;
            low += o.tables.low;
            high += o.tables.high;
        }
        if n == 0 {
            return Err(failure!("no process with {zone:?} tables"));
        }
        Ok((low / n, high / n))
    };
    let (hl, hh) = per(Zone::PreferHighmem)?;
    let (ll, lh) = per(Zone::Lowmem)?;
    let has_highmem = kernel.layout.lowmem_limit < crate::mm::layout::MAX_LOWMEM || hh > 0;
    if hh > 0 {
        ensure!(
            hl < ll,
            "lowmem table frames per process: {hl} with highmem tables, {ll} without"
        );
    }
    let kstack = 4; // pages of kernel stack per process
    let free_low = before.0;
    println!(
        "    lowmem per process for page tables: {} bytes with PTE tables in highmem ({} highmem bytes), {} bytes with them in lowmem ({lh} highmem frames); plus a 16 KiB kernel stack",
        hl * 4096,
        hh * 4096,
        ll * 4096
    );
    println!(
        "    with {} MiB of lowmem free: {} such processes fit with highmem tables, {} with lowmem tables{}",
        (free_low * 4096) >> 20,
        free_low / u64::from(hl + kstack),
        free_low / u64::from(ll + kstack),
        if has_highmem {
            ""
        } else {
            " (no highmem here: both the same)"
        }
    );
    Ok(())
}
