//! One error type for everything, for kernels that propagate with `?`.

use core::fmt;

use super::{
    AttrError, ErrorKind, FreeError, InstallError, MapError, PagingError, RootError,
    TranslateError, UnmapError,
};
use crate::access::AccessError;
use crate::addr::AddrError;
use crate::cache::CacheTypeError;
use crate::entry::EntryError;
use crate::sync::SyncError;

/// Any error of this crate family, so a kernel function can use `?` on
/// mapper, sync, fixmap and kmap calls alike and still ask
/// [`kind`](PagingError::kind).
///
/// Every error type of paging-core converts into it with `From`, keeping
/// its details; the crates built on paging-core (the backends, fixmap,
/// kmap) convert theirs into [`AnyError::Other`], keeping the kind and a
/// description.
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
    },
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
                    Self::Other { what, .. } => f.write_str(what),
                }
            }
        }

        impl core::error::Error for AnyError {
            fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
                match self {
                    $(Self::$variant(e) => Some(e),)*
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
                AnyError::Other {
                    kind: ErrorKind::Exhausted,
                    what: "kmap: pool exhausted",
                },
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
}
