//! Model check of the persistent pool's map/unmap/wrap/wait protocol with
//! `loom`: every interleaving (up to the preemption bound) of a few tasks on
//! a two-slot pool, so that tasks must wait for capacity and the cursor must
//! wrap and clear stale slots.
//!
//! Run with `cargo xtask loom`, or by hand:
//! `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 cargo test -p kmap --test loom --release`.
//!
//! Under `--cfg loom` the pool's lock and epoch are loom's (`src/sync.rs`),
//! and the slot PTEs live in [`LoomTables`], whose words are loom cells: a
//! slot PTE written by one task while another reads or writes it without
//! the pool's lock ordering the two is reported as a data race. Each
//! execution checks that
//! - it terminates (loom reports a deadlock, and a waiter that is never
//!   woken, as a failure);
//! - every live mapping's slot PTE maps that mapping's page, after every map
//!   of every task (so no slot ever serves two pages at once);
//! - at the end no slot is in use and the whole pool can be reserved again
//!   (every promise and every slot came back).
#![cfg(loom)]

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};

use fixmap::{ContiguousWindow, WindowBuilder};
use kmap::{
    DirectMap, FlushPolicy, Generations, GlobalFlush, Kmap, KmapTask, PerPage, PersistentPool,
    WaitHook,
};
use loom::cell::UnsafeCell;
use loom::sync::atomic::{AtomicU32, Ordering};
use loom::sync::{Arc, Condvar, Mutex};
use paging_core::{
    AccessError, Entry, PagingMode, PhysAddr, PhysFrame, RawTable, TableAccess, TlbOps, VirtAddr,
};
use paging_sim::{Machine, SimRam};
use paging_x86_2level::TwoLevel;
use paging_x86_pae::Pae;

/// Two slots: the smallest pool (`N` is a power of two, at least 2).
const SLOTS: usize = 2;
/// Where slot 0 is (the start of one PTE table in both modes).
const BASE: u32 = 0xFF80_0000;
/// 32-bit words of table memory the model keeps: both slots' PTEs in PAE.
const WORDS: usize = 2 * SLOTS;

/// The slot PTEs, in loom cells: the only table memory the pool writes.
struct Words([UnsafeCell<u32>; WORDS]);

// SAFETY: every access to the words goes through loom's `UnsafeCell`,
// which checks in each explored execution that no two threads access a word
// without a happens-before order between them (and fails the model if they
// do); that is exactly the property under test.
unsafe impl Sync for Words {}

/// The pool's table access: the window's first table is `Words`. The test
/// keeps a clone to read the PTEs the pool wrote.
#[derive(Clone)]
struct LoomTables {
    first: PhysFrame,
    words: Arc<Words>,
}

impl LoomTables {
    fn new(first: PhysFrame) -> Self {
        Self {
            first,
            words: Arc::new(Words(std::array::from_fn(|_| UnsafeCell::new(0)))),
        }
    }

    fn word(&self, word: usize) -> &UnsafeCell<u32> {
        match self.words.0.get(word) {
            Some(w) => w,
            None => panic!("the pool wrote word {word}, beyond its {SLOTS} slots' PTEs"),
        }
    }
}

/// A view of the window's first table.
struct LoomTable<'a>(&'a LoomTables);

