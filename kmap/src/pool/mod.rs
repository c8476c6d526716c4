//! The persistent pool (pkmap): refcounted slots below the fixmap.
//!
//! # Slot life cycle
//!
//! Each slot has a count, as in Linux's `pkmap_count`:
//!
//! | count | meaning |
//! |---|---|
//! | 0 | free: PTE clear, not in any TLB |
//! | 1 | unused: no users, but its PTE still maps the old page and a TLB may hold it |
//! | n ≥ 2 | mapped, with n − 1 users |
//!
//! A map of a page that already has a slot (count ≥ 1) takes that slot again,
//! without the lock (the page→slot index and the counts are atomics: see
//! `pool/hot.rs` and the crate README's "The lock-free hit"). Otherwise the round-robin
//! cursor looks for a free slot; when it wraps, every count-1 slot is cleared
//! and the TLB is flushed *once* through the [`FlushPolicy`]. So a freed slot
//! costs nothing until the pool runs round.
//!
//! Under a policy that [clears on release](FlushPolicy::clears_on_release)
//! ([`Generations`](crate::Generations)), a count-1 slot is *stale* instead:
//! its PTE was cleared when its last user left and its page forgotten. When
//! the cursor enters a half of the pool, that half's slots that were
//! already stale at the previous half boundary are freed and flushed from
//! that boundary's [`TlbMark`]; the others wait for the cursor to come
//! back, unless a whole lap finds no free slot, when all are freed at once.
//!
//! # Capacity and waiting
//!
//! `in_use` counts slots with count ≥ 2; `reserved` counts mappings promised
//! to live reservations. The pool keeps `N - in_use >= reserved` at all
//! times, which is why a map taken from a reservation never waits: there is
//! always a free or unused slot for it. Waiting happens in exactly one place,
//! [`PersistentPool::reserve`], and a task can only call it while it holds no
//! pool mapping (see [`KmapTask`](crate::KmapTask)).

mod hot;
mod slots;

use core::sync::atomic::Ordering;

use paging_core::{PAGE_SIZE, PagingMode, PhysFrame, TableAccess, TlbMark, TlbOps, VirtAddr};

use fixmap::ContiguousWindow;

use crate::direct::DirectMap;
use crate::error::KmapError;
use crate::local::{LocalKmap, LocalMapper};
use crate::policy::{FlushPolicy, GlobalFlush};
use crate::reserve::{Kmap, KmapTask, Reservation};
use crate::size::{PoolSize, ValidPoolSize};
use crate::stats::{Counters, KmapStats};
use crate::sync::{AtomicU32, Mutex, MutexGuard};
use crate::wait::{SpinWait, WaitHook};

use hot::{Hit, HotSlots};

/// What only the lock holder touches. The slot counts, their pages and the
/// page→slot index are atomics in [`HotSlots`], read by lock-free hits.
pub(crate) struct PoolState<const N: usize> {
    cursor: usize,
    reserved: usize,
    waiters: usize,
    /// Per slot, under a policy that clears on release: whether a count-1
    /// slot's PTE is already clear, and since when.
    stale: [Stale; N],
    /// The mark taken at the last wrap (half boundary), after its PTE clears.
    wrap_mark: TlbMark,
}

/// A count-1 slot's PTE, under a policy that
/// [clears on release](FlushPolicy::clears_on_release).
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Stale {
    /// Still maps its page (every policy; and under one that clears on
    /// release, a slot whose table could not be reached then).
    No,
    /// Cleared since the last half boundary: after its mark, not yet freeable.
    Fresh,
    /// Cleared before the last half boundary's mark: freed when the cursor
    /// next enters its half.
    Old,
}

