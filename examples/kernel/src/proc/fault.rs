//! User faults: fork's sharing of pages copy-on-write, and the page
//! fault that resolves demand-zero and copy-on-write pages or ends the
//! process (with the fault-loop diagnosis).

use core::sync::atomic::{AtomicU32, Ordering};

use paging_core::{
    Entry as _, FrameAllocator, MapFlags, Page, PageSize, PhysFrame, VirtAddr, Zone,
};
use tlb_shootdown::CpuSet;

use super::process::{
    COUNTERS, COW, Counting, HEAP_START, KILLED, LAST_FAULT, MAX_PROCESSES, REPEATS, STACK_PAGES,
    STACK_TOP, Space, TableFrames, data_flags, is_shared, share, unshare, user_tables, with_table,
    zeroed_frame,
};
use super::sched::current_slot;
use super::spawn::{destroy_space, kernel_stack};
use super::syscall::{exit, kernel_error, writable_regions};
use crate::arch::exceptions::ExceptionFrame;
use crate::arch::fault_probe::ErrorCode;
use crate::base::error::Error;
use crate::mm::frames::{self};
use crate::mm::kmap_setup::{self};
use crate::mm::layout::PAGE_OFFSET;
use crate::mm::shootdown::AddressSpaceTlb;
use crate::proc::user::err;
use crate::{arch::cpu, arch::gdt, failure, println};

pub(super) fn fork_space(
    parent: &mut Space,
    heap_end: u32,
    pte_zone: Zone,
    cpu: usize,
) -> Result<(Space, TableFrames, u32), u32> {
    let tlb = AddressSpaceTlb(CpuSet::single(cpu));
    // 1. Every writable page of the parent: read-only, copy-on-write; one
    //    flush per region (this CPU is the only one that ran it).
    for (start, len) in writable_regions(heap_end) {
        if len == 0 {
            continue;
        }
        let (_, flush) = parent
            .mapper()
            .protect_range(
                VirtAddr::new(start),
                u64::from(len),
                MapFlags::WRITABLE,
                COW,
            )
            .map_err(|e| kernel_error(failure!("protect {start:#x}+{len:#x}: {e}")))?;
        flush.flush(&tlb);
    }
    // 2. The child maps the same frames.
    let mut frames = frames::lock();
    let mut tables = TableFrames::default();
    let mut counting = Counting {
        inner: &mut frames,
        tables: &mut tables,
    };
    let access = user_tables().map_err(kernel_error)?;
    let mut child = Space::create(access, pte_zone, &mut counting).map_err(|_| err::NO_MEMORY)?;
    let mut failed = None;
    for mapping in parent
        .mapper()
        .mappings(VirtAddr::new(0), u64::from(PAGE_OFFSET))
    {
        let mapping = match mapping {
            Ok(m) => m,
            Err(e) => {
                failed = Some(kernel_error(failure!("walking the parent: {e}")));
                break;
            }
        };
        if mapping.size != PageSize::Size4KiB {
            failed = Some(kernel_error(failure!("a large page in user space")));
            break;
        }
        let frame = PhysFrame::containing_address(mapping.base);
        let flags = mapping
            .flags
            .difference(MapFlags::ACCESSED | MapFlags::DIRTY);
        if share(frame).is_err() {
            failed = Some(err::SHARED_FULL);
            break;
        }
        match child.mapper().map(
            Page::containing_address(mapping.va),
            frame,
            flags,
            &mut counting,
        ) {
            Ok(flush) => flush.ignore(), // the child has not run
            Err(_) => {
                unshare(frame);
                failed = Some(err::NO_MEMORY);
                break;
            }
        }
        COUNTERS.shared_by_fork.fetch_add(1, Ordering::Relaxed);
    }
    let kstack = match failed {
        None => kernel_stack(counting.inner).map_err(|_| err::NO_MEMORY),
        Some(e) => Err(e),
    };
    match kstack {
        Ok(kstack) => Ok((child, tables, kstack)),
        Err(e) => {
            destroy_space(child, CpuSet::empty(), &mut frames).map_err(kernel_error)?;
            Err(e)
        }
    }
}

