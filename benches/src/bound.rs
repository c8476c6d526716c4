//! The raw bound for a range map: a plain loop writing the same entries
//! into tables that already exist.
//!
//! No checks, no allocation, no planning pass, no hooks, plain (not
//! volatile) stores the compiler may vectorise: the least any mapper can do
//! to fill the same tables with the same values. A second variant writes
//! each entry with one volatile store, as tables a live MMU may walk need.

use paging_core::{Entry, MapFlags, PagingMode, PhysAddr, PmdEntry, PteEntry};

use crate::host::frame_at;
use crate::{DATA_PA, FixtureError, RANGE_BYTES};

/// Entry words, 4 or 8 bytes as the mode's entries.
#[derive(Debug)]
enum Words {
    Four(Vec<u32>),
    Eight(Vec<u64>),
}

impl Words {
    fn new(entry_bytes: usize, len: usize) -> Self {
        if entry_bytes == 4 {
            Self::Four(vec![0; len])
        } else {
            Self::Eight(vec![0; len])
        }
    }

    /// Entry `i` becomes `first + i * step`.
    #[inline]
    fn fill(&mut self, first: u64, step: u64) {
        match self {
            Self::Four(words) => fill(words, first as u32, step as u32),
            Self::Eight(words) => fill(words, first, step),
        }
    }

    /// The same, one volatile store per entry.
    #[inline]
    fn fill_volatile(&mut self, first: u64, step: u64) {
        match self {
            Self::Four(words) => fill_volatile(words, first as u32, step as u32),
            Self::Eight(words) => fill_volatile(words, first, step),
        }
    }

    fn get(&self, i: usize) -> Option<u64> {
        match self {
            Self::Four(words) => words.get(i).map(|&w| u64::from(w)),
            Self::Eight(words) => words.get(i).copied(),
        }
    }
}

#[inline]
fn fill<T: Copy + core::ops::Add<Output = T>>(words: &mut [T], first: T, step: T) {
    let mut value = first;
    for word in words {
        *word = value;
        value = value + step;
    }
}

/// Like [`fill`], with one volatile store per entry: what a table that a
/// live MMU may walk needs (no merged, split or elided stores).
#[inline]
fn fill_volatile<T: Copy + core::ops::Add<Output = T>>(words: &mut [T], first: T, step: T) {
    let mut value = first;
    for word in words {
        // SAFETY: `word` is a valid, aligned, exclusive reference.
        unsafe { core::ptr::write_volatile(word, value) };
        value = value + step;
    }
}

/// Preallocated PTE tables for [`RANGE_BYTES`] and the PMD entries (PDEs
/// in 2-level mode) that point at them.
#[derive(Debug)]
pub struct RawBound {
    ptes: Words,
    pmds: Words,
    pte_first: u64,
    pmd_first: u64,
}

impl RawBound {
    /// Tables for mode `M`, with the entries the mapper writes for a
    /// kernel read-write range at [`DATA_PA`].
    pub fn new<M: PagingMode>() -> Result<Self, FixtureError> {
        let pages = (RANGE_BYTES / 4096) as usize;
        let tables = pages / M::PTRS_PER_PTE;
        let data = frame_at(DATA_PA).ok_or(FixtureError::Frame)?;
        let pte = M::Pte::page(data, MapFlags::KERNEL_RW)?;
        // Where the first PTE table would be; the rest follow it.
        let table = frame_at(2 * 4096).ok_or(FixtureError::Frame)?;
        let pmd = M::Pmd::table(table, false)?;
        // Adding a page to the address field adds 4096 to the raw entry.
        debug_assert_eq!(
            pte.with_addr(PhysAddr::new(DATA_PA + 4096)?).raw(),
            pte.raw() + 4096
        );
        Ok(Self {
            ptes: Words::new(M::ENTRY_BYTES, pages),
            pmds: Words::new(M::ENTRY_BYTES, tables),
            pte_first: pte.raw(),
            pmd_first: pmd.raw(),
        })
    }

    /// Write every entry.
    #[inline]
    pub fn fill(&mut self) {
        self.ptes.fill(self.pte_first, 4096);
        self.pmds.fill(self.pmd_first, 4096);
        core::hint::black_box(&mut self.ptes);
        core::hint::black_box(&mut self.pmds);
    }

    /// Write every entry with volatile stores.
    #[inline]
    pub fn fill_volatile(&mut self) {
        self.ptes.fill_volatile(self.pte_first, 4096);
        self.pmds.fill_volatile(self.pmd_first, 4096);
    }

    /// PTE `i` as last written (to check that the loop did its work).
    pub fn pte(&self, i: usize) -> Option<u64> {
        self.ptes.get(i)
    }

    /// PMD entry (PDE) `i` as last written.
    pub fn pmd(&self, i: usize) -> Option<u64> {
        self.pmds.get(i)
    }
}
