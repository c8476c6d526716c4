//! The library half of the minimal kernel: its address-space layout, its
//! frame allocator and its page-table set-up, generic over the paging mode,
//! the table access and the allocator. The kernel (`main.rs`) runs it on a
//! real CPU; the host tests (`tests.rs`) run the same functions on
//! `paging-core`'s simulated machine and check what its MMU sees.

#![cfg_attr(not(test), no_std)]
#![warn(missing_docs)]

use core::marker::PhantomData;
use core::ops::Range;

use fixmap::{ContiguousWindow, WindowBuilder, WindowError, fixmap_layout};
use kmap::DirectMap;
use paging_core::{
    Flush, FrameAllocator, LargePages, MapError, MapFlags, Mapper, NativeHooks, PagingMode,
    PhysAddr, PhysFrame, TableAccess, TlbOps, VirtAddr, Zone,
};

#[cfg(test)]
mod tests;

/// Where physical address 0 appears: the lowmem direct map starts here.
pub const PAGE_OFFSET: u32 = 0xC000_0000;
/// The most RAM the direct map covers (Linux's 896 MiB); above is highmem.
pub const MAX_LOWMEM: u64 = 896 << 20;
/// First persistent kmap slot. The fixmap window (contiguous PTE tables)
/// runs from here to 4 GiB.
pub const PKMAP_BASE: u32 = 0xFF80_0000;
/// Slots of the persistent kmap pool (2 MiB of addresses from `PKMAP_BASE`).
pub const POOL_SLOTS: usize = 512;
/// Local (atomic) kmap slots of the one CPU.
pub const LOCAL_DEPTH: usize = 4;

fixmap_layout! {
    /// The fixmap: slots at fixed addresses below 0xFFFF_F000.
    pub struct MinimalFixmap {
        top: 0xFFFF_F000;
        /// One slot the boot sets, to show `Fixmap::set`.
        SCRATCH;
        /// The local kmap slots, their PTEs in one table.
        KMAP_LOCAL[LOCAL_DEPTH] in_one_table;
    }
}

/// kmap's types in this kernel: paging mode `M`, page-table access `A`
/// and TLB `T` (the kernel's own, or the simulator's in the host tests).
pub struct Kmaps<M, A, T>(PhantomData<(M, A, T)>);

impl<M: PagingMode, A: TableAccess + Sync, T: TlbOps + Sync> kmap::Platform for Kmaps<M, A, T> {
    type Mode = M;
    type Access = A;
    type Tlb = T;
    type Hooks = NativeHooks;
    type Fixmap = MinimalFixmap;
}

/// The persistent kmap pool of this kernel (global flush, spinning waits).
pub type Pool<M, A, T> = kmap::Pool<Kmaps<M, A, T>, POOL_SLOTS>;
/// The local kmap slots of this kernel (one CPU).
pub type Local<'f, M, A, T> = kmap::Local<'f, Kmaps<M, A, T>, LOCAL_DEPTH>;

/// The loaded kernel image, physical addresses (it runs identity-mapped).
#[derive(Debug, Clone, Copy)]
pub struct KernelImage {
    /// First byte (`.text` starts here).
    pub start: u64,
    /// End of `.text` and `.rodata` (page aligned): read-only below.
    pub ro_end: u64,
    /// End of `.bss` (page aligned).
    pub end: u64,
}

/// The kernel's frame allocator: two bump ranges, lowmem and highmem.
/// Frames are never reused (nothing in this kernel frees one).
#[derive(Debug)]
pub struct BumpFrames {
    low: Range<u64>,
    high: Range<u64>,
}

impl BumpFrames {
    /// Hand out the frames of `low` (lowmem) and `high` (highmem).
    ///
    /// # Safety
    /// Both ranges are RAM that nothing else uses, now or later.
    pub unsafe fn new(low: Range<u64>, high: Range<u64>) -> Self {
        let frames = |r: Range<u64>| ((r.start + 0xFFF) & !0xFFF)..(r.end & !0xFFF);
        Self {
            low: frames(low),
            high: frames(high),
        }
    }
}

/// The first `count` frames of `range`, taken out of it.
fn take(range: &mut Range<u64>, count: usize) -> Option<PhysFrame> {
    let bytes = count as u64 * 4096;
    if range.end.saturating_sub(range.start) < bytes {
        return None;
    }
    let frame = PhysFrame::from_start_address(PhysAddr::new(range.start).ok()?).ok()?;
    range.start += bytes;
    Some(frame)
}

// SAFETY: `new`'s caller promised both ranges are unused RAM; `take` hands
// out each frame once and never again (frames are not reused), and a
// contiguous run is consecutive frames of one range.
unsafe impl FrameAllocator for BumpFrames {
    fn allocate_frame(&mut self, zone: Zone) -> Option<PhysFrame> {
        self.allocate_contiguous(1, zone)
    }

