//! The simulated TLB and paging-structure cache of one CPU.
//!
//! The model is deliberately the *worst* legal TLB: it has no capacity limit
//! and never evicts on its own, so a translation stays cached until an
//! invalidation the SDM defines removes it. Code that forgets a flush is
//! caught every time, not only when a real TLB happens to still hold the
//! entry.
//!
//! Besides translations it caches PDEs that point to PTE tables (the
//! paging-structure cache of SDM 4.10.3): a walk that finds a cached PDE goes
//! straight to the cached PTE table, so repointing a live PDE without an
//! invalidation keeps the CPU walking the old PTE table.

use std::collections::BTreeMap;
use std::vec::Vec;

use super::memtype::MemoryType;
use paging_core::addr::{PageSize, PhysAddr, PhysFrame, VirtAddr};

/// A cached translation: the combined result of one walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TlbEntry {
    /// Physical base of the page (aligned to `size`).
    pub base: PhysAddr,
    /// Page size (the TLB key is the virtual base aligned to it).
    pub size: PageSize,
    /// R/W of every level ANDed.
    pub writable: bool,
    /// U/S of every level ANDed.
    pub user: bool,
    /// XD of any level ORed (only with EFER.NXE).
    pub nx: bool,
    /// G set on the leaf while CR4.PGE is on: survives CR3 loads.
    pub global: bool,
    /// The leaf's D flag was set when the entry was cached. A write through a
    /// clean entry makes the CPU walk again to set D.
    pub dirty: bool,
    /// The memory type the leaf's PAT/PCD/PWT selected when it was cached.
    pub memory_type: MemoryType,
}

/// A cached PDE that points to a PTE table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PdeCacheEntry {
    /// The PTE table the PDE pointed to.
    pub table: PhysFrame,
    /// The region one PDE covers (2 MiB under PAE, 4 MiB in 2-level mode).
    pub region: PageSize,
    /// R/W of the PDE.
    pub writable: bool,
    /// U/S of the PDE.
    pub user: bool,
    /// XD of the PDE (only with EFER.NXE).
    pub nx: bool,
}

/// Counters of TLB events, for tests to assert which flushes happened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct TlbStats {
    /// `invlpg` instructions.
    pub invlpg: u64,
    /// CR3 loads (each also flushes non-global entries).
    pub cr3_loads: u64,
    /// Full flushes, globals included (CR4.PGE toggles).
    pub global_flushes: u64,
    /// Translations answered by the TLB.
    pub hits: u64,
    /// Translations the TLB did not hold.
    pub misses: u64,
    /// Walks of the paging structures in RAM.
    pub walks: u64,
    /// Page faults raised (each drops the entries for its address).
    pub faults: u64,
}

const SIZES: [PageSize; 3] = [PageSize::Size4KiB, PageSize::Size2MiB, PageSize::Size4MiB];

fn key(va: VirtAddr, size: PageSize) -> (u32, PageSize) {
    (va.align_down(size.bytes()).as_u32(), size)
}

/// One CPU's TLB and PDE cache.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tlb {
    pages: BTreeMap<(u32, PageSize), TlbEntry>,
    pdes: BTreeMap<(u32, PageSize), PdeCacheEntry>,
    stats: TlbStats,
}

impl Tlb {
    /// An empty TLB.
    pub fn new() -> Self {
        Self::default()
    }

    /// The entry covering `va`, without counting a hit or miss. A 4 KiB
    /// entry wins over a large one if both cover `va`.
    pub fn peek(&self, va: VirtAddr) -> Option<(VirtAddr, TlbEntry)> {
        SIZES.iter().find_map(|&size| {
            let k = key(va, size);
            self.pages.get(&k).map(|e| (VirtAddr::new(k.0), *e))
        })
    }

    /// The entry covering `va` (its virtual base and the entry), counting a
    /// hit or a miss.
    pub fn lookup(&mut self, va: VirtAddr) -> Option<(VirtAddr, TlbEntry)> {
        let found = self.peek(va);
        if found.is_some() {
            self.stats.hits += 1;
        } else {
            self.stats.misses += 1;
        }
        found
    }

    /// Cache `entry` for the page of `entry.size` containing `va`.
    pub fn insert(&mut self, va: VirtAddr, entry: TlbEntry) {
        self.pages.insert(key(va, entry.size), entry);
    }

    /// The cached PDE for the `region`-sized region containing `va`.
    pub fn lookup_pde(&self, va: VirtAddr, region: PageSize) -> Option<PdeCacheEntry> {
        self.pdes.get(&key(va, region)).copied()
    }

    /// Cache a PDE for the region containing `va`.
    pub fn insert_pde(&mut self, va: VirtAddr, entry: PdeCacheEntry) {
        self.pdes.insert(key(va, entry.region), entry);
    }

    fn drop_covering(&mut self, va: VirtAddr) {
        for size in SIZES {
            self.pages.remove(&key(va, size));
        }
    }

