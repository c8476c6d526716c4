//! The vmalloc area: kernel mappings made in the reference directory only.
//!
//! The area `[VMALLOC_START, VMALLOC_END)` is reserved in [`crate::mm::layout`]
//! and empty after boot. Each [`map_in_new_region`] maps one page at the
//! start of a PMD span of the area that was never used before, so the
//! mapping needs a new page table: in 2-level mode a new PGD entry, which
//! no other directory has yet ([`crate::mm::kernel_sync`] brings it to them);
//! in PAE mode a new entry in the shared kernel PMD, which every directory
//! sees at once.
//!
//! Like Linux, the kernel never frees a vmalloc page table: other
//! directories may hold a copy of the entry pointing at it. [`unmap`]
//! removes the page only.

use paging_core::{Entry, LargePages, MapFlags, Mapper, PhysAddr, PhysFrame, VirtAddr};

use crate::arch::mode::Mode;
use crate::base::error::Error;
use crate::failure;
use crate::mm::direct_map::DirectMapAccess;
use crate::mm::frames::Frames;
use crate::mm::kernel_sync;
use crate::mm::kernel_tables::kernel_flags;
use crate::mm::layout::{PMD_SPAN, VMALLOC_END, VMALLOC_START};
use crate::mm::shootdown::KernelTlb;

/// The next unused region. The first span stays empty (it holds
/// `layout::UNMAPPED_PROBE`).
static NEXT_REGION: spin::Mutex<u32> = spin::Mutex::new(VMALLOC_START + PMD_SPAN);

/// A mapper over the reference directory.
fn reference() -> Result<Mapper<Mode, DirectMapAccess>, Error> {
    let sync = kernel_sync::get().ok_or_else(|| failure!("kernel sync not set up"))?;
    // SAFETY: the loaded kernel directory, in lowmem. Through this binding
    // vmalloc maps only frames it allocated for its own regions, or device
    // memory (`map_io`) whose caller owns the device and which no other
    // mapping aliases, at addresses above `NEXT_REGION`'s start that no
    // Rust object uses, and unmaps only those.
    unsafe {
        Mapper::new(
            sync.reference(),
            DirectMapAccess,
            crate::arch::mode::cpu_features(),
        )
    }
    .map_err(|e| failure!("reference: {e}"))
}

/// Maps `frame` (kernel data: writable, no-execute, global) at the first
/// page of a vmalloc region never used before, in the reference directory
/// only, and returns its address. Page tables come from `frames`.
pub fn map_in_new_region(frame: PhysFrame, frames: &mut Frames) -> Result<VirtAddr, Error> {
    map_pages_in_new_region(frame.start_address(), 1, kernel_flags().data, frames)
}

/// Maps `pages` 4 KiB pages of device memory from `phys` with `flags`
/// (which say the memory type, for example write-combining for a
/// framebuffer) at the start of a vmalloc region never used before, in the
/// reference directory only, and returns its address. `pages` must fit in
/// one region (one PMD span). The frames are not RAM the allocator owns:
/// the caller owns the device.
pub fn map_io(
    phys: PhysAddr,
    pages: u32,
    flags: MapFlags,
    frames: &mut Frames,
) -> Result<VirtAddr, Error> {
    if pages == 0 || u64::from(pages) * 4096 > u64::from(PMD_SPAN) {
        return Err(failure!("{pages} pages do not fit one vmalloc region"));
    }
    map_pages_in_new_region(phys, pages, flags, frames)
}

/// Removes `pages` pages mapped by [`map_io`] at `va` (the table stays).
pub fn unmap_io(va: VirtAddr, pages: u32) -> Result<(), Error> {
    let (_, flush) = reference()?
        .unmap_range(va, u64::from(pages) * 4096)
        .map_err(|e| failure!("vmalloc unmap {va} + {pages} pages: {e}"))?;
    flush.flush(&KernelTlb);
    Ok(())
}

