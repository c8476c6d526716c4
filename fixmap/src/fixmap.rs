//! The fixmap at run time: its top, its tables, and setting and clearing
//! slots.

use core::marker::PhantomData;
use core::sync::atomic::{AtomicBool, Ordering};

use paging_core::{
    Entry, Level, MapFlags, NativeHooks, PAGE_SIZE, PagingMode, PhysFrame, PteEntry, RawTable,
    TableAccess, TableHooks, TlbOps, VirtAddr,
};

use crate::error::FixmapError;
use crate::layout::{FixIndex, FixmapLayout, fix_to_virt, virt_to_fix};
use crate::window::ContiguousWindow;

/// The low word of a PAE slot while one `set` or `clear` writes its two
/// halves: not present (P, bit 0, is clear, so the MMU ignores every other
/// bit, SDM Vol. 3A 4.4.2), and not a value this crate writes otherwise.
const CLAIMED: u32 = 0x4649_5800;

/// How far the top may move at a time: one PAE PTE table (2 MiB), so
/// `in_one_table` ranges stay inside one table in both modes.
pub const TOP_STEP: u64 = 2 << 20;

/// The fixmap of layout `L` in paging mode `M`, writing its PTEs through `A`.
///
/// Slots are set and cleared with `&self`, from any number of threads: each
/// `set` and `clear` claims its slot with one compare-and-swap on the word
/// that holds P, so two callers racing for one slot never both succeed and
/// never mix their entries (the loser gets [`FixmapError::SlotInUse`],
/// [`FixmapError::SlotBusy`] or [`FixmapError::NotSet`]). The top and the
/// tables change with `&mut self`.
#[derive(Debug)]
pub struct Fixmap<L: FixmapLayout, M: PagingMode, A: TableAccess, H: TableHooks = NativeHooks> {
    top: VirtAddr,
    window: Option<ContiguousWindow<M>>,
    access: A,
    hooks: H,
    used: AtomicBool,
    _layout: PhantomData<fn() -> L>,
}

impl<L: FixmapLayout, M: PagingMode, A: TableAccess> Fixmap<L, M, A, NativeHooks> {
    /// A fixmap at the layout's default top, with no tables yet. A `const
    /// fn`, so a kernel can put it in a static and attach the window later.
    pub const fn new(access: A) -> Self {
        Self::with_hooks(access, NativeHooks)
    }
}

impl<L: FixmapLayout, M: PagingMode, A: TableAccess, H: TableHooks> Fixmap<L, M, A, H> {
    /// Like [`Fixmap::new`], telling `hooks` about every entry written.
    pub const fn with_hooks(access: A, hooks: H) -> Self {
        Self {
            top: L::TOP,
            window: None,
            access,
            hooks,
            used: AtomicBool::new(false),
            _layout: PhantomData,
        }
    }

    /// Address of index 0 (the guard hole); slot `i` is at `top - i * 4096`.
    pub fn top(&self) -> VirtAddr {
        self.top
    }

    /// The lowest fixmap address.
    pub fn start(&self) -> VirtAddr {
        L::start_for(self.top)
    }

    /// One past the highest fixmap byte (the end of the guard-hole page).
    pub fn end(&self) -> u64 {
        self.top.as_u64() + PAGE_SIZE
    }

    /// Move the top (for example down, to leave room for a hypervisor at
    /// the top of the address space). Allowed only before any slot has been
    /// set, by whole steps of [`TOP_STEP`], and only to where the attached
    /// tables (if any) still cover the fixmap.
    pub fn move_top(&mut self, top: VirtAddr) -> Result<(), FixmapError> {
        if self.used.load(Ordering::Acquire) {
            return Err(FixmapError::TopMovedAfterUse);
        }
        let delta = L::TOP.as_u64().checked_sub(top.as_u64());
        let fits = ((L::END - 1) as u64) * PAGE_SIZE <= top.as_u64();
        if !matches!(delta, Some(d) if d % TOP_STEP == 0) || !fits {
            return Err(FixmapError::BadTop { top });
        }
        if let Some(window) = &self.window {
            let start = L::start_for(top);
            if !window.covers(start, top.as_u64() + PAGE_SIZE) {
                return Err(FixmapError::WindowDoesNotCover { start, top });
            }
        }
        self.top = top;
        Ok(())
    }

    /// Use `window`'s tables from now on, returning the previous window.
    ///
    /// Build the new window with [`WindowBuilder`](crate::WindowBuilder) on
    /// the same hierarchy: it copies every entry of the tables it replaces,
    /// so slots set on the old (early) tables stay mapped across the switch.
    pub fn attach(
        &mut self,
        window: ContiguousWindow<M>,
    ) -> Result<Option<ContiguousWindow<M>>, FixmapError> {
        if !window.covers(self.start(), self.end()) {
            return Err(FixmapError::WindowDoesNotCover {
                start: self.start(),
                top: self.top,
            });
        }
        Ok(self.window.replace(window))
    }

    /// The tables in use.
    pub fn window(&self) -> Option<&ContiguousWindow<M>> {
        self.window.as_ref()
    }

    /// The address of slot `idx` at the current top.
    pub fn virt(&self, idx: FixIndex<L>) -> VirtAddr {
        fix_to_virt(self.top, idx)
    }

    /// The slot whose page contains `va`.
    pub fn virt_to_fix(&self, va: VirtAddr) -> Result<FixIndex<L>, FixmapError> {
        virt_to_fix::<L>(self.top, va)
    }

