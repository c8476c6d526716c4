//! Tear-free replacement of a 64-bit entry by a 32-bit CPU.
//!
//! An i586 writes a 64-bit entry as two 32-bit stores, and the MMU of
//! another CPU (or this one, speculatively) may walk the table between them.
//! The MMU must never see a *present* entry whose address is half old, half
//! new: it would translate to memory nobody mapped. P lives in the low half,
//! so the order of the two stores decides what the MMU can see:
//!
//! | old | new | writes | what the MMU can see |
//! |---|---|---|---|
//! | not present | present | high half, then low half (P last) | old (not present), then new |
//! | present | not present | low half first (`xchg`, P goes to 0), then high | old, then not present |
//! | present | present, same high half | low half (`xchg`) | old, then new |
//! | present | present, high halves differ in XD only, XD set | high half, then low half (`xchg`) | old, then old's low half with XD, then new |
//! | present | present, high halves differ in XD only, XD cleared | low half (`xchg`), then high half | old, then new's low half with XD, then new |
//! | present | present, address bits 32 and up differ | one `cmpxchg8b` (`swap64`) | old, then new |
//! | not present | not present | any order | never present |
//!
//! Replacing a present entry with another present one whose address
//! differs in the high half cannot be split safely in any order, so it is
//! one atomic 64-bit exchange. Every other present-to-present replacement
//! uses 32-bit atomics only: the address is the same, and the one state
//! in between (XD on, with either the old or the new low half) grants no
//! access that both the old and the new entry deny: it is the old entry
//! minus execution when XD is being set, the new entry minus execution
//! when XD is being cleared. The caller's flush follows either way, as a
//! TLB may hold the old entry until then. Keeping to 32-bit accesses is
//! what lets a lock-free 32-bit reader of the same hierarchy (the lazy
//! kernel sync walking the reference while its mapper changes rights, in
//! `docs/safety.md`) run beside the writer without a mixed-size race:
//! the kernel half of a 32-bit kernel lives below 4 GiB, so its flag
//! changes, splits and merges never need `cmpxchg8b`.
//!
//! Wherever the old entry was present, the value returned comes
//! from an atomic exchange: Accessed/Dirty bits the MMU set after our first
//! read are returned, not lost. A/D live in the low half; the MMU never
//! writes the high half.
//!
//! Like every entry write, this assumes one software writer per entry at a
//! time (the caller holds the page-table lock); the only concurrent writer
//! is the MMU, which only sets A/D in present entries.

use paging_core::RawTable;

/// P, bit 0 of every PAE entry.
const PRESENT: u64 = 1;
/// XD, bit 63 of a PAE entry: bit 31 of its high half.
const XD_HIGH: u32 = 1 << 31;

/// Write `new` into 64-bit entry `index` of `table` in the order above, and
/// return the previous value.
pub(crate) fn store<T: RawTable + ?Sized>(table: &T, index: usize, new: u64) -> u64 {
    let lo_word = 2 * index;
    let hi_word = 2 * index + 1;
    let (new_lo, new_hi) = (new as u32, (new >> 32) as u32);
    let old = table.load64(index);
    let old_hi = (old >> 32) as u32;
    match (old & PRESENT != 0, new & PRESENT != 0) {
        (true, true) if old_hi == new_hi => {
            // The MMU never writes the high half, and we are the one
            // software writer: only the low half changes.
            let old_lo = table.swap32(lo_word, new_lo);
            u64::from(old_hi) << 32 | u64::from(old_lo)
        }
        (true, true) if old_hi ^ new_hi == XD_HIGH => {
            let old_lo = if new_hi & XD_HIGH != 0 {
                // Execution goes first: the old entry minus execution,
                // then the new one.
                table.store32(hi_word, new_hi);
                table.swap32(lo_word, new_lo)
            } else {
                // Execution comes last: the new entry minus execution,
                // then the new one.
                let old_lo = table.swap32(lo_word, new_lo);
                table.store32(hi_word, new_hi);
                old_lo
            };
            u64::from(old_hi) << 32 | u64::from(old_lo)
        }
        (true, true) => table.swap64(index, new),
        (false, true) => {
            // The entry stays not present until the low half lands.
            table.store32(hi_word, new_hi);
            table.store32(lo_word, new_lo);
            old
        }
        (true, false) => {
            // P drops with the first store; the exchange returns the low
            // half with whatever A/D the MMU set up to that instant.
            let old_lo = table.swap32(lo_word, new_lo);
            table.store32(hi_word, new_hi);
            old & !0xFFFF_FFFF | old_lo as u64
        }
        (false, false) => {
            table.store32(lo_word, new_lo);
            table.store32(hi_word, new_hi);
            old
        }
    }
}

/// Write `new` into entry `index`, known to be empty: when `new` is present,
/// the high half first and the low half (with P) last, as in `store`.
pub(crate) fn fill<T: RawTable + ?Sized>(table: &T, index: usize, new: u64) {
    let (lo, hi) = (new as u32, (new >> 32) as u32);
    table.store32(2 * index + 1, hi);
    table.store32(2 * index, lo);
}
