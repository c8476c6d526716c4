//! Page-table views of simulated RAM: [`SimTable`] (one frame as a
//! [`RawTable`]) and [`SimAccess`] (the physical view, as a [`TableAccess`]).
//!
//! An observed access calls a test's closure after every store, so the test
//! can run the simulated MMU on each intermediate state of a multi-store
//! update (a torn PAE entry is then a failed assertion, not a rare crash).

use core::fmt;
use std::sync::atomic::Ordering;

use super::ram::{FrameWords, SimRam};
use paging_core::access::{AccessError, TableAccess};
use paging_core::addr::{PhysAddr, PhysFrame};
use paging_core::table::{QWORDS_PER_TABLE, RawTable, WORDS_PER_TABLE};

/// Which [`RawTable`] operation an [`ObservedStore`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StoreOp {
    /// `store32`: `index` is a 32-bit word index.
    Store32,
    /// `swap32`: `index` is a 32-bit word index.
    Swap32,
    /// A `compare_exchange32` that stored: `index` is a 32-bit word index
    /// (one that found another value stores nothing and is not reported).
    CompareExchange32,
    /// `store64`: `index` is a 64-bit entry index.
    Store64,
    /// `swap64`: `index` is a 64-bit entry index.
    Swap64,
}

impl StoreOp {
    /// Whether the operation writes 64 bits.
    pub const fn is_64(self) -> bool {
        matches!(self, Self::Store64 | Self::Swap64)
    }
}

/// One store through an observed [`SimTable`], reported after it happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ObservedStore {
    /// The table frame written.
    pub frame: PhysFrame,
    /// The operation.
    pub op: StoreOp,
    /// Word index (32-bit ops) or entry index (64-bit ops), masked into the
    /// table.
    pub index: usize,
    /// The value before the store (zero-extended for 32-bit ops).
    pub old: u64,
    /// The value stored (zero-extended for 32-bit ops).
    pub new: u64,
}

impl ObservedStore {
    /// The physical address of the word or entry written.
    pub fn addr(&self) -> PhysAddr {
        let width = if self.op.is_64() { 8 } else { 4 };
        PhysAddr::new_truncate(self.frame.start_address().as_u64() + (self.index as u64) * width)
    }

    /// The 64-bit entry (index in a PAE table) that contains the write.
    pub const fn entry64(&self) -> usize {
        if self.op.is_64() {
            self.index
        } else {
            self.index / 2
        }
    }
}

/// The closure an observed access calls after every store.
pub type StoreObserver<'r> = &'r (dyn Fn(ObservedStore) + Sync);

/// One 4 KiB frame of [`SimRam`] viewed as a page table.
///
/// 32-bit word `w` is the low half of qword `w / 2` when `w` is even and the
/// high half when it is odd (little-endian, as on x86). Every store and swap
/// is one atomic step on the containing qword: no other thread, and no
/// simulated MMU, ever sees half of a 32-bit store.
#[derive(Clone, Copy)]
pub struct SimTable<'r> {
    words: &'r FrameWords,
    frame: PhysFrame,
    observer: Option<StoreObserver<'r>>,
}

impl fmt::Debug for SimTable<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimTable")
            .field("frame", &self.frame)
            .field("observed", &self.observer.is_some())
            .finish()
    }
}

impl<'r> SimTable<'r> {
    /// The table in `frame` (storage is allocated if the frame was never
    /// written).
    pub fn new(ram: &'r SimRam, frame: PhysFrame) -> Self {
        Self {
            words: ram.frame_or_alloc(frame),
            frame,
            observer: None,
        }
    }

    /// As [`new`](Self::new), calling `observer` after every store.
    pub fn observed(ram: &'r SimRam, frame: PhysFrame, observer: StoreObserver<'r>) -> Self {
        Self {
            observer: Some(observer),
            ..Self::new(ram, frame)
        }
    }

    /// The frame this table lives in.
    pub fn frame(&self) -> PhysFrame {
        self.frame
    }

    fn report(&self, op: StoreOp, index: usize, old: u64, new: u64) {
        if let Some(observer) = self.observer {
            observer(ObservedStore {
                frame: self.frame,
                op,
                index,
                old,
                new,
            });
        }
    }

    /// Replace one half of a qword atomically, returning the old half.
    fn replace32(&self, word: usize, value: u32) -> u32 {
        let word = word % WORDS_PER_TABLE;
        let shift = 32 * (word % 2) as u32;
        let mask = 0xFFFF_FFFFu64 << shift;
        let new = u64::from(value) << shift;
        let update = |q: u64| Some((q & !mask) | new);
        let old =
            match self.words[word / 2].fetch_update(Ordering::SeqCst, Ordering::SeqCst, update) {
                Ok(q) | Err(q) => q,
            };
        (old >> shift) as u32
    }
}

