//! `Mapper::protect_range` through the simulated MMU: new rights for every
//! present leaf of a range with one flush, holes and non-present entries
//! left alone, Accessed/Dirty kept, large pages re-protected whole or
//! refused, and the rule for restrictive (loader-made) table entries.
mod mapper_support;
mod racing_support;

use mapper_support::{Rig, frame, machine, pa, va};
use paging_core::{
    Entry, ErrorKind, Flush, LargePages, Level, MapFlags, PAGE_SIZE, Page, PagingError, PagingMode,
    TlbOps, UnmapError,
};
use paging_sim::Access;
use racing_support::racing_mapper;

/// A 4 MiB-aligned block both modes cover with one PTE table.
const BASE: u32 = 0x1000_0000;
const USER_RW: MapFlags = MapFlags::KERNEL_RW.union(MapFlags::USER);
const COW: MapFlags = MapFlags::SOFTWARE_0;
/// Hardware bits of a present user page after a user write: P, R/W, U, A, D.
const A_D: MapFlags = MapFlags::ACCESSED.union(MapFlags::DIRTY);

fn page(x: u32) -> Page {
    Page::from_start_address(va(x)).unwrap()
}

/// `pages` user pages from `at`, to `to`, touched (read and written) so the
/// TLB holds them writable and the CPU has set A and D.
fn map_touched<M: PagingMode>(rig: &mut Rig<M>, at: u32, to: u64, pages: u32) {
    rig.mapper
        .map_range(
            va(at),
            pa(to),
            u64::from(pages) * PAGE_SIZE,
            USER_RW,
            LargePages::Avoid,
            &mut rig.alloc,
        )
        .unwrap()
        .flush(&rig.mmu);
    for i in 0..pages {
        rig.mmu
            .translate(va(at + i * 0x1000), Access::USER_WRITE)
            .unwrap();
    }
}

/// The page-fault error code of an access, or 0 if it is allowed.
fn fault<M: PagingMode>(rig: &Rig<M>, at: u32, access: Access) -> u32 {
    rig.mmu
        .translate(va(at), access)
        .map_or_else(|f| f.code, |_| 0)
}

/// The raw PTE (or large PDE) mapping `at`, and the raw PDE above it.
fn leaf_raw<M: PagingMode>(rig: &Rig<M>, at: u32) -> u64 {
    let walk = rig.mapper.walk(va(at)).unwrap();
    walk.pte
        .map_or_else(|| walk.pmd.unwrap().1.raw(), |(_, e)| e.raw())
}

fn pde<M: PagingMode>(rig: &Rig<M>, at: u32) -> u64 {
    rig.mapper.walk(va(at)).unwrap().pmd.unwrap().1.raw()
}

/// Write the raw entry of `slot` behind the mapper's back, and drop every
/// cached translation.
fn poke<M: PagingMode>(rig: &Rig<M>, slot: paging_core::Slot, raw: u64) {
    let addr = pa(slot.table.start_address().as_u64() + (slot.index * M::ENTRY_BYTES) as u64);
    if M::ENTRY_BYTES == 4 {
        rig.ram.write_u32(addr, raw as u32).unwrap();
    } else {
        rig.ram.write_u64(addr, raw).unwrap();
    }
    rig.mmu.flush_everything();
}

