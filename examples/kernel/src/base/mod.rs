//! Base: what every layer may use: the kernel's error, the ticket lock and
//! the memory intrinsics.

pub mod error;
pub mod mem_intrinsics;
pub mod ticket;
