//! Model check of the fixmap's per-slot compare-and-swap (issue 19, item 4)
//! with `loom`: every interleaving (up to the preemption bound) of two
//! threads setting and clearing one slot, and of an MMU reading it.
//!
//! Run with `cargo xtask loom`, or by hand:
//! `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=3 cargo test -p fixmap --test loom --release`.
//!
//! The slot's entry is one loom `AtomicU64`, and the fixmap's 32-bit
//! accesses reach its halves (a store of a half is an atomic update of the
//! 64-bit word). That is the hardware's view: software writes 32-bit halves
//! of an aligned quadword, and the MMU reads the whole entry with one
//! 64-bit access (SDM Vol. 3A 8.1.1), here a third thread's `load64`. Each
//! execution checks that
//! - of two `set`s of one slot exactly one returns `Ok`, and the other
//!   `SlotInUse` naming the winner's frame, or `SlotBusy`;
//! - of two `clear`s exactly one gets the frame, the other `NotSet` or
//!   `SlotBusy`;
//! - every present entry the MMU reads is one caller's whole entry, never
//!   one caller's high half with the other's low half (the torn entry that
//!   mapped a third frame before the compare-and-swap);
//! - the entry left at the end is what the successful calls imply.
#![cfg(loom)]

use fixmap::{ContiguousWindow, Fixmap, FixmapError, WindowBuilder, fixmap_layout};
use loom::sync::Arc;
use loom::sync::atomic::{AtomicU64, Ordering};
use paging_core::{
    AccessError, Entry, MapFlags, PagingMode, PhysAddr, PhysFrame, RawTable, TableAccess, TlbOps,
    VirtAddr,
};
use paging_sim::{Machine, SimRam};
use paging_x86_2level::TwoLevel;
use paging_x86_pae::Pae;

fixmap_layout! {
    /// One slot is enough.
    pub struct Race {
        top: 0xFFFF_F000;
        /// The contested slot.
        SLOT;
    }
}

/// The slot's index in its PTE table (the last entry of the table in both
/// modes: the slot is the page below the guard hole at 0xFFFF_F000).
fn slot_entry<M: PagingMode>() -> usize {
    let entries = 4096 / M::ENTRY_BYTES;
    (0xFFFF_E000usize >> 12) % entries
}

/// The two callers' frames, A and B. In PAE both are above 4 GiB, with
/// different high halves and different low halves, so that every pairing
/// of halves is told apart; in 2-level mode, below 4 GiB.
fn frames<M: PagingMode>() -> [PhysFrame; 2] {
    if M::ENTRY_BYTES == 8 {
        [frame(0x1_0000_5000), frame(0x2_0000_7000)]
    } else {
        [frame(0x5000), frame(0x7000)]
    }
}

/// Caller A's frame and caller B's, as indexes into [`frames`].
const A: usize = 0;
const B: usize = 1;

/// The contested entry: one 64-bit word, as the MMU reads it. In 2-level
/// mode the slot is a 32-bit word and uses the low half only.
#[derive(Clone)]
struct LoomTables {
    first: PhysFrame,
    /// The 32-bit word index of the slot's low word in its table.
    word: usize,
    entry: Arc<AtomicU64>,
}

/// A view of the slot's table.
struct LoomTable<'a>(&'a LoomTables);

impl LoomTable<'_> {
    /// Which half of the entry word `word` is (0 low, 1 high); any other
    /// word of the table is a bug of the fixmap (it writes only its slot).
    fn half(&self, word: usize) -> u32 {
        match word.checked_sub(self.0.word) {
            Some(h @ (0 | 1)) => h as u32,
            _ => panic!("the fixmap reached word {word}, not its slot's"),
        }
    }

    /// Replace one half, atomically, returning the old half.
    fn update_half(&self, word: usize, f: impl Fn(u32) -> Option<u32>) -> Result<u32, u32> {
        let shift = 32 * self.half(word);
        self.0
            .entry
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |old| {
                let half = (old >> shift) as u32;
                f(half).map(|new| old & !(0xFFFF_FFFF << shift) | u64::from(new) << shift)
            })
            .map(|old| (old >> shift) as u32)
            .map_err(|old| (old >> shift) as u32)
    }
}