/// `N` refcounted persistent kmap slots at `base`, `base + 4096`, ...
///
/// `M` is the paging mode, `A` reaches the window's PTE tables, `T` flushes
/// the TLB (on SMP, every CPU's), `P` is the flush policy and `W` how tasks
/// wait. `N` must be a power of two from 2 to 32768 (as `LAST_PKMAP` is):
/// [`new`](Self::new) requires `PoolSize<N>:` [`ValidPoolSize`], so any other
/// size is a type error that `cargo check` reports, saying "the slot count
/// must be a power of two":
///
/// ```
/// # use kmap::{DirectMap, GlobalFlush, PersistentPool, SpinWait};
/// # use paging_sim::{Machine, SimAccess, SimRam};
/// # use paging_core::VirtAddr;
/// # use paging_x86_pae::Pae;
/// # let ram = SimRam::new();
/// # let mut m = Machine::<Pae>::new(&ram);
/// # let base = VirtAddr::new(0xFF80_0000);
/// # let (w, _) = fixmap::WindowBuilder::new(base, 1 << 32).unwrap()
/// #     .build(&mut m.mapper, &m.mmu, &mut m.alloc).unwrap();
/// # let direct = DirectMap::new(0xC000_0000, 0);
/// let pool = PersistentPool::<Pae, _, _, GlobalFlush, SpinWait, 4>::new(
///     &w, base, direct, SimAccess::new(&ram), &m.mmu, GlobalFlush, SpinWait,
/// );
/// assert!(pool.is_ok());
/// ```
///
/// ```compile_fail
/// # use kmap::{DirectMap, GlobalFlush, PersistentPool, SpinWait};
/// # use paging_sim::{Machine, SimAccess, SimRam};
/// # use paging_core::VirtAddr;
/// # use paging_x86_pae::Pae;
/// # let ram = SimRam::new();
/// # let mut m = Machine::<Pae>::new(&ram);
/// # let base = VirtAddr::new(0xFF80_0000);
/// # let (w, _) = fixmap::WindowBuilder::new(base, 1 << 32).unwrap()
/// #     .build(&mut m.mapper, &m.mmu, &mut m.alloc).unwrap();
/// # let direct = DirectMap::new(0xC000_0000, 0);
/// // Three slots: not a power of two (error[E0277]: a kmap pool of
/// // `PoolSize<3>`: the slot count must be a power of two from 2 to 32768).
/// let pool = PersistentPool::<Pae, _, _, GlobalFlush, SpinWait, 3>::new(
///     &w, base, direct, SimAccess::new(&ram), &m.mmu, GlobalFlush, SpinWait,
/// );
/// ```
pub struct PersistentPool<M, A, T, P = GlobalFlush, W = SpinWait, const N: usize = 1024>
where
    M: PagingMode,
{
    base: VirtAddr,
    window: ContiguousWindow<M>,
    direct: DirectMap,
    access: A,
    tlb: T,
    policy: P,
    wait: W,
    state: Mutex<PoolState<N>>,
    hot: HotSlots<N>,
    epoch: AtomicU32,
    counters: Counters,
}

impl<M, A, T, P, W, const N: usize> core::fmt::Debug for PersistentPool<M, A, T, P, W, N>
where
    M: PagingMode,
    P: FlushPolicy,
    W: WaitHook,
{
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let (in_use, reserved, waiters) = {
            let st = self.lock_state();
            (self.hot.in_use(), st.reserved, st.waiters)
        };
        f.debug_struct("PersistentPool")
            .field("mode", &M::NAME)
            .field("base", &self.base)
            .field("slots", &N)
            .field("policy", &self.policy.name())
            .field("in_use", &in_use)
            .field("reserved", &reserved)
            .field("waiters", &waiters)
            .field("stats", &self.snapshot())
            .finish()
    }
}

impl<M, A, T, P, W, const N: usize> PersistentPool<M, A, T, P, W, N>
where
    M: PagingMode,
    W: WaitHook,
{
    /// Take the pool lock, calling the wait hook's
    /// [`relax`](WaitHook::relax) in every iteration while another CPU holds
    /// it (which is where an SMP kernel answers TLB shootdowns).
    #[inline]
    fn lock_state(&self) -> MutexGuard<'_, PoolState<N>> {
        self.state.lock_relaxing(|| self.wait.relax())
    }

    /// The counters, with the hits taken without the lock (counted per
    /// capacity shard) added to `hits` and `maps`.
    fn snapshot(&self) -> KmapStats {
        let mut stats = self.counters.snapshot();
        let fast = self.hot.fast_hits() as u64;
        stats.hits += fast;
        stats.maps += fast;
        stats
    }
}

