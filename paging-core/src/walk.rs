//! The one walker both modes share: PGD -> PMD -> PTE, with the PMD folded
//! into the PGD in 2-level mode.

use core::marker::PhantomData;

use crate::access::{AccessError, TableAccess, reach};
use crate::addr::{PAGE_SIZE, PageSize, PhysAddr, PhysFrame, VirtAddr};
use crate::entry::{Entry, Level, PmdEntry, PteEntry};
use crate::error::TranslateError;
use crate::flags::MapFlags;
use crate::mode::PagingMode;

/// Where an entry lives: a table frame and an index in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Slot {
    /// The frame holding the table.
    pub table: PhysFrame,
    /// The entry's index within that frame (a PAE PDPT that does not start at
    /// the frame's first byte has its offset folded in).
    pub index: usize,
}

impl Slot {
    /// Read the entry in this slot.
    pub fn read<E: Entry, A: TableAccess + ?Sized>(self, access: &A) -> Result<E, AccessError> {
        let t = reach(access, self.table)?;
        Ok(E::load(&t, self.index))
    }
}

/// Where a virtual address leads: the physical page, the offset in it, the
/// page size and the flags of the final entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Translation {
    /// First byte of the (4 KiB or large) page.
    pub base: PhysAddr,
    /// Offset of the address within the page.
    pub offset: u32,
    /// Size of the page.
    pub size: PageSize,
    /// Flags of the entry that maps it.
    pub flags: MapFlags,
}

impl Translation {
    /// The physical address the virtual address translates to.
    pub const fn phys_addr(&self) -> PhysAddr {
        PhysAddr::new_truncate(self.base.as_u64() + self.offset as u64)
    }

    /// The 4 KiB frame containing the translated address.
    pub const fn frame(&self) -> PhysFrame {
        PhysFrame::containing_address(self.phys_addr())
    }
}

/// A page-table hierarchy rooted at `root`, read through `A`.
///
/// This is the read-only half of the mapper: the generic walk that serves
/// both formats.
pub struct Walker<M: PagingMode, A> {
    root: PhysAddr,
    access: A,
    _mode: PhantomData<M>,
}

impl<M: PagingMode, A: core::fmt::Debug> core::fmt::Debug for Walker<M, A> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Walker")
            .field("mode", &M::NAME)
            .field("root", &self.root)
            .field("access", &self.access)
            .finish()
    }
}

/// Every entry a walk visited for one virtual address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Walk<M: PagingMode> {
    /// The PGD slot and entry (always read).
    pub pgd: (Slot, M::Pgd),
    /// The PMD slot and entry, if the PGD led to one (in 2-level mode it is
    /// the PGD slot itself).
    pub pmd: Option<(Slot, M::Pmd)>,
    /// The PTE slot and entry, if the PMD entry points at a PTE table.
    pub pte: Option<(Slot, M::Pte)>,
}

impl<M: PagingMode> Walk<M> {
    /// The translation this walk describes, or the level where it stopped.
    pub fn translation(&self, va: VirtAddr) -> Result<Translation, TranslateError> {
        if !M::PMD_FOLDED && !self.pgd.1.is_present() {
            return Err(TranslateError::NotMapped { level: Level::Pgd });
        }
        let pmd = match self.pmd {
            Some((_, e)) if e.is_present() => e,
            _ => return Err(TranslateError::NotMapped { level: Level::Pmd }),
        };
        if pmd.is_large() {
            let size = M::LARGE_PAGE_SIZE;
            return Ok(Translation {
                base: pmd.addr(),
                offset: va.as_u32() & (size.bytes() as u32 - 1),
                size,
                flags: pmd.flags(),
            });
        }
        match self.pte {
            Some((_, e)) if e.is_present() => Ok(Translation {
                base: e.addr(),
                offset: va.as_u32() & (PAGE_SIZE as u32 - 1),
                size: PageSize::Size4KiB,
                flags: e.flags(),
            }),
            _ => Err(TranslateError::NotMapped { level: Level::Pte }),
        }
    }
}

impl<M: PagingMode, A: TableAccess> Walker<M, A> {
    /// A walker for the hierarchy whose PGD is at `root` (not validated here;
    /// see [`Mapper::new`](crate::Mapper::new)).
    pub const fn new(root: PhysAddr, access: A) -> Self {
        Self {
            root,
            access,
            _mode: PhantomData,
        }
    }

    /// The PGD address.
    pub const fn root(&self) -> PhysAddr {
        self.root
    }

    /// The table access in use.
    pub const fn access(&self) -> &A {
        &self.access
    }

    /// Mutable access to the table access in use.
    pub fn access_mut(&mut self) -> &mut A {
        &mut self.access
    }

    /// Give back the table access.
    pub fn into_access(self) -> A {
        self.access
    }

    /// The slot of `va`'s PGD entry.
    pub fn pgd_slot(&self, va: VirtAddr) -> Slot {
        self.pgd_slot_at(M::pgd_index(va))
    }

    /// The slot of PGD entry `index`.
    pub fn pgd_slot_at(&self, index: usize) -> Slot {
        let base = (self.root.as_u64() % PAGE_SIZE) as usize / M::ENTRY_BYTES;
        Slot {
            table: PhysFrame::containing_address(self.root),
            index: base + index,
        }
    }

    /// The slot of `va`'s PMD entry given its PGD entry, or `None` if the PGD
    /// entry is not present (in 2-level mode: the PGD slot itself).
    pub fn pmd_slot(&self, va: VirtAddr, pgd: M::Pgd) -> Option<Slot> {
        if M::PMD_FOLDED {
            Some(self.pgd_slot(va))
        } else if pgd.is_present() {
            Some(Slot {
                table: PhysFrame::containing_address(pgd.addr()),
                index: M::pmd_index(va),
            })
        } else {
            None
        }
    }

    /// The slot of `va`'s PTE given its PMD entry, or `None` if the PMD entry
    /// is not present or maps a large page.
    pub fn pte_slot(&self, va: VirtAddr, pmd: M::Pmd) -> Option<Slot> {
        if pmd.is_present() && !pmd.is_large() {
            Some(Slot {
                table: PhysFrame::containing_address(pmd.addr()),
                index: M::pte_index(va),
            })
        } else {
            None
        }
    }

    /// Walk the tables for `va`, reading one entry per level.
    // Inlined: translate is a few dependent loads; the call and the
    // returned structure through memory cost as much as the walk.
    #[inline(always)]
    pub fn walk(&self, va: VirtAddr) -> Result<Walk<M>, AccessError> {
        let pgd_slot = self.pgd_slot(va);
        let pgd: M::Pgd = pgd_slot.read(&self.access)?;
        let mut walk = Walk {
            pgd: (pgd_slot, pgd),
            pmd: None,
            pte: None,
        };
        let Some(pmd_slot) = self.pmd_slot(va, pgd) else {
            return Ok(walk);
        };
        let pmd: M::Pmd = if M::PMD_FOLDED {
            M::Pmd::from_raw(pgd.raw())
        } else {
            pmd_slot.read(&self.access)?
        };
        walk.pmd = Some((pmd_slot, pmd));
        if let Some(pte_slot) = self.pte_slot(va, pmd) {
            walk.pte = Some((pte_slot, pte_slot.read(&self.access)?));
        }
        Ok(walk)
    }

    /// What `va` translates to, according to the tables in memory.
    #[inline(always)]
    pub fn translate(&self, va: VirtAddr) -> Result<Translation, TranslateError> {
        self.walk(va)?.translation(va)
    }
}
