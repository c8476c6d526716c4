//! Several simulated CPUs over one RAM, with TLB shootdown.

use std::vec::Vec;

use super::config::SimConfig;
use super::fault::Cr3Fault;
use super::mmu::Mmu;
use super::ram::SimRam;
use super::tlb::TlbStats;
use paging_core::addr::VirtAddr;
use paging_core::flush::TlbOps;

/// A multiprocessor: one [`Mmu`] per CPU, all over the same [`SimRam`].
///
/// As a [`TlbOps`] it broadcasts every flush to every CPU, as a kernel's TLB
/// shootdown IPIs do; each CPU counts the flushes it received.
#[derive(Debug)]
pub struct SimCpus<'r> {
    cpus: Vec<Mmu<'r>>,
}

impl<'r> SimCpus<'r> {
    /// `count` CPUs with the same configuration.
    pub fn new(ram: &'r SimRam, config: SimConfig, count: usize) -> Self {
        Self {
            cpus: (0..count).map(|_| Mmu::new(ram, config)).collect(),
        }
    }

    /// CPU `index`, if there is one.
    pub fn cpu(&self, index: usize) -> Option<&Mmu<'r>> {
        self.cpus.get(index)
    }

    /// Every CPU, in index order.
    pub fn cpus(&self) -> &[Mmu<'r>] {
        &self.cpus
    }

    /// Number of CPUs.
    pub fn len(&self) -> usize {
        self.cpus.len()
    }

    /// Whether there is no CPU.
    pub fn is_empty(&self) -> bool {
        self.cpus.is_empty()
    }

    /// Load `cr3` on every CPU; stops at, and returns, the first #GP (so
    /// the CPUs before it have switched and the rest have not).
    pub fn load_cr3_all(&self, cr3: u32) -> Result<(), Cr3Fault> {
        self.cpus.iter().try_for_each(|cpu| cpu.load_cr3(cr3))
    }

    /// Each CPU's TLB counters, in index order.
    pub fn stats(&self) -> Vec<TlbStats> {
        self.cpus.iter().map(Mmu::tlb_stats).collect()
    }
}

/// Broadcast: every flush reaches every CPU.
impl TlbOps for SimCpus<'_> {
    fn flush_page(&self, va: VirtAddr) {
        self.cpus.iter().for_each(|cpu| cpu.flush_page(va));
    }

    fn flush_all(&self) {
        self.cpus.iter().for_each(TlbOps::flush_all);
    }

    fn flush_everything(&self) {
        self.cpus.iter().for_each(TlbOps::flush_everything);
    }
}
