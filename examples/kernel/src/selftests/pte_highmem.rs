//! pte-highmem: hundreds of address spaces each map the same 1 GiB; with
//! their PTE tables in highmem they cost lowmem only a page directory (and
//! a PMD table in PAE mode), instead of 1 or 2 MiB of tables each.
//!
//! Demonstrates `Mapper::with_pte_zone(Zone::PreferHighmem)` over
//! `kmap::HighmemTables` (each highmem table reached through a local kmap
//! while the mapper works on it), `Mapper::map_range`, `Walker`,
//! `Mapper::unmap`, `Mapper::free_empty_tables`, and address spaces made
//! and torn down as processes are ([`crate::mm::address_space`]:
//! `KernelSync::register`, `Mapper::teardown`).

use paging_core::cpu::NativeTlb;
use paging_core::{
    FrameAllocator, LargePages, MapFlags, Mapper, PagingMode, PhysAddr, PhysFrame, TableAccess,
    VirtAddr, Walker, Zone,
};

use crate::arch::fault_probe;
use crate::arch::mode::{self, Mode};
use crate::arch::pit::{self, Stopwatch};
use crate::mm::address_space::AddressSpace;
use crate::mm::direct_map::DirectMapAccess;
use crate::mm::frames::{self, Frames, ZoneId};
use crate::mm::kernel::Kernel;
use crate::mm::kernel_sync::SYNC_CAPACITY;
use crate::mm::kmap_setup;
use crate::mm::layout::{
    KERNEL_PHYS, PAGE_OFFSET, PMD_SPAN, SHARED_REGION_LEN, SHARED_REGION_START, VGA_TEXT_BUFFER,
};
use crate::selftests::harness::{Failure, TestResult};
use crate::{ensure, fail, failure, println};

/// Address spaces created per run (fewer if memory is short).
const MAX_SPACES: usize = 200;
/// PTE tables one address space needs for the region.
const TABLES: u64 = SHARED_REGION_LEN / PMD_SPAN as u64;
/// PMD tables it needs (PAE: the region is one PDPT entry).
const PMD_TABLES: u64 = if <Mode as PagingMode>::PMD_FOLDED {
    0
} else {
    1
};
/// Lowmem kept free for the rest of the kernel (frames).
const LOWMEM_RESERVE: u64 = 8192;
/// First frame number above 4 GiB.
const PFN_4G: u64 = 1 << 20;

static_assertions::const_assert!(MAX_SPACES < SYNC_CAPACITY);

/// What one run measured.
struct Run {
    lowmem_per_space: u64,
    highmem_per_space: u64,
    tables_above_4g: u64,
    cycles_per_space: u64,
    unmap_cycles: u64,
    teardown_cycles: u64,
}