impl RawTable for SimTable<'_> {
    fn load32(&self, word: usize) -> u32 {
        let word = word % WORDS_PER_TABLE;
        (self.words[word / 2].load(Ordering::SeqCst) >> (32 * (word % 2))) as u32
    }

    fn store32(&self, word: usize, value: u32) {
        let old = self.replace32(word, value);
        self.report(
            StoreOp::Store32,
            word % WORDS_PER_TABLE,
            old.into(),
            value.into(),
        );
    }

    fn swap32(&self, word: usize, value: u32) -> u32 {
        let old = self.replace32(word, value);
        self.report(
            StoreOp::Swap32,
            word % WORDS_PER_TABLE,
            old.into(),
            value.into(),
        );
        old
    }

    fn compare_exchange32(&self, word: usize, current: u32, new: u32) -> Result<u32, u32> {
        let word = word % WORDS_PER_TABLE;
        let shift = 32 * (word % 2) as u32;
        let mask = 0xFFFF_FFFFu64 << shift;
        let update = |q: u64| {
            ((q >> shift) as u32 == current).then_some((q & !mask) | u64::from(new) << shift)
        };
        match self.words[word / 2].fetch_update(Ordering::SeqCst, Ordering::SeqCst, update) {
            Ok(_) => {
                self.report(StoreOp::CompareExchange32, word, current.into(), new.into());
                Ok(current)
            }
            Err(q) => Err((q >> shift) as u32),
        }
    }

    fn load64(&self, entry: usize) -> u64 {
        self.words[entry % QWORDS_PER_TABLE].load(Ordering::SeqCst)
    }

    fn store64(&self, entry: usize, value: u64) {
        let entry = entry % QWORDS_PER_TABLE;
        let old = self.words[entry].swap(value, Ordering::SeqCst);
        self.report(StoreOp::Store64, entry, old, value);
    }

    fn swap64(&self, entry: usize, value: u64) -> u64 {
        let entry = entry % QWORDS_PER_TABLE;
        let old = self.words[entry].swap(value, Ordering::SeqCst);
        self.report(StoreOp::Swap64, entry, old, value);
        old
    }
}

/// The physical view of [`SimRam`] as a [`TableAccess`]: every table frame is
/// reached directly (like a kernel's direct map), optionally only below a
/// limit (a lowmem-only direct map), optionally reporting every store.
#[derive(Clone, Copy)]
pub struct SimAccess<'r> {
    ram: &'r SimRam,
    limit: Option<u64>,
    observer: Option<StoreObserver<'r>>,
}

impl fmt::Debug for SimAccess<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimAccess")
            .field("limit", &self.limit)
            .field("observed", &self.observer.is_some())
            .finish()
    }
}

impl<'r> SimAccess<'r> {
    /// Reach every frame of `ram`.
    pub fn new(ram: &'r SimRam) -> Self {
        Self {
            ram,
            limit: None,
            observer: None,
        }
    }

    /// Reach only frames that end at or below physical address `limit`;
    /// others are [`AccessError::Unreachable`] (a lowmem-only direct map).
    pub fn below(ram: &'r SimRam, limit: u64) -> Self {
        Self {
            limit: Some(limit),
            ..Self::new(ram)
        }
    }

    /// Reach every frame of `ram`, calling `observer` after every store or
    /// swap made through the tables handed out.
    ///
    /// ```
    /// use paging_sim::{ObservedStore, SimAccess, SimRam};
    /// use paging_core::{PhysAddr, PhysFrame, RawTable, TableAccess};
    /// use std::sync::Mutex;
    ///
    /// let ram = SimRam::new();
    /// let seen = Mutex::new(Vec::new());
    /// let log = |s: ObservedStore| seen.lock().unwrap().push(s.new);
    /// let access = SimAccess::observed(&ram, &log);
    /// let frame = PhysFrame::from_start_address(PhysAddr::new(0x5000).unwrap()).unwrap();
    /// let table = access.table(frame).unwrap();
    /// table.store32(1, 7);
    /// table.store64(3, 9);
    /// assert_eq!(*seen.lock().unwrap(), [7, 9]);
    /// ```
    pub fn observed(ram: &'r SimRam, observer: StoreObserver<'r>) -> Self {
        Self {
            observer: Some(observer),
            ..Self::new(ram)
        }
    }

    /// This access with `observer` called after every store.
    pub fn with_observer(self, observer: StoreObserver<'r>) -> Self {
        Self {
            observer: Some(observer),
            ..self
        }
    }

    /// The RAM behind this access.
    pub fn ram(&self) -> &'r SimRam {
        self.ram
    }

    /// The first physical address this access cannot reach, if limited.
    pub fn limit(&self) -> Option<u64> {
        self.limit
    }
}

// SAFETY: simulated RAM is a host data structure; no CPU running this
// program walks the tables in it.
unsafe impl paging_core::IsolatedTables for SimAccess<'_> {}

impl TableAccess for SimAccess<'_> {
    type Table<'a>
        = SimTable<'a>
    where
        Self: 'a;

    fn table(&self, frame: PhysFrame) -> Result<SimTable<'_>, AccessError> {
        if let Some(limit) = self.limit {
            let end = frame.start_address().as_u64() + 4096;
            if end > limit {
                return Err(AccessError::Unreachable(frame));
            }
        }
        Ok(SimTable {
            words: self.ram.frame_or_alloc(frame),
            frame,
            observer: self.observer,
        })
    }
}