impl RawTable for LoomTable<'_> {
    fn load32(&self, word: usize) -> u32 {
        // SAFETY: loom checks that this read is ordered after every write.
        self.0.word(word).with(|p| unsafe { *p })
    }
    fn store32(&self, word: usize, value: u32) {
        // SAFETY: loom checks that this write is ordered with every access.
        self.0.word(word).with_mut(|p| unsafe { *p = value })
    }
    fn swap32(&self, word: usize, value: u32) -> u32 {
        // SAFETY: as for `store32`.
        self.0
            .word(word)
            .with_mut(|p| unsafe { std::mem::replace(&mut *p, value) })
    }
    fn compare_exchange32(&self, word: usize, current: u32, new: u32) -> Result<u32, u32> {
        // SAFETY: as for `store32`: loom checks the access is ordered.
        self.0.word(word).with_mut(|p| unsafe {
            if *p == current {
                *p = new;
                Ok(current)
            } else {
                Err(*p)
            }
        })
    }
    fn load64(&self, entry: usize) -> u64 {
        u64::from(self.load32(2 * entry)) | (u64::from(self.load32(2 * entry + 1)) << 32)
    }
    fn store64(&self, entry: usize, value: u64) {
        self.store32(2 * entry, value as u32);
        self.store32(2 * entry + 1, (value >> 32) as u32);
    }
    fn swap64(&self, entry: usize, value: u64) -> u64 {
        let old = self.load64(entry);
        self.store64(entry, value);
        old
    }
}

impl TableAccess for LoomTables {
    type Table<'a> = LoomTable<'a>;

    fn table(&self, frame: PhysFrame) -> Result<LoomTable<'_>, AccessError> {
        if frame == self.first {
            Ok(LoomTable(self))
        } else {
            Err(AccessError::Unreachable(frame))
        }
    }
}

/// A TLB that only counts: the model is about the pool's bookkeeping and
/// its PTE writes, not about translations.
#[derive(Default)]
struct CountingTlb {
    flushes: AtomicU64,
}

impl TlbOps for CountingTlb {
    fn flush_page(&self, _va: VirtAddr) {
        self.flushes.fetch_add(1, Relaxed);
    }
    fn flush_all(&self) {
        self.flushes.fetch_add(1, Relaxed);
    }
    fn flush_everything(&self) {
        self.flushes.fetch_add(1, Relaxed);
    }
}

/// A blocking wait on a loom condition variable: sleep until the epoch
/// moves on. A lost wake-up leaves a task asleep forever, which loom reports.
#[derive(Default)]
struct CondvarWait {
    lock: Mutex<()>,
    cv: Condvar,
}

impl WaitHook for CondvarWait {
    fn wait(&self, epoch: &AtomicU32, seen: u32) {
        let mut guard = self.lock.lock().unwrap();
        while epoch.load(Ordering::Acquire) == seen {
            guard = self.cv.wait(guard).unwrap();
        }
    }

    fn wake(&self, _epoch: &AtomicU32) {
        let _guard = self.lock.lock().unwrap();
        self.cv.notify_all();
    }
}

type Pool<M, P, W> = PersistentPool<M, LoomTables, CountingTlb, P, W, SLOTS>;

fn frame(i: u64) -> PhysFrame {
    PhysFrame::from_start_address(PhysAddr::new(0x1000_0000 + i * 4096).unwrap()).unwrap()
}

/// The window's PTE tables, built once on a simulated machine (outside the
/// model: only their frame numbers are used).
fn window<M: PagingMode>() -> ContiguousWindow<M> {
    let ram = SimRam::new();
    let mut m = Machine::<M>::new(&ram);
    let (window, _) = WindowBuilder::new(VirtAddr::new(BASE), u64::from(BASE) + 0x1000)
        .unwrap()
        .build(&mut m.mapper, &m.mmu, &mut m.alloc)
        .unwrap();
    assert_eq!(window.start(), VirtAddr::new(BASE));
    window
}

/// A two-slot pool whose PTEs are `tables`.
fn pool<M: PagingMode, P: FlushPolicy, W: WaitHook>(
    window: &ContiguousWindow<M>,
    tables: &LoomTables,
    policy: P,
    wait: W,
) -> Pool<M, P, W> {
    PersistentPool::new(
        window,
        VirtAddr::new(BASE),
        // 16 MiB of lowmem: every page the tasks map is highmem, in a slot.
        DirectMap::new(0xC000_0000, 16 << 20),
        tables.clone(),
        CountingTlb::default(),
        policy,
        wait,
    )
    .unwrap()
}

