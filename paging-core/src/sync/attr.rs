//! [`KernelSync::set_memory`] and [`KernelSync::merge_large_pages`]: see
//! the [`sync`](super) module docs, "Changing a kernel large page in every
//! directory".

use core::fmt;

use crate::access::{AccessError, TableAccess, reach};
use crate::addr::{PAGE_SIZE, PhysAddr, PhysFrame, VirtAddr};
use crate::alloc::FrameAllocator;
use crate::entry::{Entry, PmdEntry, PteEntry};
use crate::error::AttrError;
use crate::flags::MapFlags;
use crate::flush::TlbOps;
use crate::hooks::TableHooks;
use crate::mapper::{AttrChange, AttrStats, BlockMerge, Mapper, MergeStats};
use crate::mode::PagingMode;
use crate::table::RawTable;

use super::{KernelSync, SyncError, same_entry, sync_point};

/// The Accessed and Dirty bits.
const STATUS: MapFlags = MapFlags::ACCESSED.union(MapFlags::DIRTY);

/// What [`KernelSync::set_memory`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SyncedAttrStats {
    /// What the change did in the reference (splits, pages, changed leaves).
    pub attrs: AttrStats,
    /// Copies of a reference entry rewritten in registered directories.
    pub copies: usize,
}

/// What [`KernelSync::merge_large_pages`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SyncedMergeStats {
    /// What the merge did in the reference.
    pub merge: MergeStats,
    /// Copies of a reference entry rewritten in registered directories.
    pub copies: usize,
}

impl fmt::Display for SyncedAttrStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} split, {} pages and {} large pages changed ({} entries), {} copies updated",
            self.attrs.split,
            self.attrs.pages,
            self.attrs.large_pages,
            self.attrs.changed,
            self.copies
        )
    }
}

impl<M: PagingMode, A: TableAccess, H: TableHooks, const CAP: usize> KernelSync<M, A, H, CAP> {
    /// The size of the span one synchronised entry covers: a PGD entry in
    /// 2-level mode, a (private) PMD entry in PAE.
    fn copy_span() -> u64 {
        if M::PMD_FOLDED {
            M::pgd_span()
        } else {
            M::pmd_span()
        }
    }

    /// The start of every copy span of `[start, end)` inside the kernel
    /// half.
    fn copy_spans(
        &self,
        start: u64,
        end: u64,
    ) -> impl Iterator<Item = VirtAddr> + use<M, A, H, CAP> {
        let span = Self::copy_span();
        let from = start.max(self.kernel_start.as_u64()) / span * span;
        let to = end.min(1 << 32);
        (from..to)
            .step_by(span as usize)
            .map(|at| VirtAddr::new(at as u32))
    }

    fn check_reference<MA: TableAccess, MH: TableHooks>(
        &self,
        mapper: &Mapper<M, MA, MH>,
    ) -> Result<(), SyncError> {
        if mapper.root() == self.reference {
            Ok(())
        } else {
            Err(SyncError::NotReference {
                root: mapper.root(),
                reference: self.reference,
            })
        }
    }

    /// Every registered directory's copy in `[start, end)` is empty or
    /// equal to the reference's entry (nothing else may be overwritten),
    /// and no PAE directory has a private kernel PMD there.
    fn check_copies(&self, dirs: &[PhysAddr], start: u64, end: u64) -> Result<(), SyncError> {
        for va in self.copy_spans(start, end) {
            for &root in dirs {
                let Some((slot, want, _)) =
                    sync_point::<M, A>(&self.access, self.reference, root, va)?
                else {
                    continue;
                };
                if !M::PMD_FOLDED {
                    return Err(SyncError::PrivateKernelPmd { root, va });
                }
                let have = M::Pmd::load(&reach(&self.access, slot.table)?, slot.index);
                if !have.is_none() && !same_entry(have, M::Pmd::from_raw(want)) {
                    return Err(SyncError::Conflict { root, va });
                }
            }
        }
        Ok(())
    }

