//! Setting and clearing slots, moving the top, and every error path of the
//! run-time fixmap: typed errors, the PTEs and the TLB left as they were.
#![cfg(test)]

mod support;

use std::sync::Mutex;

use fixmap::{
    FixIndex, Fixmap, FixmapError, FixmapLayout, TOP_STEP, WindowBuilder, fixmap_layout,
    virt_to_fix,
};
use paging_core::{EntryError, Level, MapFlags, PagingMode, PhysFrame, TableHooks};
use paging_sim::{Machine, SimAccess, SimRam};
use support::{frame, pa, va};

fixmap_layout! {
    /// A small kernel fixmap.
    pub struct Small {
        top: 0xFFFF_F000;
        /// Early console.
        CONSOLE;
        /// Local APIC.
        APIC;
        /// Local kmap slots.
        KMAP[8];
    }
}

/// Hooks that record every entry write.
#[derive(Default)]
struct Writes(Mutex<Vec<(PhysFrame, usize, u64, u64)>>);

impl TableHooks for &Writes {
    fn entry_written(&self, table: PhysFrame, level: Level, index: usize, old: u64, new: u64) {
        assert_eq!(level, Level::Pte);
        self.0.lock().unwrap().push((table, index, old, new));
    }
}

/// A machine, and the window for `Small` (plus 2 MiB of pkmap below it).
fn setup<M: PagingMode>(ram: &SimRam) -> (Machine<'_, M>, fixmap::ContiguousWindow<M>) {
    let mut m = Machine::<M>::new(ram);
    let (w, _) = WindowBuilder::new(va(0xFF80_0000), 1 << 32)
        .unwrap()
        .build(&mut m.mapper, &m.mmu, &mut m.alloc)
        .unwrap();
    (m, w)
}

fn set_and_clear_flush_one_page_each<M: PagingMode>() {
    let ram = SimRam::new();
    let (m, w) = setup::<M>(&ram);
    let writes = Writes::default();
    let mut fix = Fixmap::<Small, M, _, _>::with_hooks(SimAccess::new(&ram), &writes);
    fix.attach(w).unwrap();
    let before = m.mmu.tlb_stats().invlpg;
    fix.set_uncached(Small::CONSOLE, frame(0xB_8000), &m.mmu)
        .unwrap();
    let t = m
        .mmu
        .translate(Small::CONSOLE.virt(), paging_sim::Access::WRITE)
        .unwrap();
    assert_eq!(t.pa, pa(0xB_8000));
    assert_eq!(
        fix.get(Small::CONSOLE).unwrap(),
        Some((
            frame(0xB_8000),
            MapFlags::KERNEL_UNCACHED | MapFlags::ACCESSED | MapFlags::DIRTY
        ))
    );
    fix.set_cached(Small::KMAP.at::<7>(), frame(0x9000), &m.mmu)
        .unwrap();
    assert_eq!(fix.clear(Small::CONSOLE, &m.mmu), Ok(frame(0xB_8000)));
    assert_eq!(
        m.hw(Small::CONSOLE.virt()),
        Err(0),
        "cleared and invalidated"
    );
    assert_eq!(m.mmu.tlb_stats().invlpg - before, 3);
    assert_eq!(fix.get(Small::CONSOLE).unwrap(), None);
    // The hooks saw the three writes, each in the window's tables.
    let seen = writes.0.lock().unwrap().clone();
    assert_eq!(seen.len(), 3);
    assert!(
        seen.iter()
            .all(|(t, ..)| fix.window().unwrap().first_frame() <= *t)
    );
    assert_eq!(seen[2].3, 0);
}

fn index_errors<M: PagingMode>() {
    assert_eq!(
        FixIndex::<Small>::new(0),
        Err(FixmapError::IndexOutOfRange {
            index: 0,
            end: Small::END
        })
    );
    assert_eq!(
        FixIndex::<Small>::new(Small::END),
        Err(FixmapError::IndexOutOfRange {
            index: Small::END,
            end: Small::END
        })
    );
    assert_eq!(
        FixIndex::<Small>::new(Small::END - 1).unwrap(),
        Small::KMAP.at::<7>()
    );
    assert!(matches!(
        Small::KMAP.get(8),
        Err(FixmapError::IndexOutOfRange { index: 11, .. })
    ));
    assert_eq!(Small::KMAP.get(3).unwrap(), Small::KMAP.at::<3>());
    // Addresses: the hole, above the top, below the last slot.
    for bad in [
        0xFFFF_F000u32,
        0xFFFF_FFFF,
        0xFFFF_F000 - Small::END as u32 * 4096,
        0x1000,
    ] {
        assert_eq!(
            virt_to_fix::<Small>(Small::TOP, va(bad)),
            Err(FixmapError::NotInFixmap { va: va(bad) })
        );
    }
    assert_eq!(
        virt_to_fix::<Small>(Small::TOP, va(0xFFFF_EFFF)),
        Ok(Small::CONSOLE)
    );
    let _ = M::NAME;
}

