//! Creating mappings: one 4 KiB page, one large page, or a whole range.

use super::Mapper;
use super::chain::{ChainError, FrameChain};
use crate::access::TableAccess;
use crate::addr::{PAGE_SIZE, Page, PageSize, PhysAddr, PhysFrame, VirtAddr};
use crate::alloc::{FrameAllocator, Zone};
use crate::entry::{Entry, EntryError, Level, PgdEntry, PmdEntry, PteEntry};
use crate::error::MapError;
use crate::flags::MapFlags;
use crate::flush::Flush;
use crate::hooks::TableHooks;
use crate::mode::PagingMode;
use crate::table::RawTable;
use crate::walk::{Slot, Translation};

/// Whether [`Mapper::map_range`] may use large pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LargePages {
    /// Use a large page wherever the virtual and physical addresses are both
    /// aligned to the large-page size, the whole large page is inside the
    /// range, and no PTE table is installed there already.
    Use,
    /// Only 4 KiB pages.
    Avoid,
}

fn entry_error(e: EntryError) -> MapError {
    match e {
        EntryError::Unaligned { addr, align } => MapError::Unaligned {
            addr: addr.as_u64(),
            align,
        },
        EntryError::PhysOutOfRange { addr, max_bits } => {
            MapError::PhysOutOfRange { addr, max_bits }
        }
        EntryError::Unsupported(flags) => MapError::Unsupported(flags),
    }
}

fn large_translation<M: PagingMode>(va: VirtAddr, pmd: M::Pmd) -> Translation {
    Translation {
        base: pmd.addr(),
        offset: va.as_u32() & (M::LARGE_PAGE_SIZE.bytes() as u32 - 1),
        size: M::LARGE_PAGE_SIZE,
        flags: pmd.flags(),
    }
}

fn pte_translation(pte: impl PteEntry) -> Translation {
    Translation {
        base: pte.addr(),
        offset: 0,
        size: PageSize::Size4KiB,
        flags: pte.flags(),
    }
}

/// Whether a table entry lets through what a leaf with `flags` needs.
fn table_allows(table: MapFlags, flags: MapFlags) -> bool {
    table.contains(MapFlags::WRITABLE)
        && (table.contains(MapFlags::USER) || !flags.contains(MapFlags::USER))
}

/// The state of the PMD slot for a virtual address, as far as mapping is
/// concerned.
pub(super) enum PmdState<E> {
    /// The PGD entry is empty (PAE): a PMD table must be created first.
    NoPmdTable,
    /// The PMD slot exists; here is its entry.
    Entry(Slot, E),
}

/// A validated `map_range` request.
struct RangeRequest {
    va: u64,
    end: u64,
    pa: u64,
    large: bool,
}

/// What a range pass found (planning) or did (writing).
struct RangeNeeds {
    pmd_tables: usize,
    pte_tables: usize,
    flush: Flush,
}

/// Frames reserved for a range; `None` while only planning.
struct RangeFrames {
    pmd: FrameChain,
    pte: FrameChain,
}

