//! The pool's lock-free hit path: per-slot atomic words, the page→slot
//! index, and the capacity accounting a hit shares with the locked paths.
//!
//! Every field here is a 32-bit atomic (i586 has no 64-bit atomics without
//! x87 code). Only the pool's lock holder inserts or removes index entries,
//! writes a slot's page tag, or moves a slot's count to or from 0; a hit
//! and a release without the lock only move a count between 1 and
//! `u16::MAX` with a compare-and-swap of the slot's whole word.
//!
//! # The slot word
//!
//! | bits | field |
//! |---|---|
//! | 0-15 | count (0 free, 1 unused, n ≥ 2: n − 1 users) |
//! | 16 | `NO_HIT`: a count-1 slot whose PTE is being or has been cleared (policies that clear on release) |
//! | 17-31 | generation, bumped every time the count goes to 0 |
//!
//! A hit loads the word, refuses counts 0 and `NO_HIT` words, and
//! compare-and-swaps `word → word + 1`; only then does it check that the
//! slot's page tag is its page (undoing the reference if not). A slot is
//! recycled only by the lock holder, and only through a compare-and-swap
//! of count 1 to count 0 (which fails if a hit took the slot meanwhile) that
//! also bumps the generation: so a hit whose compare-and-swap succeeded
//! holds a reference the recycler had to see, and the slot cannot be
//! recycled under it. The tag check after the swap catches the one case the
//! generation cannot (it wraps after 32,768 recycles of one slot between a
//! hit's load and its swap).
//!
//! # Capacity: the shards and the gate
//!
//! Slots with count ≥ 2 are "in use", and the pool promises
//! `N − in_use ≥ reserved`. `in_use` is the sum of [`SHARDS`] counters,
//! each on its own cache line (slot `s` counts in shard `s % SHARDS`), so
//! hits on different slots by different CPUs never write one line. A
//! count 1 → 2 hit raises its shard *before* its swap, a 2 → 1 release
//! lowers it *after*: the sum is never below the true count.
//!
//! A hit may take an unused slot (count 1 → 2) without the lock only while
//! the *gate* is 0: no reservation, no waiter, no reservation being
//! checked. The lock holder raises the gate before it sums the shards; a
//! hit raises its shard before it reads the gate. Both are sequentially
//! consistent, so either the sum sees the hit or the hit sees the gate (and
//! backs off to the lock). A release that returns capacity lowers its shard
//! and then reads the gate: if it is up, somebody may be waiting, and the
//! release takes the lock to move the epoch on.

use core::sync::atomic::{AtomicUsize, Ordering};

use crate::sync::{AtomicU32, dekker_fence};

/// Capacity shards (a power of two).
pub(crate) const SHARDS: usize = 8;

/// The count field of a slot word.
pub(crate) const COUNT: u32 = 0xFFFF;
/// A count-1 slot that a hit must not take.
pub(crate) const NO_HIT: u32 = 1 << 16;
/// One generation.
const GEN: u32 = 1 << 17;

/// The tag of a slot with no page (no page number reaches 2^63).
const NO_PAGE: [u32; 2] = [u32::MAX, u32::MAX];

/// One capacity shard, alone on its cache line.
#[repr(align(64))]
pub(crate) struct Shard {
    /// Slots of this shard in use (count ≥ 2), plus hits about to take one.
    in_use: AtomicU32,
    /// Hits taken without the lock (a report, not part of the protocol).
    hits: AtomicUsize,
    /// The highest `in_use` of this shard a lock-free hit has seen (a
    /// report: when it rises, the hit updates the pool's peak).
    high: AtomicU32,
}

/// What a lock-free hit attempt found.
pub(crate) enum Hit {
    /// A reference to this slot was taken; whether it was unused (count 1:
    /// it is now in use).
    Taken(usize, bool),
    /// The page is not cached, or the lock must decide (capacity, `NO_HIT`,
    /// a full count, a race): take the locked path.
    Locked,
    /// As `Locked`, after taking back an announced use of capacity while
    /// the gate was up (a waiter may have counted it): move the epoch on
    /// under the lock first.
    LockedWake,
    /// A reference was taken on this slot, which holds another page: drop
    /// it, then take the locked path.
    Wrong(usize),
}

/// The atomic side of a pool of `N` slots.
pub(crate) struct HotSlots<const N: usize> {
    /// Slot words, at [`spread`](Self::spread) positions.
    words: [AtomicU32; N],
    /// Page tags (low, high word of the page number), spread likewise.
    tags: [[AtomicU32; 2]; N],
    /// The page→slot index: `slot + 1`, or 0 for an empty bucket. Open
    /// addressing with linear probing, `2N` buckets.
    index: IndexBuckets<N>,
    /// Capacity shards.
    shards: [Shard; SHARDS],
    /// Non-zero while a reservation, a waiter or a capacity check exists.
    /// Alone on its line: every hit that takes an unused slot reads it.
    gate: Line<AtomicU32>,
}

