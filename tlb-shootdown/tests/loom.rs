//! Model check of the shootdown protocol with `loom`: every interleaving (up
//! to the preemption bound) of a few simulated CPUs initiating and
//! servicing shootdowns.
//!
//! Run with `cargo xtask loom`, or by hand:
//! `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 cargo test -p tlb-shootdown --features loom --test loom --release`.
//!
//! Under `--cfg loom` the mailbox locks and the protocol's atomics are
//! loom's (`src/sync.rs`). Each CPU is a loom thread; its TLB is one model
//! entry per page (`OLD`, or empty after a flush), the page table one word
//! per page. Both are *relaxed* atomics, so the only happens-before edges
//! between an initiator's clear and a target's flush are the protocol's
//! own: a missing release/acquire shows up as an initiator reading its
//! target's stale entry after `flush` returned. "The IPI" is a per-CPU
//! pending bit that `send` sets and rings a doorbell; a CPU taking
//! interrupts sleeps on the doorbell (a loom condition variable, so idle
//! CPUs add no spinning to the state space) and services when its bit is
//! set. An initiator never looks at its bit while it flushes (interrupts
//! masked), so it is answered only through the wait loop's servicing.
//! Each execution checks that
//! - after `flush` returns, no target's TLB holds the entry the initiator
//!   cleared before calling it;
//! - it terminates (loom fails a deadlock, and a CPU spinning forever for
//!   an acknowledgement, as a livelock);
//! - generation skipping never skips a CPU whose full flush began before
//!   the mark (that CPU reloads the stale entry between its flush and its
//!   record, so skipping it would leave the entry).
#![cfg(loom)]

use std::cell::Cell;

use loom::sync::atomic::{AtomicU32, Ordering};
use loom::sync::{Arc, Condvar, Mutex};
use loom::thread;
use paging_core::{Flush, TlbOps, VirtAddr};
use tlb_shootdown::{CpuSet, IpiPlatform, Shootdown, Targets};

/// The most CPUs a scenario uses.
const CPUS: usize = 3;
/// Pages the model tracks: one per initiator.
const PAGES: usize = 3;
/// Where page 0 is.
const BASE: u32 = 0xC000_0000;
/// The translation before the change.
const OLD: u32 = 1;
/// The page-table word after the change (and a TLB entry refilled from it).
const NEW: u32 = 2;
/// An empty TLB entry.
const EMPTY: u32 = 0;

loom::thread_local! {
    static CPU: Cell<usize> = Cell::new(0);
}

/// The interrupt controller: pending bits, how many initiators have
/// finished and an event count, behind one lock, with a doorbell.
///
/// An initiator's wait does not spin: [`relax`](IpiPlatform::relax) sleeps
/// until an event (an interrupt sent, an acknowledgement) happened since
/// the thread's previous `relax`. Two spinning waiters would otherwise let
/// loom alternate between them forever (an unfair but legal schedule),
/// and a waiter that can never proceed now shows as a loom deadlock.
struct Ipi {
    state: Mutex<Doorbell>,
    doorbell: Condvar,
}

#[derive(Default)]
struct Doorbell {
    pending: CpuSet,
    finished: usize,
    events: u64,
}

loom::thread_local! {
    /// The event count the thread's previous `relax` returned at.
    static SEEN: Cell<u64> = Cell::new(u64::MAX);
}

impl Ipi {
    fn ring(&self, f: impl FnOnce(&mut Doorbell)) {
        let mut state = self.state.lock().unwrap();
        f(&mut state);
        state.events += 1;
        self.doorbell.notify_all();
    }
}

impl IpiPlatform for Ipi {
    fn current_cpu(&self) -> usize {
        CPU.with(Cell::get)
    }
    fn send(&self, targets: CpuSet) {
        self.ring(|s| s.pending = s.pending.union(targets));
    }
    fn relax(&self) {
        let mut state = self.state.lock().unwrap();
        while state.events == SEEN.with(Cell::get) {
            state = self.doorbell.wait(state).unwrap();
        }
        SEEN.with(|s| s.set(state.events));
    }
    fn acked(&self) {
        self.ring(|_| {});
    }
}

struct World {
    sd: Shootdown<Ipi, CPUS>,
    /// `tlb[cpu][page]`.
    tlb: [[AtomicU32; PAGES]; CPUS],
    /// The page-table word of each page.
    pte: [AtomicU32; PAGES],
}

impl World {
    /// An initiator has finished (and checked).
    fn finished(&self) {
        self.sd.platform().ring(|s| s.finished += 1);
    }
}

/// One CPU's model TLB.
struct Tlb<'a>(&'a World, usize);

impl TlbOps for Tlb<'_> {
    fn flush_page(&self, va: VirtAddr) {
        let page = ((va.as_u32() - BASE) / 0x1000) as usize;
        self.0.tlb[self.1][page].store(EMPTY, Ordering::Relaxed);
    }
    fn flush_all(&self) {
        self.flush_everything();
    }
    fn flush_everything(&self) {
        for entry in &self.0.tlb[self.1] {
            entry.store(EMPTY, Ordering::Relaxed);
        }
    }
}

fn va(page: usize) -> VirtAddr {
    VirtAddr::new(BASE + page as u32 * 0x1000)
}

