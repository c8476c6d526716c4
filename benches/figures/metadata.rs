//! Bytes of persistent-pool metadata per slot: the pool's own size
//! (`core::mem::size_of`), split into a fixed part and a part per slot by
//! measuring pools of several sizes.

use core::mem::size_of;

use kmap::{GlobalFlush, PersistentPool, SpinWait};
use paging_benches::CountingTlb;
use paging_core::{OffsetAccess, PagingMode};

/// The pool's size with `N` slots.
pub fn pool_bytes<M: PagingMode, const N: usize>() -> usize {
    size_of::<PersistentPool<M, OffsetAccess, CountingTlb, GlobalFlush, SpinWait, N>>()
}

/// The figure for one mode.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MetadataFigure {
    /// The mode's name.
    pub mode: &'static str,
    /// Pool size with 512, 1024 and 2048 slots.
    pub sizes: [usize; 3],
    /// What one more slot costs (from 1024 to 2048 slots).
    pub per_slot: f64,
    /// What is left with no slots (the window, counters, lock, ...).
    pub fixed: f64,
}

impl MetadataFigure {
    /// Whether the size is exactly `fixed + N * per_slot` at every size.
    pub fn is_linear(&self) -> bool {
        [512.0, 1024.0, 2048.0]
            .iter()
            .zip(self.sizes)
            .all(|(n, size)| (self.fixed + n * self.per_slot - size as f64).abs() < 0.5)
    }

    /// Bytes per slot of a 1,024-slot pool, fixed part included.
    pub fn per_slot_at_1024(&self) -> f64 {
        self.sizes[1] as f64 / 1024.0
    }
}

/// Pool sizes in mode `M`.
pub fn figure<M: PagingMode>() -> MetadataFigure {
    let sizes = [
        pool_bytes::<M, 512>(),
        pool_bytes::<M, 1024>(),
        pool_bytes::<M, 2048>(),
    ];
    let per_slot = (sizes[2] - sizes[1]) as f64 / 1024.0;
    MetadataFigure {
        mode: M::NAME,
        sizes,
        per_slot,
        fixed: sizes[1] as f64 - 1024.0 * per_slot,
    }
}
