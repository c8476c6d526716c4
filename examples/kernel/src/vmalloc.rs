//! The vmalloc area: kernel mappings made in the reference directory only.
//!
//! The area `[VMALLOC_START, VMALLOC_END)` is reserved in [`crate::layout`]
//! and empty after boot. Each [`map_in_new_region`] maps one page at the
//! start of a PMD span of the area that was never used before, so the
//! mapping needs a new page table: in 2-level mode a new PGD entry, which
//! no other directory has yet ([`crate::kernel_sync`] brings it to them);
//! in PAE mode a new entry in the shared kernel PMD, which every directory
//! sees at once.
//!
//! Like Linux, the kernel never frees a vmalloc page table: other
//! directories may hold a copy of the entry pointing at it. [`unmap`]
//! removes the page only.

use paging_core::cpu::NativeTlb;
use paging_core::{Entry, Mapper, Page, PhysFrame, VirtAddr};

use crate::direct_map::DirectMapAccess;
use crate::failure;
use crate::frames::Frames;
use crate::kernel_sync;
use crate::kernel_tables::kernel_flags;
use crate::layout::{PMD_SPAN, VMALLOC_END, VMALLOC_START};
use crate::mode::Mode;
use crate::test::Failure;

/// The next unused region. The first span stays empty (it holds
/// `layout::UNMAPPED_PROBE`).
static NEXT_REGION: spin::Mutex<u32> = spin::Mutex::new(VMALLOC_START + PMD_SPAN);

/// A mapper over the reference directory.
fn reference() -> Result<Mapper<Mode, DirectMapAccess>, Failure> {
    let sync = kernel_sync::get().ok_or_else(|| failure!("kernel sync not set up"))?;
    // SAFETY: the loaded kernel directory, in lowmem. Through this binding
    // vmalloc maps only frames it allocated for its own regions, at
    // addresses above `NEXT_REGION`'s start that no Rust object uses, and
    // unmaps only those.
    unsafe { Mapper::new(sync.reference(), DirectMapAccess) }
        .map_err(|e| failure!("reference: {e}"))
}

/// Maps `frame` (kernel data: writable, no-execute, global) at the first
/// page of a vmalloc region never used before, in the reference directory
/// only, and returns its address. Page tables come from `frames`.
pub fn map_in_new_region(frame: PhysFrame, frames: &mut Frames) -> Result<VirtAddr, Failure> {
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
    let page = Page::containing_address(va);
    mapper
        .map(page, frame, kernel_flags().data, frames)
        .map_err(|e| failure!("vmalloc map {va}: {e}"))?
        .flush(&NativeTlb);
    *next = region + PMD_SPAN;
    Ok(va)
}

/// Removes the vmalloc page at `va` (its table stays) and returns the frame
/// it mapped. `invlpg` drops the translation whichever directory is loaded.
pub fn unmap(va: VirtAddr) -> Result<PhysFrame, Failure> {
    let (unmapped, flush) = reference()?
        .unmap(va)
        .map_err(|e| failure!("vmalloc unmap {va}: {e}"))?;
    flush.flush(&NativeTlb);
    Ok(PhysFrame::containing_address(unmapped.base))
}
