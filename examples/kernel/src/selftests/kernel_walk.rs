//! A walk of every mapping in the kernel half of a directory, with
//! `paging_core::Walker`'s one-step slot functions.

use paging_core::{
    Entry, MapFlags, PagingMode, PhysAddr, PhysFrame, PmdEntry, PteEntry, TableAccess, VirtAddr,
    Walker,
};

use crate::arch::mode::Mode;
use crate::failure;
use crate::mm::direct_map::DirectMapAccess;
use crate::mm::layout::PAGE_OFFSET;
use crate::selftests::harness::Failure;

/// Bit 2 of every x86 paging entry: U/S in table and leaf entries,
/// reserved (so also never set) in a PAE PDPTE.
const USER_BIT: u64 = 1 << 2;

/// What a walk found.
#[derive(Clone, Copy, Debug, Default)]
pub struct KernelWalk {
    /// Present top-level entries of the kernel half.
    pub pgd_entries: u32,
    /// Large-page leaves.
    pub large_pages: u32,
    /// 4 KiB leaves.
    pub pages: u32,
    /// PTE tables.
    pub pte_tables: u32,
}

/// One leaf: its address, size in bytes and flags.
#[derive(Clone, Copy, Debug)]
pub struct Leaf {
    /// First address it maps.
    pub va: VirtAddr,
    /// Bytes it maps.
    pub size: u64,
    /// Its flags.
    pub flags: MapFlags,
}

/// Calls `visit` for every leaf mapping of `[PAGE_OFFSET, 4 GiB)` in the
/// directory at `root`, and fails if a table entry on the way has the user
/// bit, or if the user half of the directory is not empty.
pub fn walk_kernel_half(
    root: PhysAddr,
    mut visit: impl FnMut(Leaf) -> Result<(), Failure>,
) -> Result<KernelWalk, Failure> {
    let walker = Walker::<Mode, _>::new(root, DirectMapAccess);
    let first = <Mode as PagingMode>::pgd_index(VirtAddr::new(PAGE_OFFSET));
    let mut found = KernelWalk::default();
    for index in 0..<Mode as PagingMode>::PTRS_PER_PGD {
        let pgd: <Mode as PagingMode>::Pgd = walker
            .pgd_slot_at(index)
            .read(&DirectMapAccess)
            .map_err(|e| failure!("PGD entry {index}: {e}"))?;
        if index < first {
            if !pgd.is_none() {
                return Err(failure!("user-half PGD entry {index} is {pgd:?}"));
            }
            continue;
        }
        if !pgd.is_present() {
            continue;
        }
        if pgd.raw() & USER_BIT != 0 {
            return Err(failure!(
                "kernel PGD entry {index} has the user bit: {pgd:?}"
            ));
        }
        found.pgd_entries += 1;
        let base = (index as u64) << <Mode as PagingMode>::PGD_SHIFT;
        for k in 0..<Mode as PagingMode>::PTRS_PER_PMD {
            let va = VirtAddr::new((base + k as u64 * <Mode as PagingMode>::pmd_span()) as u32);
            walk_pmd(&walker, pgd, va, &mut found, &mut visit)?;
        }
    }
    Ok(found)
}

fn walk_pmd(
    walker: &Walker<Mode, DirectMapAccess>,
    pgd: <Mode as PagingMode>::Pgd,
    va: VirtAddr,
    found: &mut KernelWalk,
    visit: &mut impl FnMut(Leaf) -> Result<(), Failure>,
) -> Result<(), Failure> {
    let Some(slot) = walker.pmd_slot(va, pgd) else {
        return Ok(());
    };
    let pmd: <Mode as PagingMode>::Pmd = slot
        .read(&DirectMapAccess)
        .map_err(|e| failure!("PMD entry for {va}: {e}"))?;
    if !pmd.is_present() {
        return Ok(());
    }
    if pmd.is_large() {
        found.large_pages += 1;
        return visit(Leaf {
            va,
            size: <Mode as PagingMode>::pmd_span(),
            flags: pmd.flags(),
        });
    }
    if pmd.flags().contains(MapFlags::USER) {
        return Err(failure!("the PMD entry for {va} has the user bit: {pmd:?}"));
    }
    found.pte_tables += 1;
    let frame = PhysFrame::containing_address(pmd.addr());
    for k in 0..<Mode as PagingMode>::PTRS_PER_PTE {
        let pte = {
            let table = DirectMapAccess
                .table(frame)
                .map_err(|e| failure!("PTE table {frame:?}: {e}"))?;
            <Mode as PagingMode>::Pte::load(&table, k)
        };
        if pte.is_present() {
            found.pages += 1;
            visit(Leaf {
                va: VirtAddr::new(va.as_u32() + (k as u32) * 4096),
                size: 4096,
                flags: pte.flags(),
            })?;
        }
    }
    Ok(())
}
