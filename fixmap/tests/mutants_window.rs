//! A window that ends below 4 GiB: its end is exclusive everywhere, and
//! its PTE positions are exact. Written for mutants that `cargo xtask
//! mutants` found no test noticed (docs/testing.md).

mod support;

use fixmap::{ContiguousWindow, WindowBuilder};
use paging_core::{PAGE_SIZE, PagingMode, Slot};
use paging_sim::{Machine, SimRam};
use paging_x86_2level::TwoLevel;
use paging_x86_pae::Pae;
use support::va;

/// One PMD span of tables from 0xFF00_0000 (below the top of memory).
fn window<M: PagingMode>(m: &mut Machine<'_, M>) -> ContiguousWindow<M> {
    let span = M::pmd_span();
    let b = WindowBuilder::new(va(0xFF00_0000), 0xFF00_0000 + span).unwrap();
    assert_eq!(b.geometry::<M>(), (va(0xFF00_0000), 1));
    b.build(&mut m.mapper, &m.mmu, &mut m.alloc).unwrap().0
}

fn the_end_is_exclusive<M: PagingMode>() {
    let ram = SimRam::new();
    let mut m = Machine::<M>::new(&ram);
    let w = window(&mut m);
    let end = 0xFF00_0000 + M::pmd_span();
    assert_eq!((w.start(), w.end(), w.tables()), (va(0xFF00_0000), end, 1));
    let last = va(end as u32 - 4096);
    assert!(w.contains(last));
    assert!(!w.contains(va(end as u32)));
    assert!(!w.contains(va(0xFEFF_F000)));
    assert_eq!(w.pte_number(va(end as u32)), None);
    assert_eq!(w.pte_slot(va(end as u32)), None);
    assert_eq!(w.pte_phys(va(end as u32)), None);
    // The last PTE of the window, at the end of its table.
    let n = M::PTRS_PER_PTE - 1;
    assert_eq!(w.pte_number(last), Some(n));
    assert_eq!(
        w.pte_slot(last),
        Some(Slot {
            table: w.first_frame(),
            index: n
        })
    );
    assert_eq!(
        w.pte_phys(last).map(|p| p.as_u64()),
        Some(w.first_frame().start_address().as_u64() + (n * M::ENTRY_BYTES) as u64)
    );
    // covers: inclusive end, nothing outside, never an inverted range.
    assert!(w.covers(va(0xFF00_0000), end));
    assert!(w.covers(last, end));
    assert!(!w.covers(last, end + PAGE_SIZE));
    assert!(!w.covers(va(0xFEFF_F000), end));
    assert!(!w.covers(last, last.as_u64() - PAGE_SIZE));
    assert!(w.covers(last, last.as_u64()));
}

#[test]
fn two_level() {
    the_end_is_exclusive::<TwoLevel>();
}

#[test]
fn pae() {
    the_end_is_exclusive::<Pae>();
}
