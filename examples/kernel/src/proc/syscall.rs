//! System calls (`int 0x80`): write, sbrk, yield, wait, exit, fork and
//! kmap-hold, each failing with -1 and a reason ([`err`]).

use core::sync::atomic::Ordering;

use paging_core::FrameAllocator;
use tlb_shootdown::CpuSet;

use super::fault::fork_space;
use super::process::{
    CONSOLE_BUDGET, COUNTERS, HEAP_MAX, HEAP_START, KMAP_HOLD_MAX, MAX_CHILDREN, PREEMPTIBLE,
    PREEMPTIONS, Process, STACK_PAGES, STACK_TOP, State, with_table, zeroed_frame,
};
use super::sched::{current_slot, kernel_root, switch_to_scheduler, yield_now};
use super::spawn::{destroy_space, discard, install};
use crate::arch::exceptions::{ExceptionFrame, UserFrame};
use crate::base::config::CPUS;
use crate::base::error::Error;
use crate::mm::frames::{self};
use crate::mm::kmap_setup::{self};
use crate::mm::shootdown::{self};
use crate::proc::user::{err, nr};
use crate::{arch::cpu, arch::gdt, print, println};

/// Called for `int 0x80` (interrupts off, on the process's kernel stack).
pub fn syscall(frame: &mut ExceptionFrame) {
    let Some(slot) = current_slot() else {
        frame.eax = u32::MAX;
        return;
    };
    if !frame.user_mode() {
        frame.eax = u32::MAX;
        return;
    }
    // SAFETY: an interrupt from ring 3: the CPU pushed the user ESP and SS
    // right after EFLAGS.
    let user = unsafe { &mut *(frame as *mut ExceptionFrame as *mut UserFrame) };
    let (a, b) = (user.frame.ebx, user.frame.ecx);
    COUNTERS.syscalls.fetch_add(1, Ordering::Relaxed);
    let result = match user.frame.eax {
        nr::WRITE => sys_write(slot, a, b),
        nr::GETPID => Ok(with_table(|t| t.slots[slot].as_ref().map_or(0, |p| p.pid))),
        nr::FORK => sys_fork(slot, user),
        nr::EXIT => Ok(exit(slot, a, None, 0)),
        nr::WAIT => sys_wait(slot, user),
        nr::YIELD => {
            yield_now(slot);
            Ok(0)
        }
        nr::SBRK => sys_sbrk(slot, a),
        nr::KMAP_HOLD => sys_kmap_hold(slot, a),
        nr::LAST_ERROR => Ok(with_table(|t| {
            t.slots[slot].as_ref().map_or(err::NONE, |p| p.last_error)
        })),
        _ => Err(err::INVALID),
    };
    user.frame.eax = result.unwrap_or_else(|code| {
        with_table(|t| {
            if let Some(p) = t.slots[slot].as_mut() {
                p.last_error = code;
            }
        });
        u32::MAX
    });
}

/// `write(buf, len)`: at most [`CONSOLE_BUDGET`] bytes over the process's
/// life reach the console; the rest are dropped and counted.
fn sys_write(slot: usize, buf: u32, len: u32) -> Result<u32, u32> {
    if len > 4096 || !crate::proc::usercopy::user_range(buf, len as usize) {
        return Err(err::FAULT);
    }
    let quiet = with_table(|t| t.slots[slot].as_ref().is_some_and(|p| p.quiet));
    if quiet {
        // Copied like any write (the same checks, the same faults), then
        // dropped.
        let mut chunk = [0u8; 256];
        let mut done = 0;
        while done < len {
            let n = (len - done).min(chunk.len() as u32);
            crate::proc::usercopy::copy_from_user(&mut chunk[..n as usize], buf + done)?;
            done += n;
        }
        return Ok(len);
    }
    let allowed = with_table(|t| {
        let p = t.slots[slot].as_mut()?;
        let allowed = len.min(CONSOLE_BUDGET.saturating_sub(p.console_written));
        p.console_written += allowed;
        p.console_dropped = p.console_dropped.saturating_add(len - allowed);
        Some(allowed)
    })
    .unwrap_or(0);
    let mut chunk = [0u8; 256];
    let mut done = 0;
    while done < allowed {
        let n = (allowed - done).min(chunk.len() as u32);
        let part = &mut chunk[..n as usize];
        crate::proc::usercopy::copy_from_user(part, buf + done)?;
        for byte in part.iter() {
            print!("{}", *byte as char);
        }
        done += n;
    }
    if allowed < len {
        return if allowed == 0 {
            Err(err::CONSOLE_BUDGET)
        } else {
            with_table(|t| {
                if let Some(p) = t.slots[slot].as_mut() {
                    p.last_error = err::CONSOLE_BUDGET;
                }
            });
            Ok(allowed)
        };
    }
    Ok(len)
}

