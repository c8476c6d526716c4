//! The simulated MMU in 32-bit (2-level) paging mode, on tables built by hand
//! from the SDM's entry formats.
mod sim_support;

use paging_core::PageSize;
use paging_sim::{Access, Mmu, SimConfig, SimRam};
use sim_support::*;

const PD: u64 = 0x1000;
const PT: u64 = 0x2000;
/// Directory index of 0xC000_0000.
const KERNEL: u64 = 0x300;

/// A directory at PD whose entry 0x300 points to PT, with `pde_bits`.
fn setup(ram: &SimRam, pde_bits: u64) {
    set32(ram, PD, KERNEL, PT | pde_bits);
}

fn cpu(ram: &SimRam) -> Mmu<'_> {
    let mmu = Mmu::new(ram, SimConfig::two_level());
    mmu.load_cr3(PD as u32).unwrap();
    mmu
}

#[test]
fn four_kib_and_four_mib_pages_translate() {
    let ram = SimRam::new();
    setup(&ram, P | RW | US);
    set32(&ram, PT, 1, 0x5000 | P | RW | US);
    // A 4 MiB page; bit 12 (PAT) is not an address bit.
    set32(&ram, PD, KERNEL + 1, 0x0180_0000 | 0x1000 | P | PS);
    let mmu = cpu(&ram);

    let t = mmu.translate(va(0xC000_1234), Access::USER_WRITE).unwrap();
    assert_eq!(
        (t.pa, t.size, t.writable, t.user),
        (pa(0x5234), PageSize::Size4KiB, true, true)
    );
    let t = mmu.translate(va(0xC071_2345), Access::READ).unwrap();
    assert_eq!(
        (t.pa, t.size, t.writable, t.user),
        (pa(0x01B1_2345), PageSize::Size4MiB, false, false)
    );
    // Data goes where the translation says.
    mmu.write_u32(va(0xC000_1FFE), 0xAABB_CCDD).unwrap_err(); // crosses into an unmapped page
    assert_eq!(
        ram.read_u32(pa(0x5ffc)).unwrap(),
        0,
        "a faulting access writes nothing"
    );
    mmu.write_u32(va(0xC000_1FF0), 0xAABB_CCDD).unwrap();
    assert_eq!(ram.read_u32(pa(0x5ff0)).unwrap(), 0xAABB_CCDD);
    assert_eq!(mmu.read_u8(va(0xC000_1FF3)).unwrap(), 0xAA);
}

#[test]
fn without_pse_the_ps_bit_is_ignored() {
    let ram = SimRam::new();
    // A table at 4 MiB, so that the PDE is also a valid 4 MiB page.
    const TABLE: u64 = 0x0040_0000;
    set32(&ram, PD, KERNEL, TABLE | P | RW | PS);
    set32(&ram, TABLE, 3, 0x7000 | P);
    let with_pse = cpu(&ram);
    let t = with_pse
        .walk_uncached(va(0xC000_3000), Access::READ)
        .unwrap();
    assert_eq!((t.pa, t.size), (pa(0x0040_3000), PageSize::Size4MiB));
    let no_pse = Mmu::new(
        &ram,
        SimConfig {
            pse: false,
            ..SimConfig::two_level()
        },
    );
    no_pse.load_cr3(PD as u32).unwrap();
    let t = no_pse.walk_uncached(va(0xC000_3000), Access::READ).unwrap();
    assert_eq!((t.pa, t.size), (pa(0x7000), PageSize::Size4KiB));
}

#[test]
fn four_mib_pde_with_bit_13_set_is_a_reserved_bit_fault() {
    let ram = SimRam::new();
    set32(&ram, PD, KERNEL, 0x0040_0000 | 0x2000 | P | RW | PS);
    let mmu = cpu(&ram);
    let f = mmu.translate(va(0xC000_0000), Access::WRITE).unwrap_err();
    assert!(f.is_reserved() && f.is_protection() && f.is_write());
    assert_eq!(f.code, 0b1011);
    assert_eq!(f.addr, va(0xC000_0000));
    // Bits 21:13 all count; PTEs have no reserved bits at all.
    set32(&ram, PD, KERNEL, 0x0040_0000 | (1 << 21) | P | PS);
    assert!(
        mmu.walk_uncached(va(0xC000_0000), Access::READ)
            .unwrap_err()
            .is_reserved()
    );
    setup(&ram, P | RW);
    set32(&ram, PT, 0, 0xFFFF_F000 | 0xE00 | P);
    assert_eq!(
        mmu.walk_uncached(va(0xC000_0000), Access::READ).unwrap().pa,
        pa(0xFFFF_F000)
    );
}

