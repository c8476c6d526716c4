//! Removing many mappings at once, and tearing a whole address space down.

use super::Mapper;
use crate::access::{AccessError, TableAccess, reach};
use crate::addr::{PAGE_SIZE, PageSize, PhysFrame, VirtAddr};
use crate::alloc::FrameAllocator;
use crate::entry::{Entry, Level, PmdEntry, PteEntry};
use crate::error::{FreeError, UnmapError};
use crate::flags::MapFlags;
use crate::flush::{Flush, TlbOps};
use crate::hooks::TableHooks;
use crate::mode::PagingMode;
use crate::walk::Slot;

use super::{FreeStats, Unmapped};

/// How many PMD entries (PTE tables or large pages)
/// [`Mapper::teardown_releasing`] unlinks before one flush releases them.
pub const TEARDOWN_BATCH: usize = 16;

/// PMD entries unlinked by `teardown_releasing`, waiting for their flush.
struct Detached<P> {
    entries: [(VirtAddr, P); TEARDOWN_BATCH],
    len: usize,
}

/// What [`Mapper::unmap_range`] removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UnmapStats {
    /// 4 KiB mappings removed.
    pub pages: usize,
    /// Large mappings removed.
    pub large_pages: usize,
}

impl<M: PagingMode, A: TableAccess, H: TableHooks> Mapper<M, A, H> {
    /// The PMD slots covering `[start, end)`, each with the part of the
    /// range inside it.
    pub(super) fn pmd_blocks(start: u64, end: u64) -> impl Iterator<Item = (u64, u64)> {
        let span = M::pmd_span();
        let mut at = start;
        core::iter::from_fn(move || {
            if at >= end {
                return None;
            }
            let block_end = ((at & !(span - 1)) + span).min(end);
            let chunk = (at, block_end);
            at = block_end;
            Some(chunk)
        })
    }

    /// Remove every mapping in `[start, start + len)` (holes are fine),
    /// reaching each PTE table once. A large page that sticks out of the
    /// range is an error, found before anything changes.
    ///
    /// Non-present entries that hold data (swap entries) are left alone.
    /// The token invalidates the whole range.
    pub fn unmap_range(
        &mut self,
        start: impl Into<VirtAddr>,
        len: u64,
    ) -> Result<(UnmapStats, Flush), UnmapError> {
        let start = start.into();
        let end = page_range_end(start, len)?;
        // Check, before the first write: no large page may be cut, and
        // every PTE table the range will write can be reached.
        for (lo, hi) in Self::pmd_blocks(start.as_u64(), end) {
            if let Some((_, pmd)) = self.leaf_pmd(VirtAddr::new(lo as u32))? {
                let span = M::pmd_span();
                if pmd.is_large() && (lo % span != 0 || hi - lo != span) {
                    let va = VirtAddr::new(lo as u32);
                    return Err(UnmapError::InLargePage {
                        va,
                        base: va.align_down(span),
                        size: M::LARGE_PAGE_SIZE,
                    });
                }
                if !pmd.is_large() {
                    reach(
                        self.walker.access(),
                        PhysFrame::containing_address(pmd.addr()),
                    )?;
                }
            }
        }
        let mut stats = UnmapStats::default();
        for (lo, hi) in Self::pmd_blocks(start.as_u64(), end) {
            let va = VirtAddr::new(lo as u32);
            let Some((slot, pmd)) = self.leaf_pmd(va)? else {
                continue;
            };
            if pmd.is_large() {
                self.write(slot, Level::Pmd, M::Pmd::NONE)?;
                stats.large_pages += 1;
                continue;
            }
            let table_frame = PhysFrame::containing_address(pmd.addr());
            let table = reach(self.walker.access(), table_frame)?;
            let first = M::pte_index(va);
            for i in first..first + ((hi - lo) / PAGE_SIZE) as usize {
                let pte = M::Pte::load(&table, i);
                if pte.is_present() {
                    let old = M::Pte::store(&table, i, M::Pte::NONE);
                    self.hooks
                        .entry_written(table_frame, Level::Pte, i, old.raw(), 0);
                    stats.pages += 1;
                }
            }
        }
        let flush = if stats.pages + stats.large_pages == 0 {
            Flush::none()
        } else {
            Flush::range(start, (len / PAGE_SIZE) as u32)
        };
        Ok((stats, flush))
    }

