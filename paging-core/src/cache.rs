//! Memory types: [`CacheType`], the Page Attribute Table ([`PatLayout`]),
//! and how a page's PAT, PCD and PWT bits select one (SDM Vol. 3A 11.12).
//!
//! A leaf entry does not name its memory type: its PAT, PCD and PWT bits form
//! a 3-bit index, `PAT * 4 + PCD * 2 + PWT`, into the eight entries of the
//! IA32_PAT MSR, and the entry found there is the type. So the bits that give
//! write-combining depend on what the kernel wrote into IA32_PAT, and a type
//! the PAT has no entry for cannot be asked for at all. [`PatLayout`] is that
//! MSR value; [`PatLayout::flags_for`] and [`PatLayout::cache_type`] convert
//! between types and [`MapFlags`] bits, and [`MapFlags::with_cache`] /
//! [`MapFlags::cache_type`] do the same on a set of flags.
//!
//! The PAT bit is bit 7 of a PTE and bit 12 of a PDE that maps a large page;
//! the generic [`MapFlags::PAT`] flag stands for both, and the backends put
//! it in the right place. PCD and PWT are bits 4 and 3 everywhere.
//!
//! The type the PAT selects is combined with the MTRRs' type for the
//! physical address (SDM table 11-7) to give the effective type; the MTRRs
//! are the firmware's business and not modelled here.

use core::fmt;

use crate::error::{ErrorKind, PagingError};
use crate::flags::MapFlags;

/// A memory type the PAT can select (SDM Vol. 3A table 11-10).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CacheType {
    /// Write-back (WB): fully cached; the normal type for RAM.
    WriteBack,
    /// Write-through (WT): reads cached, writes go to memory too.
    WriteThrough,
    /// Uncached-minus (UC-): uncached, but an MTRR of write-combining
    /// turns it into WC (the PCD-only type of the power-on PAT).
    UncachedMinus,
    /// Uncached (UC): strongly ordered, never cached, whatever the MTRRs
    /// say; for device registers.
    Uncached,
    /// Write-combining (WC): uncached, writes buffered and merged; for
    /// framebuffers. Never alias it with a cached mapping (SDM 11.12.4).
    WriteCombining,
    /// Write-protected (WP): reads cached, writes go to memory and
    /// invalidate the line in every cache.
    WriteProtected,
}

impl CacheType {
    /// Every type, in the order of the enum.
    pub const ALL: [CacheType; 6] = [
        Self::WriteBack,
        Self::WriteThrough,
        Self::UncachedMinus,
        Self::Uncached,
        Self::WriteCombining,
        Self::WriteProtected,
    ];

    /// The type's encoding in a PAT entry: UC 0, WC 1, WT 4, WP 5, WB 6,
    /// UC- 7 (2 and 3 are reserved).
    pub const fn pat_encoding(self) -> u8 {
        match self {
            Self::Uncached => 0,
            Self::WriteCombining => 1,
            Self::WriteThrough => 4,
            Self::WriteProtected => 5,
            Self::WriteBack => 6,
            Self::UncachedMinus => 7,
        }
    }

    /// The type a PAT entry encodes, or `None` for a reserved encoding
    /// (2, 3, or 8 and above: writing one to IA32_PAT raises #GP).
    pub const fn from_pat_encoding(encoding: u8) -> Option<Self> {
        match encoding {
            0 => Some(Self::Uncached),
            1 => Some(Self::WriteCombining),
            4 => Some(Self::WriteThrough),
            5 => Some(Self::WriteProtected),
            6 => Some(Self::WriteBack),
            7 => Some(Self::UncachedMinus),
            _ => None,
        }
    }

    /// The usual short name: WB, WT, UC-, UC, WC or WP.
    pub const fn mnemonic(self) -> &'static str {
        match self {
            Self::WriteBack => "WB",
            Self::WriteThrough => "WT",
            Self::UncachedMinus => "UC-",
            Self::Uncached => "UC",
            Self::WriteCombining => "WC",
            Self::WriteProtected => "WP",
        }
    }

    const fn eq(self, other: Self) -> bool {
        self as u8 == other as u8
    }
}

