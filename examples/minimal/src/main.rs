//! The minimal kernel: the adoption guide (`docs/adopting.md`) as a
//! program. `kmain` is the boot recipe, one step per block: page tables
//! built with paging off, paging on, table access switched to the direct
//! map, the fixmap window, kmap; then a few checks, a summary line, and an
//! exit through QEMU's `isa-debug-exit` (33 = every check passed).

#![no_std]
#![no_main]

#[cfg(all(feature = "mode-2level", feature = "mode-pae"))]
compile_error!("enable exactly one of the features `mode-2level` and `mode-pae`");
#[cfg(not(any(feature = "mode-2level", feature = "mode-pae")))]
compile_error!("enable one of the features `mode-2level` or `mode-pae`");

mod platform;

use core::fmt::Display;

use fixmap::Fixmap;
use kmap::{GlobalFlush, KmapTask, SpinWait};
use minimal_kernel::{
    BumpFrames, KernelImage, Local, MAX_LOWMEM, MinimalFixmap, PAGE_OFFSET, PKMAP_BASE, Pool,
    build_window, direct_map, map_kernel,
};
use paging_core::cpu::{CpuPaging, NativeTlb, PagingFeatures};
use paging_core::{
    AnyError, CpuFeatures, FrameAllocator, MapFlags, Mapper, OffsetAccess, PagingMode, PhysAddr,
    VirtAddr, Zone,
};

#[cfg(feature = "mode-2level")]
type Mode = paging_x86_2level::TwoLevel;
#[cfg(all(feature = "mode-pae", not(feature = "mode-2level")))]
type Mode = paging_x86_pae::Pae;

/// What paging goes on with: large pages for the direct map where the CPU
/// has them (PSE in 2-level mode; PAE always), nothing else. Without them
/// the mapper, bound to the same features, maps with 4 KiB pages.
fn paging_features() -> Result<PagingFeatures, AnyError> {
    let supported = Mode::supported()?;
    Ok(PagingFeatures {
        large_pages: supported.large_pages,
        ..PagingFeatures::default()
    })
}

/// Turn paging on with the hierarchy at `root` and `features` (from
/// [`paging_features`]): one call for both modes (`CpuPaging`, which both
/// backends implement).
fn paging_on(root: PhysAddr, features: PagingFeatures) -> Result<(), AnyError> {
    // SAFETY: paging is off. The tables at `root` (the mapper wrote them: no
    // reserved bit in a PAE PDPTE) map this code, its stack and its statics
    // where they are (the identity-mapped image), and the direct map the
    // kernel switches to next. The mapper was bound to these features, so
    // no entry is a large page without `large_pages` (PSE in 2-level mode)
    // and none sets XD.
    unsafe { Mode::enable(root, features) }
}

unsafe extern "C" {
    static __kernel_start: u8;
    static __rodata_end: u8;
    static __kernel_end: u8;
}

/// The loaded image, from the linker script's symbols.
fn kernel_image() -> KernelImage {
    let addr = |symbol: *const u8| symbol as u64;
    KernelImage {
        start: addr(&raw const __kernel_start),
        ro_end: addr(&raw const __rodata_end),
        end: addr(&raw const __kernel_end),
    }
}

/// Stop with a message if a boot step failed.
trait OrFail<T> {
    fn or_fail(self, what: &str) -> T;
}

impl<T, E: Display> OrFail<T> for Result<T, E> {
    fn or_fail(self, what: &str) -> T {
        self.unwrap_or_else(|e| {
            println!("BOOT FAILED: {what}: {e}");
            platform::exit_qemu(false)
        })
    }
}

