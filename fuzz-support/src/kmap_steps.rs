//! One kmap operation at a time, its expected result, and the checks
//! between operations (see [`kmap_ops`](crate::kmap_ops)).

use std::collections::BTreeSet;

use kmap::{FlushPolicy, Kmap, KmapError, KmapTask, NowaitKmap, WaitHook};
use paging_core::PhysFrame;
use paging_sim::Access;

use crate::input::Input;
use crate::kmap_ops::{Local, Pool, Pushed, State};
use crate::kmap_rig::{CPUS, DEPTH, Rig, RigMode, SLOTS};

/// The pool's wait hook: the harness never lets a task wait (it would be
/// the only task, waiting forever), so a call to `wait` means the pool
/// wanted to wait although the model says capacity was free.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NeverWait;

impl WaitHook for NeverWait {
    fn wait(&self, _epoch: &core::sync::atomic::AtomicU32, _seen: u32) {
        panic!("the pool waited although the model says a slot was free");
    }

    fn wake(&self, _epoch: &core::sync::atomic::AtomicU32) {}
}

/// What an operation should return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Success through the direct map.
    Direct,
    /// Success in a slot (the page's own, or a new one).
    Slot,
    /// This error kind.
    Fails(Refusal),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    Exhausted,
    Entry,
    BadCpu,
    TooLarge,
    Spent,
    NotMapped,
    DoubleUnmap,
}

fn refusal(e: &KmapError) -> Option<Refusal> {
    Some(match e {
        KmapError::Exhausted => Refusal::Exhausted,
        KmapError::Entry(_) => Refusal::Entry,
        KmapError::BadCpu { .. } => Refusal::BadCpu,
        KmapError::ReservationTooLarge { .. } => Refusal::TooLarge,
        KmapError::ReservationSpent => Refusal::Spent,
        KmapError::NotMapped { .. } => Refusal::NotMapped,
        KmapError::DoubleUnmap { .. } => Refusal::DoubleUnmap,
        _ => return None,
    })
}

/// The state a refused operation must leave as it was.
#[derive(PartialEq, Eq, Debug)]
struct Observed {
    ptes: Vec<u64>,
    in_use: usize,
    depths: Vec<Option<usize>>,
}

/// The kernel, the pool and the local slots the operations act on.
pub(crate) struct Steps<'a, 'r, M: RigMode, P: FlushPolicy> {
    pub(crate) rig: &'a Rig<'r, M>,
    pub(crate) pool: &'a Pool<'r, M, P>,
    pub(crate) local: &'a Local<'a, 'r, M>,
}

