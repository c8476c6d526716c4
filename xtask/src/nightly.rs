//! The nightly toolchain that `fuzz` (cargo-fuzz, libFuzzer's sanitizer
//! flags) and `miri` need, installed through rustup when missing. The
//! workspace itself builds on the stable toolchain `rust-toolchain.toml`
//! pins; these commands name `+nightly` explicitly.

use std::process::{Command, Stdio};

use crate::process;

/// `cargo +nightly` with the variables a stable outer cargo may have set
/// removed, so the nested cargo uses nightly's own rustc and rustdoc.
pub fn cargo() -> Command {
    let mut command = Command::new("cargo");
    command
        .arg("+nightly")
        .current_dir(process::repo_root())
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("CARGO")
        .env_remove("RUSTC")
        .env_remove("RUSTDOC")
        .env_remove("RUSTC_WRAPPER");
    command
}

/// Whether `command` runs and exits 0 (output discarded).
fn succeeds(command: &mut Command) -> bool {
    command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// Installs the nightly toolchain if it is missing (an installed nightly is
/// used as it is, not updated), then adds `components`.
pub fn ensure(components: &[&str]) -> Result<(), String> {
    if !succeeds(cargo().arg("--version")) {
        println!("the nightly toolchain is missing; installing it");
        process::run(Command::new("rustup").args([
            "toolchain",
            "install",
            "nightly",
            "--profile",
            "minimal",
        ]))
        .map_err(|e| format!("{e}\n(rustup is needed to install the nightly toolchain)"))?;
    }
    if !components.is_empty() {
        process::run(
            Command::new("rustup")
                .args(["component", "add", "--toolchain", "nightly"])
                .args(components),
        )?;
    }
    Ok(())
}
