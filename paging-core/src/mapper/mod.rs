//! The mapper: change a page-table hierarchy, one generic implementation for
//! both formats.
//!
//! Rules every operation keeps:
//! - **Nothing is overwritten silently.** Mapping over a present entry, a
//!   non-empty non-present entry, or inside a large page is an error, so
//!   building on a pre-populated directory (a loader's, a hypervisor's) keeps
//!   what is there.
//! - **Bad input changes nothing.** Every check, and every frame allocation,
//!   happens before the first write; on error the tables are byte-for-byte
//!   unchanged and every frame taken is given back.
//! - **New tables are complete before they are linked**: a PTE table is
//!   filled, announced to the [`TableHooks`], and only then written into its
//!   parent, so no MMU ever walks a half-built table.
//! - **Every change returns a [`Flush`](crate::Flush)** saying what the TLB needs.
//! - **No mapping the caller did not name gains or loses anything.** Its
//!   translation, effective rights (R/W and U/S ANDed over the levels, XD
//!   ORed), cache type and software bits stay as they were. A table entry
//!   the mapper rewrites keeps every bit it had. When a new or re-flagged
//!   leaf needs a right its table entry withholds (a loader's read-only,
//!   supervisor-only or no-execute PDE), the entry is widened by exactly
//!   that bit only if no other present leaf below it gains anything by
//!   that; otherwise the call fails with
//!   [`MapError::TableRestricts`](crate::MapError::TableRestricts) and
//!   changes nothing. A read-only leaf never needs a writable table entry,
//!   a supervisor leaf never needs U/S, a no-execute leaf never needs XD
//!   cleared. (To open such an entry regardless, rewrite it yourself: it
//!   is the caller's decision which mappings below may gain.)
//! - **Nothing is linked that the CPU cannot walk.** A table frame from the
//!   allocator that the mode's entries cannot point at (PAE: at or above
//!   2^`MAX_PHYS_BITS` or the CPU's MAXPHYADDR; 2-level: at or above 4 GiB) is given back and the
//!   call fails with [`MapError::TableOutOfReach`](crate::MapError::TableOutOfReach)
//!   before anything is written. Entries copied into another top-level
//!   table carry only the bits the CPU accepts there
//!   ([`PgdEntry::without_reserved_bits`](crate::PgdEntry::without_reserved_bits)).
//! - **Nothing is written that the CPU treats as reserved.** Every leaf is
//!   checked against the mapper's [`CpuFeatures`] (XD without NX, the PAT
//!   bit without the PAT, a 2-level large page without PSE, an address at
//!   or above MAXPHYADDR) before the first write; see
//!   [`features`](crate::features).
//! - **Table access failures.** `map`, `map_large`, `map_range`, `unmap`,
//!   `update_flags`, `unmap_range` and `protect_range` reach every table they will write
//!   while they check, before their first write, so a [`TableAccess`] that
//!   cannot reach one makes them return `Access` with nothing changed.
//!   Every access is tried twice before it counts as failed, which is what
//!   carries an operation past a transient failure once it has started
//!   writing (see [`TableAccess`]'s contract). `free_empty_tables` and
//!   `teardown` work table by table and may stop between two tables.
//!
//! # Changing attributes inside large pages: the sequence
//!
//! [`Mapper::set_memory`] and [`Mapper::merge_large_pages`]; why the
//! sequence is safe on real CPUs:
//!
//! The SDM (Vol. 3A 4.10.2.3, "Details of TLB Use") allows the TLB to hold
//! a large-page translation and 4 KiB translations for the same address at
//! once after software changes the page size; if the two differ in frame
//! or attributes, "processor behavior is undefined". Some CPUs have had
//! errata in exactly that window (a machine check when both sizes are
//! cached with different attributes). So the split never lets two
//! *different* translations meet:
//!
//! 1. The new PTE table is written completely while no MMU can reach it:
//!    entry `i` maps `base + i * 4 KiB` with the large entry's flags (R/W,
//!    U/S, PWT, PCD, A, D, G, the software bits, XD) and the PAT bit moved
//!    from bit 12 to bit 7 (the backends' [`PteEntry::page`](crate::PteEntry::page) puts it
//!    there). Then the hooks are told.
//! 2. The large entry is replaced, in one atomic store, by a table entry
//!    pointing at it (writable, U/S as the large page had it, no XD: the
//!    PTEs carry the rights). Every address now translates the same way
//!    through either size, so whatever the TLB holds is right.
//!    A/D bits the CPU set in the large entry between the read and the
//!    store are merged into the PTEs.
//! 3. Every 4 KiB page of the large page is invalidated
//!    ([`TlbOps::flush_range`](crate::TlbOps::flush_range) over the whole large page; the default
//!    implementation turns that many pages into a full flush, globals
//!    included, which is what Linux does after a split). No large
//!    translation of the old entry survives this step, and neither does a
//!    paging-structure-cache entry for the old PDE. A `TlbOps` that
//!    overrides `flush_range` with one `invlpg` per page is just as safe:
//!    `invlpg` drops the translations of any size that hold the address
//!    and every paging-structure-cache entry (SDM Vol. 3A 4.10.4.1). On a
//!    multiprocessor the `TlbOps` must reach every CPU that may use the
//!    tables (a shootdown), or another CPU keeps the old large page.
//! 4. Only then are the pages asked for changed
//!    ([`protect_range`](Mapper::protect_range)), and the changed range
//!    invalidated again.
//!
//! Merging runs the same sequence backwards: the PTEs are checked to be
//! uniform (present, contiguous frames starting at a large-page-aligned
//! base, identical flags apart from A/D), the table entry is replaced
//! atomically by a large entry that translates every address exactly as
//! the PTEs did, the whole large page is invalidated (which also drops
//! the paging-structure caches' pointer to the table), A/D bits the CPU
//! set in the PTEs meanwhile are merged into the large entry, and only
//! then is the table given back.

