//! The vmalloc area: kernel mappings made in the reference directory only.
//!
//! The area `[VMALLOC_START, VMALLOC_END)` is reserved in [`crate::mm::layout`]
//! and empty after boot. It is split in two:
//!
//! - `[VMALLOC_START, VMAP_AREA_START)`: regions handed out one PMD span at
//!   a time and never reused ([`map_in_new_region`], [`reserve_region`]):
//!   the kernel-sync self-tests need page tables nobody had before.
//! - `[VMAP_AREA_START, VMALLOC_END)` ([`VMAP_AREA_SIZE`], the top of the
//!   area): a `vmap::VmapArea` (Linux's `vmap_area`), behind one lock with
//!   the reference mapper: [`vmap`], [`ioremap`], [`vunmap`], each range
//!   followed by an unmapped guard page, the TLB flush of unmapped ranges
//!   deferred until [`VMAP_LAZY_PAGES`] pages have gathered (lazy purge).
//!   Its first page is never handed out either, so every range has an
//!   unmapped page below it too (the AP stacks rely on that).
//!
//! The local APIC is *not* in the vmap area: it stays in the fixmap (as
//! Linux's `FIX_APIC_BASE`), because it is needed before the area exists
//! and at one fixed address on every CPU.
//!
//! Each [`map_in_new_region`] maps one page at the
//! start of a PMD span of the area that was never used before, so the
//! mapping needs a new page table: in 2-level mode a new PGD entry, which
//! no other directory has yet ([`crate::mm::kernel_sync`] brings it to them);
//! in PAE mode a new entry in the shared kernel PMD, which every directory
//! sees at once.
//!
//! Like Linux, the kernel never frees a vmalloc page table: other
//! directories may hold a copy of the entry pointing at it. [`unmap`]
//! removes the page only.

use paging_core::{
    CacheType, Entry, LargePages, MapFlags, Mapper, PhysAddr, PhysFrame, TlbOps, VirtAddr,
};
use vmap::{VmapArea, VmapStats};

use crate::arch::mode::Mode;
use crate::arch::{cpu, pat};
use crate::base::error::Error;
use crate::failure;
use crate::mm::direct_map::DirectMapAccess;
use crate::mm::frames::Frames;
use crate::mm::kernel_sync;
use crate::mm::kernel_tables::kernel_flags;
use crate::mm::layout::{PMD_SPAN, VMALLOC_END, VMALLOC_START};
use crate::mm::shootdown::KernelTlb;

/// Bytes at the top of the vmalloc area that the vmap area manages.
pub const VMAP_AREA_SIZE: u32 = 16 << 20;
/// Start of the vmap area: a 4 MiB boundary (a PMD span, or two, in both
/// modes), so no page table is shared with the never-reused regions.
pub const VMAP_AREA_START: u32 = (VMALLOC_END - VMAP_AREA_SIZE) & !((4 << 20) - 1);
/// Pages unmapped from the vmap area before one purge flushes them all.
pub const VMAP_LAZY_PAGES: u32 = 64;
/// Ranges (mapped, or unmapped and waiting for the purge) the area holds.
const VMAP_RANGES: usize = 96;

static_assertions::const_assert!(VMALLOC_START + 8 * PMD_SPAN <= VMAP_AREA_START);

/// The kernel's vmap area (made at first use, after the PAT is programmed).
static AREA: spin::Mutex<Option<VmapArea<VMAP_RANGES>>> = spin::Mutex::new(None);

/// Runs `f` on the kernel's vmap area and the reference mapper, under the
/// area's lock with interrupts off. Callers that pass the frame allocator
/// hold its lock first (the order everywhere: frames, then the area).
fn with_area<R>(
    f: impl FnOnce(
        &mut VmapArea<VMAP_RANGES>,
        &mut Mapper<Mode, DirectMapAccess>,
    ) -> Result<R, vmap::VmapError>,
) -> Result<R, Error> {
    cpu::without_interrupts(|| {
        let mut area = AREA.lock();
        let area = match &mut *area {
            Some(area) => area,
            none => none.insert(
                VmapArea::new(
                    VirtAddr::new(VMAP_AREA_START + 4096),
                    u64::from(VMALLOC_END),
                    VMAP_LAZY_PAGES,
                    pat::layout(),
                )
                .map_err(|e| failure!("the vmap area: {e}"))?,
            ),
        };
        let mut mapper = reference()?;
        f(area, &mut mapper).map_err(|e| failure!("vmap area: {e}"))
    })
}

