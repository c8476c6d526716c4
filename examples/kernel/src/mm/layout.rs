//! The kernel's virtual memory layout: every address constant in one place,
//! plus the ranges the linker script and the boot code define.
//!
//! ```text
//! 0x0000_0000  user space (empty in the kernel's own tables)
//! 0xC000_0000  PAGE_OFFSET: lowmem direct map, physical 0..lowmem_limit
//!              (the kernel image sits inside it, at 0xC010_0000)
//!   + 8 MiB gap
//! 0xF880_0000  vmalloc area
//!   + 2 guard pages
//! PKMAP_BASE   persistent kmap slots (LAST_PKMAP pages)
//! FIXADDR_START..FIXADDR_TOP   fixmap (VGA console, local APIC, local kmap slots)
//! ```
//!
//! `lowmem_limit` is 896 MiB as on Linux, or less when there is less RAM;
//! vmalloc starts where it would with 896 MiB, so the layout above it is
//! the same on every machine. `cargo xtask memory-map` draws this from the
//! `layout:` lines the kernel prints at boot.

use core::ops::Range;

use fixmap::fixmap_layout;
use paging_core::PagingMode;

use crate::arch::mode::Mode;
use crate::base::config::CPUS;

/// Virtual address at which physical address 0 is mapped (Linux's `PAGE_OFFSET`).
pub const PAGE_OFFSET: u32 = 0xC000_0000;
/// Physical load address of the kernel image (1 MiB, above the BIOS area).
pub const KERNEL_PHYS: u32 = 0x0010_0000;
/// Bytes of physical memory, from 0, that the boot page tables map at
/// [`PAGE_OFFSET`] (and identity-map until the jump to the higher half).
pub const BOOT_WINDOW_SIZE: u32 = 16 << 20;
/// Bytes of the boot stack (above its unmapped guard page).
pub const BOOT_STACK_SIZE: usize = 128 << 10;
/// The part of the direct map around the kernel image that uses 4 KiB pages
/// (so `.text` can be read-only and the stack guard page absent); the rest
/// of lowmem uses large pages.
pub const KERNEL_SPLIT_END: u64 = 4 << 20;

/// Most physical memory the direct map covers (Linux's 896 MiB).
pub const MAX_LOWMEM: u64 = 896 << 20;
/// Unmapped gap between the end of the direct map and vmalloc (catches
/// overruns of lowmem pointers), as Linux's `VMALLOC_OFFSET`.
pub const VMALLOC_OFFSET: u32 = 8 << 20;
/// First vmalloc address: where it is with a full 896 MiB of lowmem.
pub const VMALLOC_START: u32 = PAGE_OFFSET + MAX_LOWMEM as u32 + VMALLOC_OFFSET;

/// The large-page size of this build's paging mode (4 MiB or 2 MiB), which
/// is also the span of one PTE table.
pub const PMD_SPAN: u32 = 1 << <Mode as PagingMode>::PMD_SHIFT;

/// Physical address of the VGA text buffer (80x25 cells of 2 bytes).
pub const VGA_TEXT_BUFFER: u64 = 0xB8000;

/// Address of fixmap index 0 (a guard hole); slot `i` is `i` pages below.
pub const FIXADDR_TOP: u32 = 0xFFFF_F000;
/// Local (atomic) kmap slots per CPU.
pub const KMAP_LOCAL_DEPTH: usize = 8;
/// Bytes of each application processor's kernel stack (in vmalloc, with an
/// unmapped guard page below it).
pub const AP_STACK_SIZE: usize = 64 << 10;
/// Bytes of each application processor's double-fault stack (in vmalloc,
/// with an unmapped guard page below it).
pub const AP_DOUBLE_FAULT_STACK_SIZE: usize = 16 << 10;
/// Every local slot is followed by an unmapped guard slot (as Linux's
/// `DEBUG_KMAP_LOCAL`), so a stray access past a mapping faults.
pub const KMAP_LOCAL_GUARDS: bool = true;
/// Fixmap slots taken by local kmaps.
pub const KMAP_LOCAL_SLOTS: usize = KMAP_LOCAL_DEPTH * CPUS * 2;