/// A value alone on its cache line(s) (two lines: the adjacent-line
/// prefetcher fetches pairs).
#[repr(align(128))]
struct Line<T>(T);

/// `2N` index buckets (two arrays: `[_; 2 * N]` needs a const expression).
struct IndexBuckets<const N: usize>([[AtomicU32; N]; 2]);

impl<const N: usize> IndexBuckets<N> {
    #[inline]
    fn get(&self, i: usize) -> &AtomicU32 {
        &self.0[(i / N) & 1][i % N]
    }
}

fn atomics<const K: usize>() -> [AtomicU32; K] {
    core::array::from_fn(|_| AtomicU32::new(0))
}

impl<const N: usize> HotSlots<N> {
    /// Every slot free, the index empty, nothing in use.
    pub(crate) fn new() -> Self {
        Self {
            words: atomics(),
            tags: core::array::from_fn(|_| {
                [AtomicU32::new(NO_PAGE[0]), AtomicU32::new(NO_PAGE[1])]
            }),
            index: IndexBuckets([atomics(), atomics()]),
            shards: core::array::from_fn(|_| Shard {
                in_use: AtomicU32::new(0),
                hits: AtomicUsize::new(0),
                high: AtomicU32::new(0),
            }),
            gate: Line(AtomicU32::new(0)),
        }
    }

    /// Where slot `s`'s word and tag live: slots handed out one after the
    /// other (the cursor's order) land 16 positions (a cache line of
    /// words) apart, so CPUs hitting neighbouring slots do not share a line.
    #[inline]
    const fn spread(s: usize) -> usize {
        let bits = N.trailing_zeros();
        if bits <= 4 {
            return s;
        }
        ((s << 4) | (s >> (bits - 4))) & (N - 1)
    }

    #[inline]
    fn word(&self, slot: usize) -> &AtomicU32 {
        &self.words[Self::spread(slot)]
    }

    #[inline]
    fn shard(&self, slot: usize) -> &Shard {
        &self.shards[slot % SHARDS]
    }

    /// Slot `slot`'s page tag is `pfn`.
    #[inline]
    fn tag_is(&self, slot: usize, pfn: u64) -> bool {
        let t = &self.tags[Self::spread(slot)];
        t[0].load(Ordering::Relaxed) == pfn as u32
            && t[1].load(Ordering::Relaxed) == (pfn >> 32) as u32
    }

    /// The first bucket `pfn` probes (Fibonacci hashing into `2N` buckets).
    #[inline]
    fn home(pfn: u64) -> usize {
        let h = (pfn as u32) ^ ((pfn >> 32) as u32).wrapping_mul(0x85EB_CA6B);
        let bits = (2 * N).trailing_zeros();
        (h.wrapping_mul(0x9E37_79B1) >> (32 - bits)) as usize
    }

    /// The slot whose tag is `pfn`, if the index has one. Without the lock
    /// the answer may be stale (the caller validates it); with the lock it
    /// is exact.
    #[inline]
    pub(crate) fn find(&self, pfn: u64) -> Option<usize> {
        let mut i = Self::home(pfn);
        for _ in 0..2 * N {
            let b = self.index.get(i).load(Ordering::Acquire);
            if b == 0 {
                return None;
            }
            let slot = b as usize - 1;
            if slot < N && self.tag_is(slot, pfn) {
                return Some(slot);
            }
            i = (i + 1) & (2 * N - 1);
        }
        None
    }

