#![doc = include_str!("../README.md")]
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use core::fmt;

use paging_core::{
    CacheType, CacheTypeError, Flush, FrameAllocator, MapError, MapFlags, Mapper, PAGE_SIZE,
    PagingMode, PatLayout, PhysAddr, PhysFrame, TableAccess, TableHooks, TlbOps, UnmapError,
    VirtAddr,
};

/// Why an area call did nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VmapError {
    /// [`VmapArea::new`]: the bounds are not page aligned, or the area
    /// holds no page and its guard.
    BadArea {
        /// The first address asked for.
        start: VirtAddr,
        /// One past the last.
        end: u64,
    },
    /// Nothing to map: no frame, or a length of zero.
    Empty,
    /// No free range of `pages` pages plus a guard page is left, even after
    /// the lazily freed ranges were purged.
    NoSpace {
        /// Pages asked for (without the guard page).
        pages: u64,
    },
    /// The area already tracks `capacity` ranges (busy, or freed and
    /// waiting for the purge).
    Full {
        /// The area's capacity, `N`.
        capacity: usize,
    },
    /// `va` is not the start of a range [`VmapArea::vmap`] or
    /// [`VmapArea::ioremap`] returned (or that range was unmapped already).
    NotMapped {
        /// The address given.
        va: VirtAddr,
    },
    /// `phys + len` is past the physical address space.
    PhysOverflow {
        /// The first byte asked for.
        phys: PhysAddr,
        /// Its length.
        len: u64,
    },
    /// The memory type is not in the area's PAT layout.
    Cache(CacheTypeError),
    /// The mapper refused a page (a frame out of its reach, flags the CPU
    /// cannot carry, no frame for a page table). The pages mapped before it
    /// were removed again.
    Map(MapError),
    /// The mapper could not remove a range.
    Unmap(UnmapError),
}

impl fmt::Display for VmapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadArea { start, end } => write!(
                f,
                "area {start}..{end:#x} is not page aligned or too small for a page and its guard"
            ),
            Self::Empty => f.write_str("nothing to map"),
            Self::NoSpace { pages } => {
                write!(
                    f,
                    "no free range of {pages} pages and a guard page in the area"
                )
            }
            Self::Full { capacity } => write!(f, "the area tracks {capacity} ranges already"),
            Self::NotMapped { va } => write!(f, "{va} is not the start of a mapped range"),
            Self::PhysOverflow { phys, len } => {
                write!(f, "{phys} + {len:#x} is past the physical address space")
            }
            Self::Cache(e) => write!(f, "{e}"),
            Self::Map(e) => write!(f, "{e}"),
            Self::Unmap(e) => write!(f, "{e}"),
        }
    }
}

impl core::error::Error for VmapError {}

impl From<CacheTypeError> for VmapError {
    fn from(e: CacheTypeError) -> Self {
        Self::Cache(e)
    }
}

/// What an area has done so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VmapStats {
    /// Ranges mapped ([`VmapArea::vmap`] and [`VmapArea::ioremap`]).
    pub mapped: u64,
    /// Ranges unmapped ([`VmapArea::vunmap`]).
    pub unmapped: u64,
    /// TLB flushes the area asked for: one per purge (and per mapping that
    /// needed a PAE CR3 reload).
    pub flushes: u64,
    /// Purges: the lazily freed ranges handed back for reuse.
    pub purges: u64,
    /// Pages unmapped whose flush has not been done yet.
    pub lazy_pages: u64,
    /// Ranges mapped now.
    pub busy: usize,
}

/// One range of the area: `pages` pages from page number `first`, then a
/// guard page nobody maps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Extent {
    first: u32,
    pages: u32,
    /// Unmapped, its TLB entries not flushed yet: the addresses stay taken.
    lazy: bool,
}

impl Extent {
    /// One past the guard page.
    const fn end(&self) -> u64 {
        self.first as u64 + self.pages as u64 + 1
    }
}

