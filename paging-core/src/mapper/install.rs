//! Installing caller-provided, physically consecutive PTE tables under a
//! range of PMD slots: the primitive behind contiguous fixmap/kmap windows
//! and behind handing an early (static) table over to a final one.

use super::Mapper;
use super::chain::{ChainError, FrameChain};
use super::map::PmdState;
use crate::access::{TableAccess, reach};
use crate::addr::{PhysFrame, VirtAddr};
use crate::alloc::{FrameAllocator, Zone};
use crate::entry::{Entry, Level, PmdEntry};
use crate::error::{InstallError, MapError};
use crate::flags::MapFlags;
use crate::flush::{Flush, TlbOps};
use crate::hooks::TableHooks;
use crate::mode::PagingMode;
use crate::table::RawTable;

/// The most tables one [`Mapper::install_pte_tables`] call handles.
pub const MAX_INSTALL_TABLES: usize = 32;

/// PTE tables that an install replaced (their entries were copied into the
/// new tables). They are no longer linked, the TLB has been flushed, and the
/// hooks have been told they stopped being tables; the caller owns them
/// (free them if they came from an allocator, keep them if static).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replaced {
    frames: [Option<PhysFrame>; MAX_INSTALL_TABLES],
    len: usize,
}

impl Replaced {
    /// The replaced table frames, in address order.
    pub fn frames(&self) -> impl Iterator<Item = PhysFrame> + '_ {
        self.frames[..self.len].iter().flatten().copied()
    }

    /// How many tables were replaced.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no table was replaced.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// What [`Mapper::install_pte_tables`] does with a given frame whose PMD
/// slot is empty (a slot that already has a table always gets a copy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FreshTables {
    /// Zero it: the frames are fresh from an allocator.
    Zero,
    /// Link it as it is: the frames already hold a table (static boot
    /// tables, or an early table being linked into a second hierarchy).
    Keep,
}

/// What to do for one PMD slot.
#[derive(Clone, Copy)]
enum Plan {
    /// The slot is empty: install a zeroed table.
    Fresh,
    /// The slot already points at the wanted frame.
    Done,
    /// The slot points at another table: copy it, then repoint.
    Copy(PhysFrame),
}

fn install_error(e: MapError) -> InstallError {
    match e {
        MapError::NotEmpty { va, raw, level } => InstallError::NotEmpty { va, raw, level },
        MapError::Access(e) => InstallError::Access(e),
        _ => InstallError::OutOfFrames,
    }
}

