//! `cargo xtask mutants [--crate NAME] [--jobs N] [--timeout SECS] [--list]`:
//! mutation testing with cargo-mutants over the code whose behaviour the
//! tests pin down (docs/testing.md).
//!
//! Each crate has a fixed file set (the mapper, walker, sync and flush code
//! of paging-core, kmap's pool, local slots, policies and reservations,
//! fixmap's window and layout). cargo-mutants copies the workspace to a
//! scratch directory, applies one mutant at a time, rebuilds and runs the
//! crate's own tests (not the doctests: `cargo test --tests`); a mutant no
//! test notices is *missed*. The settings shared by every crate (the
//! `mutants` profile, uncapped lints) are in `.cargo/mutants.toml`.
//!
//! A crate may name slow tests its first pass skips
//! ([`CrateSet::first_pass_skips`]); the mutants that pass are then run
//! again with the whole suite (results in `mutants.out` and
//! `full-suite/mutants.out`), so only a mutant that survives every test
//! counts as missed.
//!
//! cargo-mutants' results go to `target/mutants/<crate>/mutants.out/`
//! (`caught.txt`, `missed.txt`, `timeout.txt`, `unviable.txt`,
//! `outcomes.json`, one log per mutant); the figures of both passes
//! together to `target/mutants/<crate>/result/`. `--retest-missed` runs
//! only the mutants listed in `result/missed.txt` again (after tests were
//! added for them) and updates `result/`. The score
//! is caught / (caught + missed), with timeouts counted as caught (a mutant
//! that makes a test hang is noticed) and unviable mutants (ones that do
//! not compile) left out. The command fails if any crate scores below
//! [`TARGET_PERCENT`].
//!
//! The run is slow (hundreds of rebuilds): run it under `nice`, e.g.
//! `nice -n 19 cargo xtask mutants --crate fixmap`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::{option_value, process};

/// The score (percent of viable mutants caught) each crate must reach.
pub const TARGET_PERCENT: f64 = 90.0;

/// Property-test cases per test run: the default of
/// `paging-core/tests/proptest_mapper.rs` (1,000 operation sequences) would
/// dominate every mutant's test time. Overridden by `PROPTEST_CASES` in the
/// environment.
const PROPTEST_CASES: &str = "20";

/// One crate under mutation testing.
#[derive(Debug)]
pub struct CrateSet {
    /// Package name.
    pub name: &'static str,
    /// Files whose mutants are tested, relative to the workspace root.
    pub files: &'static [&'static str],
    /// Cargo features the tests need.
    pub features: &'static [&'static str],
    /// Seconds one mutant's test run may take before it counts as a
    /// timeout (in the first pass, which skips `first_pass_skips`).
    pub test_timeout_secs: u64,
    /// The same for a run of the whole suite (the second pass and
    /// `--retest-missed`): the slow tests the first pass skips take most
    /// of it.
    pub whole_suite_timeout_secs: u64,
    /// Seconds one mutant's build may take (the first build of a scratch
    /// copy compiles every dependency).
    pub build_timeout_secs: u64,
    /// Test-name filters skipped in the first pass (slow tests). The
    /// mutants that pass survive only if the whole suite, these tests
    /// included, also passes in the second pass.
    pub first_pass_skips: &'static [&'static str],
}

