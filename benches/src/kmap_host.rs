//! A persistent kmap pool whose slot PTEs are real host memory: the window
//! is built by fixmap's `WindowBuilder` on a host-memory mapper, the pool
//! writes its PTEs through an [`OffsetAccess`], and TLB flushes are counted
//! (a real `invlpg` cannot run in user space).

use core::sync::atomic::{AtomicU64, Ordering};

use fixmap::{ContiguousWindow, WindowBuilder};
use kmap::{DirectMap, FlushPolicy, KmapStats, KmapTask, PersistentPool, SpinWait};
use paging_core::{Mapper, OffsetAccess, PagingMode, PhysFrame, TlbOps, VirtAddr};

use crate::FixtureError;
use crate::host::{BumpFrames, HostMemory, frame_at};

/// Persistent slots (`LAST_PKMAP`).
pub const SLOTS: usize = 1024;
/// Where slot 0 is (the pool's 4 MiB end at the fixmap's tables).
pub const PKMAP_BASE: u32 = 0xFF80_0000;
/// Where the direct map of lowmem is.
pub const PAGE_OFFSET: u32 = 0xC000_0000;
/// The end of lowmem (896 MiB): frames above it need a slot.
pub const LOWMEM_LIMIT: u64 = 896 << 20;
/// First highmem data page handed to the pool (never dereferenced).
pub const HIGHMEM_PA: u64 = 0x4000_0000;
/// Distinct pages the pool has seen before a hit is measured, so its
/// page→slot map is as full as in steady state.
pub const WARM_PAGES: usize = SLOTS - 1;
/// Pages the miss path cycles through: four times the slots, so every map
/// finds its page gone (cleared at an earlier wrap).
pub const MISS_PAGES: usize = 4 * SLOTS;

/// TLB operations that only count.
#[derive(Debug, Default)]
pub struct CountingTlb {
    /// `invlpg`s.
    pub pages: AtomicU64,
    /// CR3 reloads.
    pub all: AtomicU64,
    /// Full flushes, globals included.
    pub everything: AtomicU64,
}

impl TlbOps for CountingTlb {
    fn flush_page(&self, _va: VirtAddr) {
        self.pages.fetch_add(1, Ordering::Relaxed);
    }
    fn flush_all(&self) {
        self.all.fetch_add(1, Ordering::Relaxed);
    }
    fn flush_everything(&self) {
        self.everything.fetch_add(1, Ordering::Relaxed);
    }
}

/// Highmem data page `i`.
pub fn highmem_frame(i: usize) -> Option<PhysFrame> {
    frame_at(HIGHMEM_PA + i as u64 * 4096)
}

/// The page the hit benchmarks map: the first page [`KmapHost::warm`] maps.
pub fn hit_frame() -> Option<PhysFrame> {
    highmem_frame(MISS_PAGES - 1)
}

/// A pool of [`SLOTS`] slots in mode `M` with flush policy `P`.
pub struct KmapHost<M: PagingMode, P: FlushPolicy> {
    pool: PersistentPool<M, OffsetAccess, CountingTlb, P, SpinWait, SLOTS>,
    window: ContiguousWindow<M>,
    // Last: dropped after the pool that reaches it.
    memory: HostMemory,
}

impl<M: PagingMode, P: FlushPolicy> core::fmt::Debug for KmapHost<M, P> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("KmapHost")
            .field("mode", &M::NAME)
            .field("policy", &self.pool.policy().name())
            .field("memory", &self.memory)
            .finish()
    }
}

impl<M: PagingMode, P: FlushPolicy> KmapHost<M, P> {
    /// Build the window's tables and the pool on them.
    pub fn new(policy: P) -> Result<Self, FixtureError> {
        let memory = HostMemory::new(32);
        let mut alloc = BumpFrames::over(&memory);
        // SAFETY: `memory` is the struct's last field, so it outlives the
        // mapper (dropped at the end of this function) and the pool.
        let access = unsafe { memory.access() };
        // SAFETY: the tables live in a host buffer no CPU walks; the pool's
        // mappings never reach this program's memory.
        let mut mapper = unsafe {
            Mapper::<M, _>::create(access, paging_core::CpuFeatures::full::<M>(), &mut alloc)
        }?;
        let build_tlb = CountingTlb::default();
        let (window, _replaced) = WindowBuilder::new(VirtAddr::new(PKMAP_BASE), 1 << 32)?.build(
            &mut mapper,
            &build_tlb,
            &mut alloc,
        )?;
        let pool = PersistentPool::new(
            &window,
            VirtAddr::new(PKMAP_BASE),
            DirectMap::new(PAGE_OFFSET, LOWMEM_LIMIT),
            access,
            CountingTlb::default(),
            policy,
            SpinWait,
        )?;
        Ok(Self {
            pool,
            window,
            memory,
        })
    }

    /// Map and release [`WARM_PAGES`] distinct pages (`MISS_PAGES - 1`
    /// down), leaving them cached in slots, as a pool in steady state is.
    pub fn warm(&self, task: &KmapTask) -> Result<(), FixtureError> {
        for i in 0..WARM_PAGES {
            let frame = highmem_frame(MISS_PAGES - 1 - i).ok_or(FixtureError::Frame)?;
            self.kmap_kunmap(task, frame)?;
        }
        Ok(())
    }

    /// `kmap` + `kunmap` of `frame` (the guard's drop is the kunmap).
    #[inline]
    pub fn kmap_kunmap(&self, task: &KmapTask, frame: PhysFrame) -> Result<VirtAddr, FixtureError> {
        let guard = self.pool.try_map(task, frame)?;
        let va = guard.va();
        drop(guard);
        Ok(va)
    }

    /// The pool (to hold a mapping, read stats, ...).
    pub fn pool(&self) -> &PersistentPool<M, OffsetAccess, CountingTlb, P, SpinWait, SLOTS> {
        &self.pool
    }

    /// The pool's counters.
    pub fn stats(&self) -> KmapStats {
        self.pool.stats()
    }

    /// The PTE of slot `va`, read from host memory.
    pub fn slot_pte(&self, va: VirtAddr) -> Option<u64> {
        let pa = self.window.pte_phys(va)?.as_u64();
        if pa + M::ENTRY_BYTES as u64 > self.memory.limit() {
            return None;
        }
        let addr = self.memory.base() + pa as usize;
        // SAFETY: `pa` is inside `memory` (checked above) and aligned to the
        // entry size (a table frame plus a whole number of entries); every
        // access to table memory is volatile or atomic.
        Some(unsafe {
            if M::ENTRY_BYTES == 8 {
                (addr as *const u64).read_volatile()
            } else {
                u64::from((addr as *const u32).read_volatile())
            }
        })
    }
}
