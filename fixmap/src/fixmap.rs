//! The fixmap at run time: its top, its tables, and setting and clearing
//! slots.

use core::marker::PhantomData;
use core::sync::atomic::{AtomicBool, Ordering};

use paging_core::{
    Entry, Level, MapFlags, NativeHooks, PAGE_SIZE, PagingMode, PhysFrame, PteEntry, TableAccess,
    TableHooks, TlbOps, VirtAddr,
};

use crate::error::FixmapError;
use crate::layout::{FixIndex, FixmapLayout, fix_to_virt, virt_to_fix};
use crate::window::ContiguousWindow;

/// How far the top may move at a time: one PAE PTE table (2 MiB), so
/// `in_one_table` ranges stay inside one table in both modes.
pub const TOP_STEP: u64 = 2 << 20;

/// The fixmap of layout `L` in paging mode `M`, writing its PTEs through `A`.
///
/// Slots are set and cleared with `&self`: each slot has one owner (a CPU's
/// local-kmap slots, the console driver, ...), and two owners never write the
/// same PTE. The top and the tables change with `&mut self`.
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
    /// invalidate that one page. The slot must be clear. Flags the window's
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
        let old = M::Pte::load(&table, slot.index);
        if old.is_present() {
            return Err(FixmapError::SlotInUse {
                index: idx.index(),
                current: PhysFrame::containing_address(old.addr()),
            });
        }
        self.used.store(true, Ordering::Release);
        let old = M::Pte::store(&table, slot.index, entry);
        drop(table);
        self.hooks
            .entry_written(slot.table, Level::Pte, slot.index, old.raw(), entry.raw());
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
    /// mapped.
    pub fn clear<T: TlbOps + ?Sized>(
        &self,
        idx: FixIndex<L>,
        tlb: &T,
    ) -> Result<PhysFrame, FixmapError> {
        let va = self.virt(idx);
        let slot = self.slot(va)?;
        let table = self.access.table(slot.table)?;
        if !M::Pte::load(&table, slot.index).is_present() {
            return Err(FixmapError::NotSet { index: idx.index() });
        }
        let old = M::Pte::store(&table, slot.index, M::Pte::NONE);
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
