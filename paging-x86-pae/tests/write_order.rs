//! The tear-free write property of PAE entries.
//!
//! A recording `RawTable` applies every store and exchange to a copy of the
//! table, one 32-bit half at a time (a plain 64-bit store is recorded as two
//! halves in the worse order), and keeps the watched entry's value after
//! each step: exactly what another CPU's page walk could read. For many
//! (old, new) pairs, every such state must be non-present, or exactly the
//! old entry, or exactly the new one.

use std::cell::{Cell, RefCell};
use std::vec::Vec;

use paging_core::{Entry, RawTable};
use paging_x86_pae::{Pde, Pdpte, Pte};

const WATCHED: usize = 5;
const P: u64 = 1;
/// Accessed and Dirty: what the MMU sets in a present PDE/PTE.
const AD: u64 = 1 << 5 | 1 << 6;
/// Execute-disable, bit 63.
const XD: u64 = 1 << 63;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Load64,
    Store32 { high: bool },
    Swap32 { high: bool },
    Store64,
    Swap64,
}

struct Recorder {
    words: RefCell<Vec<u32>>,
    /// Every value the watched entry held, in order (the initial one first).
    states: RefCell<Vec<u64>>,
    ops: RefCell<Vec<Op>>,
    /// Bits the "MMU" sets in the watched entry right after the first
    /// software read, if the entry is present then.
    mmu_sets: Cell<u64>,
}

impl Recorder {
    fn new(initial: u64, mmu_sets: u64) -> Self {
        // Neighbours hold a recognisable pattern that must survive.
        let mut words: Vec<u32> = (0..1024).map(|i| 0xA5A5_0000 | i).collect();
        words[2 * WATCHED] = initial as u32;
        words[2 * WATCHED + 1] = (initial >> 32) as u32;
        Self {
            words: RefCell::new(words),
            states: RefCell::new(vec![initial]),
            ops: RefCell::new(Vec::new()),
            mmu_sets: Cell::new(mmu_sets),
        }
    }

    fn entry(&self) -> u64 {
        let w = self.words.borrow();
        w[2 * WATCHED] as u64 | (w[2 * WATCHED + 1] as u64) << 32
    }

    fn write_word(&self, word: usize, value: u32) -> u32 {
        let old = std::mem::replace(&mut self.words.borrow_mut()[word], value);
        if word / 2 == WATCHED {
            self.states.borrow_mut().push(self.entry());
        }
        old
    }

    fn op(&self, op: Op) {
        self.ops.borrow_mut().push(op);
    }

    fn neighbours_intact(&self) -> bool {
        let w = self.words.borrow();
        (0..1024)
            .filter(|&i| i / 2 != WATCHED)
            .all(|i| w[i] == 0xA5A5_0000 | i as u32)
    }
}

impl RawTable for Recorder {
    fn load32(&self, word: usize) -> u32 {
        self.words.borrow()[word]
    }
    fn store32(&self, word: usize, value: u32) {
        self.op(Op::Store32 {
            high: word % 2 == 1,
        });
        self.write_word(word, value);
    }
    fn swap32(&self, word: usize, value: u32) -> u32 {
        self.op(Op::Swap32 {
            high: word % 2 == 1,
        });
        self.write_word(word, value)
    }
    fn compare_exchange32(&self, _: usize, _: u32, _: u32) -> Result<u32, u32> {
        panic!("entry writes never compare-and-swap")
    }
    fn load64(&self, entry: usize) -> u64 {
        self.op(Op::Load64);
        let w = self.words.borrow();
        let value = w[2 * entry] as u64 | (w[2 * entry + 1] as u64) << 32;
        drop(w);
        let sets = self.mmu_sets.take();
        if entry == WATCHED && value & P != 0 && sets != 0 {
            // The MMU uses the entry just after software read it.
            self.write_word(2 * entry, (value | sets) as u32);
        }
        value
    }
    fn store64(&self, entry: usize, value: u64) {
        // Two halves, in no promised order: record the tearing order.
        self.op(Op::Store64);
        self.write_word(2 * entry + 1, (value >> 32) as u32);
        self.write_word(2 * entry, value as u32);
    }
    fn swap64(&self, entry: usize, value: u64) -> u64 {
        self.op(Op::Swap64);
        let lo = self.write_word_silent(2 * entry, value as u32);
        let hi = self.write_word(2 * entry + 1, (value >> 32) as u32);
        lo as u64 | (hi as u64) << 32
    }
}

