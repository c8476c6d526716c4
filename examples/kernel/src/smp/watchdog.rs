//! The hang watchdog: a kernel that stops making progress says what every
//! CPU waits for, instead of going quiet until a host-side timeout.
//!
//! **Progress** is a global counter that moves whenever the kernel does
//! something a hang would stop: a console line, a lock taken, a shootdown
//! round finished, a self-test begun or ended ([`progress`]).
//!
//! **Waiting** is what every spin loop of the kernel declares once per
//! round through [`spin`]: the frame-allocator and process-table locks, the
//! kmap pool's waits, the TLB shootdown's wait for acknowledgements, the
//! wait for work posted to other CPUs. Each CPU keeps its own record (what,
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

use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use crate::arch::exceptions::ExceptionFrame;
use crate::base::config::CPUS;
use crate::boot::context::BootContext;
use crate::{
    arch::apic, arch::cpu, arch::fault_probe, arch::gdt, arch::io, arch::pit, mm::layout, println,
    smp,
};

/// Default seconds without progress before the report.
const DEFAULT_SECS: u32 = 10;
/// Milliseconds without a spin after which a CPU's next spin starts a new
/// wait.
const NEW_WAIT_MS: u32 = 1000;
/// Stack words scanned for return addresses.
const STACK_WORDS: usize = 256;
/// Return addresses printed per CPU.
const RETURN_ADDRESSES: usize = 8;

/// Moves whenever the kernel makes progress.
static PROGRESS: AtomicU32 = AtomicU32::new(0);
/// TSC ticks per millisecond (0: not calibrated yet, or no TSC).
static TICKS_PER_MS: AtomicU32 = AtomicU32::new(0);
/// Seconds without progress before the report (0: off).
static LIMIT_SECS: AtomicU32 = AtomicU32::new(DEFAULT_SECS);
/// Set once a report has begun (there is only ever one).
static REPORTING: AtomicBool = AtomicBool::new(false);
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

/// One CPU's current wait.
struct CpuWait {
    /// Address of the waited-for site's name (`&'static str` data), 0: none.
    what: AtomicU32,
    /// Length of that name.
    what_len: AtomicU32,
    /// The address spun on.
    address: AtomicU32,
    /// [`PROGRESS`] when this wait began.
    progress: AtomicU32,
    /// Clock (ms) when this wait began.
    since_ms: AtomicU32,
    /// Clock (ms) of the last spin.
    last_ms: AtomicU32,
}

static WAITS: [CpuWait; CPUS] = [const {
    CpuWait {
        what: AtomicU32::new(0),
        what_len: AtomicU32::new(0),
        address: AtomicU32::new(0),
        progress: AtomicU32::new(0),
        since_ms: AtomicU32::new(0),
        last_ms: AtomicU32::new(0),
    }
}; CPUS];

/// Spins counted on CPUs without a TSC (one "millisecond" per 1,000).
static SPINS: [AtomicU32; CPUS] = [const { AtomicU32::new(0) }; CPUS];

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
        LIMIT_SECS.store(secs, Ordering::Relaxed);
    }
    if let Some(secs) = option("watchdog.test-secs=") {
        TEST_LIMIT_SECS.store(secs, Ordering::Relaxed);
    }
    if cpu::has_tsc() {
        let start = cpu::rdtsc();
        pit::delay_us(10_000);
        let per_ms = (cpu::rdtsc().wrapping_sub(start) / 10).clamp(1, u64::from(u32::MAX));
        TICKS_PER_MS.store(per_ms as u32, Ordering::Relaxed);
    }
    let secs = LIMIT_SECS.load(Ordering::Relaxed);
    if secs == 0 {
        println!("watchdog: off (watchdog.secs=0)");
    } else {
        println!(
            "watchdog: a report after {secs} s without progress (TSC {} ticks per ms; preemption tick {} ms)",
            ticks_per_ms(),
            crate::proc::timer::period_ms()
        );
    }
}

/// TSC ticks per millisecond, as calibrated at boot (0 without a TSC).
pub fn ticks_per_ms() -> u32 {
    TICKS_PER_MS.load(Ordering::Relaxed)
}

/// Milliseconds (wrapping) of this CPU's TSC, once calibrated; `None` on a
/// CPU without one.
pub fn clock_ms() -> Option<u32> {
    let per_ms = TICKS_PER_MS.load(Ordering::Relaxed);
    (per_ms != 0).then(|| (cpu::rdtsc() / u64::from(per_ms)) as u32)
}

/// `ticks` of the TSC in microseconds (0 before calibration).
pub fn ticks_to_us(ticks: u32) -> u64 {
    let per_ms = u64::from(TICKS_PER_MS.load(Ordering::Relaxed));
    (u64::from(ticks) * 1000).checked_div(per_ms).unwrap_or(0)
}

/// Records progress: the kernel did something a hang would stop.
#[inline]
pub fn progress() {
    // The report's own lines are not progress: the waits it names keep
    // their age.
    if !REPORTING.load(Ordering::Relaxed) {
        PROGRESS.fetch_add(1, Ordering::Relaxed);
    }
}

/// This CPU's clock in milliseconds (wrapping): the TSC, or its spin count
/// where there is none.
fn now_ms(cpu: usize) -> u32 {
    let per_ms = TICKS_PER_MS.load(Ordering::Relaxed);
    if per_ms != 0 {
        (cpu::rdtsc() / u64::from(per_ms)) as u32
    } else {
        SPINS[cpu].fetch_add(1, Ordering::Relaxed) / 1000
    }
}

