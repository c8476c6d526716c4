//! The kmap pools and the frame allocator at work: lowmem is direct,
//! highmem gets a slot, reservations nest, local slots have guard pages.

use paging_core::{FrameAllocator, PhysFrame, Zone};

use crate::arch::fault_probe::{self, ErrorCode};
use crate::mm::frames::{self, ZoneId};
use crate::mm::kernel::Kernel;
use crate::mm::kmap_setup;
use crate::mm::layout::{FIXADDR_START, KMAP_POOL_SLOTS, PAGE_OFFSET, PKMAP_BASE};
use crate::selftests::harness::TestResult;
use crate::{ensure, fail, println};

pub fn frame_allocator_keeps_zones_and_contiguous_runs(kernel: &Kernel) -> TestResult {
    let mut frames = frames::lock();
    let before = (
        frames.free_frames(ZoneId::Low),
        frames.free_frames(ZoneId::High),
    );
    let Some(run) = frames.allocate_contiguous(8, Zone::Lowmem) else {
        fail!("no 8 contiguous lowmem frames");
    };
    ensure!(
        run.start_address().as_u64() + 8 * 4096 <= kernel.layout.lowmem_limit,
        "lowmem run {run:?} is above the lowmem limit"
    );
    for k in 0..8 {
        let frame = run.checked_add(k);
        ensure!(
            frame.is_some_and(|f| !frames.is_free(f.number())),
            "frame {k} of the run is still free"
        );
    }
    let high = frames.allocate_frame(Zone::PreferHighmem);
    let Some(high) = high else {
        fail!("no frame at all");
    };
    let is_high = high.start_address().as_u64() >= kernel.layout.lowmem_limit;
    ensure!(
        is_high == (before.1 > 0),
        "PreferHighmem gave {high:?} with {} highmem frames free",
        before.1
    );
    // SAFETY: a frame this self-test took from `frames`; nothing maps or uses it any more.
    unsafe { frames.deallocate_frame(high) };
    for k in 0..8 {
        if let Some(frame) = run.checked_add(k) {
            // SAFETY: a frame this self-test took from `frames`; nothing maps or uses it any more.
            unsafe { frames.deallocate_frame(frame) };
        }
    }
    let bad = frames.bad_frees();
    // SAFETY: a frame this self-test took from `frames`; nothing maps or uses it any more.
    unsafe { frames.deallocate_frame(high) };
    ensure!(
        frames.bad_frees() == bad + 1,
        "a double free went unnoticed"
    );
    let after = (
        frames.free_frames(ZoneId::Low),
        frames.free_frames(ZoneId::High),
    );
    ensure!(before == after, "free counts {before:?} -> {after:?}");
    Ok(())
}

pub fn kmap_maps_lowmem_directly_and_highmem_through_slots(_: &Kernel) -> TestResult {
    let (Some(pool), Some(direct)) = (kmap_setup::pool(), kmap_setup::direct_map()) else {
        fail!("kmap is not set up");
    };
    let mut frames = frames::lock();
    let low = frames.allocate_frame(Zone::Lowmem);
    let high = frames.allocate_frame(Zone::PreferHighmem);
    drop(frames);
    let (Some(low), Some(high)) = (low, high) else {
        fail!("out of frames");
    };
    let outcome = kmap_setup::with_task(|task| {
        let low_va = pool.map(task, low).map(|k| k.va().as_u32());
        // Two maps of one page from one reservation share a slot.
        let shared = pool.reserve(task, 2).and_then(|reservation| {
            let a = reservation.map(high)?;
            let b = reservation.map(high)?;
            Ok((a.va().as_u32(), b.va().as_u32(), pool.in_use()))
        });
        (low_va, shared)
    });
    let mut frames = frames::lock();
    // SAFETY: a frame this self-test took from `frames`; nothing maps or uses it any more.
    unsafe { frames.deallocate_frame(low) };
    // SAFETY: a frame this self-test took from `frames`; nothing maps or uses it any more.
    unsafe { frames.deallocate_frame(high) };
    drop(frames);
    let Some((low_va, shared)) = outcome else {
        fail!("the main task's kmap token is in use");
    };
    let expected = PAGE_OFFSET as u64 + low.start_address().as_u64();
    ensure!(
        low_va.map(u64::from) == Ok(expected),
        "lowmem {low:?} mapped at {low_va:x?}, expected the direct map {expected:#x}"
    );
    let (a, b, in_use) = match shared {
        Ok(values) => values,
        Err(e) => fail!("reservation: {e}"),
    };
    ensure!(a == b, "one page mapped twice at {a:#x} and {b:#x}");
    if direct.is_lowmem(high) {
        println!("    no highmem: {high:?} is lowmem, mapped directly at {a:#x}");
        return Ok(());
    }
    let pool_end = PKMAP_BASE + (KMAP_POOL_SLOTS as u32) * 4096;
    ensure!(
        (PKMAP_BASE..pool_end).contains(&a),
        "highmem {high:?} mapped at {a:#x}, outside the pool"
    );
    ensure!(in_use == 1, "{in_use} slots in use for one page");
    println!(
        "    lowmem {low:?} -> {expected:#x} (direct map), highmem {high:?} -> {a:#x} (pool slot, shared by two maps)"
    );
    Ok(())
}

