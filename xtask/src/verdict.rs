//! The kernel's verdict line, and the nonce that makes it unforgeable.
//!
//! The example kernel runs ring-3 processes, and any of them can write any
//! text to the console through `int 0x80`, including `1 passed, 0 failed`.
//! So every boot of the example kernel gets a fresh random nonce on its
//! command line (`verdict=HEX`, on the `-append` line or in the ISO's GRUB
//! entry); the kernel keeps it in kernel memory, never prints it before its
//! end, and appends it to its one summary line:
//!
//! ```text
//! 42 passed, 0 failed [verdict 9f86d081884c7d65]
//! ```
//!
//! A judge given a nonce accepts only the summary line that carries it;
//! summary-shaped lines without it are counted and reported as ignored. A
//! user process cannot learn the nonce: it is not in any page a process
//! maps, and the console is write-only to them. QEMU boots keep their exit
//! status as a second witness (only the kernel can write `isa-debug-exit`'s
//! port; ring 3 has no I/O permission). Boots without a nonce (the minimal
//! kernel, which runs no foreign code; a GRUB ISO on a real PC) are judged by
//! the plain line.

use std::fs::File;
use std::io::Read;

/// The command-line word that carries the nonce.
pub const OPTION: &str = "verdict=";

/// A fresh nonce: 16 hex digits from the host's random source.
pub fn nonce() -> String {
    let mut bytes = [0u8; 8];
    let read = File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
    if read.is_err() {
        // No /dev/urandom (not Linux): the clock and the process id, which
        // no guest program can know either.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let mixed = (now as u64) ^ (u64::from(std::process::id()) << 32);
        bytes = mixed.to_le_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `cmdline` with the nonce's word appended.
pub fn with_nonce(cmdline: Option<&str>, nonce: &str) -> String {
    match cmdline {
        Some(words) if !words.trim().is_empty() => format!("{words} {OPTION}{nonce}"),
        _ => format!("{OPTION}{nonce}"),
    }
}

/// Parses a summary line: `N passed, M failed`, followed by
/// ` [verdict NONCE]` when `nonce` is given (and only then).
pub fn summary_line(line: &str, nonce: Option<&str>) -> Option<(u32, u32)> {
    let line = line.trim();
    let counts = match nonce {
        Some(nonce) => line
            .strip_suffix(']')?
            .strip_suffix(nonce)?
            .strip_suffix(" [verdict ")?,
        None => line,
    };
    let (passed, failed) = counts.split_once(" passed, ")?;
    let failed = failed.strip_suffix(" failed")?;
    Some((passed.parse().ok()?, failed.parse().ok()?))
}

/// Whether `line` looks like a summary line but does not carry `nonce`: a
/// forgery (or a kernel that ignored its nonce), never a verdict.
pub fn unauthenticated(line: &str, nonce: Option<&str>) -> bool {
    let Some(nonce) = nonce else { return false };
    if summary_line(line, Some(nonce)).is_some() {
        return false;
    }
    let plain = line
        .trim()
        .split(" [verdict ")
        .next()
        .unwrap_or_default()
        .to_string();
    summary_line(&plain, None).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonces_are_16_hex_digits_and_differ() {
        let (a, b) = (nonce(), nonce());
        assert_eq!(a.len(), 16);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()), "{a}");
        assert_ne!(a, b);
    }

    #[test]
    fn the_nonce_is_appended_to_the_command_line() {
        assert_eq!(with_nonce(None, "ab"), "verdict=ab");
        assert_eq!(with_nonce(Some(""), "ab"), "verdict=ab");
        assert_eq!(
            with_nonce(Some("fault=page"), "ab"),
            "fault=page verdict=ab"
        );
    }

    #[test]
    fn with_a_nonce_only_the_line_that_carries_it_counts() {
        let n = Some("0123456789abcdef");
        assert_eq!(
            summary_line("42 passed, 0 failed [verdict 0123456789abcdef]", n),
            Some((42, 0))
        );
        assert_eq!(summary_line("1 passed, 0 failed", n), None);
        assert_eq!(
            summary_line("1 passed, 0 failed [verdict 0123456789abcdee]", n),
            None
        );
        assert_eq!(
            summary_line("1 passed, 0 failed [verdict 0123456789abcdef] x", n),
            None
        );
        assert!(unauthenticated("1 passed, 0 failed", n));
        assert!(unauthenticated("1 passed, 0 failed [verdict 00]", n));
        assert!(!unauthenticated(
            "42 passed, 0 failed [verdict 0123456789abcdef]",
            n
        ));
        assert!(!unauthenticated("test a ... ok", n));
        assert!(!unauthenticated("1 passed, 0 failed", None));
    }

    #[test]
    fn without_a_nonce_the_plain_form_counts() {
        assert_eq!(summary_line("12 passed, 0 failed", None), Some((12, 0)));
        assert_eq!(summary_line("  3 passed, 2 failed\r", None), Some((3, 2)));
        assert_eq!(summary_line("x passed, 0 failed", None), None);
        assert_eq!(summary_line("3 passed, 0 failed!", None), None);
        assert_eq!(summary_line("3 passed, 0 failed [verdict ab]", None), None);
    }
}
