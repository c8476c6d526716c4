//! Process creation and teardown: kernel stacks, the first trap frame,
//! installing a process in the table, and freeing its address space.

use core::sync::atomic::Ordering;

use paging_core::{FrameAllocator, Page, PhysAddr, PhysFrame, VirtAddr, Zone};
use tlb_shootdown::CpuSet;

use super::process::{
    CONTEXTS, Counting, HEAP_START, KSTACK_PAGES, PREEMPTIONS, Process, STACK_CANARY, STACK_TOP,
    Space, Table, TableFrames, text_flags, unshare, user_tables, with_frame, with_table,
    zeroed_frame,
};
use super::process::{LAST_FAULT, PICKS, REPEATS};
use crate::arch::exceptions::{ExceptionFrame, UserFrame};
use crate::base::config::CPUS;
use crate::base::error::Error;
use crate::mm::frames::{self, Frames};
use crate::mm::layout::PAGE_OFFSET;
use crate::mm::shootdown::AddressSpaceTlb;
use crate::proc::user::{Program, TEXT_BASE};
use crate::{arch::gdt, arch::timer, failure, println, smp};

/// The initial kernel stack of a process: a trap frame that `iretd`s to
/// `frame`, below it a context that `switch_context` "returns" from into
/// `exception_return`. Returns the context's ESP.
fn prepare_stack(kstack: u32, frame: &UserFrame) -> u32 {
    unsafe extern "C" {
        fn exception_return();
    }
    let top = kstack + (KSTACK_PAGES * 4096) as u32;
    let frame_at = top - size_of::<UserFrame>() as u32;
    let context_at = frame_at - 5 * 4;
    // SAFETY: the stack is two lowmem frames just allocated for this
    // process, mapped writable by the direct map; nothing else uses them.
    unsafe {
        (frame_at as *mut UserFrame).write(*frame);
        let context = context_at as *mut u32;
        // edi, esi, ebx, ebp, then the return address.
        for i in 0..4 {
            context.add(i).write(0);
        }
        context
            .add(4)
            .write(exception_return as *const () as usize as u32);
    }
    context_at
}

/// A fresh user frame entering `TEXT_BASE` with EBX = `arg`.
fn entry_frame(arg: u32) -> UserFrame {
    let data = u32::from(gdt::USER_DATA);
    UserFrame {
        frame: ExceptionFrame {
            gs: data,
            fs: data,
            es: data,
            ds: data,
            edi: 0,
            esi: 0,
            ebp: 0,
            esp: 0,
            ebx: arg,
            edx: 0,
            ecx: 0,
            eax: 0,
            vector: 0,
            error_code: 0,
            eip: TEXT_BASE,
            cs: u32::from(gdt::USER_CODE),
            eflags: 0x202, // IF
        },
        user_esp: STACK_TOP,
        user_ss: data,
    }
}

pub(super) fn kernel_stack(frames: &mut Frames) -> Result<u32, Error> {
    let frame = frames
        .allocate_contiguous(KSTACK_PAGES, Zone::Lowmem)
        .ok_or_else(|| failure!("no lowmem for a kernel stack"))?;
    let base = PAGE_OFFSET + frame.start_address().as_u64() as u32;
    // SAFETY: the frames were just allocated; the direct map maps them.
    unsafe { (base as *mut u32).write_volatile(STACK_CANARY) };
    Ok(base)
}

/// Whether the canary at the bottom of the kernel stack at `base` is
/// intact (the stack never ran into the frames below it).
pub(super) fn canary_intact(base: u32) -> bool {
    // SAFETY: `base` is a kernel stack's lowest word, mapped by the
    // direct map while the process exists.
    base == 0 || unsafe { (base as *const u32).read_volatile() } == STACK_CANARY
}

pub(super) fn free_kernel_stack(kstack: u32, frames: &mut Frames) {
    let first = (kstack - PAGE_OFFSET) as u64;
    for i in 0..KSTACK_PAGES as u64 {
        let frame = PhysFrame::containing_address(PhysAddr::new_truncate(first + i * 4096));
        // SAFETY: the stack's frames came from `frames`; the process is dead
        // and no CPU runs on this stack any more (the caller's contract).
        unsafe { frames.deallocate_frame(frame) };
    }
}

/// Puts a new process in the table (Ready on its CPU); returns its PID,
/// or the process if the table is full (the caller frees it: [`discard`]).
#[allow(clippy::result_large_err)]
pub(super) fn install(mut process: Process, frame: &UserFrame) -> Result<u32, Process> {
    with_table(|table| {
        let Some(index) = table.slots.iter().position(Option::is_none) else {
            return Err(process);
        };
        process.pid = table.next_pid;
        table.next_pid += 1;
        if process.cpu == usize::MAX {
            process.cpu = next_cpu(table);
        }
        let context = prepare_stack(process.kstack, frame);
        // SAFETY: the slot is free: no CPU runs it, nothing else writes
        // its context (the table lock is held).
        unsafe { (&raw mut CONTEXTS[index]).write(context) };
        PREEMPTIONS[index].store(0, Ordering::Relaxed);
        crate::arch::fpu::reset(index);
        process.ready_tick = timer::ticks(process.cpu);
        process.ready_pick = PICKS[process.cpu % CPUS].load(Ordering::Relaxed);
        let pid = process.pid;
        // A new process: the fault-loop count starts afresh (the slot's
        // last occupant faulted where every process first does).
        LAST_FAULT[index].store(0, Ordering::Relaxed);
        REPEATS[index].store(0, Ordering::Relaxed);
        table.slots[index] = Some(process);
        Ok(pid)
    })
}

