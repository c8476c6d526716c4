//! The test frame allocators: zones, contiguity, scattering, leak and
//! double-free tracking, failure injection.
use std::collections::BTreeSet;

use paging_core::{FrameAllocator, PhysFrame, Zone};
use paging_sim::{Contiguous, ScatteredAllocator, ZonedAllocator};

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

fn addr(f: Option<PhysFrame>) -> u64 {
    f.map(|f| f.start_address().as_u64()).unwrap_or(u64::MAX)
}

#[test]
fn zones_are_honoured_and_fall_back_as_documented() {
    // 4 lowmem frames, 2 highmem frames above 4 GiB.
    let mut a = ZonedAllocator::new(MIB..MIB + 0x4000, 4 * GIB..4 * GIB + 0x2000);
    assert_eq!(addr(a.allocate_frame(Zone::PreferHighmem)), 4 * GIB);
    assert_eq!(addr(a.allocate_frame(Zone::Lowmem)), MIB);
    assert_eq!(addr(a.allocate_frame(Zone::Any)), MIB + 0x1000);
    assert_eq!(
        addr(a.allocate_frame(Zone::PreferHighmem)),
        4 * GIB + 0x1000
    );
    // Highmem is gone: PreferHighmem falls back to lowmem ...
    assert_eq!(addr(a.allocate_frame(Zone::PreferHighmem)), MIB + 0x2000);
    assert_eq!(addr(a.allocate_frame(Zone::Any)), MIB + 0x3000);
    // ... and once lowmem is gone too, nothing is left for anyone.
    assert_eq!(a.allocate_frame(Zone::Lowmem), None);
    assert_eq!(a.allocate_frame(Zone::Any), None);
    assert_eq!(
        (a.live(), a.allocated_total(), a.failed_allocations()),
        (6, 6, 2)
    );
    let high = PhysFrame::from_number(4 * GIB / 4096).unwrap();
    assert!(a.is_highmem(high) && !a.is_lowmem(high));
    // Freeing highmem makes Lowmem no richer.
    a.deallocate_frame(high);
    assert_eq!(a.allocate_frame(Zone::Lowmem), None);
    assert_eq!(a.allocate_frame(Zone::Any), Some(high));
}

#[test]
fn contiguous_runs_are_real_and_first_fit() {
    let mut a = ZonedAllocator::new(0..16 * 4096, 0..0);
    let singles: Vec<_> = (0..6)
        .map(|_| a.allocate_frame(Zone::Lowmem).unwrap())
        .collect();
    // Free frames 1, 2 and 4: the first hole of two is 1..3.
    for i in [1, 2, 4] {
        a.deallocate_frame(singles[i]);
    }
    let run = a.allocate_contiguous(2, Zone::Lowmem).unwrap();
    assert_eq!(run, singles[1]);
    assert!(a.is_live(singles[2]));
    // No hole of three below 6: the run starts at the untouched frames.
    let run = a.allocate_contiguous(3, Zone::Lowmem).unwrap();
    assert_eq!(run.number(), 6);
    assert!((6..9).all(|n| a.is_live(PhysFrame::from_number(n).unwrap())));
    // The freed frame 4 is reused for a single frame.
    assert_eq!(a.allocate_frame(Zone::Lowmem), Some(singles[4]));
    assert_eq!(a.allocate_contiguous(8, Zone::Lowmem), None);
    assert_eq!(
        a.allocate_contiguous(7, Zone::Lowmem).map(|f| f.number()),
        Some(9)
    );
    assert_eq!(a.allocate_contiguous(0, Zone::Lowmem), None);
    assert_eq!(a.live(), 16);
}

#[test]
fn fail_after_lets_exactly_n_allocations_through() {
    let mut a = ZonedAllocator::new(0..64 * 4096, 0..0);
    a.fail_after(3);
    assert!(a.allocate_frame(Zone::Any).is_some());
    assert!(a.allocate_contiguous(4, Zone::Any).is_some());
    assert!(a.allocate_frame(Zone::Any).is_some());
    assert_eq!(a.allocate_frame(Zone::Any), None);
    assert_eq!(a.allocate_contiguous(1, Zone::Any), None);
    assert_eq!(a.live(), 6);
    a.never_fail();
    assert!(a.allocate_frame(Zone::Any).is_some());
    a.fail_after(0);
    assert_eq!(a.allocate_frame(Zone::Any), None);
    assert_eq!(a.failed_allocations(), 3);
}

