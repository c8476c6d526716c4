//! A simulated i386 kernel for the figures: a [`Machine`] (RAM, CPU,
//! zoned allocator, kernel hierarchy in CR3) with the lowmem direct map at
//! `PAGE_OFFSET` in large pages, one contiguous window of PTE tables from
//! the pkmap base to 4 GiB, and a fixmap with one local-kmap slot stack for
//! walking highmem page tables.

use std::ops::Range;

use fixmap::{ContiguousWindow, Fixmap, WindowBuilder, fixmap_layout};
use kmap::{DirectMap, FlushPolicy, LocalSlots, PersistentPool, SpinWait};
use paging_core::{LargePages, MapFlags, NativeHooks, PagingMode, PhysAddr, VirtAddr};
use paging_sim::{
    MACHINE_HIGHMEM, MACHINE_LOWMEM, Machine, Mmu, SimAccess, SimRam, ZonedAllocator,
};
use paging_x86_2level::TwoLevel;
use paging_x86_pae::Pae;

/// Where the direct map of lowmem starts.
pub const PAGE_OFFSET: u32 = 0xC000_0000;
/// The end of lowmem (the machine's lowmem zone).
pub const LOWMEM_LIMIT: u64 = MACHINE_LOWMEM.end;
/// First persistent kmap slot.
pub const PKMAP_BASE: u32 = 0xFF80_0000;
/// Local kmaps per CPU.
pub const DEPTH: usize = 2;

fixmap_layout! {
    /// The figures kernel's fixmap.
    pub struct FigureFixmap {
        top: 0xFFFF_F000;
        /// Local kmaps for walking highmem page tables (one CPU).
        PTE_WALK[DEPTH];
    }
}

/// What the figures need to know about a mode beyond `PagingMode`.
pub trait SimMode: PagingMode {
    /// The allocator's highmem zone (PTE tables with `Zone::PreferHighmem`);
    /// below 4 GiB in 2-level mode, above it under PAE.
    const HIGHMEM: Range<u64>;
    /// First highmem data page (outside the allocator's zones).
    const DATA: u64;
}

impl SimMode for TwoLevel {
    const HIGHMEM: Range<u64> = 0x800_0000..0xC00_0000;
    const DATA: u64 = 0x1000_0000;
}

impl SimMode for Pae {
    const HIGHMEM: Range<u64> = MACHINE_HIGHMEM;
    const DATA: u64 = 0x2_0000_0000;
}

/// The local kmap slots of a [`SimKernel`].
pub type WalkSlots<'k, 'r, M> =
    LocalSlots<'k, FigureFixmap, M, SimAccess<'r>, NativeHooks, &'k Mmu<'r>, DEPTH, 1>;

/// The simulated kernel.
pub struct SimKernel<'r, M: SimMode> {
    /// RAM, CPU 0, allocator, the kernel hierarchy (loaded in CR3).
    pub m: Machine<'r, M>,
    /// PTE tables from `PKMAP_BASE` to 4 GiB, physically contiguous.
    pub window: ContiguousWindow<M>,
    /// The fixmap on that window.
    pub fixmap: Fixmap<FigureFixmap, M, SimAccess<'r>>,
    /// The direct map of `[0, LOWMEM_LIMIT)` at `PAGE_OFFSET`.
    pub direct: DirectMap,
}

impl<'r, M: SimMode> SimKernel<'r, M> {
    /// Boot the kernel's tables on `ram`.
    pub fn new(ram: &'r SimRam) -> Result<Self, String> {
        let mut m = Machine::<M>::new(ram);
        // The machine's PGD is the first lowmem frame; keep the zones clear
        // of it, and put highmem where the mode can address it.
        m.alloc = ZonedAllocator::new(MACHINE_LOWMEM.start + 0x10_0000..LOWMEM_LIMIT, M::HIGHMEM);
        m.mapper
            .map_range(
                VirtAddr::new(PAGE_OFFSET),
                PhysAddr::ZERO,
                LOWMEM_LIMIT,
                MapFlags::KERNEL_RW,
                LargePages::Use,
                &mut m.alloc,
            )
            .map_err(|e| format!("direct map: {e}"))?
            .flush(&m.mmu);
        let (window, _) = WindowBuilder::new(VirtAddr::new(PKMAP_BASE), 1 << 32)
            .map_err(|e| format!("window: {e}"))?
            .build(&mut m.mapper, &m.mmu, &mut m.alloc)
            .map_err(|e| format!("window: {e}"))?;
        m.reload_cr3();
        let mut fixmap = Fixmap::new(SimAccess::new(ram));
        fixmap
            .attach(window.clone())
            .map_err(|e| format!("fixmap: {e}"))?;
        Ok(Self {
            m,
            window,
            fixmap,
            direct: DirectMap::new(PAGE_OFFSET, LOWMEM_LIMIT),
        })
    }

    /// A persistent pool of `N` slots at `PKMAP_BASE`, flushing CPU 0.
    pub fn pool<P: FlushPolicy, const N: usize>(
        &self,
        policy: P,
    ) -> Result<PersistentPool<M, SimAccess<'r>, &Mmu<'r>, P, SpinWait, N>, String>
    where
        kmap::PoolSize<N>: kmap::ValidPoolSize,
    {
        PersistentPool::new(
            &self.window,
            VirtAddr::new(PKMAP_BASE),
            self.direct,
            SimAccess::new(self.m.ram),
            &self.m.mmu,
            policy,
            SpinWait,
        )
        .map_err(|e| format!("pool: {e}"))
    }

    /// The local slots that map highmem page tables while they are walked.
    pub fn walk_slots(&self) -> Result<WalkSlots<'_, 'r, M>, String> {
        LocalSlots::new(
            &self.fixmap,
            FigureFixmap::PTE_WALK,
            false,
            self.direct,
            &self.m.mmu,
        )
        .map_err(|e| format!("local slots: {e}"))
    }
}
