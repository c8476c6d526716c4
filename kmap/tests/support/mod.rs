//! A simulated i386 kernel for kmap's tests: a [`Machine`] (RAM, CPU,
//! allocator, hierarchy) with the lowmem direct map at `PAGE_OFFSET` in
//! large pages, one contiguous window of PTE tables from the pkmap base to
//! the top of the address space, and a fixmap with local-kmap slots for
//! [`CPUS`] CPUs on it. Data pages carry a pattern naming their frame, so a
//! read through the MMU proves which frame a kmap address reaches.
// Each test crate uses a different subset of these helpers.
#![allow(dead_code)]

use std::ops::Range;

use fixmap::{ContiguousWindow, Fixmap, WindowBuilder, fixmap_layout};
use kmap::{DirectMap, FlushPolicy, LocalSlots, PersistentPool, WaitHook};
use paging_core::{
    FrameAllocator, LargePages, MapFlags, PAGE_SIZE, PagingMode, PhysAddr, PhysFrame, VirtAddr,
    Zone,
};
use paging_sim::{
    MACHINE_HIGHMEM, MACHINE_LOWMEM, Machine, Mmu, PageFault, SimAccess, SimRam, ZonedAllocator,
};

/// CPUs of the simulated machine (local-kmap stacks).
pub const CPUS: usize = 8;
/// Local kmaps per CPU.
pub const DEPTH: usize = 4;
/// Where the direct map of lowmem starts.
pub const PAGE_OFFSET: u32 = 0xC000_0000;
/// Lowmem: what the direct map covers (the machine's lowmem zone ends here).
pub const LOWMEM_LIMIT: u64 = MACHINE_LOWMEM.end;
/// First persistent slot (LAST_PKMAP = 1024 slots fill 4 MiB up to the
/// fixmap's tables).
pub const PKMAP_BASE: u32 = 0xFF80_0000;

fixmap_layout! {
    /// The test kernel's fixmap.
    pub struct TestFixmap {
        top: 0xFFFF_F000;
        /// An early console (unused: it only shifts the other slots).
        CONSOLE;
        /// Local kmaps: `DEPTH` per CPU, twice that for guard slots.
        KMAP_LOCAL[2 * CPUS * DEPTH];
        /// One slot per CPU for walking highmem page tables.
        PTE_WALK[CPUS];
    }
}

/// What a test needs to know about a backend beyond `PagingMode`.
pub trait ModeUnderTest: PagingMode + Send + Sync + 'static {
    /// The allocator's highmem zone (PTE tables with `Zone::PreferHighmem`).
    /// Above 4 GiB under PAE; in 2-level mode it must stay below 4 GiB.
    const HIGHMEM: Range<u64>;
    /// First data page in highmem (outside the allocator's zones).
    const DATA: u64;
}

impl ModeUnderTest for paging_x86_2level::TwoLevel {
    const HIGHMEM: Range<u64> = 0x800_0000..0xC00_0000;
    const DATA: u64 = 0x1000_0000;
}

impl ModeUnderTest for paging_x86_pae::Pae {
    const HIGHMEM: Range<u64> = MACHINE_HIGHMEM;
    const DATA: u64 = 0x2_0000_0000;
}

pub fn va(x: u32) -> VirtAddr {
    VirtAddr::new(x)
}

pub fn frame(addr: u64) -> PhysFrame {
    PhysFrame::from_start_address(PhysAddr::new(addr).unwrap()).unwrap()
}

/// The pattern every data page starts with: its own frame number, tagged.
pub fn pattern(f: PhysFrame) -> u64 {
    0x5A5A_0000_0000_0000 | f.number()
}

/// Write `f`'s pattern into its first qword (directly into RAM).
pub fn fill(ram: &SimRam, f: PhysFrame) {
    ram.write_u64(f.start_address(), pattern(f)).unwrap();
}

/// Supervisor 8-byte read at `va` through `mmu` (TLB included).
pub fn read_u64(mmu: &Mmu<'_>, va: VirtAddr) -> Result<u64, PageFault> {
    let mut b = [0; 8];
    mmu.read_bytes(va, &mut b)?;
    Ok(u64::from_le_bytes(b))
}

/// Whether `va` reads `f`'s pattern through `mmu`.
pub fn reads_frame(mmu: &Mmu<'_>, va: VirtAddr, f: PhysFrame) -> bool {
    read_u64(mmu, va) == Ok(pattern(f))
}

