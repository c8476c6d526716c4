//! How entries are written into a live table: one 32-bit store for a
//! non-present entry, `xchg` for a present one, so A/D bits set by the CPU
//! after the read are returned.

use std::cell::{Cell, RefCell};
use std::vec::Vec;

use paging_core::{Entry, MapFlags, PhysAddr, PhysFrame, PmdEntry, PteEntry, RawTable};
use paging_x86_2level::{Pde, Pte};

/// A one-word table that records each operation and can play the MMU: the
/// first load returns `seen`, while memory already holds `actual` (the CPU
/// set bits after the software read).
struct ScriptedTable {
    word: Cell<u32>,
    seen: Cell<Option<u32>>,
    ops: RefCell<Vec<&'static str>>,
}

impl ScriptedTable {
    fn new(actual: u32, seen: u32) -> Self {
        Self {
            word: Cell::new(actual),
            seen: Cell::new(Some(seen)),
            ops: RefCell::new(Vec::new()),
        }
    }
}

impl RawTable for ScriptedTable {
    fn load32(&self, word: usize) -> u32 {
        assert_eq!(word, 7);
        self.ops.borrow_mut().push("load32");
        self.seen.take().unwrap_or(self.word.get())
    }
    fn store32(&self, word: usize, value: u32) {
        assert_eq!(word, 7);
        self.ops.borrow_mut().push("store32");
        self.word.set(value);
    }
    fn swap32(&self, word: usize, value: u32) -> u32 {
        assert_eq!(word, 7);
        self.ops.borrow_mut().push("swap32");
        self.word.replace(value)
    }
    fn compare_exchange32(&self, _: usize, _: u32, _: u32) -> Result<u32, u32> {
        panic!("entry writes never compare-and-swap")
    }
    fn load64(&self, _: usize) -> u64 {
        panic!("2-level entries are 32-bit")
    }
    fn store64(&self, _: usize, _: u64) {
        panic!("2-level entries are 32-bit")
    }
    fn swap64(&self, _: usize, _: u64) -> u64 {
        panic!("2-level entries are 32-bit")
    }
}

fn frame(addr: u64) -> PhysFrame {
    PhysFrame::from_start_address(PhysAddr::new(addr).unwrap()).unwrap()
}

#[test]
fn replacing_a_present_pte_returns_the_dirty_bit_the_cpu_set() {
    let old = Pte::page(frame(0x5000), MapFlags::KERNEL_RW).unwrap();
    let dirty = old.bits() | 1 << 5 | 1 << 6;
    let table = ScriptedTable::new(dirty, old.bits());
    let prev = Pte::store(&table, 7, Pte::NONE);
    assert_eq!(prev.raw(), dirty as u64);
    assert!(prev.flags().contains(MapFlags::ACCESSED | MapFlags::DIRTY));
    assert_eq!(table.word.get(), 0);
    assert_eq!(*table.ops.borrow(), ["load32", "swap32"]);
}

#[test]
fn filling_a_non_present_entry_is_one_plain_store() {
    let swap_entry = 0xABCD_0000; // not present, but not empty: returned as is
    let table = ScriptedTable::new(swap_entry, swap_entry);
    let new = <Pde as PmdEntry>::table(frame(0x9000), false).unwrap();
    assert_eq!(Pde::store(&table, 7, new).raw(), swap_entry as u64);
    assert_eq!(table.word.get(), new.bits());
    assert_eq!(*table.ops.borrow(), ["load32", "store32"]);
}

#[test]
fn present_pde_is_exchanged_and_init_never_reads() {
    let old = Pde::large(PhysAddr::new(0x0040_0000).unwrap(), MapFlags::KERNEL_RW).unwrap();
    let table = ScriptedTable::new(old.bits() | 1 << 5, old.bits());
    let new = Pde::large(PhysAddr::new(0x0080_0000).unwrap(), MapFlags::KERNEL_RO).unwrap();
    assert_eq!(
        Pde::store(&table, 7, new).raw(),
        (old.bits() | 1 << 5) as u64
    );
    assert_eq!(*table.ops.borrow(), ["load32", "swap32"]);

    let table = ScriptedTable::new(0xFFFF_FFFF, 0xFFFF_FFFF);
    Pte::init(&table, 7, Pte::NONE);
    Pde::init(&table, 7, new);
    assert_eq!(table.word.get(), new.bits());
    assert_eq!(*table.ops.borrow(), ["store32", "store32"]);
    table.seen.set(None);
    assert_eq!(Pde::load(&table, 7), new);
}
