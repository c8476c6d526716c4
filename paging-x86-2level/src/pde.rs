//! The page-directory entry: a PTE table pointer or a 4 MiB page.
//!
//! In 2-level mode the PMD is folded into the PGD, so this one type is both
//! the PGD entry and the PMD entry.

use core::fmt;

use paging_core::{Entry, EntryError, MapFlags, PgdEntry, PhysAddr, PhysFrame, PmdEntry, RawTable};

use crate::bits::{self, ADDR_MASK, LARGE_ADDR_MASK, LARGE_PAT, LARGE_RESERVED_MASK, PdeBits};
use crate::write;

/// A 32-bit page-directory entry (SDM Tables 4-5 and 4-4).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(transparent)]
pub struct Pde(u32);

static_assertions::assert_eq_size!(Pde, u32);

impl Pde {
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

    /// The flag bits (bit 12 only for a 4 MiB page: in a table entry it is
    /// part of the address).
    #[inline]
    pub const fn hw_flags(self) -> PdeBits {
        let mut flags = PdeBits::from_bits_truncate(self.0);
        if !flags.contains(PdeBits::LARGE) {
            flags = flags.difference(PdeBits::LARGE_PAT);
        }
        flags
    }

    /// The address mask for this entry's kind (31:22 for a 4 MiB page, else
    /// 31:12).
    #[inline]
    const fn addr_mask(self) -> u32 {
        if self.0 & PdeBits::LARGE.bits() != 0 {
            LARGE_ADDR_MASK
        } else {
            ADDR_MASK
        }
    }

    /// Bits that must be zero but are set: bits 21:13 of a 4 MiB page (no
    /// PSE-36). A present entry with any of these makes the walk fault.
    #[inline]
    pub const fn reserved_bits(self) -> u32 {
        if self.0 & PdeBits::LARGE.bits() != 0 {
            self.0 & LARGE_RESERVED_MASK
        } else {
            0
        }
    }
}

impl fmt::Debug for Pde {
    #[inline]
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pde")
            .field("addr", &format_args!("{:#010x}", self.0 & self.addr_mask()))
            .field("flags", &self.hw_flags())
            .finish()
    }
}

impl Entry for Pde {
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
        self.0 & PdeBits::PRESENT.bits() != 0
    }

    #[inline]
    fn addr(self) -> PhysAddr {
        PhysAddr::new_truncate((self.0 & self.addr_mask()) as u64)
    }

    #[inline]
    fn with_addr(self, addr: PhysAddr) -> Self {
        let mask = self.addr_mask();
        Self(self.0 & !mask | addr.as_u64() as u32 & mask)
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

impl PmdEntry for Pde {
    /// P | R/W | A, plus U/S when `user`.
    #[inline]
    fn table(frame: PhysFrame, user: bool) -> Result<Self, EntryError> {
        let addr = bits::phys32(frame.start_address())?;
        let mut flags = PdeBits::PRESENT | PdeBits::WRITABLE | PdeBits::ACCESSED;
        if user {
            flags |= PdeBits::USER;
        }
        Ok(Self(addr | flags.bits()))
    }

    /// PS set, PAT at bit 12. `addr` must be 4 MiB aligned and below 4 GiB.
    #[inline]
    fn large(addr: PhysAddr, flags: MapFlags) -> Result<Self, EntryError> {
        let base = bits::phys32(addr)?;
        if base & !LARGE_ADDR_MASK != 0 {
            return Err(EntryError::Unaligned {
                addr,
                align: !LARGE_ADDR_MASK as u64 + 1,
            });
        }
        let flags = bits::leaf_bits(flags, LARGE_PAT)?;
        Ok(Self(base | flags | PdeBits::LARGE.bits()))
    }

    #[inline]
    fn is_large(self) -> bool {
        self.0 & PdeBits::LARGE.bits() != 0
    }

    #[inline]
    fn flags(self) -> MapFlags {
        if self.is_large() {
            bits::leaf_flags(self.0, LARGE_PAT)
        } else {
            bits::table_flags(self.0)
        }
    }
}

impl PgdEntry for Pde {
    /// The folded PGD entry is the PMD entry: the same kernel table entry as
    /// `PmdEntry::table(frame, false)` (P | R/W | A). The generic mapper does
    /// not call this in folded mode.
    #[inline]
    fn table(frame: PhysFrame) -> Result<Self, EntryError> {
        <Self as PmdEntry>::table(frame, false)
    }

    #[inline]
    fn table_flags(self) -> MapFlags {
        <Self as PmdEntry>::flags(self)
    }
}
