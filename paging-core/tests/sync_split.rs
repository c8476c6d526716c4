//! `KernelSync::set_memory` and `KernelSync::merge_large_pages`: a large
//! kernel page split, changed and merged back in the reference directory,
//! with every registered directory's copy of the entry kept in step, seen
//! through the simulated MMU in each directory.
//!
//! What the hardware must see (SDM Vol. 3A 4.6: a supervisor write to a
//! read-only page faults with error code P | W = 3 when CR0.WP = 1; 4.8:
//! the Dirty bit at bit 6 of a 4 KiB PTE) is written here from the SDM,
//! never from the code under test.
mod mapper_support;
mod sync_support;

use std::cell::RefCell;

use mapper_support::{frame, pa, va};
use paging_core::{
    AttrChange, AttrError, CpuFeatures, Entry, KernelSync, LargePages, MapFlags, Mapper,
    NativeHooks, PAGE_SIZE, Page, PagingMode, PhysAddr, PmdEntry, SyncError, SyncOutcome, TlbOps,
    sync_kernel_entry,
};
use paging_sim::{Access, Machine, SimAccess, SimRam};
use sync_support::Interrupting;

const KERNEL: u32 = 0xC000_0000;
/// A large-page block in the kernel half, aligned to 4 MiB.
const LARGE: u32 = 0xC080_0000;
/// Where it maps, aligned to 4 MiB.
const PHYS: u64 = 0x4000_0000;
/// The page made read-only.
const RO_PAGE: u32 = LARGE + 5 * PAGE_SIZE as u32;
/// A supervisor write to a present read-only page.
const WRITE_TO_READ_ONLY: u32 = 0b11;

type Sync<'r, M> = KernelSync<M, SimAccess<'r>, NativeHooks, 8>;

fn span<M: PagingMode>() -> u64 {
    M::pmd_span()
}

/// A machine whose reference maps the kernel image page, the registry,
/// and `dirs` directories registered with it.
fn setup<M: PagingMode>(
    ram: &SimRam,
    dirs: usize,
    large_first: bool,
) -> (Machine<'_, M>, Sync<'_, M>, Vec<PhysAddr>) {
    let mut m = Machine::<M>::new(ram);
    m.mapper
        .map(
            Page::from_start_address(va(KERNEL)).unwrap(),
            frame(0x10_0000),
            MapFlags::KERNEL_RW,
            &mut m.alloc,
        )
        .unwrap()
        .flush(&m.mmu);
    if large_first {
        map_large(&mut m);
    }
    let sync = KernelSync::new_isolated(
        m.mapper.root(),
        va(KERNEL),
        SimAccess::new(ram),
        NativeHooks,
    );
    let roots = (0..dirs)
        .map(|_| {
            let d = Mapper::<M, _>::create_isolated(
                SimAccess::new(ram),
                CpuFeatures::full::<M>(),
                &mut m.alloc,
            )
            .unwrap()
            .root();
            sync.register(d).unwrap();
            d
        })
        .collect();
    (m, sync, roots)
}

/// One large page at `LARGE`, kernel read-write.
fn map_large<M: PagingMode>(m: &mut Machine<'_, M>) {
    m.mapper
        .map_range(
            va(LARGE),
            pa(PHYS),
            span::<M>(),
            MapFlags::KERNEL_RW,
            LargePages::Use,
            &mut m.alloc,
        )
        .unwrap()
        .flush(&m.mmu);
}

/// What a write to `at` does with `root` loaded in CR3: the physical
/// address and page size, or the fault's error code.
fn write_in<M: PagingMode>(m: &Machine<'_, M>, root: PhysAddr, at: u32) -> Result<(u64, u64), u32> {
    m.mmu.load_cr3(root.as_u64() as u32).unwrap();
    m.mmu
        .translate(va(at), Access::WRITE)
        .map(|t| (t.pa.as_u64(), t.size.bytes()))
        .map_err(|f| f.code)
}

/// The raw entry a walk of `root` ends at for `at`: the PTE, or the large
/// entry.
fn leaf_in<M: PagingMode>(ram: &SimRam, root: PhysAddr, at: u32) -> u64 {
    let walker = paging_core::Walker::<M, _>::new(root, SimAccess::new(ram));
    let walk = walker.walk(va(at)).unwrap();
    walk.pte
        .map_or_else(|| walk.pmd.unwrap().1.raw(), |(_, e)| e.raw())
}

