//! Privileged CPU instructions other than port I/O: control registers,
//! `cpuid` and halting.

use core::arch::asm;

/// CR0.WP: supervisor writes honour read-only pages.
pub const CR0_WP: u32 = 1 << 16;
/// CR0.PG: paging enabled.
pub const CR0_PG: u32 = 1 << 31;
/// CR4.PSE: 4 MiB pages in 2-level paging.
pub const CR4_PSE: u32 = 1 << 4;

/// Reads CR0.
pub fn cr0() -> u32 {
    let value: u32;
    // SAFETY: the kernel runs in ring 0; reading CR0 has no side effects.
    unsafe { asm!("mov {}, cr0", out(reg) value, options(nomem, nostack, preserves_flags)) };
    value
}

/// Reads CR2, the linear address of the last page fault.
pub fn cr2() -> u32 {
    let value: u32;
    // SAFETY: ring 0; reading CR2 has no side effects.
    unsafe { asm!("mov {}, cr2", out(reg) value, options(nomem, nostack, preserves_flags)) };
    value
}

/// Writes CR2 (an NMI handler puts back the value a page fault it
/// interrupted has not read yet).
///
/// # Safety
/// Nothing but fault handlers reads CR2; the caller must write the value a
/// pending handler expects.
pub unsafe fn write_cr2(value: u32) {
    // SAFETY: ring 0; CR2 only reports fault addresses, so writing it
    // changes no translation (the caller's contract covers its readers).
    unsafe { asm!("mov cr2, {}", in(reg) value, options(nomem, nostack, preserves_flags)) };
}

/// Reads CR3, the physical address of the current top-level page table.
pub fn cr3() -> u32 {
    let value: u32;
    // SAFETY: ring 0; reading CR3 has no side effects.
    unsafe { asm!("mov {}, cr3", out(reg) value, options(nomem, nostack, preserves_flags)) };
    value
}

/// Reads CR4.
pub fn cr4() -> u32 {
    let value: u32;
    // SAFETY: ring 0; reading CR4 has no side effects.
    unsafe { asm!("mov {}, cr4", out(reg) value, options(nomem, nostack, preserves_flags)) };
    value
}

/// Paging features reported by `cpuid`.
#[derive(Clone, Copy, Debug)]
pub struct PagingFeatures {
    /// 4 MiB pages (CPUID.1:EDX.PSE).
    pub pse: bool,
    /// Physical Address Extension (CPUID.1:EDX.PAE).
    pub pae: bool,
    /// Global pages (CPUID.1:EDX.PGE).
    pub pge: bool,
    /// 36-bit physical addresses in 4 MiB PSE pages (CPUID.1:EDX.PSE36).
    pub pse36: bool,
    /// No-execute bit in PAE entries (CPUID.80000001h:EDX.NX).
    pub nx: bool,
    /// Physical address width in bits (CPUID.80000008h:EAX[7:0]), if reported.
    pub phys_addr_bits: Option<u8>,
}

impl PagingFeatures {
    /// Queries the CPU. Every i586 and later has `cpuid`.
    pub fn detect() -> Self {
        let leaf1 = cpuid(1);
        let max_ext = cpuid(0x8000_0000).eax;
        let ext1 = if max_ext >= 0x8000_0001 {
            cpuid(0x8000_0001).edx
        } else {
            0
        };
        let phys_addr_bits = (max_ext >= 0x8000_0008).then(|| cpuid(0x8000_0008).eax as u8);
        let bit = |word: u32, n: u32| word & (1 << n) != 0;
        Self {
            pse: bit(leaf1.edx, 3),
            pae: bit(leaf1.edx, 6),
            pge: bit(leaf1.edx, 13),
            pse36: bit(leaf1.edx, 17),
            nx: bit(ext1, 20),
            phys_addr_bits,
        }
    }
}

/// Runs `cpuid` for `leaf` (sub-leaf 0).
pub fn cpuid(leaf: u32) -> core::arch::x86::CpuidResult {
    core::arch::x86::__cpuid(leaf)
}

/// EFLAGS.IF.
pub const EFLAGS_IF: u32 = 1 << 9;

/// Disables maskable interrupts and returns the EFLAGS they had.
#[inline]
pub fn save_and_disable_interrupts() -> u32 {
    let flags: u32;
    // SAFETY: ring 0; reads EFLAGS and clears IF, nothing else.
    // Not `nomem`: a compiler barrier, so no memory access moves out of
    // the critical section.
    unsafe { asm!("pushfd", "pop {}", "cli", out(reg) flags) };
    flags
}

/// Re-enables maskable interrupts if `flags` (from
/// [`save_and_disable_interrupts`]) had them on.
#[inline]
pub fn restore_interrupts(flags: u32) {
    if flags & EFLAGS_IF != 0 {
        // SAFETY: ring 0; puts IF back as it was.
        unsafe { asm!("sti", options(nostack)) };
    }
}

/// Runs `f` with maskable interrupts off, then puts IF back.
pub fn without_interrupts<R>(f: impl FnOnce() -> R) -> R {
    let flags = save_and_disable_interrupts();
    let result = f();
    restore_interrupts(flags);
    result
}

/// Disables interrupts and halts forever.
pub fn halt_forever() -> ! {
    loop {
        // SAFETY: ring 0; `cli; hlt` only stops this CPU.
        unsafe { asm!("cli", "hlt", options(nomem, nostack)) };
    }
}

/// Whether the CPU has a time-stamp counter (CPUID.1:EDX bit 4; the 486
/// has none).
pub fn has_tsc() -> bool {
    cpuid(1).edx & (1 << 4) != 0
}

/// The time-stamp counter (cycles since reset, on the CPUs QEMU models).
pub fn rdtsc() -> u64 {
    // SAFETY: `rdtsc` only reads the time-stamp counter; every i586 has it.
    unsafe { core::arch::x86::_rdtsc() }
}
