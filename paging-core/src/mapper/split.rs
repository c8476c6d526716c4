//! Changing attributes inside large pages (Linux's `set_memory_*`): split a
//! large page into a PTE table that keeps every attribute, change only the
//! pages asked for, and merge a uniform table back into one large page.
//!
//! The sequence is documented in the [`mapper`](crate::mapper) module docs.

use super::Mapper;
use super::map::take_table_frame;
use super::teardown::page_range_end;
use crate::access::{TableAccess, reach};
use crate::addr::{PAGE_SIZE, PageSize, PhysAddr, PhysFrame, VirtAddr};
use crate::alloc::FrameAllocator;
use crate::cache::{CacheType, PatLayout};
use crate::entry::{Entry, Level, PmdEntry, PteEntry};
use crate::error::{AttrError, MapError};
use crate::flags::MapFlags;
use crate::flush::TlbOps;
use crate::hooks::TableHooks;
use crate::mode::PagingMode;
use crate::walk::Slot;

/// Accessed and Dirty: the CPU's, carried over, never taken from the caller.
const STATUS: MapFlags = MapFlags::ACCESSED.union(MapFlags::DIRTY);

/// At most two large pages are cut by one range: the one holding its start
/// and the one holding its end. Large pages wholly inside are changed
/// whole.
const MAX_SPLITS: usize = 2;

/// What [`Mapper::set_memory`] changes: flags to clear and to set, and
/// optionally a memory type. Build one with the constants (Linux's
/// `set_memory_ro` is [`AttrChange::RO`], and so on) or
/// [`AttrChange::cache`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttrChange {
    clear: MapFlags,
    set: MapFlags,
    cache: Option<(CacheType, PatLayout)>,
}

impl AttrChange {
    /// Read-only (`set_memory_ro`): clear R/W.
    pub const RO: Self = Self::flags(MapFlags::WRITABLE, MapFlags::empty());
    /// Writable (`set_memory_rw`): set R/W.
    pub const RW: Self = Self::flags(MapFlags::empty(), MapFlags::WRITABLE);
    /// No-execute (`set_memory_nx`): set XD (PAE with NX only).
    pub const NX: Self = Self::flags(MapFlags::empty(), MapFlags::NO_EXECUTE);
    /// Executable (`set_memory_x`): clear XD.
    pub const X: Self = Self::flags(MapFlags::NO_EXECUTE, MapFlags::empty());

    /// Clear `clear`, then set `set` (`(old - clear) | set`, as
    /// [`Mapper::protect_range`] does; A/D and P are ignored in both).
    pub const fn flags(clear: MapFlags, set: MapFlags) -> Self {
        Self {
            clear,
            set,
            cache: None,
        }
    }

    /// Give the pages memory type `cache` (`set_memory_wc`, `_uc`, `_wb`):
    /// the PAT, PCD and PWT bits that select it in `layout`, the PAT the
    /// kernel programmed. On a CPU without the PAT only write-back,
    /// write-through, UC- and UC can be had (PCD and PWT alone); anything
    /// else is [`AttrError::MissingFeature`]. Checked when applied.
    pub const fn cache(cache: CacheType, layout: PatLayout) -> Self {
        Self {
            clear: MapFlags::CACHE_BITS,
            set: MapFlags::empty(),
            cache: Some((cache, layout)),
        }
    }

    /// This change and `other` together (`other`'s memory type wins).
    pub const fn and(self, other: Self) -> Self {
        Self {
            clear: self.clear.union(other.clear),
            set: self.set.difference(other.clear).union(other.set),
            cache: match other.cache {
                Some(c) => Some(c),
                None => self.cache,
            },
        }
    }
}

/// What [`Mapper::set_memory`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AttrStats {
    /// Large pages split into PTE tables.
    pub split: usize,
    /// 4 KiB leaves in the range (each now has the new attributes).
    pub pages: usize,
    /// Large pages wholly inside the range, changed whole.
    pub large_pages: usize,
    /// Leaves whose entry actually changed.
    pub changed: usize,
}

