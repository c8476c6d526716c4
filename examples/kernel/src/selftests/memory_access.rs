//! Word reads and writes of memory the kernel maps for a test (a kmap slot,
//! a page of a test address space).

/// Writes `value` to the `u32` at `va`.
///
/// # Safety
/// `va` must be 4-aligned and mapped writable to a frame the caller owns
/// (free, or allocated for the test), which no Rust object refers to.
pub unsafe fn write_word(va: usize, value: u32) {
    // SAFETY: the caller's contract.
    unsafe { (va as *mut u32).write_volatile(value) }
}

/// Reads the `u32` at `va`.
///
/// # Safety
/// `va` must be 4-aligned and mapped to ordinary memory.
pub unsafe fn read_word(va: usize) -> u32 {
    // SAFETY: the caller's contract.
    unsafe { (va as *const u32).read_volatile() }
}

/// A pattern derived from a physical frame number (different for frames
/// 4 GiB apart too, so an address truncated to 32 bits is caught).
pub fn pattern(pfn: u64) -> u32 {
    let mixed = (pfn as u32).wrapping_mul(0x9E37_79B9) ^ ((pfn >> 32) as u32).rotate_left(16);
    mixed ^ 0x5A5A_0001
}
