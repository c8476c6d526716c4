//! Re-protecting a range: new rights (and software bits) for every present
//! leaf in it, checked as a whole before the first write, with one flush.

use super::Mapper;
use super::map::missing_rights;
use super::teardown::page_range_end;
use super::unmap::map_to_update_error;
use crate::access::{TableAccess, reach};
use crate::addr::{PAGE_SIZE, PageSize, PhysAddr, PhysFrame, VirtAddr};
use crate::entry::{Entry, EntryError, Level, PmdEntry, PteEntry};
use crate::error::UnmapError;
use crate::flags::MapFlags;
use crate::flush::Flush;
use crate::hooks::TableHooks;
use crate::mode::PagingMode;
use crate::table::RawTable;

/// What [`Mapper::protect_range`] went through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProtectStats {
    /// Present 4 KiB leaves in the range (each now has the new flags).
    pub pages: usize,
    /// Present large leaves in the range.
    pub large_pages: usize,
    /// Leaves whose entry actually changed.
    pub changed: usize,
    /// Table entries widened to let the new rights through.
    pub widened: usize,
}

/// Accessed and Dirty: the CPU's, carried over, never taken from the caller.
const STATUS: MapFlags = MapFlags::ACCESSED.union(MapFlags::DIRTY);

impl<M: PagingMode, A: TableAccess, H: TableHooks> Mapper<M, A, H> {
    /// Give every present leaf in `[start, start + len)` the flags
    /// `(old - clear) | set`: make a range read-only and mark it
    /// copy-on-write in one call
    /// (`clear = WRITABLE, set = SOFTWARE_0`), or take `USER` away.
    ///
    /// - Accessed and Dirty are carried over from each entry as
    ///   [`update_flags`](Self::update_flags) does: each entry is replaced
    ///   with one atomic exchange, and A/D bits the CPU set between the read
    ///   and the exchange are merged back. `ACCESSED`, `DIRTY` and `PRESENT`
    ///   in `clear` or `set` are ignored (use [`unmap_range`](Self::unmap_range)
    ///   to remove mappings).
    /// - Holes, and non-present entries even if they hold data (swap
    ///   entries), are left alone.
    /// - A large page inside the range is re-protected whole; one that
    ///   sticks out of it is [`UnmapError::InLargePage`].
    /// - A table entry that withholds a right the call grants (`WRITABLE`
    ///   or `USER` in `set`, `NO_EXECUTE` in `clear`) to a leaf below it (a
    ///   loader's read-only, supervisor or no-execute PDE) is widened by
    ///   that right only if no present leaf *outside the range* below it
    ///   gains anything by that; otherwise [`UnmapError::TableRestricts`].
    ///   Leaves that do not end up with the right never cause a widening,
    ///   and neither does a right the call does not grant (a user leaf
    ///   under a supervisor entry, made read-only, stays unreachable from
    ///   ring 3). See the rules in the [module docs](crate::mapper).
    /// - Flags the mode cannot express (`NO_EXECUTE` in 2-level mode) are
    ///   [`UnmapError::Unsupported`]; flags the bound CPU cannot carry in
    ///   `set` (XD without NX, PAT without the PAT) are
    ///   [`UnmapError::MissingFeature`].
    ///
    /// When the range meets several refusals (a large page it cuts and a
    /// restrictive table entry, say), the error is the one of the
    /// lowest-addressed PMD-sized block that fails: the check walks the
    /// range upwards a block at a time and stops at the first refusal. A
    /// block is either a large page or a PTE table, never both, so
    /// [`UnmapError::InLargePage`] and [`UnmapError::TableRestricts`]
    /// cannot both apply to one block; the lower block's error wins. The
    /// `level` of `TableRestricts` is [`Level::Pmd`] in
    /// both modes (a 2-level page-directory entry is the folded PMD entry;
    /// see [`Level`]).
    ///
    /// Everything is checked, and every table the call writes is reached,
    /// before the first write: on error nothing has changed. The returned
    /// token covers the whole range (one flush for the call), and is empty
    /// if no entry changed. Until it is flushed, the TLB may still hold the
    /// old rights: a write to a page just made read-only can still succeed.
    pub fn protect_range(
        &mut self,
        start: impl Into<VirtAddr>,
        len: u64,
        clear: MapFlags,
        set: MapFlags,
    ) -> Result<(ProtectStats, Flush), UnmapError> {
        let start = start.into();
        let end = page_range_end(start, len)?;
        let clear = clear.difference(STATUS | MapFlags::PRESENT);
        let set = set.difference(STATUS) | MapFlags::PRESENT;
        let set = self
            .leaf_flags(set, PageSize::Size4KiB)
            .map_err(|e| map_to_update_error(e, set))?;
        // Every leaf's old flags are expressible, so `(old - clear) | set`
        // is if `set` is, in either leaf form.
        let probe = PhysFrame::containing_address(PhysAddr::ZERO);
        if M::Pte::page(probe, set).is_err() || M::Pmd::large(PhysAddr::ZERO, set).is_err() {
            return Err(UnmapError::Unsupported(set));
        }

        // Check, before the first write: no large page is cut, every PTE
        // table is reached, every widening is allowed.
        for (lo, hi) in Self::pmd_blocks(start.as_u64(), end) {
            let va = VirtAddr::new(lo as u32);
            let Some((_, pmd)) = self.leaf_pmd(va)? else {
                continue;
            };
            let span = M::pmd_span();
            if pmd.is_large() {
                if lo % span != 0 || hi - lo != span {
                    return Err(UnmapError::InLargePage {
                        va,
                        base: va.align_down(span),
                        size: M::LARGE_PAGE_SIZE,
                    });
                }
                continue;
            }
            self.widening_for_range(lo, hi, pmd, clear, set)?;
        }

        // Write: the same decisions from the same state (`&mut self` keeps
        // other writers out; the CPU only sets A/D, which decide nothing).
        let mut stats = ProtectStats::default();
        for (lo, hi) in Self::pmd_blocks(start.as_u64(), end) {
            let va = VirtAddr::new(lo as u32);
            let Some((slot, pmd)) = self.leaf_pmd(va)? else {
                continue;
            };
            if pmd.is_large() {
                let table = reach(self.walker.access(), slot.table)?;
                let build = |flags| M::Pmd::large(pmd.addr(), flags);
                let flags_of = <M::Pmd as PmdEntry>::flags;
                let changed = self.reprotect(
                    &table,
                    slot.table,
                    Level::Pmd,
                    slot.index,
                    pmd,
                    clear,
                    set,
                    flags_of,
                    build,
                )?;
                stats.large_pages += 1;
                stats.changed += usize::from(changed);
                continue;
            }
            let widen = self.widening_for_range(lo, hi, pmd, clear, set)?;
            let table_frame = PhysFrame::containing_address(pmd.addr());
            let table = reach(self.walker.access(), table_frame)?;
            let first = M::pte_index(va);
            for i in first..first + ((hi - lo) / PAGE_SIZE) as usize {
                let pte = M::Pte::load(&table, i);
                if !pte.is_present() {
                    continue;
                }
                let frame = PhysFrame::containing_address(pte.addr());
                let build = |flags| M::Pte::page(frame, flags);
                let flags_of = <M::Pte as PteEntry>::flags;
                let changed = self.reprotect(
                    &table,
                    table_frame,
                    Level::Pte,
                    i,
                    pte,
                    clear,
                    set,
                    flags_of,
                    build,
                )?;
                stats.pages += 1;
                stats.changed += usize::from(changed);
            }
            drop(table);
            // Widened only after the leaves below have their new flags, so
            // no leaf ever has more than it had or is given.
            if let Some(entry) = widen {
                self.write(slot, Level::Pmd, entry)?;
                stats.widened += 1;
            }
        }
        let flush = if stats.changed + stats.widened == 0 {
            Flush::none()
        } else {
            Flush::range(start, (len / PAGE_SIZE) as u32)
        };
        Ok((stats, flush))
    }

