//! Table views of simulated RAM: word aliasing, reach limits, and the store
//! observer that lets a test run the MMU on every intermediate state.
mod sim_support;

use std::sync::Mutex;

use paging_core::{AccessError, PhysAddr, RawTable, TableAccess};
use paging_sim::{Access, Mmu, ObservedStore, SimAccess, SimConfig, SimRam, SimTable, StoreOp};
use sim_support::*;

#[test]
fn thirty_two_bit_words_are_halves_of_the_64_bit_entries() {
    let ram = SimRam::new();
    let t = SimTable::new(&ram, frame(0x7000));
    t.store64(3, 0x1111_2222_3333_4444);
    assert_eq!((t.load32(6), t.load32(7)), (0x3333_4444, 0x1111_2222));
    t.store32(7, 0xAAAA_BBBB);
    assert_eq!(t.load64(3), 0xAAAA_BBBB_3333_4444);
    assert_eq!(t.swap32(6, 5), 0x3333_4444);
    assert_eq!(t.load64(3), 0xAAAA_BBBB_0000_0005);
    assert_eq!(t.swap64(3, 9), 0xAAAA_BBBB_0000_0005);
    assert_eq!(ram.read_u64(pa(0x7018)).unwrap(), 9);
    // The last word and indexes past the table (masked in, never a panic).
    t.store32(1023, 0xFEED);
    assert_eq!(ram.read_u32(pa(0x7FFC)).unwrap(), 0xFEED);
    assert_eq!(t.load32(1023 + 1024), 0xFEED);
    assert_eq!(t.load64(511), 0xFEED << 32);
    assert_eq!(t.frame(), frame(0x7000));
}

#[test]
fn a_32_bit_store_never_disturbs_the_other_half_under_contention() {
    let ram = SimRam::new();
    let t = SimTable::new(&ram, frame(0x7000));
    std::thread::scope(|s| {
        for half in 0..2usize {
            let t = &t;
            s.spawn(move || {
                for i in 0..2000u32 {
                    t.store32(half, i | ((half as u32) << 31));
                    let mine = t.load32(half);
                    // Only this thread writes this half.
                    assert_eq!(mine, i | ((half as u32) << 31));
                }
            });
        }
    });
    assert_eq!(t.load64(0), (0x8000_0000 | 1999u64) << 32 | 1999);
}

#[test]
fn a_limited_access_reaches_only_frames_below_its_limit() {
    let ram = SimRam::new();
    let low = SimAccess::below(&ram, 0x3800_0000);
    let last_low = frame(0x3800_0000 - 0x1000);
    low.table(last_low).unwrap().store32(0, 1);
    let high = frame(0x3800_0000);
    assert_eq!(low.table(high).err(), Some(AccessError::Unreachable(high)));
    let all = SimAccess::new(&ram);
    let far = frame(0xF_FFFF_F000);
    all.table(far).unwrap().store64(0, 2);
    assert_eq!(ram.read_u64(far.start_address()).unwrap(), 2);
    assert_eq!(ram.read_u32(last_low.start_address()).unwrap(), 1);
    assert_eq!((low.limit(), all.limit()), (Some(0x3800_0000), None));
}

const PDPT: u64 = 0x1000;
const PD: u64 = 0x2000;
const PT: u64 = 0x3000;
const OLD: u64 = 0x1_0000_5000;
const NEW: u64 = 0x2_0000_6000;

/// Replace the live PTE for 0xC000_0000 with `update`, returning what the
/// MMU would have translated after each store.
fn observe_update(update: impl Fn(&SimTable<'_>)) -> Vec<(ObservedStore, Option<PhysAddr>)> {
    let ram = SimRam::new();
    set64(&ram, PDPT, 3, PD | P);
    set64(&ram, PD, 0, PT | P | RW);
    set64(&ram, PT, 0, OLD | P | RW);
    let mmu = Mmu::new(&ram, SimConfig::pae());
    mmu.load_cr3(PDPT as u32).unwrap();
    let seen = Mutex::new(Vec::new());
    let observer = |store: ObservedStore| {
        let now = mmu
            .walk_uncached(va(0xC000_0000), Access::READ)
            .ok()
            .map(|t| t.pa);
        seen.lock().unwrap().push((store, now));
    };
    let access = SimAccess::observed(&ram, &observer);
    update(&access.table(frame(PT)).unwrap());
    seen.into_inner().unwrap()
}

#[test]
fn the_observer_sees_a_torn_entry_when_halves_are_written_in_the_wrong_order() {
    let seen = observe_update(|t| {
        t.store32(0, (NEW as u32) | (P | RW) as u32);
        t.store32(1, (NEW >> 32) as u32);
    });
    assert_eq!(seen.len(), 2);
    assert_eq!(
        (seen[0].0.op, seen[0].0.index, seen[0].0.addr()),
        (StoreOp::Store32, 0, pa(PT))
    );
    assert_eq!(seen[0].0.old, (OLD as u32 | 3) as u64);
    // After the first store the MMU translates to neither old nor new.
    assert_eq!(seen[0].1, Some(pa(0x1_0000_6000)));
    assert_eq!(
        (seen[1].0.index, seen[1].0.entry64(), seen[1].0.addr()),
        (1, 0, pa(PT + 4))
    );
    assert_eq!(seen[1].1, Some(pa(NEW)));
}

#[test]
fn the_observer_sees_no_torn_state_with_the_ordered_protocol() {
    let seen = observe_update(|t| {
        t.store32(0, 0); // not present first
        t.store32(1, (NEW >> 32) as u32);
        t.store32(0, (NEW as u32) | (P | RW) as u32); // present last
    });
    let states: Vec<_> = seen.iter().map(|s| s.1).collect();
    assert_eq!(states, [None, None, Some(pa(NEW))]);
    let swapped = observe_update(|t| {
        assert_eq!(t.swap64(0, NEW | P | RW), OLD | P | RW);
    });
    assert_eq!(swapped.len(), 1);
    assert_eq!(swapped[0].0.op, StoreOp::Swap64);
    assert_eq!(swapped[0].0.new, NEW | P | RW);
    assert_eq!(swapped[0].1, Some(pa(NEW)));
}