impl<M: PagingMode, A: TableAccess, H: TableHooks> Mapper<M, A, H> {
    /// Map the 4 KiB `page` to `frame` with `flags` (`PRESENT` is added),
    /// creating missing tables from `alloc`.
    ///
    /// Fails, changing nothing, if the page or its large page is already
    /// mapped, the frame is beyond the mode's physical limit, the flags cannot
    /// be expressed, or tables cannot be allocated.
    pub fn map<F: FrameAllocator + ?Sized>(
        &mut self,
        page: Page,
        frame: PhysFrame,
        flags: MapFlags,
        alloc: &mut F,
    ) -> Result<Flush, MapError> {
        let flags = flags | MapFlags::PRESENT;
        check_phys::<M>(frame.start_address(), PAGE_SIZE)?;
        let pte = M::Pte::page(frame, flags).map_err(entry_error)?;
        let va = page.start_address();

        let pmd_state = self.pmd_state(va)?;
        if let PmdState::Entry(slot, pmd) = pmd_state {
            self.check_pmd_for_small(va, pmd)?;
            if let Some(pte_slot) = self.walker.pte_slot(va, pmd) {
                // The PTE table exists: one entry write, plus a table-entry
                // upgrade if it does not yet let this mapping through.
                check_pte_free::<M::Pte>(va, pte_slot.read(self.walker.access())?)?;
                self.write_empty(pte_slot, Level::Pte, pte)?;
                return self.allow_through(slot, pmd, flags, va);
            }
        }

        // Missing tables: reserve every frame before writing anything.
        let pmd_frame = match pmd_state {
            PmdState::NoPmdTable => Some(
                alloc
                    .allocate_frame(Zone::Lowmem)
                    .ok_or(MapError::OutOfFrames)?,
            ),
            PmdState::Entry(..) => None,
        };
        let Some(pte_frame) = alloc.allocate_frame(self.pte_zone) else {
            if let Some(f) = pmd_frame {
                alloc.deallocate_frame(f);
            }
            return Err(MapError::OutOfFrames);
        };
        let user = flags.contains(MapFlags::USER);
        let result = (|| {
            self.fill_new_table::<M::Pte>(pte_frame, Level::Pte, M::PTRS_PER_PTE, |i| {
                if i == M::pte_index(va) {
                    pte
                } else {
                    M::Pte::NONE
                }
            })?;
            let pmd = M::Pmd::table(pte_frame, user).map_err(entry_error)?;
            match (pmd_state, pmd_frame) {
                (_, Some(pmd_frame)) => {
                    self.fill_new_table::<M::Pmd>(pmd_frame, Level::Pmd, M::PTRS_PER_PMD, |i| {
                        if i == M::pmd_index(va) {
                            pmd
                        } else {
                            M::Pmd::NONE
                        }
                    })?;
                    self.link_pmd_table(va, pmd_frame)
                }
                (PmdState::Entry(slot, _), None) => {
                    self.write_empty(slot, Level::Pmd, pmd)?;
                    Ok(Flush::none())
                }
                (PmdState::NoPmdTable, None) => Err(MapError::OutOfFrames),
            }
        })();
        if result.is_err() {
            alloc.deallocate_frame(pte_frame);
            if let Some(f) = pmd_frame {
                alloc.deallocate_frame(f);
            }
        }
        result
    }

    /// Map one large page (4 MiB in 2-level mode, 2 MiB in PAE) at `va` to
    /// `pa`, both aligned to the large-page size.
    ///
    /// Fails, changing nothing, if anything is mapped there, including an
    /// installed PTE table (even an empty one: free it first with
    /// [`free_empty_tables`](Self::free_empty_tables)).
    pub fn map_large<F: FrameAllocator + ?Sized>(
        &mut self,
        va: VirtAddr,
        pa: PhysAddr,
        flags: MapFlags,
        alloc: &mut F,
    ) -> Result<Flush, MapError> {
        let size = M::LARGE_PAGE_SIZE.bytes();
        if !va.is_aligned(size) {
            return Err(MapError::Unaligned {
                addr: va.as_u64(),
                align: size,
            });
        }
        if !pa.is_aligned(size) {
            return Err(MapError::Unaligned {
                addr: pa.as_u64(),
                align: size,
            });
        }
        check_phys::<M>(pa, size)?;
        let entry = M::Pmd::large(pa, flags | MapFlags::PRESENT).map_err(entry_error)?;
        match self.pmd_state(va)? {
            PmdState::Entry(slot, pmd) => {
                check_pmd_free_for_large::<M>(va, pmd)?;
                self.write_empty(slot, Level::Pmd, entry)?;
                Ok(Flush::none())
            }
            PmdState::NoPmdTable => {
                let frame = alloc
                    .allocate_frame(Zone::Lowmem)
                    .ok_or(MapError::OutOfFrames)?;
                let result = self
                    .fill_new_table::<M::Pmd>(frame, Level::Pmd, M::PTRS_PER_PMD, |i| {
                        if i == M::pmd_index(va) {
                            entry
                        } else {
                            M::Pmd::NONE
                        }
                    })
                    .and_then(|()| self.link_pmd_table(va, frame));
                if result.is_err() {
                    alloc.deallocate_frame(frame);
                }
                result
            }
        }
    }

