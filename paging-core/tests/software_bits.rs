//! The software-available bits (`MapFlags::SOFTWARE_0..2`, the leaf's AVL
//! bits 9-11) through the mapper and the simulated MMU: every mapping call
//! stores them where the SDM says, the walker reports them, the CPU ignores
//! them (a mapping with them translates exactly like one without) and keeps
//! them when it sets Accessed/Dirty.
mod mapper_support;

use mapper_support::{Rig, frame, machine, pa, va};
use paging_core::{Entry, LargePages, MapFlags, Page, PagingMode, UnmapError};
use paging_sim::{Access, HwTranslation};

const FETCH: Access = Access {
    write: false,
    user: false,
    exec: true,
};
const ACCESSES: [Access; 5] = [
    Access::READ,
    Access::WRITE,
    Access::USER_READ,
    Access::USER_WRITE,
    FETCH,
];
/// Hardware bits 11:9.
const AVL: u64 = 0b111 << 9;

fn page(x: u32) -> Page {
    Page::from_start_address(va(x)).unwrap()
}

/// The raw leaf entry mapping `at` (a PTE, or a large-page PDE).
fn leaf_raw<M: PagingMode>(rig: &Rig<M>, at: u32) -> u64 {
    let walk = rig.mapper.walk(va(at)).unwrap();
    match walk.pte {
        Some((_, pte)) => pte.raw(),
        None => walk.pmd.unwrap().1.raw(),
    }
}

/// What the CPU makes of `at`, without the physical address: rights, size,
/// memory type, or the fault's error code.
fn hw_view<M: PagingMode>(rig: &Rig<M>, at: u32, access: Access, cached: bool) -> String {
    let r = if cached {
        rig.mmu.translate(va(at), access)
    } else {
        rig.mmu.walk_uncached(va(at), access)
    };
    match r {
        Ok(HwTranslation {
            pa,
            size,
            writable,
            user,
            nx,
            global,
            memory_type,
        }) => format!(
            "ok off={:#x} {size:?} w={writable} u={user} nx={nx} g={global} {memory_type:?}",
            pa.as_u64() & (size.bytes() - 1)
        ),
        Err(f) => format!("fault {:#x}", f.code),
    }
}

/// Every access to `a` and `b` (offset `off` into each) sees the same thing.
fn same_hw<M: PagingMode>(rig: &Rig<M>, a: u32, b: u32) {
    for access in ACCESSES {
        for cached in [false, true] {
            assert_eq!(
                hw_view(rig, a, access, cached),
                hw_view(rig, b, access, cached),
                "{access:?} cached={cached}"
            );
        }
    }
}

fn the_cpu_ignores_software_bits_in_a_4k_leaf<M: PagingMode>() {
    let mut rig = machine::<M>();
    let nx = if M::SUPPORTS_NX {
        MapFlags::NO_EXECUTE
    } else {
        MapFlags::empty()
    };
    for (i, base) in [
        MapFlags::KERNEL_RW | MapFlags::USER,
        MapFlags::KERNEL_RO,
        MapFlags::KERNEL_RW | MapFlags::GLOBAL | nx,
        MapFlags::KERNEL_UNCACHED | MapFlags::USER | MapFlags::PAT,
    ]
    .into_iter()
    .enumerate()
    {
        let i = i as u32;
        let (with, without) = (0x1000_0000 + i * 0x2000, 0x1000_1000 + i * 0x2000);
        let sw = [MapFlags::SOFTWARE, MapFlags::SOFTWARE_1][i as usize % 2];
        let flush = rig
            .mapper
            .map(page(with), frame(0x50_0000), base | sw, &mut rig.alloc)
            .unwrap();
        flush.flush(&rig.mmu);
        let flush = rig
            .mapper
            .map(page(without), frame(0x60_0000), base, &mut rig.alloc)
            .unwrap();
        flush.flush(&rig.mmu);
        let raw = leaf_raw(&rig, with);
        assert_eq!(raw & AVL, sw.x86_leaf_bits(0), "{sw:?} at bits 9-11");
        assert_eq!(
            raw & !AVL,
            leaf_raw(&rig, without) & !0xFFFF_F000 | 0x50_0000
        );
        assert_eq!(
            rig.mapper.translate(va(with)).unwrap().flags,
            base | sw | MapFlags::PRESENT
        );
        same_hw(&rig, with + 0x123, without + 0x123);
        // The CPU sets A (and D, where writes are allowed) and keeps the
        // software bits.
        let flags = rig.mapper.translate(va(with)).unwrap().flags;
        assert!(flags.contains(sw | MapFlags::ACCESSED), "{flags:?}");
        assert_eq!(
            flags.contains(MapFlags::DIRTY),
            base.contains(MapFlags::WRITABLE)
        );
        assert_eq!(leaf_raw(&rig, with) & AVL, sw.x86_leaf_bits(0));
    }
    let dump = rig.mapper.dump(va(0x1000_0000), 0x1000).to_string();
    assert!(dump.contains("SW0 SW1 SW2"), "{dump}");
}

