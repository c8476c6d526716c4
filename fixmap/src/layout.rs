//! Declaring a fixmap: named slots and slot ranges at fixed virtual addresses.
//!
//! Index `i` lives at `top - i * 4096`; index 0 is a guard hole that is never
//! mapped, so addresses grow *down* from the top as slots are added. Layouts
//! are declared once with [`fixmap_layout!`](crate::fixmap_layout), which
//! computes every index at compile time.

use core::fmt;
use core::marker::PhantomData;

use paging_core::{PAGE_SIZE, VirtAddr};

use crate::error::FixmapError;

/// Pages covered by one PAE PTE table (2 MiB). A range that fits in one such
/// block also fits in one 2-level table (4 MiB blocks are unions of them),
/// so `in_one_table` ranges are valid in both modes.
pub const PAGES_PER_TABLE_BOTH_MODES: usize = 512;

/// A fixmap layout: its default top and size. Implemented by
/// [`fixmap_layout!`](crate::fixmap_layout); the indices it declares are
/// only valid for it.
pub trait FixmapLayout: Copy + 'static {
    /// Default address of index 0 (the guard hole). Index `i` is at
    /// `TOP - i * 4096`.
    const TOP: VirtAddr;
    /// One past the last index.
    const END: usize;

    /// The lowest fixmap address for a given top.
    fn start_for(top: VirtAddr) -> VirtAddr {
        VirtAddr::new(
            top.as_u32()
                .wrapping_sub(((Self::END - 1) as u32).wrapping_mul(PAGE_SIZE as u32)),
        )
    }
}

/// An index into the fixmap of layout `L` (never 0, always below `L::END`).
pub struct FixIndex<L> {
    index: usize,
    _layout: PhantomData<fn() -> L>,
}

impl<L> Clone for FixIndex<L> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<L> Copy for FixIndex<L> {}
impl<L> PartialEq for FixIndex<L> {
    fn eq(&self, other: &Self) -> bool {
        self.index == other.index
    }
}
impl<L> Eq for FixIndex<L> {}
impl<L> PartialOrd for FixIndex<L> {
    fn partial_cmp(&self, other: &Self) -> Option<core::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<L> Ord for FixIndex<L> {
    fn cmp(&self, other: &Self) -> core::cmp::Ordering {
        self.index.cmp(&other.index)
    }
}
impl<L> core::hash::Hash for FixIndex<L> {
    fn hash<S: core::hash::Hasher>(&self, state: &mut S) {
        self.index.hash(state)
    }
}
impl<L> fmt::Debug for FixIndex<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FixIndex({})", self.index)
    }
}

impl<L: FixmapLayout> FixIndex<L> {
    /// Index `index`, or [`FixmapError::IndexOutOfRange`] if it is the guard
    /// hole or past the end. For constant indices prefer the named slots and
    /// [`FixRange::at`], which are checked at compile time.
    pub const fn new(index: usize) -> Result<Self, FixmapError> {
        if index == 0 || index >= L::END {
            return Err(FixmapError::IndexOutOfRange { index, end: L::END });
        }
        Ok(Self::declared(index))
    }

    /// The address of this slot at the layout's default top.
    pub const fn virt(self) -> VirtAddr {
        fix_to_virt(L::TOP, self)
    }
}

impl<L> FixIndex<L> {
    /// Used by [`fixmap_layout!`](crate::fixmap_layout) and [`FixRange`],
    /// whose own compile-time checks guarantee the range.
    #[doc(hidden)]
    pub const fn declared(index: usize) -> Self {
        Self {
            index,
            _layout: PhantomData,
        }
    }

    /// The numeric index.
    pub const fn index(self) -> usize {
        self.index
    }

    /// The index after this one (where the next declared slot starts).
    pub const fn end(self) -> usize {
        self.index + 1
    }
}

