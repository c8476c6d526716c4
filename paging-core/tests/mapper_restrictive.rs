//! The rule for table entries someone else made restrictive, and for table
//! frames the mode cannot point at, seen through the simulated MMU.
//!
//! The rule (see `Mapper::widen_for`): a table entry is widened (R/W or U/S
//! set, XD cleared, every other bit kept) only when no other present
//! mapping below it gains anything by that; otherwise the call is refused
//! with `TableRestricts` and nothing changes. A leaf that does not need a
//! right never causes the entry to change.
mod mapper_support;

use std::collections::BTreeSet;

use mapper_support::{Rig, frame, machine, pa, va};
use paging_core::{
    Entry, ErrorKind, FrameAllocator, KernelSync, LargePages, Level, MapError, MapFlags,
    NativeHooks, Page, PagingError, PagingMode, PgdEntry, PhysFrame, TlbOps, UnmapError, VirtAddr,
    Walker, Zone,
};
use paging_sim::{Access, SimAccess};

/// A 4 MiB-aligned block both modes cover with one PTE table.
const BASE: u32 = 0xD000_0000;
const X: u32 = BASE + 0x1000;
const Y: u32 = BASE + 0x2000;
/// Software-available bits 9 and 10, PWT, PCD and Accessed: what a loader
/// may leave in a table entry, none of which the mapper may drop.
const KEEP: u64 = 1 << 9 | 1 << 10 | 1 << 3 | 1 << 4 | 1 << 5;

fn page(x: u32) -> Page {
    Page::from_start_address(va(x)).unwrap()
}

fn map<M: PagingMode>(rig: &mut Rig<M>, at: u32, to: u64, flags: MapFlags) -> Result<(), MapError> {
    let flush = rig.mapper.map(page(at), frame(to), flags, &mut rig.alloc)?;
    flush.flush(&rig.mmu);
    Ok(())
}

/// The raw PMD (PDE) entry above `at`.
fn pde<M: PagingMode>(rig: &Rig<M>, at: u32) -> u64 {
    rig.mapper.walk(va(at)).unwrap().pmd.unwrap().1.raw()
}

/// Rewrite the PDE above `at` behind the mapper's back (a loader's edit),
/// and drop every cached translation.
fn set_pde<M: PagingMode>(rig: &Rig<M>, at: u32, raw: u64) {
    let slot = rig.mapper.walk(va(at)).unwrap().pmd.unwrap().0;
    let addr = pa(slot.table.start_address().as_u64() + (slot.index * M::ENTRY_BYTES) as u64);
    if M::ENTRY_BYTES == 4 {
        rig.ram.write_u32(addr, raw as u32).unwrap();
    } else {
        rig.ram.write_u64(addr, raw).unwrap();
    }
    rig.mmu.flush_everything();
}

/// The page-fault error code of an access, or 0 if it is allowed.
fn fault<M: PagingMode>(rig: &Rig<M>, at: u32, access: Access) -> u32 {
    rig.mmu
        .translate(va(at), access)
        .map_or_else(|f| f.code, |_| 0)
}

const USER_READ: Access = Access {
    write: false,
    user: true,
    exec: false,
};
const FETCH: Access = Access {
    write: false,
    user: false,
    exec: true,
};

/// X is mapped writable under a PDE a loader made read-only (with cache and
/// software bits): a supervisor write to X faults with P|W (CR0.WP = 1).
fn read_only_pde_over_writable_x<M: PagingMode>() -> (Rig<M>, u64) {
    let mut rig = machine::<M>();
    map(&mut rig, X, 0x50_0000, MapFlags::KERNEL_RW).unwrap();
    let restricted = (pde(&rig, X) & !(1 << 1)) | KEEP;
    set_pde(&rig, X, restricted);
    assert_eq!(fault(&rig, X, Access::WRITE), 0x3);
    (rig, restricted)
}

fn a_read_only_leaf_never_needs_a_writable_table_entry<M: PagingMode>() {
    let (mut rig, restricted) = read_only_pde_over_writable_x::<M>();
    map(&mut rig, Y, 0x60_0000, MapFlags::KERNEL_RO).unwrap();
    assert_eq!(pde(&rig, X), restricted, "every bit of the PDE kept");
    assert_eq!(fault(&rig, X, Access::WRITE), 0x3, "X gained nothing");
    assert_eq!(rig.hw(va(Y + 8)), Ok(pa(0x60_0008)));
    // The same through map_range, and a flag update that stays read-only.
    let flush = rig
        .mapper
        .map_range(
            va(Y + 0x1000),
            pa(0x61_0000),
            0x2000,
            MapFlags::KERNEL_RO,
            LargePages::Use,
            &mut rig.alloc,
        )
        .unwrap();
    flush.flush(&rig.mmu);
    let flush = rig
        .mapper
        .update_flags(va(Y), MapFlags::KERNEL_RO | MapFlags::CACHE_DISABLE)
        .unwrap();
    flush.flush(&rig.mmu);
    assert_eq!(pde(&rig, X), restricted);
    assert_eq!(fault(&rig, X, Access::WRITE), 0x3);
}

