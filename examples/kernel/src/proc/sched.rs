//! The scheduler: one loop per CPU runs the processes pinned to it,
//! round-robin, with the context switch, the fairness figures, the timer's
//! preemption and reaping.

use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

use paging_core::{PhysAddr, Zone};

use super::process::{
    CONTEXTS, COUNTERS, CURRENT, KSTACK_PAGES, MAX_PROCESSES, PICKS, PREEMPTIBLE, PREEMPTIONS,
    Process, SCHEDULERS, Space, State, TABLE, TableFrames, with_table,
};
use super::spawn::{canary_intact, free_kernel_stack};
use crate::arch::exceptions::ExceptionFrame;
use crate::base::config::CPUS;
use crate::mm::frames::{self, ZoneId};
use crate::mm::kmap_setup::{self};
use crate::mm::shootdown::{self};
use crate::{arch::cpu, arch::double_fault, arch::gdt, arch::timer, println};

/// The slot of the process this CPU runs.
pub(super) fn current_slot() -> Option<usize> {
    let slot = CURRENT[gdt::cpu_index() % CPUS].load(Ordering::Relaxed);
    (slot < MAX_PROCESSES).then_some(slot)
}

/// Whether this CPU runs a process now.
pub fn running() -> bool {
    current_slot().is_some()
}

/// Switches from the running process to this CPU's scheduler; returns when
/// the scheduler runs the process again.
pub(super) fn switch_to_scheduler(slot: usize) {
    let cpu = gdt::cpu_index() % CPUS;
    // SAFETY: `slot` is this CPU's current process: only this CPU saves
    // into its context; the scheduler's context was saved when it switched
    // here.
    unsafe { switch_context(&raw mut CONTEXTS[slot], (&raw const SCHEDULERS[cpu]).read()) };
}

unsafe extern "C" {
    /// Saves the callee-saved registers and ESP into `*from`, loads `to`.
    fn switch_context(from: *mut u32, to: u32);
}

core::arch::global_asm!(
    r#"
    .section .text, "ax"
    .global switch_context
switch_context:
    mov eax, [esp + 4]
    mov edx, [esp + 8]
    push ebp
    push ebx
    push esi
    push edi
    mov [eax], esp
    mov esp, edx
    pop edi
    pop esi
    pop ebx
    pop ebp
    ret
    "#
);

/// Runs the processes pinned to this CPU until no process is left alive
/// on any CPU (one could still fork a child onto this one); zombies stay
/// for their parents (or [`reap_all`]). Called on
/// each CPU through `crate::smp::work::run_on_all`, with the local-APIC timer running.
pub fn run_until_done(cpu: usize) {
    crate::arch::fpu::init_cpu();
    let cr4 = crate::arch::guards::enable();
    timer::start();
    crate::smp::watchdog::set_describer(describe_cpu);
    crate::smp::watchdog::set_dumper(dump_table);
    loop {
        crate::smp::watchdog::check_deadline();
        let picked = cpu::without_interrupts(|| pick(cpu));
        match picked {
            Pick::Run(slot) => run_slot(cpu, slot),
            Pick::Idle => {
                // Halt until an interrupt (the timer, or a wake-up when a
                // child exits): `sti; hlt` cannot miss one.
                // SAFETY: ring 0; halts this CPU until an interrupt.
                unsafe { core::arch::asm!("sti", "hlt", "cli", options(nostack)) };
            }
            Pick::Done => break,
        }
    }
    timer::stop();
    crate::arch::guards::restore(cr4);
    // SAFETY: ring 0; `run_on_all` runs its work with interrupts on.
    unsafe { core::arch::asm!("sti", options(nostack)) };
}

/// One line for the watchdog's report: the process CPU `cpu` runs, and
/// every process in the table with its state (read without the lock: the
/// kernel is stopping, and the lock may be what it is stuck on).
fn describe_cpu(cpu: usize) {
    let current = CURRENT[cpu].load(Ordering::Relaxed);
    let next = NEXT_SCAN[cpu].load(Ordering::Relaxed);
    crate::println!(
        "watchdog: cpu {cpu} runs process slot {current} (>= {MAX_PROCESSES}: none), next scan at {next}"
    );
}

