//! `cargo xtask loom [--preemptions N]`: model-check the kmap pool's
//! map/unmap/wrap/wait protocol (`kmap/tests/loom.rs`) and the TLB
//! shootdown protocol (`tlb-shootdown/tests/loom.rs`) with loom.
//!
//! The tests are built with `RUSTFLAGS="--cfg loom"`, which swaps the
//! crates' locks and atomics for loom's (`kmap/src/sync.rs`,
//! `tlb-shootdown/src/sync.rs`), in their own target directory so the flag
//! does not invalidate the normal build. loom
//! explores every interleaving with at most `N` preemptions per execution
//! (`LOOM_MAX_PREEMPTIONS`); the number of executions grows about tenfold
//! per step. The kmap models (seven, three of them on the lock-free hit
//! path) explore about 260,000 executions at 3 (about 80 s of release-built
//! model on two shared cores: the `loom` step of `cargo xtask test`); 4 (the
//! default here) explores roughly ten times as many.
//!
//! The shootdown's models (three CPUs initiating at once) grow faster:
//! about 20 s at 2 on two shared cores, over 14 minutes at 3. Their bound
//! is capped at [`SHOOTDOWN_MAX_PREEMPTIONS`].

use std::path::PathBuf;

use crate::{option_value, process};

/// Preemption bound of the `loom` step of `cargo xtask test`.
pub const CI_PREEMPTIONS: u32 = 3;

/// Preemption bound of `cargo xtask loom` unless `--preemptions` says.
const DEFAULT_PREEMPTIONS: u32 = 4;

/// The highest preemption bound the shootdown's models run at.
pub const SHOOTDOWN_MAX_PREEMPTIONS: u32 = 2;

/// The model tests: crate, and the highest bound it runs at.
const MODELS: [(&str, u32); 2] = [
    ("kmap", u32::MAX),
    ("tlb-shootdown", SHOOTDOWN_MAX_PREEMPTIONS),
];

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

/// Runs the model tests with at most `preemptions` preemptions per
/// execution (capped per crate, see [`MODELS`]).
pub fn run(preemptions: u32) -> Result<(), String> {
    let mut rustflags = std::env::var("RUSTFLAGS").unwrap_or_default();
    if !rustflags.is_empty() {
        rustflags.push(' ');
    }
    rustflags.push_str("--cfg loom");
    for (krate, cap) in MODELS {
        let bound = preemptions.min(cap);
        let mut command = process::cargo();
        command
            .current_dir(process::repo_root())
            .args([
                "test",
                "-p",
                krate,
                "--features",
                "loom",
                "--test",
                "loom",
                "--release",
            ])
            .args(["--", "--nocapture"])
            .env("RUSTFLAGS", &rustflags)
            .env("LOOM_MAX_PREEMPTIONS", bound.to_string())
            .env("CARGO_TARGET_DIR", target_dir());
        println!("loom: {krate}, at most {bound} preemptions per execution");
        process::run(&mut command)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_protocols_are_checked_and_the_shootdown_is_capped() {
        let crates: Vec<_> = MODELS.iter().map(|(c, _)| *c).collect();
        assert_eq!(crates, ["kmap", "tlb-shootdown"]);
        assert_eq!(CI_PREEMPTIONS.min(MODELS[0].1), CI_PREEMPTIONS);
        assert_eq!(CI_PREEMPTIONS.min(MODELS[1].1), SHOOTDOWN_MAX_PREEMPTIONS);
        assert_eq!(parse(&["--preemptions".into(), "1".into()]), Ok(1));
        assert_eq!(parse(&[]), Ok(DEFAULT_PREEMPTIONS));
    }
}