/// The PMD-level entry (the PDE) `root` holds for `at`.
fn pde_in<M: PagingMode>(ram: &SimRam, root: PhysAddr, at: u32) -> M::Pmd {
    let walker = paging_core::Walker::<M, _>::new(root, SimAccess::new(ram));
    walker.walk(va(at)).unwrap().pmd.unwrap().1
}

/// `change` on `RO_PAGE` through the registry.
fn change<M: PagingMode>(
    sync: &Sync<'_, M>,
    m: &mut Machine<'_, M>,
    change: AttrChange,
) -> Result<paging_core::SyncedAttrStats, SyncError> {
    sync.set_memory(
        &mut m.mapper,
        va(RO_PAGE),
        PAGE_SIZE,
        change,
        &m.mmu,
        &mut m.alloc,
    )
}

fn kernel_sync_split_makes_a_page_read_only_in_every_directory<M: PagingMode>() {
    let ram = SimRam::new();
    let (mut m, sync, dirs) = setup::<M>(&ram, 3, true);
    let everyone: Vec<PhysAddr> = std::iter::once(m.mapper.root())
        .chain(dirs.clone())
        .collect();
    // Every directory writes through the large page (its TLB entry is the
    // large one).
    for &root in &everyone {
        assert_eq!(
            write_in(&m, root, RO_PAGE),
            Ok((PHYS + 5 * PAGE_SIZE, M::LARGE_PAGE_SIZE.bytes()))
        );
    }
    let stats = change(&sync, &mut m, AttrChange::RO).unwrap();
    assert_eq!(stats.attrs.split, 1);
    assert_eq!(stats.attrs.changed, 1);
    // 2-level: each directory's copy of the PDE pointed at the new table;
    // PAE: the kernel PMD is shared, there are no copies.
    assert_eq!(stats.copies, if M::PMD_FOLDED { 3 } else { 0 });
    assert_eq!(
        stats.to_string(),
        format!(
            "1 split, 1 pages and 0 large pages changed (1 entries), {} copies updated",
            stats.copies
        )
    );
    for &root in &everyone {
        assert_eq!(
            write_in(&m, root, RO_PAGE),
            Err(WRITE_TO_READ_ONLY),
            "directory {root}"
        );
        for neighbour in [RO_PAGE - PAGE_SIZE as u32, RO_PAGE + PAGE_SIZE as u32] {
            let off = u64::from(neighbour - LARGE);
            assert_eq!(
                write_in(&m, root, neighbour),
                Ok((PHYS + off, PAGE_SIZE)),
                "the rest of the large page is as it was, in 4 KiB pages"
            );
        }
        assert!(!pde_in::<M>(&ram, root, LARGE).is_large());
    }
    // Done again, nothing more to change anywhere.
    let again = change(&sync, &mut m, AttrChange::RO).unwrap();
    assert_eq!(
        (again.attrs.split, again.attrs.changed, again.copies),
        (0, 0, 0)
    );
}

/// Why the registry's call exists: through the mapper alone, in 2-level
/// mode, the other directories keep their copy of the large entry and go
/// on writing the page.
fn a_plain_mapper_split_leaves_copies_writable_in_2_level<M: PagingMode>() {
    let ram = SimRam::new();
    let (mut m, _sync, dirs) = setup::<M>(&ram, 1, true);
    m.mapper
        .set_memory(va(RO_PAGE), PAGE_SIZE, AttrChange::RO, &m.mmu, &mut m.alloc)
        .unwrap();
    let expected = if M::PMD_FOLDED {
        Ok((PHYS + 5 * PAGE_SIZE, M::LARGE_PAGE_SIZE.bytes()))
    } else {
        Err(WRITE_TO_READ_ONLY)
    };
    assert_eq!(write_in(&m, dirs[0], RO_PAGE), expected);
}

fn kernel_sync_split_keeps_the_dirty_bit_a_copy_collected<M: PagingMode>() {
    let ram = SimRam::new();
    let (mut m, sync, dirs) = setup::<M>(&ram, 2, true);
    // Only the second directory writes page 7: in 2-level mode only its
    // copy of the PDE is dirty, the reference's entry is not.
    let dirty = LARGE + 7 * PAGE_SIZE as u32;
    write_in(&m, dirs[1], dirty).unwrap();
    // The reference reads: its entry (so every PTE of the split) has A,
    // which the copy's A and D must not toggle away.
    m.mmu.load_cr3(m.mapper.root().as_u64() as u32).unwrap();
    m.mmu.translate(va(LARGE), Access::READ).unwrap();
    change(&sync, &mut m, AttrChange::RO).unwrap();
    let pte = leaf_in::<M>(&ram, m.mapper.root(), dirty);
    assert_ne!(pte & 1 << 6, 0, "D (bit 6) of page 7's PTE: {pte:#x}");
    // The copy's D covered the whole large page: every PTE has it, the
    // first and the last included.
    let last = LARGE + (span::<M>() - PAGE_SIZE) as u32;
    for at in [LARGE, last] {
        let pte = leaf_in::<M>(&ram, m.mapper.root(), at);
        assert_eq!(pte & 0x60, 0x60, "A and D of the PTE for {at:#x}: {pte:#x}");
    }
    assert_ne!(pte & 1 << 5, 0, "A (bit 5): {pte:#x}");
    assert_eq!(pte & 1 << 1, 1 << 1, "page 7 stays writable");
}

