//! The user programs: ring-3 code in assembly, embedded in the kernel image
//! and copied into each process's text pages at [`TEXT_BASE`] (the
//! conventional i386 ELF address). The code is position-independent within
//! its blob: jumps are relative, and data addresses are `TEXT_BASE` plus a
//! label's offset from the blob's start.
//!
//! System calls: `int 0x80` with the number in EAX and arguments in EBX,
//! ECX; the result comes back in EAX (and EBX for `wait`). At entry EBX
//! holds the program's argument.

/// Where a program's text is mapped.
pub const TEXT_BASE: u32 = 0x0804_8000;

/// System-call numbers.
pub mod nr {
    /// `write(buf, len)`: bytes to the serial console; returns `len`.
    pub const WRITE: u32 = 1;
    /// `getpid()`.
    pub const GETPID: u32 = 2;
    /// `fork()`: the child's PID in the parent, 0 in the child.
    pub const FORK: u32 = 3;
    /// `exit(code)`.
    pub const EXIT: u32 = 4;
    /// `wait()`: a child's PID in EAX and its exit code in EBX, or -1 with
    /// no child.
    pub const WAIT: u32 = 5;
    /// `yield()`.
    pub const YIELD: u32 = 6;
    /// `sbrk(bytes)`: the old end of the heap; maps nothing (pages come on
    /// first touch, zeroed).
    pub const SBRK: u32 = 7;
    /// `kmap_hold(preemptions)`: the kernel maps two pages of its own
    /// through local kmaps, waits (interrupts on) until the process has been
    /// preempted that many times, and checks them; 0 if right.
    pub const KMAP_HOLD: u32 = 8;
    /// `last_error()`: why the last system call that returned -1 failed
    /// (one of [`super::err`]; 0 if none has failed). Not reset by a
    /// system call that succeeds, like C's `errno`.
    pub const LAST_ERROR: u32 = 9;
}

/// Reasons a system call returned -1, read back with
/// [`nr::LAST_ERROR`].
pub mod err {
    /// No system call has failed.
    pub const NONE: u32 = 0;
    /// An argument is out of range (an unknown number, a length that
    /// wraps, more `kmap_hold` preemptions than allowed).
    pub const INVALID: u32 = 1;
    /// A pointer or range is not in the caller's user half.
    pub const FAULT: u32 = 2;
    /// The process table is full.
    pub const TABLE_FULL: u32 = 3;
    /// The caller has [`crate::proc::process::MAX_CHILDREN`] children (zombies
    /// included) already.
    pub const CHILD_LIMIT: u32 = 4;
    /// The heap would pass its limit ([`crate::proc::process::HEAP_MAX`]).
    pub const PAGE_LIMIT: u32 = 5;
    /// The kernel ran out of frames.
    pub const NO_MEMORY: u32 = 6;
    /// A fork would overflow the kernel's table of shared pages.
    pub const SHARED_FULL: u32 = 7;
    /// `wait` with no child.
    pub const NO_CHILD: u32 = 8;
    /// The console budget ([`crate::proc::process::CONSOLE_BUDGET`]) is spent:
    /// the write was cut short, the rest dropped (and counted).
    pub const CONSOLE_BUDGET: u32 = 9;
    /// The kernel failed (a bug: it printed the reason).
    pub const KERNEL: u32 = 10;
}

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

    // fork_bomb(depth): forks until fork fails, then exits 0 without
    // waiting; each child does the same with depth - 1; at depth 0 a
    // process yields 8 times (keeping its slot) and exits 0.
    .global user_fork_bomb_start
    .global user_fork_bomb_end
user_fork_bomb_start:
    mov esi, ebx
    test esi, esi
    jz 3f
2:
    mov eax, {fork}
    int 0x80
    test eax, eax
    js 5f
    jnz 2b
    dec esi
    jnz 2b
3:
    mov edi, 8
4:
    mov eax, {yield_}
    int 0x80
    dec edi
    jnz 4b
5:
    mov eax, {exit}
    xor ebx, ebx
    int 0x80
user_fork_bomb_end:

    // big_exit(pages): sbrk and touch `pages` pages, exit 0 (-1 if sbrk
    // failed).
    .global user_big_exit_start
    .global user_big_exit_end
user_big_exit_start:
    mov esi, ebx
    shl ebx, 12
    mov eax, {sbrk}
    int 0x80
    cmp eax, -1
    je 3f
    mov edi, eax
    xor ecx, ecx
2:
    mov edx, ecx
    shl edx, 12
    mov [edi + edx], ecx
    inc ecx
    cmp ecx, esi
    jb 2b
    mov eax, {exit}
    xor ebx, ebx
    int 0x80
3:
    mov eax, {exit}
    mov ebx, -1
    int 0x80
