//! The generic PGD / PMD / PTE entry traits that each backend implements.
//!
//! The model is Linux's: three named levels. 2-level i386 *folds* the PMD
//! into the PGD (a PGD entry *is* the PMD entry, so a walk reads the same slot
//! twice); PAE has a real PMD below a four-entry PGD (the PDPT).

use core::fmt;

use crate::addr::{PhysAddr, PhysFrame};
use crate::flags::MapFlags;
use crate::table::RawTable;

/// A level of the generic page-table model.
///
/// # Which level an error names in 2-level mode
///
/// A 2-level page-directory entry is the PGD entry and the (folded) PMD
/// entry at once. Errors and walks always report it as [`Level::Pmd`]: it
/// is the entry that maps a large page or points at a PTE table, which is
/// the PMD's job in both modes, so a kernel can handle "the entry above the
/// PTE table" the same way in 2-level and PAE. [`Level::Pgd`] is reported
/// only in PAE mode, for a PDPT entry (an empty one, or one that is present
/// but not a table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Level {
    /// Top level: the page directory (2-level) or the PDPT (PAE). Named by
    /// errors in PAE mode only (see above).
    Pgd,
    /// Middle level: folded into the PGD (2-level) or the page directory
    /// (PAE). Every 2-level page-directory entry is reported at this level.
    Pmd,
    /// Bottom level: page tables mapping 4 KiB pages.
    Pte,
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Pgd => "PGD",
            Self::Pmd => "PMD",
            Self::Pte => "PTE",
        })
    }
}

/// Why a backend cannot build the requested entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryError {
    /// The physical address is not aligned for this kind of entry.
    Unaligned {
        /// The offending address.
        addr: PhysAddr,
        /// The required alignment.
        align: u64,
    },
    /// The physical address does not fit in the entry's address field.
    PhysOutOfRange {
        /// The offending address.
        addr: PhysAddr,
        /// How many physical address bits the format holds.
        max_bits: u32,
    },
    /// The format has no way to express these flags (for example
    /// `NO_EXECUTE` in 2-level mode).
    Unsupported(MapFlags),
    /// The format can express the flags, but the CPU the entry is for lacks
    /// the feature they need (see [`CpuFeatures`](crate::CpuFeatures)).
    MissingFeature(crate::features::CpuFeature),
}

impl fmt::Display for EntryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unaligned { addr, align } => {
                write!(f, "physical address {addr} is not aligned to {align:#x}")
            }
            Self::PhysOutOfRange { addr, max_bits } => {
                write!(f, "physical address {addr} does not fit in {max_bits} bits")
            }
            Self::Unsupported(flags) => write!(f, "flags {flags:?} cannot be expressed"),
            Self::MissingFeature(feature) => write!(f, "the CPU has no {feature}"),
        }
    }
}

impl core::error::Error for EntryError {}

/// What every entry, at every level, has: raw bits, presence, an address, and
/// the way it is read from and written to table memory.
pub trait Entry: Copy + Eq + fmt::Debug + Send + Sync + 'static {
    /// The empty (all-zero, not present) entry.
    const NONE: Self;

    /// The entry with these raw bits (truncated to the entry's width).
    fn from_raw(raw: u64) -> Self;

    /// The raw bits, zero-extended to 64.
    fn raw(self) -> u64;

    /// Whether the P bit is set.
    fn is_present(self) -> bool;

    /// Whether every bit is zero (nothing, not even software bits, is stored).
    fn is_none(self) -> bool {
        self.raw() == 0
    }

    /// The physical address in the entry's address field: a table, a 4 KiB
    /// frame, or the base of a large page.
    fn addr(self) -> PhysAddr;

    /// The same entry (every flag and software bit kept) pointing at `addr`
    /// instead. Bits of `addr` the address field cannot hold are dropped:
    /// callers validate `addr` first (this is the fast path for filling many
    /// entries that differ only in their frame).
    fn with_addr(self, addr: PhysAddr) -> Self;

    /// Read entry `index` of `table`.
    fn load<T: RawTable + ?Sized>(table: &T, index: usize) -> Self;

    /// Replace entry `index` of `table` with `new`, using the store order the
    /// MMU needs to never see a half-written present entry, and return the
    /// previous value (including Accessed/Dirty bits the MMU set).
    fn store<T: RawTable + ?Sized>(table: &T, index: usize, new: Self) -> Self;

    /// Write `new` into entry `index`, which the caller has just read as
    /// empty (all zero) and which no other software can write meanwhile (the
    /// MMU never writes a non-present entry): the same store order as
    /// [`store`](Self::store), without reading the old value again. The
    /// default calls `store`.
    fn fill<T: RawTable + ?Sized>(table: &T, index: usize, new: Self) {
        let _ = Self::store(table, index, new);
    }

    /// Write entry `index` of a table that no MMU can reach yet (not linked
    /// into any hierarchy): plain stores, no ordering, no read of the old
    /// value (the frame may hold garbage).
    fn init<T: RawTable + ?Sized>(table: &T, index: usize, new: Self);
}

