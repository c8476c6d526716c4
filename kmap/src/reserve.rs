//! Deadlock-free nesting: task tokens, reservations and mapping guards.
//!
//! The classic kmap deadlock: two tasks each hold one slot and each wait for
//! a second one while the pool is exhausted. Here that pattern does not
//! compile:
//!
//! - waiting for pool capacity needs `&mut KmapTask` (the task's token);
//! - every pool mapping borrows that token (shared for [`try_map`], mutable
//!   for [`map`], or through a [`Reservation`], which holds it mutably);
//! - so while any mapping of the task is alive, the task cannot reach a call
//!   that waits. A task that needs K mappings at once reserves K up front
//!   ([`reserve`]: all or wait, with nothing held), and every map from the
//!   reservation is guaranteed a slot without waiting.
//!
//! The examples on [`KmapTask`] show both patterns: the one that compiles
//! and the ones that do not.
//!
//! [`try_map`]: crate::PersistentPool::try_map
//! [`map`]: crate::PersistentPool::map
//! [`reserve`]: crate::PersistentPool::reserve

use core::cell::Cell;
use core::fmt;

use paging_core::{PhysFrame, VirtAddr};

use crate::error::KmapError;
use crate::pool::{Payer, PoolOps};

/// A task's capability to wait for persistent kmap slots.
///
/// Not `Clone`: a task has exactly one, and the borrow checker uses it to
/// keep the task from waiting while it holds a mapping.
///
/// A task that needs two pages at once reserves both, then maps them; the
/// maps never wait. One page after the other needs no reservation:
///
/// ```
/// # use kmap::{KmapError, KmapTask, PersistentPool};
/// # use paging_sim::{Mmu, SimAccess};
/// # use paging_core::PhysFrame;
/// # type Pool<'p> = PersistentPool<paging_x86_pae::Pae, SimAccess<'p>, &'p Mmu<'p>>;
/// fn copy_page(pool: &Pool<'_>, task: &mut KmapTask, a: PhysFrame, b: PhysFrame)
///     -> Result<(), KmapError>
/// {
///     let both = pool.reserve(task, 2)?; // may wait, holding nothing
///     let from = both.map(a)?; // never waits
///     let to = both.map(b)?; // never waits
///     # let _ = (from.va(), to.va());
///     Ok(())
/// }
///
/// fn one_then_other(pool: &Pool<'_>, task: &mut KmapTask, a: PhysFrame, b: PhysFrame)
///     -> Result<(), KmapError>
/// {
///     let from = pool.map(task, a)?;
///     # let _ = from.va();
///     drop(from);
///     let to = pool.map(task, b)?; // may wait: nothing is held
///     # let _ = to.va();
///     Ok(())
/// }
/// ```
///
/// Without the reservation, holding both does not compile: the second
/// `map` could wait while the first mapping is held, and `task` is still
/// mutably borrowed by `from` (error E0499). It is `one_then_other` without
/// the `drop`:
///
/// ```compile_fail,E0499
/// # use kmap::{KmapError, KmapTask, PersistentPool};
/// # use paging_sim::{Mmu, SimAccess};
/// # use paging_core::PhysFrame;
/// # type Pool<'p> = PersistentPool<paging_x86_pae::Pae, SimAccess<'p>, &'p Mmu<'p>>;
/// fn one_then_other(pool: &Pool<'_>, task: &mut KmapTask, a: PhysFrame, b: PhysFrame)
///     -> Result<(), KmapError>
/// {
///     let from = pool.map(task, a)?;
///     # let _ = from.va();
///     let to = pool.map(task, b)?; // waits while holding `from`: rejected
///     # let _ = (from.va(), to.va());
///     Ok(())
/// }
/// ```
///
/// Nor can a task that holds a mapping from
/// [`try_map`](crate::PersistentPool::try_map) go on to wait (error E0502:
/// `task` is shared-borrowed by the mapping):
///
/// ```compile_fail,E0502
/// # use kmap::{KmapError, KmapTask, PersistentPool};
/// # use paging_sim::{Mmu, SimAccess};
/// # use paging_core::PhysFrame;
/// # type Pool<'p> = PersistentPool<paging_x86_pae::Pae, SimAccess<'p>, &'p Mmu<'p>>;
/// fn copy_page(pool: &Pool<'_>, task: &mut KmapTask, a: PhysFrame, b: PhysFrame)
///     -> Result<(), KmapError>
/// {
///     let from = pool.try_map(task, a)?;
///     let more = pool.reserve(task, 1)?; // waits while holding `from`: rejected
///     # let _ = (from.va(), more.remaining());
///     Ok(())
/// }
/// ```
///
#[derive(Debug)]
pub struct KmapTask {
    _private: (),
}