#[test]
fn error_codes_follow_the_sdm() {
    let ram = SimRam::new();
    setup(&ram, P | RW | US);
    set32(&ram, PT, 0, 0x5000 | P | US); // read-only user page
    set32(&ram, PT, 1, 0x6000 | P | RW); // supervisor page
    let mmu = cpu(&ram);
    let code = |m: &Mmu, addr, acc| m.translate(va(addr), acc).unwrap_err().code;

    assert_eq!(code(&mmu, 0xC000_2000, Access::READ), 0b000);
    assert_eq!(code(&mmu, 0xC000_2000, Access::USER_WRITE), 0b110);
    assert_eq!(code(&mmu, 0xC000_0000, Access::USER_WRITE), 0b111);
    assert_eq!(code(&mmu, 0xC000_0000, Access::WRITE), 0b011, "CR0.WP on");
    assert_eq!(code(&mmu, 0xC000_1000, Access::USER_READ), 0b101);
    // 32-bit paging never reports I/D (no NX, no SMEP).
    assert_eq!(code(&mmu, 0xC000_1000, Access::USER_EXEC), 0b101);
    assert!(mmu.translate(va(0xC000_1000), Access::EXEC).is_ok());

    let no_wp = Mmu::new(
        &ram,
        SimConfig {
            wp: false,
            ..SimConfig::two_level()
        },
    );
    no_wp.load_cr3(PD as u32).unwrap();
    assert!(no_wp.translate(va(0xC000_0000), Access::WRITE).is_ok());
    assert_eq!(code(&no_wp, 0xC000_0000, Access::USER_WRITE), 0b111);
}

#[test]
fn rights_are_combined_over_both_levels() {
    let ram = SimRam::new();
    setup(&ram, P | US); // read-only directory entry
    set32(&ram, PT, 0, 0x5000 | P | RW | US);
    set32(&ram, KERNEL_PD_ALT, KERNEL, PT | P | RW); // supervisor-only directory entry
    let mmu = cpu(&ram);
    let t = mmu.translate(va(0xC000_0000), Access::USER_READ).unwrap();
    assert!(!t.writable && t.user);
    assert_eq!(
        mmu.translate(va(0xC000_0000), Access::USER_WRITE)
            .unwrap_err()
            .code,
        0b111
    );
    mmu.load_cr3(KERNEL_PD_ALT as u32).unwrap();
    assert_eq!(
        mmu.translate(va(0xC000_0000), Access::USER_READ)
            .unwrap_err()
            .code,
        0b101
    );
    assert!(mmu.translate(va(0xC000_0000), Access::WRITE).is_ok());
}

const KERNEL_PD_ALT: u64 = 0x9000;

#[test]
fn accessed_on_every_entry_dirty_only_on_writes() {
    let ram = SimRam::new();
    setup(&ram, P | RW);
    set32(&ram, PT, 0, 0x5000 | P | RW);
    set32(&ram, PD, KERNEL + 1, 0x0040_0000 | P | RW | PS);
    let mmu = cpu(&ram);

    mmu.walk_uncached(va(0xC000_0000), Access::WRITE).unwrap();
    assert_eq!(
        get32(&ram, PT, 0),
        0x5000 | P | RW,
        "walk_uncached writes nothing"
    );
    mmu.translate(va(0xC000_0000), Access::READ).unwrap();
    assert_eq!(get32(&ram, PD, KERNEL), PT | P | RW | A);
    assert_eq!(get32(&ram, PT, 0), 0x5000 | P | RW | A);
    // A write through the clean TLB entry walks again to set D.
    let walks = mmu.tlb_stats().walks;
    mmu.translate(va(0xC000_0000), Access::WRITE).unwrap();
    assert_eq!(get32(&ram, PT, 0), 0x5000 | P | RW | A | D);
    assert_eq!(
        get32(&ram, PD, KERNEL),
        PT | P | RW | A,
        "no D on a directory entry"
    );
    assert_eq!(mmu.tlb_stats().walks, walks + 1);
    // Now the entry is dirty: the next write is a plain hit.
    mmu.translate(va(0xC000_0000), Access::WRITE).unwrap();
    assert_eq!(mmu.tlb_stats().walks, walks + 1);

    mmu.translate(va(0xC040_0000), Access::WRITE).unwrap();
    assert_eq!(
        get32(&ram, PD, KERNEL + 1),
        0x0040_0000 | P | RW | PS | A | D
    );
    // A faulting access sets nothing.
    set32(&ram, PT, 1, 0x6000 | P);
    assert!(mmu.translate(va(0xC000_1000), Access::WRITE).is_err());
    assert_eq!(get32(&ram, PT, 1), 0x6000 | P);
}

#[test]
fn stale_translation_is_used_until_invlpg() {
    let ram = SimRam::new();
    setup(&ram, P | RW);
    set32(&ram, PT, 0, 0x5000 | P | RW);
    let mmu = cpu(&ram);
    assert_eq!(
        mmu.translate(va(0xC000_0000), Access::READ).unwrap().pa,
        pa(0x5000)
    );
    set32(&ram, PT, 0, 0x6000 | P | RW);
    assert_eq!(
        mmu.translate(va(0xC000_0010), Access::READ).unwrap().pa,
        pa(0x5010)
    );
    assert_eq!(
        mmu.walk_uncached(va(0xC000_0010), Access::READ).unwrap().pa,
        pa(0x6010)
    );
    // Even an unmapped page keeps translating while the TLB holds it.
    set32(&ram, PT, 0, 0);
    assert!(mmu.translate(va(0xC000_0000), Access::READ).is_ok());
    mmu.invlpg(va(0xC000_0FFF));
    assert_eq!(
        mmu.translate(va(0xC000_0000), Access::READ)
            .unwrap_err()
            .code,
        0
    );
    let s = mmu.tlb_stats();
    assert_eq!((s.invlpg, s.cr3_loads, s.faults), (1, 1, 1));
    assert_eq!((s.hits, s.misses, s.walks), (2, 2, 2));
}