/// What [`Mapper::merge_large_pages`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MergeStats {
    /// PTE tables merged into one large page each (and given back).
    pub merged: usize,
    /// PTE tables left as they are: their entries are not uniform (a hole,
    /// frames out of order, different flags), or the CPU has no large
    /// pages (2-level without PSE).
    pub kept: usize,
}

/// What [`Mapper::merge_block`] found in one large-page block.
pub(crate) enum BlockMerge {
    /// No PTE table there (a large page, or nothing mapped).
    NoTable,
    /// A PTE table whose entries are not uniform: left as it is.
    Kept,
    /// Merged: the unlinked, flushed table, for the caller to free.
    Merged(PhysFrame),
}

/// A split the check pass decided on.
#[derive(Clone, Copy)]
struct Split<E> {
    slot: Slot,
    large: E,
    base: VirtAddr,
}

impl<M: PagingMode, A: TableAccess, H: TableHooks> Mapper<M, A, H> {
    /// Change the attributes of every page in `[start, start + len)`, even
    /// inside large pages (Linux's `set_memory_ro/rw/nx/x/wc/uc`).
    ///
    /// A large page the range cuts is split first into a PTE table that
    /// keeps every attribute of the large page, then only the pages in the
    /// range change; a large page wholly inside the range changes whole.
    /// Every TLB invalidation the change needs is done here through `tlb`
    /// (the split needs one between its two steps): see the
    /// [module docs](crate::mapper#changing-attributes-inside-large-pages-the-sequence) for the sequence. `alloc` gives the PTE tables
    /// (from [`pte_zone`](Self::pte_zone)); at most two per call.
    ///
    /// Checked before the first write, each with nothing changed and every
    /// frame given back: alignment, the range mapped throughout
    /// ([`AttrError::NotMapped`]), flags the mode or CPU cannot carry, a
    /// memory type the layout lacks, a large page whose bits 4 KiB entries
    /// cannot carry, a table entry that would have to widen other
    /// mappings, and the allocator (out of frames or out of reach).
    ///
    /// The one state that is not "nothing changed": if a table access fails
    /// *after* a split is linked (which a [`TableAccess`] keeping its
    /// contract does not do: every table was reached during the checks),
    /// the split stays, with every page translated exactly as before and
    /// the TLB flushed, and the attributes are unchanged.
    ///
    /// In 2-level mode a kernel whose large PDEs are copied into other
    /// page directories must point those copies at the new table too: use
    /// [`KernelSync::set_memory`](crate::KernelSync::set_memory), which
    /// does this call and rewrites every registered copy in the right
    /// order. In PAE the kernel PMD tables are usually shared and nothing
    /// more is needed.
    pub fn set_memory<T, F>(
        &mut self,
        start: impl Into<VirtAddr>,
        len: u64,
        change: AttrChange,
        tlb: &T,
        alloc: &mut F,
    ) -> Result<AttrStats, AttrError>
    where
        T: TlbOps + ?Sized,
        F: FrameAllocator + ?Sized,
    {
        let start = start.into();
        let end = page_range_end(start, len)?;
        let (clear, set) = self.resolve(change)?;
        let mut stats = AttrStats::default();
        if len == 0 {
            return Ok(stats);
        }
        // The flags checks protect_range makes, before anything else.
        self.check_leaf_flags(set)?;

        // Check: mapped throughout, splits possible, widenings allowed.
        let span = M::pmd_span();
        let mut splits: [Option<Split<M::Pmd>>; MAX_SPLITS] = [None; MAX_SPLITS];
        let mut count = 0;
        for (lo, hi) in Self::pmd_blocks(start.as_u64(), end) {
            let va = VirtAddr::new(lo as u32);
            let Some((slot, pmd)) = self.leaf_pmd(va)? else {
                return Err(AttrError::NotMapped {
                    va,
                    level: Level::Pmd,
                });
            };
            if pmd.is_large() {
                if lo % span == 0 && hi - lo == span {
                    continue;
                }
                self.check_splittable(va, pmd)?;
                // Only the first and the last block can be partial.
                if let Some(free) = splits.get_mut(count) {
                    *free = Some(Split {
                        slot,
                        large: pmd,
                        base: va.align_down(span),
                    });
                }
                count += 1;
                continue;
            }
            let table = reach(
                self.walker.access(),
                PhysFrame::containing_address(pmd.addr()),
            )?;
            let first = M::pte_index(va);
            for i in first..first + ((hi - lo) / PAGE_SIZE) as usize {
                if !M::Pte::load(&table, i).is_present() {
                    return Err(AttrError::NotMapped {
                        va: VirtAddr::new((lo + (i - first) as u64 * PAGE_SIZE) as u32),
                        level: Level::Pte,
                    });
                }
            }
            drop(table);
            self.widening_for_range(lo, hi, pmd, clear, set)?;
        }

        // Take and fill every table before the first write to a live entry.
        let mut frames: [Option<PhysFrame>; MAX_SPLITS] = [None; MAX_SPLITS];
        let taken = (|| {
            for (i, split) in splits.iter().flatten().enumerate() {
                let frame = take_table_frame(alloc, self.pte_zone, self.phys_bits())
                    .map_err(|e| attr_from_map(e, set))?;
                frames[i] = Some(frame);
                self.fill_split_table(frame, split.large)?;
                M::Pmd::table(frame, split.large.flags().contains(MapFlags::USER)).map_err(
                    |_| AttrError::TableOutOfReach {
                        frame,
                        max_bits: self.phys_bits(),
                    },
                )?;
            }
            Ok(())
        })();
        if let Err(e) = taken {
            for frame in frames.into_iter().flatten() {
                // SAFETY: taken above and never linked: no MMU can reach it.
                unsafe { alloc.deallocate_frame(frame) };
            }
            return Err(e);
        }

        // Link, then invalidate every page of each split large page.
        for (split, frame) in splits.iter().flatten().zip(frames.into_iter().flatten()) {
            self.hooks.table_allocated(frame, Level::Pte);
            let user = split.large.flags().contains(MapFlags::USER);
            let entry = M::Pmd::table(frame, user).map_err(|_| AttrError::TableOutOfReach {
                frame,
                max_bits: self.phys_bits(),
            })?;
            let old = self.write(split.slot, Level::Pmd, entry)?;
            let extra = old.flags().difference(split.large.flags()) & STATUS;
            if !extra.is_empty() {
                self.merge_status_into_ptes(frame, extra)?;
            }
            stats.split += 1;
        }
        for split in splits.iter().flatten() {
            tlb.flush_range(split.base, (span / PAGE_SIZE) as u32);
        }

        // Only now change what was asked, and invalidate it.
        let (protected, flush) = self.protect_range(start, len, clear, set)?;
        flush.flush(tlb);
        stats.pages = protected.pages;
        stats.large_pages = protected.large_pages;
        stats.changed = protected.changed;
        Ok(stats)
    }