impl fmt::Display for CacheType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.mnemonic())
    }
}

/// The eight entries of the Page Attribute Table: the value of the
/// IA32_PAT MSR (0x277), entry `i` in bits `8i+2 .. 8i`.
///
/// Two layouts are provided:
///
/// | index (PAT PCD PWT) | 0 | 1 | 2 | 3 | 4 | 5 | 6 | 7 |
/// |---|---|---|---|---|---|---|---|---|
/// | [`POWER_ON`](Self::POWER_ON) | WB | WT | UC- | UC | WB | WT | UC- | UC |
/// | [`RECOMMENDED`](Self::RECOMMENDED) | WB | WT | UC- | UC | **WC** | **WP** | UC- | UC |
///
/// The recommended layout keeps the lower half as it is at power-on, so
/// PCD/PWT keep their classic meaning (and the memory type of page-table
/// and CR3 accesses, which only use entries 0-3, does not change), and puts
/// write-combining and write-protected in entries 4 and 5, which the
/// power-on layout spends on duplicates of 0 and 1. It is Xen's layout,
/// except that entry 6 stays UC- as at power-on. (Linux instead puts WC at
/// entry 1, which changes what a lone PWT means.) Only entries 4 and 5
/// differ from the power-on layout, so a mapping made before the switch
/// changes type only if it set the PAT bit with PCD clear.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PatLayout {
    entries: [CacheType; 8],
}

impl PatLayout {
    /// The PAT after power-up or reset (SDM table 11-12):
    /// WB, WT, UC-, UC, WB, WT, UC-, UC. It has no WC or WP entry.
    pub const POWER_ON: Self = Self::new([
        CacheType::WriteBack,
        CacheType::WriteThrough,
        CacheType::UncachedMinus,
        CacheType::Uncached,
        CacheType::WriteBack,
        CacheType::WriteThrough,
        CacheType::UncachedMinus,
        CacheType::Uncached,
    ]);

    /// Every type reachable: the power-on layout with entry 4 WC and entry 5
    /// WP (see the type's documentation for why).
    pub const RECOMMENDED: Self = Self::new([
        CacheType::WriteBack,
        CacheType::WriteThrough,
        CacheType::UncachedMinus,
        CacheType::Uncached,
        CacheType::WriteCombining,
        CacheType::WriteProtected,
        CacheType::UncachedMinus,
        CacheType::Uncached,
    ]);

    /// A layout with these entries (PA0 first).
    pub const fn new(entries: [CacheType; 8]) -> Self {
        Self { entries }
    }

    /// The entries, PA0 first.
    pub const fn entries(&self) -> [CacheType; 8] {
        self.entries
    }

    /// Entry `index` (only the low three bits of `index` are used).
    pub const fn entry(&self, index: usize) -> CacheType {
        self.entries[index & 7]
    }

    /// The IA32_PAT MSR value: entry `i`'s encoding in bits `8i+2 .. 8i`,
    /// every reserved bit zero.
    pub const fn to_msr(&self) -> u64 {
        let mut value = 0u64;
        let mut i = 0;
        while i < 8 {
            value |= (self.entries[i].pat_encoding() as u64) << (8 * i);
            i += 1;
        }
        value
    }

    /// The layout an IA32_PAT value describes, or
    /// [`CacheTypeError::ReservedEncoding`] for the first entry whose byte
    /// is not a memory type (a value WRMSR would refuse with #GP).
    pub const fn from_msr(value: u64) -> Result<Self, CacheTypeError> {
        let mut entries = [CacheType::WriteBack; 8];
        let mut i = 0;
        while i < 8 {
            let byte = (value >> (8 * i)) as u8;
            match CacheType::from_pat_encoding(byte) {
                Some(t) => entries[i] = t,
                None => {
                    return Err(CacheTypeError::ReservedEncoding {
                        index: i as u8,
                        encoding: byte,
                    });
                }
            }
            i += 1;
        }
        Ok(Self::new(entries))
    }

