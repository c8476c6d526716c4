//! A hostile world for the mapper: a [`TableAccess`] that counts, records and
//! can fail, and a [`FrameAllocator`] that hands out whatever frames it is
//! told to, in any order, and runs dry on command.
//!
//! - [`HostileAccess`] reaches every frame of a [`SimRam`] (or only those
//!   below a limit, like a lowmem-only direct map), counts every
//!   [`TableAccess::table`] call, can make exactly the k-th call fail
//!   (one transient [`AccessError`]), and records every store made through
//!   the tables it hands out ([`StoreRecord`]). The record is what lets a
//!   test state "on error nothing changed" cheaply ([`net_changes`]) and
//!   undo an operation exactly ([`undo`]) to try it again with a failure
//!   at another point.
//! - [`ScriptedAllocator`] hands out the frames of a script in order
//!   (anywhere in the 52-bit space: above 4 GiB, above a mode's MAXPHYADDR,
//!   regardless of the zone asked for), then the frames given back to it,
//!   and refuses once a budget is spent. Frames a pre-built hierarchy owns
//!   can be registered as already handed out, so the mapper may give them
//!   back. Cloning it is cheap, which is how a test rewinds it.
//!
//! ```
//! use paging_sim::{HostileAccess, ScriptedAllocator, SimRam, net_changes, undo};
//! use paging_core::{FrameAllocator, PhysAddr, PhysFrame, RawTable, TableAccess, Zone};
//!
//! let ram = SimRam::new();
//! let access = HostileAccess::new(&ram);
//! let f = PhysFrame::from_number(0x12_3456_789).unwrap(); // above 2^36
//! let mut alloc = ScriptedAllocator::new([f]);
//! let got = alloc.allocate_frame(Zone::Lowmem).unwrap();
//! assert_eq!(got, f);
//! assert!(alloc.allocate_frame(Zone::Lowmem).is_none()); // dry
//!
//! access.table(got).unwrap().store64(3, 7);
//! let log = access.take_log();
//! assert_eq!(net_changes(&log).len(), 1);
//! undo(&ram, &log);
//! assert_eq!(ram.frame_words(got)[3], 0);
//!
//! access.fail_at(Some(access.calls() + 1));
//! assert!(access.table(got).is_err()); // one transient failure
//! assert!(access.table(got).is_ok());
//! ```

use core::cell::{Cell, RefCell};
use core::fmt;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::vec::Vec;

use super::ram::SimRam;
use super::table::SimTable;
use paging_core::access::{AccessError, TableAccess};
use paging_core::addr::{PhysAddr, PhysFrame};
use paging_core::alloc::{FrameAllocator, Zone};
use paging_core::table::RawTable;

/// One store made through a [`HostileAccess`] table, as 32-bit or 64-bit
/// word at a physical address, with the value it replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreRecord {
    /// Physical address of the word (4- or 8-byte aligned).
    pub addr: u64,
    /// A 64-bit store (else 32-bit).
    pub wide: bool,
    /// The value before the store.
    pub old: u64,
    /// The value stored.
    pub new: u64,
}

/// A [`TableAccess`] over a [`SimRam`] that counts, records and fails on
/// command.
///
/// Every [`table`](TableAccess::table) call is counted; the k-th can be
/// made to fail once ([`fail_at`](Self::fail_at)), frames above a limit can
/// be made unreachable ([`set_limit`](Self::set_limit)), and every store
/// through the tables handed out is recorded ([`take_log`](Self::take_log))
/// for [`net_changes`] and [`undo`].
pub struct HostileAccess<'r> {
    ram: &'r SimRam,
    calls: Cell<u64>,
    fail_at: Cell<Option<u64>>,
    failures: Cell<u64>,
    limit: Cell<Option<u64>>,
    log: RefCell<Vec<StoreRecord>>,
}

impl fmt::Debug for HostileAccess<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HostileAccess")
            .field("calls", &self.calls.get())
            .field("fail_at", &self.fail_at.get())
            .field("logged", &self.log.borrow().len())
            .finish()
    }
}

impl<'r> HostileAccess<'r> {
    /// Reach every frame of `ram`; no failure planned.
    pub fn new(ram: &'r SimRam) -> Self {
        Self {
            ram,
            calls: Cell::new(0),
            fail_at: Cell::new(None),
            failures: Cell::new(0),
            limit: Cell::new(None),
            log: RefCell::new(Vec::new()),
        }
    }