    /// Take a reference to `pfn`'s slot without the lock. A count-1 slot
    /// is taken only if `take_unused` and the gate is down.
    ///
    /// `Hit::Wrong(slot)`: the reference taken is on another page's slot
    /// (a stale index entry, or a generation that wrapped); the caller
    /// drops it like a release and takes the locked path.
    #[inline]
    pub(crate) fn try_hit(&self, pfn: u64, take_unused: bool) -> Hit {
        let Some(slot) = self.find(pfn) else {
            return Hit::Locked;
        };
        let word = self.word(slot);
        let mut seen = word.load(Ordering::Relaxed);
        loop {
            let count = seen & COUNT;
            if count == 0 || count == COUNT || seen & NO_HIT != 0 {
                return Hit::Locked;
            }
            if count == 1 {
                if !take_unused {
                    return Hit::Locked;
                }
                // Announce the slot this hit is about to put in use, then
                // look at the gate (see the module docs).
                let shard = self.shard(slot);
                shard.in_use.fetch_add(1, Ordering::SeqCst);
                dekker_fence();
                if self.gate.0.load(Ordering::SeqCst) != 0 {
                    // The gate was up: a waiter may have counted this
                    // announcement, so it is woken (a spurious wake-up at
                    // worst).
                    self.unannounce(slot);
                    return Hit::LockedWake;
                }
                // Acquire: the PTE the lock holder wrote before publishing
                // the slot (or before a release sequence it heads).
                match word.compare_exchange(seen, seen + 1, Ordering::Acquire, Ordering::Relaxed) {
                    Ok(_) => {}
                    Err(now) => {
                        if self.unannounce(slot) {
                            return Hit::LockedWake;
                        }
                        seen = now;
                        continue;
                    }
                }
            } else if let Err(now) =
                word.compare_exchange_weak(seen, seen + 1, Ordering::Acquire, Ordering::Relaxed)
            {
                seen = now;
                continue;
            }
            // The reference is ours: the slot cannot be recycled, so its tag
            // is stable. A stale index entry (or a generation that wrapped)
            // gave us another page's slot: give it back.
            if !self.tag_is(slot, pfn) {
                return Hit::Wrong(slot);
            }
            self.shard(slot).hits.fetch_add(1, Ordering::Relaxed);
            return Hit::Taken(slot, count == 1);
        }
    }

    /// Lower `slot`'s shard after a transition to count 1 (or an announced
    /// hit that did not happen). Returns whether the gate is up: then a
    /// waiter may have counted this capacity as taken, and the caller must
    /// move the epoch on under the lock.
    #[inline]
    fn unannounce(&self, slot: usize) -> bool {
        self.shard(slot).in_use.fetch_sub(1, Ordering::SeqCst);
        dekker_fence();
        self.gate.0.load(Ordering::SeqCst) != 0
    }

    /// Drop one reference to `slot`, without the lock; if `pfn` is given,
    /// only if the slot holds that page.
    ///
    /// `Err(false)`: the slot does not hold the page with a user (nothing
    /// changed; the caller reports it). `Err(true)`: the last user must
    /// leave under the lock (`keep_last`, for a policy that clears on
    /// release). `Ok(wake)`: done; `wake` if capacity came back while the
    /// gate was up (the caller moves the epoch on under the lock).
    #[inline]
    pub(crate) fn drop_ref(
        &self,
        slot: usize,
        pfn: Option<u64>,
        keep_last: bool,
    ) -> Result<bool, bool> {
        let word = self.word(slot);
        let mut seen = word.load(Ordering::Relaxed);
        loop {
            let count = seen & COUNT;
            // The tag is checked between the load and the swap of the whole
            // word: a recycle in between changes the generation and fails
            // the swap.
            if count < 2 || pfn.is_some_and(|pfn| !self.tag_is(slot, pfn)) {
                return Err(false);
            }
            if count == 2 && keep_last {
                return Err(true);
            }
            // Release: every access through this mapping happens before a
            // recycler's compare-and-swap to 0 (Acquire) and its PTE clear.
            match word.compare_exchange_weak(seen, seen - 1, Ordering::Release, Ordering::Relaxed) {
                Ok(_) => break,
                Err(now) => seen = now,
            }
        }
        Ok(seen & COUNT == 2 && self.unannounce(slot))
    }

    /// The count of `slot` now.
    pub(crate) fn count(&self, slot: usize) -> u16 {
        (self.word(slot).load(Ordering::Acquire) & COUNT) as u16
    }

    /// After a lock-free hit took unused `slot`: if its shard reached a new
    /// high, raise `peak` to the slots in use now. Summing the shards reads
    /// every other CPU's shard line, which on every hit would bounce those
    /// lines between CPUs; in a steady state no shard reaches a new high.
    /// (So a peak reached through lock-free hits while no shard is at a new
    /// high of its own is missed.)
    #[inline]
    pub(crate) fn record_peak(&self, slot: usize, peak: &AtomicUsize) {
        let shard = self.shard(slot);
        let now = shard.in_use.load(Ordering::Relaxed);
        if now <= shard.high.load(Ordering::Relaxed) {
            return;
        }
        shard.high.fetch_max(now, Ordering::Relaxed);
        let n = self.in_use().min(N);
        if n > peak.load(Ordering::Relaxed) {
            peak.fetch_max(n, Ordering::Relaxed);
        }
    }