/// The address of `idx` when index 0 is at `top`.
pub const fn fix_to_virt<L>(top: VirtAddr, idx: FixIndex<L>) -> VirtAddr {
    VirtAddr::new(
        top.as_u32()
            .wrapping_sub((idx.index as u32).wrapping_mul(PAGE_SIZE as u32)),
    )
}

/// The fixmap index whose page contains `va`, when index 0 is at `top`.
pub const fn virt_to_fix<L: FixmapLayout>(
    top: VirtAddr,
    va: VirtAddr,
) -> Result<FixIndex<L>, FixmapError> {
    let page = va.as_u32() & !(PAGE_SIZE as u32 - 1);
    if page > top.as_u32() {
        return Err(FixmapError::NotInFixmap { va });
    }
    let index = ((top.as_u32() - page) / PAGE_SIZE as u32) as usize;
    if index == 0 || index >= L::END {
        return Err(FixmapError::NotInFixmap { va });
    }
    Ok(FixIndex::declared(index))
}

/// `LEN` consecutive fixmap indices starting at `FIRST`, declared by
/// [`fixmap_layout!`](crate::fixmap_layout) (for example one block of
/// local-kmap slots per CPU).
pub struct FixRange<L, const FIRST: usize, const LEN: usize> {
    _layout: PhantomData<fn() -> L>,
}

impl<L, const FIRST: usize, const LEN: usize> Clone for FixRange<L, FIRST, LEN> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<L, const FIRST: usize, const LEN: usize> Copy for FixRange<L, FIRST, LEN> {}
impl<L, const FIRST: usize, const LEN: usize> fmt::Debug for FixRange<L, FIRST, LEN> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FixRange({FIRST}..{})", FIRST + LEN)
    }
}

impl<L, const FIRST: usize, const LEN: usize> FixRange<L, FIRST, LEN> {
    #[doc(hidden)]
    pub const fn declared() -> Self {
        Self {
            _layout: PhantomData,
        }
    }

    /// Element `I` of the range; `I >= LEN` is a compile error.
    pub const fn at<const I: usize>(self) -> FixIndex<L> {
        const { assert!(I < LEN, "fixmap range index out of range") };
        FixIndex::declared(FIRST + I)
    }

    /// Element `i` of the range, or [`FixmapError::IndexOutOfRange`].
    pub const fn get(self, i: usize) -> Result<FixIndex<L>, FixmapError> {
        if i >= LEN {
            return Err(FixmapError::IndexOutOfRange {
                index: FIRST + i,
                end: FIRST + LEN,
            });
        }
        Ok(FixIndex::declared(FIRST + i))
    }

    /// The first index.
    pub const fn first(self) -> usize {
        FIRST
    }

    /// Number of indices.
    pub const fn len(self) -> usize {
        LEN
    }

    /// Whether the range is empty.
    pub const fn is_empty(self) -> bool {
        LEN == 0
    }

    /// The index after the last one (where the next declared slot starts).
    pub const fn end(self) -> usize {
        FIRST + LEN
    }

    /// Every index of the range, in order.
    pub fn iter(self) -> impl Iterator<Item = FixIndex<L>> {
        (FIRST..FIRST + LEN).map(FixIndex::declared)
    }
}

/// The first index `>= start` from which `len` indices stay inside one
/// 512-page (2 MiB) aligned block when index 0 is at `top`: the rule for an
/// `in_one_table` range.
pub const fn first_in_one_table(start: usize, len: usize, top: u32) -> usize {
    let block = (PAGES_PER_TABLE_BOTH_MODES as u64) * PAGE_SIZE;
    let mut first = start;
    loop {
        let high = top as u64 - first as u64 * PAGE_SIZE;
        let low = high - (len as u64).saturating_sub(1) * PAGE_SIZE;
        if high / block == low / block {
            return first;
        }
        first += 1;
    }
}