fn a_protected_page_faults_after_the_flush_not_before<M: PagingMode>() {
    let mut rig = machine::<M>();
    map_touched(&mut rig, BASE, 0x50_0000, 8);
    let (start, len) = (BASE + 0x2000, 4 * PAGE_SIZE);
    let (stats, flush) = rig
        .mapper
        .protect_range(va(start), len, MapFlags::WRITABLE, COW)
        .unwrap();
    assert_eq!(stats.pages, 4);
    assert_eq!(stats.changed, 4);
    assert_eq!((stats.large_pages, stats.widened), (0, 0));
    assert_eq!(flush, Flush::range(va(start), 4), "one flush for the range");
    // The tables say read-only + copy-on-write, with the CPU's A/D kept ...
    for i in 2..6 {
        let at = BASE + i * 0x1000;
        let t = rig.mapper.translate(va(at)).unwrap();
        assert_eq!(t.flags, MapFlags::PRESENT | MapFlags::USER | COW | A_D);
        assert_eq!(leaf_raw(&rig, at) & 0xFFF, 0x265, "P U A D and bit 9");
        assert_eq!(
            rig.hw_uncached(va(at)),
            Ok(pa(0x50_0000 + u64::from(i) * 0x1000))
        );
    }
    // ... but until the flush the TLB still allows the write: the flush is
    // needed.
    assert_eq!(fault(&rig, start, Access::USER_WRITE), 0);
    flush.flush(&rig.mmu);
    for i in 0..8 {
        let at = BASE + i * 0x1000 + 0x10;
        let inside = (2..6).contains(&i);
        assert_eq!(
            fault(&rig, at, Access::USER_WRITE),
            if inside { 0x7 } else { 0 },
            "page {i}"
        );
        assert_eq!(fault(&rig, at, Access::USER_READ), 0, "page {i}");
    }
    // Again: nothing changes, nothing to flush.
    let (stats, flush) = rig
        .mapper
        .protect_range(va(start), len, MapFlags::WRITABLE, COW)
        .unwrap();
    assert_eq!((stats.pages, stats.changed), (4, 0));
    assert_eq!(flush, Flush::none());
    // Copy-on-write resolved: writable again, marker gone, A/D still kept.
    let (_, flush) = rig
        .mapper
        .protect_range(va(start), PAGE_SIZE, COW, MapFlags::WRITABLE)
        .unwrap();
    flush.flush(&rig.mmu);
    assert_eq!(
        rig.mapper.translate(va(start)).unwrap().flags,
        USER_RW | A_D
    );
    assert_eq!(fault(&rig, start, Access::USER_WRITE), 0);
}

fn holes_and_non_present_entries_are_left_alone<M: PagingMode>() {
    let mut rig = machine::<M>();
    map_touched(&mut rig, BASE, 0x50_0000, 2);
    map_touched(&mut rig, BASE + 0x5000, 0x60_0000, 1);
    // A swap entry: not present, with software content.
    let swap_at = BASE + 0x3000;
    let slot = rig.mapper.walk(va(swap_at)).unwrap().pte.unwrap().0;
    let swap = 0x0012_3000 | 0b110 << 9 | 0b10;
    poke(&rig, slot, swap);
    // A whole PMD slot with nothing (no table), and a non-present PMD entry
    // with content, further on.
    let odd_pmd = BASE + 2 * (M::pmd_span() as u32);
    let pmd_slot = rig.mapper.walk(va(odd_pmd)).unwrap().pmd.map(|(s, _)| s);
    if let Some(pmd_slot) = pmd_slot {
        poke(&rig, pmd_slot, 0x0045_6000 | 1 << 10);
    }
    let live = rig.alloc.live();
    let len = 3 * M::pmd_span();
    let (stats, flush) = rig
        .mapper
        .protect_range(va(BASE), len, MapFlags::WRITABLE | MapFlags::USER, COW)
        .unwrap();
    flush.flush(&rig.mmu);
    assert_eq!((stats.pages, stats.changed), (3, 3));
    assert_eq!(rig.alloc.live(), live, "no table made for a hole");
    assert_eq!(
        leaf_raw(&rig, swap_at),
        swap,
        "the swap entry kept every bit"
    );
    for hole in [BASE + 0x2000, BASE + 0x4000, BASE + 0x6000] {
        assert_eq!(leaf_raw(&rig, hole), 0, "{hole:#x}");
    }
    if let Some(pmd_slot) = pmd_slot {
        assert_eq!(
            rig.mapper.walk(va(odd_pmd)).unwrap().pmd.unwrap().0,
            pmd_slot
        );
        assert_eq!(pde(&rig, odd_pmd), 0x0045_6000 | 1 << 10);
    }
    for at in [BASE, BASE + 0x1000, BASE + 0x5000] {
        assert_eq!(
            rig.mapper.translate(va(at)).unwrap().flags,
            MapFlags::PRESENT | COW | A_D
        );
        assert_eq!(fault(&rig, at, Access::USER_READ), 0x5);
        assert_eq!(fault(&rig, at, Access::READ), 0);
    }
}