    /// Slots in use (count ≥ 2), plus hits about to take one.
    pub(crate) fn in_use(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.in_use.load(Ordering::SeqCst))
            .fold(0u32, u32::wrapping_add) as usize
    }

    /// Hits taken without the lock, so far.
    pub(crate) fn fast_hits(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.hits.load(Ordering::Relaxed))
            .fold(0, usize::wrapping_add)
    }

    /// Lock held: set the gate (`up`), before a capacity check sums the
    /// shards.
    pub(crate) fn set_gate(&self, up: bool) {
        // Only the lock holder writes the gate: write it only if it changes
        // (hits on other CPUs keep the line shared).
        if (self.gate.0.load(Ordering::Relaxed) != 0) != up {
            self.gate.0.store(u32::from(up), Ordering::SeqCst);
        }
        dekker_fence();
    }

    // ---- Lock holder only, below. ----

    /// Add a user to `slot` if it is in use (count ≥ 2): `Ok(false)` if it
    /// is not, `Err(())` at the count's limit.
    pub(crate) fn add_user_in_use(&self, slot: usize) -> Result<bool, ()> {
        let word = self.word(slot);
        let mut seen = word.load(Ordering::Acquire);
        loop {
            match seen & COUNT {
                0 | 1 => return Ok(false),
                COUNT => return Err(()),
                _ => {}
            }
            match word.compare_exchange(seen, seen + 1, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Ok(true),
                Err(now) => seen = now,
            }
        }
    }

    /// Lock held: add a user to `slot` whatever its count (≥ 1, not
    /// `NO_HIT`); `Ok(previous count)`, or `Err(())` at the count's limit.
    pub(crate) fn add_user_locked(&self, slot: usize, shard_first: bool) -> Result<u32, ()> {
        let word = self.word(slot);
        let mut seen = word.load(Ordering::Acquire);
        loop {
            let count = seen & COUNT;
            if count == COUNT {
                return Err(());
            }
            let raise = count == 1 && shard_first;
            if raise {
                self.shard(slot).in_use.fetch_add(1, Ordering::SeqCst);
            }
            match word.compare_exchange(seen, seen + 1, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Ok(count),
                Err(now) => {
                    if raise {
                        self.shard(slot).in_use.fetch_sub(1, Ordering::SeqCst);
                    }
                    seen = now;
                }
            }
        }
    }

    /// Lock held: drop one user of `slot`. With `no_hit`, a last user
    /// leaves the slot at count 1 marked `NO_HIT`. The count before, or
    /// `None` (nothing changed) if it had no user.
    pub(crate) fn drop_user_locked(&self, slot: usize, no_hit: bool) -> Option<u32> {
        let word = self.word(slot);
        let mut seen = word.load(Ordering::Relaxed);
        loop {
            let count = seen & COUNT;
            if count < 2 {
                return None;
            }
            let new = if count == 2 && no_hit {
                (seen - 1) | NO_HIT
            } else {
                seen - 1
            };
            match word.compare_exchange(seen, new, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => break,
                Err(now) => seen = now,
            }
        }
        if seen & COUNT == 2 {
            self.shard(slot).in_use.fetch_sub(1, Ordering::SeqCst);
        }
        Some(seen & COUNT)
    }

    /// Lock held: take unused (count 1) `slot` out of hits' reach (count 0
    /// with `to_zero`, else count 1 with `NO_HIT`). Fails if a hit took it.
    pub(crate) fn retire_unused(&self, slot: usize, to_zero: bool) -> bool {
        let word = self.word(slot);
        let seen = word.load(Ordering::Acquire);
        if seen & COUNT != 1 {
            return false;
        }
        let new = if to_zero {
            (seen & !(COUNT | NO_HIT)).wrapping_add(GEN)
        } else {
            seen | NO_HIT
        };
        // Acquire: every access through the slot by its last users (their
        // releases) happens before the caller clears its PTE.
        word.compare_exchange(seen, new, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    }

    /// Lock held: a `NO_HIT` count-1 slot is freed (count 0).
    pub(crate) fn free_no_hit(&self, slot: usize) {
        let word = self.word(slot);
        let seen = word.load(Ordering::Acquire);
        word.store(
            (seen & !(COUNT | NO_HIT)).wrapping_add(GEN),
            Ordering::Release,
        );
    }

    /// Lock held: `slot`, retired to count 0 by
    /// [`retire_unused`](Self::retire_unused), could not have its PTE
    /// cleared: it is an unused slot again (count 1), still mapping its page.
    pub(crate) fn unretire(&self, slot: usize) {
        let word = self.word(slot);
        let seen = word.load(Ordering::Relaxed);
        word.store((seen & !(COUNT | NO_HIT)) | 1, Ordering::Release);
    }

    /// Lock held: `slot` (`NO_HIT`, count 1) may be hit again (its PTE
    /// could not be cleared, so it still maps its page).
    pub(crate) fn allow_hits(&self, slot: usize) {
        self.word(slot).fetch_and(!NO_HIT, Ordering::Release);
    }

    /// Lock held: free `slot` (count 0) now holds `pfn`, with one user.
    /// Its PTE is already written; this publishes it (Release).
    pub(crate) fn install(&self, slot: usize, pfn: u64) {
        let t = &self.tags[Self::spread(slot)];
        t[0].store(pfn as u32, Ordering::Relaxed);
        t[1].store((pfn >> 32) as u32, Ordering::Relaxed);
        self.insert(pfn, slot);
        self.shard(slot).in_use.fetch_add(1, Ordering::SeqCst);
        let word = self.word(slot);
        let seen = word.load(Ordering::Relaxed);
        word.store((seen & !(COUNT | NO_HIT)) | 2, Ordering::Release);
    }

    /// Lock held: `slot` (no longer hittable) forgets its page `pfn`.
    pub(crate) fn forget(&self, slot: usize, pfn: u64) {
        self.remove(pfn, slot);
        let t = &self.tags[Self::spread(slot)];
        t[0].store(NO_PAGE[0], Ordering::Relaxed);
        t[1].store(NO_PAGE[1], Ordering::Relaxed);
    }

    /// The page `slot` holds, if any (lock held: exact).
    pub(crate) fn page(&self, slot: usize) -> Option<u64> {
        let t = &self.tags[Self::spread(slot)];
        let tag = [t[0].load(Ordering::Relaxed), t[1].load(Ordering::Relaxed)];
        (tag != NO_PAGE).then(|| u64::from(tag[0]) | (u64::from(tag[1]) << 32))
    }

    fn insert(&self, pfn: u64, slot: usize) {
        let mut i = Self::home(pfn);
        // At most N entries in 2N buckets: an empty one exists.
        while self.index.get(i).load(Ordering::Relaxed) != 0 {
            i = (i + 1) & (2 * N - 1);
        }
        self.index.get(i).store(slot as u32 + 1, Ordering::Release);
    }

    /// Backward-shift deletion: a lock-free reader probing meanwhile may
    /// miss an entry that moves (and takes the locked path), never finds a
    /// wrong one (it checks the tag).
    fn remove(&self, pfn: u64, slot: usize) {
        let mask = 2 * N - 1;
        let mut i = Self::home(pfn);
        loop {
            let b = self.index.get(i).load(Ordering::Relaxed);
            if b == 0 {
                return;
            }
            if b as usize == slot + 1 {
                break;
            }
            i = (i + 1) & mask;
        }
        let mut hole = i;
        let mut j = i;
        loop {
            j = (j + 1) & mask;
            let b = self.index.get(j).load(Ordering::Relaxed);
            if b == 0 {
                break;
            }
            let Some(p) = self.page(b as usize - 1) else {
                continue;
            };
            let home = Self::home(p);
            // Entry at j may move to the hole if its home is not in (hole, j].
            if (j.wrapping_sub(home) & mask) >= (j.wrapping_sub(hole) & mask) {
                self.index.get(hole).store(b, Ordering::Release);
                hole = j;
            }
        }
        self.index.get(hole).store(0, Ordering::Release);
    }
}

