//! The CR3 value that selects a PDPT.

use core::fmt;

use paging_core::{ErrorKind, PagingError, PhysAddr};

/// Why a PDPT cannot be loaded into CR3.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cr3Error {
    /// The PDPT is not 32-byte aligned.
    Unaligned {
        /// The offending address.
        addr: PhysAddr,
        /// The required alignment (32).
        align: u64,
    },
    /// The PDPT is at or above 4 GiB; CR3 is 32 bits wide in PAE mode on a
    /// 32-bit CPU, so the PDPT must be in the low 4 GiB.
    AboveFourGiB {
        /// The offending address.
        addr: PhysAddr,
    },
}

impl fmt::Display for Cr3Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unaligned { addr, align } => {
                write!(f, "PDPT at {addr} is not aligned to {align} bytes")
            }
            Self::AboveFourGiB { addr } => write!(f, "PDPT at {addr} is not below 4 GiB"),
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

/// A valid CR3 value for PAE paging: the PDPT's physical address (bits
/// 31:5; bits 4:0 are ignored in PAE mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cr3(u32);

impl Cr3 {
    /// Required PDPT alignment in bytes.
    pub const PDPT_ALIGN: u64 = 32;

    /// The CR3 value for the PDPT at `pdpt`.
    pub const fn new(pdpt: PhysAddr) -> Result<Self, Cr3Error> {
        if !pdpt.is_aligned(Self::PDPT_ALIGN) {
            return Err(Cr3Error::Unaligned {
                addr: pdpt,
                align: Self::PDPT_ALIGN,
            });
        }
        if !pdpt.fits_bits(32) {
            return Err(Cr3Error::AboveFourGiB { addr: pdpt });
        }
        Ok(Self(pdpt.as_u64() as u32))
    }

    /// The value to write to CR3.
    pub const fn bits(self) -> u32 {
        self.0
    }

    /// The PDPT's physical address.
    pub const fn pdpt(self) -> PhysAddr {
        PhysAddr::new_truncate(self.0 as u64)
    }
}

impl From<Cr3Error> for paging_core::AnyError {
    /// Keeps the kind and names the variant (paging-core's catch-all cannot
    /// hold this crate's types).
    fn from(e: Cr3Error) -> Self {
        let what = match e {
            Cr3Error::Unaligned { .. } => "PAE CR3: unaligned",
            Cr3Error::AboveFourGiB { .. } => "PAE CR3: above four gi b",
        };
        Self::other(e.kind(), what)
    }
}
