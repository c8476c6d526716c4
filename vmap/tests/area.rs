//! `VmapArea` against the simulated MMU (its walk and TLB follow the SDM),
//! in both modes: guard pages, ioremap's memory types, the lazy purge, and
//! every error path.

use std::cell::Cell;

use paging_core::{
    CacheType, CacheTypeError, CpuFeature, CpuFeatures, MapError, MapFlags, Mapper, PagingMode,
    PatLayout, PhysAddr, PhysFrame, TlbOps, VirtAddr,
};
use paging_sim::{Access, Machine, MemoryType, ScriptedAllocator, SimAccess, SimConfig, SimRam};
use vmap::{VmapArea, VmapError};

const START: u32 = 0xE000_0000;
const END: u64 = 0xE100_0000; // 16 MiB

fn ram() -> &'static SimRam {
    Box::leak(Box::new(SimRam::new()))
}

/// A machine whose PAT holds the recommended layout (entry 4 WC), as a
/// kernel programs it.
fn machine<M: PagingMode>() -> Machine<'static, M> {
    let config = SimConfig {
        pat: PatLayout::RECOMMENDED.to_msr(),
        ..SimConfig::for_mode::<M>()
    };
    Machine::with_config(ram(), config)
}

fn area<const N: usize>(threshold: u32) -> VmapArea<N> {
    VmapArea::new(VirtAddr::new(START), END, threshold, PatLayout::RECOMMENDED).unwrap()
}

fn frame(addr: u64) -> PhysFrame {
    PhysFrame::from_start_address(PhysAddr::new(addr).unwrap()).unwrap()
}

fn frames(first: u64, n: u64) -> Vec<PhysFrame> {
    (0..n).map(|i| frame(first + i * 0x1000)).collect()
}

/// Counts the flush requests a caller makes (each one is a shootdown on
/// SMP), and passes them on to the simulated CPU.
struct Counting<'a, T: TlbOps> {
    tlb: &'a T,
    flushes: Cell<u64>,
}

impl<'a, T: TlbOps> Counting<'a, T> {
    fn new(tlb: &'a T) -> Self {
        Self {
            tlb,
            flushes: Cell::new(0),
        }
    }
    fn bump(&self) {
        self.flushes.set(self.flushes.get() + 1);
    }
}

impl<T: TlbOps> TlbOps for Counting<'_, T> {
    fn flush_page(&self, va: VirtAddr) {
        self.bump();
        self.tlb.flush_page(va);
    }
    fn flush_range(&self, start: VirtAddr, pages: u32) {
        self.bump();
        self.tlb.flush_range(start, pages);
    }
    fn flush_all(&self) {
        self.bump();
        self.tlb.flush_all();
    }
    fn flush_everything(&self) {
        self.bump();
        self.tlb.flush_everything();
    }
}

fn vmap_maps_the_frames_in_order_with_a_guard_page_after<M: PagingMode>() {
    let mut m = machine::<M>();
    let mut area = area::<8>(16);
    let scattered = [frame(0x7000), frame(0x3000), frame(0x11000)];
    let a = area
        .vmap(
            &mut m.mapper,
            &scattered,
            MapFlags::KERNEL_RW,
            &mut m.alloc,
            &m.mmu,
        )
        .unwrap();
    assert_eq!(a, VirtAddr::new(START));
    for (i, f) in scattered.iter().enumerate() {
        let tr = m
            .mmu
            .translate(a + (i as u32 * 0x1000 + 8), Access::WRITE)
            .unwrap();
        assert_eq!(tr.pa.as_u64(), f.start_address().as_u64() + 8);
        assert!(tr.writable);
    }
    assert!(
        m.mmu.translate(a + 0x3000u32, Access::READ).is_err(),
        "guard page"
    );
    // The next range starts after the guard page.
    let b = area
        .vmap(
            &mut m.mapper,
            &frames(0x20000, 1),
            MapFlags::KERNEL_RO,
            &mut m.alloc,
            &m.mmu,
        )
        .unwrap();
    assert_eq!(b, VirtAddr::new(START + 0x4000));
    assert!(!m.mmu.translate(b, Access::READ).unwrap().writable);
    assert!(
        m.mmu.translate(b + 0x1000u32, Access::READ).is_err(),
        "guard page"
    );
    assert_eq!((area.stats().mapped, area.stats().busy), (2, 2));
}

