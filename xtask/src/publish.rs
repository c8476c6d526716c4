//! What publishing the library crates needs, checked the way a stranger
//! would meet them:
//!
//! - `msrv`: the declared `rust-version` holds on a **fresh** dependency
//!   resolve, under both of cargo's resolver behaviours (newest versions,
//!   as resolver 2 and old cargos pick them; and versions compatible with
//!   `rust-version`, as resolver 3 picks them). The library crates are
//!   copied into a scratch workspace without our lockfile, resolved, and
//!   built with the declared toolchain for the host and for 32-bit x86.
//! - `package`: `cargo package` for the library crates (each built from its
//!   own tarball against the others'), then every packaged crate's own
//!   tests run from the unpacked tarballs, outside this workspace (only the
//!   unit tests of paging-core: see [`UNIT_TESTS_ONLY`]).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::process;

/// The 32-bit x86 target the MSRV toolchain builds for. The kernel's
/// target is `i586-unknown-linux-gnu`, but rustup offers no i586 standard
/// library for older toolchains on every mirror; i686 compiles the same
/// `target_arch = "x86"` code (the real CPU instructions), which is what
/// the MSRV check is about.
const MSRV_X86_TARGET: &str = "i686-unknown-linux-gnu";

/// The crates that get published: what a kernel links, and the host model
/// its tests use.
pub const LIBRARY_CRATES: [&str; 8] = [
    "paging-core",
    "paging-sim",
    "paging-x86-2level",
    "paging-x86-pae",
    "fixmap",
    "kmap",
    "tlb-shootdown",
    "vmap",
];

/// The crate whose tarball can only run its unit tests: its integration
/// tests and doctests instantiate the mapper with a backend, and a backend
/// depends on it, so that dev-dependency is a cycle cargo strips from the
/// package (the repository runs those tests).
const UNIT_TESTS_ONLY: &str = "paging-core";

/// Files of a crate directory that a package needs besides `src/`.
const CRATE_FILES: [&str; 5] = [
    "Cargo.toml",
    "README.md",
    "CHANGELOG.md",
    "LICENSE-MIT",
    "LICENSE-APACHE",
];

/// The workspace's declared `rust-version`.
pub fn declared_msrv() -> Result<String, String> {
    let manifest = fs::read_to_string(process::repo_root().join("Cargo.toml"))
        .map_err(|e| format!("cannot read Cargo.toml: {e}"))?;
    parse_rust_version(&manifest).ok_or_else(|| "no rust-version in Cargo.toml".to_string())
}

/// The value of the first `rust-version = "..."` line.
fn parse_rust_version(manifest: &str) -> Option<String> {
    manifest.lines().find_map(|line| {
        let rest = line.trim().strip_prefix("rust-version")?.trim_start();
        let value = rest.strip_prefix('=')?.trim();
        Some(value.trim_matches('"').to_string())
    })
}

/// The `msrv` step.
pub fn msrv() -> Result<(), String> {
    let version = declared_msrv()?;
    let toolchain = if version.matches('.').count() == 1 {
        format!("{version}.0")
    } else {
        version.clone()
    };
    process::run(Command::new("rustup").args([
        "toolchain",
        "install",
        &toolchain,
        "--profile",
        "minimal",
    ]))?;
    process::run(Command::new("rustup").args([
        "target",
        "add",
        "--toolchain",
        &toolchain,
        MSRV_X86_TARGET,
    ]))?;
    let scratch = scratch_workspace("msrv")?;
    for behaviour in ["allow", "fallback"] {
        println!(
            "--- fresh resolve with incompatible-rust-versions = {behaviour}, built with {toolchain}"
        );
        let lock = scratch.join("Cargo.lock");
        if lock.exists() {
            fs::remove_file(&lock).map_err(|e| format!("cannot remove {}: {e}", lock.display()))?;
        }
        process::run(
            process::cargo()
                .current_dir(&scratch)
                .arg("generate-lockfile")
                .env("CARGO_RESOLVER_INCOMPATIBLE_RUST_VERSIONS", behaviour),
        )?;
        for target in [None, Some(MSRV_X86_TARGET)] {
            let mut build = Command::new("rustup");
            build
                .current_dir(&scratch)
                .args(["run", &toolchain, "cargo", "build", "--lib", "--locked"])
                .env("CARGO_TARGET_DIR", scratch.join("target"));
            for krate in LIBRARY_CRATES {
                build.args(["-p", krate]);
            }
            if let Some(target) = target {
                build.args(["--target", target]);
            }
            process::run(&mut build)?;
        }
    }
    Ok(())
}