fn kernel_sync_split_then_merge_frees_the_table_after_every_copy<M: PagingMode>() {
    let ram = SimRam::new();
    let (mut m, sync, dirs) = setup::<M>(&ram, 3, true);
    change(&sync, &mut m, AttrChange::RO).unwrap();
    let table = pde_in::<M>(&ram, m.mapper.root(), LARGE).addr();
    // One page read-only: not uniform, kept, linked everywhere still.
    let live = m.alloc.live();
    let kept = sync
        .merge_large_pages(&mut m.mapper, va(LARGE), span::<M>(), &m.mmu, &mut m.alloc)
        .unwrap();
    assert_eq!((kept.merge.merged, kept.merge.kept, kept.copies), (0, 1, 0));
    assert_eq!(m.alloc.live(), live);
    for &root in &dirs {
        assert_eq!(pde_in::<M>(&ram, root, LARGE).addr(), table);
    }
    let back = change(&sync, &mut m, AttrChange::RW).unwrap();
    assert_eq!(
        (back.attrs.split, back.attrs.changed, back.copies),
        (0, 1, 0)
    );
    let live = m.alloc.live();
    let merged = sync
        .merge_large_pages(&mut m.mapper, va(LARGE), span::<M>(), &m.mmu, &mut m.alloc)
        .unwrap();
    assert_eq!((merged.merge.merged, merged.merge.kept), (1, 0));
    assert_eq!(merged.copies, if M::PMD_FOLDED { 3 } else { 0 });
    assert_eq!(m.alloc.live(), live - 1, "the PTE table went back");
    for root in std::iter::once(m.mapper.root()).chain(dirs) {
        let pde = pde_in::<M>(&ram, root, LARGE);
        assert!(pde.is_large(), "directory {root}: {pde:?}");
        assert_ne!(pde.addr(), table);
        assert_eq!(
            write_in(&m, root, RO_PAGE),
            Ok((PHYS + 5 * PAGE_SIZE, M::LARGE_PAGE_SIZE.bytes()))
        );
    }
}

/// Why the registry's merge exists: through the mapper alone, in 2-level
/// mode, the table goes back to the allocator while the other
/// directories' copies still point at it.
fn a_plain_mapper_merge_frees_a_table_copies_link_in_2_level<M: PagingMode>() {
    let ram = SimRam::new();
    let (mut m, sync, dirs) = setup::<M>(&ram, 1, true);
    let tlb: &dyn TlbOps = &m.mmu;
    sync.set_memory(
        &mut m.mapper,
        va(RO_PAGE),
        PAGE_SIZE,
        AttrChange::RO,
        tlb,
        &mut m.alloc,
    )
    .unwrap();
    sync.set_memory(
        &mut m.mapper,
        va(RO_PAGE),
        PAGE_SIZE,
        AttrChange::RW,
        tlb,
        &mut m.alloc,
    )
    .unwrap();
    let table = pde_in::<M>(&ram, m.mapper.root(), LARGE).addr();
    m.mapper
        .merge_large_pages(va(LARGE), span::<M>(), &m.mmu, &mut m.alloc)
        .unwrap();
    let table_frame = paging_core::PhysFrame::containing_address(table);
    assert!(
        !m.alloc.is_live(table_frame),
        "the mapper gave the table back"
    );
    let copy = pde_in::<M>(&ram, dirs[0], LARGE);
    // 2-level: the copy still links the freed table; PAE: shared PMD, the
    // directory sees the large entry.
    assert_eq!(!copy.is_large() && copy.addr() == table, M::PMD_FOLDED);
}

