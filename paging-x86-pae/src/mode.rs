//! The PAE paging mode: geometry and entry types.

use paging_core::{PageSize, PagingMode};

use crate::{Pde, Pdpte, Pte};

/// PAE paging: a 4-entry PDPT of 512-entry page directories of 512-entry
/// page tables, 64-bit entries, 2 MiB pages and XD.
///
/// `MAX_PHYS_BITS` is the physical address width the mapper accepts (36 by
/// default, the width of the first PAE CPUs; up to 52). A width outside
/// `32..=52` does not compile:
///
/// ```compile_fail
/// use paging_core::PagingMode;
/// let _ = paging_x86_pae::Pae::<53>::pgd_index(paging_core::VirtAddr::ZERO);
/// ```
///
/// ```
/// use paging_core::PagingMode;
/// use paging_x86_pae::Pae;
/// assert_eq!(<Pae>::MAX_PHYS_BITS, 36);
/// assert_eq!(Pae::<52>::MAX_PHYS_BITS, 52);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pae<const MAX_PHYS_BITS: u32 = 36>;

impl<const MAX_PHYS_BITS: u32> Pae<MAX_PHYS_BITS> {
    /// `MAX_PHYS_BITS`, checked: using this constant (which every
    /// [`PagingMode`] constant does) with a width outside `32..=52` is a
    /// compile-time error.
    pub const PHYS_BITS: u32 = {
        assert!(
            MAX_PHYS_BITS >= 32 && MAX_PHYS_BITS <= 52,
            "Pae<MAX_PHYS_BITS>: MAX_PHYS_BITS must be in 32..=52"
        );
        MAX_PHYS_BITS
    };

    /// `value`, once `PHYS_BITS` has been checked.
    const fn checked<T: Copy>(value: T) -> T {
        let _checked: u32 = Self::PHYS_BITS;
        value
    }
}

impl<const MAX_PHYS_BITS: u32> PagingMode for Pae<MAX_PHYS_BITS> {
    type Pgd = Pdpte;
    type Pmd = Pde;
    type Pte = Pte;

    const NAME: &'static str = Self::checked("PAE");
    const ENTRY_BYTES: usize = Self::checked(8);
    const PGD_SHIFT: u32 = Self::checked(30);
    const PMD_SHIFT: u32 = Self::checked(21);
    const PTRS_PER_PGD: usize = Self::checked(4);
    const PTRS_PER_PMD: usize = Self::checked(512);
    const PTRS_PER_PTE: usize = Self::checked(512);
    const PMD_FOLDED: bool = Self::checked(false);
    const LARGE_PAGE_SIZE: PageSize = Self::checked(PageSize::Size2MiB);
    const MAX_PHYS_BITS: u32 = Self::PHYS_BITS;
    const SUPPORTS_NX: bool = Self::checked(true);
    const PGD_ALIGN: u64 = Self::checked(32);
    const PGD_LATCHED: bool = Self::checked(true);
}

// A PMD or PTE table fills one 4 KiB frame; the PDPT is 32 bytes; the three
// levels cover exactly 32 bits of virtual address.
static_assertions::const_assert_eq!(Pae::<36>::PTRS_PER_PMD * Pae::<36>::ENTRY_BYTES, 4096);
static_assertions::const_assert_eq!(Pae::<36>::PTRS_PER_PTE * Pae::<36>::ENTRY_BYTES, 4096);
static_assertions::const_assert_eq!(
    Pae::<36>::PTRS_PER_PGD as u64 * Pae::<36>::ENTRY_BYTES as u64,
    Pae::<36>::PGD_ALIGN
);
static_assertions::const_assert_eq!(Pae::<36>::PGD_SHIFT, Pae::<36>::PMD_SHIFT + 9);
static_assertions::const_assert_eq!(Pae::<36>::PMD_SHIFT, 12 + 9);
static_assertions::const_assert_eq!(Pae::<36>::LARGE_PAGE_SIZE.shift(), Pae::<36>::PMD_SHIFT);
static_assertions::const_assert_eq!(Pae::<36>::PGD_SHIFT + 2, 32);