#[cfg(test)]
#[cfg(not(loom))]
mod tests {
    //! The page→slot index on its own: linear probing that wraps past the
    //! last bucket, backward-shift deletion, and the hash that spreads
    //! pages over the buckets. Through the pool these only show as hits
    //! and misses, and a pool never fills more than half its buckets, so
    //! long chains (and chains that wrap past the last bucket) are rare
    //! there. The slot word's transitions are checked here too, field by
    //! field.
    extern crate std;
    use super::*;
    use std::collections::BTreeSet;
    use std::vec::Vec;

    const N: usize = 16;
    type Hot = HotSlots<N>;

    /// `count` page numbers from `from` up whose home bucket is `home`
    /// (about one page in `2N` has it; 64 Ki candidates are plenty).
    fn homed_at(home: usize, count: usize, from: u64) -> Vec<u64> {
        let pages: Vec<u64> = (from..from + (1 << 16))
            .filter(|&p| Hot::home(p) == home)
            .take(count)
            .collect();
        assert_eq!(pages.len(), count, "too few pages with home {home}");
        pages
    }

    /// Every `(slot, page)` of `held` is found, no page of `gone` is.
    fn assert_index(hot: &Hot, held: &[(usize, u64)], gone: &[u64]) {
        for &(slot, pfn) in held {
            assert_eq!(hot.find(pfn), Some(slot), "page {pfn:#x}");
            assert_eq!(hot.page(slot), Some(pfn));
        }
        for &pfn in gone {
            assert_eq!(hot.find(pfn), None, "page {pfn:#x}");
        }
    }

