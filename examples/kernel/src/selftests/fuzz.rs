//! Syscall fuzzing in the syzkaller style (issue 21): fuzz processes
//! ([`user::fuzz`]) on every CPU make random system calls with arguments
//! drawn from interesting places, build random fork/exit/wait trees and
//! now and then run a privileged instruction or fault. Afterwards: no
//! kernel fault (the run went on), every frame, registry entry and
//! shared-page entry back ([`run_and_reap`]), and no process read a value
//! it had not written (each checks its own pattern after every call).
//!
//! The number of system calls is `fuzz.syscalls=N` on the kernel command
//! line (default [`DEFAULT_SYSCALLS`]); rounds of fuzzers run until that
//! many were made.

use core::sync::atomic::Ordering;

use paging_core::Zone;

use super::processes::run_and_reap;
use crate::base::config::CPUS;
use crate::mm::kernel::Kernel;
use crate::proc::process::{self, COUNTERS};
use crate::proc::user::{self, FUZZ_DONE};
use crate::selftests::harness::TestResult;
use crate::{ensure, failure, println, smp};

/// System calls a boot fuzzes unless the command line says otherwise.
pub const DEFAULT_SYSCALLS: u32 = 50_000;
/// Fuzz processes started per CPU per round (their forks come on top).
const ROOTS_PER_CPU: u32 = 3;
/// System calls the roots of one round may make between them (their forks
/// come on top): 1,000 each on one CPU, 250 each on four.
const ROUND_CALLS: u32 = 3_000;

/// `fuzz.syscalls=N` from the command line.
fn target(kernel: &Kernel) -> u32 {
    kernel
        .context
        .cmdline
        .split_ascii_whitespace()
        .find_map(|word| word.strip_prefix("fuzz.syscalls="))
        .and_then(|n| n.parse().ok())
        .unwrap_or(DEFAULT_SYSCALLS)
}

pub fn syscall_fuzz_random_calls_pointers_and_fork_trees(kernel: &Kernel) -> TestResult {
    let target = target(kernel);
    let start = COUNTERS.syscalls.load(Ordering::Relaxed);
    let (kills, corrupt, forks, refused) = (
        COUNTERS.kills.load(Ordering::Relaxed),
        COUNTERS.corrupt.load(Ordering::Relaxed),
        COUNTERS.shared_by_fork.load(Ordering::Relaxed),
        COUNTERS.forks_refused.load(Ordering::Relaxed),
    );
    let cycles = crate::arch::cpu::rdtsc();
    let cpus: heapless::Vec<usize, CPUS> = (0..CPUS).filter(|&c| smp::is_online(c)).collect();
    let roots = ROOTS_PER_CPU * cpus.len() as u32;
    let (mut rounds, mut processes, mut done) = (0u32, 0u32, 0u32);
    loop {
        let made = COUNTERS.syscalls.load(Ordering::Relaxed) - start;
        if made >= target {
            break;
        }
        // Rounds of at most about 3,000 calls plus forks, whatever the CPU
        // count: each round prints a line, so a slow emulator is seen to be
        // going. (A 12,000-call round that went quiet on four Bochs CPUs
        // was first blamed on its length; it was the livelock that
        // `proc::sched::timer_tick`'s whole-tick turns fixed.)
        let budget = ((target - made) / roots).clamp(64, (ROUND_CALLS / roots).max(64));
        let before = crate::proc::sched::free_frames();
        for &cpu in cpus.iter().cycle().take(roots as usize) {
            let pid =
                crate::proc::spawn::spawn(user::fuzz(), budget, Zone::PreferHighmem, Some(cpu))?;
            process::make_quiet(pid);
            processes += 1;
        }
        let outcomes =
            run_and_reap(before).map_err(|e| failure!("round {rounds}: {}", e.message()))?;
        done += outcomes.iter().filter(|o| o.exit_code == FUZZ_DONE).count() as u32;
        rounds += 1;
        // Each round is bounded: it restarts the watchdog's test deadline,
        // and a line per round shows a slow emulator is still going.
        crate::smp::watchdog::test_started();
        println!(
            "    fuzz round {rounds}: {} system calls so far",
            COUNTERS.syscalls.load(Ordering::Relaxed) - start
        );
        ensure!(
            COUNTERS.corrupt.load(Ordering::Relaxed) == corrupt,
            "round {rounds}: a fuzz process read a value it had not written"
        );
    }
    let made = COUNTERS.syscalls.load(Ordering::Relaxed) - start;
    let cycles = crate::arch::cpu::rdtsc() - cycles;
    println!(
        "    {made} system calls (target {target}) from {processes} fuzz processes in {rounds} rounds on {} CPUs: {} killed (privileged instructions, faults), {} forks refused, {} pages shared by fork, {done} roots spent their budget; no pattern ever changed; frames, registry and shared table back; {} million cycles; longest harvest at a switch-out {}k cycles",
        cpus.len(),
        COUNTERS.kills.load(Ordering::Relaxed) - kills,
        COUNTERS.forks_refused.load(Ordering::Relaxed) - refused,
        COUNTERS.shared_by_fork.load(Ordering::Relaxed) - forks,
        cycles / 1_000_000,
        crate::proc::working_set::WORST_KCYCLES.load(Ordering::Relaxed)
    );
    Ok(())
}
