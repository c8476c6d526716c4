//! The well-behaved user programs and the plain faulting ones (toucher,
//! forker, bad_kernel, bad_text, bad_nx, bad_unmapped, holder, hello), in
//! ring-3 assembly; [`super::user`] hands them out as [`Program`]s.
//!
//! [`Program`]: super::user::Program

use super::user::{TEXT_BASE, nr};

core::arch::global_asm!(
    r#"
    .section .rodata.user, "a"
    .p2align 4
    // toucher(seed): sbrk 16 pages, write two words per page from the seed,
    // yield, sum every word back, exit(sum).
    .global user_toucher_start
    .global user_toucher_end
user_toucher_start:
    mov esi, ebx
    mov eax, {sbrk}
    mov ebx, 16 * 4096
    int 0x80
    mov edi, eax
    xor ecx, ecx
2:
    mov eax, ecx
    imul eax, eax, 0x9E3779B9
    xor eax, esi
    mov edx, ecx
    shl edx, 12
    mov [edi + edx], eax
    not eax
    mov [edi + edx + 2044], eax
    inc ecx
    cmp ecx, 16
    jb 2b
    mov eax, {yield_}
    int 0x80
    xor ebp, ebp
    xor ecx, ecx
3:
    mov edx, ecx
    shl edx, 12
    add ebp, [edi + edx]
    add ebp, [edi + edx + 2044]
    inc ecx
    cmp ecx, 16
    jb 3b
    mov eax, {exit}
    mov ebx, ebp
    int 0x80
4:
    jmp 4b
user_toucher_end:

    // forker(depth): a fork chain `depth` deep over two heap pages. Level
    // L writes 0xC0DE0000+L to page 0 before forking; a child checks it
    // sees its parent's value (the shared frame), writes its own and goes
    // on; a parent writes 0xD0DE0000+L after the fork, waits for its
    // child, and checks its own value is still there and the child's exit
    // code is 0. Page 1 is written once, before the first fork, and only
    // read after: it stays shared by every level. Exit code 0 if right.
    .global user_forker_start
    .global user_forker_end
user_forker_start:
    mov esi, ebx                    // levels still to fork
    xor ebp, ebp                    // my level
    mov eax, {sbrk}
    mov ebx, 2 * 4096
    int 0x80
    mov edi, eax
    mov dword ptr [edi + 4096], 0x5A5A1234
    mov dword ptr [edi], 0xC0DE0000
5:
    cmp dword ptr [edi + 4096], 0x5A5A1234
    jne 9f
    test esi, esi
    jz 8f
    mov eax, {fork}
    int 0x80
    test eax, eax
    js 9f
    jnz 6f
    // child: sees the parent's value, then writes its own
    lea eax, [ebp + 0xC0DE0000]
    cmp [edi], eax
    jne 9f
    inc ebp
    dec esi
    lea eax, [ebp + 0xC0DE0000]
    mov [edi], eax
    jmp 5b
6:
    // parent: its own value after the fork, then wait for the child
    lea eax, [ebp + 0xD0DE0000]
    mov [edi], eax
    mov eax, {wait}
    int 0x80
    test eax, eax
    js 9f
    test ebx, ebx
    jnz 9f
    lea eax, [ebp + 0xD0DE0000]
    cmp [edi], eax
    jne 9f
    jmp 8f
8:
    lea eax, [ebp + 0xC0DE0000]
    test esi, esi
    jz 7f
    lea eax, [ebp + 0xD0DE0000]
7:
    cmp [edi], eax
    jne 9f
    mov eax, {exit}
    xor ebx, ebx
    int 0x80
9:
    mov eax, {exit}
    mov ebx, 1
    int 0x80
10:
    jmp 10b
user_forker_end:

    // bad_kernel: reads a kernel address.
    .global user_bad_kernel_start
    .global user_bad_kernel_end
user_bad_kernel_start:
    mov eax, [0xC0100000]
    mov eax, {exit}
    xor ebx, ebx
    int 0x80
user_bad_kernel_end:

    // bad_text: writes its own (read-only) text.
    .global user_bad_text_start
    .global user_bad_text_end
user_bad_text_start:
    mov dword ptr [{text}], 0
    mov eax, {exit}
    xor ebx, ebx
    int 0x80
user_bad_text_end:

    // bad_nx: copies a `ret` into the heap and calls it (no-execute in
    // PAE; in 2-level mode it runs and the program exits with 7).
    .global user_bad_nx_start
    .global user_bad_nx_end
user_bad_nx_start:
    mov eax, {sbrk}
    mov ebx, 4096
    int 0x80
    mov byte ptr [eax], 0xC3
    call eax
    mov eax, {exit}
    mov ebx, 7
    int 0x80
user_bad_nx_end:

    // bad_unmapped: reads an address no region covers.
    .global user_bad_unmapped_start
    .global user_bad_unmapped_end
user_bad_unmapped_start:
    mov eax, [0x00400000]
    mov eax, {exit}
    xor ebx, ebx
    int 0x80
user_bad_unmapped_end:

    // holder(preemptions): kmap_hold, then exit with its result.
    .global user_holder_start
    .global user_holder_end
user_holder_start:
    mov eax, {kmap_hold}
    int 0x80
    mov ebx, eax
    mov eax, {exit}
    int 0x80
user_holder_end:

    // hello: getpid, write a line, exit(pid).
    .global user_hello_start
    .global user_hello_end
user_hello_start:
    jmp 2f
    .asciz "    hello from ring 3 through int 0x80\n"
2:
    mov ebx, {text} + 2
    xor ecx, ecx
3:
    cmp byte ptr [ebx + ecx], 0
    je 4f
    inc ecx
    jmp 3b
4:
    mov eax, {write}
    int 0x80
    mov eax, {getpid}
    int 0x80
    mov ebx, eax
    mov eax, {exit}
    int 0x80
user_hello_end:
    "#,
    sbrk = const nr::SBRK,
    yield_ = const nr::YIELD,
    exit = const nr::EXIT,
    fork = const nr::FORK,
    wait = const nr::WAIT,
    write = const nr::WRITE,
    getpid = const nr::GETPID,
    kmap_hold = const nr::KMAP_HOLD,
    text = const TEXT_BASE,
);
