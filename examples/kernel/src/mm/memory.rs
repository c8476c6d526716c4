//! Boot step 4: from the memory map to a frame allocator with two zones.
//!
//! Decides where lowmem ends (896 MiB, or the end of RAM if less), marks
//! every usable frame free, and reserves what must never be handed out:
//! the first MiB (BIOS data, VGA memory, the loader's structures under
//! QEMU), the kernel image (with the boot tables, the early fixmap table,
//! the stacks and the allocator's own bitmap, all in `.bss`) and the
//! multiboot information, memory map and command line.

use crate::base::error::Error;
use crate::boot::context::BootContext;
use crate::boot::multiboot::{BootInfo, RegionKind};
use crate::mm::frames::{self, ZoneId};
use crate::mm::layout::{self, Layout, MAX_LOWMEM, MAX_PHYS_TRACKED, PMD_SPAN};
use crate::{boot::multiboot, failure, println};

const MIB: u64 = 1 << 20;

/// Sets up the frame allocator from the memory map; returns the layout
/// (where lowmem ends).
pub fn init_frames(context: &BootContext) -> Result<Layout, Error> {
    let map = context
        .memory_map
        .as_ref()
        .map_err(|e| failure!("no memory map: {e}"))?;
    let usable = || {
        map.regions()
            .iter()
            .filter(|r| r.kind == RegionKind::Usable)
    };
    // Lowmem: up to the end of the highest usable RAM below 896 MiB.
    let lowmem_limit = usable()
        .filter(|r| r.base < MAX_LOWMEM)
        .map(|r| r.end().min(MAX_LOWMEM))
        .max()
        .unwrap_or(0)
        & !0xFFF;
    if lowmem_limit < layout::KERNEL_SPLIT_END + MIB {
        return Err(failure!("only {lowmem_limit:#x} bytes of lowmem"));
    }
    let layout = Layout {
        lowmem_limit,
        direct_map_end: lowmem_limit.next_multiple_of(u64::from(PMD_SPAN)),
    };

    let mut frames = frames::lock();
    frames.set_lowmem_limit(lowmem_limit);
    let mut ignored = 0;
    for region in usable() {
        frames.add_usable(region.base, region.end());
        ignored += region
            .end()
            .saturating_sub(region.base.max(MAX_PHYS_TRACKED));
    }
    if cfg!(feature = "mode-pae") && context.has_option("frames=high-first") {
        frames.prefer_above_4g();
        println!("frames: highmem handed out from 4 GiB up (frames=high-first)");
    }
    frames.reserve(0, MIB);
    let image = layout::kernel_image_phys();
    frames.reserve(image.start as u64, image.end as u64);
    if let Ok(info) = &context.boot_info {
        reserve_boot_info(&mut frames, info, context.info_phys);
    }
    println!(
        "frames: lowmem {} MiB free of {} MiB (limit {:#x}), highmem {} MiB free{}",
        frames.free_frames(ZoneId::Low) * 4096 / MIB,
        frames.total_frames(ZoneId::Low) * 4096 / MIB,
        lowmem_limit,
        frames.free_frames(ZoneId::High) * 4096 / MIB,
        if ignored > 0 {
            " (RAM above the tracked limit ignored)"
        } else {
            ""
        },
    );
    if ignored > 0 {
        println!(
            "frames: {} MiB of RAM above {:#x} not tracked",
            ignored / MIB,
            MAX_PHYS_TRACKED
        );
    }
    Ok(layout)
}

/// Keeps the loader's structures: the information block, the memory map
/// and the command line (the kernel keeps reading the last one).
fn reserve_boot_info(frames: &mut frames::Frames, info: &BootInfo, info_phys: u32) {
    let info_phys = u64::from(info_phys);
    frames.reserve(info_phys, info_phys + multiboot::INFO_SIZE as u64);
    if let Some((phys, len)) = info.memory_map {
        frames.reserve(u64::from(phys), u64::from(phys) + u64::from(len));
    }
    if let Some(phys) = info.cmdline {
        frames.reserve(u64::from(phys), u64::from(phys) + 4096);
    }
}
