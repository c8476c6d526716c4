//! Attributes changed inside the large-page direct map after boot
//! (`KernelSync::set_memory`, Linux's `set_memory_ro` and `set_memory_wc`;
//! issue 22): the boot's `ro_after_init` page, read-only for good; a
//! region made read-only once it is written, and a framebuffer region made
//! write-combining, each checked through the fault probe and put back and
//! merged into one large page again.
//!
//! Every change goes through the kernel's registry
//! ([`crate::mm::kernel_sync`]) on the reference directory, with
//! [`KernelTlb`] (every online CPU). In PAE the kernel PMD tables are
//! shared by every directory; in 2-level mode each directory holds a copy
//! of the kernel's page-directory entries, and the registry points every
//! registered copy at the split's table (and back at the large page before
//! the merge frees the table). The read-only tests check it through an
//! address space created before the change.

use paging_core::{
    AttrChange, AttrError, CacheType, CpuFeature, Entry, FrameAllocator, Mapper, PAGE_SIZE,
    PagingMode, PhysFrame, PmdEntry, PteEntry, SyncError, VirtAddr, Zone,
};

use crate::arch::fault_probe::{self, ErrorCode, PageFault};
use crate::arch::mode::Mode;
use crate::arch::pat;
use crate::mm::address_space::AddressSpace;
use crate::mm::direct_map::DirectMapAccess;
use crate::mm::frames::{self, Frames};
use crate::mm::kernel::Kernel;
use crate::mm::kernel_sync::{self, KernelSyncT};
use crate::mm::layout::{KERNEL_SPLIT_END, PAGE_OFFSET};
use crate::mm::ro_after_init;
use crate::mm::shootdown::KernelTlb;
use crate::selftests::harness::{Failure, TestResult};
use crate::{ensure, fail, failure, println};

/// Frames of a region and its two neighbours: `[before, region.., after]`.
const RO_PAGES: usize = 3;
const FB_PAGES: usize = 6;
const PATTERN: u32 = 0x5EA1_ED00;

/// The kernel's registry and a mapper over its reference directory.
fn reference() -> Result<(&'static KernelSyncT, Mapper<Mode, DirectMapAccess>), Failure> {
    let sync = kernel_sync::get().ok_or_else(|| failure!("kernel sync not set up"))?;
    // SAFETY: the loaded kernel directory, in lowmem. Through this binding
    // the tests change the attributes of direct-map pages of frames they
    // allocated and own (no Rust object lives there), and put them back;
    // the split keeps every translation, and the merge, through the
    // registry, frees the table the split made only once no directory
    // links it (module docs).
    let mapper = unsafe {
        Mapper::new(
            sync.reference(),
            DirectMapAccess,
            crate::arch::mode::cpu_features(),
        )
    }
    .map_err(|e| failure!("reference: {e}"))?;
    Ok((sync, mapper))
}

/// A write to `va` (holding `expect`) that must fault as a supervisor
/// write to a present read-only page, and leave `expect` there.
fn write_must_fault(va: usize, expect: u32) -> Result<PageFault, Failure> {
    // SAFETY: the caller's own frame; the write faults or stores.
    let fault = match unsafe { fault_probe::write_u32(va, !expect) } {
        Ok(()) => fail!("write to the read-only page {va:#x} succeeded"),
        Err(fault) => fault,
    };
    ensure!(
        fault.address as usize == va
            && fault.error_code.0 & (ErrorCode::PRESENT | ErrorCode::WRITE | ErrorCode::USER)
                == ErrorCode::PRESENT | ErrorCode::WRITE,
        "write to {va:#x}: {fault:?} (want present, write, supervisor)"
    );
    // SAFETY: the caller's own frame.
    let value = unsafe { fault_probe::read_u32(va) };
    ensure!(
        value == Ok(expect),
        "{va:#x} reads {value:?}, want {expect:#x}"
    );
    Ok(fault)
}

/// Runs `body` in a new address space (registered with the kernel's
/// registry), then destroys it.
fn in_new_space(body: impl FnOnce(&AddressSpace<DirectMapAccess>) -> TestResult) -> TestResult {
    let space = {
        let mut frames = frames::lock();
        AddressSpace::create(DirectMapAccess, Zone::Lowmem, &mut *frames)?
    };
    let result = body(&space);
    let destroyed = space.destroy(&mut *frames::lock());
    result?;
    destroyed.map(|_| ())
}

