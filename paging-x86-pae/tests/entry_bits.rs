//! The PAE entry layouts, bit by bit against the SDM (Vol. 3A, Tables 4-8
//! to 4-11), and every way building an entry can fail.

use paging_core::{Entry, EntryError, MapFlags, PgdEntry, PhysAddr, PhysFrame, PmdEntry, PteEntry};
use paging_x86_pae::{Pde, PdeBits, Pdpte, PdpteBits, Pte, PteBits, bits};

fn frame(addr: u64) -> PhysFrame {
    PhysFrame::from_start_address(PhysAddr::new(addr).unwrap()).unwrap()
}

fn pa(addr: u64) -> PhysAddr {
    PhysAddr::new(addr).unwrap()
}

/// The SDM position of each generic flag in a PAE PTE.
const PTE_POSITIONS: [(MapFlags, u32); 13] = [
    (MapFlags::PRESENT, 0),
    (MapFlags::WRITABLE, 1),
    (MapFlags::USER, 2),
    (MapFlags::WRITE_THROUGH, 3),
    (MapFlags::CACHE_DISABLE, 4),
    (MapFlags::ACCESSED, 5),
    (MapFlags::DIRTY, 6),
    (MapFlags::PAT, 7),
    (MapFlags::GLOBAL, 8),
    // The AVL bits, ignored by the CPU: the same place in every leaf.
    (MapFlags::SOFTWARE_0, 9),
    (MapFlags::SOFTWARE_1, 10),
    (MapFlags::SOFTWARE_2, 11),
    (MapFlags::NO_EXECUTE, 63),
];

#[test]
fn each_pte_flag_sets_exactly_its_sdm_bit() {
    for (flag, bit) in PTE_POSITIONS {
        let pte = Pte::page(frame(0), flag).unwrap();
        assert_eq!(pte.raw(), 1 << bit, "{flag:?}");
        assert_eq!(pte.flags(), flag);
    }
    assert_eq!(PteBits::NO_EXECUTE.bits(), 1 << 63);
    assert_eq!(PteBits::GLOBAL.bits(), 1 << 8);
    assert_eq!(PteBits::PAT.bits(), 1 << 7);
}

#[test]
fn pte_address_is_bits_51_to_12() {
    let top = frame(0x000F_FFFF_FFFF_F000);
    let pte = Pte::page(top, MapFlags::KERNEL_RW | MapFlags::NO_EXECUTE).unwrap();
    assert_eq!(pte.raw(), 0x800F_FFFF_FFFF_F003);
    assert_eq!(pte.addr(), top.start_address());
    assert_eq!(pte.reserved_bits(52, true), 0);
    let pte = Pte::page(frame(0x1_2345_6000), MapFlags::PRESENT).unwrap();
    assert_eq!(pte.raw(), 0x0000_0001_2345_6001);
    assert_eq!(pte.bits(), pte.raw());
}

#[test]
fn table_pde_is_present_writable_accessed_plus_user() {
    let kernel = Pde::table(frame(0x3_0000_5000), false).unwrap();
    assert_eq!(kernel.raw(), 0x3_0000_5000 | 0b10_0011);
    assert!(!kernel.is_large());
    assert_eq!(kernel.addr(), pa(0x3_0000_5000));
    assert_eq!(
        kernel.flags(),
        MapFlags::PRESENT | MapFlags::WRITABLE | MapFlags::ACCESSED
    );
    let user = Pde::table(frame(0x3_0000_5000), true).unwrap();
    assert_eq!(user.raw(), 0x3_0000_5000 | 0b10_0111);
    // Bit 12 of a table PDE is address, not PAT.
    let odd = Pde::table(frame(0x1000), false).unwrap();
    assert_eq!(odd.addr(), pa(0x1000));
    assert!(!odd.hw_flags().contains(PdeBits::LARGE_PAT));
    assert!(!odd.flags().contains(MapFlags::PAT));
    // XD in a table entry applies to everything below: reported.
    assert!(
        Pde::from_raw(1 << 63 | 0x1003)
            .flags()
            .contains(MapFlags::NO_EXECUTE)
    );
}

