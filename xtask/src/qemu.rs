//! Booting the kernel in `qemu-system-i386` and judging the run.
//!
//! The kernel reports through two channels: its serial console (streamed
//! here line by line, prefixed with the boot's label) and the exit status
//! that QEMU's `isa-debug-exit` device produces: `(value << 1) | 1`, so 33
//! for the kernel's pass code 0x10 and 35 for its fail code 0x11. A triple
//! fault under `-no-reboot` makes QEMU exit 0, so only 33 counts as a pass,
//! and only together with a `N passed, 0 failed` line with N > 0.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::kernel::{Kernel, Mode};
use crate::{process, stall, verdict};

/// The QEMU binary for both modes.
pub const QEMU: &str = "qemu-system-i386";
/// A QEMU whose page walker handles PAE tables above 4 GiB (QEMU 7.2's
/// i386 binary truncates table addresses to 32 bits while it walks).
pub const QEMU_X86_64: &str = "qemu-system-x86_64";
/// QEMU's exit status when the kernel wrote its pass code (0x10).
const EXIT_PASS: i32 = 33;
/// QEMU's exit status when the kernel wrote its fail code (0x11).
const EXIT_FAIL: i32 = 35;

/// What a boot must show to count as a success.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// Exit 33 and a `N passed, 0 failed` line with N > 0.
    Pass,
    /// A deliberate crash: exit 35 and a line containing the marker.
    Crash(&'static str),
    /// A deliberate hang (`hang=lock`): the kernel's watchdog report, with a
    /// line from every online CPU, then exit 35.
    Watchdog,
}

impl Expect {
    /// `Crash` for a command line that asks for a crash demo, else `Pass`.
    pub fn for_cmdline(cmdline: Option<&str>) -> Self {
        let words = cmdline.unwrap_or("");
        if words.split_whitespace().any(|w| w == "hang=lock") {
            Expect::Watchdog
        } else if words.split_whitespace().any(|w| w == "fault=page") {
            Expect::Crash("PAGE FAULT")
        } else if words
            .split_whitespace()
            .any(|w| w == "fault=stack-overflow")
        {
            Expect::Crash("DOUBLE FAULT")
        } else {
            Expect::Pass
        }
    }
}

/// What QEMU boots.
#[derive(Clone, Debug)]
pub enum Medium {
    /// A multiboot ELF, with `-kernel`.
    Kernel(PathBuf),
    /// A bootable ISO (GRUB), with `-cdrom`, and the verdict nonce its
    /// menu entry passes to the kernel, if any ([`crate::verdict`]).
    Cdrom(PathBuf, Option<String>),
}

/// One boot of the kernel.
#[derive(Clone, Debug)]
pub struct Boot {
    /// Which kernel (for the label).
    pub kernel: Kernel,
    /// The kernel ELF or ISO.
    pub medium: Medium,
    /// The QEMU binary ([`QEMU`] unless a test needs another).
    pub emulator: &'static str,
    /// Its paging mode (for the label).
    pub mode: Mode,
    /// Guest RAM (`-m`).
    pub mem: String,
    /// CPU model (`-cpu`).
    pub cpu: String,
    /// Kernel command line (`-append`), if any.
    pub cmdline: Option<String>,
    /// CPUs (`-smp`); above 1 QEMU runs them on host threads
    /// (`-accel tcg,thread=multi`), so they really run at once.
    pub smp: u32,
    /// Wall-clock limit.
    pub timeout: Duration,
    /// What counts as success.
    pub expect: Expect,
}

/// Result of a boot: whether it met its expectation, and a one-line detail.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// The boot met [`Boot::expect`].
    pub passed: bool,
    /// What happened, for the summary.
    pub detail: String,
    /// Wall-clock time of the boot.
    pub elapsed: Duration,
    /// The `layout: ...` lines the kernel printed (its memory map).
    pub layout: Vec<String>,
    /// The soak's figures (`soak: ...` lines), if it ran.
    pub soak: Vec<String>,
}

