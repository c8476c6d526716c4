//! Tests of the kernel's own `memcpy`/`memmove`/`memset`/`memcmp`.

use crate::base::mem_intrinsics::{memcmp, memcpy, memmove, memset};
use crate::ensure;
use crate::mm::kernel::Kernel;
use crate::selftests::harness::TestResult;

/// `n`, hidden from the optimiser so it cannot expand a call with a known
/// small length inline: the kernel's own routine must run.
fn opaque(n: usize) -> usize {
    core::hint::black_box(n)
}

/// 0, 1, 2, ... as bytes.
fn ramp<const N: usize>() -> [u8; N] {
    core::array::from_fn(|i| i as u8)
}

pub fn memory_intrinsics_copy_fill_and_compare(_: &Kernel) -> TestResult {
    let src: [u8; 32] = ramp();
    let mut dst = [0u8; 32];
    // SAFETY: both buffers are 32 bytes and distinct.
    unsafe { memcpy(dst.as_mut_ptr(), src.as_ptr(), opaque(32)) };
    ensure!(dst == src, "memcpy gave {dst:?}");

    // Overlapping moves in both directions.
    let mut buf: [u8; 16] = ramp();
    // SAFETY: source 0..12 and destination 4..16 lie inside `buf`.
    unsafe { memmove(buf.as_mut_ptr().add(4), buf.as_ptr(), opaque(12)) };
    ensure!(
        buf == [0, 1, 2, 3, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11],
        "memmove up gave {buf:?}"
    );
    let mut buf: [u8; 16] = ramp();
    // SAFETY: source 4..16 and destination 0..12 lie inside `buf`.
    unsafe { memmove(buf.as_mut_ptr(), buf.as_ptr().add(4), opaque(12)) };
    ensure!(
        buf == [4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 12, 13, 14, 15],
        "memmove down gave {buf:?}"
    );

    let mut buf = [0u8; 8];
    // SAFETY: bytes 2..6 lie inside `buf`.
    unsafe { memset(buf.as_mut_ptr().add(2), 0x1AB, opaque(4)) };
    ensure!(
        buf == [0, 0, 0xAB, 0xAB, 0xAB, 0xAB, 0, 0],
        "memset gave {buf:?}"
    );

    let a = [1u8, 2, 3, 4];
    let b = [1u8, 2, 9, 4];
    // SAFETY: all reads stay inside the 4-byte arrays.
    let (equal, less, greater, empty) = unsafe {
        (
            memcmp(a.as_ptr(), a.as_ptr(), opaque(4)),
            memcmp(a.as_ptr(), b.as_ptr(), opaque(4)),
            memcmp(b.as_ptr(), a.as_ptr(), opaque(4)),
            memcmp(a.as_ptr(), b.as_ptr(), opaque(0)),
        )
    };
    ensure!(equal == 0, "memcmp of equal bytes gave {equal}");
    ensure!(less < 0, "memcmp(1 2 3, 1 2 9) gave {less}");
    ensure!(greater > 0, "memcmp(1 2 9, 1 2 3) gave {greater}");
    ensure!(empty == 0, "memcmp of 0 bytes gave {empty}");

    // `==` on slices of unknown length goes through `bcmp` (often inlined,
    // with whatever registers the allocator picks).
    let long: [u8; 17] = ramp();
    let same: [u8; 17] = ramp();
    let mut other: [u8; 17] = ramp();
    other[16] = 0;
    let (long, same, other) = (
        core::hint::black_box(&long[..]),
        core::hint::black_box(&same[..]),
        core::hint::black_box(&other[..]),
    );
    ensure!(long == same, "equal 17-byte slices compare unequal");
    ensure!(long != other, "different 17-byte slices compare equal");
    Ok(())
}