#[test]
fn double_frees_and_foreign_frees_are_counted_not_fatal() {
    let mut a = ZonedAllocator::new(0..8 * 4096, 0..0);
    let f = a.allocate_frame(Zone::Any).unwrap();
    let g = a.allocate_frame(Zone::Any).unwrap();
    a.deallocate_frame(f);
    a.deallocate_frame(f);
    a.deallocate_frame(PhysFrame::from_number(1000).unwrap());
    assert_eq!((a.double_frees(), a.freed_total(), a.live()), (2, 1, 1));
    assert_eq!(a.live_frames(), [g]);
    assert!(!a.is_live(f) && a.is_live(g));
    // The double free did not put f on the free list twice.
    assert_eq!(a.allocate_frame(Zone::Any), Some(f));
    assert_ne!(a.allocate_frame(Zone::Any), Some(f));
}

fn take(a: &mut ScatteredAllocator, n: usize, zone: Zone) -> Vec<u64> {
    (0..n)
        .map_while(|_| a.allocate_frame(zone).map(|f| f.number()))
        .collect()
}

#[test]
fn scattered_frames_are_never_adjacent() {
    // 4096 lowmem frames, right next to 4096 highmem frames.
    let mut a = ScatteredAllocator::new(0..16 * MIB, 16 * MIB..32 * MIB, Contiguous::Refuse);
    let mut got = take(&mut a, 1500, Zone::Lowmem);
    got.extend(take(&mut a, 1500, Zone::PreferHighmem));
    assert_eq!(got.len(), 3000);
    let sorted: BTreeSet<u64> = got.iter().copied().collect();
    assert_eq!(sorted.len(), got.len(), "no frame handed out twice");
    let v: Vec<u64> = sorted.into_iter().collect();
    assert!(
        v.windows(2).all(|w| w[1] - w[0] >= 2),
        "two frames are adjacent"
    );
    // Consecutive allocations are not even in address order.
    assert!(got.windows(2).any(|w| w[1] < w[0]));
    assert!(got[..1500].iter().all(|&n| n < 4096) && got[1500..].iter().all(|&n| n >= 4096));
    // Same sequence every run.
    let mut b = ScatteredAllocator::new(0..16 * MIB, 16 * MIB..32 * MIB, Contiguous::Refuse);
    assert_eq!(take(&mut b, 1500, Zone::Lowmem), got[..1500]);
    assert_eq!(b.allocate_contiguous(2, Zone::Any), None);
}

#[test]
fn scattered_exhausts_its_range_then_reuses_freed_frames() {
    let mut a = ScatteredAllocator::new(0x1000..0x1000 + 64 * 4096, 0..0, Contiguous::Refuse);
    let got = take(&mut a, 100, Zone::Any);
    // Frames 1..65: the even ones, 2..=64.
    assert_eq!(got.len(), 32);
    assert_eq!(
        got.iter().copied().collect::<BTreeSet<_>>(),
        (2..=64).step_by(2).collect()
    );
    assert_eq!(a.allocate_frame(Zone::Any), None);
    let back = PhysFrame::from_number(got[7]).unwrap();
    a.deallocate_frame(back);
    a.deallocate_frame(back);
    assert_eq!((a.live(), a.double_frees()), (31, 1));
    assert_eq!(a.allocate_frame(Zone::Lowmem), Some(back));
    assert_eq!(a.allocate_frame(Zone::Lowmem), None);
}

#[test]
fn scattered_can_provide_real_runs_from_a_reserved_region() {
    let runs = 32 * MIB..32 * MIB + 16 * 4096;
    let mut a = ScatteredAllocator::new(0..8 * MIB, 0..0, Contiguous::Provide(runs.clone()));
    let run = a.allocate_contiguous(4, Zone::Any).unwrap();
    assert_eq!(run.start_address().as_u64(), runs.start);
    assert!((0..4).all(|i| a.is_live(run.checked_add(i).unwrap())));
    // The region is above lowmem's end, so it cannot serve Lowmem.
    assert_eq!(a.allocate_contiguous(1, Zone::Lowmem), None);
    assert_eq!(a.allocate_contiguous(13, Zone::PreferHighmem), None);
    a.deallocate_frame(run.checked_add(3).unwrap());
    assert_eq!(
        a.allocate_contiguous(13, Zone::PreferHighmem),
        run.checked_add(3)
    );
    assert_eq!(
        (a.live(), a.allocated_total(), a.freed_total()),
        (16, 17, 1)
    );
    let lowmem_runs = ScatteredAllocator::new(0..64 * MIB, 0..0, Contiguous::Provide(runs))
        .allocate_contiguous(2, Zone::Lowmem);
    assert!(lowmem_runs.is_some());
}