impl Boot {
    /// Label used in output and the summary, e.g. `2level -m 2G` (the
    /// example kernel) or `minimal 2level -m 1G`.
    pub fn label(&self) -> String {
        let mut label = format!("{} -m {}", self.mode.name(), self.mem);
        if self.smp > 1 {
            label.push_str(&format!(" -smp {}", self.smp));
        }
        if self.kernel == Kernel::Minimal {
            label.insert_str(0, "minimal ");
        }
        if let Medium::Cdrom(..) = self.medium {
            label.push_str(" (GRUB ISO)");
        }
        if self.emulator != QEMU {
            label.push_str(&format!(" ({})", self.emulator));
        }
        if let Some(cmdline) = &self.cmdline {
            label.push_str(&format!(" [{cmdline}]"));
        }
        label
    }

    /// The verdict nonce of a new boot: a fresh one for the example
    /// kernel's ELF (passed with `-append`), the ISO's own for an ISO, none
    /// for the minimal kernel (it runs no code that could forge a verdict).
    fn fresh_nonce(&self) -> Option<String> {
        match &self.medium {
            Medium::Kernel(_) if self.kernel == Kernel::Example => Some(verdict::nonce()),
            Medium::Kernel(_) => None,
            Medium::Cdrom(_, nonce) => nonce.clone(),
        }
    }

    fn command(&self, nonce: Option<&str>) -> Command {
        let mut command = Command::new(self.emulator);
        match &self.medium {
            Medium::Kernel(elf) => command.arg("-kernel").arg(elf),
            Medium::Cdrom(iso, _) => command.arg("-cdrom").arg(iso),
        };
        command
            .args(["-m", &self.mem, "-cpu", &self.cpu])
            .args(["-no-reboot", "-display", "none", "-serial", "stdio"])
            .args(["-monitor", "none"])
            .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"]);
        if self.smp > 1 {
            command
                .args(["-smp", &self.smp.to_string()])
                .args(["-accel", "tcg,thread=multi"]);
        }
        if let Medium::Kernel(_) = &self.medium {
            match (nonce, &self.cmdline) {
                (Some(nonce), cmdline) => {
                    command.args(["-append", &verdict::with_nonce(cmdline.as_deref(), nonce)]);
                }
                (None, Some(cmdline)) => {
                    command.args(["-append", cmdline]);
                }
                (None, None) => {}
            }
        }
        command
    }
}

/// Checks a `-m` size: digits with an optional `M` or `G` suffix.
pub fn check_mem_size(size: &str) -> Result<String, String> {
    let digits = size.trim_end_matches(['M', 'G', 'm', 'g']);
    let suffix_len = size.len() - digits.len();
    if !digits.is_empty() && suffix_len <= 1 && digits.bytes().all(|b| b.is_ascii_digit()) {
        Ok(size.to_string())
    } else {
        Err(format!(
            "--mem expects a size like 128M or 2G, got `{size}`"
        ))
    }
}

/// What a console stream has shown so far, shared with the thread that
/// waits for the emulator: when output last arrived, and the last text (an
/// unfinished line, or the last complete one).
#[derive(Debug)]
pub struct Progress {
    /// When the last bytes arrived.
    pub at: Instant,
    /// The kernel's last console text.
    pub last: Option<String>,
}

impl Progress {
    /// A fresh record, as of now.
    pub fn new() -> Arc<Mutex<Progress>> {
        Arc::new(Mutex::new(Progress {
            at: Instant::now(),
            last: None,
        }))
    }
}

/// One console line as text: escapes, the newline and carriage returns
/// removed.
fn clean(raw: &[u8]) -> String {
    strip_escapes(&String::from_utf8_lossy(raw))
        .trim_end_matches(['\n', '\r'])
        .replace('\r', "")
}