/// The slot PTE behind `k` maps `k`'s page.
fn assert_maps<M: PagingMode>(tables: &LoomTables, k: &Kmap<'_>) {
    let index = ((k.va().as_u32() - BASE) / 4096) as usize;
    assert!(index < SLOTS, "{k:?} is outside the pool");
    let pte = M::Pte::load(&LoomTable(tables), index);
    assert!(
        pte.is_present() && pte.addr() == k.frame().start_address(),
        "slot {index} holds {pte:?} while {k:?} is live"
    );
}

/// What the explored executions did, over all of them.
#[derive(Default)]
struct Seen {
    executions: AtomicUsize,
    waited: AtomicBool,
    wrapped: AtomicBool,
}

/// One task's token, for a thread of the model.
fn task() -> KmapTask {
    // SAFETY: each caller is a distinct thread of the model and takes one.
    unsafe { KmapTask::new() }
}

/// A task that reserves two mappings and nests them: `a`, then `b`.
fn nest<M: PagingMode, P: FlushPolicy, W: WaitHook>(
    pool: &Pool<M, P, W>,
    tables: &LoomTables,
    a: PhysFrame,
    b: PhysFrame,
) {
    let mut task = task();
    let both = pool.reserve(&mut task, 2).unwrap();
    let first = both.map(a).unwrap();
    assert_maps::<M>(tables, &first);
    let second = both.map(b).unwrap();
    assert_maps::<M>(tables, &first);
    assert_maps::<M>(tables, &second);
    assert_eq!(both.map(a).unwrap_err(), kmap::KmapError::ReservationSpent);
}

/// A task that maps one page on its own (it may wait).
fn single<M: PagingMode, P: FlushPolicy, W: WaitHook>(
    pool: &Pool<M, P, W>,
    tables: &LoomTables,
    page: PhysFrame,
) {
    let mut task = task();
    let k = pool.map(&mut task, page).unwrap();
    assert_maps::<M>(tables, &k);
}

/// After every task is done: nothing in use, everything can be promised.
fn assert_returned<M: PagingMode, P: FlushPolicy, W: WaitHook>(pool: &Pool<M, P, W>, seen: &Seen) {
    assert_eq!(pool.in_use(), 0);
    let mut task = task();
    let all = pool.try_reserve(&mut task, SLOTS).unwrap();
    assert_eq!(all.remaining(), SLOTS);
    let stats = pool.stats();
    assert!(stats.peak_in_use <= SLOTS as u64, "{stats:?}");
    if stats.waits > 0 {
        seen.waited.store(true, Relaxed);
    }
    if stats.wraps > 0 {
        seen.wrapped.store(true, Relaxed);
    }
}

/// The tasks of one scenario: each entry runs on its own model thread, the
/// last on the model's main thread.
type Task<M, P, W> = fn(&Pool<M, P, W>, &LoomTables);

/// Explore every interleaving of `tasks` on a fresh two-slot pool.
fn explore<M, P, W>(policy: P, wait: fn() -> W, tasks: [Task<M, P, W>; 3]) -> std::sync::Arc<Seen>
where
    M: PagingMode + Send + Sync + 'static,
    P: FlushPolicy + Copy + 'static,
    W: WaitHook + 'static,
{
    explore_from(policy, wait, |_, _| {}, tasks)
}

/// [`explore`], after `setup` ran on the fresh pool (before any task
/// starts).
fn explore_from<M, P, W>(
    policy: P,
    wait: fn() -> W,
    setup: Task<M, P, W>,
    tasks: [Task<M, P, W>; 3],
) -> std::sync::Arc<Seen>
where
    M: PagingMode + Send + Sync + 'static,
    P: FlushPolicy + Copy + 'static,
    W: WaitHook + 'static,
{
    let window = window::<M>();
    let seen = std::sync::Arc::new(Seen::default());
    let report = seen.clone();
    loom::model::Builder::new().check(move || {
        seen.executions.fetch_add(1, Relaxed);
        let tables = LoomTables::new(window.first_frame());
        let pool = Arc::new(pool(&window, &tables, policy, wait()));
        setup(&pool, &tables);
        let (last, spawned) = tasks.split_last().unwrap();
        let threads: Vec<_> = spawned
            .iter()
            .map(|&task| {
                let (pool, tables) = (pool.clone(), tables.clone());
                loom::thread::spawn(move || task(&pool, &tables))
            })
            .collect();
        last(&pool, &tables);
        for t in threads {
            t.join().unwrap();
        }
        assert_returned(&pool, &seen);
    });
    report
}