    /// Merge every PTE table in `[start, start + len)` whose entries are
    /// uniform again (all present, contiguous frames from a base aligned to
    /// the large-page size, identical flags apart from A/D) into one large
    /// page, and give the table back to `alloc` after the flush; the
    /// inverse of the split [`set_memory`](Self::set_memory) makes. The
    /// large entry translates every address exactly as the PTEs did: its
    /// rights are the PTEs' ANDed with the table entry's (XD ORed), its A
    /// and D bits the OR of the PTEs'. Only large-page blocks wholly inside
    /// the range are looked at; tables that are not uniform are kept (and
    /// counted). See the [module docs](crate::mapper#changing-attributes-inside-large-pages-the-sequence) for the sequence.
    ///
    /// The table must be linked by this hierarchy only (the same rule as
    /// [`free_empty_tables`](Self::free_empty_tables)): in 2-level mode a
    /// kernel that copied the table entry into other page directories
    /// merges through
    /// [`KernelSync::merge_large_pages`](crate::KernelSync::merge_large_pages),
    /// which frees the table only once every registered copy holds the
    /// large entry.
    ///
    /// Errors: [`AttrError::Unaligned`], [`AttrError::VirtOutOfRange`],
    /// [`AttrError::Access`]: a table not reached while a block is checked
    /// leaves that block unchanged (blocks before it stay merged); one not
    /// reached after the block's large entry is written (which a
    /// [`TableAccess`] keeping its contract does not do: the same table was
    /// just read) leaves the block merged and flushed, its old PTE table
    /// not given back, and A/D bits the CPU set in it after the check not
    /// carried into the large entry.
    pub fn merge_large_pages<T, F>(
        &mut self,
        start: impl Into<VirtAddr>,
        len: u64,
        tlb: &T,
        alloc: &mut F,
    ) -> Result<MergeStats, AttrError>
    where
        T: TlbOps + ?Sized,
        F: FrameAllocator + ?Sized,
    {
        let start = start.into();
        let end = page_range_end(start, len)?;
        let span = M::pmd_span();
        let mut stats = MergeStats::default();
        for (lo, hi) in Self::pmd_blocks(start.as_u64(), end) {
            if lo % span != 0 || hi - lo != span {
                continue;
            }
            match self.merge_block(VirtAddr::new(lo as u32), tlb)? {
                BlockMerge::Merged(table_frame) => {
                    // SAFETY: unlinked and flushed by `merge_block`; the
                    // table was this hierarchy's own (the documented rule),
                    // so no MMU reaches it.
                    unsafe { alloc.deallocate_frame(table_frame) };
                    stats.merged += 1;
                }
                BlockMerge::Kept => stats.kept += 1,
                BlockMerge::NoTable => {}
            }
        }
        Ok(stats)
    }