fixmap_layout! {
    /// The kernel's fixmap: slots at fixed addresses below [`FIXADDR_TOP`].
    pub struct KernelFixmap {
        top: FIXADDR_TOP;
        /// The VGA text buffer (physical 0xB8000), mapped uncached at boot
        /// for the early console.
        VGA_CONSOLE;
        /// The local APIC's registers (physical 0xFEE0_0000 on every PC),
        /// mapped uncached by the NMI self-test to send an NMI to itself.
        LOCAL_APIC;
        /// A scratch slot through which boot code reads firmware tables
        /// (ACPI, MP) wherever they are in physical memory.
        FIRMWARE;
        /// Local kmap slots: [`KMAP_LOCAL_DEPTH`] per CPU, each followed by
        /// a guard slot; in one page table so their PTEs are one array.
        KMAP_LOCAL[KMAP_LOCAL_SLOTS] in_one_table;
    }
}

/// Lowest fixmap address.
pub const FIXADDR_START: u32 =
    FIXADDR_TOP - (<KernelFixmap as fixmap::FixmapLayout>::END as u32 - 1) * 4096;
/// One past the fixmap (the end of its guard-hole page): 4 GiB.
pub const FIXADDR_END: u64 = FIXADDR_TOP as u64 + 4096;

/// Persistent kmap slots (Linux's `LAST_PKMAP`): the kernel's pool, then
/// one area per flush policy for the flush-policy self-test.
pub const LAST_PKMAP: usize = KMAP_POOL_SLOTS + 4 * KMAP_BENCH_SLOTS;
/// Slots of the kernel's persistent pool.
pub const KMAP_POOL_SLOTS: usize = 512;
/// Slots of each flush-policy test pool.
pub const KMAP_BENCH_SLOTS: usize = 128;
/// First persistent kmap slot: below the fixmap, aligned down to a PTE
/// table, as Linux computes it.
pub const PKMAP_BASE: u32 = (FIXADDR_START - (LAST_PKMAP as u32 + 1) * 4096) & !(PMD_SPAN - 1);
/// First slot of flush-policy test area `k` (0..4).
pub const fn kmap_bench_base(k: usize) -> u32 {
    PKMAP_BASE + ((KMAP_POOL_SLOTS + k * KMAP_BENCH_SLOTS) * 4096) as u32
}
/// End of vmalloc: two guard pages below the pkmap area.
pub const VMALLOC_END: u32 = PKMAP_BASE - 2 * 4096;
/// The window of contiguous PTE tables: every pkmap slot and the fixmap.
pub const KMAP_WINDOW: (u32, u64) = (PKMAP_BASE, FIXADDR_END);

/// An address nothing maps: the first vmalloc page. [`crate::mm::vmalloc`]
/// hands out regions from the next PMD span up, so this span stays empty.
pub const UNMAPPED_PROBE: u32 = VMALLOC_START;

/// Physical memory the frame allocator tracks: all of it in 2-level mode;
/// 16 GiB in PAE mode (more is reported and ignored).
#[cfg(feature = "mode-2level")]
pub const MAX_PHYS_TRACKED: u64 = 4 << 30;
/// Physical memory the frame allocator tracks: all of it in 2-level mode;
/// 16 GiB in PAE mode (more is reported and ignored).
#[cfg(not(feature = "mode-2level"))]
pub const MAX_PHYS_TRACKED: u64 = 16 << 30;

/// Start of the user region the pte-highmem self-test maps in every
/// address space.
pub const SHARED_REGION_START: u32 = 0x4000_0000;
/// Its length: 1 GiB.
pub const SHARED_REGION_LEN: u64 = 1 << 30;

static_assertions::const_assert!(VMALLOC_START < VMALLOC_END);
static_assertions::const_assert!(VMALLOC_END < PKMAP_BASE);
static_assertions::const_assert!(
    PKMAP_BASE as u64 + LAST_PKMAP as u64 * 4096 <= FIXADDR_START as u64
);
static_assertions::const_assert!(LAST_PKMAP.is_power_of_two());
static_assertions::const_assert!(
    SHARED_REGION_START as u64 + SHARED_REGION_LEN <= PAGE_OFFSET as u64
);
static_assertions::const_assert!(KERNEL_SPLIT_END <= BOOT_WINDOW_SIZE as u64);

/// The layout of a running kernel: the constants plus what depends on RAM.
#[derive(Clone, Copy, Debug)]
pub struct Layout {
    /// First physical address of highmem: the end of lowmem RAM, at most
    /// [`MAX_LOWMEM`].
    pub lowmem_limit: u64,
    /// End of the direct map (physical): the lowmem limit rounded up to a
    /// large page, so the whole map uses large pages.
    pub direct_map_end: u64,
}

