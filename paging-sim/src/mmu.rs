//! One simulated CPU: CR3, the PDPTE registers, the TLB, and translation.
//! Reads and writes by linear address are in `linear.rs`.

use std::sync::{Mutex, MutexGuard, PoisonError};

use super::config::{SimConfig, SimPaging};
use super::fault::{Access, Cr3Fault, PageFault};
use super::memtype::{MemoryType, invalid_pat_entry};
use super::ram::SimRam;
use super::tlb::{Tlb, TlbEntry, TlbStats};
use super::walk::{self, A, D, Regs, UsedEntry, WalkFail, Walked};
use paging_core::addr::{PageSize, PhysAddr, VirtAddr};
use paging_core::flush::TlbOps;

/// What the hardware made of a linear address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HwTranslation {
    /// The physical address of the byte `va` names.
    pub pa: PhysAddr,
    /// Size of the page that maps it.
    pub size: PageSize,
    /// Writable at every level.
    pub writable: bool,
    /// User-accessible at every level.
    pub user: bool,
    /// Execute-disabled at some level (EFER.NXE on).
    pub nx: bool,
    /// Global (G on the leaf and CR4.PGE on).
    pub global: bool,
    /// The memory type the leaf's PAT, PCD and PWT bits select in the CPU's
    /// IA32_PAT ([`SimConfig::pat`]): entry `PAT * 4 + PCD * 2 + PWT`, PAT
    /// being bit 7 of a PTE and bit 12 of a large-page PDE (SDM Vol. 3A
    /// 11.12.3). The model has no MTRRs, so this is the page-level type, not
    /// combined with an MTRR type (SDM table 11-7). A TLB hit reports the
    /// type cached with the translation.
    pub memory_type: MemoryType,
}

#[derive(Debug)]
struct CpuState {
    regs: Regs,
    tlb: Tlb,
    cr3_faults: u64,
    last_cr3_fault: Option<Cr3Fault>,
}

/// One simulated CPU over a shared [`SimRam`].
///
/// All methods take `&self` (the registers and TLB sit behind a mutex), so a
/// `Mmu` can be shared between test threads. CR3 starts at zero with no
/// PDPTE latched: load CR3 before translating.
#[derive(Debug)]
pub struct Mmu<'r> {
    ram: &'r SimRam,
    config: SimConfig,
    state: Mutex<CpuState>,
}