/// A small deterministic PRNG (splitmix64): same seed, same sequence.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// The simulated kernel.
pub struct Kernel<'r, M: ModeUnderTest> {
    /// RAM, CPU 0, allocator, the kernel hierarchy (loaded in CR3).
    pub m: Machine<'r, M>,
    /// PTE tables from `PKMAP_BASE` to 4 GiB, physically contiguous.
    pub window: ContiguousWindow<M>,
    /// The fixmap on that window.
    pub fixmap: Fixmap<TestFixmap, M, SimAccess<'r>>,
    /// The direct map of `[0, LOWMEM_LIMIT)` at `PAGE_OFFSET`.
    pub direct: DirectMap,
}

impl<'r, M: ModeUnderTest> Kernel<'r, M> {
    pub fn new(ram: &'r SimRam) -> Self {
        let mut m = Machine::<M>::new(ram);
        // The machine's PGD is the first lowmem frame; keep the zones clear
        // of it, and put highmem where the mode can address it.
        m.alloc = ZonedAllocator::new(MACHINE_LOWMEM.start + 0x10_0000..LOWMEM_LIMIT, M::HIGHMEM);
        m.mapper
            .map_range(
                va(PAGE_OFFSET),
                PhysAddr::ZERO,
                LOWMEM_LIMIT,
                MapFlags::KERNEL_RW,
                LargePages::Use,
                &mut m.alloc,
            )
            .unwrap()
            .flush(&m.mmu);
        let (window, replaced) = WindowBuilder::new(va(PKMAP_BASE), 1 << 32)
            .unwrap()
            .build(&mut m.mapper, &m.mmu, &mut m.alloc)
            .unwrap();
        assert!(replaced.is_empty());
        m.reload_cr3();
        let mut fixmap = Fixmap::new(SimAccess::new(ram));
        fixmap.attach(window.clone()).unwrap();
        let k = Self {
            m,
            window,
            fixmap,
            direct: DirectMap::new(PAGE_OFFSET, LOWMEM_LIMIT),
        };
        // The direct map really is large pages.
        let t =
            k.m.mmu
                .walk_uncached(va(PAGE_OFFSET + 0x20_0000), paging_sim::Access::READ);
        assert_eq!(t.unwrap().size, M::LARGE_PAGE_SIZE);
        k
    }

    pub fn ram(&self) -> &'r SimRam {
        self.m.ram
    }

    /// Highmem data page `i`, its pattern written.
    pub fn high_page(&self, i: usize) -> PhysFrame {
        let f = frame(M::DATA + i as u64 * PAGE_SIZE);
        fill(self.ram(), f);
        f
    }

    /// A lowmem data page from the allocator, its pattern written.
    pub fn low_page(&mut self) -> PhysFrame {
        let f = self.m.alloc.allocate_frame(Zone::Lowmem).unwrap();
        fill(self.ram(), f);
        f
    }

    /// A persistent pool of `N` slots at `PKMAP_BASE`, flushing CPU 0.
    pub fn pool<P: FlushPolicy, W: WaitHook, const N: usize>(
        &self,
        policy: P,
        wait: W,
    ) -> PersistentPool<M, SimAccess<'r>, &Mmu<'r>, P, W, N>
    where
        kmap::PoolSize<N>: kmap::ValidPoolSize,
    {
        PersistentPool::new(
            &self.window,
            va(PKMAP_BASE),
            self.direct,
            SimAccess::new(self.ram()),
            &self.m.mmu,
            policy,
            wait,
        )
        .unwrap()
    }

    /// Local kmap slots on `KMAP_LOCAL`, flushing CPU 0.
    pub fn local(
        &self,
        guard_slots: bool,
        direct: DirectMap,
    ) -> LocalSlots<'_, TestFixmap, M, SimAccess<'r>, paging_core::NativeHooks, &Mmu<'r>, DEPTH, CPUS>
    {
        LocalSlots::new(
            &self.fixmap,
            TestFixmap::KMAP_LOCAL,
            guard_slots,
            direct,
            &self.m.mmu,
        )
        .unwrap()
    }

    /// The raw PTE of `va` in the window, read from RAM.
    pub fn pte(&self, va: VirtAddr) -> u64 {
        let pa = self.window.pte_phys(va).unwrap();
        if M::ENTRY_BYTES == 8 {
            self.ram().read_u64(pa).unwrap()
        } else {
            u64::from(self.ram().read_u32(pa).unwrap())
        }
    }

    /// Every PTE of the window, for "nothing changed" checks.
    pub fn window_ptes(&self) -> Vec<u64> {
        (0..self.window.tables() as u64)
            .flat_map(|k| {
                self.ram()
                    .frame_words(self.window.first_frame().checked_add(k).unwrap())
            })
            .collect()
    }
}
