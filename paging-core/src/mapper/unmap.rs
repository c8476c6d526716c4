//! Removing and changing mappings, and freeing tables that became empty.

use super::Mapper;
use crate::access::{TableAccess, reach};
use crate::addr::{PAGE_SIZE, PageSize, PhysAddr, PhysFrame, VirtAddr};
use crate::alloc::FrameAllocator;
use crate::entry::{Entry, Level, PmdEntry, PteEntry};
use crate::error::{FreeError, MapError, UnmapError};
use crate::flags::MapFlags;
use crate::flush::{Flush, TlbOps};
use crate::hooks::TableHooks;
use crate::mode::PagingMode;
use crate::walk::Slot;

/// What an unmap removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unmapped {
    /// First byte of the page that was mapped.
    pub base: PhysAddr,
    /// Its size.
    pub size: PageSize,
    /// The entry's flags at the moment it was cleared, including the
    /// Accessed/Dirty bits the CPU had set.
    pub flags: MapFlags,
}

/// How many tables [`Mapper::free_empty_tables`] freed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FreeStats {
    /// PTE tables freed.
    pub pte_tables: usize,
    /// PMD tables freed (PAE only).
    pub pmd_tables: usize,
}

/// The leaf entry that maps `va`.
enum Leaf<M: PagingMode> {
    Large(Slot, M::Pmd),
    Small(Slot, M::Pmd, Slot, M::Pte),
}

/// Tables unlinked but not yet released: they are released only after the
/// TLB (and paging-structure caches) can no longer reach them.
const PENDING: usize = 16;

struct Pending {
    frames: [(PhysFrame, Level, VirtAddr); PENDING],
    len: usize,
    reload_cr3: bool,
}

pub(super) fn map_to_update_error(e: MapError, flags: MapFlags) -> UnmapError {
    match e {
        MapError::Access(e) => UnmapError::Access(e),
        MapError::TableRestricts { va, level, raw } => {
            UnmapError::TableRestricts { va, level, raw }
        }
        MapError::MissingFeature(feature) => UnmapError::MissingFeature(feature),
        _ => UnmapError::Unsupported(flags),
    }
}

impl<M: PagingMode, A: TableAccess, H: TableHooks> Mapper<M, A, H> {
    /// The present leaf entry for the mapping that starts at `va`.
    fn leaf(&self, va: VirtAddr) -> Result<Leaf<M>, UnmapError> {
        if !va.is_aligned(PAGE_SIZE) {
            return Err(UnmapError::Unaligned { addr: va });
        }
        let walk = self.walker.walk(va)?;
        let Some((pmd_slot, pmd)) = walk
            .pmd
            .filter(|_| M::PMD_FOLDED || walk.pgd.1.is_present())
        else {
            return Err(UnmapError::NotMapped {
                va,
                level: Level::Pgd,
            });
        };
        if !pmd.is_present() {
            return Err(UnmapError::NotMapped {
                va,
                level: Level::Pmd,
            });
        }
        if pmd.is_large() {
            let base = va.align_down(M::LARGE_PAGE_SIZE.bytes());
            if base != va {
                return Err(UnmapError::InLargePage {
                    va,
                    base,
                    size: M::LARGE_PAGE_SIZE,
                });
            }
            return Ok(Leaf::Large(pmd_slot, pmd));
        }
        match walk.pte {
            Some((slot, pte)) if pte.is_present() => Ok(Leaf::Small(pmd_slot, pmd, slot, pte)),
            _ => Err(UnmapError::NotMapped {
                va,
                level: Level::Pte,
            }),
        }
    }

    /// Remove the mapping (4 KiB, or large at its base) that starts at `va`.
    ///
    /// Returns what was mapped and the flush the TLB needs. Tables are not
    /// freed here; see [`free_empty_tables`](Self::free_empty_tables).
    ///
    /// `at` is a [`Page`](crate::Page) or a 4 KiB-aligned [`VirtAddr`].
    pub fn unmap(&mut self, at: impl Into<VirtAddr>) -> Result<(Unmapped, Flush), UnmapError> {
        let va = at.into();
        let unmapped = match self.leaf(va)? {
            Leaf::Large(slot, _) => {
                let old = self.write(slot, Level::Pmd, M::Pmd::NONE)?;
                Unmapped {
                    base: old.addr(),
                    size: M::LARGE_PAGE_SIZE,
                    flags: old.flags(),
                }
            }
            Leaf::Small(_, _, slot, _) => {
                let old = self.write(slot, Level::Pte, M::Pte::NONE)?;
                Unmapped {
                    base: old.addr(),
                    size: PageSize::Size4KiB,
                    flags: old.flags(),
                }
            }
        };
        // `invlpg` of any address in a large page drops all of its TLB
        // entries (SDM 4.10.4.1), so one page flush covers both sizes.
        Ok((unmapped, Flush::page(va)))
    }

