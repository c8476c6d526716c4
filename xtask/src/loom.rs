//! `cargo xtask loom [--preemptions N]`: model-check the kmap pool's
//! map/unmap/wrap/wait protocol with loom (`kmap/tests/loom.rs`).
//!
//! The test is built with `RUSTFLAGS="--cfg loom"`, which swaps the pool's
//! lock and atomics for loom's (`kmap/src/sync.rs`), in its own target
//! directory so the flag does not invalidate the normal build. loom
//! explores every interleaving with at most `N` preemptions per execution
//! (`LOOM_MAX_PREEMPTIONS`); the number of executions grows about tenfold
//! per step: 2 is about 2,000 executions, 3 about 40,000 (a few seconds,
//! the `loom` step of `cargo xtask test`), 4 about 560,000 (a minute, the
//! default here), 5 about six million (several minutes).

use std::path::PathBuf;

use crate::{option_value, process};

/// Preemption bound of the `loom` step of `cargo xtask test`.
pub const CI_PREEMPTIONS: u32 = 3;

/// Preemption bound of `cargo xtask loom` unless `--preemptions` says.
const DEFAULT_PREEMPTIONS: u32 = 4;

/// Parses `[--preemptions N]`, returning the bound.
pub fn parse(args: &[String]) -> Result<u32, String> {
    let mut preemptions = DEFAULT_PREEMPTIONS;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--preemptions" => {
                let value = option_value(arg, &mut args)?;
                preemptions = value
                    .parse()
                    .map_err(|_| format!("--preemptions expects a number, got `{value}`"))?;
            }
            other => return Err(format!("unknown option `{other}` for loom")),
        }
    }
    Ok(preemptions)
}

/// Where the `--cfg loom` build goes: beside the normal one.
fn target_dir() -> PathBuf {
    let base = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| process::repo_root().join("target"));
    base.join("loom")
}

/// Runs the model test with at most `preemptions` preemptions per
/// execution.
pub fn run(preemptions: u32) -> Result<(), String> {
    let mut rustflags = std::env::var("RUSTFLAGS").unwrap_or_default();
    if !rustflags.is_empty() {
        rustflags.push(' ');
    }
    rustflags.push_str("--cfg loom");
    let mut command = process::cargo();
    command
        .current_dir(process::repo_root())
        .args([
            "test",
            "-p",
            "kmap",
            "--features",
            "loom",
            "--test",
            "loom",
            "--release",
        ])
        .args(["--", "--nocapture"])
        .env("RUSTFLAGS", rustflags)
        .env("LOOM_MAX_PREEMPTIONS", preemptions.to_string())
        .env("CARGO_TARGET_DIR", target_dir());
    println!("loom: at most {preemptions} preemptions per execution");
    process::run(&mut command)
}