/// A kernel virtual area handed out in ranges, each followed by an unmapped
/// guard page, with lazy TLB purging (Linux's `vmap_area`).
///
/// - [`vmap`](Self::vmap) maps any frames at consecutive addresses;
///   [`ioremap`](Self::ioremap) maps device memory with a memory type;
///   [`vunmap`](Self::vunmap) removes either.
/// - Unmapping clears the PTEs at once but defers the TLB flush. The freed
///   range's addresses stay taken until a *purge* flushes every freed range
///   with one flush and hands them all back: when the freed pages reach the
///   area's threshold, when an allocation finds no room, or when
///   [`purge`](Self::purge) is called. So no range is ever mapped again
///   while a CPU may still hold a stale translation of its old mapping.
///   With a threshold of 0, every unmap flushes at once (eager).
/// - The frames of an unmapped range may be reused at once: no code uses an
///   address after unmapping it, and until the purge a stale translation
///   is only reachable through such a use (the trade Linux makes).
/// - Page tables under the area are never freed (other directories may
///   hold copies of their entries, as in Linux's vmalloc area).
///
/// The area keeps its ranges in a fixed table of `N` entries; it does no
/// locking of its own: a kernel puts it in its lock with the mapper.
#[derive(Debug, Clone)]
pub struct VmapArea<const N: usize> {
    /// First page number of the area.
    first: u32,
    /// One past the last page number.
    end: u64,
    /// Busy and lazy ranges, sorted by address; `len` of them are used.
    extents: [Extent; N],
    len: usize,
    threshold: u64,
    pat: PatLayout,
    /// The flush the lazy ranges still need.
    pending: Option<Flush>,
    stats: VmapStats,
}

const UNUSED: Extent = Extent {
    first: 0,
    pages: 0,
    lazy: false,
};

impl<const N: usize> VmapArea<N> {
    /// An area over `[start, end)` that purges once `threshold_pages` pages
    /// have been unmapped (0: flush at every unmap), and maps device memory
    /// with the memory types of `pat` (the layout the kernel programmed in
    /// the PAT MSR; [`PatLayout::POWER_ON`] on a CPU without PAT).
    pub const fn new(
        start: VirtAddr,
        end: u64,
        threshold_pages: u32,
        pat: PatLayout,
    ) -> Result<Self, VmapError> {
        let s = start.as_u64();
        if !s.is_multiple_of(PAGE_SIZE)
            || !end.is_multiple_of(PAGE_SIZE)
            || end > 1 << 32
            || end < s + 2 * PAGE_SIZE
        {
            return Err(VmapError::BadArea { start, end });
        }
        Ok(Self {
            first: (s / PAGE_SIZE) as u32,
            end: end / PAGE_SIZE,
            extents: [UNUSED; N],
            len: 0,
            threshold: threshold_pages as u64,
            pat,
            pending: None,
            stats: VmapStats {
                mapped: 0,
                unmapped: 0,
                flushes: 0,
                purges: 0,
                lazy_pages: 0,
                busy: 0,
            },
        })
    }

    /// What the area has done so far.
    pub fn stats(&self) -> VmapStats {
        self.stats
    }

    /// The area's bounds, `(start, end)`.
    pub fn bounds(&self) -> (VirtAddr, u64) {
        (
            VirtAddr::new(self.first.wrapping_mul(PAGE_SIZE as u32)),
            self.end * PAGE_SIZE,
        )
    }

    /// Map `frames` at consecutive pages of a free range with `flags`, and
    /// return the range's first address. Page tables come from `alloc`;
    /// `tlb` is flushed only if the mapping needs it (a new PAE PDPT entry)
    /// or a purge is needed to make room.
    ///
    /// On error no page is mapped: pages already mapped are removed again,
    /// and their range waits for the next purge like an unmapped one (its
    /// pages may have been cached meanwhile). Page tables allocated on the
    /// way are kept (see the type's docs).
    pub fn vmap<M, A, H, F, T>(
        &mut self,
        mapper: &mut Mapper<M, A, H>,
        frames: &[PhysFrame],
        flags: MapFlags,
        alloc: &mut F,
        tlb: &T,
    ) -> Result<VirtAddr, VmapError>
    where
        M: PagingMode,
        A: TableAccess,
        H: TableHooks,
        F: FrameAllocator + ?Sized,
        T: TlbOps + ?Sized,
    {
        if frames.is_empty() {
            return Err(VmapError::Empty);
        }
        let pages = frames.len() as u64;
        let index = self.take(pages, tlb)?;
        let va = self.start_of(index);
        let mut flush = Flush::none();
        for (i, frame) in frames.iter().enumerate() {
            let at = paging_core::Page::containing_address(VirtAddr::new(
                va.as_u32() + (i as u32) * PAGE_SIZE as u32,
            ));
            match mapper.map(at, *frame, flags, alloc) {
                Ok(f) => flush = flush.and(f),
                Err(e) => {
                    flush.flush(tlb);
                    self.undo(index, i as u64, mapper, tlb)?;
                    return Err(VmapError::Map(e));
                }
            }
        }
        self.finish_map(flush, tlb);
        Ok(va)
    }

