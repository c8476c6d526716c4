//! What any freestanding i386 kernel needs and the paging crates do not
//! provide: the multiboot header and entry code, a stack, the COM1
//! console, the QEMU exit device, and the memory functions the compiler
//! calls.

use core::arch::{asm, global_asm};
use core::fmt;

/// Multiboot v1 header: magic, flags (bit 1: give us mem_lower/mem_upper),
/// checksum.
const MB_MAGIC: u32 = 0x1BAD_B002;
const MB_FLAGS: u32 = 1 << 1;

// `_start`: the loader jumps here with paging off, EAX = the multiboot
// magic, EBX = the physical address of the multiboot information. Zero
// .bss (the stack is in it), switch to our stack, call `kmain`.
global_asm!(
    r#"
    .section .multiboot_header, "a"
    .p2align 2
    .long {magic}, {flags}, {checksum}

    .section .bss.stack, "aw", @nobits
    .p2align 12
    .skip 64 * 1024
stack_top:

    .section .text._start, "ax"
    .global _start
_start:
    cli
    cld
    mov esi, eax
    mov ebp, ebx
    mov edi, offset __bss_start
    mov ecx, offset __bss_end
    sub ecx, edi
    xor eax, eax
    rep stosb
    mov esp, offset stack_top
    push ebp
    push esi
    call kmain
2:  hlt
    jmp 2b
    "#,
    magic = const MB_MAGIC,
    flags = const MB_FLAGS,
    checksum = const 0u32.wrapping_sub(MB_MAGIC).wrapping_sub(MB_FLAGS),
);

/// The end of the RAM that starts at 1 MiB, from the multiboot `mem_upper`
/// field (`None` if the loader gave none). Call with paging off: `info` is
/// a physical address.
pub fn ram_end(magic: u32, info: u32) -> Option<u64> {
    if magic != 0x2BAD_B002 {
        return None;
    }
    let info = info as *const u32;
    // SAFETY: the loader put the multiboot information at `info` (words 0
    // and 2 are `flags` and `mem_upper`); paging is off, so it is there.
    let (flags, mem_upper) = unsafe { (info.read_volatile(), info.add(2).read_volatile()) };
    (flags & 1 != 0).then(|| ((1 << 20) + u64::from(mem_upper) * 1024) & !0xFFF)
}

/// Write `value` to `port`.
fn outb(port: u16, value: u8) {
    // SAFETY: `out` touches no memory; the ports used here are COM1's and
    // QEMU's exit device, which this kernel owns.
    unsafe { asm!("out dx, al", in("dx") port, in("al") value, options(nomem, nostack)) };
}

/// Read from `port`.
fn inb(port: u16) -> u8 {
    let value: u8;
    // SAFETY: as in `outb`; reading COM1's line status has no side effect.
    unsafe { asm!("in al, dx", out("al") value, in("dx") port, options(nomem, nostack)) };
    value
}

const COM1: u16 = 0x3F8;

/// COM1 at 115200 baud, 8N1, polled.
pub fn serial_init() {
    for (reg, value) in [
        (1, 0x00),
        (3, 0x80),
        (0, 0x01),
        (1, 0x00),
        (3, 0x03),
        (2, 0xC7),
        (4, 0x0B),
    ] {
        outb(COM1 + reg, value);
    }
}

/// The console: COM1, `\n` sent as `\r\n`.
pub struct Serial;

impl fmt::Write for Serial {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for byte in s.bytes() {
            for b in if byte == b'\n' {
                &b"\r\n"[..]
            } else {
                core::slice::from_ref(&byte)
            } {
                while inb(COM1 + 5) & 0x20 == 0 {}
                outb(COM1, *b);
            }
        }
        Ok(())
    }
}

/// Print a line on COM1.
#[macro_export]
macro_rules! println {
    ($($arg:tt)*) => {{
        let _ = core::fmt::Write::write_fmt(
            &mut $crate::platform::Serial,
            format_args!("{}\n", format_args!($($arg)*)),
        );
    }};
}

/// Stop QEMU through `isa-debug-exit`: status 33 if `pass`, 35 otherwise.
/// Without the device (real hardware) halt.
pub fn exit_qemu(pass: bool) -> ! {
    let code: u32 = if pass { 0x10 } else { 0x11 };
    // SAFETY: port 0xF4 is QEMU's exit device (nothing on a PC); writing
    // it only stops the machine.
    unsafe { asm!("out dx, eax", in("dx") 0xF4u16, in("eax") code, options(nomem, nostack)) };
    loop {
        // SAFETY: `hlt` waits for an interrupt; interrupts are off.
        unsafe { asm!("hlt", options(nomem, nostack)) };
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    crate::println!("KERNEL PANIC: {info}");
    exit_qemu(false)
}

/// Never called (`panic = "abort"`), but the prebuilt `core` refers to it.
#[unsafe(no_mangle)]
extern "C" fn rust_eh_personality() {}

// The memory functions the compiler emits calls to. Volatile accesses, so
// the optimiser cannot turn the loops back into calls to themselves (speed
// does not matter here).

/// # Safety
/// `src` valid for `n` reads, `dest` for `n` writes; they may overlap.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memmove(dest: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    let backwards = (dest as usize).wrapping_sub(src as usize) < n;
    for k in 0..n {
        let i = if backwards { n - 1 - k } else { k };
        // SAFETY: i < n, inside both ranges (caller's contract); when `dest`
        // overlaps the tail of `src` the copy runs backwards, so every byte
        // is read before it is overwritten.
        unsafe { dest.add(i).write_volatile(src.add(i).read_volatile()) };
    }
    dest
}

/// # Safety
/// As for [`memmove`] (and the ranges do not overlap).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memcpy(dest: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // SAFETY: a weaker contract than `memmove`'s.
    unsafe { memmove(dest, src, n) }
}

/// # Safety
/// `dest` valid for `n` writes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memset(dest: *mut u8, value: i32, n: usize) -> *mut u8 {
    for i in 0..n {
        // SAFETY: i < n, inside the range (caller's contract).
        unsafe { dest.add(i).write_volatile(value as u8) };
    }
    dest
}

/// # Safety
/// `a` and `b` valid for `n` reads.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    for i in 0..n {
        // SAFETY: i < n, inside both ranges (caller's contract).
        let (x, y) = unsafe { (a.add(i).read_volatile(), b.add(i).read_volatile()) };
        if x != y {
            return i32::from(x) - i32::from(y);
        }
    }
    0
}
