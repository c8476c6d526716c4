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
        // SAFETY: `start..end` is one blob of `.rodata.user`, emitted by `user_basic`, `user_hostile` or `user_fuzz`
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
