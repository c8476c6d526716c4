//! A whole simulated machine for tests: RAM, one CPU, a zoned frame
//! allocator, and an empty page-table hierarchy of mode `M` loaded in CR3.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::Range;
use std::vec::Vec;

use super::{Access, Mmu, SimAccess, SimConfig, SimRam, ZonedAllocator};
use paging_core::{FrameAllocator, Mapper, PagingMode, PhysAddr, PhysFrame, VirtAddr, Zone};

/// Lowmem of a [`Machine`]: 1 MiB .. 64 MiB.
pub const MACHINE_LOWMEM: Range<u64> = 0x10_0000..0x400_0000;
/// Highmem of a [`Machine`]: 64 MiB above 4 GiB, so that PAE tables and
/// pages there need more than 32 address bits.
pub const MACHINE_HIGHMEM: Range<u64> = 0x1_0000_0000..0x1_0400_0000;

/// RAM, a CPU, an allocator and a hierarchy, wired together.
///
/// ```
/// use paging_sim::{Machine, SimRam};
/// use paging_core::{MapFlags, Page, PhysAddr, PhysFrame, VirtAddr};
/// use paging_x86_pae::Pae;
///
/// let ram = SimRam::new();
/// let mut m = Machine::<Pae>::new(&ram);
/// let page = Page::from_start_address(VirtAddr::new(0xC000_0000)).unwrap();
/// let frame = PhysFrame::from_start_address(PhysAddr::new(0x5000).unwrap()).unwrap();
/// m.mapper.map(page, frame, MapFlags::KERNEL_RW, &mut m.alloc).unwrap().flush(&m.mmu);
/// assert_eq!(m.hw(VirtAddr::new(0xC000_0010)), Ok(PhysAddr::new(0x5010).unwrap()));
/// ```
pub struct Machine<'r, M: PagingMode> {
    /// Physical memory.
    pub ram: &'r SimRam,
    /// The CPU (its TLB, CR3, flush counters).
    pub mmu: Mmu<'r>,
    /// Frames: lowmem [`MACHINE_LOWMEM`], highmem [`MACHINE_HIGHMEM`].
    pub alloc: ZonedAllocator,
    /// The hierarchy CR3 points at, reached through the physical view.
    pub mapper: Mapper<M, SimAccess<'r>>,
}

impl<'r, M: PagingMode> Machine<'r, M> {
    /// A machine on `ram` with an empty hierarchy loaded in CR3, on the CPU
    /// [`SimConfig::for_mode`] describes.
    pub fn new(ram: &'r SimRam) -> Self {
        Self::with_config(ram, SimConfig::for_mode::<M>())
    }

    /// A machine on `ram` whose CPU is `config` (another PAT, no PGE, a
    /// [`SimConfig::p6`], ...), with an empty hierarchy loaded in CR3 and a
    /// mapper bound to the CPU's [`features`](SimConfig::features).
    /// `config` must be of `M`'s format (2-level or PAE).
    pub fn with_config(ram: &'r SimRam, config: SimConfig) -> Self {
        let mut alloc = ZonedAllocator::new(MACHINE_LOWMEM, MACHINE_HIGHMEM);
        let access = SimAccess::new(ram);
        let mapper = match Mapper::<M, _>::create_isolated(access, config.features(), &mut alloc) {
            Ok(m) => m,
            Err(e) => panic!("a fresh machine has frames for its PGD: {e}"),
        };
        let mmu = Mmu::new(ram, config);
        if let Err(e) = mmu.load_cr3(mapper.root().as_u64() as u32) {
            panic!("an empty PGD loads: {e:?}");
        }
        Self {
            ram,
            mmu,
            alloc,
            mapper,
        }
    }

    /// Reload CR3 with the hierarchy's root (re-latching PAE PDPTEs).
    pub fn reload_cr3(&self) {
        if let Err(e) = self.mmu.load_cr3(self.mapper.root().as_u64() as u32) {
            panic!("CR3 reload faulted: {e:?}");
        }
    }

    /// What the CPU does with a supervisor read at `va`: the physical address,
    /// or the page-fault error code.
    pub fn hw(&self, va: VirtAddr) -> Result<PhysAddr, u32> {
        self.mmu
            .translate(va, Access::READ)
            .map(|t| t.pa)
            .map_err(|f| f.code)
    }

    /// What a fresh walk of RAM (no TLB) says for `va`.
    pub fn hw_uncached(&self, va: VirtAddr) -> Result<PhysAddr, u32> {
        self.mmu
            .walk_uncached(va, Access::READ)
            .map(|t| t.pa)
            .map_err(|f| f.code)
    }

    /// `n` contiguous lowmem frames from the machine's allocator.
    pub fn alloc_contiguous(&mut self, n: usize) -> PhysFrame {
        match self.alloc.allocate_contiguous(n, Zone::Lowmem) {
            Some(f) => f,
            None => panic!("the machine has {n} contiguous lowmem frames"),
        }
    }

    /// Every live frame (every table, and whatever else the test allocated)
    /// with its content.
    pub fn snapshot(&self) -> BTreeMap<u64, Vec<u64>> {
        self.alloc
            .live_frames()
            .into_iter()
            .map(|f| (f.number(), self.ram.frame_words(f).to_vec()))
            .collect()
    }

    /// Run `op`, and assert that it changed no live frame's content and
    /// allocated, freed or double-freed nothing. Returns `op`'s result.
    pub fn assert_unchanged<T: Debug>(&mut self, op: impl FnOnce(&mut Self) -> T) -> T {
        let before = self.snapshot();
        let live = self.alloc.live();
        let double = self.alloc.double_frees();
        let out = op(self);
        assert_eq!(self.alloc.live(), live, "frames leaked or freed by {out:?}");
        assert_eq!(self.alloc.double_frees(), double, "double free by {out:?}");
        assert!(self.snapshot() == before, "tables changed by {out:?}");
        out
    }
}

/// Expand each generic test function `fn name<M: PagingMode>()` into a
/// module `name` with one `#[test]` per backend (`two_level`, `pae`).
///
/// The calling crate must depend on `paging-x86-2level` and
/// `paging-x86-pae` (every crate of this workspace does, for its tests).
///
/// ```
/// use paging_core::PagingMode;
///
/// fn geometry_is_consistent<M: PagingMode>() {
///     assert_eq!(M::pmd_span(), M::LARGE_PAGE_SIZE.bytes());
/// }
///
/// paging_sim::for_each_mode!(geometry_is_consistent);
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! for_each_mode {
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