impl RawTable for LoomTable<'_> {
    fn load32(&self, word: usize) -> u32 {
        (self.0.entry.load(Ordering::Acquire) >> (32 * self.half(word))) as u32
    }
    fn store32(&self, word: usize, value: u32) {
        let _ = self.update_half(word, |_| Some(value));
    }
    fn swap32(&self, word: usize, value: u32) -> u32 {
        self.update_half(word, |_| Some(value)).unwrap_or_default()
    }
    fn compare_exchange32(&self, word: usize, current: u32, new: u32) -> Result<u32, u32> {
        self.update_half(word, |half| (half == current).then_some(new))
    }
    fn load64(&self, entry: usize) -> u64 {
        assert_eq!(2 * entry, self.0.word, "the fixmap reached another entry");
        self.0.entry.load(Ordering::Acquire)
    }
    fn store64(&self, entry: usize, value: u64) {
        assert_eq!(2 * entry, self.0.word, "the fixmap reached another entry");
        self.0.entry.store(value, Ordering::Release)
    }
    fn swap64(&self, entry: usize, value: u64) -> u64 {
        assert_eq!(2 * entry, self.0.word, "the fixmap reached another entry");
        self.0.entry.swap(value, Ordering::AcqRel)
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

/// A TLB that does nothing: the model is about the entry.
struct NoTlb;

impl TlbOps for NoTlb {
    fn flush_page(&self, _va: VirtAddr) {}
    fn flush_all(&self) {}
    fn flush_everything(&self) {}
}

fn frame(pa: u64) -> PhysFrame {
    PhysFrame::from_start_address(PhysAddr::new(pa).unwrap()).unwrap()
}

/// The window's PTE table, built once on a simulated machine (outside the
/// model: only its frame number is used).
fn window<M: PagingMode>() -> ContiguousWindow<M> {
    let ram = SimRam::new();
    let mut m = Machine::<M>::new(&ram);
    let (window, _) = WindowBuilder::new(VirtAddr::new(0xFFE0_0000), 1 << 32)
        .unwrap()
        .build(&mut m.mapper, &m.mmu, &mut m.alloc)
        .unwrap();
    window
}

/// The entry `set_cached(frame)` writes, as the MMU reads it.
fn entry_of<M: PagingMode>(window: &ContiguousWindow<M>, frame: PhysFrame) -> u64 {
    window.pte(frame, MapFlags::KERNEL_RW).unwrap().raw()
}

/// What one call of the model returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Set(Result<(), FixmapError>),
    Clear(Result<PhysFrame, FixmapError>),
}

/// A thread's calls: set or clear, in order.
#[derive(Debug, Clone, Copy)]
enum Call {
    /// Set the slot to caller `A`'s or `B`'s frame.
    Set(usize),
    /// Clear the slot.
    Clear,
}

/// Explores every interleaving of `calls[0]` and `calls[1]` on two
/// threads, with the slot first set to `initially` (if any) and a third
/// thread reading the entry once as the MMU does; `check` judges each
/// execution's outcomes and what the slot maps at the end (A, B or nothing;
/// anything else, a claimed or torn entry, fails here). Returns the
/// executions explored.
fn explore<M: PagingMode + Send + Sync + 'static>(
    name: &str,
    initially: Option<usize>,
    calls: [&'static [Call]; 2],
    check: fn(&[Vec<Outcome>; 2], Option<usize>, [PhysFrame; 2]),
) -> usize {
    let window = window::<M>();
    let first = window.first_frame();
    let word = slot_entry::<M>() * M::ENTRY_BYTES / 4;
    let frames = frames::<M>();
    let whole: Vec<u64> = frames.iter().map(|&f| entry_of(&window, f)).collect();
    let executions = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = executions.clone();
    loom::model::Builder::new().check(move || {
        count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tables = LoomTables {
            first,
            word,
            entry: Arc::new(AtomicU64::new(0)),
        };
        let mut fix = Fixmap::<Race, M, _>::new(tables.clone());
        fix.attach(window.clone()).unwrap();
        if let Some(who) = initially {
            fix.set_cached(Race::SLOT, frames[who], &NoTlb).unwrap();
        }
        let fix = Arc::new(fix);
        let run = move |calls: &'static [Call], fix: Arc<Fixmap<Race, M, LoomTables>>| {
            calls
                .iter()
                .map(|call| match *call {
                    Call::Set(who) => Outcome::Set(fix.set_cached(Race::SLOT, frames[who], &NoTlb)),
                    Call::Clear => Outcome::Clear(fix.clear(Race::SLOT, &NoTlb)),
                })
                .collect::<Vec<_>>()
        };
        let other = {
            let fix = fix.clone();
            let calls = calls[1];
            loom::thread::spawn(move || run(calls, fix))
        };
        let mmu = {
            let (tables, whole) = (tables.clone(), whole.clone());
            loom::thread::spawn(move || {
                // One read, placed by loom at every point of the two
                // threads' calls in turn: P set means one caller's entry,
                // whole.
                let seen = LoomTable(&tables).load64(word / 2);
                if seen & 1 != 0 && M::ENTRY_BYTES == 8 {
                    assert!(whole.contains(&seen), "the MMU saw a torn entry {seen:#x}");
                }
                if seen & 1 != 0 && M::ENTRY_BYTES == 4 {
                    let low: Vec<u64> = whole.iter().map(|w| w & 0xFFFF_FFFF).collect();
                    assert!(low.contains(&seen), "the MMU saw {seen:#x}");
                }
            })
        };
        let mine = run(calls[0], fix.clone());
        let theirs = other.join().unwrap();
        mmu.join().unwrap();
        let left = LoomTable(&tables).load64(word / 2);
        let maps = match whole.iter().position(|&w| w == left) {
            Some(who) => Some(who),
            None if left == 0 => None,
            None => panic!("the slot is left as {left:#x}, neither clear nor whole"),
        };
        check(&[mine, theirs], maps, frames);
    });
    let n = executions.load(std::sync::atomic::Ordering::Relaxed);
    println!("loom {name}: {n} executions explored");
    assert!(n > 0, "{name}: nothing explored");
    n
}