impl<'r> Mmu<'r> {
    /// A CPU over `ram` with `config` (normalised, see [`SimConfig`]).
    ///
    /// # Panics
    /// If an entry of `config.pat` is a reserved encoding: no CPU can hold
    /// that PAT (WRMSR raises #GP).
    pub fn new(ram: &'r SimRam, config: SimConfig) -> Self {
        if let Some(index) = invalid_pat_entry(config.pat) {
            panic!(
                "SimConfig::pat {:#018x}: entry {index} is a reserved encoding (WRMSR would #GP)",
                config.pat
            );
        }
        Self {
            ram,
            config: config.normalized(),
            state: Mutex::new(CpuState {
                regs: Regs {
                    cr3: 0,
                    pdptes: [0; 4],
                },
                tlb: Tlb::new(),
                cr3_faults: 0,
                last_cr3_fault: None,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, CpuState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The effective configuration.
    pub fn config(&self) -> SimConfig {
        self.config
    }

    /// The RAM this CPU reads.
    pub fn ram(&self) -> &'r SimRam {
        self.ram
    }

    /// MOV to CR3. Under PAE, bits 31:5 address the PDPT and its four
    /// entries are latched now (later changes to the PDPT in RAM are
    /// invisible until the next load); a present PDPTE with a reserved bit
    /// set raises #GP and changes nothing. In 2-level mode bits 31:12
    /// address the page directory. Flushes non-global translations and the
    /// PDE cache.
    pub fn load_cr3(&self, cr3: u32) -> Result<(), Cr3Fault> {
        let mut st = self.lock();
        self.relatch(&mut st, cr3)?;
        st.regs.cr3 = cr3;
        st.tlb.flush_nonglobal();
        Ok(())
    }

    /// Re-read the PDPTEs for `cr3` (PAE), recording a #GP.
    fn relatch(&self, st: &mut CpuState, cr3: u32) -> Result<(), Cr3Fault> {
        if self.config.paging != SimPaging::Pae {
            return Ok(());
        }
        match walk::latch_pdptes(self.ram, &self.config, cr3) {
            Ok(pdptes) => {
                st.regs.pdptes = pdptes;
                Ok(())
            }
            Err(index) => {
                let base = PhysAddr::new_truncate(u64::from(cr3 & 0xFFFF_FFE0) + 8 * index as u64);
                let fault = Cr3Fault {
                    cr3,
                    index,
                    pdpte: self.ram.read_u64(base).unwrap_or(0),
                };
                st.cr3_faults += 1;
                st.last_cr3_fault = Some(fault);
                Err(fault)
            }
        }
    }

    /// The current CR3.
    pub fn cr3(&self) -> u32 {
        self.lock().regs.cr3
    }

    /// The PDPTE registers (PAE; zeros in 2-level mode).
    pub fn pdptes(&self) -> [u64; 4] {
        self.lock().regs.pdptes
    }

    /// How many CR3 loads or CR4.PGE toggles raised #GP, including those
    /// made through [`TlbOps`] (which cannot return the error).
    pub fn cr3_faults(&self) -> u64 {
        self.lock().cr3_faults
    }

    /// The last #GP a CR3 load or CR4.PGE toggle raised.
    pub fn last_cr3_fault(&self) -> Option<Cr3Fault> {
        self.lock().last_cr3_fault
    }

    /// `invlpg va`.
    pub fn invlpg(&self, va: VirtAddr) {
        self.lock().tlb.invlpg(va);
    }

    /// Toggle CR4.PGE: drop every translation, global ones included. Under
    /// PAE a MOV to CR4 that changes PGE also re-latches the PDPTEs (SDM
    /// 4.4.1); if one is invalid the toggle raises #GP (recorded, see
    /// [`cr3_faults`](Self::cr3_faults)) and nothing changes.
    pub fn flush_global(&self) {
        let mut st = self.lock();
        let cr3 = st.regs.cr3;
        if self.relatch(&mut st, cr3).is_ok() {
            st.tlb.flush_all();
        }
    }

    /// The TLB counters.
    pub fn tlb_stats(&self) -> TlbStats {
        self.lock().tlb.stats()
    }

    /// A copy of the TLB and PDE cache as they are now.
    pub fn tlb_snapshot(&self) -> Tlb {
        self.lock().tlb.clone()
    }

    /// Translate `va` for `access` as the CPU does: from the TLB if it holds
    /// the page (with the rights it cached), else by walking RAM, setting A
    /// on every entry used and D on the leaf for a write, and caching the
    /// result. A write through a TLB entry whose D was clear walks again to
    /// set D. A fault drops the cached entries for `va`.
    pub fn translate(&self, va: VirtAddr, access: Access) -> Result<HwTranslation, PageFault> {
        let mut st = self.lock();
        if let Some((vbase, e)) = st.tlb.lookup(va) {
            if !walk::allowed(&self.config, e.writable, e.user, e.nx, access) {
                st.tlb.invalidate_for_fault(va);
                return Err(walk::fault(&self.config, va, access, true, false));
            }
            if !access.write || e.dirty {
                let offset = u64::from(va.as_u32() - vbase.as_u32());
                return Ok(HwTranslation {
                    pa: PhysAddr::new_truncate(e.base.as_u64() + offset),
                    size: e.size,
                    writable: e.writable,
                    user: e.user,
                    nx: e.nx,
                    global: e.global,
                    memory_type: e.memory_type,
                });
            }
        }
        loop {
            st.tlb.record_walk();
            let cached = st.tlb.lookup_pde(va, self.config.pde_region());
            let w = match self.checked_walk(&st.regs, va, access, cached) {
                Ok(w) => w,
                Err(fault) => {
                    st.tlb.invalidate_for_fault(va);
                    return Err(fault);
                }
            };
            if !self.set_accessed_dirty(&w, access.write) {
                // An entry changed under the walk: walk again.
                continue;
            }
            let tr = self.translation(&w, va);
            st.tlb.insert(
                va,
                TlbEntry {
                    base: w.base,
                    size: w.size,
                    writable: tr.writable,
                    user: tr.user,
                    nx: tr.nx,
                    global: tr.global,
                    dirty: access.write || w.leaf.value & D != 0,
                    memory_type: tr.memory_type,
                },
            );
            if let Some(pde) = w.pde {
                st.tlb.insert_pde(va, pde);
            }
            return Ok(tr);
        }
    }

    /// What a fresh walk of RAM says about `va` right now (using the
    /// latched PDPTEs, as the CPU would): no TLB, no PDE cache, no
    /// Accessed/Dirty writes, no counters.
    pub fn walk_uncached(&self, va: VirtAddr, access: Access) -> Result<HwTranslation, PageFault> {
        let regs = self.lock().regs;
        let w = self.checked_walk(&regs, va, access, None)?;
        Ok(self.translation(&w, va))
    }

    fn checked_walk(
        &self,
        regs: &Regs,
        va: VirtAddr,
        access: Access,
        cached: Option<super::tlb::PdeCacheEntry>,
    ) -> Result<Walked, PageFault> {
        let cfg = &self.config;
        let w = walk::walk(self.ram, cfg, regs, va, cached)
            .map_err(|fail| walk::fault(cfg, va, access, false, fail == WalkFail::Reserved))?;
        if walk::allowed(cfg, w.writable, w.user, w.nx, access) {
            Ok(w)
        } else {
            Err(walk::fault(cfg, va, access, true, false))
        }
    }

    fn translation(&self, w: &Walked, va: VirtAddr) -> HwTranslation {
        let offset = u64::from(va.as_u32()) & (w.size.bytes() - 1);
        HwTranslation {
            pa: PhysAddr::new_truncate(w.base.as_u64() + offset),
            size: w.size,
            writable: w.writable,
            user: w.user,
            nx: w.nx,
            global: w.global_bit && self.config.pge,
            memory_type: w.memory_type,
        }
    }

    /// Set A on the PDE and the leaf and D on the leaf for a write, each with
    /// one compare-exchange against the value the walk read. False if an
    /// entry changed since it was read.
    fn set_accessed_dirty(&self, w: &Walked, write: bool) -> bool {
        let leaf_bits = if write { A | D } else { A };
        let steps = [w.upper.map(|e| (e, A)), Some((w.leaf, leaf_bits))];
        steps
            .into_iter()
            .flatten()
            .all(|(e, bits)| self.set_bits(e, bits))
    }

    fn set_bits(&self, e: UsedEntry, bits: u64) -> bool {
        let new = e.value | bits;
        if new == e.value {
            return true;
        }
        let swapped = if e.wide {
            self.ram.compare_exchange_u64(e.addr, e.value, new)
        } else {
            self.ram
                .compare_exchange_u32(e.addr, e.value as u32, new as u32)
                .map(|r| r.map(u64::from).map_err(u64::from))
        };
        matches!(swapped, Ok(Ok(_)))
    }
}

/// The CPU's own TLB maintenance: `invlpg`, a CR3 reload (re-latching the
/// PDPTEs under PAE; a #GP is recorded in [`Mmu::cr3_faults`]), and a
/// CR4.PGE toggle. Range flushes use the trait's default, so they show up as
/// `invlpg`s or one global flush in [`TlbStats`].
impl TlbOps for Mmu<'_> {
    fn flush_page(&self, va: VirtAddr) {
        self.invlpg(va);
    }

    fn flush_all(&self) {
        let mut st = self.lock();
        let cr3 = st.regs.cr3;
        if self.relatch(&mut st, cr3).is_ok() {
            st.tlb.flush_nonglobal();
        }
    }

    fn flush_everything(&self) {
        self.flush_global();
    }
}
