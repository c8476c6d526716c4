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

/// Why a boot that began at `start` and last printed at `quiet_since` is
/// over its time, for a quiet limit of `timeout`; `None` while it may go
/// on.
pub fn over_time(
    start: std::time::Instant,
    quiet_since: std::time::Instant,
    timeout: Duration,
) -> Option<String> {
    if quiet_since.elapsed() >= timeout {
        Some(format!(
            "no console output for {} s (a hang: the kernel's watchdog reports one in 10 s of its own time, so see the host report above)",
            timeout.as_secs()
        ))
    } else if start.elapsed() >= timeout * TOTAL_FACTOR {
        Some(format!(
            "still running after {} s ({TOTAL_FACTOR} x --timeout)",
            (timeout * TOTAL_FACTOR).as_secs()
        ))
    } else {
        None
    }
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

    #[test]
    fn a_boot_is_over_time_when_quiet_for_the_timeout_or_past_five_times_it() {
        use std::time::Instant;
        let now = Instant::now();
        let t = Duration::from_secs(100);
        assert_eq!(over_time(now, now, t), None);
        let long_ago = now - Duration::from_secs(101);
        let quiet = over_time(now, long_ago, t).unwrap();
        assert!(quiet.starts_with("no console output for 100 s"), "{quiet}");
        let started = now - Duration::from_secs(501);
        let total = over_time(started, now, t).unwrap();
        assert!(total.starts_with("still running after 500 s"), "{total}");
        assert_eq!(over_time(now - Duration::from_secs(499), now, t), None);
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
