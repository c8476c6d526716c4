//! The PIT (8254): delays (channel 2, polled through port 0x61) for the
//! waits the AP start-up sequence prescribes; the preemption tick on a CPU
//! without a local APIC (channel 0, IRQ 0 through the legacy PIC); and the
//! clock of the kernel's figures on a CPU without a TSC ([`Stopwatch`]).

use crate::arch::io::{inb, outb};

/// The PIT's input clock, in Hz.
const PIT_HZ: u64 = 1_193_182;
/// Port 0x61: bit 0 gates channel 2, bit 1 drives the speaker, bit 5 reads
/// channel 2's output.
const PORT_B: u16 = 0x61;
const CHANNEL_2: u16 = 0x42;
const COMMAND: u16 = 0x43;
/// Channel 2, low byte then high byte, mode 0 (interrupt on terminal
/// count: OUT goes high when the count reaches zero), binary.
const CHANNEL_2_MODE_0: u8 = 0b1011_0000;

/// Channel 0 (IRQ 0), its data port.
const CHANNEL_0: u16 = 0x40;
/// Channel 0, low byte then high byte, mode 2 (rate generator), binary.
const CHANNEL_0_MODE_2: u8 = 0b0011_0100;
/// Channel 0, mode 0, no count written: the output stays low (no IRQ).
const CHANNEL_0_STOP: u8 = 0b0011_0000;
/// Channel 2, low byte then high byte, mode 2 (rate generator), binary.
const CHANNEL_2_MODE_2: u8 = 0b1011_0100;
/// Counter-latch command for channel 2.
const LATCH_CHANNEL_2: u8 = 0b1000_0000;
/// The master 8259A PIC: command port and mask (data) port.
const PIC_COMMAND: u16 = 0x20;
const PIC_MASK: u16 = 0x21;
/// Non-specific end of interrupt.
const PIC_EOI: u8 = 0x20;

/// Busy-waits at least `us` microseconds.
pub fn delay_us(us: u32) {
    let mut ticks = u64::from(us) * PIT_HZ / 1_000_000 + 1;
    while ticks > 0 {
        let count = ticks.min(0xFFFF) as u16;
        // SAFETY: ports 0x42, 0x43 and 0x61 are the PIT's channel 2 and
        // the system control port on every PC; only channel 2 (the
        // speaker's timer, unused here) and its gate change, the speaker
        // stays off.
        unsafe {
            let port_b = inb(PORT_B) & !0b11;
            outb(PORT_B, port_b);
            outb(COMMAND, CHANNEL_2_MODE_0);
            outb(CHANNEL_2, count as u8);
            outb(CHANNEL_2, (count >> 8) as u8);
            outb(PORT_B, port_b | 1);
            while inb(PORT_B) & 0x20 == 0 {
                core::hint::spin_loop();
            }
            outb(PORT_B, port_b);
        }
        ticks -= u64::from(count);
    }
}

/// Starts channel 0 as a rate generator: IRQ 0 every `us` microseconds,
/// and unmasks IRQ 0 at the master PIC (vector 0x20 after
/// [`crate::smp`]'s remap). The preemption tick of a CPU without a local
/// APIC ([`crate::arch::timer`]).
pub fn periodic_start(us: u32) {
    let count = (u64::from(us) * PIT_HZ / 1_000_000).clamp(2, 0xFFFF) as u16;
    // SAFETY: the PIT's channel 0 and the master PIC's mask register on
    // every PC; only IRQ 0 is unmasked, and its vector has a gate.
    unsafe {
        outb(COMMAND, CHANNEL_0_MODE_2);
        outb(CHANNEL_0, count as u8);
        outb(CHANNEL_0, (count >> 8) as u8);
        outb(PIC_MASK, inb(PIC_MASK) & !1);
    }
}

/// Masks IRQ 0 and stops channel 0.
pub fn periodic_stop() {
    // SAFETY: as in `periodic_start`; masking an IRQ is always safe.
    unsafe {
        outb(PIC_MASK, inb(PIC_MASK) | 1);
        outb(COMMAND, CHANNEL_0_STOP);
    }
}

/// End of interrupt for IRQ 0 at the master PIC.
pub fn end_of_irq0() {
    // SAFETY: the master PIC's command port; a non-specific EOI ends the
    // interrupt being serviced (IRQ 0, the only one unmasked).
    unsafe { outb(PIC_COMMAND, PIC_EOI) };
}

/// Times the kernel's figures: the TSC (cycles) where the CPU has one,
/// else the PIT (channel 2 free-running, 1.193182 MHz), read in
/// nanoseconds. The PIT's 16-bit counter wraps every 54.9 ms, so a loop
/// timed without a TSC calls [`keep_time`] once per round (a no-op with a
/// TSC). One stopwatch at a time: starting one restarts the PIT clock.
/// Uses channel 2 as [`delay_us`] does: no delay may run while a
/// stopwatch is in use.
pub struct Stopwatch {
    /// TSC at the start (TSC only).
    start: u64,
}

/// The PIT clock of a CPU without a TSC: ticks counted since the last
/// [`Stopwatch::start`], and the counter at the last read.
static PIT_CLOCK: spin::Mutex<(u64, u16)> = spin::Mutex::new((0, 0));

/// Counts the PIT ticks since the last read, for the running
/// [`Stopwatch`]. Call at least every 54 ms while timing; a no-op on a CPU
/// with a TSC.
pub fn keep_time() {
    if crate::arch::cpu::features().tsc {
        return;
    }
    let mut clock = PIT_CLOCK.lock();
    let now = read_channel_2();
    // The counter counts down and reloads at 65536.
    clock.0 += u64::from(clock.1.wrapping_sub(now));
    clock.1 = now;
}

impl Stopwatch {
    /// Starts timing.
    pub fn start() -> Self {
        if crate::arch::cpu::features().tsc {
            return Self {
                start: crate::arch::cpu::rdtsc(),
            };
        }
        // SAFETY: channel 2 (the speaker's timer, unused) and its gate in
        // port 0x61; the speaker stays off. Count 0 = 65536.
        unsafe {
            let port_b = inb(PORT_B) & !0b11;
            outb(PORT_B, port_b);
            outb(COMMAND, CHANNEL_2_MODE_2);
            outb(CHANNEL_2, 0);
            outb(CHANNEL_2, 0);
            outb(PORT_B, port_b | 1);
        }
        *PIT_CLOCK.lock() = (0, read_channel_2());
        Self { start: 0 }
    }

    /// Cycles (TSC) or nanoseconds (PIT) since [`start`](Self::start).
    pub fn elapsed(&self) -> u64 {
        if crate::arch::cpu::features().tsc {
            return crate::arch::cpu::rdtsc().wrapping_sub(self.start);
        }
        keep_time();
        PIT_CLOCK.lock().0 * 1_000_000_000 / PIT_HZ
    }

    /// The unit of [`elapsed`](Self::elapsed): `cycles`, or `ns (PIT, no
    /// TSC)`.
    pub fn unit() -> &'static str {
        if crate::arch::cpu::features().tsc {
            "cycles"
        } else {
            "ns (PIT, no TSC)"
        }
    }
}

/// Channel 2's current count (latched, low byte then high byte).
fn read_channel_2() -> u16 {
    // SAFETY: the counter-latch command and two reads of channel 2's data
    // port; nothing else changes.
    unsafe {
        outb(COMMAND, LATCH_CHANNEL_2);
        let low = inb(CHANNEL_2);
        let high = inb(CHANNEL_2);
        u16::from_le_bytes([low, high])
    }
}
