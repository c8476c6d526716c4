//! The simulated CPU families (Pentium, P6, P6 with NX) fault with RSVD on
//! exactly the entry bits their missing features make reserved, from the
//! SDM (Vol. 3A 4.3 for 32-bit paging, 4.4.2 for PAE), on tables built by
//! hand.
mod sim_support;

use paging_core::PageSize;
use paging_sim::{Access, Mmu, SimConfig, SimPaging, SimRam};
use sim_support::*;

const PD: u64 = 0x1000;
const PT: u64 = 0x2000;
const PDPT: u64 = 0x3000;
/// Bit 7 of a PTE: PAT (with the PAT), else reserved.
const PTE_PAT: u64 = 1 << 7;
/// Bit 12 of a large-page PDE: PAT (with the PAT), else reserved.
const LARGE_PAT: u64 = 1 << 12;

/// 2-level: PDE 0x300 (0xC000_0000) -> PT, PDE 0x301 a 4 MiB page with
/// `large_extra` bits, PTE 0 -> 0x5000 with `pte_extra` bits.
fn two_level(config: SimConfig, pte_extra: u64, large_extra: u64) -> (SimRam, SimConfig) {
    let ram = SimRam::new();
    set32(&ram, PD, 0x300, PT | P | RW);
    set32(&ram, PD, 0x301, 0x40_0000 | P | RW | PS | large_extra);
    set32(&ram, PT, 0, 0x5000 | P | RW | pte_extra);
    (ram, config)
}

/// PAE: PDPTE 3 -> PD, PDE 0 -> PT, PDE 1 a 2 MiB page with `large_extra`,
/// PTE 0 -> 0x5000 with `pte_extra`.
fn pae(config: SimConfig, pte_extra: u64, large_extra: u64) -> (SimRam, SimConfig) {
    let ram = SimRam::new();
    set64(&ram, PDPT, 3, PD | P);
    set64(&ram, PD, 0, PT | P | RW);
    set64(&ram, PD, 1, 0x20_0000 | P | RW | PS | large_extra);
    set64(&ram, PT, 0, 0x5000 | P | RW | pte_extra);
    (ram, config)
}

/// Whether reading the 4 KiB page and the large page fault RSVD.
fn rsvd((ram, config): (SimRam, SimConfig)) -> (bool, bool) {
    let mmu = Mmu::new(&ram, config);
    let root = if config.paging == SimPaging::Pae {
        PDPT
    } else {
        PD
    };
    mmu.load_cr3(root as u32).unwrap();
    let small = mmu.walk_uncached(va(0xC000_0000), Access::READ);
    let large = mmu.walk_uncached(va(0xC040_0000), Access::READ);
    let is_rsvd = |r: Result<_, paging_sim::PageFault>| r.is_err_and(|f| f.is_reserved());
    (is_rsvd(small), is_rsvd(large))
}

#[test]
fn without_the_pat_its_bit_is_reserved_under_pae() {
    let no_pat = SimConfig {
        has_pat: false,
        ..SimConfig::p6(SimPaging::Pae)
    };
    // PAE's large page is at 0xC020_0000: check it separately.
    let (ram, config) = pae(no_pat, PTE_PAT, LARGE_PAT);
    let mmu = Mmu::new(&ram, config);
    mmu.load_cr3(PDPT as u32).unwrap();
    for at in [0xC000_0000, 0xC020_0000] {
        let f = mmu.walk_uncached(va(at), Access::READ).unwrap_err();
        assert!(f.is_reserved(), "{at:#x}: {f:?}");
    }
    // With the PAT the same entries translate.
    let (ram, config) = pae(SimConfig::p6(SimPaging::Pae), PTE_PAT, LARGE_PAT);
    let mmu = Mmu::new(&ram, config);
    mmu.load_cr3(PDPT as u32).unwrap();
    assert_eq!(
        mmu.walk_uncached(va(0xC000_0010), Access::READ).unwrap().pa,
        pa(0x5010)
    );
    let t = mmu.walk_uncached(va(0xC020_0010), Access::READ).unwrap();
    assert_eq!((t.pa, t.size), (pa(0x20_0010), PageSize::Size2MiB));
}

