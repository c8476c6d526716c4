//! Boot step 5: the final kernel page tables, built with the generic mapper
//! and then loaded.
//!
//! Demonstrates `paging_core::Mapper` (`create`, `map_range` with and
//! without large pages, flags per range), `fixmap::WindowBuilder::build_static`
//! linking a table that already holds mappings into a second hierarchy
//! (`FreshTables::Keep` underneath), and the backend's CR3 type. In PAE mode
//! `Mapper::create` makes the PDPT and the PMD tables appear on demand; in
//! 2-level mode the PMD is folded into the page directory. The tables (W^X:
//! only `.text` is executable where the CPU has NX):
//!
//! - physical `0..4 MiB` at `PAGE_OFFSET` with 4 KiB pages: `.text`
//!   read-only and executable, `.rodata` read-only, everything else
//!   read-write, both no-execute when NX is on; the guard pages below the
//!   boot stack and the double-fault task's stack absent;
//! - the rest of lowmem at `PAGE_OFFSET` with large pages (4 MiB or 2 MiB),
//!   read-write, no-execute when NX is on;
//! - every kernel mapping global (when the CPU has PGE; CR4.PGE is turned
//!   on at the load) and none with the user bit;
//! - the early fixmap's static table, linked at the fixmap's PMD slot, so
//!   the VGA console keeps working across the switch;
//! - nothing below `PAGE_OFFSET`: no identity map.

use fixmap::WindowBuilder;
use paging_core::cpu::NativeTlb;
use paging_core::{LargePages, MapFlags, Mapper, PhysAddr, VirtAddr};

use crate::arch::mode;
use crate::base::error::Error;
use crate::mm::direct_map::DirectMapAccess;
use crate::mm::early_fixmap;
use crate::mm::frames::Frames;
use crate::mm::layout::{self, FIXADDR_END, FIXADDR_START, KERNEL_SPLIT_END, Layout, PAGE_OFFSET};
use crate::{arch::double_fault, failure};

/// The kernel's mapper: this build's mode, tables in lowmem.
pub type KernelMapper = Mapper<mode::Mode, DirectMapAccess>;

/// The flags of each kind of kernel mapping.
#[derive(Clone, Copy, Debug)]
pub struct KernelFlags {
    /// `.text`: read-only, executable.
    pub text: MapFlags,
    /// `.rodata`: read-only, no-execute.
    pub rodata: MapFlags,
    /// Everything else (data, bss, stacks, the direct map, vmalloc):
    /// read-write, no-execute.
    pub data: MapFlags,
}

/// The flags of this CPU's kernel mappings (`NO_EXECUTE` needs NX,
/// `GLOBAL` needs PGE).
pub fn kernel_flags() -> KernelFlags {
    let (nx, global) = (mode::no_execute(), mode::global());
    KernelFlags {
        text: MapFlags::KERNEL_RO | global,
        rodata: MapFlags::KERNEL_RO | nx | global,
        data: MapFlags::KERNEL_RW | nx | global,
    }
}

/// Builds the final tables (not yet loaded).
pub fn build(layout: &Layout, frames: &mut Frames) -> Result<KernelMapper, Error> {
    // SAFETY: lowmem frames from `frames`, reached through the direct map.
    // The binding contract: these tables map the kernel image, the direct
    // map, vmalloc, the pkmap window and the fixmap exactly as the layout
    // says (text read-only, data non-executable), and once loaded every
    // later change goes through vmalloc, fixmap or kmap, each of which maps
    // only frames it owns at addresses no Rust object uses.
    let mut mapper =
        unsafe { KernelMapper::create(DirectMapAccess, crate::arch::mode::cpu_features(), frames) }
            .map_err(|e| failure!("new PGD: {e}"))?;
    let flags = kernel_flags();
    let phys = |va: usize| layout::virt_to_phys(va) as u64;
    let (text, rodata) = (layout::text(), layout::rodata());
    map_direct(&mut mapper, 0, phys(text.start), flags.data, frames)?;
    map_direct(
        &mut mapper,
        phys(text.start),
        phys(text.end),
        flags.text,
        frames,
    )?;
    map_direct(
        &mut mapper,
        phys(rodata.start),
        phys(rodata.end),
        flags.rodata,
        frames,
    )?;
    // Data up to the end of the 4 KiB part, around the stack guard pages.
    let mut at = phys(rodata.end);
    for guard in layout::stack_guard_pages() {
        map_direct(&mut mapper, at, phys(guard.start), flags.data, frames)?;
        at = phys(guard.end);
    }
    map_direct(&mut mapper, at, KERNEL_SPLIT_END, flags.data, frames)?;
    map_direct_large(
        &mut mapper,
        KERNEL_SPLIT_END,
        layout.direct_map_end,
        flags.data,
        frames,
    )?;
    link_early_fixmap_table(&mut mapper, frames)?;
    Ok(mapper)
}

