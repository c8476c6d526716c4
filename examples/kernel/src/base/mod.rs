//! Base: what every layer may use: the build's limits, the kernel's error,
//! the ticket lock and the memory intrinsics.

pub mod config;
pub mod error;
pub mod mem_intrinsics;
pub mod spin;
pub mod sync_faults;
pub mod ticket;
