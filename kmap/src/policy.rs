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
//! | [`Generations`] | slots cleared at release; per half pool, one range flush from the previous half boundary's mark that skips every CPU which has flushed its whole TLB since ([`TlbOps::flush_range_since`]) | SMP kernels whose CPUs reload CR3 (slots not global) or toggle PGE more often than the cursor crosses half the pool: NetBSD `emap`'s per-CPU TLB generations. Costs the cache hit of a released page |
//!
//! [`AccessedBit`] writes slot PTEs with the Accessed bit clear. The CPU
//! sets Accessed before it caches a translation, so a cleared PTE whose
//! Accessed bit is still clear was never in any TLB and needs no
//! invalidation. Its cost is the locked A-bit update the MMU makes on the
//! first touch of each mapping.
//!
//! On SMP every flush a policy asks for reaches every CPU (the pool's
//! `TlbOps` sends the shootdown IPIs): one per wrap for [`GlobalFlush`] and
//! [`RangeFlush`], one per flushed slot for [`PerPage`] and [`AccessedBit`].
//! The Accessed bit lives in the shared PTE, so it is set whichever CPU
//! walked the slot, and [`AccessedBit`] stays correct.
//!
//! # Generations: skipping CPUs that flushed anyway
//!
//! A CPU that has flushed its whole TLB after a slot's PTE was cleared no
//! longer holds the slot and need not be interrupted for it. But a slot
//! whose PTE is *present* may enter any CPU's TLB at any time (speculative
//! walks, SDM 4.10.2.3), so only a flush after the clear counts. With
//! [`Generations`] (whose [`clears_on_release`](FlushPolicy::clears_on_release)
//! is true) the pool therefore:
//!
//! 1. clears a slot's PTE when its last user releases it, and forgets the
//!    page (a later map of it takes a new slot: no cache hit);
//! 2. treats the pool as two halves. When the cursor enters a half, it
//!    frees that half's slots that were already stale at the previous
//!    boundary, whose PTEs were all clear when that boundary took its
//!    [`TlbMark`] (`tlb.mark()`), and flushes the half with
//!    [`TlbOps::flush_range_since`] from that mark: an SMP `TlbOps` sends no
//!    IPI to a CPU that has flushed everything since. Slots released since
//!    then cool down until the cursor comes back. (Freeing whole laps at a
//!    time does not work: one lap would take every slot and the next find
//!    none cooled.) Each boundary counts as a wrap in [`KmapStats`](crate::KmapStats);
//! 3. when a whole lap past both boundaries finds no free slot, frees every
//!    stale slot at once with a fresh mark (every CPU is flushed), so
//!    capacity never waits on a CPU's flush and reservations stay honoured.
//!
//! A slot is never handed out again before the flush that covers it, and
//! every CPU skipped by that flush flushed after the slot's PTE was clear
//! for good: no CPU can hold the old translation when the slot is reused.

use paging_core::{MapFlags, TlbMark, TlbOps, VirtAddr};

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
    /// Range flushes issued with a mark ([`TlbOps::flush_range_since`]):
    /// the TLB skips every CPU that has flushed everything since. How many
    /// IPIs that saved only the `TlbOps` knows.
    pub deferred: u64,
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

    /// Whether the pool clears a slot's PTE as soon as its last user
    /// releases it (and forgets the page), rather than at the next wrap. It
    /// then frees the pool half by half, each half's slots from the mark
    /// taken at the previous half boundary (or all at once, from a fresh
    /// mark, when it would otherwise run out), so that
    /// [`wrap_done_since`](Self::wrap_done_since) can hand the TLB a mark
    /// that CPUs may have flushed since (see [the module
    /// docs](self#generations-skipping-cpus-that-flushed-anyway)).
    /// [`slot_cleared`](Self::slot_cleared) is called when the slot is freed,
    /// with `accessed` true (the pool keeps no record of the bit after the
    /// release).
    ///
    /// False by default: the slot keeps its PTE, and its page stays cached
    /// for the next map of it, until the wrap.
    fn clears_on_release(&self) -> bool {
        false
    }

    /// What the pool calls at every wrap: [`wrap_done`](Self::wrap_done)
    /// with `since`, a [`TlbMark`] taken after the PTEs of all `cleared`
    /// slots freed at this wrap were cleared (all among the `slots` pages
    /// from `base`: the whole pool, or the half a policy that
    /// [clears on release](Self::clears_on_release) frees). A CPU that has
    /// flushed its whole TLB after `since` cannot hold any of them
    /// ([`TlbOps::flush_range_since`]).
    ///
    /// The default ignores `since` and calls `wrap_done`.
    fn wrap_done_since<T: TlbOps + ?Sized>(
        &self,
        tlb: &T,
        base: VirtAddr,
        slots: u32,
        cleared: usize,
        since: TlbMark,
        counts: &mut FlushCounts,
    ) {
        let _ = since;
        self.wrap_done(tlb, base, slots, cleared, counts);
    }
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

/// NetBSD `emap`'s rule, with the pool's help: slots are cleared when
/// released, and freed half a pool at a time with
/// [`TlbOps::flush_range_since`] from the mark of the previous half
/// boundary, so an SMP `TlbOps` skips every CPU that has flushed its whole
/// TLB since (a CR3 load, when slot PTEs are not global; a PGE toggle). See [the module docs](self#generations-skipping-cpus-that-flushed-anyway).
///
/// It pays for that with the cache hit of a released page (only pages in
/// use are shared) and a PTE clear per release. On a uniprocessor, or with
/// a `TlbOps` that keeps no history ([`TlbMark::NONE`]), it is a range
/// flush per half lap and nothing is saved: use it on SMP, where CPUs flush
/// everything more often than the cursor crosses half the pool (in the host
/// model, 4 CPUs each reloading CR3 every 256 pool maps with 1,024 slots:
/// no IPI at all, against 3 per wrap for [`GlobalFlush`]; see kmap's README).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Generations;

impl FlushPolicy for Generations {
    fn name(&self) -> &'static str {
        "generations"
    }

    fn slot_cleared<T: TlbOps + ?Sized>(&self, _: &T, _: VirtAddr, _: bool, _: &mut FlushCounts) {}

    /// Without a mark (a caller other than the pool): a plain range flush.
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

    fn clears_on_release(&self) -> bool {
        true
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
        if cleared > 0 {
            tlb.flush_range_since(base, slots, since);
            counts.deferred += 1;
        }
    }
}
