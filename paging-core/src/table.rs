//! One page-table frame, as the CPU stores it: 32-bit words and 64-bit entries.
//!
//! The mapper never touches table memory except through [`RawTable`]. That
//! single seam is what lets the same code run on real memory ([`PtrTable`]),
//! on the host model (`sim`), through a temporary kmap of a highmem frame, or
//! under a recording implementation that checks every intermediate store.

use core::marker::PhantomData;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Number of 32-bit words in a 4 KiB table.
pub const WORDS_PER_TABLE: usize = 1024;
/// Number of 64-bit entries in a 4 KiB table.
pub const QWORDS_PER_TABLE: usize = 512;

/// Word-level access to one 4 KiB page-table frame.
///
/// Indexes are always in range when called by this crate (`word < 1024`,
/// `entry < 512`); implementations may mask them. All stores are single,
/// ordered machine stores: the page walker of another CPU (or of the host
/// model) may observe the table between any two calls.
pub trait RawTable {
    /// Load the 32-bit word `word`.
    fn load32(&self, word: usize) -> u32;
    /// Store `value` into word `word` with one 32-bit store.
    fn store32(&self, word: usize, value: u32);
    /// Atomically exchange word `word` with `value`, returning the old value
    /// (`xchg`: no Accessed/Dirty update by the MMU is lost).
    fn swap32(&self, word: usize, value: u32) -> u32;
    /// Atomically replace word `word` with `new` if it holds `current`
    /// (`lock cmpxchg`): `Ok(current)` if it did, `Err(actual)` with what
    /// the word held if it did not. What serialises two writers of one
    /// entry without a lock (fixmap slots).
    fn compare_exchange32(&self, word: usize, current: u32, new: u32) -> Result<u32, u32>;
    /// A consistent snapshot of the 64-bit entry `entry` (words `2e`, `2e+1`).
    fn load64(&self, entry: usize) -> u64;
    /// A plain 64-bit store (two 32-bit stores on a 32-bit CPU, in no
    /// particular order). Only for entries no MMU can reach yet.
    fn store64(&self, entry: usize, value: u64);
    /// Atomically exchange the whole 64-bit entry `entry` (`cmpxchg8b` on a
    /// 32-bit CPU), returning the old value.
    fn swap64(&self, entry: usize, value: u64) -> u64;

    /// Fill words `first..first + count` with `value`, `value + step`, ...
    /// Only for a table no MMU can reach yet (a new table before it is
    /// linked): the stores may be merged or reordered among themselves, but
    /// all of them happen before any later store to another table.
    fn store_run32(&self, first: usize, count: usize, value: u32, step: u32) {
        for i in 0..count {
            self.store32(first + i, value.wrapping_add(step.wrapping_mul(i as u32)));
        }
    }

    /// The same for 64-bit entries `first..first + count`.
    fn store_run64(&self, first: usize, count: usize, value: u64, step: u64) {
        for i in 0..count {
            self.store64(first + i, value.wrapping_add(step.wrapping_mul(i as u64)));
        }
    }

    /// [`store_run32`](Self::store_run32) into a table nobody else can
    /// reach, which an implementation may fill with plain (non-atomic,
    /// vectorisable) stores. The default is `store_run32`.
    ///
    /// # Safety
    /// While the call runs, nothing else accesses words
    /// `first..first + count` of this table: no other thread and no MMU. A
    /// frame the mapper has just taken from a
    /// [`FrameAllocator`](crate::FrameAllocator) and not linked yet is such
    /// a table: the allocator's contract is that nothing else uses it.
    unsafe fn store_run32_unshared(&self, first: usize, count: usize, value: u32, step: u32) {
        self.store_run32(first, count, value, step)
    }

    /// [`store_run64`](Self::store_run64) into a table nobody else can
    /// reach. The default is `store_run64`.
    ///
    /// # Safety
    /// As for [`store_run32_unshared`](Self::store_run32_unshared), for
    /// entries `first..first + count`.
    unsafe fn store_run64_unshared(&self, first: usize, count: usize, value: u64, step: u64) {
        self.store_run64(first, count, value, step)
    }
}

