//! How stale pool slots leave the TLB: the pluggable flush policy.
//!
//! A persistent slot whose last user is gone keeps its PTE (count 1) until
//! the round-robin cursor wraps; then every such slot is cleared at once and
//! the TLB must forget them before the slots are reused. *How* is the
//! policy's choice:
//!
//! | policy | at each wrap | wins when |
//! |---|---|---|
//! | [`PerPage`] | one `invlpg` per stale slot | few slots, cheap `invlpg`, or a CPU whose full flush is expensive |
//! | [`RangeFlush`] | one range flush of the pool | the platform has a cheap ranged flush (one IPI for the range on SMP) |
//! | [`GlobalFlush`] | one full flush, globals included | many stale slots per wrap (Linux's choice): one flush amortised over the whole pool |
//! | [`AccessedBit`] | `invlpg` only for slots the MMU actually used | mappings that are often never dereferenced (zero-copy I/O, `sendfile`): FreeBSD `sf_buf`'s rule |
//!
//! [`AccessedBit`] writes slot PTEs with the Accessed bit clear. The CPU
//! sets Accessed before it caches a translation, so a cleared PTE whose
//! Accessed bit is still clear was never in any TLB and needs no
//! invalidation. Its cost is the locked A-bit update the MMU makes on the
//! first touch of each mapping.

use paging_core::{MapFlags, TlbOps, VirtAddr};

/// Flushes a policy performed (or avoided), by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlushCounts {
    /// Single-page invalidations (`invlpg`).
    pub pages: u64,
    /// Range flushes.
    pub ranges: u64,
    /// Full flushes (globals included).
    pub globals: u64,
    /// Stale slots cleared with no invalidation because the MMU never used them.
    pub avoided: u64,
}

/// A TLB flush policy for the persistent pool.
pub trait FlushPolicy: Send + Sync {
    /// Short name for reports.
    fn name(&self) -> &'static str;

    /// The flags slot PTEs are written with.
    fn pte_flags(&self) -> MapFlags {
        MapFlags::KERNEL_RW | MapFlags::ACCESSED | MapFlags::DIRTY
    }

    /// A stale slot at `va` was just cleared; `accessed` says whether its old
    /// PTE had the Accessed bit set.
    fn slot_cleared<T: TlbOps + ?Sized>(
        &self,
        tlb: &T,
        va: VirtAddr,
        accessed: bool,
        counts: &mut FlushCounts,
    );

    /// Every stale slot of this wrap has been cleared: `cleared` of the
    /// `slots` pages from `base`.
    fn wrap_done<T: TlbOps + ?Sized>(
        &self,
        tlb: &T,
        base: VirtAddr,
        slots: u32,
        cleared: usize,
        counts: &mut FlushCounts,
    );
}

/// One `invlpg` per stale slot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PerPage;

impl FlushPolicy for PerPage {
    fn name(&self) -> &'static str {
        "per-page"
    }

    fn slot_cleared<T: TlbOps + ?Sized>(
        &self,
        tlb: &T,
        va: VirtAddr,
        _accessed: bool,
        counts: &mut FlushCounts,
    ) {
        tlb.flush_page(va);
        counts.pages += 1;
    }

    fn wrap_done<T: TlbOps + ?Sized>(
        &self,
        _: &T,
        _: VirtAddr,
        _: u32,
        _: usize,
        _: &mut FlushCounts,
    ) {
    }
}

/// One range flush over the whole pool per wrap.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RangeFlush;

impl FlushPolicy for RangeFlush {
    fn name(&self) -> &'static str {
        "range"
    }

    fn slot_cleared<T: TlbOps + ?Sized>(&self, _: &T, _: VirtAddr, _: bool, _: &mut FlushCounts) {}

    fn wrap_done<T: TlbOps + ?Sized>(
        &self,
        tlb: &T,
        base: VirtAddr,
        slots: u32,
        cleared: usize,
        counts: &mut FlushCounts,
    ) {
        if cleared > 0 {
            tlb.flush_range(base, slots);
            counts.ranges += 1;
        }
    }
}

/// One full TLB flush (globals included) per wrap: Linux's
/// `flush_all_zero_pkmaps` behaviour.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GlobalFlush;

impl FlushPolicy for GlobalFlush {
    fn name(&self) -> &'static str {
        "global"
    }

    fn slot_cleared<T: TlbOps + ?Sized>(&self, _: &T, _: VirtAddr, _: bool, _: &mut FlushCounts) {}

    fn wrap_done<T: TlbOps + ?Sized>(
        &self,
        tlb: &T,
        _: VirtAddr,
        _: u32,
        cleared: usize,
        counts: &mut FlushCounts,
    ) {
        if cleared > 0 {
            tlb.flush_everything();
            counts.globals += 1;
        }
    }
}

/// FreeBSD `sf_buf`'s rule: PTEs are written with Accessed clear, and only
/// slots whose Accessed bit the MMU set are invalidated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AccessedBit;

impl FlushPolicy for AccessedBit {
    fn name(&self) -> &'static str {
        "accessed-bit"
    }

    fn pte_flags(&self) -> MapFlags {
        MapFlags::KERNEL_RW
    }

    fn slot_cleared<T: TlbOps + ?Sized>(
        &self,
        tlb: &T,
        va: VirtAddr,
        accessed: bool,
        counts: &mut FlushCounts,
    ) {
        if accessed {
            tlb.flush_page(va);
            counts.pages += 1;
        } else {
            counts.avoided += 1;
        }
    }

    fn wrap_done<T: TlbOps + ?Sized>(
        &self,
        _: &T,
        _: VirtAddr,
        _: u32,
        _: usize,
        _: &mut FlushCounts,
    ) {
    }
}