/// `sbrk(bytes)`: checked arithmetic, the heap limit is the page limit.
fn sys_sbrk(slot: usize, bytes: u32) -> Result<u32, u32> {
    with_table(|t| {
        let p = t.slots[slot].as_mut().ok_or(err::KERNEL)?;
        let old = p.heap_end;
        let grow = bytes.checked_next_multiple_of(4096).ok_or(err::INVALID)?;
        let new = old.checked_add(grow).ok_or(err::PAGE_LIMIT)?;
        if new > HEAP_START + HEAP_MAX {
            return Err(err::PAGE_LIMIT);
        }
        p.heap_end = new;
        Ok(old)
    })
}

fn sys_wait(slot: usize, user: &mut UserFrame) -> Result<u32, u32> {
    loop {
        let found = with_table(|t| {
            let pid = t.slots[slot].as_ref().map_or(0, |p| p.pid);
            let mut children = false;
            for child in t.slots.iter_mut() {
                let Some(c) = child else { continue };
                if c.parent != pid {
                    continue;
                }
                children = true;
                if c.state == State::Zombie && c.kstack == 0 {
                    let result = (c.pid, c.exit_code);
                    *child = None;
                    return Some(Some(result));
                }
            }
            if !children {
                return Some(None);
            }
            if let Some(p) = t.slots[slot].as_mut() {
                p.state = State::Waiting;
            }
            None
        });
        match found {
            Some(Some((pid, code))) => {
                user.frame.ebx = code;
                return Ok(pid);
            }
            Some(None) => return Err(err::NO_CHILD),
            None => switch_to_scheduler(slot),
        }
    }
}

/// Ends process `slot` (its own CPU, its own kernel stack): the user half
/// torn down, the parent woken, then the scheduler. Never returns.
pub(super) fn exit(slot: usize, code: u32, reason: Option<&'static str>, address: u32) -> u32 {
    let cpu = gdt::cpu_index() % CPUS;
    if code == crate::proc::user::FUZZ_CORRUPT && reason.is_none() {
        COUNTERS.corrupt.fetch_add(1, Ordering::Relaxed);
    }
    // The space must not be loaded while it is torn down.
    // SAFETY: the kernel's directory maps everything this path uses.
    let _ = unsafe { shootdown::load_root(kernel_root()) };
    if let Some(local) = kmap_setup::local() {
        // A killed process may have left local kmaps (none do today).
        let _ = local.save(cpu);
    }
    // The last window, harvested before the teardown.
    super::process::end_window(slot, cpu);
    let space = with_table(|t| t.slots[slot].as_mut().and_then(|p| p.space.take()));
    if let Some(space) = space
        && let Err(e) = destroy_space(space, CpuSet::single(cpu), &mut frames::lock())
    {
        println!("    teardown of slot {slot} failed: {}", e.message());
    }
    let (pid, dropped) = with_table(|t| {
        let (pid, dropped) = match t.slots[slot].as_mut() {
            Some(p) => {
                p.state = State::Zombie;
                p.exit_code = code;
                p.kill_reason = reason;
                p.kill_address = address;
                (p.pid, p.console_dropped)
            }
            None => (0, 0),
        };
        // Zombie children are reaped now; live ones (or ones still on
        // their kernel stack) become orphans, which the kernel reaps when
        // they end.
        for child in t.slots.iter_mut() {
            let Some(c) = child else { continue };
            if pid == 0 || c.parent != pid {
                continue;
            }
            if c.state == State::Zombie && c.kstack == 0 {
                *child = None;
            } else {
                c.parent = 0;
                c.orphan = true;
            }
        }
        (pid, dropped)
    });
    if dropped > 0 {
        println!(
            "    pid {pid}: {dropped} console bytes dropped (over its budget of {CONSOLE_BUDGET})"
        );
    }
    // The scheduler frees the kernel stack once off it, then wakes the
    // parent (which reaps only a zombie whose stack is gone).
    switch_to_scheduler(slot);
    // A zombie is never scheduled again.
    cpu::halt_forever()
}