    /// Installs `pages` in slots 0, 1, ... and removes them in `order`
    /// (indices into `pages`), checking the whole index after each step.
    fn fill_and_drain(pages: &[u64], order: &[usize]) {
        let hot = Hot::new();
        let mut held = Vec::new();
        for (slot, &pfn) in pages.iter().enumerate() {
            assert_eq!(hot.find(pfn), None);
            hot.install(slot, pfn);
            held.push((slot, pfn));
            assert_index(&hot, &held, &[]);
        }
        let mut gone = Vec::new();
        for &k in order {
            let (slot, pfn) = (k, pages[k]);
            hot.forget(slot, pfn);
            held.retain(|&(s, _)| s != slot);
            gone.push(pfn);
            assert_index(&hot, &held, &gone);
        }
        // Every bucket is empty again.
        assert!((0..2 * N).all(|i| hot.index.get(i).load(Ordering::Relaxed) == 0));
    }

    /// Slot `slot`'s word as `(count, NO_HIT, generation)`, read by the
    /// layout the module docs give (bits 0-15, 16, 17-31), not through the
    /// constants the code uses.
    fn fields(hot: &Hot, slot: usize) -> (u32, bool, u32) {
        let w = hot.word(slot).load(Ordering::Relaxed);
        (w & 0xFFFF, (w >> 16) & 1 == 1, w >> 17)
    }

    fn is_taken(hit: Hit, slot: usize, unused: bool) -> bool {
        matches!(hit, Hit::Taken(s, u) if s == slot && u == unused)
    }

    fn is_locked(hit: Hit) -> bool {
        matches!(hit, Hit::Locked)
    }

    /// Every transition of one slot's word, on one thread, as the module
    /// docs define them: each moves the count as documented, sets or clears
    /// `NO_HIT` only where documented, and bumps the generation exactly
    /// when the count goes to 0 (and keeps it otherwise); the shard counts
    /// the slot while its count is at least 2.
    #[test]
    fn the_slot_word_moves_as_documented() {
        const P: u64 = 0x1_2345;
        const S: usize = 3;
        let hot = Hot::new();
        assert_eq!(fields(&hot, S), (0, false, 0));

        // install: count 2 (one user), in use.
        hot.install(S, P);
        assert_eq!((fields(&hot, S), hot.in_use()), ((2, false, 0), 1));
        // The last user leaves without NO_HIT: count 1, not in use.
        assert_eq!(hot.drop_user_locked(S, false), Some(2));
        assert_eq!((fields(&hot, S), hot.in_use()), ((1, false, 0), 0));
        // Recycled: count 0, the generation bumped.
        assert!(hot.retire_unused(S, true));
        assert_eq!(fields(&hot, S), (0, false, 1));
        hot.forget(S, P);
        assert_eq!(hot.page(S), None);

        // Installed again: the generation survives.
        hot.install(S, P);
        assert_eq!((fields(&hot, S), hot.in_use()), ((2, false, 1), 1));
        // A lock-free hit on a slot in use takes a user.
        assert!(is_taken(hot.try_hit(P, true), S, false));
        assert_eq!(fields(&hot, S), (3, false, 1));
        assert!(is_taken(hot.try_hit(P, false), S, false));
        assert_eq!(fields(&hot, S), (4, false, 1));
        assert_eq!(hot.fast_hits(), 2);
        // The lock holder adds users to a slot in use without counting it
        // in use again.
        assert_eq!(hot.add_user_in_use(S), Ok(true));
        assert_eq!(fields(&hot, S), (5, false, 1));
        assert_eq!(hot.add_user_locked(S, true), Ok(5));
        assert_eq!((fields(&hot, S), hot.in_use()), ((6, false, 1), 1));
        // Lock-free releases of users that are not the last one, even
        // under a policy that keeps the last for the lock.
        assert_eq!(hot.drop_ref(S, Some(P), true), Ok(false));
        assert_eq!(fields(&hot, S), (5, false, 1));
        assert_eq!(hot.drop_ref(S, None, false), Ok(false));
        assert_eq!(fields(&hot, S), (4, false, 1));
        // Locked releases of users that are not the last: no NO_HIT.
        assert_eq!(hot.drop_user_locked(S, true), Some(4));
        assert_eq!(fields(&hot, S), (3, false, 1));
        assert_eq!(hot.drop_user_locked(S, false), Some(3));
        assert_eq!((fields(&hot, S), hot.in_use()), ((2, false, 1), 1));
        // The last user leaves without the lock when the policy allows it:
        // count 1, not in use.
        assert_eq!(hot.drop_ref(S, Some(P), false), Ok(false));
        assert_eq!((fields(&hot, S), hot.in_use()), ((1, false, 1), 0));
        // An unused slot is taken only when the caller allows it.
        assert!(is_locked(hot.try_hit(P, false)));
        assert_eq!((fields(&hot, S), hot.in_use()), ((1, false, 1), 0));
        assert!(is_taken(hot.try_hit(P, true), S, true));
        assert_eq!((fields(&hot, S), hot.in_use()), ((2, false, 1), 1));
        // Under a policy that keeps the last user for the lock, it leaves
        // there, marked NO_HIT.
        assert_eq!(hot.drop_ref(S, Some(P), true), Err(true));
        assert_eq!(fields(&hot, S), (2, false, 1));
        assert_eq!(hot.drop_user_locked(S, true), Some(2));
        assert_eq!((fields(&hot, S), hot.in_use()), ((1, true, 1), 0));
        // No user left: nothing changes.
        assert_eq!(hot.drop_user_locked(S, false), None);
        assert_eq!(hot.drop_ref(S, Some(P), false), Err(false));
        assert_eq!(hot.add_user_in_use(S), Ok(false));
        assert_eq!(fields(&hot, S), (1, true, 1));
        // A NO_HIT slot is never hit.
        assert!(is_locked(hot.try_hit(P, true)));
        assert_eq!(fields(&hot, S), (1, true, 1));
        // Its PTE could not be cleared: hits are allowed again.
        hot.allow_hits(S);
        assert_eq!(fields(&hot, S), (1, false, 1));
        // Retired to NO_HIT (twice: it stays out of reach), then freed.
        assert!(hot.retire_unused(S, false));
        assert_eq!(fields(&hot, S), (1, true, 1));
        assert!(hot.retire_unused(S, false));
        assert_eq!(fields(&hot, S), (1, true, 1));
        hot.free_no_hit(S);
        assert_eq!(fields(&hot, S), (0, false, 2));
        // A free slot is not retired, and never hit.
        assert!(!hot.retire_unused(S, true));
        assert!(is_locked(hot.try_hit(P, true)));
        assert_eq!(fields(&hot, S), (0, false, 2));
        hot.forget(S, P);

        // Retired to 0 but its PTE could not be cleared: unused again,
        // with the new generation.
        hot.install(S, P);
        assert_eq!(hot.drop_user_locked(S, false), Some(2));
        assert!(hot.retire_unused(S, true));
        assert_eq!(fields(&hot, S), (0, false, 3));
        hot.unretire(S);
        assert_eq!((fields(&hot, S), hot.in_use()), ((1, false, 3), 0));
        assert!(is_taken(hot.try_hit(P, true), S, true));
        assert_eq!((fields(&hot, S), hot.in_use()), ((2, false, 3), 1));
    }

