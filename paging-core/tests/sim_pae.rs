//! The simulated MMU in PAE mode, on tables built by hand from the SDM's
//! entry formats.
mod sim_support;

use paging_core::{PageSize, TlbOps};
use paging_sim::{Access, Cr3Fault, Mmu, SimConfig, SimRam};
use sim_support::*;

/// The PDPT, deliberately not page aligned (CR3 bits 31:5 address it).
const PDPT: u64 = 0x1020;
const PD: u64 = 0x2000;
const PT: u64 = 0x3000;

/// PDPTE 3 (0xC000_0000..) -> PD, PDE 0 -> PT.
fn setup(ram: &SimRam) {
    set64(ram, PDPT, 3, PD | P);
    set64(ram, PD, 0, PT | P | RW | US);
}

fn cpu(ram: &SimRam, config: SimConfig) -> Mmu<'_> {
    let mmu = Mmu::new(ram, config);
    mmu.load_cr3(PDPT as u32).unwrap();
    mmu
}

#[test]
fn four_kib_and_two_mib_pages_translate_above_4_gib() {
    let ram = SimRam::new();
    setup(&ram);
    set64(&ram, PT, 1, 0x9_8765_4000 | P | RW | US);
    // 2 MiB page; bit 12 (PAT) is not an address bit.
    set64(&ram, PD, 1, 0x2_0020_0000 | 0x1000 | P | RW | PS);
    let mmu = Mmu::new(&ram, SimConfig::pae());
    // CR3's low bits (PWT, PCD) are not part of the PDPT address.
    mmu.load_cr3(PDPT as u32 | 0x18).unwrap();
    assert_eq!(mmu.pdptes()[3], PD | P);

    let t = mmu.translate(va(0xC000_1ABC), Access::USER_READ).unwrap();
    assert_eq!(
        (t.pa, t.size, t.user, t.nx),
        (pa(0x9_8765_4ABC), PageSize::Size4KiB, true, false)
    );
    let t = mmu.translate(va(0xC021_2345), Access::WRITE).unwrap();
    assert_eq!(
        (t.pa, t.size, t.user),
        (pa(0x2_0021_2345), PageSize::Size2MiB, false)
    );
    mmu.write_bytes(va(0xC000_1FFE), &[1, 2]).unwrap();
    assert_eq!(ram.read_u32(pa(0x9_8765_4FFC)).unwrap(), 0x0201_0000);
    // The other PDPTEs are not present.
    assert_eq!(
        mmu.translate(va(0x4000_0000), Access::WRITE)
            .unwrap_err()
            .code,
        0b010
    );
}

#[test]
fn pdptes_are_latched_at_cr3_load() {
    let ram = SimRam::new();
    setup(&ram);
    set64(&ram, PT, 0, 0x5000 | P | RW);
    set64(&ram, 0x4000, 0, 0x7000 | P | RW); // another directory ...
    set64(&ram, 0x7000, 0, 0x6000 | P | RW); // ... and its table
    let mmu = cpu(&ram, SimConfig::pae());
    set64(&ram, PDPT, 3, 0x4000 | P);
    // invlpg does not re-read the PDPT: the old directory is still used.
    mmu.invlpg(va(0xC000_0000));
    assert_eq!(
        mmu.translate(va(0xC000_0000), Access::READ).unwrap().pa,
        pa(0x5000)
    );
    assert_eq!(
        mmu.walk_uncached(va(0xC000_0000), Access::READ).unwrap().pa,
        pa(0x5000)
    );
    assert_eq!(mmu.pdptes()[3], PD | P);
    mmu.load_cr3(PDPT as u32).unwrap();
    assert_eq!(
        mmu.translate(va(0xC000_0000), Access::READ).unwrap().pa,
        pa(0x6000)
    );
    // The TlbOps CR3 reload re-latches too.
    set64(&ram, PDPT, 3, PD | P);
    mmu.flush_all();
    assert_eq!(
        mmu.translate(va(0xC000_0000), Access::READ).unwrap().pa,
        pa(0x5000)
    );
}