/// `fork()`: -1 with [`err::CHILD_LIMIT`] or [`err::TABLE_FULL`] before any
/// work; with [`err::SHARED_FULL`] or [`err::NO_MEMORY`] once the child
/// half built is freed again (every shared page loses its reference).
fn sys_fork(slot: usize, user: &UserFrame) -> Result<u32, u32> {
    let cpu = gdt::cpu_index() % CPUS;
    let (mut parent_space, heap_end, program, pte_zone, pid, quiet) = with_table(|t| {
        let p = t.slots[slot].as_mut().expect("current");
        (
            p.space.take(),
            p.heap_end,
            p.program,
            p.pte_zone,
            p.pid,
            p.quiet,
        )
    });
    let refused = with_table(|t| {
        let children = t.slots.iter().flatten().filter(|c| c.parent == pid).count();
        if children >= MAX_CHILDREN {
            Some(err::CHILD_LIMIT)
        } else if t.slots.iter().all(Option::is_some) {
            Some(err::TABLE_FULL)
        } else {
            None
        }
    });
    let result = match (refused, parent_space.as_mut()) {
        (Some(code), _) => Err(code),
        (None, None) => Err(err::KERNEL),
        (None, Some(parent)) => fork_space(parent, heap_end, pte_zone, cpu),
    };
    with_table(|t| {
        if let Some(p) = t.slots[slot].as_mut() {
            p.space = parent_space;
        }
    });
    let (child_space, tables, kstack) = result.inspect_err(|&code| {
        COUNTERS.forks_refused.fetch_add(1, Ordering::Relaxed);
        if code == err::TABLE_FULL {
            COUNTERS.forks_table_full.fetch_add(1, Ordering::Relaxed);
        }
    })?;
    let mut frame = *user;
    frame.frame.eax = 0;
    let mut process = Process::new(
        pid,
        usize::MAX,
        program,
        child_space,
        kstack,
        heap_end,
        tables,
        pte_zone,
    );
    process.quiet = quiet;
    // Another CPU may have taken the last slot since the check.
    let child = install(process, &frame).map_err(|process| {
        discard(process);
        COUNTERS.forks_refused.fetch_add(1, Ordering::Relaxed);
        COUNTERS.forks_table_full.fetch_add(1, Ordering::Relaxed);
        err::TABLE_FULL
    })?;
    let child_cpu = with_table(|t| {
        t.slots
            .iter()
            .flatten()
            .find(|p| p.pid == child)
            .map(|p| p.cpu)
    });
    if let Some(target) = child_cpu
        && target != cpu
    {
        crate::smp::work::wake(target);
    }
    Ok(child)
}

/// The user regions whose pages may be written (copy-on-write after fork).
pub(super) fn writable_regions(heap_end: u32) -> [(u32, u32); 2] {
    [
        (HEAP_START, heap_end - HEAP_START),
        (STACK_TOP - STACK_PAGES * 4096, STACK_PAGES * 4096),
    ]
}

/// A kernel failure while forking: printed (a bug), [`err::KERNEL`].
pub(super) fn kernel_error(e: Error) -> u32 {
    println!("    fork failed: {}", e.message());
    err::KERNEL
}

/// Timer ticks of its CPU `kmap_hold` waits per preemption asked for
/// before it gives up (error 4): other ready processes on the CPU take
/// their turns meanwhile, each one to two ticks.
const HOLD_TICKS_PER_PREEMPTION: u32 = 64;
/// Spins `kmap_hold` makes per preemption asked for before it gives up,
/// should the timer never come (far more than 64 ticks take on any CPU
/// measured here).
const HOLD_SPINS_PER_PREEMPTION: u64 = 200_000_000;