fn widening_that_would_give_another_mapping_a_right_is_refused<M: PagingMode>() {
    let (mut rig, restricted) = read_only_pde_over_writable_x::<M>();
    let refused = |e: MapError| {
        assert_eq!(
            e,
            MapError::TableRestricts {
                va: va(Y),
                level: Level::Pmd,
                raw: restricted
            }
        );
        assert_eq!(e.kind(), ErrorKind::Restricted);
    };
    let e = rig.assert_unchanged(|r| {
        r.mapper
            .map(page(Y), frame(0x60_0000), MapFlags::KERNEL_RW, &mut r.alloc)
    });
    refused(e.unwrap_err());
    let e = rig.assert_unchanged(|r| {
        r.mapper.map_range(
            va(Y),
            pa(0x60_0000),
            0x3000,
            MapFlags::KERNEL_RW,
            LargePages::Avoid,
            &mut r.alloc,
        )
    });
    refused(e.unwrap_err());
    // A read-only leaf made writable: refused before its own entry changes.
    map(&mut rig, Y, 0x60_0000, MapFlags::KERNEL_RO).unwrap();
    let e = rig.assert_unchanged(|r| r.mapper.update_flags(va(Y), MapFlags::KERNEL_RW));
    assert_eq!(
        e.unwrap_err(),
        UnmapError::TableRestricts {
            va: va(Y),
            level: Level::Pmd,
            raw: restricted
        }
    );
    assert_eq!(fault(&rig, X, Access::WRITE), 0x3);
    assert_eq!(fault(&rig, Y, Access::WRITE), 0x3);
}

fn a_table_entry_is_widened_when_nothing_below_gains<M: PagingMode>() {
    let mut rig = machine::<M>();
    map(&mut rig, X, 0x50_0000, MapFlags::KERNEL_RO).unwrap();
    let restricted = (pde(&rig, X) & !(1 << 1)) | KEEP;
    set_pde(&rig, X, restricted);
    // The PDE sits in the paging-structure cache with R/W = 0.
    assert_eq!(fault(&rig, X, Access::WRITE), 0x3);
    let flush = rig
        .mapper
        .map(
            page(Y),
            frame(0x60_0000),
            MapFlags::KERNEL_RW,
            &mut rig.alloc,
        )
        .unwrap();
    assert_ne!(
        flush,
        paging_core::Flush::none(),
        "a widened PDE needs a flush"
    );
    flush.flush(&rig.mmu);
    assert_eq!(pde(&rig, X), restricted | 1 << 1, "only R/W was added");
    assert_eq!(fault(&rig, Y, Access::WRITE), 0);
    assert_eq!(fault(&rig, X, Access::WRITE), 0x3, "X is still read-only");
}

/// `update_flags` on the one leaf that already has the right its table
/// entry withholds: nothing *else* below gains by widening the entry, so it
/// is widened (the leaf being changed is not counted against itself) and
/// the write the leaf always asked for now succeeds.
fn update_flags_widens_for_the_leaf_it_changes<M: PagingMode>() {
    let (mut rig, restricted) = read_only_pde_over_writable_x::<M>();
    let flush = rig.mapper.update_flags(va(X), MapFlags::KERNEL_RW).unwrap();
    assert_ne!(flush, paging_core::Flush::none());
    flush.flush(&rig.mmu);
    assert_eq!(pde(&rig, X), restricted | 1 << 1, "only R/W was added");
    assert_eq!(fault(&rig, X, Access::WRITE), 0);
}

fn a_supervisor_table_entry_is_not_opened_to_user_mappings_below<M: PagingMode>() {
    let mut rig = machine::<M>();
    let user = MapFlags::KERNEL_RW | MapFlags::USER;
    map(&mut rig, X, 0x50_0000, user).unwrap();
    let restricted = pde(&rig, X) & !(1 << 2);
    set_pde(&rig, X, restricted);
    assert_eq!(fault(&rig, X, USER_READ), 0x5);
    let e = rig.assert_unchanged(|r| r.mapper.map(page(Y), frame(0x60_0000), user, &mut r.alloc));
    assert!(matches!(e, Err(MapError::TableRestricts { .. })), "{e:?}");
    // A supervisor neighbour needs nothing.
    map(&mut rig, Y, 0x60_0000, MapFlags::KERNEL_RW).unwrap();
    assert_eq!(pde(&rig, X), restricted);
    assert_eq!(fault(&rig, X, USER_READ), 0x5);
}