/// A directory registered before the large page existed has an empty copy
/// that the lazy path fills. A fill that read the reference's old large
/// entry, interrupted before its store by the whole change: whatever load
/// the interruption comes after, the directory ends with the new entry, and
/// the page is read-only through it.
fn kernel_sync_split_beats_a_late_lazy_fill<M: PagingMode>() {
    // How many loads the fill makes uninterrupted.
    let probe = {
        let ram = SimRam::new();
        let (mut m, _sync, dirs) = setup::<M>(&ram, 1, false);
        map_large(&mut m);
        let access = Interrupting::new(&ram, usize::MAX, None);
        // SAFETY: both roots are directories in simulated RAM.
        let out = unsafe {
            sync_kernel_entry::<M, _, _>(&access, &NativeHooks, m.mapper.root(), dirs[0], va(LARGE))
        }
        .unwrap();
        let expected = if M::PMD_FOLDED {
            SyncOutcome::Filled
        } else {
            SyncOutcome::NotSyncFault
        };
        assert_eq!(out, expected);
        access.loads.get()
    };
    for at in 0..probe {
        let ram = SimRam::new();
        let (m, sync, dirs) = setup::<M>(&ram, 1, false);
        let reference = m.mapper.root();
        let m = RefCell::new(m);
        map_large(&mut m.borrow_mut());
        let change = || {
            let mut guard = m.borrow_mut();
            let mach = &mut *guard;
            sync.set_memory(
                &mut mach.mapper,
                va(RO_PAGE),
                PAGE_SIZE,
                AttrChange::RO,
                &mach.mmu,
                &mut mach.alloc,
            )
            .unwrap();
        };
        let access = Interrupting::new(&ram, at, Some(&change));
        // SAFETY: both roots are directories in simulated RAM.
        let out = unsafe {
            sync_kernel_entry::<M, _, _>(&access, &NativeHooks, reference, dirs[0], va(LARGE))
        }
        .unwrap();
        assert!(access.nested.take().is_none(), "the change ran (at {at})");
        let m = m.into_inner();
        let want = pde_in::<M>(&ram, reference, LARGE);
        assert!(!want.is_large());
        let have = pde_in::<M>(&ram, dirs[0], LARGE);
        assert_eq!(have.addr(), want.addr(), "at {at}: {out:?}");
        assert_eq!(
            write_in(&m, dirs[0], RO_PAGE),
            Err(WRITE_TO_READ_ONLY),
            "at {at}"
        );
    }
}

/// A (bit 5) and D (bit 6) of a raw entry.
fn status_bits(raw: u64) -> (bool, bool) {
    (raw & 1 << 5 != 0, raw & 1 << 6 != 0)
}

/// A whole large page changed through the registry: no split, and each
/// directory's copy is the new large entry with its own Accessed and Dirty
/// bits (the CPU sets them per directory; the change does not invent or
/// drop any).
fn kernel_sync_whole_large_page_keeps_each_copy_s_own_status<M: PagingMode>() {
    let ram = SimRam::new();
    let (mut m, sync, dirs) = setup::<M>(&ram, 2, true);
    // The data the large page maps (its first word looks like a present
    // entry): not a table, never written by the change.
    ram.write_u32(pa(PHYS), 0x1).unwrap();
    // The reference reads (its entry gains A), dirs[0] only reads, dirs[1]
    // writes.
    m.mmu.load_cr3(m.mapper.root().as_u64() as u32).unwrap();
    m.mmu.translate(va(RO_PAGE), Access::READ).unwrap();
    m.mmu.load_cr3(dirs[0].as_u64() as u32).unwrap();
    m.mmu.translate(va(RO_PAGE), Access::READ).unwrap();
    write_in(&m, dirs[1], RO_PAGE).unwrap();
    let stats = sync
        .set_memory(
            &mut m.mapper,
            va(LARGE),
            span::<M>(),
            AttrChange::RO,
            &m.mmu,
            &mut m.alloc,
        )
        .unwrap();
    assert_eq!((stats.attrs.split, stats.attrs.large_pages), (0, 1));
    assert_eq!(stats.copies, if M::PMD_FOLDED { 2 } else { 0 });
    for &root in &dirs {
        assert_eq!(write_in(&m, root, RO_PAGE), Err(WRITE_TO_READ_ONLY));
    }
    if M::PMD_FOLDED {
        let first = pde_in::<M>(&ram, dirs[0], LARGE);
        let second = pde_in::<M>(&ram, dirs[1], LARGE);
        assert!(first.is_large() && second.is_large());
        assert_eq!(status_bits(first.raw()), (true, false), "{first:?}");
        assert_eq!(status_bits(second.raw()), (true, true), "{second:?}");
    }
    assert_eq!(ram.read_u32(pa(PHYS)).unwrap(), 0x1, "the page's data");
}