pub fn page_tables_in_highmem_save_lowmem(kernel: &Kernel) -> TestResult {
    let Some(tables) = kmap_setup::highmem_tables() else {
        fail!("kmap is not set up");
    };
    let mut frames = frames::lock();
    let per_space_low = TABLES + PMD_TABLES + 1;
    let fit_low = frames
        .free_frames(ZoneId::Low)
        .saturating_sub(LOWMEM_RESERVE)
        / per_space_low;
    let fit_high = frames.free_frames(ZoneId::High) / TABLES;
    let spaces = (MAX_SPACES as u64).min(fit_low) as usize;
    ensure!(
        spaces >= 4,
        "lowmem holds the tables of only {fit_low} spaces"
    );
    println!(
        "    {spaces} address spaces x {} MiB at {SHARED_REGION_START:#x}: {TABLES} PTE tables each{}",
        SHARED_REGION_LEN >> 20,
        if spaces < MAX_SPACES {
            " (sized to the lowmem there is)"
        } else {
            ""
        }
    );
    if fit_high == 0 {
        println!(
            "    no highmem here: Zone::PreferHighmem falls back to lowmem, so both runs cost the same"
        );
    } else if (fit_high as usize) < spaces {
        println!(
            "    highmem holds the PTE tables of only {fit_high} spaces: the rest fall back to lowmem (Zone::PreferHighmem)"
        );
    }
    let high = run(kernel, &tables, Zone::PreferHighmem, spaces, &mut frames)?;
    let low = run(kernel, &DirectMapAccess, Zone::Lowmem, spaces, &mut frames)?;
    let unit = Stopwatch::unit();
    println!(
        "    PTE tables in highmem: {} lowmem bytes per address space ({} highmem bytes; {} tables above 4 GiB), {} {unit} to build one",
        high.lowmem_per_space, high.highmem_per_space, high.tables_above_4g, high.cycles_per_space
    );
    println!(
        "    PTE tables in lowmem:  {} lowmem bytes per address space, {} {unit} to build one",
        low.lowmem_per_space, low.cycles_per_space
    );
    println!(
        "    lowmem ratio: {}.{:02}x less with pte-highmem; unmap costs {} {unit} (highmem tables) vs {} (lowmem)",
        low.lowmem_per_space / high.lowmem_per_space.max(1),
        low.lowmem_per_space * 100 / high.lowmem_per_space.max(1) % 100,
        high.unmap_cycles,
        low.unmap_cycles
    );
    println!(
        "    teardown (Mapper::teardown: unmap_range + free_empty_tables + the directory): {} {unit} per address space (highmem tables) vs {} (lowmem)",
        high.teardown_cycles, low.teardown_cycles
    );
    ensure!(
        high.lowmem_per_space <= low.lowmem_per_space,
        "highmem tables used more lowmem than lowmem tables"
    );
    let above_4g = kernel
        .context
        .memory_map
        .as_ref()
        .map_or(0, |map| map.usable_bytes_above(1 << 32));
    if kernel.context.has_option("frames=high-first") && above_4g > 0 {
        ensure!(
            high.tables_above_4g > 0,
            "frames=high-first, RAM above 4 GiB, and yet no PTE table there"
        );
    }
    if fit_high as usize >= spaces {
        let expected = (PMD_TABLES + 1) * 4096;
        ensure!(
            high.lowmem_per_space == expected,
            "{} lowmem bytes per space with highmem tables, expected {expected}",
            high.lowmem_per_space
        );
    }
    Ok(())
}

/// Builds `spaces` address spaces with PTE tables from `zone`, reached
/// through `access`; checks them; tears them down; checks the allocator is
/// back where it was.
fn run<A: TableAccess>(
    kernel: &Kernel,
    access: &A,
    zone: Zone,
    spaces: usize,
    frames: &mut Frames,
) -> Result<Run, Failure> {
    let before = (
        frames.free_frames(ZoneId::Low),
        frames.free_frames(ZoneId::High),
    );
    let mut made: [Option<AddressSpace<&A>>; MAX_SPACES] = core::array::from_fn(|_| None);
    let mut counting = CountAbove4G { frames, above: 0 };
    let watch = Stopwatch::start();
    let mut result = Ok(0);
    for slot in made.iter_mut().take(spaces) {
        pit::keep_time();
        match create_space(access, zone, &mut counting) {
            Ok(space) => *slot = Some(space),
            Err(e) => {
                result = Err(e);
                break;
            }
        }
    }
    let cycles_per_space = watch.elapsed() / spaces as u64;
    let tables_above_4g = counting.above;
    let used_low = before.0 - frames.free_frames(ZoneId::Low);
    let used_high = before.1 - frames.free_frames(ZoneId::High);
    if result.is_ok() {
        result = check_spaces(kernel, access, &made[..spaces], frames);
    }
    // Tear everything down, even after a failed check. Space 0 lost its
    // first PTE table to `unmap_first_table` if the check got that far.
    let first_freed = result.is_ok();
    let watch = Stopwatch::start();
    let mut torn = Ok(());
    for (index, space) in made.iter_mut().enumerate() {
        pit::keep_time();
        let Some(space) = space.take() else {
            continue;
        };
        let pte_tables = TABLES as usize - usize::from(index == 0 && first_freed);
        let expected = (pte_tables, PMD_TABLES as usize);
        match space.destroy(frames) {
            Ok(freed) if (freed.pte_tables, freed.pmd_tables) == expected => {}
            Ok(freed) => {
                torn = Err(failure!(
                    "teardown of space {index} freed {freed:?}, expected (PTE, PMD) tables {expected:?}"
                ));
            }
            Err(e) => torn = Err(e),
        }
    }
    let teardown_cycles = watch.elapsed() / spaces as u64;
    let unmap_cycles = result?;
    torn?;
    let after = (
        frames.free_frames(ZoneId::Low),
        frames.free_frames(ZoneId::High),
    );
    ensure_back(before, after)?;
    Ok(Run {
        lowmem_per_space: used_low * 4096 / spaces as u64,
        highmem_per_space: used_high * 4096 / spaces as u64,
        tables_above_4g,
        cycles_per_space,
        unmap_cycles,
        teardown_cycles,
    })
}