/// Rust entry point, called by `_start` (paging off) with EAX and EBX.
#[unsafe(no_mangle)]
extern "C" fn kmain(magic: u32, info: u32) -> ! {
    platform::serial_init();
    println!("minimal-kernel: booted, paging mode {}", Mode::NAME);
    let ram_end = platform::ram_end(magic, info)
        .ok_or("no multiboot memory info")
        .or_fail("boot");
    let lowmem_end = ram_end.min(MAX_LOWMEM);
    let image = kernel_image();
    // SAFETY: RAM from the end of the image to `lowmem_end`, and highmem
    // from 896 MiB to `ram_end`, is used by nothing but this allocator.
    let mut frames = unsafe { BumpFrames::new(image.end..lowmem_end, MAX_LOWMEM..ram_end) };
    println!(
        "memory: {} MiB, lowmem below {lowmem_end:#x}",
        ram_end >> 20
    );

    // 0. What the CPU accepts in an entry once paging is on: every mapper
    // is bound to it, so no table holds a bit this CPU treats as reserved.
    let paging = paging_features().or_fail("cpu");
    let cpu = CpuFeatures::from_cpuid::<Mode>(paging);

    // 1. Page tables, built with paging off: physical memory at itself.
    let root = {
        // SAFETY: paging is off, so every address below `lowmem_end` is
        // RAM reachable at itself; the mapper only reaches table frames
        // from `frames`, which nothing else uses.
        let identity = unsafe { OffsetAccess::new(0, lowmem_end) };
        // SAFETY: the binding contract. The hierarchy is new; `map_kernel`
        // maps the image where it runs and lowmem at PAGE_OFFSET, with
        // .text and .rodata read-only in both: no Rust object loses its
        // mapping or gains write access. `identity` reaches every frame
        // `frames` hands out.
        let mut boot =
            unsafe { Mapper::<Mode, _>::create(identity, cpu, &mut frames) }.or_fail("root");
        let flush = map_kernel(&mut boot, &mut frames, &image, lowmem_end).or_fail("tables");
        flush.ignore(); // paging is off: no TLB holds anything yet
        boot.root()
    }; // `identity` ends here: it is wrong once paging is on
    println!("tables built: root {root}, image identity-mapped, lowmem at {PAGE_OFFSET:#x}");

    // 2. Paging on.
    paging_on(root, paging).or_fail("paging on");
    println!("paging on");

    // 3. Table access through the direct map from now on.
    // SAFETY: the tables now in CR3 map physical 0..lowmem_end writable
    // at PAGE_OFFSET for good, and table frames are only reached through
    // this access.
    let direct = unsafe { OffsetAccess::new(PAGE_OFFSET as usize, lowmem_end) };
    // SAFETY: `root` is the hierarchy this CPU runs on, reached through
    // `direct`. The binding contract: this mapper only installs the
    // window's tables above PKMAP_BASE, and the fixmap and kmap built on
    // it only map frames no Rust object owns at addresses no Rust object
    // uses (the window's slots).
    let mut kernel = unsafe { Mapper::<Mode, _>::new(root, direct, cpu) }.or_fail("rebind");
    println!("table access: direct map at {PAGE_OFFSET:#x}");

    // 4. The fixmap: contiguous tables for PKMAP_BASE..4 GiB, one slot set.
    let window = build_window(&mut kernel, &NativeTlb, &mut frames).or_fail("window");
    let mut fixmap = Fixmap::<MinimalFixmap, Mode, _>::new(direct);
    fixmap.attach(window.clone()).or_fail("attach");
    let scratch = frames
        .allocate_frame(Zone::Lowmem)
        .ok_or("no frame")
        .or_fail("scratch");
    fixmap
        .set(
            MinimalFixmap::SCRATCH,
            scratch,
            MapFlags::KERNEL_RW,
            &NativeTlb,
        )
        .or_fail("set");
    let (start, tables, first) = (window.start(), window.tables(), window.first_frame());
    println!("fixmap: window {start}.., {tables} tables from {first:?}; SCRATCH -> {scratch:?}");
    // What the CPU now maps above PKMAP_BASE, as the mapper's dump prints it.
    println!(
        "{}",
        kernel.dump(VirtAddr::new(PKMAP_BASE), (1 << 32) - u64::from(PKMAP_BASE))
    );

    // 5. kmap: a persistent pool in the window, local slots in the fixmap.
    let lowmem = direct_map(lowmem_end);
    let base = VirtAddr::new(PKMAP_BASE);
    let pool = Pool::<Mode, _, _>::new(
        &window,
        base,
        lowmem,
        direct,
        NativeTlb,
        GlobalFlush,
        SpinWait,
    )
    .or_fail("pool");
    let local =
        Local::<Mode, _, _>::new(&fixmap, MinimalFixmap::KMAP_LOCAL, false, lowmem, NativeTlb)
            .or_fail("local slots");
    // SAFETY: this kernel has one thread of execution, and this is its token.
    let mut task = unsafe { KmapTask::new() };
    println!(
        "kmap: {} pool slots at {base}, local slots in the fixmap",
        pool.slots()
    );

    // 6. The checks.
    let mut t = Tests::default();
    let page = frames.allocate_frame(Zone::PreferHighmem);
    t.check(
        "highmem_page_allocated",
        page.is_some_and(|p| !lowmem.is_lowmem(p)),
    );
    let page = page.unwrap_or(scratch);
    let mut round_trip = || -> Result<bool, kmap::KmapError> {
        let map = pool.map(&mut task, page)?;
        println!("kmap: {page:?} at {}", map.va());
        // SAFETY: `map` maps `page` writable until it is dropped, and
        // nothing else uses that frame.
        unsafe { fill(map.va()) };
        drop(map);
        let map = pool.map(&mut task, page)?;
        // SAFETY: as above; reading only.
        Ok(!map.is_direct() && unsafe { holds_pattern(map.va()) })
    };
    t.check("kmap_write_unmap_map_read", round_trip().unwrap_or(false));
    let through_local = local.map(0, page).map(|m| {
        // SAFETY: the local slot maps `page` until `m` is dropped.
        !m.is_direct() && unsafe { holds_pattern(m.va()) }
    });
    t.check("kmap_local_slot_reads_it", through_local.unwrap_or(false));
    let slot = fixmap.virt(MinimalFixmap::SCRATCH);
    let scratch_direct = VirtAddr::new(PAGE_OFFSET + scratch.start_address().as_u64() as u32);
    // SAFETY: the slot and the direct map both map `scratch`, a frame only
    // this check uses: written through one, read through the other.
    t.check("fixmap_slot_maps_its_frame", unsafe {
        fill(slot);
        holds_pattern(scratch_direct)
    });
    let at = |va: u64| {
        let tr = kernel.translate(VirtAddr::new(va as u32)).ok()?;
        Some((tr.phys_addr().as_u64(), tr.flags))
    };
    let (text, offset, rw) = (image.start, u64::from(PAGE_OFFSET), MapFlags::WRITABLE);
    let ro = |va| at(va).is_some_and(|(pa, f)| pa == text && !f.contains(rw));
    t.check("text_read_only", ro(text) && ro(text + offset));
    let direct = |pa| at(pa + offset).is_some_and(|(to, f)| to == pa && f.contains(rw));
    let ends = direct(0) && direct(lowmem_end - 4096) && at(offset + lowmem_end).is_none();
    t.check("direct_map_translates", ends && at(0).is_none());
    let user = |va| at(va).is_some_and(|(_, f)| f.contains(MapFlags::USER));
    let mut sample = (image.start..image.end)
        .step_by(4096)
        .chain((offset..1 << 32).step_by(1 << 20));
    t.check("nothing_user_accessible", !sample.any(user));
    println!("{} passed, {} failed", t.passed, t.failed);
    platform::exit_qemu(t.failed == 0)
}

