//! The 2-level entry layouts, bit by bit against the SDM (Vol. 3A,
//! Tables 4-4, 4-5, 4-6), and every way building an entry can fail.

use paging_core::{Entry, EntryError, MapFlags, PgdEntry, PhysAddr, PhysFrame, PmdEntry, PteEntry};
use paging_x86_2level::{Pde, PdeBits, Pte, PteBits};

fn frame(addr: u64) -> PhysFrame {
    PhysFrame::from_start_address(PhysAddr::new(addr).unwrap()).unwrap()
}

fn pa(addr: u64) -> PhysAddr {
    PhysAddr::new(addr).unwrap()
}

/// The SDM position of each generic flag in a PTE.
const PTE_POSITIONS: [(MapFlags, u32); 12] = [
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
];

#[test]
fn each_pte_flag_sets_exactly_its_sdm_bit() {
    for (flag, bit) in PTE_POSITIONS {
        let pte = Pte::page(frame(0), flag).unwrap();
        assert_eq!(pte.raw(), 1 << bit, "{flag:?}");
        assert_eq!(pte.flags(), flag);
    }
    assert_eq!(PteBits::PAT.bits(), 1 << 7);
    assert_eq!(PteBits::GLOBAL.bits(), 1 << 8);
    assert_eq!(PteBits::AVAILABLE.bits(), 0xE00);
}

#[test]
fn pte_address_is_bits_31_to_12() {
    let pte = Pte::page(frame(0xFFFF_F000), MapFlags::KERNEL_RW).unwrap();
    assert_eq!(pte.raw(), 0xFFFF_F003);
    assert_eq!(pte.addr(), pa(0xFFFF_F000));
    assert_eq!(pte.bits(), 0xFFFF_F003);
    let pte = Pte::page(frame(0x0123_4000), MapFlags::PRESENT).unwrap();
    assert_eq!(pte.raw(), 0x0123_4001);
    assert!(pte.is_present());
    assert!(!Pte::NONE.is_present() && Pte::NONE.is_none());
}

#[test]
fn table_pde_is_present_writable_accessed_plus_user() {
    let kernel = <Pde as PmdEntry>::table(frame(0x0035_6000), false).unwrap();
    assert_eq!(kernel.raw(), 0x0035_6000 | 0b10_0011);
    assert!(!kernel.is_large());
    assert_eq!(kernel.addr(), pa(0x0035_6000));
    assert_eq!(
        kernel.flags(),
        MapFlags::PRESENT | MapFlags::WRITABLE | MapFlags::ACCESSED
    );
    let user = <Pde as PmdEntry>::table(frame(0x0035_6000), true).unwrap();
    assert_eq!(user.raw(), 0x0035_6000 | 0b10_0111);
    assert!(user.flags().contains(MapFlags::USER));
    // The folded PGD form is the same kernel table entry.
    assert_eq!(
        <Pde as PgdEntry>::table(frame(0x0035_6000)).unwrap(),
        kernel
    );
}

#[test]
fn table_pde_address_keeps_bit_12_and_hides_leaf_only_bits() {
    let pde = <Pde as PmdEntry>::table(frame(0xFFFF_F000), false).unwrap();
    assert_eq!(pde.addr(), pa(0xFFFF_F000));
    assert!(!pde.hw_flags().contains(PdeBits::LARGE_PAT));
    // D (6) and G (8) are ignored in a table entry: not reported as flags.
    let pde = Pde::from_raw(0x0000_2000 | 1 << 6 | 1 << 8 | 1);
    assert_eq!(pde.flags(), MapFlags::PRESENT);
}

#[test]
fn large_pde_sets_ps_and_moves_pat_to_bit_12() {
    let base = Pde::large(pa(0x0040_0000), MapFlags::PRESENT).unwrap();
    assert_eq!(base.raw(), 0x0040_0000 | 1 << 7 | 1);
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
    assert_eq!(PdeBits::LARGE.bits(), 1 << 7);
    assert_eq!(PdeBits::LARGE_PAT.bits(), 1 << 12);
    let top = Pde::large(pa(0xFFC0_0000), MapFlags::KERNEL_RW | MapFlags::GLOBAL).unwrap();
    assert_eq!(top.raw(), 0xFFC0_0000 | 1 << 8 | 1 << 7 | 0b11);
    assert_eq!(top.addr(), pa(0xFFC0_0000));
    assert_eq!(top.reserved_bits(), 0);
}