/// A split gives the PTEs the status bits some copy had, and no more: with
/// every directory only reading, no PTE is dirty.
fn kernel_sync_split_invents_no_dirty_bit<M: PagingMode>() {
    let ram = SimRam::new();
    let (mut m, sync, dirs) = setup::<M>(&ram, 2, true);
    for &root in std::iter::once(&m.mapper.root()).chain(&dirs) {
        m.mmu.load_cr3(root.as_u64() as u32).unwrap();
        m.mmu.translate(va(RO_PAGE), Access::READ).unwrap();
    }
    change(&sync, &mut m, AttrChange::RO).unwrap();
    let other = LARGE + 9 * PAGE_SIZE as u32;
    let pte = leaf_in::<M>(&ram, m.mapper.root(), other);
    assert_eq!(status_bits(pte), (true, false), "{pte:#x}");
}

/// An allocator whose frame for the split's table is aligned to the large
/// page size (any frame is the allocator's to give): every copy must still
/// become a table entry, never a large page over the table's frame.
fn kernel_sync_split_with_a_large_aligned_table_frame<M: PagingMode>() {
    let ram = SimRam::new();
    let (mut m, sync, dirs) = setup::<M>(&ram, 2, true);
    for &root in &dirs {
        write_in(&m, root, RO_PAGE).unwrap();
    }
    let aligned = 0x0400_0000;
    let mut alloc = paging_sim::ZonedAllocator::new(aligned..aligned + 0x1000, 0..0);
    let stats = sync
        .set_memory(
            &mut m.mapper,
            va(RO_PAGE),
            PAGE_SIZE,
            AttrChange::RO,
            &m.mmu,
            &mut alloc,
        )
        .unwrap();
    assert_eq!(stats.attrs.split, 1);
    for &root in &dirs {
        let pde = pde_in::<M>(&ram, root, LARGE);
        assert!(!pde.is_large() && pde.addr() == pa(aligned), "{pde:?}");
        assert_eq!(write_in(&m, root, RO_PAGE), Err(WRITE_TO_READ_ONLY));
        assert_eq!(
            write_in(&m, root, RO_PAGE + PAGE_SIZE as u32),
            Ok((PHYS + 6 * PAGE_SIZE, PAGE_SIZE))
        );
    }
}

/// A merge gives each copy the reference's new large entry: the Accessed
/// bit a copy's *table* entry collected says nothing about the pages
/// (here every PTE's Accessed bit was harvested away), so it is not
/// carried into the large entry.
fn kernel_sync_merge_ignores_a_copy_s_table_entry_status<M: PagingMode>() {
    let ram = SimRam::new();
    let (mut m, sync, dirs) = setup::<M>(&ram, 1, true);
    change(&sync, &mut m, AttrChange::RO).unwrap();
    // The directory walks through its copy of the table entry (A set there).
    m.mmu.load_cr3(dirs[0].as_u64() as u32).unwrap();
    m.mmu.translate(va(RO_PAGE), Access::READ).unwrap();
    let (_, flush) = m
        .mapper
        .test_and_clear_accessed(va(LARGE), span::<M>())
        .unwrap();
    flush.flush(&m.mmu);
    change(&sync, &mut m, AttrChange::RW).unwrap();
    let merged = sync
        .merge_large_pages(&mut m.mapper, va(LARGE), span::<M>(), &m.mmu, &mut m.alloc)
        .unwrap();
    assert_eq!(merged.merge.merged, 1);
    let reference = pde_in::<M>(&ram, m.mapper.root(), LARGE);
    let copy = pde_in::<M>(&ram, dirs[0], LARGE);
    assert!(copy.is_large());
    assert_eq!(
        status_bits(reference.raw()),
        (false, false),
        "{reference:?}"
    );
    assert_eq!(copy.raw(), reference.raw());
}

/// The TLBs of two CPUs in one simulated MMU: every flush (after doing
/// it) lets a CPU running `dir` write `at` again, caching whatever `dir`'s
/// entry says at that moment (dirty, if it allows the write), as a CPU on
/// another directory would between the reference's change and its copy's.
struct Recaching<'a, 'r> {
    mmu: &'a paging_sim::Mmu<'r>,
    dir: PhysAddr,
    at: u32,
}

