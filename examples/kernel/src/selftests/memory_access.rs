//! Word reads and writes of memory the kernel maps for a test (a kmap slot,
//! a page of a test address space), and the frames tests borrow.

use paging_core::{FrameAllocator, PhysAddr, PhysFrame, Zone};

use crate::failure;
use crate::mm::frames::{self, ZoneId};
use crate::selftests::harness::Failure;

/// Writes `value` to the `u32` at `va`.
///
/// # Safety
/// `va` must be 4-aligned and mapped writable to a frame the caller owns
/// (free, or allocated for the test), which no Rust object refers to.
pub unsafe fn write_word(va: usize, value: u32) {
    // SAFETY: the caller's contract.
    unsafe { (va as *mut u32).write_volatile(value) }
}

/// Reads the `u32` at `va`.
///
/// # Safety
/// `va` must be 4-aligned and mapped to ordinary memory.
pub unsafe fn read_word(va: usize) -> u32 {
    // SAFETY: the caller's contract.
    unsafe { (va as *const u32).read_volatile() }
}

/// A pattern derived from a physical frame number (different for frames
/// 4 GiB apart too, so an address truncated to 32 bits is caught).
pub fn pattern(pfn: u64) -> u32 {
    let mixed = (pfn as u32).wrapping_mul(0x9E37_79B9) ^ ((pfn >> 32) as u32).rotate_left(16);
    mixed ^ 0x5A5A_0001
}

/// `N` frames for a test, from highmem where there is some, and whether
/// they all came from highmem. On failure the frames taken so far go back.
pub fn test_pages<const N: usize>() -> Result<([PhysFrame; N], bool), Failure> {
    let mut frames = frames::lock();
    let highmem = frames.free_frames(ZoneId::High) >= N as u64;
    let mut pages = [PhysFrame::containing_address(PhysAddr::new_truncate(0)); N];
    for i in 0..N {
        match frames.allocate_frame(Zone::PreferHighmem) {
            Some(frame) => pages[i] = frame,
            None => {
                // SAFETY: a frame this self-test took from `frames`; nothing maps or uses it any more.
                unsafe { pages[..i].iter().for_each(|&p| frames.deallocate_frame(p)) };
                return Err(failure!("out of frames"));
            }
        }
    }
    Ok((pages, highmem))
}

/// Gives back frames [`test_pages`] took.
pub fn give_back(pages: &[PhysFrame]) {
    let mut frames = frames::lock();
    // SAFETY: a frame this self-test took from `frames`; nothing maps or uses it any more.
    unsafe { pages.iter().for_each(|&p| frames.deallocate_frame(p)) };
}