    fn allocate_contiguous(&mut self, count: usize, zone: Zone) -> Option<PhysFrame> {
        match zone {
            Zone::Lowmem => take(&mut self.low, count),
            _ => take(&mut self.high, count).or_else(|| take(&mut self.low, count)),
        }
    }

    unsafe fn deallocate_frame(&mut self, _frame: PhysFrame) {}
}

/// Map the kernel image where it runs (identity) and lowmem `0..lowmem_end`
/// at [`PAGE_OFFSET`] (large pages where aligned). `.text` and `.rodata`
/// are read-only in both; nothing is user-accessible. Returns the TLB
/// work, which is none with paging still off.
pub fn map_kernel<M: PagingMode, A: TableAccess, F: FrameAllocator>(
    mapper: &mut Mapper<M, A>,
    frames: &mut F,
    image: &KernelImage,
    lowmem_end: u64,
) -> Result<Flush, MapError> {
    let (ro, rw) = (MapFlags::KERNEL_RO, MapFlags::KERNEL_RW);
    let direct = |pa: u64| VirtAddr::new(PAGE_OFFSET + pa as u32);
    let identity = |pa: u64| VirtAddr::new(pa as u32);
    let regions = [
        (identity(image.start), image.start, image.ro_end, ro),
        (identity(image.ro_end), image.ro_end, image.end, rw),
        (direct(0), 0, image.start, rw),
        (direct(image.start), image.start, image.ro_end, ro),
        (direct(image.ro_end), image.ro_end, lowmem_end, rw),
    ];
    let mut flush = Flush::none();
    for (va, start, end, flags) in regions {
        let (pa, len) = (PhysAddr::new_truncate(start), end.saturating_sub(start));
        flush = flush.and(mapper.map_range(va, pa, len, flags, LargePages::Use, frames)?);
    }
    Ok(flush)
}

/// The fixmap and persistent-kmap window: physically contiguous PTE
/// tables for `PKMAP_BASE..4 GiB`, installed in `mapper`'s hierarchy.
pub fn build_window<M, A, T, F>(
    mapper: &mut Mapper<M, A>,
    tlb: &T,
    frames: &mut F,
) -> Result<ContiguousWindow<M>, WindowError>
where
    M: PagingMode,
    A: TableAccess,
    T: TlbOps,
    F: FrameAllocator,
{
    let builder = WindowBuilder::new(VirtAddr::new(PKMAP_BASE), 1 << 32)?;
    // A fresh hierarchy has no table there, so nothing is replaced.
    let (window, _replaced) = builder.build(mapper, tlb, frames)?;
    Ok(window)
}

/// What a [`ShootdownTlb`] asks the other CPUs to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shootdown {
    /// `invlpg` of `pages` pages from `start`.
    Pages {
        /// First page.
        start: VirtAddr,
        /// How many.
        pages: u32,
    },
    /// Reload CR3: every non-global translation.
    All,
    /// Every translation, global ones too.
    Everything,
}

/// The shape of an SMP kernel's `TlbOps`: each flush is done on this CPU by
/// `local` (`NativeTlb` on hardware), then handed to `send`, which makes
/// every other CPU that may hold the translation do the same and returns
/// once they all have (an IPI and a wait for acknowledgements; the
/// `tlb-shootdown` crate is one). The minimal kernel has one CPU and uses
/// `NativeTlb` alone; its host tests run this one on two simulated CPUs.
pub struct ShootdownTlb<L, S> {
    /// This CPU's TLB.
    pub local: L,
    /// Runs a shootdown on the other CPUs and waits for it.
    pub send: S,
}

impl<L: TlbOps, S: Fn(Shootdown)> TlbOps for ShootdownTlb<L, S> {
    fn flush_page(&self, va: VirtAddr) {
        self.local.flush_page(va);
        (self.send)(Shootdown::Pages {
            start: va,
            pages: 1,
        });
    }

    fn flush_range(&self, start: VirtAddr, pages: u32) {
        // One request for the whole range: the other CPUs apply their own
        // ceiling (`flush_range`'s default) when they receive it.
        self.local.flush_range(start, pages);
        (self.send)(Shootdown::Pages { start, pages });
    }

    fn flush_all(&self) {
        self.local.flush_all();
        (self.send)(Shootdown::All);
    }

    fn flush_everything(&self) {
        self.local.flush_everything();
        (self.send)(Shootdown::Everything);
    }
}

/// What a CPU receiving `request` does with its own TLB `tlb` (the IPI
/// handler's body).
pub fn on_shootdown<T: TlbOps>(tlb: &T, request: Shootdown) {
    match request {
        Shootdown::Pages { start, pages } => tlb.flush_range(start, pages),
        Shootdown::All => tlb.flush_all(),
        Shootdown::Everything => tlb.flush_everything(),
    }
}

/// Which frames kmap reaches through the direct map.
pub fn direct_map(lowmem_end: u64) -> DirectMap {
    DirectMap::new(PAGE_OFFSET, lowmem_end)
}
