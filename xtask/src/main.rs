//! `cargo xtask`: builds the example kernel, boots it in QEMU and runs every
//! check of the workspace.
//!
//! ```text
//! cargo xtask run  [--kernel example|minimal] [--mode 2level|pae|both]
//!                  [--mem SIZE] [--cpu MODEL] [--cmdline TEXT]
//!                  [--smp N] [--timeout SECS]
//! cargo xtask test [--no-qemu] [--no-bochs] [--only STEP[,STEP...]]
//!                  [--timeout SECS]
//! cargo xtask bochs [--mode 2level|pae|both] [--mem SIZE] [--cmdline TEXT]
//!                   [--timeout SECS]
//! cargo xtask iso  [--default 2level|pae] [--timeout SECS] [--cmdline TEXT]
//!                  [--out PATH]
//! cargo xtask soak [--minutes N] [--emulator qemu|bochs] [--mode ...]
//! cargo xtask cpus [--mode 2level|pae|both] [--models A,B,...] [--jobs N]
//!                  [--timeout SECS]
//! cargo xtask memory-map
//! cargo xtask layers [--imports] [--src DIR]
//! cargo xtask fuzz [--target NAME] [--seconds N]
//! cargo xtask miri [--all]
//! cargo xtask loom [--preemptions N] [--models NAME,...]
//! cargo xtask mutants [--crate paging-core|kmap|fixmap|tlb-shootdown|all] [--jobs N]
//!                     [--timeout SECS] [--list] [--skip-baseline]
//!                     [--retest-missed]
//! ```
//!
//! `test` steps, in order: `fmt`, `clippy`, `doc`, `test`, `loom`, `miri`,
//! `i586`, `msrv`, `package`, `qemu`, `bochs` (`--only host` selects every step but
//! the two emulator ones). Prerequisites (target, components, QEMU) are
//! checked first by both commands; the `bochs` step and command install
//! Bochs themselves.

mod adopting;
mod bench;
mod bochs;
mod checks;
mod cpus;
mod fuzz;
mod host;
mod iso;
mod kernel;
mod layers;
mod loom;
mod memory_map;
mod miri;
mod mutants;
mod nightly;
mod prereq;
mod process;
mod publish;
mod qemu;
mod soak;
mod stall;
mod summary;
mod verdict;

use std::process::ExitCode;
use std::time::Duration;

use std::path::PathBuf;

use kernel::{Kernel, Mode};
use qemu::{Medium, QEMU};

/// Seconds one QEMU boot may take before it is killed.
const DEFAULT_TIMEOUT_SECS: u64 = 120;

const USAGE: &str = "\
usage: cargo xtask <command> [options]

