//! Fixmap slots never carry a bit the CPU treats as reserved: the window
//! carries the features of the mapper that built it, and `set` refuses a
//! flag the CPU lacks or a frame above its MAXPHYADDR with a typed error,
//! writing nothing.

mod support;

use fixmap::{Fixmap, FixmapError, WindowBuilder, fixmap_layout};
use paging_core::{CpuFeature, EntryError, ErrorKind, MapFlags, PagingError, PagingMode};
use paging_sim::{Machine, SimAccess, SimConfig, SimPaging, SimRam};
use paging_x86_2level::TwoLevel;
use paging_x86_pae::Pae;
use support::{frame, pa, va};

fixmap_layout! {
    /// Two slots.
    pub struct Small {
        top: 0xFFFF_F000;
        /// Early console.
        CONSOLE;
        /// Local APIC.
        APIC;
    }
}

/// A machine on `config`, and a fixmap on a window built by its mapper.
fn setup<M: PagingMode>(
    ram: &SimRam,
    config: SimConfig,
) -> (Machine<'_, M>, Fixmap<Small, M, SimAccess<'_>>) {
    let mut m = Machine::<M>::with_config(ram, config);
    let (w, _) = WindowBuilder::new(va(0xFF80_0000), 1 << 32)
        .unwrap()
        .build(&mut m.mapper, &m.mmu, &mut m.alloc)
        .unwrap();
    assert_eq!(w.features(), m.mapper.features());
    let mut fix = Fixmap::new(SimAccess::new(ram));
    fix.attach(w).unwrap();
    (m, fix)
}

/// `set` with `flags` and `target` fails with `want`, changing nothing.
fn refused<M: PagingMode>(config: SimConfig, flags: MapFlags, target: u64, want: EntryError) {
    let ram = SimRam::new();
    let (mut m, fix) = setup::<M>(&ram, config);
    let e = m.assert_unchanged(|m| fix.set(Small::CONSOLE, frame(target), flags, &m.mmu));
    assert_eq!(e, Err(FixmapError::Entry(want)));
    assert_eq!(fix.get(Small::CONSOLE), Ok(None));
    assert_eq!(m.hw(Small::CONSOLE.virt()), Err(0));
}

#[test]
fn no_execute_on_a_p6_is_refused() {
    refused::<Pae>(
        SimConfig::p6(SimPaging::Pae),
        MapFlags::KERNEL_RW | MapFlags::NO_EXECUTE,
        0xB_8000,
        EntryError::MissingFeature(CpuFeature::NoExecute),
    );
    assert_eq!(
        FixmapError::Entry(EntryError::MissingFeature(CpuFeature::NoExecute)).kind(),
        ErrorKind::MissingFeature
    );
}

#[test]
fn the_pat_bit_on_a_pentium_is_refused() {
    refused::<TwoLevel>(
        SimConfig::pentium(),
        MapFlags::KERNEL_RW | MapFlags::PAT,
        0xB_8000,
        EntryError::MissingFeature(CpuFeature::Pat),
    );
}

#[test]
fn a_frame_above_a_pentium_ms_maxphyaddr_is_refused() {
    refused::<Pae>(
        SimConfig::p6_nx(SimPaging::Pae),
        MapFlags::KERNEL_RW,
        1 << 32,
        EntryError::PhysOutOfRange {
            addr: pa(1 << 32),
            max_bits: 32,
        },
    );
}

#[test]
fn flags_from_the_features_are_set() {
    for config in [
        SimConfig::p6(SimPaging::Pae),
        SimConfig::p6_nx(SimPaging::Pae),
    ] {
        let ram = SimRam::new();
        let (m, fix) = setup::<Pae>(&ram, config);
        let f = fix.window().unwrap().features();
        fix.set(
            Small::APIC,
            frame(0xFEE0_0000),
            MapFlags::KERNEL_UNCACHED | f.no_execute(),
            &m.mmu,
        )
        .unwrap();
        assert_eq!(m.hw(Small::APIC.virt()), Ok(pa(0xFEE0_0000)));
    }
}