/// A scratch workspace under `target/` holding copies of the library
/// crates and the workspace manifest with only them as members.
fn scratch_workspace(name: &str) -> Result<PathBuf, String> {
    let root = process::repo_root();
    let scratch = root.join("target").join("publish").join(name);
    if scratch.exists() {
        let keep_target = scratch.join("target");
        for entry in fs::read_dir(&scratch).map_err(|e| e.to_string())? {
            let path = entry.map_err(|e| e.to_string())?.path();
            if path != keep_target {
                remove(&path)?;
            }
        }
    }
    fs::create_dir_all(&scratch)
        .map_err(|e| format!("cannot create {}: {e}", scratch.display()))?;
    let manifest = fs::read_to_string(root.join("Cargo.toml")).map_err(|e| e.to_string())?;
    fs::write(scratch.join("Cargo.toml"), library_workspace(&manifest))
        .map_err(|e| e.to_string())?;
    for krate in LIBRARY_CRATES {
        let from = root.join(krate);
        let to = scratch.join(krate);
        copy_dir(&from.join("src"), &to.join("src"))?;
        for file in CRATE_FILES {
            if from.join(file).exists() {
                fs::copy(from.join(file), to.join(file))
                    .map_err(|e| format!("cannot copy {krate}/{file}: {e}"))?;
            }
        }
    }
    Ok(scratch)
}