/// The process table, for the watchdog's report: every process with its
/// CPU and state (the lock is tried for a while; the others still run).
fn dump_table() {
    crate::println!(
        "watchdog: {} harvests of Accessed bits, the longest {}k cycles",
        super::working_set::HARVESTS.load(Ordering::Relaxed),
        super::working_set::WORST_KCYCLES.load(Ordering::Relaxed)
    );
    for _ in 0..10_000_000u32 {
        if let Some(table) = TABLE.try_lock() {
            for (slot, p) in table.slots.iter().enumerate() {
                if let Some(p) = p {
                    crate::println!(
                        "watchdog: process slot {slot}: pid {} parent {} on cpu {} {:?}, kernel stack {:#x}, space {}",
                        p.pid,
                        p.parent,
                        p.cpu,
                        p.state,
                        p.kstack,
                        p.space.is_some()
                    );
                    if p.kstack != 0 {
                        print_kernel_entry(slot, p.kstack);
                    }
                    let ws = p.working_set;
                    crate::println!(
                        "watchdog: process slot {slot}: working set {} young pages in its last window (peak {}, {} windows)",
                        ws.last,
                        ws.peak,
                        ws.windows
                    );
                }
            }
            return;
        }
        core::hint::spin_loop();
    }
    crate::println!("watchdog: the process table stayed locked");
}

/// For the watchdog's report: how process `slot` last entered the kernel
/// (the user frame at the top of its kernel stack `kstack`: vector, the
/// system call's registers, user EIP) and the return addresses on its
/// kernel stack from its saved context (stale while it runs).
fn print_kernel_entry(slot: usize, kstack: u32) {
    use crate::arch::exceptions::UserFrame;
    use crate::arch::fault_probe;
    use core::mem::offset_of;
    let top = kstack as usize + KSTACK_PAGES * 4096;
    let at = top - core::mem::size_of::<UserFrame>();
    let word = |offset: usize| {
        // SAFETY: a read through the fault probe: an unmapped address is
        // reported, not taken.
        fault_probe::preserving(|| unsafe { fault_probe::read_u32(at + offset) }).unwrap_or(0)
    };
    // SAFETY: CONTEXTS[slot] is written only by the CPU that runs `slot`;
    // this is a racy read for a report.
    let saved = unsafe { (&raw const CONTEXTS[slot]).read_volatile() };
    crate::println!(
        "watchdog: process slot {slot}: entered by vector {} (eax {:#x} ebx {:#x} ecx {:#x}) at user EIP {:#010x}; saved kernel stack:{}",
        word(offset_of!(UserFrame, frame) + offset_of!(ExceptionFrame, vector)),
        word(offset_of!(UserFrame, frame) + offset_of!(ExceptionFrame, eax)),
        word(offset_of!(UserFrame, frame) + offset_of!(ExceptionFrame, ebx)),
        word(offset_of!(UserFrame, frame) + offset_of!(ExceptionFrame, ecx)),
        word(offset_of!(UserFrame, frame) + offset_of!(ExceptionFrame, eip)),
        crate::smp::watchdog::return_addresses(saved)
    );
}

enum Pick {
    Run(usize),
    Idle,
    Done,
}

/// Where each CPU's next scan of the table starts: the slot after the one
/// it ran last (round robin).
static NEXT_SCAN: [AtomicUsize; CPUS] = [const { AtomicUsize::new(0) }; CPUS];
/// Each CPU's tick count when its running process was switched in
/// ([`timer_tick`] lets a turn last at least one whole tick period).
static TURN_START: [AtomicU32; CPUS] = [const { AtomicU32::new(0) }; CPUS];
/// Longest a ready process waited for its CPU, in that CPU's timer ticks.
static WORST_WAIT: [AtomicU32; CPUS] = [const { AtomicU32::new(0) }; CPUS];
/// Most other processes a ready process saw picked before its turn.
static WORST_PICKS: [AtomicU32; CPUS] = [const { AtomicU32::new(0) }; CPUS];
/// Most processes ready on the CPU at once (at a pick).
static MOST_READY: [AtomicU32; CPUS] = [const { AtomicU32::new(0) }; CPUS];

/// Clears the fairness figures of every CPU.
pub fn fairness_reset() {
    for cpu in 0..CPUS {
        WORST_WAIT[cpu].store(0, Ordering::Relaxed);
        WORST_PICKS[cpu].store(0, Ordering::Relaxed);
        MOST_READY[cpu].store(0, Ordering::Relaxed);
    }
}

/// CPU `cpu`'s fairness figures since [`fairness_reset`]: the worst wait
/// of a ready process in timer ticks and in other processes picked before
/// its turn, and the most processes ready at once.
pub fn fairness(cpu: usize) -> (u32, u32, u32) {
    (
        WORST_WAIT[cpu % CPUS].load(Ordering::Relaxed),
        WORST_PICKS[cpu % CPUS].load(Ordering::Relaxed),
        MOST_READY[cpu % CPUS].load(Ordering::Relaxed),
    )
}