impl KmapTask {
    /// The token of the current task.
    ///
    /// # Safety
    /// At most one `KmapTask` may be alive per thread of execution (task,
    /// interrupt context never: it cannot wait). With two, a task could hold
    /// a mapping through one while waiting through the other, and the
    /// deadlock this type rules out would be possible again. Kernels create
    /// it with the task and drop it with the task.
    #[allow(unsafe_code)]
    pub const unsafe fn new() -> Self {
        Self { _private: () }
    }
}

/// `k` pool mappings promised to one task: each [`map`](Self::map) from it
/// succeeds without waiting. Unused promises are given back on drop.
pub struct Reservation<'a> {
    pool: &'a dyn PoolOps,
    tickets: Cell<usize>,
}

impl fmt::Debug for Reservation<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reservation")
            .field("remaining", &self.tickets.get())
            .finish()
    }
}

impl<'a> Reservation<'a> {
    pub(crate) fn new(pool: &'a dyn PoolOps, k: usize) -> Self {
        Self {
            pool,
            tickets: Cell::new(k),
        }
    }

    /// Map `frame` using one of the promised mappings. Never waits; fails
    /// with [`KmapError::ReservationSpent`] once all are used.
    pub fn map(&self, frame: PhysFrame) -> Result<Kmap<'_>, KmapError> {
        let left = self.tickets.get();
        if left == 0 {
            return Err(KmapError::ReservationSpent);
        }
        let claimed = self.pool.claim_dyn(frame, Payer::Ticket)?;
        self.tickets.set(left - 1);
        Ok(Kmap {
            pool: self.pool,
            frame,
            va: claimed.va,
            slotted: claimed.slotted,
        })
    }

    /// Mappings still available from this reservation.
    pub fn remaining(&self) -> usize {
        self.tickets.get()
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        self.pool.unreserve_dyn(self.tickets.get());
    }
}

/// One use of a persistent (or direct-mapped lowmem) mapping of a page;
/// dropping it unmaps.
#[must_use = "dropping the guard unmaps the page immediately"]
pub struct Kmap<'a> {
    pool: &'a dyn PoolOps,
    frame: PhysFrame,
    va: VirtAddr,
    slotted: bool,
}

impl fmt::Debug for Kmap<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Kmap")
            .field("frame", &self.frame)
            .field("va", &self.va)
            .field("slotted", &self.slotted)
            .finish()
    }
}

impl<'a> Kmap<'a> {
    pub(crate) fn new(
        pool: &'a dyn PoolOps,
        frame: PhysFrame,
        va: VirtAddr,
        slotted: bool,
    ) -> Self {
        Self {
            pool,
            frame,
            va,
            slotted,
        }
    }

    /// Where the page is mapped.
    pub fn va(&self) -> VirtAddr {
        self.va
    }

    /// The mapped page.
    pub fn frame(&self) -> PhysFrame {
        self.frame
    }

    /// Whether the page is reached through the direct map (no slot used).
    pub fn is_direct(&self) -> bool {
        !self.slotted
    }

    /// Keep the mapping after the guard is gone; undo it with
    /// [`PersistentPool::kunmap_raw`](crate::PersistentPool::kunmap_raw).
    ///
    /// # Safety
    /// The task must not wait for pool capacity (`map`, `reserve`) until it
    /// has called `kunmap_raw` for this page: holding a raw mapping while
    /// waiting is the deadlock the guard types exist to prevent.
    #[allow(unsafe_code)]
    pub unsafe fn into_raw(self) -> (PhysFrame, VirtAddr) {
        let raw = (self.frame, self.va);
        core::mem::forget(self);
        raw
    }
}

impl Drop for Kmap<'_> {
    fn drop(&mut self) {
        if self.slotted {
            self.pool.release_dyn(self.frame, self.va);
        }
    }
}
