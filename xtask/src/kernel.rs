//! Building the kernels, one build per paging mode: the example kernel
//! (`examples/kernel`) and the minimal one (`examples/minimal`, the code of
//! `docs/adopting.md`).
//!
//! Neither kernel is a workspace member: its target and linker settings
//! live in its `.cargo/config.toml`, which cargo only reads when run from
//! that directory. Each mode gets its own target directory
//! (`target/mode-*` in the kernel's directory) so the two builds do not
//! overwrite each other's ELF or invalidate each other's cache. The minimal
//! kernel's library also builds for the host, where its tests run on the
//! simulated MMU (`target/host`).

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

    /// For people: `2-level`, `PAE`.
    pub fn label(self) -> &'static str {
        match self {
            Mode::TwoLevel => "2-level",
            Mode::Pae => "PAE",
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

/// One of the repository's kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernel {
    /// `examples/kernel`: every feature of the crates, 63 self-tests (SMP, processes and hostile processes included).
    Example,
    /// `examples/minimal`: the adoption guide's kernel.
    Minimal,
}

impl Kernel {
    /// Both kernels.
    pub const ALL: [Kernel; 2] = [Kernel::Example, Kernel::Minimal];

    /// Parses `example` or `minimal`.
    pub fn parse(text: &str) -> Result<Kernel, String> {
        match text {
            "example" => Ok(Kernel::Example),
            "minimal" => Ok(Kernel::Minimal),
            other => Err(format!(
                "--kernel expects example or minimal, got `{other}`"
            )),
        }
    }

    /// Its directory.
    pub fn dir(self) -> PathBuf {
        let name = match self {
            Kernel::Example => "kernel",
            Kernel::Minimal => "minimal",
        };
        process::repo_root().join("examples").join(name)
    }

    /// The name of its binary (the ELF).
    fn bin(self) -> &'static str {
        match self {
            Kernel::Example => "example-kernel",
            Kernel::Minimal => "minimal-kernel",
        }
    }

    /// Guest RAM for a boot of `mode`: the example kernel's defaults; 1 GiB
    /// for the minimal one (highmem starts at 896 MiB).
    pub fn default_mem(self, mode: Mode) -> &'static str {
        match self {
            Kernel::Example => mode.default_mem(),
            Kernel::Minimal => "1G",
        }
    }
}

/// `examples/kernel`.
pub fn kernel_dir() -> PathBuf {
    Kernel::Example.dir()
}

/// Target directory of one mode's build.
fn target_dir(kernel: Kernel, mode: Mode) -> PathBuf {
    kernel.dir().join("target").join(mode.feature())
}

/// A cargo command run in `kernel`'s directory for `mode`.
fn kernel_cargo(kernel: Kernel, mode: Mode, subcommand: &str) -> Command {
    let mut command = process::cargo();
    command
        .current_dir(kernel.dir())
        .env("CARGO_TARGET_DIR", target_dir(kernel, mode))
        .args([subcommand, "--release", "--features", mode.feature()]);
    command
}

/// Builds the example kernel for `mode` (release profile); returns the
/// ELF's path.
pub fn build(mode: Mode) -> Result<PathBuf, String> {
    build_kernel(Kernel::Example, mode)
}

/// Builds `kernel` for `mode` (release profile); returns the ELF's path.
pub fn build_kernel(kernel: Kernel, mode: Mode) -> Result<PathBuf, String> {
    process::run(&mut kernel_cargo(kernel, mode, "build"))?;
    let elf = target_dir(kernel, mode)
        .join(TARGET)
        .join("release")
        .join(kernel.bin());
    if elf.is_file() {
        Ok(elf)
    } else {
        Err(format!(
            "the build succeeded but {} is missing",
            elf.display()
        ))
    }
}

/// `cargo clippy -- -D warnings` on `kernel` for `mode`.
pub fn clippy(kernel: Kernel, mode: Mode) -> Result<(), String> {
    let mut command = kernel_cargo(kernel, mode, "clippy");
    command.args(["--", "-D", "warnings"]);
    process::run(&mut command)
}

/// `cargo fmt --check` on both kernels.
pub fn fmt_check() -> Result<(), String> {
    Kernel::ALL.into_iter().try_for_each(|kernel| {
        let mut command = process::cargo();
        command.current_dir(kernel.dir()).args(["fmt", "--check"]);
        process::run(&mut command)
    })
}

/// A cargo command for the minimal kernel's library and its tests, built
/// for the host (its `.cargo/config.toml` defaults to the bare-metal
/// target).
fn minimal_host_cargo(subcommand: &str) -> Result<Command, String> {
    let dir = Kernel::Minimal.dir();
    let mut command = process::cargo();
    command
        .current_dir(&dir)
        .env("CARGO_TARGET_DIR", dir.join("target").join("host"))
        .args([subcommand, "--lib", "--target", &host_triple()?]);
    Ok(command)
}

/// The minimal kernel's host tests: its page-table set-up run on the
/// simulated MMU in both modes.
pub fn minimal_host_tests() -> Result<(), String> {
    process::run(&mut minimal_host_cargo("test")?)
}

/// Clippy on the minimal kernel's library and host tests, warnings denied.
pub fn minimal_host_clippy() -> Result<(), String> {
    let mut command = minimal_host_cargo("clippy")?;
    command.args(["--tests", "--", "-D", "warnings"]);
    process::run(&mut command)
}

/// The host's target triple, from `rustc -vV`.
fn host_triple() -> Result<String, String> {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let out = Command::new(rustc)
        .arg("-vV")
        .output()
        .map_err(|e| format!("cannot run rustc -vV: {e}"))?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|line| line.strip_prefix("host: "))
        .map(str::to_string)
        .ok_or_else(|| "rustc -vV printed no host line".to_string())
}

/// The only kernel functions allowed an x87 instruction, and the one each
/// may hold: the process switch's eager save and restore of a process's
/// x87 state (`examples/kernel/src/arch/fpu.rs`).
const FPU_SWITCH: [(&str, &str); 3] = [
    ("<fpu_init>:", "fninit"),
    ("<fpu_save>:", "fnsave"),
    ("<fpu_restore>:", "frstor"),
];

/// Fail if `elf` holds an x87, MMX or SSE instruction outside the
/// process switch's save and restore ([`FPU_SWITCH`]). The kernel itself
/// never uses the FPU (it holds the running process's state); on i586 the
/// usual culprit is a 64-bit atomic load (`AtomicU64`), which LLVM
/// compiles to `fild`/`fistp`. Every x87 mnemonic starts with `f` (no
/// integer one does); MMX/SSE use `%mm`/`%xmm` registers.
/// (`scripts/check-no-fpu.sh` is the same check as a shell command.)
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
        if FPU_SWITCH.contains(&(function, mnemonic)) {
            continue;
        }
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