impl<'a, M: RigMode, P: FlushPolicy> Steps<'a, '_, M, P> {
    fn observe(&self) -> Observed {
        Observed {
            ptes: self.rig.window_ptes(),
            in_use: self.pool.in_use(),
            depths: (0..CPUS).map(|c| self.local.depth(c)).collect(),
        }
    }

    fn page(&self, input: &mut Input<'_>) -> PhysFrame {
        self.rig.pages[input.below(self.rig.pages.len() as u32) as usize]
    }

    fn direct(&self, f: PhysFrame) -> bool {
        self.rig.direct.direct_va(f).is_some()
    }

    fn unmappable(&self, f: PhysFrame) -> bool {
        !f.start_address().fits_bits(M::MAX_PHYS_BITS)
    }

    /// What a map that may not wait (or takes a ticket) returns.
    fn expect_claim(&self, st: &State<'a>, f: PhysFrame, capacity: usize) -> Expect {
        if self.direct(f) {
            Expect::Direct
        } else if self.unmappable(f) {
            Expect::Fails(Refusal::Entry)
        } else if st.users.contains_key(&f.number()) || capacity > 0 {
            Expect::Slot
        } else {
            Expect::Fails(Refusal::Exhausted)
        }
    }

    /// What a local map on `cpu` returns.
    fn expect_local(&self, st: &State<'a>, cpu: usize, f: PhysFrame) -> Expect {
        if cpu >= CPUS {
            Expect::Fails(Refusal::BadCpu)
        } else if self.direct(f) {
            Expect::Direct
        } else if st.stacks[cpu].len() == DEPTH {
            Expect::Fails(Refusal::Exhausted)
        } else if self.unmappable(f) {
            Expect::Fails(Refusal::Entry)
        } else {
            Expect::Slot
        }
    }

    /// `got` is what `want` says; a refusal changed nothing.
    fn verdict<T>(&self, what: &str, want: Expect, got: &Result<T, KmapError>, before: Observed) {
        match (want, got) {
            (Expect::Fails(r), Err(e)) => {
                assert_eq!(refusal(e), Some(r), "{what}: wrong error {e:?}");
                assert_eq!(self.observe(), before, "{what}: refused, but changed state");
            }
            (Expect::Fails(r), Ok(_)) => panic!("{what}: succeeded, expected {r:?}"),
            (_, Err(e)) => panic!("{what}: failed with {e:?}, expected {want:?}"),
            (_, Ok(_)) => {}
        }
    }

    /// Record a new persistent mapping of `f` and check it.
    fn mapped(&self, st: &mut State<'a>, what: &str, k: &Kmap<'_>, want: Expect) {
        assert_eq!(k.is_direct(), want == Expect::Direct, "{what}: {k:?}");
        assert!(
            self.rig.reads(k.va(), k.frame()),
            "{what}: {k:?} does not read its page"
        );
        if !k.is_direct() {
            *st.users.entry(k.frame().number()).or_insert(0) += 1;
        }
    }

    /// Forget one use of `f` (its guard was dropped or unmapped).
    fn unmapped(st: &mut State<'a>, f: PhysFrame) {
        if let Some(n) = st.users.get_mut(&f.number()) {
            *n -= 1;
            if *n == 0 {
                st.users.remove(&f.number());
            }
        }
    }

    /// Decode and run one operation.
    pub(crate) fn step(
        &self,
        step: usize,
        input: &mut Input<'_>,
        shared: &'a KmapTask,
        owner: &mut KmapTask,
        st: &mut State<'a>,
    ) {
        let capacity = SLOTS - st.users.len();
        match input.below(12) {
            0 => self.try_map(step, self.page(input), shared, st),
            1 => {
                let f = self.page(input);
                let keep_raw = input.byte() & 1 == 0;
                if self.direct(f) || st.users.contains_key(&f.number()) || capacity > 0 {
                    self.map(step, f, keep_raw, owner, st);
                } else {
                    // `map` would wait: the harness has no other task to
                    // free a slot. `try_map` must refuse instead.
                    self.try_map(step, f, shared, st);
                }
            }
            2 => self.reserve_and_nest(step, input, owner, st),
            3 => {
                let cpu = input.below(CPUS as u32 + 1) as usize;
                self.nowait(step, cpu, self.page(input), shared, st);
            }
            4 => {
                if !st.held.is_empty() {
                    let k = st.held.remove(input.below16(st.held.len() as u32) as usize);
                    let f = k.frame();
                    drop(k);
                    Self::unmapped(st, f);
                }
            }
            5 => self.kunmap_raw(step, input, st),
            6 => {
                let cpu = input.below(CPUS as u32 + 1) as usize;
                self.local_map(step, cpu, self.page(input), st);
            }
            7 | 8 => {
                let try_it = input.byte() & 1 == 0;
                let cpu = input.below(CPUS as u32) as usize;
                let pick = input.byte();
                self.local_unmap(step, cpu, pick, try_it, st);
            }
            9 => self.save(step, input.below(CPUS as u32 + 1) as usize, st),
            10 => self.restore(step, input.below(CPUS as u32) as usize, st),
            _ => {
                let k = input.below(SLOTS as u32 + 2) as usize;
                let before = self.observe();
                let want = if k > SLOTS {
                    Expect::Fails(Refusal::TooLarge)
                } else if k > capacity {
                    Expect::Fails(Refusal::Exhausted)
                } else {
                    Expect::Slot
                };
                let got = self.pool.try_reserve(owner, k).map(|r| r.remaining());
                self.verdict(&format!("step {step}: try_reserve {k}"), want, &got, before);
                if let Ok(n) = got {
                    assert_eq!(n, k);
                }
            }
        }
    }

    fn try_map(&self, step: usize, f: PhysFrame, shared: &'a KmapTask, st: &mut State<'a>) {
        let what = format!("step {step}: try_map {f:?}");
        let want = self.expect_claim(st, f, SLOTS - st.users.len());
        let before = self.observe();
        let got = self.pool.try_map(shared, f);
        self.verdict(&what, want, &got, before);
        if let Ok(k) = got {
            self.mapped(st, &what, &k, want);
            st.held.push(k);
        }
    }

    fn map(
        &self,
        step: usize,
        f: PhysFrame,
        keep_raw: bool,
        owner: &mut KmapTask,
        st: &mut State<'a>,
    ) {
        let what = format!("step {step}: map {f:?}");
        let want = self.expect_claim(st, f, 1);
        let before = self.observe();
        let got = self.pool.map(owner, f);
        self.verdict(&what, want, &got, before);
        if let Ok(k) = got {
            self.mapped(st, &what, &k, want);
            self.keep_or_drop(st, k, keep_raw);
        }
    }

    /// Turn `k` into a raw mapping, or drop it.
    fn keep_or_drop(&self, st: &mut State<'a>, k: Kmap<'_>, keep_raw: bool) {
        if keep_raw {
            // SAFETY: no task of this harness ever waits (see `kmap_ops`),
            // so holding a raw mapping cannot deadlock one.
            let (f, va) = unsafe { k.into_raw() };
            st.raw.push((f, va));
        } else {
            let f = k.frame();
            drop(k);
            Self::unmapped(st, f);
        }
    }

    /// Reserve `k`, map up to `k + 1` pages from it (nested, each kept
    /// until the end of the step or turned raw), then give it back.
    fn reserve_and_nest(
        &self,
        step: usize,
        input: &mut Input<'_>,
        owner: &mut KmapTask,
        st: &mut State<'a>,
    ) {
        let k = input.below(SLOTS as u32 + 2) as usize;
        let what = format!("step {step}: reserve {k}");
        let capacity = SLOTS - st.users.len();
        let before = self.observe();
        if k > SLOTS || k > capacity {
            // `reserve` of more than the pool has fails; of more than is
            // free it would wait: `try_reserve` must refuse.
            let got = if k > SLOTS {
                self.pool.reserve(owner, k).map(|_| ())
            } else {
                self.pool.try_reserve(owner, k).map(|_| ())
            };
            let r = if k > SLOTS {
                Refusal::TooLarge
            } else {
                Refusal::Exhausted
            };
            self.verdict(&what, Expect::Fails(r), &got, before);
            return;
        }
        let r = match self.pool.reserve(owner, k) {
            Ok(r) => r,
            Err(e) => panic!("{what}: {e:?} with {capacity} free"),
        };
        let mut nested = Vec::new();
        let mut tickets = k;
        for _ in 0..input.below(k as u32 + 2) {
            let f = self.page(input);
            let keep_raw = input.byte() & 1 == 0;
            let what = format!("{what}: map {f:?}");
            // A ticket always has a slot: never `Exhausted`.
            let want = match self.expect_claim(st, f, 1) {
                _ if tickets == 0 => Expect::Fails(Refusal::Spent),
                want => want,
            };
            let before = self.observe();
            let got = r.map(f);
            self.verdict(&what, want, &got, before);
            if let Ok(g) = got {
                tickets -= 1;
                self.mapped(st, &what, &g, want);
                if keep_raw {
                    self.keep_or_drop(st, g, true);
                } else {
                    nested.push(g);
                }
            }
            assert_eq!(r.remaining(), tickets, "{what}: tickets");
            for g in &nested {
                assert!(
                    self.rig.reads(g.va(), g.frame()),
                    "{what}: nested {g:?} lost its page"
                );
            }
        }
        while let Some(g) = nested.pop() {
            let f = g.frame();
            drop(g);
            Self::unmapped(st, f);
        }
    }

    fn nowait(
        &self,
        step: usize,
        cpu: usize,
        f: PhysFrame,
        shared: &'a KmapTask,
        st: &mut State<'a>,
    ) {
        let what = format!("step {step}: map_nowait cpu {cpu} {f:?}");
        let persistent = self.expect_claim(st, f, SLOTS - st.users.len());
        let want = match persistent {
            Expect::Fails(Refusal::Exhausted) => self.expect_local(st, cpu, f),
            want => want,
        };
        let before = self.observe();
        let got = self.pool.map_nowait(shared, self.local, cpu, f);
        self.verdict(&what, want, &got, before);
        match got {
            Ok(NowaitKmap::Persistent(k)) => {
                assert!(
                    persistent != Expect::Fails(Refusal::Exhausted),
                    "{what}: {k:?}"
                );
                self.mapped(st, &what, &k, want);
                st.held.push(k);
            }
            Ok(NowaitKmap::Local(l)) => {
                assert_eq!(
                    persistent,
                    Expect::Fails(Refusal::Exhausted),
                    "{what}: {l:?}"
                );
                self.pushed(st, &what, cpu, l, want);
            }
            Err(_) => {}
        }
    }

    /// Record a new local mapping and check it.
    fn pushed(
        &self,
        st: &mut State<'a>,
        what: &str,
        cpu: usize,
        l: kmap::LocalKmap<'a>,
        want: Expect,
    ) {
        assert_eq!(l.is_direct(), want == Expect::Direct, "{what}: {l:?}");
        assert!(
            self.rig.reads(l.va(), l.frame()),
            "{what}: {l:?} does not read its page"
        );
        if l.is_direct() {
            st.direct_locals.push(l);
        } else {
            assert_eq!(l.depth(), st.stacks[cpu].len(), "{what}: depth");
            st.stacks[cpu].push(Pushed {
                frame: l.frame(),
                guard: Some(l),
            });
        }
    }

    fn kunmap_raw(&self, step: usize, input: &mut Input<'_>, st: &mut State<'a>) {
        let before = self.observe();
        if input.byte() & 1 == 0 && !st.raw.is_empty() {
            let (f, _) = st.raw.remove(input.below16(st.raw.len() as u32) as usize);
            let got = self.pool.kunmap_raw(f);
            self.verdict(
                &format!("step {step}: kunmap_raw {f:?}"),
                Expect::Slot,
                &got,
                before,
            );
            if !self.direct(f) {
                Self::unmapped(st, f);
            }
            return;
        }
        // A page nobody holds: never mapped, or unmapped already.
        let f = self.page(input);
        if st.users.contains_key(&f.number()) {
            return;
        }
        let want = if self.direct(f) {
            Expect::Direct
        } else if self.pool.lookup(f).is_some() {
            Expect::Fails(Refusal::DoubleUnmap)
        } else {
            Expect::Fails(Refusal::NotMapped)
        };
        let got = self.pool.kunmap_raw(f);
        self.verdict(
            &format!("step {step}: stray kunmap_raw {f:?}"),
            want,
            &got,
            before,
        );
    }

    fn local_map(&self, step: usize, cpu: usize, f: PhysFrame, st: &mut State<'a>) {
        let what = format!("step {step}: local map cpu {cpu} {f:?}");
        let want = self.expect_local(st, cpu, f);
        let before = self.observe();
        let got = self.local.map(cpu, f);
        self.verdict(&what, want, &got, before);
        if let Ok(l) = got {
            self.pushed(st, &what, cpu, l, want);
        }
    }

    /// Unmap (`try_unmap`) or drop one of `cpu`'s live local guards, or a
    /// direct one.
    fn local_unmap(&self, step: usize, cpu: usize, pick: u8, try_it: bool, st: &mut State<'a>) {
        let what = format!("step {step}: local unmap cpu {cpu}");
        let live: Vec<usize> = (0..st.stacks[cpu].len())
            .filter(|&i| st.stacks[cpu][i].guard.is_some())
            .collect();
        if live.is_empty() || pick >= 224 {
            if let Some(l) = st.direct_locals.pop() {
                assert!(l.try_unmap().is_ok(), "{what}: a direct local mapping");
            }
            return;
        }
        let i = live[usize::from(pick) % live.len()];
        let top = i + 1 == st.stacks[cpu].len();
        let Some(guard) = st.stacks[cpu][i].guard.take() else {
            return;
        };
        let before = self.observe();
        if try_it {
            match guard.try_unmap() {
                Ok(()) => assert!(top, "{what}: unmapped below the top"),
                Err((guard, e)) => {
                    assert!(!top, "{what}: the top refused: {e:?}");
                    assert!(matches!(e, KmapError::OutOfOrder { .. }), "{what}: {e:?}");
                    assert_eq!(self.observe(), before, "{what}: refused, but changed state");
                    st.stacks[cpu][i].guard = Some(guard);
                    return;
                }
            }
        } else {
            drop(guard);
            if !top {
                st.lifo_violations += 1;
            }
        }
        while st.stacks[cpu].last().is_some_and(|p| p.guard.is_none()) {
            st.stacks[cpu].pop();
        }
    }

    fn save(&self, step: usize, cpu: usize, st: &mut State<'a>) {
        let what = format!("step {step}: save cpu {cpu}");
        if cpu >= CPUS {
            let before = self.observe();
            let got = self.local.save(cpu).map(|_| ());
            self.verdict(&what, Expect::Fails(Refusal::BadCpu), &got, before);
            return;
        }
        if st.saved[cpu].is_some() {
            return;
        }
        let saved = match self.local.save(cpu) {
            Ok(s) => s,
            Err(e) => panic!("{what}: {e:?}"),
        };
        assert_eq!(saved.depth(), st.stacks[cpu].len(), "{what}: depth");
        let entries = std::mem::take(&mut st.stacks[cpu]);
        for p in &entries {
            if let Some(g) = &p.guard {
                let gone = self.rig.m.mmu.translate(g.va(), Access::READ);
                assert!(gone.is_err(), "{what}: {g:?} still mapped");
            }
        }
        st.saved[cpu] = Some((saved, entries));
    }

    fn restore(&self, step: usize, cpu: usize, st: &mut State<'a>) {
        let what = format!("step {step}: restore cpu {cpu}");
        let Some((saved, entries)) = st.saved[cpu].take() else {
            return;
        };
        let before = self.observe();
        let got = self.local.restore(&saved);
        if !st.stacks[cpu].is_empty() {
            assert!(
                matches!(got, Err(KmapError::RestoreMismatch { .. })),
                "{what}: {got:?}"
            );
            assert_eq!(self.observe(), before, "{what}: refused, but changed state");
            st.saved[cpu] = Some((saved, entries));
            return;
        }
        assert!(got.is_ok(), "{what}: {got:?}");
        for p in &entries {
            if let Some(g) = &p.guard {
                assert!(self.rig.reads(g.va(), p.frame), "{what}: {g:?} not back");
            }
        }
        st.stacks[cpu] = entries;
    }

    /// The invariants between operations.
    pub(crate) fn check(&self, step: usize, st: &State<'a>) {
        let what = format!("after step {step}");
        assert_eq!(self.pool.in_use(), st.users.len(), "{what}: slots in use");
        let mut vas = BTreeSet::new();
        for (&pfn, &n) in &st.users {
            let f = PhysFrame::from_number(pfn).unwrap_or_else(|e| panic!("{e}"));
            let va = self
                .pool
                .lookup(f)
                .unwrap_or_else(|| panic!("{what}: {f:?} has no slot"));
            assert!(vas.insert(va), "{what}: slot {va} serves two pages");
            assert_eq!(
                self.pool.slot_count(va),
                Some(n as u16 + 1),
                "{what}: count of {va}"
            );
            assert!(
                self.rig.reads(va, f),
                "{what}: slot {va} does not read {f:?}"
            );
        }
        for k in &st.held {
            if !k.is_direct() {
                assert_eq!(
                    self.pool.lookup(k.frame()),
                    Some(k.va()),
                    "{what}: {k:?} moved"
                );
            }
            assert!(
                self.rig.reads(k.va(), k.frame()),
                "{what}: {k:?} lost its page"
            );
        }
        for &(f, va) in &st.raw {
            assert!(
                self.rig.reads(va, f),
                "{what}: raw {f:?} at {va} lost its page"
            );
        }
        for cpu in 0..CPUS {
            assert_eq!(
                self.local.depth(cpu),
                Some(st.stacks[cpu].len()),
                "{what}: cpu {cpu}"
            );
            for p in &st.stacks[cpu] {
                if let Some(g) = &p.guard {
                    assert!(
                        self.rig.reads(g.va(), p.frame),
                        "{what}: {g:?} lost its page"
                    );
                }
            }
        }
        for l in &st.direct_locals {
            assert!(self.rig.reads(l.va(), l.frame()), "{what}: {l:?}");
        }
        assert_eq!(
            self.local.stats().lifo_violations,
            st.lifo_violations,
            "{what}: LIFO count"
        );
    }

    /// Unmap everything; then the whole pool is free and every stack empty.
    pub(crate) fn finish(&self, owner: &mut KmapTask, mut st: State<'a>) {
        for cpu in 0..CPUS {
            Self::unwind(&mut st.stacks[cpu]);
            if let Some((saved, mut entries)) = st.saved[cpu].take() {
                assert!(
                    self.local.restore(&saved).is_ok(),
                    "final restore of cpu {cpu}"
                );
                Self::unwind(&mut entries);
            }
            assert_eq!(
                self.local.depth(cpu),
                Some(0),
                "cpu {cpu} not empty at the end"
            );
        }
        st.direct_locals.clear();
        st.held.clear();
        for (f, _) in std::mem::take(&mut st.raw) {
            assert!(self.pool.kunmap_raw(f).is_ok(), "final kunmap_raw {f:?}");
        }
        assert_eq!(self.pool.in_use(), 0, "slots still in use at the end");
        let all = self.pool.try_reserve(owner, SLOTS).map(|r| r.remaining());
        assert_eq!(all, Ok(SLOTS), "the pool did not get all its capacity back");
        let stats = self.pool.stats();
        assert_eq!(stats.release_errors, 0, "{stats:?}");
        assert!(stats.peak_in_use <= SLOTS as u64, "{stats:?}");
    }

    /// Drop a stack's guards from the top.
    fn unwind(stack: &mut Vec<Pushed<'a>>) {
        while let Some(p) = stack.pop() {
            drop(p.guard);
        }
    }
}