impl Recorder {
    /// Half of an atomic 64-bit exchange: the state between the halves is
    /// never visible, so it is not recorded.
    fn write_word_silent(&self, word: usize, value: u32) -> u32 {
        std::mem::replace(&mut self.words.borrow_mut()[word], value)
    }
}

/// Replace `old` with `new` through `E::store` and check every state a walk
/// could have seen. Returns the operations used.
fn check<E: Entry>(old: u64, new: u64, mmu: bool) -> Vec<Op> {
    let sets = if mmu { AD } else { 0 };
    let rec = Recorder::new(old, sets);
    let returned = E::store(&rec, WATCHED, E::from_raw(new)).raw();
    // What the entry held just before the software write: `old`, plus what
    // the MMU set if it was present.
    let seen_old = if old & P != 0 { old | sets } else { old };
    let states = rec.states.borrow();
    // Between two present entries that differ in XD only (and the low
    // half), one more state is allowed: the old or the new entry with XD
    // set, which grants nothing both of them deny.
    let xd_only = old & P != 0 && new & P != 0 && (old ^ new) >> 32 == XD >> 32;
    let xd_step = |state: u64| xd_only && [old | XD, seen_old | XD, new | XD].contains(&state);
    for (step, &state) in states.iter().enumerate() {
        assert!(
            state & P == 0 || state == old || state == seen_old || state == new || xd_step(state),
            "{old:#018x} -> {new:#018x}: step {step} exposes present {state:#018x} (states {states:x?}, ops {:?})",
            rec.ops.borrow()
        );
    }
    assert_eq!(rec.entry(), new, "{old:#x} -> {new:#x}: final state");
    assert_eq!(returned, seen_old, "{old:#x} -> {new:#x}: returned value");
    assert!(
        rec.neighbours_intact(),
        "{old:#x} -> {new:#x}: touched another entry"
    );
    rec.ops.borrow().clone()
}

/// Interesting entries: absent, non-present with data in either half, and
/// present ones whose halves differ from each other in every combination,
/// including addresses above 4 GiB and XD.
const VALUES: [u64; 10] = [
    0,
    0x0000_000F_ABCD_E000, // not present, both halves used
    0x8000_0000_0000_0000, // not present, only XD
    0x0000_0001_2345_6003, // 0x1_2345_6000 | RW | P
    0x0000_0000_8765_4001, // 0x0_8765_4000 | P
    0x0000_0002_2345_6003, // same low half as 0x1_2345_6003
    0x0000_0001_8765_4001, // same high half as 0x1_2345_6003
    0x8000_000F_FFFF_F007, // last 36-bit frame, U/S, R/W, XD
    0x800F_FFFF_FFFF_F067, // highest 52-bit frame, XD, A, D
    0x0000_0008_0000_0001, // 32 GiB, low address bits zero
];

#[test]
fn no_walk_ever_sees_a_torn_present_pte_or_pde() {
    // Under Miri (`cargo xtask miri`) every other value keeps the run short.
    let values = || VALUES.into_iter().step_by(if cfg!(miri) { 2 } else { 1 });
    for old in values() {
        for new in values() {
            for mmu in [false, true] {
                check::<Pte>(old, new, mmu);
                check::<Pde>(old, new, mmu);
            }
        }
    }
}

#[test]
fn no_walk_ever_sees_a_torn_present_pdpte() {
    let pdptes = VALUES.map(|v| v & !0x8000_0000_0000_01E6);
    for old in pdptes {
        for new in pdptes {
            check::<Pdpte>(old, new, false);
        }
    }
}