user_big_exit_end:

    // big_fork(pages): sbrk and touch `pages` pages, then fork. Exits with
    // last_error if the fork returned -1 (0x100 if the fork succeeded: the
    // child exits 0x200), -1 if sbrk failed.
    .global user_big_fork_start
    .global user_big_fork_end
user_big_fork_start:
    mov esi, ebx
    shl ebx, 12
    mov eax, {sbrk}
    int 0x80
    cmp eax, -1
    je 5f
    mov edi, eax
    xor ecx, ecx
2:
    mov edx, ecx
    shl edx, 12
    mov [edi + edx], ecx
    inc ecx
    cmp ecx, esi
    jb 2b
    mov eax, {fork}
    int 0x80
    test eax, eax
    jz 4f
    jns 3f
    mov eax, {last_error}
    int 0x80
    mov ebx, eax
    mov eax, {exit}
    int 0x80
3:
    mov eax, {wait}
    int 0x80
    mov eax, {exit}
    mov ebx, 0x100
    int 0x80
4:
    mov eax, {exit}
    mov ebx, 0x200
    int 0x80
5:
    mov eax, {exit}
    mov ebx, -1
    int 0x80
user_big_fork_end:

    // call_err(n): calls `n` (EBX) with EBX = ECX = -1; exits with
    // last_error if it returned -1, else 0x100 + the result's low byte.
    .global user_call_err_start
    .global user_call_err_end
user_call_err_start:
    mov eax, ebx
    mov ebx, -1
    mov ecx, -1
    int 0x80
    cmp eax, -1
    jne 2f
    mov eax, {last_error}
    int 0x80
    mov ebx, eax
    mov eax, {exit}
    int 0x80
2:
    movzx ebx, al
    add ebx, 0x100
    mov eax, {exit}
    int 0x80
user_call_err_end:

    // sbrk_wrap: sbrk(0) = old; sbrk(0xFFFFF001) must be -1 and sbrk(0)
    // still old: exits with last_error; 0x100 if the heap moved.
    .global user_sbrk_wrap_start
    .global user_sbrk_wrap_end
user_sbrk_wrap_start:
    mov eax, {sbrk}
    xor ebx, ebx
    int 0x80
    mov esi, eax
    mov eax, {sbrk}
    mov ebx, 0xFFFFF001
    int 0x80
    cmp eax, -1
    jne 2f
    mov eax, {sbrk}
    xor ebx, ebx
    int 0x80
    cmp eax, esi
    jne 2f
    mov eax, {last_error}
    int 0x80
    mov ebx, eax
    mov eax, {exit}
    int 0x80
2:
    mov eax, {exit}
    mov ebx, 0x100
    int 0x80
user_sbrk_wrap_end:

    // orphan_maker(n): forks n children that exit at once, yields 32
    // times, exits 0 without waiting for them.
    .global user_orphan_maker_start
    .global user_orphan_maker_end
user_orphan_maker_start:
    mov esi, ebx
2:
    test esi, esi
    jz 3f
    dec esi
    mov eax, {fork}
    int 0x80
    test eax, eax
    jnz 2b
    mov eax, {exit}
    mov ebx, 0x77
    int 0x80
3:
    mov esi, 32
4:
    mov eax, {yield_}
    int 0x80
    dec esi
    jnz 4b
    mov eax, {exit}
    xor ebx, ebx
    int 0x80
user_orphan_maker_end:

    // child_limit: forks until fork fails (children exit 0 at once), waits
    // for them all; exits with the number of forks + (last_error << 16).
    .global user_child_limit_start
    .global user_child_limit_end
user_child_limit_start:
    xor esi, esi
2:
    mov eax, {fork}
    int 0x80
    test eax, eax
    jz 5f
    js 3f
    inc esi
    cmp esi, 1000
    jb 2b
3:
    mov eax, {last_error}
    int 0x80
    mov edi, eax
4:
    mov eax, {wait}
    int 0x80
    cmp eax, -1
    jne 4b
    mov ebx, edi
    shl ebx, 16
    or ebx, esi
    mov eax, {exit}
    int 0x80
5:
    mov eax, {exit}
    xor ebx, ebx
    int 0x80
user_child_limit_end:

    // flood(lines): writes a 64-byte line `lines` times; exits with the
    // bytes write reported written in total (-1 results not counted).
    .global user_flood_start
    .global user_flood_end
user_flood_start:
    mov esi, ebx
    xor edi, edi
    jmp 3f
2:
    .ascii "    flood: a process writes the same line again and again......\n"
3:
    test esi, esi
    jz 4f
    dec esi
    mov eax, {write}
    // The line starts 6 bytes in: after `mov esi, ebx`, `xor edi, edi`
    // and the short `jmp` (2 bytes each).
    mov ebx, {text} + 6
    mov ecx, 64
    int 0x80
    test eax, eax
    js 3b
    add edi, eax
    jmp 3b
