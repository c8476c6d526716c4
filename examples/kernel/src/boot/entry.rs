//! Multiboot header, the 32-bit entry code and the tiny static boot tables.
//!
//! The loader (GRUB, or `qemu-system-i386 -kernel`) jumps to `_start` at its
//! *physical* address with paging off (`_start` is in `.boot`, the one
//! section linked at its physical address: see `linker.ld`), EAX = the multiboot magic and EBX = the
//! physical address of the multiboot information structure. `_start`:
//!
//! 1. zeroes `.bss` (the boot page tables and stacks live there);
//! 2. fills the boot page tables, in this build's paging format
//!    ([`crate::arch::mode`]): physical 0..4 MiB with 4 KiB pages (the kernel's
//!    `.text` and `.rodata` read-only, the page below the boot stack not
//!    present), 4..16 MiB with large pages, all of it both identity-mapped
//!    (only for the jump) and at `PAGE_OFFSET` = 0xC000_0000;
//! 3. calls [`boot_enable_paging`] (Rust, run at its physical address),
//!    which turns paging on with the mode's crate: `enable_paging` of
//!    `paging-x86-2level` or `enable_pae_paging` of `paging-x86-pae`;
//! 4. jumps to the higher half, removes the identity mapping, reloads CR3,
//!    switches to the boot stack and calls [`kmain`](crate::kmain).
//!
//! After step 4 the only mapping is the boot window: physical
//! `0..BOOT_WINDOW_SIZE` at `PAGE_OFFSET`.
//!
//! # Running Rust with paging off
//!
//! Switching paging on needs paging off, so [`boot_enable_paging`] runs
//! before the jump, at its physical address. That works because the
//! kernel is loaded at `virtual - PAGE_OFFSET` as one block and x86 calls
//! and jumps are relative: code that touches only the stack (which is at
//! its physical address too) and control registers runs correctly at
//! either address. The function reads no statics and no constants in
//! `.rodata` (those are absolute addresses); keep it that way.

use crate::mm::layout::{BOOT_STACK_SIZE, PAGE_OFFSET}; // layer: the boot page tables and stack are built from the kernel's one memory layout, kept whole in mm/layout

/// Multiboot v1 header magic (in the kernel image).
const MULTIBOOT_HEADER_MAGIC: u32 = 0x1BAD_B002;
/// Header flags: bit 0 = page-align modules, bit 1 = provide the memory map.
const MULTIBOOT_HEADER_FLAGS: u32 = 0b11;

/// Called by `_start` with paging off, at its physical address: turns
/// paging on with the boot tables whose root is at physical `root`.
/// Returns 0 on success, otherwise a code `_start` reports before halting.
#[unsafe(no_mangle)]
extern "C" fn boot_enable_paging(root: u32) -> u32 {
    crate::arch::mode::enable_boot_paging(root)
}

core::arch::global_asm!(
    r#"
    .section .multiboot_header, "a"
    .p2align 2
    .long {mb_magic}
    .long {mb_flags}
    .long {mb_checksum}

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

    // 2. The boot tables (mode-specific, below).
    call boot_fill_tables

    // 3. Paging on, through the crate, on the boot stack's physical alias.
    mov esp, offset boot_stack_top - {page_offset}
    push eax                        // physical root of the boot tables
    mov ecx, offset {enable} - {page_offset}
    call ecx                        // at its physical address
    add esp, 4
    test eax, eax
    jnz boot_failed

    // 4. Jump to the higher half.
    mov eax, offset boot_higher_half
    jmp eax

    // Paging could not be enabled: say so on COM1 (physical string) and
    // stop QEMU with the failure code.
boot_failed:
    mov esi, offset boot_failed_message - {page_offset}
2:
    mov al, byte ptr [esi]
    test al, al
    jz 3f
    mov dx, 0x3F8
    out dx, al
    inc esi
    jmp 2b
3:
    mov dx, 0xF4
    mov eax, 0x11
    out dx, eax
4:
    cli
    hlt
    jmp 4b

    .section .text, "ax"
boot_higher_half:
    mov esp, offset boot_stack_top  // the stack's higher-half address
    call boot_drop_identity
    push esi                        // info_phys
    push ebp                        // magic
    xor ebp, ebp                    // end of the frame-pointer chain
    call kmain
5:
    cli
    hlt
    jmp 5b
    "#,
    mb_magic = const MULTIBOOT_HEADER_MAGIC,
    mb_flags = const MULTIBOOT_HEADER_FLAGS,
    mb_checksum = const 0u32
        .wrapping_sub(MULTIBOOT_HEADER_MAGIC)
        .wrapping_sub(MULTIBOOT_HEADER_FLAGS),
    page_offset = const PAGE_OFFSET,
    stack_size = const BOOT_STACK_SIZE,
    enable = sym boot_enable_paging,
);