fn ensure_back(before: (u64, u64), after: (u64, u64)) -> Result<(), Failure> {
    if before != after {
        return Err(failure!(
            "free frames (lowmem, highmem) {before:?} before, {after:?} after freeing everything"
        ));
    }
    Ok(())
}

/// A frame allocator that counts the frames it hands out above 4 GiB.
struct CountAbove4G<'a> {
    frames: &'a mut Frames,
    above: u64,
}

// SAFETY: every frame comes from (and goes back to) the kernel's allocator;
// this only counts.
unsafe impl FrameAllocator for CountAbove4G<'_> {
    fn allocate_frame(&mut self, zone: Zone) -> Option<PhysFrame> {
        let frame = self.frames.allocate_frame(zone)?;
        self.above += u64::from(frame.number() >= PFN_4G);
        Some(frame)
    }

    fn allocate_contiguous(&mut self, count: usize, zone: Zone) -> Option<PhysFrame> {
        self.frames.allocate_contiguous(count, zone)
    }

    unsafe fn deallocate_frame(&mut self, frame: PhysFrame) {
        // SAFETY: forwarded: our caller keeps the contract.
        unsafe { self.frames.deallocate_frame(frame) };
    }
}

/// A new address space (the kernel half registered, as a process gets
/// it) with `[SHARED_REGION_START, +1 GiB)` mapped read-only for user mode
/// to physical `0..1 GiB` (the same pages in every space, like a shared
/// file mapping), with 4 KiB pages so each space has its own PTE tables.
fn create_space<'a, A: TableAccess, F: FrameAllocator>(
    access: &'a A,
    zone: Zone,
    frames: &mut F,
) -> Result<AddressSpace<&'a A>, Failure> {
    let mut space = AddressSpace::create(access, zone, frames)?;
    let flags = MapFlags::USER | mode::no_execute();
    let mapped = space.mapper().map_range(
        VirtAddr::new(SHARED_REGION_START),
        PhysAddr::ZERO,
        SHARED_REGION_LEN,
        flags,
        LargePages::Avoid,
        frames,
    );
    match mapped {
        // No CPU has loaded this space yet.
        Ok(flush) => flush.ignore(),
        Err(e) => {
            let _ = space.destroy(frames);
            return Err(failure!("mapping 1 GiB: {e}"));
        }
    }
    Ok(space)
}

/// Checks three spaces (walker and CPU), then unmaps the first table of
/// space 0 page by page; returns cycles per unmap.
fn check_spaces<A: TableAccess>(
    kernel: &Kernel,
    access: &A,
    made: &[Option<AddressSpace<&A>>],
    frames: &mut Frames,
) -> Result<u64, Failure> {
    let spaces = made.len();
    for index in [0, spaces / 2, spaces - 1] {
        let Some(space) = made[index].as_ref() else {
            return Err(failure!("space {index} missing"));
        };
        verify_space(kernel, access, space)
            .map_err(|e| failure!("space {index}: {}", e.message()))?;
    }
    let root = made[0].as_ref().map(AddressSpace::root);
    let root = root.ok_or_else(|| failure!("space 0 missing"))?;
    unmap_first_table(access, root, frames)
}

