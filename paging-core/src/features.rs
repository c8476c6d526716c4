//! What the bound CPU accepts in a page-table entry (Linux's
//! `__supported_pte_mask`).
//!
//! An entry bit the CPU does not support is not harmless: with PAE, XD
//! (bit 63) without EFER.NXE, the PAT bit without the PAT, and address bits
//! at or above MAXPHYADDR are *reserved*, and a present entry with a
//! reserved bit set makes every access through it a page fault with RSVD
//! set (SDM Vol. 3A 4.3, 4.4.2, 4.7). In 2-level mode a large page without
//! CR4.PSE is worse: the PS bit is ignored, and the CPU reads the page's
//! first frame as a page table (SDM Vol. 3A 4.3, table 4-5).
//!
//! A [`Mapper`](crate::Mapper) is bound to one [`CpuFeatures`], and so are
//! the fixmap and kmap windows built from it. Every entry they write is
//! checked against it, with one rule:
//!
//! - A request the CPU cannot express is refused with an error naming the
//!   missing [`CpuFeature`] (`MapError::MissingFeature`,
//!   `UnmapError::MissingFeature`, `EntryError::MissingFeature`; kind
//!   [`ErrorKind::MissingFeature`](crate::ErrorKind::MissingFeature)), and
//!   nothing changes.
//! - A physical address at or above MAXPHYADDR is the existing
//!   `PhysOutOfRange` error, with the CPU's width.
//! - One opt-in, [`NxPolicy::Drop`]: on a CPU without NX, `NO_EXECUTE` is
//!   dropped instead of refused, as Linux does at boot. The mapping is then
//!   executable: [`CpuFeatures::drops_nx`] says so, for the kernel to
//!   report once at boot.
//! - `GLOBAL` without PGE stays: the CPU ignores G then (SDM Vol. 3A
//!   4.10.2.4), so it is harmless and the entry is the same on every CPU.
//!
//! On real hardware, `CpuFeatures::from_cpuid` (in the x86-only `cpu` module)
//! reads CPUID and the features paging was enabled with; in tests, the
//! simulated CPU's configuration gives them (`paging_sim::SimConfig::features`).
//!
//! ```
//! use paging_core::{CpuFeature, CpuFeatures, MapFlags, PageSize};
//! use paging_x86_pae::Pae;
//!
//! // A Pentium III in PAE mode: PAT, PGE, PSE, PSE-36, no NX.
//! let p6 = CpuFeatures::full::<Pae>().without(CpuFeature::NoExecute);
//! let rx = MapFlags::PRESENT | MapFlags::NO_EXECUTE;
//! assert_eq!(p6.leaf_flags::<Pae>(rx, PageSize::Size4KiB), Err(CpuFeature::NoExecute));
//! // Flags chosen from the features, never from the mode alone:
//! let data = MapFlags::KERNEL_RW | p6.no_execute();
//! assert_eq!(p6.leaf_flags::<Pae>(data, PageSize::Size4KiB), Ok(MapFlags::KERNEL_RW));
//! ```

use core::fmt;

use crate::addr::PageSize;
use crate::flags::MapFlags;
use crate::mode::PagingMode;

/// One optional paging feature an entry bit depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CpuFeature {
    /// Execute-disable enabled (CPUID.80000001H:EDX.NX and EFER.NXE): bit 63
    /// of a PAE entry. Needed by `MapFlags::NO_EXECUTE` in PAE mode.
    NoExecute,
    /// The Page Attribute Table (CPUID.1:EDX.PAT): bit 7 of a PTE, bit 12
    /// of a large-page entry. Needed by `MapFlags::PAT`.
    Pat,
    /// 4 MiB pages in 2-level mode (CPUID.1:EDX.PSE, CR4.PSE). PAE's 2 MiB
    /// pages need nothing.
    LargePages,
    /// Global pages (CPUID.1:EDX.PGE, CR4.PGE). Never refused: G is
    /// ignored without it.
    GlobalPages,
    /// PSE-36 (CPUID.1:EDX.PSE-36): physical address bits 39:32 in bits
    /// 20:13 of a 2-level 4 MiB entry. No backend writes them (the 2-level
    /// backend maps below 4 GiB only), so nothing is refused for it.
    Pse36,
}