impl<T: RawTable + ?Sized> RawTable for &T {
    fn load32(&self, word: usize) -> u32 {
        (**self).load32(word)
    }
    fn store32(&self, word: usize, value: u32) {
        (**self).store32(word, value)
    }
    fn swap32(&self, word: usize, value: u32) -> u32 {
        (**self).swap32(word, value)
    }
    fn compare_exchange32(&self, word: usize, current: u32, new: u32) -> Result<u32, u32> {
        (**self).compare_exchange32(word, current, new)
    }
    fn load64(&self, entry: usize) -> u64 {
        (**self).load64(entry)
    }
    fn store64(&self, entry: usize, value: u64) {
        (**self).store64(entry, value)
    }
    fn swap64(&self, entry: usize, value: u64) -> u64 {
        (**self).swap64(entry, value)
    }
    fn store_run32(&self, first: usize, count: usize, value: u32, step: u32) {
        (**self).store_run32(first, count, value, step)
    }
    fn store_run64(&self, first: usize, count: usize, value: u64, step: u64) {
        (**self).store_run64(first, count, value, step)
    }
    unsafe fn store_run32_unshared(&self, first: usize, count: usize, value: u32, step: u32) {
        // SAFETY: forwarded: our caller keeps the contract.
        unsafe { (**self).store_run32_unshared(first, count, value, step) }
    }
    unsafe fn store_run64_unshared(&self, first: usize, count: usize, value: u64, step: u64) {
        // SAFETY: forwarded: our caller keeps the contract.
        unsafe { (**self).store_run64_unshared(first, count, value, step) }
    }
}

/// A page table reached through a pointer in the current address space (the
/// kernel's direct map, a temporary mapping, or a host buffer).
#[derive(Debug)]
pub struct PtrTable<'a> {
    base: NonNull<u32>,
    _memory: PhantomData<&'a [AtomicU32]>,
}

// SAFETY: `PtrTable` holds only a pointer. Every access through it is an
// atomic access (`AtomicU32`, and `AtomicU64` for `swap64`) to memory the
// constructor's caller promised is valid for `'a` and reached only
// atomically or by the MMU; atomic accesses from several threads are not
// data races. `paging-core/tests/threads_ptr_table.rs` runs every method
// from several threads under Miri's race detector.
unsafe impl Send for PtrTable<'_> {}
// SAFETY: as for `Send`: there is no unsynchronised interior state.
unsafe impl Sync for PtrTable<'_> {}

impl<'a> PtrTable<'a> {
    /// View the 4 KiB at `ptr` as a page table.
    ///
    /// # Safety
    /// `ptr` must be 8-byte aligned, non-null and valid for reads and writes
    /// of 4096 bytes for the whole of `'a`, and every other access to that
    /// memory during `'a` must be atomic (another `PtrTable`, an
    /// `AtomicU32`) or made by the MMU: a plain or volatile access racing a
    /// table access is a data race. In addition, a [`swap64`](RawTable::swap64)
    /// of an entry must not race another thread's access to the same entry:
    /// it is a 64-bit atomic while every other access is 32-bit, and Rust
    /// does not define racing atomics of different sizes (x86 does; the
    /// MMU, which is not a Rust thread, may race it). The crates keep this
    /// for their own writers: they only `swap64` a present entry replaced
    /// by a present one whose address differs in the high half (above
    /// 4 GiB), under `&mut Mapper` (one writer per hierarchy: the kernel's
    /// page-table lock); rights changes and `sync_kernel_entry` use 32-bit
    /// atomics. A lock-free reader of such an entry while its mapper runs
    /// is the caller's to exclude (`docs/safety.md`, *Open*).
    pub unsafe fn new(ptr: *mut u8) -> Self {
        debug_assert!(!ptr.is_null() && (ptr as usize).is_multiple_of(8));
        Self {
            // SAFETY: the caller promised `ptr` is non-null.
            base: unsafe { NonNull::new_unchecked(ptr.cast::<u32>()) },
            _memory: PhantomData,
        }
    }

    /// The first byte of the table.
    pub fn as_ptr(&self) -> *mut u8 {
        self.base.as_ptr().cast()
    }

