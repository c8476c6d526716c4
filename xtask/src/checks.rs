//! `cargo xtask test`: every check, in order, stopping at the first failure.
//!
//! 1. prerequisites ([`crate::prereq`]);
//! 2. `fmt`: `cargo fmt --check` for the workspace and the kernel;
//! 3. `clippy`: the workspace (all targets, all features) and the kernel in
//!    both modes, warnings denied;
//! 4. `doc`: `cargo doc` for the workspace with warnings denied;
//! 5. `test`: `cargo test` for the workspace, all features;
//! 6. `i586`: every library crate (every workspace member but xtask) built
//!    for the bare-metal target;
//! 7. `qemu`: the kernel built in both modes and booted in the QEMU matrix,
//!    plus the two crash demos that must be caught and reported.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::kernel::{self, Mode, TARGET};
use crate::qemu::{self, Expect};
use crate::summary::{Status, Table};
use crate::{DEFAULT_TIMEOUT_SECS, option_value, parse_timeout, prereq, process};

/// The steps, in the order they run.
const STEPS: [&str; 6] = ["fmt", "clippy", "doc", "test", "i586", "qemu"];

/// The QEMU matrix: mode and guest RAM. 2-level at a small size and at its
/// 2 GiB default; PAE at 2 GiB and at 8 GiB (RAM above 4 GiB).
const MATRIX: [(Mode, &str); 4] = [
    (Mode::TwoLevel, "128M"),
    (Mode::TwoLevel, "2G"),
    (Mode::Pae, "2G"),
    (Mode::Pae, "8G"),
];

/// Crash demos: the kernel must catch and report these, then exit 35.
const CRASH_DEMOS: [&str; 2] = ["fault=page", "fault=stack-overflow"];

/// Options of `cargo xtask test`.
#[derive(Debug)]
pub struct TestOptions {
    steps: Vec<&'static str>,
    timeout: Duration,
}

/// Parses the options of `test`.
pub fn parse(args: &[String]) -> Result<TestOptions, String> {
    let mut steps: Vec<&'static str> = STEPS.to_vec();
    let mut no_qemu = false;
    let mut timeout = Duration::from_secs(DEFAULT_TIMEOUT_SECS);
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--no-qemu" => no_qemu = true,
            "--only" => steps = parse_only(option_value(arg, &mut args)?)?,
            "--timeout" => timeout = parse_timeout(option_value(arg, &mut args)?)?,
            other => return Err(format!("unknown option `{other}` for test")),
        }
    }
    if no_qemu {
        steps.retain(|&step| step != "qemu");
    }
    Ok(TestOptions { steps, timeout })
}

fn parse_only(list: &str) -> Result<Vec<&'static str>, String> {
    let mut wanted: Vec<&'static str> = Vec::new();
    for name in list.split(',') {
        match name {
            "host" => wanted.extend(STEPS.iter().copied().filter(|&step| step != "qemu")),
            _ => match STEPS.iter().find(|&&step| step == name) {
                Some(&step) => wanted.push(step),
                None => {
                    return Err(format!(
                        "unknown step `{name}` (steps: {}, or host)",
                        STEPS.join(", ")
                    ));
                }
            },
        }
    }
    // Keep the canonical order.
    Ok(STEPS
        .iter()
        .copied()
        .filter(|step| wanted.contains(step))
        .collect())
}

/// Runs the selected steps.
pub fn run(options: &TestOptions) -> Result<(), String> {
    let mut table = Table::new("step");
    let started = Instant::now();
    let needs_qemu = options.steps.contains(&"qemu");
    let result = prereq::ensure(needs_qemu);
    table.add(
        "prerequisites",
        status_of(&result),
        detail_of(&result),
        Some(started.elapsed()),
    );
    let mut failure = result.err();

    for &step in STEPS.iter().filter(|step| options.steps.contains(step)) {
        if failure.is_some() {
            table.add(step, Status::NotRun, "", None);
            continue;
        }
        println!("\n==> step {step}");
        let started = Instant::now();
        let result = match step {
            "fmt" => fmt(),
            "clippy" => clippy(),
            "doc" => doc(),
            "test" => test(),
            "i586" => i586(),
            _ => qemu_matrix(options.timeout, &mut table),
        };
        table.add(
            step,
            status_of(&result),
            detail_of(&result),
            Some(started.elapsed()),
        );
        failure = result
            .err()
            .map(|error| format!("step `{step}` failed: {error}"));
    }
    table.print();
    match failure {
        Some(error) => Err(error),
        None => {
            println!("\nall {} selected steps passed", options.steps.len());
            Ok(())
        }
    }
}

