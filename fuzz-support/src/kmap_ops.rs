//! kmap operation sequences on a simulated kernel, both modes, every flush
//! policy.
//!
//! The first bytes pick the mode, the flush policy, guard slots and forced
//! mapping of lowmem; each following group is one operation on a four-slot
//! persistent pool or on two CPUs' local stacks: `try_map`, `map`, a
//! reservation with nested maps, `map_nowait`, guard drops in any order,
//! raw mappings and `kunmap_raw` (including double and wild unmaps), local
//! maps, `try_unmap` and out-of-order drops, `save` and `restore`.
//!
//! The harness keeps a model (users per page, each CPU's stack) and never
//! asks the pool to wait when the model says it would have to: its wait hook
//! panics, so a pool that waits with capacity free is caught. After every
//! operation:
//! - its result is the one the model predicts (typed error or success);
//! - a refused operation changed no PTE of the window and no count;
//! - slots in use equal pages with users; each such page has exactly one
//!   slot, whose count is its users plus one, and no slot serves two pages;
//! - every live mapping (persistent, raw, direct, local) reads its own
//!   page through the simulated MMU and TLB;
//! - each CPU's stack depth is the model's.
//!
//! At the end everything is unmapped and the whole pool must be free again.

use std::collections::BTreeMap;

use kmap::{
    AccessedBit, FlushPolicy, GlobalFlush, Kmap, KmapTask, LocalKmap, LocalSlots, PerPage,
    PersistentPool, RangeFlush, SavedLocal,
};
use paging_core::{NativeHooks, PhysFrame, VirtAddr};
use paging_sim::{Mmu, SimAccess, SimRam};
use paging_x86_2level::TwoLevel;
use paging_x86_pae::Pae;

use crate::input::Input;
use crate::kmap_rig::{CPUS, DEPTH, FuzzFixmap, PKMAP_BASE, Rig, RigMode, SLOTS};
use crate::kmap_steps::{NeverWait, Steps};

/// Operations per input, at most.
const MAX_OPS: usize = 256;

/// Run the kmap operations encoded in `data`; panics only on a broken
/// invariant.
pub fn kmap_ops(data: &[u8]) {
    let mut input = Input::new(data);
    let setup = input.byte();
    let (guard_slots, force_map) = (setup & 8 != 0, setup & 16 != 0);
    match (setup & 1, (setup >> 1) & 3) {
        (0, 0) => run::<TwoLevel, _>(input, GlobalFlush, guard_slots, force_map),
        (0, 1) => run::<TwoLevel, _>(input, PerPage, guard_slots, force_map),
        (0, 2) => run::<TwoLevel, _>(input, RangeFlush, guard_slots, force_map),
        (0, _) => run::<TwoLevel, _>(input, AccessedBit, guard_slots, force_map),
        (_, 0) => run::<Pae, _>(input, GlobalFlush, guard_slots, force_map),
        (_, 1) => run::<Pae, _>(input, PerPage, guard_slots, force_map),
        (_, 2) => run::<Pae, _>(input, RangeFlush, guard_slots, force_map),
        (_, _) => run::<Pae, _>(input, AccessedBit, guard_slots, force_map),
    }
}

pub(crate) type Pool<'r, M, P> = PersistentPool<M, SimAccess<'r>, &'r Mmu<'r>, P, NeverWait, SLOTS>;
pub(crate) type Local<'f, 'r, M> =
    LocalSlots<'f, FuzzFixmap, M, SimAccess<'r>, NativeHooks, &'r Mmu<'r>, DEPTH, CPUS>;

/// One entry of a CPU's local stack: its guard, or `None` once the guard
/// was dropped out of order (the slot stays mapped until everything above
/// it is gone).
pub(crate) struct Pushed<'l> {
    pub(crate) frame: PhysFrame,
    pub(crate) guard: Option<LocalKmap<'l>>,
}

/// Everything the operations hold between steps, and the model.
pub(crate) struct State<'a> {
    /// Persistent guards (from `try_map`, `map_nowait`).
    pub(crate) held: Vec<Kmap<'a>>,
    /// Raw mappings (from guards turned raw).
    pub(crate) raw: Vec<(PhysFrame, VirtAddr)>,
    /// Users per slotted page.
    pub(crate) users: BTreeMap<u64, u32>,
    /// Each CPU's local stack.
    pub(crate) stacks: [Vec<Pushed<'a>>; CPUS],
    /// Local guards of direct-mapped pages (no slot).
    pub(crate) direct_locals: Vec<LocalKmap<'a>>,
    /// Stacks taken off a CPU, with their entries.
    pub(crate) saved: [Option<(SavedLocal<DEPTH>, Vec<Pushed<'a>>)>; CPUS],
    /// Local guards dropped out of LIFO order.
    pub(crate) lifo_violations: u64,
}

fn run<M: RigMode, P: FlushPolicy>(
    mut input: Input<'_>,
    policy: P,
    guard_slots: bool,
    force_map: bool,
) {
    let ram = SimRam::new();
    let rig = Rig::<M>::new(&ram, force_map);
    let pool: Pool<'_, M, P> = match PersistentPool::new(
        &rig.window,
        VirtAddr::new(PKMAP_BASE),
        rig.direct,
        SimAccess::new(&ram),
        &rig.m.mmu,
        policy,
        NeverWait,
    ) {
        Ok(p) => p,
        Err(e) => panic!("pool: {e}"),
    };
    let local: Local<'_, '_, M> = match LocalSlots::new(
        &rig.fixmap,
        FuzzFixmap::KMAP_LOCAL,
        guard_slots,
        rig.direct,
        &rig.m.mmu,
    ) {
        Ok(l) => l,
        Err(e) => panic!("local slots: {e}"),
    };
    // SAFETY: two tasks of one simulated kernel, interleaved by this
    // harness on one thread. Neither ever waits (the pool's wait hook
    // panics, and the harness only calls a waiting operation when the model
    // says capacity is free), so holding a mapping through one while the
    // other maps cannot deadlock.
    let (shared, mut owner) = unsafe { (KmapTask::new(), KmapTask::new()) };
    let mut st = State {
        held: Vec::new(),
        raw: Vec::new(),
        users: BTreeMap::new(),
        stacks: [const { Vec::new() }; CPUS],
        direct_locals: Vec::new(),
        saved: [const { None }; CPUS],
        lifo_violations: 0,
    };
    let ops = Steps {
        rig: &rig,
        pool: &pool,
        local: &local,
    };
    for step in 0..MAX_OPS {
        if input.is_empty() {
            break;
        }
        ops.step(step, &mut input, &shared, &mut owner, &mut st);
        ops.check(step, &st);
    }
    ops.finish(&mut owner, st);
}
