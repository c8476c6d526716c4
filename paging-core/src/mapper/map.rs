//! Creating mappings: one 4 KiB page, one large page, or a whole range.

use super::Mapper;
use crate::access::{TableAccess, reach};
use crate::addr::{PAGE_SIZE, PageSize, PhysAddr, PhysFrame, VirtAddr};
use crate::alloc::{FrameAllocator, Zone};
use crate::entry::{Entry, EntryError, Level, PgdEntry, PmdEntry, PteEntry};
use crate::error::MapError;
use crate::flags::MapFlags;
use crate::flush::Flush;
use crate::hooks::TableHooks;
use crate::mode::PagingMode;
use crate::walk::{Slot, Translation};

/// Whether [`Mapper::map_range`] may use large pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LargePages {
    /// Use a large page wherever the virtual and physical addresses are both
    /// aligned to the large-page size, the whole large page is inside the
    /// range, and no PTE table is installed there already.
    Use,
    /// Only 4 KiB pages.
    Avoid,
}

pub(super) fn entry_error(e: EntryError) -> MapError {
    match e {
        EntryError::Unaligned { addr, align } => MapError::Unaligned {
            addr: addr.as_u64(),
            align,
        },
        EntryError::PhysOutOfRange { addr, max_bits } => {
            MapError::PhysOutOfRange { addr, max_bits }
        }
        EntryError::Unsupported(flags) => MapError::Unsupported(flags),
        EntryError::MissingFeature(feature) => MapError::MissingFeature(feature),
    }
}

pub(super) fn large_translation<M: PagingMode>(va: VirtAddr, pmd: M::Pmd) -> Translation {
    Translation {
        base: pmd.addr(),
        offset: va.as_u32() & (M::LARGE_PAGE_SIZE.bytes() as u32 - 1),
        size: M::LARGE_PAGE_SIZE,
        flags: pmd.flags(),
    }
}

fn pte_translation(pte: impl PteEntry) -> Translation {
    Translation {
        base: pte.addr(),
        offset: 0,
        size: PageSize::Size4KiB,
        flags: pte.flags(),
    }
}

/// The rights a leaf with `flags` needs that a table entry with `table`
/// withholds: `(write, user, exec)`. A read-only leaf never needs R/W, a
/// supervisor leaf never needs U/S, a no-execute leaf never needs XD clear.
#[inline(always)]
pub(super) fn missing_rights(table: MapFlags, flags: MapFlags) -> Option<(bool, bool, bool)> {
    const WU: u16 = MapFlags::WRITABLE.bits() | MapFlags::USER.bits();
    const NX: u16 = MapFlags::NO_EXECUTE.bits();
    let (t, l) = (table.bits(), flags.bits());
    // Rights the leaf asks for that the table withholds: R/W and U/S set in
    // the leaf but not the table; execution (NX clear) in the leaf under XD.
    let missing = (l & !t & WU) | (!l & t & NX);
    if missing == 0 {
        return None;
    }
    Some((
        missing & MapFlags::WRITABLE.bits() != 0,
        missing & MapFlags::USER.bits() != 0,
        missing & NX != 0,
    ))
}

/// The state of the PMD slot for a virtual address, as far as mapping is
/// concerned.
pub(super) enum PmdState<E> {
    /// The PGD entry is empty (PAE): a PMD table must be created first.
    NoPmdTable,
    /// The PMD slot exists; here is its entry.
    Entry(Slot, E),
}

impl<M: PagingMode, A: TableAccess, H: TableHooks> Mapper<M, A, H> {
    /// `flags` as a leaf of `size` may carry them on the bound CPU (XD
    /// dropped under [`NxPolicy::Drop`](crate::NxPolicy::Drop)), or the
    /// feature the CPU lacks.
    #[inline(always)]
    pub(super) fn leaf_flags(&self, flags: MapFlags, size: PageSize) -> Result<MapFlags, MapError> {
        match self.rule.allows(flags, size) {
            Some(flags) => Ok(flags),
            None => Err(self.missing_feature(flags, size)),
        }
    }

