//! Attributes changed inside the large-page direct map after boot
//! (paging-core's `Mapper::set_memory`, Linux's `set_memory_ro` and
//! `set_memory_wc`; issue 22): a `ro_after_init` region made read-only
//! once it is written, and a framebuffer region made write-combining. Each
//! splits the 4 MiB (2 MiB in PAE) page it is in, is checked through the
//! fault probe, and is put back and merged into one large page again.
//!
//! The change is made in the reference directory, which the self-tests run
//! on, with [`KernelTlb`] (every online CPU). In PAE the kernel PMD tables
//! are shared by every directory; in 2-level mode process directories hold
//! a copy of the large PDE and keep it (none is created while a test runs,
//! and the merge restores the same entry, so no copy ever points at the
//! table the merge frees).

use paging_core::{
    AttrChange, AttrError, CacheType, CpuFeature, Entry, FrameAllocator, Mapper, PAGE_SIZE,
    PagingMode, PhysFrame, PmdEntry, PteEntry, VirtAddr,
};

use crate::arch::fault_probe::{self, ErrorCode};
use crate::arch::mode::Mode;
use crate::arch::pat;
use crate::mm::direct_map::DirectMapAccess;
use crate::mm::frames::{self, Frames};
use crate::mm::kernel::Kernel;
use crate::mm::kernel_sync;
use crate::mm::layout::{KERNEL_SPLIT_END, PAGE_OFFSET};
use crate::mm::shootdown::KernelTlb;
use crate::selftests::harness::{Failure, TestResult};
use crate::{ensure, fail, failure, println};

/// Frames of a region and its two neighbours: `[before, region.., after]`.
const RO_PAGES: usize = 3;
const FB_PAGES: usize = 6;
const PATTERN: u32 = 0x5EA1_ED00;

/// A mapper over the reference directory.
fn reference() -> Result<Mapper<Mode, DirectMapAccess>, Failure> {
    let sync = kernel_sync::get().ok_or_else(|| failure!("kernel sync not set up"))?;
    // SAFETY: the loaded kernel directory, in lowmem. Through this binding
    // the tests change the attributes of direct-map pages of frames they
    // allocated and own (no Rust object lives there), and put them back;
    // the split keeps every translation, and the merge frees only the
    // table the split made, which only the reference directory links
    // (module docs).
    unsafe {
        Mapper::new(
            sync.reference(),
            DirectMapAccess,
            crate::arch::mode::cpu_features(),
        )
    }
    .map_err(|e| failure!("reference: {e}"))
}

/// `count` contiguous lowmem frames in the large-page part of the direct
/// map (at or above `KERNEL_SPLIT_END`), inside one large page.
fn take_run(count: usize, frames: &mut Frames) -> Result<PhysFrame, Failure> {
    frames
        .take_run_above(KERNEL_SPLIT_END, count, <Mode as PagingMode>::pmd_span())
        .ok_or_else(|| failure!("no {count} contiguous lowmem frames in one large page"))
}

fn give_back(first: PhysFrame, count: usize, frames: &mut Frames) {
    for i in 0..count as u64 {
        let frame = PhysFrame::containing_address(first.start_address() + i * PAGE_SIZE);
        // SAFETY: allocated by `take_run` for this test and no longer used
        // (its attributes are back to the direct map's).
        unsafe { frames.deallocate_frame(frame) };
    }
}

fn direct(frame: PhysFrame, page: usize) -> usize {
    PAGE_OFFSET as usize + frame.start_address().as_u64() as usize + page * PAGE_SIZE as usize
}

/// The large entry mapping `va`, if the direct map uses one there.
fn large_entry(mapper: &Mapper<Mode, DirectMapAccess>, va: usize) -> Result<Option<u64>, Failure> {
    let walk = mapper
        .walk(VirtAddr::new(va as u32))
        .map_err(|e| failure!("walk {va:#x}: {e}"))?;
    let (_, pmd) = walk.pmd.ok_or_else(|| failure!("{va:#x}: no PMD entry"))?;
    Ok((pmd.is_present() && pmd.is_large()).then(|| pmd.raw()))
}

