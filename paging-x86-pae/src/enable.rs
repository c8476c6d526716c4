//! Turning PAE paging on.
//!
//! The feature check is plain logic and is compiled (and tested) everywhere;
//! the instructions are only compiled for 32-bit x86.

use core::fmt;

use paging_core::{ErrorKind, PagingError};

/// Optional CPU features PAE paging can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Features {
    /// Global pages (CR4.PGE): entries with G set survive CR3 reloads.
    pub global_pages: bool,
    /// Execute-disable (EFER.NXE). Needed as soon as any entry has XD
    /// (bit 63) set: without NXE that bit is reserved and the walk faults.
    pub no_execute: bool,
}

impl Features {
    /// `Ok` if every feature requested in `self` is in `supported`, else the
    /// first one missing.
    pub const fn check(self, supported: Features) -> Result<(), EnableError> {
        if self.global_pages && !supported.global_pages {
            return Err(EnableError::GlobalPagesUnsupported);
        }
        if self.no_execute && !supported.no_execute {
            return Err(EnableError::NoExecuteUnsupported);
        }
        Ok(())
    }
}

/// A paging feature the CPU does not have. Nothing was changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnableError {
    /// No PAE (CPUID.1:EDX bit 6).
    PaeUnsupported,
    /// No PGE (CPUID.1:EDX bit 13).
    GlobalPagesUnsupported,
    /// No XD (CPUID.80000001H:EDX bit 20).
    NoExecuteUnsupported,
}

impl fmt::Display for EnableError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::PaeUnsupported => "the CPU has no PAE paging",
            Self::GlobalPagesUnsupported => "the CPU has no global pages (PGE)",
            Self::NoExecuteUnsupported => "the CPU has no execute-disable bit (NX)",
        })
    }
}

impl core::error::Error for EnableError {}

impl PagingError for EnableError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::Unsupported
    }
}

#[cfg(target_arch = "x86")]
mod native {
    use paging_core::cpu;

    use super::{EnableError, Features};
    use crate::Cr3;

    /// The optional features this CPU supports, or
    /// [`EnableError::PaeUnsupported`] if it cannot do PAE at all.
    pub fn supported_features() -> Result<Features, EnableError> {
        let edx = cpu::basic_features();
        if edx & cpu::CPUID_1_EDX_PAE == 0 {
            return Err(EnableError::PaeUnsupported);
        }
        Ok(Features {
            global_pages: edx & cpu::CPUID_1_EDX_PGE != 0,
            no_execute: cpu::has_nx(),
        })
    }

    /// Turn on PAE paging with the PDPT in `cr3`: set EFER.NXE if
    /// `features.no_execute`, set CR4.PAE (and CR4.PGE if asked), load CR3
    /// (the CPU latches the four PDPTEs when paging starts), then set CR0.PG
    /// and CR0.WP.
    ///
    /// Fails, changing nothing, if the CPU lacks PAE or a requested feature.
    ///
    /// # Safety
    /// Paging must be off (CR0.PG clear). The PDPT in `cr3` must be a
    /// complete PAE hierarchy that maps the code executing this call, its
    /// stack and everything the kernel touches next, at the addresses they
    /// are used at; its present PDPTEs must have no reserved bit set (else
    /// #GP). If any entry has XD set, `features.no_execute` must be true.
    pub unsafe fn enable_pae_paging(cr3: Cr3, features: Features) -> Result<(), EnableError> {
        features.check(supported_features()?)?;
        if features.no_execute {
            // SAFETY: CPUID reported NX, so IA32_EFER exists and NXE may be
            // set; with paging off it changes no translation yet.
            unsafe { cpu::wrmsr(cpu::IA32_EFER, cpu::rdmsr(cpu::IA32_EFER) | cpu::EFER_NXE) };
        }
        let mut cr4 = (cpu::read_cr4() | cpu::CR4_PAE) & !cpu::CR4_PGE;
        if features.global_pages {
            cr4 |= cpu::CR4_PGE;
        }
        // SAFETY: paging is off (caller's contract), so CR4.PAE and CR3 take
        // effect at the CR0 write, whose preconditions (a complete PAE
        // hierarchy mapping this code, valid PDPTEs) the caller promised.
        unsafe {
            cpu::write_cr4(cr4);
            cpu::write_cr3(cr3.bits());
            cpu::write_cr0(cpu::read_cr0() | cpu::CR0_PG | cpu::CR0_WP);
        }
        Ok(())
    }
}

