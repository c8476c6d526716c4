//! The paging mode of this build: the one place that names a backend crate.
//!
//! Everything else in the kernel is generic over [`PagingMode`] through the
//! [`Mode`] alias, exactly as `fixmap` and `kmap` are: switching the cargo
//! feature switches the backend.

use core::sync::atomic::{AtomicU8, Ordering};

use paging_core::cpu;
use paging_core::{MapFlags, PhysAddr};

#[cfg(feature = "mode-2level")]
pub use paging_x86_2level::TwoLevel as Mode;

#[cfg(all(feature = "mode-pae", not(feature = "mode-2level")))]
pub use paging_x86_pae::Pae as Mode;

/// The paging mode this kernel was built for, for people.
#[cfg(feature = "mode-2level")]
pub const DESCRIPTION: &str = "2-level (32-bit entries, 4 GiB physical, 4 MiB PSE pages)";
/// The paging mode this kernel was built for, for people.
#[cfg(not(feature = "mode-2level"))]
pub const DESCRIPTION: &str =
    "PAE (64-bit entries, NX where the CPU has it, 36-bit physical, 2 MiB pages)";

/// The mode's short name, as `cargo xtask` spells it.
#[cfg(feature = "mode-2level")]
pub const SHORT_NAME: &str = "2level";
/// The mode's short name, as `cargo xtask` spells it.
#[cfg(not(feature = "mode-2level"))]
pub const SHORT_NAME: &str = "pae";

/// Turns paging on with the boot tables at physical `root`, using the
/// backend crate's enable function. Called with paging off, at its physical
/// address (see [`crate::boot::entry`]): no statics, no `.rodata`.
///
/// 2-level: `paging_x86_2level::enable_paging` with PSE (the boot tables
/// use 4 MiB pages).
#[cfg(feature = "mode-2level")]
#[inline(always)]
pub fn enable_boot_paging(root: u32) -> u32 {
    use paging_x86_2level::{Cr3, Cr3Flags, Features, enable_paging};
    let Ok(cr3) = Cr3::new(PhysAddr::new_truncate(root as u64), Cr3Flags::empty()) else {
        return 1;
    };
    let features = Features {
        large_pages: true,
        global_pages: false,
    };
    // SAFETY: called from `_start` with paging off; the boot tables at
    // `root` identity-map the code running now and its stack (physical
    // 0..4 MiB) and map the whole boot window at PAGE_OFFSET; their PDEs
    // with PS set are covered by `large_pages`.
    match unsafe { enable_paging(cr3, features) } {
        Ok(()) => 0,
        Err(_) => 2,
    }
}

/// Turns paging on with the boot tables at physical `root`, using the
/// backend crate's enable function. Called with paging off, at its physical
/// address (see [`crate::boot::entry`]): no statics, no `.rodata`.
///
/// PAE: `paging_x86_pae::enable_pae_paging`, with NX (EFER.NXE) when the CPU
/// has it, so the final tables may mark data no-execute.
#[cfg(not(feature = "mode-2level"))]
#[inline(always)]
pub fn enable_boot_paging(root: u32) -> u32 {
    use paging_x86_pae::{Cr3, Features, enable_pae_paging, supported_features};
    let Ok(cr3) = Cr3::new(PhysAddr::new_truncate(root as u64)) else {
        return 1;
    };
    let Ok(supported) = supported_features() else {
        return 3;
    };
    let features = Features {
        global_pages: false,
        no_execute: supported.no_execute,
    };
    // SAFETY: called from `_start` with paging off; the PDPT at `root` has
    // only P set in its entries, and its tables identity-map the code
    // running now and its stack and map the boot window at PAGE_OFFSET. No
    // boot entry has XD set.
    match unsafe { enable_pae_paging(cr3, features) } {
        Ok(()) => 0,
        Err(_) => 2,
    }
}

/// Loads the final tables: CR3 := `root`. In PAE mode the CPU latches the
/// four PDPTEs at this load (and EFER.NXE, set at boot, stays on).
///
/// # Safety
/// `root` must be the root of a complete hierarchy of this mode that maps
/// the running code, its stack and everything the kernel uses next.
pub unsafe fn load_root(root: PhysAddr) -> Result<(), &'static str> {
    #[cfg(feature = "mode-2level")]
    let cr3 = paging_x86_2level::Cr3::new(root, paging_x86_2level::Cr3Flags::empty())
        .map_err(|_| "root is not a valid page directory address")?
        .bits();
    #[cfg(not(feature = "mode-2level"))]
    let cr3 = paging_x86_pae::Cr3::new(root)
        .map_err(|_| "root is not a valid PDPT address")?
        .bits();
    // SAFETY: the caller promised a complete hierarchy for this mode.
    unsafe { paging_core::cpu::write_cr3(cr3) };
    Ok(())
}