fn report(name: &str, seen: &Seen) {
    let n = seen.executions.load(Relaxed);
    println!(
        "loom {name}: {n} executions explored (some waited: {}, some wrapped: {})",
        seen.waited.load(Relaxed),
        seen.wrapped.load(Relaxed)
    );
    assert!(n > 0, "{name}: nothing explored");
}

/// Two tasks each nest two mappings on the two-slot pool (one must wait
/// for the other's whole reservation) while the main task maps a third
/// page on its own: at least four pages pass through two slots, so the
/// cursor wraps and clears stale slots.
fn nesting_scenario<M: PagingMode, P: FlushPolicy, W: WaitHook>() -> [Task<M, P, W>; 3] {
    [
        |pool, tables| nest(pool, tables, frame(0), frame(1)),
        |pool, tables| nest(pool, tables, frame(2), frame(0)),
        |pool, tables| single(pool, tables, frame(3)),
    ]
}

/// Two tasks map the same page (the second shares the first's slot, or
/// finds it unused and takes it back, or it was cleared by a wrap and gets
/// a new slot) while the main task reserves both slots and nests two other
/// pages, wrapping the cursor.
fn sharing_scenario<M: PagingMode, P: FlushPolicy, W: WaitHook>() -> [Task<M, P, W>; 3] {
    [
        |pool, tables| single(pool, tables, frame(0)),
        |pool, tables| single(pool, tables, frame(0)),
        |pool, tables| nest(pool, tables, frame(1), frame(2)),
    ]
}

#[test]
fn nesting_tasks_wait_and_wrap_two_level_condvar() {
    let seen = explore::<TwoLevel, _, _>(GlobalFlush, CondvarWait::default, nesting_scenario());
    report("2-level nesting, GlobalFlush, Condvar", &seen);
    assert!(seen.waited.load(Relaxed), "no execution waited");
    assert!(seen.wrapped.load(Relaxed), "no execution wrapped");
}

#[test]
fn nesting_tasks_wait_and_wrap_pae_condvar() {
    let seen = explore::<Pae, _, _>(PerPage, CondvarWait::default, nesting_scenario());
    report("PAE nesting, PerPage, Condvar", &seen);
    assert!(seen.waited.load(Relaxed), "no execution waited");
    assert!(seen.wrapped.load(Relaxed), "no execution wrapped");
}

#[test]
fn shared_pages_survive_wraps_two_level_condvar() {
    let seen = explore::<TwoLevel, _, _>(GlobalFlush, CondvarWait::default, sharing_scenario());
    report("2-level sharing, GlobalFlush, Condvar", &seen);
    assert!(seen.wrapped.load(Relaxed), "no execution wrapped");
}

#[test]
fn nesting_tasks_wait_and_wrap_pae_generations() {
    // Slots cleared at release and freed half a pool (here: one slot) at a
    // time, or all at once when a lap finds none: reservations still never
    // wait once taken, and every task finishes.
    let seen = explore::<Pae, _, _>(Generations, CondvarWait::default, nesting_scenario());
    report("PAE nesting, Generations, Condvar", &seen);
    assert!(seen.waited.load(Relaxed), "no execution waited");
    assert!(seen.wrapped.load(Relaxed), "no execution wrapped");
}

/// A page mapped with `try_map` (it never waits), if a slot was free, read
/// through its slot and then released.
fn try_single<M: PagingMode, P: FlushPolicy, W: WaitHook>(
    pool: &Pool<M, P, W>,
    tables: &LoomTables,
    page: PhysFrame,
) {
    let task = task();
    match pool.try_map(&task, page) {
        Ok(k) => assert_maps::<M>(tables, &k),
        Err(e) => assert_eq!(e, kmap::KmapError::Exhausted),
    }
}

