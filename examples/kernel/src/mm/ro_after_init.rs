//! The kernel's `ro_after_init` page (Linux's `__ro_after_init`): data
//! written once while the kernel boots and read-only from then on, for
//! every CPU and in every address space.
//!
//! It holds the saved command line (Linux's `saved_command_line`), whose
//! `verdict=` word is the nonce the boot's verdict line carries: once the
//! page is sealed, no code path, however buggy, can change what the kernel
//! believes it was told.
//!
//! The page is a lowmem frame in the large-page part of the direct map
//! (above `KERNEL_SPLIT_END`). Sealing it makes that one 4 KiB page
//! read-only with `KernelSync::set_memory`: the 4 MiB (2 MiB in PAE) page
//! it is in is split into a PTE table that keeps every other page as it
//! was, and, in 2-level mode, every registered directory's copy of the
//! page-directory entry is pointed at that table too (each process
//! directory copies the kernel's entries when it is created). The split
//! is never merged back. The self-test
//! `split_ro_after_init_page_is_read_only_after_boot` checks it through
//! the fault probe, in the kernel's directory and in a new address space.

use core::sync::atomic::{AtomicU32, Ordering};

use paging_core::{
    AttrChange, Mapper, PAGE_SIZE, PagingMode, PhysFrame, SyncedAttrStats, VirtAddr,
};

use crate::arch::mode::Mode;
use crate::base::error::Error;
use crate::mm::direct_map::DirectMapAccess;
use crate::mm::frames::Frames;
use crate::mm::kernel_sync;
use crate::mm::layout::{KERNEL_SPLIT_END, PAGE_OFFSET};
use crate::mm::shootdown::KernelTlb;
use crate::{ensure, failure};

/// The page's frame number (0 until sealed: frame 0 is below
/// `KERNEL_SPLIT_END`, never this page).
static FRAME: AtomicU32 = AtomicU32::new(0);

/// The page's frame, once sealed.
pub fn frame() -> Option<PhysFrame> {
    match FRAME.load(Ordering::Acquire) {
        0 => None,
        number => PhysFrame::from_number(u64::from(number)).ok(),
    }
}

/// The page's address in the direct map, once sealed.
pub fn address() -> Option<usize> {
    frame().map(|f| PAGE_OFFSET as usize + f.start_address().as_u64() as usize)
}

/// Copies `cmdline` (cut to a page) into a fresh `ro_after_init` page,
/// makes the page read-only everywhere, and returns the sealed copy.
/// Called once, at the end of the boot, with every CPU online.
pub fn seal_cmdline(
    cmdline: &str,
    reference: &mut Mapper<Mode, DirectMapAccess>,
    frames: &mut Frames,
) -> Result<(&'static str, SyncedAttrStats), Error> {
    ensure!(frame().is_none(), "ro_after_init: already sealed");
    let sync = kernel_sync::get().ok_or_else(|| failure!("ro_after_init: no kernel sync"))?;
    let frame = frames
        .take_run_above(KERNEL_SPLIT_END, 1, <Mode as PagingMode>::pmd_span())
        .ok_or_else(|| failure!("ro_after_init: no lowmem frame above the split part"))?;
    let va = PAGE_OFFSET as usize + frame.start_address().as_u64() as usize;
    // Cut at a character boundary to fit the page.
    let mut len = cmdline.len().min(PAGE_SIZE as usize);
    while !cmdline.is_char_boundary(len) {
        len -= 1;
    }
    // SAFETY: the frame was just taken for this page and is lowmem, so its
    // direct-map address is mapped writable; nothing else refers to it.
    unsafe {
        core::ptr::write_bytes(va as *mut u8, 0, PAGE_SIZE as usize);
        core::ptr::copy_nonoverlapping(cmdline.as_ptr(), va as *mut u8, len);
    }
    let stats = sync
        .set_memory(
            reference,
            VirtAddr::new(va as u32),
            PAGE_SIZE,
            AttrChange::RO,
            &KernelTlb,
            frames,
        )
        .map_err(|e| failure!("ro_after_init: set_memory RO {va:#x}: {e}"))?;
    FRAME.store(frame.number() as u32, Ordering::Release);
    // SAFETY: `len` bytes copied from a `str` and cut at a character
    // boundary; the page is never written again (read-only from here on,
    // and never freed).
    let sealed = unsafe {
        core::str::from_utf8_unchecked(core::slice::from_raw_parts(va as *const u8, len))
    };
    Ok((sealed, stats))
}
