#![doc = include_str!("../README.md")]
#![no_std]
#![cfg_attr(docsrs, feature(doc_cfg))]
// `unsafe` only where frames are handed to the mapper or back to an
// allocator (window.rs); each such item says `allow(unsafe_code)`.
#![deny(unsafe_code)]
#![warn(missing_docs)]

mod early;
mod error;
mod fixmap;
mod layout;
mod window;

pub use early::{EarlyTables, NoFrames};
pub use error::{FixmapError, WindowError};
pub use fixmap::{Fixmap, TOP_STEP};
pub use layout::{
    FixIndex, FixRange, FixmapLayout, PAGES_PER_TABLE_BOTH_MODES, first_in_one_table, fix_to_virt,
    virt_to_fix,
};
pub use window::{ContiguousWindow, WindowBuilder};

/// Re-exported for [`fixmap_layout!`] and for users who want one import.
pub use paging_core;
