//! Layout arithmetic and the index type's traits, exactly: where a layout
//! starts, how indices compare, hash and print, and the errors at the
//! edges. Written for mutants that `cargo xtask mutants` found no test
//! noticed (docs/testing.md).

mod support;

use std::cmp::Ordering;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use fixmap::{
    FixIndex, FixmapError, FixmapLayout, PAGES_PER_TABLE_BOTH_MODES, first_in_one_table,
    fixmap_layout, virt_to_fix,
};
use support::va;

fixmap_layout! {
    /// Three slots and a range of 32 below a top that is not the last page.
    pub struct Small {
        top: 0xFFFF_E000;
        /// Slot 1.
        CONSOLE;
        /// Slot 2.
        APIC;
        /// Slot 3.
        SPARE;
        /// Slots 4 to 35.
        KMAP[32];
        /// No slot at all.
        NOTHING[0];
    }
}

fn hash_of<T: Hash>(value: &T) -> u64 {
    let mut hasher = DefaultHasher::new();
    value.hash(&mut hasher);
    hasher.finish()
}

#[test]
fn the_lowest_address_is_top_minus_the_last_index() {
    assert_eq!(Small::END, 36);
    assert_eq!(
        Small::start_for(Small::TOP),
        va(0xFFFF_E000 - 35 * 4096),
        "index END - 1 is the lowest page"
    );
    assert_eq!(
        Small::start_for(va(0x0100_0000)),
        va(0x0100_0000 - 35 * 4096)
    );
    // The lowest slot is where start_for says.
    assert_eq!(Small::KMAP.at::<31>().virt(), Small::start_for(Small::TOP));
}

#[test]
fn indices_compare_by_number() {
    let (a, b) = (Small::CONSOLE, Small::APIC);
    assert_eq!(a, Small::CONSOLE);
    assert_ne!(a, b);
    assert!(a != b);
    assert_eq!(a.partial_cmp(&b), Some(Ordering::Less));
    assert_eq!(b.partial_cmp(&a), Some(Ordering::Greater));
    assert_eq!(a.partial_cmp(&a), Some(Ordering::Equal));
    assert!(a < b);
    assert!(b > a);
    assert!(a <= Small::CONSOLE);
    assert!(a >= Small::CONSOLE);
    assert_eq!(a.cmp(&b), Ordering::Less);
    let mut sorted = vec![Small::SPARE, Small::CONSOLE, Small::APIC];
    sorted.sort();
    assert_eq!(sorted, [Small::CONSOLE, Small::APIC, Small::SPARE]);
}

#[test]
fn an_index_hashes_as_its_number() {
    assert_eq!(hash_of(&Small::APIC), hash_of(&2usize));
    assert_ne!(hash_of(&Small::CONSOLE), hash_of(&Small::APIC));
}

#[test]
fn indices_and_ranges_print_their_numbers() {
    assert_eq!(format!("{:?}", Small::SPARE), "FixIndex(3)");
    assert_eq!(format!("{:?}", Small::KMAP), "FixRange(4..36)");
}

#[test]
fn a_range_error_names_the_index_asked_for() {
    assert_eq!(
        Small::KMAP.get(32),
        Err(FixmapError::IndexOutOfRange { index: 36, end: 36 })
    );
    assert_eq!(
        Small::KMAP.get(40),
        Err(FixmapError::IndexOutOfRange { index: 44, end: 36 })
    );
    assert_eq!(Small::KMAP.get(31).map(FixIndex::index), Ok(35));
}

#[test]
fn addresses_above_the_top_are_not_in_the_fixmap() {
    let top = Small::TOP;
    for above in [0xFFFF_E001, 0xFFFF_F000, 0xFFFF_FFFF] {
        assert_eq!(
            virt_to_fix::<Small>(top, va(above)).map(FixIndex::index),
            Err(FixmapError::NotInFixmap { va: va(above) }),
            "{above:#x}"
        );
    }
    // The guard hole (index 0) at the top itself.
    assert_eq!(
        virt_to_fix::<Small>(top, va(0xFFFF_E000)).map(FixIndex::index),
        Err(FixmapError::NotInFixmap {
            va: va(0xFFFF_E000)
        })
    );
    assert_eq!(
        virt_to_fix::<Small>(top, va(0xFFFF_DFFF)).map(FixIndex::index),
        Ok(1)
    );
}

#[test]
fn ranges_know_their_extent() {
    let k = Small::KMAP;
    assert_eq!((k.first(), k.len(), k.end()), (4, 32, 36));
    assert!(!k.is_empty());
    let indices: Vec<usize> = k.iter().map(FixIndex::index).collect();
    assert_eq!(indices, (4..36).collect::<Vec<_>>());
    let none = Small::NOTHING;
    assert!(none.is_empty());
    assert_eq!((none.first(), none.len(), none.end()), (36, 0, 36));
    assert_eq!(none.iter().count(), 0);
    assert!(none.get(0).is_err());
}

fixmap_layout! {
    /// A range that would straddle a 2 MiB block, so it moves down.
    pub struct Straddling {
        top: 0xFFFF_F000;
        /// Slots 1 to 499.
        LOW[499];
        /// 64 slots in one PTE table: pushed down to start at 512.
        BOOT[64] in_one_table;
        /// The slot after it.
        AFTER;
    }
}

#[test]
fn an_in_one_table_range_moves_down_to_the_next_block() {
    // Slots 500..564 would cross 0xFFE0_0000; 512..576 do not.
    assert_eq!(first_in_one_table(500, 64, 0xFFFF_F000), 512);
    assert_eq!(Straddling::BOOT.first(), 512);
    assert_eq!(Straddling::AFTER.index(), 576);
    // A range that already fits stays where it is.
    assert_eq!(first_in_one_table(3, 64, 0xFFFF_F000), 3);
    assert_eq!(first_in_one_table(7, 1, 0xFFFF_F000), 7);
    assert_eq!(first_in_one_table(7, 0, 0xFFFF_F000), 7);
    // A whole table needs a block-aligned top slot.
    assert_eq!(
        first_in_one_table(1, PAGES_PER_TABLE_BOTH_MODES, 0xFFFF_F000),
        PAGES_PER_TABLE_BOTH_MODES
    );
    let block = |i: usize| (0xFFFF_F000u32 - i as u32 * 4096) >> 21;
    assert_eq!(
        block(Straddling::BOOT.first()),
        block(Straddling::BOOT.end() - 1)
    );
}
