//! Removing many mappings at once, and tearing a whole address space down.

use super::Mapper;
use crate::access::{TableAccess, reach};
use crate::addr::{PAGE_SIZE, PhysFrame, VirtAddr};
use crate::alloc::FrameAllocator;
use crate::entry::{Entry, Level, PmdEntry};
use crate::error::{FreeError, UnmapError};
use crate::flush::{Flush, TlbOps};
use crate::hooks::TableHooks;
use crate::mode::PagingMode;
use crate::walk::Slot;

use super::FreeStats;

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
        let root = self.root();
        if root.is_aligned(PAGE_SIZE) {
            let frame = PhysFrame::containing_address(root);
            self.hooks.table_released(frame, Level::Pgd);
            alloc.deallocate_frame(frame);
        }
        Ok(stats)
    }
}
