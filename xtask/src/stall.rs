//! What an emulator process is doing when a boot stops making progress.
//!
//! A boot whose console goes quiet is either a guest that hangs (the
//! kernel's watchdog then prints what every CPU waits for) or an emulator
//! that is stuck on the host: Bochs once blocked for good in `write()` on a
//! terminal nobody read. A bare "TIMEOUT" hides which one it is, so the
//! runners print this report: every thread of the emulator with its state,
//! the kernel function it sleeps in (`wchan`) and the system call it is in
//! (`/proc/PID/task/TID/syscall`, with the file behind a descriptor
//! argument), plus the kernel's last console line.

use std::path::Path;
use std::time::Duration;

/// Seconds without a new console line after which a runner reports a
/// stall (once per quiet spell); the boot itself goes on until its timeout.
pub const QUIET: Duration = Duration::from_secs(45);

/// How many times a boot's `--timeout` the whole boot may take: the
/// timeout bounds a *quiet* spell (no console output), so a host that is
/// merely loaded, and runs the emulator slowly, does not fail a boot that
/// keeps printing; a boot that prints forever still ends.
pub const TOTAL_FACTOR: u32 = 5;

/// How many times its limit a spell (quiet, or the whole boot) may last in
/// wall time while the emulator is starved of CPU by other work on the
/// host: the backstop that still ends a boot on a host too loaded to run
/// it at all.
pub const STARVED_FACTOR: u32 = 10;

/// Less CPU than this in a quiet spell as long as `--timeout` means the
/// emulator is not running at all: blocked on the host (as Bochs was, in a
/// `write()` to a terminal nobody read), or every guest CPU halted with
/// interrupts off.
pub const BLOCKED_CPU: Duration = Duration::from_secs(1);

/// How long something has lasted: in wall time, and in the CPU time the
/// emulator process used meanwhile (all its threads; `None` where
/// `/proc/PID/stat` could not be read).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spell {
    /// Wall-clock time.
    pub wall: Duration,
    /// The emulator's CPU time (user and system) in it.
    pub cpu: Option<Duration>,
}

/// The CPU time process `pid` has used so far (user and system, every
/// thread), from `/proc/PID/stat`; `None` if it cannot be read.
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    cpu_of_stat(&stat)
}

/// `utime + stime` of a `/proc/PID/stat` line, in clock ticks of 10 ms
/// (`USER_HZ` is 100 on every x86 Linux).
fn cpu_of_stat(stat: &str) -> Option<Duration> {
    let after = &stat[stat.rfind(')')? + 1..];
    // Fields after `comm`: state is field 3, utime field 14, stime 15.
    let mut fields = after.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 10))
}

/// A quiet spell and the whole boot, measured from a console line and
/// from the start, in wall time and in the emulator's CPU time.
#[derive(Debug, Clone, Copy)]
pub struct Clocks {
    start: std::time::Instant,
    start_cpu: Option<Duration>,
    quiet_since: std::time::Instant,
    quiet_cpu: Option<Duration>,
    now_cpu: Option<Duration>,
}

impl Clocks {
    /// Clocks started now; `cpu` is the emulator's CPU time now, if known.
    pub fn start(cpu: Option<Duration>) -> Self {
        let now = std::time::Instant::now();
        Self {
            start: now,
            start_cpu: cpu,
            quiet_since: now,
            quiet_cpu: cpu,
            now_cpu: cpu,
        }
    }

    /// Record the emulator's CPU time now (the first known value also
    /// starts the CPU clocks, for an emulator found after its start).
    pub fn sample(&mut self, cpu: Option<Duration>) {
        if cpu.is_some() {
            self.start_cpu = self.start_cpu.or(Some(Duration::ZERO));
            self.quiet_cpu = self.quiet_cpu.or(cpu);
            self.now_cpu = cpu;
        }
    }

    /// The console printed at `at` (a quiet spell ends there).
    pub fn output(&mut self, at: std::time::Instant) {
        if at > self.quiet_since {
            self.quiet_since = at;
            self.quiet_cpu = self.now_cpu;
        }
    }

    /// When the console last printed (or the boot started).
    pub fn quiet_since(&self) -> std::time::Instant {
        self.quiet_since
    }

    /// The current quiet spell.
    pub fn quiet(&self) -> Spell {
        Spell {
            wall: self.quiet_since.elapsed(),
            cpu: self
                .now_cpu
                .zip(self.quiet_cpu)
                .map(|(n, q)| n.saturating_sub(q)),
        }
    }