/// Declare a fixmap layout: a type implementing [`FixmapLayout`] with one
/// associated constant per slot ([`FixIndex`]) or slot range
/// ([`FixRange`]). Indices are assigned in order from 1 (0 is the guard
/// hole); a range marked `in_one_table` is moved down (leaving a gap) until
/// all its pages share one page table in both paging modes.
///
/// ```
/// use fixmap::{FixmapLayout, fixmap_layout};
///
/// const CPUS: usize = 4;
/// fixmap_layout! {
///     /// The kernel's fixmap.
///     pub struct KernelFixmap {
///         top: 0xFFFF_F000;
///         /// Early serial/VGA console.
///         CONSOLE;
///         /// Local APIC registers.
///         APIC;
///         /// Local kmap slots: 8 per CPU.
///         KMAP_LOCAL[8 * CPUS];
///         /// Boot-time mappings that must share one PTE page.
///         BOOT[64] in_one_table;
///     }
/// }
///
/// assert_eq!(KernelFixmap::CONSOLE.index(), 1);
/// assert_eq!(KernelFixmap::CONSOLE.virt().as_u32(), 0xFFFF_E000);
/// assert_eq!(KernelFixmap::KMAP_LOCAL.at::<0>().index(), 3);
/// assert!(KernelFixmap::KMAP_LOCAL.get(32).is_err());
/// assert_eq!(KernelFixmap::END, KernelFixmap::BOOT.end());
/// ```
///
/// A constant index past a range does not compile:
///
/// ```compile_fail
/// use fixmap::fixmap_layout;
/// fixmap_layout! {
///     pub struct Small { top: 0xFFFF_F000; KM[4]; }
/// }
/// let _ = Small::KM.at::<4>();
/// ```
#[macro_export]
macro_rules! fixmap_layout {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            top: $top:expr;
            $($items:tt)*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        $vis struct $name;
        $crate::__fixmap_items!($name, $vis, ($top), (1usize), $($items)*);
    };
}

/// Implementation detail of [`fixmap_layout!`].
#[doc(hidden)]
#[macro_export]
macro_rules! __fixmap_items {
    ($name:ident, $vis:vis, ($top:expr), ($next:expr), ) => {
        impl $crate::FixmapLayout for $name {
            const TOP: $crate::paging_core::VirtAddr = $crate::paging_core::VirtAddr::new($top);
            const END: usize = $next;
        }
        const _: () = assert!(
            (($next) as u64 - 1) * $crate::paging_core::PAGE_SIZE <= ($top) as u64,
            "fixmap layout runs below address 0"
        );
    };
    ($name:ident, $vis:vis, ($top:expr), ($next:expr),
        $(#[$m:meta])* $item:ident [$len:expr] in_one_table; $($rest:tt)*) => {
        impl $name {
            $(#[$m])*
            $vis const $item: $crate::FixRange<
                $name,
                { $crate::first_in_one_table($next, $len, $top) },
                { $len },
            > = $crate::FixRange::declared();
        }
        const _: () = assert!(
            ($len) <= $crate::PAGES_PER_TABLE_BOTH_MODES,
            "an in_one_table range cannot be larger than one PTE table"
        );
        $crate::__fixmap_items!($name, $vis, ($top), ($name::$item.end()), $($rest)*);
    };
    ($name:ident, $vis:vis, ($top:expr), ($next:expr),
        $(#[$m:meta])* $item:ident [$len:expr]; $($rest:tt)*) => {
        impl $name {
            $(#[$m])*
            $vis const $item: $crate::FixRange<$name, { $next }, { $len }> =
                $crate::FixRange::declared();
        }
        $crate::__fixmap_items!($name, $vis, ($top), ($name::$item.end()), $($rest)*);
    };
    ($name:ident, $vis:vis, ($top:expr), ($next:expr),
        $(#[$m:meta])* $item:ident; $($rest:tt)*) => {
        impl $name {
            $(#[$m])*
            $vis const $item: $crate::FixIndex<$name> = $crate::FixIndex::declared($next);
        }
        $crate::__fixmap_items!($name, $vis, ($top), ($name::$item.end()), $($rest)*);
    };
}
