//! Memory management: the virtual layout, the early fixmap and its handover to the final one, frames, the direct map, the kernel tables kept in sync, vmalloc/ioremap, address spaces, kmap pools and TLB shootdown.

pub mod address_space;
pub mod direct_map;
pub mod early_fixmap;
pub mod frames;
pub mod handover;
pub mod kernel;
pub mod kernel_sync;
pub mod kernel_tables;
pub mod kmap_policy;
pub mod kmap_setup;
pub mod layout;
pub mod memory;
pub mod ro_after_init;
pub mod shootdown;
pub mod vmalloc;