    /// Word `word` (masked into the table) as an atomic.
    #[inline]
    fn word(&self, word: usize) -> &AtomicU32 {
        // SAFETY: the index is masked into the 1024-word table that `new`'s
        // caller promised is valid, 4-aligned (8-aligned base) and only
        // accessed atomically or by the MMU for `'a`, which outlives `&self`.
        unsafe { AtomicU32::from_ptr(self.base.as_ptr().add(word % WORDS_PER_TABLE)) }
    }

    /// Words `first..first + count`, clamped to the table, as a shared
    /// slice of atomics: what `store_run*` fill, one relaxed store each,
    /// without an index computation per word.
    #[inline]
    fn words(&self, first: usize, count: usize) -> &[AtomicU32] {
        let (first, count) = clamp_run(first, count, WORDS_PER_TABLE);
        // SAFETY: `first + count <= 1024`: inside the table `new`'s caller
        // promised is valid, aligned and only accessed atomically or by the
        // MMU for `'a`; `AtomicU32` has the size and alignment of `u32`,
        // and a shared slice of atomics allows only atomic accesses.
        unsafe {
            core::slice::from_raw_parts(self.base.as_ptr().add(first).cast::<AtomicU32>(), count)
        }
    }

    /// Entry `entry` (masked into the table) as a 64-bit atomic, for
    /// `swap64` only (a `lock cmpxchg8b` loop on i586; a 64-bit atomic load
    /// or store would be x87 code there).
    #[inline]
    fn qword(&self, entry: usize) -> &AtomicU64 {
        // SAFETY: as in `word`, for the 512 8-byte-aligned entries of the
        // same 4 KiB.
        unsafe {
            AtomicU64::from_ptr(
                self.base
                    .as_ptr()
                    .cast::<u64>()
                    .add(entry % QWORDS_PER_TABLE),
            )
        }
    }
}

/// `first..first + count` clamped to a table of `len` entries.
fn clamp_run(first: usize, count: usize, len: usize) -> (usize, usize) {
    let first = first.min(len);
    (first, count.min(len - first))
}