impl TlbOps for Recaching<'_, '_> {
    fn flush_page(&self, at: paging_core::VirtAddr) {
        self.mmu.flush_page(at);
        self.recache();
    }
    fn flush_all(&self) {
        self.mmu.flush_all();
        self.recache();
    }
    fn flush_everything(&self) {
        self.mmu.flush_everything();
        self.recache();
    }
}

impl Recaching<'_, '_> {
    fn recache(&self) {
        let back = self.mmu.cr3();
        self.mmu.load_cr3(self.dir.as_u64() as u32).unwrap();
        let _ = self.mmu.translate(va(self.at), Access::WRITE);
        self.mmu.load_cr3(back).unwrap();
    }
}

/// A whole global large page made read-only through the registry while
/// another CPU re-caches the old writable large translation from its
/// directory's copy right after the reference's flush: the flush after
/// the copy is rewritten drops it, and the page is read-only there too.
fn kernel_sync_whole_large_page_flushes_what_another_cpu_cached_from_its_copy<M: PagingMode>() {
    let ram = SimRam::new();
    let (mut m, sync, dirs) = setup::<M>(&ram, 1, false);
    m.mapper
        .map_range(
            va(LARGE),
            pa(PHYS),
            span::<M>(),
            MapFlags::KERNEL_RW | MapFlags::GLOBAL,
            LargePages::Use,
            &mut m.alloc,
        )
        .unwrap()
        .flush(&m.mmu);
    assert_eq!(
        sync.publish(va(LARGE), span::<M>()).unwrap(),
        usize::from(M::PMD_FOLDED)
    );
    let other_cpu = Recaching {
        mmu: &m.mmu,
        dir: dirs[0],
        at: RO_PAGE,
    };
    sync.set_memory(
        &mut m.mapper,
        va(LARGE),
        span::<M>(),
        AttrChange::RO,
        &other_cpu,
        &mut m.alloc,
    )
    .unwrap();
    assert_eq!(write_in(&m, dirs[0], RO_PAGE), Err(WRITE_TO_READ_ONLY));
}

/// With nothing to change, the registry's call changes no entry and
/// flushes nothing.
fn kernel_sync_split_with_nothing_to_do_flushes_nothing<M: PagingMode>() {
    let ram = SimRam::new();
    let (mut m, sync, _dirs) = setup::<M>(&ram, 2, true);
    change(&sync, &mut m, AttrChange::RO).unwrap();
    let before = m.mmu.tlb_stats();
    let again = change(&sync, &mut m, AttrChange::RO).unwrap();
    assert_eq!(
        (again.attrs.split, again.attrs.changed, again.copies),
        (0, 0, 0)
    );
    let after = m.mmu.tlb_stats();
    assert_eq!(
        (after.invlpg, after.global_flushes, after.cr3_loads),
        (before.invlpg, before.global_flushes, before.cr3_loads)
    );
}

/// A merge stays inside its range: the next block, split and uniform
/// again too, is left split; a range ending at exactly 4 GiB is fine.
fn kernel_sync_merge_touches_only_its_blocks<M: PagingMode>() {
    let ram = SimRam::new();
    let (mut m, sync, dirs) = setup::<M>(&ram, 1, false);
    m.mapper
        .map_range(
            va(LARGE),
            pa(PHYS),
            2 * span::<M>(),
            MapFlags::KERNEL_RW,
            LargePages::Use,
            &mut m.alloc,
        )
        .unwrap()
        .flush(&m.mmu);
    let next = LARGE + span::<M>() as u32;
    for (at, change) in [
        (LARGE, AttrChange::RO),
        (next, AttrChange::RO),
        (LARGE, AttrChange::RW),
        (next, AttrChange::RW),
    ] {
        sync.set_memory(
            &mut m.mapper,
            va(at),
            PAGE_SIZE,
            change,
            &m.mmu,
            &mut m.alloc,
        )
        .unwrap();
    }
    // A kernel mapping further up, in the reference only (2-level: the
    // directory's copy stays empty until a lazy fill or `publish`).
    let far = 0xD000_0000;
    m.mapper
        .map(
            Page::from_start_address(va(far)).unwrap(),
            frame(0x30_0000),
            MapFlags::KERNEL_RW,
            &mut m.alloc,
        )
        .unwrap()
        .flush(&m.mmu);
    let merged = sync
        .merge_large_pages(&mut m.mapper, va(LARGE), span::<M>(), &m.mmu, &mut m.alloc)
        .unwrap();
    assert_eq!((merged.merge.merged, merged.merge.kept), (1, 0));
    assert_eq!(
        merged.copies,
        usize::from(M::PMD_FOLDED),
        "only the block's copy"
    );
    for root in [m.mapper.root(), dirs[0]] {
        assert!(pde_in::<M>(&ram, root, LARGE).is_large());
        assert!(!pde_in::<M>(&ram, root, next).is_large(), "the next block");
    }
    if M::PMD_FOLDED {
        let walker = paging_core::Walker::<M, _>::new(dirs[0], SimAccess::new(&ram));
        let copy: M::Pmd = walker
            .pgd_slot(va(far))
            .read(&SimAccess::new(&ram))
            .unwrap();
        assert!(copy.is_none(), "{copy:?}: not the merge's to fill");
    }
    // Both blocks: the first is a large page already, the next merges.
    let both = sync
        .merge_large_pages(
            &mut m.mapper,
            va(LARGE),
            2 * span::<M>(),
            &m.mmu,
            &mut m.alloc,
        )
        .unwrap();
    assert_eq!((both.merge.merged, both.merge.kept), (1, 0));
    assert!(pde_in::<M>(&ram, dirs[0], next).is_large());
    let top = sync
        .merge_large_pages(
            &mut m.mapper,
            va(0xFFC0_0000),
            0x40_0000,
            &m.mmu,
            &mut m.alloc,
        )
        .unwrap();
    assert_eq!((top.merge.merged, top.merge.kept, top.copies), (0, 0, 0));
}