    /// Map the device memory `[phys, phys + len)` with the memory type
    /// `cache`, as kernel data (writable, no-execute where the CPU has NX,
    /// global where it has PGE), and return the address of `phys` in it
    /// (the range starts at the page holding `phys`).
    ///
    /// On error nothing is mapped (see [`vmap`](Self::vmap)).
    pub fn ioremap<M, A, H, F, T>(
        &mut self,
        mapper: &mut Mapper<M, A, H>,
        phys: PhysAddr,
        len: u64,
        cache: CacheType,
        alloc: &mut F,
        tlb: &T,
    ) -> Result<VirtAddr, VmapError>
    where
        M: PagingMode,
        A: TableAccess,
        H: TableHooks,
        F: FrameAllocator + ?Sized,
        T: TlbOps + ?Sized,
    {
        if len == 0 {
            return Err(VmapError::Empty);
        }
        let features = mapper.features();
        let flags = MapFlags::KERNEL_RW
            .union(features.no_execute())
            .union(features.global())
            .with_cache(cache, &self.pat)?;
        let offset = phys.as_u64() % PAGE_SIZE;
        let base = phys.as_u64() - offset;
        let bytes = (offset + len)
            .checked_next_multiple_of(PAGE_SIZE)
            .filter(|b| base.checked_add(*b).is_some_and(|end| end <= 1 << 52))
            .ok_or(VmapError::PhysOverflow { phys, len })?;
        let pages = bytes / PAGE_SIZE;
        let index = self.take(pages, tlb)?;
        let va = self.start_of(index);
        let base = PhysAddr::new(base).map_err(|_| VmapError::PhysOverflow { phys, len })?;
        match mapper.map_range(
            va,
            base,
            bytes,
            flags,
            paging_core::LargePages::Avoid,
            alloc,
        ) {
            Ok(flush) => {
                self.finish_map(flush, tlb);
                Ok(VirtAddr::new(va.as_u32() + offset as u32))
            }
            Err(e) => {
                // `map_range` changed nothing: the range was never mapped.
                self.remove(index);
                Err(VmapError::Map(e))
            }
        }
    }

    /// Unmap the range that starts at `va` (an address [`vmap`](Self::vmap)
    /// or [`ioremap`](Self::ioremap) returned). Its PTEs are cleared now;
    /// the TLB flush waits for the next purge, which this call runs if the
    /// lazily freed pages reach the threshold. Returns the number of pages
    /// unmapped.
    pub fn vunmap<M, A, H, T>(
        &mut self,
        mapper: &mut Mapper<M, A, H>,
        va: VirtAddr,
        tlb: &T,
    ) -> Result<u64, VmapError>
    where
        M: PagingMode,
        A: TableAccess,
        H: TableHooks,
        T: TlbOps + ?Sized,
    {
        let page = va.as_u64() / PAGE_SIZE;
        let index = self.extents[..self.len]
            .iter()
            .position(|e| !e.lazy && u64::from(e.first) == page)
            .ok_or(VmapError::NotMapped { va })?;
        let pages = u64::from(self.extents[index].pages);
        self.unmap_pages(index, pages, mapper)?;
        self.stats.unmapped += 1;
        self.stats.busy -= 1;
        if self.stats.lazy_pages >= self.threshold {
            self.purge(tlb);
        }
        Ok(pages)
    }