/// A page fault at `address` while this CPU runs a process: demand-zero,
/// copy-on-write, or (from ring 3) the end of the process. Returns whether
/// the access should be retried.
pub fn page_fault(frame: &ExceptionFrame, address: u32, error_code: u32) -> bool {
    let Some(slot) = current_slot() else {
        return false;
    };
    let user = frame.user_mode();
    if fault_loop(slot, address, error_code) {
        diagnose_fault_loop(slot, frame, address, error_code);
    }
    match resolve(slot, address, error_code) {
        Ok(()) => true,
        Err(reason) if user => {
            let (pid, quiet) = pid_and_quiet(slot);
            COUNTERS.kills.fetch_add(1, Ordering::Relaxed);
            if !quiet {
                println!(
                    "    killed pid {pid}: {reason} at {address:#010x} (EIP {:#010x}, error code {:#x}: {})",
                    frame.eip,
                    error_code,
                    ErrorCode(error_code)
                );
            }
            exit(slot, KILLED, Some(reason), address);
            false
        }
        Err(_) => false,
    }
}

/// The last fault's error code of each process (its address and repeat
/// count are [`LAST_FAULT`] and [`REPEATS`], which spawning resets).
static LAST_CODE: [AtomicU32; MAX_PROCESSES] = [const { AtomicU32::new(0) }; MAX_PROCESSES];

/// Whether process `slot` has now taken the same fault 64 times in a row:
/// a fault the handler says it resolved but the CPU takes again.
fn fault_loop(slot: usize, address: u32, error_code: u32) -> bool {
    let same = LAST_FAULT[slot].swap(address, Ordering::Relaxed) == address
        && LAST_CODE[slot].swap(error_code, Ordering::Relaxed) == error_code;
    if same {
        REPEATS[slot].fetch_add(1, Ordering::Relaxed) == 64
    } else {
        LAST_CODE[slot].store(error_code, Ordering::Relaxed);
        REPEATS[slot].store(0, Ordering::Relaxed);
        false
    }
}

/// Prints what the tables say about a fault that keeps coming back.
fn diagnose_fault_loop(slot: usize, frame: &ExceptionFrame, address: u32, error_code: u32) {
    let space = with_table(|t| t.slots[slot].as_mut().and_then(|p| p.space.take()));
    let Some(mut space) = space else { return };
    let walk = space.mapper().walk(VirtAddr::new(address));
    println!(
        "    FAULT LOOP: cpu {} slot {slot} at {address:#010x} EIP {:#010x} code {error_code:#x} ({}); CR3 {:#x} root {}",
        gdt::cpu_index(),
        frame.eip,
        ErrorCode(error_code),
        crate::arch::cpu::cr3(),
        space.root()
    );
    match walk {
        Ok(w) => println!(
            "    FAULT LOOP: pgd {:#x} pmd {:?} pte {:?}",
            w.pgd.1.raw(),
            w.pmd.map(|(s, e)| (s.table, s.index, e.raw())),
            w.pte.map(|(s, e)| (s.table, s.index, e.raw()))
        ),
        Err(e) => println!("    FAULT LOOP: walk failed: {e}"),
    }
    with_table(|t| {
        if let Some(p) = t.slots[slot].as_mut() {
            p.space = Some(space);
        }
    });
}

/// Process `slot`'s PID and whether its kill notices are silenced (0 and
/// `false` for an empty slot).
fn pid_and_quiet(slot: usize) -> (u32, bool) {
    with_table(|t| {
        t.slots[slot]
            .as_ref()
            .map_or((0, false), |p| (p.pid, p.quiet))
    })
}

/// Any other exception from ring 3 ends the process.
pub fn user_exception(frame: &ExceptionFrame) -> bool {
    let Some(slot) = current_slot() else {
        return false;
    };
    if !frame.user_mode() {
        return false;
    }
    let (pid, quiet) = pid_and_quiet(slot);
    COUNTERS.kills.fetch_add(1, Ordering::Relaxed);
    if !quiet {
        println!(
            "    killed pid {pid}: exception {} at EIP {:#010x}",
            frame.vector, frame.eip
        );
    }
    with_table(|t| {
        if let Some(p) = t.slots[slot].as_mut() {
            p.kill_vector = Some(frame.vector);
        }
    });
    exit(slot, KILLED, Some("exception"), frame.eip);
    true
}