    /// Merge the PTE table of the large-page block at `va` (aligned), if
    /// there is one and it is uniform: the large entry written, the block
    /// flushed, late A/D bits carried over, and the table handed back
    /// unlinked (for the caller to free once nothing else links it).
    pub(crate) fn merge_block<T: TlbOps + ?Sized>(
        &mut self,
        va: VirtAddr,
        tlb: &T,
    ) -> Result<BlockMerge, AttrError> {
        let span = M::pmd_span();
        let Some((slot, pmd)) = self.leaf_pmd(va)? else {
            return Ok(BlockMerge::NoTable);
        };
        if pmd.is_large() {
            return Ok(BlockMerge::NoTable);
        }
        let Some(large) = self.uniform_large(pmd)? else {
            return Ok(BlockMerge::Kept);
        };
        let table_frame = PhysFrame::containing_address(pmd.addr());
        self.write(slot, Level::Pmd, large)?;
        // Drops the large page's small translations and the
        // paging-structure caches' pointer to the table.
        tlb.flush_range(va, (span / PAGE_SIZE) as u32);
        // A/D bits the CPU set in the PTEs before the flush.
        let table = reach(self.walker.access(), table_frame)?;
        let mut status = MapFlags::empty();
        for i in 0..M::PTRS_PER_PTE {
            status |= M::Pte::load(&table, i).flags() & STATUS;
        }
        drop(table);
        let extra = status.difference(large.flags());
        if !extra.is_empty() {
            let with = M::Pmd::large(large.addr(), large.flags() | extra)
                .map_err(|_| AttrError::Unsupported(extra))?;
            self.reprotect_status(slot, with)?;
        }
        self.hooks.table_released(table_frame, Level::Pte);
        Ok(BlockMerge::Merged(table_frame))
    }

    /// The `(clear, set)` flags of `change` on this mapper's CPU, with the
    /// flags checks `protect_range` makes: what `set_memory` refuses
    /// whatever the range.
    pub(crate) fn checked_change(
        &self,
        change: AttrChange,
    ) -> Result<(MapFlags, MapFlags), AttrError> {
        let (clear, set) = self.resolve(change)?;
        self.check_leaf_flags(set)?;
        Ok((clear, set))
    }

    /// Whether a leaf can carry `set` (in both sizes).
    fn check_leaf_flags(&self, set: MapFlags) -> Result<(), AttrError> {
        let leaf = self
            .leaf_flags(set | MapFlags::PRESENT, PageSize::Size4KiB)
            .map_err(|e| attr_from_map(e, set))?;
        let probe = PhysFrame::containing_address(PhysAddr::ZERO);
        if M::Pte::page(probe, leaf).is_err() || M::Pmd::large(PhysAddr::ZERO, leaf).is_err() {
            return Err(AttrError::Unsupported(set));
        }
        Ok(())
    }

