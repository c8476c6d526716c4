//! The early fixmap: static tables usable before any allocator exists.
//!
//! A kernel declares a `static` [`EarlyTables`] big enough for the whole
//! fixmap and builds a window on it with
//! [`WindowBuilder::build_static`](crate::WindowBuilder::build_static) and
//! [`NoFrames`]. Its mappings (an early console, say) survive the switch to
//! the final tables because the final window copies every entry of the
//! tables it replaces.

use core::sync::atomic::AtomicU64;

/// Page-aligned, zero-initialised static storage for `N` page tables.
///
/// Being one array, the `N` tables are virtually and physically contiguous
/// (a kernel image is loaded contiguously), which is what a window needs.
#[repr(C, align(4096))]
pub struct EarlyTables<const N: usize> {
    tables: [[AtomicU64; 512]; N],
}

impl<const N: usize> EarlyTables<N> {
    /// `N` zeroed tables.
    pub const fn new() -> Self {
        Self {
            tables: [const { [const { AtomicU64::new(0) }; 512] }; N],
        }
    }

    /// The first byte of the first table (translate it to a physical address
    /// to get the frame to pass to the builder).
    pub fn as_ptr(&self) -> *const u8 {
        self.tables.as_ptr().cast()
    }

    /// Number of tables.
    pub const fn len(&self) -> usize {
        N
    }

    /// Whether there are no tables.
    pub const fn is_empty(&self) -> bool {
        N == 0
    }
}

impl<const N: usize> Default for EarlyTables<N> {
    fn default() -> Self {
        Self::new()
    }
}

/// A frame allocator with nothing in it (paging-core's): building early
/// tables on it fails with a typed error if a table is missing.
pub use paging_core::NoFrames;

#[cfg(test)]
mod tests {
    use super::*;

    static TABLES: EarlyTables<3> = EarlyTables::new();

    #[test]
    fn early_tables_are_page_aligned_and_contiguous() {
        assert_eq!(TABLES.as_ptr() as usize % 4096, 0);
        assert_eq!(core::mem::size_of::<EarlyTables<3>>(), 3 * 4096);
        assert_eq!(TABLES.len(), 3);
        assert!(
            paging_core::FrameAllocator::allocate_frame(&mut NoFrames, paging_core::Zone::Any)
                .is_none()
        );
    }
}
