//! `cargo xtask bench`: the benchmark suite of `benches/` (criterion timings
//! side by side, callgrind instruction counts, deterministic figures), as
//! one command that prints one table. See `benches/README.md`.
//!
//! valgrind (for the instruction counts) is installed with apt-get when it
//! is missing and this runs as root; otherwise the counts are skipped with
//! a message saying how to install it.

use std::process::{Command, Stdio};

use crate::process;

/// The Debian package that provides callgrind.
const VALGRIND_PACKAGE: &str = "valgrind";

/// Options of `cargo xtask bench`.
#[derive(Debug, Clone, Copy, Default)]
pub struct BenchOptions {
    quick: bool,
    no_callgrind: bool,
}

/// Parses the options of `bench`.
pub fn parse(args: &[String]) -> Result<BenchOptions, String> {
    let mut options = BenchOptions::default();
    for arg in args {
        match arg.as_str() {
            "--quick" => options.quick = true,
            "--no-callgrind" => options.no_callgrind = true,
            other => return Err(format!("unknown option `{other}` for bench")),
        }
    }
    Ok(options)
}

/// Runs the suite.
pub fn run(options: &BenchOptions) -> Result<(), String> {
    let mut no_callgrind = options.no_callgrind;
    if !no_callgrind && let Err(message) = ensure_valgrind() {
        println!("instruction counts skipped: {message}");
        no_callgrind = true;
    }
    let mut command = process::cargo();
    command.current_dir(process::repo_root()).args([
        "bench",
        "-p",
        "paging-benches",
        "--bench",
        "paging",
        "--",
    ]);
    // Line tables (no change to the generated code) let the profiles of
    // missed targets name the source file of inlined code.
    command.env("CARGO_PROFILE_BENCH_DEBUG", "line-tables-only");
    if options.quick {
        command.arg("--quick");
    }
    if no_callgrind {
        command.arg("--no-callgrind");
    }
    process::run(&mut command)
}

/// Whether `valgrind --version` runs.
fn valgrind_runs() -> bool {
    Command::new("valgrind")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// Whether this process runs as root (uid 0), read from `/proc`.
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().next().map(|uid| uid == "0"))
        })
        .unwrap_or(false)
}

fn ensure_valgrind() -> Result<(), String> {
    if valgrind_runs() {
        return Ok(());
    }
    if !is_root() {
        return Err(format!(
            "valgrind is not on PATH; install it with\n    sudo apt-get install -y --no-install-recommends {VALGRIND_PACKAGE}"
        ));
    }
    println!("valgrind is not on PATH; installing {VALGRIND_PACKAGE}");
    for args in [
        &["update"][..],
        &["install", "-y", "--no-install-recommends", VALGRIND_PACKAGE][..],
    ] {
        process::run(
            Command::new("apt-get")
                .args(args)
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )?;
    }
    if valgrind_runs() {
        Ok(())
    } else {
        Err(format!(
            "valgrind still does not run after installing {VALGRIND_PACKAGE}"
        ))
    }
}