/// `kmap_hold(n)`: two pages of the kernel's own, mapped through local
/// kmaps and filled; then, with interrupts on, wait until this process has
/// been preempted `n` times (other processes use the same CPU's slots
/// meanwhile); then check both pages through the same addresses.
///
/// At most [`KMAP_HOLD_MAX`] preemptions (more is -1,
/// [`err::INVALID`]), and the wait ends after a bounded number of ticks
/// (or of spins, even if the timer never comes): no process can keep a CPU
/// in ring 0.
fn sys_kmap_hold(slot: usize, preemptions: u32) -> Result<u32, u32> {
    let cpu = gdt::cpu_index() % CPUS;
    if preemptions > KMAP_HOLD_MAX {
        return Err(err::INVALID);
    }
    let Some(local) = kmap_setup::local() else {
        return Ok(2);
    };
    // One lock at a time: a guard in the same statement would live on.
    let f1 = zeroed_frame(&mut frames::lock());
    let f2 = zeroed_frame(&mut frames::lock());
    let (f1, f2) = match (f1, f2) {
        (Ok(f1), Ok(f2)) => (f1, f2),
        (f1, f2) => {
            let mut frames = frames::lock();
            for frame in [f1, f2].into_iter().flatten() {
                // SAFETY: allocated above and not mapped yet.
                unsafe { frames.deallocate_frame(frame) };
            }
            return Err(err::NO_MEMORY);
        }
    };
    let pid = with_table(|t| t.slots[slot].as_ref().map_or(0, |p| p.pid));
    let result = (|| {
        let a = local.map(cpu, f1).map_err(|_| 3u32)?;
        let b = local.map(cpu, f2).map_err(|_| 3u32)?;
        let (va, vb) = (a.va().as_u32() as *mut u32, b.va().as_u32() as *mut u32);
        let pattern = |i: usize, which: u32| pid.wrapping_mul(0x0101_0101) ^ (i as u32) ^ which;
        for i in 0..1024 {
            // SAFETY: both slots map frames allocated just above.
            unsafe {
                va.add(i).write_volatile(pattern(i, 0xAAAA_0000));
                vb.add(i).write_volatile(pattern(i, 0x5555_0000));
            }
        }
        // Counted from the start, with wrapping differences: the counter
        // may wrap, the comparison does not.
        let start = PREEMPTIONS[slot].load(Ordering::Relaxed);
        let done = || {
            PREEMPTIONS[slot]
                .load(Ordering::Relaxed)
                .wrapping_sub(start)
                >= preemptions
        };
        // The bound is in this CPU's timer ticks, not spins: a turn lasts
        // one to two tick periods, and how many spins fit in one depends
        // on the CPU (or emulator) by orders of magnitude.
        let ticks = crate::arch::timer::ticks(cpu);
        let max_ticks = HOLD_TICKS_PER_PREEMPTION * (preemptions + 1);
        PREEMPTIBLE[slot].store(true, Ordering::SeqCst);
        // SAFETY: ring 0; the timer may now preempt this kernel code.
        unsafe { core::arch::asm!("sti", options(nostack)) };
        let max_spins = HOLD_SPINS_PER_PREEMPTION * u64::from(preemptions + 1);
        let mut spins = 0u64;
        while !done()
            && crate::arch::timer::ticks(cpu).wrapping_sub(ticks) < max_ticks
            && spins < max_spins
        {
            core::hint::spin_loop();
            spins += 1;
        }
        // SAFETY: ring 0.
        unsafe { core::arch::asm!("cli", options(nostack)) };
        PREEMPTIBLE[slot].store(false, Ordering::SeqCst);
        if !done() {
            return Err(4);
        }
        let mut wrong = 0;
        for i in 0..1024 {
            // SAFETY: as above: the same slots, restored after each switch.
            let (x, y) = unsafe { (va.add(i).read_volatile(), vb.add(i).read_volatile()) };
            if x != pattern(i, 0xAAAA_0000) || y != pattern(i, 0x5555_0000) {
                wrong += 1;
            }
        }
        drop(b);
        drop(a);
        if wrong == 0 { Ok(0) } else { Err(1) }
    })();
    let mut frames = frames::lock();
    // SAFETY: allocated above; the spaces that mapped them are gone.
    unsafe {
        frames.deallocate_frame(f1);
        frames.deallocate_frame(f2);
    }
    Ok(result.unwrap_or_else(|e| e))
}
