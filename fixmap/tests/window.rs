//! The contiguous window: one contiguous allocation or a typed refusal, never
//! a window that works by accident; early tables handed over with every
//! mapping kept; foreign mappings kept; errors change nothing.
#![cfg(test)]

mod support;

use fixmap::{ContiguousWindow, NoFrames, WindowBuilder, WindowError};
use paging_core::{
    Entry, ErrorKind, InstallError, LargePages, MapFlags, Page, PagingMode, PhysFrame, PteEntry,
    VirtAddr,
};
use paging_sim::{Contiguous, Machine, ScatteredAllocator, SimAccess, SimRam};
use support::{frame, pa, va};

/// A window from 0xFF80_0000 (pkmap) to the top of the address space.
fn builder() -> WindowBuilder {
    WindowBuilder::new(va(0xFF80_0000), 1 << 32).unwrap()
}

/// The PMD entries covering the window point at consecutive frames, and
/// `pte_phys` is one linear array over them.
fn assert_contiguous<M: PagingMode>(m: &Machine<'_, M>, w: &ContiguousWindow<M>) {
    let span = M::pmd_span();
    for k in 0..w.tables() {
        let v = va((w.start().as_u64() + k as u64 * span) as u32);
        let pmd = m.mapper.walk(v).unwrap().pmd.unwrap().1;
        assert_eq!(
            pmd.addr(),
            w.first_frame()
                .checked_add(k as u64)
                .unwrap()
                .start_address()
        );
    }
    let first = w.pte_phys(w.start()).unwrap().as_u64();
    for i in (0..w.tables() * M::PTRS_PER_PTE).step_by(97) {
        let v = va(w.start().as_u32() + i as u32 * 4096);
        assert_eq!(
            w.pte_phys(v).unwrap().as_u64(),
            first + (i * M::ENTRY_BYTES) as u64
        );
    }
}

fn contiguous_allocation_makes_one_pte_array<M: PagingMode>() {
    let ram = SimRam::new();
    let mut m = Machine::<M>::new(&ram);
    let (w, replaced) = builder()
        .build(&mut m.mapper, &m.mmu, &mut m.alloc)
        .unwrap();
    assert!(replaced.is_empty());
    assert_eq!(w.start(), va(0xFF80_0000 & !(M::pmd_span() as u32 - 1)));
    assert!(w.covers(va(0xFF80_0000), 1 << 32));
    assert_contiguous(&m, &w);
}

fn a_never_adjacent_allocator_gets_a_real_chunk_or_a_refusal<M: PagingMode>() {
    let ram = SimRam::new();
    let mut m = Machine::<M>::new(&ram);
    // It has a contiguous allocation: the window uses it and is contiguous,
    // although no two single frames it hands out are ever adjacent.
    let mut scattered = ScatteredAllocator::new(
        0x40_0000..0x80_0000,
        0..0,
        Contiguous::Provide(0x20_0000..0x30_0000),
    );
    let (w, _) = builder()
        .build(&mut m.mapper, &m.mmu, &mut scattered)
        .unwrap();
    assert_contiguous(&m, &w);
    assert!((0x20_0000..0x30_0000).contains(&w.first_frame().start_address().as_u64()));

    // Without one: the builder tries frame by frame, sees the gap, gives every
    // frame back and refuses. Nothing changes.
    let ram = SimRam::new();
    let mut m = Machine::<M>::new(&ram);
    let mut scattered = ScatteredAllocator::new(0x40_0000..0x80_0000, 0..0, Contiguous::Refuse);
    let count = builder().geometry::<M>().1;
    let e = m.assert_unchanged(|m| {
        builder()
            .build(&mut m.mapper, &m.mmu, &mut scattered)
            .map(|_| ())
    });
    if count > 1 {
        assert!(matches!(e, Err(WindowError::Discontiguous { .. })), "{e:?}");
    } else {
        // A one-table window is contiguous by definition.
        assert!(e.is_ok());
    }
    assert_eq!(scattered.live(), usize::from(count == 1));
    assert_eq!(scattered.double_frees(), 0);
}

fn allocator_failure_is_typed_and_changes_nothing<M: PagingMode>() {
    let ram = SimRam::new();
    let mut m = Machine::<M>::new(&ram);
    m.alloc.fail_after(0);
    let e = m.assert_unchanged(|m| {
        builder()
            .build(&mut m.mapper, &m.mmu, &mut m.alloc)
            .map(|_| ())
    });
    assert!(
        matches!(e, Err(WindowError::NoContiguousFrames { .. })),
        "{e:?}"
    );
    m.alloc.never_fail();
    // Static tables with too few frames.
    let count = builder().geometry::<M>().1;
    let e = m.assert_unchanged(|m| {
        builder()
            .build_static_isolated(
                &mut m.mapper,
                frame(0x8_0000),
                count - 1,
                &m.mmu,
                &mut NoFrames,
            )
            .map(|_| ())
    });
    assert_eq!(
        e,
        Err(WindowError::TooFewTables {
            needed: count,
            given: count - 1
        })
    );
    if !M::PMD_FOLDED {
        // PAE with no PMD table for the top GiB and no allocator yet.
        let e = m.assert_unchanged(|m| {
            builder()
                .build_static_isolated(&mut m.mapper, frame(0x8_0000), count, &m.mmu, &mut NoFrames)
                .map(|_| ())
        });
        assert_eq!(e, Err(WindowError::Install(InstallError::OutOfFrames)));
    }
    assert!(WindowBuilder::new(va(0x1000), 0x1000).is_err());
    assert!(WindowBuilder::new(va(0x1000), (1 << 32) + 1).is_err());
}

