//! The page-directory-pointer-table entry: the PGD level of PAE.
//!
//! The PDPT has four entries and the CPU *latches* them into registers when
//! CR3 is loaded: a change to a PDPTE is invisible until the next CR3 load
//! (the mapper's `Flush` carries that reload). Most bits are reserved here:
//! a PDPTE has no R/W, U/S, A, D, PS, G or XD, and setting any of them makes
//! the CR3 load raise #GP.

use core::fmt;

use paging_core::{Entry, EntryError, MapFlags, PgdEntry, PhysAddr, PhysFrame, RawTable};

use crate::bits::{self, ADDR_MASK, PDPTE_RESERVED_MASK, PdpteBits};
use crate::write;

/// A PAE page-directory-pointer-table entry (SDM Table 4-8).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(transparent)]
pub struct Pdpte(u64);

static_assertions::assert_eq_size!(Pdpte, u64);

impl Pdpte {
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

    /// The allowed flag bits that are set.
    #[inline]
    pub const fn hw_flags(self) -> PdpteBits {
        PdpteBits::from_bits_truncate(self.0)
    }

    /// The same entry with PWT/PCD set as in `cache` (other bits of `cache`
    /// are ignored): how the CPU caches the page directory itself.
    #[inline]
    pub const fn with_cache(self, cache: PdpteBits) -> Self {
        let mask = PdpteBits::WRITE_THROUGH
            .union(PdpteBits::CACHE_DISABLE)
            .bits();
        Self(self.0 & !mask | cache.bits() & mask)
    }

    /// Reserved bits that are set, for a CPU with `max_phys_bits` physical
    /// address bits (MAXPHYADDR): 2:1, 8:5, 63, and 62:MAXPHYADDR. Loading
    /// CR3 while a present PDPTE has any of them raises #GP.
    #[inline]
    pub const fn reserved_bits(self, max_phys_bits: u32) -> u64 {
        self.0 & (PDPTE_RESERVED_MASK | bits::above_phys(max_phys_bits, 62))
    }
}

impl fmt::Debug for Pdpte {
    #[inline]
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pdpte")
            .field("addr", &format_args!("{:#x}", self.0 & ADDR_MASK))
            .field("flags", &self.hw_flags())
            .finish()
    }
}

impl Entry for Pdpte {
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
        self.0 & PdpteBits::PRESENT.bits() != 0
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

impl PgdEntry for Pdpte {
    /// P and the address, nothing else: R/W and U/S are reserved here and
    /// are granted by the PDEs below.
    #[inline]
    fn table(frame: PhysFrame) -> Result<Self, EntryError> {
        let addr = bits::phys52(frame.start_address())?;
        Ok(Self(addr | PdpteBits::PRESENT.bits()))
    }

    #[inline]
    fn without_reserved_bits(self) -> Self {
        // Bits 1, 2, 5-8 and 63 (`PDPTE_RESERVED_MASK`) and 52-62: no
        // MAXPHYADDR is wider than 52 bits.
        Self(self.0 & !(PDPTE_RESERVED_MASK | bits::above_phys(52, 62)))
    }

    #[inline]
    fn table_flags(self) -> MapFlags {
        let hw = self.hw_flags();
        let mut flags = MapFlags::empty();
        for (bit, flag) in [
            (PdpteBits::PRESENT, MapFlags::PRESENT),
            (PdpteBits::WRITE_THROUGH, MapFlags::WRITE_THROUGH),
            (PdpteBits::CACHE_DISABLE, MapFlags::CACHE_DISABLE),
        ] {
            if hw.contains(bit) {
                flags |= flag;
            }
        }
        flags
    }
}
