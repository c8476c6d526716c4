//! Two callers racing for one fixmap slot (issue 19, item 4): exactly one
//! wins, the other gets a typed error, and a PAE entry is never made of one
//! caller's high half and the other's low half.
//!
//! The first test schedules the race deterministically on the host model:
//! the store observer stops the first `set` right after it wrote the high
//! half of the entry and lets a second `set` of the same slot run to the
//! end. Before slots were claimed with a compare-and-swap, both returned
//! `Ok` and the simulated MMU translated the slot to a third frame, B's
//! high half with A's low half. The other tests run real threads over
//! `PtrTable` (host buffers through `OffsetAccess`), for Miri's race
//! detector (`cargo xtask miri`).
#![cfg(test)]

mod support;

use std::sync::Barrier;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;

use fixmap::{Fixmap, FixmapError, WindowBuilder, fixmap_layout};
use paging_core::{OffsetAccess, PagingMode, PhysFrame};
use paging_sim::{Access, Machine, ObservedStore, SimAccess, SimRam, StoreOp};
use paging_x86_2level::TwoLevel;
use paging_x86_pae::Pae;
use support::{frame, pa, va};

fixmap_layout! {
    /// One slot is enough.
    pub struct Race {
        top: 0xFFFF_F000;
        /// The contested slot.
        SLOT;
    }
}

/// A: a frame above 4 GiB; B: another one, with another high half.
const A: u64 = 0x1_0000_5000;
const B: u64 = 0x2_0000_7000;

/// Stops the first store of A's high half until the other `set` is done.
struct Schedule {
    armed: AtomicBool,
    go: Barrier,
    done: Barrier,
}

#[test]
fn pae_set_interrupted_by_another_set_of_the_same_slot() {
    let ram = SimRam::new();
    let schedule = Schedule {
        armed: AtomicBool::new(true),
        go: Barrier::new(2),
        done: Barrier::new(2),
    };
    let observer = |s: ObservedStore| {
        if s.op == StoreOp::Store32
            && s.index % 2 == 1
            && s.new == A >> 32
            && schedule.armed.swap(false, Ordering::SeqCst)
        {
            schedule.go.wait();
            schedule.done.wait();
        }
    };
    let mut m = Machine::<Pae>::new(&ram);
    let (w, _) = WindowBuilder::new(va(0xFFC0_0000), 1 << 32)
        .unwrap()
        .build(&mut m.mapper, &m.mmu, &mut m.alloc)
        .unwrap();
    let mut fix = Fixmap::<Race, Pae, _>::new(SimAccess::observed(&ram, &observer));
    fix.attach(w).unwrap();
    let (first, second, missed) = thread::scope(|s| {
        let second = s.spawn(|| {
            schedule.go.wait();
            let r = fix.set_cached(Race::SLOT, frame(B), &m.mmu);
            schedule.done.wait();
            r
        });
        let first = fix.set_cached(Race::SLOT, frame(A), &m.mmu);
        // A set that never made the store the observer waits for would
        // leave the other thread at `go` for ever: let it run, so that the
        // test fails below instead of hanging.
        let missed = schedule.armed.swap(false, Ordering::SeqCst);
        if missed {
            schedule.go.wait();
            schedule.done.wait();
        }
        (first, second.join().unwrap(), missed)
    });
    assert!(!missed, "the race was run");
    assert_eq!(first, Ok(()));
    assert_eq!(
        second,
        Err(FixmapError::SlotBusy {
            index: Race::SLOT.index()
        })
    );
    // What the MMU sees: A's frame, not B's high half over A's low half.
    let t = m.mmu.translate(Race::SLOT.virt(), Access::WRITE).unwrap();
    assert_eq!(t.pa, pa(A));
    assert_eq!(fix.clear(Race::SLOT, &m.mmu), Ok(frame(A)));
    assert!(m.mmu.translate(Race::SLOT.virt(), Access::READ).is_err());
}

/// Where the static tables go in the host buffer.
const TABLES: u64 = 0x8_0000;

/// Simulated physical memory `[0, TABLES + 2 tables)` as one host buffer.
struct HostPhys(Box<[u64]>);

impl HostPhys {
    fn new() -> Self {
        Self(vec![0u64; (TABLES as usize + 2 * 4096) / 8].into_boxed_slice())
    }

    fn access(&mut self) -> OffsetAccess {
        // SAFETY: every frame below the limit is inside the buffer, which
        // outlives the access (the tests drop the fixmap first) and is only
        // reached through it (atomically).
        unsafe { OffsetAccess::new(self.0.as_mut_ptr() as usize, self.0.len() as u64 * 8) }
    }
}

/// A fixmap for `Race` whose PTE table is the host buffer's frame at
/// `TABLES`. The window is built on the model (for its geometry) with the
/// same frame numbers; only the host buffer is written afterwards.
fn fixmap_over_host<M: PagingMode>(phys: &mut HostPhys) -> Fixmap<Race, M, OffsetAccess> {
    let ram = SimRam::new();
    let mut m = Machine::<M>::new(&ram);
    let builder = WindowBuilder::new(va(0xFFC0_0000), 1 << 32).unwrap();
    let count = builder.geometry::<M>().1;
    let (w, _) = builder
        .build_static_isolated(&mut m.mapper, frame(TABLES), count, &m.mmu, &mut m.alloc)
        .unwrap();
    let mut fix = Fixmap::new(phys.access());
    fix.attach(w).unwrap();
    fix
}

/// Two threads set one slot, then two threads clear it.
fn two_threads_one_slot<M: PagingMode>() {
    let mut phys = HostPhys::new();
    let fix = fixmap_over_host::<M>(&mut phys);
    let ram = SimRam::new();
    let mmu = Machine::<M>::new(&ram).mmu;
    let frames = [frame(0x5000), frame(0x7000)];
    let set: Vec<_> = thread::scope(|s| {
        let handles: Vec<_> = frames
            .iter()
            .map(|&f| {
                let (fix, mmu) = (&fix, &mmu);
                s.spawn(move || fix.set_cached(Race::SLOT, f, mmu))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let winner = match set[..] {
        [Ok(()), Err(_)] => frames[0],
        [Err(_), Ok(())] => frames[1],
        _ => panic!("exactly one set must win: {set:?}"),
    };
    let loser = set.iter().find_map(|r| r.err()).unwrap();
    assert!(
        matches!(
            loser,
            FixmapError::SlotInUse { current, .. } if current == winner
        ) || loser
            == FixmapError::SlotBusy {
                index: Race::SLOT.index()
            },
        "{loser:?}"
    );
    assert_eq!(fix.get(Race::SLOT).unwrap().map(|(f, _)| f), Some(winner));
    let cleared: Vec<Result<PhysFrame, FixmapError>> = thread::scope(|s| {
        let handles: Vec<_> = (0..2)
            .map(|_| s.spawn(|| fix.clear(Race::SLOT, &mmu)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(cleared.iter().filter(|r| **r == Ok(winner)).count(), 1);
    assert!(cleared.iter().any(|r| matches!(
        r,
        Err(FixmapError::NotSet { .. } | FixmapError::SlotBusy { .. })
    )));
    assert_eq!(fix.get(Race::SLOT), Ok(None));
    // `phys` outlives `fix` (and its access): declared first, dropped last.
}

#[test]
fn two_threads_one_slot_two_level() {
    two_threads_one_slot::<TwoLevel>();
}

#[test]
fn two_threads_one_slot_pae() {
    two_threads_one_slot::<Pae>();
}
