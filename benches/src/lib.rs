//! Benchmark fixtures for the paging crates, on real host memory.
//!
//! Our code is measured on real memory, not on the simulator: page tables
//! live in a page-aligned host buffer ([`HostMemory`]) reached through
//! [`paging_core::OffsetAccess`], frames come from a bump allocator
//! ([`BumpFrames`]), and TLB flushes are skipped (`ignore()`) or counted
//! ([`CountingTlb`]), since no CPU uses these tables. The `x86_64` crate's
//! `OffsetPageTable` gets the same kind of buffer ([`TheirPages`]).
//!
//! - `cargo xtask bench` (or `cargo bench -p paging-benches`) runs the
//!   criterion groups, the callgrind counts and the deterministic figures,
//!   and prints one table; see `benches/README.md`.
//! - `src/bin/hotpaths.rs` is what callgrind runs ([`hotpaths`]).
//! - The deterministic figures (flush counts, metadata, lowmem cost) are in
//!   `figures/`, shared by the bench harness and `tests/figures.rs`.

// The peer compared against, the `x86_64` crate's `OffsetPageTable`, only
// exists on 64-bit hosts; elsewhere (the workspace's i586 library check)
// this crate is empty.
#![cfg(target_pointer_width = "64")]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

pub mod baseline;
pub mod bound;
pub mod callgrind;
pub mod host;
pub mod hotpaths;
pub mod kmap_host;
pub mod ours;
pub mod report;
pub mod theirs;

pub use baseline::LockLookup;
pub use bound::RawBound;
pub use host::{BumpFrames, HostMemory};
pub use kmap_host::{CountingTlb, KmapHost};
pub use ours::{OursPages, OursRange};
pub use theirs::TheirPages;

/// First virtual address of the single-page benchmarks.
pub const REGION_VA: u32 = 0xC000_0000;
/// Pages whose tables exist in the single-page fixtures.
pub const PAGES: usize = 8192;
/// Physical address of the first data page (past every host buffer; data
/// pages are mapped, never touched).
pub const DATA_PA: u64 = 0x1000_0000;
/// Where the range benchmark maps.
pub const RANGE_VA: u32 = 0x4000_0000;
/// How much the range benchmark maps: 1 GiB of 4 KiB pages.
pub const RANGE_BYTES: u64 = 1 << 30;

/// A fixture could not be built or an operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FixtureError {
    /// An address was not a valid frame.
    Frame,
    /// Anything else, with its message.
    Failed(String),
}

impl core::fmt::Display for FixtureError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Frame => f.write_str("not a valid frame address"),
            Self::Failed(message) => f.write_str(message),
        }
    }
}

impl<E: core::error::Error> From<E> for FixtureError {
    fn from(e: E) -> Self {
        Self::Failed(e.to_string())
    }
}
