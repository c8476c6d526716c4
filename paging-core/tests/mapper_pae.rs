//! PAE-only behaviour, seen by the simulated MMU: the PDPT is latched at CR3
//! load, PDPTEs never carry bits the SDM reserves, and 64-bit entries are
//! never seen half written.
mod mapper_support;

use std::sync::Mutex;

use mapper_support::{frame, machine, pa, va};
use paging_core::{MapFlags, Mapper, Page, PhysAddr, VirtAddr};
use paging_sim::{Access, Mmu, ObservedStore, SimAccess, SimConfig, SimRam, ZonedAllocator};
use paging_x86_pae::Pae;

fn page(x: u32) -> Page {
    Page::from_start_address(va(x)).unwrap()
}

#[test]
fn a_pdpt_change_is_invisible_until_cr3_is_reloaded() {
    let mut rig = machine::<Pae>();
    let token = rig
        .mapper
        .map(
            page(0x4000_0000),
            frame(0x7000),
            MapFlags::KERNEL_RW,
            &mut rig.alloc,
        )
        .unwrap();
    assert!(token.needs_cr3_reload());
    // The tables in RAM are complete, but the CPU still uses the PDPTEs it
    // latched: neither the TLB nor a fresh walk sees the new PMD table.
    assert_eq!(
        rig.mapper.translate(va(0x4000_0000)).unwrap().phys_addr(),
        pa(0x7000)
    );
    assert_eq!(rig.hw_uncached(va(0x4000_0000)), Err(0));
    let loads = rig.mmu.tlb_stats().cr3_loads;
    token.flush(&rig.mmu);
    assert_eq!(rig.mmu.tlb_stats().cr3_loads, loads + 1);
    assert_eq!(rig.hw(va(0x4000_0000)), Ok(pa(0x7000)));

    // A second page under the same PDPTE needs no reload.
    let token = rig
        .mapper
        .map(
            page(0x4000_1000),
            frame(0x8000),
            MapFlags::KERNEL_RW,
            &mut rig.alloc,
        )
        .unwrap();
    assert!(!token.needs_cr3_reload());
    assert_eq!(rig.hw(va(0x4000_1000)), Ok(pa(0x8000)));
}

#[test]
fn pdptes_hold_only_the_bits_the_sdm_allows() {
    let mut rig = machine::<Pae>();
    for gib in 0..4u32 {
        rig.mapper
            .map(
                page(gib << 30),
                frame(0x7000),
                MapFlags::KERNEL_RW | MapFlags::USER,
                &mut rig.alloc,
            )
            .unwrap()
            .flush(&rig.mmu);
    }
    // Present PDPTEs with R/W, U/S or XD would make this CR3 load #GP.
    assert_eq!(rig.mmu.cr3_faults(), 0);
    let root = rig.mapper.root().as_u64();
    for i in 0..4 {
        let pdpte = rig.ram.read_u64(pa(root + 8 * i)).unwrap();
        assert_eq!(pdpte & 1, 1);
        assert_eq!(
            pdpte & 0b1_1110_0110,
            0,
            "reserved bits 2:1 and 8:5 clear: {pdpte:#x}"
        );
        assert_eq!(pdpte >> 63, 0, "XD is reserved in a PDPTE");
        assert_eq!(
            rig.mmu
                .translate(va((i as u32) << 30), Access::USER_WRITE)
                .unwrap()
                .pa,
            pa(0x7000)
        );
    }
}

/// Every state the MMU could observe at `va` while `change` runs, with one
/// fresh walk after every 32- or 64-bit store.
fn observed_states(
    setup: impl FnOnce(&mut Mapper<Pae<52>, SimAccess<'static>>, &mut ZonedAllocator, &Mmu<'static>),
    change: impl FnOnce(&mut Mapper<Pae<52>, SimAccess<'static>>, &mut ZonedAllocator, &Mmu<'static>),
    at: VirtAddr,
) -> Vec<Result<PhysAddr, u32>> {
    let ram: &'static SimRam = Box::leak(Box::new(SimRam::new()));
    let mmu: &'static Mmu<'static> = Box::leak(Box::new(Mmu::new(
        ram,
        SimConfig {
            max_phys_bits: 52,
            ..SimConfig::pae()
        },
    )));
    let seen: &'static Mutex<Vec<Result<PhysAddr, u32>>> =
        Box::leak(Box::new(Mutex::new(Vec::new())));
    let recording: &'static Mutex<bool> = Box::leak(Box::new(Mutex::new(false)));
    let observer: &'static (dyn Fn(ObservedStore) + Sync) =
        Box::leak(Box::new(move |_store: ObservedStore| {
            if *recording.lock().unwrap() {
                let state = mmu
                    .walk_uncached(at, Access::READ)
                    .map(|t| t.pa)
                    .map_err(|f| f.code);
                seen.lock().unwrap().push(state);
            }
        }));
    let mut alloc = ZonedAllocator::new(0x10_0000..0x100_0000, 0..0);
    let mut mapper = Mapper::<Pae<52>, _>::create_isolated(
        SimAccess::observed(ram, observer),
        paging_core::CpuFeatures::full::<Pae<52>>(),
        &mut alloc,
    )
    .unwrap();
    mmu.load_cr3(mapper.root().as_u64() as u32).unwrap();
    setup(&mut mapper, &mut alloc, mmu);
    *recording.lock().unwrap() = true;
    change(&mut mapper, &mut alloc, mmu);
    *recording.lock().unwrap() = false;
    let states = seen.lock().unwrap().clone();
    assert!(!states.is_empty(), "the change made stores");
    states
}