commands:
  run    build the example kernel and boot it in QEMU
           --kernel example|minimal which kernel (default: example);
                                    minimal is examples/minimal, the
                                    code of docs/adopting.md
           --mode 2level|pae|both   paging mode(s) (default: both)
           --mem SIZE               guest RAM, QEMU syntax, e.g. 512M, 2G
                                    (default: 2G for 2level, 8G for pae;
                                    1G for the minimal kernel; less if the
                                    host has not that much free memory
                                    plus 0.5 GiB, and it says so)
           --cpu MODEL              QEMU -cpu value (default: qemu32 for
                                    2level, max for pae)
           --cmdline TEXT           kernel command line (e.g. fault=page,
                                    fault=stack-overflow)
           --smp N                  CPUs (default: 1); above 1 QEMU runs
                                    them on host threads (tcg,thread=multi)
           --timeout SECS           seconds a boot may print nothing before
                                    it counts as hung (default: 120; the
                                    whole boot may take 5x that; both in
                                    the emulator's CPU time as well)
  test   run every check in order, stopping at the first failure
           --only STEP[,STEP...]    only these steps: fmt, clippy, doc, test,
                                    loom, miri, i586, msrv, package, qemu,
                                    bochs, or host (all but qemu and bochs);
                                    miri runs the threaded tests under Miri
                                    (installs nightly + miri with rustup,
                                    and fails if it cannot)
           --no-qemu                skip both emulator steps (qemu, bochs)
           --no-bochs               skip the bochs step (the GRUB ISO booted
                                    in Bochs, both modes at 128M)
           --timeout SECS           seconds a QEMU or Bochs boot may print
                                    nothing (default: 120; 5x in all; both
                                    in the emulator's CPU time as well)
  bochs  boot the GRUB ISO in Bochs (installs it): 2G both modes, PAE 8G,
         PAE 8G frames=high-first, PAE 2G under each kmap.policy; prints
         the outcomes and the instructions per map+unmap of each flush
         policy
           --mode 2level|pae|both   instead of the matrix: these modes
           --mem SIZE               instead of the matrix: this RAM (2G)
           --cmdline TEXT           instead of the matrix: this command line
                                    (a crash demo must then be reported)
           --smp N                  instead of the matrix: this many Bochs
                                    CPUs (1 to 8)
           --timeout SECS           seconds a boot may print nothing
                                    (default: 900; 5x in all)
  iso    build a GRUB rescue ISO with both kernels (boot a PC from USB)
           --default 2level|pae     menu entry booted by default (2level)
           --timeout SECS           menu timeout (default: 10)
           --cmdline TEXT           kernel command line of both entries
           --out PATH               where to write it (default:
                                    examples/kernel/target/iso/example-kernel.iso)
  cpus   boot both modes under every qemu-system-i386 CPU model (-cpu help;
         not the -vN versions, aliases or host), -smp 4 where the model has
         a local APIC, at -m 256M; a model without what a mode needs (PSE,
         PAE) must be refused with one BOOT FAILED line; prints a table:
         model, features the kernel saw, result per mode
           --mode 2level|pae|both   modes (default: both)
           --models A,B,...         only these models
           --jobs N                 boots at once, 1 or 2 (default: 2)
           --timeout SECS           per boot (default: 300)
  memory-map
         boot both modes and redraw the kernel's virtual memory map from
         what it prints: examples/kernel/memory-map.svg and the table in
         examples/kernel/README.md
  layers draw the example kernel's import graph (examples/kernel/src) and
         check its layer rules: no file over 600 lines, no import circle
         wider than two files, at most three imports pointing back up the
         folder ranks (base < arch < boot < mm < smp < proc < selftests <
         main), each with a `// layer: why` comment; fails if one breaks
           --imports                list every import (file -> file) first
           --src DIR                read this copy of the source instead
  bench  run the benchmark suite (benches/README.md) and print its table
           --quick                  short measurements (smoke run)
           --no-callgrind           skip the instruction counts
  fuzz   run the cargo-fuzz targets in fuzz/ (installs nightly and cargo-fuzz)
           --target NAME            one of mapper_ops, kmap_ops, multiboot
                                    (default: all)
           --seconds N              per target (default: 60)
  miri   run host tests under Miri: every test over real memory and a
         sample of the simulated-machine tests (installs nightly + miri)
           --all                    every test of the library crates (hours)
  loom   model-check with loom: the kmap pool, kmap's local slots, the
         fixmap's per-slot compare-and-swap, the TLB shootdown
           --preemptions N          per execution (default: 4)
           --models NAME,...        only the models whose test names
                                    contain one of these (e.g. fixmap_)
  mutants
         mutation testing with cargo-mutants (installs it); prints caught,
         missed, unviable and timeout per crate and fails below 90% caught
         (docs/testing.md; slow: run it under `nice -n 19`)
           --crate NAME             paging-core, kmap, fixmap, tlb-shootdown
                                    or all (default)
           --jobs N                 mutants built and tested at once (default: 1)
           --timeout SECS           per mutant's test run (default: 60, kmap 90)
           --list                   only list the mutants and count them
           --skip-baseline          assume the unmutated tests pass
           --retest-missed          only the mutants the last run missed,
                                    again (after adding tests for them)
  soak   the kernel's soak on 4 CPUs: kmap storms under every flush
         policy, fork/copy-on-write/demand-zero processes, NMIs to every
         CPU, invariants checked after every round; prints rounds,
         operations per second per CPU and the worst wait
           --minutes N              per mode (default: 10)
           --emulator qemu|bochs    (default: qemu)
           --mode 2level|pae|both   (default: both)
  help   print this message";

/// Options of `cargo xtask run`.
#[derive(Debug)]
struct RunOptions {
    kernel: Kernel,
    modes: Vec<Mode>,
    mem: Option<String>,
    cpu: Option<String>,
    cmdline: Option<String>,
    smp: u32,
    timeout: Duration,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("run") => parse_run(&args[1..]).and_then(|options| run(&options)),
        Some("test") => checks::parse(&args[1..]).and_then(|options| checks::run(&options)),
        Some("iso") => parse_iso(&args[1..]).and_then(|options| build_iso(&options)),
        Some("memory-map") => memory_map_command(&args[1..]),
        Some("layers") => layers::run(&args[1..]),
        Some("cpus") => cpus::parse(&args[1..]).and_then(|options| cpus::run(&options)),
        Some("fuzz") => fuzz::parse(&args[1..]).and_then(|options| fuzz::run(&options)),
        Some("miri") => miri::parse(&args[1..]).and_then(miri::run),
        Some("loom") => loom::parse(&args[1..]).and_then(loom::run),
        Some("bochs") => bochs::parse(&args[1..]).and_then(|options| bochs::run(&options)),
        Some("mutants") => mutants::parse(&args[1..]).and_then(|options| mutants::run(&options)),
        Some("bench") => bench::parse(&args[1..]).and_then(|options| bench::run(&options)),
        Some("soak") => soak::parse(&args[1..]).and_then(|options| soak::run(&options)),
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

/// Parses `--smp N`: 1 to 8 CPUs (the example kernel's limit).
fn parse_smp(value: &str) -> Result<u32, String> {
    match value.parse::<u32>() {
        Ok(n) if (1..=8).contains(&n) => Ok(n),
        _ => Err(format!(
            "--smp expects a CPU count from 1 to 8, got `{value}`"
        )),
    }
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
        kernel: Kernel::Example,
        modes: Mode::ALL.to_vec(),
        mem: None,
        cpu: None,
        cmdline: None,
        smp: 1,
        timeout: Duration::from_secs(DEFAULT_TIMEOUT_SECS),
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--kernel" => options.kernel = Kernel::parse(option_value(arg, &mut args)?)?,
            "--mode" => options.modes = Mode::parse_list(option_value(arg, &mut args)?)?,
            "--mem" => options.mem = Some(qemu::check_mem_size(option_value(arg, &mut args)?)?),
            "--cpu" => options.cpu = Some(option_value(arg, &mut args)?.clone()),
            "--cmdline" => options.cmdline = Some(option_value(arg, &mut args)?.clone()),
            "--timeout" => options.timeout = parse_timeout(option_value(arg, &mut args)?)?,
            "--smp" => options.smp = parse_smp(option_value(arg, &mut args)?)?,
            other => return Err(format!("unknown option `{other}` for run\n\n{USAGE}")),
        }
    }
    Ok(options)
}

/// `cargo xtask run`: build the chosen kernel and boot each requested mode.
fn run(options: &RunOptions) -> Result<(), String> {
    prereq::ensure(true)?;
    let mut table = summary::Table::new("boot");
    let mut failures = 0;
    for &mode in &options.modes {
        let elf = kernel::build_kernel(options.kernel, mode)?;
        // Without --mem: the default, or less where the host has less free.
        let mem = match &options.mem {
            Some(mem) => mem.clone(),
            None => {
                let default = options.kernel.default_mem(mode);
                let (mem, why) = host::fit(default, host::available());
                println!("\n{} at {why}", mode.label());
                mem
            }
        };
        let boot = qemu::Boot {
            kernel: options.kernel,
            medium: Medium::Kernel(elf),
            emulator: QEMU,
            mode,
            mem,
            cpu: options
                .cpu
                .clone()
                .unwrap_or_else(|| mode.qemu_cpu().to_string()),
            cmdline: options.cmdline.clone(),
            smp: options.smp,
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

/// Options of `cargo xtask iso`.
#[derive(Debug)]
struct IsoOptions {
    default: Mode,
    timeout: u32,
    cmdline: Option<String>,
    out: PathBuf,
}

fn parse_iso(args: &[String]) -> Result<IsoOptions, String> {
    let mut options = IsoOptions {
        default: Mode::TwoLevel,
        timeout: 10,
        cmdline: None,
        out: iso::default_output(),
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--default" => {
                let modes = Mode::parse_list(option_value(arg, &mut args)?)?;
                match modes.as_slice() {
                    [mode] => options.default = *mode,
                    _ => return Err("--default expects 2level or pae".to_string()),
                }
            }
            "--timeout" => {
                let value = option_value(arg, &mut args)?;
                options.timeout = value
                    .parse()
                    .map_err(|_| format!("--timeout expects seconds, got `{value}`"))?;
            }
            "--cmdline" => options.cmdline = Some(option_value(arg, &mut args)?.clone()),
            "--out" => options.out = PathBuf::from(option_value(arg, &mut args)?),
            other => return Err(format!("unknown option `{other}` for iso\n\n{USAGE}")),
        }
    }
    Ok(options)
}

/// `cargo xtask iso`.
fn build_iso(options: &IsoOptions) -> Result<(), String> {
    prereq::ensure(false)?;
    if !iso::tools_available(true)? {
        return Err("grub-mkrescue, the i386-pc GRUB modules or xorriso are still missing".into());
    }
    let iso = iso::build(
        &options.out,
        options.default,
        options.timeout,
        options.cmdline.as_deref(),
    )?;
    println!("\nwrote {}", iso.display());
    println!(
        "boot it in QEMU:  qemu-system-i386 -cdrom {} -m 2G -cpu max -serial stdio",
        iso.display()
    );
    println!(
        "or write it to a USB stick (all data on it is lost):  sudo dd if={} of=/dev/sdX bs=4M conv=fsync",
        iso.display()
    );
    Ok(())
}

/// `cargo xtask memory-map`: boot both modes at their default RAM and
/// redraw the memory map from the `layout:` lines.
fn memory_map_command(args: &[String]) -> Result<(), String> {
    if let Some(arg) = args.first() {
        return Err(format!("unknown option `{arg}` for memory-map"));
    }
    prereq::ensure(true)?;
    let mut layouts = Vec::new();
    for mode in Mode::ALL {
        let boot = qemu::Boot {
            kernel: Kernel::Example,
            medium: Medium::Kernel(kernel::build(mode)?),
            emulator: QEMU,
            mode,
            mem: mode.default_mem().to_string(),
            cpu: mode.qemu_cpu().to_string(),
            cmdline: None,
            smp: 1,
            timeout: Duration::from_secs(DEFAULT_TIMEOUT_SECS),
            expect: qemu::Expect::Pass,
        };
        let outcome = qemu::boot(&boot)?;
        if !outcome.passed {
            return Err(format!("{} failed: {}", boot.label(), outcome.detail));
        }
        layouts.push(memory_map::parse(&outcome.layout, &boot.mem)?);
    }
    memory_map::write(&layouts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smp_counts_from_one_to_eight_are_accepted() {
        assert_eq!(parse_smp("1"), Ok(1));
        assert_eq!(parse_smp("8"), Ok(8));
        for bad in ["0", "9", "four", "-1", ""] {
            assert!(parse_smp(bad).is_err(), "{bad}");
        }
        let args = ["--smp", "4", "--mode", "pae"].map(String::from);
        let options = parse_run(&args).unwrap();
        assert_eq!(options.smp, 4);
        assert!(parse_run(&["--smp".to_string()]).is_err());
    }
}
