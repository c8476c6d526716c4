//! The page walk of SDM Vol. 3A 4.3 (32-bit paging) and 4.4 (PAE paging),
//! written from the manual, independently of the backends' entry code.
//!
//! This module only reads RAM. Setting Accessed/Dirty, the TLB and the
//! paging-structure cache are the MMU's business (`mmu.rs`).

use super::config::{SimConfig, SimPaging};
use super::fault::{Access, PageFault};
use super::memtype::{MemoryType, PAT_POWER_ON, pat_entry};
use super::ram::SimRam;
use super::tlb::PdeCacheEntry;
use paging_core::addr::{PageSize, PhysAddr, PhysFrame, VirtAddr};

/// Present.
pub(crate) const P: u64 = 1 << 0;
/// Read/write.
pub(crate) const RW: u64 = 1 << 1;
/// User/supervisor.
pub(crate) const US: u64 = 1 << 2;
/// Page-level write-through (PWT): bit 0 of the PAT index.
const PWT: u64 = 1 << 3;
/// Page-level cache disable (PCD): bit 1 of the PAT index.
const PCD: u64 = 1 << 4;
/// PAT bit of a PTE (bit 7; in a PDE that bit is PS): bit 2 of the index.
const PTE_PAT: u64 = 1 << 7;
/// PAT bit of a PDE that maps a 4 MiB or 2 MiB page (bit 12).
const LARGE_PAT: u64 = 1 << 12;
/// Accessed.
pub(crate) const A: u64 = 1 << 5;
/// Dirty (leaf entries).
pub(crate) const D: u64 = 1 << 6;
/// Page size (PDEs).
pub(crate) const PS: u64 = 1 << 7;
/// Global (leaf entries).
pub(crate) const G: u64 = 1 << 8;
/// Execute-disable (PAE, with EFER.NXE).
pub(crate) const XD: u64 = 1 << 63;

/// 32-bit paging, 4 MiB PDE without PSE-36: bits 21:13 are reserved.
const PDE4M_RESERVED: u64 = 0x1FF << 13;

/// The reserved bits of a 32-bit 4 MiB PDE (SDM Vol. 3A 4.3, table 4-4):
/// bits 21:13 without PSE-36; with it, bits 21:(M-19) for M = min(40,
/// MAXPHYADDR), bits (M-20):13 holding address bits (M-1):32. Without the
/// PAT, bit 12 too.
fn pde4m_reserved(cfg: &SimConfig) -> u64 {
    let addr = if cfg.pse36 { pse36_bits(cfg) } else { 0 };
    let pat = if cfg.has_pat { 0 } else { LARGE_PAT };
    (PDE4M_RESERVED & !addr) | pat
}

/// With PSE-36: the PDE bits (M-20):13 that hold address bits (M-1):32.
fn pse36_bits(cfg: &SimConfig) -> u64 {
    let m = cfg.max_phys_bits.min(40);
    ((1u64 << (m - 32)) - 1) << 13
}
/// PAE 2 MiB PDE: bits 20:13 are reserved.
const PDE2M_RESERVED: u64 = 0xFF << 13;
/// PAE PDPTE: bits 2:1 and 8:5 are reserved (bits 63:M too, added per CPU).
const PDPTE_RESERVED_LOW: u64 = 0b110 | (0xF << 5);

/// The CPU registers a walk starts from.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Regs {
    pub cr3: u32,
    /// The PDPTE registers (PAE only), latched at the last CR3 load.
    pub pdptes: [u64; 4],
}

/// A paging-structure entry the walk read from RAM.
#[derive(Debug, Clone, Copy)]
pub(crate) struct UsedEntry {
    pub addr: PhysAddr,
    pub value: u64,
    /// 8-byte (PAE) rather than 4-byte entry.
    pub wide: bool,
}

/// A walk that reached a present leaf.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Walked {
    pub base: PhysAddr,
    pub size: PageSize,
    pub writable: bool,
    pub user: bool,
    pub nx: bool,
    /// G on the leaf (CR4.PGE not yet applied).
    pub global_bit: bool,
    /// The type the leaf's PAT/PCD/PWT select in IA32_PAT.
    pub memory_type: MemoryType,
    /// The PDE read from RAM when it points to a PTE table (`None` when it
    /// came from the PDE cache, or is itself the leaf).
    pub upper: Option<UsedEntry>,
    /// The entry that maps the page.
    pub leaf: UsedEntry,
    /// The PDE-cache entry this walk used or can create.
    pub pde: Option<PdeCacheEntry>,
}

/// Why a walk stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WalkFail {
    NotPresent,
    Reserved,
}

/// Bits 63:M of an entry, for MAXPHYADDR `m` (bit 63 included).
pub(crate) fn above_maxphy(m: u32) -> u64 {
    !((1u64 << m) - 1)
}