impl Layout {
    /// Every region, lowest first, as `(name, start, end)` with `end`
    /// exclusive (up to 2^32).
    pub fn regions(&self) -> [(&'static str, u64, u64); 9] {
        let image = kernel_image();
        let (text, rodata) = (text(), rodata());
        let page_offset = u64::from(PAGE_OFFSET);
        [
            ("user", 0, page_offset),
            ("lowmem", page_offset, page_offset + self.direct_map_end),
            ("kernel-text", text.start as u64, text.end as u64),
            ("kernel-rodata", rodata.start as u64, rodata.end as u64),
            ("kernel-data", rodata.end as u64, image.end as u64),
            ("vmalloc", u64::from(VMALLOC_START), u64::from(VMALLOC_END)),
            (
                "pkmap",
                u64::from(PKMAP_BASE),
                u64::from(PKMAP_BASE) + LAST_PKMAP as u64 * 4096,
            ),
            ("fixmap", u64::from(FIXADDR_START), FIXADDR_END),
            ("kmap-window", u64::from(KMAP_WINDOW.0), KMAP_WINDOW.1),
        ]
    }

    /// Prints the machine-readable `layout: name start end` lines that
    /// `cargo xtask memory-map` turns into the README's picture.
    pub fn print(&self) {
        crate::println!("layout: mode {}", crate::arch::mode::SHORT_NAME);
        for (name, start, end) in self.regions() {
            crate::println!("layout: {name} {start:#010x} {end:#010x}");
        }
    }
}

unsafe extern "C" {
    static __kernel_start: u8;
    static __kernel_end: u8;
    static __text_start: u8;
    static __text_end: u8;
    static __rodata_end: u8;
    static boot_stack_guard: u8;
    static boot_stack_top: u8;
    static boot_root: u8;
}

/// Virtual address of a linker or assembly symbol.
macro_rules! symbol_address {
    ($symbol:ident) => {
        &raw const $symbol as usize
    };
}

/// The whole kernel image, `.text` through `.bss`, virtual.
pub fn kernel_image() -> Range<usize> {
    symbol_address!(__kernel_start)..symbol_address!(__kernel_end)
}

/// The kernel image as physical addresses.
pub fn kernel_image_phys() -> Range<usize> {
    let image = kernel_image();
    virt_to_phys(image.start)..virt_to_phys(image.end)
}

/// `.text` and `.rodata`, mapped read-only.
pub fn read_only() -> Range<usize> {
    symbol_address!(__text_start)..symbol_address!(__rodata_end)
}

/// `.text` (with the multiboot header and entry code at its start): the
/// only executable part of the image.
pub fn text() -> Range<usize> {
    symbol_address!(__text_start)..symbol_address!(__text_end)
}

/// `.rodata`: read-only and, in PAE, no-execute.
pub fn rodata() -> Range<usize> {
    symbol_address!(__text_end)..symbol_address!(__rodata_end)
}

/// The unmapped guard page below the boot stack.
pub fn stack_guard_page() -> Range<usize> {
    let start = symbol_address!(boot_stack_guard);
    start..start + 4096
}

/// The boot stack (above its guard page).
pub fn boot_stack() -> Range<usize> {
    stack_guard_page().end..symbol_address!(boot_stack_top)
}

/// The double-fault task's stack and its guard page: defined with the task
/// (in `arch/`), listed here with the other stacks.
pub use crate::arch::double_fault::{double_fault_guard_page, double_fault_stack};

/// Every unmapped stack guard page, lowest first: the boot stack's and the
/// double-fault task's (NMIs run on the interrupted stack: see
/// [`crate::arch::nmi`]).
pub fn stack_guard_pages() -> [Range<usize>; 2] {
    let (a, b) = (stack_guard_page(), double_fault_guard_page());
    if a.start <= b.start { [a, b] } else { [b, a] }
}

/// Physical address of the boot page tables' root (page directory or PDPT).
pub fn boot_root_phys() -> usize {
    virt_to_phys(symbol_address!(boot_root))
}

/// Physical address of a kernel-image (or direct-map) virtual address.
pub const fn virt_to_phys(va: usize) -> usize {
    va - PAGE_OFFSET as usize
}
