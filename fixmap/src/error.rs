//! Errors of the fixmap crate.

use core::fmt;

use paging_core::{
    AccessError, Detail, EntryError, ErrorKind, InstallError, PagingError, PhysFrame, VirtAddr,
};

/// Why a fixmap operation did nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FixmapError {
    /// The index is the guard hole (0) or past the layout's last slot.
    IndexOutOfRange {
        /// The index asked for.
        index: usize,
        /// One past the last valid index.
        end: usize,
    },
    /// The address is not inside the fixmap.
    NotInFixmap {
        /// The address asked about.
        va: VirtAddr,
    },
    /// The top was moved after a slot had been set.
    TopMovedAfterUse,
    /// The new top is not a page below the old one by a whole number of
    /// page tables, or would put the fixmap below address 0.
    BadTop {
        /// The top asked for.
        top: VirtAddr,
    },
    /// No page tables are attached yet (see [`Fixmap::attach`](crate::Fixmap::attach)).
    NoTables,
    /// The window's tables do not cover the fixmap at the current top.
    WindowDoesNotCover {
        /// Lowest fixmap address.
        start: VirtAddr,
        /// Highest fixmap page.
        top: VirtAddr,
    },
    /// The slot is already mapped (clear it first).
    SlotInUse {
        /// The slot.
        index: usize,
        /// The frame it maps now.
        current: PhysFrame,
    },
    /// Another `set` or `clear` of the slot is writing its entry right
    /// now (PAE: the two halves are being written); nothing was changed.
    SlotBusy {
        /// The slot.
        index: usize,
    },
    /// The slot is not mapped.
    NotSet {
        /// The slot.
        index: usize,
    },
    /// The entry cannot be built (flags the mode cannot express, frame
    /// beyond its physical limit).
    Entry(EntryError),
    /// A page table could not be reached.
    Access(AccessError),
}

impl fmt::Display for FixmapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::IndexOutOfRange { index, end } => {
                write!(f, "fixmap index {index} is outside 1..{end}")
            }
            Self::NotInFixmap { va } => write!(f, "{va} is not a fixmap address"),
            Self::TopMovedAfterUse => f.write_str("the fixmap top cannot move once a slot is set"),
            Self::BadTop { top } => write!(f, "{top} is not a valid fixmap top"),
            Self::NoTables => f.write_str("no page tables are attached to the fixmap"),
            Self::WindowDoesNotCover { start, top } => {
                write!(f, "the window does not cover the fixmap {start}..={top}")
            }
            Self::SlotInUse { index, current } => {
                write!(f, "fixmap slot {index} already maps {current:?}")
            }
            Self::SlotBusy { index } => {
                write!(
                    f,
                    "fixmap slot {index} is being set or cleared by someone else"
                )
            }
            Self::NotSet { index } => write!(f, "fixmap slot {index} is not set"),
            Self::Entry(e) => write!(f, "{e}"),
            Self::Access(e) => write!(f, "{e}"),
        }
    }
}

impl core::error::Error for FixmapError {}

impl PagingError for FixmapError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::IndexOutOfRange { .. } | Self::NotInFixmap { .. } | Self::BadTop { .. } => {
                ErrorKind::OutOfRange
            }
            Self::TopMovedAfterUse | Self::NoTables | Self::WindowDoesNotCover { .. } => {
                ErrorKind::InvalidState
            }
            Self::SlotInUse { .. } | Self::SlotBusy { .. } => ErrorKind::AlreadyMapped,
            Self::NotSet { .. } => ErrorKind::NotMapped,
            Self::Entry(e) => e.kind(),
            Self::Access(e) => e.kind(),
        }
    }
}

impl From<AccessError> for FixmapError {
    fn from(e: AccessError) -> Self {
        Self::Access(e)
    }
}

