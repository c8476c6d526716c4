//! Lowmem one address space costs when it maps 1 GiB of 4 KiB pages, with
//! its PTE tables in highmem (pte-highmem, reached through local kmaps
//! while walked) versus in lowmem, on the simulated machine.

use kmap::HighmemTables;
use paging_core::{
    FrameAllocator, LargePages, MapFlags, Mapper, PAGE_SIZE, PhysAddr, PhysFrame, VirtAddr, Zone,
};
use paging_sim::{MmuVirt, SimRam, ZonedAllocator};

use super::sim_kernel::{SimKernel, SimMode};

/// Where the address space maps (user space).
pub const VA: u32 = 0x4000_0000;
/// What it maps there.
pub const BYTES: u64 = 1 << 30;
/// Physical address of the first page mapped (never touched).
pub const PA: u64 = 0x4000_0000;

/// Frames one address space holds, by zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// Lowmem frames (PGD, PMD tables, and PTE tables unless in highmem).
    pub lowmem_frames: u64,
    /// Highmem frames.
    pub highmem_frames: u64,
}

impl Usage {
    /// Lowmem bytes.
    pub fn lowmem_bytes(&self) -> u64 {
        self.lowmem_frames * PAGE_SIZE
    }
}

/// The figure for one mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LowmemFigure {
    /// The mode's name.
    pub mode: &'static str,
    /// PTE tables from `Zone::PreferHighmem`.
    pub pte_highmem: Usage,
    /// PTE tables from lowmem.
    pub pte_lowmem: Usage,
}

impl LowmemFigure {
    /// How many times less lowmem pte-highmem costs.
    pub fn ratio(&self) -> f64 {
        self.pte_lowmem.lowmem_bytes() as f64 / self.pte_highmem.lowmem_bytes() as f64
    }
}

/// Counts the frames an address space holds, by zone.
struct Counting<'a> {
    inner: &'a mut ZonedAllocator,
    usage: Usage,
}

// SAFETY: every frame comes from (and goes back to) the wrapped allocator,
// which keeps the contract; this only counts.
unsafe impl FrameAllocator for Counting<'_> {
    fn allocate_frame(&mut self, zone: Zone) -> Option<PhysFrame> {
        let f = self.inner.allocate_frame(zone)?;
        if self.inner.is_lowmem(f) {
            self.usage.lowmem_frames += 1;
        } else {
            self.usage.highmem_frames += 1;
        }
        Some(f)
    }

    unsafe fn deallocate_frame(&mut self, frame: PhysFrame) {
        if self.inner.is_lowmem(frame) {
            self.usage.lowmem_frames -= 1;
        } else {
            self.usage.highmem_frames -= 1;
        }
        // The model's allocator: safe (simulated frames).
        self.inner.deallocate_frame(frame);
    }
}

/// One address space mapping [`BYTES`] at [`VA`], its PTE tables from
/// `pte_zone`, built on a fresh simulated kernel. Checks a few
/// translations through the same (kmap-walking) access before counting.
pub fn address_space<M: SimMode>(pte_zone: Zone) -> Result<Usage, String> {
    let ram = SimRam::new();
    let mut k = SimKernel::<M>::new(&ram)?;
    // The allocator leaves the kernel, which stays borrowed by the slots.
    let mut zoned = std::mem::replace(&mut k.m.alloc, ZonedAllocator::new(0..0, 0..0));
    let slots = k.walk_slots()?;
    let virt = MmuVirt::new(&k.m.mmu);
    let access = HighmemTables::new_isolated(&slots, virt, k.direct, || 0);
    let mut alloc = Counting {
        inner: &mut zoned,
        usage: Usage::default(),
    };
    let mut space =
        Mapper::<M, _>::create_isolated(access, paging_core::CpuFeatures::full::<M>(), &mut alloc)
            .map_err(|e| format!("create: {e}"))?
            .with_pte_zone(pte_zone);
    let pa = PhysAddr::new(PA).map_err(|e| e.to_string())?;
    space
        .map_range(
            VirtAddr::new(VA),
            pa,
            BYTES,
            MapFlags::WRITABLE | MapFlags::USER,
            LargePages::Avoid,
            &mut alloc,
        )
        .map_err(|e| format!("map_range: {e}"))?
        // A directory no CPU has loaded: nothing to flush.
        .ignore();
    for offset in [0, 0x1234_5678, BYTES - 8] {
        let va = VirtAddr::new(VA + offset as u32);
        let t = space.translate(va).map_err(|e| format!("{va:?}: {e}"))?;
        if t.phys_addr().as_u64() != PA + offset {
            return Err(format!("{va:?} translates to {:?}", t.phys_addr()));
        }
    }
    Ok(alloc.usage)
}

/// Both placements in mode `M`.
pub fn figure<M: SimMode>() -> Result<LowmemFigure, String> {
    Ok(LowmemFigure {
        mode: M::NAME,
        pte_highmem: address_space::<M>(Zone::PreferHighmem)?,
        pte_lowmem: address_space::<M>(Zone::Lowmem)?,
    })
}
