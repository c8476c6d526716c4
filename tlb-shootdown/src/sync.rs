//! The mailbox locks and the protocol's atomics, swappable for the model
//! checker.
//!
//! Normally they are [`spin::Mutex`] and `core`'s atomics. Built with
//! `RUSTFLAGS="--cfg loom"` they are `loom`'s, so the model test
//! (`tests/loom.rs`) explores every interleaving of the protocol: the
//! mailboxes, the request and acknowledgement counters, the online set and
//! the generation clock. The statistics counters stay plain atomics: they
//! are reports, not part of the protocol. The waits call the platform's
//! [`relax`](crate::IpiPlatform::relax), which a loom test makes a loom
//! yield.

#[cfg(not(loom))]
pub(crate) use core::sync::atomic::AtomicU32;
#[cfg(loom)]
pub(crate) use loom::sync::atomic::AtomicU32;

/// A mutual-exclusion lock whose `lock` returns the guard directly.
pub(crate) struct Mutex<T> {
    #[cfg(not(loom))]
    inner: spin::Mutex<T>,
    #[cfg(loom)]
    inner: loom::sync::Mutex<T>,
}

/// The guard [`Mutex::lock`] returns.
#[cfg(not(loom))]
pub(crate) type MutexGuard<'a, T> = spin::MutexGuard<'a, T>;
/// The guard [`Mutex::lock`] returns.
#[cfg(loom)]
pub(crate) type MutexGuard<'a, T> = loom::sync::MutexGuard<'a, T>;

impl<T> Mutex<T> {
    /// A lock around `value`.
    #[cfg(not(loom))]
    pub(crate) const fn new(value: T) -> Self {
        Self {
            inner: spin::Mutex::new(value),
        }
    }

    /// A lock around `value`.
    #[cfg(loom)]
    pub(crate) fn new(value: T) -> Self {
        Self {
            inner: loom::sync::Mutex::new(value),
        }
    }

    /// Take the lock, spinning (or, under loom, blocking) until it is free.
    #[inline]
    pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
        #[cfg(not(loom))]
        {
            self.inner.lock()
        }
        #[cfg(loom)]
        {
            // A panic while the lock is held is already a failed model run;
            // the state is still the one to report, so take it anyway.
            self.inner
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        }
    }
}
