//! One error type for everything, for kernels that propagate with `?`.

use core::fmt;

use super::{
    AttrError, ErrorKind, FreeError, InstallError, MapError, PagingError, RootError,
    TranslateError, UnmapError,
};
use crate::access::AccessError;
use crate::addr::{AddrError, PhysFrame, VirtAddr};
use crate::cache::CacheTypeError;
use crate::entry::EntryError;
use crate::sync::SyncError;

/// Any error of this crate family, so a kernel function can use `?` on
/// mapper, sync, fixmap and kmap calls alike and still ask
/// [`kind`](PagingError::kind).
///
/// Every error type of paging-core converts into it with `From`, keeping
/// its details; the crates built on paging-core (the backends, fixmap,
/// kmap) convert theirs into [`AnyError::Other`], keeping the kind, a
/// description and the error's [`Detail`] (the address, frame, slot or
/// count it named), which `Display` prints after the description.
///
/// ```
/// use paging_core::{AnyError, ErrorKind, MapError, PagingError, VirtAddr};
///
/// fn step() -> Result<(), MapError> {
///     Err(MapError::OutOfFrames)
/// }
/// fn boot() -> Result<(), AnyError> {
///     step()?;
///     Ok(())
/// }
/// let e = boot().unwrap_err();
/// assert_eq!(e.kind(), ErrorKind::OutOfMemory);
/// assert!(matches!(e, AnyError::Map(MapError::OutOfFrames)));
/// assert_eq!(e.to_string(), "out of frames for page tables");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AnyError {
    /// An address could not be built.
    Addr(AddrError),
    /// An entry could not be built.
    Entry(EntryError),
    /// A table could not be reached.
    Access(AccessError),
    /// A root (PGD) could not be used.
    Root(RootError),
    /// A map call did nothing.
    Map(MapError),
    /// An unmap or flag update did nothing.
    Unmap(UnmapError),
    /// A translation failed.
    Translate(TranslateError),
    /// Freeing tables did nothing.
    Free(FreeError),
    /// Installing tables did nothing.
    Install(InstallError),
    /// A kernel-space sync call did nothing.
    Sync(SyncError),
    /// A memory type could not be expressed.
    Cache(CacheTypeError),
    /// An attribute change (`set_memory`) or a merge did nothing.
    Attr(AttrError),
    /// An error of a crate built on paging-core (a backend, fixmap, kmap).
    Other {
        /// Its broad class.
        kind: ErrorKind,
        /// What it was, in a few words (the crate and the variant).
        what: &'static str,
        /// The address, frame, slot or count the error named
        /// ([`Detail::None`] if it named none).
        detail: Detail,
    },
}

/// What an error of a crate built on paging-core named, kept when it
/// becomes an [`AnyError::Other`]: paging-core cannot hold those crates'
/// types, but it can hold their fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Detail {
    /// The error named nothing.
    #[default]
    None,
    /// A virtual address (a fixmap address, a bad top, an uncovered slot).
    Virt(VirtAddr),
    /// A virtual range, `start..end` (`end` exclusive, up to 4 GiB).
    VirtRange {
        /// First address.
        start: VirtAddr,
        /// One past the last byte.
        end: u64,
    },
    /// A physical frame (a page that is not mapped, unmapped twice).
    Frame(PhysFrame),
    /// The frame that was needed and the one that came instead.
    Frames {
        /// The frame that was needed.
        expected: PhysFrame,
        /// The frame that came.
        got: PhysFrame,
    },
    /// A slot (a fixmap index) and the frame it maps, if it maps one.
    Slot {
        /// The slot's index.
        index: usize,
        /// The frame the slot maps now.
        frame: Option<PhysFrame>,
    },
    /// An index and one past the last valid one.
    Index {
        /// The index asked for.
        index: usize,
        /// One past the last valid index.
        end: usize,
    },
    /// How many were asked for or needed, and how many there are.
    Count {
        /// Asked for or needed.
        asked: usize,
        /// Available or given.
        available: usize,
    },
    /// How many were needed (when how many there are is unknown).
    Needed(usize),
    /// A local mapping's stack depth and the stack's top.
    Depth {
        /// Depth of the mapping.
        depth: usize,
        /// Depth of the top mapping.
        top: usize,
    },
    /// A CPU index.
    Cpu(usize),
    /// The entry error inside.
    Entry(EntryError),
    /// The access error inside.
    Access(AccessError),
    /// The install error inside.
    Install(InstallError),
}

