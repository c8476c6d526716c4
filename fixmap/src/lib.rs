#![doc = include_str!("../README.md")]
#![no_std]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
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