/// Streams `pipe` line by line to our stdout, prefixed with `label`, and
/// returns the lines (carriage returns removed); records each arrival in
/// `progress`.
fn stream(mut pipe: impl Read, label: String, progress: Arc<Mutex<Progress>>) -> Vec<String> {
    let mut lines = Vec::new();
    let mut pending = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = match pipe.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        pending.extend_from_slice(&buf[..n]);
        while let Some(end) = pending.iter().position(|&b| b == b'\n') {
            let raw: Vec<u8> = pending.drain(..=end).collect();
            let line = clean(&raw);
            println!("[{label}] {line}");
            lines.push(line);
        }
        if let Ok(mut progress) = progress.lock() {
            progress.at = Instant::now();
            let partial = clean(&pending);
            progress.last = if partial.trim().is_empty() {
                lines.last().cloned()
            } else {
                Some(partial)
            };
        }
    }
    if !pending.is_empty() {
        let line = clean(&pending);
        println!("[{label}] {line}");
        lines.push(line);
    }
    lines
}

/// `text` without terminal escape sequences (`ESC [ ... letter`), which
/// GRUB's menu sends when it draws on a serial line.
pub fn strip_escapes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\u{1b}' {
            out.push(c);
            continue;
        }
        if chars.next() == Some('[') {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        }
    }
    out
}

/// Boots the kernel, streams its console and judges the run. `Err` only if
/// QEMU could not be run at all.
pub fn boot(boot: &Boot) -> Result<Outcome, String> {
    let nonce = boot.fresh_nonce();
    let mut command = boot.command(nonce.as_deref());
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let label = boot.label();
    println!(
        "$ {}",
        process::describe(&command).replace(nonce.as_deref().unwrap_or("\0"), "<nonce>")
    );
    let start = Instant::now();
    let mut child = command
        .spawn()
        .map_err(|error| format!("cannot start {QEMU}: {error}"))?;
    let progress = Progress::new();
    let stdout = child.stdout.take().map(|pipe| {
        let label = label.clone();
        let progress = Arc::clone(&progress);
        thread::spawn(move || stream(pipe, label, progress))
    });
    let stderr = child.stderr.take().map(|pipe| {
        let label = format!("{label} stderr");
        let progress = Progress::new();
        thread::spawn(move || stream(pipe, label, progress))
    });

    let mut timed_out = None;
    let mut stall_reported_at = None;
    let mut starved_reported_at = None;
    let mut clocks = stall::Clocks::start(stall::cpu_time(child.id()));
    let status = loop {
        let (quiet_since, last) = match progress.lock() {
            Ok(p) => (p.at, p.last.clone()),
            Err(_) => (start, None),
        };
        clocks.sample(stall::cpu_time(child.id()));
        clocks.output(quiet_since);
        let over = stall::over_time(clocks.total(), clocks.quiet(), boot.timeout);
        if over.is_none()
            && starved_reported_at != Some(quiet_since)
            && let Some(notice) = stall::starved_notice(clocks.quiet(), boot.timeout)
        {
            starved_reported_at = Some(quiet_since);
            println!("[{label}] {notice}");
        }
        if (quiet_since.elapsed() >= stall::QUIET || over.is_some())
            && stall_reported_at != Some(quiet_since)
            && matches!(child.try_wait(), Ok(None))
        {
            stall_reported_at = Some(quiet_since);
            for line in stall::report(&label, child.id(), boot.emulator, last.as_deref()) {
                println!("{line}");
            }
        }
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if over.is_some() => {
                let why = over.unwrap_or_default();
                println!("[{label}] TIMEOUT: {why}; killing QEMU");
                timed_out = Some(why);
                // Best effort: the process may have exited meanwhile.
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => thread::sleep(Duration::from_millis(20)),
            Err(error) => return Err(format!("waiting for {QEMU}: {error}")),
        }
    };
    let elapsed = start.elapsed();
    let lines = stdout
        .and_then(|handle| handle.join().ok())
        .unwrap_or_default();
    // Joined only so its lines are printed before the verdict.
    let _ = stderr.map(|handle| handle.join());

    let (passed, detail) = if let Some(why) = timed_out {
        (false, format!("TIMEOUT: {why}; QEMU killed"))
    } else {
        judge(
            boot.expect,
            nonce.as_deref(),
            status.and_then(|s| s.code()),
            &lines,
        )
    };
    println!("[{label}] => {}", if passed { "PASS" } else { "FAIL" });
    let layout = lines
        .iter()
        .filter_map(|line| line.strip_prefix("layout: "))
        .map(str::to_string)
        .collect();
    Ok(Outcome {
        passed,
        detail,
        elapsed,
        layout,
        soak: soak_lines(&lines),
    })
}