fn ioremap_maps_device_memory_with_its_memory_type<M: PagingMode>() {
    let mut m = machine::<M>();
    let mut area = area::<8>(16);
    // A framebuffer window that starts inside a page and ends in the next.
    let fb = area
        .ioremap(
            &mut m.mapper,
            PhysAddr::new(0xFD00_0F00).unwrap(),
            0x200,
            CacheType::WriteCombining,
            &mut m.alloc,
            &m.mmu,
        )
        .unwrap();
    assert_eq!(fb, VirtAddr::new(START + 0xF00));
    for off in [0, 0x1FF] {
        let tr = m.mmu.translate(fb + off, Access::WRITE).unwrap();
        assert_eq!(tr.pa.as_u64(), 0xFD00_0F00 + u64::from(off));
        assert_eq!(tr.memory_type, MemoryType::Wc);
        assert_eq!(tr.nx, M::SUPPORTS_NX, "device memory is never executed");
    }
    // Registers: uncacheable, after the window's two pages and guard.
    let regs = area
        .ioremap(
            &mut m.mapper,
            PhysAddr::new(0xFEE0_0000).unwrap(),
            0x1000,
            CacheType::Uncached,
            &mut m.alloc,
            &m.mmu,
        )
        .unwrap();
    assert_eq!(regs, VirtAddr::new(START + 0x3000));
    let tr = m.mmu.translate(regs + 0x20u32, Access::READ).unwrap();
    assert_eq!(tr.memory_type, MemoryType::Uc);
    // Unmapped through the address ioremap returned (offset included).
    assert_eq!(area.vunmap(&mut m.mapper, fb, &m.mmu), Ok(2));
    assert!(m.mmu.walk_uncached(fb, Access::READ).is_err());
}

fn ioremap_of_a_type_missing_from_the_layout_or_the_cpu_changes_nothing<M: PagingMode>() {
    let mut m = machine::<M>();
    // The power-on layout has no WC entry.
    let mut power_on =
        VmapArea::<4>::new(VirtAddr::new(START), END, 16, PatLayout::POWER_ON).unwrap();
    let before = m.snapshot();
    let err = power_on.ioremap(
        &mut m.mapper,
        PhysAddr::new(0xFD00_0000).unwrap(),
        0x1000,
        CacheType::WriteCombining,
        &mut m.alloc,
        &m.mmu,
    );
    assert!(
        matches!(
            err,
            Err(VmapError::Cache(CacheTypeError::NotInLayout { .. }))
        ),
        "{err:?}"
    );
    // A CPU without PAT cannot select entry 4 at all.
    let mut no_pat = unsafe {
        // SAFETY: simulated RAM; no CPU of this program walks it.
        Mapper::<M, _>::new(
            m.mapper.root(),
            SimAccess::new(m.ram),
            CpuFeatures::full::<M>().without(CpuFeature::Pat),
        )
        .unwrap()
    };
    let mut area = area::<4>(16);
    let err = area.ioremap(
        &mut no_pat,
        PhysAddr::new(0xFD00_0000).unwrap(),
        0x1000,
        CacheType::WriteCombining,
        &mut m.alloc,
        &m.mmu,
    );
    assert_eq!(
        err,
        Err(VmapError::Map(MapError::MissingFeature(CpuFeature::Pat)))
    );
    assert_eq!(m.snapshot(), before, "no table changed");
    assert_eq!(area.stats(), Default::default());
    assert_eq!(power_on.stats(), Default::default());
    // And the range it would have used is still the first one handed out.
    let va = area
        .vmap(
            &mut m.mapper,
            &frames(0x5000, 1),
            MapFlags::KERNEL_RW,
            &mut m.alloc,
            &m.mmu,
        )
        .unwrap();
    assert_eq!(va, VirtAddr::new(START));
}

