//! Port I/O: the only module that executes `in`/`out` instructions.
//!
//! Also the QEMU exit device (`-device isa-debug-exit,iobase=0xf4,iosize=0x04`):
//! writing `v` to port 0xF4 makes QEMU exit with status `(v << 1) | 1`.

use core::arch::asm;

/// Port of QEMU's `isa-debug-exit` device.
const DEBUG_EXIT_PORT: u16 = 0xF4;
/// Written to [`DEBUG_EXIT_PORT`] when every test passed: QEMU exits with 33.
pub const EXIT_PASS: u32 = 0x10;
/// Written to [`DEBUG_EXIT_PORT`] on any failure: QEMU exits with 35.
pub const EXIT_FAIL: u32 = 0x11;

/// Reads a byte from `port`.
///
/// # Safety
/// Reading some ports has side effects on devices (e.g. it acknowledges an
/// interrupt or pops a FIFO); the caller must own the device behind `port`.
pub unsafe fn inb(port: u16) -> u8 {
    let value: u8;
    // SAFETY: `in` touches no memory; the caller owns the device (contract).
    unsafe {
        asm!("in al, dx", out("al") value, in("dx") port, options(nomem, nostack, preserves_flags))
    };
    value
}

/// Writes a byte to `port`.
///
/// # Safety
/// The caller must own the device behind `port`; writes reprogram hardware.
pub unsafe fn outb(port: u16, value: u8) {
    // SAFETY: `out` touches no memory; the caller owns the device (contract).
    unsafe {
        asm!("out dx, al", in("dx") port, in("al") value, options(nomem, nostack, preserves_flags))
    };
}

/// Writes a 16-bit value to `port` (the VGA's VBE DISPI registers).
///
/// # Safety
/// As for [`outb`].
pub unsafe fn outw(port: u16, value: u16) {
    // SAFETY: `out` touches no memory; the caller owns the device (contract).
    unsafe {
        asm!("out dx, ax", in("dx") port, in("ax") value, options(nomem, nostack, preserves_flags))
    };
}

/// Reads a 32-bit value from `port` (PCI configuration data, [`crate::arch::pci`]).
///
/// # Safety
/// As for [`inb`].
pub unsafe fn inl(port: u16) -> u32 {
    let value: u32;
    // SAFETY: `in` touches no memory; the caller owns the device (contract).
    unsafe {
        asm!("in eax, dx", out("eax") value, in("dx") port, options(nomem, nostack, preserves_flags))
    };
    value
}

/// Writes a 32-bit value to `port`.
///
/// # Safety
/// As for [`outb`].
pub unsafe fn outl(port: u16, value: u32) {
    // SAFETY: `out` touches no memory; the caller owns the device (contract).
    unsafe {
        asm!("out dx, eax", in("dx") port, in("eax") value, options(nomem, nostack, preserves_flags))
    };
}

/// Ends the QEMU run: status 33 if `pass`, 35 otherwise.
///
/// Without the exit device (real hardware, or QEMU started without it) the
/// CPU halts forever instead.
pub fn exit_qemu(pass: bool) -> ! {
    let code = if pass { EXIT_PASS } else { EXIT_FAIL };
    // SAFETY: port 0xF4 is QEMU's debug-exit device (or nothing on real
    // hardware); writing it only stops the machine.
    unsafe { outl(DEBUG_EXIT_PORT, code) };
    crate::arch::cpu::halt_forever()
}
