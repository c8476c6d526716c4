//! The working-set estimate ([`crate::proc::working_set`]): Accessed
//! harvesting over a process's user half (`Mapper::test_and_clear_accessed`
//! and its flush).
//!
//! - Exact, on a process-shaped address space (user PTE tables in highmem,
//!   user pages): the pages touched are young, the untouched ones never
//!   are; a second harvest without touching finds none; and after the
//!   harvest's flush a touch under the same CR3 sets Accessed again (without
//!   the flush the TLB would still hold the translation and the CPU would
//!   not set it: SDM vol. 3A 4.8).
//! - Real processes: `toucher` writes its 16 heap pages before it yields;
//!   `hello` maps no data page. The scheduler's harvests find the toucher's
//!   heap pages young and `hello` never has more young pages than text
//!   pages.

use paging_core::{FrameAllocator, MapFlags, Page, PhysFrame, VirtAddr, Zone};
use tlb_shootdown::CpuSet;

use crate::arch::{cpu, gdt, guards, mode};
use crate::mm::address_space::AddressSpace;
use crate::mm::frames;
use crate::mm::kernel::Kernel;
use crate::mm::kmap_setup;
use crate::mm::kmap_setup::KernelHighmemTables;
use crate::mm::shootdown::{self, AddressSpaceTlb};
use crate::proc::process::{self, HEAP_START};
use crate::proc::user;
use crate::proc::working_set;
use crate::selftests::harness::{Failure, TestResult};
use crate::selftests::processes::run_and_reap;
use crate::{ensure, failure, println};

type Space = AddressSpace<KernelHighmemTables>;

/// Pages mapped in the exact part.
const MAPPED: usize = 12;
/// The break of the exact part's space: its pages are the heap.
const HEAP_END: u32 = HEAP_START + MAPPED as u32 * 4096;
/// Of those, pages touched first.
const TOUCHED: usize = 5;
/// Of those, pages touched again after the harvest.
const RETOUCHED: usize = 3;
/// Heap pages the toucher writes before it yields.
const TOUCHER_HEAP: u32 = 16;

fn touch(pages: usize) {
    for i in 0..pages {
        let p = (HEAP_START as usize + i * 4096) as *const u32;
        // SAFETY: the page is mapped (user, writable) in the loaded space;
        // user_access allows the supervisor read under SMAP.
        guards::user_access(|| unsafe { core::ptr::read_volatile(p) });
    }
}

pub fn process_working_set_harvest_counts_young_pages(_: &Kernel) -> TestResult {
    let before = crate::proc::sched::free_frames();
    exact()?;
    let after = crate::proc::sched::free_frames();
    ensure!(
        after == before,
        "frames free before the exact part {before:?} and after {after:?}"
    );
    processes()
}

/// The exact part, on a space of our own.
fn exact() -> TestResult {
    let access = kmap_setup::highmem_tables().ok_or_else(|| failure!("kmap is not set up"))?;
    let mut frames = frames::lock();
    let mut space = AddressSpace::create(access, Zone::PreferHighmem, &mut *frames)?;
    let flags = MapFlags::PRESENT | MapFlags::WRITABLE | MapFlags::USER | mode::no_execute();
    let mut mapped: heapless::Vec<PhysFrame, MAPPED> = heapless::Vec::new();
    let mut result = Ok((0, 0, 0));
    for i in 0..MAPPED {
        let Some(frame) = frames.allocate_frame(Zone::PreferHighmem) else {
            result = Err(failure!("out of memory"));
            break;
        };
        let page = Page::containing_address(VirtAddr::new(HEAP_START + (i as u32) * 4096));
        match space.mapper().map(page, frame, flags, &mut *frames) {
            Ok(flush) => flush.ignore(), // the space was never loaded
            Err(e) => {
                // SAFETY: just allocated; the map failed, nothing maps it.
                unsafe { frames.deallocate_frame(frame) };
                result = Err(failure!("map: {e}"));
                break;
            }
        }
        let _ = mapped.push(frame);
    }
    drop(frames);
    if result.is_ok() {
        result = cpu::without_interrupts(|| young_counts(&mut space));
    }
    // Give everything back: the pages, then the tables and the directory.
    let mut frames = frames::lock();
    for i in 0..mapped.len() {
        let va = VirtAddr::new(HEAP_START + (i as u32) * 4096);
        match space.mapper().unmap(va) {
            Ok((unmapped, flush)) => {
                flush.flush(&AddressSpaceTlb(CpuSet::single(gdt::cpu_index())));
                // SAFETY: unmapped and flushed on the one CPU that loaded
                // the space; nothing else maps the frame.
                unsafe { frames.deallocate_frame(PhysFrame::containing_address(unmapped.base)) };
            }
            Err(e) => result = Err(failure!("unmap {va}: {e}")),
        }
    }
    space.destroy(&mut *frames)?;
    drop(frames);
    let (first, second, third) = result?;
    ensure!(
        first == TOUCHED as u32,
        "{TOUCHED} of {MAPPED} pages touched, {first} young"
    );
    ensure!(
        second == 0,
        "{second} pages young in a second harvest with no touch between"
    );
    ensure!(
        third == RETOUCHED as u32,
        "{RETOUCHED} pages touched again after the harvest's flush, {third} young"
    );
    println!(
        "    harvest: {TOUCHED} of {MAPPED} user pages touched: {first} young; again with no touch: {second}; {RETOUCHED} touched after the flush: {third}"
    );
    Ok(())
}

