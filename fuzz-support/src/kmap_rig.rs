//! The simulated kernel the kmap operations run on: a [`Machine`] with the
//! lowmem direct map in large pages, one contiguous window of PTE tables
//! from the pkmap base to 4 GiB, a fixmap with local-kmap slots on it, and
//! data pages whose first qword names their frame.

use std::ops::Range;

use fixmap::{ContiguousWindow, Fixmap, WindowBuilder, fixmap_layout};
use kmap::DirectMap;
use paging_core::{
    FrameAllocator, LargePages, MapFlags, PAGE_SIZE, PagingMode, PhysAddr, PhysFrame, VirtAddr,
    Zone,
};
use paging_sim::{MACHINE_HIGHMEM, MACHINE_LOWMEM, Machine, SimAccess, SimRam, ZonedAllocator};

/// CPUs with local-kmap stacks.
pub(crate) const CPUS: usize = 2;
/// Local kmaps per CPU.
pub(crate) const DEPTH: usize = 3;
/// Persistent slots: few, so the pool runs out and wraps often.
pub(crate) const SLOTS: usize = 4;
/// Where the direct map of lowmem starts.
const PAGE_OFFSET: u32 = 0xC000_0000;
/// First persistent slot.
pub(crate) const PKMAP_BASE: u32 = 0xFF80_0000;
/// Highmem data pages the operations map.
pub(crate) const HIGH_PAGES: usize = 8;
/// Lowmem data pages (direct-mapped unless forced through slots).
pub(crate) const LOW_PAGES: usize = 2;

fixmap_layout! {
    /// The fuzzed kernel's fixmap.
    pub(crate) struct FuzzFixmap {
        top: 0xFFFF_F000;
        /// Local kmaps: `DEPTH` per CPU, twice that with guard slots.
        KMAP_LOCAL[2 * CPUS * DEPTH];
    }
}

/// Where a mode's highmem is, and the first frame it cannot address.
pub(crate) trait RigMode: PagingMode {
    /// The allocator's highmem zone.
    const HIGHMEM: Range<u64>;
    /// First highmem data page (outside the allocator's zones).
    const DATA: u64;
    /// A frame beyond the mode's physical limit.
    const TOO_HIGH: u64;
}

impl RigMode for paging_x86_2level::TwoLevel {
    const HIGHMEM: Range<u64> = 0x800_0000..0xC00_0000;
    const DATA: u64 = 0x1000_0000;
    const TOO_HIGH: u64 = 0x1_0000_0000;
}

impl RigMode for paging_x86_pae::Pae {
    const HIGHMEM: Range<u64> = MACHINE_HIGHMEM;
    const DATA: u64 = 0x2_0000_0000;
    const TOO_HIGH: u64 = 0x10_0000_0000;
}

/// The simulated kernel.
pub(crate) struct Rig<'r, M: PagingMode> {
    /// RAM, CPU, allocator, the kernel hierarchy (loaded in CR3).
    pub(crate) m: Machine<'r, M>,
    /// PTE tables from `PKMAP_BASE` to 4 GiB.
    pub(crate) window: ContiguousWindow<M>,
    /// The fixmap on that window.
    pub(crate) fixmap: Fixmap<FuzzFixmap, M, SimAccess<'r>>,
    /// Lowmem at `PAGE_OFFSET`.
    pub(crate) direct: DirectMap,
    /// Data pages: highmem, then lowmem, then one the mode cannot map.
    pub(crate) pages: Vec<PhysFrame>,
}

fn frame(addr: u64) -> PhysFrame {
    match PhysAddr::new(addr).map(PhysFrame::containing_address) {
        Ok(f) => f,
        Err(e) => panic!("rig frame {addr:#x}: {e}"),
    }
}

/// What the first qword of data page `f` holds.
pub(crate) fn pattern(f: PhysFrame) -> u64 {
    0x5A5A_0000_0000_0000 | f.number()
}

impl<'r, M: RigMode> Rig<'r, M> {
    /// The kernel on `ram`; `force_map` sends lowmem through slots too.
    pub(crate) fn new(ram: &'r SimRam, force_map: bool) -> Self {
        let mut m = Machine::<M>::new(ram);
        let lowmem_limit = MACHINE_LOWMEM.end;
        m.alloc = ZonedAllocator::new(MACHINE_LOWMEM.start + 0x10_0000..lowmem_limit, M::HIGHMEM);
        let page_offset = VirtAddr::new(PAGE_OFFSET);
        let flush = m.mapper.map_range(
            page_offset,
            PhysAddr::ZERO,
            lowmem_limit,
            MapFlags::KERNEL_RW,
            LargePages::Use,
            &mut m.alloc,
        );
        match flush {
            Ok(f) => f.flush(&m.mmu),
            Err(e) => panic!("rig direct map: {e}"),
        }
        let built = WindowBuilder::new(VirtAddr::new(PKMAP_BASE), 1 << 32)
            .and_then(|b| b.build(&mut m.mapper, &m.mmu, &mut m.alloc));
        let window = match built {
            Ok((w, _)) => w,
            Err(e) => panic!("rig window: {e}"),
        };
        m.reload_cr3();
        let mut fixmap = Fixmap::new(SimAccess::new(ram));
        if let Err(e) = fixmap.attach(window.clone()) {
            panic!("rig fixmap: {e}");
        }
        let mut pages: Vec<PhysFrame> = (0..HIGH_PAGES as u64)
            .map(|i| frame(M::DATA + i * PAGE_SIZE))
            .collect();
        for _ in 0..LOW_PAGES {
            match m.alloc.allocate_frame(Zone::Lowmem) {
                Some(f) => pages.push(f),
                None => panic!("rig lowmem page"),
            }
        }
        for &f in &pages {
            if let Err(e) = ram.write_u64(f.start_address(), pattern(f)) {
                panic!("rig page {f:?}: {e:?}");
            }
        }
        pages.push(frame(M::TOO_HIGH));
        Self {
            m,
            window,
            fixmap,
            direct: DirectMap::new(PAGE_OFFSET, lowmem_limit).with_force_map(force_map),
            pages,
        }
    }

    /// Whether the CPU, through its TLB, reads `f`'s pattern at `va`.
    pub(crate) fn reads(&self, va: VirtAddr, f: PhysFrame) -> bool {
        let mut b = [0; 8];
        self.m.mmu.read_bytes(va, &mut b).is_ok() && u64::from_le_bytes(b) == pattern(f)
    }

    /// Every PTE of the window, for "nothing changed" checks.
    pub(crate) fn window_ptes(&self) -> Vec<u64> {
        (0..self.window.tables() as u64)
            .filter_map(|k| self.window.first_frame().checked_add(k))
            .flat_map(|f| self.m.ram.frame_words(f))
            .collect()
    }
}