    /// Map `len` bytes at `va` to `pa` (all 4 KiB aligned), using large pages
    /// where `large` allows and alignment permits.
    ///
    /// The whole range is checked, and every table it needs is allocated,
    /// before the first entry is written: on error nothing has changed and
    /// no frame is kept. New PTE tables are filled completely before they
    /// are linked. The returned token is empty unless a PAE PDPT entry was
    /// added (then it reloads CR3): filling non-present entries needs no
    /// invalidation.
    pub fn map_range<F: FrameAllocator + ?Sized>(
        &mut self,
        va: VirtAddr,
        pa: PhysAddr,
        len: u64,
        flags: MapFlags,
        large: LargePages,
        alloc: &mut F,
    ) -> Result<Flush, MapError> {
        let flags = flags | MapFlags::PRESENT;
        for addr in [va.as_u64(), pa.as_u64(), len] {
            if addr % PAGE_SIZE != 0 {
                return Err(MapError::Unaligned {
                    addr,
                    align: PAGE_SIZE,
                });
            }
        }
        if len == 0 {
            return Ok(Flush::none());
        }
        if va.as_u64() + len > 1 << 32 {
            return Err(MapError::VirtOutOfRange { start: va, len });
        }
        check_phys::<M>(pa, len)?;
        let first = PhysFrame::from_start_address(pa).map_err(|_| MapError::Unaligned {
            addr: pa.as_u64(),
            align: PAGE_SIZE,
        })?;
        let template = M::Pte::page(first, flags).map_err(entry_error)?;
        let large_ok = large == LargePages::Use;
        let large_template = if large_ok {
            // Only built if a large page will be used; checked here so a
            // flag the large form cannot carry fails before any write.
            Some(M::Pmd::large(PhysAddr::ZERO, flags).map_err(entry_error)?)
        } else {
            None
        };
        let req = RangeRequest {
            va: va.as_u64(),
            end: va.as_u64() + len,
            pa: pa.as_u64(),
            large: large_ok,
        };

        let needs = self.range_pass(&req, flags, template, large_template, None)?;
        let mut frames = RangeFrames {
            pmd: FrameChain::new(),
            pte: FrameChain::new(),
        };
        let access = self.walker.access();
        let reserve = frames
            .pmd
            .fill(access, alloc, Zone::Lowmem, needs.pmd_tables)
            .and_then(|()| {
                frames
                    .pte
                    .fill(access, alloc, self.pte_zone, needs.pte_tables)
            });
        if let Err(e) = reserve {
            frames.pmd.release(access, alloc);
            return Err(match e {
                ChainError::OutOfFrames => MapError::OutOfFrames,
                ChainError::Access(e) => MapError::Access(e),
            });
        }
        let result = self.range_pass(&req, flags, template, large_template, Some(&mut frames));
        // Only an access failure can leave frames unused; give them back.
        let access = self.walker.access();
        frames.pmd.release(access, alloc);
        frames.pte.release(access, alloc);
        result.map(|done| done.flush)
    }