    /// The lowest index whose entry is `cache`, if any.
    pub const fn index_of(&self, cache: CacheType) -> Option<usize> {
        let mut i = 0;
        while i < 8 {
            if self.entries[i].eq(cache) {
                return Some(i);
            }
            i += 1;
        }
        None
    }

    /// The PAT, PCD and PWT flags that select `cache` (the lowest matching
    /// entry, so write-back is no flag at all), or
    /// [`CacheTypeError::NotInLayout`] if no entry holds it (WC or WP under
    /// [`POWER_ON`](Self::POWER_ON)).
    pub const fn flags_for(&self, cache: CacheType) -> Result<MapFlags, CacheTypeError> {
        match self.index_of(cache) {
            Some(index) => Ok(index_flags(index)),
            None => Err(CacheTypeError::NotInLayout {
                cache,
                layout: *self,
            }),
        }
    }

    /// The type `flags`' PAT, PCD and PWT bits select (other flags are
    /// ignored).
    pub const fn cache_type(&self, flags: MapFlags) -> CacheType {
        self.entry(flags_index(flags))
    }
}

impl Default for PatLayout {
    /// [`PatLayout::POWER_ON`], what the CPU has until someone writes
    /// IA32_PAT.
    fn default() -> Self {
        Self::POWER_ON
    }
}

/// The flags for PAT index `index`: PAT = bit 2, PCD = bit 1, PWT = bit 0.
const fn index_flags(index: usize) -> MapFlags {
    let mut flags = MapFlags::empty();
    if index & 4 != 0 {
        flags = flags.union(MapFlags::PAT);
    }
    if index & 2 != 0 {
        flags = flags.union(MapFlags::CACHE_DISABLE);
    }
    if index & 1 != 0 {
        flags = flags.union(MapFlags::WRITE_THROUGH);
    }
    flags
}

/// The PAT index `flags` select: `PAT * 4 + PCD * 2 + PWT`.
const fn flags_index(flags: MapFlags) -> usize {
    (flags.contains(MapFlags::PAT) as usize) << 2
        | (flags.contains(MapFlags::CACHE_DISABLE) as usize) << 1
        | flags.contains(MapFlags::WRITE_THROUGH) as usize
}

/// Why a memory type could not be turned into flags, or a PAT value into a
/// layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheTypeError {
    /// No entry of the layout holds the type (for example write-combining
    /// under [`PatLayout::POWER_ON`]): program a layout that has it first
    /// (see [`PatLayout::RECOMMENDED`]).
    NotInLayout {
        /// The type asked for.
        cache: CacheType,
        /// The layout that lacks it.
        layout: PatLayout,
    },
    /// A PAT entry's byte is not a memory type (2, 3, or 8 and above).
    ReservedEncoding {
        /// The entry (0-7).
        index: u8,
        /// Its byte.
        encoding: u8,
    },
}

impl fmt::Display for CacheTypeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotInLayout { cache, layout } => {
                write!(f, "the PAT {:#018x} has no {cache} entry", layout.to_msr())
            }
            Self::ReservedEncoding { index, encoding } => {
                write!(f, "PAT entry {index} is {encoding:#x}, not a memory type")
            }
        }
    }
}

impl core::error::Error for CacheTypeError {}

impl PagingError for CacheTypeError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::NotInLayout { .. } => ErrorKind::Unsupported,
            Self::ReservedEncoding { .. } => ErrorKind::OutOfRange,
        }
    }
}

impl MapFlags {
    /// The three flags that select a page's PAT entry: PAT, PCD, PWT.
    pub const CACHE_BITS: Self = Self::PAT
        .union(Self::CACHE_DISABLE)
        .union(Self::WRITE_THROUGH);