#[test]
fn pentium_reserves_the_pat_bits_only_with_cr4_pse() {
    // SDM 4.3: with CR4.PSE = 1 and no PAT, bit 7 of a PTE and bit 12 of a
    // 4 MiB PDE are reserved.
    assert_eq!(
        rsvd(two_level(SimConfig::pentium(), PTE_PAT, LARGE_PAT)),
        (true, true)
    );
    assert_eq!(rsvd(two_level(SimConfig::pentium(), 0, 0)), (false, false));
    // With CR4.PSE = 0 no bit is reserved: the PTE's bit 7 is ignored, and
    // the PDE with PS is a page-table pointer (its "page" read as a table).
    let no_pse = SimConfig {
        pse: false,
        ..SimConfig::pentium()
    };
    let (ram, config) = two_level(no_pse, PTE_PAT, LARGE_PAT);
    let mmu = Mmu::new(&ram, config);
    mmu.load_cr3(PD as u32).unwrap();
    assert_eq!(
        mmu.walk_uncached(va(0xC000_0010), Access::READ).unwrap().pa,
        pa(0x5010)
    );
    // Entry 0 of the "table" at 0x40_0000 is empty RAM: not present, no RSVD.
    let f = mmu
        .walk_uncached(va(0xC040_0000), Access::READ)
        .unwrap_err();
    assert!(!f.is_reserved() && !f.is_protection(), "{f:?}");
    // A P6 has the PAT: the same bits select a memory type.
    assert_eq!(
        rsvd(two_level(
            SimConfig::p6(SimPaging::TwoLevel),
            PTE_PAT,
            LARGE_PAT
        )),
        (false, false)
    );
}

#[test]
fn without_the_pat_pcd_and_pwt_alone_select_the_type() {
    let no_pat = SimConfig {
        has_pat: false,
        // An IA32_PAT the CPU does not have is not used.
        pat: 0x0101_0101_0101_0101,
        ..SimConfig::pentium()
    };
    let pwt = 1 << 3;
    let (ram, config) = two_level(no_pat, pwt, 0);
    let mmu = Mmu::new(&ram, config);
    mmu.load_cr3(PD as u32).unwrap();
    let t = mmu.walk_uncached(va(0xC000_0000), Access::READ).unwrap();
    assert_eq!(t.memory_type, paging_sim::MemoryType::Wt);
}

#[test]
fn pse36_holds_address_bits_the_pentium_reserves() {
    // A 4 MiB page at 0x9_0040_0000: address bits 35:32 (0x9) in PDE bits
    // 16:13.
    let high = 0x9 << 13;
    let (ram, config) = two_level(SimConfig::p6(SimPaging::TwoLevel), 0, high);
    let mmu = Mmu::new(&ram, config);
    mmu.load_cr3(PD as u32).unwrap();
    let t = mmu.walk_uncached(va(0xC040_0010), Access::READ).unwrap();
    assert_eq!((t.pa, t.size), (pa(0x9_0040_0010), PageSize::Size4MiB));
    // MAXPHYADDR 36: bits 21:17 stay reserved.
    assert_eq!(
        rsvd(two_level(SimConfig::p6(SimPaging::TwoLevel), 0, 1 << 17)),
        (false, true)
    );
    // Without PSE-36 (a Pentium), bits 21:13 are all reserved.
    assert_eq!(
        rsvd(two_level(SimConfig::pentium(), 0, high)),
        (false, true)
    );
}

#[test]
fn xd_without_nxe_is_reserved_on_a_p6_and_not_on_a_pentium_m() {
    let (ram, config) = pae(SimConfig::p6(SimPaging::Pae), XD, XD);
    let mmu = Mmu::new(&ram, config);
    mmu.load_cr3(PDPT as u32).unwrap();
    for at in [0xC000_0000, 0xC020_0000] {
        assert!(
            mmu.walk_uncached(va(at), Access::READ)
                .unwrap_err()
                .is_reserved()
        );
    }
    let (ram, config) = pae(SimConfig::p6_nx(SimPaging::Pae), XD, XD);
    let mmu = Mmu::new(&ram, config);
    mmu.load_cr3(PDPT as u32).unwrap();
    for at in [0xC000_0000, 0xC020_0000] {
        assert!(mmu.walk_uncached(va(at), Access::READ).unwrap().nx);
    }
}

#[test]
fn a_pentium_m_reserves_address_bits_from_32() {
    // MAXPHYADDR 32: bit 32 of a PTE is reserved; on a P6 (36) it is an
    // address bit.
    let (ram, config) = pae(SimConfig::p6_nx(SimPaging::Pae), 1 << 32, 0);
    let mmu = Mmu::new(&ram, config);
    mmu.load_cr3(PDPT as u32).unwrap();
    assert!(
        mmu.walk_uncached(va(0xC000_0000), Access::READ)
            .unwrap_err()
            .is_reserved()
    );
    let (ram, config) = pae(SimConfig::p6(SimPaging::Pae), 1 << 32, 0);
    let mmu = Mmu::new(&ram, config);
    mmu.load_cr3(PDPT as u32).unwrap();
    assert_eq!(
        mmu.walk_uncached(va(0xC000_0000), Access::READ).unwrap().pa,
        pa(0x1_0000_5000)
    );
}

#[test]
fn g_without_pge_is_ignored() {
    let (ram, config) = two_level(SimConfig::pentium(), G, G);
    let mmu = Mmu::new(&ram, config);
    mmu.load_cr3(PD as u32).unwrap();
    for at in [0xC000_0000, 0xC040_0000] {
        assert!(!mmu.walk_uncached(va(at), Access::READ).unwrap().global);
    }
}