/// Whether the rights combined over the walk allow `access` (SDM 4.6).
pub(crate) fn allowed(
    cfg: &SimConfig,
    writable: bool,
    user: bool,
    nx: bool,
    access: Access,
) -> bool {
    if access.user && !user {
        return false;
    }
    if access.write && !writable && (access.user || cfg.wp) {
        return false;
    }
    !(access.exec && cfg.nxe && nx)
}

/// The #PF error code for `access` (SDM 4.7).
pub(crate) fn fault(
    cfg: &SimConfig,
    va: VirtAddr,
    access: Access,
    present: bool,
    reserved: bool,
) -> PageFault {
    let mut code = 0;
    if present || reserved {
        code |= PageFault::PRESENT;
    }
    if reserved {
        code |= PageFault::RESERVED;
    }
    if access.write {
        code |= PageFault::WRITE;
    }
    if access.user {
        code |= PageFault::USER;
    }
    if access.exec && cfg.nxe && cfg.paging == SimPaging::Pae {
        code |= PageFault::FETCH;
    }
    PageFault::new(va, code)
}

fn read(ram: &SimRam, addr: u64, wide: bool) -> UsedEntry {
    let addr = PhysAddr::new_truncate(addr);
    // Entry addresses are built aligned to the entry size, so the reads
    // cannot fail; a failure would read as a not-present entry.
    let value = if wide {
        ram.read_u64(addr).unwrap_or(0)
    } else {
        ram.read_u32(addr).map_or(0, u64::from)
    };
    UsedEntry { addr, value, wide }
}

fn frame(addr: u64) -> PhysFrame {
    PhysFrame::containing_address(PhysAddr::new_truncate(addr))
}

fn bit(value: u64, mask: u64) -> bool {
    value & mask != 0
}

/// SDM 11.12.3: the PAT entry a leaf selects is PAT * 4 + PCD * 2 + PWT,
/// with PAT at bit 7 of a PTE and bit 12 of a large-page PDE (`pat_bit`).
/// Without the PAT, PCD and PWT alone select WB, WT, UC- or UC (the
/// power-on PAT's first four entries, which were chosen to match).
fn memory_type(cfg: &SimConfig, leaf: u64, pat_bit: u64) -> MemoryType {
    let low = u64::from(bit(leaf, PCD)) << 1 | u64::from(bit(leaf, PWT));
    if !cfg.has_pat {
        return pat_entry(PAT_POWER_ON, low);
    }
    pat_entry(cfg.pat, u64::from(bit(leaf, pat_bit)) << 2 | low)
}

/// Walk RAM for `va`, starting from `cached` instead of the PDE if given.
pub(crate) fn walk(
    ram: &SimRam,
    cfg: &SimConfig,
    regs: &Regs,
    va: VirtAddr,
    cached: Option<PdeCacheEntry>,
) -> Result<Walked, WalkFail> {
    match cfg.paging {
        SimPaging::TwoLevel => walk_two_level(ram, cfg, regs, va, cached),
        SimPaging::Pae => walk_pae(ram, cfg, regs, va, cached),
    }
}

fn walk_two_level(
    ram: &SimRam,
    cfg: &SimConfig,
    regs: &Regs,
    va: VirtAddr,
    cached: Option<PdeCacheEntry>,
) -> Result<Walked, WalkFail> {
    let va32 = u64::from(va.as_u32());
    let (pde, upper) = match cached {
        Some(pde) => (pde, None),
        None => {
            let dir = u64::from(regs.cr3) & 0xFFFF_F000;
            let e = read(ram, dir + 4 * (va32 >> 22), false);
            if !bit(e.value, P) {
                return Err(WalkFail::NotPresent);
            }
            if cfg.pse && bit(e.value, PS) {
                if bit(e.value, pde4m_reserved(cfg)) {
                    return Err(WalkFail::Reserved);
                }
                let high = if cfg.pse36 {
                    (e.value & pse36_bits(cfg)) >> 13 << 32
                } else {
                    0
                };
                return Ok(Walked {
                    base: PhysAddr::new_truncate(high | e.value & 0xFFC0_0000),
                    size: PageSize::Size4MiB,
                    writable: bit(e.value, RW),
                    user: bit(e.value, US),
                    nx: false,
                    global_bit: bit(e.value, G),
                    memory_type: memory_type(cfg, e.value, LARGE_PAT),
                    upper: None,
                    leaf: e,
                    pde: None,
                });
            }
            // Without CR4.PSE the PS bit is ignored (SDM Vol. 3A table
            // 4-5): the PDE references a page table, even if it was meant
            // as a 4 MiB page.
            let pde = PdeCacheEntry {
                table: frame(e.value & 0xFFFF_F000),
                region: PageSize::Size4MiB,
                writable: bit(e.value, RW),
                user: bit(e.value, US),
                nx: false,
            };
            (pde, Some(e))
        }
    };
    let table = pde.table.start_address().as_u64();
    let pte = read(ram, table + 4 * ((va32 >> 12) & 0x3FF), false);
    if !bit(pte.value, P) {
        return Err(WalkFail::NotPresent);
    }
    // SDM Vol. 3A 4.3: with CR4.PSE set and no PAT, bit 7 of a PTE is
    // reserved; with CR4.PSE clear no bit is reserved in 32-bit paging.
    if cfg.pse && !cfg.has_pat && bit(pte.value, PTE_PAT) {
        return Err(WalkFail::Reserved);
    }
    Ok(Walked {
        base: PhysAddr::new_truncate(pte.value & 0xFFFF_F000),
        size: PageSize::Size4KiB,
        writable: pde.writable && bit(pte.value, RW),
        user: pde.user && bit(pte.value, US),
        nx: false,
        global_bit: bit(pte.value, G),
        memory_type: memory_type(cfg, pte.value, PTE_PAT),
        upper,
        leaf: pte,
        pde: Some(pde),
    })
}

