//! A working-set estimate per process: how many of its pages it used in
//! its last run slice, from the Accessed bits of its user PTEs
//! (`Mapper::test_and_clear_accessed`, issue 22's harvesting).
//!
//! Each time a process leaves its CPU (a timer preemption, a yield, a
//! wait) and once more at its exit, before its teardown, the scheduler
//! harvests Accessed over the parts of its user half it can map (its text
//! region, its heap up to the break, its stack; [`regions`]): the young
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

use paging_core::VirtAddr;
use tlb_shootdown::CpuSet;

use crate::base::error::Error;
use crate::failure;
use crate::mm::shootdown::AddressSpaceTlb;
use crate::proc::process::{HEAP_START, Process, STACK_PAGES, STACK_TOP, Space};
use crate::proc::user::TEXT_BASE;

/// The user regions a process with break `heap_end` may have pages in,
/// `(start, len)`: text (up to the heap), heap, stack. Harvesting these,
/// not the whole user half, skips the empty directory entries between.
pub fn regions(heap_end: u32) -> [(u32, u32); 3] {
    [
        (TEXT_BASE, HEAP_START - TEXT_BASE),
        (HEAP_START, heap_end.saturating_sub(HEAP_START)),
        (STACK_TOP - STACK_PAGES * 4096, STACK_PAGES * 4096),
    ]
}

/// Harvests made since boot (every process, every window).
pub static HARVESTS: AtomicU32 = AtomicU32::new(0);

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

/// Clears Accessed in every page of `space`'s user [`regions`] (break
/// `heap_end`), flushes the young ones on `cpu` (the CPU that runs the
/// space) and returns how many were young.
pub fn harvest(space: &mut Space, heap_end: u32, cpu: usize) -> Result<u32, Error> {
    let tlb = AddressSpaceTlb(CpuSet::single(cpu));
    let mut young = 0;
    for (start, len) in regions(heap_end) {
        if len == 0 {
            continue;
        }
        let (stats, flush) = space
            .mapper()
            .test_and_clear_accessed(VirtAddr::new(start), u64::from(len))
            .map_err(|e| failure!("harvesting Accessed in {start:#x}+{len:#x}: {e}"))?;
        flush.flush(&tlb);
        young += stats.harvested as u32;
    }
    HARVESTS.fetch_add(1, Ordering::Relaxed);
    Ok(young)
}

/// Ends `p`'s window: harvests its space (if it still has one) on `cpu`
/// and records the young pages.
pub(super) fn end_window(p: &mut Process, cpu: usize) {
    let heap_end = p.heap_end;
    if let Some(space) = p.space.as_mut()
        && let Ok(young) = harvest(space, heap_end, cpu)
    {
        p.working_set.record(young);
    }
}
