//! Running commands: echo them, run them, turn failure into a message.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Root of the repository (the workspace), found from this crate's location.
pub fn repo_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().unwrap_or(manifest_dir).to_path_buf()
}

/// A `cargo` command: the cargo that runs xtask (same toolchain), falling
/// back to `cargo` on `PATH`.
pub fn cargo() -> Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    Command::new(cargo)
}

/// The command line of `command`, for messages.
pub fn describe(command: &Command) -> String {
    let mut text = command.get_program().to_string_lossy().into_owned();
    if let Some(name) = Path::new(&text).file_name() {
        text = name.to_string_lossy().into_owned();
    }
    for arg in command.get_args() {
        text.push(' ');
        text.push_str(&arg.to_string_lossy());
    }
    if let Some(dir) = command.get_current_dir() {
        text.push_str(&format!("    (in {})", dir.display()));
    }
    text
}

/// Runs `command` with inherited output; fails unless it exits 0.
pub fn run(command: &mut Command) -> Result<(), String> {
    let text = describe(command);
    println!("$ {text}");
    let status = command
        .status()
        .map_err(|error| format!("cannot start `{text}`: {error}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{text}` failed ({status})"))
    }
}