fn walk_pae(
    ram: &SimRam,
    cfg: &SimConfig,
    regs: &Regs,
    va: VirtAddr,
    cached: Option<PdeCacheEntry>,
) -> Result<Walked, WalkFail> {
    let va32 = u64::from(va.as_u32());
    let addr_mask = !above_maxphy(cfg.max_phys_bits);
    // Bits 62:M always, bit 63 unless XD is enabled.
    let reserved = if cfg.nxe {
        above_maxphy(cfg.max_phys_bits) & !XD
    } else {
        above_maxphy(cfg.max_phys_bits)
    };
    let nx_of = |value: u64| cfg.nxe && bit(value, XD);
    let (pde, upper) = match cached {
        Some(pde) => (pde, None),
        None => {
            let pdpte = regs.pdptes[((va32 >> 30) & 3) as usize];
            if !bit(pdpte, P) {
                return Err(WalkFail::NotPresent);
            }
            let dir = pdpte & addr_mask & !0xFFF;
            let e = read(ram, dir + 8 * ((va32 >> 21) & 0x1FF), true);
            if !bit(e.value, P) {
                return Err(WalkFail::NotPresent);
            }
            if bit(e.value, reserved) {
                return Err(WalkFail::Reserved);
            }
            if bit(e.value, PS) {
                // SDM Vol. 3A 4.4.2: bits 20:13, and bit 12 without the PAT.
                let pat = if cfg.has_pat { 0 } else { LARGE_PAT };
                if bit(e.value, PDE2M_RESERVED | pat) {
                    return Err(WalkFail::Reserved);
                }
                return Ok(Walked {
                    base: PhysAddr::new_truncate(e.value & addr_mask & !0x1F_FFFF),
                    size: PageSize::Size2MiB,
                    writable: bit(e.value, RW),
                    user: bit(e.value, US),
                    nx: nx_of(e.value),
                    global_bit: bit(e.value, G),
                    memory_type: memory_type(cfg, e.value, LARGE_PAT),
                    upper: None,
                    leaf: e,
                    pde: None,
                });
            }
            let pde = PdeCacheEntry {
                table: frame(e.value & addr_mask & !0xFFF),
                region: PageSize::Size2MiB,
                writable: bit(e.value, RW),
                user: bit(e.value, US),
                nx: nx_of(e.value),
            };
            (pde, Some(e))
        }
    };
    let table = pde.table.start_address().as_u64();
    let pte = read(ram, table + 8 * ((va32 >> 12) & 0x1FF), true);
    if !bit(pte.value, P) {
        return Err(WalkFail::NotPresent);
    }
    // SDM Vol. 3A 4.4.2: without the PAT, bit 7 of a PTE is reserved.
    let pat = if cfg.has_pat { 0 } else { PTE_PAT };
    if bit(pte.value, reserved | pat) {
        return Err(WalkFail::Reserved);
    }
    Ok(Walked {
        base: PhysAddr::new_truncate(pte.value & addr_mask & !0xFFF),
        size: PageSize::Size4KiB,
        writable: pde.writable && bit(pte.value, RW),
        user: pde.user && bit(pte.value, US),
        nx: pde.nx || nx_of(pte.value),
        global_bit: bit(pte.value, G),
        memory_type: memory_type(cfg, pte.value, PTE_PAT),
        upper,
        leaf: pte,
        pde: Some(pde),
    })
}

/// Check the four PDPTEs a PAE CR3 load would latch (SDM 4.4.1).
pub(crate) fn latch_pdptes(ram: &SimRam, cfg: &SimConfig, cr3: u32) -> Result<[u64; 4], usize> {
    let base = u64::from(cr3) & 0xFFFF_FFE0;
    let reserved = PDPTE_RESERVED_LOW | above_maxphy(cfg.max_phys_bits);
    let mut pdptes = [0; 4];
    for (i, slot) in pdptes.iter_mut().enumerate() {
        let e = read(ram, base + 8 * i as u64, true).value;
        if bit(e, P) && bit(e, reserved) {
            return Err(i);
        }
        *slot = e;
    }
    Ok(pdptes)
}
