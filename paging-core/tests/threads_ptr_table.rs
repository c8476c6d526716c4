//! Several threads on one table through `PtrTable`, the way several CPUs
//! share page tables. Run under Miri (`cargo xtask miri`) these are the
//! data-race checks of issue 19: every access to table memory must be
//! atomic, so Miri's race detector has nothing to report. Under plain
//! `cargo test` they check that every value read is one that was written.
#![cfg(test)]

use std::sync::Arc;
use std::thread;

use paging_core::{OffsetAccess, PhysAddr, PhysFrame, PtrTable, RawTable, TableAccess};

/// One 4 KiB table frame, shared by the threads.
#[repr(C, align(4096))]
struct Frame([u64; 512]);

/// A table frame on the heap, shared by every thread of a test.
struct Shared(*mut Frame);

// SAFETY: the frame is only reached through `PtrTable` (atomic accesses)
// while threads share it, and freed after they have all been joined.
unsafe impl Send for Shared {}
// SAFETY: as for `Send`.
unsafe impl Sync for Shared {}

impl Shared {
    fn new() -> Arc<Self> {
        Arc::new(Self(Box::into_raw(Box::new(Frame([0; 512])))))
    }

    fn table(&self) -> PtrTable<'_> {
        // SAFETY: the frame is 4096-aligned, lives as long as `self`, and is
        // only reached through `PtrTable`s.
        unsafe { PtrTable::new(self.0.cast()) }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // SAFETY: made by `Box::into_raw` in `new`; every thread is gone.
        drop(unsafe { Box::from_raw(self.0) });
    }
}

const ROUNDS: u32 = if cfg!(miri) { 8 } else { 1000 };

/// Two writers and a reader on one word: the reader only ever sees a value
/// one of them stored.
#[test]
fn store32_against_store32_and_load32() {
    let shared = Shared::new();
    let writers: Vec<_> = [1u32, 2]
        .into_iter()
        .map(|id| {
            let shared = Arc::clone(&shared);
            thread::spawn(move || {
                for i in 0..ROUNDS {
                    shared.table().store32(7, id << 16 | i);
                }
            })
        })
        .collect();
    for _ in 0..ROUNDS {
        let v = shared.table().load32(7);
        assert!(v == 0 || matches!(v >> 16, 1 | 2) && v & 0xFFFF < ROUNDS);
    }
    for w in writers {
        w.join().unwrap();
    }
    assert!(matches!(shared.table().load32(7) >> 16, 1 | 2));
}

/// `swap32` (what an unmap does) against `load32` (a concurrent walk) and
/// `store32`: every swap returns a value that was stored, none twice.
#[test]
fn swap32_against_load32_and_store32() {
    let shared = Shared::new();
    let swapper = {
        let shared = Arc::clone(&shared);
        thread::spawn(move || {
            (0..ROUNDS)
                .map(|i| shared.table().swap32(3, 0x1000_0000 | i))
                .collect::<Vec<_>>()
        })
    };
    for i in 0..ROUNDS {
        let t = shared.table();
        let seen = t.load32(3);
        assert!(seen == 0 || seen & 0xF000_0000 != 0);
        t.store32(5, i);
    }
    let old = swapper.join().unwrap();
    assert_eq!(old[0], 0);
    assert!(old.windows(2).all(|w| w[1] == w[0] + 1 || w[0] == 0));
    assert_eq!(shared.table().load32(5), ROUNDS - 1);
}

/// 64-bit entries written as two ordered halves (high, then low with P)
/// while another thread reads them with `load64`: a reader never gets a
/// present entry that was not written.
#[test]
fn ordered_halves_against_load64() {
    let shared = Shared::new();
    let entries = [0x0000_0001_0000_5003u64, 0x0000_0002_0000_7003];
    let writer = {
        let shared = Arc::clone(&shared);
        thread::spawn(move || {
            let t = shared.table();
            for i in 0..ROUNDS as usize {
                let new = entries[i % 2];
                // Present -> not present: P goes first.
                t.swap32(2, 0);
                t.store32(3, 0);
                // Not present -> present: P goes last.
                t.store32(3, (new >> 32) as u32);
                t.store32(2, new as u32);
            }
        })
    };
    for _ in 0..ROUNDS {
        let v = shared.table().load64(1);
        assert!(v & 1 == 0 || entries.contains(&v), "torn entry {v:#x}");
    }
    writer.join().unwrap();
}

/// `swap64` (a present entry replaced by another, `cmpxchg8b` on i586)
/// from two threads: every exchange returns a whole entry one of them
/// stored. (A `swap64` racing a 32-bit access to the same entry is the one
/// mixed-size access the crates make, with the MMU as the only party that
/// may race it: see `PtrTable::new` and `docs/safety.md`.)
#[test]
fn swap64_against_swap64() {
    let shared = Shared::new();
    let entries = [0x0000_0001_0000_5003u64, 0x0000_0002_0000_7003];
    shared.table().store64(9, entries[0]);
    let swappers: Vec<_> = (0..2)
        .map(|k| {
            let shared = Arc::clone(&shared);
            thread::spawn(move || {
                for i in 0..ROUNDS as usize {
                    let old = shared.table().swap64(9, entries[(i + k) % 2]);
                    assert!(entries.contains(&old), "torn entry {old:#x}");
                }
            })
        })
        .collect();
    for s in swappers {
        s.join().unwrap();
    }
    assert!(entries.contains(&shared.table().load64(9)));
}

/// `store_run32` on one part of a table while another thread reads and
/// writes another word of it: a run no longer hands out a `&mut [u32]`
/// over memory someone else reaches.
#[test]
fn store_run_against_load32() {
    let shared = Shared::new();
    let runner = {
        let shared = Arc::clone(&shared);
        thread::spawn(move || {
            let t = shared.table();
            for i in 0..ROUNDS.min(4) {
                t.store_run32(0, 64, i, 0x1000);
                t.store_run64(40, 8, u64::from(i), 0x1000);
            }
        })
    };
    for _ in 0..ROUNDS {
        let v = shared.table().load32(10);
        assert!(v == 0 || v & 0xFFF < 4 && v >> 12 == 10);
    }
    runner.join().unwrap();
    assert_eq!(shared.table().load32(63), 63 * 0x1000 + ROUNDS.min(4) - 1);
    assert_eq!(
        shared.table().load64(47),
        7 * 0x1000 + u64::from(ROUNDS.min(4)) - 1
    );
}

/// The same through `OffsetAccess` copies, the way a kernel's CPUs each
/// hold one: two threads store into one table while a third reads.
#[test]
fn offset_access_copies_on_threads() {
    let shared = Shared::new();
    // SAFETY: the one frame at `shared.0` (physical 0..4096) is valid until
    // `shared` is dropped, after the threads, and only reached atomically.
    let access = unsafe { OffsetAccess::new(shared.0 as usize, 4096) };
    let frame = PhysFrame::from_start_address(PhysAddr::new(0).unwrap()).unwrap();
    thread::scope(|s| {
        for id in 1..=2u32 {
            s.spawn(move || {
                for i in 0..ROUNDS {
                    access.table(frame).unwrap().store32(id as usize, i);
                }
            });
        }
        for _ in 0..ROUNDS {
            let t = access.table(frame).unwrap();
            assert!(t.load32(1) < ROUNDS && t.load32(2) < ROUNDS);
        }
    });
    assert_eq!(shared.table().load32(1), ROUNDS - 1);
    drop(shared);
}
