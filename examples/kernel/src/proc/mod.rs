//! Processes: the process table and scheduler, system calls, user faults, user programs, user copies and the per-process working-set estimate (the preemption tick itself is `arch::timer`).

pub mod fault;
pub mod process;
pub mod sched;
pub mod spawn;
pub mod syscall;
pub mod user;
pub mod user_basic;
pub mod user_fuzz;
pub mod user_hostile;
pub mod usercopy;
pub mod working_set;
