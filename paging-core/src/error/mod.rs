//! Errors, embedded-hal style: one enum per operation, each mapping to a small
//! [`ErrorKind`] so generic code (fixmap, kmap) can react to any backend's
//! error without knowing it.

use core::fmt;

use crate::access::AccessError;
use crate::addr::{AddrError, PageSize, PhysAddr, PhysFrame, VirtAddr};
use crate::entry::{EntryError, Level};
use crate::features::CpuFeature;
use crate::flags::MapFlags;
use crate::walk::Translation;

mod any;

pub use any::{AnyError, Detail};

/// The broad class of an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// An address is not aligned as the operation requires.
    Unaligned,
    /// An address or index is outside what the mode, layout or pool allows.
    OutOfRange,
    /// The mode cannot express the request (for example NX in 2-level mode).
    Unsupported,
    /// Something is already mapped there.
    AlreadyMapped,
    /// A large page, or a table, is in the way of a mapping of the other size.
    SizeConflict,
    /// Nothing is mapped there.
    NotMapped,
    /// The frame allocator has nothing left.
    OutOfMemory,
    /// A page-table frame could not be reached.
    Unreachable,
    /// A fixed-size pool (kmap slots, registry) is full.
    Exhausted,
    /// The call was made in a state that does not allow it (for example
    /// moving the fixmap top after a slot was set, or an out-of-order unmap).
    InvalidState,
    /// A table entry above the mapping withholds a right the mapping needs,
    /// and granting it would widen other mappings below that entry.
    Restricted,
    /// The mode can express the request, but the CPU the hierarchy is
    /// bound to lacks a feature it needs (see [`CpuFeatures`](crate::CpuFeatures)).
    MissingFeature,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Unaligned => "unaligned address",
            Self::OutOfRange => "out of range",
            Self::Unsupported => "not supported by this paging mode",
            Self::AlreadyMapped => "already mapped",
            Self::SizeConflict => "conflicts with a mapping of another size",
            Self::NotMapped => "not mapped",
            Self::OutOfMemory => "out of physical frames",
            Self::Unreachable => "page table not reachable",
            Self::Exhausted => "pool exhausted",
            Self::InvalidState => "invalid state for this operation",
            Self::Restricted => "a table entry above withholds a needed right",
            Self::MissingFeature => "the CPU lacks a paging feature the request needs",
        })
    }
}

/// Implemented by every error type of this crate family: the broad class
/// of the error, so generic code (fixmap, kmap, a kernel) can react to any
/// backend's error without knowing it (embedded-hal style). Named so that it
/// does not clash with `core::error::Error`, which every error type also
/// implements.
pub trait PagingError: fmt::Debug {
    /// The broad class of this error.
    fn kind(&self) -> ErrorKind;
}

impl PagingError for ErrorKind {
    fn kind(&self) -> ErrorKind {
        *self
    }
}

impl PagingError for AddrError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::Unaligned { .. } => ErrorKind::Unaligned,
            Self::OutOfRange { .. } => ErrorKind::OutOfRange,
        }
    }
}

impl PagingError for AccessError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::Unreachable(_) => ErrorKind::Unreachable,
            Self::NoSlot => ErrorKind::Exhausted,
        }
    }
}

impl PagingError for EntryError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::Unaligned { .. } => ErrorKind::Unaligned,
            Self::PhysOutOfRange { .. } => ErrorKind::OutOfRange,
            Self::Unsupported(_) => ErrorKind::Unsupported,
            Self::MissingFeature(_) => ErrorKind::MissingFeature,
        }
    }
}

/// A root (PGD) address the mode cannot use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RootError {
    /// Not aligned to the mode's PGD alignment (4096, or 32 for a PDPT).
    Unaligned {
        /// The offending address.
        addr: PhysAddr,
        /// The required alignment.
        align: u64,
    },
    /// CR3 holds a 32-bit address: the PGD must be below 4 GiB.
    AboveCr3Limit(PhysAddr),
    /// No frame was available for a new PGD.
    OutOfFrames,
    /// The new PGD frame could not be reached to zero it.
    Access(AccessError),
}