/// The soak's figures among `lines`: each `soak: ...` line, trimmed.
pub fn soak_lines(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .filter_map(|line| line.trim().strip_prefix("soak: "))
        .map(|line| format!("soak: {line}"))
        .collect()
}

/// Whether the kernel's console alone shows `expect` met, and what it
/// shows: for [`Expect::Pass`] a last `N passed, 0 failed` line with N > 0
/// that carries `nonce` when there is one ([`verdict`]; a missing summary or
/// any failed test fails, and summary lines without the nonce are ignored
/// and counted), for [`Expect::Crash`] a line containing the marker. Shared
/// by every emulator; QEMU adds its exit status ([`judge`]), Bochs, which
/// has no exit device, relies on this.
pub fn judge_console(expect: Expect, nonce: Option<&str>, lines: &[String]) -> (bool, String) {
    let forged = lines
        .iter()
        .filter(|line| verdict::unauthenticated(line, nonce))
        .count();
    let note = if forged > 0 {
        format!(" ({forged} summary line(s) without this boot's nonce ignored)")
    } else {
        String::new()
    };
    let (ok, text) = match expect {
        Expect::Pass => match lines
            .iter()
            .rev()
            .find_map(|line| verdict::summary_line(line, nonce))
        {
            Some((passed, 0)) if passed > 0 => (true, format!("{passed} passed, 0 failed")),
            Some((passed, failed)) => (false, format!("{passed} passed, {failed} failed")),
            None => (false, "no `N passed, N failed` line".to_string()),
        },
        Expect::Crash(marker) => {
            if lines.iter().any(|line| line.contains(marker)) {
                (true, format!("reported `{marker}`"))
            } else {
                (false, format!("no `{marker}` report"))
            }
        }
        Expect::Watchdog => judge_watchdog(lines),
    };
    (ok, text + &note)
}

/// The end of the kernel's watchdog report: `WATCHDOG: N of M CPUs
/// reported`.
const WATCHDOG_END: &str = " CPUs reported; the kernel is hung";

/// Whether the console holds a whole watchdog report: its last line says
/// every online CPU reported, and each CPU `0..M` printed its line (what it
/// waits on) and its return addresses.
fn judge_watchdog(lines: &[String]) -> (bool, String) {
    let Some((reported, online)) = lines.iter().find_map(|line| {
        let counts = line
            .trim()
            .strip_prefix("WATCHDOG: ")?
            .strip_suffix(WATCHDOG_END)?;
        let (n, m) = counts.split_once(" of ")?;
        Some((n.parse::<usize>().ok()?, m.parse::<usize>().ok()?))
    }) else {
        return (false, "no watchdog report".to_string());
    };
    let missing: Vec<usize> = (0..online)
        .filter(|cpu| {
            let waits = format!("watchdog: cpu {cpu} (");
            let stack = format!("watchdog: cpu {cpu} stack return addresses:");
            !(lines
                .iter()
                .any(|l| l.starts_with(&waits) && l.contains(": waits on "))
                && lines.iter().any(|l| l.starts_with(&stack)))
        })
        .collect();
    if online > 0 && reported == online && missing.is_empty() {
        (
            true,
            format!("watchdog report: all {online} CPU(s) said what they wait on"),
        )
    } else {
        (
            false,
            format!("watchdog report: {reported} of {online} CPUs; no line from {missing:?}"),
        )
    }
}

