//! For every CPU count from 1 to 64 and both modes: every slot translates
//! through the simulated MMU to the frame it was set to, and writing PTE
//! number `i` of the window's one array changes exactly slot `i`.
#![cfg(test)]

mod support;

use fixmap::{Fixmap, FixmapLayout, WindowBuilder};
use paging_core::{Entry, MapFlags, PagingMode, PteEntry, TlbOps};
use paging_sim::{Machine, SimAccess, SimRam};
use support::{frame, pa, va};

/// Pages of pkmap window below the fixmap.
const PKMAP_PAGES: u32 = 512;

fn check_layout<L: FixmapLayout, M: PagingMode>(
    cpus: usize,
    kmap_first: usize,
    kmap_len: usize,
    boot: (usize, usize),
) {
    assert_eq!(kmap_len, 16 * cpus);
    let ram = SimRam::new();
    let mut m = Machine::<M>::new(&ram);
    let start = L::start_for(L::TOP).as_u32() - PKMAP_PAGES * 4096;
    let (window, _) = WindowBuilder::new(va(start), L::TOP.as_u64() + 4096)
        .unwrap()
        .build(&mut m.mapper, &m.mmu, &mut m.alloc)
        .unwrap();
    let mut fix = Fixmap::<L, M, _>::new(SimAccess::new(&ram));
    fix.attach(window).unwrap();
    let w = fix.window().unwrap().clone();
    let target = |i: usize| frame(0x1000_0000 + i as u64 * 0x1000);

    for i in 1..L::END {
        let idx = fixmap::FixIndex::<L>::new(i).unwrap();
        fix.set(idx, target(i), MapFlags::KERNEL_RW, &m.mmu)
            .unwrap();
    }
    for i in 1..L::END {
        let idx = fixmap::FixIndex::<L>::new(i).unwrap();
        let v = fix.virt(idx);
        assert_eq!(v, va(L::TOP.as_u32() - i as u32 * 4096));
        assert_eq!(
            m.hw(v),
            Ok(target(i).start_address()),
            "slot {i} of {cpus} CPUs"
        );
        assert_eq!(fix.virt_to_fix(v).unwrap(), idx);
    }
    // The hole stays unmapped.
    assert_eq!(m.hw(L::TOP), Err(0));

    // PTE number n of the one array is slot i's PTE: rewrite a few through
    // their linear physical position and only that slot moves.
    let step = (L::END / 7).max(1);
    for i in (1..L::END).step_by(step) {
        let idx = fixmap::FixIndex::<L>::new(i).unwrap();
        let v = fix.virt(idx);
        let n = w.pte_number(v).unwrap();
        let linear = pa(w.first_frame().start_address().as_u64() + (n * M::ENTRY_BYTES) as u64);
        assert_eq!(w.pte_phys(v), Some(linear));
        let moved = frame(0x2000_0000 + i as u64 * 0x1000);
        let raw = <M::Pte as PteEntry>::page(moved, MapFlags::KERNEL_RW | MapFlags::PRESENT)
            .unwrap()
            .raw();
        if M::ENTRY_BYTES == 4 {
            ram.write_u32(linear, raw as u32).unwrap();
        } else {
            ram.write_u64(linear, raw).unwrap();
        }
        m.mmu.flush_page(v);
        assert_eq!(m.hw(v), Ok(moved.start_address()));
        for j in [i - 1, i + 1] {
            if j >= 1 && j < L::END {
                let vj = fix.virt(fixmap::FixIndex::<L>::new(j).unwrap());
                assert_eq!(
                    m.hw(vj),
                    Ok(target(j).start_address()),
                    "neighbour {j} of {i}"
                );
            }
        }
    }
    // The in_one_table range shares one PTE table.
    let tables: std::collections::BTreeSet<_> = (boot.0..boot.0 + boot.1)
        .map(|i| {
            w.pte_slot(fix.virt(fixmap::FixIndex::<L>::new(i).unwrap()))
                .unwrap()
                .table
        })
        .collect();
    assert_eq!(tables.len(), 1, "BOOT slots in one table for {cpus} CPUs");
    assert!(kmap_first >= 3);
}

macro_rules! for_cpu_counts {
    ($($name:ident = $n:literal,)*) => {
        $(
            mod $name {
                fixmap::fixmap_layout! {
                    pub struct L {
                        top: 0xFFFF_F000;
                        CONSOLE;
                        APIC;
                        KMAP[16 * $n];
                        BOOT[64] in_one_table;
                    }
                }
                fn run<M: paging_core::PagingMode>() {
                    super::check_layout::<L, M>($n, L::KMAP.first(), L::KMAP.len(), (L::BOOT.first(), L::BOOT.len()));
                }
                #[test]
                fn two_level() {
                    run::<paging_x86_2level::TwoLevel>();
                }
                #[test]
                fn pae() {
                    run::<paging_x86_pae::Pae>();
                }
            }
        )*
    };
}

for_cpu_counts! {
    c1 = 1,
    c2 = 2,
    c3 = 3,
    c4 = 4,
    c5 = 5,
    c6 = 6,
    c7 = 7,
    c8 = 8,
    c9 = 9,
    c10 = 10,
    c11 = 11,
    c12 = 12,
    c13 = 13,
    c14 = 14,
    c15 = 15,
    c16 = 16,
    c17 = 17,
    c18 = 18,
    c19 = 19,
    c20 = 20,
    c21 = 21,
    c22 = 22,
    c23 = 23,
    c24 = 24,
    c25 = 25,
    c26 = 26,
    c27 = 27,
    c28 = 28,
    c29 = 29,
    c30 = 30,
    c31 = 31,
    c32 = 32,
    c33 = 33,
    c34 = 34,
    c35 = 35,
    c36 = 36,
    c37 = 37,
    c38 = 38,
    c39 = 39,
    c40 = 40,
    c41 = 41,
    c42 = 42,
    c43 = 43,
    c44 = 44,
    c45 = 45,
    c46 = 46,
    c47 = 47,
    c48 = 48,
    c49 = 49,
    c50 = 50,
    c51 = 51,
    c52 = 52,
    c53 = 53,
    c54 = 54,
    c55 = 55,
    c56 = 56,
    c57 = 57,
    c58 = 58,
    c59 = 59,
    c60 = 60,
    c61 = 61,
    c62 = 62,
    c63 = 63,
    c64 = 64,
}
