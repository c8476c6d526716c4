//! The checks behind the fuzz targets in `fuzz/` (cargo-fuzz, libFuzzer).
//!
//! Each entry point takes arbitrary bytes, runs them against the real code
//! on the host model, and panics only when an invariant is broken (never
//! because the input is odd): the fuzz targets are one-line wrappers, and
//! `tests/regressions.rs` replays every saved input in the normal
//! `cargo test` run.
//!
//! - [`mapper_ops`]: sequences of mapper operations on a simulated machine,
//!   both modes.
//! - [`kmap_ops`]: sequences of persistent-pool and local-slot operations on
//!   a simulated kernel.
//! - [`multiboot`]: the example kernel's Multiboot information and
//!   memory-map parser, and the memory-map normaliser after it.

mod input;
mod kmap_ops;
mod kmap_rig;
mod kmap_steps;
mod mapper_ops;
mod multiboot_input;

// The example kernel's parser and normaliser, compiled here unchanged (they
// depend only on `core` and `zerocopy`). `memmap` names `super::multiboot`.
#[path = "../../examples/kernel/src/boot/memmap.rs"]
#[allow(dead_code)]
mod memmap;
#[path = "../../examples/kernel/src/boot/multiboot.rs"]
#[allow(dead_code)]
mod multiboot;

pub use input::Input;
pub use kmap_ops::kmap_ops;
pub use mapper_ops::mapper_ops;
pub use multiboot_input::multiboot;

/// The workspace README's Rust examples, run as doctests so they stay true.
/// They live in this unpublished crate, which depends on every crate they
/// use, so that no published package refers to a file outside itself (in
/// `paging-core` this made `cargo test --doc` fail from its tarball).
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct WorkspaceReadme;
