//! How a task waits for a free pool slot, and how it is woken.
//!
//! The pool keeps an *epoch* counter that it bumps (under its lock) whenever
//! capacity is given back. A waiter records the epoch while it still holds
//! the lock, then calls [`WaitHook::wait`], which returns once the epoch has
//! moved on (or spuriously: the pool re-checks). [`WaitHook::wake`] is only
//! called when somebody is waiting.
//!
//! # Spinning for the pool's lock: [`WaitHook::relax`]
//!
//! The pool's lock is a spin lock, and it can be wanted with interrupts
//! disabled: [`PersistentPool::map_nowait`](crate::PersistentPool::map_nowait)
//! from an interrupt handler, or any pool call in a section that masks
//! interrupts. On SMP the lock holder may be in the middle of a wrap,
//! flushing every CPU's TLB and waiting for each CPU to acknowledge its
//! shootdown. A CPU that spins for the lock with interrupts off never
//! takes that IPI, so the holder waits for it and it waits for the holder:
//! a deadlock. So the pool calls [`WaitHook::relax`] in every iteration of
//! its lock spin, and the rule for kernels is:
//!
//! > On SMP, `relax` must service pending TLB-shootdown requests of the
//! > calling CPU (or briefly enable interrupts, when that is allowed there),
//! > then may pause.
//!
//! The default only pauses ([`core::hint::spin_loop`]), which is right for a
//! uniprocessor and for kernels whose shootdowns are not acknowledged
//! synchronously. Under the model checker (`--cfg loom`) the lock is
//! loom's and blocks, so `relax` is not called there.

use core::sync::atomic::Ordering;

use crate::sync::{AtomicU32, spin_hint};

/// Blocks and wakes tasks waiting for pool capacity.
pub trait WaitHook: Send + Sync {
    /// Return when `epoch` no longer equals `seen` (spurious returns are
    /// fine). A scheduler puts the task on a wait queue keyed by `epoch`.
    fn wait(&self, epoch: &AtomicU32, seen: u32);

    /// `epoch` changed and at least one task waits: wake the waiters.
    fn wake(&self, epoch: &AtomicU32);

    /// Called in every iteration while the pool spins for its lock, which
    /// another CPU holds. On SMP, service this CPU's pending TLB-shootdown
    /// requests here (the holder may be waiting for them with the lock
    /// held: see [the module docs](self)); the default only pauses.
    ///
    /// It runs with no pool lock held, possibly with interrupts disabled and
    /// in interrupt context: it must not wait for the pool or take a pool
    /// mapping.
    #[inline]
    fn relax(&self) {
        spin_hint();
    }
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
