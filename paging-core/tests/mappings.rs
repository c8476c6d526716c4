//! The mapping iterator and the dump, checked against what the simulated
//! CPU translates page by page: large pages, holes, a range that starts
//! inside a large page, non-present entries with software contents, a
//! pre-populated restrictive entry, and an access that fails half-way.

mod mapper_support;

use std::collections::BTreeMap;

use mapper_support::{Rig, frame, machine, pa, va};
use paging_core::{
    AccessError, LargePages, MapFlags, Mapper, Page, PageSize, PagingMode, PhysAddr,
};
use paging_sim::{Access, HostileAccess};

/// A window of four large-page blocks with a mix of everything.
fn populated<M: PagingMode>() -> (Rig<M>, u32, u64) {
    let mut rig = machine::<M>();
    let span = M::pmd_span();
    let base = 0x4000_0000u32;
    let at = |i: u64| va(base + i as u32);
    let page = |i: u64| Page::containing_address(at(i));
    // Block 0: scattered 4 KiB pages, with holes.
    for (i, f) in [
        (0u64, 0x10_0000u64),
        (0x1000, 0x20_0000),
        (0x5000, 0x30_0000),
    ] {
        rig.mapper
            .map(page(i), frame(f), MapFlags::KERNEL_RW, &mut rig.alloc)
            .unwrap()
            .ignore();
    }
    // Block 1: a large page.
    rig.mapper
        .map_large(
            at(span),
            pa(0x4000_0000),
            MapFlags::KERNEL_RO,
            &mut rig.alloc,
        )
        .unwrap()
        .ignore();
    // Block 2: a run of 4 KiB pages with other flags, then a software
    // (non-present, non-zero) entry after it.
    rig.mapper
        .map_range(
            at(2 * span),
            pa(0x50_0000),
            0x3000,
            MapFlags::KERNEL_RW | MapFlags::USER,
            LargePages::Avoid,
            &mut rig.alloc,
        )
        .unwrap()
        .ignore();
    let slot = rig
        .mapper
        .walk(at(2 * span + 0x3000))
        .unwrap()
        .pte
        .unwrap()
        .0;
    let entry = pa(slot.table.start_address().as_u64() + (slot.index * M::ENTRY_BYTES) as u64);
    rig.ram.write_u32(entry, 0xABC0_0E00).unwrap(); // P = 0, software bits set
    // Block 3: empty.
    rig.reload_cr3();
    (rig, base, 4 * span)
}

/// What the CPU maps in `[start, start + len)`, page by page.
fn hardware<M: PagingMode>(rig: &Rig<M>, start: u64, len: u64) -> BTreeMap<u64, u64> {
    (start..start + len)
        .step_by(4096)
        .filter_map(|v| {
            let t = rig.mmu.walk_uncached(va(v as u32), Access::READ).ok()?;
            Some((v, t.pa.as_u64()))
        })
        .collect()
}

/// The same, from the iterator's mappings, clipped to the range.
fn listed<M: PagingMode>(rig: &Rig<M>, start: u64, len: u64) -> BTreeMap<u64, u64> {
    let mut pages = BTreeMap::new();
    for m in rig.mapper.mappings(va(start as u32), len) {
        let m = m.unwrap();
        for off in (0..m.size.bytes()).step_by(4096) {
            let v = m.va.as_u64() + off;
            if (start..start + len).contains(&v) {
                assert!(
                    pages.insert(v, m.base.as_u64() + off).is_none(),
                    "{v:#x} twice"
                );
            }
        }
    }
    pages
}

fn the_iterator_lists_exactly_what_the_cpu_maps<M: PagingMode>() {
    let (rig, base, len) = populated::<M>();
    let span = M::pmd_span();
    let base = base as u64;
    for (start, l) in [
        (base, len),
        // Starting inside the large page and ending inside block 2.
        (base + span + 0x3000, span + 0x2000),
        (base + 0x2000, 0x1000), // a hole only
        (0, 1 << 32),
    ] {
        let hw = hardware(&rig, start, l.min((1 << 32) - start).min(8 * span));
        let ls = listed(&rig, start, l.min((1 << 32) - start).min(8 * span));
        assert_eq!(ls, hw, "range {start:#x} + {l:#x}");
    }
    let all: Vec<_> = rig
        .mapper
        .mappings(va(base as u32), len)
        .map(Result::unwrap)
        .collect();
    assert_eq!(all.len(), 3 + 1 + 3, "{all:#?}");
    let large = all.iter().find(|m| m.size == M::LARGE_PAGE_SIZE).unwrap();
    assert_eq!(large.va, va((base + span) as u32));
    assert!(!large.flags.contains(MapFlags::WRITABLE));
    // A range starting inside the large page reports it from its own start.
    let first = rig
        .mapper
        .mappings(va((base + span + 0x3000) as u32), 0x1000)
        .next()
        .unwrap()
        .unwrap();
    assert_eq!(first.va, large.va);
    assert_eq!(first.base, PhysAddr::new(0x4000_0000).unwrap());
    assert!(
        all.iter()
            .all(|m| m.size != PageSize::Size4KiB || m.flags.contains(MapFlags::PRESENT))
    );
}

fn the_dump_merges_runs_that_continue_each_other<M: PagingMode>() {
    let (rig, base, len) = populated::<M>();
    let text = rig.mapper.dump(va(base), len).to_string();
    let lines: Vec<&str> = text.lines().collect();
    // 0x0 and 0x1000 are not physically contiguous: two lines; then 0x5000,
    // the large page, and the three-page user run.
    assert_eq!(lines.len(), 5, "{text}");
    assert!(lines[4].contains("x3 W U"), "{text}");
    assert!(
        lines[3].contains(if M::PMD_FOLDED { "4M x1" } else { "2M x1" }),
        "{text}"
    );
    assert_eq!(
        rig.mapper
            .dump(va(base + 3 * M::pmd_span() as u32), 0x1000)
            .to_string(),
        "(nothing mapped)"
    );
}

fn a_failing_access_is_reported_once_and_ends_the_walk<M: PagingMode>() {
    let (rig, base, len) = populated::<M>();
    let access = HostileAccess::new(rig.ram);
    let mapper = Mapper::<M, _>::new_isolated(
        rig.mapper.root(),
        &access,
        paging_core::CpuFeatures::full::<M>(),
    )
    .unwrap();
    let total = mapper.mappings(va(base), len).count();
    let calls = access.calls();
    assert!(calls > 0);
    for k in 1..=calls {
        access.reset_calls();
        access.fail_at(Some(k));
        let items: Vec<_> = mapper.mappings(va(base), len).collect();
        // The walk retries a failed access once, so one failure is never
        // seen; what it lists is complete.
        assert_eq!(items.len(), total, "k = {k}");
        assert!(items.iter().all(Result::is_ok));
    }
    // A frame it can never reach: an error, once, and then the end.
    access.fail_at(None);
    access.set_limit(Some(rig.mapper.root().as_u64() + 4096));
    let items: Vec<_> = mapper.mappings(va(base), len).collect();
    assert_eq!(items.len(), 1, "{items:?}");
    assert!(matches!(items[0], Err(AccessError::Unreachable(_))));
}

paging_sim::for_each_mode!(
    the_iterator_lists_exactly_what_the_cpu_maps,
    the_dump_merges_runs_that_continue_each_other,
    a_failing_access_is_reported_once_and_ends_the_walk,
);