mod chain;
mod harvest;
mod install;
mod map;
mod protect;
mod range;
mod split;
mod teardown;
mod unmap;

pub use harvest::{HarvestStats, StatusBit};
pub use install::{FreshTables, MAX_INSTALL_TABLES, Replaced};
pub use map::LargePages;
pub use protect::ProtectStats;
pub(crate) use split::BlockMerge;
pub use split::{AttrChange, AttrStats, MergeStats};
pub use teardown::{TEARDOWN_BATCH, UnmapStats};
pub use unmap::{FreeStats, Unmapped};

use crate::access::{AccessError, IsolatedTables, TableAccess, reach};
use crate::addr::{PhysAddr, PhysFrame, VirtAddr};
use crate::alloc::{FrameAllocator, Zone};
use crate::entry::{Entry, Level};
use crate::error::{RootError, TranslateError};
use crate::features::{CpuFeatures, LeafRule};
use crate::hooks::{NativeHooks, TableHooks};
use crate::mode::PagingMode;
use crate::table::{RawTable, WORDS_PER_TABLE};
use crate::walk::{Slot, Translation, Walk, Walker};

/// Maps, unmaps, translates and re-flags pages in one hierarchy.
///
/// `M` is the paging mode (a backend), `A` how tables are reached, `H` the
/// table-lifecycle hooks ([`NativeHooks`] by default).
///
/// A mapper is bound to the [`CpuFeatures`] of the CPU that walks its
/// tables, and never writes a bit that CPU treats as reserved: a request
/// that needs a feature the CPU lacks fails with
/// [`MapError::MissingFeature`](crate::MapError::MissingFeature) (see
/// [`features`](crate::features) for the rule).
pub struct Mapper<M: PagingMode, A: TableAccess, H: TableHooks = NativeHooks> {
    walker: Walker<M, A>,
    hooks: H,
    pte_zone: Zone,
    features: CpuFeatures,
    /// `features` precomputed for `M` (the hot paths' check).
    rule: LeafRule,
}

impl<M: PagingMode, A: TableAccess + core::fmt::Debug, H: TableHooks + core::fmt::Debug>
    core::fmt::Debug for Mapper<M, A, H>
{
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Mapper")
            .field("walker", &self.walker)
            .field("hooks", &self.hooks)
            .field("pte_zone", &self.pte_zone)
            .field("features", &self.features)
            .finish()
    }
}

impl<M: PagingMode, A: TableAccess> Mapper<M, A, NativeHooks> {
    /// A mapper for the existing hierarchy whose PGD is at `root`, for a
    /// CPU with `features`.
    ///
    /// `root` must be aligned to [`PagingMode::PGD_ALIGN`] and below 4 GiB
    /// (CR3 holds a 32-bit address in both modes).
    ///
    /// # Safety
    /// `root` is a page directory (a PDPT in PAE mode) that `access`
    /// reaches, whose tables are reached by `access` too; and the binding
    /// contract: while a CPU running this program uses this hierarchy,
    /// every change made through this mapper, or anything built with it
    /// (fixmap windows, kmap pools), keeps Rust's memory safety: no second
    /// mapping of a frame that breaks a Rust object's aliasing rules, no
    /// removed, restricted or redirected mapping that live references or
    /// running code use, nothing immutable made writable; and no table of
    /// this hierarchy that another hierarchy in use still links (a kernel
    /// half shared through [`KernelSync`](crate::KernelSync) or
    /// [`sync_kernel_entry`](crate::sync_kernel_entry), a table installed
    /// into both) is freed through it
    /// ([`free_empty_tables`](Self::free_empty_tables),
    /// [`merge_large_pages`](Self::merge_large_pages),
    /// [`teardown`](Self::teardown) and
    /// [`teardown_releasing`](Self::teardown_releasing) over such a range):
    /// the other hierarchy would then walk whatever its next owner writes.
    /// Tables reached through an [`IsolatedTables`] access need none of
    /// this: use [`new_isolated`](Self::new_isolated).
    ///
    /// A `const fn`, so a kernel can bind a root it knows at compile time in
    /// a static.
    pub const unsafe fn new(
        root: PhysAddr,
        access: A,
        features: CpuFeatures,
    ) -> Result<Self, RootError> {
        let error = if !root.is_aligned(M::PGD_ALIGN) {
            Some(RootError::Unaligned {
                addr: root,
                align: M::PGD_ALIGN,
            })
        } else if !root.fits_bits(32) {
            Some(RootError::AboveCr3Limit(root))
        } else {
            None
        };
        if let Some(error) = error {
            // A `const fn` cannot run `A`'s destructor; table accesses are
            // handles (a reference, an offset) with nothing to release.
            core::mem::forget(access);
            return Err(error);
        }
        Ok(Self {
            walker: Walker::new(root, access),
            hooks: NativeHooks,
            pte_zone: Zone::Lowmem,
            features,
            rule: LeafRule::of::<M>(&features),
        })
    }