impl fmt::Display for RootError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unaligned { addr, align } => {
                write!(f, "PGD at {addr} is not aligned to {align} bytes")
            }
            Self::AboveCr3Limit(addr) => write!(f, "PGD at {addr} is above 4 GiB"),
            Self::OutOfFrames => f.write_str("no frame for a new PGD"),
            Self::Access(e) => write!(f, "{e}"),
        }
    }
}

impl core::error::Error for RootError {}

impl PagingError for RootError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::Unaligned { .. } => ErrorKind::Unaligned,
            Self::AboveCr3Limit(_) => ErrorKind::OutOfRange,
            Self::OutOfFrames => ErrorKind::OutOfMemory,
            Self::Access(e) => e.kind(),
        }
    }
}

/// Why a map call did nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapError {
    /// A virtual or physical address (or a length) is not aligned to the
    /// page size being mapped.
    Unaligned {
        /// The offending value.
        addr: u64,
        /// The required alignment.
        align: u64,
    },
    /// The physical address is beyond what the mode can address.
    PhysOutOfRange {
        /// The offending address.
        addr: PhysAddr,
        /// The mode's physical address width.
        max_bits: u32,
    },
    /// The range runs past the end of the 4 GiB virtual space.
    VirtOutOfRange {
        /// Start of the range.
        start: VirtAddr,
        /// Its length in bytes.
        len: u64,
    },
    /// The mode cannot express these flags (NX in 2-level mode).
    Unsupported(MapFlags),
    /// The CPU the mapper is bound to lacks the feature these flags or this
    /// page size need (XD without NX, the PAT bit without the PAT, a 4 MiB
    /// page without PSE). See [`CpuFeatures`](crate::CpuFeatures).
    MissingFeature(CpuFeature),
    /// A page is already mapped at `va` (nothing was changed).
    AlreadyMapped {
        /// The address that is taken.
        va: VirtAddr,
        /// What it maps to now.
        existing: Translation,
    },
    /// The entry for `va` is not present but holds data (a software or swap
    /// entry), so it is not free to overwrite.
    NotEmpty {
        /// The address whose entry is occupied.
        va: VirtAddr,
        /// The raw entry.
        raw: u64,
        /// The level of the entry.
        level: Level,
    },
    /// `va` lies inside an existing large page.
    InLargePage {
        /// The address asked for.
        va: VirtAddr,
        /// The large page that covers it.
        existing: Translation,
    },
    /// A large page was asked for where a PTE table is installed.
    TableInTheWay {
        /// Base of the large page asked for.
        va: VirtAddr,
    },
    /// The frame allocator could not supply the tables needed.
    OutOfFrames,
    /// The frame allocator returned a frame for a page table that the mode
    /// cannot point a table entry at (PAE: at or above 2^`max_bits`; 2-level:
    /// at or above 4 GiB). The frame was given back and nothing changed.
    TableOutOfReach {
        /// The frame the allocator returned.
        frame: PhysFrame,
        /// The widest table address the mode can hold, in bits.
        max_bits: u32,
    },
    /// The table entry at `level` above `va` withholds a right the new
    /// mapping needs (R/W, U/S, or execution through XD), and granting it
    /// would widen another present mapping below that entry. See
    /// [`Mapper`](crate::Mapper)'s rule on restrictive table entries.
    TableRestricts {
        /// The address being mapped.
        va: VirtAddr,
        /// The level of the restrictive entry.
        level: Level,
        /// The entry as it is (left unchanged).
        raw: u64,
    },
    /// A table could not be reached.
    Access(AccessError),
}

