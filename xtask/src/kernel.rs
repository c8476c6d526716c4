//! Building the example kernel (`examples/kernel`), one build per paging
//! mode.
//!
//! The kernel is not a workspace member: its target and linker settings live
//! in `examples/kernel/.cargo/config.toml`, which cargo only reads when run
//! from that directory. Each mode gets its own target directory
//! (`examples/kernel/target/mode-*`) so the two builds do not overwrite each
//! other's ELF or invalidate each other's cache.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::process;

/// The kernel's bare-metal target.
pub const TARGET: &str = "i586-unknown-linux-gnu";

/// A paging mode of the example kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Classic 32-bit two-level paging.
    TwoLevel,
    /// Physical Address Extension.
    Pae,
}

impl Mode {
    /// Every mode, in build order.
    pub const ALL: [Mode; 2] = [Mode::TwoLevel, Mode::Pae];

    /// Parses `2level`, `pae` or `both`.
    pub fn parse_list(text: &str) -> Result<Vec<Mode>, String> {
        match text {
            "2level" => Ok(vec![Mode::TwoLevel]),
            "pae" => Ok(vec![Mode::Pae]),
            "both" => Ok(Mode::ALL.to_vec()),
            other => Err(format!("--mode expects 2level, pae or both, got `{other}`")),
        }
    }

    /// Short name (`2level`, `pae`).
    pub fn name(self) -> &'static str {
        match self {
            Mode::TwoLevel => "2level",
            Mode::Pae => "pae",
        }
    }

    /// The kernel's cargo feature for this mode.
    pub fn feature(self) -> &'static str {
        match self {
            Mode::TwoLevel => "mode-2level",
            Mode::Pae => "mode-pae",
        }
    }

    /// Guest RAM for `cargo xtask run`.
    pub fn default_mem(self) -> &'static str {
        match self {
            Mode::TwoLevel => "2G",
            Mode::Pae => "8G",
        }
    }

    /// QEMU CPU model: the plain `qemu32` (PSE, PAE, no NX) for 2-level;
    /// `max` for PAE, the TCG model that has NX and reports a 36-bit
    /// physical address width.
    pub fn qemu_cpu(self) -> &'static str {
        match self {
            Mode::TwoLevel => "qemu32",
            Mode::Pae => "max",
        }
    }
}

/// `examples/kernel`.
pub fn kernel_dir() -> PathBuf {
    process::repo_root().join("examples").join("kernel")
}

/// Target directory of one mode's build.
fn target_dir(mode: Mode) -> PathBuf {
    kernel_dir().join("target").join(mode.feature())
}

/// A cargo command run in the kernel's directory for `mode`.
fn kernel_cargo(mode: Mode, subcommand: &str) -> Command {
    let mut command = process::cargo();
    command
        .current_dir(kernel_dir())
        .env("CARGO_TARGET_DIR", target_dir(mode))
        .args([subcommand, "--release", "--features", mode.feature()]);
    command
}

/// Builds the kernel for `mode` (release profile); returns the ELF's path.
pub fn build(mode: Mode) -> Result<PathBuf, String> {
    process::run(&mut kernel_cargo(mode, "build"))?;
    let elf = target_dir(mode)
        .join(TARGET)
        .join("release")
        .join("example-kernel");
    if elf.is_file() {
        Ok(elf)
    } else {
        Err(format!(
            "the build succeeded but {} is missing",
            elf.display()
        ))
    }
}

/// `cargo clippy -- -D warnings` on the kernel for `mode`.
pub fn clippy(mode: Mode) -> Result<(), String> {
    let mut command = kernel_cargo(mode, "clippy");
    command.args(["--", "-D", "warnings"]);
    process::run(&mut command)
}

/// `cargo fmt --check` on the kernel.
pub fn fmt_check() -> Result<(), String> {
    let mut command = process::cargo();
    command.current_dir(kernel_dir()).args(["fmt", "--check"]);
    process::run(&mut command)
}

/// Fail if `elf` holds an x87, MMX or SSE instruction. The kernel never
/// saves FPU state, so none of its code may touch the FPU; on i586 the usual
/// culprit is a 64-bit atomic load (`AtomicU64`), which LLVM compiles to
/// `fild`/`fistp`. Every x87 mnemonic starts with `f` (no integer one does);
/// MMX/SSE use `%mm`/`%xmm` registers. (`scripts/check-no-fpu.sh` is the
/// same check as a shell command.)
pub fn check_no_fpu(elf: &Path) -> Result<(), String> {
    let out = Command::new("objdump")
        .args(["-d", "-C", "--no-show-raw-insn"])
        .arg(elf)
        .output()
        .map_err(|e| format!("cannot run objdump (binutils): {e}"))?;
    if !out.status.success() {
        return Err(format!("objdump failed on {}", elf.display()));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut function = "";
    let mut hits = std::collections::BTreeMap::<String, usize>::new();
    for line in text.lines() {
        if line.ends_with(">:") {
            function = line.split_once(' ').map_or(line, |(_, f)| f);
            continue;
        }
        let Some((_, insn)) = line.split_once(":\t") else {
            continue;
        };
        let mnemonic = insn.split_whitespace().next().unwrap_or("");
        if mnemonic.starts_with('f')
            || mnemonic == "emms"
            || insn.contains("%mm")
            || insn.contains("%xmm")
        {
            *hits.entry(function.to_string()).or_default() += 1;
        }
    }
    if hits.is_empty() {
        Ok(())
    } else {
        let list: Vec<String> = hits.iter().map(|(f, n)| format!("{f} ({n})")).collect();
        Err(format!(
            "{} uses the FPU in: {}",
            elf.display(),
            list.join(", ")
        ))
    }
}
