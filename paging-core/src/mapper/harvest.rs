//! Harvesting the CPU's Accessed and Dirty bits over a range (see
//! [`StatusBit`] for what the hardware does and when the flush matters).

use super::Mapper;
use super::teardown::page_range_end;
use crate::access::{TableAccess, reach};
use crate::addr::{PAGE_SIZE, PageSize, PhysFrame, VirtAddr};
use crate::entry::{Entry, Level, PmdEntry, PteEntry};
use crate::error::UnmapError;
use crate::flush::Flush;
use crate::hooks::TableHooks;
use crate::mappings::Mapping;
use crate::mode::PagingMode;
use crate::table::RawTable;

/// Which of the CPU's status bits a harvest tests and clears.
///
/// Harvesting is what page aging (Linux's `ptep_test_and_clear_young`) and
/// write-back tracking (Linux's `page_mkclean`) are built on, done for a
/// whole range with one flush token.
///
/// The CPU sets Accessed (bit 5) in a leaf when it loads the translation
/// into its TLB, and Dirty (bit 6) on the first write through it (SDM vol.
/// 3A 4.8). It does both with a locked read-modify-write of the entry, and
/// it does *not* set them again while the TLB still holds the translation
/// with the bit set. So clearing a bit is only half of a harvest: until the
/// page's TLB entries are invalidated, use of the page leaves no new mark.
/// The returned [`Flush`] covers exactly the leaves whose bit was cleared.
///
/// - After [`Mapper::test_and_clear_accessed`],
///   skipping the flush costs accuracy only: a page in use can look idle
///   until its TLB entry is evicted (Linux on x86 takes that trade for
///   page aging). Flush when "young" must mean "used since the harvest".
/// - After [`Mapper::test_and_clear_dirty`], the flush
///   is a correctness matter: a CPU whose TLB still holds the page as dirty
///   writes it without setting Dirty again, and a writer-back that trusts
///   the bit loses that write. Flush (on every CPU that may hold the page)
///   *before* copying the page out; a write after the flush sets Dirty
///   again.
///
/// Each bit is cleared with one 32-bit compare-and-swap on the entry's low
/// word, which holds both bits in either mode, so a bit the CPU sets at the
/// same moment is never lost and no other bit of the entry is touched
/// (software bits, PAT, Global and XD stay exactly as they were, whoever
/// built the entry).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusBit {
    /// Accessed (bit 5): the CPU loaded the translation since the bit was
    /// last cleared.
    Accessed,
    /// Dirty (bit 6): the CPU wrote through the translation since the bit
    /// was last cleared.
    Dirty,
}

impl StatusBit {
    /// The bit in a leaf entry's low 32-bit word (the same in 4 KiB and
    /// large leaves, in 2-level and PAE mode: SDM vol. 3A tables 4-4, 4-6,
    /// 4-9, 4-11).
    const fn mask(self) -> u32 {
        match self {
            Self::Accessed => 1 << 5,
            Self::Dirty => 1 << 6,
        }
    }
}

/// What a harvest went through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HarvestStats {
    /// Present 4 KiB leaves in the range.
    pub pages: usize,
    /// Present large leaves in the range (each counted once, even if it
    /// sticks out of the range).
    pub large_pages: usize,
    /// Leaves whose bit was set, and is now clear.
    pub harvested: usize,
}