fn a_large_page_inside_is_reprotected_whole<M: PagingMode>() {
    let mut rig = machine::<M>();
    let span = M::pmd_span() as u32;
    let big = BASE + span;
    map_touched(&mut rig, BASE + span - 0x2000, 0x50_0000, 2);
    rig.mapper
        .map_large(va(big), pa(u64::from(span)), USER_RW, &mut rig.alloc)
        .unwrap()
        .flush(&rig.mmu);
    for off in [0, span / 2, span - 0x1000] {
        assert_eq!(fault(&rig, big + off, Access::USER_WRITE), 0);
    }
    let (stats, flush) = rig
        .mapper
        .protect_range(
            va(BASE + span - 0x1000),
            u64::from(span) + 0x1000,
            MapFlags::WRITABLE,
            COW,
        )
        .unwrap();
    assert_eq!((stats.pages, stats.large_pages, stats.changed), (1, 1, 2));
    assert_eq!(
        fault(&rig, big + span / 2, Access::USER_WRITE),
        0,
        "stale TLB"
    );
    flush.flush(&rig.mmu);
    for off in [0, span / 2, span - 0x1000] {
        assert_eq!(fault(&rig, big + off, Access::USER_WRITE), 0x7, "{off:#x}");
        assert_eq!(fault(&rig, big + off, Access::USER_READ), 0);
    }
    let t = rig.mapper.translate(va(big)).unwrap();
    assert_eq!(t.size, M::LARGE_PAGE_SIZE);
    assert_eq!(t.flags, MapFlags::PRESENT | MapFlags::USER | COW | A_D);
    assert_eq!(fault(&rig, BASE + span - 0x2000, Access::USER_WRITE), 0);
    assert_eq!(fault(&rig, BASE + span - 0x1000, Access::USER_WRITE), 0x7);
}

fn a_large_page_sticking_out_is_refused_with_nothing_changed<M: PagingMode>() {
    let mut rig = machine::<M>();
    let span = M::pmd_span() as u32;
    let big = BASE + span;
    map_touched(&mut rig, BASE + span - 0x2000, 0x50_0000, 2);
    rig.mapper
        .map_large(va(big), pa(u64::from(span)), USER_RW, &mut rig.alloc)
        .unwrap()
        .flush(&rig.mmu);
    for (start, len) in [
        // Starts before, ends inside the large page.
        (BASE + span - 0x1000, 0x2000),
        // Starts inside.
        (big + 0x1000, u64::from(span)),
    ] {
        let e = rig.assert_unchanged(|r| {
            r.mapper
                .protect_range(va(start), len, MapFlags::WRITABLE, COW)
        });
        let e = e.unwrap_err();
        assert!(
            matches!(e, UnmapError::InLargePage { base, size, .. }
                if base == va(big) && size == M::LARGE_PAGE_SIZE),
            "{e:?}"
        );
        assert_eq!(e.kind(), ErrorKind::SizeConflict);
    }
    // Bad input: unaligned, past 4 GiB, flags the mode cannot hold.
    let e = rig.assert_unchanged(|r| r.mapper.protect_range(va(BASE + 8), 0x1000, COW, COW));
    assert!(matches!(e, Err(UnmapError::Unaligned { .. })));
    let e = rig.assert_unchanged(|r| r.mapper.protect_range(va(BASE), 0x800, COW, COW));
    assert!(matches!(e, Err(UnmapError::Unaligned { .. })));
    let e = rig.assert_unchanged(|r| r.mapper.protect_range(va(0xFFFF_F000), 0x2000, COW, COW));
    assert!(matches!(e, Err(UnmapError::VirtOutOfRange { .. })));
    let unknown = paging_core::MapFlags::from_bits_retain(1 << 14);
    let e = rig.assert_unchanged(|r| r.mapper.protect_range(va(BASE), 0x1000, COW, unknown));
    assert!(matches!(e, Err(UnmapError::Unsupported(_))), "{e:?}");
    if !M::SUPPORTS_NX {
        let e = rig.assert_unchanged(|r| {
            r.mapper
                .protect_range(va(BASE), 0x1000, COW, MapFlags::NO_EXECUTE)
        });
        assert!(matches!(e, Err(UnmapError::Unsupported(_))), "{e:?}");
    }
}