/// One round of a spin loop on `what` at `address`: records the wait and,
/// if nothing has progressed for the limit, reports every CPU and stops the
/// kernel. Cheap enough for every round (a clock read and a few relaxed
/// atomics).
pub fn spin(what: &'static str, address: usize) {
    let limit = LIMIT_SECS.load(Ordering::Relaxed);
    let cpu = gdt::cpu_index() % CPUS;
    let wait = &WAITS[cpu];
    let now = now_ms(cpu);
    let progress = PROGRESS.load(Ordering::Relaxed);
    let same_site = wait.what.load(Ordering::Relaxed) == what.as_ptr() as u32
        && wait.address.load(Ordering::Relaxed) == address as u32;
    let recent = now.wrapping_sub(wait.last_ms.load(Ordering::Relaxed)) <= NEW_WAIT_MS;
    wait.last_ms.store(now, Ordering::Relaxed);
    if !same_site || !recent || wait.progress.load(Ordering::Relaxed) != progress {
        wait.what.store(what.as_ptr() as u32, Ordering::Relaxed);
        wait.what_len.store(what.len() as u32, Ordering::Relaxed);
        wait.address.store(address as u32, Ordering::Relaxed);
        wait.progress.store(progress, Ordering::Relaxed);
        wait.since_ms.store(now, Ordering::Relaxed);
        return;
    }
    let waited = now.wrapping_sub(wait.since_ms.load(Ordering::Relaxed));
    if limit != 0 && waited >= limit.saturating_mul(1000) {
        report(cpu, "no progress", waited);
    }
}

/// A self-test begins: the clock its time limit counts from.
pub fn test_started() {
    if let Some(now) = clock_ms() {
        TEST_STARTED_MS.store(now, Ordering::Relaxed);
    }
}

/// Reports (and stops the kernel) if the running self-test is past
/// `watchdog.test-secs`: a livelock keeps making progress, so only a
/// deadline finds it. Called where CPUs go round while tests run (the
/// process scheduler's loop).
pub fn check_deadline() {
    let limit = TEST_LIMIT_SECS.load(Ordering::Relaxed);
    let (Some(now), true) = (clock_ms(), limit != 0) else {
        return;
    };
    let ran = now.wrapping_sub(TEST_STARTED_MS.load(Ordering::Relaxed));
    if ran >= limit.saturating_mul(1000) {
        report(gdt::cpu_index() % CPUS, "the self-test still running", ran);
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

/// Ends a wait (the loop got what it waited for), so that an NMI report
/// does not name a wait that is over.
pub fn done() {
    let wait = &WAITS[gdt::cpu_index() % CPUS];
    wait.what.store(0, Ordering::Relaxed);
}

/// What CPU `cpu` waits on, as text.
fn waiting_on(cpu: usize) -> Option<(&'static str, u32, u32)> {
    let wait = &WAITS[cpu];
    let what = wait.what.load(Ordering::Relaxed);
    if what == 0 {
        return None;
    }
    let len = wait.what_len.load(Ordering::Relaxed) as usize;
    // SAFETY: `what` and `len` were stored together from a `&'static str`
    // by `spin` on this CPU (an NMI reads them on the same CPU, or the
    // report reads a CPU that is stuck in that wait); static strings live
    // for the kernel's life.
    let bytes = unsafe { core::slice::from_raw_parts(what as *const u8, len) };
    let name = core::str::from_utf8(bytes).unwrap_or("?");
    let since = wait.since_ms.load(Ordering::Relaxed);
    let waited = now_ms(cpu).wrapping_sub(since);
    Some((name, wait.address.load(Ordering::Relaxed), waited))
}

/// Prints CPU `cpu`'s report line: `eip`, its wait, and return addresses
/// found on the stack from `esp` up.
fn print_cpu(cpu: usize, eip: u32, esp: u32, how: &str) {
    let mut found = [0u32; RETURN_ADDRESSES];
    let mut n = 0;
    let text = layout::text();
    for i in 0..STACK_WORDS {
        let at = esp as usize + 4 * i;
        // SAFETY: a read through the fault probe: an unmapped address (past
        // the stack's top) is reported as a fault, not taken.
        let word = fault_probe::preserving(|| unsafe { fault_probe::read_u32(at) });
        let Ok(word) = word else { break };
        if text.contains(&(word as usize)) && n < found.len() {
            found[n] = word;
            n += 1;
        }
    }
    let wait = waiting_on(cpu);
    match wait {
        Some((what, address, ms)) => println!(
            "watchdog: cpu {cpu} ({how}) at eip {eip:#010x}: waits on {what} ({address:#x}) for {ms} ms"
        ),
        None => println!(
            "watchdog: cpu {cpu} ({how}) at eip {eip:#010x}: waits on nothing (idle, or running)"
        ),
    }
    let mut line = heapless::String::<160>::new();
    for address in &found[..n] {
        // Overflow only drops addresses from the line.
        let _ = core::fmt::Write::write_fmt(&mut line, format_args!(" {address:#010x}"));
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
fn report(cpu: usize, what: &str, waited_ms: u32) {
    if REPORTING.swap(true, Ordering::SeqCst) {
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

/// Whether a report is asking every CPU for its line (the NMI handler then
/// calls [`report_from_nmi`]).
pub fn reporting() -> bool {
    REPORTING.load(Ordering::Relaxed)
}

/// This CPU's line, from its NMI handler, during a report; then the CPU
/// halts with interrupts off (the kernel is stopping).
pub fn report_from_nmi(frame: &ExceptionFrame) -> ! {
    let cpu = gdt::cpu_index() % CPUS;
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