impl<M: PagingMode, A: TableAccess, H: TableHooks> Mapper<M, A, H> {
    /// Make the PTE tables of the `count` PMD slots starting at `start`
    /// (aligned to the PMD span) be the frames `first`, `first + 1`, ...
    /// `first + count - 1`, which the caller owns.
    ///
    /// Empty slots get their frame zeroed or kept as it is, as `fresh` says. A slot that already has a table gets
    /// a copy of every entry of it (so nothing mapped before is lost, inside
    /// or outside the range), is repointed, and the old table is reported in
    /// the result. The TLB and paging-structure caches are flushed through
    /// `tlb` before the old tables are announced as released. Missing PMD
    /// tables (PAE) come from `alloc`. On error nothing has changed.
    ///
    /// Because the frames are consecutive, the PTE for the `i`-th page of the
    /// range is entry `i` of one physically contiguous array: the property a
    /// kmap window is indexed by.
    ///
    /// # Safety
    /// The frames `first..first + count` are owned by the caller for use as
    /// these tables, and nothing else uses them: no Rust object, device or
    /// allocator (frames an allocator handed out and that have not been
    /// given back are fine), and no table of this hierarchy. A frame that
    /// is a table of *another* hierarchy may be given only with
    /// [`FreshTables::Keep`], when sharing it is the point (an early fixmap
    /// table linked into the final directory); the caller then keeps it
    /// alive while either hierarchy links it and accepts that every entry
    /// written through one is seen through the other. Without this
    /// promise a safe call could link a live table a second time (a second
    /// writable mapping of whatever it maps), zero a frame someone else
    /// owns, or later hand a still-linked table back to an allocator
    /// (issue 19, item 5). Over an
    /// [`IsolatedTables`](crate::IsolatedTables) access nothing of this
    /// program is at stake, but the model's hierarchy is corrupted the
    /// same way.
    pub unsafe fn install_pte_tables<T, F>(
        &mut self,
        start: VirtAddr,
        first: PhysFrame,
        count: usize,
        fresh: FreshTables,
        tlb: &T,
        alloc: &mut F,
    ) -> Result<Replaced, InstallError>
    where
        T: TlbOps + ?Sized,
        F: FrameAllocator + ?Sized,
    {
        let span = M::pmd_span();
        if !start.is_aligned(span) {
            return Err(InstallError::Unaligned {
                addr: start,
                align: span,
            });
        }
        if count > MAX_INSTALL_TABLES {
            return Err(InstallError::TooManyTables {
                count,
                max: MAX_INSTALL_TABLES,
            });
        }
        if start.as_u64() + count as u64 * span > 1 << 32 {
            return Err(InstallError::VirtOutOfRange { start, count });
        }
        let last = first.checked_add(count.saturating_sub(1) as u64);
        if !matches!(last, Some(l) if l.start_address().fits_bits(self.phys_bits())) {
            return Err(InstallError::PhysOutOfRange {
                first: first.start_address(),
                max_bits: self.phys_bits(),
            });
        }

        // Plan every slot, and count missing PMD tables, before any write.
        let mut plans = [Plan::Done; MAX_INSTALL_TABLES];
        let mut new_pmd_tables = 0;
        let mut planned_new_pgd = None;
        for (k, plan) in plans.iter_mut().enumerate().take(count) {
            let va = VirtAddr::new((start.as_u64() + k as u64 * span) as u32);
            let target = first.checked_add(k as u64);
            *plan = if planned_new_pgd == Some(M::pgd_index(va)) {
                Plan::Fresh
            } else {
                match self.pmd_state(va).map_err(install_error)? {
                    PmdState::NoPmdTable => {
                        new_pmd_tables += 1;
                        planned_new_pgd = Some(M::pgd_index(va));
                        Plan::Fresh
                    }
                    PmdState::Entry(_, pmd) => self.plan_slot(va, pmd, target)?,
                }
            };
        }
        let mut pmd_frames = FrameChain::new();
        let access = self.walker.access();
        if let Err(e) = pmd_frames.fill(
            access,
            alloc,
            Zone::Lowmem,
            new_pmd_tables,
            self.phys_bits(),
        ) {
            return Err(match e {
                ChainError::OutOfFrames => InstallError::OutOfFrames,
                ChainError::OutOfReach(frame) => InstallError::PhysOutOfRange {
                    first: frame.start_address(),
                    max_bits: self.phys_bits(),
                },
                ChainError::Access(e) => InstallError::Access(e),
            });
        }

        let result = self.install_planned(start, first, &plans[..count], fresh, &mut pmd_frames);
        pmd_frames.release(self.walker.access(), alloc);
        let (flush, replaced) = result?;
        flush.flush(tlb);
        for frame in replaced.frames() {
            self.hooks.table_released(frame, Level::Pte);
        }
        Ok(replaced)
    }

    fn plan_slot(
        &self,
        va: VirtAddr,
        pmd: M::Pmd,
        target: Option<PhysFrame>,
    ) -> Result<Plan, InstallError> {
        if pmd.is_none() {
            return Ok(Plan::Fresh);
        }
        if !pmd.is_present() {
            return Err(InstallError::NotEmpty {
                va,
                raw: pmd.raw(),
                level: Level::Pmd,
            });
        }
        if pmd.is_large() {
            return Err(InstallError::LargePageInTheWay {
                va,
                existing: crate::walk::Translation {
                    base: pmd.addr(),
                    offset: 0,
                    size: M::LARGE_PAGE_SIZE,
                    flags: pmd.flags(),
                },
            });
        }
        let old = PhysFrame::containing_address(pmd.addr());
        Ok(if Some(old) == target {
            Plan::Done
        } else {
            Plan::Copy(old)
        })
    }