    /// The whole boot so far.
    pub fn total(&self) -> Spell {
        Spell {
            wall: self.start.elapsed(),
            cpu: self
                .now_cpu
                .zip(self.start_cpu)
                .map(|(n, s)| n.saturating_sub(s)),
        }
    }
}

/// Why a boot is over its time, for a quiet limit of `timeout`; `None`
/// while it may go on.
///
/// A quiet spell counts as a hang once it has lasted `timeout` in wall time
/// *and* the emulator had `timeout` of CPU in it: a host loaded by other
/// work runs the emulator slowly, and that is not the guest's fault. An
/// emulator that used (almost) no CPU for `timeout` is blocked, and fails
/// at once; one starved of CPU fails after [`STARVED_FACTOR`] times the
/// limit. The whole boot is bounded the same way by [`TOTAL_FACTOR`] times
/// `timeout`. Without CPU figures, wall time alone decides.
pub fn over_time(total: Spell, quiet: Spell, timeout: Duration) -> Option<String> {
    let secs = |d: Duration| d.as_secs();
    if quiet.wall >= timeout {
        match quiet.cpu {
            None => {
                return Some(format!(
                    "no console output for {} s (a hang: the kernel's watchdog reports one in 10 s of its own time, so see the host report above)",
                    secs(timeout)
                ));
            }
            Some(cpu) if cpu >= timeout => {
                return Some(format!(
                    "no console output for {} s, {} s of them on the emulator's CPU (a hang: the kernel's watchdog reports one in 10 s of its own time, so see the host report above)",
                    secs(quiet.wall),
                    secs(cpu)
                ));
            }
            Some(cpu) if cpu < BLOCKED_CPU => {
                return Some(format!(
                    "no console output for {} s and the emulator used {} ms of CPU in them: it is blocked on the host (or every guest CPU halted with interrupts off); see the host report above",
                    secs(quiet.wall),
                    cpu.as_millis()
                ));
            }
            Some(cpu) if quiet.wall >= timeout * STARVED_FACTOR => {
                return Some(format!(
                    "no console output for {} s, and the host gave the emulator only {} s of CPU in them (too loaded to run it)",
                    secs(quiet.wall),
                    secs(cpu)
                ));
            }
            Some(_) => {}
        }
    }
    let limit = timeout * TOTAL_FACTOR;
    let over_total = total.wall >= limit
        && match total.cpu {
            None => true,
            Some(cpu) => cpu >= limit || total.wall >= limit * STARVED_FACTOR,
        };
    over_total.then(|| match total.cpu {
        Some(cpu) => format!(
            "still running after {} s ({} s of emulator CPU; the limit is {TOTAL_FACTOR} x --timeout)",
            secs(total.wall),
            secs(cpu)
        ),
        None => format!(
            "still running after {} s ({TOTAL_FACTOR} x --timeout)",
            secs(limit)
        ),
    })
}

/// A one-line notice for a quiet spell past `timeout` that [`over_time`]
/// lets go on because the host starves the emulator; `None` otherwise.
pub fn starved_notice(quiet: Spell, timeout: Duration) -> Option<String> {
    let cpu = quiet.cpu?;
    (quiet.wall >= timeout && cpu < timeout && cpu >= BLOCKED_CPU).then(|| {
        format!(
            "quiet for {} s, but the loaded host gave the emulator only {} s of CPU in them: waiting until it has had {} s (at most {} s)",
            quiet.wall.as_secs(),
            cpu.as_secs(),
            timeout.as_secs(),
            (timeout * STARVED_FACTOR).as_secs()
        )
    })
}

/// x86_64 system-call numbers worth naming in a report (the host is x86_64
/// Linux; others are printed as numbers).
const SYSCALLS: [(u64, &str); 14] = [
    (0, "read"),
    (1, "write"),
    (7, "poll"),
    (16, "ioctl"),
    (20, "writev"),
    (23, "select"),
    (35, "nanosleep"),
    (202, "futex"),
    (230, "clock_nanosleep"),
    (232, "epoll_wait"),
    (270, "pselect6"),
    (271, "ppoll"),
    (281, "epoll_pwait"),
    (61, "wait4"),
];

/// System calls whose first argument is a file descriptor.
const FD_CALLS: [&str; 4] = ["read", "write", "ioctl", "writev"];

