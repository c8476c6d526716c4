//! A model of a paravirtualising hypervisor's page-table rule (Xen PV), to
//! test the table-lifecycle hooks.
//!
//! The rule: a frame that is a page table (*pinned*) must not be writable
//! through any mapping; page-table entries change only through hypercalls
//! the hypervisor validates; a frame that stops being a table becomes
//! writable again. [`Hypervisor`] keeps the pinned set, performs and checks
//! hypercalls, and audits a guest's hierarchy. [`HypercallAccess`] is the
//! guest's table access (stores into pinned frames are `mmu_update`
//! hypercalls); [`Hypervisor::guest_write`] is any other kernel write, which
//! must not touch a table and needs a writable mapping; [`GuestHooks`] is what a guest kernel implements with the
//! [`TableHooks`]: make a new table read-only in the direct map and pin it,
//! unpin a released one and make it writable, and make frames handed back
//! from the early page-table buffer writable.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::vec::Vec;

use super::{Access, Mmu, SimAccess, SimRam, SimTable};
use paging_core::access::{AccessError, TableAccess};
use paging_core::addr::{PAGE_SIZE, PhysFrame, VirtAddr};
use paging_core::entry::{Entry, Level, PmdEntry, PteEntry};
use paging_core::flags::MapFlags;
use paging_core::hooks::TableHooks;
use paging_core::mode::PagingMode;
use paging_core::table::RawTable;
use paging_core::walk::Walker;

/// A breach of the rule, as the hypervisor reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Violation {
    /// A frame was pinned (or found in use as a table) while a mapping made
    /// it writable.
    WritableTable {
        /// The table frame.
        frame: PhysFrame,
    },
    /// A frame is linked into the hierarchy as a table but was never pinned.
    UnpinnedTable {
        /// The table frame.
        frame: PhysFrame,
    },
    /// The guest wrote a table frame directly instead of by hypercall.
    DirectTableWrite {
        /// The table frame.
        frame: PhysFrame,
    },
    /// An ordinary write hit a frame the guest maps read-only: on real
    /// hardware, a page fault (the 2011 boot crash).
    WriteFault {
        /// The frame written.
        frame: PhysFrame,
    },
}

#[derive(Default)]
struct State {
    pinned: BTreeSet<u64>,
    violations: Vec<Violation>,
    hypercalls: u64,
}

/// The hypervisor: pins, hypercalls, audits.
pub struct Hypervisor<'r> {
    ram: &'r SimRam,
    page_offset: u32,
    state: Mutex<State>,
}

