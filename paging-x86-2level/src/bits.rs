//! The hardware bits of 32-bit page-directory and page-table entries
//! (Intel SDM Vol. 3A, 4.3, Tables 4-4 to 4-6), and the conversion between
//! them and the generic [`MapFlags`].

use paging_core::{EntryError, MapFlags};

bitflags::bitflags! {
    /// The flag bits of a page-table entry (a 4 KiB page).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub struct PteBits: u32 {
        /// Bit 0, P: the entry maps a page.
        const PRESENT = 1 << 0;
        /// Bit 1, R/W: writes allowed.
        const WRITABLE = 1 << 1;
        /// Bit 2, U/S: ring 3 may access.
        const USER = 1 << 2;
        /// Bit 3, PWT: write-through.
        const WRITE_THROUGH = 1 << 3;
        /// Bit 4, PCD: cache disabled.
        const CACHE_DISABLE = 1 << 4;
        /// Bit 5, A: set by the CPU on access.
        const ACCESSED = 1 << 5;
        /// Bit 6, D: set by the CPU on write.
        const DIRTY = 1 << 6;
        /// Bit 7, PAT: page attribute table index bit of a 4 KiB page.
        const PAT = 1 << 7;
        /// Bit 8, G: global (with CR4.PGE).
        const GLOBAL = 1 << 8;
        /// Bits 11:9: ignored by the CPU, free for software.
        const AVAILABLE = 0b111 << 9;
    }
}

bitflags::bitflags! {
    /// The flag bits of a page-directory entry: a table entry, or a 4 MiB
    /// page when `LARGE` (PS) is set.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub struct PdeBits: u32 {
        /// Bit 0, P: the entry is valid.
        const PRESENT = 1 << 0;
        /// Bit 1, R/W: writes allowed (for a table: to anything below it).
        const WRITABLE = 1 << 1;
        /// Bit 2, U/S: ring 3 may access (for a table: anything below it).
        const USER = 1 << 2;
        /// Bit 3, PWT: write-through.
        const WRITE_THROUGH = 1 << 3;
        /// Bit 4, PCD: cache disabled.
        const CACHE_DISABLE = 1 << 4;
        /// Bit 5, A: set by the CPU on access.
        const ACCESSED = 1 << 5;
        /// Bit 6, D: set by the CPU on write (4 MiB page only; ignored in a
        /// table entry).
        const DIRTY = 1 << 6;
        /// Bit 7, PS: the entry maps a 4 MiB page (needs CR4.PSE).
        const LARGE = 1 << 7;
        /// Bit 8, G: global (4 MiB page only; ignored in a table entry).
        const GLOBAL = 1 << 8;
        /// Bits 11:9: ignored by the CPU, free for software.
        const AVAILABLE = 0b111 << 9;
        /// Bit 12, PAT of a 4 MiB page. In a table entry this bit is part of
        /// the address.
        const LARGE_PAT = 1 << 12;
    }
}

/// Address field of a PTE or a table PDE: bits 31:12.
pub const ADDR_MASK: u32 = 0xFFFF_F000;
/// Address field of a 4 MiB PDE: bits 31:22.
pub const LARGE_ADDR_MASK: u32 = 0xFFC0_0000;
/// Bits 21:13 of a 4 MiB PDE. With PSE-36 they would hold physical address
/// bits 39:32; this backend does not use PSE-36, so they must stay zero.
pub const LARGE_RESERVED_MASK: u32 = 0x003F_E000;
/// Physical address width of this format.
pub const PHYS_BITS: u32 = 32;

/// Where PAT lives in a PTE.
pub(crate) const PTE_PAT: u32 = PteBits::PAT.bits();
/// Where PAT lives in a 4 MiB PDE.
pub(crate) const LARGE_PAT: u32 = PdeBits::LARGE_PAT.bits();

/// The raw bits of a leaf (PTE or 4 MiB PDE) with `flags`, PAT at `pat`.
/// `NO_EXECUTE`, and any bit `MapFlags` does not define, cannot be expressed.
#[inline]
pub(crate) fn leaf_bits(flags: MapFlags, pat: u32) -> Result<u32, EntryError> {
    let unsupported = flags.intersection(MapFlags::NO_EXECUTE)
        | MapFlags::from_bits_retain(flags.bits() & !MapFlags::all().bits());
    if !unsupported.is_empty() {
        return Err(EntryError::Unsupported(unsupported));
    }
    // The low 12 bits only: the cast drops nothing.
    Ok(flags.x86_leaf_bits(u64::from(pat)) as u32)
}

/// The generic flags of a leaf whose PAT bit is at `pat`.
#[inline]
pub(crate) fn leaf_flags(raw: u32, pat: u32) -> MapFlags {
    MapFlags::from_x86_leaf_bits(u64::from(raw), u64::from(pat))
}

/// The generic flags a table PDE carries: what it lets through to the
/// entries below it (D, G and PAT mean nothing in a table entry; the
/// software bits are reported as they are).
#[inline]
pub(crate) fn table_flags(raw: u32) -> MapFlags {
    leaf_flags(raw, 0).difference(MapFlags::DIRTY | MapFlags::GLOBAL)
}

/// A 32-bit physical address, or the error saying it does not fit.
#[inline]
pub(crate) fn phys32(addr: paging_core::PhysAddr) -> Result<u32, EntryError> {
    if addr.fits_bits(PHYS_BITS) {
        Ok(addr.as_u64() as u32)
    } else {
        Err(EntryError::PhysOutOfRange {
            addr,
            max_bits: PHYS_BITS,
        })
    }
}

static_assertions::const_assert_eq!(
    ADDR_MASK & PdeBits::all().bits() & !PdeBits::LARGE_PAT.bits(),
    0
);
static_assertions::const_assert_eq!(ADDR_MASK & PteBits::all().bits(), 0);
static_assertions::const_assert_eq!(
    LARGE_ADDR_MASK & (PdeBits::all().bits() | LARGE_RESERVED_MASK),
    0
);
static_assertions::const_assert_eq!(
    LARGE_ADDR_MASK | LARGE_RESERVED_MASK | PdeBits::all().bits(),
    u32::MAX
);