    /// The present PMD entry covering `va` (and its slot), if any.
    pub(super) fn leaf_pmd(&self, va: VirtAddr) -> Result<Option<(Slot, M::Pmd)>, UnmapError> {
        let walk = self.walker.walk(va)?;
        Ok(walk
            .pmd
            .filter(|(_, pmd)| (M::PMD_FOLDED || walk.pgd.1.is_present()) && pmd.is_present()))
    }

    /// Tear the address space down, as at process exit: remove every mapping
    /// below `user_end`, free every table there (after the flush), and give
    /// the PGD frame back (if the root is a whole frame). The kernel half,
    /// whose tables other directories share, is left alone.
    ///
    /// The frames the mappings pointed at are the caller's to free.
    pub fn teardown<T, F>(
        mut self,
        user_end: VirtAddr,
        tlb: &T,
        alloc: &mut F,
    ) -> Result<FreeStats, FreeError>
    where
        T: TlbOps + ?Sized,
        F: FrameAllocator + ?Sized,
    {
        let len = user_end.as_u64();
        let (_, flush) = self.unmap_range(VirtAddr::ZERO, len).map_err(|e| match e {
            UnmapError::Access(e) => FreeError::Access(e),
            _ => FreeError::Unaligned { addr: len },
        })?;
        flush.flush(tlb);
        let stats = self.free_empty_tables(VirtAddr::ZERO, len, tlb, alloc)?;
        self.release_root(alloc);
        Ok(stats)
    }

    /// Give the PGD frame back (if the root is a whole frame).
    fn release_root<F: FrameAllocator + ?Sized>(self, alloc: &mut F) {
        let root = self.root();
        if root.is_aligned(PAGE_SIZE) {
            let frame = PhysFrame::containing_address(root);
            self.hooks.table_released(frame, Level::Pgd);
            // SAFETY: the root came from this allocator (`create`) or is
            // owned by the caller, who gave the mapper up with `self`;
            // `teardown`'s contract is that no CPU uses the hierarchy any
            // more.
            unsafe { alloc.deallocate_frame(frame) };
        }
    }