/// Map `page` and keep the mapping past the guard (released later with
/// `kunmap_raw`, from any thread).
fn hold<M: PagingMode, P: FlushPolicy, W: WaitHook>(
    pool: &Pool<M, P, W>,
    tables: &LoomTables,
    page: PhysFrame,
) {
    let task = task();
    let k = pool.try_map(&task, page).unwrap();
    assert_maps::<M>(tables, &k);
    // SAFETY: the mapping is given back with `kunmap_raw` by a task of the
    // scenario, and nothing reads through it after that.
    let _ = unsafe { k.into_raw() };
}

/// Hit against wrap: one task maps a page and lets it go (its slot stays
/// cached, count 1), a second maps it again without the lock (a hit on the
/// slot the first is filling, or on the cached slot), while the main task
/// maps two other pages through the two slots, so the cursor wraps and
/// clears every unused slot. A hit must never get a slot the wrap cleared
/// (its PTE would not map the page), and the hit's reads of the PTE must be
/// ordered after the write that filled it and before the clear (loom
/// reports a data race on the PTE cell otherwise).
#[test]
fn lock_free_hit_against_wrap_two_level() {
    let seen = explore::<TwoLevel, _, _>(
        GlobalFlush,
        CondvarWait::default,
        [
            |pool, tables| try_single(pool, tables, frame(0)),
            |pool, tables| try_single(pool, tables, frame(0)),
            |pool, tables| {
                try_single(pool, tables, frame(1));
                try_single(pool, tables, frame(2));
            },
        ],
    );
    report("2-level hit vs wrap, GlobalFlush", &seen);
    assert!(seen.wrapped.load(Relaxed), "no execution wrapped");
}

/// Hit against eviction at release: under `Generations` the last user's
/// release clears the slot's PTE at once. One task releases the only user
/// of a page while another maps it without the lock (a hit while the count
/// is still 2, or a new slot once it is stale), and the main task cycles
/// two other pages, so the stale slot is freed and reused.
#[test]
fn lock_free_hit_against_eviction_pae_generations() {
    let seen = explore_from::<Pae, _, _>(
        Generations,
        CondvarWait::default,
        |pool, tables| hold(pool, tables, frame(0)),
        [
            |pool, _| pool.kunmap_raw(frame(0)).unwrap(),
            |pool, tables| try_single(pool, tables, frame(0)),
            |pool, tables| {
                try_single(pool, tables, frame(1));
                try_single(pool, tables, frame(2));
            },
        ],
    );
    report("PAE hit vs eviction, Generations", &seen);
    assert!(seen.wrapped.load(Relaxed), "no execution wrapped");
}

/// Release against a waiting mapper: both slots are held; one task releases
/// them without the lock, another maps a third page and must wait for one
/// (a lost wake-up leaves it asleep, which loom reports), and the main task
/// hits one of the held pages (a lock-free hit, or a locked one while the
/// gate is up because somebody waits).
#[test]
fn lock_free_release_wakes_a_waiting_mapper_pae() {
    let seen = explore_from::<Pae, _, _>(
        GlobalFlush,
        CondvarWait::default,
        |pool, tables| {
            hold(pool, tables, frame(0));
            hold(pool, tables, frame(1));
        },
        [
            |pool, _| {
                pool.kunmap_raw(frame(0)).unwrap();
                pool.kunmap_raw(frame(1)).unwrap();
            },
            |pool, tables| single(pool, tables, frame(2)),
            |pool, tables| try_single(pool, tables, frame(0)),
        ],
    );
    report("PAE release vs waiting mapper, GlobalFlush", &seen);
    assert!(seen.waited.load(Relaxed), "no execution waited");
}