impl<M: PagingMode, A: TableAccess, H: TableHooks> Mapper<M, A, H> {
    /// Clear Accessed in every present leaf of `[start, start + len)` and
    /// count the leaves that had it ("young" pages). The flush covers the
    /// young leaves; see the [`StatusBit`] for when skipping it is
    /// acceptable.
    ///
    /// ```
    /// use paging_core::{MapFlags, Page, PhysFrame, VirtAddr};
    /// use paging_sim::{Access, Machine, SimRam};
    /// use paging_x86_pae::Pae;
    ///
    /// let ram = SimRam::new();
    /// let mut m = Machine::<Pae>::new(&ram);
    /// for i in 0..4u32 {
    ///     let page = Page::containing_address(VirtAddr::new(0x4000_0000 + i * 0x1000));
    ///     let frame = PhysFrame::from_number(0x200 + u64::from(i)).unwrap();
    ///     m.mapper.map(page, frame, MapFlags::KERNEL_RW, &mut m.alloc)?.flush(&m.mmu);
    /// }
    /// // The program touches pages 0 and 2.
    /// for va in [0x4000_0000, 0x4000_2000] {
    ///     m.mmu.translate(VirtAddr::new(va), Access::READ).unwrap();
    /// }
    /// let (stats, flush) = m.mapper.test_and_clear_accessed(VirtAddr::new(0x4000_0000), 0x4000)?;
    /// flush.flush(&m.mmu);
    /// assert_eq!((stats.pages, stats.harvested), (4, 2));
    /// // Nothing touched since: nothing young.
    /// let (stats, flush) = m.mapper.test_and_clear_accessed(VirtAddr::new(0x4000_0000), 0x4000)?;
    /// assert_eq!(stats.harvested, 0);
    /// assert!(flush.pages().is_none());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn test_and_clear_accessed(
        &mut self,
        start: impl Into<VirtAddr>,
        len: u64,
    ) -> Result<(HarvestStats, Flush), UnmapError> {
        self.harvest(start, len, StatusBit::Accessed, |_| {})
    }

    /// Clear Dirty in every present leaf of `[start, start + len)` and count
    /// the leaves that had it. Flush the returned token (on every CPU that
    /// may hold these pages) before writing the dirty pages back: see the
    /// [`StatusBit`].
    pub fn test_and_clear_dirty(
        &mut self,
        start: impl Into<VirtAddr>,
        len: u64,
    ) -> Result<(HarvestStats, Flush), UnmapError> {
        self.harvest(start, len, StatusBit::Dirty, |_| {})
    }

    /// Visit the present leaves of `[start, start + len)` in address order,
    /// as [`Walker::mappings`](crate::Walker::mappings) does, clear `bit` in
    /// each, and hand every leaf that had it to `each`, as the [`Mapping`]
    /// it was before the harvest (its `flags` still show the bit). A large
    /// page that sticks out of the range is harvested whole (it is one
    /// entry) and the flush covers all of it.
    ///
    /// Every table is reached before the first bit is cleared: on error
    /// nothing has changed and `each` was not called. Only `bit` changes, in
    /// leaves that had it; the returned token covers those leaves and is
    /// empty if there were none.
    pub fn harvest(
        &mut self,
        start: impl Into<VirtAddr>,
        len: u64,
        bit: StatusBit,
        mut each: impl FnMut(Mapping),
    ) -> Result<(HarvestStats, Flush), UnmapError> {
        let start = start.into();
        let end = page_range_end(start, len)?;
        // Plan: reach every PTE table the harvest will write.
        for (lo, _) in Self::pmd_blocks(start.as_u64(), end) {
            if let Some((_, pmd)) = self.leaf_pmd(VirtAddr::new(lo as u32))?
                && !pmd.is_large()
            {
                drop(reach(
                    self.walker.access(),
                    PhysFrame::containing_address(pmd.addr()),
                )?);
            }
        }

        let mut stats = HarvestStats::default();
        let mut flush = Flush::none();
        let span = M::pmd_span();
        for (lo, hi) in Self::pmd_blocks(start.as_u64(), end) {
            let va = VirtAddr::new(lo as u32);
            let Some((slot, pmd)) = self.leaf_pmd(va)? else {
                continue;
            };
            if pmd.is_large() {
                stats.large_pages += 1;
                let table = reach(self.walker.access(), slot.table)?;
                if self.clear_status(&table, slot.table, Level::Pmd, slot.index, pmd, bit) {
                    let base = va.align_down(span);
                    stats.harvested += 1;
                    flush = flush.and(Flush::range(base, (span / PAGE_SIZE) as u32));
                    each(Mapping {
                        va: base,
                        base: pmd.addr(),
                        size: M::LARGE_PAGE_SIZE,
                        flags: PmdEntry::flags(pmd),
                    });
                }
                continue;
            }
            let table_frame = PhysFrame::containing_address(pmd.addr());
            let table = reach(self.walker.access(), table_frame)?;
            let first = M::pte_index(va);
            for (n, i) in (first..first + ((hi - lo) / PAGE_SIZE) as usize).enumerate() {
                let pte = M::Pte::load(&table, i);
                if !pte.is_present() {
                    continue;
                }
                stats.pages += 1;
                if self.clear_status(&table, table_frame, Level::Pte, i, pte, bit) {
                    let at = VirtAddr::new((lo + n as u64 * PAGE_SIZE) as u32);
                    stats.harvested += 1;
                    flush = flush.and(Flush::page(at));
                    each(Mapping {
                        va: at,
                        base: pte.addr(),
                        size: PageSize::Size4KiB,
                        flags: PteEntry::flags(pte),
                    });
                }
            }
        }
        Ok((stats, flush))
    }

    /// Clear `bit` in the present leaf `old` at `index` of `table` with a
    /// compare-and-swap of its low word (retried while the CPU sets the
    /// other status bit meanwhile). Returns whether the bit was set.
    fn clear_status<E: Entry, T: RawTable + ?Sized>(
        &self,
        table: &T,
        frame: PhysFrame,
        level: Level,
        index: usize,
        old: E,
        bit: StatusBit,
    ) -> bool {
        let mask = bit.mask();
        let word = index * M::ENTRY_BYTES / 4;
        let high = old.raw() & !u64::from(u32::MAX);
        let mut low = old.raw() as u32;
        loop {
            if low & mask == 0 {
                return false;
            }
            match table.compare_exchange32(word, low, low & !mask) {
                Ok(_) => {
                    let before = high | u64::from(low);
                    self.hooks.entry_written(
                        frame,
                        level,
                        index,
                        before,
                        before & !u64::from(mask),
                    );
                    return true;
                }
                Err(now) => low = now,
            }
        }
    }
}
