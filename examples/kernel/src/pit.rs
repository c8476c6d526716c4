//! Delays measured by the PIT (channel 2, polled through port 0x61), for
//! the waits the AP start-up sequence prescribes. No interrupt is used.

use crate::io::{inb, outb};

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
