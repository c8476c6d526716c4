//! COM1 (16550 UART at port 0x3F8) console and the `print!`/`println!` macros.
//!
//! The UART is driven by polling, so the console needs no state beyond the
//! hardware itself: any context (a test, the page-fault handler, the
//! double-fault task) may print without taking a lock. Port I/O needs no
//! mapping, so the console keeps working across page-table switches.

use core::fmt;
use core::sync::atomic::{AtomicU32, Ordering};

use crate::arch::io::{inb, outb};

/// Base port of COM1.
const COM1: u16 = 0x3F8;
/// Register offsets from the base port.
const DATA: u16 = 0; // THR (write) / RBR (read); divisor low with DLAB
const INT_ENABLE: u16 = 1; // IER; divisor high with DLAB
const FIFO_CTRL: u16 = 2;
const LINE_CTRL: u16 = 3;
const MODEM_CTRL: u16 = 4;
const LINE_STATUS: u16 = 5;

/// LSR: a received byte is waiting.
const LSR_DATA_READY: u8 = 1 << 0;
/// LSR: the transmit holding register can take a byte.
const LSR_THR_EMPTY: u8 = 1 << 5;
/// LSR: transmitter completely idle (holding and shift register empty).
const LSR_TX_IDLE: u8 = 1 << 6;
/// MCR: DTR + RTS + OUT2, normal operation.
const MCR_NORMAL: u8 = 0x0B;
/// MCR: loopback mode (transmitted bytes come back on the receive side).
const MCR_LOOPBACK: u8 = 0x1E;

/// Programs COM1 for 115200 baud, 8N1, FIFOs on, interrupts off.
pub fn init() {
    // SAFETY: COM1 belongs to the kernel's console; these writes only
    // configure the UART.
    unsafe {
        outb(COM1 + INT_ENABLE, 0x00);
        outb(COM1 + LINE_CTRL, 0x80); // DLAB: next two registers are the divisor
        outb(COM1 + DATA, 0x01); // divisor 1 = 115200 baud
        outb(COM1 + INT_ENABLE, 0x00);
        outb(COM1 + LINE_CTRL, 0x03); // 8 bits, no parity, 1 stop bit
        outb(COM1 + FIFO_CTRL, 0xC7); // enable + clear FIFOs, 14-byte threshold
        outb(COM1 + MODEM_CTRL, MCR_NORMAL);
    }
}

fn line_status() -> u8 {
    // SAFETY: reading the LSR of the console UART has no side effect that
    // matters to the polling driver.
    unsafe { inb(COM1 + LINE_STATUS) }
}

/// Sends one byte, waiting until the UART can take it.
pub fn write_byte(byte: u8) {
    while line_status() & LSR_THR_EMPTY == 0 {
        core::hint::spin_loop();
    }
    // SAFETY: the transmit register is empty; writing it sends `byte`.
    unsafe { outb(COM1 + DATA, byte) };
}

/// Checks the UART by sending `byte` in loopback mode and reading it back.
///
/// Returns the byte received, or `None` if nothing arrived. The UART is back
/// in normal mode afterwards.
pub fn loopback_echo(byte: u8) -> Option<u8> {
    while line_status() & LSR_TX_IDLE == 0 {
        core::hint::spin_loop();
    }
    // Drop stale input so the byte read back is ours.
    while line_status() & LSR_DATA_READY != 0 {
        // SAFETY: reading RBR pops one received byte; the console owns COM1.
        unsafe { inb(COM1 + DATA) };
    }
    // SAFETY: loopback mode disconnects the line; normal mode is restored
    // below before anything else prints.
    unsafe { outb(COM1 + MODEM_CTRL, MCR_LOOPBACK) };
    write_byte(byte);
    let mut received = None;
    for _ in 0..100_000 {
        if line_status() & LSR_DATA_READY != 0 {
            // SAFETY: a byte is waiting in RBR; reading it pops it.
            received = Some(unsafe { inb(COM1 + DATA) });
            break;
        }
        core::hint::spin_loop();
    }
    // SAFETY: back to normal operation of the console UART.
    unsafe { outb(COM1 + MODEM_CTRL, MCR_NORMAL) };
    received
}

/// `fmt::Write` sink for COM1 (translates `\n` to `\r\n`).
pub struct Console;

impl fmt::Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for byte in s.bytes() {
            if byte == b'\n' {
                write_byte(b'\r');
            }
            write_byte(byte);
        }
        Ok(())
    }
}

/// The CPU printing now (`u32::MAX`: none): one `print!` at a time, so
/// lines from several CPUs do not interleave.
static PRINTING: AtomicU32 = AtomicU32::new(u32::MAX);

#[doc(hidden)]
pub fn _print(args: fmt::Arguments<'_>) {
    let me = crate::arch::gdt::cpu_index_early() as u32;
    // Not a lock that can deadlock: a CPU printing already (an NMI or a
    // fault inside a print) goes on, and a CPU that waited too long (the
    // printer died) prints anyway.
    let mut owned = false;
    if PRINTING.load(Ordering::Acquire) != me {
        // A line takes microseconds; after this many tries the CPU prints
        // anyway (interleaved rather than stuck: under Bochs a `pause`
        // can cost a whole scheduling round of the emulated CPUs).
        for _ in 0..100_000u32 {
            if PRINTING
                .compare_exchange(u32::MAX, me, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                owned = true;
                break;
            }
            core::hint::spin_loop();
        }
    }
    // The console never fails.
    let _ = fmt::Write::write_fmt(&mut Console, args);
    crate::base::spin::progress();
    crate::arch::vga::mirror(args);
    if owned {
        PRINTING.store(u32::MAX, Ordering::Release);
    }
}

/// Prints to COM1 (mirrored on the VGA console once it is on).
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => { $crate::arch::serial::_print(format_args!($($arg)*)) };
}

/// Prints to COM1 (mirrored on the VGA console), with a newline.
#[macro_export]
macro_rules! println {
    () => { $crate::print!("\n") };
    ($($arg:tt)*) => { $crate::arch::serial::_print(format_args!("{}\n", format_args!($($arg)*))) };
}