/// The memory orderings: a load acquires and a store releases, so a table
/// filled before the store that links it is seen filled by whoever follows
/// the link (on x86 both are plain `mov`s: no fence, no lock).
impl RawTable for PtrTable<'_> {
    #[inline]
    fn store_run32(&self, first: usize, count: usize, value: u32, step: u32) {
        let mut v = value;
        for w in self.words(first, count) {
            w.store(v, Ordering::Relaxed);
            v = v.wrapping_add(step);
        }
        // The stores are visible before whatever links the table.
        core::sync::atomic::fence(Ordering::Release);
    }

    #[inline]
    fn store_run64(&self, first: usize, count: usize, value: u64, step: u64) {
        let (first, count) = clamp_run(first, count, QWORDS_PER_TABLE);
        let mut v = value;
        for pair in self.words(2 * first, 2 * count).chunks_exact(2) {
            pair[1].store((v >> 32) as u32, Ordering::Relaxed);
            pair[0].store(v as u32, Ordering::Relaxed);
            v = v.wrapping_add(step);
        }
        core::sync::atomic::fence(Ordering::Release);
    }

    /// Plain stores (the compiler vectorises them), then a release fence.
    #[inline]
    unsafe fn store_run32_unshared(&self, first: usize, count: usize, value: u32, step: u32) {
        let (first, count) = clamp_run(first, count, WORDS_PER_TABLE);
        // SAFETY: `first + count <= 1024`: inside the table `new`'s caller
        // promised is valid and aligned; this method's caller promised that
        // nothing else accesses these words during the call, so a unique
        // slice over them aliases nothing and plain stores race with
        // nothing.
        let words =
            unsafe { core::slice::from_raw_parts_mut(self.base.as_ptr().add(first), count) };
        let mut v = value;
        for w in words {
            *w = v;
            v = v.wrapping_add(step);
        }
        // The stores are visible before whatever links the table.
        core::sync::atomic::fence(Ordering::Release);
    }

    /// As `store_run32_unshared`, high half and low half of each entry.
    #[inline]
    unsafe fn store_run64_unshared(&self, first: usize, count: usize, value: u64, step: u64) {
        let (first, count) = clamp_run(first, count, QWORDS_PER_TABLE);
        // SAFETY: as in `store_run32_unshared`, for the 512 8-byte entries.
        let entries = unsafe {
            core::slice::from_raw_parts_mut(self.base.as_ptr().cast::<u64>().add(first), count)
        };
        let mut v = value;
        for e in entries {
            *e = v;
            v = v.wrapping_add(step);
        }
        core::sync::atomic::fence(Ordering::Release);
    }

    #[inline]
    fn load32(&self, word: usize) -> u32 {
        self.word(word).load(Ordering::Acquire)
    }

    #[inline]
    fn store32(&self, word: usize, value: u32) {
        self.word(word).store(value, Ordering::Release)
    }

    #[inline]
    fn swap32(&self, word: usize, value: u32) -> u32 {
        self.word(word).swap(value, Ordering::AcqRel)
    }

    #[inline]
    fn compare_exchange32(&self, word: usize, current: u32, new: u32) -> Result<u32, u32> {
        self.word(word)
            .compare_exchange(current, new, Ordering::AcqRel, Ordering::Acquire)
    }

    /// Two 32-bit loads of the high half around one of the low half,
    /// repeated until the high half is the same both times: then the value
    /// returned is exactly what the entry held when its low half was read.
    ///
    /// The halves are read separately on every target (an i586 has no
    /// 64-bit load outside x87 and the locked `cmpxchg8b`, which writes and
    /// faults on a read-only table under a hypervisor), so a writer that
    /// rewrites the high half and then puts it back *twice* while one load
    /// runs could still make it return a pairing that never existed. That
    /// needs two software rewrites of the same entry inside three loads; it
    /// cannot make the MMU see anything wrong (the MMU reads an entry with
    /// one 64-bit access, SDM Vol. 3A 8.1.1, and every state the ordered
    /// write protocol passes through is either not present or a whole
    /// entry), and no write decision is taken on such a snapshot while
    /// another writer runs: entry writers are serialised (the page-table
    /// lock; fixmap slots by a compare-and-swap on the low half).
    #[inline]
    fn load64(&self, entry: usize) -> u64 {
        let (lo, hi) = (self.word(2 * entry), self.word(2 * entry + 1));
        loop {
            let hi1 = hi.load(Ordering::Acquire);
            let l = lo.load(Ordering::Acquire);
            let hi2 = hi.load(Ordering::Acquire);
            if hi1 == hi2 {
                return (hi1 as u64) << 32 | l as u64;
            }
        }
    }

    /// The high half, then the low half (P last), as two 32-bit stores.
    #[inline]
    fn store64(&self, entry: usize, value: u64) {
        self.word(2 * entry + 1)
            .store((value >> 32) as u32, Ordering::Release);
        self.word(2 * entry).store(value as u32, Ordering::Release);
    }

    #[inline]
    fn swap64(&self, entry: usize, value: u64) -> u64 {
        // On i586 a `lock cmpxchg8b` loop, the instruction the SDM names
        // for replacing a live 64-bit entry.
        self.qword(entry).swap(value, Ordering::AcqRel)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[repr(align(4096))]
    struct Frame([u64; 512]);

    #[test]
    fn ptr_table_words_and_entries_alias_as_on_x86() {
        let mut frame = Frame([0; 512]);
        // SAFETY: `frame` is 4096-aligned, 4 KiB, lives for the whole test and
        // is only touched through `t`.
        let t = unsafe { PtrTable::new(frame.0.as_mut_ptr().cast()) };
        t.store32(2, 0xdead_0001);
        t.store32(3, 0x0000_000f);
        assert_eq!(t.load64(1), 0x0000_000f_dead_0001);
        assert_eq!(t.swap64(1, 7), 0x0000_000f_dead_0001);
        t.store64(4, 0x1234_5678_9abc_def0);
        assert_eq!((t.load32(8), t.load32(9)), (0x9abc_def0, 0x1234_5678));
        assert_eq!((t.load32(2), t.load32(3)), (7, 0));
        assert_eq!(t.swap32(1023, 5), 0);
        assert_eq!(t.load32(1023), 5);
        // Indexes are masked into the table rather than running past it.
        assert_eq!(t.load32(1023 + 1024), 5);
        assert_eq!(t.load64(511), 5 << 32);
        let _ = t;
        assert_eq!(frame.0[511], 5 << 32);
    }
}
