//! `cargo xtask miri [--all]`: run host tests under Miri, the interpreter
//! that checks every memory access of the `unsafe` code and of everything
//! built on it, and reports undefined behaviour, data races and leaks.
//!
//! Installs the nightly toolchain with the `miri` and `rust-src` components
//! (rustup), Miri's sysroot (`cargo +nightly miri setup`) and, if missing,
//! cargo-nextest, which runs each test in its own Miri process, two at a
//! time. The build goes to its own target directory.
//!
//! Miri interprets every instruction, roughly a thousand times slower than
//! native code; a test on the simulated machine takes 15 to 40 s. So the
//! default run is a selection ([`SELECTION`], about 15 minutes on two
//! cores): every test whose code has `unsafe` under it (`PtrTable` and
//! `OffsetAccess` over host buffers: the backends' tests and paging-core's
//! unit tests; the early fixmap's static tables), and a sample of the
//! simulated-machine tests of each crate: the property test of the mapper
//! and the eight-thread kmap stress test (both shrunk under `cfg(miri)`),
//! the threaded soundness tests of issue 19 (`threads_ptr_table`,
//! `threads_sync`, `slot_races`, `local_same_cpu`: Miri's race detector on
//! every table access several threads make),
//! and a few mapper, fixmap, kmap and tlb-shootdown tests. `--all` runs
//! every test of the library crates (hours).
//!
//! The `miri` step of `cargo xtask test` runs only the threaded tests
//! ([`THREADED`], with plain `cargo miri test`), installing nightly Miri
//! with rustup first if it is missing; if that fails (no network), the
//! step fails with one line saying so rather than pass without running.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::{nightly, process};

/// The library crates whose tests run under Miri.
const CRATES: [&str; 7] = [
    "paging-core",
    "paging-sim",
    "paging-x86-2level",
    "paging-x86-pae",
    "fixmap",
    "kmap",
    "tlb-shootdown",
];

/// The default selection, as a nextest filterset, one line per crate.
const SELECTION: [&str; 6] = [
    // Unit tests (PtrTable, OffsetAccess, the sim's parts) and a sample of
    // the simulated-machine tests, the property test among them.
    // The threaded tests of issue 19 (several CPUs on one table through
    // `PtrTable`) are what Miri's data-race detector is for.
    "package(paging-core) & (kind(lib) | binary(proptest_mapper) | binary(threads_ptr_table) \
     | binary(threads_sync) \
     | (binary(mapper_map) & test(/^(map_translate_unmap|large_pages)::/)) \
     | (binary(mapper_errors) & test(/^never_overwrite::/)) \
     | (binary(bad_inputs) & test(/^unreachable_tables/)))",
    // Every test: the mapper tests run over host buffers through
    // OffsetAccess and PtrTable.
    "package(paging-x86-2level)",
    "package(paging-x86-pae)",
    // slot_races: two threads on one slot over `PtrTable`.
    "package(fixmap) & (kind(lib) | binary(slot_races) \
     | (binary(slots) & test(/^set_and_clear/)) \
     | (binary(window) & test(/^early_static_tables/)))",
    // Threads on the pool's lock and atomics: Miri's data-race detector.
    // local_same_cpu: two threads on one CPU index of `LocalSlots`.
    "package(kmap) & (binary(stress) | binary(local_same_cpu) \
     | (binary(errors) & test(/^exhaustion_and_reservations::/)) \
     | (binary(pool_behaviour) & test(/^slot_life_cycle::/)) \
     | (binary(local_slots) & test(/^save_and_restore/)))",
    // Threads on the mailbox locks and the acknowledgement counters:
    // Miri's data-race detector over a whole shootdown round.
    "package(tlb-shootdown) & (kind(lib) \
     | (binary(sim) & test(/^(no_cpu_keeps_the_old_frame|dropped_interrupts)/)))",
];