#[test]
fn random_pairs_keep_the_property() {
    // xorshift64*: deterministic, so a failure is reproducible.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    };
    // Under Miri (`cargo xtask miri`) a sample keeps the run short.
    let pairs = if cfg!(miri) { 50 } else { 5000 };
    for _ in 0..pairs {
        let (old, new) = (next(), next());
        let mmu = old & 2 != 0;
        check::<Pte>(old, new, mmu);
        check::<Pde>(old, new, mmu);
    }
}

#[test]
fn each_transition_uses_the_documented_write_order() {
    let absent = 0;
    let a = 0x0000_0001_2345_6003;
    let b = 0x0000_0000_8765_4001;
    use Op::*;
    // Becoming present: high half first, the low half (with P) last.
    assert_eq!(
        check::<Pte>(absent, a, false),
        [Load64, Store32 { high: true }, Store32 { high: false }]
    );
    // Stopping being present: P cleared first by an exchange, then high.
    assert_eq!(
        check::<Pte>(a, absent, true),
        [Load64, Swap32 { high: false }, Store32 { high: true }]
    );
    // Present to present: one atomic 64-bit exchange.
    assert_eq!(check::<Pde>(a, b, true), [Load64, Swap64]);
    assert_eq!(check::<Pdpte>(a & !2, b, false), [Load64, Swap64]);
    // Never a plain 64-bit store on a live table.
    for old in VALUES {
        for new in VALUES {
            assert!(!check::<Pte>(old, new, false).contains(&Store64));
        }
    }
}

#[test]
fn init_is_a_plain_store_that_never_reads() {
    let rec = Recorder::new(0xDEAD_BEEF_DEAD_BEEF, 0);
    Pte::init(&rec, WATCHED, Pte::from_raw(0x0000_0001_2345_6003));
    assert_eq!(*rec.ops.borrow(), [Op::Store64]);
    assert_eq!(rec.entry(), 0x0000_0001_2345_6003);
    assert_eq!(Pte::load(&rec, WATCHED).raw(), 0x0000_0001_2345_6003);
}

/// Present to present: 32-bit atomics unless the address differs in the
/// high half, so a lock-free 32-bit reader of the table never races a
/// 64-bit exchange (the mixed-size pairing of `docs/safety.md`).
#[test]
fn present_replacements_use_cmpxchg8b_only_when_the_high_address_differs() {
    let frame = 0x0000_0000_1234_5000u64;
    let cases = [
        // (old, new, whether a 64-bit exchange may be used)
        (frame | 0x3, frame | 0x1, false),            // RW -> RO
        (frame | 0x1, frame | 0x3, false),            // RO -> RW
        (frame | 0x3, XD | frame | 0x1, false),       // RW+X -> RO+XD
        (XD | frame | 0x3, frame | 0x1, false),       // RW+XD -> RO+X
        (XD | frame | 0x3, XD | frame | 0x13, false), // cache bits only
        (frame | 0x3, 0x0000_0001_2345_6003, true),   // frame above 4 GiB
        (XD | 0x0000_0002_0000_0001, 0x0000_0002_0000_0001, false), // XD only, high frame
    ];
    for (old, new, wide) in cases {
        for mmu in [false, true] {
            for ops in [check::<Pte>(old, new, mmu), check::<Pde>(old, new, mmu)] {
                assert_eq!(
                    ops.contains(&Op::Swap64),
                    wide,
                    "{old:#018x} -> {new:#018x}: ops {ops:?}"
                );
                assert!(!ops.contains(&Op::Store64), "{ops:?}");
            }
        }
    }
    // Setting XD writes the high half first; clearing it, last.
    let set = check::<Pte>(frame | 0x3, XD | frame | 0x1, false);
    assert_eq!(
        set,
        [
            Op::Load64,
            Op::Store32 { high: true },
            Op::Swap32 { high: false }
        ]
    );
    let clear = check::<Pte>(XD | frame | 0x3, frame | 0x1, false);
    assert_eq!(
        clear,
        [
            Op::Load64,
            Op::Swap32 { high: false },
            Op::Store32 { high: true }
        ]
    );
}
