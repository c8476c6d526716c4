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

/// What the kernel knows of the CPU it runs on: CPUID's feature bits and
/// EFER.NXE as the boot code left it. Read once ([`features`]); this is the
/// one place where the kernel decides which optional features it uses:
/// NX (no-execute data), PGE (global kernel pages), the PAT
/// (write-combining), the local APIC (SMP, IPIs, the APIC timer; without
/// one: one CPU, the PIT as the preemption timer) and the TSC (figures;
/// without one, the PIT times them).
#[derive(Clone, Copy, Debug)]
pub struct CpuFeatures {
    /// The paging features (PSE, PAE, PGE, PSE-36, NX, MAXPHYADDR).
    pub paging: PagingFeatures,
    /// EFER.NXE is on: bit 63 of a PAE entry is XD (else it is reserved,
    /// and the kernel never sets it).
    pub nx_enabled: bool,
    /// The Page Attribute Table (CPUID.1:EDX.PAT).
    pub pat: bool,
    /// A local APIC (CPUID.1:EDX.APIC).
    pub apic: bool,
    /// The time-stamp counter (CPUID.1:EDX.TSC).
    pub tsc: bool,
    /// The vendor string (CPUID.0), e.g. `GenuineIntel`.
    pub vendor: [u8; 12],
    /// Family and model (CPUID.1:EAX, extended fields folded in).
    pub family: u32,
    /// See [`family`](Self::family).
    pub model: u32,
}

impl CpuFeatures {
    /// Queries the CPU (and EFER.NXE, through [`crate::arch::mode::nx_enabled`]).
    fn detect() -> Self {
        let leaf0 = cpuid(0);
        let leaf1 = cpuid(1);
        let mut vendor = [0; 12];
        for (chunk, word) in vendor.chunks_mut(4).zip([leaf0.ebx, leaf0.edx, leaf0.ecx]) {
            chunk.copy_from_slice(&word.to_le_bytes());
        }
        let base_family = (leaf1.eax >> 8) & 0xF;
        let family = if base_family == 0xF {
            base_family + ((leaf1.eax >> 20) & 0xFF)
        } else {
            base_family
        };
        let mut model = (leaf1.eax >> 4) & 0xF;
        if base_family == 0x6 || base_family == 0xF {
            model |= ((leaf1.eax >> 16) & 0xF) << 4;
        }
        let bit = |n: u32| leaf1.edx & (1 << n) != 0;
        Self {
            paging: PagingFeatures::detect(),
            nx_enabled: crate::arch::mode::nx_enabled(),
            pat: bit(16),
            apic: bit(9),
            tsc: bit(4),
            vendor,
            family,
            model,
        }
    }

    /// MAXPHYADDR: CPUID.80000008h:EAX[7:0], or what the SDM says when the
    /// leaf is missing (36 with PAE or PSE-36, else 32).
    pub fn max_phys_addr(&self) -> u8 {
        let p = &self.paging;
        p.phys_addr_bits
            .unwrap_or(if p.pae || p.pse36 { 36 } else { 32 })
    }
}

impl core::fmt::Display for CpuFeatures {
    /// `have PSE PAE ...; lack NX ...; MAXPHYADDR 36; GenuineIntel family 6
    /// model 7`: the boot line `cpu features: ...`, which `cargo xtask cpus`
    /// reads.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let p = &self.paging;
        let all = [
            ("PSE", p.pse),
            ("PAE", p.pae),
            ("PGE", p.pge),
            ("PAT", self.pat),
            ("PSE-36", p.pse36),
            ("NX", p.nx),
            ("APIC", self.apic),
            ("TSC", self.tsc),
        ];
        for (label, wanted) in [("have", true), ("lack", false)] {
            f.write_str(label)?;
            let mut any = false;
            for (name, _) in all.iter().filter(|(_, has)| *has == wanted) {
                write!(f, " {name}")?;
                any = true;
            }
            if !any {
                f.write_str(" nothing")?;
            }
            f.write_str("; ")?;
        }
        write!(
            f,
            "NXE {}; MAXPHYADDR {}{}; {} family {} model {}",
            if self.nx_enabled { "on" } else { "off" },
            self.max_phys_addr(),
            if p.phys_addr_bits.is_none() {
                " (no CPUID leaf 0x80000008: the SDM's default)"
            } else {
                ""
            },
            core::str::from_utf8(&self.vendor).unwrap_or("?"),
            self.family,
            self.model
        )
    }
}

/// The running CPU's features, read on first use (the boot CPU; the APs
/// of a PC are the same model).
pub fn features() -> &'static CpuFeatures {
    static FEATURES: spin::Once<CpuFeatures> = spin::Once::new();
    FEATURES.call_once(CpuFeatures::detect)
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
    features().tsc
}

/// The time-stamp counter (cycles since reset, on the CPUs QEMU models).
/// Only on a CPU with a TSC ([`CpuFeatures::tsc`]): elsewhere `rdtsc` is
/// an invalid opcode. Figures use [`crate::arch::pit::Stopwatch`], which falls
/// back to the PIT.
pub fn rdtsc() -> u64 {
    // SAFETY: `rdtsc` only reads the time-stamp counter; the callers
    // checked that the CPU has one.
    unsafe { core::arch::x86::_rdtsc() }
}