fn slot_errors_change_nothing<M: PagingMode>() {
    let ram = SimRam::new();
    let (mut m, w) = setup::<M>(&ram);
    let mut fix = Fixmap::<Small, M, _>::new(SimAccess::new(&ram));
    // No tables yet.
    assert_eq!(
        fix.set_cached(Small::APIC, frame(0xFEE0_0000), &m.mmu),
        Err(FixmapError::NoTables)
    );
    fix.attach(w).unwrap();
    fix.set_cached(Small::APIC, frame(0xFEE0_0000), &m.mmu)
        .unwrap();
    let invlpg = m.mmu.tlb_stats().invlpg;
    let e = m.assert_unchanged(|m| fix.set_cached(Small::APIC, frame(0x5000), &m.mmu));
    assert_eq!(
        e,
        Err(FixmapError::SlotInUse {
            index: 2,
            current: frame(0xFEE0_0000)
        })
    );
    let e = m.assert_unchanged(|m| fix.clear(Small::CONSOLE, &m.mmu));
    assert_eq!(e, Err(FixmapError::NotSet { index: 1 }));
    let beyond = frame(1 << M::MAX_PHYS_BITS);
    let e = m.assert_unchanged(|m| fix.set_cached(Small::CONSOLE, beyond, &m.mmu));
    assert!(
        matches!(
            e,
            Err(FixmapError::Entry(EntryError::PhysOutOfRange { .. }))
        ),
        "{e:?}"
    );
    let nx = MapFlags::KERNEL_RW | MapFlags::NO_EXECUTE;
    if M::SUPPORTS_NX {
        fix.set(Small::CONSOLE, frame(0x5000), nx, &m.mmu).unwrap();
    } else {
        let e = m.assert_unchanged(|m| fix.set(Small::CONSOLE, frame(0x5000), nx, &m.mmu));
        assert_eq!(
            e,
            Err(FixmapError::Entry(EntryError::Unsupported(
                MapFlags::NO_EXECUTE
            )))
        );
    }
    assert_eq!(m.hw(Small::APIC.virt()), Ok(pa(0xFEE0_0000)));
    // Failed calls flushed nothing (the successful NX set in PAE flushed once).
    assert_eq!(m.mmu.tlb_stats().invlpg - invlpg, u64::from(M::SUPPORTS_NX));
}

fn the_top_moves_only_before_first_use<M: PagingMode>() {
    let ram = SimRam::new();
    let (m, w) = setup::<M>(&ram);
    let mut fix = Fixmap::<Small, M, _>::new(SimAccess::new(&ram));
    // Not by a partial table, not up, not past the window once attached.
    let bad = va(Small::TOP.as_u32() - 0x1000);
    assert_eq!(fix.move_top(bad), Err(FixmapError::BadTop { top: bad }));
    assert_eq!(
        fix.move_top(va(0xFFFF_FFFF)),
        Err(FixmapError::BadTop {
            top: va(0xFFFF_FFFF)
        })
    );
    fix.attach(w).unwrap();
    let far = va(Small::TOP.as_u32() - 16 * TOP_STEP as u32);
    assert!(matches!(
        fix.move_top(far),
        Err(FixmapError::WindowDoesNotCover { .. })
    ));
    assert_eq!(fix.top(), Small::TOP);
    // One step down (room for a hypervisor) is fine before use ...
    let lower = va(Small::TOP.as_u32() - TOP_STEP as u32);
    fix.move_top(lower).unwrap();
    assert_eq!(fix.virt(Small::CONSOLE), va(lower.as_u32() - 0x1000));
    fix.set_cached(Small::CONSOLE, frame(0x7000), &m.mmu)
        .unwrap();
    assert_eq!(m.hw(va(lower.as_u32() - 0x1000)), Ok(pa(0x7000)));
    assert_eq!(
        m.hw(Small::CONSOLE.virt()),
        Err(0),
        "the default address is not used"
    );
    // ... and an error afterwards, with nothing moved.
    assert_eq!(fix.move_top(Small::TOP), Err(FixmapError::TopMovedAfterUse));
    assert_eq!(fix.top(), lower);
    assert_eq!(m.hw(va(lower.as_u32() - 0x1000)), Ok(pa(0x7000)));
}

