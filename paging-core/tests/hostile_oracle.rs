//! The hostile tests' oracle (`hostile_support::view`, a walk of the raw
//! tables) agrees with the simulated MMU, written separately from the same
//! manual, on random hostile worlds, including worlds with one reserved
//! bit planted: every page of the window, translation, rights, size,
//! global bit and the kind of fault. A disagreement is a bug in one of the
//! two models, and would make the property test lie.
mod hostile_support;

use hostile_support::{
    AllocStyle, BLOCKS, Geo, PDPTE_RESERVED_LOW, PS, PageView, Rng, build_world, hierarchy, view,
};
use paging_core::{PagingMode, PhysAddr, VirtAddr};
use paging_sim::{Access, Mmu, SimConfig, SimRam};

/// Worlds per mode (a few under Miri).
fn worlds() -> u64 {
    if cfg!(miri) { 2 } else { 150 }
}

fn agree<M: PagingMode>() {
    let g = Geo::of::<M>();
    // Pages seen mapped, unmapped, reserved; CR3 loads refused.
    let mut seen = [0u64; 4];
    for seed in 0..worlds() {
        let ram = SimRam::new();
        let world = build_world(&ram, g, seed, AllocStyle::Friendly, 0, false, false);
        let mut rng = Rng(seed ^ 0x5EED);
        // Half the worlds get one reserved bit in a window entry.
        if rng.chance(50) {
            plant_reserved_bit(&ram, &g, world.root, &mut rng);
        }
        let pages = view(&ram, &g, &hierarchy(&ram, &g, world.root));
        let mmu = Mmu::new(&ram, SimConfig::for_mode::<M>());
        let latched = mmu.load_cr3(world.root as u32);
        if let Err(e) = latched {
            // A PDPTE with a reserved bit: the CR3 load #GPs, and the
            // oracle must call that PDPTE's pages reserved.
            let bad: Vec<_> = (0..BLOCKS)
                .filter(|&b| g.pgd_index(b) == e.index as u64)
                .collect();
            assert!(!bad.is_empty(), "{} seed {seed}: {e:?}", M::NAME);
            for b in bad {
                let p = (b * g.per_block) as usize;
                assert_eq!(pages[p], PageView::Reserved(0), "{} seed {seed}", M::NAME);
            }
            seen[3] += 1;
            continue;
        }
        for (p, want) in pages.iter().enumerate() {
            let va = VirtAddr::new(g.va(p as u32));
            let hw = mmu.walk_uncached(va, Access::READ);
            let what = format!("{} seed {seed} page {p} ({va:?})", M::NAME);
            seen[match want {
                PageView::Mapped(_) => 0,
                PageView::Unmapped(_) => 1,
                PageView::Reserved(_) => 2,
            }] += 1;
            match (want, hw) {
                (PageView::Unmapped(_), Err(f)) => {
                    assert!(!f.is_reserved() && !f.is_protection(), "{what}: {f:?}")
                }
                (PageView::Reserved(_), Err(f)) => assert!(f.is_reserved(), "{what}: {f:?}"),
                (PageView::Mapped(l), Ok(t)) => {
                    assert_eq!(t.pa.as_u64(), l.pa, "{what}");
                    assert_eq!(t.writable, l.w, "{what}: R/W");
                    assert_eq!(t.user, l.u, "{what}: U/S");
                    assert_eq!(t.nx, l.nx, "{what}: XD");
                    assert_eq!(t.global, l.g, "{what}: G");
                    assert_eq!(t.size.bytes() > 4096, l.large, "{what}: size");
                }
                (want, hw) => panic!("{what}: oracle {want:?}, MMU {hw:?}"),
            }
        }
    }
    if !cfg!(miri) {
        let cr3 = usize::from(g.pae);
        assert!(
            seen[..3].iter().all(|&n| n > 0) && seen[3] >= cr3 as u64,
            "{}: mapped, unmapped, reserved pages, refused CR3 loads: {seen:?}",
            M::NAME
        );
    }
}

/// Set one reserved bit in a present PDPTE, PDE or PTE of the window.
fn plant_reserved_bit(ram: &SimRam, g: &Geo, root: u64, rng: &mut Rng) {
    let b = rng.below(u64::from(BLOCKS)) as usize;
    let h = hierarchy(ram, g, root)[b];
    let pa = |a: u64| PhysAddr::new(a).unwrap();
    let above = |rng: &mut Rng| 1u64 << (g.maxphy + rng.below(u64::from(63 - g.maxphy)) as u32);
    if g.pae && h.pgd & 1 != 0 && rng.chance(30) {
        let bit = if rng.chance(50) {
            1 << [1, 2, 5, 6, 7, 8][rng.below(6) as usize]
        } else {
            above(rng)
        };
        debug_assert!(bit & (PDPTE_RESERVED_LOW | g.above_maxphy()) != 0);
        ram.write_u64(pa(h.pgd_slot), h.pgd | bit).unwrap();
        return;
    }
    let Some(slot) = h.pde_slot.filter(|_| h.pde & 1 != 0) else {
        return;
    };
    if h.pde & PS != 0 {
        // Large-page PDE: bits 20:13 (PAE) or 21:13 (32-bit, no PSE-36).
        let bit = 1u64 << (13 + rng.below(if g.pae { 8 } else { 9 }) as u32);
        if g.pae {
            ram.write_u64(pa(slot), h.pde | bit).unwrap();
        } else {
            ram.write_u32(pa(slot), (h.pde | bit) as u32).unwrap();
        }
    } else if g.pae {
        // 32-bit paging has no reserved bit in a PDE that references a
        // table, nor in a PTE.
        if rng.chance(50) {
            ram.write_u64(pa(slot), h.pde | above(rng)).unwrap();
        } else {
            let i = rng.below(512);
            let at = pa(h.pt(g) + 8 * i);
            let pte = ram.read_u64(at).unwrap();
            if pte & 1 != 0 {
                ram.write_u64(at, pte | above(rng)).unwrap();
            }
        }
    }
}

#[test]
fn oracle_agrees_with_the_mmu_two_level() {
    agree::<paging_x86_2level::TwoLevel>();
}

#[test]
fn oracle_agrees_with_the_mmu_pae36() {
    agree::<paging_x86_pae::Pae<36>>();
}

#[test]
fn oracle_agrees_with_the_mmu_pae52() {
    agree::<paging_x86_pae::Pae<52>>();
}