/// `LocalSlots` with two threads passing the same CPU index (issue 19,
/// item 9): the stack's depth moves only by compare-and-swap, and a push
/// or pop that loses leaves its slot released for whoever pops down to it.
///
/// The slot PTEs here are loom atomics (as `PtrTable`'s words are): the
/// fixmap's compare-and-swap claims them, so two threads may well touch one
/// word, and what is checked is the outcome: a live guard's slot maps its
/// own frame, and at the end the depth is 0 and every slot is clear (no
/// slot lost, none left mapped).
mod local_same_cpu {
    use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

    use fixmap::{ContiguousWindow, Fixmap, WindowBuilder, fixmap_layout};
    use kmap::{DirectMap, KmapError, LocalSlots};
    use loom::sync::Arc;
    use loom::sync::atomic::{AtomicU32, Ordering};
    use paging_core::{AccessError, PhysAddr, PhysFrame, RawTable, TableAccess, VirtAddr};
    use paging_sim::{Machine, SimRam};
    use paging_x86_2level::TwoLevel;

    use super::CountingTlb;

    fixmap_layout! {
        /// Two local slots for one CPU.
        pub struct Fix {
            top: 0xFFFF_F000;
            /// The stack.
            LOCAL[2];
        }
    }

    /// The first table word the model keeps: the slots are entries 1021
    /// and 1022 of the window's last table (2-level mode).
    const FIRST_WORD: usize = 1020;

    /// The slots' table words, as loom atomics (in a `std` `Arc`: the
    /// fixmap that holds them is leaked for the `'static` threads).
    #[derive(Clone)]
    struct AtomicTables {
        table: PhysFrame,
        words: std::sync::Arc<[AtomicU32; 4]>,
    }