pub fn local_kmap_slots_are_lifo_with_guard_pages(_: &Kernel) -> TestResult {
    let (Some(local), Some(direct)) = (kmap_setup::local(), kmap_setup::direct_map()) else {
        fail!("kmap is not set up");
    };
    let mut frames = frames::lock();
    let pages = [
        frames.allocate_frame(Zone::PreferHighmem),
        frames.allocate_frame(Zone::PreferHighmem),
    ];
    drop(frames);
    let [Some(first), Some(second)] = pages else {
        fail!("out of frames");
    };
    let result = check_local(local, direct, first, second);
    let mut frames = frames::lock();
    // SAFETY: a frame this self-test took from `frames`; nothing maps or uses it any more.
    unsafe { frames.deallocate_frame(first) };
    // SAFETY: a frame this self-test took from `frames`; nothing maps or uses it any more.
    unsafe { frames.deallocate_frame(second) };
    result
}

fn check_local(
    local: &kmap_setup::KernelLocalSlots,
    direct: kmap::DirectMap,
    first: PhysFrame,
    second: PhysFrame,
) -> TestResult {
    if direct.is_lowmem(first) {
        println!("    no highmem: local maps of lowmem use the direct map, no slot to check");
        return Ok(());
    }
    let outer = match local.map(0, first) {
        Ok(k) => k,
        Err(e) => fail!("local map: {e}"),
    };
    let inner = match local.map(0, second) {
        Ok(k) => k,
        Err(e) => fail!("nested local map: {e}"),
    };
    let (outer_va, inner_va) = (outer.va().as_u32(), inner.va().as_u32());
    ensure!(
        outer_va >= FIXADDR_START && inner_va >= FIXADDR_START,
        "local slots {outer_va:#x}, {inner_va:#x} are not in the fixmap"
    );
    ensure!(
        local.depth(0) == Some(2) && outer_va != inner_va,
        "depth {:?}, slots {outer_va:#x} {inner_va:#x}",
        local.depth(0)
    );
    // The fixmap grows down: the guard slot of each mapping is the page
    // below it, and it is never mapped.
    let guard = (inner_va - 4096) as usize;
    // SAFETY: a guard slot is unmapped or, if wrongly mapped, a kmap slot of
    // RAM; a read is harmless either way.
    let probe = unsafe { fault_probe::read_u32(guard) };
    let Err(fault) = probe else {
        fail!("guard slot {guard:#x} below a local kmap is mapped");
    };
    ensure!(
        fault.error_code == ErrorCode(0) && fault.address as usize == guard,
        "guard slot fault {fault:?}"
    );
    drop(inner);
    drop(outer);
    ensure!(
        local.depth(0) == Some(0),
        "depth {:?} after unmapping",
        local.depth(0)
    );
    println!(
        "    local slots {outer_va:#x} and {inner_va:#x}; guard {guard:#x} faults (not present)"
    );
    Ok(())
}
