//! Build-time limits that every layer sizes its per-CPU arrays by (not
//! memory layout: that is [`crate::mm::layout`]).

/// Most CPUs the kernel runs on (the boot CPU is 0; more are reported and
/// left out).
pub const CPUS: usize = 8;