    /// Map slot `idx` to `frame` with `flags` (`PRESENT` added) and
    /// invalidate that one page. The slot must be clear: a mapped slot is
    /// [`FixmapError::SlotInUse`], one another thread is setting or clearing
    /// this instant (PAE) is [`FixmapError::SlotBusy`]. Flags the window's
    /// CPU cannot carry are refused with
    /// [`EntryError::MissingFeature`](paging_core::EntryError::MissingFeature)
    /// (see [`ContiguousWindow::pte`]).
    pub fn set<T: TlbOps + ?Sized>(
        &self,
        idx: FixIndex<L>,
        frame: PhysFrame,
        flags: MapFlags,
        tlb: &T,
    ) -> Result<(), FixmapError> {
        let window = self.window.as_ref().ok_or(FixmapError::NoTables)?;
        let entry = window.pte(frame, flags).map_err(FixmapError::Entry)?;
        let va = self.virt(idx);
        let slot = self.slot(va)?;
        let table = self.access.table(slot.table)?;
        let wide = M::ENTRY_BYTES == 8;
        let lo = slot.index * M::ENTRY_BYTES / 4;
        // Claim the slot: one compare-and-swap from the clear low word we
        // saw. In 2-level mode it writes the whole entry; in PAE it writes
        // the not-present CLAIMED marker, and the halves follow (high, then
        // low with P), so no other writer's half can end up in the entry.
        let new_lo = if wide { CLAIMED } else { entry.raw() as u32 };
        let mut seen = table.load32(lo);
        loop {
            if seen & 1 != 0 {
                let old = M::Pte::load(&table, slot.index);
                return Err(FixmapError::SlotInUse {
                    index: idx.index(),
                    current: PhysFrame::containing_address(old.addr()),
                });
            }
            if wide && seen == CLAIMED {
                return Err(FixmapError::SlotBusy { index: idx.index() });
            }
            match table.compare_exchange32(lo, seen, new_lo) {
                Ok(_) => break,
                Err(now) => seen = now,
            }
        }
        let old = if wide {
            // The slot is ours: nobody else writes either half now.
            let old_hi = table.load32(lo + 1);
            table.store32(lo + 1, (entry.raw() >> 32) as u32);
            table.store32(lo, entry.raw() as u32);
            u64::from(old_hi) << 32 | u64::from(seen)
        } else {
            u64::from(seen)
        };
        self.used.store(true, Ordering::Release);
        drop(table);
        self.hooks
            .entry_written(slot.table, Level::Pte, slot.index, old, entry.raw());
        tlb.flush_page(va);
        Ok(())
    }

    /// Map slot `idx` to `frame`, writable and cached (normal memory).
    pub fn set_cached<T: TlbOps + ?Sized>(
        &self,
        idx: FixIndex<L>,
        frame: PhysFrame,
        tlb: &T,
    ) -> Result<(), FixmapError> {
        self.set(idx, frame, MapFlags::KERNEL_RW, tlb)
    }

    /// Map slot `idx` to `frame`, writable and uncached (MMIO).
    pub fn set_uncached<T: TlbOps + ?Sized>(
        &self,
        idx: FixIndex<L>,
        frame: PhysFrame,
        tlb: &T,
    ) -> Result<(), FixmapError> {
        self.set(idx, frame, MapFlags::KERNEL_UNCACHED, tlb)
    }

    /// Unmap slot `idx`, invalidate its page, and return the frame it
    /// mapped. Of two threads clearing one slot, one gets the frame and the
    /// other [`FixmapError::NotSet`] (or [`FixmapError::SlotBusy`]).
    pub fn clear<T: TlbOps + ?Sized>(
        &self,
        idx: FixIndex<L>,
        tlb: &T,
    ) -> Result<PhysFrame, FixmapError> {
        let va = self.virt(idx);
        let slot = self.slot(va)?;
        let table = self.access.table(slot.table)?;
        let wide = M::ENTRY_BYTES == 8;
        let lo = slot.index * M::ENTRY_BYTES / 4;
        // P drops with one compare-and-swap from the present low word we
        // saw (with the Accessed/Dirty bits the MMU had set by then); in PAE
        // the slot stays claimed until the high half is cleared too.
        let new_lo = if wide { CLAIMED } else { 0 };
        let mut seen = table.load32(lo);
        loop {
            if seen & 1 == 0 {
                return Err(if wide && seen == CLAIMED {
                    FixmapError::SlotBusy { index: idx.index() }
                } else {
                    FixmapError::NotSet { index: idx.index() }
                });
            }
            match table.compare_exchange32(lo, seen, new_lo) {
                Ok(_) => break,
                Err(now) => seen = now,
            }
        }
        let old = if wide {
            let old_hi = table.load32(lo + 1);
            table.store32(lo + 1, 0);
            table.store32(lo, 0);
            u64::from(old_hi) << 32 | u64::from(seen)
        } else {
            u64::from(seen)
        };
        let old = M::Pte::from_raw(old);
        drop(table);
        self.hooks
            .entry_written(slot.table, Level::Pte, slot.index, old.raw(), 0);
        tlb.flush_page(va);
        Ok(PhysFrame::containing_address(old.addr()))
    }

    /// What slot `idx` maps, according to its PTE.
    pub fn get(&self, idx: FixIndex<L>) -> Result<Option<(PhysFrame, MapFlags)>, FixmapError> {
        let slot = self.slot(self.virt(idx))?;
        let table = self.access.table(slot.table)?;
        let pte = M::Pte::load(&table, slot.index);
        Ok(pte
            .is_present()
            .then(|| (PhysFrame::containing_address(pte.addr()), pte.flags())))
    }

    fn slot(&self, va: VirtAddr) -> Result<paging_core::Slot, FixmapError> {
        let window = self.window.as_ref().ok_or(FixmapError::NoTables)?;
        window.pte_slot(va).ok_or(FixmapError::WindowDoesNotCover {
            start: self.start(),
            top: self.top,
        })
    }
}
