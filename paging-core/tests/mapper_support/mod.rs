//! A test rig for the mapper: simulated RAM and MMU, a zoned allocator, and
//! the mode-specific facts (CR3 value, MMU configuration) for each backend.
// Each test crate uses a different subset of these helpers.
#![allow(dead_code)]

use std::collections::BTreeMap;

use paging_core::sim::{Access, Mmu, SimAccess, SimConfig, SimRam, ZonedAllocator};
use paging_core::{Mapper, PagingMode, PhysAddr, PhysFrame, VirtAddr};
use paging_x86_2level::TwoLevel;
use paging_x86_pae::Pae;

/// Lowmem: 1 MiB .. 64 MiB. Highmem: 4 GiB .. 4 GiB + 64 MiB.
pub const LOW: std::ops::Range<u64> = 0x10_0000..0x400_0000;
/// Highmem frames (above 4 GiB, so PAE tables there are reached past 32 bits).
pub const HIGH: std::ops::Range<u64> = 0x1_0000_0000..0x1_0400_0000;

/// What a test needs to know about a backend beyond `PagingMode`.
pub trait ModeUnderTest: PagingMode {
    /// The simulated MMU's configuration for this mode.
    fn sim_config() -> SimConfig;
    /// Highest frame the mode can map (for out-of-range tests).
    fn first_unreachable_frame() -> u64 {
        1 << Self::MAX_PHYS_BITS
    }
}

impl ModeUnderTest for TwoLevel {
    fn sim_config() -> SimConfig {
        SimConfig::two_level()
    }
}

impl ModeUnderTest for Pae {
    fn sim_config() -> SimConfig {
        SimConfig::pae()
    }
}

pub fn pa(x: u64) -> PhysAddr {
    PhysAddr::new(x).unwrap()
}

pub fn va(x: u32) -> VirtAddr {
    VirtAddr::new(x)
}

pub fn frame(x: u64) -> PhysFrame {
    PhysFrame::from_start_address(pa(x)).unwrap()
}

/// Simulated RAM (leaked so the MMU and mapper can borrow it for `'static`),
/// an MMU, an allocator and a fresh, empty hierarchy.
pub struct Rig<M: ModeUnderTest> {
    pub ram: &'static SimRam,
    pub mmu: Mmu<'static>,
    pub alloc: ZonedAllocator,
    pub mapper: Mapper<M, SimAccess<'static>>,
}

impl<M: ModeUnderTest> Rig<M> {
    pub fn new() -> Self {
        let ram: &'static SimRam = Box::leak(Box::new(SimRam::new()));
        let mut alloc = ZonedAllocator::new(LOW, HIGH);
        let mapper = Mapper::<M, _>::create(SimAccess::new(ram), &mut alloc).unwrap();
        let mmu = Mmu::new(ram, M::sim_config());
        let rig = Self {
            ram,
            mmu,
            alloc,
            mapper,
        };
        rig.load_cr3();
        rig
    }

    /// Load CR3 with the hierarchy's root (latching PDPTEs in PAE mode).
    pub fn load_cr3(&self) {
        self.mmu
            .load_cr3(self.mapper.root().as_u64() as u32)
            .expect("valid CR3");
    }

    /// What the *hardware* does with a supervisor read at `va`.
    pub fn hw(&self, va: VirtAddr) -> Result<PhysAddr, u32> {
        self.mmu
            .translate(va, Access::READ)
            .map(|t| t.pa)
            .map_err(|f| f.code)
    }

    /// A fresh walk of RAM (no TLB) for `va`.
    pub fn hw_uncached(&self, va: VirtAddr) -> Result<PhysAddr, u32> {
        self.mmu
            .walk_uncached(va, Access::READ)
            .map(|t| t.pa)
            .map_err(|f| f.code)
    }

    /// `n` contiguous lowmem frames from the rig's allocator.
    pub fn alloc_contiguous(&mut self, n: usize) -> PhysFrame {
        use paging_core::FrameAllocator;
        self.alloc
            .allocate_contiguous(n, paging_core::Zone::Lowmem)
            .expect("contiguous frames")
    }

    /// Every live frame (every table of the hierarchy, and anything else
    /// the test allocated) with its content: for byte-for-byte checks.
    pub fn snapshot(&self) -> BTreeMap<u64, Vec<u64>> {
        self.alloc
            .live_frames()
            .into_iter()
            .map(|f| (f.number(), self.ram.frame_words(f).to_vec()))
            .collect()
    }

    /// Assert that `op` failed without changing any table or leaking a frame.
    pub fn assert_unchanged<T: std::fmt::Debug>(&mut self, op: impl FnOnce(&mut Self) -> T) -> T {
        let before = self.snapshot();
        let live = self.alloc.live();
        let out = op(self);
        assert_eq!(self.alloc.live(), live, "frames leaked or freed: {out:?}");
        assert_eq!(self.alloc.double_frees(), 0, "double free: {out:?}");
        assert!(self.snapshot() == before, "tables changed: {out:?}");
        out
    }
}

/// Instantiate a generic test `fn name<M: ModeUnderTest>()` for both modes.
#[macro_export]
macro_rules! both_modes {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[test]
                fn two_level() {
                    super::$name::<paging_x86_2level::TwoLevel>();
                }
                #[test]
                fn pae() {
                    super::$name::<paging_x86_pae::Pae>();
                }
            }
        )*
    };
}