fn status_of(result: &Result<(), String>) -> Status {
    if result.is_ok() {
        Status::Pass
    } else {
        Status::Fail
    }
}

fn detail_of(result: &Result<(), String>) -> String {
    match result {
        Ok(()) => String::new(),
        Err(error) => error.lines().next().unwrap_or_default().to_string(),
    }
}

/// A cargo command run at the workspace root.
fn workspace_cargo(args: &[&str]) -> Command {
    let mut command = process::cargo();
    command.current_dir(process::repo_root()).args(args);
    command
}

fn fmt() -> Result<(), String> {
    process::run(&mut workspace_cargo(&["fmt", "--all", "--check"]))?;
    kernel::fmt_check()
}

fn clippy() -> Result<(), String> {
    process::run(&mut workspace_cargo(&[
        "clippy",
        "--workspace",
        "--all-targets",
        "--all-features",
        "--",
        "-D",
        "warnings",
    ]))?;
    Mode::ALL.into_iter().try_for_each(kernel::clippy)
}

fn doc() -> Result<(), String> {
    let mut command = workspace_cargo(&["doc", "--workspace", "--no-deps", "--all-features"]);
    command.env("RUSTDOCFLAGS", "-D warnings");
    process::run(&mut command)
}

fn test() -> Result<(), String> {
    process::run(&mut workspace_cargo(&[
        "test",
        "--workspace",
        "--all-features",
    ]))
}

/// Builds every library crate (workspace members except xtask) for the
/// bare-metal target.
fn i586() -> Result<(), String> {
    process::run(&mut workspace_cargo(&[
        "build",
        "--target",
        TARGET,
        "--workspace",
        "--exclude",
        "xtask",
        "--lib",
    ]))
}

/// Builds the kernel in both modes and boots the matrix and crash demos;
/// adds one row per boot to `table`.
fn qemu_matrix(timeout: Duration, table: &mut Table) -> Result<(), String> {
    let mut elves = Vec::new();
    for mode in Mode::ALL {
        elves.push((mode, kernel::build(mode)?));
    }
    let elf_of = |mode: Mode| -> &Path {
        elves
            .iter()
            .find(|(m, _)| *m == mode)
            .map(|(_, elf)| elf.as_path())
            .unwrap_or(Path::new(""))
    };
    let mut boots: Vec<qemu::Boot> = MATRIX
        .iter()
        .map(|&(mode, mem)| qemu::Boot {
            elf: elf_of(mode).to_path_buf(),
            mode,
            mem: mem.to_string(),
            cpu: mode.qemu_cpu().to_string(),
            cmdline: None,
            timeout,
            expect: Expect::Pass,
        })
        .collect();
    for demo in CRASH_DEMOS {
        boots.push(qemu::Boot {
            elf: elf_of(Mode::TwoLevel).to_path_buf(),
            mode: Mode::TwoLevel,
            mem: "128M".to_string(),
            cpu: Mode::TwoLevel.qemu_cpu().to_string(),
            cmdline: Some(demo.to_string()),
            timeout,
            expect: Expect::for_cmdline(Some(demo)),
        });
    }
    let mut failed = Vec::new();
    for boot in &boots {
        println!();
        let outcome = qemu::boot(boot)?;
        if !outcome.passed {
            failed.push(boot.label());
        }
        table.push(format!("  qemu {}", boot.label()), outcome);
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} of {} boots failed: {}",
            failed.len(),
            boots.len(),
            failed.join("; ")
        ))
    }
}
