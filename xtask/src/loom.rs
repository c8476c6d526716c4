//! `cargo xtask loom [--preemptions N] [--models NAME,...]`: model-check
//! with loom the kmap pool's map/unmap/wrap/wait protocol and the local
//! slots' per-CPU depth (`kmap/tests/loom.rs`), the fixmap's per-slot
//! compare-and-swap (`fixmap/tests/loom.rs`) and the TLB shootdown protocol
//! (`tlb-shootdown/tests/loom.rs`). `--models` runs only the models whose
//! test names contain one of the given names (libtest filters, e.g.
//! `--models fixmap_,local_`).
//!
//! The tests are built with `RUSTFLAGS="--cfg loom"`, which swaps the
//! crates' locks and atomics for loom's (`kmap/src/sync.rs`,
//! `tlb-shootdown/src/sync.rs`; the fixmap has no atomics of its own: its
//! model's table words are loom atomics), in their own target directory so
//! the flag does not invalidate the normal build. loom
//! explores every interleaving with at most `N` preemptions per execution
//! (`LOOM_MAX_PREEMPTIONS`); the number of executions grows about tenfold
//! per step. The kmap models (seven on the pool, three of them on the
//! lock-free hit path, and two of two threads on one CPU index of the local
//! slots) explore about 260,000 executions at 3, the fixmap's four about
//! 55,000 (65 s and 6 s of release-built model on two shared cores at load
//! average 14; the whole `loom` step of `cargo xtask test`, builds and the
//! shootdown included, took 145 s there); 4 (the default here) explores
//! roughly ten times as many.
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

/// The model tests: crate, whether it needs its `loom` feature (the swap
/// of its own atomics), and the highest bound it runs at.
const MODELS: [(&str, bool, u32); 3] = [
    ("kmap", true, u32::MAX),
    ("fixmap", false, u32::MAX),
    ("tlb-shootdown", true, SHOOTDOWN_MAX_PREEMPTIONS),
];

/// What `cargo xtask loom` runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Preemptions per execution.
    pub preemptions: u32,
    /// Test-name filters (every model if empty).
    pub models: Vec<String>,
}

impl Options {
    /// Every model at `preemptions`.
    pub fn all(preemptions: u32) -> Self {
        Self {
            preemptions,
            models: Vec::new(),
        }
    }
}

/// Parses `[--preemptions N] [--models NAME,...]`.
pub fn parse(args: &[String]) -> Result<Options, String> {
    let mut options = Options::all(DEFAULT_PREEMPTIONS);
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--preemptions" => {
                let value = option_value(arg, &mut args)?;
                options.preemptions = value
                    .parse()
                    .map_err(|_| format!("--preemptions expects a number, got `{value}`"))?;
            }
            "--models" => {
                let value = option_value(arg, &mut args)?;
                options.models = value
                    .split(',')
                    .filter(|m| !m.is_empty())
                    .map(str::to_string)
                    .collect();
                if options.models.is_empty() {
                    return Err("--models expects NAME[,NAME...]".into());
                }
            }
            other => return Err(format!("unknown option `{other}` for loom")),
        }
    }
    Ok(options)
}

/// Where the `--cfg loom` build goes: beside the normal one.
fn target_dir() -> PathBuf {
    let base = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| process::repo_root().join("target"));
    base.join("loom")
}

/// Runs the model tests (those `options.models` names, or all) with at most
/// `options.preemptions` preemptions per execution (capped per crate, see
/// [`MODELS`]).
pub fn run(options: Options) -> Result<(), String> {
    let started = std::time::Instant::now();
    let mut rustflags = std::env::var("RUSTFLAGS").unwrap_or_default();
    if !rustflags.is_empty() {
        rustflags.push(' ');
    }
    rustflags.push_str("--cfg loom");
    for (krate, feature, cap) in MODELS {
        let bound = options.preemptions.min(cap);
        let mut command = process::cargo();
        command.current_dir(process::repo_root()).args([
            "test",
            "-p",
            krate,
            "--test",
            "loom",
            "--release",
        ]);
        if feature {
            command.args(["--features", "loom"]);
        }
        command
            .args(["--", "--nocapture"])
            .args(&options.models)
            .env("RUSTFLAGS", &rustflags)
            .env("LOOM_MAX_PREEMPTIONS", bound.to_string())
            .env("CARGO_TARGET_DIR", target_dir());
        println!("loom: {krate}, at most {bound} preemptions per execution");
        process::run(&mut command)?;
    }
    println!("loom: passed in {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_protocol_is_checked_and_the_shootdown_is_capped() {
        let crates: Vec<_> = MODELS.iter().map(|(c, _, _)| *c).collect();
        assert_eq!(crates, ["kmap", "fixmap", "tlb-shootdown"]);
        assert_eq!(CI_PREEMPTIONS.min(MODELS[0].2), CI_PREEMPTIONS);
        assert_eq!(CI_PREEMPTIONS.min(MODELS[1].2), CI_PREEMPTIONS);
        assert_eq!(CI_PREEMPTIONS.min(MODELS[2].2), SHOOTDOWN_MAX_PREEMPTIONS);
        // The fixmap has no atomics of its own to swap: no `loom` feature.
        assert!(MODELS[0].1 && !MODELS[1].1 && MODELS[2].1);
        assert_eq!(
            parse(&["--preemptions".into(), "1".into()]),
            Ok(Options::all(1))
        );
        assert_eq!(parse(&[]), Ok(Options::all(DEFAULT_PREEMPTIONS)));
        let some = parse(&["--models".into(), "fixmap_,local_".into()]).unwrap();
        assert_eq!(some.models, ["fixmap_", "local_"]);
        assert!(parse(&["--models".into(), ",".into()]).is_err());
    }
}