/// The hostile case: a loader made the table entry over X (writable user
/// leaf) and Y (read-only user leaf) read-only and supervisor-only, with
/// cache and software bits the mapper must keep.
fn a_restrictive_table_entry_is_widened_only_if_nothing_outside_gains<M: PagingMode>() {
    let mut rig = machine::<M>();
    let (y, z, x) = (BASE + 0x1000, BASE + 0x2000, BASE + 0x3000);
    map_touched(&mut rig, x, 0x50_0000, 1);
    rig.mapper
        .map(
            page(y),
            frame(0x60_0000),
            MapFlags::PRESENT | MapFlags::USER,
            &mut rig.alloc,
        )
        .unwrap()
        .flush(&rig.mmu);
    rig.mapper
        .map(page(z), frame(0x70_0000), MapFlags::PRESENT, &mut rig.alloc)
        .unwrap()
        .flush(&rig.mmu);
    let keep = 1 << 9 | 1 << 11 | 1 << 3 | 1 << 5;
    let restricted = pde(&rig, x) & !(1 << 1 | 1 << 2) | keep;
    let slot = rig.mapper.walk(va(x)).unwrap().pmd.unwrap().0;
    poke(&rig, slot, restricted);
    assert_eq!(fault(&rig, x, Access::USER_READ), 0x5);
    assert_eq!(fault(&rig, x, Access::WRITE), 0x3);

    // Y made writable (and user, which it is already): X, outside the
    // range, would gain W through the widened entry: refused, nothing
    // changed, even though an earlier table in the range could be written.
    let earlier = BASE - 0x1000;
    map_touched(&mut rig, earlier, 0x80_0000, 1);
    let e = rig
        .assert_unchanged(|r| {
            r.mapper
                .protect_range(va(earlier), 0x3000, MapFlags::empty(), MapFlags::WRITABLE)
        })
        .unwrap_err();
    assert_eq!(
        e,
        UnmapError::TableRestricts {
            va: va(y),
            level: Level::Pmd,
            raw: restricted
        }
    );
    assert_eq!(e.kind(), ErrorKind::Restricted);
    // Z made user: X and Y are user leaves outside the range and would
    // gain U: refused, at Z (a range starting inside the table).
    let e = rig.assert_unchanged(|r| {
        r.mapper
            .protect_range(va(z), 0x1000, MapFlags::empty(), MapFlags::USER)
    });
    assert_eq!(
        e.unwrap_err(),
        UnmapError::TableRestricts {
            va: va(z),
            level: Level::Pmd,
            raw: restricted
        }
    );

    // Rights the entry already withholds are never a reason to widen it:
    // clearing W and marking copy-on-write over Y, Z and X changes leaves
    // only.
    let (stats, flush) = rig
        .mapper
        .protect_range(va(y), 0x3000, MapFlags::WRITABLE, COW)
        .unwrap();
    flush.flush(&rig.mmu);
    assert_eq!((stats.pages, stats.widened), (3, 0));
    assert_eq!(pde(&rig, x), restricted, "every bit of the PDE kept");

    // With X, Y and Z all in the range, nothing outside gains: the entry is
    // widened by exactly R/W and U/S, every other bit kept.
    let (stats, flush) = rig
        .mapper
        .protect_range(va(y), 0x3000, COW, MapFlags::WRITABLE | MapFlags::USER)
        .unwrap();
    assert_eq!((stats.pages, stats.widened), (3, 1));
    flush.flush(&rig.mmu);
    let widened = pde(&rig, x);
    assert_eq!(
        widened & !0x60,
        (restricted | 0b110) & !0x60,
        "only R/W and U/S added"
    );
    for at in [x, y, z] {
        assert_eq!(fault(&rig, at, Access::USER_WRITE), 0, "{at:#x}");
    }
    // The neighbour in the earlier table was never touched.
    assert_eq!(
        rig.mapper.translate(va(earlier)).unwrap().flags,
        USER_RW | A_D
    );
}

