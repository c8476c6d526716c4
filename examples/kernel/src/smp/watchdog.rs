//! The hang watchdog: a kernel that stops making progress says what every
//! CPU waits for, instead of going quiet until a host-side timeout.
//!
//! **Progress** is a global counter that moves whenever the kernel does
//! something a hang would stop: a console line, a lock taken, a shootdown
//! round finished, a self-test begun or ended
//! ([`crate::base::spin::progress`]). That half (the counter, the waits and
//! the clock) lives in `base/spin.rs`, so that locks need nothing above
//! `base/`; this module is the report, the NMI lines and the time limits.
//!
//! **Waiting** is what every spin loop of the kernel declares once per
//! round through [`crate::base::spin::spin`]: the frame-allocator and
//! process-table locks, the kmap pool's waits, the TLB shootdown's wait for
//! acknowledgements, the wait for work posted to other CPUs. Each CPU keeps its own record (what,
//! the address spun on, since when). A wait is a new one when its site
//! changes or when the CPU has not spun for a while.
//!
//! **Noticing.** A spinning CPU looks at the clock (the TSC, calibrated
//! against the PIT at boot) on each round: when progress has not moved for
//! `watchdog.secs` seconds (command line, default 10; 0 turns the watchdog
//! off), it takes the report. A hang is a wait on something that never
//! comes, so some CPU always spins; every CPU that does is instrumented.
//!
//! **The report.** The noticing CPU prints its own line, sends an NMI to
//! every other online CPU, and each prints, from its NMI handler: its
//! index, the EIP it was interrupted at, what it waits on (or that it waits
//! on nothing), and the kernel-text return addresses found on its stack.
//! Then `WATCHDOG: N of M CPUs reported` and the fail exit. `hang=lock` on
//! the command line provokes a deadlock to show it ([`provoke`]).

use core::sync::atomic::{AtomicU32, Ordering};

use crate::arch::exceptions::ExceptionFrame;
use crate::base::config::CPUS;
use crate::base::spin;
use crate::boot::context::BootContext;
use crate::{
    arch::apic, arch::cpu, arch::fault_probe, arch::io, arch::pit, mm::layout, println, smp,
};

/// Stack words scanned for return addresses.
const STACK_WORDS: usize = 256;
/// Return addresses printed per CPU.
const RETURN_ADDRESSES: usize = 8;

/// CPUs that printed their report line.
static REPORTED: AtomicU32 = AtomicU32::new(0);
/// Clock (ms) when the running self-test began ([`test_started`]).
static TEST_STARTED_MS: AtomicU32 = AtomicU32::new(0);
/// Seconds one self-test may run before the report (0: no limit), from
/// `watchdog.test-secs=` (default 600: a livelock makes progress, but not
/// to the end of its test).
static TEST_LIMIT_SECS: AtomicU32 = AtomicU32::new(600);
/// What a CPU runs, for the report (the scheduler registers it:
/// [`set_describer`]).
static DESCRIBER: AtomicU32 = AtomicU32::new(0);
/// What the kernel's shared state looks like, printed by the noticing CPU
/// before it stops the others ([`set_dumper`]).
static DUMPER: AtomicU32 = AtomicU32::new(0);

/// Reads `watchdog.secs=` and calibrates the TSC against 10 ms of the PIT.
/// Called once on the boot CPU, before the other CPUs start.
pub fn init(context: &BootContext) {
    let option = |name: &str| {
        context
            .cmdline
            .split_ascii_whitespace()
            .find_map(|w| w.strip_prefix(name))
            .and_then(|n| n.parse().ok())
    };
    if let Some(secs) = option("watchdog.secs=") {
        spin::set_limit_secs(secs);
    }
    if let Some(secs) = option("watchdog.test-secs=") {
        TEST_LIMIT_SECS.store(secs, Ordering::Relaxed);
    }
    if cpu::has_tsc() {
        let start = cpu::rdtsc();
        pit::delay_us(10_000);
        let per_ms = (cpu::rdtsc().wrapping_sub(start) / 10).clamp(1, u64::from(u32::MAX));
        spin::set_ticks_per_ms(per_ms as u32);
    }
    spin::set_reporter(report);
    crate::arch::nmi::set_watchdog_report(report_from_nmi);
    let secs = spin::limit_secs();
    if secs == 0 {
        println!("watchdog: off (watchdog.secs=0)");
    } else {
        println!(
            "watchdog: a report after {secs} s without progress (TSC {} ticks per ms; preemption tick {} ms)",
            spin::ticks_per_ms(),
            crate::arch::timer::period_ms()
        );
    }
}

/// A self-test begins: the clock its time limit counts from.
pub fn test_started() {
    if let Some(now) = spin::clock_ms() {
        TEST_STARTED_MS.store(now, Ordering::Relaxed);
    }
}

/// Reports (and stops the kernel) if the running self-test is past
/// `watchdog.test-secs`: a livelock keeps making progress, so only a
/// deadline finds it. Called where CPUs go round while tests run (the
/// process scheduler's loop).
pub fn check_deadline() {
    let limit = TEST_LIMIT_SECS.load(Ordering::Relaxed);
    let (Some(now), true) = (spin::clock_ms(), limit != 0) else {
        return;
    };
    let ran = now.wrapping_sub(TEST_STARTED_MS.load(Ordering::Relaxed));
    if ran >= limit.saturating_mul(1000) {
        report(spin::cpu(), "the self-test still running", ran);
    }
}

/// Registers what tells, for the report, what CPU `cpu` runs (the process
/// scheduler: which process, in which state); it writes one line.
pub fn set_describer(describe: fn(usize)) {
    DESCRIBER.store(describe as usize as u32, Ordering::Relaxed);
}

