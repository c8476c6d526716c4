//! The walker on hand-built tables: a PAE PDPT that does not start its
//! frame, and the level each kind of hole is reported at. Written for
//! mutants that `cargo xtask mutants` found no test noticed
//! (docs/testing.md).
mod sim_support;

use paging_core::{Level, PageSize, Slot, TranslateError, Walker};
use paging_sim::SimAccess;
use paging_sim::SimRam;
use paging_x86_2level::TwoLevel;
use paging_x86_pae::Pae;
use sim_support::*;

/// A PAE PDPT 32 bytes into its frame (CR3 bits 31:5 address it).
const PDPT: u64 = 0x1020;
const PD: u64 = 0x2000;
const PT: u64 = 0x3000;

fn not_mapped(level: Level) -> Result<paging_core::Translation, TranslateError> {
    Err(TranslateError::NotMapped { level })
}

#[test]
fn a_pdpt_inside_its_frame_is_indexed_from_its_own_start() {
    let ram = SimRam::new();
    // Garbage in the frame before the PDPT: what a walker indexing from
    // the frame's start would read for PDPTE 3.
    set64(&ram, 0x1000, 3, 0x7000 | P);
    set64(&ram, PDPT, 3, PD | P);
    set64(&ram, PD, 0, PT | P | RW);
    set64(&ram, PT, 1, 0x9_8765_4000 | P | RW);
    let w = Walker::<Pae, _>::new(pa(PDPT), SimAccess::new(&ram));
    assert_eq!(
        w.pgd_slot_at(3),
        Slot {
            table: frame(0x1000),
            index: 4 + 3
        }
    );
    assert_eq!(w.pgd_slot(va(0xC000_1ABC)), w.pgd_slot_at(3));
    let t = w.translate(va(0xC000_1ABC)).unwrap();
    assert_eq!(
        (t.base, t.offset, t.size),
        (pa(0x9_8765_4000), 0xABC, PageSize::Size4KiB)
    );
    assert_eq!(t.phys_addr(), pa(0x9_8765_4ABC));
}

#[test]
fn pae_holes_are_reported_at_their_level() {
    let ram = SimRam::new();
    set64(&ram, PDPT, 3, PD | P);
    set64(&ram, PD, 0, PT | P | RW);
    set64(&ram, PT, 1, 0x5000 | P | RW);
    let w = Walker::<Pae, _>::new(pa(PDPT), SimAccess::new(&ram));
    // PDPTE 0 is not present.
    assert_eq!(w.translate(va(0x0000_1000)), not_mapped(Level::Pgd));
    // PDPTE 3 is, PDE 1 is not.
    assert_eq!(w.translate(va(0xC020_0000)), not_mapped(Level::Pmd));
    // PDE 0 is, PTE 2 is not.
    assert_eq!(w.translate(va(0xC000_2000)), not_mapped(Level::Pte));
    assert!(w.translate(va(0xC000_1000)).is_ok());
}

#[test]
fn two_level_holes_are_reported_at_their_level() {
    let ram = SimRam::new();
    const PGD: u64 = 0x1000;
    const PT32: u64 = 0x3000;
    set32(&ram, PGD, 0x300, PT32 | P | RW);
    set32(&ram, PT32, 1, 0x5000 | P | RW);
    let w = Walker::<TwoLevel, _>::new(pa(PGD), SimAccess::new(&ram));
    // The PGD is the PMD in 2-level mode: a missing entry is a PMD hole.
    assert_eq!(w.translate(va(0x0000_1000)), not_mapped(Level::Pmd));
    assert_eq!(w.translate(va(0xC000_2000)), not_mapped(Level::Pte));
    assert_eq!(
        w.translate(va(0xC000_1234)).map(|t| t.phys_addr()),
        Ok(pa(0x5234))
    );
}