impl fmt::Display for Detail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::None => Ok(()),
            Self::Virt(va) => write!(f, "{va}"),
            Self::VirtRange { start, end } => write!(f, "{start}..{end:#x}"),
            Self::Frame(frame) => write!(f, "{frame:?}"),
            Self::Frames { expected, got } => write!(f, "expected {expected:?}, got {got:?}"),
            Self::Slot { index, frame: None } => write!(f, "slot {index}"),
            Self::Slot {
                index,
                frame: Some(frame),
            } => write!(f, "slot {index} maps {frame:?}"),
            Self::Index { index, end } => write!(f, "index {index}, valid below {end}"),
            Self::Count { asked, available } => write!(f, "{asked} needed, {available} there"),
            Self::Needed(count) => write!(f, "{count} needed"),
            Self::Depth { depth, top } => write!(f, "depth {depth}, top {top}"),
            Self::Cpu(cpu) => write!(f, "CPU {cpu}"),
            Self::Entry(e) => fmt::Display::fmt(e, f),
            Self::Access(e) => fmt::Display::fmt(e, f),
            Self::Install(e) => fmt::Display::fmt(e, f),
        }
    }
}

impl AnyError {
    /// An [`AnyError::Other`] that names nothing more than `what`.
    pub const fn other(kind: ErrorKind, what: &'static str) -> Self {
        Self::Other {
            kind,
            what,
            detail: Detail::None,
        }
    }

    /// An [`AnyError::Other`] with the `detail` the error named.
    pub const fn other_with(kind: ErrorKind, what: &'static str, detail: Detail) -> Self {
        Self::Other { kind, what, detail }
    }
}

macro_rules! from_core_errors {
    ($($variant:ident($ty:ty)),* $(,)?) => {
        $(
            impl From<$ty> for AnyError {
                fn from(e: $ty) -> Self {
                    Self::$variant(e)
                }
            }
        )*

        impl PagingError for AnyError {
            fn kind(&self) -> ErrorKind {
                match self {
                    $(Self::$variant(e) => e.kind(),)*
                    Self::Other { kind, .. } => *kind,
                }
            }
        }

        impl fmt::Display for AnyError {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self {
                    $(Self::$variant(e) => fmt::Display::fmt(e, f),)*
                    Self::Other { what, detail: Detail::None, .. } => f.write_str(what),
                    Self::Other { what, detail, .. } => write!(f, "{what}: {detail}"),
                }
            }
        }

        impl core::error::Error for AnyError {
            fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
                match self {
                    $(Self::$variant(e) => Some(e),)*
                    Self::Other { detail: Detail::Entry(e), .. } => Some(e),
                    Self::Other { detail: Detail::Access(e), .. } => Some(e),
                    Self::Other { detail: Detail::Install(e), .. } => Some(e),
                    Self::Other { .. } => None,
                }
            }
        }
    };
}

from_core_errors!(
    Addr(AddrError),
    Entry(EntryError),
    Access(AccessError),
    Root(RootError),
    Map(MapError),
    Unmap(UnmapError),
    Translate(TranslateError),
    Free(FreeError),
    Install(InstallError),
    Sync(SyncError),
    Cache(CacheTypeError),
    Attr(AttrError),
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::PhysAddr;

    #[test]
    fn every_core_error_converts_keeping_its_kind_and_text() {
        let cases: [(AnyError, ErrorKind); 5] = [
            (
                AddrError::OutOfRange { addr: 1 << 60 }.into(),
                ErrorKind::OutOfRange,
            ),
            (AccessError::NoSlot.into(), ErrorKind::Exhausted),
            (
                RootError::AboveCr3Limit(PhysAddr::new_truncate(1 << 33)).into(),
                ErrorKind::OutOfRange,
            ),
            (MapError::OutOfFrames.into(), ErrorKind::OutOfMemory),
            (
                AnyError::other(ErrorKind::Exhausted, "kmap: pool exhausted"),
                ErrorKind::Exhausted,
            ),
        ];
        for (e, kind) in cases {
            assert_eq!(e.kind(), kind, "{e:?}");
            assert!(!std::format!("{e}").is_empty());
        }
        let e = AnyError::from(MapError::OutOfFrames);
        assert!(core::error::Error::source(&e).is_some());
        assert_eq!(
            std::format!("{e}"),
            std::format!("{}", MapError::OutOfFrames)
        );
    }

    #[test]
    fn other_prints_its_detail_and_sources_a_nested_error() {
        let va = VirtAddr::new(0xFFBF_F000);
        let e = AnyError::other_with(ErrorKind::OutOfRange, "fixmap: bad top", Detail::Virt(va));
        assert_eq!(std::format!("{e}"), std::format!("fixmap: bad top: {va}"));
        assert!(core::error::Error::source(&e).is_none());
        let plain = AnyError::other(ErrorKind::Exhausted, "kmap: exhausted");
        assert_eq!(std::format!("{plain}"), "kmap: exhausted");
        let nested = AnyError::other_with(
            ErrorKind::Exhausted,
            "fixmap: access",
            Detail::Access(AccessError::NoSlot),
        );
        assert_eq!(
            std::format!("{nested}"),
            std::format!("fixmap: access: {}", AccessError::NoSlot)
        );
        assert!(core::error::Error::source(&nested).is_some());
    }
}