    /// Flush every lazily freed range with one flush and hand their
    /// addresses back. Does nothing if there are none.
    pub fn purge<T: TlbOps + ?Sized>(&mut self, tlb: &T) {
        let Some(flush) = self.pending.take() else {
            return;
        };
        flush.flush(tlb);
        self.stats.flushes += 1;
        self.stats.purges += 1;
        self.stats.lazy_pages = 0;
        let mut kept = 0;
        for i in 0..self.len {
            if !self.extents[i].lazy {
                self.extents[kept] = self.extents[i];
                kept += 1;
            }
        }
        self.len = kept;
    }

    /// The first address of extent `index`.
    fn start_of(&self, index: usize) -> VirtAddr {
        VirtAddr::new(self.extents[index].first.wrapping_mul(PAGE_SIZE as u32))
    }

    /// Reserve `pages` pages and a guard page (purging once if that makes
    /// room), and return the new extent's index.
    fn take<T: TlbOps + ?Sized>(&mut self, pages: u64, tlb: &T) -> Result<usize, VmapError> {
        match self.find(pages) {
            Ok(index) => Ok(index),
            Err(e) if self.pending.is_some() => {
                self.purge(tlb);
                self.find(pages).map_err(|_| e)
            }
            Err(e) => Err(e),
        }
    }

    /// First fit: the lowest gap that holds `pages` pages and a guard page.
    fn find(&mut self, pages: u64) -> Result<usize, VmapError> {
        let need = pages + 1;
        let mut at = u64::from(self.first);
        let mut slot = None;
        for (i, e) in self.extents[..self.len].iter().enumerate() {
            if u64::from(e.first) - at >= need {
                slot = Some(i);
                break;
            }
            at = e.end();
        }
        let index = match slot {
            Some(i) => i,
            None if self.end - at >= need => self.len,
            None => return Err(VmapError::NoSpace { pages }),
        };
        if self.len == N {
            return Err(VmapError::Full { capacity: N });
        }
        self.extents.copy_within(index..self.len, index + 1);
        self.extents[index] = Extent {
            first: at as u32,
            pages: pages as u32,
            lazy: false,
        };
        self.len += 1;
        Ok(index)
    }

    /// Forget extent `index` (never mapped).
    fn remove(&mut self, index: usize) {
        self.extents.copy_within(index + 1..self.len, index);
        self.len -= 1;
    }

    fn finish_map<T: TlbOps + ?Sized>(&mut self, flush: Flush, tlb: &T) {
        if flush.needs_cr3_reload() || flush.pages().is_some() {
            flush.flush(tlb);
            self.stats.flushes += 1;
        }
        self.stats.mapped += 1;
        self.stats.busy += 1;
    }

    /// Remove the first `pages` pages of extent `index` from the tables and
    /// make it lazy, its flush pending.
    fn unmap_pages<M, A, H>(
        &mut self,
        index: usize,
        pages: u64,
        mapper: &mut Mapper<M, A, H>,
    ) -> Result<(), VmapError>
    where
        M: PagingMode,
        A: TableAccess,
        H: TableHooks,
    {
        let va = self.start_of(index);
        let (_, flush) = mapper
            .unmap_range(va, pages * PAGE_SIZE)
            .map_err(VmapError::Unmap)?;
        self.extents[index].lazy = true;
        self.stats.lazy_pages += pages;
        self.pending = Some(match self.pending {
            Some(pending) => pending.and(flush),
            None => flush,
        });
        Ok(())
    }

    /// A `vmap` failed after mapping `mapped` pages of extent `index`:
    /// remove them, and keep the range lazy until the next purge.
    fn undo<M, A, H, T>(
        &mut self,
        index: usize,
        mapped: u64,
        mapper: &mut Mapper<M, A, H>,
        tlb: &T,
    ) -> Result<(), VmapError>
    where
        M: PagingMode,
        A: TableAccess,
        H: TableHooks,
        T: TlbOps + ?Sized,
    {
        if mapped == 0 {
            self.remove(index);
            return Ok(());
        }
        self.unmap_pages(index, mapped, mapper)?;
        if self.stats.lazy_pages >= self.threshold {
            self.purge(tlb);
        }
        Ok(())
    }
}