/// Every crate `cargo xtask mutants` covers, in the order they run
/// (smallest first).
pub const CRATES: [CrateSet; 4] = [
    CrateSet {
        name: "fixmap",
        files: &["fixmap/src/window.rs", "fixmap/src/layout.rs"],
        features: &[],
        test_timeout_secs: 60,
        whole_suite_timeout_secs: 60,
        first_pass_skips: &[],
        // fixmap's layout arithmetic runs in const eval, once per layout
        // the tests declare: a mutant that makes `first_in_one_table` loop
        // keeps rustc busy for many minutes before `long_running_const_eval`
        // stops each evaluation. Such a build is cut off here and reported
        // as a timeout (an unmutated build takes well under a minute).
        build_timeout_secs: 120,
    },
    CrateSet {
        name: "kmap",
        files: &[
            "kmap/src/pool/*.rs",
            "kmap/src/local.rs",
            "kmap/src/policy.rs",
            "kmap/src/reserve.rs",
        ],
        features: &[],
        // The stress test's watchdog fails a deadlocked run after 60 s.
        test_timeout_secs: 90,
        // The whole suite: about 15 s unloaded, but over 120 s with a
        // loaded machine (`ipis_per_100k_kmaps` alone took 75 s), which a
        // 90 s limit would count as caught.
        whole_suite_timeout_secs: 300,
        build_timeout_secs: 900,
        // 100,000 maps per policy and mode (twice: the flush bounds and
        // the IPI figures of the SMP model), and eight threads contending
        // for a small pool: most of an unoptimised test run, so only the
        // first pass's survivors run them.
        first_pass_skips: &[
            "flush_counts_meet_their_bounds",
            "ipis_per_100k_kmaps",
            "eight_threads_",
        ],
    },
    CrateSet {
        name: "paging-core",
        files: &[
            "paging-core/src/mapper/*.rs",
            "paging-core/src/mappings.rs",
            "paging-core/src/walk.rs",
            "paging-core/src/sync/*.rs",
            "paging-core/src/pgtbuf.rs",
            "paging-core/src/flush.rs",
        ],
        features: &[],
        // No first-pass skips: every pass runs the whole suite, which took
        // 80 s per mutant on a loaded machine (the `split.rs` retest on
        // `6a4eb02`, load average 7 to 9); a 60 s limit would count every
        // survivor as a timeout, that is as caught.
        test_timeout_secs: 300,
        whole_suite_timeout_secs: 300,
        build_timeout_secs: 900,
        first_pass_skips: &[],
    },
    CrateSet {
        name: "tlb-shootdown",
        files: &[
            "tlb-shootdown/src/shootdown.rs",
            "tlb-shootdown/src/request.rs",
            "tlb-shootdown/src/cpuset.rs",
        ],
        features: &[],
        // The host-model tests run four simulated CPUs on threads.
        test_timeout_secs: 90,
        whole_suite_timeout_secs: 90,
        build_timeout_secs: 900,
        first_pass_skips: &[],
    },
];

/// Options of `cargo xtask mutants`.
#[derive(Debug)]
pub struct MutantsOptions {
    crates: Vec<&'static CrateSet>,
    jobs: u32,
    timeout: Option<u64>,
    list: bool,
    skip_baseline: bool,
    retest_missed: bool,
}

/// Parses `[--crate NAME] [--jobs N] [--timeout SECS] [--list]
/// [--skip-baseline] [--retest-missed]`.
pub fn parse(args: &[String]) -> Result<MutantsOptions, String> {
    let mut options = MutantsOptions {
        crates: CRATES.iter().collect(),
        jobs: 1,
        timeout: None,
        list: false,
        skip_baseline: false,
        retest_missed: false,
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--crate" => {
                let name = option_value(arg, &mut args)?;
                options.crates = if name == "all" {
                    CRATES.iter().collect()
                } else {
                    let set = CRATES.iter().find(|c| c.name == name).ok_or_else(|| {
                        let names: Vec<_> = CRATES.iter().map(|c| c.name).collect();
                        format!("unknown crate `{name}` (one of {}, all)", names.join(", "))
                    })?;
                    vec![set]
                };
            }
            "--jobs" | "-j" => {
                let value = option_value(arg, &mut args)?;
                options.jobs = match value.parse::<u32>() {
                    Ok(n) if n > 0 => n,
                    _ => return Err(format!("--jobs expects a positive number, got `{value}`")),
                };
            }
            "--timeout" => {
                let value = option_value(arg, &mut args)?;
                options.timeout = Some(crate::parse_timeout(value)?.as_secs());
            }
            "--list" => options.list = true,
            "--skip-baseline" => options.skip_baseline = true,
            "--retest-missed" => options.retest_missed = true,
            other => return Err(format!("unknown option `{other}` for mutants")),
        }
    }
    Ok(options)
}

/// Installs cargo-mutants if `cargo mutants` does not run.
fn ensure_cargo_mutants() -> Result<(), String> {
    let runs = process::cargo()
        .args(["mutants", "--version"])
        .output()
        .is_ok_and(|out| out.status.success());
    if runs {
        return Ok(());
    }
    println!("cargo-mutants is missing; installing it");
    process::run(process::cargo().args(["install", "--locked", "cargo-mutants"]))
}

/// Where the results of `set` go: `target/mutants/<crate>/mutants.out`.
fn output_dir(set: &CrateSet) -> PathBuf {
    let base = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| process::repo_root().join("target"));
    base.join("mutants").join(set.name)
}

/// `cargo mutants` with the package, files and features of `set`.
fn command(set: &CrateSet) -> Command {
    let mut command = process::cargo();
    command
        .current_dir(process::repo_root())
        .args(["mutants", "--package", set.name]);
    for file in set.files {
        command.args(["--file", file]);
    }
    if !set.features.is_empty() {
        command.args(["--features", &set.features.join(",")]);
    }
    command
}