/// Two threads set the clear slot: one wins, whole.
fn set_against_set<M: PagingMode + Send + Sync + 'static>() {
    let name = format!("fixmap set vs set, {}-byte entries", M::ENTRY_BYTES);
    explore::<M>(
        &name,
        None,
        [&[Call::Set(A)], &[Call::Set(B)]],
        |out, left, frames| {
            let (a, b) = (out[0][0], out[1][0]);
            let (winner, loser) = match (a, b) {
                (Outcome::Set(Ok(())), Outcome::Set(Err(e))) => (A, e),
                (Outcome::Set(Err(e)), Outcome::Set(Ok(()))) => (B, e),
                _ => panic!("exactly one set must win: {a:?} {b:?}"),
            };
            assert!(
                matches!(loser, FixmapError::SlotInUse { current, .. } if current == frames[winner])
                    || matches!(loser, FixmapError::SlotBusy { .. }),
                "the loser got {loser:?}"
            );
            assert_eq!(left, Some(winner), "the winner's entry is left");
        },
    );
}

/// One thread clears the slot (set to A) and sets it to A again, the other
/// sets it to B: the clear gets A, exactly one set wins.
fn clear_and_set_against_set<M: PagingMode + Send + Sync + 'static>() {
    explore::<M>(
        "fixmap clear+set vs set, PAE",
        Some(A),
        [&[Call::Clear, Call::Set(A)], &[Call::Set(B)]],
        |out, left, frames| {
            assert_eq!(out[0][0], Outcome::Clear(Ok(frames[A])));
            let won: Vec<usize> = [(out[0][1], A), (out[1][0], B)]
                .iter()
                .filter(|(o, _)| *o == Outcome::Set(Ok(())))
                .map(|&(_, who)| who)
                .collect();
            assert_eq!(won.len(), 1, "exactly one set must win: {out:?}");
            assert_eq!(left, Some(won[0]), "the winner's entry is left");
        },
    );
}

/// Two threads clear the slot (set to A): one gets A, the slot ends clear.
fn clear_against_clear<M: PagingMode + Send + Sync + 'static>() {
    explore::<M>(
        "fixmap clear vs clear, PAE",
        Some(A),
        [&[Call::Clear], &[Call::Clear]],
        |out, left, frames| {
            let got: Vec<Outcome> = vec![out[0][0], out[1][0]];
            let winners = got
                .iter()
                .filter(|o| **o == Outcome::Clear(Ok(frames[A])))
                .count();
            assert_eq!(winners, 1, "exactly one clear gets the frame: {got:?}");
            assert!(got.iter().any(|o| matches!(
                o,
                Outcome::Clear(Err(
                    FixmapError::NotSet { .. } | FixmapError::SlotBusy { .. }
                ))
            )));
            assert_eq!(left, None, "the slot ends clear");
        },
    );
}

#[test]
fn fixmap_set_against_set_pae() {
    set_against_set::<Pae>();
}

#[test]
fn fixmap_set_against_set_two_level() {
    set_against_set::<TwoLevel>();
}

#[test]
fn fixmap_clear_and_set_against_set_pae() {
    clear_and_set_against_set::<Pae>();
}

#[test]
fn fixmap_clear_against_clear_pae() {
    clear_against_clear::<Pae>();
}