    /// The RAM behind this access.
    pub fn ram(&self) -> &'r SimRam {
        self.ram
    }

    /// How many times [`TableAccess::table`] was called (failed calls
    /// included) since creation or the last [`reset_calls`](Self::reset_calls).
    pub fn calls(&self) -> u64 {
        self.calls.get()
    }

    /// Start counting calls from zero again.
    pub fn reset_calls(&self) {
        self.calls.set(0);
    }

    /// Make the call whose number (as [`calls`](Self::calls) will count it,
    /// starting at 1) is `k` fail with [`AccessError::NoSlot`]; every other
    /// call succeeds. `None`: never fail.
    pub fn fail_at(&self, k: Option<u64>) {
        self.fail_at.set(k);
    }

    /// Reach only frames that end at or below physical address `limit`
    /// (a lowmem-only direct map): every call for another frame fails with
    /// [`AccessError::Unreachable`], every time. `None`: reach everything.
    pub fn set_limit(&self, limit: Option<u64>) {
        self.limit.set(limit);
    }

    /// How many calls have failed so far.
    pub fn failures(&self) -> u64 {
        self.failures.get()
    }

    /// The stores recorded since the last [`take_log`](Self::take_log), in
    /// order, emptying the record.
    pub fn take_log(&self) -> Vec<StoreRecord> {
        core::mem::take(&mut *self.log.borrow_mut())
    }
}

// SAFETY: it reaches simulated RAM only.
unsafe impl paging_core::IsolatedTables for HostileAccess<'_> {}

impl TableAccess for HostileAccess<'_> {
    type Table<'a>
        = HostileTable<'a>
    where
        Self: 'a;

    fn table(&self, frame: PhysFrame) -> Result<HostileTable<'_>, AccessError> {
        let n = self.calls.get() + 1;
        self.calls.set(n);
        if self.fail_at.get() == Some(n) {
            self.failures.set(self.failures.get() + 1);
            return Err(AccessError::NoSlot);
        }
        if let Some(limit) = self.limit.get()
            && frame.start_address().as_u64() + 4096 > limit
        {
            self.failures.set(self.failures.get() + 1);
            return Err(AccessError::Unreachable(frame));
        }
        Ok(HostileTable {
            inner: SimTable::new(self.ram, frame),
            base: frame.start_address().as_u64(),
            log: &self.log,
        })
    }
}

/// One frame reached through a [`HostileAccess`]: a [`SimTable`] that
/// records every store.
pub struct HostileTable<'a> {
    inner: SimTable<'a>,
    base: u64,
    log: &'a RefCell<Vec<StoreRecord>>,
}

impl fmt::Debug for HostileTable<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HostileTable")
            .field("frame", &self.inner.frame())
            .finish()
    }
}

impl HostileTable<'_> {
    fn record(&self, wide: bool, index: usize, old: u64, new: u64) {
        let width = if wide { 8 } else { 4 };
        let count = 4096 / width;
        self.log.borrow_mut().push(StoreRecord {
            addr: self.base + (index % count) as u64 * width as u64,
            wide,
            old,
            new,
        });
    }
}

impl RawTable for HostileTable<'_> {
    fn load32(&self, word: usize) -> u32 {
        self.inner.load32(word)
    }

    fn store32(&self, word: usize, value: u32) {
        let old = self.inner.swap32(word, value);
        self.record(false, word, old.into(), value.into());
    }

    fn swap32(&self, word: usize, value: u32) -> u32 {
        let old = self.inner.swap32(word, value);
        self.record(false, word, old.into(), value.into());
        old
    }

    fn compare_exchange32(&self, word: usize, current: u32, new: u32) -> Result<u32, u32> {
        let result = self.inner.compare_exchange32(word, current, new);
        if result.is_ok() {
            self.record(false, word, current.into(), new.into());
        }
        result
    }

    fn load64(&self, entry: usize) -> u64 {
        self.inner.load64(entry)
    }

    fn store64(&self, entry: usize, value: u64) {
        let old = self.inner.swap64(entry, value);
        self.record(true, entry, old, value);
    }

    fn swap64(&self, entry: usize, value: u64) -> u64 {
        let old = self.inner.swap64(entry, value);
        self.record(true, entry, old, value);
        old
    }
}

/// The net effect of `log` on RAM, per 32-bit word: address -> (value
/// before the first store, value after the last), for the words whose value
/// differs. An empty map means the stores changed nothing.
pub fn net_changes(log: &[StoreRecord]) -> BTreeMap<u64, (u32, u32)> {
    let mut net: BTreeMap<u64, (u32, u32)> = BTreeMap::new();
    for r in log {
        let halves: &[(u64, u32, u32)] = if r.wide {
            &[
                (r.addr, r.old as u32, r.new as u32),
                (r.addr + 4, (r.old >> 32) as u32, (r.new >> 32) as u32),
            ]
        } else {
            &[(r.addr, r.old as u32, r.new as u32)]
        };
        for &(addr, old, new) in halves {
            net.entry(addr).or_insert((old, new)).1 = new;
        }
    }
    net.retain(|_, (old, new)| old != new);
    net
}

/// Put back, in reverse order, every value `log` overwrote: RAM is then as
/// it was before the first recorded store (given no one else wrote it).
pub fn undo(ram: &SimRam, log: &[StoreRecord]) {
    for r in log.iter().rev() {
        let pa = PhysAddr::new_truncate(r.addr);
        // Every recorded address came from a table view, so it is aligned
        // and inside physical space.
        let done = if r.wide {
            ram.write_u64(pa, r.old)
        } else {
            ram.write_u32(pa, r.old as u32)
        };
        debug_assert!(done.is_ok());
    }
}