    /// What the table entry `pmd` over `[lo, hi)` must become to let the
    /// re-protected leaves through, or `None` if it already does. Refused
    /// if a present leaf outside the range would gain by the widening.
    pub(super) fn widening_for_range(
        &self,
        lo: u64,
        hi: u64,
        pmd: M::Pmd,
        clear: MapFlags,
        set: MapFlags,
    ) -> Result<Option<M::Pmd>, UnmapError> {
        let table = reach(
            self.walker.access(),
            PhysFrame::containing_address(pmd.addr()),
        )?;
        let first = M::pte_index(VirtAddr::new(lo as u32));
        let count = ((hi - lo) / PAGE_SIZE) as usize;
        let allowed = pmd.flags();
        // Only a right the call names can open the entry: a leaf that has
        // W or U already but is held back by the entry stays held back.
        let asked = (
            set.contains(MapFlags::WRITABLE),
            set.contains(MapFlags::USER),
            clear.contains(MapFlags::NO_EXECUTE),
        );
        let (mut write, mut user, mut exec) = (false, false, false);
        let mut needs_at = None;
        for i in first..first + count {
            let pte = M::Pte::load(&table, i);
            if !pte.is_present() {
                continue;
            }
            let (w, u, x) = missing_rights(allowed, pte.flags().difference(clear) | set)
                .unwrap_or((false, false, false));
            let (w, u, x) = (w && asked.0, u && asked.1, x && asked.2);
            if (w || u || x) && needs_at.is_none() {
                needs_at = Some(VirtAddr::new((lo + (i - first) as u64 * PAGE_SIZE) as u32));
            }
            (write, user, exec) = (write || w, user || u, exec || x);
        }
        drop(table);
        let Some(va) = needs_at else {
            return Ok(None);
        };
        self.check_no_gain(va, pmd, (write, user, exec), first..first + count)
            .map_err(|e| map_to_update_error(e, set))?;
        Ok(Some(pmd.widened(write, user, exec)))
    }

    /// Replace the present leaf `old` at `index` of `table` with the one
    /// `build` makes from `(old - clear) | set`, by atomic exchange, merging
    /// back the A/D bits the CPU sets meanwhile (in the old entry, or in the
    /// one just written; each retry adds an A/D bit the last write lacked,
    /// so it ends). Returns whether the entry changed.
    #[allow(clippy::too_many_arguments)]
    fn reprotect<E: Entry, T: RawTable + ?Sized>(
        &self,
        table: &T,
        frame: PhysFrame,
        level: Level,
        index: usize,
        old: E,
        clear: MapFlags,
        set: MapFlags,
        flags_of: fn(E) -> MapFlags,
        build: impl Fn(MapFlags) -> Result<E, EntryError>,
    ) -> Result<bool, UnmapError> {
        let base = flags_of(old).difference(clear | STATUS) | set;
        let mut status = flags_of(old) & STATUS;
        let make = |status| build(base | status).map_err(|_| UnmapError::Unsupported(set));
        let mut want = make(status)?;
        if want == old {
            return Ok(false);
        }
        let mut expect = old;
        loop {
            let prev = E::store(table, index, want);
            self.hooks
                .entry_written(frame, level, index, prev.raw(), want.raw());
            if prev == expect {
                return Ok(true);
            }
            status |= flags_of(prev) & STATUS;
            expect = want;
            want = make(status)?;
            if want == expect {
                return Ok(true);
            }
        }
    }
}
