//! Boot step 6: the fixmap handover, from the early static table to one
//! physically contiguous window under the final tables.
//!
//! Demonstrates `fixmap::WindowBuilder::build` (the tables for the whole
//! pkmap + fixmap range in one `allocate_contiguous` call, installed with
//! `Mapper::install_pte_tables`, which copies every entry of the table it
//! replaces: the early one, with the VGA console mapping) and
//! `fixmap::Fixmap::attach`. The result is a `ContiguousWindow`: kmap finds
//! the PTE of any slot as one index into one array of entries.

use fixmap::{ContiguousWindow, WindowBuilder};
use paging_core::VirtAddr;
use paging_core::cpu::NativeTlb;

use crate::arch::mode::Mode;
use crate::base::error::Error;
use crate::mm::early_fixmap::{self, KernelFixmapT};
use crate::mm::frames::Frames;
use crate::mm::kernel_tables::KernelMapper;
use crate::mm::layout::KMAP_WINDOW;
use crate::{failure, println};

/// The kernel's fixmap, with its final tables attached.
static FIXMAP: spin::Once<KernelFixmapT> = spin::Once::new();

/// Builds the contiguous window over `[PKMAP_BASE, 4 GiB)` in the final
/// tables, attaches it to `early` and makes it the kernel's fixmap. Returns
/// the window.
pub fn hand_over(
    mut early: KernelFixmapT,
    mapper: &mut KernelMapper,
    frames: &mut Frames,
) -> Result<(&'static KernelFixmapT, ContiguousWindow<Mode>), Error> {
    let (start, end) = KMAP_WINDOW;
    let (window, replaced) = WindowBuilder::new(VirtAddr::new(start), end)
        .and_then(|builder| builder.build(mapper, &NativeTlb, frames))
        .map_err(|e| failure!("kmap window: {e}"))?;
    // The early table was copied and unlinked; it is static, so it is kept
    // (never given to the allocator).
    let early_frame = early_fixmap::early_table_frame();
    let replaced_early = replaced.len() == 1 && replaced.frames().next() == Some(early_frame);
    if !replaced_early {
        return Err(failure!(
            "expected the handover to replace exactly the early table {early_frame:?}, it replaced {} tables",
            replaced.len()
        ));
    }
    early
        .attach(window.clone())
        .map_err(|e| failure!("attaching the final window: {e}"))?;
    println!(
        "fixmap handover: window {}..{:#x}: {} PTE tables at frames {:?}.. (one contiguous allocation); \
         early table {:?} copied into it and released",
        window.start(),
        window.end(),
        window.tables(),
        window.first_frame(),
        early_frame,
    );
    Ok((FIXMAP.call_once(|| early), window))
}