fn kernel_sync_split_errors_change_nothing<M: PagingMode>() {
    let ram = SimRam::new();
    let (mut m, sync, dirs) = setup::<M>(&ram, 2, true);
    // Not the reference: a mapper of another directory.
    let mut other =
        Mapper::<M, _>::new_isolated(dirs[0], SimAccess::new(&ram), CpuFeatures::full::<M>())
            .unwrap();
    let e = m.assert_unchanged(|m| {
        sync.set_memory(
            &mut other,
            va(RO_PAGE),
            PAGE_SIZE,
            AttrChange::RO,
            &m.mmu,
            &mut m.alloc,
        )
    });
    assert_eq!(
        e,
        Err(SyncError::NotReference {
            root: dirs[0],
            reference: m.mapper.root()
        })
    );
    let e = m.assert_unchanged(|m| {
        sync.merge_large_pages(&mut other, va(LARGE), span::<M>(), &m.mmu, &mut m.alloc)
    });
    assert!(matches!(e, Err(SyncError::NotReference { .. })), "{e:?}");

    // A change the CPU cannot carry is refused before the split.
    let bad = if M::PMD_FOLDED {
        AttrChange::NX
    } else {
        AttrChange::flags(MapFlags::empty(), MapFlags::NO_EXECUTE)
    };
    let mut no_nx = Mapper::<M, _>::new_isolated(
        m.mapper.root(),
        SimAccess::new(&ram),
        CpuFeatures::full::<M>().without(paging_core::CpuFeature::NoExecute),
    )
    .unwrap();
    let e = m.assert_unchanged(|m| {
        sync.set_memory(
            &mut no_nx,
            va(RO_PAGE),
            PAGE_SIZE,
            bad,
            &m.mmu,
            &mut m.alloc,
        )
    });
    assert!(
        matches!(
            e,
            Err(SyncError::Attr(
                AttrError::Unsupported(_) | AttrError::MissingFeature(_)
            ))
        ),
        "{e:?}"
    );

    // Misaligned or past 4 GiB.
    let e = m.assert_unchanged(|m| {
        sync.merge_large_pages(
            &mut m.mapper,
            va(LARGE + 1),
            span::<M>(),
            &m.mmu,
            &mut m.alloc,
        )
    });
    assert!(
        matches!(e, Err(SyncError::Attr(AttrError::Unaligned { .. }))),
        "{e:?}"
    );
    let e = m.assert_unchanged(|m| {
        sync.merge_large_pages(&mut m.mapper, va(LARGE), 0x100, &m.mmu, &mut m.alloc)
    });
    assert!(
        matches!(e, Err(SyncError::Attr(AttrError::Unaligned { .. }))),
        "{e:?}"
    );
    let e = m.assert_unchanged(|m| {
        sync.merge_large_pages(
            &mut m.mapper,
            va(0xFFE0_0000),
            span::<M>() * 2,
            &m.mmu,
            &mut m.alloc,
        )
    });
    assert!(
        matches!(e, Err(SyncError::Attr(AttrError::VirtOutOfRange { .. }))),
        "{e:?}"
    );
    let e = m.assert_unchanged(|m| {
        sync.set_memory(
            &mut m.mapper,
            va(LARGE + 0x10),
            PAGE_SIZE,
            AttrChange::RO,
            &m.mmu,
            &mut m.alloc,
        )
    });
    assert!(
        matches!(e, Err(SyncError::Attr(AttrError::Unaligned { .. }))),
        "{e:?}"
    );
}