    /// A view of the slots' table.
    struct AtomicTable<'a>(&'a AtomicTables);

    impl AtomicTable<'_> {
        fn word(&self, word: usize) -> &AtomicU32 {
            match word
                .checked_sub(FIRST_WORD)
                .and_then(|w| self.0.words.get(w))
            {
                Some(w) => w,
                None => panic!("the slots reached word {word}, not theirs"),
            }
        }
    }

    impl RawTable for AtomicTable<'_> {
        fn load32(&self, word: usize) -> u32 {
            self.word(word).load(Ordering::Acquire)
        }
        fn store32(&self, word: usize, value: u32) {
            self.word(word).store(value, Ordering::Release)
        }
        fn swap32(&self, word: usize, value: u32) -> u32 {
            self.word(word).swap(value, Ordering::AcqRel)
        }
        fn compare_exchange32(&self, word: usize, current: u32, new: u32) -> Result<u32, u32> {
            self.word(word)
                .compare_exchange(current, new, Ordering::AcqRel, Ordering::Acquire)
        }
        fn load64(&self, entry: usize) -> u64 {
            u64::from(self.load32(2 * entry)) | u64::from(self.load32(2 * entry + 1)) << 32
        }
        fn store64(&self, entry: usize, value: u64) {
            self.store32(2 * entry + 1, (value >> 32) as u32);
            self.store32(2 * entry, value as u32);
        }
        fn swap64(&self, _entry: usize, _value: u64) -> u64 {
            panic!("2-level slots have no 64-bit entries")
        }
    }

    impl TableAccess for AtomicTables {
        type Table<'a> = AtomicTable<'a>;

        fn table(&self, frame: PhysFrame) -> Result<AtomicTable<'_>, AccessError> {
            if frame == self.table {
                Ok(AtomicTable(self))
            } else {
                Err(AccessError::Unreachable(frame))
            }
        }
    }

    type Slots = LocalSlots<
        'static,
        Fix,
        TwoLevel,
        AtomicTables,
        paging_core::NativeHooks,
        CountingTlb,
        2,
        1,
    >;

    fn frame(x: u64) -> PhysFrame {
        PhysFrame::from_start_address(PhysAddr::new(x).unwrap()).unwrap()
    }

    /// A frame 2-level entries cannot hold: its map claims a depth, then
    /// fails in the fixmap (the failure path gives the depth back).
    fn unmappable() -> PhysFrame {
        frame(0x1_0000_0000)
    }

    fn window() -> ContiguousWindow<TwoLevel> {
        let ram = SimRam::new();
        let mut m = Machine::<TwoLevel>::new(&ram);
        let (window, _) = WindowBuilder::new(VirtAddr::new(0xFFC0_0000), 1 << 32)
            .unwrap()
            .build(&mut m.mapper, &m.mmu, &mut m.alloc)
            .unwrap();
        window
    }

    /// Map `page` on CPU 0; if that works, check the slot maps it, and
    /// unmap. `Exhausted` is a legal answer (the other thread's released
    /// slot may still be on the stack); any other error is not.
    fn map_check_unmap(slots: &Slots, tables: &AtomicTables, page: PhysFrame) {
        match slots.map(0, page) {
            Ok(g) => {
                let word = ((g.va().as_u64() >> 12) % 1024) as usize;
                let pte = AtomicTable(tables).load32(word);
                assert_eq!(
                    u64::from(pte & !0xFFF),
                    page.start_address().as_u64(),
                    "the slot at depth {} maps another frame",
                    g.depth()
                );
                drop(g);
            }
            Err(KmapError::Exhausted) => {}
            Err(e) => panic!("unexpected {e:?}"),
        }
    }

    /// Explores two threads on CPU 0 running `mine` and `theirs`.
    fn explore(name: &str, mine: fn(&Slots, &AtomicTables), theirs: fn(&Slots, &AtomicTables)) {
        let window = window();
        let table = window.first_frame();
        let executions = std::sync::Arc::new(AtomicUsize::new(0));
        let count = executions.clone();
        loom::model::Builder::new().check(move || {
            count.fetch_add(1, Relaxed);
            let tables = AtomicTables {
                table,
                words: std::sync::Arc::new(std::array::from_fn(|_| AtomicU32::new(0))),
            };
            let mut fix = Fixmap::<Fix, TwoLevel, _>::new(tables.clone());
            fix.attach(window.clone()).unwrap();
            // The threads need `'static`; one small fixmap per execution.
            let fix: &'static _ = Box::leak(Box::new(fix));
            let direct = DirectMap::new(0xC000_0000, 0);
            let slots = Arc::new(
                Slots::new(fix, Fix::LOCAL, false, direct, CountingTlb::default()).unwrap(),
            );
            let other = {
                let (slots, tables) = (slots.clone(), tables.clone());
                loom::thread::spawn(move || theirs(&slots, &tables))
            };
            mine(&slots, &tables);
            other.join().unwrap();
            assert_eq!(slots.depth(0), Some(0), "the stack is empty again");
            for (w, word) in tables.words.iter().enumerate() {
                assert_eq!(word.load(Ordering::Acquire), 0, "word {w} left mapped");
            }
        });
        let n = executions.load(Relaxed);
        println!("loom {name}: {n} executions explored");
        assert!(n > 0, "{name}: nothing explored");
    }

    /// One thread's map fails after claiming a depth (the failure path)
    /// and maps again; the other maps and unmaps on the same CPU index.
    #[test]
    fn local_failed_push_against_push_same_cpu() {
        explore(
            "local_failed_push_against_push_same_cpu",
            |slots, tables| {
                assert!(matches!(
                    slots.map(0, unmappable()),
                    Err(KmapError::Entry(_) | KmapError::Exhausted)
                ));
                map_check_unmap(slots, tables, frame(0x1000_0000));
            },
            |slots, tables| map_check_unmap(slots, tables, frame(0x1000_1000)),
        );
    }

    /// Both threads map and unmap on the same CPU index (pops racing
    /// pushes).
    #[test]
    fn local_push_pop_against_push_pop_same_cpu() {
        explore(
            "local_push_pop_against_push_pop_same_cpu",
            |slots, tables| map_check_unmap(slots, tables, frame(0x1000_0000)),
            |slots, tables| map_check_unmap(slots, tables, frame(0x1000_1000)),
        );
    }
}