fn a_large_page_in_the_window_is_refused<M: PagingMode>() {
    let ram = SimRam::new();
    let mut m = Machine::<M>::new(&ram);
    let size = M::LARGE_PAGE_SIZE.bytes();
    let base = (1u64 << 32) - size;
    m.mapper
        .map_large(va(base as u32), pa(size), MapFlags::KERNEL_RW, &mut m.alloc)
        .unwrap()
        .flush(&m.mmu);
    let e = m.assert_unchanged(|m| {
        builder()
            .build(&mut m.mapper, &m.mmu, &mut m.alloc)
            .map(|_| ())
    });
    let e = e.unwrap_err();
    assert!(
        matches!(
            e,
            WindowError::Install(InstallError::LargePageInTheWay { .. })
        ),
        "{e:?}"
    );
    assert_eq!(paging_core::PagingError::kind(&e), ErrorKind::SizeConflict);
    assert_eq!(m.hw(va(base as u32 + 0x1234)), Ok(pa(size + 0x1234)));
}

fn early_static_tables_hand_over_with_their_mappings<M: PagingMode>() {
    let ram = SimRam::new();
    let mut m = Machine::<M>::new(&ram);
    if !M::PMD_FOLDED {
        // PAE boot code has the kernel PMD before any fixmap exists.
        m.mapper
            .map(
                Page::containing_address(va(0xC000_0000)),
                frame(0x1000),
                MapFlags::KERNEL_RW,
                &mut m.alloc,
            )
            .unwrap()
            .flush(&m.mmu);
    }
    // "Static" tables: frames the allocator does not own (a kernel's .bss).
    let fixmap_only = WindowBuilder::new(va(0xFFC0_0000), 1 << 32).unwrap();
    let count = fixmap_only.geometry::<M>().1;
    let statics = frame(0x8_0000);
    let (early, _) = fixmap_only
        .build_static_isolated(&mut m.mapper, statics, count, &m.mmu, &mut NoFrames)
        .unwrap();
    // An early console at the top slot below the hole, uncached.
    let console = va(0xFFFF_E000);
    let slot = early.pte_slot(console).unwrap();
    let pte = <M::Pte as PteEntry>::page(
        frame(0xB_8000),
        MapFlags::KERNEL_UNCACHED | MapFlags::PRESENT,
    )
    .unwrap();
    let raw = pte.raw();
    let at = pa(slot.table.start_address().as_u64() + (slot.index * M::ENTRY_BYTES) as u64);
    if M::ENTRY_BYTES == 4 {
        ram.write_u32(at, raw as u32).unwrap();
    } else {
        ram.write_u64(at, raw).unwrap();
    }
    m.mmu.write_bytes(console, b"early console").unwrap();
    let mut seen = [0u8; 13];
    ram.read_bytes(pa(0xB_8000), &mut seen).unwrap();
    assert_eq!(&seen, b"early console");
    // The PDE for the console is now cached by the CPU.

    // The final window: one allocation, the early table copied into it.
    let (w, replaced) = builder()
        .build(&mut m.mapper, &m.mmu, &mut m.alloc)
        .unwrap();
    assert_contiguous(&m, &w);
    let old: Vec<PhysFrame> = replaced.frames().collect();
    assert_eq!(old.len(), count);
    assert_eq!(old[0], statics);
    // The console still reads through the MMU, now through the new table.
    let mut seen = [0u8; 13];
    m.mmu.read_bytes(console, &mut seen).unwrap();
    assert_eq!(&seen, b"early console");
    assert_ne!(w.pte_slot(console).unwrap().table, slot.table);
    let t = m.mmu.translate(console, paging_sim::Access::WRITE).unwrap();
    assert_eq!(t.pa, pa(0xB_8000));
    // Clearing the copy really unmaps it: the CPU walks the new table.
    let new_slot = w.pte_slot(console).unwrap();
    let at = pa(new_slot.table.start_address().as_u64() + (new_slot.index * M::ENTRY_BYTES) as u64);
    ram.write_u32(at, 0).unwrap();
    m.mmu.invlpg(console);
    assert_eq!(m.hw(console), Err(0));
}

