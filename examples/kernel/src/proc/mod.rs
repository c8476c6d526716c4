//! Processes: the process table and scheduler, system calls, user faults, user programs, user copies and the timer that preempts them.

pub mod fault;
pub mod process;
pub mod sched;
pub mod spawn;
pub mod syscall;
pub mod timer;
pub mod user;
pub mod user_basic;
pub mod user_fuzz;
pub mod user_hostile;
pub mod usercopy;