fn the_cpu_ignores_software_bits_in_a_large_leaf<M: PagingMode>() {
    let mut rig = machine::<M>();
    let size = M::LARGE_PAGE_SIZE.bytes();
    let (with, without) = (0x4000_0000u32, 0x4000_0000 + 2 * size as u32);
    let flags = MapFlags::KERNEL_RW | MapFlags::USER;
    let sw = MapFlags::SOFTWARE_0 | MapFlags::SOFTWARE_2;
    rig.mapper
        .map_large(va(with), pa(size), flags | sw, &mut rig.alloc)
        .unwrap()
        .flush(&rig.mmu);
    // map_range with large pages gives a large leaf too.
    rig.mapper
        .map_range(
            va(with + size as u32),
            pa(2 * size),
            size,
            flags | MapFlags::SOFTWARE_1,
            LargePages::Use,
            &mut rig.alloc,
        )
        .unwrap()
        .flush(&rig.mmu);
    rig.mapper
        .map_large(va(without), pa(3 * size), flags, &mut rig.alloc)
        .unwrap()
        .flush(&rig.mmu);
    assert_eq!(leaf_raw(&rig, with) & AVL, 0b101 << 9);
    assert_eq!(leaf_raw(&rig, with + size as u32) & AVL, 0b010 << 9);
    let t = rig.mapper.translate(va(with)).unwrap();
    assert_eq!(t.flags, flags | sw | MapFlags::PRESENT);
    assert_eq!(t.size, M::LARGE_PAGE_SIZE);
    for off in [0, 0x1234, size as u32 - 8] {
        same_hw(&rig, with + off, without + off);
        same_hw(&rig, with + size as u32 + off, without + off);
    }
    assert!(
        rig.mapper
            .translate(va(with))
            .unwrap()
            .flags
            .contains(sw | MapFlags::DIRTY)
    );
}

fn map_range_and_update_flags_set_software_bits_as_asked<M: PagingMode>() {
    let mut rig = machine::<M>();
    let base = 0x2000_0000u32;
    let flags = MapFlags::KERNEL_RW | MapFlags::USER;
    rig.mapper
        .map_range(
            va(base),
            pa(0x70_0000),
            8 * 0x1000,
            flags | MapFlags::SOFTWARE_2,
            LargePages::Avoid,
            &mut rig.alloc,
        )
        .unwrap()
        .flush(&rig.mmu);
    for i in 0..8 {
        assert_eq!(leaf_raw(&rig, base + i * 0x1000) & AVL, 1 << 11);
    }
    // update_flags replaces the software bits like any flag ...
    let _ = rig.mmu.translate(va(base), Access::WRITE).unwrap();
    rig.mapper
        .update_flags(
            va(base),
            MapFlags::KERNEL_RO | MapFlags::USER | MapFlags::SOFTWARE_0,
        )
        .unwrap()
        .flush(&rig.mmu);
    let t = rig.mapper.translate(va(base)).unwrap();
    assert_eq!(
        t.flags,
        MapFlags::KERNEL_RO
            | MapFlags::USER
            | MapFlags::SOFTWARE_0
            | MapFlags::ACCESSED
            | MapFlags::DIRTY
    );
    // ... and leaves every other mapping's alone.
    for i in 1..8 {
        assert_eq!(leaf_raw(&rig, base + i * 0x1000) & AVL, 1 << 11);
    }
    assert_eq!(
        rig.mmu
            .translate(va(base), Access::WRITE)
            .map_err(|f| f.code),
        Err(0x3)
    );
    // A large page's software bits, changed in place.
    let size = M::LARGE_PAGE_SIZE.bytes();
    let big = 0x8000_0000u32;
    rig.mapper
        .map_large(va(big), pa(size), flags, &mut rig.alloc)
        .unwrap()
        .flush(&rig.mmu);
    rig.mapper
        .update_flags(va(big), flags | MapFlags::SOFTWARE)
        .unwrap()
        .flush(&rig.mmu);
    assert_eq!(leaf_raw(&rig, big) & AVL, AVL);
    // Flags the format cannot hold are still refused, software bits or not.
    let unknown = MapFlags::from_bits_retain(1 << 14) | MapFlags::SOFTWARE_0;
    let e = rig.assert_unchanged(|r| r.mapper.update_flags(va(big), unknown));
    assert!(matches!(e, Err(UnmapError::Unsupported(_))), "{e:?}");
}

paging_sim::for_each_mode!(
    the_cpu_ignores_software_bits_in_a_4k_leaf,
    the_cpu_ignores_software_bits_in_a_large_leaf,
    map_range_and_update_flags_set_software_bits_as_asked
);
