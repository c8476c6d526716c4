//! Host tests: the minimal kernel's set-up code run on `paging-core`'s
//! simulated machine, in both modes, and checked through the simulated MMU
//! (what the hardware would do, not what the mapper believes).
//!
//! `cargo test --lib --target x86_64-unknown-linux-gnu` (the crate's
//! `.cargo/config.toml` builds for the bare-metal target by default).

// The one place that names the simulator (the `paging-sim` crate, a
// dev-dependency).
use paging_sim::{Access, Machine, Mmu, SimAccess, SimConfig, SimPaging, SimRam};

use fixmap::Fixmap;
use kmap::{GlobalFlush, KmapTask, SpinWait};
use paging_core::{PageFaultError, PagingMode, PhysAddr, PhysFrame, VirtAddr};
use paging_x86_2level::TwoLevel;
use paging_x86_pae::Pae;

use super::*;

/// An image like the real one: 32 KiB of text and rodata at 1 MiB, then
/// 96 KiB of data and bss.
const IMAGE: KernelImage = KernelImage {
    start: 0x10_0000,
    ro_end: 0x10_8000,
    end: 0x12_0000,
};
/// Lowmem of a 1 GiB machine.
const LOWMEM_END: u64 = MAX_LOWMEM;

/// A machine with the kernel's tables built and loaded in its CPU.
fn booted<M: PagingMode>(ram: &SimRam) -> Machine<'_, M> {
    let mut m = Machine::<M>::new(ram);
    let flush = map_kernel(&mut m.mapper, &mut m.alloc, &IMAGE, LOWMEM_END).unwrap();
    flush.flush(&m.mmu);
    m
}

fn kernel_image_runs_where_it_is<M: PagingMode>() {
    let ram = SimRam::new();
    let m = booted::<M>(&ram);
    for addr in (IMAGE.start..IMAGE.end).step_by(4096) {
        assert_eq!(hw(&m.mmu, addr, Access::READ), Ok(pa(addr)));
    }
    // Text executes and is read-only (CR0.WP: for the kernel too).
    assert_eq!(hw(&m.mmu, IMAGE.start, Access::EXEC), Ok(pa(IMAGE.start)));
    assert_eq!(
        hw(&m.mmu, IMAGE.start, Access::WRITE),
        Err(WRITE_TO_READ_ONLY)
    );
    assert_eq!(
        hw(&m.mmu, IMAGE.ro_end - 1, Access::WRITE),
        Err(WRITE_TO_READ_ONLY)
    );
    // Data and bss are writable.
    assert_eq!(
        hw(&m.mmu, IMAGE.ro_end, Access::WRITE),
        Ok(pa(IMAGE.ro_end))
    );
    assert_eq!(
        hw(&m.mmu, IMAGE.end - 1, Access::WRITE),
        Ok(pa(IMAGE.end - 1))
    );
    // Nothing around the image: the null page, the page after the image.
    assert_eq!(hw(&m.mmu, 0, Access::READ), Err(NOT_PRESENT));
    assert_eq!(hw(&m.mmu, IMAGE.end, Access::READ), Err(NOT_PRESENT));
}

fn va(addr: u64) -> VirtAddr {
    VirtAddr::new(addr as u32)
}

fn pa(addr: u64) -> PhysAddr {
    PhysAddr::new(addr).unwrap()
}

/// What the CPU does with `access` at `addr`: the physical address or the
/// page-fault error code, decoded.
fn hw(mmu: &Mmu<'_>, addr: u64, access: Access) -> Result<PhysAddr, PageFaultError> {
    mmu.translate(va(addr), access)
        .map(|t| t.pa)
        .map_err(|f| PageFaultError::from(f.code))
}

/// A supervisor write to a present read-only page (CR0.WP on).
const WRITE_TO_READ_ONLY: PageFaultError = PageFaultError::PRESENT.union(PageFaultError::WRITE);
/// A supervisor read of a page nothing maps.
const NOT_PRESENT: PageFaultError = PageFaultError::empty();