/// With `space` loaded (interrupts off): touch, harvest, harvest, touch
/// again, harvest; all under one CR3 load, so only the harvest's flush
/// can make the CPU set Accessed again.
fn young_counts(space: &mut Space) -> Result<(u32, u32, u32), Failure> {
    let tlb = AddressSpaceTlb(CpuSet::single(gdt::cpu_index()));
    let previous = mode::current_root();
    // SAFETY: the space was registered with the kernel sync at creation,
    // so its kernel half maps this code, its stack and data; its user half
    // holds only the pages mapped above.
    unsafe { shootdown::load_root(space.root()) }.map_err(|e| failure!("load: {e}"))?;
    let result = (|| {
        touch(TOUCHED);
        let first = working_set::harvest(space.mapper(), &process::regions(HEAP_END), &tlb)
            .map_err(|e| failure!("harvest: {e}"))?;
        let second = working_set::harvest(space.mapper(), &process::regions(HEAP_END), &tlb)
            .map_err(|e| failure!("harvest: {e}"))?;
        touch(RETOUCHED);
        let third = working_set::harvest(space.mapper(), &process::regions(HEAP_END), &tlb)
            .map_err(|e| failure!("harvest: {e}"))?;
        Ok((first, second, third))
    })();
    // SAFETY: the directory loaded before, still complete.
    unsafe { shootdown::load_root(previous) }.map_err(|e| failure!("reload: {e}"))?;
    result
}

/// The real processes.
fn processes() -> TestResult {
    let before = crate::proc::sched::free_frames();
    let seed = 0x5EED_0022;
    let toucher = crate::proc::spawn::spawn(user::toucher(), seed, Zone::PreferHighmem, None)?;
    let hello = crate::proc::spawn::spawn(user::hello(), 0, Zone::PreferHighmem, None)?;
    let outcomes = run_and_reap(before)?;
    let find = |pid| {
        outcomes
            .iter()
            .find(|o| o.pid == pid)
            .ok_or_else(|| failure!("no outcome for pid {pid}"))
    };
    let t = find(toucher)?;
    let h = find(hello)?;
    ensure!(
        t.exit_code == user::toucher_checksum(seed),
        "toucher ended with {t:?}"
    );
    let t_text = user::toucher().code().len().div_ceil(4096) as u32;
    let h_text = user::hello().code().len().div_ceil(4096) as u32;
    let t_ws = t.working_set;
    let h_ws = h.working_set;
    // Every heap page it wrote was young in some window (and the text in
    // each); no window has more young pages than it maps.
    ensure!(
        t_ws.total >= TOUCHER_HEAP + t_text && t_ws.peak <= TOUCHER_HEAP + t_text,
        "toucher wrote {TOUCHER_HEAP} heap pages ({t_text} text): {t_ws:?}"
    );
    // hello maps no data page: its text is all it can use.
    ensure!(
        h_ws.windows >= 1 && h_ws.peak <= h_text && h_ws.total >= 1,
        "hello maps {h_text} text pages and no data: {h_ws:?}"
    );
    println!(
        "    harvest: toucher (16 heap pages written) {} young pages in {} windows (peak {}); hello (no data page) {} in {} (peak {})",
        t_ws.total, t_ws.windows, t_ws.peak, h_ws.total, h_ws.windows, h_ws.peak
    );
    Ok(())
}