impl<'r> Hypervisor<'r> {
    /// A hypervisor for a guest whose direct map puts physical 0 at
    /// `page_offset` (mapped with 4 KiB pages, so each frame's rights can
    /// change on its own).
    pub fn new(ram: &'r SimRam, page_offset: u32) -> Self {
        Self {
            ram,
            page_offset,
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        match self.state.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Every violation reported so far.
    pub fn violations(&self) -> Vec<Violation> {
        self.state().violations.clone()
    }

    /// Hypercalls performed so far.
    pub fn hypercalls(&self) -> u64 {
        self.state().hypercalls
    }

    /// Whether `frame` is pinned as a table.
    pub fn is_pinned(&self, frame: PhysFrame) -> bool {
        self.state().pinned.contains(&frame.number())
    }

    fn report(&self, v: Violation) {
        self.state().violations.push(v);
    }

    /// The direct-map address of `frame`.
    pub fn direct_va(&self, frame: PhysFrame) -> VirtAddr {
        VirtAddr::new(
            self.page_offset
                .wrapping_add(frame.start_address().as_u64() as u32),
        )
    }

    /// Whether `frame` is writable through its direct mapping in `root`.
    pub fn direct_writable<M: PagingMode>(
        &self,
        root: paging_core::PhysAddr,
        frame: PhysFrame,
    ) -> bool {
        let w = Walker::<M, _>::new(root, SimAccess::new(self.ram));
        w.translate(self.direct_va(frame))
            .is_ok_and(|t| t.flags.contains(MapFlags::WRITABLE))
    }

    /// The `update_va_mapping` hypercall on the direct map: make `frame`'s
    /// 4 KiB direct mapping in `root` writable or read-only. The guest
    /// flushes its TLB afterwards.
    pub fn set_direct_writable<M: PagingMode>(
        &self,
        root: paging_core::PhysAddr,
        frame: PhysFrame,
        writable: bool,
    ) {
        let access = SimAccess::new(self.ram);
        let w = Walker::<M, _>::new(root, access);
        let Ok(walk) = w.walk(self.direct_va(frame)) else {
            return;
        };
        if let Some((slot, pte)) = walk.pte.filter(|(_, p)| p.is_present()) {
            let mut flags = pte.flags();
            flags.set(MapFlags::WRITABLE, writable);
            if let (Ok(t), Ok(new)) = (
                access.table(slot.table),
                M::Pte::page(PhysFrame::containing_address(pte.addr()), flags),
            ) {
                M::Pte::store(&t, slot.index, new);
                self.state().hypercalls += 1;
            }
        }
    }

    /// What a domain builder does before the guest runs: pin every table of
    /// `root`'s hierarchy and make each one read-only in the direct map.
    pub fn adopt<M: PagingMode>(&self, root: paging_core::PhysAddr) {
        let mut tables = Vec::new();
        self.visit::<M>(root, &mut |frame, _, is_table| {
            if is_table {
                tables.push(frame);
            }
        });
        for t in tables {
            if let Ok(frame) = PhysFrame::from_number(t) {
                self.set_direct_writable::<M>(root, frame, false);
                self.state().pinned.insert(t);
            }
        }
    }

    /// Pin `frame` as a table of `root`'s hierarchy: refused (reported) if
    /// any mapping in `root` makes it writable.
    pub fn pin<M: PagingMode>(&self, root: paging_core::PhysAddr, frame: PhysFrame) {
        if self.writable_frames::<M>(root).contains(&frame.number()) {
            self.report(Violation::WritableTable { frame });
        }
        let mut st = self.state();
        st.pinned.insert(frame.number());
        st.hypercalls += 1;
    }

    /// Unpin `frame`: it is an ordinary page again.
    pub fn unpin(&self, frame: PhysFrame) {
        let mut st = self.state();
        st.pinned.remove(&frame.number());
        st.hypercalls += 1;
    }

    /// Every frame a present, writable leaf entry of `root` maps.
    fn writable_frames<M: PagingMode>(&self, root: paging_core::PhysAddr) -> BTreeSet<u64> {
        let mut out = BTreeSet::new();
        self.visit::<M>(root, &mut |leaf_frame, writable, _| {
            if writable {
                out.insert(leaf_frame);
            }
        });
        out
    }

    /// Call `f(frame, writable, is_table)` for every table frame and every
    /// 4 KiB frame a leaf maps in `root`'s hierarchy.
    fn visit<M: PagingMode>(
        &self,
        root: paging_core::PhysAddr,
        f: &mut dyn FnMut(u64, bool, bool),
    ) {
        let access = SimAccess::new(self.ram);
        let w = Walker::<M, _>::new(root, access);
        f(PhysFrame::containing_address(root).number(), false, true);
        for g in 0..M::PTRS_PER_PGD {
            let Ok(pgd) = w.pgd_slot_at(g).read::<M::Pgd, _>(&access) else {
                continue;
            };
            let pmd_table = if M::PMD_FOLDED {
                None
            } else if pgd.is_present() {
                f(
                    PhysFrame::containing_address(pgd.addr()).number(),
                    false,
                    true,
                );
                Some(PhysFrame::containing_address(pgd.addr()))
            } else {
                continue;
            };
            for p in 0..M::PTRS_PER_PMD {
                let slot = match pmd_table {
                    Some(t) => paging_core::walk::Slot { table: t, index: p },
                    None => w.pgd_slot_at(g),
                };
                let Ok(pmd) = slot.read::<M::Pmd, _>(&access) else {
                    continue;
                };
                if !pmd.is_present() {
                    continue;
                }
                if pmd.is_large() {
                    let base = pmd.addr().as_u64() / PAGE_SIZE;
                    let writable = pmd.flags().contains(MapFlags::WRITABLE);
                    for n in 0..M::LARGE_PAGE_SIZE.bytes() / PAGE_SIZE {
                        f(base + n, writable, false);
                    }
                    continue;
                }
                let table = PhysFrame::containing_address(pmd.addr());
                f(table.number(), false, true);
                let Ok(t) = access.table(table) else { continue };
                for i in 0..M::PTRS_PER_PTE {
                    let pte = M::Pte::load(&t, i);
                    if pte.is_present() {
                        f(
                            pte.addr().as_u64() / PAGE_SIZE,
                            pte.flags().contains(MapFlags::WRITABLE),
                            false,
                        );
                    }
                }
            }
        }
    }

    /// Check `root`'s whole hierarchy against the rule: every table frame
    /// pinned and mapped read-only everywhere. Returns (and records) what it
    /// finds.
    pub fn audit<M: PagingMode>(&self, root: paging_core::PhysAddr) -> Vec<Violation> {
        let mut tables = BTreeSet::new();
        let mut writable = BTreeSet::new();
        self.visit::<M>(root, &mut |frame, w, is_table| {
            if is_table {
                tables.insert(frame);
            } else if w {
                writable.insert(frame);
            }
        });
        let pinned = self.state().pinned.clone();
        let mut found = Vec::new();
        for &t in &tables {
            let Ok(frame) = PhysFrame::from_number(t) else {
                continue;
            };
            if !pinned.contains(&t) {
                found.push(Violation::UnpinnedTable { frame });
            }
            if writable.contains(&t) {
                found.push(Violation::WritableTable { frame });
            }
        }
        self.state().violations.extend(found.iter().copied());
        found
    }

    /// An ordinary data write by the guest through its MMU (a kernel
    /// subsystem using memory). Writing a pinned table frame is reported,
    /// and so is a write the MMU refuses (the frame is read-only).
    pub fn guest_write(&self, mmu: &Mmu<'_>, va: VirtAddr, value: u32) -> Result<(), Violation> {
        let pa = match mmu.translate(va, Access::WRITE) {
            Ok(t) => t.pa,
            Err(_) => {
                let frame = PhysFrame::containing_address(paging_core::PhysAddr::new_truncate(
                    (va.as_u32().wrapping_sub(self.page_offset)) as u64,
                ));
                let v = Violation::WriteFault { frame };
                self.report(v);
                return Err(v);
            }
        };
        let frame = PhysFrame::containing_address(pa);
        if self.is_pinned(frame) {
            let v = Violation::DirectTableWrite { frame };
            self.report(v);
            return Err(v);
        }
        let _ = self.ram.write_u32(pa, value);
        Ok(())
    }
}

/// The guest's table access: stores into pinned frames are `mmu_update`
/// hypercalls; stores into frames not yet pinned are the guest filling a
/// fresh table before it announces it.
pub struct HypercallAccess<'h, 'r, M> {
    hv: &'h Hypervisor<'r>,
    _mode: core::marker::PhantomData<fn() -> M>,
}

impl<M> Clone for HypercallAccess<'_, '_, M> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<M> Copy for HypercallAccess<'_, '_, M> {}

impl<'h, 'r, M: PagingMode> HypercallAccess<'h, 'r, M> {
    /// Table access for a guest of `hv`.
    pub fn new(hv: &'h Hypervisor<'r>) -> Self {
        Self {
            hv,
            _mode: core::marker::PhantomData,
        }
    }
}

/// One table as [`HypercallAccess`] reaches it.
pub struct HypercallTable<'h, 'r, M> {
    access: HypercallAccess<'h, 'r, M>,
    frame: PhysFrame,
    table: SimTable<'r>,
}

impl<M: PagingMode> HypercallTable<'_, '_, M> {
    /// A store into a pinned frame is an `mmu_update` hypercall (counted;
    /// the hypervisor performs it). A store into a frame not yet pinned is
    /// the guest filling a fresh table before announcing it.
    fn before_store(&self) {
        if self.access.hv.is_pinned(self.frame) {
            self.access.hv.state().hypercalls += 1;
        }
    }
}

impl<M: PagingMode> RawTable for HypercallTable<'_, '_, M> {
    fn load32(&self, word: usize) -> u32 {
        self.table.load32(word)
    }
    fn store32(&self, word: usize, value: u32) {
        self.before_store();
        self.table.store32(word, value)
    }
    fn swap32(&self, word: usize, value: u32) -> u32 {
        self.before_store();
        self.table.swap32(word, value)
    }
    fn compare_exchange32(&self, word: usize, current: u32, new: u32) -> Result<u32, u32> {
        self.before_store();
        self.table.compare_exchange32(word, current, new)
    }
    fn load64(&self, entry: usize) -> u64 {
        self.table.load64(entry)
    }
    fn store64(&self, entry: usize, value: u64) {
        self.before_store();
        self.table.store64(entry, value)
    }
    fn swap64(&self, entry: usize, value: u64) -> u64 {
        self.before_store();
        self.table.swap64(entry, value)
    }
}

// SAFETY: it writes simulated RAM only (through the hypervisor model).
unsafe impl<M: PagingMode> paging_core::IsolatedTables for HypercallAccess<'_, '_, M> {}

impl<'h, 'r, M: PagingMode> TableAccess for HypercallAccess<'h, 'r, M> {
    type Table<'a>
        = HypercallTable<'h, 'r, M>
    where
        Self: 'a;

    fn table(&self, frame: PhysFrame) -> Result<Self::Table<'_>, AccessError> {
        Ok(HypercallTable {
            access: *self,
            frame,
            table: SimTable::new(self.hv.ram, frame),
        })
    }
}

/// What a paravirtualised guest does in the table-lifecycle hooks.
pub struct GuestHooks<'h, 'r, M> {
    hv: &'h Hypervisor<'r>,
    root: paging_core::PhysAddr,
    mmu: &'h Mmu<'r>,
    _mode: core::marker::PhantomData<fn() -> M>,
}

impl<'h, 'r, M: PagingMode> GuestHooks<'h, 'r, M> {
    /// Hooks for a guest whose kernel hierarchy is `root`, running on `mmu`.
    pub fn new(hv: &'h Hypervisor<'r>, root: paging_core::PhysAddr, mmu: &'h Mmu<'r>) -> Self {
        Self {
            hv,
            root,
            mmu,
            _mode: core::marker::PhantomData,
        }
    }

    fn set_writable(&self, frame: PhysFrame, writable: bool) {
        self.hv.set_direct_writable::<M>(self.root, frame, writable);
        self.mmu.invlpg(self.hv.direct_va(frame));
    }
}

impl<M: PagingMode> TableHooks for GuestHooks<'_, '_, M> {
    fn table_allocated(&self, frame: PhysFrame, _level: Level) {
        self.set_writable(frame, false);
        self.hv.pin::<M>(self.root, frame);
    }

    fn table_released(&self, frame: PhysFrame, _level: Level) {
        self.hv.unpin(frame);
        self.set_writable(frame, true);
    }

    fn frames_returned(&self, first: PhysFrame, count: u64) {
        for n in 0..count {
            if let Some(frame) = first.checked_add(n) {
                self.set_writable(frame, true);
            }
        }
    }
}