    /// One pass over a range: with `frames == None`, check it and count the
    /// tables it needs; with frames, write it. Both passes take the same
    /// decisions from the same state, which is what makes the plan exact.
    fn range_pass(
        &self,
        req: &RangeRequest,
        flags: MapFlags,
        template: M::Pte,
        large_template: Option<M::Pmd>,
        mut frames: Option<&mut RangeFrames>,
    ) -> Result<RangeNeeds, MapError> {
        let access = self.walker.access();
        let span = M::pmd_span();
        let user = flags.contains(MapFlags::USER);
        let mut needs = RangeNeeds {
            pmd_tables: 0,
            pte_tables: 0,
            flush: Flush::none(),
        };
        // PGD index whose PMD table this plan is creating (planning only).
        let mut planned_new_pgd: Option<usize> = None;
        let mut cur = req.va;
        while cur < req.end {
            let va = VirtAddr::new(cur as u32);
            let chunk_end = ((cur & !(span - 1)) + span).min(req.end);
            let chunk_pa = req.pa + (cur - req.va);

            let state = if planned_new_pgd == Some(M::pgd_index(va)) {
                PmdState::NoPmdTable
            } else {
                self.pmd_state(va)?
            };
            let (slot, pmd) = match (state, frames.as_deref_mut()) {
                (PmdState::Entry(slot, pmd), _) => (Some(slot), pmd),
                (PmdState::NoPmdTable, None) => {
                    needs.pmd_tables += usize::from(planned_new_pgd != Some(M::pgd_index(va)));
                    planned_new_pgd = Some(M::pgd_index(va));
                    (None, M::Pmd::NONE)
                }
                (PmdState::NoPmdTable, Some(frames)) => {
                    let frame = frames.pmd.pop(access)?.ok_or(MapError::OutOfFrames)?;
                    self.fill_new_table::<M::Pmd>(frame, Level::Pmd, M::PTRS_PER_PMD, |_| {
                        M::Pmd::NONE
                    })?;
                    needs.flush = needs.flush.and(self.link_pmd_table(va, frame)?);
                    needs.pmd_tables += 1;
                    match self.pmd_state(va)? {
                        PmdState::Entry(slot, pmd) => (Some(slot), pmd),
                        PmdState::NoPmdTable => return Err(MapError::OutOfFrames),
                    }
                }
            };

            let whole_block = cur.is_multiple_of(span)
                && chunk_end - cur == span
                && chunk_pa.is_multiple_of(span);
            if pmd.is_none() {
                match (req.large && whole_block, frames.as_deref_mut(), slot) {
                    (true, Some(_), Some(slot)) => {
                        let base = PhysAddr::new_truncate(chunk_pa);
                        let entry = large_template.map_or(M::Pmd::NONE, |t| t.with_addr(base));
                        self.write_empty(slot, Level::Pmd, entry)?;
                    }
                    (true, _, _) => {}
                    (false, None, _) => needs.pte_tables += 1,
                    (false, Some(frames), slot) => {
                        let frame = frames.pte.pop(access)?.ok_or(MapError::OutOfFrames)?;
                        let first = M::pte_index(va);
                        let count = ((chunk_end - cur) / PAGE_SIZE) as usize;
                        let start = template.with_addr(PhysAddr::new_truncate(chunk_pa));
                        self.fill_new_pte_run(frame, first, count, start)?;
                        let entry = M::Pmd::table(frame, user).map_err(entry_error)?;
                        let slot = slot.ok_or(MapError::OutOfFrames)?;
                        self.write_empty(slot, Level::Pmd, entry)?;
                        needs.pte_tables += 1;
                    }
                }
            } else {
                let slot = slot.ok_or(MapError::OutOfFrames)?;
                if pmd.is_large() && pmd.is_present() {
                    let existing = large_translation::<M>(va, pmd);
                    return Err(if req.large && whole_block {
                        MapError::AlreadyMapped { va, existing }
                    } else {
                        MapError::InLargePage { va, existing }
                    });
                }
                if !pmd.is_present() {
                    return Err(MapError::NotEmpty {
                        va,
                        raw: pmd.raw(),
                        level: Level::Pmd,
                    });
                }
                let table_frame = PhysFrame::containing_address(pmd.addr());
                let table = access.table(table_frame)?;
                let first = M::pte_index(va);
                let count = ((chunk_end - cur) / PAGE_SIZE) as usize;
                match frames {
                    None => {
                        for i in first..first + count {
                            let page_va =
                                VirtAddr::new((cur + (i - first) as u64 * PAGE_SIZE) as u32);
                            check_pte_free::<M::Pte>(page_va, M::Pte::load(&table, i))?;
                        }
                    }
                    Some(_) => {
                        // The planning pass saw every one of these empty,
                        // and `&mut self` keeps other writers out since.
                        for i in first..first + count {
                            let pa =
                                PhysAddr::new_truncate(chunk_pa + (i - first) as u64 * PAGE_SIZE);
                            let entry = template.with_addr(pa);
                            M::Pte::fill(&table, i, entry);
                            self.hooks
                                .entry_written(table_frame, Level::Pte, i, 0, entry.raw());
                        }
                        drop(table);
                        needs.flush = needs.flush.and(self.allow_through(slot, pmd, flags, va)?);
                    }
                }
            }
            cur = chunk_end;
        }
        Ok(needs)
    }