fn lazy_purge_keeps_freed_addresses_until_one_flush<M: PagingMode>() {
    let mut m = machine::<M>();
    let mut area = area::<8>(4);
    let a = area
        .vmap(
            &mut m.mapper,
            &frames(0x5000, 2),
            MapFlags::KERNEL_RW,
            &mut m.alloc,
            &m.mmu,
        )
        .unwrap();
    m.mmu.translate(a, Access::WRITE).unwrap();
    assert_eq!(area.vunmap(&mut m.mapper, a, &m.mmu), Ok(2));
    // The PTE is gone, but the CPU still holds the translation: the flush
    // was deferred.
    assert!(m.mmu.walk_uncached(a, Access::READ).is_err());
    assert!(
        m.mmu.translate(a, Access::READ).is_ok(),
        "stale until the purge"
    );
    assert_eq!((area.stats().lazy_pages, area.stats().purges), (2, 0));
    // So the freed addresses are not handed out again yet.
    let b = area
        .vmap(
            &mut m.mapper,
            &frames(0x9000, 2),
            MapFlags::KERNEL_RW,
            &mut m.alloc,
            &m.mmu,
        )
        .unwrap();
    assert_ne!(b, a);
    assert_eq!(b, VirtAddr::new(START + 0x3000));
    // Two more freed pages reach the threshold: one flush for both ranges.
    let tlb = Counting::new(&m.mmu);
    assert_eq!(area.vunmap(&mut m.mapper, b, &tlb), Ok(2));
    assert_eq!(tlb.flushes.get(), 1);
    assert_eq!((area.stats().lazy_pages, area.stats().purges), (0, 1));
    assert!(m.mmu.translate(a, Access::READ).is_err(), "flushed");
    // Now the first range is reused.
    let c = area
        .vmap(
            &mut m.mapper,
            &frames(0xA000, 1),
            MapFlags::KERNEL_RW,
            &mut m.alloc,
            &m.mmu,
        )
        .unwrap();
    assert_eq!(c, a);
    assert_eq!(
        m.mmu.translate(c, Access::READ).unwrap().pa.as_u64(),
        0xA000
    );
}

fn lazy_purge_runs_when_the_area_is_full_of_freed_ranges<M: PagingMode>() {
    let mut m = machine::<M>();
    // Room for exactly two 1-page ranges and their guards.
    let mut area: VmapArea<8> = VmapArea::new(
        VirtAddr::new(START),
        u64::from(START) + 0x4000,
        100,
        PatLayout::RECOMMENDED,
    )
    .unwrap();
    let one = frames(0x5000, 1);
    let a = area
        .vmap(
            &mut m.mapper,
            &one,
            MapFlags::KERNEL_RW,
            &mut m.alloc,
            &m.mmu,
        )
        .unwrap();
    let b = area
        .vmap(
            &mut m.mapper,
            &one,
            MapFlags::KERNEL_RW,
            &mut m.alloc,
            &m.mmu,
        )
        .unwrap();
    area.vunmap(&mut m.mapper, a, &m.mmu).unwrap();
    // No free gap; the lazily freed range is purged and reused.
    let tlb = Counting::new(&m.mmu);
    let c = area
        .vmap(&mut m.mapper, &one, MapFlags::KERNEL_RW, &mut m.alloc, &tlb)
        .unwrap();
    assert_eq!(c, a);
    assert_eq!((tlb.flushes.get(), area.stats().purges), (1, 1));
    // Nothing freed and no room: refused, nothing flushed.
    let err = area.vmap(&mut m.mapper, &one, MapFlags::KERNEL_RW, &mut m.alloc, &tlb);
    assert_eq!(err, Err(VmapError::NoSpace { pages: 1 }));
    assert_eq!(tlb.flushes.get(), 1);
    let _ = b;
}