/// [`nx_enabled`], once asked: 0 = not yet, 1 = off, 2 = on. EFER.NXE is
/// set once at boot, before Rust runs, and never changes, so the answer is
/// cached (every kmap of the kernel's pools asks, through the PTE flags).
static NX_STATE: AtomicU8 = AtomicU8::new(0);

/// The root of the directory the CPU runs on now (CR3 without its cache
/// bits: a page directory is page-aligned, a PDPT 32-byte aligned).
pub fn current_root() -> PhysAddr {
    let mask: u32 = if cfg!(feature = "mode-2level") {
        !0xFFF
    } else {
        !0x1F
    };
    PhysAddr::new_truncate(u64::from(cpu::read_cr3() & mask))
}

/// Whether no-execute is on (PAE with a CPU that has NX; set at boot).
pub fn nx_enabled() -> bool {
    match NX_STATE.load(Ordering::Relaxed) {
        0 => {
            let on = read_nx_enabled();
            NX_STATE.store(if on { 2 } else { 1 }, Ordering::Relaxed);
            on
        }
        state => state == 2,
    }
}

/// Whether EFER.NXE is on on the CPU running this (not cached: each CPU
/// sets its own EFER, the APs in the trampoline).
pub fn nx_enabled_on_this_cpu() -> bool {
    read_nx_enabled()
}

fn read_nx_enabled() -> bool {
    #[cfg(feature = "mode-2level")]
    {
        false
    }
    #[cfg(not(feature = "mode-2level"))]
    {
        // SAFETY: IA32_EFER exists on every CPU that reports NX; reading it
        // has no side effect.
        cpu::has_nx() && unsafe { cpu::rdmsr(cpu::IA32_EFER) } & cpu::EFER_NXE != 0
    }
}

/// The paging features of the CPU running this, as every mapper of this
/// kernel is bound to them: NX as EFER.NXE says, PSE as CR4.PSE says, PGE
/// and the PAT as CPUID says (G is harmless without CR4.PGE), MAXPHYADDR.
pub fn cpu_features() -> paging_core::CpuFeatures {
    paging_core::CpuFeatures::from_cpuid::<Mode>(cpu::PagingFeatures {
        large_pages: cpu::read_cr4() & cpu::CR4_PSE != 0,
        global_pages: has_global_pages(),
        no_execute: nx_enabled(),
    })
}

/// `NO_EXECUTE` if NX is on, else nothing: what data mappings get.
pub fn no_execute() -> MapFlags {
    if nx_enabled() {
        MapFlags::NO_EXECUTE
    } else {
        MapFlags::empty()
    }
}

/// Whether the CPU has global pages (CPUID.1:EDX.PGE).
pub fn has_global_pages() -> bool {
    crate::arch::cpu::features().paging.pge
}

/// Whether CR4.PGE is on: entries with G set survive CR3 reloads.
pub fn global_pages_enabled() -> bool {
    cpu::read_cr4() & cpu::CR4_PGE != 0
}

/// `GLOBAL` if the CPU has global pages, else nothing: what the kernel's
/// own mappings (direct map, vmalloc) get. They are the same in every
/// address space, so a CR3 switch need not drop them from the TLB.
pub fn global() -> MapFlags {
    if has_global_pages() {
        MapFlags::GLOBAL
    } else {
        MapFlags::empty()
    }
}

/// Turns CR4.PGE on if the CPU has it; returns whether it is on.
///
/// # Safety
/// Every mapping with G set must be the same in every address space the
/// CPU will load (the kernel half), and the kernel must flush with
/// `NativeTlb::flush_everything` or `invlpg`, never only a CR3 reload,
/// after changing one.
pub unsafe fn enable_global_pages() -> bool {
    if !has_global_pages() {
        return false;
    }
    // SAFETY: the CPU has PGE (checked above); the caller vouches for the
    // G entries. Setting PGE flushes nothing and changes no translation.
    unsafe { cpu::write_cr4(cpu::read_cr4() | cpu::CR4_PGE) };
    true
}
