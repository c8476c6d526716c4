//! The mapping iterator over a PAE hierarchy someone else built, whose PDPT
//! has non-present entries (Linux preallocates all four PMDs; a loader or
//! another kernel need not): the skip over a missing top-level entry, from
//! its start and from inside it, and the iterator's and the dump's `Debug`.
//! Written for the survivors of a mutation-testing run
//! (`docs/testing.md`).

use paging_core::{CpuFeatures, Mapper, PageSize, PhysAddr, VirtAddr};
use paging_sim::{SimAccess, SimRam};
use paging_x86_pae::Pae;

const P: u64 = 1;
const RW: u64 = 1 << 1;
const PS: u64 = 1 << 7;

fn pa(x: u64) -> PhysAddr {
    PhysAddr::new(x).unwrap()
}

/// PDPT at 0x1000 with slots 0 and 2 not present; slot 1 maps the 4 KiB
/// page at 0x4000_0000 (the very first byte of its span) and three that
/// continue each other from 0x4000_5000; slot 3 maps a 2 MiB page at
/// 0xC0E0_0000 through a PMD table at 0x4000.
fn hand_built(ram: &SimRam) -> PhysAddr {
    let w = |at: u64, value: u64| ram.write_u64(pa(at), value).unwrap();
    w(0x1000 + 8, 0x2000 | P); // PDPTE 1 -> PMD table at 0x2000
    w(0x1000 + 24, 0x4000 | P); // PDPTE 3 -> PMD table at 0x4000
    w(0x2000, 0x3000 | P | RW); // PMD 0 of slot 1 -> PTE table at 0x3000
    w(0x3000, 0x10_0000 | P | RW); // PTE 0
    for i in 0..3 {
        w(0x3000 + (5 + i) * 8, (0x11_0000 + i * 0x1000) | P | RW); // PTEs 5-7
    }
    w(0x4000 + 7 * 8, 0x4000_0000 | P | RW | PS); // 2 MiB page, PMD 7
    pa(0x1000)
}

fn listed(mapper: &Mapper<Pae, SimAccess<'_>>, start: u32, len: u64) -> Vec<(u32, u64, PageSize)> {
    mapper
        .mappings(VirtAddr::new(start), len)
        .map(|m| {
            let m = m.unwrap();
            (m.va.as_u32(), m.base.as_u64(), m.size)
        })
        .collect()
}

#[test]
fn the_iterator_steps_over_non_present_pdptes() {
    let ram = SimRam::new();
    let root = hand_built(&ram);
    let mapper =
        Mapper::<Pae, _>::new_isolated(root, SimAccess::new(&ram), CpuFeatures::full::<Pae>())
            .unwrap();
    let all = vec![
        (0x4000_0000, 0x10_0000, PageSize::Size4KiB),
        (0x4000_5000, 0x11_0000, PageSize::Size4KiB),
        (0x4000_6000, 0x11_1000, PageSize::Size4KiB),
        (0x4000_7000, 0x11_2000, PageSize::Size4KiB),
        (0xC0E0_0000, 0x4000_0000, PageSize::Size2MiB),
    ];
    assert_eq!(listed(&mapper, 0, 1 << 32), all);
    // From inside a missing slot: the next slot's first byte is where the
    // walk goes on.
    assert_eq!(listed(&mapper, 0x0000_1234, 1 << 32), all);
    assert_eq!(listed(&mapper, 0x8000_1234, 0x8000_0000 - 0x1234), all[4..]);
    // A range that ends inside a missing slot lists nothing after it.
    assert_eq!(listed(&mapper, 0x4000_1000, 0x4000_0000), all[1..4]);
    assert_eq!(listed(&mapper, 0x8000_0000, 0x4000_0000), []);
}

#[test]
fn debug_shows_the_iterators_position_and_the_dumps_text() {
    let ram = SimRam::new();
    let root = hand_built(&ram);
    let mapper =
        Mapper::<Pae, _>::new_isolated(root, SimAccess::new(&ram), CpuFeatures::full::<Pae>())
            .unwrap();
    let mut it = mapper.mappings(VirtAddr::new(0x4000_0000), 0x1_0000);
    assert_eq!(
        format!("{it:?}"),
        format!(
            "Mappings {{ next: {}, end: {} }}",
            0x4000_0000u64, 0x4001_0000u64
        )
    );
    it.next();
    assert_eq!(
        format!("{it:?}"),
        format!(
            "Mappings {{ next: {}, end: {} }}",
            0x4000_1000u64, 0x4001_0000u64
        )
    );
    let dump = mapper.dump(VirtAddr::new(0), 1 << 32);
    let text = dump.to_string();
    assert_eq!(format!("{dump:?}"), text);
    assert_eq!(
        text,
        "0x40000000-0x40001000 -> 0x100000 4K x1 W\n\
         0x40005000-0x40008000 -> 0x110000 4K x3 W\n\
         0xc0e00000-0xc1000000 -> 0x40000000 2M x1 W"
    );
}

#[test]
fn a_dump_that_cannot_reach_a_table_says_where_it_stopped() {
    let ram = SimRam::new();
    let root = hand_built(&ram);
    // Frames up to 0x4000 are reachable: slot 1's tables, not slot 3's.
    let mapper = Mapper::<Pae, _>::new_isolated(
        root,
        SimAccess::below(&ram, 0x4000),
        CpuFeatures::full::<Pae>(),
    )
    .unwrap();
    let text = mapper.dump(VirtAddr::new(0), 1 << 32).to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert_eq!(lines[0], "0x40000000-0x40001000 -> 0x100000 4K x1 W");
    assert_eq!(lines[1], "0x40005000-0x40008000 -> 0x110000 4K x3 W");
    assert!(lines[2].starts_with("(stopped: "), "{text}");
    // Nothing reachable at all: only the reason, on the first line.
    let blind = Mapper::<Pae, _>::new_isolated(
        root,
        SimAccess::below(&ram, 0x1000),
        CpuFeatures::full::<Pae>(),
    )
    .unwrap();
    let text = blind.dump(VirtAddr::new(0), 1 << 32).to_string();
    assert!(
        text.starts_with("(stopped: ") && !text.contains('\n'),
        "{text}"
    );
    // One run, then the failure: one line break between them.
    let text = mapper
        .dump(VirtAddr::new(0x4000_5000), 0x8000_0000)
        .to_string();
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(
        text.starts_with("0x40005000-0x40008000 -> 0x110000 4K x3 W\n(stopped: "),
        "{text}"
    );
}