impl fmt::Display for MapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unaligned { addr, align } => write!(f, "{addr:#x} is not aligned to {align:#x}"),
            Self::PhysOutOfRange { addr, max_bits } => {
                write!(f, "physical address {addr} is beyond {max_bits} bits")
            }
            Self::VirtOutOfRange { start, len } => {
                write!(f, "range {start} + {len:#x} runs past 4 GiB")
            }
            Self::Unsupported(flags) => write!(f, "flags {flags:?} are not supported in this mode"),
            Self::MissingFeature(feature) => write!(f, "the CPU has no {feature}"),
            Self::AlreadyMapped { va, existing } => {
                write!(f, "{va} is already mapped to {}", existing.phys_addr())
            }
            Self::NotEmpty { va, raw, level } => {
                write!(f, "{level} entry for {va} is not empty ({raw:#x})")
            }
            Self::InLargePage { va, existing } => {
                write!(f, "{va} is inside a {} page", existing.size)
            }
            Self::TableInTheWay { va } => write!(f, "a page table is installed at {va}"),
            Self::OutOfFrames => f.write_str("out of frames for page tables"),
            Self::TableOutOfReach { frame, max_bits } => write!(
                f,
                "table frame {} is beyond the {max_bits} bits a table entry can hold",
                frame.start_address()
            ),
            Self::TableRestricts { va, level, raw } => write!(
                f,
                "{level} entry {raw:#x} above {va} withholds a right the mapping needs \
                 and would widen other mappings below it"
            ),
            Self::Access(e) => write!(f, "{e}"),
        }
    }
}

impl core::error::Error for MapError {}

impl PagingError for MapError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::Unaligned { .. } => ErrorKind::Unaligned,
            Self::PhysOutOfRange { .. } | Self::VirtOutOfRange { .. } => ErrorKind::OutOfRange,
            Self::Unsupported(_) => ErrorKind::Unsupported,
            Self::MissingFeature(_) => ErrorKind::MissingFeature,
            Self::AlreadyMapped { .. } | Self::NotEmpty { .. } => ErrorKind::AlreadyMapped,
            Self::InLargePage { .. } | Self::TableInTheWay { .. } => ErrorKind::SizeConflict,
            Self::OutOfFrames => ErrorKind::OutOfMemory,
            Self::TableOutOfReach { .. } => ErrorKind::OutOfRange,
            Self::TableRestricts { .. } => ErrorKind::Restricted,
            Self::Access(e) => e.kind(),
        }
    }
}

impl From<AccessError> for MapError {
    fn from(e: AccessError) -> Self {
        Self::Access(e)
    }
}

/// Why an unmap, flag update or translation did nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnmapError {
    /// The address is not 4 KiB aligned.
    Unaligned {
        /// The offending address.
        addr: VirtAddr,
    },
    /// Nothing is mapped at the address.
    NotMapped {
        /// The address asked for.
        va: VirtAddr,
        /// The level at which the walk found no present entry.
        level: Level,
    },
    /// The address is inside a large page but not at its start: unmap (or
    /// change) the large page at its base.
    InLargePage {
        /// The address asked for.
        va: VirtAddr,
        /// The base of the large page.
        base: VirtAddr,
        /// Its size.
        size: PageSize,
    },
    /// The new flags cannot be expressed in this mode (flag updates only).
    Unsupported(MapFlags),
    /// The CPU the mapper is bound to lacks the feature the new flags need
    /// (flag updates only; see [`MapError::MissingFeature`]).
    MissingFeature(CpuFeature),
    /// The range runs past the end of the 4 GiB virtual space (range calls).
    VirtOutOfRange {
        /// Start of the range.
        start: VirtAddr,
        /// Its length in bytes.
        len: u64,
    },
    /// The table entry at `level` above `va` withholds a right the new flags
    /// need, and granting it would widen another present mapping below it
    /// (flag updates only; see [`MapError::TableRestricts`]).
    TableRestricts {
        /// The address whose flags were to change.
        va: VirtAddr,
        /// The level of the restrictive entry.
        level: Level,
        /// The entry as it is (left unchanged).
        raw: u64,
    },
    /// A table could not be reached.
    Access(AccessError),
}