/// Registers what prints, for the report, the state shared by every CPU
/// (the process table); it runs on the noticing CPU while the others still
/// run, so locks they hold come free.
pub fn set_dumper(dump: fn()) {
    DUMPER.store(dump as usize as u32, Ordering::Relaxed);
}

/// Prints CPU `cpu`'s report line: `eip`, its wait, and return addresses
/// found on the stack from `esp` up.
/// The kernel-text words on the stack from `esp` up (at most
/// [`RETURN_ADDRESSES`] of the first [`STACK_WORDS`]), as ` 0x...` each:
/// the likely return addresses. Reads through the fault probe, so an
/// unmapped address ends the scan instead of faulting.
pub fn return_addresses(esp: u32) -> heapless::String<160> {
    let mut line = heapless::String::<160>::new();
    let mut n = 0;
    let text = layout::text();
    for i in 0..STACK_WORDS {
        let at = esp as usize + 4 * i;
        // SAFETY: a read through the fault probe: an unmapped address (past
        // the stack's top) is reported as a fault, not taken.
        let word = fault_probe::preserving(|| unsafe { fault_probe::read_u32(at) });
        let Ok(word) = word else { break };
        if text.contains(&(word as usize)) && n < RETURN_ADDRESSES {
            n += 1;
            // Overflow only drops addresses from the line.
            let _ = core::fmt::Write::write_fmt(&mut line, format_args!(" {word:#010x}"));
        }
    }
    line
}

fn print_cpu(cpu: usize, eip: u32, esp: u32, how: &str) {
    let line = return_addresses(esp);
    let wait = spin::waiting_on(cpu);
    match wait {
        Some((what, address, ms)) => println!(
            "watchdog: cpu {cpu} ({how}) at eip {eip:#010x}: waits on {what} ({address:#x}) for {ms} ms"
        ),
        None => println!(
            "watchdog: cpu {cpu} ({how}) at eip {eip:#010x}: waits on nothing (idle, or running)"
        ),
    }
    println!("watchdog: cpu {cpu} stack return addresses:{line}");
    let describe = DESCRIBER.load(Ordering::Relaxed);
    if describe != 0 {
        // SAFETY: stored from a `fn(usize)` by `set_describer`.
        let describe: fn(usize) = unsafe { core::mem::transmute(describe as usize) };
        describe(cpu);
    }
}

/// The report (see the module docs); never returns.
fn report(cpu: usize, what: &'static str, waited_ms: u32) {
    if spin::begin_report() {
        // Another CPU is reporting; its NMI will ask for this CPU's line.
        return;
    }
    let online = smp::online_count().max(1);
    println!();
    println!(
        "WATCHDOG: {what} after {waited_ms} ms; cpu {cpu} noticed; every online CPU ({online}) reports"
    );
    let (eip, esp): (u32, u32);
    // SAFETY: reads EIP (by a call to the next instruction) and ESP; no
    // memory but the two stack slots the call and pop use.
    unsafe {
        core::arch::asm!(
            "call 2f",
            "2: pop {eip}",
            "mov {esp}, esp",
            eip = out(reg) eip,
            esp = out(reg) esp,
        );
    }
    print_cpu(cpu, eip, esp, "noticed");
    let dump = DUMPER.load(Ordering::Relaxed);
    if dump != 0 {
        // SAFETY: stored from a `fn()` by `set_dumper`.
        let dump: fn() = unsafe { core::mem::transmute(dump as usize) };
        dump();
    }
    REPORTED.fetch_add(1, Ordering::SeqCst);
    if let Some(apic) = apic::get() {
        for other in (0..CPUS).filter(|&c| c != cpu && smp::is_online(c)) {
            if let Some(id) = smp::apic_id(other) {
                // A refused NMI shows as a CPU that did not report.
                let _ = apic.send_nmi(id);
            }
        }
    }
    // Up to about a second for the others' lines (PIT-timed: the TSC may be
    // what is broken).
    for _ in 0..100 {
        if REPORTED.load(Ordering::SeqCst) as usize >= online {
            break;
        }
        pit::delay_us(10_000);
    }
    let reported = REPORTED.load(Ordering::SeqCst);
    println!("WATCHDOG: {reported} of {online} CPUs reported; the kernel is hung");
    io::exit_qemu(false)
}

/// This CPU's line, from its NMI handler, during a report (the handler
/// calls it, as registered by [`init`], once
/// [`crate::base::spin::reporting`]); then the CPU halts with interrupts off
/// (the kernel is stopping).
pub fn report_from_nmi(frame: &ExceptionFrame) -> ! {
    let cpu = spin::cpu();
    print_cpu(cpu, frame.eip, frame.interrupted_esp(), "NMI");
    REPORTED.fetch_add(1, Ordering::SeqCst);
    cpu::halt_forever()
}

/// `hang=lock` on the command line: a deliberate deadlock, to show the
/// report. The boot CPU takes the frame allocator's lock; with other CPUs
/// it posts work to them that takes the same lock and waits for that work;
/// alone it takes the lock a second time. Never returns (the watchdog ends
/// the run).
pub fn provoke(context: &BootContext) {
    if !context.has_option("hang=lock") {
        return;
    }
    println!(
        "hang demo: the boot CPU holds the frame allocator's lock and waits for work that needs it"
    );
    let held = crate::mm::frames::lock();
    if smp::online_count() > 1 {
        crate::smp::work::run_on_others(|_, _| drop(crate::mm::frames::lock()), 0);
    }
    let again = crate::mm::frames::lock();
    drop(again);
    drop(held);
    println!("hang demo: the deadlock resolved itself, which it cannot");
}