4:
    mov ebx, edi
    mov eax, {exit}
    int 0x80
user_flood_end:

    // spinner(iterations): counts down, exits 0.
    .global user_spinner_start
    .global user_spinner_end
user_spinner_start:
2:
    dec ebx
    jnz 2b
    mov eax, {exit}
    xor ebx, ebx
    int 0x80
user_spinner_end:

    // fpu_keeper(secret): loads the secret into ST0 and a pattern into
    // ST1, yields 24 times (another keeper loads its own meanwhile), stores
    // both back: exit 0 if both survived, 1 if not.
    .global user_fpu_keeper_start
    .global user_fpu_keeper_end
user_fpu_keeper_start:
    push ebx
    mov eax, ebx
    not eax
    push eax
    fild dword ptr [esp]
    fild dword ptr [esp + 4]
    mov esi, 24
2:
    mov eax, {yield_}
    int 0x80
    mov ecx, 20000
3:
    dec ecx
    jnz 3b
    dec esi
    jnz 2b
    fistp dword ptr [esp + 4]
    fistp dword ptr [esp]
    pop eax
    not eax
    pop edx
    mov ecx, 1
    cmp edx, ebx
    jne 4f
    cmp eax, ebx
    jne 4f
    xor ecx, ecx
4:
    mov ebx, ecx
    mov eax, {exit}
    int 0x80
user_fpu_keeper_end:

    // fpu_checker: fnsave at entry (after yielding, so the keepers have
    // loaded theirs): exits 0 if the state is fninit's (control 0x37F,
    // status 0, every tag empty) and all 8 registers are zero; else a bit
    // per difference (1 control, 2 status, 4 tags, 8 registers).
    .global user_fpu_checker_start
    .global user_fpu_checker_end
user_fpu_checker_start:
    mov eax, {yield_}
    int 0x80
    sub esp, 108
    fnsave [esp]
    xor ebx, ebx
    cmp word ptr [esp], 0x37F
    je 2f
    or ebx, 1
2:
    cmp word ptr [esp + 4], 0
    je 3f
    or ebx, 2
3:
    cmp word ptr [esp + 8], 0xFFFF
    je 4f
    or ebx, 4
4:
    mov ecx, 28
5:
    cmp byte ptr [esp + ecx], 0
    je 6f
    or ebx, 8
6:
    inc ecx
    cmp ecx, 108
    jb 5b
    mov eax, {exit}
    int 0x80
user_fpu_checker_end:

    // umip(n): runs sgdt (0), sidt (1), smsw (2) or str (3); exits 0 if
    // it ran (no UMIP).
    .global user_umip_start
    .global user_umip_end
user_umip_start:
    sub esp, 8
    cmp ebx, 1
    jb 2f
    je 3f
    cmp ebx, 2
    je 4f
    str eax
    jmp 5f
2:
    sgdt [esp]
    jmp 5f
3:
    sidt [esp]
    jmp 5f
4:
    smsw eax
5:
    mov eax, {exit}
    xor ebx, ebx
    int 0x80
user_umip_end:

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

    // ldt_selector: loads selector 0x0F (LDT entry 1, RPL 3) into DS.
    .global user_ldt_selector_start
    .global user_ldt_selector_end
user_ldt_selector_start:
    mov eax, 0x0F
    mov ds, ax
    mov eax, {exit}
    xor ebx, ebx
    int 0x80
user_ldt_selector_end:
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

/// A user program: its code, copied to [`TEXT_BASE`], entered at its start.
#[derive(Clone, Copy, Debug)]
pub struct Program {
    /// For reports.
    pub name: &'static str,
    start: *const u8,
    end: *const u8,
}

// SAFETY: the pointers are to read-only data in the kernel image.
unsafe impl Sync for Program {}
// SAFETY: as above.
unsafe impl Send for Program {}

impl Program {
    /// The program's code.
    pub fn code(&self) -> &'static [u8] {
        // SAFETY: `start..end` is one blob of `.rodata.user`, emitted above
        // and never written.
        unsafe { core::slice::from_raw_parts(self.start, self.end as usize - self.start as usize) }
    }
}

macro_rules! program {
    ($name:literal, $start:ident, $end:ident) => {{
        unsafe extern "C" {
            static $start: u8;
            static $end: u8;
        }
        Program {
            name: $name,
            start: &raw const $start,
            end: &raw const $end,
        }
    }};
}

/// `toucher(seed)`: writes 16 heap pages, exits with their checksum
/// ([`toucher_checksum`]).
pub fn toucher() -> Program {
    program!("toucher", user_toucher_start, user_toucher_end)
}