#[cfg(target_arch = "x86")]
pub use native::{enable_pae_paging, supported_features};

#[cfg(target_arch = "x86")]
impl<const B: u32> paging_core::cpu::CpuPaging for crate::Pae<B> {
    fn supported() -> Result<paging_core::cpu::PagingFeatures, paging_core::AnyError> {
        let f = supported_features()?;
        Ok(paging_core::cpu::PagingFeatures {
            large_pages: true,
            global_pages: f.global_pages,
            no_execute: f.no_execute,
        })
    }

    unsafe fn enable(
        root: paging_core::PhysAddr,
        features: paging_core::cpu::PagingFeatures,
    ) -> Result<(), paging_core::AnyError> {
        let cr3 = crate::Cr3::new(root)?;
        let features = Features {
            global_pages: features.global_pages,
            no_execute: features.no_execute,
        };
        // SAFETY: the caller keeps `CpuPaging::enable`'s contract, which is
        // `enable_pae_paging`'s (PAE's 2 MiB pages need no extra bit).
        Ok(unsafe { enable_pae_paging(cr3, features) }?)
    }

    unsafe fn load_root(root: paging_core::PhysAddr) -> Result<(), paging_core::AnyError> {
        let cr3 = crate::Cr3::new(root)?;
        // SAFETY: the caller promised `root` maps the running code as the
        // current hierarchy does and its PDPTEs have no reserved bit.
        unsafe { paging_core::cpu::write_cr3(cr3.bits()) };
        Ok(())
    }

    fn current_root() -> paging_core::PhysAddr {
        // A PDPT is 32-byte aligned: CR3 bits 31:5 (PWT/PCD are ignored).
        paging_core::PhysAddr::new_truncate(u64::from(paging_core::cpu::read_cr3() & !0x1F))
    }
}

impl From<EnableError> for paging_core::AnyError {
    /// Keeps the kind and names the variant (paging-core's catch-all cannot
    /// hold this crate's types).
    fn from(e: EnableError) -> Self {
        let what = match e {
            EnableError::PaeUnsupported => "PAE paging: pae unsupported",
            EnableError::GlobalPagesUnsupported => "PAE paging: global pages unsupported",
            EnableError::NoExecuteUnsupported => "PAE paging: no execute unsupported",
        };
        Self::other(e.kind(), what)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enable_errors_convert_into_the_catch_all_error() {
        let any = paging_core::AnyError::from(EnableError::NoExecuteUnsupported);
        assert_eq!(any.kind(), ErrorKind::Unsupported);
        extern crate std;
        assert_eq!(std::format!("{any}"), "PAE paging: no execute unsupported");
    }

    #[test]
    fn missing_features_are_reported() {
        let all = Features {
            global_pages: true,
            no_execute: true,
        };
        let none = Features::default();
        assert_eq!(all.check(all), Ok(()));
        assert_eq!(none.check(none), Ok(()));
        assert_eq!(all.check(none), Err(EnableError::GlobalPagesUnsupported));
        let only_pge = Features {
            global_pages: true,
            no_execute: false,
        };
        assert_eq!(all.check(only_pge), Err(EnableError::NoExecuteUnsupported));
        assert_eq!(only_pge.check(only_pge), Ok(()));
        assert_eq!(EnableError::PaeUnsupported.kind(), ErrorKind::Unsupported);
    }
}
