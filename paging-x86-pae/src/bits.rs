//! The hardware bits of PAE entries (Intel SDM Vol. 3A, 4.4, Tables 4-8 to
//! 4-11), and the conversion between them and the generic [`MapFlags`].

use paging_core::{EntryError, MapFlags, PhysAddr};

bitflags::bitflags! {
    /// The bits a PDPTE may have. Everything else below bit 12 (bits 2:1 and
    /// 8:5), and bit 63, is reserved: a present PDPTE with any of them set
    /// makes the CR3 load that latches it raise #GP.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub struct PdpteBits: u64 {
        /// Bit 0, P: a page directory is present.
        const PRESENT = 1 << 0;
        /// Bit 3, PWT: write-through access to the page directory.
        const WRITE_THROUGH = 1 << 3;
        /// Bit 4, PCD: uncached access to the page directory.
        const CACHE_DISABLE = 1 << 4;
        /// Bits 11:9: ignored by the CPU, free for software.
        const AVAILABLE = 0b111 << 9;
    }
}

bitflags::bitflags! {
    /// The flag bits of a PAE page-directory entry: a table entry, or a
    /// 2 MiB page when `LARGE` (PS) is set.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub struct PdeBits: u64 {
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
        /// Bit 6, D: set by the CPU on write (2 MiB page only).
        const DIRTY = 1 << 6;
        /// Bit 7, PS: the entry maps a 2 MiB page.
        const LARGE = 1 << 7;
        /// Bit 8, G: global (2 MiB page only).
        const GLOBAL = 1 << 8;
        /// Bits 11:9: ignored by the CPU, free for software.
        const AVAILABLE = 0b111 << 9;
        /// Bit 12, PAT of a 2 MiB page. In a table entry this bit is part of
        /// the address.
        const LARGE_PAT = 1 << 12;
        /// Bit 63, XD: instruction fetches fault (with EFER.NXE).
        const NO_EXECUTE = 1 << 63;
    }
}

bitflags::bitflags! {
    /// The flag bits of a PAE page-table entry (a 4 KiB page).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub struct PteBits: u64 {
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
        /// Bit 63, XD: instruction fetches fault (with EFER.NXE).
        const NO_EXECUTE = 1 << 63;
    }
}

/// Address field of a PDPTE, a PTE or a table PDE: bits 51:12.
pub const ADDR_MASK: u64 = 0x000F_FFFF_FFFF_F000;
/// Address field of a 2 MiB PDE: bits 51:21.
pub const LARGE_ADDR_MASK: u64 = 0x000F_FFFF_FFE0_0000;
/// Bits 20:13 of a 2 MiB PDE: reserved, must be zero.
pub const LARGE_RESERVED_MASK: u64 = 0x001F_E000;
/// The reserved low and high bits of a PDPTE: 2:1, 8:5 and 63.
pub const PDPTE_RESERVED_MASK: u64 = 0x8000_0000_0000_01E6;
/// The widest physical address an entry can hold.
pub const PHYS_BITS: u32 = 52;

/// Bits `top:max_phys_bits` (with `max_phys_bits` clamped to 32..=52): the
/// part of the address field above the CPU's MAXPHYADDR, plus bits 62:52.
#[inline]
pub(crate) const fn above_phys(max_phys_bits: u32, top: u32) -> u64 {
    let m = if max_phys_bits < 32 {
        32
    } else if max_phys_bits > PHYS_BITS {
        PHYS_BITS
    } else {
        max_phys_bits
    };
    let upto_top = if top >= 63 {
        u64::MAX
    } else {
        (1 << (top + 1)) - 1
    };
    upto_top & !((1 << m) - 1)
}

/// Where PAT lives in a PTE.
pub(crate) const PTE_PAT: u64 = PteBits::PAT.bits();
/// Where PAT lives in a 2 MiB PDE.
pub(crate) const LARGE_PAT: u64 = PdeBits::LARGE_PAT.bits();

/// The raw bits of a leaf with `flags`, PAT at `pat`. Bits `MapFlags` does
/// not define cannot be expressed.
#[inline]
pub(crate) fn leaf_bits(flags: MapFlags, pat: u64) -> Result<u64, EntryError> {
    let unknown = MapFlags::from_bits_retain(flags.bits() & !MapFlags::all().bits());
    if !unknown.is_empty() {
        return Err(EntryError::Unsupported(unknown));
    }
    let mut raw = flags.x86_leaf_bits(pat);
    if flags.contains(MapFlags::NO_EXECUTE) {
        raw |= 1 << 63;
    }
    Ok(raw)
}

/// The generic flags of a leaf whose PAT bit is at `pat`.
#[inline]
pub(crate) fn leaf_flags(raw: u64, pat: u64) -> MapFlags {
    let flags = MapFlags::from_x86_leaf_bits(raw, pat);
    if raw & 1 << 63 != 0 {
        flags.union(MapFlags::NO_EXECUTE)
    } else {
        flags
    }
}

/// The generic flags of a table PDE: what it lets through to the entries
/// below it (XD applies to them all; D, G and PAT mean nothing here; the
/// software bits are reported as they are).
#[inline]
pub(crate) fn table_flags(raw: u64) -> MapFlags {
    leaf_flags(raw, 0).difference(MapFlags::DIRTY | MapFlags::GLOBAL)
}

/// `addr` as entry bits, or the error saying it does not fit 52 bits.
#[inline]
pub(crate) fn phys52(addr: PhysAddr) -> Result<u64, EntryError> {
    if addr.fits_bits(PHYS_BITS) {
        Ok(addr.as_u64())
    } else {
        Err(EntryError::PhysOutOfRange {
            addr,
            max_bits: PHYS_BITS,
        })
    }
}

static_assertions::const_assert_eq!(ADDR_MASK & PteBits::all().bits(), 0);
static_assertions::const_assert_eq!(ADDR_MASK & PdpteBits::all().bits(), 0);
static_assertions::const_assert_eq!(ADDR_MASK & PDPTE_RESERVED_MASK, 0);
static_assertions::const_assert_eq!(
    PdpteBits::all().bits() | PDPTE_RESERVED_MASK,
    0x8000_0000_0000_0FFF
);
static_assertions::const_assert_eq!(
    LARGE_ADDR_MASK & (PdeBits::all().bits() | LARGE_RESERVED_MASK),
    0
);
static_assertions::const_assert_eq!(
    LARGE_ADDR_MASK | LARGE_RESERVED_MASK | PdeBits::all().bits() | above_phys(52, 62),
    u64::MAX
);
