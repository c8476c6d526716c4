//! Kernel virtual addresses, seen as page tables through a simulated CPU:
//! the model's [`VirtTables`].
//!
//! Code that reaches a table through a temporary mapping (a kmap of a
//! highmem PTE page) on real hardware dereferences a virtual address. Here
//! every load, store and exchange is translated by the simulated [`Mmu`]
//! first, *with its TLB*, and only then performed on [`SimRam`]. So a slot
//! that was re-pointed without an `invlpg` is read and written exactly as
//! the hardware would: in the frame the stale translation names.
//!
//! A page fault does not panic: the access is dropped (loads and exchanges
//! return 0, stores write nothing) and the fault is counted and kept, so a
//! test asserts [`MmuVirt::faults`] is zero.
//!
//! ```
//! use paging_sim::{Mmu, MmuVirt, SimConfig, SimRam};
//! use paging_core::{PhysAddr, RawTable, VirtAddr, VirtTables};
//!
//! let ram = SimRam::new();
//! let pa = |x| PhysAddr::new(x).unwrap();
//! // 0xC000_1000 -> frame 0x5000 (2-level: PD at 0x1000, PT at 0x2000).
//! ram.write_u32(pa(0x1000 + 4 * 0x300), 0x2000 | 0b011).unwrap();
//! ram.write_u32(pa(0x2000 + 4 * 0x001), 0x5000 | 0b011).unwrap();
//! let cpu = Mmu::new(&ram, SimConfig::two_level());
//! cpu.load_cr3(0x1000).unwrap();
//!
//! let virt = MmuVirt::new(&cpu);
//! let table = virt.table_at(VirtAddr::new(0xC000_1000));
//! table.store32(3, 0xABCD);
//! assert_eq!(ram.read_u32(pa(0x500C)).unwrap(), 0xABCD);
//! // An unmapped address faults: recorded, not a panic.
//! assert_eq!(virt.table_at(VirtAddr::new(0xC000_2000)).load64(0), 0);
//! assert_eq!(virt.faults(), 1);
//! assert_eq!(virt.last_fault().unwrap().addr, VirtAddr::new(0xC000_2000));
//! ```

use core::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use super::fault::{Access, PageFault};
use super::mmu::Mmu;
use paging_core::access::VirtTables;
use paging_core::addr::{PAGE_SIZE, PhysAddr, VirtAddr};
use paging_core::table::{QWORDS_PER_TABLE, RawTable, WORDS_PER_TABLE};

/// Virtual addresses reached through one simulated CPU (its page tables and
/// its TLB), as a [`VirtTables`].
pub struct MmuVirt<'r> {
    mmu: &'r Mmu<'r>,
    accesses: AtomicU64,
    faults: AtomicU64,
    last_fault: Mutex<Option<PageFault>>,
}

impl fmt::Debug for MmuVirt<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MmuVirt")
            .field("accesses", &self.accesses())
            .field("faults", &self.faults())
            .field("last_fault", &self.last_fault())
            .finish()
    }
}

impl<'r> MmuVirt<'r> {
    /// Reach virtual addresses as code running on `mmu` would.
    pub fn new(mmu: &'r Mmu<'r>) -> Self {
        Self {
            mmu,
            accesses: AtomicU64::new(0),
            faults: AtomicU64::new(0),
            last_fault: Mutex::new(None),
        }
    }

    /// The CPU the accesses go through.
    pub fn mmu(&self) -> &'r Mmu<'r> {
        self.mmu
    }

    /// Loads, stores and exchanges attempted so far (faulting ones included).
    pub fn accesses(&self) -> u64 {
        self.accesses.load(Ordering::Relaxed)
    }

    /// Accesses that page-faulted (and were dropped).
    pub fn faults(&self) -> u64 {
        self.faults.load(Ordering::Relaxed)
    }

