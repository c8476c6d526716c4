//! Read access to physical memory through the boot window: the boot page
//! tables map physical `0..BOOT_WINDOW_SIZE` at `PAGE_OFFSET`.
//!
//! Used to read what the loader left in memory (the multiboot information,
//! its memory map, the command line). Ranges outside the window, or
//! overlapping the kernel image (which Rust code mutates), are refused.

use core::fmt;

use crate::mm::layout::{self, BOOT_WINDOW_SIZE, PAGE_OFFSET}; // layer: the window and the kernel image it refuses are the kernel's one memory layout, kept whole in mm/layout

const WINDOW: usize = BOOT_WINDOW_SIZE as usize;

/// Why a physical range cannot be read through the window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WindowError {
    /// Part of the range lies at or above the window's end.
    OutsideWindow {
        /// Start of the requested range.
        phys: u64,
        /// Its length.
        len: usize,
    },
    /// The range overlaps the kernel image.
    OverlapsKernel {
        /// Start of the requested range.
        phys: u64,
    },
}

impl fmt::Display for WindowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::OutsideWindow { phys, len } => write!(
                f,
                "physical range {phys:#x}+{len:#x} is outside the boot window (0..{WINDOW:#x})"
            ),
            Self::OverlapsKernel { phys } => {
                write!(f, "physical range at {phys:#x} overlaps the kernel image")
            }
        }
    }
}

/// The bytes at physical `phys..phys + len`.
///
/// The slice stays valid as long as nothing reuses that memory: the kernel
/// does not yet allocate, and the future frame allocator must keep the
/// loader's structures reserved while they are in use.
pub fn bytes(phys: u64, len: usize) -> Result<&'static [u8], WindowError> {
    let outside = WindowError::OutsideWindow { phys, len };
    let start = usize::try_from(phys).map_err(|_| outside)?;
    let end = start.checked_add(len).ok_or(outside)?;
    if end > WINDOW {
        return Err(outside);
    }
    let kernel = layout::kernel_image_phys();
    if start < kernel.end && kernel.start < end {
        return Err(WindowError::OverlapsKernel { phys });
    }
    // SAFETY: `start..end` lies inside the boot window, which the boot page
    // tables map readable at PAGE_OFFSET for the kernel's lifetime, and
    // outside the kernel image, so no Rust object lives there and nothing
    // writes it while the slice exists (see the doc comment).
    Ok(unsafe { core::slice::from_raw_parts((PAGE_OFFSET as usize + start) as *const u8, len) })
}

/// The NUL-terminated string at physical `phys`, at most `max` bytes long
/// (without its NUL) and truncated at the window's end.
pub fn c_str(phys: u64, max: usize) -> Result<&'static [u8], WindowError> {
    let available = usize::try_from(phys)
        .ok()
        .and_then(|start| WINDOW.checked_sub(start))
        .unwrap_or(0);
    let bytes = bytes(phys, max.min(available))?;
    let len = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    Ok(&bytes[..len])
}
