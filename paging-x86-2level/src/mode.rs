//! The 2-level paging mode: geometry and entry types.

use paging_core::{PageSize, PagingMode};

use crate::{Pde, Pte};

/// Classic 32-bit paging: a 1024-entry page directory of 1024-entry page
/// tables, with 4 MiB pages (PSE). The PMD is folded into the PGD: a PGD
/// entry *is* the PMD entry, and a PMD "table" has one entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TwoLevel;

impl PagingMode for TwoLevel {
    type Pgd = Pde;
    type Pmd = Pde;
    type Pte = Pte;

    const NAME: &'static str = "2-level";
    const ENTRY_BYTES: usize = 4;
    const PGD_SHIFT: u32 = 22;
    const PMD_SHIFT: u32 = 22;
    const PTRS_PER_PGD: usize = 1024;
    const PTRS_PER_PMD: usize = 1;
    const PTRS_PER_PTE: usize = 1024;
    const PMD_FOLDED: bool = true;
    const LARGE_PAGE_SIZE: PageSize = PageSize::Size4MiB;
    const MAX_PHYS_BITS: u32 = 32;
    const SUPPORTS_NX: bool = false;
    const PGD_ALIGN: u64 = 4096;
    const PGD_LATCHED: bool = false;
}

// One table of entries is exactly one 4 KiB frame, and a PGD entry spans a
// whole PTE table.
static_assertions::const_assert_eq!(TwoLevel::PTRS_PER_PGD * TwoLevel::ENTRY_BYTES, 4096);
static_assertions::const_assert_eq!(TwoLevel::PTRS_PER_PTE * TwoLevel::ENTRY_BYTES, 4096);
static_assertions::const_assert_eq!(
    1u64 << TwoLevel::PMD_SHIFT,
    TwoLevel::PTRS_PER_PTE as u64 * 4096
);
static_assertions::const_assert_eq!(TwoLevel::LARGE_PAGE_SIZE.shift(), TwoLevel::PMD_SHIFT);
static_assertions::const_assert_eq!(TwoLevel::PGD_SHIFT + 10, 32);