/// A registered directory whose entry for the block is neither empty nor
/// the reference's is a conflict: refused before anything changes (2-level:
/// a copy; PAE: a private kernel PMD, refused as such).
fn kernel_sync_split_refuses_a_copy_it_would_overwrite<M: PagingMode>() {
    let ram = SimRam::new();
    let (mut m, sync, _dirs) = setup::<M>(&ram, 0, true);
    let odd = Mapper::<M, _>::create_isolated(
        SimAccess::new(&ram),
        CpuFeatures::full::<M>(),
        &mut m.alloc,
    )
    .unwrap();
    if M::PMD_FOLDED {
        sync.register(odd.root()).unwrap();
        // The directory's own mapping where the reference has its large
        // page (a bug the registry must not paper over).
        let slot = odd.walker().pgd_slot(va(LARGE));
        let at = pa(slot.table.start_address().as_u64() + 4 * slot.index as u64);
        ram.write_u32(at, (PHYS as u32 + 0x40_0000) | 0x83).unwrap();
    } else {
        // Registered, it shares the reference's kernel PMD. Then it is
        // given a private copy of that PMD (the Xen PV arrangement), which
        // `register` itself would have refused.
        sync.register(odd.root()).unwrap();
        let shared = m.mapper.walker().pgd_slot(va(KERNEL));
        let entry = |root: PhysAddr| pa(root.as_u64() + 8 * shared.index as u64);
        let pdpte = ram.read_u64(entry(m.mapper.root())).unwrap();
        let private = m.alloc_contiguous(1).start_address().as_u64();
        for i in 0..512 {
            let e = ram.read_u64(pa((pdpte & !0xFFF) + 8 * i)).unwrap();
            ram.write_u64(pa(private + 8 * i), e).unwrap();
        }
        ram.write_u64(entry(odd.root()), private | (pdpte & 0xFFF))
            .unwrap();
    }
    let e = m.assert_unchanged(|m| change(&sync, m, AttrChange::RO));
    let want = if M::PMD_FOLDED {
        SyncError::Conflict {
            root: odd.root(),
            va: va(LARGE),
        }
    } else {
        SyncError::PrivateKernelPmd {
            root: odd.root(),
            va: va(LARGE),
        }
    };
    assert_eq!(e, Err(want));
    let e = m.assert_unchanged(|m| {
        sync.merge_large_pages(&mut m.mapper, va(LARGE), span::<M>(), &m.mmu, &mut m.alloc)
    });
    assert_eq!(e, Err(want));
    assert!(!format!("{want}").is_empty());
    if M::PMD_FOLDED {
        // A change below the conflicting entry's span is not refused: only
        // the range's own copies are checked.
        let image = Page::from_start_address(va(KERNEL)).unwrap();
        sync.set_memory(
            &mut m.mapper,
            image,
            PAGE_SIZE,
            AttrChange::RO,
            &m.mmu,
            &mut m.alloc,
        )
        .unwrap();
        assert_eq!(write_in(&m, odd.root(), KERNEL), Err(WRITE_TO_READ_ONLY));
    }
}

paging_sim::for_each_mode!(
    kernel_sync_split_makes_a_page_read_only_in_every_directory,
    a_plain_mapper_split_leaves_copies_writable_in_2_level,
    kernel_sync_split_keeps_the_dirty_bit_a_copy_collected,
    kernel_sync_split_then_merge_frees_the_table_after_every_copy,
    a_plain_mapper_merge_frees_a_table_copies_link_in_2_level,
    kernel_sync_split_beats_a_late_lazy_fill,
    kernel_sync_split_errors_change_nothing,
    kernel_sync_split_refuses_a_copy_it_would_overwrite,
    kernel_sync_whole_large_page_keeps_each_copy_s_own_status,
    kernel_sync_split_invents_no_dirty_bit,
    kernel_sync_split_with_a_large_aligned_table_frame,
    kernel_sync_merge_ignores_a_copy_s_table_entry_status,
    kernel_sync_whole_large_page_flushes_what_another_cpu_cached_from_its_copy,
    kernel_sync_split_with_nothing_to_do_flushes_nothing,
    kernel_sync_merge_touches_only_its_blocks,
);
