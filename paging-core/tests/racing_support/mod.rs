//! Shared by the mapper's integration tests: a table access through which
//! "the CPU" sets Accessed/Dirty bits in an entry at the very moment the
//! mapper exchanges an entry (another CPU's page walk landing between the
//! mapper's read of a table and its write).
// Each test crate uses a different subset of these helpers.
#![allow(dead_code)]

use paging_core::PagingMode;
use paging_core::TableAccess;
use paging_core::table::RawTable;
use paging_sim::SimRam;

use crate::mapper_support::Rig;

/// A table access that, when the mapper exchanges entry `trigger` (table
/// frame, index), first lets "the CPU" OR `bits` into the low word of
/// entry `mark`: the Accessed/Dirty update another CPU's walk makes
/// between the mapper's read of a table and its write of the entry.
pub struct CpuMarksDuringTheWrite<'r, M> {
    inner: paging_sim::SimAccess<'r>,
    trigger: (paging_core::PhysFrame, usize),
    mark: (paging_core::PhysFrame, usize),
    bits: std::cell::Cell<u32>,
    /// Bits for the exchange after the armed race (see `arm_next`).
    next: std::cell::Cell<u32>,
    _mode: std::marker::PhantomData<M>,
}

/// One table of [`CpuMarksDuringTheWrite`].
pub struct MarkingTable<'a, 'r, M> {
    inner: paging_sim::SimTable<'a>,
    frame: paging_core::PhysFrame,
    access: &'a CpuMarksDuringTheWrite<'r, M>,
}

impl<'r, M: PagingMode> CpuMarksDuringTheWrite<'r, M> {
    fn new(
        ram: &'r SimRam,
        trigger: paging_core::Slot,
        mark: paging_core::Slot,
        bits: u64,
    ) -> Self {
        Self {
            inner: paging_sim::SimAccess::new(ram),
            trigger: (trigger.table, trigger.index),
            mark: (mark.table, mark.index),
            bits: std::cell::Cell::new(bits as u32),
            next: std::cell::Cell::new(0),
            _mode: std::marker::PhantomData,
        }
    }

    /// Let "the CPU" OR `bits` into `mark` at the next exchange of
    /// `trigger` (again, after an earlier race).
    pub fn arm(&self, bits: u64) {
        self.bits.set(bits as u32);
    }

    /// The bits still waiting for their exchange (0: the race happened).
    pub fn armed(&self) -> u64 {
        u64::from(self.bits.get())
    }

    /// A second race: once the armed one has happened, the CPU ORs `bits`
    /// into whichever entry the mapper exchanges next, just before that
    /// exchange (a walk through that very entry).
    pub fn arm_next(&self, bits: u64) {
        self.next.set(bits as u32);
    }

    /// The bits of [`arm_next`](Self::arm_next) still waiting (0: that race
    /// happened too).
    pub fn armed_next(&self) -> u64 {
        u64::from(self.next.get())
    }

    fn word(index: usize) -> usize {
        index * M::ENTRY_BYTES / 4
    }
}

impl<M: PagingMode> TableAccess for CpuMarksDuringTheWrite<'_, M> {
    type Table<'a>
        = MarkingTable<'a, 'a, M>
    where
        Self: 'a;

    fn table(
        &self,
        frame: paging_core::PhysFrame,
    ) -> Result<MarkingTable<'_, '_, M>, paging_core::access::AccessError> {
        Ok(MarkingTable {
            inner: self.inner.table(frame)?,
            frame,
            access: self,
        })
    }
}

impl<M: PagingMode> MarkingTable<'_, '_, M> {
    fn exchanging(&self, word: usize) {
        let a = self.access;
        let trigger = (a.trigger.0, CpuMarksDuringTheWrite::<M>::word(a.trigger.1));
        if (self.frame, word) == trigger && a.bits.get() != 0 {
            let table = a.inner.table(a.mark.0).unwrap();
            let w = CpuMarksDuringTheWrite::<M>::word(a.mark.1);
            table.store32(w, table.load32(w) | a.bits.take());
            return;
        }
        if a.bits.get() == 0 {
            let next = a.next.take();
            if next != 0 {
                self.inner.store32(word, self.inner.load32(word) | next);
            }
        }
    }
}

impl<M: PagingMode> RawTable for MarkingTable<'_, '_, M> {
    fn load32(&self, word: usize) -> u32 {
        self.inner.load32(word)
    }
    fn store32(&self, word: usize, value: u32) {
        self.inner.store32(word, value)
    }
    fn swap32(&self, word: usize, value: u32) -> u32 {
        self.exchanging(word);
        self.inner.swap32(word, value)
    }
    fn compare_exchange32(&self, word: usize, current: u32, new: u32) -> Result<u32, u32> {
        self.exchanging(word);
        self.inner.compare_exchange32(word, current, new)
    }
    fn load64(&self, entry: usize) -> u64 {
        self.inner.load64(entry)
    }
    fn store64(&self, entry: usize, value: u64) {
        self.inner.store64(entry, value)
    }
    fn swap64(&self, entry: usize, value: u64) -> u64 {
        self.exchanging(2 * entry);
        self.inner.swap64(entry, value)
    }
}

/// A mapper over `rig`'s tables through [`CpuMarksDuringTheWrite`].
pub fn racing_mapper<M: PagingMode>(
    rig: &Rig<M>,
    trigger: paging_core::Slot,
    mark: paging_core::Slot,
    bits: u64,
) -> paging_core::Mapper<M, CpuMarksDuringTheWrite<'static, M>> {
    let racing = CpuMarksDuringTheWrite::<M>::new(rig.ram, trigger, mark, bits);
    // SAFETY: simulated RAM, and nothing else writes these tables while the
    // mapper is used.
    unsafe {
        paging_core::Mapper::<M, _>::new(
            rig.mapper.root(),
            racing,
            paging_core::CpuFeatures::full::<M>(),
        )
    }
    .unwrap()
}