fn no_execute_follows_the_same_rule<M: PagingMode>() {
    if !M::SUPPORTS_NX {
        return;
    }
    let mut rig = machine::<M>();
    let (x, y) = (BASE + 0x1000, BASE + 0x2000);
    let data = MapFlags::KERNEL_RW | MapFlags::NO_EXECUTE;
    for (at, to) in [(x, 0x50_0000), (y, 0x60_0000)] {
        rig.mapper
            .map(page(at), frame(to), data, &mut rig.alloc)
            .unwrap()
            .flush(&rig.mmu);
    }
    let slot = rig.mapper.walk(va(x)).unwrap().pmd.unwrap().0;
    let restricted = pde(&rig, x) | 1 << 63;
    poke(&rig, slot, restricted);
    // The TLB holds Y no-execute (a read caches it).
    assert_eq!(fault(&rig, y, Access::READ), 0);
    // Y made executable: X stays no-execute by its own leaf, gains nothing.
    // One leaf changed and one entry widened: the token must flush Y.
    let (stats, flush) = rig
        .mapper
        .protect_range(
            va(y),
            0x1000,
            MapFlags::NO_EXECUTE | MapFlags::WRITABLE,
            MapFlags::empty(),
        )
        .unwrap();
    flush.flush(&rig.mmu);
    assert_eq!((stats.changed, stats.widened), (1, 1));
    assert_eq!(pde(&rig, x) & !0x60, restricted & !(1 << 63) & !0x60);
    let fetch = Access {
        write: false,
        user: false,
        exec: true,
    };
    assert_eq!(fault(&rig, y, fetch), 0);
    assert_eq!(fault(&rig, x, fetch), 0x11);
    // Now X made executable too, with Y (executable, outside) gaining
    // nothing new: the entry is already open.
    let (stats, _) = rig
        .mapper
        .protect_range(va(x), 0x1000, MapFlags::NO_EXECUTE, MapFlags::empty())
        .unwrap();
    assert_eq!(stats.widened, 0);
}