    /// A new, empty hierarchy for a CPU with `features`: one zeroed lowmem
    /// frame becomes the PGD.
    ///
    /// # Safety
    /// `access` reaches the frames `alloc` hands out, and the binding
    /// contract of [`new`](Self::new) holds for the new hierarchy once a CPU
    /// running this program uses it.
    pub unsafe fn create<F: FrameAllocator + ?Sized>(
        access: A,
        features: CpuFeatures,
        alloc: &mut F,
    ) -> Result<Self, RootError> {
        // SAFETY: the caller keeps the same contract.
        unsafe { Self::create_with_hooks(access, NativeHooks, features, alloc) }
    }
}

impl<M: PagingMode, A: IsolatedTables> Mapper<M, A, NativeHooks> {
    /// [`new`](Self::new) for tables no CPU running this program walks
    /// (the host model, a test buffer): nothing to promise.
    pub const fn new_isolated(
        root: PhysAddr,
        access: A,
        features: CpuFeatures,
    ) -> Result<Self, RootError> {
        // SAFETY: `IsolatedTables` promises no CPU running this program uses
        // these tables, so no mapping made through them can affect it.
        unsafe { Self::new(root, access, features) }
    }

    /// [`create`](Self::create) for tables no CPU running this program walks.
    pub fn create_isolated<F: FrameAllocator + ?Sized>(
        access: A,
        features: CpuFeatures,
        alloc: &mut F,
    ) -> Result<Self, RootError> {
        // SAFETY: as in `new_isolated`.
        unsafe { Self::create(access, features, alloc) }
    }
}

impl<M: PagingMode, A: IsolatedTables, H: TableHooks> Mapper<M, A, H> {
    /// [`create_with_hooks`](Self::create_with_hooks) for tables no CPU
    /// running this program walks.
    pub fn create_isolated_with_hooks<F: FrameAllocator + ?Sized>(
        access: A,
        hooks: H,
        features: CpuFeatures,
        alloc: &mut F,
    ) -> Result<Self, RootError> {
        // SAFETY: as in `new_isolated`.
        unsafe { Self::create_with_hooks(access, hooks, features, alloc) }
    }

    /// [`install_pte_tables`](Self::install_pte_tables) for tables no CPU
    /// running this program walks. Nothing of this program is at stake,
    /// so it is safe; the frames' contract still decides whether the
    /// *model's* hierarchy stays sound (the tests of issue 19, item 5 break
    /// it on purpose, in `paging-core/tests/frame_contracts.rs`).
    pub fn install_pte_tables_isolated<T, F>(
        &mut self,
        start: crate::addr::VirtAddr,
        first: PhysFrame,
        count: usize,
        fresh: crate::mapper::FreshTables,
        tlb: &T,
        alloc: &mut F,
    ) -> Result<crate::mapper::Replaced, crate::error::InstallError>
    where
        T: crate::flush::TlbOps + ?Sized,
        F: FrameAllocator + ?Sized,
    {
        // SAFETY: writes through an isolated access cannot touch this
        // program's memory or the tables its CPUs use.
        unsafe { self.install_pte_tables(start, first, count, fresh, tlb, alloc) }
    }
}