    /// These flags with PAT, PCD and PWT replaced by those that select
    /// `cache` in `layout`; every other flag is kept. Fails, and gives
    /// nothing to map with, if `layout` has no entry for `cache`.
    ///
    /// ```
    /// use paging_core::{CacheType, CacheTypeError, MapFlags, PatLayout};
    ///
    /// let wc = MapFlags::KERNEL_RW.with_cache(CacheType::WriteCombining, &PatLayout::RECOMMENDED)?;
    /// assert_eq!(wc, MapFlags::KERNEL_RW | MapFlags::PAT); // entry 4
    /// assert!(matches!(
    ///     MapFlags::KERNEL_RW.with_cache(CacheType::WriteCombining, &PatLayout::POWER_ON),
    ///     Err(CacheTypeError::NotInLayout { .. })
    /// ));
    /// # Ok::<(), CacheTypeError>(())
    /// ```
    pub const fn with_cache(
        self,
        cache: CacheType,
        layout: &PatLayout,
    ) -> Result<Self, CacheTypeError> {
        match layout.flags_for(cache) {
            Ok(bits) => Ok(self.difference(Self::CACHE_BITS).union(bits)),
            Err(e) => Err(e),
        }
    }

    /// The memory type these flags select in `layout`.
    pub const fn cache_type(self, layout: &PatLayout) -> CacheType {
        layout.cache_type(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings_round_trip_and_reserved_ones_are_refused() {
        for t in CacheType::ALL {
            assert_eq!(CacheType::from_pat_encoding(t.pat_encoding()), Some(t));
        }
        for e in [2u8, 3, 8, 0x10, 0xFF] {
            assert_eq!(CacheType::from_pat_encoding(e), None);
        }
    }

    #[test]
    fn layouts_have_the_sdm_msr_values() {
        // SDM table 11-12: the power-on value of IA32_PAT.
        assert_eq!(PatLayout::POWER_ON.to_msr(), 0x0007_0406_0007_0406);
        assert_eq!(PatLayout::RECOMMENDED.to_msr(), 0x0007_0501_0007_0406);
        for layout in [PatLayout::POWER_ON, PatLayout::RECOMMENDED] {
            assert_eq!(PatLayout::from_msr(layout.to_msr()), Ok(layout));
        }
        assert_eq!(
            PatLayout::from_msr(0x0007_0406_0007_0402),
            Err(CacheTypeError::ReservedEncoding {
                index: 0,
                encoding: 2
            })
        );
        assert_eq!(
            PatLayout::from_msr(0x0807_0406_0007_0406),
            Err(CacheTypeError::ReservedEncoding {
                index: 7,
                encoding: 8
            })
        );
    }

    #[test]
    fn every_index_round_trips_through_the_flags() {
        for layout in [PatLayout::POWER_ON, PatLayout::RECOMMENDED] {
            for index in 0..8 {
                let flags = index_flags(index);
                assert_eq!(flags_index(flags), index);
                assert_eq!(
                    layout.cache_type(flags | MapFlags::KERNEL_RW),
                    layout.entry(index)
                );
            }
        }
    }

    #[test]
    fn each_type_gets_its_lowest_entry_and_missing_types_are_refused() {
        let pat = PatLayout::RECOMMENDED;
        for t in CacheType::ALL {
            let flags = MapFlags::KERNEL_RW.with_cache(t, &pat).unwrap();
            assert_eq!(flags.cache_type(&pat), t);
            assert_eq!(flags.difference(MapFlags::CACHE_BITS), MapFlags::KERNEL_RW);
        }
        assert_eq!(pat.flags_for(CacheType::WriteBack), Ok(MapFlags::empty()));
        assert_eq!(pat.flags_for(CacheType::WriteCombining), Ok(MapFlags::PAT));
        // Replacing, not adding: UC then WB leaves no cache bit.
        let uc = MapFlags::KERNEL_UNCACHED | MapFlags::PAT;
        assert_eq!(
            uc.with_cache(CacheType::WriteBack, &pat),
            Ok(MapFlags::KERNEL_RW)
        );
        for t in [CacheType::WriteCombining, CacheType::WriteProtected] {
            let err = MapFlags::KERNEL_RW
                .with_cache(t, &PatLayout::POWER_ON)
                .unwrap_err();
            assert_eq!(
                err,
                CacheTypeError::NotInLayout {
                    cache: t,
                    layout: PatLayout::POWER_ON
                }
            );
            assert_eq!(err.kind(), ErrorKind::Unsupported);
        }
    }
}
