//! A fair spin lock: CPUs get it in the order they asked (a ticket lock,
//! as Linux's x86 spinlocks were from 2.6.25 until queued spinlocks).
//!
//! The process table needs it. With an unfair lock (take it whenever it is
//! seen free), CPUs that go round the scheduler's loop took it again and
//! again, and a CPU in `exit` that wanted it once waited for good: on Bochs,
//! whose emulated CPUs take turns a few instructions at a time, three idle
//! schedulers starved the fourth, and the test never ended (the watchdog's
//! test deadline showed it). A ticket makes every waiter's turn come after
//! at most one hold by each CPU ahead of it.
//!
//! Each wait is one the hang watchdog watches ([`crate::base::spin::spin`]).

use core::cell::UnsafeCell;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicU32, Ordering};

/// A ticket lock around `T`, named for the watchdog's report.
pub struct TicketLock<T> {
    /// What the watchdog says a waiter waits on.
    name: &'static str,
    /// The next ticket handed out.
    next: AtomicU32,
    /// The ticket whose holder may run now.
    serving: AtomicU32,
    data: UnsafeCell<T>,
}

// SAFETY: the data is reached only through a guard, and only one guard
// exists at a time (the holder of the serving ticket), so `T` moves between
// CPUs but is never shared: `T: Send` is enough.
unsafe impl<T: Send> Sync for TicketLock<T> {}

/// The holder of a [`TicketLock`]; the next ticket is served when it drops.
pub struct TicketGuard<'a, T> {
    lock: &'a TicketLock<T>,
}

impl<T> TicketLock<T> {
    /// A free lock around `data`.
    pub const fn new(name: &'static str, data: T) -> Self {
        Self {
            name,
            next: AtomicU32::new(0),
            serving: AtomicU32::new(0),
            data: UnsafeCell::new(data),
        }
    }

    /// Takes a ticket and waits for its turn.
    pub fn lock(&self) -> TicketGuard<'_, T> {
        let ticket = self.next.fetch_add(1, Ordering::Relaxed);
        while self.serving.load(Ordering::Acquire) != ticket {
            crate::base::spin::spin(self.name, self as *const Self as usize);
            core::hint::spin_loop();
        }
        crate::base::spin::done();
        crate::base::spin::progress();
        TicketGuard { lock: self }
    }

    /// The lock if nobody holds it or waits for it, without waiting.
    pub fn try_lock(&self) -> Option<TicketGuard<'_, T>> {
        let serving = self.serving.load(Ordering::Acquire);
        self.next
            .compare_exchange(
                serving,
                serving.wrapping_add(1),
                Ordering::Acquire,
                Ordering::Relaxed,
            )
            .ok()
            .map(|_| TicketGuard { lock: self })
    }
}

impl<T> Deref for TicketGuard<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: this guard holds the serving ticket: no other guard
        // exists until it drops.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T> DerefMut for TicketGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`, and `&mut self` makes it the only access.
        unsafe { &mut *self.lock.data.get() }
    }
}

impl<T> Drop for TicketGuard<'_, T> {
    fn drop(&mut self) {
        // Release: what the holder wrote is seen by the next one.
        self.lock.serving.fetch_add(1, Ordering::Release);
    }
}