impl<M: PagingMode, A: TableAccess, H: TableHooks> Mapper<M, A, H> {
    /// Like [`Mapper::create`], announcing the new PGD to `hooks`.
    ///
    /// # Safety
    /// As for [`Mapper::create`].
    pub unsafe fn create_with_hooks<F: FrameAllocator + ?Sized>(
        access: A,
        hooks: H,
        features: CpuFeatures,
        alloc: &mut F,
    ) -> Result<Self, RootError> {
        let frame = alloc
            .allocate_frame(Zone::Lowmem)
            .ok_or(RootError::OutOfFrames)?;
        let root = frame.start_address();
        if !root.fits_bits(32) {
            // SAFETY: just allocated and never used.
            unsafe { alloc.deallocate_frame(frame) };
            return Err(RootError::AboveCr3Limit(root));
        }
        if let Err(e) = zero_frame(&access, frame) {
            // SAFETY: just allocated, never linked (nothing is a hierarchy
            // yet).
            unsafe { alloc.deallocate_frame(frame) };
            return Err(RootError::Access(e));
        }
        hooks.table_allocated(frame, Level::Pgd);
        Ok(Self {
            walker: Walker::new(root, access),
            hooks,
            pte_zone: Zone::Lowmem,
            features,
            rule: LeafRule::of::<M>(&features),
        })
    }

    /// The same mapper with other hooks.
    pub fn with_hooks<H2: TableHooks>(self, hooks: H2) -> Mapper<M, A, H2> {
        Mapper {
            walker: self.walker,
            hooks,
            pte_zone: self.pte_zone,
            features: self.features,
            rule: self.rule,
        }
    }

    /// The features of the CPU this mapper writes entries for.
    pub fn features(&self) -> CpuFeatures {
        self.features
    }

    /// The physical address width this mapper's entries may use: the
    /// smaller of the CPU's MAXPHYADDR and the mode's `MAX_PHYS_BITS`.
    pub fn phys_bits(&self) -> u32 {
        self.rule.phys_bits
    }

    /// Take new PTE tables from `zone` (default [`Zone::Lowmem`]). Use
    /// [`Zone::PreferHighmem`] with an access method that can reach highmem
    /// frames (pte-highmem). PMD tables and PGDs always come from lowmem.
    pub fn with_pte_zone(mut self, zone: Zone) -> Self {
        self.pte_zone = zone;
        self
    }

    /// The physical address of the PGD (what goes in CR3).
    pub fn root(&self) -> PhysAddr {
        self.walker.root()
    }

    /// The read-only walker over the same hierarchy.
    pub fn walker(&self) -> &Walker<M, A> {
        &self.walker
    }

    /// The table access in use.
    pub fn access(&self) -> &A {
        self.walker.access()
    }

    /// The hooks in use.
    pub fn hooks(&self) -> &H {
        &self.hooks
    }

    /// The zone new PTE tables come from.
    pub fn pte_zone(&self) -> Zone {
        self.pte_zone
    }

    /// Give back the table access and hooks.
    pub fn into_parts(self) -> (A, H) {
        (self.walker.into_access(), self.hooks)
    }

    /// Every entry the walk for `va` reads.
    pub fn walk(&self, va: VirtAddr) -> Result<Walk<M>, AccessError> {
        self.walker.walk(va)
    }

    /// What `va` translates to according to the tables (not the TLB).
    pub fn translate(&self, va: VirtAddr) -> Result<Translation, TranslateError> {
        self.walker.translate(va)
    }

    /// Every present leaf in `[start, start + len)`, in address order
    /// ([`Walker::mappings`]).
    pub fn mappings(&self, start: impl Into<VirtAddr>, len: u64) -> crate::Mappings<'_, M, A> {
        self.walker.mappings(start, len)
    }

    /// The mappings of `[start, start + len)` as printable text
    /// ([`Walker::dump`]).
    pub fn dump(&self, start: impl Into<VirtAddr>, len: u64) -> crate::Dump<'_, M, A> {
        self.walker.dump(start, len)
    }

    /// Write `new` into an installed table's slot that was just read as
    /// empty, then tell the hooks (the old value was zero).
    fn write_empty<E: Entry>(&self, slot: Slot, level: Level, new: E) -> Result<(), AccessError> {
        let table = reach(self.walker.access(), slot.table)?;
        E::fill(&table, slot.index, new);
        drop(table);
        self.hooks
            .entry_written(slot.table, level, slot.index, 0, new.raw());
        Ok(())
    }

    /// Write `new` into an installed table's slot, then tell the hooks.
    fn write<E: Entry>(&self, slot: Slot, level: Level, new: E) -> Result<E, AccessError> {
        let table = reach(self.walker.access(), slot.table)?;
        let old = E::store(&table, slot.index, new);
        drop(table);
        self.hooks
            .entry_written(slot.table, level, slot.index, old.raw(), new.raw());
        Ok(old)
    }
}

/// Zero every word of `frame`.
pub(crate) fn zero_frame<A: TableAccess + ?Sized>(
    access: &A,
    frame: PhysFrame,
) -> Result<(), AccessError> {
    let table = reach(access, frame)?;
    for word in 0..WORDS_PER_TABLE {
        table.store32(word, 0);
    }
    Ok(())
}
