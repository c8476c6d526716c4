//! The table-lifecycle hooks under a model of a paravirtualising hypervisor
//! (the Xen PV rule: a page-table frame is never writable through any
//! mapping, and is writable again once it stops being a table), and the
//! early page-table buffer's tail: the 2011 boot crash reproduced with a
//! naive buffer and shown fixed with `PgtBuf`.
mod mapper_support;

use mapper_support::{frame, va};
use paging_core::{
    Entry, FrameAllocator, LargePages, MapFlags, Mapper, Page, PagingMode, PgtBuf, PhysAddr,
    PhysFrame, Zone,
};
use paging_sim::{GuestHooks, HypercallAccess, Hypervisor, Machine, SimRam, Violation};

const PAGE_OFFSET: u32 = 0xC000_0000;
/// Lowmem the guest maps at PAGE_OFFSET, with 4 KiB pages.
const LOWMEM: u64 = 0x400_0000;

fn page(x: u32) -> Page {
    Page::from_start_address(va(x)).unwrap()
}

/// A booted guest: the kernel direct map built by the "domain builder",
/// which then pins every table and makes it read-only.
fn boot<'r, M: PagingMode>(ram: &'r SimRam) -> (Machine<'r, M>, Hypervisor<'r>) {
    let mut m = Machine::<M>::new(ram);
    m.mapper
        .map_range(
            va(PAGE_OFFSET),
            PhysAddr::ZERO,
            LOWMEM,
            MapFlags::KERNEL_RW,
            LargePages::Avoid,
            &mut m.alloc,
        )
        .unwrap()
        .flush(&m.mmu);
    let hv = Hypervisor::new(ram, PAGE_OFFSET);
    hv.adopt::<M>(m.mapper.root());
    paging_core::TlbOps::flush_everything(&m.mmu);
    assert!(hv.audit::<M>(m.mapper.root()).is_empty());
    (m, hv)
}

fn with_the_hooks_tables_are_never_writable<M: PagingMode>() {
    let ram = SimRam::new();
    let (mut m, hv) = boot::<M>(&ram);
    let root = m.mapper.root();
    let hooks = GuestHooks::<M>::new(&hv, root, &m.mmu);
    let mut guest = Mapper::<M, _>::new_isolated(
        root,
        HypercallAccess::<M>::new(&hv),
        paging_core::CpuFeatures::full::<M>(),
    )
    .unwrap()
    .with_hooks(hooks);
    // New kernel tables (a vmalloc area), made by the guest.
    for i in 0..3u32 {
        guest
            .map(
                page(0xE000_0000 + i * 0x40_0000),
                frame(0x8000_0000),
                MapFlags::KERNEL_RW,
                &mut m.alloc,
            )
            .unwrap()
            .flush(&m.mmu);
    }
    assert!(hv.audit::<M>(root).is_empty(), "{:?}", hv.violations());
    assert!(hv.violations().is_empty());
    assert!(
        hv.hypercalls() > 0,
        "entry writes into pinned tables went by hypercall"
    );
    let table =
        PhysFrame::containing_address(guest.walk(va(0xE000_0000)).unwrap().pmd.unwrap().1.addr());
    assert!(hv.is_pinned(table));
    assert!(!hv.direct_writable::<M>(root, table));
    // A stray kernel write to the table through the direct map is caught.
    assert_eq!(
        hv.guest_write(&m.mmu, hv.direct_va(table), 0xdead),
        Err(Violation::WriteFault { frame: table })
    );
    // Unmap and free: the table is unpinned and writable again.
    for i in 0..3u32 {
        guest
            .unmap(va(0xE000_0000 + i * 0x40_0000))
            .unwrap()
            .1
            .flush(&m.mmu);
    }
    let freed = guest
        .free_empty_tables(va(0xE000_0000), 0x100_0000, &m.mmu, &mut m.alloc)
        .unwrap();
    assert_eq!(freed.pte_tables, 3);
    assert!(!hv.is_pinned(table));
    assert_eq!(hv.guest_write(&m.mmu, hv.direct_va(table), 0xbeef), Ok(()));
    assert!(hv.audit::<M>(root).is_empty());
}

fn without_the_hooks_the_model_reports_the_breach<M: PagingMode>() {
    let ram = SimRam::new();
    let (mut m, hv) = boot::<M>(&ram);
    let root = m.mapper.root();
    // The native hooks neither pin nor write-protect.
    let mut guest = Mapper::<M, _>::new_isolated(
        root,
        HypercallAccess::<M>::new(&hv),
        paging_core::CpuFeatures::full::<M>(),
    )
    .unwrap();
    guest
        .map(
            page(0xE000_0000),
            frame(0x8000_0000),
            MapFlags::KERNEL_RW,
            &mut m.alloc,
        )
        .unwrap()
        .flush(&m.mmu);
    let table =
        PhysFrame::containing_address(guest.walk(va(0xE000_0000)).unwrap().pmd.unwrap().1.addr());
    let found = hv.audit::<M>(root);
    assert!(
        found.contains(&Violation::UnpinnedTable { frame: table }),
        "{found:?}"
    );
    assert!(
        found.contains(&Violation::WritableTable { frame: table }),
        "{found:?}"
    );
    // A direct write to a table frame the hypervisor knows is reported.
    hv.pin::<M>(root, table);
    assert_eq!(
        hv.guest_write(&m.mmu, hv.direct_va(table), 1),
        Err(Violation::DirectTableWrite { frame: table })
    );
}

