//! Addresses the linker script and the boot code define (see `linker.ld`
//! and [`crate::boot`]), as virtual address ranges.

use core::ops::Range;

use crate::boot::PAGE_OFFSET;

unsafe extern "C" {
    static __kernel_start: u8;
    static __kernel_end: u8;
    static __text_start: u8;
    static __rodata_end: u8;
    static boot_stack_guard: u8;
    static boot_stack_top: u8;
    static boot_pd: u8;
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
    image.start - PAGE_OFFSET..image.end - PAGE_OFFSET
}

/// `.text` and `.rodata`, mapped read-only by the boot page tables.
pub fn read_only() -> Range<usize> {
    symbol_address!(__text_start)..symbol_address!(__rodata_end)
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

/// Physical address of the boot page directory (the CR3 the boot code loads).
pub fn boot_page_directory_phys() -> usize {
    symbol_address!(boot_pd) - PAGE_OFFSET
}