/// Frees a process that never ran (its table slot was refused): its
/// address space (a forked child's shared pages lose a reference) and its
/// kernel stack.
pub(super) fn discard(mut process: Process) {
    let mut frames = frames::lock();
    if let Some(space) = process.space.take()
        && let Err(e) = destroy_space(space, CpuSet::empty(), &mut frames)
    {
        println!("    discarding a process failed: {}", e.message());
    }
    if process.kstack != 0 {
        free_kernel_stack(process.kstack, &mut frames);
    }
}

/// The next online CPU, round robin.
fn next_cpu(table: &mut Table) -> usize {
    for _ in 0..CPUS {
        let cpu = table.next_cpu % CPUS;
        table.next_cpu += 1;
        if smp::is_online(cpu) {
            return cpu;
        }
    }
    0
}

/// Creates a process running `program` with EBX = `arg`, its user PTE
/// tables from `pte_zone` (highmem normally; lowmem for the comparison),
/// on `cpu` (or round robin). The kernel is its parent (PID 0).
pub fn spawn(program: Program, arg: u32, pte_zone: Zone, cpu: Option<usize>) -> Result<u32, Error> {
    if program.code().len() > super::process::TEXT_MAX as usize {
        return Err(failure!(
            "{} has {} bytes of text, more than TEXT_MAX ({})",
            program.name,
            program.code().len(),
            super::process::TEXT_MAX
        ));
    }
    let mut frames = frames::lock();
    let mut tables = TableFrames::default();
    let mut counting = Counting {
        inner: &mut frames,
        tables: &mut tables,
    };
    let mut space = Space::create(user_tables()?, pte_zone, &mut counting)?;
    let code = program.code();
    let pages = code.len().div_ceil(4096);
    let mut mapped = 0;
    let result = (|| {
        for page in 0..pages {
            let frame = zeroed_frame(counting.inner)?;
            let chunk = &code[page * 4096..code.len().min((page + 1) * 4096)];
            // SAFETY: the slot maps the new frame; `chunk` is at most 4 KiB.
            with_frame(frame, |p| unsafe {
                core::ptr::copy_nonoverlapping(chunk.as_ptr(), p, chunk.len())
            })?;
            let va = Page::containing_address(VirtAddr::new(TEXT_BASE + (page * 4096) as u32));
            match space.mapper().map(va, frame, text_flags(), &mut counting) {
                Ok(flush) => flush.ignore(), // no CPU has loaded this space
                Err(e) => {
                    // SAFETY: allocated above for this page, and the map
                    // that would have used it failed: nothing maps it.
                    unsafe { counting.inner.deallocate_frame(frame) };
                    return Err(failure!("mapping text: {e}"));
                }
            }
            mapped += 1;
        }
        kernel_stack(counting.inner)
    })();
    let kstack = match result {
        Ok(kstack) => kstack,
        Err(e) => {
            let _ = mapped;
            destroy_space(space, CpuSet::empty(), &mut frames)?;
            return Err(e);
        }
    };
    drop(frames);
    let process = Process::new(
        0,
        cpu.unwrap_or(usize::MAX),
        program.name,
        space,
        kstack,
        HEAP_START,
        tables,
        pte_zone,
    );
    install(process, &entry_frame(arg)).map_err(|process| {
        discard(process);
        failure!("the process table is full")
    })
}

/// Tears a user half down, releasing every frame (shared ones lose a
/// reference), and frees the directory. `cpus` ran the space.
pub(super) fn destroy_space(space: Space, cpus: CpuSet, frames: &mut Frames) -> Result<(), Error> {
    let tlb = AddressSpaceTlb(cpus);
    // `teardown_releasing` hands each page over after the flush that made
    // it unreachable, so it is freed at once, however many there are. The
    // allocator is shared between the teardown (tables) and the callback
    // (pages) through a `RefCell`: they take turns, never overlap.
    let frames = core::cell::RefCell::new(frames);
    space.destroy_releasing(&tlb, &mut Turns(&frames), |_, unmapped| {
        let frame = PhysFrame::containing_address(unmapped.base);
        if unshare(frame) {
            // SAFETY: the teardown unmapped it and flushed every CPU that
            // ran the space before this call, and `unshare` said this space
            // held the last reference: nothing maps or uses it now.
            unsafe { frames.borrow_mut().deallocate_frame(frame) };
        }
    })?;
    Ok(())
}

/// The kernel's allocator, lent to a teardown and its release callback in
/// turn.
struct Turns<'a, 'b>(&'a core::cell::RefCell<&'b mut Frames>);

// SAFETY: every call is forwarded to the kernel's allocator.
unsafe impl FrameAllocator for Turns<'_, '_> {
    fn allocate_frame(&mut self, zone: Zone) -> Option<PhysFrame> {
        self.0.borrow_mut().allocate_frame(zone)
    }

    unsafe fn deallocate_frame(&mut self, frame: PhysFrame) {
        // SAFETY: the caller keeps the contract, forwarded unchanged.
        unsafe { self.0.borrow_mut().deallocate_frame(frame) };
    }
}