/// The exit code `toucher(seed)` must end with.
pub fn toucher_checksum(seed: u32) -> u32 {
    (0..16u32).fold(0u32, |sum, i| {
        let word = i.wrapping_mul(0x9E37_79B9) ^ seed;
        sum.wrapping_add(word).wrapping_add(!word)
    })
}

/// `forker(depth)`: the copy-on-write fork chain.
pub fn forker() -> Program {
    program!("forker", user_forker_start, user_forker_end)
}

/// Reads a kernel address.
pub fn bad_kernel() -> Program {
    program!(
        "bad-kernel-read",
        user_bad_kernel_start,
        user_bad_kernel_end
    )
}

/// Writes its own text.
pub fn bad_text() -> Program {
    program!("bad-text-write", user_bad_text_start, user_bad_text_end)
}

/// Calls into its heap.
pub fn bad_nx() -> Program {
    program!("bad-nx-fetch", user_bad_nx_start, user_bad_nx_end)
}

/// Reads an unmapped address.
pub fn bad_unmapped() -> Program {
    program!(
        "bad-unmapped-read",
        user_bad_unmapped_start,
        user_bad_unmapped_end
    )
}

/// `holder(n)`: `kmap_hold(n)`, exit with its result.
pub fn holder() -> Program {
    program!("kmap-holder", user_holder_start, user_holder_end)
}

/// Writes a line, exits with its PID.
pub fn hello() -> Program {
    program!("hello", user_hello_start, user_hello_end)
}

/// `fork_bomb(depth)`: a tree of forks, each process forking until
/// refused, `depth` levels deep: fills the process table.
pub fn fork_bomb() -> Program {
    program!("fork-bomb", user_fork_bomb_start, user_fork_bomb_end)
}

/// `big_exit(pages)`: touches `pages` heap pages and exits.
pub fn big_exit() -> Program {
    program!("big-exit", user_big_exit_start, user_big_exit_end)
}

/// `big_fork(pages)`: touches `pages` heap pages and forks; exits with
/// the fork's error.
pub fn big_fork() -> Program {
    program!("big-fork", user_big_fork_start, user_big_fork_end)
}

/// `call_err(n)`: system call `n` with every argument -1; exits with its
/// error (or 0x100 + the result's low byte if it succeeded).
pub fn call_err() -> Program {
    program!("call-err", user_call_err_start, user_call_err_end)
}

/// `sbrk(0xFFFFF001)`: exits with its error if the heap did not move.
pub fn sbrk_wrap() -> Program {
    program!("sbrk-wrap", user_sbrk_wrap_start, user_sbrk_wrap_end)
}

/// `orphan_maker(n)`: n children exit, the parent never waits.
pub fn orphan_maker() -> Program {
    program!(
        "orphan-maker",
        user_orphan_maker_start,
        user_orphan_maker_end
    )
}

/// Forks until refused; exits with the count and the error.
pub fn child_limit() -> Program {
    program!("child-limit", user_child_limit_start, user_child_limit_end)
}

/// `flood(lines)`: writes a 64-byte line `lines` times.
pub fn flood() -> Program {
    program!("flood", user_flood_start, user_flood_end)
}

/// `spinner(n)`: a ring-3 loop of `n` iterations.
pub fn spinner() -> Program {
    program!("spinner", user_spinner_start, user_spinner_end)
}

/// `fpu_keeper(secret)`: x87 registers kept across 24 switches.
pub fn fpu_keeper() -> Program {
    program!("fpu-keeper", user_fpu_keeper_start, user_fpu_keeper_end)
}

/// Checks its x87 state is fninit's, with zeroed registers.
pub fn fpu_checker() -> Program {
    program!("fpu-checker", user_fpu_checker_start, user_fpu_checker_end)
}

/// Loads an LDT selector.
pub fn ldt_selector() -> Program {
    program!(
        "ldt-selector",
        user_ldt_selector_start,
        user_ldt_selector_end
    )
}

/// `umip(n)`: `sgdt`, `sidt`, `smsw` or `str` in ring 3.
pub fn umip() -> Program {
    program!("umip", user_umip_start, user_umip_end)
}

/// `fuzz(budget)`: random system calls, arguments and rare privileged
/// instructions; exits 0x600D, or [`FUZZ_CORRUPT`] if its pattern changed.
pub fn fuzz() -> Program {
    program!("fuzz", user_fuzz_start, user_fuzz_end)
}

/// The exit code of a fuzz process that found a word of its pattern
/// changed (another process's value, or a lost write).
pub const FUZZ_CORRUPT: u32 = 0xBAD0_BAD0;
/// The exit code of a fuzz process that spent its budget.
pub const FUZZ_DONE: u32 = 0x600D;