fn direct_map_covers_lowmem<M: PagingMode>() {
    let ram = SimRam::new();
    let m = booted::<M>(&ram);
    let offset = u64::from(PAGE_OFFSET);
    for phys in [
        0,
        0x9_F000,
        IMAGE.ro_end,
        4 << 20,
        0x1234_5000,
        LOWMEM_END - 4096,
    ] {
        assert_eq!(hw(&m.mmu, offset + phys, Access::WRITE), Ok(pa(phys)));
    }
    // The image's read-only part is read-only in the direct map too.
    assert_eq!(
        hw(&m.mmu, offset + IMAGE.start, Access::READ),
        Ok(pa(IMAGE.start))
    );
    assert_eq!(
        hw(&m.mmu, offset + IMAGE.start, Access::WRITE),
        Err(WRITE_TO_READ_ONLY)
    );
    // It ends at lowmem's end, and uses large pages away from the image.
    assert_eq!(
        hw(&m.mmu, offset + LOWMEM_END, Access::READ),
        Err(NOT_PRESENT)
    );
    let far = m
        .mmu
        .translate(va(offset + (64 << 20)), Access::READ)
        .unwrap();
    assert_eq!(far.size, M::LARGE_PAGE_SIZE);
}

fn nothing_is_user_accessible<M: PagingMode>() {
    let ram = SimRam::new();
    let m = booted::<M>(&ram);
    let image = (IMAGE.start..IMAGE.end).step_by(4096);
    let everywhere = (0..1u64 << 32).step_by(1 << 20);
    for addr in image.chain(everywhere) {
        let code = hw(&m.mmu, addr, Access::USER_READ).unwrap_err();
        assert!(code.contains(PageFaultError::USER), "{addr:#x}: {code}");
    }
}

fn fixmap_and_kmap_work<M: PagingMode>() {
    let ram = SimRam::new();
    let mut m = booted::<M>(&ram);
    let window = build_window(&mut m.mapper, &m.mmu, &mut m.alloc).unwrap();
    assert_eq!(window.start(), va(u64::from(PKMAP_BASE)));

    let mut fixmap = Fixmap::<MinimalFixmap, M, _>::new(SimAccess::new(&ram));
    fixmap.attach(window.clone()).unwrap();
    let scratch = PhysFrame::from_start_address(pa(0x20_0000)).unwrap();
    let slot = fixmap.virt(MinimalFixmap::SCRATCH);
    fixmap
        .set(MinimalFixmap::SCRATCH, scratch, MapFlags::KERNEL_RW, &m.mmu)
        .unwrap();
    assert_eq!(m.hw(slot), Ok(scratch.start_address()));

    // A highmem page (above 896 MiB, below 4 GiB: both modes reach it).
    let page = PhysFrame::from_start_address(pa(0x3900_0000)).unwrap();
    let lowmem = direct_map(LOWMEM_END);
    let base = va(u64::from(PKMAP_BASE));
    let pool = Pool::<M, _, _>::new(
        &window,
        base,
        lowmem,
        SimAccess::new(&ram),
        &m.mmu,
        GlobalFlush,
        SpinWait,
    )
    .unwrap();
    // SAFETY: this test's thread has no other token.
    let mut task = unsafe { KmapTask::new() };
    let map = pool.map(&mut task, page).unwrap();
    assert!(!map.is_direct());
    m.mmu
        .write_bytes(map.va(), &0xC0FFEE_u64.to_le_bytes())
        .unwrap();
    drop(map);
    assert_eq!(ram.read_u64(page.start_address()), Ok(0xC0FFEE));

    let local =
        Local::<M, _, _>::new(&fixmap, MinimalFixmap::KMAP_LOCAL, false, lowmem, &m.mmu).unwrap();
    let mapped = local.map(0, page).unwrap();
    let mut word = [0; 8];
    m.mmu.read_bytes(mapped.va(), &mut word).unwrap();
    assert_eq!(u64::from_le_bytes(word), 0xC0FFEE);
}

