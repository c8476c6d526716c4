//! `cargo xtask soak`: the kernel's soak on four CPUs, for minutes.
//!
//! Each boot runs the example kernel with `soak.seconds=N`: instead of the
//! self-tests it runs rounds of the shared-pool kmap storm (rotating the
//! five flush policies), the process workload (fork chains with
//! copy-on-write, demand-zero processes, exit and wait) and NMIs to every
//! CPU, checking after every round that no CPU read a stale word, that every
//! pool slot and every frame came back, and that the round finished (a lost
//! wake-up is a hang, which the kernel's watchdog turns into a report). It
//! ends with the rounds, the kmap operations per second per CPU and the
//! worst wait. `cargo xtask test` runs 20 seconds of it in each mode.

use std::time::Duration;

use crate::kernel::{self, Kernel, Mode};
use crate::qemu::{self, Expect, Medium, QEMU};
use crate::summary::Table;
use crate::{bochs, option_value, prereq};

/// CPUs of a soak boot.
pub const CPUS: u32 = 4;
/// Guest RAM of a soak boot (highmem in both modes).
pub const MEM: &str = "2G";

/// Which emulator runs the soak.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Emulator {
    /// `qemu-system-i386`, multi-threaded TCG.
    Qemu,
    /// Bochs, from the GRUB ISO.
    Bochs,
}

/// Options of `cargo xtask soak`.
#[derive(Debug)]
pub struct SoakOptions {
    minutes: u32,
    emulator: Emulator,
    modes: Vec<Mode>,
}

/// Parses `--minutes N`, `--emulator qemu|bochs`, `--mode 2level|pae|both`.
pub fn parse(args: &[String]) -> Result<SoakOptions, String> {
    let mut options = SoakOptions {
        minutes: 10,
        emulator: Emulator::Qemu,
        modes: Mode::ALL.to_vec(),
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--minutes" => {
                let value = option_value(arg, &mut args)?;
                options.minutes = match value.parse::<u32>() {
                    Ok(n) if (1..=24 * 60).contains(&n) => n,
                    _ => return Err(format!("--minutes expects 1 to 1440, got `{value}`")),
                };
            }
            "--emulator" => {
                options.emulator = match option_value(arg, &mut args)?.as_str() {
                    "qemu" => Emulator::Qemu,
                    "bochs" => Emulator::Bochs,
                    other => {
                        return Err(format!("--emulator expects qemu or bochs, got `{other}`"));
                    }
                }
            }
            "--mode" => options.modes = Mode::parse_list(option_value(arg, &mut args)?)?,
            other => return Err(format!("unknown option `{other}` for soak")),
        }
    }
    Ok(options)
}

/// A QEMU soak boot of `seconds` in `mode` (used by `cargo xtask test` too).
pub fn qemu_boot(mode: Mode, seconds: u32, timeout: Duration) -> Result<qemu::Boot, String> {
    Ok(qemu::Boot {
        kernel: Kernel::Example,
        medium: Medium::Kernel(kernel::build(mode)?),
        emulator: QEMU,
        mode,
        mem: MEM.to_string(),
        cpu: mode.qemu_cpu().to_string(),
        cmdline: Some(format!("soak.seconds={seconds}")),
        smp: CPUS,
        timeout,
        expect: Expect::Pass,
    })
}

/// The time a soak of `seconds` may take: the soak, a round that began
/// just before its end (a loaded host makes a per-page round slow), boot.
fn limit(seconds: u32, emulator: Emulator) -> Duration {
    let secs = u64::from(seconds);
    match emulator {
        Emulator::Qemu => Duration::from_secs(secs * 2 + 600),
        // Bochs's seconds are emulated ones, several real ones each.
        Emulator::Bochs => Duration::from_secs(secs * 10 + 1800),
    }
}

/// `cargo xtask soak`: boots each mode, prints each soak's figures, fails
/// if any boot does.
pub fn run(options: &SoakOptions) -> Result<(), String> {
    prereq::ensure(true)?;
    let seconds = options.minutes * 60;
    let mut table = Table::new("soak");
    let mut failed = 0;
    let mut figures = Vec::new();
    for &mode in &options.modes {
        println!();
        let timeout = limit(seconds, options.emulator);
        let (label, outcome) = match options.emulator {
            Emulator::Qemu => {
                let boot = qemu_boot(mode, seconds, timeout)?;
                (boot.label(), qemu::boot(&boot)?)
            }
            Emulator::Bochs => {
                bochs::ensure()?;
                let boot = bochs::Boot {
                    mode,
                    mem: MEM.to_string(),
                    cmdline: Some(format!("soak.seconds={seconds}")),
                    cpus: CPUS,
                    cpu: bochs::CPU,
                    timeout,
                    expect: Expect::Pass,
                };
                (boot.label(), bochs::boot(&boot)?.0)
            }
        };
        if !outcome.passed {
            failed += 1;
        }
        if let Some(last) = outcome.soak.last() {
            figures.push(format!("{label}: {last}"));
        }
        table.push(label, outcome);
    }
    table.print();
    println!();
    for line in &figures {
        println!("{line}");
    }
    if failed == 0 {
        Ok(())
    } else {
        Err(format!("{failed} soak boot(s) failed"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(text: &[&str]) -> Vec<String> {
        text.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn options_parse_and_bad_ones_are_refused() {
        let o = parse(&args(&[
            "--minutes",
            "3",
            "--emulator",
            "bochs",
            "--mode",
            "pae",
        ]))
        .unwrap();
        assert_eq!(o.minutes, 3);
        assert_eq!(o.emulator, Emulator::Bochs);
        assert_eq!(o.modes, vec![Mode::Pae]);
        let d = parse(&[]).unwrap();
        assert_eq!(
            (d.minutes, d.emulator, d.modes.len()),
            (10, Emulator::Qemu, 2)
        );
        assert!(parse(&args(&["--minutes", "0"])).is_err());
        assert!(parse(&args(&["--emulator", "kvm"])).is_err());
        assert!(parse(&args(&["--frobnicate"])).is_err());
    }

    #[test]
    fn limits_leave_room_for_a_slow_last_round() {
        assert!(limit(600, Emulator::Qemu) >= Duration::from_secs(1200));
        assert!(limit(600, Emulator::Bochs) > limit(600, Emulator::Qemu));
    }

    #[test]
    fn soak_figures_are_picked_from_the_console() {
        let lines = args(&["test x ... ", "    soak: 3 rounds in 20 s", "ok"]);
        assert_eq!(qemu::soak_lines(&lines), vec!["soak: 3 rounds in 20 s"]);
    }
}