#[test]
fn large_pde_sets_ps_and_moves_pat_to_bit_12() {
    let base = Pde::large(pa(0x0020_0000), MapFlags::PRESENT).unwrap();
    assert_eq!(base.raw(), 0x0020_0000 | 1 << 7 | 1);
    assert!(base.is_large());
    for (flag, bit) in PTE_POSITIONS {
        let pde = Pde::large(pa(0), flag).unwrap();
        let want = if flag == MapFlags::PAT {
            1 << 12
        } else {
            1 << bit
        };
        assert_eq!(pde.raw(), want | 1 << 7, "{flag:?}");
        assert_eq!(pde.flags(), flag);
    }
    let high = Pde::large(
        pa(0x000F_FFFF_FFE0_0000),
        MapFlags::KERNEL_RW | MapFlags::PAT,
    )
    .unwrap();
    assert_eq!(high.raw(), 0x000F_FFFF_FFE0_0000 | 1 << 12 | 1 << 7 | 0b11);
    assert_eq!(high.addr(), pa(0x000F_FFFF_FFE0_0000));
    assert_eq!(high.reserved_bits(52, false), 0);
}

#[test]
fn reserved_bits_follow_maxphyaddr_nxe_and_page_size() {
    let large = Pde::from_raw(0x0000_0010_0020_0000 | 1 << 13 | 1 << 20 | 1 << 7 | 1 | 1 << 63);
    // Bits 20:13 of a 2 MiB page, bit 36 above a 36-bit MAXPHYADDR, and XD
    // without NXE.
    assert_eq!(
        large.reserved_bits(36, false),
        1 << 63 | 1 << 36 | 1 << 20 | 1 << 13
    );
    assert_eq!(large.reserved_bits(40, true), 1 << 20 | 1 << 13);
    let table = Pde::from_raw(large.raw() & !(1 << 7));
    assert_eq!(
        table.reserved_bits(40, true),
        0,
        "20:13 are address in a table PDE"
    );
    let pte = Pte::from_raw(1 << 62 | 1 << 51 | 0x1001);
    assert_eq!(pte.reserved_bits(52, true), 1 << 62);
    assert_eq!(pte.reserved_bits(36, true), 1 << 62 | 1 << 51);
}

#[test]
fn pdpte_holds_only_present_and_the_address() {
    let e = Pdpte::table(frame(0x0000_000F_FFFF_F000)).unwrap();
    assert_eq!(e.raw(), 0x0000_000F_FFFF_F001);
    assert_eq!(e.addr(), pa(0x0000_000F_FFFF_F000));
    assert_eq!(e.reserved_bits(36), 0);
    // Allowed: P (0), PWT (3), PCD (4), available 11:9.
    assert_eq!(PdpteBits::all().bits(), 1 | 1 << 3 | 1 << 4 | 0b111 << 9);
    // Reserved: 2:1, 8:5, 63 -- R/W, U/S, A, D, PS, G, XD all fault here.
    assert_eq!(bits::PDPTE_RESERVED_MASK, 0b110 | 0b1111 << 5 | 1 << 63);
    for bit in [1, 2, 5, 6, 7, 8, 63] {
        assert_eq!(
            Pdpte::from_raw(e.raw() | 1 << bit).reserved_bits(52),
            1 << bit,
            "bit {bit}"
        );
    }
    for bit in [3, 4, 9, 10, 11] {
        assert_eq!(
            Pdpte::from_raw(e.raw() | 1 << bit).reserved_bits(52),
            0,
            "bit {bit}"
        );
    }
    assert_eq!(Pdpte::from_raw(1 << 40 | 1).reserved_bits(36), 1 << 40);
    let cached =
        e.with_cache(PdpteBits::WRITE_THROUGH | PdpteBits::CACHE_DISABLE | PdpteBits::PRESENT);
    assert_eq!(cached.raw(), e.raw() | 1 << 3 | 1 << 4);
    assert_eq!(cached.with_cache(PdpteBits::empty()), e);
}

/// Every combination of the generic flags.
fn all_flag_sets() -> impl Iterator<Item = MapFlags> {
    (0u32..1 << PTE_POSITIONS.len()).map(|mask| {
        PTE_POSITIONS
            .iter()
            .enumerate()
            .filter(|(i, _)| mask & 1 << i != 0)
            .fold(MapFlags::empty(), |acc, (_, (f, _))| acc | *f)
    })
}