    /// The feature a leaf the rule refused lacks (cold: only on error).
    #[cold]
    #[inline(never)]
    pub(super) fn missing_feature(&self, flags: MapFlags, size: PageSize) -> MapError {
        match self.features().leaf_flags::<M>(flags, size) {
            Err(feature) => MapError::MissingFeature(feature),
            // The rule and `leaf_flags` agree (`LeafRule::of`); if they
            // ever did not, refusing is the safe side.
            Ok(_) => MapError::Unsupported(flags),
        }
    }

    /// Map the 4 KiB page at `at` to `frame` with `flags` (`PRESENT` is
    /// added), creating missing tables from `alloc`.
    ///
    /// `at` is a [`Page`](crate::Page) or a 4 KiB-aligned [`VirtAddr`], as for
    /// [`unmap`](Self::unmap) and [`update_flags`](Self::update_flags); an
    /// address inside a page is [`MapError::Unaligned`] (a `VirtAddr` that
    /// is not a page start is more likely a bug than a request for the page
    /// around it).
    ///
    /// Fails, changing nothing, if the page or its large page is already
    /// mapped, the frame is beyond the mode's or the CPU's physical limit,
    /// the flags cannot be expressed, the CPU lacks a feature they need
    /// ([`MapError::MissingFeature`]), or tables cannot be allocated.
    pub fn map<F: FrameAllocator + ?Sized>(
        &mut self,
        at: impl Into<VirtAddr>,
        frame: PhysFrame,
        flags: MapFlags,
        alloc: &mut F,
    ) -> Result<Flush, MapError> {
        let va = at.into();
        if !va.is_aligned(PAGE_SIZE) {
            return Err(MapError::Unaligned {
                addr: va.as_u64(),
                align: PAGE_SIZE,
            });
        }
        let flags = self.leaf_flags(flags | MapFlags::PRESENT, PageSize::Size4KiB)?;
        check_phys(frame.start_address(), PAGE_SIZE, self.phys_bits())?;
        let pte = M::Pte::page(frame, flags).map_err(entry_error)?;

        let pmd_state = self.pmd_state(va)?;
        if let PmdState::Entry(slot, pmd) = pmd_state {
            self.check_pmd_for_small(va, pmd)?;
            if let Some(pte_slot) = self.walker.pte_slot(va, pmd) {
                // The PTE table exists: one entry write, plus a table-entry
                // upgrade if it does not yet let this mapping through.
                check_pte_free::<M::Pte>(va, pte_slot.read(self.walker.access())?)?;
                if missing_rights(pmd.table_rights(), flags).is_some() {
                    // Rare: a table entry someone else made restrictive.
                    return self.map_under_restrictive(va, slot, pmd, pte_slot, pte, flags);
                }
                self.write_empty(pte_slot, Level::Pte, pte)?;
                return Ok(Flush::none());
            }
        }

        // Missing tables: reserve every frame before writing anything.
        let pmd_frame = match pmd_state {
            PmdState::NoPmdTable => Some(take_table_frame(alloc, Zone::Lowmem, self.phys_bits())?),
            PmdState::Entry(..) => None,
        };
        let pte_frame = match take_table_frame(alloc, self.pte_zone, self.phys_bits()) {
            Ok(frame) => frame,
            Err(e) => {
                if let Some(f) = pmd_frame {
                    // SAFETY: allocated above, nothing written or linked yet.
                    unsafe { alloc.deallocate_frame(f) };
                }
                return Err(e);
            }
        };
        let user = flags.contains(MapFlags::USER);
        let result = (|| {
            self.fill_new_table::<M::Pte>(pte_frame, Level::Pte, M::PTRS_PER_PTE, |i| {
                if i == M::pte_index(va) {
                    pte
                } else {
                    M::Pte::NONE
                }
            })?;
            let pmd = M::Pmd::table(pte_frame, user).map_err(entry_error)?;
            match (pmd_state, pmd_frame) {
                (_, Some(pmd_frame)) => {
                    self.fill_new_table::<M::Pmd>(pmd_frame, Level::Pmd, M::PTRS_PER_PMD, |i| {
                        if i == M::pmd_index(va) {
                            pmd
                        } else {
                            M::Pmd::NONE
                        }
                    })?;
                    self.link_pmd_table(va, pmd_frame)
                }
                (PmdState::Entry(slot, _), None) => {
                    self.write_empty(slot, Level::Pmd, pmd)?;
                    Ok(Flush::none())
                }
                (PmdState::NoPmdTable, None) => Err(MapError::OutOfFrames),
            }
        })();
        if result.is_err() {
            // SAFETY: allocated above; the step that failed is before the
            // one store that links each of them (a failed operation
            // changes nothing), so neither is linked.
            unsafe { alloc.deallocate_frame(pte_frame) };
            if let Some(f) = pmd_frame {
                // SAFETY: as above.
                unsafe { alloc.deallocate_frame(f) };
            }
        }
        result
    }