    /// The most recent page fault, if any.
    pub fn last_fault(&self) -> Option<PageFault> {
        *self
            .last_fault
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Translate `va` for `access`, recording a fault.
    fn translate(&self, va: VirtAddr, access: Access) -> Option<PhysAddr> {
        self.accesses.fetch_add(1, Ordering::Relaxed);
        match self.mmu.translate(va, access) {
            Ok(t) => Some(t.pa),
            Err(fault) => {
                self.faults.fetch_add(1, Ordering::Relaxed);
                *self
                    .last_fault
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = Some(fault);
                None
            }
        }
    }
}

// SAFETY: the simulated CPU's virtual addresses lead into simulated RAM.
unsafe impl paging_core::IsolatedVirt for MmuVirt<'_> {}

impl MmuVirt<'_> {
    /// The 4 KiB page at `va` (aligned down), every access translated by
    /// the simulated MMU. Safe, unlike [`VirtTables::table_at`]: these
    /// addresses are the simulated CPU's, never this program's memory.
    pub fn table_at(&self, va: VirtAddr) -> VirtTable<'_> {
        VirtTable {
            virt: self,
            base: va.align_down(PAGE_SIZE),
        }
    }
}

impl VirtTables for MmuVirt<'_> {
    type Table<'a>
        = VirtTable<'a>
    where
        Self: 'a;

    unsafe fn table_at(&self, va: VirtAddr) -> VirtTable<'_> {
        MmuVirt::table_at(self, va)
    }
}

/// Shared use: keep the [`MmuVirt`] (and its fault counter) in the test
/// while a [`TableAccess`](paging_core::TableAccess) built on it owns a reference.
// SAFETY: as for `MmuVirt` itself.
unsafe impl paging_core::IsolatedVirt for &MmuVirt<'_> {}

impl<'v, 'r> VirtTables for &'v MmuVirt<'r> {
    type Table<'a>
        = VirtTable<'a>
    where
        Self: 'a;

    unsafe fn table_at(&self, va: VirtAddr) -> VirtTable<'_> {
        MmuVirt::table_at(self, va)
    }
}

/// The 4 KiB page at one virtual address, every access translated by the
/// simulated CPU of its [`MmuVirt`].
#[derive(Clone, Copy)]
pub struct VirtTable<'a> {
    virt: &'a MmuVirt<'a>,
    base: VirtAddr,
}

impl fmt::Debug for VirtTable<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VirtTable")
            .field("base", &self.base)
            .finish()
    }
}

impl VirtTable<'_> {
    /// The virtual address of the page.
    pub fn base(&self) -> VirtAddr {
        self.base
    }

    fn at(&self, offset: usize, access: Access) -> Option<PhysAddr> {
        let va = VirtAddr::new(self.base.as_u32().wrapping_add(offset as u32));
        self.virt.translate(va, access)
    }
}

