//! Boot step 2: the early fixmap, before any frame allocator exists.
//!
//! Demonstrates `fixmap::EarlyTables` (static, page-aligned tables that are
//! contiguous by construction), `fixmap::WindowBuilder::build_static` with
//! `fixmap::NoFrames` (an allocator with nothing in it: building must not
//! need one), `paging_core::Mapper::new` over tables someone else built (the
//! assembly boot tables), and `fixmap::Fixmap::set` with uncached flags
//! for MMIO (plus no-execute and global, like every kernel data mapping).

use fixmap::{EarlyTables, Fixmap, NoFrames, WindowBuilder};
use paging_core::cpu::NativeTlb;
use paging_core::{MapFlags, Mapper, PhysAddr, PhysFrame, VirtAddr};

use crate::arch::apic::{self, LocalApic};
use crate::arch::mode::{self, Mode};
use crate::base::error::Error;
use crate::mm::direct_map::DirectMapAccess;
use crate::mm::layout::{self, FIXADDR_END, FIXADDR_START, KernelFixmap, VGA_TEXT_BUFFER};
use crate::{arch::vga, failure};

/// The kernel's fixmap type: the [`KernelFixmap`] layout, this build's
/// mode, tables reached through the direct map.
pub type KernelFixmapT = Fixmap<KernelFixmap, Mode, DirectMapAccess>;

/// Page tables for the fixmap before any allocator: one table covers it
/// in both modes (it is far smaller than 2 MiB).
static EARLY_TABLES: EarlyTables<1> = EarlyTables::new();

/// The first frame of [`EARLY_TABLES`].
pub fn early_table_frame() -> PhysFrame {
    let phys = layout::virt_to_phys(EARLY_TABLES.as_ptr() as usize);
    PhysFrame::containing_address(PhysAddr::new_truncate(phys as u64))
}

/// Builds the fixmap's window on the boot tables from static storage, maps
/// the VGA text buffer uncached into slot `VGA_CONSOLE` and starts the VGA
/// console there with `banner` on its first row.
pub fn set_up(banner: &str) -> Result<KernelFixmapT, Error> {
    let boot_root = PhysAddr::new_truncate(layout::boot_root_phys() as u64);
    // The assembly tables are this mode's format: the mapper adopts them.
    // SAFETY: the boot tables are a directory of this mode reached through
    // the direct map; through this binding only the fixmap window's tables
    // are installed and its slots set (the VGA buffer, which no Rust object
    // owns), so nothing the running kernel uses changes.
    let mut boot_tables = unsafe {
        Mapper::<Mode, _>::new(
            boot_root,
            DirectMapAccess,
            crate::arch::mode::cpu_features(),
        )
    }
    .map_err(|e| failure!("boot tables at {boot_root}: {e}"))?;
    let (window, replaced) = WindowBuilder::new(VirtAddr::new(FIXADDR_START), FIXADDR_END)
        .and_then(|builder| {
            // SAFETY: `EARLY_TABLES` is static storage reserved for these
            // tables (only the window uses it, `EarlyTables` hands out no
            // reference to its words), and no table of the boot hierarchy.
            unsafe {
                builder.build_static(
                    &mut boot_tables,
                    early_table_frame(),
                    EARLY_TABLES.len(),
                    &NativeTlb,
                    &mut NoFrames,
                )
            }
        })
        .map_err(|e| failure!("early fixmap window: {e}"))?;
    if !replaced.is_empty() {
        return Err(failure!("the boot tables already had a fixmap table"));
    }
    let mut fixmap = KernelFixmapT::new(DirectMapAccess);
    fixmap
        .attach(window)
        .map_err(|e| failure!("attaching the early window: {e}"))?;
    let vga = PhysFrame::containing_address(PhysAddr::new_truncate(VGA_TEXT_BUFFER));
    fixmap
        .set(KernelFixmap::VGA_CONSOLE, vga, mmio_flags(), &NativeTlb)
        .map_err(|e| failure!("mapping the VGA buffer: {e}"))?;
    let va = fixmap.virt(KernelFixmap::VGA_CONSOLE).as_u32() as usize;
    // SAFETY: the slot was just mapped to the VGA text buffer, writable,
    // and nothing clears it: it survives the handover to the final tables.
    unsafe { vga::start(va, banner) };
    Ok(fixmap)
}

/// Flags of a kernel MMIO mapping in the fixmap: uncached, writable,
/// no-execute (when NX is on) and global (when the CPU has PGE).
pub fn mmio_flags() -> MapFlags {
    MapFlags::KERNEL_UNCACHED | mode::no_execute() | mode::global()
}

/// The local APIC ([`crate::arch::apic`]), its registers mapped uncached
/// into the fixmap slot `LOCAL_APIC` on first use (the same mapping
/// afterwards).
pub fn local_apic(fixmap: &KernelFixmapT) -> Result<&'static LocalApic, Error> {
    apic::local_apic_mapped_by(|frame| {
        fixmap
            .set(KernelFixmap::LOCAL_APIC, frame, mmio_flags(), &NativeTlb)
            .map_err(|e| failure!("mapping the local APIC at {frame:?}: {e}"))?;
        Ok(fixmap.virt(KernelFixmap::LOCAL_APIC).as_u32() as usize)
    })
}