/// The next process for this CPU, round robin from the slot after the
/// last one it ran (a process preempted goes behind every other ready
/// one: with n ready, each waits at most n - 1 time slices); idle while
/// any process anywhere may still fork one onto it; done when every
/// process has exited.
fn pick(cpu: usize) -> Pick {
    let mut table = TABLE.lock();
    let start = NEXT_SCAN[cpu].load(Ordering::Relaxed);
    let mut alive = false;
    let mut chosen = None;
    let mut ready = 0;
    for i in 0..MAX_PROCESSES {
        let slot = (start + i) % MAX_PROCESSES;
        let Some(p) = &table.slots[slot] else {
            continue;
        };
        match p.state {
            State::Ready if p.cpu == cpu => {
                ready += 1;
                chosen = chosen.or(Some(slot));
            }
            State::Ready | State::Waiting | State::Running => alive = true,
            State::Zombie => {}
        }
    }
    let Some(slot) = chosen else {
        return if alive { Pick::Idle } else { Pick::Done };
    };
    if let Some(p) = table.slots[slot].as_mut() {
        p.state = State::Running;
        let waited = timer::ticks(cpu).wrapping_sub(p.ready_tick);
        WORST_WAIT[cpu].fetch_max(waited, Ordering::Relaxed);
        let picks = PICKS[cpu].load(Ordering::Relaxed);
        WORST_PICKS[cpu].fetch_max(picks.wrapping_sub(p.ready_pick), Ordering::Relaxed);
        MOST_READY[cpu].fetch_max(ready, Ordering::Relaxed);
    }
    PICKS[cpu].fetch_add(1, Ordering::Relaxed);
    NEXT_SCAN[cpu].store(slot + 1, Ordering::Relaxed);
    Pick::Run(slot)
}

/// Runs process `slot` on this CPU until it yields, waits, exits or is
/// preempted.
fn run_slot(cpu: usize, slot: usize) {
    let (root, kstack, saved) = cpu::without_interrupts(|| {
        let mut table = TABLE.lock();
        let p = table.slots[slot].as_mut().expect("picked slot");
        let root = p.space.as_ref().map(Space::root);
        (root, p.kstack, p.saved_local.take())
    });
    let Some(root) = root else { return };
    cpu::without_interrupts(|| {
        double_fault::set_ring0_stack(cpu, kstack + (KSTACK_PAGES * 4096) as u32);
        // SAFETY: the process's directory, registered with the kernel
        // sync: its kernel half maps this code and stack.
        let _ = unsafe { shootdown::load_root(root) };
        if let (Some(saved), Some(local)) = (saved, kmap_setup::local()) {
            if local.restore(&saved).is_ok() {
                COUNTERS.local_restores.fetch_add(1, Ordering::Relaxed);
            }
        }
        CURRENT[cpu].store(slot, Ordering::Relaxed);
        TURN_START[cpu].store(timer::ticks(cpu), Ordering::Relaxed);
        crate::arch::fpu::switch_in(slot);
        // SAFETY: the process's context was saved by `switch_context` (or
        // prepared by `install`); this CPU's scheduler context is saved
        // here.
        unsafe { switch_context(&raw mut SCHEDULERS[cpu], (&raw const CONTEXTS[slot]).read()) };
        crate::arch::fpu::switch_out(slot);
        CURRENT[cpu].store(usize::MAX, Ordering::Relaxed);
        // The process left local kmaps behind: keep them with it.
        let saved = kmap_setup::local().and_then(|local| {
            if local.depth(cpu).unwrap_or(0) > 0 {
                local.save(cpu).ok()
            } else {
                None
            }
        });
        // SAFETY: the kernel's directory (the reference) maps everything
        // the scheduler uses.
        let _ = unsafe { shootdown::load_root(kernel_root()) };
        super::process::end_window(slot, cpu);
        let mut table = TABLE.lock();
        if let Some(p) = table.slots[slot].as_mut() {
            if !canary_intact(p.kstack) {
                println!();
                println!(
                    "KERNEL STACK OVERFLOW in pid {} (kernel stack {:#x})",
                    p.pid, p.kstack
                );
                crate::arch::io::exit_qemu(false);
            }
            p.saved_local = saved;
            if p.state == State::Zombie && p.kstack != 0 {
                // Off its stack now: free it, then the parent may reap.
                free_kernel_stack(p.kstack, &mut frames::lock());
                p.kstack = 0;
                let parent = p.parent;
                if p.orphan {
                    // Nobody will wait for it: the kernel reaps it now.
                    table.slots[slot] = None;
                    return;
                }
                let wake = table.slots.iter_mut().flatten().find_map(|q| {
                    (q.pid == parent && q.state == State::Waiting).then(|| {
                        q.state = State::Ready;
                        q.ready_tick = timer::ticks(q.cpu);
                        q.ready_pick = PICKS[q.cpu % CPUS].load(Ordering::Relaxed);
                        q.cpu
                    })
                });
                if let Some(target) = wake
                    && target != cpu
                {
                    crate::smp::work::wake(target);
                }
            }
        }
    });
}