/// Checks a space two ways: the walker's translations, and the CPU's, by
/// loading the space's CR3 and reading through the region.
fn verify_space<A: TableAccess>(
    kernel: &Kernel,
    access: &A,
    space: &AddressSpace<&A>,
) -> Result<(), Failure> {
    let walker = Walker::<Mode, _>::new(space.root(), access);
    let lowmem = kernel.layout.lowmem_limit.min(SHARED_REGION_LEN);
    // Physical offsets: the multiboot header at 1 MiB, the VGA buffer,
    // and pages spread over lowmem.
    let offsets = [
        u64::from(KERNEL_PHYS),
        VGA_TEXT_BUFFER,
        lowmem / 3,
        lowmem / 2,
        lowmem - 4096,
    ];
    let mut expected = [0u32; 5];
    for (offset, value) in offsets.iter().zip(expected.iter_mut()) {
        let va = VirtAddr::new(SHARED_REGION_START + *offset as u32);
        let translation = walker
            .translate(va)
            .map_err(|e| failure!("translate {va}: {e}"))?;
        if translation.phys_addr().as_u64() != *offset
            || !translation.flags.contains(MapFlags::USER)
            || translation.flags.contains(MapFlags::WRITABLE)
        {
            return Err(failure!("{va} translates to {translation:?}"));
        }
        // SAFETY: `offset` is below the lowmem limit, so it is mapped in
        // the direct map; a read of RAM (or the VGA buffer) is harmless.
        *value =
            unsafe { super::memory_access::read_word(PAGE_OFFSET as usize + *offset as usize) };
    }
    let mut seen = [Ok(0u32); 5];
    space.run(|| {
        for (offset, value) in offsets.iter().zip(seen.iter_mut()) {
            let va = SHARED_REGION_START as usize + *offset as usize;
            // SAFETY: the region maps ordinary RAM (or the VGA buffer)
            // read-only.
            *value = unsafe { fault_probe::read_u32(va) };
        }
    });
    for ((offset, want), got) in offsets.iter().zip(expected).zip(seen) {
        if got != Ok(want) {
            return Err(failure!(
                "reading {:#x} with the space loaded gave {got:?}, expected {want:#x}",
                SHARED_REGION_START as u64 + offset
            ));
        }
    }
    Ok(())
}

/// Unmaps every page of the region's first PTE table one by one and frees
/// the table with `free_empty_tables`; returns cycles per unmap.
fn unmap_first_table<A: TableAccess>(
    access: &A,
    root: PhysAddr,
    frames: &mut Frames,
) -> Result<u64, Failure> {
    // SAFETY: a test address space, never loaded into CR3, reached through
    // `access`; it maps only the test's own frames.
    let mut mapper =
        unsafe { Mapper::<Mode, &A>::new(root, access, crate::arch::mode::cpu_features()) }
            .map_err(|e| failure!("{e}"))?;
    let pages = PMD_SPAN / 4096;
    let watch = Stopwatch::start();
    for page in 0..pages {
        pit::keep_time();
        let va = VirtAddr::new(SHARED_REGION_START + page * 4096);
        let (unmapped, flush) = mapper.unmap(va).map_err(|e| failure!("unmap {va}: {e}"))?;
        // The space is not loaded: no TLB holds its entries.
        flush.ignore();
        if unmapped.base.as_u64() != u64::from(page) * 4096 {
            return Err(failure!("{va} was mapped to {:?}", unmapped.base));
        }
    }
    let cycles = watch.elapsed() / u64::from(pages);
    let freed = mapper
        .free_empty_tables(
            VirtAddr::new(SHARED_REGION_START),
            u64::from(PMD_SPAN),
            &NativeTlb,
            frames,
        )
        .map_err(|e| failure!("free_empty_tables: {e}"))?;
    if freed.pte_tables != 1 || freed.pmd_tables != 0 {
        return Err(failure!(
            "free_empty_tables freed {freed:?}, expected one PTE table"
        ));
    }
    Ok(cycles)
}
