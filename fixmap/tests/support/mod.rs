//! Shared by fixmap's integration tests.
#![allow(dead_code)]

use paging_core::{PhysAddr, PhysFrame, VirtAddr};

pub fn pa(x: u64) -> PhysAddr {
    PhysAddr::new(x).unwrap()
}

pub fn va(x: u32) -> VirtAddr {
    VirtAddr::new(x)
}

pub fn frame(x: u64) -> PhysFrame {
    PhysFrame::from_start_address(pa(x)).unwrap()
}
