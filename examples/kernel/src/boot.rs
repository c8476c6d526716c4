//! Multiboot header and the 32-bit entry code.
//!
//! The loader (GRUB, or `qemu-system-i386 -kernel`) jumps to `_start` at its
//! *physical* address with paging off, EAX = the multiboot magic and EBX = the
//! physical address of the multiboot information structure. `_start`:
//!
//! 1. zeroes `.bss` (the boot page tables and stacks live there);
//! 2. fills one page table (`boot_pt`) mapping physical 0..4 MiB with 4 KiB
//!    pages, read/write, except: the kernel's `.text` and `.rodata` are
//!    read-only, and the page below the boot stack (the guard page) is not
//!    present;
//! 3. builds the boot page directory (`boot_pd`): entry 0 (identity, only
//!    for the jump) and entry 768 (`PAGE_OFFSET` = 0xC000_0000) point at
//!    `boot_pt`; entries 769..771 map physical 4..16 MiB with 4 MiB PSE pages;
//! 4. turns on CR4.PSE, loads CR3, sets CR0.PG and CR0.WP (so read-only pages
//!    bind the kernel too) and jumps to the higher half;
//! 5. removes the identity entry, reloads CR3 (flushing the TLB), switches to
//!    the boot stack and calls [`kmain`](crate::kmain)`(magic, info_phys)`.
//!
//! After step 5 the only mapping is the boot window: physical
//! `0..BOOT_WINDOW_SIZE` at `PAGE_OFFSET` (see [`crate::phys_window`]).

/// Virtual address at which physical address 0 is mapped (Linux's `PAGE_OFFSET`).
pub const PAGE_OFFSET: usize = 0xC000_0000;

/// Bytes of physical memory, from 0, that the boot page tables map at [`PAGE_OFFSET`].
pub const BOOT_WINDOW_SIZE: usize = 16 << 20;

/// Bytes of the boot stack (above its unmapped guard page).
pub const BOOT_STACK_SIZE: usize = 64 << 10;

/// Multiboot v1 header magic (in the kernel image).
const MULTIBOOT_HEADER_MAGIC: u32 = 0x1BAD_B002;
/// Header flags: bit 0 = page-align modules, bit 1 = provide the memory map.
const MULTIBOOT_HEADER_FLAGS: u32 = 0b11;

core::arch::global_asm!(
    r#"
    .section .multiboot_header, "a"
    .p2align 2
    .long {mb_magic}
    .long {mb_flags}
    .long {mb_checksum}

    .section .bss.boot_page_tables, "aw", @nobits
    .p2align 12
    .global boot_pd
boot_pd:
    .skip 4096
    .global boot_pt
boot_pt:
    .skip 4096

    .section .bss.boot_stack, "aw", @nobits
    .p2align 12
    .global boot_stack_guard
boot_stack_guard:
    .skip 4096
boot_stack_bottom:
    .skip {stack_size}
    .global boot_stack_top
boot_stack_top:

    .section .text.boot, "ax"
    .global _start
_start:
    cli
    cld
    mov ebp, eax                    // multiboot magic
    mov esi, ebx                    // multiboot info (physical)

    // 1. Zero .bss (physical addresses: paging is off).
    mov edi, offset __bss_start - {page_offset}
    mov ecx, offset __bss_end - {page_offset}
    sub ecx, edi
    xor eax, eax
    rep stosb

    // 2. boot_pt: physical 0..4 MiB, present + writable.
    mov edi, offset boot_pt - {page_offset}
    mov eax, 0x003
    mov ecx, 1024
2:
    mov dword ptr [edi], eax
    add eax, 0x1000
    add edi, 4
    dec ecx
    jnz 2b

    //    .text and .rodata: clear the writable bit.
    mov eax, offset __text_start - {page_offset}
    shr eax, 12
    mov ecx, offset __rodata_end - {page_offset}
    shr ecx, 12
3:
    and dword ptr [4 * eax + boot_pt - {page_offset}], 0xFFFFFFFD
    inc eax
    cmp eax, ecx
    jb 3b

    //    Guard page below the boot stack: not present.
    mov eax, offset boot_stack_guard - {page_offset}
    shr eax, 12
    mov dword ptr [4 * eax + boot_pt - {page_offset}], 0

    // 3. boot_pd: identity entry 0 and PAGE_OFFSET entry 768 -> boot_pt,
    //    entries 769..771 -> 4 MiB pages at 4, 8 and 12 MiB.
    mov eax, offset boot_pt - {page_offset}
    or eax, 0x003
    mov dword ptr [boot_pd - {page_offset}], eax
    mov dword ptr [boot_pd - {page_offset} + 768 * 4], eax
    mov eax, 0x00400083             // 4 MiB, present + writable + PS
    mov edi, offset boot_pd - {page_offset} + 769 * 4
    mov ecx, 3
4:
    mov dword ptr [edi], eax
    add eax, 0x00400000
    add edi, 4
    dec ecx
    jnz 4b

    // 4. PSE on, load CR3, paging + write-protect on, jump up.
    mov eax, cr4
    or eax, 0x10
    mov cr4, eax
    mov eax, offset boot_pd - {page_offset}
    mov cr3, eax
    mov eax, cr0
    or eax, 0x80010000
    mov cr0, eax
    mov eax, offset boot_higher_half
    jmp eax

    .section .text, "ax"
boot_higher_half:
    // 5. Higher half: drop the identity entry, flush, stack, kmain.
    mov dword ptr [boot_pd], 0
    mov eax, cr3
    mov cr3, eax
    mov esp, offset boot_stack_top
    push esi                        // info_phys
    push ebp                        // magic
    xor ebp, ebp                    // end of the frame-pointer chain
    call kmain
6:
    cli
    hlt
    jmp 6b
    "#,
    mb_magic = const MULTIBOOT_HEADER_MAGIC,
    mb_flags = const MULTIBOOT_HEADER_FLAGS,
    mb_checksum = const 0u32
        .wrapping_sub(MULTIBOOT_HEADER_MAGIC)
        .wrapping_sub(MULTIBOOT_HEADER_FLAGS),
    page_offset = const PAGE_OFFSET,
    stack_size = const BOOT_STACK_SIZE,
);
