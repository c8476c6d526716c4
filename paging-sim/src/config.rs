//! The simulated CPU's configuration: paging mode and the control-register
//! and CPUID bits that change how a walk behaves.

use super::memtype::PAT_POWER_ON;
use paging_core::addr::PageSize;

/// Which paging format the simulated CPU uses (CR4.PAE).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SimPaging {
    /// 32-bit paging: 4-byte entries, page directory + page tables.
    TwoLevel,
    /// PAE paging: 8-byte entries, PDPT (latched) + page directories + page
    /// tables.
    Pae,
}

/// The control-register and CPUID state that changes how walks behave.
///
/// Fields that do not apply to a mode are normalised by [`Mmu::new`](super::Mmu::new): in
/// 2-level mode `nxe` is off and `max_phys_bits` is 32 (no PSE-36); under PAE
/// `pse` is irrelevant (2 MiB pages need no CR4.PSE) and `max_phys_bits` is
/// clamped to 32..=52.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SimConfig {
    /// CR4.PAE.
    pub paging: SimPaging,
    /// CR4.PSE: 4 MiB pages in 2-level mode.
    pub pse: bool,
    /// CR4.PGE: global translations survive CR3 loads.
    pub pge: bool,
    /// CR0.WP: supervisor writes honour R/W.
    pub wp: bool,
    /// EFER.NXE: bit 63 is XD rather than reserved (PAE only).
    pub nxe: bool,
    /// MAXPHYADDR (PAE only).
    pub max_phys_bits: u32,
    /// IA32_PAT: the eight PAT entries a page's PAT/PCD/PWT bits select
    /// its memory type from (see [`HwTranslation::memory_type`](crate::HwTranslation::memory_type)).
    /// [`PAT_POWER_ON`](crate::PAT_POWER_ON) unless set. Every entry must be
    /// a defined encoding (WRMSR would #GP): [`Mmu::new`](crate::Mmu::new)
    /// panics otherwise.
    pub pat: u64,
}

impl SimConfig {
    /// 32-bit paging with PSE, PGE and WP on, and the power-on PAT.
    pub const fn two_level() -> Self {
        Self {
            paging: SimPaging::TwoLevel,
            pse: true,
            pge: true,
            wp: true,
            nxe: false,
            max_phys_bits: 32,
            pat: PAT_POWER_ON,
        }
    }

    /// PAE paging with PGE, WP and NXE on, MAXPHYADDR 36, and the power-on
    /// PAT.
    pub const fn pae() -> Self {
        Self {
            paging: SimPaging::Pae,
            pse: true,
            pge: true,
            wp: true,
            nxe: true,
            max_phys_bits: 36,
            pat: PAT_POWER_ON,
        }
    }

    /// The CPU a kernel built for paging mode `M` runs on: 2-level if the
    /// mode folds the PMD, else PAE with `M`'s physical width; PSE, PGE and
    /// WP on, NXE on where the mode has NX.
    pub fn for_mode<M: paging_core::PagingMode>() -> Self {
        if M::PMD_FOLDED {
            Self::two_level()
        } else {
            Self {
                max_phys_bits: M::MAX_PHYS_BITS,
                nxe: M::SUPPORTS_NX,
                ..Self::pae()
            }
        }
    }

    /// The configuration with the fields that do not apply to its mode fixed.
    pub const fn normalized(self) -> Self {
        match self.paging {
            SimPaging::TwoLevel => Self {
                nxe: false,
                max_phys_bits: 32,
                ..self
            },
            SimPaging::Pae => Self {
                max_phys_bits: if self.max_phys_bits < 32 {
                    32
                } else if self.max_phys_bits > 52 {
                    52
                } else {
                    self.max_phys_bits
                },
                ..self
            },
        }
    }

    /// The region one PDE covers: the PDE-cache granule.
    pub(crate) const fn pde_region(&self) -> PageSize {
        match self.paging {
            SimPaging::TwoLevel => PageSize::Size4MiB,
            SimPaging::Pae => PageSize::Size2MiB,
        }
    }
}