/// What [`PersistentPool::drop_ref`] did.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Dropped {
    /// One user fewer.
    Done,
    /// The slot does not hold the page with a user: nothing changed.
    Refused,
}

/// What a successful claim produced.
pub(crate) struct Claimed {
    pub(crate) va: VirtAddr,
    pub(crate) slotted: bool,
}

/// How a claim may take capacity.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Payer {
    /// Only if capacity is free beyond what reservations hold.
    Unreserved,
    /// With one of a reservation's tickets.
    Ticket,
}

impl<M, A, T, P, W, const N: usize> PersistentPool<M, A, T, P, W, N>
where
    M: PagingMode,
    A: TableAccess + Sync,
    T: TlbOps + Sync,
    P: FlushPolicy,
    W: WaitHook,
{
    /// A pool of `N` slots from `base`, whose PTEs live in `window`.
    ///
    /// Fails with [`KmapError::BadLayout`] if the window does not cover every
    /// slot. `N` must be a valid size ([`ValidPoolSize`]): any other is a
    /// type error.
    pub fn new(
        window: &ContiguousWindow<M>,
        base: VirtAddr,
        direct: DirectMap,
        access: A,
        tlb: T,
        policy: P,
        wait: W,
    ) -> Result<Self, KmapError>
    where
        PoolSize<N>: ValidPoolSize,
    {
        let end = base.as_u64() + N as u64 * PAGE_SIZE;
        if !base.is_aligned(PAGE_SIZE) || !window.covers(base, end) {
            let va = if window.contains(base) {
                VirtAddr::new(window.end().min(u32::MAX as u64) as u32)
            } else {
                base
            };
            return Err(KmapError::BadLayout { va });
        }
        Ok(Self {
            base,
            window: window.clone(),
            direct,
            access,
            tlb,
            policy,
            wait,
            state: Mutex::new(PoolState {
                cursor: 0,
                reserved: 0,
                waiters: 0,
                stale: [Stale::No; N],
                wrap_mark: TlbMark::NONE,
            }),
            hot: HotSlots::new(),
            epoch: AtomicU32::new(0),
            counters: Counters::default(),
        })
    }

    /// Number of slots.
    pub const fn slots(&self) -> usize {
        N
    }

    /// Address of slot 0.
    pub const fn base(&self) -> VirtAddr {
        self.base
    }

    /// The direct-map description in use.
    pub const fn direct_map(&self) -> DirectMap {
        self.direct
    }

    /// The flush policy.
    pub const fn policy(&self) -> &P {
        &self.policy
    }

    /// The TLB operations the pool flushes through.
    pub const fn tlb(&self) -> &T {
        &self.tlb
    }

    /// The wait hook (which also relaxes the pool's lock spin).
    pub const fn wait_hook(&self) -> &W {
        &self.wait
    }

    /// Counters so far.
    pub fn stats(&self) -> KmapStats {
        self.snapshot()
    }

    /// Slots with at least one user now.
    pub fn in_use(&self) -> usize {
        let _st = self.lock_state();
        self.hot.in_use()
    }

    /// The slot address `page` is mapped at, if it has a slot (count ≥ 1;
    /// count ≥ 2 under a policy that clears slots on release).
    pub fn lookup(&self, frame: PhysFrame) -> Option<VirtAddr> {
        let _st = self.lock_state();
        self.hot.find(frame.number()).map(|s| self.slot_va(s))
    }

    /// The count of the slot at `va` (0 free, 1 unused, n ≥ 2: n − 1 users).
    pub fn slot_count(&self, va: VirtAddr) -> Option<u16> {
        let i = self.slot_index(va)?;
        Some(self.hot.count(i))
    }

    /// Map `frame` if a slot is available without waiting, else
    /// [`KmapError::Exhausted`]. Lowmem frames get their direct-map address.
    ///
    /// The mapping borrows `task`, so the task cannot wait for another pool
    /// mapping while it holds this one.
    pub fn try_map<'a>(
        &'a self,
        task: &'a KmapTask,
        frame: PhysFrame,
    ) -> Result<Kmap<'a>, KmapError> {
        let _ = task;
        let c = self.claim(frame, Payer::Unreserved)?;
        Ok(Kmap::new(self, frame, c.va, c.slotted))
    }

    /// Map `frame`, waiting for a slot if none is free (never if the page
    /// already has a slot in use, or is lowmem). The guard unmaps on drop
    /// and borrows `task` mutably, so no second map can wait while it
    /// lives: nested mappings go through [`reserve`](Self::reserve).
    pub fn map<'a>(
        &'a self,
        task: &'a mut KmapTask,
        frame: PhysFrame,
    ) -> Result<Kmap<'a>, KmapError> {
        if let Some(va) = self.direct.direct_va(frame) {
            self.counters.add(&self.counters.direct);
            self.counters.add(&self.counters.maps);
            return Ok(Kmap::new(self, frame, va, false));
        }
        // A page already in use is shared without taking capacity, so it
        // never waits (as Linux's `kmap_high` finds a mapped page first);
        // an unused slot still holding it is taken without the lock while
        // nothing is reserved or waited for.
        if let Some(slot) = self.hit(frame.number()) {
            return Ok(Kmap::new(self, frame, self.slot_va(slot), true));
        }
        let in_use = {
            let st = self.lock_state();
            self.add_user(&st, self.hot.find(frame.number()))?
        };
        if let Some(slot) = in_use {
            return Ok(Kmap::new(self, frame, self.slot_va(slot), true));
        }
        self.acquire(1, true)?;
        match self.claim(frame, Payer::Ticket) {
            Ok(c) => Ok(Kmap::new(self, frame, c.va, c.slotted)),
            Err(e) => {
                self.unreserve(1);
                let _ = task;
                Err(e)
            }
        }
    }

    /// Reserve `k` mappings, waiting (with no pool mapping held: the task is
    /// borrowed mutably) until `k` slots can be promised. Maps taken from
    /// the reservation never wait.
    pub fn reserve<'a>(
        &'a self,
        task: &'a mut KmapTask,
        k: usize,
    ) -> Result<Reservation<'a>, KmapError> {
        let _ = task;
        self.acquire(k, true)?;
        Ok(Reservation::new(self, k))
    }

    /// Like [`reserve`](Self::reserve), but fail with
    /// [`KmapError::Exhausted`] instead of waiting.
    pub fn try_reserve<'a>(
        &'a self,
        task: &'a mut KmapTask,
        k: usize,
    ) -> Result<Reservation<'a>, KmapError> {
        let _ = task;
        self.acquire(k, false)?;
        Ok(Reservation::new(self, k))
    }

    /// Unmap one use of `frame` (the C-style `kunmap`, for mappings whose
    /// guard was turned into a raw one). Fails, changing nothing, if the
    /// page is not mapped or has no users left.
    pub fn kunmap_raw(&self, frame: PhysFrame) -> Result<(), KmapError> {
        if self.direct.direct_va(frame).is_some() {
            return Ok(());
        }
        let pfn = frame.number();
        if let Some(slot) = self.hot.find(pfn)
            && self.drop_ref(slot, Some(pfn)) == Dropped::Done
        {
            return Ok(());
        }
        // Decide under the lock, where the index and the tags are exact.
        let st = self.lock_state();
        let slot = self.hot.find(pfn).ok_or(KmapError::NotMapped { frame })?;
        if self.hot.count(slot) <= 1 {
            return Err(KmapError::DoubleUnmap { frame });
        }
        if self.drop_user(st, slot) {
            Ok(())
        } else {
            Err(KmapError::DoubleUnmap { frame })
        }
    }

    /// Take one user off `slot` (lock held), giving the capacity back when
    /// the last one goes. False (and nothing changed) if it had none.
    fn drop_user(&self, mut st: MutexGuard<'_, PoolState<N>>, slot: usize) -> bool {
        let clears = self.policy.clears_on_release();
        let Some(before) = self.hot.drop_user_locked(slot, clears) else {
            return false;
        };
        if before == 2 {
            if clears {
                self.clear_released(&mut st, slot);
            }
            let wake = self.capacity_returned(&st);
            drop(st);
            self.wake_if(wake);
        }
        true
    }

    /// Take a reference to `pfn`'s slot without the lock (the hit path):
    /// the slot, or `None` if the locked path must decide.
    #[inline]
    fn hit(&self, pfn: u64) -> Option<usize> {
        // Under a policy that clears on release, a count-1 slot has no page
        // to hit (or is left for the lock to deal with).
        match self.hot.try_hit(pfn, !self.policy.clears_on_release()) {
            Hit::Taken(slot, took_unused) => {
                if took_unused {
                    self.hot.record_peak(slot, &self.counters.peak_in_use);
                }
                Some(slot)
            }
            Hit::Locked => None,
            Hit::LockedWake => {
                self.capacity_returned_unlocked();
                None
            }
            Hit::Wrong(slot) => {
                let _ = self.drop_ref(slot, None);
                None
            }
        }
    }

    /// Drop one reference to `slot` (which holds `pfn`, if given): without
    /// the lock unless a last user must clear the slot's PTE.
    #[inline]
    fn drop_ref(&self, slot: usize, pfn: Option<u64>) -> Dropped {
        match self
            .hot
            .drop_ref(slot, pfn, self.policy.clears_on_release())
        {
            Ok(wake) => {
                if wake {
                    self.capacity_returned_unlocked();
                }
                Dropped::Done
            }
            Err(true) => {
                let st = self.lock_state();
                if pfn.is_some_and(|pfn| self.hot.page(slot) != Some(pfn)) {
                    return Dropped::Refused;
                }
                if self.drop_user(st, slot) {
                    Dropped::Done
                } else {
                    Dropped::Refused
                }
            }
            Err(false) => Dropped::Refused,
        }
    }

    /// A persistent mapping if a slot is free without waiting, else a local
    /// one on `cpu` (Linux's `kmap_atomic` fallback for contexts that must
    /// not sleep but prefer a shareable mapping). `cpu` is the CPU running
    /// the call, as for [`LocalSlots::map`](crate::LocalSlots::map).
    pub fn map_nowait<'a, S: LocalMapper>(
        &'a self,
        task: &'a KmapTask,
        local: &'a S,
        cpu: usize,
        frame: PhysFrame,
    ) -> Result<NowaitKmap<'a>, KmapError> {
        match self.try_map(task, frame) {
            Ok(k) => Ok(NowaitKmap::Persistent(k)),
            Err(KmapError::Exhausted) => local.map_local(cpu, frame).map(NowaitKmap::Local),
            Err(e) => Err(e),
        }
    }

    /// Promise `k` slots to a reservation, waiting if `may_wait`.
    fn acquire(&self, k: usize, may_wait: bool) -> Result<(), KmapError> {
        if k > N {
            return Err(KmapError::ReservationTooLarge { asked: k, slots: N });
        }
        loop {
            let mut st = self.lock_state();
            // Raise the gate before counting: a lock-free hit that takes an
            // unused slot from now on either is in the count or backs off
            // (pool/hot.rs).
            self.hot.set_gate(true);
            if N.saturating_sub(self.hot.in_use() + st.reserved) >= k {
                st.reserved += k;
                self.regate(&st);
                return Ok(());
            }
            if !may_wait {
                self.regate(&st);
                return Err(KmapError::Exhausted);
            }
            // The gate stays up while anybody waits: a lock-free release
            // that returns capacity then comes here to move the epoch on.
            let seen = self.epoch.load(Ordering::Acquire);
            st.waiters += 1;
            drop(st);
            self.counters.add(&self.counters.waits);
            self.wait.wait(&self.epoch, seen);
            let mut st = self.lock_state();
            st.waiters -= 1;
            self.regate(&st);
        }
    }

    /// Give back `k` promised slots.
    pub(crate) fn unreserve(&self, k: usize) {
        if k == 0 {
            return;
        }
        let mut st = self.lock_state();
        st.reserved -= k.min(st.reserved);
        self.regate(&st);
        let wake = self.capacity_returned(&st);
        drop(st);
        self.wake_if(wake);
    }

    /// Capacity came back (called with the lock held): move the epoch on.
    /// Returns whether somebody waits, to be woken once the lock is
    /// released (as Linux's `kunmap_high` does: the wake-up never runs
    /// under the pool lock, so a waking hook that blocks cannot stall every
    /// other user of the pool).
    fn capacity_returned(&self, st: &PoolState<N>) -> bool {
        // A waiter registers (under this lock) before it reads the epoch it
        // waits on, so with nobody registered there is nobody to tell.
        if st.waiters == 0 {
            return false;
        }
        self.epoch.fetch_add(1, Ordering::Release);
        true
    }

    /// Lock held: lower the gate if nothing is reserved or waited for
    /// (raise it otherwise).
    fn regate(&self, st: &PoolState<N>) {
        self.hot.set_gate(st.reserved > 0 || st.waiters > 0);
    }

    /// A lock-free release returned capacity while the gate was up: take
    /// the lock and tell the waiters.
    #[cold]
    fn capacity_returned_unlocked(&self) {
        let st = self.lock_state();
        let wake = self.capacity_returned(&st);
        drop(st);
        self.wake_if(wake);
    }

    /// Wake the waiters if [`capacity_returned`](Self::capacity_returned)
    /// said so. Call without the lock.
    fn wake_if(&self, wake: bool) {
        if wake {
            self.wait.wake(&self.epoch);
        }
    }

    fn slot_va(&self, slot: usize) -> VirtAddr {
        VirtAddr::new(self.base.as_u32() + (slot as u32) * PAGE_SIZE as u32)
    }

    fn slot_index(&self, va: VirtAddr) -> Option<usize> {
        let off = va.as_u32().checked_sub(self.base.as_u32())? as usize / PAGE_SIZE as usize;
        (off < N).then_some(off)
    }

    /// Drop one user of `frame`, which its guard has at `va`: the slot is
    /// known, so no lookup is needed.
    pub(crate) fn release_at(&self, frame: PhysFrame, va: VirtAddr) {
        if let Some(slot) = self.slot_index(va)
            && self.drop_ref(slot, Some(frame.number())) == Dropped::Done
        {
            return;
        }
        self.release(frame)
    }

    /// Drop one user of `frame` (guards).
    pub(crate) fn release(&self, frame: PhysFrame) {
        if self.kunmap_raw(frame).is_err() {
            self.counters.add(&self.counters.release_errors);
        }
    }
}

