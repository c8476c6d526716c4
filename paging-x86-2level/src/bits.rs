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

/// The flag bits a generic 4 KiB / large-page mapping can set, at the
/// positions they share in a PTE and in a 4 MiB PDE (everything but PAT).
/// (`leaf_bits` and `leaf_flags` compute it; the test below checks them
/// against it.)
#[cfg(test)]
const COMMON: [(MapFlags, u32); 8] = [
    (MapFlags::PRESENT, 1 << 0),
    (MapFlags::WRITABLE, 1 << 1),
    (MapFlags::USER, 1 << 2),
    (MapFlags::WRITE_THROUGH, 1 << 3),
    (MapFlags::CACHE_DISABLE, 1 << 4),
    (MapFlags::ACCESSED, 1 << 5),
    (MapFlags::DIRTY, 1 << 6),
    (MapFlags::GLOBAL, 1 << 8),
];

/// Where PAT lives in a PTE.
pub(crate) const PTE_PAT: u32 = PteBits::PAT.bits();
/// Where PAT lives in a 4 MiB PDE.
pub(crate) const LARGE_PAT: u32 = PdeBits::LARGE_PAT.bits();

/// The raw bits of a leaf (PTE or 4 MiB PDE) with `flags`, PAT at `pat`.
/// `NO_EXECUTE`, and any bit `MapFlags` does not define, cannot be expressed.
pub(crate) fn leaf_bits(flags: MapFlags, pat: u32) -> Result<u32, EntryError> {
    let unsupported = flags.intersection(MapFlags::NO_EXECUTE)
        | MapFlags::from_bits_retain(flags.bits() & !MapFlags::all().bits());
    if !unsupported.is_empty() {
        return Err(EntryError::Unsupported(unsupported));
    }
    // P, RW, US, PWT, PCD, A, D are bits 0-6 in both encodings; G moves
    // from generic bit 7 to bit 8 (see `COMMON`).
    let generic = u32::from(flags.bits());
    let mut raw = generic & 0x7F | (generic & u32::from(MapFlags::GLOBAL.bits())) << 1;
    if flags.contains(MapFlags::PAT) {
        raw |= pat;
    }
    Ok(raw)
}

/// The generic flags of a leaf whose PAT bit is at `pat`.
pub(crate) fn leaf_flags(raw: u32, pat: u32) -> MapFlags {
    // The inverse of `leaf_bits`: bits 0-6 as they are, G down to bit 7.
    let bits = (raw & 0x7F) as u16 | ((raw >> 1) as u16 & MapFlags::GLOBAL.bits());
    let mut flags = MapFlags::from_bits_retain(bits);
    if raw & pat != 0 {
        flags |= MapFlags::PAT;
    }
    flags
}

/// The generic flags a table PDE carries: what it lets through to the
/// entries below it (D, G and PAT mean nothing in a table entry).
pub(crate) fn table_flags(raw: u32) -> MapFlags {
    leaf_flags(raw, 0).difference(MapFlags::DIRTY | MapFlags::GLOBAL)
}

/// A 32-bit physical address, or the error saying it does not fit.
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

#[cfg(test)]
mod flag_table_tests {
    use super::*;

    #[test]
    fn leaf_bits_and_flags_follow_the_common_table() {
        for bits in 0..=MapFlags::all().bits() {
            let flags = MapFlags::from_bits_retain(bits);
            let Ok(raw) = leaf_bits(flags, 1 << 7) else {
                continue;
            };
            let mut want: u32 = 0;
            for (flag, bit) in COMMON {
                if flags.contains(flag) {
                    want |= bit;
                }
            }
            if flags.contains(MapFlags::PAT) {
                want |= 1 << 7;
            }
            assert_eq!(raw, want, "{flags:?}");
            assert_eq!(leaf_flags(raw, 1 << 7), flags);
        }
    }
}

// `leaf_bits`/`leaf_flags` rely on the generic flags' documented positions.
static_assertions::const_assert_eq!(MapFlags::PRESENT.bits(), 1 << 0);
static_assertions::const_assert_eq!(MapFlags::WRITABLE.bits(), 1 << 1);
static_assertions::const_assert_eq!(MapFlags::USER.bits(), 1 << 2);
static_assertions::const_assert_eq!(MapFlags::WRITE_THROUGH.bits(), 1 << 3);
static_assertions::const_assert_eq!(MapFlags::CACHE_DISABLE.bits(), 1 << 4);
static_assertions::const_assert_eq!(MapFlags::ACCESSED.bits(), 1 << 5);
static_assertions::const_assert_eq!(MapFlags::DIRTY.bits(), 1 << 6);
static_assertions::const_assert_eq!(MapFlags::GLOBAL.bits(), 1 << 7);
