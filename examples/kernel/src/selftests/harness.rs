//! A tiny self-test runner.
//!
//! Each test prints `test <name> ... ok` or `test <name> ... FAILED` plus a
//! reason line; the run ends with exactly one `N passed, N failed` line and
//! exits QEMU with the pass code only if nothing failed. When the host
//! passed a verdict nonce (`verdict=HEX`), that line ends with
//! `[verdict HEX]`: user processes can print anything, but cannot read the
//! nonce, so only the kernel can print a verdict the judges accept.

use crate::base::error::Error;
use crate::mm::kernel::Kernel;
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

/// Why a test failed: the kernel's [`Error`], whose message the result
/// line prints. Tests and the kernel code they call fail the same way.
pub type Failure = Error;

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
        crate::base::spin::progress();
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