impl fmt::Display for CpuFeature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NoExecute => "NX (execute-disable, EFER.NXE)",
            Self::Pat => "PAT (page attribute table)",
            Self::LargePages => "PSE (4 MiB pages, CR4.PSE)",
            Self::GlobalPages => "PGE (global pages)",
            Self::Pse36 => "PSE-36",
        })
    }
}

/// What a leaf with `NO_EXECUTE` becomes on a CPU without NX.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum NxPolicy {
    /// Refuse it with [`CpuFeature::NoExecute`] (the default): a
    /// no-execute request never silently becomes executable memory.
    #[default]
    Refuse,
    /// Drop `NO_EXECUTE` and map the page executable, as Linux does on a
    /// CPU without NX. Opt in only after reporting it
    /// ([`CpuFeatures::drops_nx`]).
    Drop,
}

/// The paging features of the CPU a hierarchy is built for: what entries
/// may use. See the [module docs](self) for the rule.
///
/// Fields a mode does not use are ignored by it: `nx` in 2-level mode
/// (which has no XD bit at all), `pse` and `pse36` in PAE mode (2 MiB
/// pages need no CR4.PSE).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CpuFeatures {
    /// EFER.NXE is set: XD may be written (PAE).
    pub nx: bool,
    /// The PAT exists: the PAT bit may be written.
    pub pat: bool,
    /// CR4.PGE is set: G makes a translation global (else G is ignored).
    pub pge: bool,
    /// CR4.PSE is set: 4 MiB pages in 2-level mode.
    pub pse: bool,
    /// PSE-36 is supported (recorded; see [`CpuFeature::Pse36`]).
    pub pse36: bool,
    /// MAXPHYADDR: physical address bits the CPU accepts in an entry. The
    /// mapper uses the smaller of this and the mode's
    /// [`PagingMode::MAX_PHYS_BITS`].
    pub max_phys_bits: u32,
    /// What `NO_EXECUTE` becomes without `nx`.
    pub nx_policy: NxPolicy,
}

impl CpuFeatures {
    /// A CPU with every feature mode `M` can use: NX (where the mode has
    /// it), PAT, PGE, PSE, PSE-36, and MAXPHYADDR = `M::MAX_PHYS_BITS`. What
    /// the crates assumed before features existed; right for a modern CPU
    /// (and the default simulated one), wrong for a P6 or a Pentium.
    pub const fn full<M: PagingMode>() -> Self {
        Self {
            nx: M::SUPPORTS_NX,
            pat: true,
            pge: true,
            pse: true,
            pse36: true,
            max_phys_bits: M::MAX_PHYS_BITS,
            nx_policy: NxPolicy::Refuse,
        }
    }

    /// A CPU with no optional feature: no NX, PAT, PGE, PSE or PSE-36, and
    /// MAXPHYADDR 32. Everything `M` maps on it works on every CPU that
    /// can run `M`.
    pub const fn baseline() -> Self {
        Self {
            nx: false,
            pat: false,
            pge: false,
            pse: false,
            pse36: false,
            max_phys_bits: 32,
            nx_policy: NxPolicy::Refuse,
        }
    }

    /// The same features without `feature`.
    #[must_use]
    pub const fn without(self, feature: CpuFeature) -> Self {
        let mut f = self;
        match feature {
            CpuFeature::NoExecute => f.nx = false,
            CpuFeature::Pat => f.pat = false,
            CpuFeature::LargePages => f.pse = false,
            CpuFeature::GlobalPages => f.pge = false,
            CpuFeature::Pse36 => f.pse36 = false,
        }
        f
    }

    /// The same features with `policy` for `NO_EXECUTE` without NX.
    #[must_use]
    pub const fn with_nx_policy(self, policy: NxPolicy) -> Self {
        Self {
            nx_policy: policy,
            ..self
        }
    }

    /// Whether `feature` is there.
    pub const fn has(&self, feature: CpuFeature) -> bool {
        match feature {
            CpuFeature::NoExecute => self.nx,
            CpuFeature::Pat => self.pat,
            CpuFeature::LargePages => self.pse,
            CpuFeature::GlobalPages => self.pge,
            CpuFeature::Pse36 => self.pse36,
        }
    }

    /// `MapFlags::NO_EXECUTE` if this CPU can enforce it, else empty: what
    /// a data mapping should ask for. (In 2-level mode `nx` is meaningless
    /// and the mode refuses XD: keep `nx` false there, as
    /// [`full`](Self::full) does.)
    pub const fn no_execute(&self) -> MapFlags {
        if self.nx {
            MapFlags::NO_EXECUTE
        } else {
            MapFlags::empty()
        }
    }