fn lazy_purge_flush_figures_for_100_000_pairs<M: PagingMode>() {
    // The figure: flushes per 100,000 vmap/vunmap pairs, eager
    // (threshold 0) against lazy (a threshold of 32 pages, Linux's
    // lazy_max_pages is far larger). Each pair maps 2 pages.
    const PAIRS: u64 = 100_000;
    let mut figures = Vec::new();
    for threshold in [0u32, 32, 256] {
        let mut m = machine::<M>();
        let mut area = area::<256>(threshold);
        let two = frames(0x40000, 2);
        // A first pair builds the page tables (a PAE PDPT entry is one
        // more flush) and is not counted.
        let va = area
            .vmap(
                &mut m.mapper,
                &two,
                MapFlags::KERNEL_RW,
                &mut m.alloc,
                &m.mmu,
            )
            .unwrap();
        area.vunmap(&mut m.mapper, va, &m.mmu).unwrap();
        area.purge(&m.mmu);
        let before = area.stats().flushes;
        let tlb = Counting::new(&m.mmu);
        for _ in 0..PAIRS {
            let va = area
                .vmap(&mut m.mapper, &two, MapFlags::KERNEL_RW, &mut m.alloc, &tlb)
                .unwrap();
            m.mmu.translate(va, Access::WRITE).unwrap();
            area.vunmap(&mut m.mapper, va, &tlb).unwrap();
        }
        let flushes = tlb.flushes.get();
        figures.push((threshold, flushes));
        // Every freed page is flushed before its address is used again, so
        // the count follows from the threshold: one per `threshold / 2`
        // pairs (at least one per pair).
        let per = u64::from(threshold / 2).max(1);
        assert_eq!(flushes, PAIRS / per, "threshold {threshold}");
        assert_eq!(area.stats().flushes - before, flushes);
    }
    println!(
        "{}: flushes per {PAIRS} vmap/vunmap pairs of 2 pages: eager {}, lazy(32) {}, lazy(256) {}",
        M::NAME,
        figures[0].1,
        figures[1].1,
        figures[2].1
    );
}

fn a_failed_vmap_maps_nothing_and_holds_its_range_until_the_purge<M: PagingMode>() {
    let mut m = machine::<M>();
    let mut area = area::<8>(16);
    // The third frame is beyond what the mode can address.
    let mut bad = frames(0x5000, 2);
    bad.push(frame(1 << M::MAX_PHYS_BITS));
    let err = area.vmap(
        &mut m.mapper,
        &bad,
        MapFlags::KERNEL_RW,
        &mut m.alloc,
        &m.mmu,
    );
    assert!(matches!(err, Err(VmapError::Map(_))), "{err:?}");
    for i in 0..3u32 {
        let va = VirtAddr::new(START + i * 0x1000);
        assert!(m.mmu.walk_uncached(va, Access::READ).is_err(), "page {i}");
    }
    assert_eq!(
        (
            area.stats().mapped,
            area.stats().busy,
            area.stats().lazy_pages
        ),
        (0, 0, 2)
    );
    let next = area
        .vmap(
            &mut m.mapper,
            &frames(0x5000, 1),
            MapFlags::KERNEL_RW,
            &mut m.alloc,
            &m.mmu,
        )
        .unwrap();
    assert_eq!(
        next,
        VirtAddr::new(START + 0x4000),
        "not reused before the purge"
    );
    // No frame for the page table: nothing mapped, nothing held.
    let mut m = machine::<M>();
    let mut fresh = self::area::<8>(16);
    let mut none = ScriptedAllocator::new([]);
    let before = m.snapshot();
    let err = fresh.vmap(
        &mut m.mapper,
        &frames(0x5000, 1),
        MapFlags::KERNEL_RW,
        &mut none,
        &m.mmu,
    );
    assert_eq!(err, Err(VmapError::Map(MapError::OutOfFrames)));
    assert_eq!(m.snapshot(), before);
    assert_eq!(fresh.stats(), Default::default());
}