// The one line a CPU without what this mode needs gets (then QEMU exits
// with the fail code, and on a PC the CPU halts): the mode's crate refused
// to turn paging on.
#[cfg(feature = "mode-2level")]
core::arch::global_asm!(
    r#"
    .section .rodata.boot, "a"
boot_failed_message:
    .asciz "\r\nBOOT FAILED: this CPU has no PSE (CPUID.1:EDX bit 3); the 2-level kernel needs 4 MiB pages\r\n"
    "#
);
#[cfg(not(feature = "mode-2level"))]
core::arch::global_asm!(
    r#"
    .section .rodata.boot, "a"
boot_failed_message:
    .asciz "\r\nBOOT FAILED: this CPU has no PAE (CPUID.1:EDX bit 6); boot the 2-level kernel on it\r\n"
    "#
);

// 2-level boot tables: one page table for 0..4 MiB and a page directory
// whose entries 0 (identity) and 768 (PAGE_OFFSET) point at it, plus
// 4 MiB PSE pages for 4..16 MiB at PAGE_OFFSET.
#[cfg(feature = "mode-2level")]
core::arch::global_asm!(
    r#"
    .section .bss.boot_page_tables, "aw", @nobits
    .p2align 12
    .global boot_root
boot_root:                          // the page directory
    .skip 4096
boot_pt:
    .skip 4096

    .section .text.boot, "ax"
    // Paging off, physical addresses. Returns the root in EAX.
boot_fill_tables:
    // boot_pt: physical 0..4 MiB, present + writable.
    mov edi, offset boot_pt - {page_offset}
    mov eax, 0x003
    mov ecx, 1024
2:
    mov dword ptr [edi], eax
    add eax, 0x1000
    add edi, 4
    dec ecx
    jnz 2b

    // .text and .rodata: clear the writable bit.
    mov eax, offset __text_start - {page_offset}
    shr eax, 12
    mov ecx, offset __rodata_end - {page_offset}
    shr ecx, 12
3:
    and dword ptr [4 * eax + boot_pt - {page_offset}], 0xFFFFFFFD
    inc eax
    cmp eax, ecx
    jb 3b

    // Guard page below the boot stack: not present.
    mov eax, offset boot_stack_guard - {page_offset}
    shr eax, 12
    mov dword ptr [4 * eax + boot_pt - {page_offset}], 0

    // Entry 0 (identity) and 768 (PAGE_OFFSET) -> boot_pt; 769..771 ->
    // 4 MiB pages at 4, 8 and 12 MiB.
    mov eax, offset boot_pt - {page_offset}
    or eax, 0x003
    mov dword ptr [boot_root - {page_offset}], eax
    mov dword ptr [boot_root - {page_offset} + 768 * 4], eax
    mov eax, 0x00400083             // 4 MiB, present + writable + PS
    mov edi, offset boot_root - {page_offset} + 769 * 4
    mov ecx, 3
4:
    mov dword ptr [edi], eax
    add eax, 0x00400000
    add edi, 4
    dec ecx
    jnz 4b
    mov eax, offset boot_root - {page_offset}
    ret

    .section .text, "ax"
    // Higher half: remove the identity entry and flush.
boot_drop_identity:
    mov dword ptr [boot_root], 0
    mov eax, cr3
    mov cr3, eax
    ret
    "#,
    page_offset = const PAGE_OFFSET,
);