/// Addresses whose halves both differ, above and below 4 GiB and 64 GiB.
const OLD: u64 = 0x12_3456_7000;
const NEW: u64 = 0x0_8765_4000;
const HIGH: u64 = 0xF_EDCB_A000_u64 << 8;

#[test]
fn no_half_written_entry_is_ever_visible() {
    let at = va(0x4020_3000);
    let p = page(0x4020_3000);
    let prepare = |m: &mut Mapper<Pae<52>, _>, a: &mut ZonedAllocator, mmu: &Mmu<'static>| {
        m.map(p, frame(OLD), MapFlags::KERNEL_RW, a)
            .unwrap()
            .flush(mmu);
    };
    // Not present -> present (high half first, P last).
    let states = observed_states(
        |m, a, mmu| {
            // Build the tables first so only the PTE store is observed.
            m.map(page(0x4020_2000), frame(0x1000), MapFlags::KERNEL_RW, a)
                .unwrap()
                .flush(mmu);
        },
        |m, a, _| {
            m.map(p, frame(HIGH), MapFlags::KERNEL_RW, a)
                .unwrap()
                .ignore()
        },
        at,
    );
    assert!(
        states.iter().all(|s| *s == Err(0) || *s == Ok(pa(HIGH))),
        "{states:x?}"
    );
    assert_eq!(states.last(), Some(&Ok(pa(HIGH))));

    // Present -> not present (low half first).
    let states = observed_states(prepare, |m, _, _| m.unmap(at).unwrap().1.ignore(), at);
    assert!(
        states.iter().all(|s| *s == Err(0) || *s == Ok(pa(OLD))),
        "{states:x?}"
    );
    assert_eq!(states.last(), Some(&Err(0)));

    // Present -> present (one 64-bit exchange): flags change, frame stays.
    let states = observed_states(
        prepare,
        |m, _, _| m.update_flags(at, MapFlags::KERNEL_RO).unwrap().ignore(),
        at,
    );
    assert!(states.iter().all(|s| *s == Ok(pa(OLD))), "{states:x?}");

    // Remap to another frame: unmap then map, every state old, absent or new.
    let states = observed_states(
        prepare,
        |m, a, _| {
            m.unmap(at).unwrap().1.ignore();
            m.map(p, frame(NEW), MapFlags::KERNEL_RW, a)
                .unwrap()
                .ignore();
        },
        at,
    );
    assert!(
        states
            .iter()
            .all(|s| [Err(0), Ok(pa(OLD)), Ok(pa(NEW))].contains(s)),
        "{states:x?}"
    );
    assert_eq!(states.last(), Some(&Ok(pa(NEW))));
}

#[test]
fn pae_reaches_memory_above_4_gib_and_refuses_past_its_width() {
    let mut rig = machine::<Pae>();
    // 36 bits by default: 63 GiB is fine, 64 GiB is not.
    rig.mapper
        .map(
            page(0x5000_0000),
            frame(63 << 30),
            MapFlags::KERNEL_RW,
            &mut rig.alloc,
        )
        .unwrap()
        .flush(&rig.mmu);
    rig.mmu.write_u32(va(0x5000_0000), 0xabcd).unwrap();
    assert_eq!(rig.ram.read_u32(pa(63 << 30)).unwrap(), 0xabcd);
    assert!(
        rig.mapper
            .map(
                page(0x5000_1000),
                frame(64 << 30),
                MapFlags::KERNEL_RW,
                &mut rig.alloc
            )
            .is_err()
    );
    // A 40-bit configuration takes it.
    let ram: &'static SimRam = Box::leak(Box::new(SimRam::new()));
    let mut alloc = ZonedAllocator::new(0x10_0000..0x100_0000, 0..0);
    let mut m = Mapper::<Pae<40>, _>::create_isolated(
        SimAccess::new(ram),
        paging_core::CpuFeatures::full::<Pae<40>>(),
        &mut alloc,
    )
    .unwrap();
    let mmu = Mmu::new(
        ram,
        SimConfig {
            max_phys_bits: 40,
            ..SimConfig::pae()
        },
    );
    mmu.load_cr3(m.root().as_u64() as u32).unwrap();
    m.map(
        page(0x5000_1000),
        frame(64 << 30),
        MapFlags::KERNEL_RW,
        &mut alloc,
    )
    .unwrap()
    .flush(&mmu);
    assert_eq!(
        mmu.translate(va(0x5000_1000), Access::READ).unwrap().pa,
        pa(64 << 30)
    );
}
