//! kmap's slots never carry a bit the CPU treats as reserved: a pool or
//! local slots whose PTE flags need a feature the CPU lacks refuse with
//! `EntryError::MissingFeature`, and a frame above the CPU's MAXPHYADDR
//! with `PhysOutOfRange`, leaving every slot PTE as it was.

use fixmap::{Fixmap, WindowBuilder, fixmap_layout};
use kmap::{
    DirectMap, FlushCounts, FlushPolicy, GlobalFlush, KmapError, KmapTask, LocalSlots,
    PersistentPool, SpinWait,
};
use paging_core::{
    CpuFeature, EntryError, ErrorKind, MapFlags, PagingError, PhysAddr, PhysFrame, TlbOps, VirtAddr,
};
use paging_sim::{Machine, SimAccess, SimConfig, SimPaging, SimRam};
use paging_x86_pae::Pae;

fixmap_layout! {
    /// Room for local slots.
    pub struct Small {
        top: 0xFFFF_F000;
        /// Local kmap slots.
        KMAP[8];
    }
}

const PKMAP_BASE: u32 = 0xFF80_0000;

fn frame(x: u64) -> PhysFrame {
    PhysFrame::from_start_address(PhysAddr::new(x).unwrap()).unwrap()
}

/// `GlobalFlush` writing its slots with `flags`.
struct Flags(MapFlags);

impl FlushPolicy for Flags {
    fn name(&self) -> &'static str {
        "flags"
    }

    fn pte_flags(&self) -> MapFlags {
        self.0
    }

    fn slot_cleared<T: TlbOps + ?Sized>(
        &self,
        tlb: &T,
        va: VirtAddr,
        accessed: bool,
        counts: &mut FlushCounts,
    ) {
        GlobalFlush.slot_cleared(tlb, va, accessed, counts);
    }

    fn wrap_done<T: TlbOps + ?Sized>(
        &self,
        tlb: &T,
        base: VirtAddr,
        slots: u32,
        cleared: usize,
        counts: &mut FlushCounts,
    ) {
        GlobalFlush.wrap_done(tlb, base, slots, cleared, counts);
    }
}

/// The window's PTE tables, word by word.
fn window_words(ram: &SimRam, w: &fixmap::ContiguousWindow<Pae>) -> Vec<u64> {
    (0..w.tables() as u64)
        .flat_map(|k| ram.frame_words(w.first_frame().checked_add(k).unwrap()))
        .collect()
}

fn machine(ram: &SimRam, config: SimConfig) -> (Machine<'_, Pae>, fixmap::ContiguousWindow<Pae>) {
    let mut m = Machine::<Pae>::with_config(ram, config);
    let (w, _) = WindowBuilder::new(VirtAddr::new(PKMAP_BASE), 1 << 32)
        .unwrap()
        .build(&mut m.mapper, &m.mmu, &mut m.alloc)
        .unwrap();
    m.reload_cr3();
    assert_eq!(w.features(), m.mapper.features());
    (m, w)
}

