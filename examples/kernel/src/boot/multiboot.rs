//! Parsing of the Multiboot v1 information structure and its memory map.
//!
//! Everything here works on byte slices ([`crate::boot::phys_window`] supplies the
//! real ones; the self-tests supply forged ones). The loader's structures are
//! untrusted input: they are read with `zerocopy` (unaligned little-endian
//! fields, `read_from_prefix`), every length and offset is checked, and a
//! malformed structure yields a [`MultibootError`] instead of an
//! out-of-bounds read.

use core::fmt;

use zerocopy::little_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, KnownLayout};

/// Value of EAX at entry when a multiboot v1 loader started the kernel.
pub const BOOTLOADER_MAGIC: u32 = 0x2BAD_B002;

/// `flags` bit: `mem_lower`/`mem_upper` are valid.
const INFO_MEMORY: u32 = 1 << 0;
/// `flags` bit: `cmdline` is valid.
const INFO_CMDLINE: u32 = 1 << 2;
/// `flags` bit: `mmap_length`/`mmap_addr` are valid.
const INFO_MEMORY_MAP: u32 = 1 << 6;

/// The leading part of the information structure that the kernel uses.
#[derive(FromBytes, KnownLayout, Immutable)]
#[repr(C)]
struct RawInfo {
    flags: U32,
    mem_lower: U32,
    mem_upper: U32,
    boot_device: U32,
    cmdline: U32,
    mods_count: U32,
    mods_addr: U32,
    syms: [U32; 4],
    mmap_length: U32,
    mmap_addr: U32,
}

/// Bytes of the information structure that [`BootInfo::parse`] reads.
pub const INFO_SIZE: usize = size_of::<RawInfo>();

/// One memory-map entry after its leading `size` field.
#[derive(FromBytes, KnownLayout, Immutable)]
#[repr(C)]
struct RawMapEntry {
    base_addr: U64,
    length: U64,
    kind: U32,
}

/// Something wrong with the loader's structures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MultibootError {
    /// EAX at entry was not [`BOOTLOADER_MAGIC`].
    BadMagic(u32),
    /// The information structure is shorter than [`INFO_SIZE`].
    InfoTruncated(usize),
    /// `flags` says there is no memory map.
    NoMemoryMap,
    /// A map entry's `size` field is too small for the fields it must hold.
    EntryTooShort {
        /// Byte offset of the entry in the map.
        offset: usize,
        /// Its `size` field.
        size: u32,
    },
    /// A map entry runs past `mmap_length`.
    EntryOverruns {
        /// Byte offset of the entry in the map.
        offset: usize,
    },
    /// A region's `base + length` overflows 64 bits.
    RegionOverflows {
        /// The region's base address.
        base: u64,
    },
}

impl fmt::Display for MultibootError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::BadMagic(magic) => write!(f, "bad multiboot magic {magic:#x}"),
            Self::InfoTruncated(len) => write!(f, "multiboot info truncated ({len} bytes)"),
            Self::NoMemoryMap => f.write_str("the loader passed no memory map"),
            Self::EntryTooShort { offset, size } => {
                write!(f, "memory-map entry at offset {offset} has size {size}")
            }
            Self::EntryOverruns { offset } => {
                write!(f, "memory-map entry at offset {offset} runs past the map")
            }
            Self::RegionOverflows { base } => {
                write!(f, "memory region at {base:#x} wraps past 2^64")
            }
        }
    }
}

/// What a memory region may be used for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum RegionKind {
    /// RAM free for the OS (type 1).
    Usable,
    /// ACPI tables, reusable once read (type 3).
    AcpiReclaimable,
    /// ACPI non-volatile storage (type 4).
    AcpiNvs,
    /// Reserved (type 2 and every unknown type).
    Reserved,
    /// Defective RAM (type 5).
    Defective,
}

impl RegionKind {
    /// Kind of a multiboot memory-map `type` value.
    pub fn from_multiboot(kind: u32) -> Self {
        match kind {
            1 => Self::Usable,
            3 => Self::AcpiReclaimable,
            4 => Self::AcpiNvs,
            5 => Self::Defective,
            _ => Self::Reserved,
        }
    }
}

/// A physical memory region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    /// First byte.
    pub base: u64,
    /// Length in bytes.
    pub len: u64,
    /// Its use.
    pub kind: RegionKind,
}

impl Region {
    /// One past the last byte (callers ensure it does not overflow).
    pub fn end(&self) -> u64 {
        self.base + self.len
    }
}

/// The fields of the information structure that the kernel uses.
#[derive(Clone, Copy, Debug)]
pub struct BootInfo {
    /// KiB of memory below 1 MiB and from 1 MiB to the first hole, if given.
    pub mem_kib: Option<(u32, u32)>,
    /// Physical address of the NUL-terminated command line, if given.
    pub cmdline: Option<u32>,
    /// Physical address and byte length of the memory map, if given.
    pub memory_map: Option<(u32, u32)>,
}

impl BootInfo {
    /// Parses the information structure (its first [`INFO_SIZE`] bytes).
    pub fn parse(bytes: &[u8]) -> Result<Self, MultibootError> {
        let (raw, _) = RawInfo::read_from_prefix(bytes)
            .map_err(|_| MultibootError::InfoTruncated(bytes.len()))?;
        let flags = raw.flags.get();
        let has = |bit: u32| flags & bit != 0;
        Ok(Self {
            mem_kib: has(INFO_MEMORY).then(|| (raw.mem_lower.get(), raw.mem_upper.get())),
            cmdline: has(INFO_CMDLINE).then(|| raw.cmdline.get()),
            memory_map: has(INFO_MEMORY_MAP).then(|| (raw.mmap_addr.get(), raw.mmap_length.get())),
        })
    }
}

/// Iterator over the regions of a memory map's bytes.
///
/// Yields `Err` once for the first malformed entry, then stops.
pub struct MemoryMapEntries<'a> {
    bytes: &'a [u8],
    offset: usize,
}

impl<'a> MemoryMapEntries<'a> {
    /// Entries of the map held in `bytes` (exactly `mmap_length` bytes).
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, offset: 0 }
    }

    fn entry_at(&self, offset: usize) -> Result<(Region, usize), MultibootError> {
        let rest = self
            .bytes
            .get(offset..)
            .ok_or(MultibootError::EntryOverruns { offset })?;
        let (size, after_size) =
            U32::read_from_prefix(rest).map_err(|_| MultibootError::EntryOverruns { offset })?;
        let size = size.get();
        if (size as usize) < size_of::<RawMapEntry>() {
            return Err(MultibootError::EntryTooShort { offset, size });
        }
        let body = after_size
            .get(..size as usize)
            .ok_or(MultibootError::EntryOverruns { offset })?;
        let (raw, _) = RawMapEntry::read_from_prefix(body)
            .map_err(|_| MultibootError::EntryTooShort { offset, size })?;
        let base = raw.base_addr.get();
        let len = raw.length.get();
        if base.checked_add(len).is_none() {
            return Err(MultibootError::RegionOverflows { base });
        }
        let region = Region {
            base,
            len,
            kind: RegionKind::from_multiboot(raw.kind.get()),
        };
        Ok((region, size_of::<U32>() + size as usize))
    }
}

impl Iterator for MemoryMapEntries<'_> {
    type Item = Result<Region, MultibootError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.offset >= self.bytes.len() {
            return None;
        }
        match self.entry_at(self.offset) {
            Ok((region, advance)) => {
                self.offset += advance;
                Some(Ok(region))
            }
            Err(error) => {
                self.offset = self.bytes.len();
                Some(Err(error))
            }
        }
    }
}