    /// The `(clear, set)` flags of `change` on this mapper's CPU.
    fn resolve(&self, change: AttrChange) -> Result<(MapFlags, MapFlags), AttrError> {
        let clear = change.clear.difference(STATUS | MapFlags::PRESENT);
        let mut set = change.set.difference(STATUS);
        if let Some((cache, layout)) = change.cache {
            let bits = if self.features().pat {
                layout.flags_for(cache).map_err(AttrError::Cache)?
            } else {
                // Without the PAT, PCD and PWT select entries 0-3 of the
                // power-on layout, and nothing else can be had.
                PatLayout::POWER_ON
                    .flags_for(cache)
                    .map_err(|_| AttrError::MissingFeature(crate::CpuFeature::Pat))?
            };
            set = set.difference(MapFlags::CACHE_BITS) | bits;
        }
        Ok((clear, set))
    }

    /// Whether the large entry `pmd` can become 4 KiB entries that keep
    /// every bit: its flags rebuild it exactly, and each PTE can be built.
    fn check_splittable(&self, va: VirtAddr, pmd: M::Pmd) -> Result<(), AttrError> {
        let refused = AttrError::Unsplittable { va, raw: pmd.raw() };
        let flags = pmd.flags();
        match M::Pmd::large(pmd.addr(), flags) {
            Ok(rebuilt) if rebuilt == pmd => {}
            _ => return Err(refused),
        }
        let last = pmd.addr().as_u64() + M::pmd_span() - PAGE_SIZE;
        if last >> self.phys_bits() != 0 {
            return Err(refused);
        }
        for addr in [pmd.addr().as_u64(), last] {
            let frame = PhysFrame::containing_address(PhysAddr::new_truncate(addr));
            if M::Pte::page(frame, flags).is_err() {
                return Err(refused);
            }
        }
        Ok(())
    }

    /// Write the PTE table in `frame` (not linked) so that it maps what the
    /// large entry `large` maps, page by page, with the same flags.
    fn fill_split_table(&self, frame: PhysFrame, large: M::Pmd) -> Result<(), AttrError> {
        let table = reach(self.walker.access(), frame)?;
        let flags = large.flags();
        let first = PhysFrame::containing_address(large.addr());
        let template = M::Pte::page(first, flags).map_err(|_| AttrError::Unsupported(flags))?;
        let base = large.addr().as_u64();
        for i in 0..M::PTRS_PER_PTE {
            let pa = PhysAddr::new_truncate(base + i as u64 * PAGE_SIZE);
            M::Pte::init(&table, i, template.with_addr(pa));
        }
        Ok(())
    }

    /// OR `extra` (A/D) into every PTE of the live table in `frame`, keeping
    /// what the CPU sets meanwhile (each retry adds a bit, so it ends).
    fn merge_status_into_ptes(&self, frame: PhysFrame, extra: MapFlags) -> Result<(), AttrError> {
        let table = reach(self.walker.access(), frame)?;
        for i in 0..M::PTRS_PER_PTE {
            let old = M::Pte::load(&table, i);
            let page = PhysFrame::containing_address(old.addr());
            let mut add = extra | (old.flags() & STATUS);
            loop {
                let want = M::Pte::page(page, old.flags() | add)
                    .map_err(|_| AttrError::Unsupported(extra))?;
                let prev = M::Pte::store(&table, i, want);
                self.hooks
                    .entry_written(frame, Level::Pte, i, prev.raw(), want.raw());
                let lost = (prev.flags() & STATUS).difference(add);
                if lost.is_empty() {
                    break;
                }
                add |= lost;
            }
        }
        Ok(())
    }

