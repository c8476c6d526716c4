//! Build-time limits that every layer sizes its arrays by (not
//! memory layout: that is [`crate::mm::layout`]).

/// Most CPUs the kernel runs on (the boot CPU is 0; more are reported and
/// left out).
pub const CPUS: usize = 8;

/// Processes alive (or not yet reaped) at once: sizes the process table
/// and the x87 state images (`arch::fpu`).
pub const MAX_PROCESSES: usize = 96;