    /// Map one large page (4 MiB in 2-level mode, 2 MiB in PAE) at `va` to
    /// `pa`, both aligned to the large-page size.
    ///
    /// Fails, changing nothing, if anything is mapped there, including an
    /// installed PTE table (even an empty one: free it first with
    /// [`free_empty_tables`](Self::free_empty_tables)), or if the CPU
    /// cannot map it: [`MapError::MissingFeature`] for a 4 MiB page without
    /// PSE, or flags as for [`map`](Self::map).
    pub fn map_large<F: FrameAllocator + ?Sized>(
        &mut self,
        va: VirtAddr,
        pa: PhysAddr,
        flags: MapFlags,
        alloc: &mut F,
    ) -> Result<Flush, MapError> {
        let size = M::LARGE_PAGE_SIZE.bytes();
        if !va.is_aligned(size) {
            return Err(MapError::Unaligned {
                addr: va.as_u64(),
                align: size,
            });
        }
        if !pa.is_aligned(size) {
            return Err(MapError::Unaligned {
                addr: pa.as_u64(),
                align: size,
            });
        }
        let flags = self.leaf_flags(flags | MapFlags::PRESENT, M::LARGE_PAGE_SIZE)?;
        check_phys(pa, size, self.phys_bits())?;
        let entry = M::Pmd::large(pa, flags).map_err(entry_error)?;
        match self.pmd_state(va)? {
            PmdState::Entry(slot, pmd) => {
                check_pmd_free_for_large::<M>(va, pmd)?;
                self.write_empty(slot, Level::Pmd, entry)?;
                Ok(Flush::none())
            }
            PmdState::NoPmdTable => {
                let frame = take_table_frame(alloc, Zone::Lowmem, self.phys_bits())?;
                let result = self
                    .fill_new_table::<M::Pmd>(frame, Level::Pmd, M::PTRS_PER_PMD, |i| {
                        if i == M::pmd_index(va) {
                            entry
                        } else {
                            M::Pmd::NONE
                        }
                    })
                    .and_then(|()| self.link_pmd_table(va, frame));
                if result.is_err() {
                    // SAFETY: allocated above; linking it is the last step,
                    // and it failed, so nothing links the frame.
                    unsafe { alloc.deallocate_frame(frame) };
                }
                result
            }
        }
    }

    /// Where `va`'s PMD entry is and what it holds, or that the PGD entry is
    /// empty (PAE). A non-empty, non-present PGD entry is an error.
    pub(super) fn pmd_state(&self, va: VirtAddr) -> Result<PmdState<M::Pmd>, MapError> {
        let access = self.walker.access();
        let pgd_slot = self.walker.pgd_slot(va);
        let pgd: M::Pgd = pgd_slot.read(access)?;
        if M::PMD_FOLDED {
            return Ok(PmdState::Entry(pgd_slot, M::Pmd::from_raw(pgd.raw())));
        }
        if pgd.is_none() {
            return Ok(PmdState::NoPmdTable);
        }
        match self.walker.pmd_slot(va, pgd) {
            Some(slot) => Ok(PmdState::Entry(slot, slot.read(access)?)),
            None => Err(MapError::NotEmpty {
                va,
                raw: pgd.raw(),
                level: Level::Pgd,
            }),
        }
    }

