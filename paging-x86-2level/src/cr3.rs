//! The CR3 value that selects a page directory.

use core::fmt;

use paging_core::{ErrorKind, PagingError, PhysAddr};

bitflags::bitflags! {
    /// The cache-control bits of CR3 in 2-level mode: how the CPU caches the
    /// page directory itself.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct Cr3Flags: u32 {
        /// Bit 3, PWT: write-through.
        const WRITE_THROUGH = 1 << 3;
        /// Bit 4, PCD: cache disabled.
        const CACHE_DISABLE = 1 << 4;
    }
}

/// Why a page directory cannot be loaded into CR3.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cr3Error {
    /// The directory is not 4 KiB aligned.
    Unaligned {
        /// The offending address.
        addr: PhysAddr,
        /// The required alignment (4096).
        align: u64,
    },
    /// The directory is at or above 4 GiB; CR3 holds a 32-bit address.
    AboveFourGiB {
        /// The offending address.
        addr: PhysAddr,
    },
}

impl fmt::Display for Cr3Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unaligned { addr, align } => {
                write!(f, "page directory at {addr} is not aligned to {align:#x}")
            }
            Self::AboveFourGiB { addr } => {
                write!(f, "page directory at {addr} is not below 4 GiB")
            }
        }
    }
}

impl core::error::Error for Cr3Error {}

impl PagingError for Cr3Error {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::Unaligned { .. } => ErrorKind::Unaligned,
            Self::AboveFourGiB { .. } => ErrorKind::OutOfRange,
        }
    }
}

/// A valid CR3 value for 2-level paging: a page directory's physical
/// address (bits 31:12) and PWT/PCD.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cr3(u32);

impl Cr3 {
    /// The CR3 value for the page directory at `directory`.
    pub const fn new(directory: PhysAddr, flags: Cr3Flags) -> Result<Self, Cr3Error> {
        if !directory.is_aligned(4096) {
            return Err(Cr3Error::Unaligned {
                addr: directory,
                align: 4096,
            });
        }
        if !directory.fits_bits(32) {
            return Err(Cr3Error::AboveFourGiB { addr: directory });
        }
        Ok(Self(directory.as_u64() as u32 | flags.bits()))
    }

    /// The value to write to CR3.
    pub const fn bits(self) -> u32 {
        self.0
    }

    /// The page directory's physical address.
    pub const fn directory(self) -> PhysAddr {
        PhysAddr::new_truncate((self.0 & 0xFFFF_F000) as u64)
    }

    /// The cache-control bits.
    pub const fn flags(self) -> Cr3Flags {
        Cr3Flags::from_bits_truncate(self.0)
    }
}

impl From<Cr3Error> for paging_core::AnyError {
    /// Keeps the kind and names the variant (paging-core's catch-all cannot
    /// hold this crate's types).
    fn from(e: Cr3Error) -> Self {
        let what = match e {
            Cr3Error::Unaligned { .. } => "2-level CR3: unaligned",
            Cr3Error::AboveFourGiB { .. } => "2-level CR3: above four gi b",
        };
        Self::other(e.kind(), what)
    }
}