/// The workspace manifest with only the library crates as members.
fn library_workspace(manifest: &str) -> String {
    let mut out = String::new();
    let mut in_members = false;
    for line in manifest.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with("members = [") {
            in_members = true;
            out.push_str("members = [");
            for krate in LIBRARY_CRATES {
                out.push_str(&format!("\"{krate}\", "));
            }
            out.push_str("]\n");
            continue;
        }
        if in_members {
            in_members = !trimmed.starts_with(']');
            continue;
        }
        if trimmed.starts_with("exclude = ") {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// The `package` step.
pub fn package() -> Result<(), String> {
    let root = process::repo_root();
    forget_earlier_packages(&root)?;
    let mut package = process::cargo();
    package
        .current_dir(&root)
        .args(["package", "--allow-dirty", "--target-dir"])
        .arg(package_target(&root));
    for krate in LIBRARY_CRATES {
        package.args(["-p", krate]);
    }
    process::run(&mut package)?;

    // Unpack every tarball outside the workspace and run its tests against
    // the other tarballs (a `[patch]` pointing at them), as a user of the
    // published crates would.
    // One directory per run (two CI jobs on one machine must not unpack
    // over each other), removed when the tests pass.
    let unpacked =
        std::env::temp_dir().join(format!("i386-paging-packages-{}", std::process::id()));
    if unpacked.exists() {
        remove(&unpacked)?;
    }
    fs::create_dir_all(&unpacked).map_err(|e| e.to_string())?;
    let version = workspace_version(&root)?;
    let mut patches = Vec::new();
    for krate in LIBRARY_CRATES {
        let tarball = package_target(&root)
            .join("package")
            .join(format!("{krate}-{version}.crate"));
        process::run(
            Command::new("tar")
                .arg("-xzf")
                .arg(&tarball)
                .arg("-C")
                .arg(&unpacked),
        )?;
        let dir = unpacked.join(format!("{krate}-{version}"));
        patches.push(format!(
            "patch.crates-io.{krate}.path=\"{}\"",
            dir.display()
        ));
    }
    for krate in LIBRARY_CRATES {
        let dir = unpacked.join(format!("{krate}-{version}"));
        let mut test = process::cargo();
        test.current_dir(&dir).args(["test", "--all-features"]);
        if krate == UNIT_TESTS_ONLY {
            test.arg("--lib");
        }
        test.env(
            "CARGO_TARGET_DIR",
            root.join("target").join("publish").join("tests"),
        )
        // The property test's default is a million operations; from the
        // tarball it only has to show that it builds and runs.
        .env("PROPTEST_CASES", "16");
        for patch in &patches {
            test.args(["--config", patch]);
        }
        process::run(&mut test)?;
    }
    remove(&unpacked)
}

/// Where `cargo package` writes its tarballs and builds them to verify
/// them: a target directory of its own, emptied before every run. Cargo
/// takes a registry crate of one name and version to never change, so in
/// the shared `target/` a verification build would link an earlier run's
/// `paging-core 0.1.0` (seen here: after a trait method became `unsafe`,
/// `paging-sim` failed to build against the old copy in a checkout that
/// had run this step before; a fresh clone passed).
fn package_target(root: &Path) -> PathBuf {
    root.join("target").join("packaging")
}

/// Removes what earlier `cargo package` runs left: their target directory
/// ([`package_target`]), and the copies cargo unpacked from its temporary local registry into
/// `$CARGO_HOME/registry/src/<local registry>/` to verify each crate against
/// the others. Cargo keys those by name and version only, so without this a
/// second run verifies against the *first* run's sources (seen here: a
/// crate failing to find an item its dependency had gained since).
fn forget_earlier_packages(root: &Path) -> Result<(), String> {
    let package_dir = package_target(root);
    if package_dir.exists() {
        remove(&package_dir)?;
    }
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo")));
    let Some(sources) = cargo_home.map(|home| home.join("registry").join("src")) else {
        return Ok(());
    };
    let Ok(registries) = fs::read_dir(&sources) else {
        return Ok(());
    };
    let version = workspace_version(root)?;
    for registry in registries.flatten() {
        // crates.io's is `index.crates.io-<hash>`; the temporary local
        // registries have no host name.
        if registry.file_name().to_string_lossy().starts_with("index.") {
            continue;
        }
        for krate in LIBRARY_CRATES {
            let unpacked = registry.path().join(format!("{krate}-{version}"));
            if unpacked.exists() {
                remove(&unpacked)?;
            }
        }
    }
    Ok(())
}

/// `[workspace.package] version`.
fn workspace_version(root: &Path) -> Result<String, String> {
    let manifest = fs::read_to_string(root.join("Cargo.toml")).map_err(|e| e.to_string())?;
    manifest
        .lines()
        .find_map(|line| {
            let rest = line.trim().strip_prefix("version")?.trim_start();
            Some(rest.strip_prefix('=')?.trim().trim_matches('"').to_string())
        })
        .ok_or_else(|| "no version in Cargo.toml".to_string())
}

fn copy_dir(from: &Path, to: &Path) -> Result<(), String> {
    fs::create_dir_all(to).map_err(|e| format!("cannot create {}: {e}", to.display()))?;
    for entry in fs::read_dir(from).map_err(|e| format!("cannot read {}: {e}", from.display()))? {
        let entry = entry.map_err(|e| e.to_string())?;
        let target = to.join(entry.file_name());
        if entry.file_type().map_err(|e| e.to_string())?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            fs::copy(entry.path(), &target)
                .map_err(|e| format!("cannot copy {}: {e}", entry.path().display()))?;
        }
    }
    Ok(())
}

fn remove(path: &Path) -> Result<(), String> {
    let result = if path.is_dir() {
        fs::remove_dir_all(path)
    } else {
        fs::remove_file(path)
    };
    result.map_err(|e| format!("cannot remove {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rust_version_is_read_from_the_manifest() {
        let manifest = "[workspace.package]\nversion = \"0.1.0\"\nrust-version = \"1.88\"\n";
        assert_eq!(parse_rust_version(manifest).as_deref(), Some("1.88"));
        assert_eq!(parse_rust_version("[package]\nname = \"x\"\n"), None);
    }

    #[test]
    fn the_scratch_workspace_lists_only_the_library_crates() {
        let manifest = "[workspace]\nresolver = \"2\"\nmembers = [\n    \"paging-core\",\n    \"xtask\",\n]\nexclude = [\"examples\"]\n\n[workspace.package]\nversion = \"0.1.0\"\n";
        let out = library_workspace(manifest);
        assert!(out.contains("members = [\"paging-core\", \"paging-sim\", \"paging-x86-2level\""));
        assert!(!out.contains("xtask"));
        assert!(!out.contains("exclude"));
        assert!(out.contains("[workspace.package]\nversion = \"0.1.0\""));
    }
}