#[test]
fn reserved_pdpte_bits_make_the_cr3_load_fault() {
    let ram = SimRam::new();
    setup(&ram);
    set64(&ram, PT, 0, 0x5000 | P);
    let mmu = cpu(&ram, SimConfig::pae());
    mmu.translate(va(0xC000_0000), Access::READ).unwrap();
    for (bad, why) in [
        (RW, "R/W"),
        (US, "U/S"),
        (A, "bit 5"),
        (1 << 8, "bit 8"),
        (XD, "XD"),
        (1 << 36, "above MAXPHYADDR"),
    ] {
        set64(&ram, PDPT, 2, 0x8000 | P | bad);
        let fault = mmu.load_cr3(PDPT as u32).unwrap_err();
        assert_eq!(
            fault,
            Cr3Fault {
                cr3: PDPT as u32,
                index: 2,
                pdpte: 0x8000 | P | bad
            },
            "{why}"
        );
    }
    // Nothing changed: same CR3, same TLB, no CR3 load counted.
    assert_eq!(mmu.tlb_stats().cr3_loads, 1);
    assert_eq!(mmu.tlb_snapshot().len(), 1);
    assert_eq!(mmu.cr3_faults(), 6);
    // A reload through TlbOps cannot return the #GP: it is recorded.
    mmu.flush_all();
    assert_eq!(mmu.cr3_faults(), 7);
    assert_eq!(mmu.last_cr3_fault().map(|f| f.index), Some(2));
    // Reserved bits in a not-present PDPTE are ignored; the cache-control
    // bits 3 and 4 are allowed.
    set64(&ram, PDPT, 2, 0x8000 | RW | US);
    set64(&ram, PDPT, 1, 0x8000 | P | 0x18);
    mmu.load_cr3(PDPT as u32).unwrap();
    // With MAXPHYADDR 40, bit 36 is an address bit.
    set64(&ram, PDPT, 1, (1 << 36) | P);
    let wide = Mmu::new(
        &ram,
        SimConfig {
            max_phys_bits: 40,
            ..SimConfig::pae()
        },
    );
    assert!(wide.load_cr3(PDPT as u32).is_ok());
    assert!(mmu.load_cr3(PDPT as u32).is_err());
}

#[test]
fn reserved_bits_in_directory_and_table_entries_fault_with_rsvd() {
    let ram = SimRam::new();
    setup(&ram);
    let mmu = cpu(&ram, SimConfig::pae());
    let check = |addr: u32| mmu.walk_uncached(va(addr), Access::READ);

    set64(&ram, PT, 0, (1 << 36) | 0x5000 | P); // above MAXPHYADDR 36
    assert_eq!(check(0xC000_0000).unwrap_err().code, 0b1001);
    set64(&ram, PT, 0, (1 << 62) | 0x5000 | P);
    assert!(check(0xC000_0000).unwrap_err().is_reserved());
    set64(&ram, PT, 0, (1 << 35) | 0x5000 | P); // highest legal address bit
    assert_eq!(check(0xC000_0000).unwrap().pa, pa((1 << 35) | 0x5000));

    set64(&ram, PD, 1, 0x20_0000 | (1 << 13) | P | PS); // 2 MiB: bits 20:13
    assert!(check(0xC020_0000).unwrap_err().is_reserved());
    set64(&ram, PD, 1, 0x20_0000 | (1 << 40) | P | PS);
    assert!(check(0xC020_0000).unwrap_err().is_reserved());
    set64(&ram, PD, 1, 0x20_0000 | P | PS);
    assert!(check(0xC020_0000).is_ok());

    // XD without EFER.NXE is a reserved bit, at either level.
    let no_nx = cpu(
        &ram,
        SimConfig {
            nxe: false,
            ..SimConfig::pae()
        },
    );
    set64(&ram, PT, 0, XD | 0x5000 | P);
    let f = no_nx
        .translate(va(0xC000_0000), Access::USER_WRITE)
        .unwrap_err();
    assert_eq!(f.code, 0b1111);
    set64(&ram, PT, 0, 0x5000 | P);
    set64(&ram, PD, 0, XD | PT | P | RW | US);
    assert!(
        no_nx
            .walk_uncached(va(0xC000_0000), Access::READ)
            .unwrap_err()
            .is_reserved()
    );
    // ... but with NXE it is not.
    assert!(mmu.walk_uncached(va(0xC000_0000), Access::READ).unwrap().nx);
}

