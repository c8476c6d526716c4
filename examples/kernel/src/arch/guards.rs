//! Hardware guards at the ring-3 boundary, where CPUID reports them
//! (QEMU's `-cpu max` has all three), on while the scheduler runs
//! processes ([`crate::proc::sched::run_until_done`]):
//!
//! - **SMEP** (CR4.20): a supervisor instruction fetch from a user page
//!   faults: the kernel can never be made to run code a process wrote.
//! - **SMAP** (CR4.21): a supervisor data access to a user page faults
//!   unless EFLAGS.AC is set, which only [`user_access`] (the
//!   [`crate::proc::usercopy`] path) does, with `stac`/`clac`.
//! - **UMIP** (CR4.11): `sgdt`, `sidt`, `sldt`, `smsw` and `str` are a #GP
//!   in ring 3 (no kernel address or CR0 bit leaks); the process is killed.
//!
//! Outside process runs CR4 is as before: several self-tests read user
//! mappings of their own address spaces through fault probes.

use core::sync::atomic::{AtomicBool, Ordering};

use crate::base::config::CPUS;
use crate::{arch::cpu, arch::gdt};

/// CR4.UMIP.
pub const CR4_UMIP: u32 = 1 << 11;
/// CR4.SMEP.
pub const CR4_SMEP: u32 = 1 << 20;
/// CR4.SMAP.
pub const CR4_SMAP: u32 = 1 << 21;

/// Whether SMAP is on on each CPU (then [`user_access`] sets AC).
static SMAP_ON: [AtomicBool; CPUS] = [const { AtomicBool::new(false) }; CPUS];

/// Which guards this CPU has: (SMEP, SMAP, UMIP), from CPUID leaf 7.
pub fn available() -> (bool, bool, bool) {
    if cpu::cpuid(0).eax < 7 {
        return (false, false, false);
    }
    let leaf7 = core::arch::x86::__cpuid_count(7, 0);
    (
        leaf7.ebx & (1 << 7) != 0,
        leaf7.ebx & (1 << 20) != 0,
        leaf7.ecx & (1 << 2) != 0,
    )
}

/// The CR4 bits of every guard this CPU has.
pub fn bits() -> u32 {
    let (smep, smap, umip) = available();
    (if smep { CR4_SMEP } else { 0 })
        | (if smap { CR4_SMAP } else { 0 })
        | (if umip { CR4_UMIP } else { 0 })
}

fn write_cr4(value: u32) {
    SMAP_ON[gdt::cpu_index() % CPUS].store(value & CR4_SMAP != 0, Ordering::SeqCst);
    // SAFETY: ring 0; only the guard bits differ from the current CR4, and
    // each is set only if CPUID reports it (never a reserved bit).
    unsafe { core::arch::asm!("mov cr4, {}", in(reg) value, options(nostack, preserves_flags)) };
}

/// Turns on `bits` (a subset of [`bits`]) on this CPU; returns the CR4 to
/// give [`restore`].
pub fn enable_bits(bits: u32) -> u32 {
    let old = cpu::cr4();
    write_cr4(old | (bits & self::bits()));
    old
}

/// Turns every guard this CPU has on; returns the CR4 to give
/// [`restore`].
pub fn enable() -> u32 {
    enable_bits(bits())
}

/// Puts CR4 back as [`enable`] found it.
pub fn restore(cr4: u32) {
    write_cr4(cr4);
}

/// Runs `f` with supervisor access to user pages allowed (`stac` ...
/// `clac`) if SMAP is on: the only way the kernel reaches user memory.
pub fn user_access<R>(f: impl FnOnce() -> R) -> R {
    let smap = SMAP_ON[gdt::cpu_index() % CPUS].load(Ordering::SeqCst);
    if smap {
        // SAFETY: ring 0 on a CPU with SMAP (CR4.SMAP is set only then):
        // sets EFLAGS.AC, nothing else.
        unsafe { core::arch::asm!("stac", options(nomem, nostack)) };
    }
    let result = f();
    if smap {
        // SAFETY: as above; clears EFLAGS.AC.
        unsafe { core::arch::asm!("clac", options(nomem, nostack)) };
    }
    result
}