/// When a range both cuts a large page and meets a restrictive table
/// entry, the lower PMD-sized block's refusal is the one reported (the
/// check walks the range upwards and stops at the first), and nothing
/// changes either way.
fn the_lowest_block_decides_between_large_page_and_restrictive_table<M: PagingMode>() {
    let mut rig = machine::<M>();
    let span = M::pmd_span() as u32;
    // Block A: a large page; block B: a PTE table with a read-only entry
    // over writable leaves x1 (its first page) and x2 (its last page) and
    // a read-only leaf y between them; block C: a large page.
    let (a, b, c) = (BASE, BASE + span, BASE + 2 * span);
    let (x1, y, x2) = (b, b + 0x8000, c - 0x1000);
    for (at, to) in [(a, 8), (c, 9)] {
        rig.mapper
            .map_large(va(at), pa(u64::from(span) * to), USER_RW, &mut rig.alloc)
            .unwrap()
            .flush(&rig.mmu);
    }
    map_touched(&mut rig, x1, 0x50_0000, 1);
    map_touched(&mut rig, x2, 0x51_0000, 1);
    rig.mapper
        .map(
            va(y),
            frame(0x60_0000),
            MapFlags::PRESENT | MapFlags::USER,
            &mut rig.alloc,
        )
        .unwrap()
        .flush(&rig.mmu);
    let restricted = pde(&rig, y) & !(1 << 1);
    let slot = rig.mapper.walk(va(y)).unwrap().pmd.unwrap().0;
    poke(&rig, slot, restricted);

    // Cuts A (the last page), then reaches y in B with x2 outside: A is
    // lower, so InLargePage.
    let e = rig
        .assert_unchanged(|r| {
            r.mapper.protect_range(
                va(b - 0x1000),
                u64::from(y + 0x1000 - (b - 0x1000)),
                MapFlags::empty(),
                MapFlags::WRITABLE,
            )
        })
        .unwrap_err();
    assert!(
        matches!(e, UnmapError::InLargePage { base, .. } if base == va(a)),
        "{e:?}"
    );
    // y in B with x1 outside, then cuts C (its first page): B is lower,
    // so TableRestricts, at the PMD level in both modes.
    let e = rig
        .assert_unchanged(|r| {
            r.mapper.protect_range(
                va(y),
                u64::from(c + 0x1000 - y),
                MapFlags::empty(),
                MapFlags::WRITABLE,
            )
        })
        .unwrap_err();
    assert!(
        matches!(e, UnmapError::TableRestricts { level: Level::Pmd, raw, .. } if raw == restricted),
        "{e:?}"
    );
}

/// A 2-level page-directory entry is reported at `Level::Pmd` (the folded
/// PMD entry), never `Level::Pgd`; `Level::Pgd` is PAE's PDPT entry.
fn a_folded_pde_is_reported_at_the_pmd_level<M: PagingMode>() {
    let mut rig = machine::<M>();
    let empty = va(0x4000_0000);
    let pdpte_present = rig.mapper.walk(empty).unwrap().pgd.1.is_present();
    let expected = if M::PMD_FOLDED || pdpte_present {
        Level::Pmd
    } else {
        Level::Pgd
    };
    let e = rig.assert_unchanged(|r| r.mapper.unmap(empty)).unwrap_err();
    assert_eq!(
        e,
        UnmapError::NotMapped {
            va: empty,
            level: expected
        }
    );
    if M::PMD_FOLDED {
        assert_eq!(expected, Level::Pmd);
    }
    // A present PDE with an empty PTE below: the PTE level, in both modes.
    map_touched(&mut rig, 0x4000_1000, 0x50_0000, 1);
    let e = rig.assert_unchanged(|r| r.mapper.unmap(empty)).unwrap_err();
    assert_eq!(
        e,
        UnmapError::NotMapped {
            va: empty,
            level: Level::Pte
        }
    );
    // A restrictive 2-level PDE (or PAE PDE): TableRestricts at Pmd.
    let restricted = pde(&rig, 0x4000_1000) & !(1 << 1);
    let slot = rig.mapper.walk(va(0x4000_1000)).unwrap().pmd.unwrap().0;
    poke(&rig, slot, restricted);
    rig.mapper
        .map(
            va(0x4000_2000),
            frame(0x70_0000),
            MapFlags::PRESENT | MapFlags::USER,
            &mut rig.alloc,
        )
        .unwrap()
        .flush(&rig.mmu);
    let e = rig
        .assert_unchanged(|r| {
            r.mapper.protect_range(
                va(0x4000_2000),
                0x1000,
                MapFlags::empty(),
                MapFlags::WRITABLE,
            )
        })
        .unwrap_err();
    assert!(
        matches!(
            e,
            UnmapError::TableRestricts {
                level: Level::Pmd,
                ..
            }
        ),
        "{e:?}"
    );
}