    #[test]
    fn a_release_naming_a_page_refuses_another_pages_slot() {
        let hot = Hot::new();
        hot.install(0, 0x77);
        assert_eq!(hot.add_user_locked(0, true), Ok(2));
        assert_eq!(hot.drop_ref(0, Some(0x78), false), Err(false));
        assert_eq!(hot.drop_ref(0, Some(0x77 | 1 << 32), false), Err(false));
        assert_eq!(fields(&hot, 0), (3, false, 0));
        assert_eq!(hot.drop_ref(0, Some(0x77), false), Ok(false));
        assert_eq!(hot.drop_ref(0, None, false), Ok(false));
        assert_eq!((fields(&hot, 0), hot.in_use()), ((1, false, 0), 0));
    }

    #[test]
    fn an_unused_slot_is_not_hit_while_the_gate_is_up() {
        let hot = Hot::new();
        hot.install(5, 0x99);
        assert_eq!(hot.drop_user_locked(5, false), Some(2));
        hot.set_gate(true);
        assert!(matches!(hot.try_hit(0x99, true), Hit::LockedWake));
        assert_eq!((fields(&hot, 5), hot.in_use()), ((1, false, 0), 0));
        // A hit on a slot in use needs no capacity: the gate is no bar.
        assert_eq!(hot.add_user_locked(5, true), Ok(1));
        assert_eq!(hot.in_use(), 1);
        assert!(is_taken(hot.try_hit(0x99, true), 5, false));
        // The last release with the gate up asks for a wake-up.
        assert_eq!(hot.drop_ref(5, Some(0x99), false), Ok(false));
        assert_eq!(hot.drop_ref(5, Some(0x99), false), Ok(true));
        assert_eq!((fields(&hot, 5), hot.in_use()), ((1, false, 0), 0));
        hot.set_gate(false);
        assert!(is_taken(hot.try_hit(0x99, true), 5, true));
    }

