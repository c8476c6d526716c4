//! The lazy kernel-entry fill (`sync_kernel_entry`) on several threads over
//! real memory (`OffsetAccess` on a host buffer), the way two CPUs fault on
//! one vmalloc address in a directory with a private kernel PMD (the Xen PV
//! arrangement, where PAE fills happen).
//!
//! Under Miri (`cargo xtask miri`, and the `miri` step of `cargo xtask
//! test`) this is the check of issue 19's last mixed-size race: the fill
//! used to write the empty PAE entry with one 64-bit `cmpxchg8b` while the
//! other thread's check read the same entry with 32-bit loads, which Miri
//! reports as a data race between atomics of different sizes. It now fills
//! with 32-bit atomics only (high half, then a compare-and-swap of the low
//! half from 0). Under plain `cargo test` it checks the outcomes: one
//! thread fills, the other finds the entry synced, and a reader never sees
//! a present entry other than the reference's.
#![cfg(test)]

use std::thread;

use paging_core::{
    CpuFeatures, MapFlags, Mapper, NativeHooks, OffsetAccess, PhysAddr, PhysFrame, RawTable,
    SyncOutcome, TableAccess, VirtAddr, Walker, sync_kernel_entry,
};
use paging_x86_pae::Pae;

/// Frames of the host buffer: reference PDPT, its kernel PMD, one PTE
/// table, the active PDPT and the active directory's private kernel PMD.
const REF_PDPT: u64 = 1;
const REF_PMD: u64 = 2;
const PTES: u64 = 3;
const ACTIVE_PDPT: u64 = 4;
const ACTIVE_PMD: u64 = 5;
const FRAMES: usize = 6;

/// The faulting kernel address: PDPT entry 3, PMD entry 2, PTE entry 1.
const VA: u32 = 0xC040_1000;
const PMD_INDEX: usize = 2;

/// The reference's PMD entry: the PTE table, present and writable, with XD
/// (bit 63) so that its high half is not zero and a torn entry would show.
const REF_PMD_ENTRY: u64 = 1 << 63 | PTES << 12 | 0x3;

const ROUNDS: usize = if cfg!(miri) { 2 } else { 500 };

fn frame(n: u64) -> PhysFrame {
    PhysFrame::from_start_address(PhysAddr::new(n << 12).unwrap()).unwrap()
}

/// Physical memory `[0, FRAMES * 4 KiB)` as one host buffer.
struct HostPhys(Box<[u64]>);

impl HostPhys {
    fn new() -> Self {
        Self(vec![0u64; FRAMES * 512].into_boxed_slice())
    }

    fn access(&mut self) -> OffsetAccess {
        // SAFETY: every frame below the limit is inside the buffer, which
        // outlives every use of the access (each round's threads are joined
        // before its buffer is dropped) and is only reached through it,
        // atomically.
        unsafe { OffsetAccess::new(self.0.as_mut_ptr() as usize, self.0.len() as u64 * 8) }
    }
}

/// Writes the two hierarchies: the reference maps `VA`; the active
/// directory has its own kernel PMD, without the entry for `VA`.
fn build(access: &OffsetAccess) {
    let t = |n| access.table(frame(n)).unwrap();
    t(REF_PDPT).store64(3, REF_PMD << 12 | 0x1);
    t(REF_PMD).store64(PMD_INDEX, REF_PMD_ENTRY);
    t(PTES).store64(1, 0x1_2345_6000 | 0x3);
    t(ACTIVE_PDPT).store64(3, ACTIVE_PMD << 12 | 0x1);
}