/// Counts of one run, read back from `mutants.out`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Mutants some test failed on.
    pub caught: Vec<String>,
    /// Mutants every test passed with.
    pub missed: Vec<String>,
    /// Mutants that did not build.
    pub unviable: Vec<String>,
    /// Mutants whose tests ran past the timeout (counted as caught).
    pub timeout: Vec<String>,
}

impl Outcome {
    /// Reads the `*.txt` lists of a `mutants.out` directory.
    pub fn read(dir: &Path) -> Result<Self, String> {
        let lines = |name: &str| -> Result<Vec<String>, String> {
            let path = dir.join(name);
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            Ok(text
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(str::to_string)
                .collect())
        };
        Ok(Self {
            caught: lines("caught.txt")?,
            missed: lines("missed.txt")?,
            unviable: lines("unviable.txt")?,
            timeout: lines("timeout.txt")?,
        })
    }

    /// Writes the four lists into `dir` (as cargo-mutants names them).
    pub fn write(&self, dir: &Path) -> Result<(), String> {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        for (name, list) in [
            ("caught.txt", &self.caught),
            ("missed.txt", &self.missed),
            ("unviable.txt", &self.unviable),
            ("timeout.txt", &self.timeout),
        ] {
            let path = dir.join(name);
            let mut text = list.join("\n");
            if !text.is_empty() {
                text.push('\n');
            }
            std::fs::write(&path, text)
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        }
        Ok(())
    }

    /// Percent of viable mutants caught, timeouts counted as caught; 100
    /// when there is no viable mutant.
    pub fn score(&self) -> f64 {
        let caught = (self.caught.len() + self.timeout.len()) as f64;
        let viable = caught + self.missed.len() as f64;
        if viable == 0.0 {
            100.0
        } else {
            100.0 * caught / viable
        }
    }
}

/// Runs (or lists) every selected crate, prints the per-crate figures and
/// the missed mutants, and fails if a crate is below [`TARGET_PERCENT`].
pub fn run(options: &MutantsOptions) -> Result<(), String> {
    ensure_cargo_mutants()?;
    if options.list {
        for set in &options.crates {
            let out = command(set)
                .arg("--list")
                .output()
                .map_err(|e| format!("cannot run cargo mutants --list: {e}"))?;
            if !out.status.success() {
                return Err(format!(
                    "cargo mutants --list failed for {}:\n{}",
                    set.name,
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
            let text = String::from_utf8_lossy(&out.stdout);
            print!("{text}");
            println!("{}: {} mutants\n", set.name, text.lines().count());
        }
        return Ok(());
    }
    let mut results = Vec::new();
    for set in &options.crates {
        let out = output_dir(set);
        let started = Instant::now();
        let outcome = if options.retest_missed {
            retest_missed(options, set, &out)?
        } else {
            full_run(options, set, &out)?
        };
        outcome.write(&out.join("result"))?;
        results.push((set.name, outcome, started.elapsed()));
    }
    print_summary(&results);
    let below: Vec<_> = results
        .iter()
        .filter(|(_, o, _)| o.score() < TARGET_PERCENT)
        .map(|(name, _, _)| *name)
        .collect();
    if below.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "below {TARGET_PERCENT}% caught: {}",
            below.join(", ")
        ))
    }
}

/// Every mutant of `set`: a first pass (without the crate's slow tests),
/// then its survivors with the whole suite.
fn full_run(options: &MutantsOptions, set: &CrateSet, out: &Path) -> Result<Outcome, String> {
    println!("\n==> mutants: {}", set.name);
    let mut outcome = run_pass(options, set, out, set.first_pass_skips, None)?;
    if !set.first_pass_skips.is_empty() && !outcome.missed.is_empty() {
        println!(
            "\n==> mutants: {}: the {} survivors again, with the tests the first pass skipped",
            set.name,
            outcome.missed.len()
        );
        let second = run_pass(
            options,
            set,
            &out.join("full-suite"),
            &[],
            Some(&outcome.missed),
        )?;
        outcome.caught.extend(second.caught);
        outcome.timeout.extend(second.timeout);
        outcome.missed = second.missed;
    }
    Ok(outcome)
}

/// The mutants the last run of `set` missed (`out/result/missed.txt`),
/// tested again with the whole suite (after tests were added for them);
/// the figures of the last run are updated.
fn retest_missed(options: &MutantsOptions, set: &CrateSet, out: &Path) -> Result<Outcome, String> {
    let mut outcome = Outcome::read(&out.join("result")).map_err(|e| {
        format!(
            "{e}\n(run `cargo xtask mutants --crate {}` first)",
            set.name
        )
    })?;
    println!(
        "\n==> mutants: {}: the {} mutants the last run missed",
        set.name,
        outcome.missed.len()
    );
    if outcome.missed.is_empty() {
        return Ok(outcome);
    }
    let again = run_pass(
        options,
        set,
        &out.join("retest"),
        &[],
        Some(&outcome.missed),
    )?;
    outcome.caught.extend(again.caught);
    outcome.timeout.extend(again.timeout);
    outcome.missed = again.missed;
    Ok(outcome)
}

