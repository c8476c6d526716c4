//! `memcpy`, `memmove`, `memset`, `memcmp` and `bcmp`, which the compiler
//! emits calls to and which a freestanding kernel must provide.
//!
//! Written with string instructions in inline assembly so the optimiser
//! cannot recognise a copy loop and turn it back into a call to itself.
//! (Rust does not let ESI be an operand on i386, so the code saves and
//! loads it by hand.)

use core::arch::asm;

/// Copies `n` bytes from `src` to `dest`; the ranges must not overlap.
///
/// # Safety
/// `src` must be valid for `n` reads, `dest` for `n` writes, not overlapping.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memcpy(dest: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // SAFETY: the caller guarantees both ranges; DF is clear per the ABI.
    unsafe {
        asm!(
            "push esi",
            "mov esi, {src}",
            "rep movsb",
            "pop esi",
            src = in(reg) src,
            inout("ecx") n => _,
            inout("edi") dest => _,
            options(preserves_flags),
        );
    }
    dest
}

/// Copies `n` bytes from `src` to `dest`; the ranges may overlap.
///
/// # Safety
/// `src` must be valid for `n` reads and `dest` for `n` writes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memmove(dest: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    if (dest as usize).wrapping_sub(src as usize) >= n {
        // `dest` is below `src` or past its end: a forward copy is safe.
        // SAFETY: the caller guarantees both ranges; a forward copy reads
        // each source byte before it could be overwritten.
        return unsafe { memcpy(dest, src, n) };
    }
    // SAFETY: `dest` overlaps the tail of `src`: copy backwards from the
    // last byte (n > 0 here) with DF set, and clear DF again for the ABI.
    unsafe {
        asm!(
            "push esi",
            "mov esi, {src_last}",
            "std",
            "rep movsb",
            "cld",
            "pop esi",
            src_last = in(reg) src.add(n - 1),
            inout("ecx") n => _,
            inout("edi") dest.add(n - 1) => _,
        );
    }
    dest
}

/// Fills `n` bytes at `dest` with the low byte of `value`.
///
/// # Safety
/// `dest` must be valid for `n` writes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memset(dest: *mut u8, value: i32, n: usize) -> *mut u8 {
    // SAFETY: the caller guarantees the range; DF is clear per the ABI.
    unsafe {
        asm!(
            "rep stosb",
            in("al") value as u8,
            inout("ecx") n => _,
            inout("edi") dest => _,
            options(preserves_flags, nostack),
        );
    }
    dest
}

/// Compares `n` bytes: negative, zero or positive as `a` sorts before, equal
/// to or after `b` (bytes compared as unsigned).
///
/// # Safety
/// `a` and `b` must be valid for `n` reads.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    if n == 0 {
        return 0;
    }
    let a_next: *const u8;
    let b_next: *const u8;
    // SAFETY: the caller guarantees both ranges; `repe cmpsb` stops after
    // the first differing pair or after n bytes, reading nothing beyond.
    // `xchg` (not push/mov/pop) moves `a` into ESI and the end pointer back
    // out: when this is inlined the register allocator may pick ESI itself
    // for `{a}`, and then a `pop esi` would throw the end pointer away.
    unsafe {
        asm!(
            "xchg esi, {a}",
            "repe cmpsb",
            "xchg esi, {a}",
            a = inout(reg) a => a_next,
            inout("edi") b => b_next,
            inout("ecx") n => _,
            options(readonly, nostack),
        );
    }
    // Both pointers are one past the last pair compared.
    // SAFETY: n > 0, so at least one pair was compared and both pointers
    // point one past a byte inside the caller's ranges.
    let (x, y) = unsafe { (*a_next.sub(1), *b_next.sub(1)) };
    i32::from(x) - i32::from(y)
}

/// Like [`memcmp`], but only zero versus non-zero is meaningful.
///
/// # Safety
/// As for [`memcmp`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // SAFETY: same contract as `memcmp`.
    unsafe { memcmp(a, b, n) }
}
