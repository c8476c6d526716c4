//! Instruction counts with `valgrind --tool=callgrind`: repeatable on a
//! noisy machine, because they count instructions, not time.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::hotpaths::HotPath;

/// Whether `valgrind` runs here.
pub fn available() -> bool {
    Command::new("valgrind")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The instruction total of a callgrind output file: its `totals:` line
/// (or `summary:` line) for the first event, `Ir`.
pub fn parse_total(out: &str) -> Option<u64> {
    out.lines().find_map(|line| {
        let rest = line
            .strip_prefix("totals:")
            .or_else(|| line.strip_prefix("summary:"))?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// Runs `binary args...` under callgrind, writing its profile to `out`;
/// returns the instructions executed.
pub fn count(binary: &Path, args: &[String], out: &Path) -> Result<u64, String> {
    let output = Command::new("valgrind")
        .arg("--tool=callgrind")
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg(binary)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("cannot start valgrind: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "valgrind {} {} failed: {}",
            binary.display(),
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let text = std::fs::read_to_string(out).map_err(|e| format!("{}: {e}", out.display()))?;
    parse_total(&text).ok_or_else(|| format!("{}: no totals line", out.display()))
}

/// The instructions of one operation of `path`.
#[derive(Debug, Clone, PartialEq)]
pub struct PerOp {
    /// Instructions per operation.
    pub instructions: f64,
    /// The path counted.
    pub path: HotPath,
}

/// Counts `path` with `n` and `2n` operations in `binary` and divides the
/// difference by `n`.
pub fn per_op(binary: &Path, path: &HotPath, dir: &Path) -> Result<PerOp, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let short_out = dir.join(format!("{}.short.out", path.name));
    let long_out = dir.join(format!("{}.long.out", path.name));
    let args = |n: usize| vec![path.name.to_string(), n.to_string()];
    let short = count(binary, &args(path.n), &short_out)?;
    let long = count(binary, &args(2 * path.n), &long_out)?;
    let diff = long.checked_sub(short).ok_or_else(|| {
        format!(
            "{}: {} instructions for {} operations but {} for {}",
            path.name,
            long,
            2 * path.n,
            short,
            path.n
        )
    })?;
    Ok(PerOp {
        instructions: diff as f64 / path.n as f64,
        path: *path,
    })
}

/// Profiles `path` (its `2n` run) with collection limited to the measured
/// section, and returns the `top` functions by their own (exclusive)
/// instruction count, as `callgrind_annotate` prints them.
pub fn profile(binary: &Path, path: &HotPath, dir: &Path, top: usize) -> Result<String, String> {
    let out = dir.join(format!("{}.profile.out", path.name));
    let status = Command::new("valgrind")
        .arg("--tool=callgrind")
        .arg("--toggle-collect=*hotpaths::measured*")
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg(binary)
        .args([path.name.to_string(), (2 * path.n).to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|e| format!("cannot start valgrind: {e}"))?;
    if !status.success() {
        return Err(format!("valgrind {} failed ({status})", path.name));
    }
    let output = Command::new("callgrind_annotate")
        .arg("--inclusive=no")
        .arg(&out)
        .output()
        .map_err(|e| format!("cannot start callgrind_annotate: {e}"))?;
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).into_owned());
    }
    let text = String::from_utf8_lossy(&output.stdout);
    // The totals line, then the first `top` function lines.
    let total = text
        .lines()
        .find(|l| l.contains("PROGRAM TOTALS"))
        .unwrap_or_default();
    let functions: Vec<String> = text
        .lines()
        .skip_while(|l| !l.contains("file:function"))
        .skip(2)
        .take_while(|l| !l.trim().is_empty() && !l.starts_with("--"))
        .take(top)
        .map(shorten)
        .collect();
    Ok(format!(
        "{} operations; {}\n{}",
        2 * path.n,
        total.trim(),
        functions.join("\n")
    ))
}

/// A `callgrind_annotate` line without the object file and with short
/// source paths (workspace-relative, `std/...`, `crate-version/...`).
pub fn shorten(line: &str) -> String {
    let line = match line.rfind(" [/") {
        Some(i) if line.ends_with(']') => &line[..i],
        _ => line,
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(|p| format!("{}/", p.display()))
        .unwrap_or_default();
    let mut out = line.replace(&root, "");
    for marker in ["/library/", "/index.crates.io-"] {
        while let Some(start) = out.find(marker) {
            let begin = out[..start].rfind(' ').map_or(0, |i| i + 1);
            let skip = if marker == "/library/" {
                start + marker.len()
            } else {
                out[start + 1..].find('/').map_or(start, |i| start + 2 + i)
            };
            let prefix = if marker == "/library/" { "std/" } else { "" };
            out = format!("{}{prefix}{}", &out[..begin], &out[skip..]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_line_is_found_and_parsed() {
        let out = "version: 1\ncreator: callgrind\nevents: Ir\nfn=main\n1 5\nsummary: 12345\ntotals: 12345\n";
        assert_eq!(parse_total(out), Some(12345));
        assert_eq!(parse_total("events: Ir\n"), None);
        assert_eq!(parse_total("totals: abc\nsummary: 7\n"), Some(7));
    }

    #[test]
    fn profile_lines_are_shortened() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let line = format!(
            "1,024 (50.00%)  {}/kmap/src/pool.rs:kmap::pool::claim [/work/targets/x/hotpaths]",
            root.display()
        );
        assert_eq!(
            shorten(&line),
            "1,024 (50.00%)  kmap/src/pool.rs:kmap::pool::claim"
        );
        let std = "7 (1.00%)  /rustc/0123abcd/library/core/src/cmp.rs:f";
        assert_eq!(shorten(std), "7 (1.00%)  std/core/src/cmp.rs:f");
        let dep = "9 (2.00%)  /root/.cargo/registry/src/index.crates.io-1949cf/heapless-0.9.3/src/lib.rs:g";
        assert_eq!(shorten(dep), "9 (2.00%)  heapless-0.9.3/src/lib.rs:g");
        assert_eq!(shorten("5 (1%)  ???:h"), "5 (1%)  ???:h");
    }
}