/// One line per thread of process `pid`, and the last console line, each
/// prefixed with `label`. Nothing is printed for threads that are gone.
pub fn report(label: &str, pid: u32, program: &str, last_line: Option<&str>) -> Vec<String> {
    let mut lines = vec![format!(
        "[{label}] STALL: no console output for a while; {program} (pid {pid}) on the host:"
    )];
    let tasks = Path::new("/proc").join(pid.to_string()).join("task");
    let mut tids: Vec<u32> = std::fs::read_dir(&tasks)
        .map(|dir| {
            dir.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    tids.sort_unstable();
    if tids.is_empty() {
        lines.push(format!("[{label}]   (process {pid} is gone)"));
    }
    for tid in tids {
        let dir = tasks.join(tid.to_string());
        let stat = std::fs::read_to_string(dir.join("stat")).unwrap_or_default();
        let (comm, state) = comm_and_state(&stat);
        let wchan = std::fs::read_to_string(dir.join("wchan")).unwrap_or_default();
        let syscall = std::fs::read_to_string(dir.join("syscall")).unwrap_or_default();
        let call = describe_syscall(&syscall, |fd| {
            std::fs::read_link(
                Path::new("/proc")
                    .join(pid.to_string())
                    .join("fd")
                    .join(fd.to_string()),
            )
            .ok()
            .map(|path| path.display().to_string())
        });
        let wchan = if wchan.is_empty() || wchan == "0" {
            String::new()
        } else {
            format!(", in {wchan}")
        };
        lines.push(format!(
            "[{label}]   thread {tid} ({comm}): state {state}{wchan}; {call}"
        ));
    }
    lines.push(format!(
        "[{label}]   kernel's last line: {}",
        last_line.unwrap_or("(none)")
    ));
    lines
}

/// `comm` and the one-letter state from a `/proc/.../stat` line.
fn comm_and_state(stat: &str) -> (String, String) {
    let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
        return ("?".into(), "?".into());
    };
    let comm = stat[open + 1..close].to_string();
    let state = stat[close + 1..]
        .split_whitespace()
        .next()
        .unwrap_or("?")
        .to_string();
    (comm, state)
}

/// A `/proc/.../syscall` line as text: `running`, or the call's name, and
/// for a call on a descriptor the file behind it (`fd_path`).
fn describe_syscall(text: &str, fd_path: impl Fn(u64) -> Option<String>) -> String {
    let mut words = text.split_whitespace();
    let Some(first) = words.next() else {
        return "no system call information".to_string();
    };
    if first == "running" {
        return "running (not in a system call)".to_string();
    }
    let Ok(number) = first.parse::<u64>() else {
        return format!("system call `{}`", text.trim());
    };
    let name = SYSCALLS.iter().find(|&&(n, _)| n == number).map_or_else(
        || format!("syscall {number}"),
        |&(_, name)| name.to_string(),
    );
    let arg = words
        .next()
        .and_then(|a| u64::from_str_radix(a.trim_start_matches("0x"), 16).ok());
    match arg {
        Some(fd) if FD_CALLS.contains(&name.as_str()) => {
            let file = fd_path(fd).unwrap_or_else(|| "?".into());
            format!("blocked in {name}(fd {fd} = {file})")
        }
        _ => format!("blocked in {name}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spell(wall: u64, cpu: Option<u64>) -> Spell {
        Spell {
            wall: Duration::from_secs(wall),
            cpu: cpu.map(Duration::from_secs),
        }
    }

    #[test]
    fn without_cpu_figures_wall_time_decides() {
        let t = Duration::from_secs(100);
        assert_eq!(over_time(spell(0, None), spell(0, None), t), None);
        let quiet = over_time(spell(101, None), spell(101, None), t).unwrap();
        assert!(quiet.starts_with("no console output for 100 s"), "{quiet}");
        let total = over_time(spell(501, None), spell(1, None), t).unwrap();
        assert!(total.starts_with("still running after 500 s"), "{total}");
        assert_eq!(over_time(spell(499, None), spell(99, None), t), None);
    }

    #[test]
    fn a_quiet_spell_is_a_hang_only_once_the_emulator_had_the_cpu_for_it() {
        let t = Duration::from_secs(120);
        // A running emulator (one core's worth): a hang at the limit.
        let hang = over_time(spell(130, Some(130)), spell(121, Some(120)), t).unwrap();
        assert!(
            hang.contains("121 s, 120 s of them on the emulator's CPU"),
            "{hang}"
        );
        // A loaded host: 240 s quiet but only 20 s of CPU; waits, and says so.
        assert_eq!(
            over_time(spell(300, Some(90)), spell(240, Some(20)), t),
            None
        );
        let notice = starved_notice(spell(240, Some(20)), t).unwrap();
        assert!(notice.contains("only 20 s of CPU"), "{notice}");
        assert_eq!(starved_notice(spell(100, Some(20)), t), None);
        assert_eq!(starved_notice(spell(240, Some(130)), t), None);
        // ...until the emulator has had the limit, or the backstop.
        assert!(over_time(spell(900, Some(300)), spell(800, Some(120)), t).is_some());
        let starved = over_time(spell(1300, Some(119)), spell(1200, Some(100)), t).unwrap();
        assert!(starved.contains("too loaded"), "{starved}");
    }

    #[test]
    fn an_emulator_that_uses_no_cpu_is_blocked_and_fails_at_the_limit() {
        let t = Duration::from_secs(120);
        let quiet = Spell {
            wall: Duration::from_secs(120),
            cpu: Some(Duration::from_millis(300)),
        };
        let blocked = over_time(spell(500, Some(200)), quiet, t).unwrap();
        assert!(
            blocked.contains("300 ms of CPU") && blocked.contains("blocked"),
            "{blocked}"
        );
        assert_eq!(starved_notice(quiet, t), None);
    }

    #[test]
    fn the_whole_boot_is_bounded_in_cpu_time_with_a_wall_backstop() {
        let t = Duration::from_secs(100);
        // Printing all along, 600 s of wall but 200 s of CPU: goes on.
        assert_eq!(over_time(spell(600, Some(200)), spell(1, Some(1)), t), None);
        let cpu = over_time(spell(600, Some(500)), spell(1, Some(1)), t).unwrap();
        assert!(cpu.contains("500 s of emulator CPU"), "{cpu}");
        assert!(over_time(spell(5000, Some(200)), spell(1, Some(1)), t).is_some());
    }

    #[test]
    fn clocks_measure_quiet_spells_in_the_emulators_cpu_time() {
        let ms = Duration::from_millis;
        let mut c = Clocks::start(None);
        assert_eq!(c.quiet().cpu, None);
        c.sample(Some(ms(5000)));
        c.sample(Some(ms(7000)));
        assert_eq!(c.quiet().cpu, Some(ms(2000)));
        c.output(std::time::Instant::now());
        assert_eq!(c.quiet().cpu, Some(Duration::ZERO));
        c.sample(Some(ms(7500)));
        assert_eq!(c.quiet().cpu, Some(ms(500)));
        // Found after its start: the emulator's whole CPU time is the boot's.
        assert_eq!(c.total().cpu, Some(ms(7500)));
        c.sample(None);
        assert_eq!(
            c.quiet().cpu,
            Some(ms(500)),
            "an unreadable sample changes nothing"
        );
    }

    #[test]
    fn cpu_time_comes_from_utime_and_stime() {
        let stat = "42 (bochs (bin)) R 1 42 42 0 -1 4194560 100 0 0 0 1234 66 0 0 20 0 3";
        assert_eq!(cpu_of_stat(stat), Some(Duration::from_millis(13000)));
        assert_eq!(cpu_of_stat("garbage"), None);
        assert!(cpu_time(std::process::id()).is_some());
        assert_eq!(cpu_time(u32::MAX), None);
    }

    #[test]
    fn a_write_on_a_terminal_names_the_terminal() {
        let line = "1 0x5 0x7f00 0x200 0x0 0x0 0x0 0x7ffd 0x7f01";
        let text = describe_syscall(line, |fd| (fd == 5).then(|| "/dev/ptmx".into()));
        assert_eq!(text, "blocked in write(fd 5 = /dev/ptmx)");
    }

    #[test]
    fn other_calls_and_running_threads_are_named() {
        assert_eq!(
            describe_syscall("running", |_| None),
            "running (not in a system call)"
        );
        assert_eq!(
            describe_syscall("202 0x1 0x80 0x0 0x0 0x0 0x0 0x1 0x2", |_| None),
            "blocked in futex"
        );
        assert_eq!(
            describe_syscall("999 0x1 0x2", |_| None),
            "blocked in syscall 999"
        );
        assert_eq!(describe_syscall("", |_| None), "no system call information");
    }

    #[test]
    fn stat_lines_give_the_name_and_state_even_with_parentheses() {
        let stat = "4242 (bochs (bin)) S 1 4242 4242 0 -1";
        assert_eq!(comm_and_state(stat), ("bochs (bin)".into(), "S".into()));
        assert_eq!(comm_and_state("garbage"), ("?".into(), "?".into()));
    }

    #[test]
    fn a_report_of_this_process_lists_its_threads_and_the_last_line() {
        let lines = report("t", std::process::id(), "xtask", Some("test a ... "));
        assert!(lines[0].contains("STALL"), "{lines:?}");
        assert!(lines.iter().any(|l| l.contains("thread ")), "{lines:?}");
        assert!(lines.last().unwrap().ends_with("test a ... "), "{lines:?}");
        let gone = report("t", u32::MAX, "x", None);
        assert!(gone.iter().any(|l| l.contains("gone")), "{gone:?}");
    }
}