fn bad_calls_are_refused_with_typed_errors<M: PagingMode>() {
    let mut m = machine::<M>();
    for (start, end) in [
        (START + 0x10, END),
        (START, END + 0x10),
        (START, u64::from(START) + 0x1000),
        (START, 0x1_0000_1000),
    ] {
        let err = VmapArea::<4>::new(VirtAddr::new(start), end, 0, PatLayout::RECOMMENDED);
        assert_eq!(
            err.err(),
            Some(VmapError::BadArea {
                start: VirtAddr::new(start),
                end
            })
        );
    }
    let mut area = area::<2>(16);
    let before = m.snapshot();
    assert_eq!(
        area.vmap(
            &mut m.mapper,
            &[],
            MapFlags::KERNEL_RW,
            &mut m.alloc,
            &m.mmu
        ),
        Err(VmapError::Empty)
    );
    let zero = area.ioremap(
        &mut m.mapper,
        PhysAddr::new(0x1000).unwrap(),
        0,
        CacheType::Uncached,
        &mut m.alloc,
        &m.mmu,
    );
    assert_eq!(zero, Err(VmapError::Empty));
    let top = PhysAddr::new((1 << 52) - 0x1000).unwrap();
    let over = area.ioremap(
        &mut m.mapper,
        top,
        0x2000,
        CacheType::Uncached,
        &mut m.alloc,
        &m.mmu,
    );
    assert_eq!(
        over,
        Err(VmapError::PhysOverflow {
            phys: top,
            len: 0x2000
        })
    );
    let huge = area.vmap(
        &mut m.mapper,
        &frames(0x5000, 4096),
        MapFlags::KERNEL_RW,
        &mut m.alloc,
        &m.mmu,
    );
    assert_eq!(huge, Err(VmapError::NoSpace { pages: 4096 }));
    assert_eq!(
        area.vunmap(&mut m.mapper, VirtAddr::new(START), &m.mmu),
        Err(VmapError::NotMapped {
            va: VirtAddr::new(START)
        })
    );
    assert_eq!(m.snapshot(), before);
    // Two ranges fill a table of two.
    let one = frames(0x5000, 1);
    let a = area
        .vmap(
            &mut m.mapper,
            &one,
            MapFlags::KERNEL_RW,
            &mut m.alloc,
            &m.mmu,
        )
        .unwrap();
    area.vmap(
        &mut m.mapper,
        &one,
        MapFlags::KERNEL_RW,
        &mut m.alloc,
        &m.mmu,
    )
    .unwrap();
    assert_eq!(
        area.vmap(
            &mut m.mapper,
            &one,
            MapFlags::KERNEL_RW,
            &mut m.alloc,
            &m.mmu
        ),
        Err(VmapError::Full { capacity: 2 })
    );
    // Unmapped twice: the second is refused (the range waits for its purge).
    area.vunmap(&mut m.mapper, a, &m.mmu).unwrap();
    assert_eq!(
        area.vunmap(&mut m.mapper, a, &m.mmu),
        Err(VmapError::NotMapped { va: a })
    );
    // A full table with a freed range purges it to make room.
    area.vmap(
        &mut m.mapper,
        &one,
        MapFlags::KERNEL_RW,
        &mut m.alloc,
        &m.mmu,
    )
    .unwrap();
    assert_eq!(area.stats().purges, 1);
    for e in [
        VmapError::Empty,
        VmapError::Full { capacity: 2 },
        VmapError::NoSpace { pages: 3 },
    ] {
        assert!(!e.to_string().is_empty());
    }
}

paging_sim::for_each_mode!(
    vmap_maps_the_frames_in_order_with_a_guard_page_after,
    ioremap_maps_device_memory_with_its_memory_type,
    ioremap_of_a_type_missing_from_the_layout_or_the_cpu_changes_nothing,
    lazy_purge_keeps_freed_addresses_until_one_flush,
    lazy_purge_runs_when_the_area_is_full_of_freed_ranges,
    lazy_purge_flush_figures_for_100_000_pairs,
    a_failed_vmap_maps_nothing_and_holds_its_range_until_the_purge,
    bad_calls_are_refused_with_typed_errors,
);
