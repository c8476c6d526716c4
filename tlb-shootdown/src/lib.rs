#![doc = include_str!("../README.md")]
#![no_std]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

// The model checker's lock and atomics (`--cfg loom`, tests only) need std.
#[cfg(loom)]
extern crate std;

mod cpuset;
mod error;
mod platform;
mod request;
mod shootdown;
mod stats;
mod sync;
mod tlb;

pub use cpuset::{CpuSet, CpuSetIter};
pub use error::ShootdownError;
pub use platform::{IpiPlatform, Targets};
pub use request::{FlushRequest, REQUEST_PAGES};
pub use shootdown::{FullFlushStart, Shootdown};
pub use stats::{CpuStats, Report, ShootdownStats};
pub use tlb::ShootdownTlb;