    /// [`teardown`](Self::teardown) that also hands every data frame of the
    /// user half to `release`: process exit in a kernel that reference
    /// counts its frames (copy-on-write shares, page cache pages).
    ///
    /// `release(va, unmapped)` is called once per present leaf below
    /// `user_end`, with the leaf's virtual address, its physical base, its
    /// size (4 KiB or large) and its final flags (the Accessed/Dirty bits
    /// the CPU left, the software bits, say `SOFTWARE_0` as a
    /// copy-on-write marker), and only after the TLB flush that makes the
    /// frame unreachable: the callback may free it at once. Then every
    /// table below `user_end` and the PGD go back to `alloc`, as in
    /// `teardown`. Non-present entries (swap entries) are dropped with
    /// their tables: release what they name before calling this.
    ///
    /// No memory is needed beyond a small array: the PMD entries below
    /// `user_end` are cleared (unlinking each PTE table, or removing each
    /// large page) [`TEARDOWN_BATCH`] at a time; each batch is followed by
    /// one `flush_all` (a CR3 reload) and only then are its detached
    /// tables read, their leaves released and the tables freed. **Cost:**
    /// one CR3 reload per `TEARDOWN_BATCH` PMD entries that hold anything
    /// (a 2-level process with 40 MiB spread over 10 PTE tables: one), plus
    /// one `invlpg` per global leaf (a CR3 reload keeps global
    /// translations), plus the flushes of
    /// [`free_empty_tables`](Self::free_empty_tables) for the PMD tables
    /// (PAE: one `invlpg` each and a CR3 reload).
    ///
    /// **Precondition:** no CPU may be using this hierarchy, or hold
    /// translations from it, other than through `tlb` (the process is dead:
    /// every other CPU that ran it has switched CR3 away, or `tlb` shoots
    /// them all down). A CPU outside `tlb`'s reach could still write
    /// through a released frame.
    ///
    /// `user_end` must be aligned to the PMD span (4 MiB in 2-level mode,
    /// 2 MiB in PAE), so that no PTE table is shared with the kernel half:
    /// [`FreeError::Unaligned`] otherwise, with nothing changed. If a table
    /// cannot be reached ([`FreeError::Access`]) the call stops between two
    /// batches; everything released so far stays released.
    pub fn teardown_releasing<T, F, R>(
        mut self,
        user_end: VirtAddr,
        tlb: &T,
        alloc: &mut F,
        mut release: R,
    ) -> Result<(UnmapStats, FreeStats), FreeError>
    where
        T: TlbOps + ?Sized,
        F: FrameAllocator + ?Sized,
        R: FnMut(VirtAddr, Unmapped),
    {
        let len = user_end.as_u64();
        if !user_end.is_aligned(M::pmd_span()) {
            return Err(FreeError::Unaligned { addr: len });
        }
        let mut detached = Detached {
            entries: [(VirtAddr::ZERO, M::Pmd::NONE); TEARDOWN_BATCH],
            len: 0,
        };
        let mut unmapped = UnmapStats::default();
        let mut freed = FreeStats::default();
        let mut stats = (&mut unmapped, &mut freed);
        let mut result = Ok(());
        for (lo, _) in Self::pmd_blocks(0, len) {
            let va = VirtAddr::new(lo as u32);
            if let Err(e) = self.detach(va, &mut detached) {
                result = Err(e);
                break;
            }
            if detached.len == TEARDOWN_BATCH {
                result = self.release_detached(&mut detached, tlb, alloc, &mut release, &mut stats);
                if result.is_err() {
                    break;
                }
            }
        }
        // Whatever was unlinked is released, error or not.
        let last = self.release_detached(&mut detached, tlb, alloc, &mut release, &mut stats);
        result.and(last)?;
        let tables = self.free_empty_tables(VirtAddr::ZERO, len, tlb, alloc)?;
        freed.pte_tables += tables.pte_tables;
        freed.pmd_tables += tables.pmd_tables;
        self.release_root(alloc);
        Ok((unmapped, freed))
    }

    /// Clear `va`'s PMD entry if it holds anything, remembering a present
    /// one (a large page or a PTE table) in `detached`.
    fn detach(&self, va: VirtAddr, detached: &mut Detached<M::Pmd>) -> Result<(), FreeError> {
        let walk = self.walker.walk(va)?;
        let Some((slot, pmd)) = walk
            .pmd
            .filter(|_| M::PMD_FOLDED || walk.pgd.1.is_present())
        else {
            return Ok(());
        };
        if pmd.is_none() {
            return Ok(());
        }
        if pmd.is_present() && !pmd.is_large() {
            // Reached before it is unlinked, so the table access's contract
            // covers the read after the flush.
            reach(
                self.walker.access(),
                PhysFrame::containing_address(pmd.addr()),
            )?;
        }
        // An exchange: a large page's final Accessed/Dirty come back with it.
        let old = self.write(slot, Level::Pmd, M::Pmd::NONE)?;
        if old.is_present() {
            detached.entries[detached.len] = (va, old);
            detached.len += 1;
        }
        Ok(())
    }