impl fmt::Display for UnmapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unaligned { addr } => write!(f, "{addr} is not page aligned"),
            Self::VirtOutOfRange { start, len } => {
                write!(f, "range {start} + {len:#x} runs past 4 GiB")
            }
            Self::NotMapped { va, level } => write!(f, "{va} is not mapped (no {level} entry)"),
            Self::InLargePage { va, base, size } => {
                write!(f, "{va} is inside the {size} page at {base}")
            }
            Self::Unsupported(flags) => write!(f, "flags {flags:?} are not supported in this mode"),
            Self::MissingFeature(feature) => write!(f, "the CPU has no {feature}"),
            Self::TableRestricts { va, level, raw } => write!(
                f,
                "{level} entry {raw:#x} above {va} withholds a right the flags need \
                 and would widen other mappings below it"
            ),
            Self::Access(e) => write!(f, "{e}"),
        }
    }
}

impl core::error::Error for UnmapError {}

impl PagingError for UnmapError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::Unaligned { .. } => ErrorKind::Unaligned,
            Self::NotMapped { .. } => ErrorKind::NotMapped,
            Self::InLargePage { .. } => ErrorKind::SizeConflict,
            Self::Unsupported(_) => ErrorKind::Unsupported,
            Self::MissingFeature(_) => ErrorKind::MissingFeature,
            Self::VirtOutOfRange { .. } => ErrorKind::OutOfRange,
            Self::TableRestricts { .. } => ErrorKind::Restricted,
            Self::Access(e) => e.kind(),
        }
    }
}

impl From<AccessError> for UnmapError {
    fn from(e: AccessError) -> Self {
        Self::Access(e)
    }
}

/// Flag updates fail for the same reasons as unmaps.
pub type UpdateFlagsError = UnmapError;

/// Why a translation found nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TranslateError {
    /// No present entry at `level`.
    NotMapped {
        /// The level at which the walk stopped.
        level: Level,
    },
    /// A table could not be reached.
    Access(AccessError),
}

impl fmt::Display for TranslateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotMapped { level } => write!(f, "not mapped (no {level} entry)"),
            Self::Access(e) => write!(f, "{e}"),
        }
    }
}

impl core::error::Error for TranslateError {}

impl PagingError for TranslateError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::NotMapped { .. } => ErrorKind::NotMapped,
            Self::Access(e) => e.kind(),
        }
    }
}

impl From<AccessError> for TranslateError {
    fn from(e: AccessError) -> Self {
        Self::Access(e)
    }
}

/// Why [`Mapper::free_empty_tables`](crate::Mapper::free_empty_tables) stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FreeError {
    /// The range start or length is not 4 KiB aligned.
    Unaligned {
        /// The offending value.
        addr: u64,
    },
    /// The range runs past the end of the 4 GiB virtual space.
    VirtOutOfRange {
        /// Start of the range.
        start: VirtAddr,
        /// Its length in bytes.
        len: u64,
    },
    /// A table could not be reached. Tables freed before this point stay
    /// freed (each was unlinked, flushed and released as a unit).
    Access(AccessError),
}

impl fmt::Display for FreeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unaligned { addr } => write!(f, "{addr:#x} is not page aligned"),
            Self::VirtOutOfRange { start, len } => {
                write!(f, "range {start} + {len:#x} runs past 4 GiB")
            }
            Self::Access(e) => write!(f, "{e}"),
        }
    }
}

impl core::error::Error for FreeError {}

impl PagingError for FreeError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::Unaligned { .. } => ErrorKind::Unaligned,
            Self::VirtOutOfRange { .. } => ErrorKind::OutOfRange,
            Self::Access(e) => e.kind(),
        }
    }
}

impl From<AccessError> for FreeError {
    fn from(e: AccessError) -> Self {
        Self::Access(e)
    }
}