#[test]
fn execute_disable_faults_fetches_with_the_id_bit() {
    let ram = SimRam::new();
    setup(&ram);
    set64(&ram, PT, 0, XD | 0x5000 | P | RW | US);
    set64(&ram, PT, 1, 0x6000 | P | RW | US);
    let mmu = cpu(&ram, SimConfig::pae());
    let t = mmu.translate(va(0xC000_0000), Access::USER_READ).unwrap();
    assert!(t.nx);
    let f = mmu
        .translate(va(0xC000_0000), Access::USER_EXEC)
        .unwrap_err();
    assert!(f.is_fetch() && f.is_protection() && f.is_user() && !f.is_write());
    assert_eq!(f.code, 0b1_0101);
    // Not-present fetches report I/D too.
    assert_eq!(
        mmu.translate(va(0xC000_5000), Access::EXEC)
            .unwrap_err()
            .code,
        0b1_0000
    );
    assert!(mmu.translate(va(0xC000_1000), Access::EXEC).is_ok());
    // XD on the directory entry covers every page below it.
    set64(&ram, PD, 0, XD | PT | P | RW | US);
    mmu.load_cr3(PDPT as u32).unwrap();
    assert!(
        mmu.translate(va(0xC000_1000), Access::EXEC)
            .unwrap_err()
            .is_fetch()
    );
    let mut b = [0u8; 4];
    assert!(
        mmu.read_bytes_as(va(0xC000_1000), &mut b, Access::EXEC)
            .is_err()
    );
    assert!(
        mmu.read_bytes_as(va(0xC000_1000), &mut b, Access::READ)
            .is_ok()
    );
}

#[test]
fn dirty_is_set_on_the_64_bit_leaf_only_for_writes() {
    let ram = SimRam::new();
    setup(&ram);
    let pte = XD | 0x4_0000_5000 | P | RW;
    set64(&ram, PT, 0, pte);
    let mmu = cpu(&ram, SimConfig::pae());
    mmu.read_u32(va(0xC000_0000)).unwrap();
    assert_eq!(get64(&ram, PT, 0), pte | A);
    assert_eq!(get64(&ram, PD, 0), PT | P | RW | US | A);
    assert_eq!(get64(&ram, PDPT, 3), PD | P, "PDPTEs get no A bit");
    mmu.write_u32(va(0xC000_0000), 7).unwrap();
    assert_eq!(get64(&ram, PT, 0), pte | A | D);
    assert_eq!(ram.read_u32(pa(0x4_0000_5000)).unwrap(), 7);
}

#[test]
fn tlb_ops_on_one_cpu_count_each_kind() {
    let ram = SimRam::new();
    setup(&ram);
    for i in 0..64 {
        set64(&ram, PT, i, (0x10_0000 + 0x1000 * i) | P | RW | G);
    }
    let mmu = cpu(&ram, SimConfig::pae());
    for i in 0..64 {
        mmu.translate(va(0xC000_0000 + 0x1000 * i), Access::READ)
            .unwrap();
    }
    mmu.flush_range(va(0xC000_0000), 3);
    assert_eq!(mmu.tlb_stats().invlpg, 3);
    assert_eq!(mmu.tlb_snapshot().len(), 61);
    mmu.flush_all();
    assert_eq!(mmu.tlb_snapshot().len(), 61, "globals survive a CR3 reload");
    mmu.flush_range(va(0xC000_0000), 40);
    let s = mmu.tlb_stats();
    assert_eq!((s.invlpg, s.cr3_loads, s.global_flushes), (3, 2, 1));
    assert!(mmu.tlb_snapshot().is_empty());
}
