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
        let mut st = self.lock_state();
        let pfn = frame.number();
        // One lookup serves both the in-use and the unused-but-mapped case.
        let cached = st.map.get(&pfn).map(|&slot| usize::from(slot));
        if let Some(slot) = self.add_user(&mut st, cached)? {
            let mut wake = false;
            if payer == Payer::Ticket {
                // The ticket's promised slot was not needed.
                st.reserved -= 1;
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
            Payer::Ticket => st.reserved -= 1,
            Payer::Unreserved if N - st.in_use - st.reserved == 0 => {
                return Err(KmapError::Exhausted);
            }
            Payer::Unreserved => {}
        }
        let slot = match cached {
            // An unused slot that still maps this page: reuse it as is.
            Some(slot) => {
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
                            }
                            return Err(KmapError::Access(e));
                        }
                    };
                    M::Pte::store(&table, index, entry);
                    st.pages[slot] = pfn;
                    // Cannot fail: the map holds at most N pages, one per slot.
                    let _ = st.map.insert(pfn, slot as u16);
                    slot
                }
                None => {
                    if payer == Payer::Ticket {
                        st.reserved += 1;
                    }
                    return Err(KmapError::Exhausted);
                }
            },
        };
        st.counts[slot] = 2;
        st.in_use += 1;
        self.counters
            .peak_in_use
            .fetch_max(st.in_use, Ordering::Relaxed);
        self.counters.add(&self.counters.maps);
        Ok(Claimed {
            va: self.slot_va(slot),
            slotted: true,
        })
    }

    /// If the page's slot (`cached`, from the page→slot map) is in use
    /// (count ≥ 2), add a user to it: no capacity is taken. `None` if the
    /// page has no slot in use.
    pub(super) fn add_user(
        &self,
        st: &mut PoolState<N>,
        cached: Option<usize>,
    ) -> Result<Option<usize>, KmapError> {
        let Some(slot) = cached else {
            return Ok(None);
        };
        match st.counts[slot] {
            0 | 1 => Ok(None),
            // 65534 users of one page: the count cannot grow.
            u16::MAX => Err(KmapError::Exhausted),
            _ => {
                st.counts[slot] += 1;
                self.counters.add(&self.counters.hits);
                self.counters.add(&self.counters.maps);
                Ok(Some(slot))
            }
        }
    }

    /// The PTE a slot mapping `frame` gets, or why it cannot be built.
    fn slot_entry(&self, frame: PhysFrame) -> Result<M::Pte, KmapError> {
        if !frame.start_address().fits_bits(M::MAX_PHYS_BITS) {
            return Err(KmapError::Entry(paging_core::EntryError::PhysOutOfRange {
                addr: frame.start_address(),
                max_bits: M::MAX_PHYS_BITS,
            }));
        }
        M::Pte::page(frame, self.policy.pte_flags() | MapFlags::PRESENT).map_err(KmapError::Entry)
    }

    /// Advance the cursor to a free slot, clearing unused slots when it wraps
    /// (Linux's `map_new_virtual` and `flush_all_zero_pkmaps`). Under a
    /// policy that clears on release, a second wrap in the same search frees
    /// every stale slot at once.
    fn free_slot(&self, st: &mut PoolState<N>) -> Option<usize> {
        let most = if self.policy.clears_on_release() {
            2
        } else {
            1
        };
        let mut left = N;
        let mut wraps = 0;
        loop {
            st.cursor = (st.cursor + 1) & (N - 1);
            if st.cursor == 0 {
                if wraps == most {
                    return None;
                }
                self.clear_unused(st, wraps > 0);
                wraps += 1;
                left = N;
            }
            if st.counts[st.cursor] == 0 {
                return Some(st.cursor);
            }
            left -= 1;
            if left == 0 && wraps == most {
                return None;
            }
        }
    }

    /// Under a policy that clears on release: `slot`'s last user just left
    /// (lock held). Clear its PTE and forget its page; the slot is stale
    /// until a wrap frees it. If its table cannot be reached it stays an
    /// ordinary unused slot, cleared at a wrap.
    pub(super) fn clear_released(&self, st: &mut PoolState<N>, slot: usize) {
        let Some(pte) = self.window.pte_slot(self.slot_va(slot)) else {
            return;
        };
        let Ok(table) = self.access.table(pte.table) else {
            return;
        };
        M::Pte::store(&table, pte.index, <M::Pte as Entry>::NONE);
        drop(table);
        let pfn = st.pages[slot];
        st.map.swap_remove(&pfn);
        st.stale[slot] = Stale::Fresh;
    }

    /// Clear every count-1 slot, then let the policy flush once. Under a
    /// policy that clears on release, free only the slots stale since before
    /// the last wrap (all of them if `urgent`), and flush from the last
    /// wrap's mark (from now if `urgent`).
    fn clear_unused(&self, st: &mut PoolState<N>, urgent: bool) {
        let early = self.policy.clears_on_release() && !urgent;
        let mut counts = FlushCounts::default();
        let mut cleared = 0;
        for slot in 0..N {
            if st.counts[slot] != 1 {
                continue;
            }
            let va = self.slot_va(slot);
            match st.stale[slot] {
                Stale::No => {}
                // Cleared after the last wrap's mark: cools one more lap.
                Stale::Fresh if early => {
                    st.stale[slot] = Stale::Old;
                    continue;
                }
                // PTE already clear (and page forgotten) at its release.
                Stale::Fresh | Stale::Old => {
                    st.counts[slot] = 0;
                    st.stale[slot] = Stale::No;
                    cleared += 1;
                    self.policy.slot_cleared(&self.tlb, va, true, &mut counts);
                    continue;
                }
            }
            let Some(pte) = self.window.pte_slot(va) else {
                continue;
            };
            // A table that cannot be reached stays unused; it is retried at
            // the next wrap and never handed out meanwhile.
            let Ok(table) = self.access.table(pte.table) else {
                continue;
            };
            let old = M::Pte::store(&table, pte.index, <M::Pte as Entry>::NONE);
            drop(table);
            let pfn = st.pages[slot];
            st.map.swap_remove(&pfn);
            if early {
                // Cleared now, before this wrap's mark: the next wrap frees it.
                st.stale[slot] = Stale::Old;
                continue;
            }
            st.counts[slot] = 0;
            cleared += 1;
            self.policy.slot_cleared(
                &self.tlb,
                va,
                old.flags().contains(MapFlags::ACCESSED),
                &mut counts,
            );
        }
        // Every PTE freed now was clear before `since`: before the last
        // wrap's mark for the slots stale since then, before `now` for all
        // the others.
        let now = self.tlb.mark();
        let since = if early { st.wrap_mark } else { now };
        st.wrap_mark = now;
        self.policy
            .wrap_done_since(&self.tlb, self.base, N as u32, cleared, since, &mut counts);
        self.counters.add_flushes(&counts);
        self.counters.add(&self.counters.wraps);
    }
}
