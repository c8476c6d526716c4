//! The fuzzing user program: syzkaller-style random system calls with
//! interesting arguments, in ring-3 assembly; [`super::user`] hands it out
//! as a [`Program`].
//!
//! [`Program`]: super::user::Program

use super::user::{TEXT_BASE, nr};

core::arch::global_asm!(
    r#"
    .section .rodata.user, "a"
    .p2align 4
    // fuzz(budget): syzkaller-style. A xorshift32 generator (ESI, seeded
    // from the PID) picks a system call and its arguments from
    // interesting values (the kernel half, the fixmap, the pkmap window,
    // the local APIC, NULL, unmapped pages, its text, its copy-on-write
    // heap, page boundaries, 3 GiB straddles, wrapping lengths, random
    // words); fork splits the budget with the child, which takes a new
    // pattern; rarely it runs a privileged instruction or faults (and is
    // killed) or exits. Its pattern (EBP, from its PID) sits in three heap
    // pages and on its stack and is checked after every call: a wrong word
    // exits with 0xBAD0BAD0. At the end of its budget: exit(0x600D).
    .global user_fuzz_start
    .global user_fuzz_end
user_fuzz_start:
    mov edi, ebx
    // the pattern's stack word sits above everything pushed
    sub esp, 16
    mov eax, {sbrk}
    mov ebx, 4 * 4096
    int 0x80
20:
    // a new identity: pattern and seed from the PID
    mov eax, {getpid}
    int 0x80
    mov ebp, eax
    imul ebp, ebp, 0x01000193
    xor ebp, 0x5EED0000
    mov esi, eax
    imul esi, esi, 0x9E3779B9
    or esi, 1
    mov [{heap}], ebp
    mov [{heap} + 4096], ebp
    mov [{heap} + 8192], ebp
    mov [{stack_word}], ebp
21:
    cmp [{heap}], ebp
    jne 29f
    cmp [{heap} + 4096], ebp
    jne 29f
    cmp [{heap} + 8192], ebp
    jne 29f
    cmp [{stack_word}], ebp
    jne 29f
    test edi, edi
    jz 28f
    dec edi
    // xorshift32
    mov eax, esi
    shl eax, 13
    xor esi, eax
    mov eax, esi
    shr eax, 17
    xor esi, eax
    mov eax, esi
    shl eax, 5
    xor esi, eax
    mov eax, esi
    and eax, 31
    jmp [fuzz_actions_at + eax * 4]

    // an interesting value in EBX (from bits 8..12 of ESI) and ECX (from
    // bits 12..16)
40:
    mov eax, esi
    shr eax, 8
    and eax, 15
    mov ebx, [fuzz_arg1_at + eax * 4]
    cmp eax, 14
    jne 41f
    mov ebx, esi
41:
    mov eax, esi
    shr eax, 12
    and eax, 15
    mov ecx, [fuzz_arg2_at + eax * 4]
    cmp eax, 14
    jne 42f
    mov ecx, esi
    ror ecx, 7
42:
    ret

50: // write(ptr, len)
    call 40b
    mov eax, {write}
    int 0x80
    jmp 21b
51: // getpid
    mov eax, {getpid}
    int 0x80
    jmp 21b
52: // last_error
    mov eax, {last_error}
    int 0x80
    jmp 21b
53: // yield
    mov eax, {yield_}
    int 0x80
    jmp 21b
54: // sbrk(small)
    mov ebx, esi
    shr ebx, 8
    and ebx, 0x3FFF
    mov eax, {sbrk}
    int 0x80
    jmp 21b
55: // sbrk(interesting)
    call 40b
    mov eax, {sbrk}
    int 0x80
    jmp 21b
56: // fork: the child takes half the budget and a new identity
    mov eax, {fork}
    int 0x80
    test eax, eax
    js 21b
    jz 57f
    mov eax, edi
    shr eax, 1
    sub edi, eax
    jmp 21b
57:
    shr edi, 1
    jmp 20b
58: // wait
    mov eax, {wait}
    int 0x80
    jmp 21b
59: // an unknown or random system call number
    call 40b
    mov eax, esi
    rol eax, 11
    int 0x80
    jmp 21b
60: // kmap_hold(interesting): mostly refused, sometimes a short hold
    call 40b
    mov eax, {kmap_hold}
    int 0x80
    jmp 21b
61: // touch its heap (a copy-on-write fault after a fork) off the
    // pattern words
    mov eax, esi
    shr eax, 9
    and eax, 0x3FFC
    test eax, 0xFFF
    jz 21b
    mov [{heap} + eax], esi
    jmp 21b
63: // rare: a privileged instruction, a fault, or exit
    mov eax, esi
    shr eax, 16
    and eax, 255
    cmp eax, 16
    jae 21b
    jmp [fuzz_rare_at + eax * 4]

28:
    mov eax, {exit}
    mov ebx, 0x600D
    int 0x80
29:
    mov eax, {exit}
    mov ebx, 0xBAD0BAD0
    int 0x80

70: cli
    jmp 21b
71: hlt
    jmp 21b
72: in al, 0x60
    jmp 21b
73: out 0xF4, al
    jmp 21b
74: mov eax, cr0
    jmp 21b
75: lgdt [esp]
    jmp 21b
76: int 3
    jmp 21b
77: int 0x40
    jmp 21b
78: int 0x0E
    jmp 21b
79: mov eax, [0xC0100000]
    jmp 21b
80: mov dword ptr [{text}], eax
    jmp 21b
81: mov eax, [0x00400000]
    jmp 21b
82: wrmsr
    jmp 21b
83: ud2
    jmp 21b
84: mov eax, {exit}
    mov ebx, ebp
    and ebx, 0x7FFFFFFF
    int 0x80
85: mov eax, 0x0F
    mov ds, ax
    jmp 21b

    .p2align 2
fuzz_actions: // actions by ESI & 31
    .long {text} + (50b - user_fuzz_start), {text} + (50b - user_fuzz_start)
    .long {text} + (50b - user_fuzz_start), {text} + (50b - user_fuzz_start)
    .long {text} + (50b - user_fuzz_start), {text} + (50b - user_fuzz_start)
    .long {text} + (51b - user_fuzz_start), {text} + (52b - user_fuzz_start)
    .long {text} + (53b - user_fuzz_start), {text} + (53b - user_fuzz_start)
    .long {text} + (54b - user_fuzz_start), {text} + (55b - user_fuzz_start)
    .long {text} + (56b - user_fuzz_start), {text} + (58b - user_fuzz_start)
    .long {text} + (58b - user_fuzz_start), {text} + (59b - user_fuzz_start)
    .long {text} + (59b - user_fuzz_start), {text} + (60b - user_fuzz_start)
    .long {text} + (61b - user_fuzz_start), {text} + (61b - user_fuzz_start)
    .long {text} + (61b - user_fuzz_start), {text} + (51b - user_fuzz_start)
    .long {text} + (52b - user_fuzz_start), {text} + (50b - user_fuzz_start)
    .long {text} + (55b - user_fuzz_start), {text} + (59b - user_fuzz_start)
    .long {text} + (56b - user_fuzz_start), {text} + (53b - user_fuzz_start)
    .long {text} + (54b - user_fuzz_start), {text} + (61b - user_fuzz_start)
    .long {text} + (50b - user_fuzz_start), {text} + (63b - user_fuzz_start)
fuzz_arg1: // first arguments (14: a random word)
    .long 0xC0000000, 0xC0100000, 0xFFFFF000, {pkmap}
    .long 0xFEE00000, 0, 0x00400000, {text}
    .long {heap}, {heap} + 4096 - 3, {stack_top} - 8, 0xBFFFFFF0
    .long {heap} + 0x3FFC, 0xFFFFFFFF, 0, 3
fuzz_arg2: // second arguments (14: a random word)
    .long 0, 1, 4, 64, 4095, 4096, 4097, 0xFFFFFFFF
    .long 0x40000000, 16, 2, 0x1000, 0xFFFFF001, 0x80000000, 0, 17
fuzz_rare: // rare events
    .long {text} + (70b - user_fuzz_start), {text} + (71b - user_fuzz_start)
    .long {text} + (72b - user_fuzz_start), {text} + (73b - user_fuzz_start)
    .long {text} + (74b - user_fuzz_start), {text} + (75b - user_fuzz_start)
    .long {text} + (76b - user_fuzz_start), {text} + (77b - user_fuzz_start)
    .long {text} + (78b - user_fuzz_start), {text} + (79b - user_fuzz_start)
    .long {text} + (80b - user_fuzz_start), {text} + (81b - user_fuzz_start)
    .long {text} + (82b - user_fuzz_start), {text} + (83b - user_fuzz_start)
    .long {text} + (84b - user_fuzz_start), {text} + (85b - user_fuzz_start)
user_fuzz_end:
    .set fuzz_actions_at, {text} + (fuzz_actions - user_fuzz_start)
    .set fuzz_arg1_at, {text} + (fuzz_arg1 - user_fuzz_start)
    .set fuzz_arg2_at, {text} + (fuzz_arg2 - user_fuzz_start)
    .set fuzz_rare_at, {text} + (fuzz_rare - user_fuzz_start)
    "#,
    sbrk = const nr::SBRK,
    yield_ = const nr::YIELD,
    exit = const nr::EXIT,
    fork = const nr::FORK,
    wait = const nr::WAIT,
    write = const nr::WRITE,
    getpid = const nr::GETPID,
    kmap_hold = const nr::KMAP_HOLD,
    last_error = const nr::LAST_ERROR,
    heap = const crate::proc::process::HEAP_START,
    stack_top = const crate::proc::process::STACK_TOP,
    stack_word = const crate::proc::process::STACK_TOP - 4,
    pkmap = const crate::mm::layout::PKMAP_BASE,
    text = const TEXT_BASE,
);