#[test]
fn two_cpus_fill_one_pae_entry_while_a_third_reads_it() {
    let va = VirtAddr::new(VA);
    let (reference, active) = (
        frame(REF_PDPT).start_address(),
        frame(ACTIVE_PDPT).start_address(),
    );
    for _ in 0..ROUNDS {
        let mut phys = HostPhys::new();
        let access = phys.access();
        build(&access);
        let outcomes: Vec<SyncOutcome> = thread::scope(|s| {
            let fills: Vec<_> = (0..2)
                .map(|_| {
                    s.spawn(|| {
                        // SAFETY: both roots are PAE directories in the
                        // buffer `access` reaches.
                        unsafe {
                            sync_kernel_entry::<Pae, _, _>(
                                &access,
                                &NativeHooks,
                                reference,
                                active,
                                va,
                            )
                        }
                        .unwrap()
                    })
                })
                .collect();
            // The MMU's view, approximated by software: a present entry is
            // always the reference's whole entry.
            s.spawn(|| {
                for _ in 0..4 {
                    let seen = access.table(frame(ACTIVE_PMD)).unwrap().load64(PMD_INDEX);
                    assert!(
                        seen & 1 == 0 || seen == REF_PMD_ENTRY,
                        "a present entry {seen:#x} that is not the reference's"
                    );
                }
            });
            fills.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let filled = outcomes
            .iter()
            .filter(|&&o| o == SyncOutcome::Filled)
            .count();
        assert_eq!(filled, 1, "exactly one fill writes: {outcomes:?}");
        assert!(
            outcomes.contains(&SyncOutcome::AlreadySynced),
            "{outcomes:?}"
        );
        let left = access.table(frame(ACTIVE_PMD)).unwrap().load64(PMD_INDEX);
        assert_eq!(left, REF_PMD_ENTRY, "the reference's entry, whole");
    }
}

/// The other side of the lazy sync: it walks the *reference* hierarchy
/// with 32-bit loads while the reference's own mapper changes a present
/// kernel PTE (vmalloc's `protect_range`, `set_memory`). Under Miri this
/// is the check of the mixed-size pairing `docs/safety.md` used to list as
/// open: a rights change that moved XD was one 64-bit `cmpxchg8b` beside
/// the walker's 32-bit loads. It is now 32-bit atomics only. The page
/// flips between read-only code and writable data (a JIT's W^X flip), and
/// the walk always finds it at its frame and never writable and
/// executable at once: the one state between the two is read-only with
/// XD (XD set before the low half changes, or cleared after).
#[test]
fn the_reference_mapper_flips_w_xor_x_while_a_lazy_walk_reads_it() {
    let va = VirtAddr::new(VA);
    let reference = frame(REF_PDPT).start_address();
    let code = MapFlags::PRESENT;
    let data = MapFlags::PRESENT | MapFlags::WRITABLE | MapFlags::NO_EXECUTE;
    for _ in 0..ROUNDS {
        let mut phys = HostPhys::new();
        let access = phys.access();
        build(&access);
        // SAFETY: the reference PDPT is a PAE directory in the buffer
        // `access` reaches, and no CPU running this test uses it.
        let mut mapper =
            unsafe { Mapper::<Pae, _>::new(reference, &access, CpuFeatures::full::<Pae>()) }
                .unwrap();
        // `build` left it writable and executable: code first.
        mapper.update_flags(va, code).unwrap().ignore();
        thread::scope(|s| {
            s.spawn(move || {
                for flags in [data, code, data, code, data] {
                    mapper.update_flags(va, flags).unwrap().ignore();
                }
            });
            s.spawn(|| {
                let walker = Walker::<Pae, _>::new(reference, &access);
                for _ in 0..4 {
                    let t = walker.translate(va).unwrap();
                    assert_eq!(t.base.as_u64(), 0x1_2345_6000, "the page's frame");
                    assert!(
                        !t.flags.contains(MapFlags::WRITABLE)
                            || t.flags.contains(MapFlags::NO_EXECUTE),
                        "writable and executable at once: {t:?}"
                    );
                }
            });
        });
        let t = Walker::<Pae, _>::new(reference, &access)
            .translate(va)
            .unwrap();
        assert_eq!(t.flags & (code | data), data, "the last update left data");
    }
}
