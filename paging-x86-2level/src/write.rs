//! How a 32-bit entry is replaced in a live table.
//!
//! A 32-bit entry is written with one store, so the MMU never sees half of
//! it. What can be lost is the Accessed/Dirty bits: another CPU's MMU may set
//! them between our read of the old value and our store. Replacing a present
//! entry therefore uses `xchg`, which returns exactly what was there.

use paging_core::RawTable;

use crate::bits::PteBits;

/// Write `new` into word `index` of `table`, returning the previous value
/// (with every A/D bit the MMU had set).
pub(crate) fn store<T: RawTable + ?Sized>(table: &T, index: usize, new: u32) -> u32 {
    let old = table.load32(index);
    if old & PteBits::PRESENT.bits() != 0 {
        // The MMU may set A or D at any moment while the entry is present.
        table.swap32(index, new)
    } else {
        // A non-present entry is never written by the MMU.
        table.store32(index, new);
        old
    }
}