fn map_pages_in_new_region(
    phys: PhysAddr,
    pages: u32,
    flags: MapFlags,
    frames: &mut Frames,
) -> Result<VirtAddr, Error> {
    let mut next = NEXT_REGION.lock();
    let region = *next;
    if u64::from(region) + u64::from(PMD_SPAN) > u64::from(VMALLOC_END) {
        return Err(failure!("the vmalloc area has no unused region left"));
    }
    let va = VirtAddr::new(region);
    let mut mapper = reference()?;
    let walk = mapper.walk(va).map_err(|e| failure!("walking {va}: {e}"))?;
    if walk.pmd.is_some_and(|(_, pmd)| !pmd.is_none()) {
        return Err(failure!("vmalloc region {va} is already in use"));
    }
    let len = u64::from(pages) * 4096;
    mapper
        .map_range(va, phys, len, flags, LargePages::Avoid, frames)
        .map_err(|e| failure!("vmalloc map {va}: {e}"))?
        .flush(&KernelTlb);
    *next = region + PMD_SPAN;
    Ok(va)
}

/// Takes a whole unused region (one PMD span) for the caller to map pages
/// into with [`map_page`]; returns its start.
pub fn reserve_region() -> Result<VirtAddr, Error> {
    let mut next = NEXT_REGION.lock();
    let region = *next;
    if u64::from(region) + u64::from(PMD_SPAN) > u64::from(VMALLOC_END) {
        return Err(failure!("the vmalloc area has no unused region left"));
    }
    *next = region + PMD_SPAN;
    Ok(VirtAddr::new(region))
}

/// Maps a fresh frame from `frames` as kernel data at `va`, inside a region
/// [`reserve_region`] gave the caller, in the reference directory. Pages
/// of the region left unmapped are guard pages.
pub fn map_page(va: VirtAddr, frames: &mut Frames) -> Result<(), Error> {
    let frame = paging_core::FrameAllocator::allocate_frame(frames, paging_core::Zone::Any)
        .ok_or_else(|| failure!("no frame for vmalloc page {va}"))?;
    reference()?
        .map(
            paging_core::Page::containing_address(va),
            frame,
            kernel_flags().data,
            frames,
        )
        .map_err(|e| failure!("vmalloc map {va}: {e}"))?
        .flush(&KernelTlb);
    Ok(())
}

/// Maps `frame` (which the caller owns) as kernel data at `va`, inside a
/// region [`reserve_region`] gave the caller, in the reference directory.
pub fn map_frame(va: VirtAddr, frame: PhysFrame, frames: &mut Frames) -> Result<(), Error> {
    reference()?
        .map(
            paging_core::Page::containing_address(va),
            frame,
            kernel_flags().data,
            frames,
        )
        .map_err(|e| failure!("vmalloc map {va}: {e}"))?
        .flush(&KernelTlb);
    Ok(())
}

/// Points the vmalloc page at `va` to `frame` instead, flushing with `tlb`
/// (every CPU, for the kernel's own use: [`KernelTlb`]); returns the frame
/// it mapped. Its flags stay.
pub fn remap_frame<T: paging_core::TlbOps>(
    va: VirtAddr,
    frame: PhysFrame,
    tlb: &T,
) -> Result<PhysFrame, Error> {
    let mut mapper = reference()?;
    let (unmapped, flush) = mapper
        .unmap(va)
        .map_err(|e| failure!("vmalloc unmap {va}: {e}"))?;
    flush.flush(tlb);
    mapper
        .map(
            paging_core::Page::containing_address(va),
            frame,
            unmapped.flags,
            &mut paging_core::NoFrames,
        )
        .map_err(|e| failure!("vmalloc remap {va}: {e}"))?
        .flush(tlb);
    Ok(PhysFrame::containing_address(unmapped.base))
}

/// Removes the vmalloc page at `va` (its table stays) and returns the frame
/// it mapped. `invlpg` drops the translation whichever directory is loaded.
pub fn unmap(va: VirtAddr) -> Result<PhysFrame, Error> {
    let (unmapped, flush) = reference()?
        .unmap(va)
        .map_err(|e| failure!("vmalloc unmap {va}: {e}"))?;
    flush.flush(&KernelTlb);
    Ok(PhysFrame::containing_address(unmapped.base))
}
