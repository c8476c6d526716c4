//! The PAE page-directory entry (the PMD level): a PTE table pointer or a
//! 2 MiB page.

use core::fmt;

use paging_core::{Entry, EntryError, MapFlags, PhysAddr, PhysFrame, PmdEntry, RawTable};

use crate::bits::{self, ADDR_MASK, LARGE_ADDR_MASK, LARGE_PAT, LARGE_RESERVED_MASK, PdeBits};
use crate::write;

/// A PAE page-directory entry (SDM Tables 4-9 and 4-10).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(transparent)]
pub struct Pde(u64);

static_assertions::assert_eq_size!(Pde, u64);

impl Pde {
    /// The entry with these raw bits.
    #[inline]
    pub const fn from_bits(bits: u64) -> Self {
        Self(bits)
    }

    /// The raw bits.
    #[inline]
    pub const fn bits(self) -> u64 {
        self.0
    }

    /// The flag bits (bit 12 only for a 2 MiB page: in a table entry it is
    /// part of the address).
    #[inline]
    pub const fn hw_flags(self) -> PdeBits {
        let mut flags = PdeBits::from_bits_truncate(self.0);
        if !flags.contains(PdeBits::LARGE) {
            flags = flags.difference(PdeBits::LARGE_PAT);
        }
        flags
    }

    #[inline]
    const fn addr_mask(self) -> u64 {
        if self.0 & PdeBits::LARGE.bits() != 0 {
            LARGE_ADDR_MASK
        } else {
            ADDR_MASK
        }
    }

    /// Reserved bits that are set, for a CPU with `max_phys_bits` physical
    /// address bits and EFER.NXE = `nxe`: 62:MAXPHYADDR, 63 without NXE, and
    /// 20:13 of a 2 MiB page. A walk through a present entry with any of
    /// them raises a reserved-bit page fault.
    #[inline]
    pub const fn reserved_bits(self, max_phys_bits: u32, nxe: bool) -> u64 {
        let mut mask = bits::above_phys(max_phys_bits, 62);
        if !nxe {
            mask |= PdeBits::NO_EXECUTE.bits();
        }
        if self.0 & PdeBits::LARGE.bits() != 0 {
            mask |= LARGE_RESERVED_MASK;
        }
        self.0 & mask
    }
}

impl fmt::Debug for Pde {
    #[inline]
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pde")
            .field("addr", &format_args!("{:#x}", self.0 & self.addr_mask()))
            .field("flags", &self.hw_flags())
            .finish()
    }
}

impl Entry for Pde {
    const NONE: Self = Self(0);

    #[inline]
    fn from_raw(raw: u64) -> Self {
        Self(raw)
    }

    #[inline]
    fn raw(self) -> u64 {
        self.0
    }

    #[inline]
    fn is_present(self) -> bool {
        self.0 & PdeBits::PRESENT.bits() != 0
    }

    #[inline]
    fn addr(self) -> PhysAddr {
        PhysAddr::new_truncate(self.0 & self.addr_mask())
    }

    #[inline]
    fn with_addr(self, addr: PhysAddr) -> Self {
        let mask = self.addr_mask();
        Self(self.0 & !mask | addr.as_u64() & mask)
    }

    #[inline]
    fn load<T: RawTable + ?Sized>(table: &T, index: usize) -> Self {
        Self(table.load64(index))
    }

    #[inline]
    fn store<T: RawTable + ?Sized>(table: &T, index: usize, new: Self) -> Self {
        Self(write::store(table, index, new.0))
    }

    #[inline]
    fn fill<T: RawTable + ?Sized>(table: &T, index: usize, new: Self) {
        write::fill(table, index, new.0);
    }

    #[inline]
    fn init<T: RawTable + ?Sized>(table: &T, index: usize, new: Self) {
        table.store64(index, new.0);
    }
}

impl PmdEntry for Pde {
    /// P | R/W | A, plus U/S when `user`.
    #[inline]
    fn table(frame: PhysFrame, user: bool) -> Result<Self, EntryError> {
        let addr = bits::phys52(frame.start_address())?;
        let mut flags = PdeBits::PRESENT | PdeBits::WRITABLE | PdeBits::ACCESSED;
        if user {
            flags |= PdeBits::USER;
        }
        Ok(Self(addr | flags.bits()))
    }

    /// PS set, PAT at bit 12, XD at bit 63. `addr` must be 2 MiB aligned.
    #[inline]
    fn large(addr: PhysAddr, flags: MapFlags) -> Result<Self, EntryError> {
        let base = bits::phys52(addr)?;
        if base & !LARGE_ADDR_MASK != 0 {
            return Err(EntryError::Unaligned {
                addr,
                align: 1 << LARGE_ADDR_MASK.trailing_zeros(),
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
