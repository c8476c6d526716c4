//! Taking a slot: the page→slot cache, the round-robin search, and clearing
//! unused slots when the cursor wraps (Linux's `map_new_virtual` and
//! `flush_all_zero_pkmaps`).

use core::sync::atomic::Ordering;

use paging_core::{Entry, MapFlags, PagingMode, PhysFrame, PteEntry, TableAccess, TlbOps};

use super::{Claimed, Payer, PersistentPool, PoolState, Stale};
use crate::error::KmapError;
use crate::policy::{FlushCounts, FlushPolicy};
use crate::wait::WaitHook;

impl<M, A, T, P, W, const N: usize> PersistentPool<M, A, T, P, W, N>
where
    M: PagingMode,
    A: TableAccess + Sync,
    T: TlbOps + Sync,
    P: FlushPolicy,
    W: WaitHook,
{
    /// Take a slot for `frame` (or reuse its slot), paying with `payer`.
    pub(crate) fn claim(&self, frame: PhysFrame, payer: Payer) -> Result<Claimed, KmapError> {
        if let Some(va) = self.direct.direct_va(frame) {
            if payer == Payer::Ticket {
                self.unreserve(1);
            }
            self.counters.add(&self.counters.direct);
            self.counters.add(&self.counters.maps);
            return Ok(Claimed { va, slotted: false });
        }
        let entry = self.slot_entry(frame)?;
        let pfn = frame.number();
        // The hit path, without the lock. A ticket is always settled under
        // the lock (it is given back, or pays for the slot).
        if payer == Payer::Unreserved
            && let Some(slot) = self.hit(pfn)
        {
            return Ok(Claimed {
                va: self.slot_va(slot),
                slotted: true,
            });
        }
        let mut st = self.lock_state();
        // Under the lock the index is exact: one lookup serves both the
        // in-use and the unused-but-mapped case.
        let cached = self.hot.find(pfn);
        if let Some(slot) = self.add_user(&st, cached)? {
            let mut wake = false;
            if payer == Payer::Ticket {
                // The ticket's promised slot was not needed.
                st.reserved -= 1;
                self.regate(&st);
                wake = self.capacity_returned(&st);
            }
            drop(st);
            self.wake_if(wake);
            return Ok(Claimed {
                va: self.slot_va(slot),
                slotted: true,
            });
        }
        match payer {
            // The gate stays as it is until the slot is taken: lowering it
            // now would let a lock-free hit take the unused slot this
            // ticket was promised.
            Payer::Ticket => st.reserved -= 1,
            Payer::Unreserved if N.saturating_sub(self.hot.in_use() + st.reserved) == 0 => {
                return Err(KmapError::Exhausted);
            }
            Payer::Unreserved => {}
        }
        let slot = match cached {
            // An unused slot that still maps this page: reuse it as is.
            Some(slot) => {
                match self.hot.add_user_locked(slot, true) {
                    Ok(1) => {}
                    // A lock-free hit took it meanwhile (only while nothing
                    // is reserved): one more user, no capacity taken.
                    Ok(_) => {
                        self.regate(&st);
                        let wake = payer == Payer::Ticket && self.capacity_returned(&st);
                        self.counters.add(&self.counters.hits);
                        self.counters.add(&self.counters.maps);
                        drop(st);
                        self.wake_if(wake);
                        return Ok(Claimed {
                            va: self.slot_va(slot),
                            slotted: true,
                        });
                    }
                    Err(()) => {
                        if payer == Payer::Ticket {
                            st.reserved += 1;
                            self.regate(&st);
                        }
                        return Err(KmapError::Exhausted);
                    }
                }
                self.counters.add(&self.counters.hits);
                slot
            }
            None => match self.free_slot(&mut st) {
                Some(slot) => {
                    let pte = self.window.pte_slot(self.slot_va(slot));
                    let table = match pte {
                        Some(p) => self.access.table(p.table).map(|t| (t, p.index)),
                        None => Err(paging_core::AccessError::NoSlot),
                    };
                    let (table, index) = match table {
                        Ok(t) => t,
                        Err(e) => {
                            if payer == Payer::Ticket {
                                st.reserved += 1;
                                self.regate(&st);
                            }
                            return Err(KmapError::Access(e));
                        }
                    };
                    M::Pte::store(&table, index, entry);
                    drop(table);
                    // Publishes the PTE written above with the slot's count.
                    self.hot.install(slot, pfn);
                    slot
                }
                None => {
                    if payer == Payer::Ticket {
                        st.reserved += 1;
                        self.regate(&st);
                    }
                    return Err(KmapError::Exhausted);
                }
            },
        };
        self.regate(&st);
        self.counters
            .peak_in_use
            .fetch_max(self.hot.in_use().min(N), Ordering::Relaxed);
        self.counters.add(&self.counters.maps);
        Ok(Claimed {
            va: self.slot_va(slot),
            slotted: true,
        })
    }

    /// If the page's slot (`cached`, from the page→slot index) is in use
    /// (count ≥ 2), add a user to it (lock held): no capacity is taken.
    /// `None` if the page has no slot in use.
    pub(super) fn add_user(
        &self,
        st: &PoolState<N>,
        cached: Option<usize>,
    ) -> Result<Option<usize>, KmapError> {
        let _ = st;
        let Some(slot) = cached else {
            return Ok(None);
        };
        // Unused (count 1): taking it takes capacity. 65535 users of one
        // page: the count cannot grow.
        match self.hot.add_user_in_use(slot) {
            Err(()) => Err(KmapError::Exhausted),
            Ok(false) => Ok(None),
            Ok(true) => {
                self.counters.add(&self.counters.hits);
                self.counters.add(&self.counters.maps);
                Ok(Some(slot))
            }
        }
    }

    /// The PTE a slot mapping `frame` gets, or why it cannot be built.
    /// Checked against the window's CPU features (`ContiguousWindow::pte`).
    fn slot_entry(&self, frame: PhysFrame) -> Result<M::Pte, KmapError> {
        self.window
            .pte(frame, self.policy.pte_flags())
            .map_err(KmapError::Entry)
    }

    /// Advance the cursor to a free slot, clearing unused slots when it wraps
    /// (Linux's `map_new_virtual` and `flush_all_zero_pkmaps`).
    fn free_slot(&self, st: &mut PoolState<N>) -> Option<usize> {
        if self.policy.clears_on_release() {
            return self.free_slot_cooled(st);
        }
        let mut left = N;
        let mut wrapped = false;
        loop {
            st.cursor = (st.cursor + 1) & (N - 1);
            if st.cursor == 0 {
                if wrapped {
                    return None;
                }
                self.clear_unused(st);
                wrapped = true;
                left = N;
            }
            if self.hot.count(st.cursor) == 0 {
                return Some(st.cursor);
            }
            left -= 1;
            if left == 0 && wrapped {
                return None;
            }
        }
    }

    /// [`free_slot`](Self::free_slot) under a policy that clears on release.
    /// The pool is two halves; when the cursor enters one, the slots of that
    /// half that were stale before the previous boundary are freed
    /// ([`free_half`](Self::free_half)). After a whole lap past both
    /// boundaries with no free slot, every stale slot is freed at once.
    fn free_slot_cooled(&self, st: &mut PoolState<N>) -> Option<usize> {
        let half = N / 2;
        let mut boundaries = 0;
        let mut left = None;
        loop {
            st.cursor = (st.cursor + 1) & (N - 1);
            if st.cursor & (half - 1) == 0 && left.is_none() {
                if boundaries == 2 {
                    self.free_all_stale(st);
                    left = Some(N);
                } else {
                    self.free_half(st, st.cursor);
                    boundaries += 1;
                }
            }
            if self.hot.count(st.cursor) == 0 {
                return Some(st.cursor);
            }
            if let Some(n) = left.as_mut() {
                *n -= 1;
                if *n == 0 {
                    return None;
                }
            }
        }
    }

    /// Under a policy that clears on release: `slot`'s last user just left
    /// (lock held; the slot is count 1 and `NO_HIT`). Clear its PTE and
    /// forget its page; the slot is stale until the cursor frees it. If its
    /// table cannot be reached it stays an ordinary unused slot (hits may
    /// take it again), cleared at a later half boundary.
    pub(super) fn clear_released(&self, st: &mut PoolState<N>, slot: usize) {
        if self.clear_pte(st, slot).is_some() {
            st.stale[slot] = Stale::Fresh;
        } else {
            self.hot.allow_hits(slot);
        }
    }

    /// Clear every count-1 slot, then let the policy flush once.
    fn clear_unused(&self, st: &mut PoolState<N>) {
        let mut counts = FlushCounts::default();
        let mut cleared = 0;
        for slot in 0..N {
            // Count 0 now, out of every hit's reach; fails if a hit took it.
            if !self.hot.retire_unused(slot, true) {
                continue;
            }
            let va = self.slot_va(slot);
            let Some(old) = self.clear_pte(st, slot) else {
                self.hot.unretire(slot);
                continue;
            };
            cleared += 1;
            self.policy.slot_cleared(
                &self.tlb,
                va,
                old.flags().contains(MapFlags::ACCESSED),
                &mut counts,
            );
        }
        // Taken after every clear above: no CPU that flushes everything
        // after it can hold a cleared slot.
        let since = self.tlb.mark();
        self.policy
            .wrap_done_since(&self.tlb, self.base, N as u32, cleared, since, &mut counts);
        self.finish_wrap(&counts);
    }

    /// Clear the PTE of count-1 `slot`, which no hit can take any more
    /// (count 0 or `NO_HIT`), and forget its page: the old entry, or `None`
    /// if its table cannot be reached (nothing changed: the caller makes
    /// the slot unused again; it is retried at the next wrap and never
    /// handed out meanwhile).
    fn clear_pte(&self, st: &mut PoolState<N>, slot: usize) -> Option<M::Pte> {
        let _ = st;
        let pte = self.window.pte_slot(self.slot_va(slot))?;
        let table = self.access.table(pte.table).ok()?;
        let old = M::Pte::store(&table, pte.index, <M::Pte as Entry>::NONE);
        drop(table);
        if let Some(pfn) = self.hot.page(slot) {
            self.hot.forget(slot, pfn);
        }
        Some(old)
    }

    fn finish_wrap(&self, counts: &FlushCounts) {
        self.counters.add_flushes(counts);
        self.counters.add(&self.counters.wraps);
    }

    /// The cursor entered the half of the pool that starts at slot `first`
    /// (policies that clear on release): free that half's slots that were
    /// stale before the previous boundary's mark, and flush the half from
    /// that mark; every other stale slot ages (it was cleared before the mark
    /// taken now). A count-1 slot still mapped (its table was unreachable at
    /// release) is cleared now, and freed at a later boundary.
    fn free_half(&self, st: &mut PoolState<N>, first: usize) {
        let half = N / 2;
        let mut counts = FlushCounts::default();
        let mut cleared = 0;
        for slot in 0..N {
            if self.hot.count(slot) != 1 {
                continue;
            }
            match st.stale[slot] {
                Stale::Old if slot.wrapping_sub(first) < half => {
                    self.hot.free_no_hit(slot);
                    st.stale[slot] = Stale::No;
                    cleared += 1;
                    let va = self.slot_va(slot);
                    self.policy.slot_cleared(&self.tlb, va, true, &mut counts);
                }
                Stale::Old => {}
                Stale::Fresh => st.stale[slot] = Stale::Old,
                Stale::No => {
                    // Out of hits' reach first; a hit may have taken it.
                    if !self.hot.retire_unused(slot, false) {
                        continue;
                    }
                    if self.clear_pte(st, slot).is_some() {
                        st.stale[slot] = Stale::Old;
                    } else {
                        self.hot.allow_hits(slot);
                    }
                }
            }
        }
        let since = st.wrap_mark;
        st.wrap_mark = self.tlb.mark();
        let base = self.slot_va(first);
        self.policy
            .wrap_done_since(&self.tlb, base, half as u32, cleared, since, &mut counts);
        self.finish_wrap(&counts);
    }

    /// No free slot in a whole lap (policies that clear on release): free
    /// every stale slot, and flush the pool from a mark taken now.
    fn free_all_stale(&self, st: &mut PoolState<N>) {
        let mut counts = FlushCounts::default();
        let mut cleared = 0;
        for slot in 0..N {
            if self.hot.count(slot) != 1 {
                continue;
            }
            // A slot cleared at its release: whether the MMU used it is no
            // longer known, so count it as used.
            let accessed = if st.stale[slot] == Stale::No {
                if !self.hot.retire_unused(slot, true) {
                    continue;
                }
                match self.clear_pte(st, slot) {
                    Some(old) => old.flags().contains(MapFlags::ACCESSED),
                    None => {
                        self.hot.unretire(slot);
                        continue;
                    }
                }
            } else {
                self.hot.free_no_hit(slot);
                true
            };
            st.stale[slot] = Stale::No;
            cleared += 1;
            let va = self.slot_va(slot);
            self.policy
                .slot_cleared(&self.tlb, va, accessed, &mut counts);
        }
        st.wrap_mark = self.tlb.mark();
        self.policy.wrap_done_since(
            &self.tlb,
            self.base,
            N as u32,
            cleared,
            st.wrap_mark,
            &mut counts,
        );
        self.finish_wrap(&counts);
    }
}
