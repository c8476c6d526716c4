#![doc = include_str!("../README.md")]
#![no_std]
#![cfg_attr(docsrs, feature(doc_cfg))]
// No unsafe operations anywhere; the only `unsafe` items are two constructors
// whose contracts protect deadlock freedom (`KmapTask::new`, `Kmap::into_raw`)
// and the per-CPU token's constructor (`ThisCpu::new`: "this CPU, not moved").
#![deny(unsafe_code)]
#![warn(missing_docs)]

// The model checker's lock and atomics (`--cfg loom`, tests only) need std.
#[cfg(loom)]
extern crate std;

mod cpu;
mod direct;
mod error;
mod highmem;
mod local;
mod platform;
pub mod policy;
mod pool;
mod reserve;
mod size;
mod stats;
mod sync;
pub mod wait;

pub use cpu::ThisCpu;
pub use direct::DirectMap;
pub use error::KmapError;
pub use highmem::{HighmemTable, HighmemTables};
pub use local::{LocalKmap, LocalMapper, LocalSlots, LocalStats, SavedLocal};
pub use platform::{Local, Platform, Pool};
pub use policy::{
    AccessedBit, FlushCounts, FlushPolicy, Generations, GlobalFlush, PerPage, RangeFlush,
};
pub use pool::{NowaitKmap, PersistentPool};
pub use reserve::{Kmap, KmapTask, Reservation};
pub use size::{PoolSize, ValidPoolSize};
pub use stats::KmapStats;
pub use wait::{SpinWait, WaitHook};