/// Why [`Mapper::install_pte_tables`](crate::Mapper::install_pte_tables) did nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstallError {
    /// The start is not aligned to the PMD span (4 MiB or 2 MiB).
    Unaligned {
        /// The offending address.
        addr: VirtAddr,
        /// The required alignment.
        align: u64,
    },
    /// The tables would cover addresses past 4 GiB.
    VirtOutOfRange {
        /// Start of the range.
        start: VirtAddr,
        /// Number of tables asked for.
        count: usize,
    },
    /// More tables than one call handles.
    TooManyTables {
        /// Number asked for.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// The table frames are beyond what the mode can point at.
    PhysOutOfRange {
        /// The first frame.
        first: PhysAddr,
        /// The mode's physical address width.
        max_bits: u32,
    },
    /// A large page covers part of the range.
    LargePageInTheWay {
        /// Base of the large page.
        va: VirtAddr,
        /// What it maps.
        existing: Translation,
    },
    /// An entry on the way is not present but holds data.
    NotEmpty {
        /// Address whose entry is occupied.
        va: VirtAddr,
        /// The raw entry.
        raw: u64,
        /// Its level.
        level: Level,
    },
    /// No frame for a missing PMD table (PAE).
    OutOfFrames,
    /// A table could not be reached.
    Access(AccessError),
}

impl fmt::Display for InstallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unaligned { addr, align } => write!(f, "{addr} is not aligned to {align:#x}"),
            Self::VirtOutOfRange { start, count } => {
                write!(f, "{count} tables from {start} run past 4 GiB")
            }
            Self::TooManyTables { count, max } => {
                write!(f, "{count} tables asked for, at most {max}")
            }
            Self::PhysOutOfRange { first, max_bits } => {
                write!(f, "table frames from {first} are beyond {max_bits} bits")
            }
            Self::LargePageInTheWay { va, existing } => {
                write!(f, "a {} page is mapped at {va}", existing.size)
            }
            Self::NotEmpty { va, raw, level } => {
                write!(f, "{level} entry for {va} is not empty ({raw:#x})")
            }
            Self::OutOfFrames => f.write_str("out of frames for a PMD table"),
            Self::Access(e) => write!(f, "{e}"),
        }
    }
}

impl core::error::Error for InstallError {}

impl PagingError for InstallError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::Unaligned { .. } => ErrorKind::Unaligned,
            Self::VirtOutOfRange { .. }
            | Self::TooManyTables { .. }
            | Self::PhysOutOfRange { .. } => ErrorKind::OutOfRange,
            Self::LargePageInTheWay { .. } => ErrorKind::SizeConflict,
            Self::NotEmpty { .. } => ErrorKind::AlreadyMapped,
            Self::OutOfFrames => ErrorKind::OutOfMemory,
            Self::Access(e) => e.kind(),
        }
    }
}

impl From<AccessError> for InstallError {
    fn from(e: AccessError) -> Self {
        Self::Access(e)
    }
}

/// Why [`Mapper::set_memory`](crate::Mapper::set_memory) or
/// [`Mapper::merge_large_pages`](crate::Mapper::merge_large_pages) did
/// nothing (see each for the one documented exception: a table access
/// failing after a split).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AttrError {
    /// The address or length is not 4 KiB aligned.
    Unaligned {
        /// The offending value.
        addr: VirtAddr,
    },
    /// The range runs past the end of the 4 GiB virtual space.
    VirtOutOfRange {
        /// Start of the range.
        start: VirtAddr,
        /// Its length in bytes.
        len: u64,
    },
    /// A page of the range is not mapped: attributes change only on a
    /// range that is mapped throughout.
    NotMapped {
        /// The first unmapped page.
        va: VirtAddr,
        /// The level whose entry is not present ([`Level::Pmd`] also
        /// stands for a missing PAE PDPT entry above it).
        level: Level,
    },
    /// The new flags cannot be expressed in this mode (`NO_EXECUTE` in
    /// 2-level mode).
    Unsupported(MapFlags),
    /// The CPU the mapper is bound to lacks the feature the change needs
    /// (NX for no-execute, the PAT for write-combining or write-protected).
    MissingFeature(CpuFeature),
    /// The PAT layout given has no entry for the memory type asked for.
    Cache(crate::cache::CacheTypeError),
    /// The large page that would be split holds bits that 4 KiB entries
    /// cannot carry (a reserved bit, or PSE-36 address bits above 4 GiB):
    /// it is left as it is.
    Unsplittable {
        /// Where the range cuts the large page.
        va: VirtAddr,
        /// The large entry as it is.
        raw: u64,
    },
    /// A table entry above a page withholds a right the change grants, and
    /// granting it would widen another present mapping below it (see
    /// [`UnmapError::TableRestricts`]).
    TableRestricts {
        /// The page whose flags were to change.
        va: VirtAddr,
        /// The level of the restrictive entry.
        level: Level,
        /// The entry as it is (left unchanged).
        raw: u64,
    },
    /// The allocator had no frame for the PTE table of a split.
    OutOfFrames,
    /// The allocator returned a table frame the mode's entries cannot point
    /// at (it was given back).
    TableOutOfReach {
        /// The frame the allocator returned.
        frame: PhysFrame,
        /// The widest table address the mode can hold, in bits.
        max_bits: u32,
    },
    /// A table could not be reached.
    Access(AccessError),
}