/// A mapping from [`PersistentPool::map_nowait`].
#[derive(Debug)]
#[must_use = "dropping the guard unmaps the page immediately"]
pub enum NowaitKmap<'a> {
    /// A persistent slot (or the direct map).
    Persistent(Kmap<'a>),
    /// A local slot: unmap in LIFO order with the CPU's other local maps,
    /// on that CPU (which makes this guard neither `Send` nor `Sync`).
    Local(LocalKmap<'a>),
}

impl NowaitKmap<'_> {
    /// Where the page is mapped.
    pub fn va(&self) -> VirtAddr {
        match self {
            Self::Persistent(k) => k.va(),
            Self::Local(k) => k.va(),
        }
    }
}

/// What guards and reservations need from a pool, without its type
/// parameters.
pub(crate) trait PoolOps: Sync {
    fn claim_dyn(&self, frame: PhysFrame, payer: Payer) -> Result<Claimed, KmapError>;
    fn release_dyn(&self, frame: PhysFrame, va: VirtAddr);
    fn unreserve_dyn(&self, k: usize);
}

impl<M, A, T, P, W, const N: usize> PoolOps for PersistentPool<M, A, T, P, W, N>
where
    M: PagingMode,
    A: TableAccess + Sync,
    T: TlbOps + Sync,
    P: FlushPolicy,
    W: WaitHook,
{
    fn claim_dyn(&self, frame: PhysFrame, payer: Payer) -> Result<Claimed, KmapError> {
        self.claim(frame, payer)
    }
    fn release_dyn(&self, frame: PhysFrame, va: VirtAddr) {
        self.release_at(frame, va)
    }
    fn unreserve_dyn(&self, k: usize) {
        self.unreserve(k)
    }
}