    /// Replace the flags of the mapping (4 KiB, or large at its base) that
    /// starts at `va`. Accessed and Dirty are carried over from the old entry
    /// (as Linux's `pte_modify` does); every other flag comes from `flags`
    /// (`PRESENT` is added). Flags the bound CPU cannot carry are
    /// [`UnmapError::MissingFeature`]. The entry is replaced with one atomic 64-bit
    /// exchange in PAE mode.
    ///
    /// `at` is a [`Page`](crate::Page) or a 4 KiB-aligned [`VirtAddr`].
    pub fn update_flags(
        &mut self,
        at: impl Into<VirtAddr>,
        flags: MapFlags,
    ) -> Result<Flush, UnmapError> {
        let va = at.into();
        let flags = self
            .leaf_flags(flags | MapFlags::PRESENT, PageSize::Size4KiB)
            .map_err(|e| map_to_update_error(e, flags))?;
        let status = MapFlags::ACCESSED | MapFlags::DIRTY;
        let flush = match self.leaf(va)? {
            Leaf::Large(slot, old) => {
                let entry = |old: M::Pmd| M::Pmd::large(old.addr(), flags | (old.flags() & status));
                let new = entry(old).map_err(|_| UnmapError::Unsupported(flags))?;
                let prev = self.write(slot, Level::Pmd, new)?;
                if prev != old {
                    // The CPU set A/D between our read and the exchange.
                    let merged = entry(prev).map_err(|_| UnmapError::Unsupported(flags))?;
                    self.write(slot, Level::Pmd, merged)?;
                }
                Flush::page(va)
            }
            Leaf::Small(pmd_slot, pmd, slot, old) => {
                let frame = PhysFrame::containing_address(old.addr());
                let entry = |old: M::Pte| M::Pte::page(frame, flags | (old.flags() & status));
                let new = entry(old).map_err(|_| UnmapError::Unsupported(flags))?;
                // Every check before the first write: the table entry above
                // may only be widened if no other leaf below gains by it.
                let widen = self
                    .widen_for(va, pmd, flags, Some(slot.index))
                    .map_err(|e| map_to_update_error(e, flags))?;
                let prev = self.write(slot, Level::Pte, new)?;
                if prev != old {
                    let merged = entry(prev).map_err(|_| UnmapError::Unsupported(flags))?;
                    self.write(slot, Level::Pte, merged)?;
                }
                Flush::page(va).and(
                    self.write_widened(pmd_slot, widen, va)
                        .map_err(|e| map_to_update_error(e, flags))?,
                )
            }
        };
        Ok(flush)
    }

    /// Free every PTE table (and, in PAE mode, every PMD table) that maps
    /// nothing and whose whole span lies inside `[start, start + len)`.
    ///
    /// Each table is unlinked, the TLB and paging-structure caches are
    /// flushed through `tlb`, and only then is it announced to the hooks and
    /// given back to `alloc`: no CPU can still walk a freed table. That
    /// ordering is why this call takes the TLB instead of returning a token.
    /// Never call it on a range whose tables are shared with another
    /// hierarchy (the kernel half) unless every sharer is done with them:
    /// on a hierarchy a CPU uses, that is part of the binding contract of
    /// [`Mapper::new`] (issue 19, item 7; `tests/frame_contracts.rs` shows
    /// on the model what the other hierarchy walks otherwise).
    pub fn free_empty_tables<T, F>(
        &mut self,
        start: VirtAddr,
        len: u64,
        tlb: &T,
        alloc: &mut F,
    ) -> Result<FreeStats, FreeError>
    where
        T: TlbOps + ?Sized,
        F: FrameAllocator + ?Sized,
    {
        for v in [start.as_u64(), len] {
            if v % PAGE_SIZE != 0 {
                return Err(FreeError::Unaligned { addr: v });
            }
        }
        let end = start.as_u64() + len;
        if end > 1 << 32 {
            return Err(FreeError::VirtOutOfRange { start, len });
        }
        let mut stats = FreeStats::default();
        let mut pending = Pending {
            frames: [(
                PhysFrame::containing_address(PhysAddr::ZERO),
                Level::Pte,
                VirtAddr::ZERO,
            ); PENDING],
            len: 0,
            reload_cr3: false,
        };
        let result = self.free_pass(start.as_u64(), end, tlb, alloc, &mut pending, &mut stats);
        self.release_pending(tlb, alloc, &mut pending, &mut stats);
        result.map(|()| stats)
    }

