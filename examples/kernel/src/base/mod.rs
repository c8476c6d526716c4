//! Base: what every layer may use and that uses nothing of the kernel (locks, memory intrinsics).

pub mod mem_intrinsics;
pub mod ticket;
