//! A working-set estimate per process: how many of its pages it used in
//! its last run slice, from the Accessed bits of its user PTEs
//! (`Mapper::test_and_clear_accessed`, issue 22's harvesting).
//!
//! Each time a process leaves its CPU (a timer preemption, a yield, a
//! wait) and once more at its exit, before its teardown, the scheduler
//! harvests Accessed over its user half ([`USER_START`]..[`USER_END`]): the
//! young pages are the ones the CPU loaded a translation for since the last
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
use crate::proc::process::{Process, STACK_TOP, Space};
use crate::proc::user::TEXT_BASE;

/// Lowest user address a process maps (its text).
pub const USER_START: u32 = TEXT_BASE;
/// End of the user addresses a process maps (the top of its stack).
pub const USER_END: u32 = STACK_TOP;

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

/// Clears Accessed in every page of `space`'s user half, flushes the young
/// ones on `cpu` (the CPU that runs the space) and returns how many were
/// young.
pub fn harvest(space: &mut Space, cpu: usize) -> Result<u32, Error> {
    let (stats, flush) = space
        .mapper()
        .test_and_clear_accessed(VirtAddr::new(USER_START), u64::from(USER_END - USER_START))
        .map_err(|e| failure!("harvesting Accessed: {e}"))?;
    flush.flush(&AddressSpaceTlb(CpuSet::single(cpu)));
    HARVESTS.fetch_add(1, Ordering::Relaxed);
    Ok(stats.harvested as u32)
}

/// Ends `p`'s window: harvests its space (if it still has one) on `cpu`
/// and records the young pages.
pub(super) fn end_window(p: &mut Process, cpu: usize) {
    if let Some(space) = p.space.as_mut()
        && let Ok(young) = harvest(space, cpu)
    {
        p.working_set.record(young);
    }
}
