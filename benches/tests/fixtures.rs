//! The benchmark fixtures do what the report says they do: both mappers
//! build the same translations, the range bound writes exactly the entries
//! `map_range` writes, and the kmap pool on host memory hits, misses and
//! flushes as its policy says. (Correctness only: speed is never asserted.)

use kmap::{AccessedBit, FlushPolicy, GlobalFlush, KmapTask, PerPage, RangeFlush};
use paging_benches::kmap_host::{MISS_PAGES, PKMAP_BASE, SLOTS, highmem_frame, hit_frame};
use paging_benches::{
    DATA_PA, KmapHost, LockLookup, OursPages, OursRange, PAGES, RANGE_BYTES, RANGE_VA, RawBound,
    TheirPages,
};
use paging_core::{PAGE_SIZE, PagingMode, VirtAddr};
use paging_x86_2level::TwoLevel;
use paging_x86_pae::Pae;

/// Sum of `DATA_PA + i * 4096 + 0x123` over `pages`.
fn expected_sum(pages: core::ops::Range<usize>) -> u64 {
    pages.map(|i| DATA_PA + i as u64 * PAGE_SIZE + 0x123).sum()
}

fn ours_and_theirs_translate_alike<M: PagingMode>() {
    let mut ours = OursPages::<M>::new().unwrap();
    let mut theirs = TheirPages::new().unwrap();
    // The tables exist but map nothing.
    assert!(ours.translate_pages(0..1).is_err());
    assert!(theirs.translate_pages(0..1).is_err());
    ours.map_pages(0..PAGES).unwrap();
    theirs.map_pages(0..PAGES).unwrap();
    let want = expected_sum(0..PAGES);
    assert_eq!(ours.translate_pages(0..PAGES).unwrap(), want);
    assert_eq!(theirs.translate_pages(0..PAGES).unwrap(), want);
    // Mapping a mapped page is refused; after an unmap it works again.
    assert!(ours.map_pages(7..8).is_err());
    assert!(theirs.map_pages(7..8).is_err());
    ours.unmap_pages(0..PAGES).unwrap();
    theirs.unmap_pages(0..PAGES).unwrap();
    ours.map_pages(7..8).unwrap();
    theirs.map_pages(7..8).unwrap();
    // Building the tables took frames; mapping into them took none.
    let tables = ours.table_frames();
    ours.unmap_pages(7..8).unwrap();
    ours.map_pages(0..PAGES).unwrap();
    assert_eq!(ours.table_frames(), tables);
}

#[test]
fn ours_and_theirs_translate_alike_two_level() {
    ours_and_theirs_translate_alike::<TwoLevel>();
}

#[test]
fn ours_and_theirs_translate_alike_pae() {
    ours_and_theirs_translate_alike::<Pae>();
}

fn range_writes_what_the_bound_writes<M: PagingMode>() {
    let mut ours = OursRange::<M>::new();
    let mut bound = RawBound::new::<M>().unwrap();
    bound.fill();
    let pte_tables = RANGE_BYTES / M::pmd_span();
    let pmd_tables = u64::from(!M::PMD_FOLDED);
    for _ in 0..2 {
        ours.reset();
        // The PGD, the PMD table (PAE), one table per PMD entry: no more.
        assert_eq!(ours.map_range().unwrap(), 1 + pmd_tables + pte_tables);
    }
    let pages = (RANGE_BYTES / PAGE_SIZE) as usize;
    for i in [0, 1, 511, 512, 1023, 1024, pages / 2 + 3, pages - 1] {
        let va = VirtAddr::new(RANGE_VA + (i as u64 * PAGE_SIZE) as u32);
        let (pmd, pte) = ours.entries_last(va).unwrap();
        assert_eq!(Some(pte), bound.pte(i), "PTE {i}");
        let table = i / M::PTRS_PER_PTE;
        // Same flags; the table addresses differ (different frames).
        assert_eq!(Some(pmd & 0xFFF), bound.pmd(table).map(|e| e & 0xFFF));
        assert_eq!(
            ours.translate_last(va).unwrap(),
            DATA_PA + i as u64 * PAGE_SIZE
        );
    }
    let mut volatile = RawBound::new::<M>().unwrap();
    volatile.fill_volatile();
    assert_eq!(volatile.pte(pages - 1), bound.pte(pages - 1));
}

#[test]
fn range_writes_what_the_bound_writes_two_level() {
    range_writes_what_the_bound_writes::<TwoLevel>();
}

#[test]
fn range_writes_what_the_bound_writes_pae() {
    range_writes_what_the_bound_writes::<Pae>();
}

fn host_pool_hits_misses_and_flushes<M: PagingMode, P: FlushPolicy>(policy: P) {
    let k = KmapHost::<M, P>::new(policy).unwrap();
    // SAFETY: the only task token of this test thread.
    let task = unsafe { KmapTask::new() };
    k.warm(&task).unwrap();
    let warm = k.stats();
    assert_eq!((warm.maps, warm.hits, warm.wraps), (SLOTS as u64 - 1, 0, 0));
    // A hit returns the cached slot, whose PTE maps the page.
    let hit = hit_frame().unwrap();
    let va = k.kmap_kunmap(&task, hit).unwrap();
    assert!(va.as_u32() >= PKMAP_BASE);
    assert_eq!(
        k.slot_pte(va).unwrap() & !0xFFF,
        hit.start_address().as_u64()
    );
    assert_eq!(k.kmap_kunmap(&task, hit).unwrap(), va);
    assert_eq!(k.stats().hits, 2);
    // Misses over the cycle wrap the pool once per SLOTS maps.
    for i in 0..2 * SLOTS {
        let f = highmem_frame(i % MISS_PAGES).unwrap();
        let va = k.kmap_kunmap(&task, f).unwrap();
        assert_eq!(k.slot_pte(va).unwrap() & !0xFFF, f.start_address().as_u64());
    }
    let s = k.stats();
    assert_eq!(s.hits, 2, "every cycled page was a miss");
    assert_eq!(s.wraps, 2);
    let tlb = k.pool().tlb();
    let counted = |c: &core::sync::atomic::AtomicU64| c.load(core::sync::atomic::Ordering::Relaxed);
    let f = s.flushes;
    // What the policy counted is what reached the TLB operations.
    assert_eq!(counted(&tlb.pages), f.pages);
    assert_eq!(counted(&tlb.everything), f.globals + f.ranges);
    assert!(f.pages + f.ranges + f.globals + f.avoided > 0);
}

#[test]
fn host_pool_works_under_every_policy() {
    host_pool_hits_misses_and_flushes::<TwoLevel, _>(PerPage);
    host_pool_hits_misses_and_flushes::<TwoLevel, _>(GlobalFlush);
    host_pool_hits_misses_and_flushes::<Pae, _>(RangeFlush);
    host_pool_hits_misses_and_flushes::<Pae, _>(AccessedBit);
}

#[test]
fn baseline_finds_the_hit_page_and_only_warm_pages() {
    let l = LockLookup::new();
    assert!(l.lookup(l.present_key()).is_some());
    assert_eq!(l.lookup(highmem_frame(0).unwrap().number()), None);
}

#[test]
fn every_hot_path_runs() {
    for p in paging_benches::hotpaths::HOT_PATHS {
        let n = if p.name.starts_with("kmap-miss") {
            2 * SLOTS
        } else {
            2
        };
        paging_benches::hotpaths::run(p.name, n).unwrap();
    }
    assert!(paging_benches::hotpaths::run("map-sparc", 1).is_err());
}
