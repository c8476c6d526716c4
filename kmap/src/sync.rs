//! The lock and the atomics of the persistent pool's map/unmap/wrap/wait
//! protocol, swappable for the model checker.
//!
//! Normally they are [`spin::Mutex`] and `core`'s atomics. Built with
//! `RUSTFLAGS="--cfg loom"` they are `loom`'s, so the model test
//! (`tests/loom.rs`) explores every interleaving of the protocol: the pool
//! state, the epoch that waiters watch, and the spin hint of [`SpinWait`]
//! (which becomes a loom yield, or a spinning waiter would never let the
//! model advance). The statistics counters stay plain atomics: they are
//! reports, not part of the protocol.
//!
//! [`SpinWait`]: crate::SpinWait

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
    pub(crate) fn new(value: T) -> Self {
        Self {
            #[cfg(not(loom))]
            inner: spin::Mutex::new(value),
            #[cfg(loom)]
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

/// What a busy-waiting loop does between two looks at the epoch.
#[inline]
pub(crate) fn spin_hint() {
    #[cfg(not(loom))]
    core::hint::spin_loop();
    #[cfg(loom)]
    loom::thread::yield_now();
}