macro_rules! both_modes {
    ($($name:ident),*) => {
        mod two_level {
            $(#[test] fn $name() { super::$name::<super::TwoLevel>() })*
        }
        mod pae {
            $(#[test] fn $name() { super::$name::<super::Pae>() })*
        }
    };
}

both_modes!(
    kernel_image_runs_where_it_is,
    direct_map_covers_lowmem,
    nothing_is_user_accessible,
    fixmap_and_kmap_work
);

/// The same tables on `config`'s CPU, with the mapper bound to its
/// features as `kmain` binds it to the real CPU's: the image and the direct
/// map are walked without a reserved-bit fault, and large pages are used
/// only where the CPU has them.
fn runs_on<M: PagingMode>(config: SimConfig) {
    let ram = SimRam::new();
    let mut m = Machine::<M>::with_config(&ram, config);
    let flush = map_kernel(&mut m.mapper, &mut m.alloc, &IMAGE, LOWMEM_END).unwrap();
    flush.flush(&m.mmu);
    assert_eq!(hw(&m.mmu, IMAGE.start, Access::EXEC), Ok(pa(IMAGE.start)));
    assert_eq!(
        hw(&m.mmu, IMAGE.start, Access::WRITE),
        Err(WRITE_TO_READ_ONLY)
    );
    let at = u64::from(PAGE_OFFSET) + (64 << 20);
    assert_eq!(hw(&m.mmu, at, Access::WRITE), Ok(pa(64 << 20)));
    let size = m.mmu.translate(va(at), Access::READ).unwrap().size;
    let large = m.mapper.features().large_pages::<M>();
    assert_eq!(size == M::LARGE_PAGE_SIZE, large);
}

#[test]
fn the_tables_work_on_every_cpu_family() {
    runs_on::<TwoLevel>(SimConfig::pentium());
    runs_on::<TwoLevel>(SimConfig {
        pse: false,
        ..SimConfig::pentium()
    });
    runs_on::<TwoLevel>(SimConfig::p6(SimPaging::TwoLevel));
    runs_on::<Pae>(SimConfig::p6(SimPaging::Pae));
    runs_on::<Pae>(SimConfig::p6_nx(SimPaging::Pae));
}

#[test]
fn bump_frames_hand_out_each_frame_once() {
    // SAFETY: the frames are only numbers here: nothing writes to them.
    let mut frames = unsafe { BumpFrames::new(0x1800..0x4000, 0x3800_0000..0x3800_1000) };
    let first = frames.allocate_contiguous(2, Zone::Lowmem).unwrap();
    assert_eq!(first.start_address(), pa(0x2000));
    assert_eq!(frames.allocate_frame(Zone::Lowmem), None);
    let high = frames.allocate_frame(Zone::PreferHighmem).unwrap();
    assert_eq!(high.start_address(), pa(0x3800_0000));
    assert_eq!(frames.allocate_frame(Zone::Any), None);
}

/// The SMP-shaped `TlbOps` of the guide on two simulated CPUs sharing the
/// tables: after one flush, neither CPU translates an unmapped page, though
/// both had it cached.
#[test]
fn a_shootdown_tlb_flushes_every_cpu() {
    let ram = SimRam::new();
    let mut m = booted::<Pae>(&ram);
    let other = Mmu::new(&ram, m.mmu.config());
    other.load_cr3(m.mmu.cr3()).unwrap();
    let page = u64::from(PAGE_OFFSET) + (64 << 20);
    for cpu in [&m.mmu, &other] {
        assert_eq!(hw(cpu, page, Access::WRITE), Ok(pa(64 << 20)));
    }
    let sent = std::cell::RefCell::new(Vec::new());
    let tlb = ShootdownTlb {
        local: &m.mmu,
        send: |request| {
            sent.borrow_mut().push(request);
            on_shootdown(&other, request);
        },
    };
    // Make the 2 MiB large page there read-only: until the flush, the
    // other CPU's TLB still lets it be written.
    let (_, flush) = m
        .mapper
        .protect_range(va(page), 2 << 20, MapFlags::WRITABLE, MapFlags::empty())
        .unwrap();
    assert_eq!(hw(&other, page, Access::WRITE), Ok(pa(64 << 20)));
    flush.flush(&tlb);
    assert_eq!(sent.borrow().len(), 1, "{:?}", sent.borrow());
    for cpu in [&m.mmu, &other] {
        assert_eq!(hw(cpu, page, Access::WRITE), Err(WRITE_TO_READ_ONLY));
    }
}