    /// A 4 KiB page may go under this PMD entry: empty, or a table.
    fn check_pmd_for_small(&self, va: VirtAddr, pmd: M::Pmd) -> Result<(), MapError> {
        if pmd.is_present() && pmd.is_large() {
            return Err(MapError::InLargePage {
                va,
                existing: large_translation::<M>(va, pmd),
            });
        }
        if !pmd.is_present() && !pmd.is_none() {
            return Err(MapError::NotEmpty {
                va,
                raw: pmd.raw(),
                level: Level::Pmd,
            });
        }
        Ok(())
    }

    /// Write a new table frame completely (entry `i` is `entry(i)`) before it
    /// is linked anywhere, then announce it to the hooks.
    pub(super) fn fill_new_table<E: Entry>(
        &self,
        frame: PhysFrame,
        level: Level,
        entries: usize,
        entry: impl Fn(usize) -> E,
    ) -> Result<(), MapError> {
        let table = reach(self.walker.access(), frame)?;
        // A folded PMD "table" is the PGD slot itself and is never allocated;
        // any other table is a whole frame of entries.
        let per_frame = 4096 / M::ENTRY_BYTES;
        for i in 0..per_frame {
            E::init(&table, i, if i < entries { entry(i) } else { E::NONE });
        }
        drop(table);
        self.hooks.table_allocated(frame, level);
        Ok(())
    }

    /// Point `va`'s (empty) PGD entry at the filled PMD table in `frame`.
    pub(super) fn link_pmd_table(&self, va: VirtAddr, frame: PhysFrame) -> Result<Flush, MapError> {
        let entry = M::Pgd::table(frame).map_err(entry_error)?;
        self.write_empty(self.walker.pgd_slot(va), Level::Pgd, entry)?;
        Ok(if M::PGD_LATCHED {
            Flush::reload_cr3()
        } else {
            Flush::none()
        })
    }

    /// What `va`'s table entry `pmd` must become to let a leaf with `flags`
    /// through, or `None` if it already does.
    ///
    /// The rule for a table entry someone else made restrictive (a loader's
    /// read-only or no-execute PDE, say): it is widened (R/W or U/S set, XD
    /// cleared, every other bit kept) only if no other present mapping below
    /// it gains anything by that, so no mapping the caller did not name
    /// changes its effective rights. Otherwise the call is refused with
    /// [`MapError::TableRestricts`]. The leaf at index `except` (the one
    /// being changed) is left out of that check.
    ///
    /// `map`'s hot path does not come here: it tests [`missing_rights`]
    /// itself and calls this only from its cold restrictive-entry path.
    pub(super) fn widen_for(
        &self,
        va: VirtAddr,
        pmd: M::Pmd,
        flags: MapFlags,
        except: Option<usize>,
    ) -> Result<Option<M::Pmd>, MapError> {
        let Some((write, user, exec)) = missing_rights(pmd.table_rights(), flags) else {
            return Ok(None);
        };
        let except = except.map_or(0..0, |i| i..i + 1);
        self.check_no_gain(va, pmd, (write, user, exec), except)?;
        Ok(Some(pmd.widened(write, user, exec)))
    }

    /// The rest of [`map`](Self::map) when the table entry withholds a right
    /// the leaf needs: widen it by the rule of
    /// [`widen_for`](Self::widen_for), or refuse, before the first write.
    #[cold]
    #[inline(never)]
    fn map_under_restrictive(
        &self,
        va: VirtAddr,
        slot: Slot,
        pmd: M::Pmd,
        pte_slot: Slot,
        pte: M::Pte,
        flags: MapFlags,
    ) -> Result<Flush, MapError> {
        let widen = self.widen_for(va, pmd, flags, None)?;
        self.write_empty(pte_slot, Level::Pte, pte)?;
        self.write_widened(slot, widen, va)
    }