fn foreign_mappings_in_the_window_tables_survive<M: PagingMode>() {
    let ram = SimRam::new();
    let mut m = Machine::<M>::new(&ram);
    // A loader's mapping just below the window, in the same PTE table.
    let below = va(0xFF80_0000 - 0x1000);
    let shares_table = below.as_u64() >= builder().geometry::<M>().0.as_u64();
    m.mapper
        .map(
            Page::containing_address(below),
            frame(0x12_3000),
            MapFlags::KERNEL_RW,
            &mut m.alloc,
        )
        .unwrap()
        .flush(&m.mmu);
    let live = m.alloc.live();
    let (w, replaced) = builder()
        .build(&mut m.mapper, &m.mmu, &mut m.alloc)
        .unwrap();
    assert_eq!(replaced.len(), usize::from(shares_table));
    assert_eq!(m.hw(below), Ok(pa(0x12_3000)));
    assert_eq!(w.pte_slot(below).is_some(), shares_table);
    assert_eq!(m.alloc.live(), live + w.tables());
    for f in replaced.frames() {
        m.alloc.deallocate_frame(f);
    }
    assert_eq!(m.alloc.double_frees(), 0);
}

fn windows_crossing_pmd_and_pgd_boundaries<M: PagingMode>() {
    let ram = SimRam::new();
    let mut m = Machine::<M>::new(&ram);
    // 12 MiB straddling the 1 GiB line: several tables, two PGD entries in PAE.
    let b = WindowBuilder::new(va(0x3FA0_0000), 0x4060_0000).unwrap();
    let (w, _) = b.build(&mut m.mapper, &m.mmu, &mut m.alloc).unwrap();
    assert!(w.tables() >= 3);
    assert_contiguous(&m, &w);
    // Every page of the window maps through its linear PTE position.
    for (i, v) in (0x3FA0_0000u32..0x4060_0000).step_by(0x7_3000).enumerate() {
        let v = va(v);
        let pte = <M::Pte as PteEntry>::page(
            frame(0x100_0000 + i as u64 * 0x1000),
            MapFlags::KERNEL_RW | MapFlags::PRESENT,
        )
        .unwrap();
        let at = w.pte_phys(v).unwrap();
        if M::ENTRY_BYTES == 4 {
            ram.write_u32(at, pte.raw() as u32).unwrap();
        } else {
            ram.write_u64(at, pte.raw()).unwrap();
        }
        assert_eq!(m.hw(v), Ok(pa(0x100_0000 + i as u64 * 0x1000)), "{v:?}");
    }
    let _: VirtAddr = w.start();
    // A range request that is later refused leaves the window's tables alone.
    let e = m.assert_unchanged(|m| {
        m.mapper.map_range(
            va(0x3FA0_0000),
            pa(0),
            0x1000,
            MapFlags::KERNEL_RW,
            LargePages::Avoid,
            &mut m.alloc,
        )
    });
    assert_eq!(
        paging_core::PagingError::kind(&e.unwrap_err()),
        ErrorKind::AlreadyMapped
    );
}

paging_sim::for_each_mode!(
    contiguous_allocation_makes_one_pte_array,
    a_never_adjacent_allocator_gets_a_real_chunk_or_a_refusal,
    allocator_failure_is_typed_and_changes_nothing,
    a_large_page_in_the_window_is_refused,
    early_static_tables_hand_over_with_their_mappings,
    foreign_mappings_in_the_window_tables_survive,
    windows_crossing_pmd_and_pgd_boundaries,
);

/// Hooks counting tables announced and released.
#[derive(Default)]
struct Lifecycle(std::sync::Mutex<(Vec<PhysFrame>, Vec<PhysFrame>)>);

impl paging_core::TableHooks for &Lifecycle {
    fn table_allocated(&self, frame: PhysFrame, level: paging_core::Level) {
        if level == paging_core::Level::Pte {
            self.0.lock().unwrap().0.push(frame);
        }
    }
    fn table_released(&self, frame: PhysFrame, _level: paging_core::Level) {
        self.0.lock().unwrap().1.push(frame);
    }
}

fn hooks_hear_of_every_table_the_builder_installs<M: PagingMode>() {
    let ram = SimRam::new();
    let mut m = Machine::<M>::new(&ram);
    // An early table in the window's range, replaced by the build.
    m.mapper
        .map(
            Page::containing_address(va(0xFFFF_E000)),
            frame(0xB_8000),
            MapFlags::KERNEL_RW,
            &mut m.alloc,
        )
        .unwrap()
        .flush(&m.mmu);
    let early = m
        .mapper
        .walk(va(0xFFFF_E000))
        .unwrap()
        .pmd
        .unwrap()
        .1
        .addr();
    let hooks = Lifecycle::default();
    let mut mapper = paging_core::Mapper::<M, _>::new_isolated(
        m.mapper.root(),
        SimAccess::new(&ram),
        paging_core::CpuFeatures::full::<M>(),
    )
    .unwrap()
    .with_hooks(&hooks);
    let (w, replaced) = builder().build(&mut mapper, &m.mmu, &mut m.alloc).unwrap();
    let (allocated, released) = hooks.0.lock().unwrap().clone();
    let expected: Vec<PhysFrame> = (0..w.tables() as u64)
        .map(|k| w.first_frame().checked_add(k).unwrap())
        .collect();
    assert_eq!(allocated, expected);
    assert_eq!(released, replaced.frames().collect::<Vec<_>>());
    assert_eq!(released, [PhysFrame::containing_address(early)]);
}

paging_sim::for_each_mode!(hooks_hear_of_every_table_the_builder_installs);