/// A top-level entry. In PAE mode this is a PDPTE: it can only point at a PMD
/// table and is latched by the CPU at CR3 load. In 2-level mode the PGD entry
/// is the (folded) PMD entry and this trait's constructor is not used.
pub trait PgdEntry: Entry {
    /// An entry pointing at the PMD table in `frame`.
    fn table(frame: PhysFrame) -> Result<Self, EntryError>;

    /// The generic flags the entry carries (a PAE PDPTE holds only present
    /// and the cache bits; a folded 2-level PGD entry is a PMD entry).
    fn table_flags(self) -> MapFlags;

    /// The entry as another top-level table may hold it: every bit the CPU
    /// reserves at this level cleared. Emulators write bits real CPUs never
    /// do (QEMU's TCG sets Accessed, bit 5, in the PAE PDPTEs it walks,
    /// where it is reserved); copied into a new directory such an entry
    /// makes the next CR3 load raise #GP. The default keeps every bit (a
    /// 2-level PGD entry has no reserved bits a walk could set).
    fn without_reserved_bits(self) -> Self {
        self
    }
}

/// A middle-level entry: points at a PTE table or maps a large page.
pub trait PmdEntry: Entry {
    /// An entry pointing at the PTE table in `frame`. It is always writable;
    /// `user` sets U/S so user mappings below it can be reached from ring 3.
    fn table(frame: PhysFrame, user: bool) -> Result<Self, EntryError>;

    /// A large-page entry (PS set) mapping `addr` with `flags`.
    fn large(addr: PhysAddr, flags: MapFlags) -> Result<Self, EntryError>;

    /// Whether the PS bit is set (this entry maps a large page).
    fn is_large(self) -> bool;

    /// What this table entry lets through to the entries below it: only
    /// [`MapFlags::WRITABLE`], [`MapFlags::USER`] and
    /// [`MapFlags::NO_EXECUTE`] (XD), read straight from the raw bits at the
    /// positions both i386 formats share (R/W bit 1, U/S bit 2, XD bit 63).
    /// The mapper asks this on every map, so it skips the full flag
    /// conversion of [`flags`](Self::flags).
    #[inline(always)]
    fn table_rights(self) -> MapFlags {
        let raw = self.raw();
        MapFlags::from_bits_retain(
            (raw & 0b110) as u16 | (((raw >> 63) as u16) * MapFlags::NO_EXECUTE.bits()),
        )
    }

    /// This table entry granting more: R/W set if `write`, U/S set if
    /// `user`, XD cleared if `exec`; every other bit (cache bits, software
    /// bits, Accessed, the address) kept as it is. The default uses the bit
    /// positions both i386 formats share (R/W bit 1, U/S bit 2, XD bit 63).
    fn widened(self, write: bool, user: bool, exec: bool) -> Self {
        let mut raw = self.raw();
        if write {
            raw |= 1 << 1;
        }
        if user {
            raw |= 1 << 2;
        }
        if exec {
            raw &= !(1 << 63);
        }
        Self::from_raw(raw)
    }

    /// The generic flags of the entry (for a table entry: what it allows).
    fn flags(self) -> MapFlags;
}

/// A bottom-level entry mapping one 4 KiB page.
///
/// As in every x86 format, the frame address sits in place in the raw bits
/// (bits 12 and up), so adding 4096 to the raw value of a present entry maps
/// the next frame with the same flags: the mapper fills new tables that way.
pub trait PteEntry: Entry {
    /// An entry mapping `frame` with `flags`.
    fn page(frame: PhysFrame, flags: MapFlags) -> Result<Self, EntryError>;

    /// The generic flags of the entry.
    fn flags(self) -> MapFlags;
}