impl RawTable for VirtTable<'_> {
    fn load32(&self, word: usize) -> u32 {
        let ram = self.virt.mmu.ram();
        self.at(4 * (word % WORDS_PER_TABLE), Access::READ)
            .and_then(|pa| ram.read_u32(pa).ok())
            .unwrap_or(0)
    }

    fn store32(&self, word: usize, value: u32) {
        let ram = self.virt.mmu.ram();
        if let Some(pa) = self.at(4 * (word % WORDS_PER_TABLE), Access::WRITE) {
            // Aligned by construction: the write cannot fail.
            let _ = ram.write_u32(pa, value);
        }
    }

    fn swap32(&self, word: usize, value: u32) -> u32 {
        let ram = self.virt.mmu.ram();
        let Some(pa) = self.at(4 * (word % WORDS_PER_TABLE), Access::WRITE) else {
            return 0;
        };
        loop {
            let Ok(current) = ram.read_u32(pa) else {
                return 0;
            };
            match ram.compare_exchange_u32(pa, current, value) {
                Ok(Ok(old)) => return old,
                Ok(Err(_)) => continue,
                Err(_) => return 0,
            }
        }
    }

    /// A word the view cannot reach reads as 0 and takes no store, as in
    /// the other methods: `Err(0)`.
    fn compare_exchange32(&self, word: usize, current: u32, new: u32) -> Result<u32, u32> {
        let ram = self.virt.mmu.ram();
        let Some(pa) = self.at(4 * (word % WORDS_PER_TABLE), Access::WRITE) else {
            return Err(0);
        };
        ram.compare_exchange_u32(pa, current, new).unwrap_or(Err(0))
    }

    fn load64(&self, entry: usize) -> u64 {
        let ram = self.virt.mmu.ram();
        self.at(8 * (entry % QWORDS_PER_TABLE), Access::READ)
            .and_then(|pa| ram.read_u64(pa).ok())
            .unwrap_or(0)
    }

    fn store64(&self, entry: usize, value: u64) {
        let ram = self.virt.mmu.ram();
        if let Some(pa) = self.at(8 * (entry % QWORDS_PER_TABLE), Access::WRITE) {
            // Aligned by construction: the write cannot fail.
            let _ = ram.write_u64(pa, value);
        }
    }

    fn swap64(&self, entry: usize, value: u64) -> u64 {
        let ram = self.virt.mmu.ram();
        let Some(pa) = self.at(8 * (entry % QWORDS_PER_TABLE), Access::WRITE) else {
            return 0;
        };
        loop {
            let Ok(current) = ram.read_u64(pa) else {
                return 0;
            };
            match ram.compare_exchange_u64(pa, current, value) {
                Ok(Ok(old)) => return old,
                Ok(Err(_)) => continue,
                Err(_) => return 0,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{SimConfig, SimRam};

    fn pa(x: u64) -> PhysAddr {
        PhysAddr::new(x).unwrap()
    }

    /// PAE: 0xC000_0000 -> frame `target` (PDPT at 0x1000, PD 0x2000, PT 0x3000).
    fn pae_cpu(ram: &SimRam) -> Mmu<'_> {
        ram.write_u64(pa(0x1000 + 8 * 3), 0x2000 | 1).unwrap();
        ram.write_u64(pa(0x2000), 0x3000 | 0b11).unwrap();
        ram.write_u64(pa(0x3000), 0x1_2345_6000 | 0b11).unwrap();
        let cpu = Mmu::new(ram, SimConfig::pae());
        cpu.load_cr3(0x1000).unwrap();
        cpu
    }

    #[test]
    fn accesses_go_through_the_tlb_like_hardware() {
        let ram = SimRam::new();
        let cpu = pae_cpu(&ram);
        let virt = MmuVirt::new(&cpu);
        let t = virt.table_at(VirtAddr::new(0xC000_0123));
        assert_eq!(t.base(), VirtAddr::new(0xC000_0000));
        t.store64(5, 0x1111);
        assert_eq!(ram.read_u64(pa(0x1_2345_6028)).unwrap(), 0x1111);
        // Re-point the PTE without invlpg: the TLB still names the old frame.
        ram.write_u64(pa(0x3000), 0x7000 | 0b11).unwrap();
        assert_eq!(t.swap64(5, 0x2222), 0x1111);
        assert_eq!(ram.read_u64(pa(0x1_2345_6028)).unwrap(), 0x2222);
        assert_eq!(ram.read_u64(pa(0x7028)).unwrap(), 0);
        cpu.invlpg(VirtAddr::new(0xC000_0000));
        t.store32(0, 0xAB);
        assert_eq!(t.swap32(0, 0xCD), 0xAB);
        assert_eq!(t.load32(0), 0xCD);
        assert_eq!(ram.read_u32(pa(0x7000)).unwrap(), 0xCD);
        assert_eq!(virt.faults(), 0);
        assert_eq!(virt.accesses(), 5);
        // The MMU set Accessed and Dirty on the PTE it used.
        assert_eq!(ram.read_u64(pa(0x3000)).unwrap() & 0x60, 0x60);
    }

    #[test]
    fn faults_are_recorded_and_change_nothing() {
        let ram = SimRam::new();
        let cpu = pae_cpu(&ram);
        let virt = MmuVirt::new(&cpu);
        let t = virt.table_at(VirtAddr::new(0xC020_0000));
        t.store64(0, 9);
        t.store32(1, 9);
        assert_eq!(t.swap64(0, 9), 0);
        assert_eq!(t.swap32(0, 9), 0);
        assert_eq!(t.load32(0), 0);
        assert_eq!(virt.faults(), 5);
        let fault = virt.last_fault().unwrap();
        assert_eq!(fault.addr, VirtAddr::new(0xC020_0000));
        assert!(!fault.is_protection());
        // Only the three tables were ever touched: no store reached RAM.
        assert_eq!(ram.touched_frames(), 3);
    }
}