/// A [`FrameAllocator`] that hands out a scripted sequence of frames (any
/// address, any zone), then the frames given back to it (oldest first), and
/// refuses once its budget is spent.
///
/// Frames a pre-built hierarchy owns can be [adopted](Self::adopt) as
/// handed out already, so the mapper may give them back. Cloning is cheap:
/// that is how a test rewinds it.
#[derive(Debug, Clone, Default)]
pub struct ScriptedAllocator {
    script: VecDeque<PhysFrame>,
    recycled: VecDeque<PhysFrame>,
    live: BTreeSet<u64>,
    budget: Option<usize>,
    handed: Vec<PhysFrame>,
    double_frees: u64,
    refused: u64,
}

impl ScriptedAllocator {
    /// Hand out `script` in order. A frame listed twice is handed out once.
    pub fn new(script: impl IntoIterator<Item = PhysFrame>) -> Self {
        let mut seen = BTreeSet::new();
        Self {
            script: script
                .into_iter()
                .filter(|f| seen.insert(f.number()))
                .collect(),
            ..Self::default()
        }
    }

    /// Count `frames` as handed out already (a pre-built hierarchy's
    /// tables), so giving them back is not a double free. They are removed
    /// from the script if listed there.
    pub fn adopt(&mut self, frames: impl IntoIterator<Item = PhysFrame>) {
        for f in frames {
            self.live.insert(f.number());
            self.script.retain(|s| *s != f);
        }
    }

    /// Let `n` more allocations succeed (if frames remain), then refuse
    /// every one; `None`: no limit.
    pub fn set_budget(&mut self, n: Option<usize>) {
        self.budget = n;
    }

    /// The frames the next `n` successful allocations would return (fewer
    /// if the allocator runs dry first, budget included).
    pub fn peek(&self, n: usize) -> Vec<PhysFrame> {
        let n = self.budget.map_or(n, |b| n.min(b));
        self.script
            .iter()
            .chain(self.recycled.iter())
            .take(n)
            .copied()
            .collect()
    }

    /// Frames handed out (or adopted) and not given back: a count, as
    /// every test allocator's `live` is (`ZonedAllocator::live`).
    pub fn live(&self) -> usize {
        self.live.len()
    }

    /// Whether `frame` is handed out (or adopted) now.
    pub fn is_live(&self, frame: PhysFrame) -> bool {
        self.live.contains(&frame.number())
    }

    /// The frames handed out and not given back, in address order.
    pub fn live_frames(&self) -> Vec<PhysFrame> {
        self.live
            .iter()
            .filter_map(|&pfn| PhysFrame::from_number(pfn).ok())
            .collect()
    }

    /// The frame numbers of [`live_frames`](Self::live_frames) as the set
    /// the allocator keeps (no copy; what tests compare with the set of
    /// reachable tables).
    pub fn live_set(&self) -> &BTreeSet<u64> {
        &self.live
    }

    /// Every frame handed out since the last
    /// [`take_handed`](Self::take_handed), in order, emptying the record.
    pub fn take_handed(&mut self) -> Vec<PhysFrame> {
        core::mem::take(&mut self.handed)
    }

    /// Frees of a frame that was not live. Recorded, never a panic.
    pub fn double_frees(&self) -> u64 {
        self.double_frees
    }

    /// Allocation requests refused (budget spent or nothing left).
    pub fn refused(&self) -> u64 {
        self.refused
    }
}

impl ScriptedAllocator {
    /// Give `frame` back. Safe, unlike
    /// [`FrameAllocator::deallocate_frame`]: the frames are simulated RAM,
    /// so a frame given back while the model still uses it (a linked table)
    /// corrupts the model's hierarchy, which tests may want to show, but no
    /// memory of this program. The trait method calls this.
    pub fn deallocate_frame(&mut self, frame: PhysFrame) {
        if self.live.remove(&frame.number()) {
            self.recycled.push_back(frame);
        } else {
            self.double_frees += 1;
        }
    }
}

// SAFETY: frames of simulated RAM: whatever the script hands out (even a
// frame twice, as a hostile allocator may), no memory of this program is
// written through it.
unsafe impl FrameAllocator for ScriptedAllocator {
    fn allocate_frame(&mut self, _zone: Zone) -> Option<PhysFrame> {
        if self.budget == Some(0) {
            self.refused += 1;
            return None;
        }
        let Some(frame) = self
            .script
            .pop_front()
            .or_else(|| self.recycled.pop_front())
        else {
            self.refused += 1;
            return None;
        };
        if let Some(b) = self.budget.as_mut() {
            *b -= 1;
        }
        self.live.insert(frame.number());
        self.handed.push(frame);
        Some(frame)
    }

    unsafe fn deallocate_frame(&mut self, frame: PhysFrame) {
        Self::deallocate_frame(self, frame);
    }
}