// PAE boot tables: a PDPT whose entries 0 (identity) and 3 (PAGE_OFFSET)
// point at two page directories; both map 0..4 MiB through the same two
// page tables, and the PAGE_OFFSET one maps 4..16 MiB with 2 MiB pages.
#[cfg(feature = "mode-pae")]
core::arch::global_asm!(
    r#"
    .section .bss.boot_page_tables, "aw", @nobits
    .p2align 12
    .global boot_root
boot_root:                          // the PDPT (4 entries, 32 bytes)
    .skip 4096
boot_pmd_identity:
    .skip 4096
boot_pmd_kernel:
    .skip 4096
boot_pt:                            // two page tables: 0..4 MiB
    .skip 8192

    .section .text.boot, "ax"
    // Paging off, physical addresses. Returns the root in EAX.
boot_fill_tables:
    // boot_pt: 1024 8-byte entries, physical 0..4 MiB, present + writable
    // (the high halves stay zero from .bss).
    mov edi, offset boot_pt - {page_offset}
    mov eax, 0x003
    mov ecx, 1024
2:
    mov dword ptr [edi], eax
    add eax, 0x1000
    add edi, 8
    dec ecx
    jnz 2b

    // .text and .rodata: clear the writable bit.
    mov eax, offset __text_start - {page_offset}
    shr eax, 12
    mov ecx, offset __rodata_end - {page_offset}
    shr ecx, 12
3:
    and dword ptr [8 * eax + boot_pt - {page_offset}], 0xFFFFFFFD
    inc eax
    cmp eax, ecx
    jb 3b

    // Guard page below the boot stack: not present.
    mov eax, offset boot_stack_guard - {page_offset}
    shr eax, 12
    mov dword ptr [8 * eax + boot_pt - {page_offset}], 0

    // Both directories: entries 0 and 1 -> the two page tables.
    mov eax, offset boot_pt - {page_offset}
    or eax, 0x003
    mov dword ptr [boot_pmd_identity - {page_offset}], eax
    mov dword ptr [boot_pmd_kernel - {page_offset}], eax
    add eax, 0x1000
    mov dword ptr [boot_pmd_identity - {page_offset} + 8], eax
    mov dword ptr [boot_pmd_kernel - {page_offset} + 8], eax

    // Kernel directory entries 2..7: 2 MiB pages at 4..16 MiB.
    mov eax, 0x00400083             // 2 MiB at 4 MiB, present + writable + PS
    mov edi, offset boot_pmd_kernel - {page_offset} + 2 * 8
    mov ecx, 6
4:
    mov dword ptr [edi], eax
    add eax, 0x00200000
    add edi, 8
    dec ecx
    jnz 4b

    // PDPT entries hold only P (and cache bits): RW/US are reserved there.
    mov eax, offset boot_pmd_identity - {page_offset}
    or eax, 0x001
    mov dword ptr [boot_root - {page_offset}], eax
    mov eax, offset boot_pmd_kernel - {page_offset}
    or eax, 0x001
    mov dword ptr [boot_root - {page_offset} + 3 * 8], eax
    mov eax, offset boot_root - {page_offset}
    ret

    .section .text, "ax"
    // Higher half: remove the identity PDPT entry; the CPU latched the
    // PDPTEs at CR3 load, so only a CR3 reload makes the removal real.
boot_drop_identity:
    mov dword ptr [boot_root], 0
    mov eax, cr3
    mov cr3, eax
    ret
    "#,
    page_offset = const PAGE_OFFSET,
);
