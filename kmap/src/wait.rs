//! How a task waits for a free pool slot, and how it is woken.
//!
//! The pool keeps an *epoch* counter that it bumps (under its lock) whenever
//! capacity is given back. A waiter records the epoch while it still holds
//! the lock, then calls [`WaitHook::wait`], which returns once the epoch has
//! moved on (or spuriously: the pool re-checks). [`WaitHook::wake`] is only
//! called when somebody is waiting.

use core::sync::atomic::Ordering;

use crate::sync::{AtomicU32, spin_hint};

/// Blocks and wakes tasks waiting for pool capacity.
pub trait WaitHook: Send + Sync {
    /// Return when `epoch` no longer equals `seen` (spurious returns are
    /// fine). A scheduler puts the task on a wait queue keyed by `epoch`.
    fn wait(&self, epoch: &AtomicU32, seen: u32);

    /// `epoch` changed and at least one task waits: wake the waiters.
    fn wake(&self, epoch: &AtomicU32);
}

/// Busy-wait (with the CPU's pause hint): for early boot, tests, or kernels
/// without a scheduler.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpinWait;

impl WaitHook for SpinWait {
    fn wait(&self, epoch: &AtomicU32, seen: u32) {
        while epoch.load(Ordering::Acquire) == seen {
            spin_hint();
        }
    }

    fn wake(&self, _epoch: &AtomicU32) {}
}