/// Links the early fixmap's static table, which the boot tables use too,
/// at the fixmap's PMD slot: one table shared by both hierarchies until the
/// handover copies it. `build_static` keeps the table's content (the live
/// console mapping) because the slot is empty here.
fn link_early_fixmap_table(mapper: &mut KernelMapper, frames: &mut Frames) -> Result<(), Error> {
    let (_, replaced) = WindowBuilder::new(VirtAddr::new(FIXADDR_START), FIXADDR_END)
        .and_then(|builder| {
            // SAFETY: the early fixmap table is static storage used only as
            // that table; it is a table of the boot hierarchy too, and the
            // sharing is the point: both hierarchies map the console through
            // it until the handover copies it. It is static, so it outlives
            // both, and nothing frees it.
            unsafe {
                builder.build_static(
                    mapper,
                    early_fixmap::early_table_frame(),
                    1,
                    // No CPU has loaded these tables: nothing to invalidate
                    // (the flushes land on the boot tables, harmlessly).
                    &NativeTlb,
                    frames,
                )
            }
        })
        .map_err(|e| failure!("linking the early fixmap table: {e}"))?;
    if !replaced.is_empty() {
        return Err(failure!("the new tables already had a fixmap table"));
    }
    Ok(())
}

/// Maps physical `start..end` at `PAGE_OFFSET + start` with 4 KiB pages.
fn map_direct(
    mapper: &mut KernelMapper,
    start: u64,
    end: u64,
    flags: MapFlags,
    frames: &mut Frames,
) -> Result<(), Error> {
    map_range(mapper, start, end, flags, LargePages::Avoid, frames)
}

/// Maps physical `start..end` at `PAGE_OFFSET + start` with large pages.
fn map_direct_large(
    mapper: &mut KernelMapper,
    start: u64,
    end: u64,
    flags: MapFlags,
    frames: &mut Frames,
) -> Result<(), Error> {
    map_range(mapper, start, end, flags, LargePages::Use, frames)
}

fn map_range(
    mapper: &mut KernelMapper,
    start: u64,
    end: u64,
    flags: MapFlags,
    large: LargePages,
    frames: &mut Frames,
) -> Result<(), Error> {
    if end <= start {
        return Ok(());
    }
    let va = VirtAddr::new(PAGE_OFFSET + start as u32);
    mapper
        .map_range(
            va,
            PhysAddr::new_truncate(start),
            end - start,
            flags,
            large,
            frames,
        )
        .map_err(|e| failure!("direct map {start:#x}..{end:#x}: {e}"))?
        // No CPU has loaded these tables yet: nothing to invalidate.
        .ignore();
    Ok(())
}

/// Loads the final tables: CR3 switch (the boot tables are never used
/// again), global pages on, the direct map's reach grows to all of lowmem,
/// and the double-fault task gets the new CR3.
pub fn load(mapper: &KernelMapper, layout: &Layout) -> Result<(), Error> {
    let root = mapper.root();
    // SAFETY: `build` mapped the kernel image (code, data, stacks) at the
    // addresses it runs at, all of lowmem, and the fixmap console; the
    // boot window the kernel used so far is part of the direct map.
    unsafe { mode::load_root(root) }.map_err(|e| failure!("{e}"))?;
    // SAFETY: only the kernel half has G entries, and it is shared by
    // every address space (`crate::mm::kernel_sync`); the boot tables, which
    // had none, are gone. Kernel mappings change only through mapper
    // tokens, whose page and large-range flushes drop global entries.
    unsafe { mode::enable_global_pages() };
    // SAFETY: the tables just loaded map lowmem up to the direct map's end.
    unsafe { DirectMapAccess::extend_reach(layout.lowmem_limit) };
    double_fault::set_cr3(root.as_u64() as u32);
    Ok(())
}
