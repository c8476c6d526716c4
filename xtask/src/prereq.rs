//! Prerequisites shared by `run` and `test`: the bare-metal target, the
//! rustfmt and clippy components, and QEMU.
//!
//! rustup installs what `rust-toolchain.toml` lists only when it installs
//! the toolchain itself; on a machine that already had the toolchain the
//! target and components may be missing, so add them (idempotent).

use std::process::{Command, Stdio};

use crate::kernel::TARGET;
use crate::process;
use crate::qemu::QEMU;

/// The Debian package that provides [`QEMU`].
const QEMU_PACKAGE: &str = "qemu-system-x86";

/// Makes sure the toolchain pieces (and QEMU, if `need_qemu`) are present.
pub fn ensure(need_qemu: bool) -> Result<(), String> {
    let root = process::repo_root();
    let mut add_target = Command::new("rustup");
    add_target
        .current_dir(&root)
        .args(["target", "add", TARGET]);
    process::run(&mut add_target)
        .map_err(|error| format!("{error}\n(rustup is needed to install the {TARGET} target)"))?;
    let mut add_components = Command::new("rustup");
    add_components
        .current_dir(&root)
        .args(["component", "add", "rustfmt", "clippy"]);
    process::run(&mut add_components)?;
    if need_qemu {
        ensure_qemu()?;
    }
    Ok(())
}

/// Installs the Debian `packages` with apt-get (as root only).
pub fn apt_install(packages: &[&str]) -> Result<(), String> {
    if !is_root() {
        return Err(format!(
            "not root: install them with\n    sudo apt-get install -y --no-install-recommends {}",
            packages.join(" ")
        ));
    }
    process::run(
        Command::new("apt-get")
            .arg("update")
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    process::run(
        Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends"])
            .args(packages)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

/// Whether `program --version` runs.
pub fn runs(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// Whether this process runs as root (uid 0), read from `/proc`.
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().next().map(|uid| uid == "0"))
        })
        .unwrap_or(false)
}

fn ensure_qemu() -> Result<(), String> {
    if runs(QEMU) {
        return Ok(());
    }
    let install =
        format!("apt-get update && apt-get install -y --no-install-recommends {QEMU_PACKAGE}");
    if !is_root() {
        return Err(format!(
            "{QEMU} is not on PATH; install it with:\n    sudo sh -c '{install}'"
        ));
    }
    println!("{QEMU} is not on PATH; installing {QEMU_PACKAGE}");
    apt_install(&[QEMU_PACKAGE])?;
    if runs(QEMU) {
        Ok(())
    } else {
        Err(format!(
            "{QEMU} still does not run after installing {QEMU_PACKAGE}"
        ))
    }
}
