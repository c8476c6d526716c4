//! The vmap part of the vmalloc area ([`crate::mm::vmalloc`]'s `ioremap`,
//! `vmap`, `vunmap`, lazy purge; Linux's `vmap_area`).
//!
//! - `ioremap`/`vunmap` pairs in the kernel's area (purge after
//!   [`VMAP_LAZY_PAGES`] pages) and, side by side, in an eager area of the
//!   same kind (threshold 0: a flush at every unmap), over the local APIC's
//!   registers mapped uncached (what the fixmap maps them as, so there is
//!   no memory-type alias); the flushes each needed are counted.
//! - A range's address is not handed out again before the purge, and is
//!   after it (first fit).

use core::cell::Cell;

use paging_core::{CacheType, PhysAddr, TlbOps, VirtAddr};

use crate::arch::fault_probe;
use crate::mm::frames;
use crate::mm::kernel::Kernel;
use crate::mm::shootdown::KernelTlb;
use crate::mm::vmalloc::{self, VMAP_LAZY_PAGES};
use crate::selftests::harness::TestResult;
use crate::{ensure, failure, println};

/// ioremap/vunmap pairs per area.
const PAIRS: u64 = 1000;
/// The local APIC's registers (the same on every PC).
const LAPIC: u64 = 0xFEE0_0000;

/// `KernelTlb`, counting the flushes it is asked for.
struct Counting {
    flushes: Cell<u64>,
}

impl TlbOps for Counting {
    fn flush_page(&self, va: VirtAddr) {
        self.flushes.set(self.flushes.get() + 1);
        KernelTlb.flush_page(va);
    }
    fn flush_range(&self, start: VirtAddr, pages: u32) {
        self.flushes.set(self.flushes.get() + 1);
        KernelTlb.flush_range(start, pages);
    }
    fn flush_all(&self) {
        self.flushes.set(self.flushes.get() + 1);
        KernelTlb.flush_all();
    }
    fn flush_everything(&self) {
        self.flushes.set(self.flushes.get() + 1);
        KernelTlb.flush_everything();
    }
}

pub fn vmap_ioremap_pairs_lazy_purge_against_eager(_: &Kernel) -> TestResult {
    let phys = PhysAddr::new(LAPIC).map_err(|e| failure!("{e}"))?;
    // Lazy: the kernel's area.
    vmalloc::vmap_purge()?;
    let before = vmalloc::vmap_stats()?;
    for _ in 0..PAIRS {
        let va = vmalloc::ioremap(phys, 4096, CacheType::Uncached, &mut frames::lock())?;
        // SAFETY: a read of the page just mapped (the APIC's ID register
        // page; reading it has no side effect); a fault is caught.
        let read = unsafe { fault_probe::read_u32(va.as_u32() as usize + 0x20) };
        ensure!(read.is_ok(), "ioremap at {va}: the read faulted: {read:?}");
        vmalloc::vunmap(va)?;
    }
    let after = vmalloc::vmap_stats()?;
    let lazy = after.flushes - before.flushes;
    // Eager: an area of its own with a threshold of 0, the same pairs.
    let tlb = Counting {
        flushes: Cell::new(0),
    };
    let eager = vmalloc::with_scratch_area(0, &tlb, |area, mapper, tlb| {
        let mut frames = frames::lock();
        for _ in 0..PAIRS {
            let va = area
                .ioremap(mapper, phys, 4096, CacheType::Uncached, &mut *frames, tlb)
                .map_err(|e| failure!("eager ioremap: {e}"))?;
            area.vunmap(mapper, va, tlb)
                .map_err(|e| failure!("eager vunmap: {e}"))?;
        }
        Ok::<_, crate::base::error::Error>(area.stats().flushes)
    })??;
    ensure!(
        eager == PAIRS && tlb.flushes.get() == eager,
        "eager: {eager} flushes counted by the area, {} by the TLB, for {PAIRS} pairs",
        tlb.flushes.get()
    );
    ensure!(
        lazy <= PAIRS.div_ceil(u64::from(VMAP_LAZY_PAGES)) + 1,
        "lazy: {lazy} flushes for {PAIRS} one-page pairs, purge every {VMAP_LAZY_PAGES} pages"
    );
    println!(
        "    {PAIRS} ioremap/vunmap pairs: lazy purge (every {VMAP_LAZY_PAGES} pages) {lazy} flushes, eager {eager} flushes ({}x fewer)",
        eager / lazy.max(1)
    );

    // A freed address is not reused before the purge, and is after it.
    vmalloc::vmap_purge()?;
    let a = vmalloc::ioremap(phys, 4096, CacheType::Uncached, &mut frames::lock())?;
    vmalloc::vunmap(a)?;
    let b = vmalloc::ioremap(phys, 4096, CacheType::Uncached, &mut frames::lock())?;
    let reused_early = a == b;
    vmalloc::vmap_purge()?;
    let c = vmalloc::ioremap(phys, 4096, CacheType::Uncached, &mut frames::lock())?;
    vmalloc::vunmap(b)?;
    vmalloc::vunmap(c)?;
    vmalloc::vmap_purge()?;
    ensure!(!reused_early, "{a} was handed out again before the purge");
    ensure!(c == a, "after the purge the first fit is {c}, not {a}");
    println!("    lazy purge: {a} unmapped, the next ioremap got {b}; after the purge {c} again");
    Ok(())
}