    /// Refuse if widening `pmd` by `(write, user, exec)` would give any
    /// present leaf below it (but those at indexes `except`, the ones being
    /// changed) a right it does not have now.
    #[inline(never)]
    pub(super) fn check_no_gain(
        &self,
        va: VirtAddr,
        pmd: M::Pmd,
        (write, user, exec): (bool, bool, bool),
        except: core::ops::Range<usize>,
    ) -> Result<(), MapError> {
        let frame = PhysFrame::containing_address(pmd.addr());
        let table = reach(self.walker.access(), frame)?;
        for i in (0..M::PTRS_PER_PTE).filter(|i| !except.contains(i)) {
            let pte = M::Pte::load(&table, i);
            if !pte.is_present() {
                continue;
            }
            let f = pte.flags();
            if (write && f.contains(MapFlags::WRITABLE))
                || (user && f.contains(MapFlags::USER))
                || (exec && !f.contains(MapFlags::NO_EXECUTE))
            {
                return Err(MapError::TableRestricts {
                    va,
                    level: Level::Pmd,
                    raw: pmd.raw(),
                });
            }
        }
        Ok(())
    }

    /// Write a widened table entry computed by [`widen_for`](Self::widen_for)
    /// (if any). A present table entry may sit in the paging-structure
    /// caches with its old rights, so widening it needs a flush.
    #[inline(always)]
    pub(super) fn write_widened(
        &self,
        slot: Slot,
        widen: Option<M::Pmd>,
        va: VirtAddr,
    ) -> Result<Flush, MapError> {
        match widen {
            None => Ok(Flush::none()),
            Some(entry) => {
                self.write(slot, Level::Pmd, entry)?;
                Ok(Flush::page(va))
            }
        }
    }
}

/// A frame for a new page table from `zone`, one the table entries can
/// point at (below 2^`bits`, the mapper's [`phys_bits`](Mapper::phys_bits));
/// a frame beyond that is given back and refused.
pub(super) fn take_table_frame<F: FrameAllocator + ?Sized>(
    alloc: &mut F,
    zone: Zone,
    bits: u32,
) -> Result<PhysFrame, MapError> {
    let frame = alloc.allocate_frame(zone).ok_or(MapError::OutOfFrames)?;
    if frame.start_address().fits_bits(bits) {
        Ok(frame)
    } else {
        // SAFETY: just allocated and never used.
        unsafe { alloc.deallocate_frame(frame) };
        Err(MapError::TableOutOfReach {
            frame,
            max_bits: bits,
        })
    }
}

/// `len` bytes from `pa` fit in `bits` physical address bits (the mapper's
/// [`phys_bits`](Mapper::phys_bits)).
pub(super) fn check_phys(pa: PhysAddr, len: u64, bits: u32) -> Result<(), MapError> {
    let last = pa.as_u64().checked_add(len - 1);
    match last {
        Some(last) if last >> bits == 0 => Ok(()),
        _ => Err(MapError::PhysOutOfRange {
            addr: pa,
            max_bits: bits,
        }),
    }
}

/// The PTE for `va` is free to fill.
pub(super) fn check_pte_free<E: PteEntry>(va: VirtAddr, pte: E) -> Result<(), MapError> {
    if pte.is_present() {
        return Err(MapError::AlreadyMapped {
            va,
            existing: pte_translation(pte),
        });
    }
    if !pte.is_none() {
        return Err(MapError::NotEmpty {
            va,
            raw: pte.raw(),
            level: Level::Pte,
        });
    }
    Ok(())
}

/// The PMD entry for `va` is free for a large page.
fn check_pmd_free_for_large<M: PagingMode>(va: VirtAddr, pmd: M::Pmd) -> Result<(), MapError> {
    if pmd.is_present() && pmd.is_large() {
        return Err(MapError::AlreadyMapped {
            va,
            existing: large_translation::<M>(va, pmd),
        });
    }
    if pmd.is_present() {
        return Err(MapError::TableInTheWay { va });
    }
    if !pmd.is_none() {
        return Err(MapError::NotEmpty {
            va,
            raw: pmd.raw(),
            level: Level::Pmd,
        });
    }
    Ok(())
}