/// The boot-time table buffer: frames the hypervisor made read-only up front
/// because they were set aside for page tables.
fn pgt_buffer<M: PagingMode>(hv: &Hypervisor<'_>, m: &mut Machine<'_, M>) -> (PhysFrame, u64) {
    let first = m.alloc_contiguous(16);
    for n in 0..16 {
        hv.set_direct_writable::<M>(m.mapper.root(), first.checked_add(n).unwrap(), false);
    }
    paging_core::TlbOps::flush_everything(&m.mmu);
    (first, 16)
}

/// Build some kernel tables from the buffer: 3 frames used, 13 left.
fn build_from<M: PagingMode>(
    hv: &Hypervisor<'_>,
    m: &Machine<'_, M>,
    buf: &mut impl FrameAllocator,
) {
    let root = m.mapper.root();
    let hooks = GuestHooks::<M>::new(hv, root, &m.mmu);
    let mut guest = Mapper::<M, _>::new_isolated(
        root,
        HypercallAccess::<M>::new(hv),
        paging_core::CpuFeatures::full::<M>(),
    )
    .unwrap()
    .with_hooks(hooks);
    for i in 0..3u32 {
        guest
            .map(
                page(0xE000_0000 + i * 0x40_0000),
                frame(0x8000_0000),
                MapFlags::KERNEL_RW,
                buf,
            )
            .unwrap()
            .flush(&m.mmu);
    }
}

/// The naive buffer of 2011: a bump allocator that, when done, just reports
/// `end` and lets the tail go to the next user.
struct NaiveBuf {
    next: u64,
    top: u64,
}

// SAFETY: frames of simulated RAM, each handed out once.
unsafe impl FrameAllocator for NaiveBuf {
    fn allocate_frame(&mut self, _zone: Zone) -> Option<PhysFrame> {
        (self.next < self.top).then(|| {
            self.next += 1;
            PhysFrame::from_number(self.next - 1).unwrap()
        })
    }
    unsafe fn deallocate_frame(&mut self, _frame: PhysFrame) {}
}

fn the_2011_crash_and_its_fix<M: PagingMode>() {
    // Reproduced: the tail stays read-only; the next subsystem to write it
    // (NUMA set-up, in 2011) faults.
    let ram = SimRam::new();
    let (mut m, hv) = boot::<M>(&ram);
    let (first, count) = pgt_buffer(&hv, &mut m);
    let mut naive = NaiveBuf {
        next: first.number(),
        top: first.number() + count,
    };
    build_from(&hv, &m, &mut naive);
    let tail = PhysFrame::from_number(naive.next).unwrap();
    assert_eq!(
        naive.next - first.number(),
        3,
        "one PTE table per 4 MiB mapped"
    );
    assert_eq!(
        hv.guest_write(&m.mmu, hv.direct_va(tail), 0x4e554d41),
        Err(Violation::WriteFault { frame: tail }),
        "the crash: the returned tail is still read-only"
    );

    // Fixed: PgtBuf hands the tail back through the hooks first.
    let ram = SimRam::new();
    let (mut m, hv) = boot::<M>(&ram);
    let (first, count) = pgt_buffer(&hv, &mut m);
    // SAFETY: frames of simulated RAM that nothing else uses.
    let mut buf = unsafe { PgtBuf::new(first, count) };
    build_from(&hv, &m, &mut buf);
    let hooks = GuestHooks::<M>::new(&hv, m.mapper.root(), &m.mmu);
    let report = buf.finish(&hooks);
    assert!(
        report.reserved().all(|f| hv.is_pinned(f)),
        "every used frame is a table"
    );
    let returned: Vec<PhysFrame> = report.returned().collect();
    assert_eq!(
        returned.len() as u64 + report.reserved().count() as u64,
        count
    );
    for f in returned {
        assert_eq!(hv.guest_write(&m.mmu, hv.direct_va(f), 0x4e554d41), Ok(()));
    }
    assert!(hv.violations().is_empty(), "{:?}", hv.violations());
    assert!(hv.audit::<M>(m.mapper.root()).is_empty());
}

paging_sim::for_each_mode!(
    with_the_hooks_tables_are_never_writable,
    without_the_hooks_the_model_reports_the_breach,
    the_2011_crash_and_its_fix,
);