    fn free_pass<T, F>(
        &mut self,
        start: u64,
        end: u64,
        tlb: &T,
        alloc: &mut F,
        pending: &mut Pending,
        stats: &mut FreeStats,
    ) -> Result<(), FreeError>
    where
        T: TlbOps + ?Sized,
        F: FrameAllocator + ?Sized,
    {
        // PTE tables: one per PMD entry.
        let span = M::pmd_span();
        let mut block = start.next_multiple_of(span);
        while block + span <= end {
            let va = VirtAddr::new(block as u32);
            let walk = self.walker.walk(va)?;
            if let Some((slot, pmd)) = walk.pmd
                && (M::PMD_FOLDED || walk.pgd.1.is_present())
                && pmd.is_present()
                && !pmd.is_large()
            {
                let frame = PhysFrame::containing_address(pmd.addr());
                if self.table_is_empty::<M::Pte>(frame, M::PTRS_PER_PTE)? {
                    self.write(slot, Level::Pmd, M::Pmd::NONE)?;
                    self.defer_release(tlb, alloc, pending, stats, (frame, Level::Pte, va));
                }
            }
            block += span;
        }
        if M::PMD_FOLDED {
            return Ok(());
        }
        // PMD tables: one per PGD entry (PAE).
        let span = M::pgd_span();
        let mut block = start.next_multiple_of(span);
        while block + span <= end {
            let va = VirtAddr::new(block as u32);
            let slot = self.walker.pgd_slot(va);
            let pgd: M::Pgd = slot.read(self.walker.access())?;
            if pgd.is_present() {
                let frame = PhysFrame::containing_address(pgd.addr());
                if self.table_is_empty::<M::Pmd>(frame, M::PTRS_PER_PMD)? {
                    self.write(slot, Level::Pgd, <M::Pgd as Entry>::NONE)?;
                    pending.reload_cr3 |= M::PGD_LATCHED;
                    self.defer_release(tlb, alloc, pending, stats, (frame, Level::Pmd, va));
                }
            }
            block += span;
        }
        Ok(())
    }

    fn table_is_empty<E: Entry>(
        &self,
        frame: PhysFrame,
        entries: usize,
    ) -> Result<bool, FreeError> {
        let table = reach(self.walker.access(), frame)?;
        Ok((0..entries).all(|i| E::load(&table, i).is_none()))
    }

    fn defer_release<T, F>(
        &self,
        tlb: &T,
        alloc: &mut F,
        pending: &mut Pending,
        stats: &mut FreeStats,
        table: (PhysFrame, Level, VirtAddr),
    ) where
        T: TlbOps + ?Sized,
        F: FrameAllocator + ?Sized,
    {
        if pending.len == PENDING {
            self.release_pending(tlb, alloc, pending, stats);
        }
        pending.frames[pending.len] = table;
        pending.len += 1;
    }

    /// Flush, then release every pending table.
    fn release_pending<T, F>(
        &self,
        tlb: &T,
        alloc: &mut F,
        pending: &mut Pending,
        stats: &mut FreeStats,
    ) where
        T: TlbOps + ?Sized,
        F: FrameAllocator + ?Sized,
    {
        if pending.len == 0 && !pending.reload_cr3 {
            return;
        }
        if pending.reload_cr3 {
            tlb.flush_all();
        }
        // `invlpg` also drops the paging-structure-cache entries for the
        // address, which is what may still point at an unlinked table.
        for &(_, _, va) in &pending.frames[..pending.len] {
            tlb.flush_page(va);
        }
        for &(frame, level, _) in &pending.frames[..pending.len] {
            self.hooks.table_released(frame, level);
            // SAFETY: unlinked and flushed above (every CPU's TLB and
            // paging-structure caches); the table was this hierarchy's own.
            unsafe { alloc.deallocate_frame(frame) };
            match level {
                Level::Pmd => stats.pmd_tables += 1,
                _ => stats.pte_tables += 1,
            }
        }
        pending.len = 0;
        pending.reload_cr3 = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::AccessError;

    #[test]
    fn a_map_style_error_keeps_its_meaning_as_an_update_error() {
        // Every error with an update twin becomes that twin; the rest are
        // the flags the call asked for, refused.
        let flags = MapFlags::WRITABLE;
        let va = VirtAddr::new(0x4000_0000);
        let cases = [
            (
                MapError::Access(AccessError::NoSlot),
                UnmapError::Access(AccessError::NoSlot),
            ),
            (
                MapError::TableRestricts {
                    va,
                    level: Level::Pmd,
                    raw: 0x61,
                },
                UnmapError::TableRestricts {
                    va,
                    level: Level::Pmd,
                    raw: 0x61,
                },
            ),
            (
                MapError::MissingFeature(crate::CpuFeature::Pat),
                UnmapError::MissingFeature(crate::CpuFeature::Pat),
            ),
            (
                MapError::Unsupported(MapFlags::NO_EXECUTE),
                UnmapError::Unsupported(flags),
            ),
            (MapError::OutOfFrames, UnmapError::Unsupported(flags)),
        ];
        for (map, update) in cases {
            assert_eq!(map_to_update_error(map, flags), update, "{map:?}");
        }
    }
}