/// Maps `frames` (which the caller owns) at consecutive pages of the vmap
/// area with `flags`, followed by a guard page; returns the first address.
/// Page tables come from `alloc`.
pub fn vmap(frames: &[PhysFrame], flags: MapFlags, alloc: &mut Frames) -> Result<VirtAddr, Error> {
    with_area(|area, mapper| area.vmap(mapper, frames, flags, alloc, &KernelTlb))
}

/// Maps the device memory `[phys, phys + len)` (which the caller owns, and
/// which no other mapping aliases with another memory type) in the vmap
/// area as kernel data of memory type `cache`; returns the address of
/// `phys`.
pub fn ioremap(
    phys: PhysAddr,
    len: u64,
    cache: CacheType,
    alloc: &mut Frames,
) -> Result<VirtAddr, Error> {
    with_area(|area, mapper| area.ioremap(mapper, phys, len, cache, alloc, &KernelTlb))
}

/// Unmaps the vmap-area range at `va` (from [`vmap`] or [`ioremap`]); its
/// flush waits for the next purge, and its addresses are not handed out
/// again before it. Returns the pages unmapped.
pub fn vunmap(va: VirtAddr) -> Result<u64, Error> {
    with_area(|area, mapper| area.vunmap(mapper, va, &KernelTlb))
}

/// Flushes every range unmapped lazily from the vmap area and hands the
/// addresses back.
pub fn vmap_purge() -> Result<(), Error> {
    with_area(|area, _| {
        area.purge(&KernelTlb);
        Ok(())
    })
}

/// What the kernel's vmap area has done so far.
pub fn vmap_stats() -> Result<VmapStats, Error> {
    with_area(|area, _| Ok(area.stats()))
}

/// Runs `f` on a vmap area of its own over a fresh region (one PMD span,
/// never reused), purging after `threshold_pages` unmapped pages, with the
/// reference mapper, flushing through `tlb`: the lazy-purge self-test's
/// side-by-side area (eager with a threshold of 0).
pub fn with_scratch_area<T: TlbOps, R>(
    threshold_pages: u32,
    tlb: &T,
    f: impl FnOnce(&mut VmapArea<8>, &mut Mapper<Mode, DirectMapAccess>, &T) -> R,
) -> Result<R, Error> {
    let region = reserve_region()?;
    let mut area = VmapArea::<8>::new(
        region,
        u64::from(region.as_u32()) + u64::from(PMD_SPAN),
        threshold_pages,
        pat::layout(),
    )
    .map_err(|e| failure!("scratch vmap area: {e}"))?;
    let mut mapper = reference()?;
    let result = f(&mut area, &mut mapper, tlb);
    area.purge(tlb);
    Ok(result)
}

/// The next unused region. The first span stays empty (it holds
/// `layout::UNMAPPED_PROBE`).
static NEXT_REGION: spin::Mutex<u32> = spin::Mutex::new(VMALLOC_START + PMD_SPAN);

/// A mapper over the reference directory.
fn reference() -> Result<Mapper<Mode, DirectMapAccess>, Error> {
    let sync = kernel_sync::get().ok_or_else(|| failure!("kernel sync not set up"))?;
    // SAFETY: the loaded kernel directory, in lowmem. Through this binding
    // vmalloc maps only frames it allocated for its own regions, frames its
    // callers own (`vmap`), or device memory (`ioremap`) whose caller owns
    // the device and which no other mapping aliases, at addresses above
    // `NEXT_REGION`'s start that no Rust object uses, and unmaps only those.
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

fn map_pages_in_new_region(
    phys: PhysAddr,
    pages: u32,
    flags: MapFlags,
    frames: &mut Frames,
) -> Result<VirtAddr, Error> {
    let mut next = NEXT_REGION.lock();
    let region = *next;
    if u64::from(region) + u64::from(PMD_SPAN) > u64::from(VMAP_AREA_START) {
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
/// into with [`map_frame`]; returns its start.
pub fn reserve_region() -> Result<VirtAddr, Error> {
    let mut next = NEXT_REGION.lock();
    let region = *next;
    if u64::from(region) + u64::from(PMD_SPAN) > u64::from(VMAP_AREA_START) {
        return Err(failure!("the vmalloc area has no unused region left"));
    }
    *next = region + PMD_SPAN;
    Ok(VirtAddr::new(region))
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