/// One cargo-mutants run over `set` with results in `out/mutants.out`:
/// every mutant, or only those named in `only`; tests matching `skips`
/// are not run.
fn run_pass(
    options: &MutantsOptions,
    set: &CrateSet,
    out: &Path,
    skips: &[&str],
    only: Option<&[String]>,
) -> Result<Outcome, String> {
    std::fs::create_dir_all(out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    let timeout = pass_timeout(options, set, skips);
    let mut command = command(set);
    command
        .args(["--jobs", &options.jobs.to_string()])
        .args(["--timeout", &timeout.to_string()])
        .args(["--build-timeout", &set.build_timeout_secs.to_string()])
        .arg("--output")
        .arg(out);
    if options.skip_baseline || only.is_some() {
        // A second pass only runs after a first one whose baseline passed.
        command.args(["--baseline", "skip"]);
    }
    for name in only.unwrap_or_default() {
        command.args(["--re", &format!("^{}$", regex_escape(name))]);
    }
    if std::env::var_os("PROPTEST_CASES").is_none() {
        command.env("PROPTEST_CASES", PROPTEST_CASES);
    }
    // After cargo-mutants' own `--`: arguments of `cargo test` (no
    // doctests), then, after cargo's `--`, of the test binaries.
    command.args(["--", "--tests"]);
    if !skips.is_empty() {
        command.arg("--");
        for skip in skips {
            command.args(["--skip", skip]);
        }
    }
    let status = command
        .status()
        .map_err(|e| format!("cannot start cargo mutants: {e}"))?;
    // 0: all caught; 2: some missed; 3: some timed out. Anything else
    // (usage error, failing baseline, internal error) left no result.
    if !matches!(status.code(), Some(0 | 2 | 3)) {
        return Err(format!("cargo mutants failed for {} ({status})", set.name));
    }
    Outcome::read(&out.join("mutants.out"))
}

/// A mutant's test-time limit in a pass of `set` that skips `skips`:
/// `--timeout` if given, else the set's limit for the first pass or for
/// the whole suite.
fn pass_timeout(options: &MutantsOptions, set: &CrateSet, skips: &[&str]) -> u64 {
    options.timeout.unwrap_or(if skips.is_empty() {
        set.whole_suite_timeout_secs
    } else {
        set.test_timeout_secs
    })
}

/// `text` with every regex metacharacter escaped.
fn regex_escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if "\\.+*?()|[]{}^$#&-~".contains(c) {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// Prints the per-crate table, then every missed mutant.
fn print_summary(results: &[(&str, Outcome, Duration)]) {
    println!();
    println!(
        "{:12} {:>7} {:>7} {:>9} {:>8} {:>7} {:>8}",
        "crate", "caught", "missed", "unviable", "timeout", "score", "time"
    );
    println!("{}", "-".repeat(64));
    for (name, o, elapsed) in results {
        println!(
            "{:12} {:>7} {:>7} {:>9} {:>8} {:>6.1}% {:>7}m",
            name,
            o.caught.len(),
            o.missed.len(),
            o.unviable.len(),
            o.timeout.len(),
            o.score(),
            elapsed.as_secs().div_ceil(60)
        );
    }
    println!("(score: caught / (caught + missed), timeouts counted as caught)");
    for (name, o, _) in results {
        if o.missed.is_empty() {
            continue;
        }
        println!("\nmissed in {name}:");
        for m in &o.missed {
            println!("  {m}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(name: &str) -> &'static CrateSet {
        CRATES.iter().find(|s| s.name == name).unwrap()
    }

    #[test]
    fn a_whole_suite_pass_of_kmap_gets_the_longer_limit() {
        let options = parse(&[]).unwrap();
        let kmap = set("kmap");
        assert_eq!(pass_timeout(&options, kmap, kmap.first_pass_skips), 90);
        assert_eq!(pass_timeout(&options, kmap, &[]), 300);
        let core = set("paging-core");
        assert_eq!(pass_timeout(&options, core, &[]), 300);
        let given = parse(&["--timeout".into(), "20".into()]).unwrap();
        assert_eq!(pass_timeout(&given, kmap, &[]), 20);
        assert_eq!(pass_timeout(&given, kmap, kmap.first_pass_skips), 20);
    }
}
