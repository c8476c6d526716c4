//! A tiny self-test runner.
//!
//! Each test prints `test <name> ... ok` or `test <name> ... FAILED` plus a
//! reason line; the run ends with exactly one `N passed, N failed` line and
//! exits QEMU with the pass code only if nothing failed. When the host
//! passed a verdict nonce (`verdict=HEX`), that line ends with
//! `[verdict HEX]`: user processes can print anything, but cannot read the
//! nonce, so only the kernel can print a verdict the judges accept.

use core::fmt::{self, Write};

use crate::kernel::Kernel;
use crate::{arch::io, print, println};

/// A self-test: a name and a function returning why it failed, if it did.
pub struct Test {
    /// Printed in the result line.
    pub name: &'static str,
    /// The test body.
    pub run: fn(&Kernel) -> TestResult,
}

/// Outcome of one test.
pub type TestResult = Result<(), Failure>;

/// Why a test failed: a message in a fixed buffer (longer text is cut).
pub struct Failure {
    buf: [u8; 240],
    len: usize,
}

impl Failure {
    /// A failure with the formatted message `args`.
    pub fn new(args: fmt::Arguments<'_>) -> Self {
        let mut failure = Self {
            buf: [0; 240],
            len: 0,
        };
        // Writing into the buffer cannot fail: overflow is truncated.
        let _ = failure.write_fmt(args);
        failure
    }

    /// The message.
    pub fn message(&self) -> &str {
        let bytes = &self.buf[..self.len];
        // Truncation may split a UTF-8 sequence; keep the valid prefix.
        match core::str::from_utf8(bytes) {
            Ok(text) => text,
            Err(error) => core::str::from_utf8(&bytes[..error.valid_up_to()]).unwrap_or(""),
        }
    }
}

impl Write for Failure {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = self.buf.len() - self.len;
        let take = s.len().min(room);
        self.buf[self.len..self.len + take].copy_from_slice(&s.as_bytes()[..take]);
        self.len += take;
        Ok(())
    }
}

/// Fails the current test with a formatted reason unless `$cond` holds.
#[macro_export]
macro_rules! ensure {
    ($cond:expr, $($reason:tt)+) => {
        if !$cond {
            return Err($crate::selftests::harness::Failure::new(format_args!($($reason)+)));
        }
    };
}

/// A [`Failure`] with a formatted message (for `map_err`).
#[macro_export]
macro_rules! failure {
    ($($reason:tt)+) => {
        $crate::selftests::harness::Failure::new(format_args!($($reason)+))
    };
}

/// Fails the current test with a formatted reason.
#[macro_export]
macro_rules! fail {
    ($($reason:tt)+) => {
        return Err($crate::selftests::harness::Failure::new(format_args!($($reason)+)))
    };
}

/// Runs every test, prints the summary and exits QEMU (pass code only if no
/// test failed).
pub fn run_all(tests: &[Test], kernel: &Kernel) -> ! {
    println!(
        "running {} self-tests on cpu {} ({} online; a figure another CPU produced names it)",
        tests.len(),
        crate::arch::gdt::cpu_index(),
        crate::smp::online_count()
    );
    let mut passed = 0usize;
    let mut failed = 0usize;
    for test in tests {
        crate::smp::watchdog::progress();
        crate::smp::watchdog::test_started();
        print!("test {} ... ", test.name);
        match (test.run)(kernel) {
            Ok(()) => {
                passed += 1;
                println!("ok");
            }
            Err(failure) => {
                failed += 1;
                println!("FAILED");
                println!("    reason: {}", failure.message());
            }
        }
    }
    match kernel.context.verdict_nonce() {
        Some(nonce) => println!("{passed} passed, {failed} failed [verdict {nonce}]"),
        None => println!("{passed} passed, {failed} failed"),
    }
    io::exit_qemu(failed == 0 && passed > 0)
}