    /// Rewrite every registered directory's copy in `[start, end)` that
    /// differs from the reference's entry (after [`check_copies`], each is
    /// empty or the entry the reference had before the change), then flush
    /// each span that changed. Returns how many copies were written.
    ///
    /// Each copy keeps its own Accessed and Dirty bits: a large copy
    /// replaced by a large entry keeps them; a large copy replaced by a
    /// table (a split) hands them to the table's PTEs, as the split does
    /// with the bits the CPU set in the reference's own entry.
    fn rewrite_copies<T: TlbOps + ?Sized>(
        &self,
        dirs: &[PhysAddr],
        start: u64,
        end: u64,
        tlb: &T,
    ) -> Result<usize, SyncError> {
        let mut written = 0;
        for va in self.copy_spans(start, end) {
            let mut here = 0;
            for &root in dirs {
                let Some((slot, want, level)) =
                    sync_point::<M, A>(&self.access, self.reference, root, va)?
                else {
                    continue;
                };
                let want = M::Pmd::from_raw(want);
                let table = reach(&self.access, slot.table)?;
                let have = M::Pmd::load(&table, slot.index);
                if same_entry(have, want) {
                    continue;
                }
                let status = if have.is_present() && have.is_large() {
                    have.flags() & STATUS
                } else {
                    MapFlags::empty()
                };
                let new = if want.is_large() && !status.is_empty() {
                    M::Pmd::large(want.addr(), want.flags() | status).unwrap_or(want)
                } else {
                    want
                };
                let old = M::Pmd::store(&table, slot.index, new);
                drop(table);
                self.hooks
                    .entry_written(slot.table, level, slot.index, old.raw(), new.raw());
                if !want.is_large() && !status.is_empty() {
                    self.status_into_ptes(PhysFrame::containing_address(want.addr()), status)?;
                }
                here += 1;
            }
            if here > 0 {
                tlb.flush_range(va, (Self::copy_span() / PAGE_SIZE) as u32);
                written += here;
            }
        }
        Ok(written)
    }

    /// Set `status` (Accessed, Dirty) in every present PTE of `frame`, each
    /// with one compare-and-swap of the word that holds them (bits the CPU
    /// sets meanwhile are kept).
    fn status_into_ptes(&self, frame: PhysFrame, status: MapFlags) -> Result<(), AccessError> {
        let probe = PhysFrame::containing_address(PhysAddr::ZERO);
        let (Ok(with), Ok(plain)) = (
            M::Pte::page(probe, MapFlags::PRESENT | status),
            M::Pte::page(probe, MapFlags::PRESENT),
        ) else {
            return Ok(());
        };
        // A and D are bits 5 and 6 in both modes: in the low word.
        let bits = (with.raw() & !plain.raw()) as u32;
        let table = reach(&self.access, frame)?;
        for i in 0..M::PTRS_PER_PTE {
            let word = i * M::ENTRY_BYTES / 4;
            let mut cur = table.load32(word);
            while cur & 1 != 0 && cur & bits != bits {
                match table.compare_exchange32(word, cur, cur | bits) {
                    Ok(_) => break,
                    Err(now) => cur = now,
                }
            }
        }
        Ok(())
    }

    /// [`Mapper::set_memory`] on the reference directory, with every
    /// registered directory's copy of a changed kernel entry brought in
    /// step (see the
    /// [module docs](crate::sync#changing-a-kernel-large-page-in-every-directory)).
    ///
    /// `reference` is the mapper bound to this registry's reference
    /// directory ([`SyncError::NotReference`] otherwise). The sequence, all
    /// under the registry lock:
    ///
    /// 1. Check: every registered directory's copy in the range is empty
    ///    or equal to the reference's entry ([`SyncError::Conflict`]
    ///    otherwise, with nothing changed).
    /// 2. Split, in the reference, the large pages the range cuts, with no
    ///    attribute changed yet ([`Mapper::set_memory`] with an empty
    ///    change): every address translates as before through either size.
    /// 3. Point every copy at the new PTE table (it translates as the old
    ///    large copy did), and flush those spans on every CPU `tlb` reaches.
    ///    Now every directory walks the same PTE tables.
    /// 4. Change the attributes ([`Mapper::set_memory`], which flushes).
    /// 5. Rewrite the copies of large pages the range covers whole (changed
    ///    in the reference by step 4), and flush those spans.
    ///
    /// Errors of steps 2 and 4 are [`SyncError::Attr`], and leave what
    /// [`Mapper::set_memory`] documents: a failed step 4 leaves the splits
    /// of step 2, translating as before, in every directory.
    /// Only the kernel half (`[kernel_start, 4 GiB)`) has copies; a range
    /// below it is the reference's alone. Directories synchronised only
    /// lazily (never registered) are not reached: register every
    /// directory whose kernel half may hold large entries.
    pub fn set_memory<MA, MH, T, F>(
        &self,
        reference: &mut Mapper<M, MA, MH>,
        start: impl Into<VirtAddr>,
        len: u64,
        change: AttrChange,
        tlb: &T,
        alloc: &mut F,
    ) -> Result<SyncedAttrStats, SyncError>
    where
        MA: TableAccess,
        MH: TableHooks,
        T: TlbOps + ?Sized,
        F: FrameAllocator + ?Sized,
    {
        let start = start.into();
        self.check_reference(reference)?;
        // What the mapper refuses whatever the range, before the split.
        reference.checked_change(change).map_err(SyncError::Attr)?;
        let dirs = self.dirs.lock();
        let end = (start.as_u64() + len).min(1 << 32);
        self.check_copies(&dirs, start.as_u64(), end)?;
        let none = AttrChange::flags(MapFlags::empty(), MapFlags::empty());
        let split = reference
            .set_memory(start, len, none, tlb, alloc)
            .map_err(SyncError::Attr)?;
        let mut copies = self.rewrite_copies(&dirs, start.as_u64(), end, tlb)?;
        let mut attrs = reference
            .set_memory(start, len, change, tlb, alloc)
            .map_err(SyncError::Attr)?;
        attrs.split = split.split;
        copies += self.rewrite_copies(&dirs, start.as_u64(), end, tlb)?;
        Ok(SyncedAttrStats { attrs, copies })
    }

