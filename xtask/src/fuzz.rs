//! `cargo xtask fuzz [--target NAME] [--seconds N]`: run the cargo-fuzz
//! targets in `fuzz/` (libFuzzer, nightly) for a bounded time each.
//!
//! Installs what it needs: the nightly toolchain (rustup) and `cargo-fuzz`
//! (`cargo install`). Each target starts from its corpus (`fuzz/corpus/T`,
//! not committed) and the saved inputs in `fuzz/regressions/T` (committed,
//! replayed by `cargo test -p fuzz-support`). A crash stops the run and
//! leaves its input in `fuzz/artifacts/T/`: fix the bug, then copy the
//! input (minimised with `cargo +nightly fuzz tmin T FILE`) into
//! `fuzz/regressions/T/`.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use crate::summary::{Status, Table};
use crate::{nightly, option_value, process};

/// The fuzz targets (binaries of `fuzz/Cargo.toml`).
pub const TARGETS: [&str; 3] = ["mapper_ops", "kmap_ops", "multiboot"];

/// Seconds per target unless `--seconds` says otherwise.
const DEFAULT_SECONDS: u64 = 60;

/// Longest input libFuzzer generates (bytes): enough for a few hundred
/// operations.
const MAX_LEN: u32 = 4096;

/// Options of `cargo xtask fuzz`.
#[derive(Debug)]
pub struct FuzzOptions {
    targets: Vec<&'static str>,
    seconds: u64,
}

/// Parses `[--target NAME] [--seconds N]`.
pub fn parse(args: &[String]) -> Result<FuzzOptions, String> {
    let mut options = FuzzOptions {
        targets: TARGETS.to_vec(),
        seconds: DEFAULT_SECONDS,
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--target" => {
                let name = option_value(arg, &mut args)?;
                let target = TARGETS.iter().find(|&&t| t == name).ok_or_else(|| {
                    format!(
                        "unknown fuzz target `{name}` (targets: {})",
                        TARGETS.join(", ")
                    )
                })?;
                options.targets = vec![target];
            }
            "--seconds" => {
                let value = option_value(arg, &mut args)?;
                options.seconds = match value.parse::<u64>() {
                    Ok(n) if n > 0 => n,
                    _ => {
                        return Err(format!(
                            "--seconds expects a positive number, got `{value}`"
                        ));
                    }
                };
            }
            other => return Err(format!("unknown option `{other}` for fuzz")),
        }
    }
    Ok(options)
}

fn fuzz_dir() -> PathBuf {
    process::repo_root().join("fuzz")
}

/// Installs cargo-fuzz if `cargo fuzz` does not run.
fn ensure_cargo_fuzz() -> Result<(), String> {
    let runs = nightly::cargo()
        .args(["fuzz", "--version"])
        .output()
        .is_ok_and(|out| out.status.success());
    if runs {
        return Ok(());
    }
    println!("cargo-fuzz is missing; installing it");
    process::run(Command::new("cargo").args(["install", "cargo-fuzz", "--locked"]))
}

/// Runs every selected target for the given time, stopping at the first
/// crash.
pub fn run(options: &FuzzOptions) -> Result<(), String> {
    nightly::ensure(&[])?;
    ensure_cargo_fuzz()?;
    let dir = fuzz_dir();
    let mut table = Table::new("fuzz target");
    let mut failure = None;
    for &target in &options.targets {
        if failure.is_some() {
            table.add(target, Status::NotRun, "", None);
            continue;
        }
        let corpus = dir.join("corpus").join(target);
        std::fs::create_dir_all(&corpus)
            .map_err(|e| format!("cannot create {}: {e}", corpus.display()))?;
        println!("\n==> fuzz {target} for {} s", options.seconds);
        let started = Instant::now();
        let mut command = nightly::cargo();
        command
            .current_dir(&dir)
            // Safe Rust turns an out-of-bounds access into a panic; without
            // AddressSanitizer the targets run several times faster.
            .args(["fuzz", "run", "--sanitizer", "none", target])
            .arg(&corpus)
            .arg(dir.join("regressions").join(target))
            .arg("--")
            .arg(format!("-max_total_time={}", options.seconds))
            .arg(format!("-max_len={MAX_LEN}"));
        let result = process::run(&mut command).map_err(|e| {
            format!(
                "{e}\nthe crashing input is in {}; fix the bug, then add it to {}",
                dir.join("artifacts").join(target).display(),
                dir.join("regressions").join(target).display()
            )
        });
        let detail = match &result {
            Ok(()) => format!("{} s, no crash", options.seconds),
            Err(e) => e.lines().next().unwrap_or_default().to_string(),
        };
        let status = if result.is_ok() {
            Status::Pass
        } else {
            Status::Fail
        };
        table.add(target, status, detail, Some(started.elapsed()));
        failure = result.err();
    }
    table.print();
    failure.map_or(Ok(()), Err)
}
