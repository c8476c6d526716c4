//! The sizes a persistent pool may have, as a trait bound that `cargo check`
//! sees.

/// The slot count `N` of a persistent pool, as a type (see
/// [`ValidPoolSize`]). Never constructed.
#[derive(Debug, Clone, Copy)]
pub struct PoolSize<const N: usize>;

/// Implemented for [`PoolSize<N>`] exactly when `N` is a power of two from
/// 2 to 32768: the sizes a [`PersistentPool`](crate::PersistentPool) can
/// have. Sealed: no other size can be added.
///
/// [`PersistentPool::new`](crate::PersistentPool::new) requires
/// `PoolSize<N>: ValidPoolSize`, so a pool of any other size is a type
/// error with its own message, found by type-checking (`cargo check`,
/// rust-analyzer), not only by a full build:
///
/// ```text
/// error[E0277]: a kmap pool of `PoolSize<100>`: the slot count must be a power of two from 2 to 32768
/// ```
///
/// Generic code that creates pools of any size `N` states the same bound:
///
/// ```
/// # use kmap::{PoolSize, ValidPoolSize};
/// fn slots_of<const N: usize>() -> usize
/// where
///     PoolSize<N>: ValidPoolSize,
/// {
///     N
/// }
/// assert_eq!(slots_of::<1024>(), 1024);
/// ```
///
/// ```compile_fail,E0277
/// # use kmap::{PoolSize, ValidPoolSize};
/// # fn slots_of<const N: usize>() -> usize where PoolSize<N>: ValidPoolSize { N }
/// slots_of::<100>(); // not a power of two
/// ```
///
/// Why these sizes: the round-robin cursor wraps with a mask (`N − 1`), as
/// Linux's `LAST_PKMAP_MASK`; the page → slot index (`2N` atomic buckets,
/// probed with a mask) and the lock-free hit's slot layout need a power of
/// two; and slot numbers are kept in 16 bits.
#[diagnostic::on_unimplemented(
    message = "a kmap pool of `{Self}`: the slot count must be a power of two from 2 to 32768",
    label = "not a valid pool size",
    note = "use a power of two (as Linux's LAST_PKMAP is): 2, 4, 8, ..., 1024, ..., 32768"
)]
pub trait ValidPoolSize: sealed::Sealed {}

mod sealed {
    /// Keeps the list of valid sizes closed.
    pub trait Sealed {}
}

macro_rules! valid_sizes {
    ($($n:literal)*) => {
        $(
            impl sealed::Sealed for PoolSize<$n> {}
            impl ValidPoolSize for PoolSize<$n> {}
        )*
    };
}

valid_sizes!(2 4 8 16 32 64 128 256 512 1024 2048 4096 8192 16384 32768);