    /// Where `va`'s PMD entry is and what it holds, or that the PGD entry is
    /// empty (PAE). A non-empty, non-present PGD entry is an error.
    pub(super) fn pmd_state(&self, va: VirtAddr) -> Result<PmdState<M::Pmd>, MapError> {
        let access = self.walker.access();
        let pgd_slot = self.walker.pgd_slot(va);
        let pgd: M::Pgd = pgd_slot.read(access)?;
        if M::PMD_FOLDED {
            return Ok(PmdState::Entry(pgd_slot, M::Pmd::from_raw(pgd.raw())));
        }
        if pgd.is_none() {
            return Ok(PmdState::NoPmdTable);
        }
        match self.walker.pmd_slot(va, pgd) {
            Some(slot) => Ok(PmdState::Entry(slot, slot.read(access)?)),
            None => Err(MapError::NotEmpty {
                va,
                raw: pgd.raw(),
                level: Level::Pgd,
            }),
        }
    }

    /// A 4 KiB page may go under this PMD entry: empty, or a table.
    fn check_pmd_for_small(&self, va: VirtAddr, pmd: M::Pmd) -> Result<(), MapError> {
        if pmd.is_present() && pmd.is_large() {
            return Err(MapError::InLargePage {
                va,
                existing: large_translation::<M>(va, pmd),
            });
        }
        if !pmd.is_present() && !pmd.is_none() {
            return Err(MapError::NotEmpty {
                va,
                raw: pmd.raw(),
                level: Level::Pmd,
            });
        }
        Ok(())
    }

    /// Write a new table frame completely (entry `i` is `entry(i)`) before it
    /// is linked anywhere, then announce it to the hooks.
    pub(super) fn fill_new_table<E: Entry>(
        &self,
        frame: PhysFrame,
        level: Level,
        entries: usize,
        entry: impl Fn(usize) -> E,
    ) -> Result<(), MapError> {
        let table = self.walker.access().table(frame)?;
        // A folded PMD "table" is the PGD slot itself and is never allocated;
        // any other table is a whole frame of entries.
        let per_frame = 4096 / M::ENTRY_BYTES;
        for i in 0..per_frame {
            E::init(&table, i, if i < entries { entry(i) } else { E::NONE });
        }
        drop(table);
        self.hooks.table_allocated(frame, level);
        Ok(())
    }

