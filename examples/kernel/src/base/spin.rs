//! What every spin loop and every sign of life calls: the small half of the
//! hang watchdog ([`crate::smp::watchdog`]) that locks, waits and the
//! console use, so that they need nothing above `base/`.
//!
//! **Progress** is a global counter that moves whenever the kernel does
//! something a hang would stop ([`progress`]). **Waiting** is what every
//! spin loop declares once per round through [`spin()`]; each CPU keeps its
//! own record (what, the address spun on, since when), which the report
//! reads back ([`waiting_on`]). When a wait has seen no progress for the
//! limit, [`spin()`] calls the reporter the watchdog registered.

use core::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};

use crate::base::config::CPUS;

/// Default seconds without progress before the report.
const DEFAULT_SECS: u32 = 10;
/// Milliseconds without a spin after which a CPU's next spin starts a new
/// wait.
const NEW_WAIT_MS: u32 = 1000;

/// Moves whenever the kernel makes progress.
static PROGRESS: AtomicU32 = AtomicU32::new(0);
/// TSC ticks per millisecond (0: not calibrated yet, or no TSC).
static TICKS_PER_MS: AtomicU32 = AtomicU32::new(0);
/// Seconds without progress before the report (0: off).
static LIMIT_SECS: AtomicU32 = AtomicU32::new(DEFAULT_SECS);
/// Set once a report has begun (there is only ever one).
static REPORTING: AtomicBool = AtomicBool::new(false);
/// This CPU's index (`fn() -> usize`, registered by the GDT set-up:
/// [`set_cpu_index`]); 0 until then.
static CPU_INDEX: AtomicUsize = AtomicUsize::new(0);
/// What reports a hang (`fn(usize, &'static str, u32)`, registered by the
/// watchdog: [`set_reporter`]); 0 until then.
static REPORTER: AtomicUsize = AtomicUsize::new(0);

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

/// Registers how to read this CPU's index (the GDT's per-CPU segment).
pub fn set_cpu_index(index: fn() -> usize) {
    CPU_INDEX.store(index as usize, Ordering::Release);
}

/// Registers what reports a hang: called with the noticing CPU, what
/// stopped and for how many milliseconds.
pub fn set_reporter(report: fn(usize, &'static str, u32)) {
    REPORTER.store(report as usize, Ordering::Release);
}

/// Sets the seconds without progress before the report (0: off).
pub fn set_limit_secs(secs: u32) {
    LIMIT_SECS.store(secs, Ordering::Relaxed);
}

/// Seconds without progress before the report (0: off).
pub fn limit_secs() -> u32 {
    LIMIT_SECS.load(Ordering::Relaxed)
}

/// Sets the TSC ticks per millisecond, once calibrated.
pub fn set_ticks_per_ms(per_ms: u32) {
    TICKS_PER_MS.store(per_ms, Ordering::Relaxed);
}

/// This CPU's index, modulo [`CPUS`] (0 before the GDT set-up registered
/// how to read it).
pub fn cpu() -> usize {
    let index = CPU_INDEX.load(Ordering::Acquire);
    if index == 0 {
        return 0;
    }
    // SAFETY: stored from a `fn() -> usize` by `set_cpu_index`.
    let index: fn() -> usize = unsafe { core::mem::transmute(index) };
    index() % CPUS
}

/// The time-stamp counter; only called once [`TICKS_PER_MS`] is set, which
/// the watchdog does only on a CPU with a TSC.
fn rdtsc() -> u64 {
    // SAFETY: `rdtsc` only reads the time-stamp counter; callers checked
    // that calibration (so a TSC) happened.
    unsafe { core::arch::x86::_rdtsc() }
}

/// TSC ticks per millisecond, as calibrated at boot (0 without a TSC).
pub fn ticks_per_ms() -> u32 {
    TICKS_PER_MS.load(Ordering::Relaxed)
}

/// Milliseconds (wrapping) of this CPU's TSC, once calibrated; `None` on a
/// CPU without one.
pub fn clock_ms() -> Option<u32> {
    let per_ms = TICKS_PER_MS.load(Ordering::Relaxed);
    (per_ms != 0).then(|| (rdtsc() / u64::from(per_ms)) as u32)
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

/// Marks the report begun; `true` if it already was (there is only ever
/// one).
pub fn begin_report() -> bool {
    REPORTING.swap(true, Ordering::SeqCst)
}

/// Whether a report has begun.
pub fn reporting() -> bool {
    REPORTING.load(Ordering::Relaxed)
}

/// This CPU's clock in milliseconds (wrapping): the TSC, or its spin count
/// where there is none.
fn now_ms(cpu: usize) -> u32 {
    let per_ms = TICKS_PER_MS.load(Ordering::Relaxed);
    if per_ms != 0 {
        (rdtsc() / u64::from(per_ms)) as u32
    } else {
        SPINS[cpu].fetch_add(1, Ordering::Relaxed) / 1000
    }
}

/// One round of a spin loop on `what` at `address`: records the wait and,
/// if nothing has progressed for the limit, calls the registered reporter
/// (which reports every CPU and stops the kernel). Cheap enough for every
/// round (a clock read and a few relaxed atomics).
pub fn spin(what: &'static str, address: usize) {
    let limit = LIMIT_SECS.load(Ordering::Relaxed);
    let cpu = cpu();
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
        let report = REPORTER.load(Ordering::Acquire);
        if report != 0 {
            // SAFETY: stored from a `fn(usize, &'static str, u32)` by
            // `set_reporter`.
            let report: fn(usize, &'static str, u32) = unsafe { core::mem::transmute(report) };
            report(cpu, "no progress", waited);
        }
    }
}

/// Ends a wait (the loop got what it waited for), so that an NMI report
/// does not name a wait that is over.
pub fn done() {
    WAITS[cpu()].what.store(0, Ordering::Relaxed);
}

/// What CPU `cpu` waits on: its name, the address spun on and for how many
/// milliseconds; `None` when it waits on nothing.
pub fn waiting_on(cpu: usize) -> Option<(&'static str, u32, u32)> {
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
