//! Helpers shared by the `sim_*` integration tests: short constructors and
//! the entry bits of SDM Vol. 3A tables 4-4..4-6 and 4-8..4-11, written out
//! here rather than taken from any backend.
// Each test crate uses a different subset of these helpers.
#![allow(dead_code)]

use paging_core::{PhysAddr, PhysFrame, VirtAddr};
use paging_sim::SimRam;

pub const P: u64 = 1 << 0;
pub const RW: u64 = 1 << 1;
pub const US: u64 = 1 << 2;
pub const A: u64 = 1 << 5;
pub const D: u64 = 1 << 6;
pub const PS: u64 = 1 << 7;
pub const G: u64 = 1 << 8;
pub const XD: u64 = 1 << 63;

pub fn pa(x: u64) -> PhysAddr {
    PhysAddr::new(x).unwrap()
}

pub fn va(x: u32) -> VirtAddr {
    VirtAddr::new(x)
}

pub fn frame(x: u64) -> PhysFrame {
    PhysFrame::from_start_address(pa(x)).unwrap()
}

/// Write the 4-byte entry `index` of the 2-level table at `table`.
pub fn set32(ram: &SimRam, table: u64, index: u64, value: u64) {
    ram.write_u32(pa(table + 4 * index), value as u32).unwrap();
}

/// Read the 4-byte entry `index` of the 2-level table at `table`.
pub fn get32(ram: &SimRam, table: u64, index: u64) -> u64 {
    ram.read_u32(pa(table + 4 * index)).unwrap().into()
}

/// Write the 8-byte entry `index` of the PAE table at `table`.
pub fn set64(ram: &SimRam, table: u64, index: u64, value: u64) {
    ram.write_u64(pa(table + 8 * index), value).unwrap();
}

/// Read the 8-byte entry `index` of the PAE table at `table`.
pub fn get64(ram: &SimRam, table: u64, index: u64) -> u64 {
    ram.read_u64(pa(table + 8 * index)).unwrap()
}