#[test]
fn map_flags_round_trip_through_both_leaf_kinds() {
    let mut seen = 0;
    for flags in all_flag_sets() {
        let pte = Pte::page(frame(0x9_8765_4000), flags).unwrap();
        assert_eq!(pte.flags(), flags);
        assert_eq!(pte.addr(), pa(0x9_8765_4000));
        let pde = Pde::large(pa(0x9_8760_0000), flags).unwrap();
        assert_eq!(pde.flags(), flags);
        assert_eq!(pde.addr(), pa(0x9_8760_0000));
        assert_eq!(pde.reserved_bits(52, true), 0);
        seen += 1;
    }
    assert_eq!(seen, 1 << 13);
}

#[test]
fn large_pages_must_be_2_mib_aligned() {
    for addr in [0x0010_0000, 0x0020_1000, 0x1_0030_0000] {
        assert_eq!(
            Pde::large(pa(addr), MapFlags::PRESENT),
            Err(EntryError::Unaligned {
                addr: pa(addr),
                align: 2 << 20
            })
        );
    }
}

#[test]
fn unknown_flag_bits_are_refused() {
    let unknown = MapFlags::from_bits_retain(1 << 14);
    let err = EntryError::Unsupported(unknown);
    assert_eq!(Pte::page(frame(0), MapFlags::PRESENT | unknown), Err(err));
    assert_eq!(Pde::large(pa(0), MapFlags::PRESENT | unknown), Err(err));
}

#[test]
fn the_52_bit_limit_is_the_whole_address_space_of_phys_addr() {
    // `PhysAddr` cannot hold more than 52 bits, so every frame it can name
    // fits an entry; the mapper enforces the mode's narrower MAX_PHYS_BITS.
    assert!(PhysAddr::new(1 << 52).is_err());
    let last = frame((1 << 52) - 4096);
    assert_eq!(
        Pte::page(last, MapFlags::PRESENT).unwrap().addr(),
        last.start_address()
    );
    assert_eq!(
        Pde::table(last, false).unwrap().addr(),
        last.start_address()
    );
    assert_eq!(Pdpte::table(last).unwrap().addr(), last.start_address());
    assert_eq!(bits::PHYS_BITS, 52);
}

#[test]
fn with_addr_replaces_only_the_address_field() {
    let pte = Pte::page(frame(0x1000), MapFlags::all()).unwrap();
    let moved = pte.with_addr(pa(0x0_8765_4000));
    assert_eq!(
        moved.raw(),
        0x8765_4000 | (pte.raw() & 0x8000_0000_0000_0FFF)
    );
    assert_eq!(moved.flags(), MapFlags::all());
    assert_eq!(pte.with_addr(pa(0x1_2345_6FFF)).addr(), pa(0x1_2345_6000));

    let large = Pde::large(
        pa(0),
        MapFlags::KERNEL_RW | MapFlags::PAT | MapFlags::NO_EXECUTE,
    )
    .unwrap();
    let moved = large.with_addr(pa(0x2_0040_0000));
    assert_eq!(
        moved.raw(),
        1 << 63 | 0x2_0040_0000 | 1 << 12 | 1 << 7 | 0b11
    );
    // Low bits of a large page's base never reach PAT or bits 20:13.
    assert_eq!(large.with_addr(pa(0x2_005F_F000)), moved);

    let pdpte = Pdpte::table(frame(0x5000))
        .unwrap()
        .with_cache(PdpteBits::CACHE_DISABLE);
    assert_eq!(pdpte.with_addr(pa(0x7000)).raw(), 0x7000 | 1 << 4 | 1);
}

#[test]
fn debug_output_shows_address_and_flags() {
    let text = format!(
        "{:?}",
        Pte::page(frame(0x1_2345_6000), MapFlags::KERNEL_RW).unwrap()
    );
    assert!(
        text.contains("0x123456000") && text.contains("WRITABLE"),
        "{text}"
    );
    let text = format!("{:?}", Pdpte::table(frame(0x2000)).unwrap());
    assert!(
        text.contains("0x2000") && text.contains("PRESENT"),
        "{text}"
    );
    let text = format!(
        "{:?}",
        Pde::large(pa(0x40_0000), MapFlags::PRESENT).unwrap()
    );
    assert!(
        text.contains("0x400000") && text.contains("LARGE"),
        "{text}"
    );
}