/// `count` contiguous lowmem frames in the large-page part of the direct
/// map (at or above `KERNEL_SPLIT_END`), inside one large page, above the
/// large page the boot split for good for the `ro_after_init` page.
fn take_run(count: usize, frames: &mut Frames) -> Result<PhysFrame, Failure> {
    let span = <Mode as PagingMode>::pmd_span();
    let sealed =
        ro_after_init::frame().map_or(0, |f| (f.start_address().as_u64() / span + 1) * span);
    let from = KERNEL_SPLIT_END.max(sealed);
    frames.take_run_above(from, count, span).ok_or_else(|| {
        failure!("no {count} contiguous lowmem frames in one large page above {from:#x}")
    })
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

/// Put `[va, va + len)` back to `change`, merge its large page (through
/// the registry: every copy first), and check the large entry is what it
/// was (A and D aside).
fn restore_and_merge(
    (sync, mapper): (&KernelSyncT, &mut Mapper<Mode, DirectMapAccess>),
    va: usize,
    len: u64,
    change: AttrChange,
    before: Option<u64>,
    frames: &mut Frames,
) -> TestResult {
    sync.set_memory(
        mapper,
        VirtAddr::new(va as u32),
        len,
        change,
        &KernelTlb,
        frames,
    )
    .map_err(|e| failure!("restoring {va:#x}: {e}"))?;
    let Some(before) = before else {
        return Ok(());
    };
    let base = va as u64 & !(<Mode as PagingMode>::pmd_span() - 1);
    let merged = sync
        .merge_large_pages(
            mapper,
            VirtAddr::new(base as u32),
            <Mode as PagingMode>::pmd_span(),
            &KernelTlb,
            frames,
        )
        .map_err(|e| failure!("merging {base:#x}: {e}"))?;
    ensure!(
        merged.merge.merged == 1,
        "{base:#x} not merged back: {merged:?}"
    );
    let after = large_entry(mapper, va)?.ok_or_else(|| failure!("{base:#x}: no large page"))?;
    const A_D: u64 = 0b110_0000;
    ensure!(
        after & !A_D == before & !A_D,
        "large entry {after:#x} after the merge, {before:#x} before"
    );
    Ok(())
}

/// The page the boot sealed ([`ro_after_init`]) holds the command line
/// the kernel runs by, and is read-only in the kernel's directory and in
/// an address space created now (2-level: its copy of the split entry),
/// while the rest of its large page keeps the large page's flags.
pub fn split_ro_after_init_page_is_read_only_after_boot(kernel: &Kernel) -> TestResult {
    let va = ro_after_init::address().ok_or_else(|| failure!("no ro_after_init page"))?;
    let cmdline = kernel.context.cmdline;
    ensure!(
        cmdline.as_ptr() as usize == va,
        "the command line is at {:p}, not in the sealed page {va:#x}",
        cmdline.as_ptr()
    );
    let (_, mapper) = reference()?;
    let flags = pte_flags(&mapper, va)?;
    ensure!(
        !flags.contains(paging_core::MapFlags::WRITABLE),
        "{va:#x}: PTE flags {flags:?}"
    );
    // SAFETY: the sealed page: read-only kernel data, readable.
    let first =
        unsafe { fault_probe::read_u32(va) }.map_err(|f| failure!("read {va:#x}: {f:?}"))?;
    let fault = write_must_fault(va, first)?;
    in_new_space(|space| space.run(|| write_must_fault(va, first)).map(|_| ()))?;
    // The other pages of the large page: the large page's flags, writable.
    let neighbour = if (va as u64).is_multiple_of(<Mode as PagingMode>::pmd_span()) {
        va + PAGE_SIZE as usize
    } else {
        va - PAGE_SIZE as usize
    };
    let other = pte_flags(&mapper, neighbour)?;
    ensure!(
        other.contains(paging_core::MapFlags::WRITABLE)
            && other.without_status() == (flags | paging_core::MapFlags::WRITABLE).without_status(),
        "{neighbour:#x}: PTE flags {other:?}, the sealed page {flags:?}"
    );
    println!(
        "    split: ro_after_init page {va:#x} (the command line, {} bytes) read-only since boot, in this and a new directory; write faulted with {}",
        cmdline.len(),
        fault.error_code
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
    let (sync, mut mapper) = reference()?;
    let (before_page, region, after_page) = (direct(first, 0), direct(first, 1), direct(first, 2));
    let large = large_entry(&mapper, region)?;
    // Init: the region is written while it is still writable.
    for (i, va) in [before_page, region, after_page].into_iter().enumerate() {
        // SAFETY: our own frame, reached through the direct map.
        unsafe { fault_probe::write_u32(va, PATTERN + i as u32) }
            .map_err(|f| failure!("init write {va:#x}: {f:?}"))?;
    }
    // An address space that exists before the change: in 2-level mode it
    // holds a copy of the large page's entry, which the registry updates.
    let space = AddressSpace::create(DirectMapAccess, Zone::Lowmem, &mut *frames)?;
    // After init: read-only.
    let changed = sync.set_memory(
        &mut mapper,
        VirtAddr::new(region as u32),
        PAGE_SIZE,
        AttrChange::RO,
        &KernelTlb,
        frames,
    );
    let checked = match changed {
        Err(e) => Err(failure!("set_memory RO {region:#x}: {e}")),
        Ok(stats) => (|| {
            let split = usize::from(large.is_some());
            ensure!(
                stats.attrs.split == split && stats.attrs.changed == 1,
                "{stats:?} (large page: {large:x?})"
            );
            // 2-level: the older space's copy of the large entry (at least)
            // now points at the split's table.
            let copies = usize::from(large.is_some() && <Mode as PagingMode>::PMD_FOLDED);
            ensure!(stats.copies >= copies, "{stats:?}: want {copies}+ copies");
            let fault = write_must_fault(region, PATTERN + 1)?;
            space.run(|| write_must_fault(region, PATTERN + 1))?;
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
                "    split: ro_after_init page {region:#x} read-only inside the {} page (entry {:#x}), also in a directory made before ({} copies updated); write faulted with {}",
                <Mode as PagingMode>::LARGE_PAGE_SIZE,
                large.unwrap_or(0),
                stats.copies,
                fault.error_code
            );
            Ok(())
        })(),
    };
    let restored = restore_and_merge(
        (sync, &mut mapper),
        region,
        PAGE_SIZE,
        AttrChange::RW,
        large,
        frames,
    );
    // Writable again in the older space too (2-level: its copy is the large
    // entry again, not the freed table).
    let again = space.run(|| {
        // SAFETY: our own frame.
        unsafe { fault_probe::write_u32(region, PATTERN + 1) }
            .map_err(|f| failure!("write after the merge, in the older space: {f:?}"))
    });
    let destroyed = space.destroy(&mut *frames).map(|_| ());
    checked.and(restored).and(again).and(destroyed)
}

pub fn split_framebuffer_region_of_the_direct_map_is_write_combining(_: &Kernel) -> TestResult {
    let mut frames = frames::lock();
    let first = take_run(FB_PAGES, &mut frames)?;
    let result = framebuffer(first, &mut frames);
    give_back(first, FB_PAGES, &mut frames);
    result
}

fn framebuffer(first: PhysFrame, frames: &mut Frames) -> TestResult {
    let (sync, mut mapper) = reference()?;
    let layout = pat::layout();
    // The framebuffer: pages 1..FB_PAGES-1; pages 0 and FB_PAGES-1 stay WB.
    let (fb, fb_len) = (direct(first, 1), (FB_PAGES as u64 - 2) * PAGE_SIZE);
    let wc = AttrChange::cache(CacheType::WriteCombining, layout);
    let large = large_entry(&mapper, fb)?;
    let changed = sync.set_memory(
        &mut mapper,
        VirtAddr::new(fb as u32),
        fb_len,
        wc,
        &KernelTlb,
        frames,
    );
    if !crate::arch::cpu::features().pat {
        // No PAT: the change must be refused, with nothing split.
        let e = changed;
        ensure!(
            e == Err(SyncError::Attr(AttrError::MissingFeature(CpuFeature::Pat))),
            "WC without PAT: {e:?}"
        );
        println!(
            "    skipped: no PAT (CPUID.1:EDX.PAT clear): set_memory WC refused ({}); nothing split",
            AttrError::MissingFeature(CpuFeature::Pat)
        );
        return Ok(());
    }
    let stats = changed
        .map_err(|e| failure!("set_memory WC {fb:#x}: {e}"))?
        .attrs;
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
    let restored = restore_and_merge((sync, &mut mapper), fb, fb_len, wb, large, frames);
    checked.and(restored)
}