/// A leaf that already has W but is held back by a read-only table entry:
/// a call that names W opens the entry (the leaf itself is unchanged), and
/// the token flushes the page the TLB held read-only.
fn a_held_back_right_the_call_names_widens_the_entry<M: PagingMode>() {
    let mut rig = machine::<M>();
    let x = BASE + 0x1000;
    rig.mapper
        .map(
            page(x),
            frame(0x50_0000),
            MapFlags::KERNEL_RW,
            &mut rig.alloc,
        )
        .unwrap()
        .flush(&rig.mmu);
    let slot = rig.mapper.walk(va(x)).unwrap().pmd.unwrap().0;
    let restricted = pde(&rig, x) & !(1 << 1);
    poke(&rig, slot, restricted);
    let leaf = leaf_raw(&rig, x);
    assert_eq!(fault(&rig, x, Access::WRITE), 0x3, "held back");
    assert_eq!(fault(&rig, x, Access::READ), 0, "cached read-only");

    let (stats, flush) = rig
        .mapper
        .protect_range(va(x), PAGE_SIZE, MapFlags::empty(), MapFlags::WRITABLE)
        .unwrap();
    assert_eq!(
        (stats.pages, stats.changed, stats.widened),
        (1, 0, 1),
        "{stats:?}"
    );
    flush.flush(&rig.mmu);
    assert_eq!(pde(&rig, x) & !0x60, (restricted | 1 << 1) & !0x60);
    assert_eq!(leaf_raw(&rig, x) & !0x60, leaf & !0x60, "the leaf kept");
    assert_eq!(fault(&rig, x, Access::WRITE), 0);
}

/// Another CPU's walk sets Dirty in the PTE between the re-protection's
/// read of it and its exchange: the new entry must carry that D (and the
/// A it had), with the new rights.
fn a_dirty_bit_the_cpu_sets_during_the_exchange_is_kept<M: PagingMode>() {
    let mut rig = machine::<M>();
    let x = BASE + 0x1000;
    rig.mapper
        .map(page(x), frame(0x50_0000), USER_RW, &mut rig.alloc)
        .unwrap()
        .flush(&rig.mmu);
    assert_eq!(fault(&rig, x, Access::USER_READ), 0);
    let a = u64::from(MapFlags::ACCESSED.bits());
    let d = u64::from(MapFlags::DIRTY.bits());
    assert_eq!(leaf_raw(&rig, x) & (a | d), a, "read, not written");
    let slot = rig.mapper.walk(va(x)).unwrap().pte.unwrap().0;
    let mut mapper = racing_mapper(&rig, slot, slot, d);
    let (stats, flush) = mapper
        .protect_range(va(x), PAGE_SIZE, MapFlags::WRITABLE, COW)
        .unwrap();
    flush.flush(&rig.mmu);
    assert_eq!((stats.pages, stats.changed), (1, 1));
    let flags = rig.mapper.translate(va(x)).unwrap().flags;
    assert_eq!(
        flags,
        (USER_RW - MapFlags::WRITABLE) | COW | A_D,
        "new rights, with the A it had and the D set during the write"
    );
}

paging_sim::for_each_mode!(
    a_dirty_bit_the_cpu_sets_during_the_exchange_is_kept,
    a_held_back_right_the_call_names_widens_the_entry,
    the_lowest_block_decides_between_large_page_and_restrictive_table,
    a_folded_pde_is_reported_at_the_pmd_level,
    a_protected_page_faults_after_the_flush_not_before,
    holes_and_non_present_entries_are_left_alone,
    a_large_page_inside_is_reprotected_whole,
    a_large_page_sticking_out_is_refused_with_nothing_changed,
    a_restrictive_table_entry_is_widened_only_if_nothing_outside_gains,
    no_execute_follows_the_same_rule
);