pub(super) fn kernel_root() -> PhysAddr {
    crate::mm::kernel_sync::get().map_or(PhysAddr::new_truncate(0), |s| s.reference())
}

/// What one finished process left.
#[derive(Clone, Copy, Debug)]
pub struct Outcome {
    /// Its PID.
    pub pid: u32,
    /// The program.
    pub program: &'static str,
    /// The exit code ([`KILLED`] if killed).
    pub exit_code: u32,
    /// Why it was killed.
    pub kill_reason: Option<&'static str>,
    /// The faulting address if killed by a fault.
    pub kill_address: u32,
    /// Its page-table frames.
    pub tables: TableFrames,
    /// Where its user PTE tables came from.
    pub pte_zone: Zone,
    /// The CPU it ran on.
    pub cpu: usize,
    /// Console bytes dropped over its budget.
    pub console_dropped: u32,
    /// The exception that killed it (not a page fault).
    pub kill_vector: Option<u32>,
    /// Its last system-call error.
    pub last_error: u32,
    /// Its working-set estimate ([`super::working_set`]).
    pub working_set: super::working_set::WorkingSet,
}

/// Removes every zombie whose parent is the kernel (or gone), calling `f`
/// with each; returns how many processes are left.
pub fn reap_all(mut f: impl FnMut(Outcome)) -> usize {
    let mut left = 0;
    with_table(|table| {
        for slot in table.slots.iter_mut() {
            let Some(p) = slot else { continue };
            if p.state == State::Zombie && p.parent == 0 && p.kstack == 0 {
                f(outcome(p));
                *slot = None;
            } else {
                left += 1;
            }
        }
    });
    left
}

fn outcome(p: &Process) -> Outcome {
    Outcome {
        pid: p.pid,
        program: p.program,
        exit_code: p.exit_code,
        kill_reason: p.kill_reason,
        kill_address: p.kill_address,
        tables: p.tables,
        pte_zone: p.pte_zone,
        cpu: p.cpu,
        console_dropped: p.console_dropped,
        kill_vector: p.kill_vector,
        last_error: p.last_error,
        working_set: p.working_set,
    }
}

/// Runs every process to its end on every CPU.
pub fn run_all() {
    crate::smp::work::run_on_all(|cpu, _| run_until_done(cpu), 0);
}

/// Called for [`crate::arch::timer::TIMER_VECTOR`], interrupts off: end of
/// interrupt and the tick count first ([`timer::tick`]), then maybe a
/// switch to another process ([`timer_tick`]).
pub fn timer_interrupt(frame: &ExceptionFrame) {
    timer::tick();
    timer_tick(frame);
}

/// Called by the timer interrupt (interrupts off): preempts the running
/// process if it was in ring 3, or in kernel code that allowed it.
pub fn timer_tick(frame: &ExceptionFrame) {
    let Some(slot) = current_slot() else { return };
    if !frame.user_mode() && !PREEMPTIBLE[slot].load(Ordering::SeqCst) {
        return;
    }
    // A turn lasts at least one whole tick period: the tick that was
    // pending at the switch-in, or that came soon after it, does not end
    // it. Without this, a CPU whose switches took a tick (four Bochs CPUs
    // harvesting Accessed bits under one lock) preempted every process
    // before its first instruction, and nothing ran again.
    let cpu = gdt::cpu_index() % CPUS;
    if timer::ticks(cpu).wrapping_sub(TURN_START[cpu].load(Ordering::Relaxed)) < 2 {
        return;
    }
    PREEMPTIONS[slot].fetch_add(1, Ordering::Relaxed);
    COUNTERS.preemptions.fetch_add(1, Ordering::Relaxed);
    yield_now(slot);
}

/// Lowmem and highmem frames free now.
pub fn free_frames() -> (u64, u64) {
    let frames = frames::lock();
    (
        frames.free_frames(ZoneId::Low),
        frames.free_frames(ZoneId::High),
    )
}

/// Process `slot` gives up its CPU: ready again, it goes back to the
/// scheduler (the `yield` system call, and preemption).
pub(super) fn yield_now(slot: usize) {
    with_table(|t| {
        if let Some(p) = t.slots[slot].as_mut() {
            p.state = State::Ready;
            p.ready_tick = timer::ticks(p.cpu);
            p.ready_pick = PICKS[p.cpu % CPUS].load(Ordering::Relaxed);
        }
    });
    switch_to_scheduler(slot);
}