    fn install_planned(
        &self,
        start: VirtAddr,
        first: PhysFrame,
        plans: &[Plan],
        fresh: FreshTables,
        pmd_frames: &mut FrameChain,
    ) -> Result<(Flush, Replaced), InstallError> {
        let span = M::pmd_span();
        let mut flush = Flush::none();
        let mut replaced = Replaced {
            frames: [None; MAX_INSTALL_TABLES],
            len: 0,
        };
        for (k, plan) in plans.iter().enumerate() {
            let va = VirtAddr::new((start.as_u64() + k as u64 * span) as u32);
            let target = first
                .checked_add(k as u64)
                .ok_or(InstallError::OutOfFrames)?;
            let slot = match self.pmd_state(va).map_err(install_error)? {
                PmdState::Entry(slot, _) => slot,
                PmdState::NoPmdTable => {
                    let frame = pmd_frames
                        .pop(self.walker.access())?
                        .ok_or(InstallError::OutOfFrames)?;
                    self.fill_new_table::<M::Pmd>(frame, Level::Pmd, M::PTRS_PER_PMD, |_| {
                        M::Pmd::NONE
                    })
                    .map_err(install_error)?;
                    flush = flush.and(self.link_pmd_table(va, frame).map_err(install_error)?);
                    match self.pmd_state(va).map_err(install_error)? {
                        PmdState::Entry(slot, _) => slot,
                        PmdState::NoPmdTable => return Err(InstallError::OutOfFrames),
                    }
                }
            };
            let user = match *plan {
                Plan::Done => continue,
                Plan::Fresh if fresh == FreshTables::Zero => {
                    self.fill_new_table::<M::Pte>(target, Level::Pte, M::PTRS_PER_PTE, |_| {
                        <M::Pte as Entry>::NONE
                    })
                    .map_err(install_error)?;
                    false
                }
                Plan::Fresh => {
                    self.hooks.table_allocated(target, Level::Pte);
                    false
                }
                Plan::Copy(old) => {
                    self.copy_table(old, target)?;
                    self.hooks.table_allocated(target, Level::Pte);
                    let old_entry: M::Pmd = slot.read(self.walker.access())?;
                    replaced.frames[replaced.len] = Some(old);
                    replaced.len += 1;
                    // The old table may sit in paging-structure caches.
                    flush = flush.and(Flush::page(va));
                    old_entry.flags().contains(MapFlags::USER)
                }
            };
            let entry = M::Pmd::table(target, user).map_err(|_| InstallError::PhysOutOfRange {
                first: first.start_address(),
                max_bits: self.phys_bits(),
            })?;
            self.write(slot, Level::Pmd, entry)?;
        }
        Ok((flush, replaced))
    }

    /// Copy every word of table `from` into `to` (not yet linked), a chunk at
    /// a time so that only one table is reached at once.
    fn copy_table(&self, from: PhysFrame, to: PhysFrame) -> Result<(), InstallError> {
        const CHUNK: usize = 64;
        let access = self.walker.access();
        let mut buf = [0u32; CHUNK];
        for base in (0..crate::table::WORDS_PER_TABLE).step_by(CHUNK) {
            {
                let src = reach(access, from)?;
                for (i, w) in buf.iter_mut().enumerate() {
                    *w = src.load32(base + i);
                }
            }
            let dst = reach(access, to)?;
            for (i, w) in buf.iter().enumerate() {
                dst.store32(base + i, *w);
            }
        }
        Ok(())
    }
}
