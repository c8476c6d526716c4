//! `LocalSlots::map_on` with a `ThisCpu` token: the mapping lands on the
//! token's CPU stack exactly as `map` with that index does, and an index
//! past the CPU count is still a typed error that changes nothing.

mod support;

use kmap::{KmapError, ThisCpu};
use support::{CPUS, Kernel, ModeUnderTest, reads_frame};

fn a_token_maps_on_its_own_cpu_stack<M: ModeUnderTest>() {
    let ram = paging_sim::SimRam::new();
    let k = Kernel::<M>::new(&ram);
    let local = k.local(false, k.direct);
    let page = k.high_page(0);
    // SAFETY: the test is one thread that stands for CPU 3 here, and the
    // token does not outlive this function.
    let cpu = unsafe { ThisCpu::new(3) };
    let g = local.map_on(cpu, page).unwrap();
    assert_eq!(local.depth(3), Some(1));
    assert!(
        (0..CPUS)
            .filter(|&c| c != 3)
            .all(|c| local.depth(c) == Some(0))
    );
    assert_eq!(Some(g.va()), local.slot_va(3, 0));
    assert!(
        reads_frame(&k.m.mmu, g.va(), page),
        "the slot maps the page"
    );
    // A nested map on the same token pushes above it.
    let h = local.map_on(cpu, k.high_page(1)).unwrap();
    assert_eq!((g.depth(), h.depth()), (0, 1));
    drop(h);
    drop(g);
    assert_eq!(local.depth(3), Some(0));
    assert_eq!(local.stats().maps, 2);

    // SAFETY: as above; the index is out of range on purpose.
    let beyond = unsafe { ThisCpu::new(CPUS) };
    let e = local.map_on(beyond, page).unwrap_err();
    assert_eq!(e, KmapError::BadCpu { cpu: CPUS });
    assert_eq!(local.stats().maps, 2, "a refused map is not counted");
    assert!((0..CPUS).all(|c| local.depth(c) == Some(0)));
    assert_eq!(format!("{cpu:?}"), "ThisCpu(3)");
}

paging_sim::for_each_mode!(a_token_maps_on_its_own_cpu_stack);