/// Why a contiguous window could not be built. Nothing was changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowError {
    /// The range is empty or runs past 4 GiB.
    BadRange {
        /// Start of the range.
        start: VirtAddr,
        /// Its end (exclusive).
        end: u64,
    },
    /// The allocator could not supply `count` contiguous lowmem frames.
    NoContiguousFrames {
        /// Tables needed.
        count: usize,
    },
    /// Frames handed out one by one were not physically consecutive, so
    /// they cannot form one PTE array. They were given back.
    Discontiguous {
        /// The frame that was needed next.
        expected: PhysFrame,
        /// The frame the allocator returned instead.
        got: PhysFrame,
    },
    /// Static tables given for the window are too few for it.
    TooFewTables {
        /// Tables needed.
        needed: usize,
        /// Tables given.
        given: usize,
    },
    /// Installing the tables failed (a large page in the way, a PAE PMD
    /// table that could not be allocated, ...).
    Install(InstallError),
}

impl fmt::Display for WindowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadRange { start, end } => write!(f, "bad window {start}..{end:#x}"),
            Self::NoContiguousFrames { count } => {
                write!(f, "no {count} physically contiguous lowmem frames")
            }
            Self::Discontiguous { expected, got } => {
                write!(
                    f,
                    "frames are not contiguous: wanted {expected:?}, got {got:?}"
                )
            }
            Self::TooFewTables { needed, given } => {
                write!(f, "window needs {needed} tables, {given} given")
            }
            Self::Install(e) => write!(f, "{e}"),
        }
    }
}

impl core::error::Error for WindowError {}

impl PagingError for WindowError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::BadRange { .. } | Self::TooFewTables { .. } => ErrorKind::OutOfRange,
            Self::NoContiguousFrames { .. } | Self::Discontiguous { .. } => ErrorKind::OutOfMemory,
            Self::Install(e) => e.kind(),
        }
    }
}

impl From<InstallError> for WindowError {
    fn from(e: InstallError) -> Self {
        Self::Install(e)
    }
}

impl From<FixmapError> for paging_core::AnyError {
    /// Keeps the kind, names the variant, and keeps what it named (the
    /// index, address, slot and frame) as a [`Detail`].
    fn from(e: FixmapError) -> Self {
        let (what, detail) = match e {
            FixmapError::IndexOutOfRange { index, end } => {
                ("fixmap: index out of range", Detail::Index { index, end })
            }
            FixmapError::NotInFixmap { va } => ("fixmap: not in fixmap", Detail::Virt(va)),
            FixmapError::TopMovedAfterUse => ("fixmap: top moved after use", Detail::None),
            FixmapError::BadTop { top } => ("fixmap: bad top", Detail::Virt(top)),
            FixmapError::NoTables => ("fixmap: no tables", Detail::None),
            FixmapError::WindowDoesNotCover { start, top } => (
                "fixmap: window does not cover",
                Detail::VirtRange {
                    start,
                    end: top.as_u64() + paging_core::PAGE_SIZE,
                },
            ),
            FixmapError::SlotInUse { index, current } => (
                "fixmap: slot in use",
                Detail::Slot {
                    index,
                    frame: Some(current),
                },
            ),
            FixmapError::SlotBusy { index } => {
                ("fixmap: slot busy", Detail::Slot { index, frame: None })
            }
            FixmapError::NotSet { index } => {
                ("fixmap: not set", Detail::Slot { index, frame: None })
            }
            FixmapError::Entry(e) => ("fixmap: entry", Detail::Entry(e)),
            FixmapError::Access(e) => ("fixmap: access", Detail::Access(e)),
        };
        Self::other_with(e.kind(), what, detail)
    }
}

impl From<WindowError> for paging_core::AnyError {
    /// Keeps the kind, names the variant, and keeps what it named (the
    /// range, the frames, the counts, the install error) as a [`Detail`].
    fn from(e: WindowError) -> Self {
        let (what, detail) = match e {
            WindowError::BadRange { start, end } => {
                ("fixmap window: bad range", Detail::VirtRange { start, end })
            }
            WindowError::NoContiguousFrames { count } => {
                ("fixmap window: no contiguous frames", Detail::Needed(count))
            }
            WindowError::Discontiguous { expected, got } => (
                "fixmap window: discontiguous",
                Detail::Frames { expected, got },
            ),
            WindowError::TooFewTables { needed, given } => (
                "fixmap window: too few tables",
                Detail::Count {
                    asked: needed,
                    available: given,
                },
            ),
            WindowError::Install(e) => ("fixmap window: install", Detail::Install(e)),
        };
        Self::other_with(e.kind(), what, detail)
    }
}
