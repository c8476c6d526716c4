//! Shared by the kernel-sync tests: a table access that interrupts the
//! code using it after a chosen load, as an interrupt or NMI would.

use std::cell::Cell;

use paging_core::{AccessError, PhysFrame, RawTable, TableAccess};
use paging_sim::{SimRam, SimTable};

/// A table access that runs `nested` once, right after the `at`-th load
/// made through it: an interrupt (or NMI) arriving mid-way.
pub struct Interrupting<'r, 'n> {
    /// The memory the tables are in.
    pub ram: &'r SimRam,
    /// Loads made so far.
    pub loads: Cell<usize>,
    /// After which load (counting from 0) `nested` runs.
    pub at: usize,
    /// What interrupts, once.
    pub nested: Cell<Option<&'n dyn Fn()>>,
}

pub struct InterruptingTable<'a, 'r, 'n> {
    outer: &'a Interrupting<'r, 'n>,
    table: SimTable<'r>,
}

impl<'r, 'n> Interrupting<'r, 'n> {
    /// An access to `ram` that runs `nested` after load `at` (never, with
    /// `None` or `usize::MAX`).
    pub fn new(ram: &'r SimRam, at: usize, nested: Option<&'n dyn Fn()>) -> Self {
        Self {
            ram,
            loads: Cell::new(0),
            at,
            nested: Cell::new(nested),
        }
    }
}

impl InterruptingTable<'_, '_, '_> {
    fn tick(&self) {
        let n = self.outer.loads.get();
        self.outer.loads.set(n + 1);
        if n == self.outer.at
            && let Some(f) = self.outer.nested.take()
        {
            f();
        }
    }
}

impl RawTable for InterruptingTable<'_, '_, '_> {
    fn load32(&self, w: usize) -> u32 {
        let v = self.table.load32(w);
        self.tick();
        v
    }
    fn store32(&self, w: usize, v: u32) {
        self.table.store32(w, v)
    }
    fn swap32(&self, w: usize, v: u32) -> u32 {
        self.table.swap32(w, v)
    }
    fn compare_exchange32(&self, w: usize, current: u32, new: u32) -> Result<u32, u32> {
        self.table.compare_exchange32(w, current, new)
    }
    fn load64(&self, e: usize) -> u64 {
        let v = self.table.load64(e);
        self.tick();
        v
    }
    fn store64(&self, e: usize, v: u64) {
        self.table.store64(e, v)
    }
    fn swap64(&self, e: usize, v: u64) -> u64 {
        self.table.swap64(e, v)
    }
}

impl<'r, 'n> TableAccess for Interrupting<'r, 'n> {
    type Table<'a>
        = InterruptingTable<'a, 'r, 'n>
    where
        Self: 'a;
    fn table(&self, frame: PhysFrame) -> Result<Self::Table<'_>, AccessError> {
        Ok(InterruptingTable {
            outer: self,
            table: SimTable::new(self.ram, frame),
        })
    }
}
