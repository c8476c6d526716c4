//! Table-lifecycle hooks: what a hypervisor (or a debug checker) is told about
//! page tables.
//!
//! Under a paravirtualised hypervisor such as Xen PV, a frame that is a page
//! table must be read-only in every mapping while it is one, and writable
//! again once it stops being one. The hooks are called at exactly those
//! points. The default methods do nothing and compile to nothing, so native
//! kernels pay zero cost ([`NativeHooks`]).

use crate::addr::PhysFrame;
use crate::entry::Level;

/// Notifications about page-table frames and entries.
///
/// Order guaranteed by every user in this workspace:
/// 1. a new table frame is zeroed, then [`table_allocated`](Self::table_allocated)
///    is called, then it is linked into its parent (an entry write);
/// 2. a table is unlinked (an entry write), the TLB is flushed, then
///    [`table_released`](Self::table_released) is called, then the frame goes
///    back to the allocator.
pub trait TableHooks {
    /// `frame` (already zeroed) is about to become a table at `level`.
    fn table_allocated(&self, frame: PhysFrame, level: Level) {
        let _ = (frame, level);
    }

    /// `frame` has stopped being a table at `level` and is about to be freed.
    fn table_released(&self, frame: PhysFrame, level: Level) {
        let _ = (frame, level);
    }

    /// Entry `index` of the table in `table` (at `level`) changed from `old` to `new`.
    fn entry_written(&self, table: PhysFrame, level: Level, index: usize, old: u64, new: u64) {
        let _ = (table, level, index, old, new);
    }

    /// Frames that were set aside for page tables but never became one (the
    /// unused tail of the early page-table buffer) are handed back for other
    /// uses: `count` frames from `first`.
    fn frames_returned(&self, first: PhysFrame, count: u64) {
        let _ = (first, count);
    }
}

impl<H: TableHooks + ?Sized> TableHooks for &H {
    fn table_allocated(&self, frame: PhysFrame, level: Level) {
        (**self).table_allocated(frame, level)
    }
    fn table_released(&self, frame: PhysFrame, level: Level) {
        (**self).table_released(frame, level)
    }
    fn entry_written(&self, table: PhysFrame, level: Level, index: usize, old: u64, new: u64) {
        (**self).entry_written(table, level, index, old, new)
    }
    fn frames_returned(&self, first: PhysFrame, count: u64) {
        (**self).frames_returned(first, count)
    }
}

/// The native (bare-metal) hooks: do nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NativeHooks;

impl TableHooks for NativeHooks {}