/// PAE: a PDE with XD set keeps X from executing.
fn pae_no_execute_table_entry(x_flags: MapFlags) -> (Rig<paging_x86_pae::Pae>, u64) {
    let mut rig = machine::<paging_x86_pae::Pae>();
    map(&mut rig, X, 0x50_0000, x_flags).unwrap();
    let restricted = pde(&rig, X) | 1 << 63 | KEEP;
    set_pde(&rig, X, restricted);
    assert_eq!(fault(&rig, X, FETCH), 0x11);
    (rig, restricted)
}

#[test]
fn pae_an_executable_neighbour_never_clears_xd_over_an_executable_mapping() {
    let (mut rig, restricted) = pae_no_execute_table_entry(MapFlags::KERNEL_RW);
    let e = rig.assert_unchanged(|r| {
        r.mapper
            .map(page(Y), frame(0x60_0000), MapFlags::KERNEL_RO, &mut r.alloc)
    });
    assert!(matches!(e, Err(MapError::TableRestricts { raw, .. }) if raw == restricted));
    // A no-execute neighbour is fine and leaves the PDE as it is.
    let nx = MapFlags::KERNEL_RW | MapFlags::NO_EXECUTE;
    map(&mut rig, Y, 0x60_0000, nx).unwrap();
    assert_eq!(pde(&rig, X), restricted);
    assert_eq!(fault(&rig, X, FETCH), 0x11, "X still cannot execute");
}

#[test]
fn pae_xd_is_cleared_only_when_every_mapping_below_is_no_execute() {
    let nx = MapFlags::KERNEL_RW | MapFlags::NO_EXECUTE;
    let (mut rig, restricted) = pae_no_execute_table_entry(nx);
    map(&mut rig, Y, 0x60_0000, MapFlags::KERNEL_RO).unwrap();
    assert_eq!(pde(&rig, X), restricted & !(1 << 63), "only XD was cleared");
    assert_eq!(fault(&rig, Y, FETCH), 0);
    assert_eq!(fault(&rig, X, FETCH), 0x11, "X's own XD still holds");
}

/// Hands out the frames it was given, in order, and records which are out.
struct ListAlloc {
    frames: Vec<PhysFrame>,
    live: BTreeSet<u64>,
}

impl ListAlloc {
    fn new(frames: &[u64]) -> Self {
        Self {
            frames: frames.iter().rev().map(|&f| frame(f)).collect(),
            live: BTreeSet::new(),
        }
    }
}

// SAFETY: frames of simulated RAM from its own list, each out at most once.
unsafe impl FrameAllocator for ListAlloc {
    fn allocate_frame(&mut self, _zone: Zone) -> Option<PhysFrame> {
        let f = self.frames.pop()?;
        self.live.insert(f.number());
        Some(f)
    }
    unsafe fn deallocate_frame(&mut self, frame: PhysFrame) {
        assert!(
            self.live.remove(&frame.number()),
            "double free of {frame:?}"
        );
        self.frames.push(frame);
    }
}

fn a_table_frame_the_mode_cannot_point_at_is_refused<M: PagingMode>() {
    let mut rig = machine::<M>();
    let far = 1u64 << M::MAX_PHYS_BITS;
    // The PMD table (PAE) comes first, then the PTE table: both far, and
    // each one alone.
    let lists: &[&[u64]] = if M::PMD_FOLDED {
        &[&[far]]
    } else {
        &[&[far, 0x70_0000], &[0x70_0000, far]]
    };
    for list in lists {
        let mut alloc = ListAlloc::new(list);
        let e = rig.assert_unchanged(|r| {
            r.mapper
                .map(page(X), frame(0x50_0000), MapFlags::KERNEL_RW, &mut alloc)
        });
        assert_eq!(
            e.unwrap_err(),
            MapError::TableOutOfReach {
                frame: frame(far),
                max_bits: M::MAX_PHYS_BITS
            }
        );
        assert!(alloc.live.is_empty(), "every frame given back");
        let mut alloc = ListAlloc::new(list);
        let e = rig.assert_unchanged(|r| {
            r.mapper.map_range(
                va(BASE),
                pa(0x50_0000),
                0x4000,
                MapFlags::KERNEL_RW,
                LargePages::Avoid,
                &mut alloc,
            )
        });
        assert!(matches!(e, Err(MapError::TableOutOfReach { .. })), "{e:?}");
        assert!(alloc.live.is_empty());
    }
    // A large page's new PMD table (PAE).
    if !M::PMD_FOLDED {
        let mut alloc = ListAlloc::new(&[far]);
        let e = rig.assert_unchanged(|r| {
            r.mapper
                .map_large(va(BASE), pa(0x40_0000), MapFlags::KERNEL_RW, &mut alloc)
        });
        assert!(matches!(e, Err(MapError::TableOutOfReach { .. })), "{e:?}");
    }
}