    /// Fill a new PTE table (not linked yet): entries `first..first + count`
    /// map consecutive 4 KiB pages from `start`'s address with `start`'s
    /// flags, every other entry is empty; then announce it to the hooks.
    /// One run of plain stores per part instead of one call per entry.
    fn fill_new_pte_run(
        &self,
        frame: PhysFrame,
        first: usize,
        count: usize,
        start: M::Pte,
    ) -> Result<(), MapError> {
        let table = self.walker.access().table(frame)?;
        let per_frame = 4096 / M::ENTRY_BYTES;
        let end = (first + count).min(per_frame);
        let first = first.min(end);
        // Adding a page to an entry's address adds PAGE_SIZE to its raw
        // value: the address is page aligned and `check_phys` made sure the
        // range fits, so no carry reaches the flag bits.
        if M::ENTRY_BYTES == 8 {
            table.store_run64(0, first, 0, 0);
            table.store_run64(first, end - first, start.raw(), PAGE_SIZE);
            table.store_run64(end, per_frame - end, 0, 0);
        } else {
            let raw = start.raw() as u32;
            table.store_run32(0, first, 0, 0);
            table.store_run32(first, end - first, raw, PAGE_SIZE as u32);
            table.store_run32(end, per_frame - end, 0, 0);
        }
        drop(table);
        self.hooks.table_allocated(frame, Level::Pte);
        Ok(())
    }

    /// Point `va`'s (empty) PGD entry at the filled PMD table in `frame`.
    pub(super) fn link_pmd_table(&self, va: VirtAddr, frame: PhysFrame) -> Result<Flush, MapError> {
        let entry = M::Pgd::table(frame).map_err(entry_error)?;
        self.write_empty(self.walker.pgd_slot(va), Level::Pgd, entry)?;
        Ok(if M::PGD_LATCHED {
            Flush::reload_cr3()
        } else {
            Flush::none()
        })
    }

    /// Make the PMD table entry in `slot` allow what a leaf with `flags`
    /// needs (writable, and user if the leaf is user). A present table entry
    /// may sit in the paging-structure caches, so an upgrade needs a flush.
    // Always inlined: on the single-page path the check is almost always a
    // no-op, and an outlined call costs more than the check (35 of the ~165
    // instructions of a 4 KiB map).
    #[inline(always)]
    pub(super) fn allow_through(
        &self,
        slot: Slot,
        pmd: M::Pmd,
        flags: MapFlags,
        va: VirtAddr,
    ) -> Result<Flush, MapError> {
        if table_allows(pmd.flags(), flags) {
            return Ok(Flush::none());
        }
        let user = flags.contains(MapFlags::USER) || pmd.flags().contains(MapFlags::USER);
        let frame = PhysFrame::containing_address(pmd.addr());
        let entry = M::Pmd::table(frame, user).map_err(entry_error)?;
        self.write(slot, Level::Pmd, entry)?;
        Ok(Flush::page(va))
    }
}

/// `len` bytes from `pa` fit the mode's physical address width.
fn check_phys<M: PagingMode>(pa: PhysAddr, len: u64) -> Result<(), MapError> {
    let last = pa.as_u64().checked_add(len - 1);
    match last {
        Some(last) if last >> M::MAX_PHYS_BITS == 0 => Ok(()),
        _ => Err(MapError::PhysOutOfRange {
            addr: pa,
            max_bits: M::MAX_PHYS_BITS,
        }),
    }
}

/// The PTE for `va` is free to fill.
fn check_pte_free<E: PteEntry>(va: VirtAddr, pte: E) -> Result<(), MapError> {
    if pte.is_present() {
        return Err(MapError::AlreadyMapped {
            va,
            existing: pte_translation(pte),
        });
    }
    if !pte.is_none() {
        return Err(MapError::NotEmpty {
            va,
            raw: pte.raw(),
            level: Level::Pte,
        });
    }
    Ok(())
}

/// The PMD entry for `va` is free for a large page.
fn check_pmd_free_for_large<M: PagingMode>(va: VirtAddr, pmd: M::Pmd) -> Result<(), MapError> {
    if pmd.is_present() && pmd.is_large() {
        return Err(MapError::AlreadyMapped {
            va,
            existing: large_translation::<M>(va, pmd),
        });
    }
    if pmd.is_present() {
        return Err(MapError::TableInTheWay { va });
    }
    if !pmd.is_none() {
        return Err(MapError::NotEmpty {
            va,
            raw: pmd.raw(),
            level: Level::Pmd,
        });
    }
    Ok(())
}