#[test]
fn large_pde_bits_21_to_13_are_reserved() {
    let pde = Pde::from_raw(0x0040_0000 | 1 << 13 | 1 << 21 | 1 << 12 | 1 << 7 | 1);
    assert_eq!(pde.reserved_bits(), 1 << 13 | 1 << 21);
    assert_eq!(pde.addr(), pa(0x0040_0000));
    assert!(pde.flags().contains(MapFlags::PAT));
    // The same bits in a table entry are address bits.
    let table = Pde::from_raw(0x0040_0000 | 1 << 13 | 1 << 21 | 1);
    assert_eq!(table.reserved_bits(), 0);
    assert_eq!(table.addr(), pa(0x0040_0000 | 1 << 13 | 1 << 21));
}

/// Every combination of the flags the format can express.
fn expressible() -> impl Iterator<Item = MapFlags> {
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
    for flags in expressible() {
        let pte = Pte::page(frame(0x00AB_C000), flags).unwrap();
        assert_eq!(pte.flags(), flags);
        assert_eq!(pte.addr(), pa(0x00AB_C000));
        let pde = Pde::large(pa(0x0AC0_0000), flags).unwrap();
        assert_eq!(pde.flags(), flags);
        assert_eq!(pde.addr(), pa(0x0AC0_0000));
        assert!(pde.is_large());
        seen += 1;
    }
    assert_eq!(seen, 1 << 12);
}

#[test]
fn no_execute_is_unsupported() {
    let err = EntryError::Unsupported(MapFlags::NO_EXECUTE);
    assert_eq!(
        Pte::page(frame(0), MapFlags::KERNEL_RW | MapFlags::NO_EXECUTE),
        Err(err)
    );
    assert_eq!(
        Pde::large(pa(0), MapFlags::KERNEL_RW | MapFlags::NO_EXECUTE),
        Err(err)
    );
    // Bits MapFlags does not define are refused too, not silently dropped.
    let unknown = MapFlags::from_bits_retain(1 << 15);
    assert_eq!(
        Pte::page(frame(0), MapFlags::PRESENT | unknown),
        Err(EntryError::Unsupported(unknown))
    );
}

#[test]
fn physical_addresses_must_fit_32_bits() {
    let high = 0x1_0000_0000;
    let err = EntryError::PhysOutOfRange {
        addr: pa(high),
        max_bits: 32,
    };
    assert_eq!(Pte::page(frame(high), MapFlags::PRESENT), Err(err));
    assert_eq!(<Pde as PmdEntry>::table(frame(high), false), Err(err));
    assert_eq!(<Pde as PgdEntry>::table(frame(high)), Err(err));
    assert_eq!(Pde::large(pa(high), MapFlags::PRESENT), Err(err));
    assert!(Pte::page(frame(high - 4096), MapFlags::PRESENT).is_ok());
}

#[test]
fn large_pages_must_be_4_mib_aligned() {
    for addr in [0x0020_0000, 0x0040_1000, 0xFFE0_0000] {
        assert_eq!(
            Pde::large(pa(addr), MapFlags::PRESENT),
            Err(EntryError::Unaligned {
                addr: pa(addr),
                align: 4 << 20
            })
        );
    }
}

#[test]
fn with_addr_replaces_only_the_address_field() {
    let pte = Pte::page(frame(0x1000), MapFlags::all() - MapFlags::NO_EXECUTE).unwrap();
    let moved = pte.with_addr(pa(0x8765_4000));
    assert_eq!(moved.raw(), 0x8765_4000 | (pte.raw() & 0xFFF));
    assert_eq!(moved.flags(), pte.flags());
    // Bits the field cannot hold are dropped, not spilled into flags.
    assert_eq!(pte.with_addr(pa(0x1_0000_0FFF)).raw(), pte.raw() & 0xFFF);

    let large = Pde::large(pa(0), MapFlags::KERNEL_RW | MapFlags::PAT).unwrap();
    let moved = large.with_addr(pa(0x0C00_0000));
    assert_eq!(moved.raw(), 0x0C00_0000 | 1 << 12 | 1 << 7 | 0b11);
    assert_eq!(moved.flags(), MapFlags::KERNEL_RW | MapFlags::PAT);
    // Low bits of a large page's base never reach PAT or the reserved bits.
    assert_eq!(large.with_addr(pa(0x0C3F_F000)), moved);

    let table = <Pde as PmdEntry>::table(frame(0x5000), true).unwrap();
    assert_eq!(table.with_addr(pa(0x0000_7000)).raw(), 0x7000 | 0b10_0111);
}

#[test]
fn debug_output_shows_address_and_flags() {
    let pte = Pte::page(frame(0x1234_5000), MapFlags::KERNEL_RW).unwrap();
    let text = format!("{pte:?}");
    assert!(
        text.contains("0x12345000") && text.contains("WRITABLE"),
        "{text}"
    );
    let pde = Pde::large(pa(0x0040_0000), MapFlags::PRESENT).unwrap();
    let text = format!("{pde:?}");
    assert!(
        text.contains("0x00400000") && text.contains("LARGE"),
        "{text}"
    );
}