/// Pass/fail counts of the checks.
#[derive(Default)]
struct Tests {
    passed: u32,
    failed: u32,
}

impl Tests {
    fn check(&mut self, name: &str, ok: bool) {
        println!("test {name} ... {}", if ok { "ok" } else { "FAILED" });
        self.passed += u32::from(ok);
        self.failed += u32::from(!ok);
    }
}

/// Word `i` of a checked page.
fn pattern(i: usize) -> u32 {
    0xA5A5_0000 ^ i as u32
}

/// Write the pattern into the 4 KiB at `va`.
///
/// # Safety
/// `va` is a writable mapping of a frame no Rust object uses.
unsafe fn fill(va: VirtAddr) {
    let words = va.as_u32() as usize as *mut u32;
    for i in 0..1024 {
        // SAFETY: inside the page (caller's contract).
        unsafe { words.add(i).write_volatile(pattern(i)) };
    }
}

/// Whether the 4 KiB at `va` hold the pattern.
///
/// # Safety
/// `va` is a mapping of a frame no Rust object uses.
unsafe fn holds_pattern(va: VirtAddr) -> bool {
    let words = va.as_u32() as usize as *const u32;
    // SAFETY: inside the page (caller's contract).
    (0..1024).all(|i| unsafe { words.add(i).read_volatile() } == pattern(i))
}
