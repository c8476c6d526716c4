//! The x87/MMX state of each process: saved and restored eagerly at every
//! switch, clean (`fninit`'s, with zeroed registers) for every new process.
//!
//! - **CR0.** [`init_cpu`] sets NE (x87 errors raise #MF, which kills the
//!   process that caused them, instead of the legacy FERR# line) and MP,
//!   and clears EM and TS (no lazy switching: the cost is paid at every
//!   switch, measured below and in the FPU self-test).
//! - **Eager switch.** The scheduler restores a process's 108-byte
//!   `fnsave` image with `frstor` just before switching to it and saves it
//!   with `fnsave` (which also reinitialises the unit) as soon as it is back
//!   on its own stack. Between the two only kernel code runs, which never
//!   touches the FPU, so the registers the process left are the ones saved.
//! - **SSE.** CR4.OSFXSR stays clear, so every SSE instruction raises #UD
//!   in ring 3 (the process is killed): the XMM registers cannot carry data
//!   from one process to another, and `fnsave` covers everything else (the
//!   MMX registers are the x87 ones).
//! - **The kernel and the FPU.** Only the three functions in the assembly
//!   below hold x87 instructions (`fninit`, `fnsave`, `frstor`); the build
//!   check `check_no_fpu` (xtask, and `scripts/check-no-fpu.sh`) allows
//!   exactly those and rejects any other.

use crate::base::config::{CPUS, MAX_PROCESSES};
use crate::{arch::cpu, arch::gdt};

/// CR0.MP: `wait`/`fwait` honour TS.
const CR0_MP: u32 = 1 << 1;
/// CR0.EM: x87 instructions raise #NM (emulation).
const CR0_EM: u32 = 1 << 2;
/// CR0.TS: the next x87 instruction raises #NM (lazy switching).
const CR0_TS: u32 = 1 << 3;
/// CR0.NE: native x87 error reporting (#MF).
pub const CR0_NE: u32 = 1 << 5;

/// An `fnsave` image (32-bit protected-mode format: the 28-byte
/// environment, then ST0..ST7, 10 bytes each).
#[derive(Clone, Copy)]
#[repr(C, align(16))]
pub struct FpuImage([u8; 108]);

/// `fninit`'s state with every register zero: control word 0x037F (every
/// exception masked, 64-bit precision, round to nearest), status 0, tag
/// word 0xFFFF (all empty), no last instruction or operand.
const CLEAN: FpuImage = {
    let mut bytes = [0u8; 108];
    bytes[0] = 0x7F;
    bytes[1] = 0x03;
    bytes[8] = 0xFF;
    bytes[9] = 0xFF;
    FpuImage(bytes)
};

/// Each process slot's saved state.
static mut IMAGES: [FpuImage; MAX_PROCESSES] = [CLEAN; MAX_PROCESSES];

/// TSC cycles spent in `frstor` + `fnsave` on each CPU, and switches.
static COST: spin::Mutex<[(u64, u64); CPUS]> = spin::Mutex::new([(0, 0); CPUS]);

unsafe extern "C" {
    fn fpu_init();
    fn fpu_save(image: *mut FpuImage);
    fn fpu_restore(image: *const FpuImage);
}

core::arch::global_asm!(
    r#"
    .section .text, "ax"
    .global fpu_init
fpu_init:
    fninit
    ret
    .global fpu_save
fpu_save:
    mov eax, [esp + 4]
    fnsave [eax]
    ret
    .global fpu_restore
fpu_restore:
    mov eax, [esp + 4]
    frstor [eax]
    ret
    "#
);

/// Sets CR0 for the FPU (NE, MP on; EM, TS off) and initialises it, on
/// this CPU. Idempotent; every CPU calls it before running a process.
pub fn init_cpu() {
    let cr0 = (cpu::cr0() | CR0_NE | CR0_MP) & !(CR0_EM | CR0_TS);
    // SAFETY: ring 0; only FPU-related bits change (paging, protection and
    // WP stay as they are). `fninit` resets the x87 unit, which no kernel
    // code uses.
    unsafe {
        core::arch::asm!("mov cr0, {}", in(reg) cr0, options(nostack, preserves_flags));
        fpu_init();
    }
}

/// Gives slot `slot` a clean state (a new process).
pub fn reset(slot: usize) {
    // SAFETY: the caller installs a new process in a free slot under the
    // process-table lock: no CPU runs that slot, nothing else touches its
    // image.
    unsafe { (&raw mut IMAGES[slot % MAX_PROCESSES]).write(CLEAN) };
}

/// Loads slot `slot`'s state into this CPU's FPU (interrupts off, just
/// before switching to it).
pub fn switch_in(slot: usize) {
    let start = cpu::rdtsc();
    // SAFETY: this CPU is about to run `slot`, so no other CPU touches its
    // image; the image is a valid `fnsave` one (CLEAN or saved by
    // `switch_out`); the unit holds no pending exception (it was
    // initialised by `fninit` or the last `fnsave`).
    unsafe { fpu_restore(&raw const IMAGES[slot % MAX_PROCESSES]) };
    account(cpu::rdtsc().wrapping_sub(start), false);
}

/// Saves slot `slot`'s state from this CPU's FPU and reinitialises it
/// (interrupts off, right after the switch back to the scheduler).
pub fn switch_out(slot: usize) {
    let start = cpu::rdtsc();
    // SAFETY: this CPU ran `slot` until now; the image is 108 writable
    // bytes of its own.
    unsafe { fpu_save(&raw mut IMAGES[slot % MAX_PROCESSES]) };
    account(cpu::rdtsc().wrapping_sub(start), true);
}

fn account(cycles: u64, switch: bool) {
    let mut cost = COST.lock();
    let entry = &mut cost[gdt::cpu_index() % CPUS];
    entry.0 = entry.0.wrapping_add(cycles);
    if switch {
        entry.1 += 1;
    }
}

/// TSC cycles spent saving and restoring, and the switches, summed over
/// every CPU since boot.
pub fn switch_cost() -> (u64, u64) {
    cpu::without_interrupts(|| {
        COST.lock()
            .iter()
            .fold((0, 0), |(c, n), (cycles, switches)| {
                (c + cycles, n + switches)
            })
    })
}
