//! Mapping a whole range: planned, reserved, then written, so that bad input
//! or a full allocator changes nothing.

use super::Mapper;
use super::chain::{ChainError, FrameChain};
use super::map::{
    LargePages, PmdState, check_phys, check_pte_free, entry_error, large_translation,
};
use crate::access::{TableAccess, reach};
use crate::addr::{PAGE_SIZE, PageSize, PhysAddr, PhysFrame, VirtAddr};
use crate::alloc::{FrameAllocator, Zone};
use crate::entry::{Entry, Level, PmdEntry, PteEntry};
use crate::error::MapError;
use crate::flags::MapFlags;
use crate::flush::Flush;
use crate::hooks::TableHooks;
use crate::mode::PagingMode;
use crate::table::RawTable;

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
    /// Map `len` bytes at `va` to `pa` (all 4 KiB aligned), using large pages
    /// where `large` allows, the CPU has them (2-level: PSE) and alignment
    /// permits. Flags the bound CPU cannot carry are
    /// [`MapError::MissingFeature`], as for [`map`](Self::map).
    ///
    /// The whole range is checked, and every table it needs is allocated,
    /// before the first entry is written: on error nothing has changed and
    /// no frame is kept. "Nothing" is every entry reachable from the root,
    /// so what the MMU translates and what the TLB may cache, and which
    /// frames the allocator has out. The one trace is in the frames it gave
    /// back: the tables are reserved as a list threaded through their
    /// first 8 bytes, and a returned frame has those bytes zeroed (the
    /// rest is as the allocator handed it out). New PTE tables are filled completely before they
    /// are linked. The returned token is empty unless a PAE PDPT entry was
    /// added (then it reloads CR3): filling non-present entries needs no
    /// invalidation.
    pub fn map_range<F: FrameAllocator + ?Sized>(
        &mut self,
        va: impl Into<VirtAddr>,
        pa: impl Into<PhysAddr>,
        len: u64,
        flags: MapFlags,
        large: LargePages,
        alloc: &mut F,
    ) -> Result<Flush, MapError> {
        let (va, pa) = (va.into(), pa.into());
        let flags = flags | MapFlags::PRESENT;
        // Checked first, whatever the range: the 4 KiB form, and the large
        // form only if large pages are asked for and the CPU has them
        // (without PSE a 2-level range is mapped with 4 KiB pages).
        let flags = self.leaf_flags(flags, PageSize::Size4KiB)?;
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
        check_phys(pa, len, self.phys_bits())?;
        let first = PhysFrame::from_start_address(pa).map_err(|_| MapError::Unaligned {
            addr: pa.as_u64(),
            align: PAGE_SIZE,
        })?;
        let template = M::Pte::page(first, flags).map_err(entry_error)?;
        let large_ok = large == LargePages::Use && self.features().large_pages::<M>();
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
            .fill(
                access,
                alloc,
                Zone::Lowmem,
                needs.pmd_tables,
                self.phys_bits(),
            )
            .and_then(|()| {
                frames.pte.fill(
                    access,
                    alloc,
                    self.pte_zone,
                    needs.pte_tables,
                    self.phys_bits(),
                )
            });
        if let Err(e) = reserve {
            frames.pmd.release(access, alloc);
            return Err(match e {
                ChainError::OutOfFrames => MapError::OutOfFrames,
                ChainError::OutOfReach(frame) => MapError::TableOutOfReach {
                    frame,
                    max_bits: self.phys_bits(),
                },
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
                // Decided on the entries as they are, before this chunk's
                // leaves are filled (the planning pass saw the same state).
                let widen = self.widen_for(va, pmd, flags, None)?;
                let table_frame = PhysFrame::containing_address(pmd.addr());
                let table = reach(access, table_frame)?;
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
                        needs.flush = needs.flush.and(self.write_widened(slot, widen, va)?);
                    }
                }
            }
            cur = chunk_end;
        }
        Ok(needs)
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
        let table = reach(self.walker.access(), frame)?;
        let per_frame = 4096 / M::ENTRY_BYTES;
        let end = (first + count).min(per_frame);
        let first = first.min(end);
        // Adding a page to an entry's address adds PAGE_SIZE to its raw
        // value: the address is page aligned and `check_phys` made sure the
        // range fits, so no carry reaches the flag bits.
        // SAFETY: `frame` was taken from the allocator for this call
        // (`frames.pte`) and is not linked yet: the `FrameAllocator`
        // contract is that nothing else uses it, and no MMU can reach it.
        unsafe {
            if M::ENTRY_BYTES == 8 {
                table.store_run64_unshared(0, first, 0, 0);
                table.store_run64_unshared(first, end - first, start.raw(), PAGE_SIZE);
                table.store_run64_unshared(end, per_frame - end, 0, 0);
            } else {
                let raw = start.raw() as u32;
                table.store_run32_unshared(0, first, 0, 0);
                table.store_run32_unshared(first, end - first, raw, PAGE_SIZE as u32);
                table.store_run32_unshared(end, per_frame - end, 0, 0);
            }
        }
        drop(table);
        self.hooks.table_allocated(frame, Level::Pte);
        Ok(())
    }
}