/// `online` CPUs, each holding `OLD` for every page.
fn world(online: usize) -> Arc<World> {
    let w = Arc::new(World {
        sd: Shootdown::new(Ipi {
            state: Mutex::new(Doorbell::default()),
            doorbell: Condvar::new(),
        }),
        tlb: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU32::new(OLD))),
        pte: std::array::from_fn(|_| AtomicU32::new(OLD)),
    });
    for cpu in 0..online {
        w.sd.set_online(cpu, &Tlb(&w, cpu)).unwrap();
        for entry in &w.tlb[cpu] {
            entry.store(OLD, Ordering::Relaxed);
        }
    }
    w
}

/// On CPU `me` (interrupts masked): clear `page`'s entry, shoot it down on
/// `targets`, and check that none of them still holds it.
fn initiate(w: &World, me: usize, page: usize, targets: CpuSet) {
    w.pte[page].store(NEW, Ordering::Relaxed);
    let t = if targets == w.sd.online() {
        Targets::AllCpus
    } else {
        Targets::Cpus(targets)
    };
    w.sd.flush(Flush::page(va(page)), t, &Tlb(w, me)).unwrap();
    for cpu in targets {
        assert_ne!(
            w.tlb[cpu][page].load(Ordering::Relaxed),
            OLD,
            "CPU {cpu} still holds page {page} after CPU {me}'s flush returned"
        );
    }
    w.finished();
}

/// On CPU `me` with interrupts on: sleep until the interrupt is pending,
/// service, repeat, until `initiators` flushes have finished.
fn take_interrupts(w: &World, me: usize, initiators: usize) {
    let ipi = w.sd.platform();
    let mut state = ipi.state.lock().unwrap();
    loop {
        if state.pending.remove(me) {
            drop(state);
            w.sd.service(&Tlb(w, me));
            state = ipi.state.lock().unwrap();
        } else if state.finished >= initiators {
            return;
        } else {
            state = ipi.doorbell.wait(state).unwrap();
        }
    }
}

/// Spawn CPU `me` running `f`.
fn cpu(
    w: &Arc<World>,
    me: usize,
    f: impl FnOnce(&World) + Send + 'static,
) -> thread::JoinHandle<()> {
    let w = w.clone();
    thread::spawn(move || {
        CPU.with(|c| c.set(me));
        f(&w);
    })
}

/// `loom::model` with room for the initiators' wait loops: each round of
/// a wait is a few atomic loads, each a branch of the execution path
/// (loom's default allows 1,000). The preemption bound comes from
/// `LOOM_MAX_PREEMPTIONS`, as usual.
fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.max_branches = 20_000;
    builder.check(f);
}

#[test]
fn two_cpus_initiate_at_once() {
    model(|| {
        let w = world(2);
        let all = CpuSet::first(2);
        let one = cpu(&w, 1, move |w| {
            initiate(w, 1, 1, all);
            take_interrupts(w, 1, 2);
        });
        CPU.with(|c| c.set(0));
        initiate(&w, 0, 0, all);
        take_interrupts(&w, 0, 2);
        one.join().unwrap();
    });
}

#[test]
fn three_cpus_initiate_at_once() {
    model(|| {
        let w = world(3);
        let all = CpuSet::first(3);
        let others: Vec<_> = (1..3)
            .map(|me| {
                cpu(&w, me, move |w| {
                    initiate(w, me, me, all);
                    take_interrupts(w, me, 3);
                })
            })
            .collect();
        CPU.with(|c| c.set(0));
        initiate(&w, 0, 0, all);
        take_interrupts(&w, 0, 3);
        for t in others {
            t.join().unwrap();
        }
    });
}

#[test]
fn a_flush_requested_while_another_is_in_flight() {
    // CPUs 0 and 1 both shoot at CPU 2, which takes interrupts: the second
    // request may land while CPU 2 performs the first (after it took its
    // mailbox), or be merged into it, or find its interrupt pending.
    model(|| {
        let w = world(3);
        let target = CpuSet::single(2);
        let one = cpu(&w, 1, move |w| {
            initiate(w, 1, 1, target);
            take_interrupts(w, 1, 2);
        });
        let two = cpu(&w, 2, |w| take_interrupts(w, 2, 2));
        CPU.with(|c| c.set(0));
        initiate(&w, 0, 0, target);
        take_interrupts(&w, 0, 2);
        one.join().unwrap();
        two.join().unwrap();
    });
}

#[test]
fn generations_never_skip_a_flush_that_began_before_the_mark() {
    // CPU 1 flushes its whole TLB at any point, then uses the page again
    // (a refill from the page table), and records the flush. Whether its
    // flush began before CPU 0's clear and mark (then the refill may bring
    // the old entry back, and CPU 1 must be interrupted) or after (then it
    // may be skipped), CPU 1 does not hold the old entry once CPU 0's
    // `flush_since` returns.
    model(|| {
        let w = world(2);
        let one = cpu(&w, 1, |w| {
            let start = w.sd.begin_full_flush();
            Tlb(w, 1).flush_everything();
            let refill = w.pte[0].load(Ordering::Relaxed);
            w.tlb[1][0].store(refill, Ordering::Relaxed);
            w.sd.record_full_flush(start);
            take_interrupts(w, 1, 1);
        });
        CPU.with(|c| c.set(0));
        w.pte[0].store(NEW, Ordering::Relaxed);
        let since = w.sd.mark();
        let report =
            w.sd.flush_since(Flush::page(va(0)), since, Targets::AllCpus, &Tlb(&w, 0))
                .unwrap();
        assert_ne!(
            w.tlb[1][0].load(Ordering::Relaxed),
            OLD,
            "CPU 1 kept the old entry; skipped: {:?}",
            report.skipped
        );
        w.finished();
        take_interrupts(&w, 0, 1);
        one.join().unwrap();
    });
}
