//! The PAE page-table entry: one 4 KiB page.

use core::fmt;

use paging_core::{Entry, EntryError, MapFlags, PhysAddr, PhysFrame, PteEntry, RawTable};

use crate::bits::{self, ADDR_MASK, PTE_PAT, PteBits};
use crate::write;

/// A PAE page-table entry (SDM Table 4-11).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(transparent)]
pub struct Pte(u64);

static_assertions::assert_eq_size!(Pte, u64);

impl Pte {
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

    /// The flag bits (11:0 and 63).
    #[inline]
    pub const fn hw_flags(self) -> PteBits {
        PteBits::from_bits_truncate(self.0)
    }

    /// Reserved bits that are set, for a CPU with `max_phys_bits` physical
    /// address bits and EFER.NXE = `nxe`: 62:MAXPHYADDR, and 63 without NXE.
    #[inline]
    pub const fn reserved_bits(self, max_phys_bits: u32, nxe: bool) -> u64 {
        let mut mask = bits::above_phys(max_phys_bits, 62);
        if !nxe {
            mask |= PteBits::NO_EXECUTE.bits();
        }
        self.0 & mask
    }
}

impl fmt::Debug for Pte {
    #[inline]
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pte")
            .field("addr", &format_args!("{:#x}", self.0 & ADDR_MASK))
            .field("flags", &self.hw_flags())
            .finish()
    }
}

impl Entry for Pte {
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
        self.0 & PteBits::PRESENT.bits() != 0
    }

    #[inline]
    fn addr(self) -> PhysAddr {
        PhysAddr::new_truncate(self.0 & ADDR_MASK)
    }

    #[inline]
    fn with_addr(self, addr: PhysAddr) -> Self {
        Self(self.0 & !ADDR_MASK | addr.as_u64() & ADDR_MASK)
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

impl PteEntry for Pte {
    /// PAT at bit 7, XD at bit 63.
    #[inline]
    fn page(frame: PhysFrame, flags: MapFlags) -> Result<Self, EntryError> {
        let addr = bits::phys52(frame.start_address())?;
        Ok(Self(addr | bits::leaf_bits(flags, PTE_PAT)?))
    }

    #[inline]
    fn flags(self) -> MapFlags {
        bits::leaf_flags(self.0, PTE_PAT)
    }
}
