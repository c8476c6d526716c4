//! A page fault drops the faulting address's TLB entries (SDM Vol. 3A
//! 4.10.4.1), as the README says: a page made writable without `invlpg`
//! faults once through the stale read-only entry, then the retry walks the
//! tables and succeeds. Other addresses keep their (stale) entries.

use paging_core::{MapFlags, PhysAddr, PhysFrame, VirtAddr};
use paging_sim::{Access, Machine, SimRam};
use paging_x86_pae::Pae;

#[test]
fn a_fault_drops_that_address_entry_and_only_that() {
    let ram = SimRam::new();
    let mut m = Machine::<Pae>::new(&ram);
    let (a, b) = (VirtAddr::new(0x4000_0000), VirtAddr::new(0x4000_1000));
    for (at, to) in [(a, 0x50_0000), (b, 0x51_0000)] {
        let frame = PhysFrame::containing_address(PhysAddr::new_truncate(to));
        m.mapper
            .map(at, frame, MapFlags::KERNEL_RO, &mut m.alloc)
            .unwrap()
            .flush(&m.mmu);
        m.mmu.translate(at, Access::READ).unwrap();
    }
    // Both made writable, and both flushes dropped on purpose: the TLB
    // still holds them read-only.
    for at in [a, b] {
        m.mapper
            .update_flags(at, MapFlags::KERNEL_RW)
            .unwrap()
            .ignore();
    }
    let faults = m.mmu.tlb_stats().faults;
    assert_eq!(m.mmu.translate(a, Access::WRITE).unwrap_err().code, 0b011);
    assert_eq!(m.mmu.tlb_stats().faults, faults + 1);
    // The fault dropped a's entry: the retry walks and sees the new rights.
    assert!(m.mmu.translate(a, Access::WRITE).unwrap().writable);
    // b's entry was not touched by a's fault: a read hits the stale entry,
    // which still says read-only.
    let hits = m.mmu.tlb_stats().hits;
    assert!(!m.mmu.translate(b, Access::READ).unwrap().writable);
    assert_eq!(m.mmu.tlb_stats().hits, hits + 1);
}