/// The flags of the 4 KiB entry mapping `va`.
fn pte_flags(
    mapper: &Mapper<Mode, DirectMapAccess>,
    va: usize,
) -> Result<paging_core::MapFlags, Failure> {
    let walk = mapper
        .walk(VirtAddr::new(va as u32))
        .map_err(|e| failure!("walk {va:#x}: {e}"))?;
    let (_, pte) = walk
        .pte
        .ok_or_else(|| failure!("{va:#x}: not split into a PTE"))?;
    Ok(pte.flags())
}

/// Put `[va, va + len)` back to `change`, merge its large page, and check
/// the large entry is what it was (A and D aside).
fn restore_and_merge(
    mapper: &mut Mapper<Mode, DirectMapAccess>,
    va: usize,
    len: u64,
    change: AttrChange,
    before: Option<u64>,
    frames: &mut Frames,
) -> TestResult {
    mapper
        .set_memory(VirtAddr::new(va as u32), len, change, &KernelTlb, frames)
        .map_err(|e| failure!("restoring {va:#x}: {e}"))?;
    let Some(before) = before else {
        return Ok(());
    };
    let base = va as u64 & !(<Mode as PagingMode>::pmd_span() - 1);
    let merged = mapper
        .merge_large_pages(
            VirtAddr::new(base as u32),
            <Mode as PagingMode>::pmd_span(),
            &KernelTlb,
            frames,
        )
        .map_err(|e| failure!("merging {base:#x}: {e}"))?;
    ensure!(merged.merged == 1, "{base:#x} not merged back: {merged:?}");
    let after = large_entry(mapper, va)?.ok_or_else(|| failure!("{base:#x}: no large page"))?;
    const A_D: u64 = 0b110_0000;
    ensure!(
        after & !A_D == before & !A_D,
        "large entry {after:#x} after the merge, {before:#x} before"
    );
    Ok(())
}

pub fn split_ro_after_init_region_in_the_large_direct_map(_: &Kernel) -> TestResult {
    let mut frames = frames::lock();
    let first = take_run(RO_PAGES, &mut frames)?;
    let result = ro_after_init(first, &mut frames);
    give_back(first, RO_PAGES, &mut frames);
    result
}

fn ro_after_init(first: PhysFrame, frames: &mut Frames) -> TestResult {
    let mut mapper = reference()?;
    let (before_page, region, after_page) = (direct(first, 0), direct(first, 1), direct(first, 2));
    let large = large_entry(&mapper, region)?;
    // Init: the region is written while it is still writable.
    for (i, va) in [before_page, region, after_page].into_iter().enumerate() {
        // SAFETY: our own frame, reached through the direct map.
        unsafe { fault_probe::write_u32(va, PATTERN + i as u32) }
            .map_err(|f| failure!("init write {va:#x}: {f:?}"))?;
    }
    // After init: read-only.
    let stats = mapper
        .set_memory(
            VirtAddr::new(region as u32),
            PAGE_SIZE,
            AttrChange::RO,
            &KernelTlb,
            frames,
        )
        .map_err(|e| failure!("set_memory RO {region:#x}: {e}"))?;
    let split = usize::from(large.is_some());
    let checked = (|| {
        ensure!(
            stats.split == split && stats.changed == 1,
            "{stats:?} (large page: {large:x?})"
        );
        // SAFETY: our own frame; the write faults or stores what is there.
        let fault = match unsafe { fault_probe::write_u32(region, !PATTERN) } {
            Ok(()) => fail!("write to the read-only region {region:#x} succeeded"),
            Err(fault) => fault,
        };
        ensure!(
            fault.address as usize == region
                && fault.error_code.0 & (ErrorCode::PRESENT | ErrorCode::WRITE | ErrorCode::USER)
                    == ErrorCode::PRESENT | ErrorCode::WRITE,
            "write to {region:#x}: {fault:?} (want present, write, supervisor)"
        );
        // SAFETY: our own frame.
        let value = unsafe { fault_probe::read_u32(region) };
        ensure!(value == Ok(PATTERN + 1), "region reads {value:?}");
        // The neighbours in the same large page stay writable, with the
        // large page's every other flag.
        for (i, va) in [(0, before_page), (2, after_page)] {
            // SAFETY: our own frame.
            unsafe { fault_probe::write_u32(va, PATTERN + 10 + i) }
                .map_err(|f| failure!("write to the neighbour {va:#x} faulted: {f:?}"))?;
            // SAFETY: our own frame.
            let value = unsafe { fault_probe::read_u32(va) };
            ensure!(value == Ok(PATTERN + 10 + i), "{va:#x} reads {value:?}");
            if let Some(raw) = large {
                let big = <<Mode as PagingMode>::Pmd as Entry>::from_raw(raw).flags();
                let small = pte_flags(&mapper, va)?;
                ensure!(
                    small.without_status() == big.without_status(),
                    "{va:#x}: PTE flags {small:?}, large page {big:?}"
                );
            }
        }
        println!(
            "    split: ro_after_init page {region:#x} read-only inside the {} page (entry {:#x}); write faulted with {}",
            <Mode as PagingMode>::LARGE_PAGE_SIZE,
            large.unwrap_or(0),
            fault.error_code
        );
        Ok(())
    })();
    let restored = restore_and_merge(
        &mut mapper,
        region,
        PAGE_SIZE,
        AttrChange::RW,
        large,
        frames,
    );
    checked.and(restored)
}

