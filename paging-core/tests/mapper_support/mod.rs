//! Shared by the mapper's integration tests: a leaked simulated machine per
//! test (so helpers can return it), and short constructors.
// Each test crate uses a different subset of these helpers.
#![allow(dead_code)]

use paging_core::{PagingMode, PhysAddr, PhysFrame, VirtAddr};
use paging_sim::{Machine, SimRam};

/// A simulated machine whose RAM lives for the rest of the test.
pub type Rig<M> = Machine<'static, M>;

/// A fresh machine of mode `M`.
pub fn machine<M: PagingMode>() -> Rig<M> {
    let ram: &'static SimRam = Box::leak(Box::new(SimRam::new()));
    // Miri reports memory nobody can reach at exit as leaked; kept in a
    // static, the deliberately leaked RAM is reachable.
    #[cfg(miri)]
    KEPT.lock().unwrap().push(ram);
    Machine::new(ram)
}

/// Every leaked RAM, reachable (under Miri only).
#[cfg(miri)]
static KEPT: std::sync::Mutex<Vec<&'static SimRam>> = std::sync::Mutex::new(Vec::new());

/// The first frame mode `M` cannot map.
pub fn unreachable_frame<M: PagingMode>() -> u64 {
    1 << M::MAX_PHYS_BITS
}

pub fn pa(x: u64) -> PhysAddr {
    PhysAddr::new(x).unwrap()
}

pub fn va(x: u32) -> VirtAddr {
    VirtAddr::new(x)
}

pub fn frame(x: u64) -> PhysFrame {
    PhysFrame::from_start_address(pa(x)).unwrap()
}
