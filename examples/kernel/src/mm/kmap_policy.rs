//! The persistent pool's TLB flush policy, chosen at boot.
//!
//! Demonstrates `kmap::FlushPolicy`: the five policies of the crate are
//! types; this enum picks one at run time (kernel command line
//! `kmap.policy=global|per-page|range|accessed-bit|generations`, default `global`, as
//! Linux) and forwards to it, adding no-execute to the slots' PTE flags.

use kmap::policy::{
    AccessedBit, FlushCounts, FlushPolicy, Generations, GlobalFlush, PerPage, RangeFlush,
};
use paging_core::{MapFlags, TlbMark, TlbOps, VirtAddr};

/// One of the crate's flush policies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelPolicy {
    /// `kmap::PerPage`.
    PerPage,
    /// `kmap::RangeFlush`.
    Range,
    /// `kmap::GlobalFlush`.
    Global,
    /// `kmap::AccessedBit`.
    AccessedBit,
    /// `kmap::Generations`.
    Generations,
}

impl KernelPolicy {
    /// Every policy, in the order the flush-policy test runs them.
    pub const ALL: [KernelPolicy; 5] = [
        KernelPolicy::PerPage,
        KernelPolicy::Range,
        KernelPolicy::Global,
        KernelPolicy::AccessedBit,
        KernelPolicy::Generations,
    ];

    /// The policy named by `kmap.policy=NAME` on the command line, if any.
    pub fn from_cmdline(cmdline: &str) -> Option<Self> {
        let name = cmdline
            .split_ascii_whitespace()
            .find_map(|word| word.strip_prefix("kmap.policy="))?;
        Self::ALL.into_iter().find(|p| p.name() == name)
    }

    /// Runs `f` with the policy's crate type.
    fn with<R>(self, f: impl FnOnce(&dyn PolicyName) -> R) -> R {
        match self {
            Self::PerPage => f(&PerPage),
            Self::Range => f(&RangeFlush),
            Self::Global => f(&GlobalFlush),
            Self::AccessedBit => f(&AccessedBit),
            Self::Generations => f(&Generations),
        }
    }
}

/// Object-safe part of [`FlushPolicy`] (its flush methods are generic).
trait PolicyName {
    fn policy_name(&self) -> &'static str;
    fn policy_flags(&self) -> MapFlags;
    fn policy_clears_on_release(&self) -> bool;
}

impl<P: FlushPolicy> PolicyName for P {
    fn policy_name(&self) -> &'static str {
        self.name()
    }
    fn policy_flags(&self) -> MapFlags {
        self.pte_flags()
    }
    fn policy_clears_on_release(&self) -> bool {
        self.clears_on_release()
    }
}

impl FlushPolicy for KernelPolicy {
    fn name(&self) -> &'static str {
        self.with(|p| p.policy_name())
    }

    /// The crate policy's flags plus no-execute (when NX is on): a kmap
    /// slot maps data, and W^X holds in the pkmap area too. Not global:
    /// the slots change all the time, and a policy's flush decides what
    /// the TLB keeps.
    fn pte_flags(&self) -> MapFlags {
        self.with(|p| p.policy_flags()) | crate::arch::mode::no_execute()
    }

    fn slot_cleared<T: TlbOps + ?Sized>(
        &self,
        tlb: &T,
        va: VirtAddr,
        accessed: bool,
        counts: &mut FlushCounts,
    ) {
        match self {
            Self::PerPage => PerPage.slot_cleared(tlb, va, accessed, counts),
            Self::Range => RangeFlush.slot_cleared(tlb, va, accessed, counts),
            Self::Global => GlobalFlush.slot_cleared(tlb, va, accessed, counts),
            Self::AccessedBit => AccessedBit.slot_cleared(tlb, va, accessed, counts),
            Self::Generations => Generations.slot_cleared(tlb, va, accessed, counts),
        }
    }

    fn wrap_done<T: TlbOps + ?Sized>(
        &self,
        tlb: &T,
        base: VirtAddr,
        slots: u32,
        cleared: usize,
        counts: &mut FlushCounts,
    ) {
        match self {
            Self::PerPage => PerPage.wrap_done(tlb, base, slots, cleared, counts),
            Self::Range => RangeFlush.wrap_done(tlb, base, slots, cleared, counts),
            Self::Global => GlobalFlush.wrap_done(tlb, base, slots, cleared, counts),
            Self::AccessedBit => AccessedBit.wrap_done(tlb, base, slots, cleared, counts),
            Self::Generations => Generations.wrap_done(tlb, base, slots, cleared, counts),
        }
    }
    fn clears_on_release(&self) -> bool {
        self.with(|p| p.policy_clears_on_release())
    }

    fn wrap_done_since<T: TlbOps + ?Sized>(
        &self,
        tlb: &T,
        base: VirtAddr,
        slots: u32,
        cleared: usize,
        since: TlbMark,
        counts: &mut FlushCounts,
    ) {
        match self {
            Self::PerPage => PerPage.wrap_done_since(tlb, base, slots, cleared, since, counts),
            Self::Range => RangeFlush.wrap_done_since(tlb, base, slots, cleared, since, counts),
            Self::Global => GlobalFlush.wrap_done_since(tlb, base, slots, cleared, since, counts),
            Self::AccessedBit => {
                AccessedBit.wrap_done_since(tlb, base, slots, cleared, since, counts)
            }
            Self::Generations => {
                Generations.wrap_done_since(tlb, base, slots, cleared, since, counts)
            }
        }
    }
}
