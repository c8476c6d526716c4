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

/// Instantiate a generic test `fn name<M: PagingMode>()` for both modes.
#[macro_export]
macro_rules! both_modes {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[test]
                fn two_level() {
                    super::$name::<paging_x86_2level::TwoLevel>();
                }
                #[test]
                fn pae() {
                    super::$name::<paging_x86_pae::Pae>();
                }
            }
        )*
    };
}