    /// `invlpg va`: drop every translation covering `va` (a large page
    /// containing it too, global or not) and, as the SDM says INVLPG may,
    /// the whole paging-structure cache.
    pub fn invlpg(&mut self, va: VirtAddr) {
        self.stats.invlpg += 1;
        self.drop_covering(va);
        self.pdes.clear();
    }

    /// A page fault at `va`: the CPU drops the TLB and paging-structure
    /// cache entries that would translate it (SDM 4.10.4.1), so the retry
    /// walks RAM again. Counts a fault, not an `invlpg`.
    pub fn invalidate_for_fault(&mut self, va: VirtAddr) {
        self.stats.faults += 1;
        self.drop_covering(va);
        for size in SIZES {
            self.pdes.remove(&key(va, size));
        }
    }

    /// MOV to CR3: drop non-global translations and the whole PDE cache.
    pub fn flush_nonglobal(&mut self) {
        self.stats.cr3_loads += 1;
        self.pages.retain(|_, e| e.global);
        self.pdes.clear();
    }

    /// CR4.PGE toggle: drop everything.
    pub fn flush_all(&mut self) {
        self.stats.global_flushes += 1;
        self.pages.clear();
        self.pdes.clear();
    }

    /// Count one walk of RAM.
    pub fn record_walk(&mut self) {
        self.stats.walks += 1;
    }

    /// Number of cached translations.
    pub fn len(&self) -> usize {
        self.pages.len()
    }

    /// Whether no translation is cached.
    pub fn is_empty(&self) -> bool {
        self.pages.is_empty()
    }

    /// Every cached translation with its virtual base, in address order.
    pub fn entries(&self) -> Vec<(VirtAddr, TlbEntry)> {
        self.pages
            .iter()
            .map(|(&(va, _), e)| (VirtAddr::new(va), *e))
            .collect()
    }

    /// Every cached PDE with the base of its region, in address order.
    pub fn pde_entries(&self) -> Vec<(VirtAddr, PdeCacheEntry)> {
        self.pdes
            .iter()
            .map(|(&(va, _), e)| (VirtAddr::new(va), *e))
            .collect()
    }

    /// The counters.
    pub fn stats(&self) -> TlbStats {
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(base: u64, size: PageSize, global: bool) -> TlbEntry {
        TlbEntry {
            base: PhysAddr::new(base).unwrap(),
            size,
            writable: true,
            user: false,
            nx: false,
            global,
            dirty: false,
            memory_type: MemoryType::Wb,
        }
    }

    fn va(x: u32) -> VirtAddr {
        VirtAddr::new(x)
    }

    #[test]
    fn large_entries_are_found_and_invalidated_from_any_address_inside() {
        let mut tlb = Tlb::new();
        tlb.insert(va(0x0040_1234), entry(0x80_0000, PageSize::Size4MiB, true));
        let (base, e) = tlb.lookup(va(0x007F_FFFF)).unwrap();
        assert_eq!((base, e.base.as_u64()), (va(0x0040_0000), 0x80_0000));
        assert!(tlb.lookup(va(0x0080_0000)).is_none());
        tlb.flush_nonglobal();
        assert_eq!(tlb.len(), 1);
        tlb.invlpg(va(0x0065_0000));
        assert!(tlb.is_empty());
        let s = tlb.stats();
        assert_eq!((s.hits, s.misses, s.invlpg, s.cr3_loads), (1, 1, 1, 1));
    }

    #[test]
    fn invlpg_drops_only_its_page_but_every_cached_pde() {
        let mut tlb = Tlb::new();
        tlb.insert(va(0x1000), entry(0x5000, PageSize::Size4KiB, false));
        tlb.insert(va(0x2000), entry(0x6000, PageSize::Size4KiB, false));
        let pde = PdeCacheEntry {
            table: PhysFrame::from_number(9).unwrap(),
            region: PageSize::Size2MiB,
            writable: true,
            user: true,
            nx: false,
        };
        tlb.insert_pde(va(0x4000_0000), pde);
        assert_eq!(
            tlb.lookup_pde(va(0x401F_FFFF), PageSize::Size2MiB),
            Some(pde)
        );
        assert_eq!(tlb.lookup_pde(va(0x4020_0000), PageSize::Size2MiB), None);
        tlb.invlpg(va(0x1FFF));
        assert_eq!(tlb.entries().len(), 1);
        assert_eq!(tlb.entries()[0].0, va(0x2000));
        assert!(tlb.pde_entries().is_empty());
    }

    #[test]
    fn fault_invalidation_is_local_and_flush_all_drops_globals() {
        let mut tlb = Tlb::new();
        tlb.insert(va(0x1000), entry(0x5000, PageSize::Size4KiB, true));
        tlb.insert(va(0x2000), entry(0x6000, PageSize::Size4KiB, true));
        tlb.invalidate_for_fault(va(0x1800));
        assert_eq!(tlb.len(), 1);
        assert_eq!(tlb.stats().invlpg, 0);
        assert_eq!(tlb.stats().faults, 1);
        tlb.flush_all();
        assert!(tlb.is_empty());
        assert_eq!(tlb.stats().global_flushes, 1);
    }
}
