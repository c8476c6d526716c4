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
    /// A consistent snapshot of the 64-bit entry `entry` (words `2e`, `2e+1`).
    fn load64(&self, entry: usize) -> u64;
    /// A plain 64-bit store (two 32-bit stores on a 32-bit CPU, in no
    /// particular order). Only for tables no MMU can reach yet.
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
}

/// A page table reached through a pointer in the current address space (the
/// kernel's direct map, a temporary mapping, or a host buffer).
#[derive(Debug)]
pub struct PtrTable<'a> {
    base: NonNull<u32>,
    _memory: PhantomData<&'a [AtomicU32]>,
}

// SAFETY: every access through `PtrTable` is a volatile or atomic access to
// memory the constructor's caller promised is valid for `'a`; such accesses
// from several threads are the normal way CPUs share page tables.
unsafe impl Send for PtrTable<'_> {}
// SAFETY: as for `Send`: there is no unsynchronised interior state.
unsafe impl Sync for PtrTable<'_> {}

impl<'a> PtrTable<'a> {
    /// View the 4 KiB at `ptr` as a page table.
    ///
    /// # Safety
    /// `ptr` must be 8-byte aligned, non-null and valid for reads and writes
    /// of 4096 bytes for the whole of `'a`, and every other access to that
    /// memory during `'a` must be volatile, atomic, or made by the MMU.
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

    fn word_ptr(&self, word: usize) -> *mut u32 {
        // SAFETY: the index is masked into the 1024-word table that `new`'s
        // caller promised is valid.
        unsafe { self.base.as_ptr().add(word % WORDS_PER_TABLE) }
    }

    fn qword_ptr(&self, entry: usize) -> *mut u64 {
        // SAFETY: as above, for the 512 8-byte entries of the same 4 KiB.
        unsafe {
            self.base
                .as_ptr()
                .cast::<u64>()
                .add(entry % QWORDS_PER_TABLE)
        }
    }
}

/// `first..first + count` clamped to a table of `len` entries.
fn clamp_run(first: usize, count: usize, len: usize) -> (usize, usize) {
    let first = first.min(len);
    (first, count.min(len - first))
}

impl RawTable for PtrTable<'_> {
    fn store_run32(&self, first: usize, count: usize, value: u32, step: u32) {
        let (first, count) = clamp_run(first, count, WORDS_PER_TABLE);
        // SAFETY: `first + count <= 1024`: inside the table `new`'s caller
        // promised is valid; the caller of `store_run32` promises no MMU
        // (and no other accessor) reaches this table yet, so plain stores
        // race with nothing.
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

    fn store_run64(&self, first: usize, count: usize, value: u64, step: u64) {
        let (first, count) = clamp_run(first, count, QWORDS_PER_TABLE);
        // SAFETY: as in `store_run32`, for the 512 8-byte entries.
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

    fn load32(&self, word: usize) -> u32 {
        // SAFETY: in-bounds, aligned, valid per `new`'s contract.
        unsafe { self.word_ptr(word).read_volatile() }
    }

    fn store32(&self, word: usize, value: u32) {
        // SAFETY: in-bounds, aligned, valid per `new`'s contract.
        unsafe { self.word_ptr(word).write_volatile(value) }
    }

    fn swap32(&self, word: usize, value: u32) -> u32 {
        // SAFETY: in-bounds, 4-aligned, valid per `new`'s contract; all
        // other accesses are volatile/atomic/MMU, as `new` requires.
        let cell = unsafe { AtomicU32::from_ptr(self.word_ptr(word)) };
        cell.swap(value, Ordering::AcqRel)
    }

    fn load64(&self, entry: usize) -> u64 {
        let p = self.qword_ptr(entry);
        #[cfg(target_pointer_width = "64")]
        {
            // SAFETY: in-bounds, 8-aligned, valid; one 64-bit load cannot tear
            // on a 64-bit host.
            unsafe { p.read_volatile() }
        }
        #[cfg(not(target_pointer_width = "64"))]
        {
            // A 32-bit CPU reads the halves separately. Another CPU updating
            // the entry with the ordered protocol (high half while not present,
            // low half last) can make the halves disagree; re-reading the low
            // half until it is stable gives a snapshot without a locked
            // cmpxchg8b (which would also write, and fault on a read-only
            // table under a hypervisor).
            let words = p.cast::<u32>();
            loop {
                // SAFETY: both halves are in-bounds, aligned and valid.
                let (lo, hi, lo2) = unsafe {
                    (
                        words.read_volatile(),
                        words.add(1).read_volatile(),
                        words.read_volatile(),
                    )
                };
                if lo == lo2 {
                    return (hi as u64) << 32 | lo as u64;
                }
            }
        }
    }

    fn store64(&self, entry: usize, value: u64) {
        // SAFETY: in-bounds, 8-aligned, valid per `new`'s contract.
        unsafe { self.qword_ptr(entry).write_volatile(value) }
    }

    fn swap64(&self, entry: usize, value: u64) -> u64 {
        // SAFETY: in-bounds, 8-aligned, valid per `new`'s contract. On i586
        // this is a `lock cmpxchg8b` loop, the instruction the SDM names for
        // replacing a live 64-bit entry.
        let cell = unsafe { AtomicU64::from_ptr(self.qword_ptr(entry)) };
        cell.swap(value, Ordering::AcqRel)
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