#[test]
fn globals_survive_cr3_loads_but_not_a_pge_toggle() {
    let ram = SimRam::new();
    setup(&ram, P | RW);
    set32(&ram, PT, 0, 0x5000 | P | RW | G);
    set32(&ram, PT, 1, 0x6000 | P | RW);
    let mmu = cpu(&ram);
    assert!(mmu.translate(va(0xC000_0000), Access::READ).unwrap().global);
    assert!(!mmu.translate(va(0xC000_1000), Access::READ).unwrap().global);
    set32(&ram, PT, 0, 0x7000 | P | RW | G);
    set32(&ram, PT, 1, 0x8000 | P | RW);
    mmu.load_cr3(PD as u32).unwrap();
    assert_eq!(mmu.tlb_snapshot().len(), 1);
    assert_eq!(
        mmu.translate(va(0xC000_0000), Access::READ).unwrap().pa,
        pa(0x5000)
    );
    assert_eq!(
        mmu.translate(va(0xC000_1000), Access::READ).unwrap().pa,
        pa(0x8000)
    );
    mmu.flush_global();
    assert_eq!(
        mmu.translate(va(0xC000_0000), Access::READ).unwrap().pa,
        pa(0x7000)
    );
    assert_eq!(mmu.tlb_stats().global_flushes, 1);

    // Without CR4.PGE the G bit means nothing.
    let no_pge = Mmu::new(
        &ram,
        SimConfig {
            pge: false,
            ..SimConfig::two_level()
        },
    );
    no_pge.load_cr3(PD as u32).unwrap();
    assert!(
        !no_pge
            .translate(va(0xC000_0000), Access::READ)
            .unwrap()
            .global
    );
    no_pge.load_cr3(PD as u32).unwrap();
    assert!(no_pge.tlb_snapshot().is_empty());
}

#[test]
fn invlpg_anywhere_inside_a_large_page_drops_it() {
    let ram = SimRam::new();
    set32(&ram, PD, KERNEL, 0x0040_0000 | P | RW | PS | G);
    let mmu = cpu(&ram);
    mmu.translate(va(0xC000_0000), Access::READ).unwrap();
    set32(&ram, PD, KERNEL, 0x0080_0000 | P | RW | PS | G);
    assert_eq!(
        mmu.translate(va(0xC03F_FFFF), Access::READ).unwrap().pa,
        pa(0x007F_FFFF)
    );
    mmu.invlpg(va(0xC02A_B000));
    assert!(mmu.tlb_snapshot().is_empty());
    assert_eq!(
        mmu.translate(va(0xC03F_FFFF), Access::READ).unwrap().pa,
        pa(0x00BF_FFFF)
    );
}

#[test]
fn a_repointed_pde_keeps_the_old_pte_table_until_invalidated() {
    let ram = SimRam::new();
    const OLD: u64 = 0x2000;
    const NEW: u64 = 0x3000;
    set32(&ram, PD, KERNEL, OLD | P | RW);
    for (table, base) in [(OLD, 0x10_0000), (NEW, 0x20_0000)] {
        set32(&ram, table, 1, (base + 0x1000) | P | RW);
        set32(&ram, table, 2, (base + 0x2000) | P | RW);
    }
    let mmu = cpu(&ram);
    assert_eq!(
        mmu.translate(va(0xC000_1000), Access::READ).unwrap().pa,
        pa(0x10_1000)
    );
    assert_eq!(mmu.tlb_snapshot().pde_entries().len(), 1);
    set32(&ram, PD, KERNEL, NEW | P | RW);
    // Page 2 was never translated, yet the cached PDE sends the walk to the
    // old table (the stale-fixmap case).
    assert_eq!(
        mmu.translate(va(0xC000_2000), Access::READ).unwrap().pa,
        pa(0x10_2000)
    );
    assert_eq!(
        mmu.walk_uncached(va(0xC000_2000), Access::READ).unwrap().pa,
        pa(0x20_2000)
    );
    mmu.invlpg(va(0xC000_2000));
    assert_eq!(
        mmu.translate(va(0xC000_2000), Access::READ).unwrap().pa,
        pa(0x20_2000)
    );
    // invlpg of page 2 left page 1's own TLB entry alone.
    assert_eq!(
        mmu.translate(va(0xC000_1000), Access::READ).unwrap().pa,
        pa(0x10_1000)
    );
}
