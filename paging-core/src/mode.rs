//! The paging-mode trait: the geometry of a format and its entry types.

use crate::addr::{PageSize, VirtAddr};
use crate::entry::{PgdEntry, PmdEntry, PteEntry};

/// A paging format: 2-level (classic 32-bit) or PAE.
///
/// Everything generic code needs to know about a format is here, so the
/// walker, the mapper, `fixmap` and `kmap` never name a backend.
///
/// | | 2-level | PAE |
/// |---|---|---|
/// | entry size | 4 bytes | 8 bytes |
/// | PGD | 1024 entries, 4 MiB each | 4 entries (PDPT), 1 GiB each |
/// | PMD | folded into the PGD | 512 entries, 2 MiB each |
/// | PTE | 1024 entries | 512 entries |
/// | large page | 4 MiB (PSE) | 2 MiB |
/// | physical bits | 32 | 36 by default, up to 52 |
/// | NX | no | yes (bit 63) |
pub trait PagingMode: Send + Sync + 'static {
    /// Top-level entry type.
    type Pgd: PgdEntry;
    /// Middle-level entry type (the same slot as the PGD when folded).
    type Pmd: PmdEntry;
    /// Bottom-level entry type.
    type Pte: PteEntry;

    /// Human-readable name ("2-level", "PAE").
    const NAME: &'static str;
    /// Bytes per entry at every level (4 or 8).
    const ENTRY_BYTES: usize;
    /// log2 of the bytes one PGD entry covers.
    const PGD_SHIFT: u32;
    /// log2 of the bytes one PMD entry covers (equal to `PGD_SHIFT` when folded).
    const PMD_SHIFT: u32;
    /// Entries in the PGD.
    const PTRS_PER_PGD: usize;
    /// Entries in a PMD table (1 when folded).
    const PTRS_PER_PMD: usize;
    /// Entries in a PTE table.
    const PTRS_PER_PTE: usize;
    /// Whether the PMD is folded into the PGD.
    const PMD_FOLDED: bool;
    /// The page size a PMD entry with PS set maps.
    const LARGE_PAGE_SIZE: PageSize;
    /// The highest physical address width this mode accepts.
    const MAX_PHYS_BITS: u32;
    /// Whether entries can carry no-execute.
    const SUPPORTS_NX: bool;
    /// Required alignment of the PGD in bytes (4096 for a page directory, 32
    /// for a PDPT).
    const PGD_ALIGN: u64;
    /// Whether the CPU latches PGD entries at CR3 load (PAE PDPTEs), so that a
    /// PGD change is invisible until CR3 is reloaded.
    const PGD_LATCHED: bool;

    /// Index of `va`'s entry in the PGD.
    fn pgd_index(va: VirtAddr) -> usize {
        (va.as_u32() >> Self::PGD_SHIFT) as usize & (Self::PTRS_PER_PGD - 1)
    }

    /// Index of `va`'s entry in its PMD table (0 when folded).
    fn pmd_index(va: VirtAddr) -> usize {
        (va.as_u32() >> Self::PMD_SHIFT) as usize & (Self::PTRS_PER_PMD - 1)
    }

    /// Index of `va`'s entry in its PTE table.
    fn pte_index(va: VirtAddr) -> usize {
        (va.as_u32() >> 12) as usize & (Self::PTRS_PER_PTE - 1)
    }

    /// Bytes one PMD entry covers (the large-page size).
    fn pmd_span() -> u64 {
        1 << Self::PMD_SHIFT
    }

    /// Bytes one PGD entry covers.
    fn pgd_span() -> u64 {
        1 << Self::PGD_SHIFT
    }
}