fn attaching_a_window_that_misses_the_fixmap_fails<M: PagingMode>() {
    let ram = SimRam::new();
    let mut m = Machine::<M>::new(&ram);
    let (low, _) = WindowBuilder::new(va(0x8000_0000), 0x8000_1000)
        .unwrap()
        .build(&mut m.mapper, &m.mmu, &mut m.alloc)
        .unwrap();
    let mut fix = Fixmap::<Small, M, _>::new(SimAccess::new(&ram));
    assert!(matches!(
        fix.attach(low),
        Err(FixmapError::WindowDoesNotCover { .. })
    ));
    assert!(fix.window().is_none());
}

paging_sim::for_each_mode!(
    set_and_clear_flush_one_page_each,
    index_errors,
    slot_errors_change_nothing,
    the_top_moves_only_before_first_use,
    attaching_a_window_that_misses_the_fixmap_fails,
);

/// fixmap errors propagate with `?` into paging-core's catch-all, keeping
/// their kind.
#[test]
fn fixmap_errors_convert_into_the_catch_all_error() {
    let e = fixmap::FixmapError::IndexOutOfRange { index: 9, end: 4 };
    let any = paging_core::AnyError::from(e);
    assert_eq!(
        paging_core::PagingError::kind(&any),
        paging_core::PagingError::kind(&e)
    );
    assert_eq!(
        any.to_string(),
        "fixmap: index out of range: index 9, valid below 4"
    );
}

/// The conversion keeps the slot, frame, address and range the error named
/// (issue 22), for fixmap and window errors alike.
#[test]
fn fixmap_errors_keep_their_slot_frame_and_address_in_the_catch_all_error() {
    use fixmap::{FixmapError, WindowError};
    use paging_core::{AnyError, Detail, PhysAddr, PhysFrame, VirtAddr};
    let current = PhysFrame::containing_address(PhysAddr::new_truncate(0xB8000));
    let any = AnyError::from(FixmapError::SlotInUse { index: 3, current });
    assert!(matches!(
        any,
        AnyError::Other { detail: Detail::Slot { index: 3, frame: Some(f) }, .. } if f == current
    ));
    assert_eq!(
        any.to_string(),
        format!("fixmap: slot in use: slot 3 maps {current:?}")
    );
    let va = VirtAddr::new(0x1000);
    let any = AnyError::from(FixmapError::NotInFixmap { va });
    assert!(matches!(any, AnyError::Other { detail: Detail::Virt(v), .. } if v == va));
    let (expected, got) = (
        PhysFrame::containing_address(PhysAddr::new_truncate(0x5000)),
        PhysFrame::containing_address(PhysAddr::new_truncate(0x9000)),
    );
    let any = AnyError::from(WindowError::Discontiguous { expected, got });
    assert!(matches!(
        any,
        AnyError::Other { detail: Detail::Frames { expected: e, got: g }, .. } if e == expected && g == got
    ));
    let any = AnyError::from(WindowError::TooFewTables {
        needed: 2,
        given: 1,
    });
    assert_eq!(
        any.to_string(),
        "fixmap window: too few tables: 2 needed, 1 there"
    );
}

/// A fixmap can be a kernel static with no lazy initialisation: its
/// constructor is a `const fn`; the window is attached at boot.
static STATIC_FIXMAP: Fixmap<Small, paging_x86_pae::Pae, paging_core::OffsetAccess> =
    // SAFETY: the access is never used: no window is ever attached.
    Fixmap::new(unsafe { paging_core::OffsetAccess::new(0, 0) });

#[test]
fn a_fixmap_is_a_const_static() {
    assert_eq!(STATIC_FIXMAP.top(), Small::TOP);
}