impl fmt::Display for AttrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unaligned { addr } => write!(f, "{addr} is not page aligned"),
            Self::VirtOutOfRange { start, len } => {
                write!(f, "range {start} + {len:#x} runs past 4 GiB")
            }
            Self::NotMapped { va, level } => write!(f, "{va} is not mapped (no {level} entry)"),
            Self::Unsupported(flags) => write!(f, "flags {flags:?} are not supported in this mode"),
            Self::MissingFeature(feature) => write!(f, "the CPU has no {feature}"),
            Self::Cache(e) => write!(f, "{e}"),
            Self::Unsplittable { va, raw } => write!(
                f,
                "the large page entry {raw:#x} at {va} holds bits 4 KiB entries cannot carry"
            ),
            Self::TableRestricts { va, level, raw } => write!(
                f,
                "{level} entry {raw:#x} above {va} withholds a right the flags need \
                 and would widen other mappings below it"
            ),
            Self::OutOfFrames => f.write_str("out of frames for page tables"),
            Self::TableOutOfReach { frame, max_bits } => write!(
                f,
                "table frame {} is beyond the {max_bits} bits a table entry can hold",
                frame.start_address()
            ),
            Self::Access(e) => write!(f, "{e}"),
        }
    }
}

impl core::error::Error for AttrError {}

impl PagingError for AttrError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::Unaligned { .. } => ErrorKind::Unaligned,
            Self::VirtOutOfRange { .. } => ErrorKind::OutOfRange,
            Self::NotMapped { .. } => ErrorKind::NotMapped,
            Self::Unsupported(_) => ErrorKind::Unsupported,
            Self::MissingFeature(_) => ErrorKind::MissingFeature,
            Self::Cache(e) => e.kind(),
            Self::Unsplittable { .. } => ErrorKind::SizeConflict,
            Self::TableRestricts { .. } => ErrorKind::Restricted,
            Self::OutOfFrames => ErrorKind::OutOfMemory,
            Self::TableOutOfReach { .. } => ErrorKind::Unreachable,
            Self::Access(e) => e.kind(),
        }
    }
}

impl From<AccessError> for AttrError {
    fn from(e: AccessError) -> Self {
        Self::Access(e)
    }
}

impl From<UnmapError> for AttrError {
    /// The same reason, for the checks `set_memory` shares with
    /// [`protect_range`](crate::Mapper::protect_range).
    fn from(e: UnmapError) -> Self {
        match e {
            UnmapError::Unaligned { addr } => Self::Unaligned { addr },
            UnmapError::NotMapped { va, level } => Self::NotMapped { va, level },
            UnmapError::InLargePage { va, .. } => Self::Unsplittable { va, raw: 0 },
            UnmapError::Unsupported(flags) => Self::Unsupported(flags),
            UnmapError::MissingFeature(feature) => Self::MissingFeature(feature),
            UnmapError::VirtOutOfRange { start, len } => Self::VirtOutOfRange { start, len },
            UnmapError::TableRestricts { va, level, raw } => {
                Self::TableRestricts { va, level, raw }
            }
            UnmapError::Access(e) => Self::Access(e),
        }
    }
}
