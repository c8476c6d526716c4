//! Work across CPUs: functions posted to the APs' idle loops
//! ([`run_on_all`], [`run_on_others`]), wake-ups, and the call IPI that
//! runs a function in interrupt context.

use core::sync::atomic::{AtomicUsize, Ordering};

use super::{CALL_VECTOR, KNOWN, SHOOTDOWN_VECTOR, SLOTS, WAKE_VECTOR, apic_id, is_online};
use crate::arch::apic::{self};
use crate::base::config::CPUS;
use crate::base::error::Error;
use crate::{arch::cpu, arch::gdt, failure};

/// Per CPU: a `fn(usize)` (as `usize`, 0 for none) the call IPI runs.
static INTERRUPT_WORK: [AtomicUsize; CPUS] = [const { AtomicUsize::new(0) }; CPUS];

/// Sets what the call IPI runs on this CPU (`None`: nothing).
pub fn set_interrupt_work(f: Option<fn(usize)>) {
    INTERRUPT_WORK[gdt::cpu_index() % CPUS].store(f.map_or(0, |f| f as usize), Ordering::SeqCst);
}

/// Sends the call IPI to this CPU (it runs once interrupts are on).
/// Without a local APIC: `int` through the same gate, so the handler runs
/// at once, in interrupt context all the same (an interrupt gate clears
/// IF).
pub fn call_self() -> Result<(), Error> {
    if !cpu::features().apic {
        // SAFETY: ring 0; the call vector's gate is an interrupt gate of
        // the kernel, its handler returns with `iretd`.
        unsafe { core::arch::asm!("int {v}", v = const CALL_VECTOR) };
        return Ok(());
    }
    let apic = apic::get().ok_or_else(|| failure!("no local APIC"))?;
    let id = apic.id();
    apic.send_fixed(id, CALL_VECTOR)
        .map_err(|()| failure!("the APIC refused the call IPI"))
}

/// Posts `f(cpu, arg)` to AP `cpu` and wakes it.
fn post(cpu: usize, f: fn(usize, usize), arg: usize) {
    let slot = &SLOTS[cpu];
    slot.work.store(f as usize, Ordering::Release);
    slot.arg.store(arg, Ordering::Release);
    slot.posted.fetch_add(1, Ordering::AcqRel);
    if let Some(apic) = apic::get() {
        let _ = apic.send_fixed(slot.apic_id.load(Ordering::Relaxed), WAKE_VECTOR);
    }
}

/// Wakes CPU `cpu` from `hlt` (its scheduler has something to run).
pub fn wake(cpu: usize) {
    if let (Some(apic), Some(id)) = (apic::get(), apic_id(cpu)) {
        let _ = apic.send_fixed(id, WAKE_VECTOR);
    }
}

/// Whether AP `cpu` finished its last posted work.
fn finished(cpu: usize) -> bool {
    let slot = &SLOTS[cpu];
    slot.finished.load(Ordering::Acquire) == slot.posted.load(Ordering::Acquire)
}

/// Runs `f(cpu, arg)` on every online CPU at once (the boot CPU included,
/// last to start) and returns when all have finished. Interrupts are on
/// during `f` on every CPU, so shootdowns are answered. Called on the boot
/// CPU.
pub fn run_on_all(f: fn(usize, usize), arg: usize) {
    let cpus = KNOWN.load(Ordering::Acquire);
    for cpu in 1..cpus {
        if is_online(cpu) {
            post(cpu, f, arg);
        }
    }
    let flags = cpu::save_and_disable_interrupts();
    // SAFETY: ring 0; this CPU answers IPIs while it runs its share.
    unsafe { core::arch::asm!("sti", options(nostack)) };
    f(0, arg);
    wait_for_posted_work(cpus);
    // SAFETY: ring 0.
    unsafe { core::arch::asm!("cli", options(nostack)) };
    cpu::restore_interrupts(flags);
}

/// Waits until every online AP below `cpus` finished its posted work (a
/// spin the watchdog watches).
fn wait_for_posted_work(cpus: usize) {
    while !(1..cpus).all(|cpu| !is_online(cpu) || finished(cpu)) {
        crate::base::spin::spin("work posted to other CPUs", &raw const SLOTS as usize);
        core::hint::spin_loop();
    }
    crate::base::spin::done();
}

/// Runs `f(cpu, arg)` on every online CPU but this one (the boot CPU) and
/// returns when all have finished. Interrupts stay as they are here.
pub fn run_on_others(f: fn(usize, usize), arg: usize) {
    let cpus = KNOWN.load(Ordering::Acquire);
    for cpu in 1..cpus {
        if is_online(cpu) {
            post(cpu, f, arg);
        }
    }
    wait_for_posted_work(cpus);
}

/// Called by the dispatcher for every vector above the exceptions.
pub fn interrupt(vector: u32) {
    match vector {
        // The wake-up IPI: the idle loop re-checks its work.
        v if v == u32::from(WAKE_VECTOR) => eoi(),
        v if v == u32::from(CALL_VECTOR) => {
            let cpu = gdt::cpu_index() % CPUS;
            let work = INTERRUPT_WORK[cpu].load(Ordering::SeqCst);
            if work != 0 {
                // SAFETY: stored from a `fn(usize)` by `set_interrupt_work`.
                let f: fn(usize) = unsafe { core::mem::transmute(work) };
                f(cpu);
            }
            eoi();
        }
        v if v == u32::from(SHOOTDOWN_VECTOR) => {
            crate::mm::shootdown::interrupt();
            eoi();
        }
        // Spurious (APIC 0xFF, PIC 7 and 15): no EOI.
        _ => {}
    }
}

fn eoi() {
    if let Some(apic) = apic::get() {
        apic.eoi();
    }
}