    #[test]
    fn one_chain_of_every_slot_wraps_past_the_last_bucket() {
        // N pages with one home, two buckets before the end: the chain
        // runs through the last bucket and on from bucket 0.
        let pages = homed_at(2 * N - 2, N, 1);
        let order: Vec<usize> = (0..N).map(|i| (i * 7) % N).collect();
        fill_and_drain(&pages, &order);
        // And drained from either end.
        fill_and_drain(&pages, &(0..N).collect::<Vec<_>>());
        fill_and_drain(&pages, &(0..N).rev().collect::<Vec<_>>());
    }

    #[test]
    fn entries_of_interleaved_homes_stay_behind_their_home() {
        // Homes 2N-1, 0 and 1 interleaved: a removal must pull an entry
        // back into the hole only if that does not put it before its home.
        let a = homed_at(2 * N - 1, 4, 1);
        let b = homed_at(0, 4, 1);
        let c = homed_at(1, 4, 1);
        let pages: Vec<u64> = (0..4).flat_map(|i| [c[i], a[i], b[i]]).collect();
        let n = pages.len();
        for first in 0..n {
            let order: Vec<usize> = (0..n).map(|i| (first + i * 5) % n).collect();
            fill_and_drain(&pages, &order);
        }
    }

    #[test]
    fn a_page_that_differs_only_in_its_high_word_is_another_page() {
        // 52-bit PAE page numbers: the tag holds both halves. A page with
        // the same low half and the same home bucket must not find the
        // other's slot.
        let low = 0x0001_2345u64;
        let home = Hot::home(low);
        let other = (1..1u64 << 16)
            .map(|k| low | k << 32)
            .find(|&p| Hot::home(p) == home)
            .expect("a page with the same home");
        let hot = Hot::new();
        hot.install(0, low);
        assert_eq!(hot.find(low), Some(0));
        assert_eq!(hot.find(other), None);
        hot.install(1, other);
        assert_eq!((hot.find(low), hot.find(other)), (Some(0), Some(1)));
        assert_eq!(hot.page(1), Some(other));
    }

    #[test]
    fn every_slot_of_a_large_pool_counts_in_use() {
        let hot = HotSlots::<1024>::new();
        for (n, slot) in [0usize, 7, 8, 63, 64, 1000, 1023].into_iter().enumerate() {
            hot.install(slot, 0x10_0000 + slot as u64);
            assert_eq!(hot.in_use(), n + 1, "slot {slot}");
            assert_eq!(hot.count(slot), 2);
        }
    }

    /// `spread` is a permutation of the slots, and puts slots handed out
    /// one after the other a cache line of words (16) apart.
    fn assert_spread<const M: usize>() {
        let at: Vec<usize> = (0..M).map(HotSlots::<M>::spread).collect();
        let distinct = at.iter().collect::<BTreeSet<_>>();
        assert_eq!(distinct.len(), M, "{M} slots: two share a word");
        assert!(at.iter().all(|&p| p < M), "{M} slots: a word past the end");
        for s in 1..M {
            let gap = at[s].abs_diff(at[s - 1]);
            if M <= 16 {
                assert_eq!(gap, 1, "{M} slots, slot {s}: small pools are not spread");
            } else if s % (M / 16) != 0 {
                assert_eq!(gap, 16, "{M} slots, slot {s}");
            }
        }
    }

    #[test]
    fn slots_are_spread_a_line_apart_and_never_share_a_word() {
        assert_spread::<8>();
        assert_spread::<16>();
        assert_spread::<32>();
        assert_spread::<64>();
        assert_spread::<1024>();
    }

    #[test]
    fn pages_spread_over_the_buckets() {
        // A 1,024-slot pool: 2,048 buckets. 1,024 pages hashed at random
        // would use about 806 distinct home buckets (79 % as many as
        // pages); each of these sets of pages (consecutive, a power-of-two
        // stride, only the high word of a 52-bit PAE page number
        // differing) must use at least as many.
        const BIG: usize = 1024;
        let sets: [(&str, Vec<u64>); 3] = [
            ("consecutive", (0x1_0000..0x1_0000 + BIG as u64).collect()),
            ("stride 1,024", (0..BIG as u64).map(|k| k << 10).collect()),
            (
                "high word",
                (0..BIG as u64).map(|k| (k << 32) | 0x5).collect(),
            ),
        ];
        for (name, pages) in sets {
            let homes: Vec<usize> = pages.iter().map(|&p| HotSlots::<BIG>::home(p)).collect();
            assert!(
                homes.iter().all(|&h| h < 2 * BIG),
                "{name}: a home past the buckets"
            );
            let distinct = homes.iter().collect::<BTreeSet<_>>().len();
            std::println!("{name}: {BIG} pages, {distinct} distinct home buckets");
            assert!(
                distinct * 100 >= BIG * 79,
                "{name}: {distinct} distinct homes"
            );
        }
    }
}
