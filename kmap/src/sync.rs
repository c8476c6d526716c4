//! The lock and the atomics of the persistent pool's map/unmap/wrap/wait
//! protocol and of the local slots' per-CPU stacks, swappable for the model
//! checker.
//!
//! Normally they are [`spin::Mutex`] (taken with a `try_lock` loop that
//! calls the wait hook's `relax` in every iteration, so a CPU spinning for
//! it keeps answering TLB shootdowns) and `core`'s atomics. Built with
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
// The local slots' per-CPU stacks (`local.rs`): their depth moves by
// compare-and-swap, which the model test checks with two threads on one
// CPU index.
#[cfg(not(loom))]
pub(crate) use core::sync::atomic::{AtomicBool, AtomicUsize};
#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicUsize};

/// A mutual-exclusion lock whose `lock_relaxing` returns the guard directly.
pub(crate) struct Mutex<T> {
    #[cfg(not(loom))]
    inner: spin::Mutex<T>,
    #[cfg(loom)]
    inner: loom::sync::Mutex<T>,
}

/// The guard [`Mutex::lock_relaxing`] returns.
#[cfg(not(loom))]
pub(crate) type MutexGuard<'a, T> = spin::MutexGuard<'a, T>;
/// The guard [`Mutex::lock_relaxing`] returns.
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

    /// Take the lock, calling `relax` in every iteration while another
    /// holder keeps it (under loom, blocking in the model's lock instead).
    ///
    /// A CPU spinning here may have interrupts disabled (a `map_nowait`
    /// from an interrupt handler); `relax` is where it keeps answering TLB
    /// shootdowns, or a holder that waits for its acknowledgement while
    /// holding this lock (a wrap's flush on SMP) would wait forever.
    #[inline]
    pub(crate) fn lock_relaxing(&self, relax: impl Fn()) -> MutexGuard<'_, T> {
        #[cfg(not(loom))]
        loop {
            if let Some(guard) = self.inner.try_lock() {
                return guard;
            }
            // Wait with plain loads until it looks free (no locked
            // operation bouncing the line meanwhile), relaxing each time.
            loop {
                relax();
                if !self.inner.is_locked() {
                    break;
                }
            }
        }
        #[cfg(loom)]
        {
            let _ = relax;
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

/// Between a sequentially consistent read-modify-write and a sequentially
/// consistent load of another location, on both sides of the hit path's
/// store-buffering handshake (a hit's shard and the gate, see
/// `pool/hot.rs`).
///
/// Sequentially consistent accesses already order the handshake in the
/// language's memory model (and a locked x86 instruction is a full barrier),
/// so normally this is nothing. loom models sequentially consistent
/// *accesses* only as acquire/release (it would report the handshake as
/// broken), but models `fence(SeqCst)` exactly, so under `--cfg loom` it is
/// that fence.
#[inline(always)]
pub(crate) fn dekker_fence() {
    #[cfg(loom)]
    loom::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
}
