//! The page-table entry: one 4 KiB page.

use core::fmt;

use paging_core::{Entry, EntryError, MapFlags, PhysAddr, PhysFrame, PteEntry, RawTable};

use crate::bits::{self, ADDR_MASK, PTE_PAT, PteBits};
use crate::write;

/// A 32-bit page-table entry (SDM Table 4-6).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(transparent)]
pub struct Pte(u32);

static_assertions::assert_eq_size!(Pte, u32);

impl Pte {
    /// The entry with these raw bits.
    #[inline]
    pub const fn from_bits(bits: u32) -> Self {
        Self(bits)
    }

    /// The raw bits.
    #[inline]
    pub const fn bits(self) -> u32 {
        self.0
    }

    /// The flag bits (11:0).
    #[inline]
    pub const fn hw_flags(self) -> PteBits {
        PteBits::from_bits_truncate(self.0)
    }
}

impl fmt::Debug for Pte {
    #[inline]
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pte")
            .field("addr", &format_args!("{:#010x}", self.0 & ADDR_MASK))
            .field("flags", &self.hw_flags())
            .finish()
    }
}

impl Entry for Pte {
    const NONE: Self = Self(0);

    #[inline]
    fn from_raw(raw: u64) -> Self {
        Self(raw as u32)
    }

    #[inline]
    fn raw(self) -> u64 {
        self.0 as u64
    }

    #[inline]
    fn is_present(self) -> bool {
        self.0 & PteBits::PRESENT.bits() != 0
    }

    #[inline]
    fn addr(self) -> PhysAddr {
        PhysAddr::new_truncate((self.0 & ADDR_MASK) as u64)
    }

    #[inline]
    fn with_addr(self, addr: PhysAddr) -> Self {
        Self(self.0 & !ADDR_MASK | addr.as_u64() as u32 & ADDR_MASK)
    }

    #[inline]
    fn load<T: RawTable + ?Sized>(table: &T, index: usize) -> Self {
        Self(table.load32(index))
    }

    #[inline]
    fn store<T: RawTable + ?Sized>(table: &T, index: usize, new: Self) -> Self {
        Self(write::store(table, index, new.0))
    }

    #[inline]
    fn fill<T: RawTable + ?Sized>(table: &T, index: usize, new: Self) {
        // One 32-bit store: the MMU sees the empty entry or the new one.
        table.store32(index, new.0);
    }

    #[inline]
    fn init<T: RawTable + ?Sized>(table: &T, index: usize, new: Self) {
        table.store32(index, new.0);
    }
}

impl PteEntry for Pte {
    /// PAT at bit 7. `frame` must be below 4 GiB.
    #[inline]
    fn page(frame: PhysFrame, flags: MapFlags) -> Result<Self, EntryError> {
        let addr = bits::phys32(frame.start_address())?;
        Ok(Self(addr | bits::leaf_bits(flags, PTE_PAT)?))
    }

    #[inline]
    fn flags(self) -> MapFlags {
        bits::leaf_flags(self.0, PTE_PAT)
    }
}
