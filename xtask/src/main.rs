//! `cargo xtask`: builds the example kernel, boots it in QEMU and runs every
//! check of the workspace.
//!
//! ```text
//! cargo xtask run  [--mode 2level|pae|both] [--mem SIZE] [--cpu MODEL]
//!                  [--cmdline TEXT] [--timeout SECS]
//! cargo xtask test [--no-qemu] [--only STEP[,STEP...]] [--timeout SECS]
//! ```
//!
//! `test` steps, in order: `fmt`, `clippy`, `doc`, `test`, `i586`, `qemu`
//! (`--only host` selects every step but `qemu`). Prerequisites (target,
//! components, QEMU) are checked first by both commands.

mod checks;
mod kernel;
mod prereq;
mod process;
mod qemu;
mod summary;

use std::process::ExitCode;
use std::time::Duration;

use kernel::Mode;

/// Seconds one QEMU boot may take before it is killed.
const DEFAULT_TIMEOUT_SECS: u64 = 120;

const USAGE: &str = "\
usage: cargo xtask <command> [options]

commands:
  run    build the example kernel and boot it in QEMU
           --mode 2level|pae|both   paging mode(s) (default: both)
           --mem SIZE               guest RAM, QEMU syntax, e.g. 512M, 2G
                                    (default: 2G for 2level, 8G for pae)
           --cpu MODEL              QEMU -cpu value (default: qemu32 for
                                    2level, max for pae)
           --cmdline TEXT           kernel command line (e.g. fault=page,
                                    fault=stack-overflow)
           --timeout SECS           per boot (default: 120)
  test   run every check in order, stopping at the first failure
           --only STEP[,STEP...]    only these steps: fmt, clippy, doc, test,
                                    i586, qemu, or host (all but qemu)
           --no-qemu                skip the qemu step
           --timeout SECS           per QEMU boot (default: 120)
  help   print this message";

/// Options of `cargo xtask run`.
#[derive(Debug)]
struct RunOptions {
    modes: Vec<Mode>,
    mem: Option<String>,
    cpu: Option<String>,
    cmdline: Option<String>,
    timeout: Duration,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("run") => parse_run(&args[1..]).and_then(|options| run(&options)),
        Some("test") => checks::parse(&args[1..]).and_then(|options| checks::run(&options)),
        Some("help" | "--help" | "-h") | None => {
            println!("{USAGE}");
            Ok(())
        }
        Some(other) => Err(format!("unknown command `{other}`\n\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("\nxtask: error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Returns the value following option `name`, or an error.
fn option_value<'a>(
    name: &str,
    args: &mut impl Iterator<Item = &'a String>,
) -> Result<&'a String, String> {
    args.next().ok_or_else(|| format!("{name} needs a value"))
}

/// Parses `--timeout SECS`.
fn parse_timeout(value: &str) -> Result<Duration, String> {
    match value.parse::<u64>() {
        Ok(secs) if secs > 0 => Ok(Duration::from_secs(secs)),
        _ => Err(format!(
            "--timeout expects a positive number of seconds, got `{value}`"
        )),
    }
}

fn parse_run(args: &[String]) -> Result<RunOptions, String> {
    let mut options = RunOptions {
        modes: Mode::ALL.to_vec(),
        mem: None,
        cpu: None,
        cmdline: None,
        timeout: Duration::from_secs(DEFAULT_TIMEOUT_SECS),
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--mode" => options.modes = Mode::parse_list(option_value(arg, &mut args)?)?,
            "--mem" => options.mem = Some(qemu::check_mem_size(option_value(arg, &mut args)?)?),
            "--cpu" => options.cpu = Some(option_value(arg, &mut args)?.clone()),
            "--cmdline" => options.cmdline = Some(option_value(arg, &mut args)?.clone()),
            "--timeout" => options.timeout = parse_timeout(option_value(arg, &mut args)?)?,
            other => return Err(format!("unknown option `{other}` for run\n\n{USAGE}")),
        }
    }
    Ok(options)
}

/// `cargo xtask run`: build and boot each requested mode.
fn run(options: &RunOptions) -> Result<(), String> {
    prereq::ensure(true)?;
    let mut table = summary::Table::new("boot");
    let mut failures = 0;
    for &mode in &options.modes {
        let elf = kernel::build(mode)?;
        let boot = qemu::Boot {
            elf,
            mode,
            mem: options
                .mem
                .clone()
                .unwrap_or_else(|| mode.default_mem().to_string()),
            cpu: options
                .cpu
                .clone()
                .unwrap_or_else(|| mode.qemu_cpu().to_string()),
            cmdline: options.cmdline.clone(),
            timeout: options.timeout,
            expect: qemu::Expect::for_cmdline(options.cmdline.as_deref()),
        };
        let outcome = qemu::boot(&boot)?;
        if !outcome.passed {
            failures += 1;
        }
        table.push(boot.label(), outcome);
    }
    table.print();
    if failures == 0 {
        Ok(())
    } else {
        Err(format!("{failures} boot(s) failed"))
    }
}