fn resolve(slot: usize, address: u32, error_code: u32) -> Result<(), &'static str> {
    let present = error_code & ErrorCode::PRESENT != 0;
    let write = error_code & ErrorCode::WRITE != 0;
    let fetch = error_code & ErrorCode::FETCH != 0;
    if address >= PAGE_OFFSET {
        return Err("user access to a kernel address");
    }
    let (space, heap_end) = with_table(|t| {
        let p = t.slots[slot].as_mut().expect("current");
        (p.space.take(), p.heap_end)
    });
    let Some(mut space) = space else {
        return Err("no address space");
    };
    let result = (|| {
        let page = Page::containing_address(VirtAddr::new(address));
        let anonymous = (HEAP_START..heap_end).contains(&address)
            || (STACK_TOP - STACK_PAGES * 4096..STACK_TOP).contains(&address);
        if !present {
            if !anonymous {
                return Err("access to an unmapped address");
            }
            let mut frames = frames::lock();
            let frame = zeroed_frame(&mut frames).map_err(|_| "out of memory")?;
            let mut tables = TableFrames::default();
            let mut counting = Counting {
                inner: &mut frames,
                tables: &mut tables,
            };
            match space.mapper().map(page, frame, data_flags(), &mut counting) {
                // Not present before, so no TLB holds it; but in PAE a new
                // PMD table is a new PDPT entry, which the CPU reads only at
                // a CR3 load (it caches the four PDPTEs): the flush says so
                // and reloads CR3 here. Ignoring it left the CPU faulting
                // "not present" on a page that was mapped (seen on Bochs,
                // which caches PDPTEs as CPUs do; QEMU's TCG re-reads them).
                Ok(flush) => flush.flush(&AddressSpaceTlb(CpuSet::single(gdt::cpu_index()))),
                Err(e) => {
                    // SAFETY: allocated above; the map failed, nothing maps it.
                    unsafe { counting.inner.deallocate_frame(frame) };
                    println!("    demand-zero map of {page:?} failed: {e}");
                    return Err("cannot map a demand-zero page");
                }
            }
            drop(frames);
            add_tables(slot, tables);
            COUNTERS.demand_zero.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        if fetch {
            return Err("no-execute fetch");
        }
        if !write {
            return Err("protection fault on a read");
        }
        let leaf = space
            .mapper()
            .mappings(page.start_address(), 4096)
            .next()
            .and_then(Result::ok)
            .ok_or("the faulting page vanished")?;
        if !leaf.flags.contains(COW) {
            return Err("write to a read-only page");
        }
        let old = PhysFrame::containing_address(leaf.base);
        let flags = leaf
            .flags
            .difference(COW | MapFlags::ACCESSED | MapFlags::DIRTY)
            | MapFlags::WRITABLE;
        let tlb = AddressSpaceTlb(CpuSet::single(gdt::cpu_index()));
        if !is_shared(old) {
            // The last one: just writable again.
            space
                .mapper()
                .update_flags(page, flags)
                .map_err(|_| "cannot update a copy-on-write page")?
                .flush(&tlb);
            COUNTERS.cow_reuses.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        let mut frames = frames::lock();
        let new = frames
            .allocate_frame(Zone::PreferHighmem)
            .ok_or("out of memory")?;
        copy_frame(old, new).map_err(|_| "cannot copy a page")?;
        let (_, flush) = space
            .mapper()
            .unmap(page)
            .map_err(|_| "cannot unmap a copy-on-write page")?;
        flush.flush(&tlb);
        space
            .mapper()
            .map(page, new, flags, &mut *frames)
            .map_err(|_| "cannot map the copy")?
            // Just unmapped and flushed; the flush of the new entry is all
            // the same applied (a PAE PDPT change needs a CR3 load).
            .flush(&tlb);
        drop(frames);
        // Another process may have copied it at the same time on its CPU:
        // then this was the last reference.
        if unshare(old) {
            // SAFETY: unmapped and flushed above, and this was the last
            // reference.
            unsafe { frames::lock().deallocate_frame(old) };
        }
        COUNTERS.cow_copies.fetch_add(1, Ordering::Relaxed);
        Ok(())
    })();
    with_table(|t| {
        if let Some(p) = t.slots[slot].as_mut() {
            p.space = Some(space);
        }
    });
    result
}

fn add_tables(slot: usize, tables: TableFrames) {
    with_table(|t| {
        if let Some(p) = t.slots[slot].as_mut() {
            p.tables.low += tables.low;
            p.tables.high += tables.high;
            p.tables.above_4g += tables.above_4g;
        }
    });
}

/// Copies `from` into `to` through two local kmaps (LIFO).
fn copy_frame(from: PhysFrame, to: PhysFrame) -> Result<(), Error> {
    let local = kmap_setup::local().ok_or_else(|| failure!("no local kmaps"))?;
    let cpu = gdt::cpu_index();
    cpu::without_interrupts(|| {
        let a = local.map(cpu, from).map_err(|e| failure!("{e}"))?;
        let b = local.map(cpu, to).map_err(|e| failure!("{e}"))?;
        // SAFETY: both slots map whole frames; `to` was just allocated.
        unsafe {
            core::ptr::copy_nonoverlapping(
                a.va().as_u32() as *const u8,
                b.va().as_u32() as *mut u8,
                4096,
            )
        };
        drop(b);
        drop(a);
        Ok(())
    })
}