fn a_range_whose_second_table_is_out_of_reach_changes_nothing<M: PagingMode>() {
    let mut rig = machine::<M>();
    let span = M::pmd_span();
    let far = 1u64 << M::MAX_PHYS_BITS;
    // Two new PTE tables (and in PAE one PMD table): the last one is far.
    let list: &[u64] = if M::PMD_FOLDED {
        &[0x70_0000, far]
    } else {
        &[0x71_0000, 0x70_0000, far]
    };
    let mut alloc = ListAlloc::new(list);
    let start = 0x4000_0000u32; // a GiB with no PMD table yet in PAE
    let e = rig.assert_unchanged(|r| {
        r.mapper.map_range(
            va(start),
            pa(0x100_0000),
            2 * span,
            MapFlags::KERNEL_RW,
            LargePages::Avoid,
            &mut alloc,
        )
    });
    assert!(matches!(e, Err(MapError::TableOutOfReach { .. })), "{e:?}");
    assert!(alloc.live.is_empty(), "no frame kept: {:?}", alloc.live);
    assert_eq!(
        rig.hw_uncached(va(start)),
        Err(0),
        "the first half is not linked"
    );
}

paging_sim::for_each_mode!(
    a_read_only_leaf_never_needs_a_writable_table_entry,
    widening_that_would_give_another_mapping_a_right_is_refused,
    a_table_entry_is_widened_when_nothing_below_gains,
    update_flags_widens_for_the_leaf_it_changes,
    a_supervisor_table_entry_is_not_opened_to_user_mappings_below,
    a_table_frame_the_mode_cannot_point_at_is_refused,
    a_range_whose_second_table_is_out_of_reach_changes_nothing,
);

/// QEMU's TCG sets Accessed (reserved) in the PDPTEs it walks; registering a
/// new directory copies the reference's PDPTE without it, so loading the
/// new directory does not raise #GP.
#[test]
fn pae_copied_pdptes_carry_only_bits_the_cpu_accepts() {
    type M = paging_x86_pae::Pae;
    let mut rig = machine::<M>();
    map(&mut rig, 0xC000_0000, 0x10_0000, MapFlags::KERNEL_RW).unwrap();
    let root = rig.mapper.root();
    let slot = Walker::<M, _>::new(root, SimAccess::new(rig.ram)).pgd_slot(va(0xC000_0000));
    let pdpte_addr = pa(slot.table.start_address().as_u64() + slot.index as u64 * 8);
    let clean = rig.ram.read_u64(pdpte_addr).unwrap();
    rig.ram.write_u64(pdpte_addr, clean | 1 << 5).unwrap();

    let sync: KernelSync<M, _, _, 4> = KernelSync::new_isolated(
        root,
        VirtAddr::new(0xC000_0000),
        SimAccess::new(rig.ram),
        NativeHooks,
    );
    let other = rig.alloc.allocate_frame(Zone::Lowmem).unwrap();
    for i in 0..512 {
        rig.ram
            .write_u64(pa(other.start_address().as_u64() + i * 8), 0)
            .unwrap();
    }
    assert_eq!(sync.register(other.start_address()), Ok(1));
    let copied = rig
        .ram
        .read_u64(pa(other.start_address().as_u64() + 24))
        .unwrap();
    assert_eq!(copied, clean, "Accessed dropped, nothing else");
    assert_eq!(
        <M as PagingMode>::Pgd::from_raw(clean | 1 << 5).without_reserved_bits(),
        <M as PagingMode>::Pgd::from_raw(clean)
    );
    rig.mmu
        .load_cr3(other.start_address().as_u64() as u32)
        .expect("a PDPT with only valid bits loads");
    assert_eq!(
        rig.mmu
            .translate(va(0xC000_0010), Access::READ)
            .map(|t| t.pa),
        Ok(pa(0x10_0010))
    );
}

/// The fast read of a table entry's rights says what the backend's full
/// flag conversion says, for every combination of the bits that matter.
fn table_rights_agree_with_the_backend<M: PagingMode>() {
    use paging_core::PmdEntry;
    let rights = MapFlags::WRITABLE | MapFlags::USER | MapFlags::NO_EXECUTE;
    for bits in 0u64..64 {
        let mut raw = 0x0012_3000 | 1 | (bits & 0b111) << 1 | (bits & 0b1000) << 5;
        if bits & 0b1_0000 != 0 && M::SUPPORTS_NX {
            raw |= 1 << 63;
        }
        if bits & 0b10_0000 != 0 {
            raw |= 0b1110_0000_0000; // software bits
        }
        let pmd = <M as PagingMode>::Pmd::from_raw(raw);
        assert_eq!(pmd.table_rights(), pmd.flags() & rights, "{raw:#x}");
    }
}

paging_sim::for_each_mode!(table_rights_agree_with_the_backend);
