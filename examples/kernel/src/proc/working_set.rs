//! A working-set estimate per process: how many of its pages it used in
//! its last run slice, from the Accessed bits of its user PTEs
//! (`Mapper::test_and_clear_accessed`, issue 22's harvesting).
//!
//! Each time a process leaves its CPU (a timer preemption, a yield, a
//! wait) and once more at its exit, before its teardown, the scheduler
//! harvests Accessed over the parts of its user half it can map (its text
//! region, its heap up to the break, its stack;
//! [`super::process::regions`]): the young
//! pages are the ones the CPU loaded a translation for since the last
//! harvest. The harvest's flush goes to the process's CPU
//! ([`AddressSpaceTlb`], as every user-space flush here: a process is
//! pinned, so no other CPU holds its translations). The flush is what makes
//! "young" mean "used in this window": a CPU whose TLB still held the page
//! would use it without setting Accessed again (SDM vol. 3A 4.8). Switching
//! out reloads CR3 with the kernel's directory, which drops the non-global
//! user entries anyway; the flush is kept so that the estimate does not
//! rest on that.
//!
//! Why a working-set estimate rather than a clock page-out to a RAM swap
//! area: it uses the harvest exactly as page aging does (young pages per
//! window), it changes nothing a process can see (no page ever goes away),
//! so it can run under every existing self-test, and the watchdog's process
//! dump shows the figure when a run stalls.

use core::sync::atomic::{AtomicU32, Ordering};

use paging_core::{Mapper, TableAccess, TlbOps, UnmapError, VirtAddr};

use crate::arch::mode::Mode;

/// Harvests made since boot (every process, every window).
pub static HARVESTS: AtomicU32 = AtomicU32::new(0);
/// The longest harvest since boot, in thousands of TSC cycles (on Bochs,
/// thousands of instructions): what one switch-out spends on it.
pub static WORST_KCYCLES: AtomicU32 = AtomicU32::new(0);

/// A process's estimate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WorkingSet {
    /// Young pages in its last window.
    pub last: u32,
    /// Most young pages in one window.
    pub peak: u32,
    /// Young pages over every window.
    pub total: u32,
    /// Windows harvested.
    pub windows: u32,
}

impl WorkingSet {
    /// Adds one window's young pages.
    pub fn record(&mut self, young: u32) {
        self.last = young;
        self.peak = self.peak.max(young);
        self.total = self.total.saturating_add(young);
        self.windows += 1;
    }
}

/// Clears Accessed in every page of `regions` (`(start, len)`; empty ones
/// are skipped) of the address space `mapper` works on, flushes the young
/// ones through `tlb` (the CPUs that run the space) and returns how many
/// were young.
///
/// This file imports nothing of the process table (the caller,
/// [`super::process::end_window`], passes the regions and the flush), so it
/// stays out of the kernel's import circle.
pub fn harvest<A: TableAccess, T: TlbOps>(
    mapper: &mut Mapper<Mode, A>,
    regions: &[(u32, u32)],
    tlb: &T,
) -> Result<u32, UnmapError> {
    let started = crate::arch::cpu::rdtsc();
    let mut young = 0;
    for &(start, len) in regions {
        if len == 0 {
            continue;
        }
        let (stats, flush) =
            mapper.test_and_clear_accessed(VirtAddr::new(start), u64::from(len))?;
        flush.flush(tlb);
        young += stats.harvested as u32;
    }
    HARVESTS.fetch_add(1, Ordering::Relaxed);
    let kcycles = (crate::arch::cpu::rdtsc().wrapping_sub(started) / 1000).min(u64::from(u32::MAX));
    WORST_KCYCLES.fetch_max(kcycles as u32, Ordering::Relaxed);
    Ok(young)
}
