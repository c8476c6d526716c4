//! Local kmaps on every CPU at once: they send no IPI, and interrupt
//! handlers map with `NoWait` while the interrupted code holds its own.

use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

use kmap::KmapTask;
use paging_core::PhysFrame;

use super::memory_access::{give_back, pattern, read_word, test_pages, write_word};
use crate::base::config::CPUS;
use crate::mm::kernel::Kernel;
use crate::mm::shootdown::SHOOTDOWN;
use crate::selftests::harness::TestResult;
use crate::{ensure, failure, println, smp};

/// Local kmaps per CPU in the first phase, and call IPIs per CPU in the
/// second.
const LOCAL_OPS: u32 = 256;
const INTERRUPT_MAPS: u32 = 64;

/// Shared by the local and interrupt phases.
struct Contexts<'a> {
    pages: &'a [PhysFrame; 64],
    cpus: usize,
    arrived: AtomicUsize,
    bad: AtomicU32,
    done: [AtomicU32; CPUS],
    persistent: AtomicU32,
    local: AtomicU32,
}

/// What the call IPI's handler reads (set before the IPIs are sent).
static CONTEXTS: AtomicUsize = AtomicUsize::new(0);

pub fn smp_local_kmaps_send_no_ipi_and_interrupts_map_nowait(_: &Kernel) -> TestResult {
    let pool = crate::mm::kmap_setup::pool().ok_or_else(|| failure!("no kmap pool"))?;
    let (pages, _) = test_pages::<64>()?;
    let result = (|| {
        // SAFETY: a token for this filling task.
        let mut task = unsafe { KmapTask::new() };
        for page in &pages {
            let k = pool.map(&mut task, *page).map_err(|e| failure!("{e}"))?;
            // SAFETY: the mapping maps a test frame.
            unsafe { write_word(k.va().as_u32() as usize, pattern(page.number())) };
        }
        let ctx = Contexts {
            pages: &pages,
            cpus: smp::online_count(),
            arrived: AtomicUsize::new(0),
            bad: AtomicU32::new(0),
            done: [const { AtomicU32::new(0) }; CPUS],
            persistent: AtomicU32::new(0),
            local: AtomicU32::new(0),
        };
        let before = SHOOTDOWN.stats();
        crate::smp::work::run_on_all(local_worker, &ctx as *const Contexts<'_> as usize);
        let ipis = SHOOTDOWN.stats().ipis_sent - before.ipis_sent;
        ensure!(
            ctx.bad.load(Ordering::SeqCst) == 0,
            "local kmaps read wrong words"
        );
        ensure!(
            ipis == 0,
            "{} local kmaps on {} CPUs sent {ipis} IPIs",
            LOCAL_OPS as usize * ctx.cpus,
            ctx.cpus
        );
        CONTEXTS.store(&ctx as *const Contexts<'_> as usize, Ordering::SeqCst);
        crate::smp::work::run_on_all(interrupt_worker, &ctx as *const Contexts<'_> as usize);
        CONTEXTS.store(0, Ordering::SeqCst);
        let handled: u32 = ctx.done.iter().map(|d| d.load(Ordering::SeqCst)).sum();
        ensure!(
            handled == INTERRUPT_MAPS * ctx.cpus as u32 && ctx.bad.load(Ordering::SeqCst) == 0,
            "{handled} interrupt kmaps done of {}, {} wrong",
            INTERRUPT_MAPS * ctx.cpus as u32,
            ctx.bad.load(Ordering::SeqCst)
        );
        println!(
            "    {} local kmaps on {} CPUs: 0 IPIs; {} map_nowait calls in interrupt handlers on every CPU: {} got a pool slot, {} fell back to a local slot, every word right",
            LOCAL_OPS as usize * ctx.cpus,
            ctx.cpus,
            handled,
            ctx.persistent.load(Ordering::SeqCst),
            ctx.local.load(Ordering::SeqCst)
        );
        Ok(())
    })();
    give_back(&pages);
    result
}

fn local_worker(cpu: usize, arg: usize) {
    // SAFETY: the `Contexts` on the boot CPU's stack, alive until
    // `run_on_all` returns.
    let ctx = unsafe { &*(arg as *const Contexts<'_>) };
    let Some(local) = crate::mm::kmap_setup::local() else {
        ctx.bad.fetch_add(1, Ordering::SeqCst);
        return;
    };
    ctx.arrived.fetch_add(1, Ordering::SeqCst);
    while ctx.arrived.load(Ordering::SeqCst) < ctx.cpus {
        core::hint::spin_loop();
    }
    for i in 0..LOCAL_OPS {
        let page = ctx.pages[(i as usize * 7 + cpu * 13) % 64];
        // Interrupts off while the local slot is held: the task stays on
        // this CPU and nothing else uses its stack of slots.
        let ok = crate::arch::cpu::without_interrupts(|| match local.map(cpu, page) {
            Ok(k) => {
                // SAFETY: the slot maps a test frame.
                let word = unsafe { read_word(k.va().as_u32() as usize) };
                word == pattern(page.number())
            }
            Err(_) => false,
        });
        if !ok {
            ctx.bad.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// Runs in the call IPI's handler: one `map_nowait` of a page, checked.
fn map_in_interrupt(cpu: usize) {
    let arg = CONTEXTS.load(Ordering::SeqCst);
    if arg == 0 {
        return;
    }
    // SAFETY: set by the test to its `Contexts` for the duration of the
    // interrupt phase.
    let ctx = unsafe { &*(arg as *const Contexts<'_>) };
    let (Some(pool), Some(local)) = (
        crate::mm::kmap_setup::pool(),
        crate::mm::kmap_setup::local(),
    ) else {
        ctx.bad.fetch_add(1, Ordering::SeqCst);
        return;
    };
    let n = ctx.done[cpu].load(Ordering::SeqCst);
    let page = ctx.pages[(n as usize * 5 + cpu * 11) % 64];
    // SAFETY: an interrupt handler is a context of its own; this token
    // lives only for this handler, which never waits.
    let task = unsafe { KmapTask::new() };
    match pool.map_nowait(&task, local, cpu, page) {
        Ok(k) => {
            // SAFETY: the mapping maps a test frame.
            if unsafe { read_word(k.va().as_u32() as usize) } != pattern(page.number()) {
                ctx.bad.fetch_add(1, Ordering::SeqCst);
            }
            match k {
                kmap::NowaitKmap::Persistent(_) => ctx.persistent.fetch_add(1, Ordering::SeqCst),
                kmap::NowaitKmap::Local(_) => ctx.local.fetch_add(1, Ordering::SeqCst),
            };
        }
        Err(_) => {
            ctx.bad.fetch_add(1, Ordering::SeqCst);
        }
    }
    ctx.done[cpu].fetch_add(1, Ordering::SeqCst);
}

fn interrupt_worker(cpu: usize, arg: usize) {
    // SAFETY: as in `local_worker`.
    let ctx = unsafe { &*(arg as *const Contexts<'_>) };
    crate::smp::work::set_interrupt_work(Some(map_in_interrupt));
    for n in 0..INTERRUPT_MAPS {
        if crate::smp::work::call_self().is_err() {
            ctx.bad.fetch_add(1, Ordering::SeqCst);
            break;
        }
        let mut spins = 0u32;
        while ctx.done[cpu].load(Ordering::SeqCst) <= n && spins < 100_000_000 {
            core::hint::spin_loop();
            spins += 1;
        }
    }
    crate::smp::work::set_interrupt_work(None);
}
