//! The hostile user programs (issue 21: fork bombs, huge exits and forks,
//! failing calls, sbrk wrap, orphans, child limits, console floods,
//! spinners, x87 state, UMIP, LDT selectors), in ring-3 assembly;
//! [`super::user`] hands them out as [`Program`]s.
//!
//! [`Program`]: super::user::Program

use super::user::{TEXT_BASE, nr};

core::arch::global_asm!(
    r#"
    .section .rodata.user, "a"
    .p2align 4
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
    last_error = const nr::LAST_ERROR,
    text = const TEXT_BASE,
);