#[test]
fn a_pool_with_no_execute_slots_is_refused_on_a_p6() {
    let ram = SimRam::new();
    let (m, w) = machine(&ram, SimConfig::p6(SimPaging::Pae));
    let flags = MapFlags::KERNEL_RW | MapFlags::NO_EXECUTE;
    let pool: PersistentPool<Pae, _, _, _, _, 8> = PersistentPool::new(
        &w,
        VirtAddr::new(PKMAP_BASE),
        DirectMap::new(0xC000_0000, 0x100_0000),
        SimAccess::new(&ram),
        &m.mmu,
        Flags(flags),
        SpinWait,
    )
    .unwrap();
    // SAFETY: the only task of this test.
    let task = unsafe { KmapTask::new() };
    let before = window_words(&ram, &w);
    let e = pool.try_map(&task, frame(0x200_0000)).map(|k| k.va());
    let e = e.unwrap_err();
    assert_eq!(
        e,
        KmapError::Entry(EntryError::MissingFeature(CpuFeature::NoExecute))
    );
    assert_eq!(e.kind(), ErrorKind::MissingFeature);
    assert_eq!(window_words(&ram, &w), before, "no slot PTE written");
    assert_eq!(pool.in_use(), 0);
    // Flags from the features map.
    let ok: PersistentPool<Pae, _, _, _, _, 8> = PersistentPool::new(
        &w,
        VirtAddr::new(PKMAP_BASE),
        DirectMap::new(0xC000_0000, 0x100_0000),
        SimAccess::new(&ram),
        &m.mmu,
        Flags(MapFlags::KERNEL_RW | w.features().no_execute()),
        SpinWait,
    )
    .unwrap();
    let k = ok.try_map(&task, frame(0x200_0000)).unwrap();
    assert_eq!(m.hw(k.va()), Ok(PhysAddr::new(0x200_0000).unwrap()));
}

#[test]
fn a_frame_above_maxphyaddr_is_refused_on_a_pentium_m() {
    let ram = SimRam::new();
    let (m, w) = machine(&ram, SimConfig::p6_nx(SimPaging::Pae));
    let pool: PersistentPool<Pae, _, _, _, _, 8> = PersistentPool::new(
        &w,
        VirtAddr::new(PKMAP_BASE),
        DirectMap::new(0xC000_0000, 0x100_0000),
        SimAccess::new(&ram),
        &m.mmu,
        GlobalFlush,
        SpinWait,
    )
    .unwrap();
    // SAFETY: the only task of this test.
    let task = unsafe { KmapTask::new() };
    let before = window_words(&ram, &w);
    let e = pool.try_map(&task, frame(1 << 32)).map(|k| k.va());
    assert_eq!(
        e.unwrap_err(),
        KmapError::Entry(EntryError::PhysOutOfRange {
            addr: PhysAddr::new(1 << 32).unwrap(),
            max_bits: 32
        })
    );
    assert_eq!(window_words(&ram, &w), before);
}

#[test]
fn local_slots_refuse_flags_and_frames_the_cpu_cannot_carry() {
    let ram = SimRam::new();
    let (m, w) = machine(&ram, SimConfig::p6(SimPaging::Pae));
    let mut fix = Fixmap::<Small, Pae, _>::new(SimAccess::new(&ram));
    fix.attach(w.clone()).unwrap();
    let local = LocalSlots::<_, _, _, _, _, 2, 1>::new(
        &fix,
        Small::KMAP,
        false,
        DirectMap::new(0xC000_0000, 0x100_0000),
        &m.mmu,
    )
    .unwrap();
    let e = local
        .with_flags(MapFlags::KERNEL_RW | MapFlags::NO_EXECUTE)
        .map(|_| ())
        .unwrap_err();
    assert_eq!(
        e,
        KmapError::Entry(EntryError::MissingFeature(CpuFeature::NoExecute))
    );
    // The default flags work, and the fixmap refuses what the CPU lacks
    // at the first map too.
    let local = LocalSlots::<_, _, _, _, _, 2, 1>::new(
        &fix,
        Small::KMAP,
        false,
        DirectMap::new(0xC000_0000, 0x100_0000),
        &m.mmu,
    )
    .unwrap();
    let before = window_words(&ram, &w);
    let e = local.map(0, frame(1 << 36)).map(|k| k.va());
    assert!(
        matches!(
            e,
            Err(KmapError::Entry(EntryError::PhysOutOfRange {
                max_bits: 36,
                ..
            }))
        ),
        "{e:?}"
    );
    assert_eq!(window_words(&ram, &w), before);
    let k = local.map(0, frame(0x200_0000)).unwrap();
    assert_eq!(m.hw(k.va()), Ok(PhysAddr::new(0x200_0000).unwrap()));
}