/// Whether the kernel's console shows the end of a run: the summary line
/// (with `nonce` when there is one) for [`Expect::Pass`], the marker for
/// [`Expect::Crash`], or any fatal report (the kernel halts after each).
/// Emulators without an exit device stop waiting there.
pub fn console_finished(expect: Expect, nonce: Option<&str>, line: &str) -> bool {
    verdict::summary_line(line, nonce).is_some()
        || matches!(expect, Expect::Crash(marker) if line.contains(marker))
        || FATAL_MARKERS.iter().any(|marker| line.contains(marker))
        || line.contains(WATCHDOG_END)
}

/// Reports after which the kernel halts without a summary line.
const FATAL_MARKERS: [&str; 5] = [
    "KERNEL PANIC",
    "BOOT FAILED",
    "PAGE FAULT at",
    "DOUBLE FAULT",
    "EXCEPTION ",
];

/// Whether a finished QEMU boot met `expect`, and why: the console
/// ([`judge_console`]) and the exit status must both say so.
fn judge(
    expect: Expect,
    nonce: Option<&str>,
    code: Option<i32>,
    lines: &[String],
) -> (bool, String) {
    let (console_ok, console) = judge_console(expect, nonce, lines);
    let status = match code {
        Some(EXIT_PASS) => "exit 33 (kernel: pass)".to_string(),
        Some(EXIT_FAIL) => "exit 35 (kernel: fail)".to_string(),
        Some(0) => "exit 0: the guest reset or triple-faulted".to_string(),
        Some(code) => format!("exit {code}: QEMU error, or an unknown debug-exit value"),
        None => "killed by a signal".to_string(),
    };
    let wanted = match expect {
        Expect::Pass => EXIT_PASS,
        Expect::Crash(_) | Expect::Watchdog => EXIT_FAIL,
    };
    (
        console_ok && code == Some(wanted),
        format!("{console}; {status}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &[&str]) -> Vec<String> {
        text.iter().map(|line| line.to_string()).collect()
    }

    #[test]
    fn pass_needs_exit_33_and_a_clean_summary() {
        let ok = lines(&["test a ... ok", "3 passed, 0 failed"]);
        assert!(judge(Expect::Pass, None, Some(33), &ok).0);
        assert!(!judge(Expect::Pass, None, Some(0), &ok).0, "triple fault");
        assert!(!judge(Expect::Pass, None, Some(35), &ok).0);
        let none = lines(&["0 passed, 0 failed"]);
        assert!(!judge(Expect::Pass, None, Some(33), &none).0);
        let failed = lines(&["2 passed, 1 failed"]);
        assert!(!judge(Expect::Pass, None, Some(33), &failed).0);
        assert!(!judge(Expect::Pass, None, Some(33), &lines(&["no summary"])).0);
    }

    #[test]
    fn a_verdict_a_process_printed_is_ignored() {
        let nonce = Some("00112233aabbccdd");
        let forged = lines(&["test a ... ", "1 passed, 0 failed"]);
        let (passed, detail) = judge(Expect::Pass, nonce, Some(33), &forged);
        assert!(!passed);
        assert!(detail.contains("1 summary line(s) without"), "{detail}");
        let real = lines(&[
            "1 passed, 0 failed",
            "3 passed, 0 failed [verdict 00112233aabbccdd]",
        ]);
        assert!(judge(Expect::Pass, nonce, Some(33), &real).0);
        let wrong = lines(&["3 passed, 0 failed [verdict 00112233aabbccde]"]);
        assert!(!judge(Expect::Pass, nonce, Some(33), &wrong).0);
        assert!(!console_finished(Expect::Pass, nonce, "1 passed, 0 failed"));
        assert!(console_finished(
            Expect::Pass,
            nonce,
            "1 passed, 0 failed [verdict 00112233aabbccdd]"
        ));
    }

    #[test]
    fn a_hang_needs_a_line_from_every_cpu() {
        let mut report = lines(&[
            "WATCHDOG: no progress after 2055 ms; cpu 1 noticed; every online CPU (2) reports",
            "watchdog: cpu 1 (noticed) at eip 0xc012ba70: waits on the frame allocator's lock (0xc01b6494) for 2056 ms",
            "watchdog: cpu 1 stack return addresses: 0xc016b650",
            "watchdog: cpu 0 (NMI) at eip 0xc0149c49: waits on work posted to other CPUs (0xc017b530) for 2124 ms",
            "watchdog: cpu 0 stack return addresses: 0xc012be4c",
            "WATCHDOG: 2 of 2 CPUs reported; the kernel is hung",
        ]);
        assert!(judge(Expect::Watchdog, None, Some(35), &report).0);
        assert!(!judge(Expect::Watchdog, None, Some(33), &report).0);
        assert!(console_finished(Expect::Watchdog, None, &report[5]));
        report.remove(3);
        let (ok, detail) = judge(Expect::Watchdog, None, Some(35), &report);
        assert!(!ok);
        assert!(detail.contains("no line from [0]"), "{detail}");
        let partial = lines(&["WATCHDOG: 1 of 2 CPUs reported; the kernel is hung"]);
        assert!(!judge(Expect::Watchdog, None, Some(35), &partial).0);
        assert!(!judge(Expect::Watchdog, None, Some(35), &lines(&["test a ... "])).0);
        assert_eq!(
            Expect::for_cmdline(Some("hang=lock watchdog.secs=2")),
            Expect::Watchdog
        );
    }

    #[test]
    fn crash_needs_exit_35_and_the_marker() {
        let report = lines(&["DOUBLE FAULT (error code 0x0)"]);
        assert!(judge(Expect::Crash("DOUBLE FAULT"), None, Some(35), &report).0);
        assert!(!judge(Expect::Crash("DOUBLE FAULT"), None, Some(0), &report).0);
        assert!(!judge(Expect::Crash("PAGE FAULT"), None, Some(35), &report).0);
    }

    #[test]
    fn the_example_kernels_boots_get_a_nonce_on_their_command_line() {
        let boot = Boot {
            kernel: Kernel::Example,
            medium: Medium::Kernel(PathBuf::from("k.elf")),
            emulator: QEMU,
            mode: Mode::Pae,
            mem: "128M".into(),
            cpu: "max".into(),
            cmdline: Some("fault=page".into()),
            smp: 1,
            timeout: Duration::from_secs(1),
            expect: Expect::Pass,
        };
        let nonce = boot.fresh_nonce().expect("the example kernel gets a nonce");
        let args: Vec<String> = boot
            .command(Some(&nonce))
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert!(
            args.contains(&format!("fault=page verdict={nonce}")),
            "{args:?}"
        );
        let minimal = Boot {
            kernel: Kernel::Minimal,
            cmdline: None,
            ..boot.clone()
        };
        assert_eq!(minimal.fresh_nonce(), None);
        assert!(!minimal.command(None).get_args().any(|a| a == "-append"));
        let iso = Boot {
            medium: Medium::Cdrom(PathBuf::from("x.iso"), Some("ab".into())),
            ..boot
        };
        assert_eq!(iso.fresh_nonce().as_deref(), Some("ab"));
    }

    #[test]
    fn escape_sequences_are_stripped() {
        assert_eq!(strip_escapes("\u{1b}[2J\u{1b}[1;1Hok"), "ok");
        assert_eq!(strip_escapes("a\u{1b}[?25lb"), "ab");
        assert_eq!(strip_escapes("plain"), "plain");
    }

    #[test]
    fn mem_sizes_are_checked() {
        assert!(check_mem_size("128M").is_ok());
        assert!(check_mem_size("8G").is_ok());
        assert!(check_mem_size("512").is_ok());
        assert!(check_mem_size("G").is_err());
        assert!(check_mem_size("2GG").is_err());
        assert!(check_mem_size("1.5G").is_err());
    }
}
