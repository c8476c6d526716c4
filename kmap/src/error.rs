//! Errors of the kmap crate.

use core::fmt;

use paging_core::{AccessError, Detail, EntryError, ErrorKind, PagingError, PhysFrame, VirtAddr};

/// Why a kmap operation did nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KmapError {
    /// No slot is free and the call may not wait (`try_map`, a full
    /// per-CPU local stack), or the page already has 65534 users.
    Exhausted,
    /// A reservation asked for more slots than the pool has.
    ReservationTooLarge {
        /// Slots asked for.
        asked: usize,
        /// Slots in the pool.
        slots: usize,
    },
    /// Every mapping a reservation paid for has been taken.
    ReservationSpent,
    /// The page is not mapped in the pool (raw unmap of an unmapped page).
    NotMapped {
        /// The page.
        frame: PhysFrame,
    },
    /// The page's mapping has no users left (a second unmap).
    DoubleUnmap {
        /// The page.
        frame: PhysFrame,
    },
    /// A local mapping was unmapped out of LIFO order.
    OutOfOrder {
        /// Stack depth of the mapping being unmapped.
        depth: usize,
        /// Stack depth of the top mapping (the one that must go first).
        top: usize,
    },
    /// The CPU index is not below the number of CPUs.
    BadCpu {
        /// The CPU asked for.
        cpu: usize,
    },
    /// Saved local mappings were restored on another CPU, or onto a CPU
    /// whose stack is not empty.
    RestoreMismatch {
        /// The CPU asked for.
        cpu: usize,
    },
    /// The fixmap range given to [`LocalSlots::new`](crate::LocalSlots::new)
    /// holds fewer slots than the local kmaps need: CPUs × depth, twice
    /// that with guard slots. It is `needed - slots` slots short.
    RangeTooSmall {
        /// Slots the local kmaps need.
        needed: usize,
        /// Slots the range holds.
        slots: usize,
    },
    /// The slots do not fit the window or fixmap range given.
    BadLayout {
        /// First address that is not covered.
        va: VirtAddr,
    },
    /// The slot's PTE cannot be built (frame beyond the mode's limit).
    Entry(EntryError),
    /// A page table could not be reached.
    Access(AccessError),
}

impl fmt::Display for KmapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exhausted => f.write_str("no kmap slot is free"),
            Self::ReservationTooLarge { asked, slots } => {
                write!(f, "reservation of {asked} slots in a pool of {slots}")
            }
            Self::ReservationSpent => f.write_str("the reservation has no mappings left"),
            Self::NotMapped { frame } => write!(f, "{frame:?} is not kmapped"),
            Self::DoubleUnmap { frame } => {
                write!(f, "{frame:?} is unmapped more often than mapped")
            }
            Self::OutOfOrder { depth, top } => {
                write!(
                    f,
                    "local kmap at depth {depth} unmapped while depth {top} is mapped"
                )
            }
            Self::BadCpu { cpu } => write!(f, "no CPU {cpu}"),
            Self::RestoreMismatch { cpu } => write!(f, "cannot restore local kmaps on CPU {cpu}"),
            Self::RangeTooSmall { needed, slots } => write!(
                f,
                "the fixmap range holds {slots} slots, {} too few for the {needed} \
                 local kmap slots (CPUs x depth, x2 with guard slots)",
                needed.saturating_sub(*slots)
            ),
            Self::BadLayout { va } => write!(f, "kmap slot at {va} is not covered"),
            Self::Entry(e) => write!(f, "{e}"),
            Self::Access(e) => write!(f, "{e}"),
        }
    }
}

impl core::error::Error for KmapError {}

impl PagingError for KmapError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::Exhausted | Self::ReservationSpent => ErrorKind::Exhausted,
            Self::ReservationTooLarge { .. }
            | Self::BadCpu { .. }
            | Self::RangeTooSmall { .. }
            | Self::BadLayout { .. } => ErrorKind::OutOfRange,
            Self::NotMapped { .. } => ErrorKind::NotMapped,
            Self::DoubleUnmap { .. } | Self::OutOfOrder { .. } | Self::RestoreMismatch { .. } => {
                ErrorKind::InvalidState
            }
            Self::Entry(e) => e.kind(),
            Self::Access(e) => e.kind(),
        }
    }
}

impl From<AccessError> for KmapError {
    fn from(e: AccessError) -> Self {
        Self::Access(e)
    }
}

impl From<KmapError> for paging_core::AnyError {
    /// Keeps the kind, names the variant, and keeps what it named (the
    /// frame, address, CPU, depths or counts) as a [`Detail`].
    fn from(e: KmapError) -> Self {
        let (what, detail) = match e {
            KmapError::Exhausted => ("kmap: exhausted", Detail::None),
            KmapError::ReservationTooLarge { asked, slots } => (
                "kmap: reservation too large",
                Detail::Count {
                    asked,
                    available: slots,
                },
            ),
            KmapError::ReservationSpent => ("kmap: reservation spent", Detail::None),
            KmapError::NotMapped { frame } => ("kmap: not mapped", Detail::Frame(frame)),
            KmapError::DoubleUnmap { frame } => ("kmap: double unmap", Detail::Frame(frame)),
            KmapError::OutOfOrder { depth, top } => {
                ("kmap: out of order", Detail::Depth { depth, top })
            }
            KmapError::BadCpu { cpu } => ("kmap: bad cpu", Detail::Cpu(cpu)),
            KmapError::RestoreMismatch { cpu } => ("kmap: restore mismatch", Detail::Cpu(cpu)),
            KmapError::RangeTooSmall { needed, slots } => (
                "kmap: fixmap range too small",
                Detail::Count {
                    asked: needed,
                    available: slots,
                },
            ),
            KmapError::BadLayout { va } => ("kmap: bad layout", Detail::Virt(va)),
            KmapError::Entry(e) => ("kmap: entry", Detail::Entry(e)),
            KmapError::Access(e) => ("kmap: access", Detail::Access(e)),
        };
        Self::other_with(e.kind(), what, detail)
    }
}