/// The threaded tests, by crate: test binary and libtest filters (every
/// test of the binary if none). What the `miri` step of `cargo xtask test`
/// runs: several threads on one table, Miri's data-race detector on every
/// access (issue 19), and nothing else, so the step stays within about
/// three minutes. The other threaded tests of [`SELECTION`] (kmap's
/// `stress`, tlb-shootdown's `sim` rounds: several minutes each under Miri
/// on a loaded two-core machine) run in `cargo xtask miri`.
pub const THREADED: [(&str, &str, &[&str]); 4] = [
    ("paging-core", "threads_ptr_table", &[]),
    ("paging-core", "threads_sync", &[]),
    ("fixmap", "slot_races", &[]),
    ("kmap", "local_same_cpu", &[]),
];

/// Installs nightly Miri with rustup if it is missing, or says in one line
/// why the step cannot run: a `miri` step that did not run must fail, not
/// pass.
fn ensure_miri() -> Result<(), String> {
    nightly::ensure(&["miri", "rust-src"]).map_err(|e| {
        format!(
            "nightly Miri is not installed and rustup could not install it \
             (`rustup toolchain install nightly`, `rustup component add miri rust-src \
             --toolchain nightly`; no network?): {}",
            e.lines().next().unwrap_or_default()
        )
    })
}

/// The `miri` step of `cargo xtask test`: the [`THREADED`] tests under
/// Miri, with plain `cargo miri test` (no cargo-nextest to install).
pub fn run_threaded() -> Result<(), String> {
    ensure_miri()?;
    let started = std::time::Instant::now();
    for (krate, test, filters) in THREADED {
        println!("miri: {krate} --test {test}");
        let mut command = nightly::cargo();
        command
            .args(["miri", "test", "-p", krate, "--test", test, "--"])
            .args(filters)
            .env("CARGO_TARGET_DIR", target_dir());
        process::run(&mut command)?;
    }
    println!(
        "\nmiri: the threaded tests passed in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Parses `[--all]`: whether to run every test rather than the selection.
pub fn parse(args: &[String]) -> Result<bool, String> {
    match args {
        [] => Ok(false),
        [flag] if flag == "--all" => Ok(true),
        [other, ..] => Err(format!("unknown option `{other}` for miri")),
    }
}

/// Where Miri's build goes: beside the normal one.
fn target_dir() -> PathBuf {
    let base = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| process::repo_root().join("target"));
    base.join("miri")
}

/// Installs cargo-nextest if `cargo nextest` does not run.
fn ensure_nextest() -> Result<(), String> {
    let runs = nightly::cargo()
        .args(["nextest", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if runs {
        return Ok(());
    }
    println!("cargo-nextest is missing; installing it");
    process::run(Command::new("cargo").args(["install", "cargo-nextest", "--locked"]))
}

/// Runs the selection (or, with `all`, every test) under Miri.
pub fn run(all: bool) -> Result<(), String> {
    ensure_miri()?;
    ensure_nextest()?;
    process::run(
        nightly::cargo()
            .args(["miri", "setup"])
            .env("CARGO_TARGET_DIR", target_dir()),
    )?;
    let mut command = nightly::cargo();
    command.args(["miri", "nextest", "run", "--no-fail-fast"]);
    for name in CRATES {
        command.args(["-p", name]);
    }
    command.args(["-j", "2"]);
    if !all {
        let filter: Vec<String> = SELECTION.iter().map(|f| format!("({f})")).collect();
        command.args(["-E", &filter.join(" | ")]);
    }
    command.env("CARGO_TARGET_DIR", target_dir());
    let started = std::time::Instant::now();
    let result = process::run(&mut command);
    println!(
        "\nmiri: {} in {:.0} s",
        if result.is_ok() { "passed" } else { "FAILED" },
        started.elapsed().as_secs_f64()
    );
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ci_step_runs_the_threaded_tests_the_selection_has() {
        let selection = SELECTION.join(" ");
        for (krate, test, _) in THREADED {
            assert!(CRATES.contains(&krate), "{krate}");
            // Each threaded test is in `cargo xtask miri`'s selection too.
            assert!(selection.contains(&format!("binary({test})")), "{test}");
        }
        assert_eq!(THREADED.len(), 4);
    }
}
