//! The preemption tick of the process scheduler: the local-APIC timer, or
//! the PIT on a CPU without a local APIC. The scheduler's side of the tick
//! is [`crate::proc::sched::timer_interrupt`].
//!
//! The APIC timer is calibrated once against the PIT (boot CPU, at SMP
//! start-up); each CPU runs its own timer while its scheduler runs
//! processes ([`crate::proc::sched::run_until_done`]), every [`PERIOD_MS`].
//! Without a local APIC there is one CPU, and the PIT's channel 0 ticks
//! instead: IRQ 0 through the legacy PIC, routed to [`TIMER_VECTOR`]'s
//! handler.

use core::sync::atomic::{AtomicU32, Ordering};

use crate::base::config::CPUS;
use crate::{arch::apic, arch::gdt, arch::idt, arch::pit};

/// Vector of the timer interrupt.
pub const TIMER_VECTOR: u8 = 0x40;
/// Milliseconds between two ticks, at least (see [`period_ms`]).
pub const PERIOD_MS: u32 = 2;
/// The fewest TSC cycles a CPU runs between two of its ticks. A tick costs
/// a few thousand (the interrupt, a scheduler pick under the process
/// table's lock, a switch with the x87 state): at this many it stays near
/// 1 % of the CPU. On QEMU (a TSC in GHz) [`PERIOD_MS`] is far more; on
/// Bochs, whose TSC counts instructions and whose emulated CPUs run a few
/// million a second, 2 ms would be a couple of thousand instructions, and
/// four CPUs did little but take ticks.
const MIN_CYCLES_PER_TICK: u32 = 200_000;

/// Timer counts (bus clock / 16) per millisecond.
static COUNTS_PER_MS: AtomicU32 = AtomicU32::new(0);
/// Ticks each CPU took.
static TICKS: [AtomicU32; CPUS] = [const { AtomicU32::new(0) }; CPUS];

/// Measures the timer against 10 ms of the PIT.
pub fn calibrate() {
    let Some(apic) = apic::get() else { return };
    apic.timer_one_shot_masked();
    let start = apic.timer_current();
    pit::delay_us(10_000);
    let elapsed = start.wrapping_sub(apic.timer_current());
    apic.timer_stop();
    COUNTS_PER_MS.store((elapsed / 10).max(1), Ordering::Relaxed);
}

/// The legacy PIC's IRQ 0 vector (the PIC is moved to 0x20 at SMP
/// start-up).
const PIC_IRQ0_VECTOR: u8 = 0x20;

/// Milliseconds between two ticks on this machine: [`PERIOD_MS`], or
/// longer where the CPU runs fewer than `MIN_CYCLES_PER_TICK` TSC cycles in
/// that time (capped at 50 ms, the PIT's reach).
pub fn period_ms() -> u32 {
    match crate::base::spin::ticks_per_ms() {
        0 => PERIOD_MS,
        per_ms => MIN_CYCLES_PER_TICK.div_ceil(per_ms).clamp(PERIOD_MS, 50),
    }
}

/// Starts this CPU's periodic tick.
pub fn start() {
    let period = period_ms();
    if let Some(apic) = apic::get() {
        let per_ms = COUNTS_PER_MS.load(Ordering::Relaxed).max(1);
        apic.timer_periodic(TIMER_VECTOR, per_ms.saturating_mul(period));
    } else if gdt::cpu_index() == 0 {
        // SAFETY: IRQ 0 is masked until `periodic_start` unmasks it, so no
        // interrupt arrives on its vector while the gate is written.
        unsafe { idt::route(PIC_IRQ0_VECTOR, TIMER_VECTOR) };
        pit::periodic_start(period * 1000);
    }
}

/// Stops this CPU's tick.
pub fn stop() {
    if let Some(apic) = apic::get() {
        apic.timer_stop();
    } else if gdt::cpu_index() == 0 {
        pit::periodic_stop();
    }
}

/// Ticks CPU `cpu` has taken.
pub fn ticks(cpu: usize) -> u32 {
    TICKS.get(cpu).map_or(0, |t| t.load(Ordering::Relaxed))
}

/// The first half of [`TIMER_VECTOR`]'s handler, interrupts off: end of
/// interrupt, and one more tick for this CPU. The scheduler's handler
/// ([`crate::proc::sched::timer_interrupt`]) then maybe switches to another
/// process.
pub fn tick() {
    if let Some(apic) = apic::get() {
        apic.eoi();
    } else {
        pit::end_of_irq0();
    }
    TICKS[gdt::cpu_index() % CPUS].fetch_add(1, Ordering::Relaxed);
}