pub fn split_framebuffer_region_of_the_direct_map_is_write_combining(_: &Kernel) -> TestResult {
    let mut frames = frames::lock();
    let first = take_run(FB_PAGES, &mut frames)?;
    let result = framebuffer(first, &mut frames);
    give_back(first, FB_PAGES, &mut frames);
    result
}

fn framebuffer(first: PhysFrame, frames: &mut Frames) -> TestResult {
    let mut mapper = reference()?;
    let layout = pat::layout();
    // The framebuffer: pages 1..FB_PAGES-1; pages 0 and FB_PAGES-1 stay WB.
    let (fb, fb_len) = (direct(first, 1), (FB_PAGES as u64 - 2) * PAGE_SIZE);
    let wc = AttrChange::cache(CacheType::WriteCombining, layout);
    if !crate::arch::cpu::features().pat {
        // No PAT: the change must be refused, with nothing split.
        let e = mapper.set_memory(VirtAddr::new(fb as u32), fb_len, wc, &KernelTlb, frames);
        ensure!(
            e == Err(AttrError::MissingFeature(CpuFeature::Pat)),
            "WC without PAT: {e:?}"
        );
        println!(
            "    skipped: no PAT (CPUID.1:EDX.PAT clear): set_memory WC refused ({}); nothing split",
            AttrError::MissingFeature(CpuFeature::Pat)
        );
        return Ok(());
    }
    let large = large_entry(&mapper, fb)?;
    let stats = mapper
        .set_memory(VirtAddr::new(fb as u32), fb_len, wc, &KernelTlb, frames)
        .map_err(|e| failure!("set_memory WC {fb:#x}: {e}"))?;
    let checked = (|| {
        ensure!(
            stats.split == usize::from(large.is_some()),
            "{stats:?} (large page: {large:x?})"
        );
        for page in 0..FB_PAGES {
            let va = direct(first, page);
            let flags = pte_flags(&mapper, va)?;
            let want = if page == 0 || page == FB_PAGES - 1 {
                CacheType::WriteBack
            } else {
                CacheType::WriteCombining
            };
            let got = layout.cache_type(flags);
            ensure!(got == want, "{va:#x}: {got} ({flags:?}), want {want}");
            // Writes and reads through the WC (or WB) mapping work, and
            // fault nowhere.
            // SAFETY: our own frame.
            unsafe { fault_probe::write_u32(va, PATTERN + page as u32) }
                .map_err(|f| failure!("write to {va:#x} faulted: {f:?}"))?;
        }
        // WC stores are weakly ordered: drain the buffers first.
        core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
        for page in 0..FB_PAGES {
            let va = direct(first, page);
            // SAFETY: our own frame.
            let value = unsafe { fault_probe::read_u32(va) };
            ensure!(
                value == Ok(PATTERN + page as u32),
                "{va:#x} reads {value:?}"
            );
        }
        println!(
            "    split: {} framebuffer page(s) at {fb:#x} write-combining inside the {} page (entry {:#x}), neighbours write-back",
            FB_PAGES - 2,
            <Mode as PagingMode>::LARGE_PAGE_SIZE,
            large.unwrap_or(0)
        );
        Ok(())
    })();
    let wb = AttrChange::cache(CacheType::WriteBack, layout);
    let restored = restore_and_merge(&mut mapper, fb, fb_len, wb, large, frames);
    checked.and(restored)
}