    /// Store `with` over the large entry at `slot`, keeping A/D bits the CPU
    /// sets meanwhile (each retry adds a bit, so it ends).
    fn reprotect_status(&self, slot: Slot, with: M::Pmd) -> Result<(), AttrError> {
        let mut want = with;
        loop {
            let prev = self.write(slot, Level::Pmd, want)?;
            let lost = (prev.flags() & STATUS).difference(want.flags());
            if lost.is_empty() {
                return Ok(());
            }
            want = M::Pmd::large(want.addr(), want.flags() | lost)
                .map_err(|_| AttrError::Unsupported(lost))?;
        }
    }

    /// The large entry that translates every address exactly as the PTE
    /// table under `pmd` does, if its entries are uniform and the CPU has
    /// large pages.
    fn uniform_large(&self, pmd: M::Pmd) -> Result<Option<M::Pmd>, AttrError> {
        if !self.features().large_pages::<M>() {
            return Ok(None);
        }
        let table = reach(
            self.walker.access(),
            PhysFrame::containing_address(pmd.addr()),
        )?;
        let first = M::Pte::load(&table, 0);
        let base = first.addr().as_u64();
        if !first.is_present() || base % M::pmd_span() != 0 {
            return Ok(None);
        }
        let want = first.flags().difference(STATUS);
        let mut status = MapFlags::empty();
        for i in 0..M::PTRS_PER_PTE {
            let pte = M::Pte::load(&table, i);
            if !pte.is_present()
                || pte.addr().as_u64() != base + i as u64 * PAGE_SIZE
                || pte.flags().difference(STATUS) != want
            {
                return Ok(None);
            }
            status |= pte.flags() & STATUS;
        }
        drop(table);
        // Effective rights through the table entry (SDM 4.6: R/W and U/S
        // ANDed, XD ORed).
        let rights = pmd.table_rights();
        let mut flags = want | status;
        for right in [MapFlags::WRITABLE, MapFlags::USER] {
            if !rights.contains(right) {
                flags.remove(right);
            }
        }
        if rights.contains(MapFlags::NO_EXECUTE) {
            flags |= MapFlags::NO_EXECUTE;
        }
        Ok(M::Pmd::large(PhysAddr::new_truncate(base), flags).ok())
    }
}

/// The attribute error for a map-style check.
fn attr_from_map(e: MapError, set: MapFlags) -> AttrError {
    match e {
        MapError::MissingFeature(feature) => AttrError::MissingFeature(feature),
        MapError::OutOfFrames => AttrError::OutOfFrames,
        MapError::TableOutOfReach { frame, max_bits } => {
            AttrError::TableOutOfReach { frame, max_bits }
        }
        MapError::Access(e) => AttrError::Access(e),
        MapError::TableRestricts { va, level, raw } => AttrError::TableRestricts { va, level, raw },
        _ => AttrError::Unsupported(set),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::AccessError;

    #[test]
    fn a_map_style_error_keeps_its_meaning_as_an_attribute_error() {
        // Every error with an attribute twin becomes that twin (today's
        // callers pass only the first four kinds); the rest are the flags
        // the change asked for, refused.
        let set = MapFlags::WRITABLE;
        let frame = PhysFrame::containing_address(PhysAddr::new_truncate(0x5000));
        let va = VirtAddr::new(0x4000_0000);
        let cases = [
            (
                MapError::MissingFeature(crate::CpuFeature::NoExecute),
                AttrError::MissingFeature(crate::CpuFeature::NoExecute),
            ),
            (MapError::OutOfFrames, AttrError::OutOfFrames),
            (
                MapError::TableOutOfReach {
                    frame,
                    max_bits: 32,
                },
                AttrError::TableOutOfReach {
                    frame,
                    max_bits: 32,
                },
            ),
            (
                MapError::Access(AccessError::NoSlot),
                AttrError::Access(AccessError::NoSlot),
            ),
            (
                MapError::TableRestricts {
                    va,
                    level: Level::Pmd,
                    raw: 0x61,
                },
                AttrError::TableRestricts {
                    va,
                    level: Level::Pmd,
                    raw: 0x61,
                },
            ),
            (
                MapError::Unsupported(MapFlags::NO_EXECUTE),
                AttrError::Unsupported(set),
            ),
        ];
        for (map, attr) in cases {
            assert_eq!(attr_from_map(map, set), attr, "{map:?}");
        }
    }
}