    /// `MapFlags::GLOBAL` if this CPU has PGE, else empty (G is harmless
    /// without PGE, so asking for it regardless is fine too).
    pub const fn global(&self) -> MapFlags {
        if self.pge {
            MapFlags::GLOBAL
        } else {
            MapFlags::empty()
        }
    }

    /// Whether mode `M` can map large pages on this CPU (always in PAE;
    /// with PSE in 2-level mode).
    pub const fn large_pages<M: PagingMode>(&self) -> bool {
        !M::PMD_FOLDED || self.pse
    }

    /// Whether a `NO_EXECUTE` request in mode `M` is silently dropped on
    /// this CPU ([`NxPolicy::Drop`] without NX): a kernel reports this once
    /// at boot, as Linux prints "NX protection: disabled".
    pub const fn drops_nx<M: PagingMode>(&self) -> bool {
        M::SUPPORTS_NX && !self.nx && matches!(self.nx_policy, NxPolicy::Drop)
    }

    /// The physical address width entries of mode `M` may use on this CPU:
    /// the smaller of MAXPHYADDR and `M::MAX_PHYS_BITS`.
    pub const fn phys_bits<M: PagingMode>(&self) -> u32 {
        if self.max_phys_bits < M::MAX_PHYS_BITS {
            self.max_phys_bits
        } else {
            M::MAX_PHYS_BITS
        }
    }

    /// The flags a leaf of `size` with `flags` gets on this CPU, or the
    /// feature it lacks. `NO_EXECUTE` is dropped without NX under
    /// [`NxPolicy::Drop`]; flags the *mode* cannot express (`NO_EXECUTE`
    /// in 2-level mode) are left for the backend to refuse.
    pub const fn leaf_flags<M: PagingMode>(
        &self,
        flags: MapFlags,
        size: PageSize,
    ) -> Result<MapFlags, CpuFeature> {
        let large = !matches!(size, PageSize::Size4KiB);
        if large && M::PMD_FOLDED && !self.pse {
            return Err(CpuFeature::LargePages);
        }
        if flags.contains(MapFlags::PAT) && !self.pat {
            return Err(CpuFeature::Pat);
        }
        if flags.contains(MapFlags::NO_EXECUTE) && M::SUPPORTS_NX && !self.nx {
            return match self.nx_policy {
                NxPolicy::Refuse => Err(CpuFeature::NoExecute),
                NxPolicy::Drop => Ok(flags.difference(MapFlags::NO_EXECUTE)),
            };
        }
        Ok(flags)
    }
}

/// [`CpuFeatures::leaf_flags`] precomputed for one mode, for the mapper's
/// hot paths: the flags any leaf refuses, the flags it drops, whether large
/// leaves are allowed, and the physical width.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LeafRule {
    refused: MapFlags,
    dropped: MapFlags,
    large: bool,
    pub(crate) phys_bits: u32,
}

impl LeafRule {
    /// The rule of `features` in mode `M`.
    pub(crate) const fn of<M: PagingMode>(features: &CpuFeatures) -> Self {
        let mut refused = MapFlags::empty();
        let mut dropped = MapFlags::empty();
        if !features.pat {
            refused = refused.union(MapFlags::PAT);
        }
        if M::SUPPORTS_NX && !features.nx {
            match features.nx_policy {
                NxPolicy::Refuse => refused = refused.union(MapFlags::NO_EXECUTE),
                NxPolicy::Drop => dropped = dropped.union(MapFlags::NO_EXECUTE),
            }
        }
        Self {
            refused,
            dropped,
            large: features.large_pages::<M>(),
            phys_bits: features.phys_bits::<M>(),
        }
    }

    /// Whether a leaf of `size` with `flags` passes as is or with
    /// `dropped` removed: the same answer as `leaf_flags` (which names the
    /// missing feature when this says no).
    #[inline(always)]
    pub(crate) const fn allows(&self, flags: MapFlags, size: PageSize) -> Option<MapFlags> {
        if flags.intersects(self.refused) || (!self.large && !matches!(size, PageSize::Size4KiB)) {
            None
        } else {
            Some(flags.difference(self.dropped))
        }
    }
}
