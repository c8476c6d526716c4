//! The simulated CPU's configuration: paging mode and the control-register
//! and CPUID bits that change how a walk behaves.

use super::memtype::PAT_POWER_ON;
use paging_core::CpuFeatures;
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
/// 2-level mode `nxe` is off and `max_phys_bits` is 32 without PSE-36 (else
/// clamped to 32..=40, the most 4 MiB pages reach); under PAE `pse` and
/// `pse36` are irrelevant (2 MiB pages need no CR4.PSE) and
/// `max_phys_bits` is clamped to 32..=52.
///
/// Presets name real CPU families ([`pentium`](Self::pentium),
/// [`p6`](Self::p6), [`p6_nx`](Self::p6_nx)); [`features`](Self::features)
/// is what a mapper for this CPU is bound to.
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
    /// CPUID.1:EDX.PAT: the CPU has the PAT. Without it the PAT bit (bit 7
    /// of a PTE, bit 12 of a large-page PDE) is reserved under PAE, and in
    /// 2-level mode when CR4.PSE is set (SDM Vol. 3A 4.3, 4.4.2; with
    /// CR4.PSE clear no bit is reserved in 2-level mode); PCD and PWT
    /// alone then select the type (the power-on PAT's entries 0-3).
    pub has_pat: bool,
    /// CPUID.1:EDX.PSE-36: a 2-level 4 MiB PDE holds physical address bits
    /// (M-1):32 in its bits (M-20):13, M = min(40, `max_phys_bits`), and
    /// only bits 21:(M-19) are reserved (SDM Vol. 3A 4.3, table 4-4).
    pub pse36: bool,
    /// MAXPHYADDR (PAE, and 2-level 4 MiB pages with PSE-36).
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
            has_pat: true,
            pse36: false,
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
            has_pat: true,
            pse36: false,
            max_phys_bits: 36,
            pat: PAT_POWER_ON,
        }
    }

    /// A Pentium (P5): 2-level paging with PSE, no PGE, no PAT, no PSE-36,
    /// MAXPHYADDR 32, and no PAE at all (so there is no PAE preset).
    pub const fn pentium() -> Self {
        Self {
            pge: false,
            has_pat: false,
            ..Self::two_level()
        }
    }

    /// A P6-family CPU (Pentium Pro, II, III; the Pentium 4 before
    /// Prescott and the Athlon look the same to paging): PAE, PSE, PGE,
    /// PAT, PSE-36, MAXPHYADDR 36, and no NX, in `paging` mode.
    pub const fn p6(paging: SimPaging) -> Self {
        Self {
            paging,
            pse: true,
            pge: true,
            wp: true,
            nxe: false,
            has_pat: true,
            pse36: true,
            max_phys_bits: 36,
            pat: PAT_POWER_ON,
        }
    }

    /// A P6 with NX (Pentium M, Core Duo; the Atom N270 too): as
    /// [`p6`](Self::p6) with NX enabled under PAE, and MAXPHYADDR 32.
    pub const fn p6_nx(paging: SimPaging) -> Self {
        Self {
            nxe: true,
            max_phys_bits: 32,
            ..Self::p6(paging)
        }
    }

    /// What a mapper for this CPU is bound to: NX (EFER.NXE, PAE only),
    /// PAT, PGE, PSE, PSE-36 and MAXPHYADDR, after [`normalized`](Self::normalized).
    pub const fn features(&self) -> CpuFeatures {
        let n = self.normalized();
        CpuFeatures {
            nx: n.nxe,
            pat: n.has_pat,
            pge: n.pge,
            pse: n.pse,
            pse36: n.pse36,
            max_phys_bits: n.max_phys_bits,
            nx_policy: paging_core::NxPolicy::Refuse,
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
                max_phys_bits: if !self.pse36 || self.max_phys_bits < 32 {
                    32
                } else if self.max_phys_bits > 40 {
                    40
                } else {
                    self.max_phys_bits
                },
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
