//! Turning 2-level paging on.
//!
//! The feature check is plain logic and is compiled (and tested) everywhere;
//! the instructions are only compiled for 32-bit x86.

use core::fmt;

use paging_core::{ErrorKind, PagingError};

/// CPU features 2-level paging can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Features {
    /// 4 MiB pages (CR4.PSE). Needed as soon as any PDE has PS set: without
    /// PSE the CPU reads such an entry as a table pointer.
    pub large_pages: bool,
    /// Global pages (CR4.PGE): entries with G set survive CR3 reloads.
    pub global_pages: bool,
}

impl Features {
    /// `Ok` if every feature requested in `self` is in `supported`, else the
    /// first one missing.
    pub const fn check(self, supported: Features) -> Result<(), EnableError> {
        if self.large_pages && !supported.large_pages {
            return Err(EnableError::LargePagesUnsupported);
        }
        if self.global_pages && !supported.global_pages {
            return Err(EnableError::GlobalPagesUnsupported);
        }
        Ok(())
    }
}

/// A requested paging feature the CPU does not have. Nothing was changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnableError {
    /// No PSE (CPUID.1:EDX bit 3).
    LargePagesUnsupported,
    /// No PGE (CPUID.1:EDX bit 13).
    GlobalPagesUnsupported,
}

impl fmt::Display for EnableError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::LargePagesUnsupported => "the CPU has no 4 MiB pages (PSE)",
            Self::GlobalPagesUnsupported => "the CPU has no global pages (PGE)",
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

    /// What this CPU supports, from CPUID leaf 1.
    pub fn supported_features() -> Features {
        let edx = cpu::basic_features();
        Features {
            large_pages: edx & cpu::CPUID_1_EDX_PSE != 0,
            global_pages: edx & cpu::CPUID_1_EDX_PGE != 0,
        }
    }

    /// Turn on 2-level paging with the page directory `cr3`: set CR4.PSE
    /// and CR4.PGE as `features` asks (clearing CR4.PAE), load CR3, then set
    /// CR0.PG and CR0.WP.
    ///
    /// Fails, changing nothing, if the CPU lacks a requested feature.
    ///
    /// # Safety
    /// Paging must be off (CR0.PG clear), and the directory in `cr3` must be
    /// a complete 2-level hierarchy that maps the code executing this call,
    /// its stack, and everything the kernel touches next, at the addresses
    /// they are used at (typically an identity mapping of the kernel plus its
    /// higher-half alias). If any PDE has PS set, `features.large_pages` must
    /// be true.
    pub unsafe fn enable_paging(cr3: Cr3, features: Features) -> Result<(), EnableError> {
        features.check(supported_features())?;
        let mut cr4 = cpu::read_cr4() & !(cpu::CR4_PAE | cpu::CR4_PSE | cpu::CR4_PGE);
        if features.large_pages {
            cr4 |= cpu::CR4_PSE;
        }
        if features.global_pages {
            cr4 |= cpu::CR4_PGE;
        }
        // SAFETY: paging is off (caller's contract), so CR4's paging bits and
        // CR3 only take effect at the CR0 write below, whose preconditions
        // (a complete hierarchy mapping this code) the caller promised.
        unsafe {
            cpu::write_cr4(cr4);
            cpu::write_cr3(cr3.bits());
            cpu::write_cr0(cpu::read_cr0() | cpu::CR0_PG | cpu::CR0_WP);
        }
        Ok(())
    }
}

#[cfg(target_arch = "x86")]
pub use native::{enable_paging, supported_features};

#[cfg(target_arch = "x86")]
impl paging_core::cpu::CpuPaging for crate::TwoLevel {
    fn supported() -> Result<paging_core::cpu::PagingFeatures, paging_core::AnyError> {
        let f = supported_features();
        Ok(paging_core::cpu::PagingFeatures {
            large_pages: f.large_pages,
            global_pages: f.global_pages,
            no_execute: false,
        })
    }

    unsafe fn enable(
        root: paging_core::PhysAddr,
        features: paging_core::cpu::PagingFeatures,
    ) -> Result<(), paging_core::AnyError> {
        if features.no_execute {
            return Err(paging_core::AnyError::other(
                ErrorKind::Unsupported,
                "2-level paging has no execute-disable bit",
            ));
        }
        let cr3 = crate::Cr3::new(root, crate::Cr3Flags::empty())?;
        let features = Features {
            large_pages: features.large_pages,
            global_pages: features.global_pages,
        };
        // SAFETY: the caller keeps `CpuPaging::enable`'s contract, which is
        // `enable_paging`'s.
        Ok(unsafe { enable_paging(cr3, features) }?)
    }

    unsafe fn load_root(root: paging_core::PhysAddr) -> Result<(), paging_core::AnyError> {
        let cr3 = crate::Cr3::new(root, crate::Cr3Flags::empty())?;
        // SAFETY: the caller promised `root` maps the running code as the
        // current hierarchy does.
        unsafe { paging_core::cpu::write_cr3(cr3.bits()) };
        Ok(())
    }

    fn current_root() -> paging_core::PhysAddr {
        paging_core::PhysAddr::new_truncate(u64::from(paging_core::cpu::read_cr3() & !0xFFF))
    }
}

impl From<EnableError> for paging_core::AnyError {
    /// Keeps the kind and names the variant (paging-core's catch-all cannot
    /// hold this crate's types).
    fn from(e: EnableError) -> Self {
        let what = match e {
            EnableError::LargePagesUnsupported => "2-level paging: large pages unsupported",
            EnableError::GlobalPagesUnsupported => "2-level paging: global pages unsupported",
        };
        Self::other(e.kind(), what)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_features_are_reported_first_to_last() {
        let all = Features {
            large_pages: true,
            global_pages: true,
        };
        let none = Features::default();
        assert_eq!(all.check(all), Ok(()));
        assert_eq!(none.check(none), Ok(()));
        assert_eq!(all.check(none), Err(EnableError::LargePagesUnsupported));
        let only_pse = Features {
            large_pages: true,
            global_pages: false,
        };
        assert_eq!(
            all.check(only_pse),
            Err(EnableError::GlobalPagesUnsupported)
        );
        assert_eq!(only_pse.check(only_pse), Ok(()));
        assert_eq!(
            EnableError::GlobalPagesUnsupported.kind(),
            ErrorKind::Unsupported
        );
    }
}