    /// Flush, then release every leaf of the detached entries and free
    /// their tables. A table that cannot be reached is skipped (its frames
    /// are lost) and reported after the others are released.
    fn release_detached<T, F, R>(
        &self,
        detached: &mut Detached<M::Pmd>,
        tlb: &T,
        alloc: &mut F,
        release: &mut R,
        (unmapped, freed): &mut (&mut UnmapStats, &mut FreeStats),
    ) -> Result<(), FreeError>
    where
        T: TlbOps + ?Sized,
        F: FrameAllocator + ?Sized,
        R: FnMut(VirtAddr, Unmapped),
    {
        if detached.len == 0 {
            return Ok(());
        }
        // A CR3 reload drops every non-global translation and every
        // paging-structure cache entry: no CPU can walk a detached table
        // any more, so its leaves' A/D bits are final.
        tlb.flush_all();
        let mut result = Ok(());
        let mut give = |va: VirtAddr, leaf: Unmapped| {
            if leaf.flags.contains(MapFlags::GLOBAL) {
                // A CR3 reload keeps global translations.
                tlb.flush_page(va);
            }
            release(va, leaf);
        };
        for &(va, old) in &detached.entries[..detached.len] {
            if old.is_large() {
                give(
                    va,
                    Unmapped {
                        base: old.addr(),
                        size: M::LARGE_PAGE_SIZE,
                        flags: old.flags(),
                    },
                );
                unmapped.large_pages += 1;
                continue;
            }
            let frame = PhysFrame::containing_address(old.addr());
            match self.release_leaves(frame, va, &mut give) {
                Ok(pages) => unmapped.pages += pages,
                Err(e) => {
                    result = Err(FreeError::Access(e));
                    continue;
                }
            }
            self.hooks.table_released(frame, Level::Pte);
            // SAFETY: unlinked above and flushed; the table belonged to this
            // hierarchy alone (tables shared with another hierarchy are the
            // caller's to keep: see `free_empty_tables`' contract).
            unsafe { alloc.deallocate_frame(frame) };
            freed.pte_tables += 1;
        }
        detached.len = 0;
        result
    }

    /// Hand every present leaf of the detached PTE table `frame` (mapping
    /// from `va`) to `give`, a chunk at a time so the table view is not
    /// held while the caller's code runs.
    fn release_leaves(
        &self,
        frame: PhysFrame,
        va: VirtAddr,
        give: &mut impl FnMut(VirtAddr, Unmapped),
    ) -> Result<usize, AccessError> {
        const CHUNK: usize = 64;
        let mut pages = 0;
        let mut buf = [0u64; CHUNK];
        for base in (0..M::PTRS_PER_PTE).step_by(CHUNK) {
            {
                let table = reach(self.walker.access(), frame)?;
                for (i, raw) in buf.iter_mut().enumerate() {
                    *raw = M::Pte::load(&table, base + i).raw();
                }
            }
            for (i, &raw) in buf.iter().enumerate() {
                let pte = M::Pte::from_raw(raw);
                if !pte.is_present() {
                    continue;
                }
                let at = VirtAddr::new(va.as_u32() + ((base + i) as u64 * PAGE_SIZE) as u32);
                give(
                    at,
                    Unmapped {
                        base: pte.addr(),
                        size: PageSize::Size4KiB,
                        flags: pte.flags(),
                    },
                );
                pages += 1;
            }
        }
        Ok(pages)
    }
}

/// The end of `[start, start + len)` after checking that both are page
/// aligned and the range stays below 4 GiB (the checks every range call
/// makes first).
pub(super) fn page_range_end(start: VirtAddr, len: u64) -> Result<u64, UnmapError> {
    for v in [start.as_u64(), len] {
        if v % PAGE_SIZE != 0 {
            return Err(UnmapError::Unaligned {
                addr: VirtAddr::new(v as u32),
            });
        }
    }
    let end = start.as_u64() + len;
    if end > 1 << 32 {
        return Err(UnmapError::VirtOutOfRange { start, len });
    }
    Ok(end)
}