    /// [`Mapper::merge_large_pages`] on the reference directory, safe
    /// where directories copy kernel entries: each PTE table merged back
    /// into a large page is given back to `alloc` only once every
    /// registered directory's copy points at the large page and the span
    /// is flushed (through the mapper alone, the copies would still link
    /// the freed table).
    ///
    /// For each large-page block wholly inside the range, under the
    /// registry lock: the merge in the reference (which flushes), every
    /// copy rewritten to the large entry (each copy's own Accessed and
    /// Dirty bits are those of a table entry, which say nothing about the
    /// pages), a flush of the block, then the table freed.
    ///
    /// Errors: [`SyncError::NotReference`]; [`SyncError::Conflict`] (a
    /// copy in the range that is neither empty nor the reference's entry,
    /// checked before the first merge); [`SyncError::Attr`] for the
    /// merge's own errors (blocks before the failing one stay merged, in
    /// every directory). Only registered directories are reached.
    pub fn merge_large_pages<MA, MH, T, F>(
        &self,
        reference: &mut Mapper<M, MA, MH>,
        start: impl Into<VirtAddr>,
        len: u64,
        tlb: &T,
        alloc: &mut F,
    ) -> Result<SyncedMergeStats, SyncError>
    where
        MA: TableAccess,
        MH: TableHooks,
        T: TlbOps + ?Sized,
        F: FrameAllocator + ?Sized,
    {
        let start = start.into();
        self.check_reference(reference)?;
        let dirs = self.dirs.lock();
        let end = start.as_u64() + len;
        for v in [start.as_u64(), len] {
            if !v.is_multiple_of(PAGE_SIZE) {
                return Err(SyncError::Attr(AttrError::Unaligned {
                    addr: VirtAddr::new(v as u32),
                }));
            }
        }
        if end > 1 << 32 {
            return Err(SyncError::Attr(AttrError::VirtOutOfRange { start, len }));
        }
        self.check_copies(&dirs, start.as_u64(), end)?;
        let span = M::pmd_span();
        let mut stats = SyncedMergeStats::default();
        let mut at = start.as_u64().div_ceil(span) * span;
        while at + span <= end {
            match reference
                .merge_block(VirtAddr::new(at as u32), tlb)
                .map_err(SyncError::Attr)?
            {
                BlockMerge::Merged(frame) => {
                    stats.merge.merged += 1;
                    // If rewriting a copy fails, a copy may still link the
                    // table: it is leaked rather than freed while an MMU
                    // can walk it.
                    stats.copies += self.rewrite_copies(&dirs, at, at + span, tlb)?;
                    // SAFETY: the merge unlinked the table from the
                    // reference and flushed; every copy now holds the large
                    // entry (or was never a copy) and the span is flushed
                    // again: no directory links the table.
                    unsafe { alloc.deallocate_frame(frame) };
                }
                BlockMerge::Kept => stats.merge.kept += 1,
                BlockMerge::NoTable => {}
            }
            at += span;
        }
        Ok(stats)
    }
}
