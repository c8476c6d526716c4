//! `cargo xtask test`: every check, in order, stopping at the first failure.
//!
//! 1. prerequisites ([`crate::prereq`]);
//! 2. `fmt`: `cargo fmt --check` for the workspace and both kernels;
//! 3. `clippy`: the workspace (all targets, all features) and both kernels
//!    in both modes, plus the minimal kernel's library and host tests built
//!    for the host, warnings denied;
//! 4. `doc`: `cargo doc` for the workspace with warnings denied, with all
//!    features and with none;
//! 5. `test`: the example kernel's layers ([`crate::layers::check`]: no
//!    file over 600 lines, no import circle wider than two files, at most
//!    three imports pointing back up, each with a `// layer:` comment),
//!    then `cargo test` for the workspace, all
//!    features (xtask's own
//!    tests include the check that every Rust block of `docs/adopting.md`
//!    is code of `examples/minimal/src`), and the minimal kernel's host
//!    tests (its tables checked through the simulated MMU);
//!    `loom`: the kmap pool's, kmap's local slots', the fixmap's per-slot
//!    and the TLB shootdown's protocols model-checked with loom at a
//!    CI-sized preemption bound ([`crate::loom`]);
//!    `miri`: the threaded tests (several threads on one table) under
//!    Miri's data-race detector ([`crate::miri::THREADED`]), nightly Miri
//!    installed with rustup if missing; a machine where that fails fails
//!    the step, with one line saying why;
//! 6. `i586`: every library crate (every workspace member but xtask) built
//!    for the bare-metal target;
//!    `msrv`: the library crates built with the declared `rust-version`
//!    after a fresh dependency resolve, both resolver behaviours
//!    ([`crate::publish`]);
//!    `package`: `cargo package` of the library crates, and their tests run
//!    from the unpacked tarballs;
//! 7. `qemu`: the kernel built in both modes and booted in the QEMU matrix
//!    (the boots at `-m 8G` are reported as skipped on a host without
//!    about 8.5 GiB of free memory), feature-poor CPUs (PAE without NX,
//!    no PAT and no PGE, no local APIC and no TSC, and a CPU without PAE,
//!    which must be refused with one line), the two crash demos that must
//!    be caught and reported, a PAE boot with page tables above 4 GiB (on
//!    `qemu-system-x86_64`, whose walker handles them), the GRUB ISO booted with `-cdrom` in both modes
//!    (if the GRUB tools are present or installable), and a check that the
//!    memory map in the kernel's README is what the kernel prints; and the
//!    minimal kernel built and booted in both modes at 1 GiB;
//! 8. `bochs`: the GRUB ISO booted in Bochs in both modes at 128 MiB
//!    ([`crate::bochs`]; installs Bochs and the GRUB tools as root), which
//!    keeps global TLB entries across CR3 loads and checks PDPTE reserved
//!    bits where QEMU's TCG does not.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::kernel::{self, Kernel, Mode, TARGET};
use crate::qemu::{self, Expect, Medium, QEMU, QEMU_X86_64};
use crate::summary::{Status, Table};
use crate::{
    DEFAULT_TIMEOUT_SECS, host, iso, memory_map, option_value, parse_timeout, prereq, process,
    verdict,
};

/// The steps, in the order they run.
const STEPS: [&str; 11] = [
    "fmt", "clippy", "doc", "test", "loom", "miri", "i586", "msrv", "package", "qemu", "bochs",
];

/// The steps that boot the kernel in an emulator (left out by `host` and
/// `--no-qemu`).
const EMULATOR_STEPS: [&str; 2] = ["qemu", "bochs"];

/// The QEMU matrix: mode, guest RAM, emulator and command line. 2-level at
/// a small size and at its 2 GiB default; PAE at 2 GiB and at 8 GiB (RAM
/// above 4 GiB); PAE at 8 GiB once more with highmem handed out from 4 GiB
/// up, so the pte-highmem test puts page tables above 4 GiB (QEMU 7.2's
/// `qemu-system-i386` cannot walk those: it keeps table addresses in 32
/// bits; `qemu-system-x86_64` runs the same 32-bit kernel and walks them).
const MATRIX: [(Mode, &str, &str, Option<&str>, u32); 8] = [
    (Mode::TwoLevel, "128M", QEMU, None, 1),
    (Mode::TwoLevel, "2G", QEMU, None, 1),
    (Mode::Pae, "2G", QEMU, None, 1),
    (Mode::Pae, "8G", QEMU, None, 1),
    (Mode::Pae, "8G", QEMU_X86_64, Some("frames=high-first"), 1),
    (Mode::TwoLevel, "2G", QEMU, None, 4),
    (Mode::Pae, "8G", QEMU, None, 4),
    // One AP stops in the trampoline: reported, left out, the kernel goes
    // on with three CPUs (its SMP self-tests check the count).
    (Mode::Pae, "2G", QEMU, Some("smp.ap-timeout-test=2"), 4),
];

/// Feature-poor CPUs, small and on one CPU each: mode, RAM, `-cpu` model
/// and what must happen. The kernel uses what the CPU has and says what it
/// could not check; a CPU without what the mode needs is refused with one
/// line.
const FEATURE_POOR: [(Mode, &str, &str, Expect); 4] = [
    // PAE without NX (the P6 family): EFER.NXE off, no XD bit anywhere.
    (Mode::Pae, "256M", "pentium3", Expect::Pass),
    // No PAT, no PGE (the Pentium): no write-combining, no global pages.
    (Mode::TwoLevel, "128M", "pentium", Expect::Pass),
    // No local APIC and no TSC (the 486): one CPU, the PIT preempts and
    // times the figures.
    (Mode::TwoLevel, "128M", "486", Expect::Pass),
    // No PAE: refused with one `BOOT FAILED` line and the fail status.
    (
        Mode::Pae,
        "128M",
        "pentium",
        Expect::Crash("BOOT FAILED: this CPU has no PAE"),
    ),
];

/// RAM for the GRUB ISO boots, per mode.
const ISO_MEM: [(Mode, &str); 2] = [(Mode::TwoLevel, "1G"), (Mode::Pae, "2G")];

/// Crash demos: the kernel must catch and report these, then exit 35.
const CRASH_DEMOS: [&str; 2] = ["fault=page", "fault=stack-overflow"];

/// Seconds of the soak booted in each mode by the `qemu` step.
const SOAK_SECONDS: u32 = 20;

/// The hang demo: a deliberate deadlock across CPUs that the kernel's
/// watchdog must turn into a report from every CPU (booted in both modes on
/// four CPUs, and in the `bochs` step).
pub const HANG_DEMO: &str = "hang=lock watchdog.secs=2";

/// Options of `cargo xtask test`.
#[derive(Debug)]
pub struct TestOptions {
    steps: Vec<&'static str>,
    timeout: Duration,
}

/// Parses the options of `test`.
pub fn parse(args: &[String]) -> Result<TestOptions, String> {
    let mut steps: Vec<&'static str> = STEPS.to_vec();
    let mut no_qemu = false;
    let mut no_bochs = false;
    let mut timeout = Duration::from_secs(DEFAULT_TIMEOUT_SECS);
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--no-qemu" => no_qemu = true,
            "--no-bochs" => no_bochs = true,
            "--only" => steps = parse_only(option_value(arg, &mut args)?)?,
            "--timeout" => timeout = parse_timeout(option_value(arg, &mut args)?)?,
            other => return Err(format!("unknown option `{other}` for test")),
        }
    }
    if no_qemu {
        steps.retain(|step| !EMULATOR_STEPS.contains(step));
    }
    if no_bochs {
        steps.retain(|&step| step != "bochs");
    }
    Ok(TestOptions { steps, timeout })
}

fn parse_only(list: &str) -> Result<Vec<&'static str>, String> {
    let mut wanted: Vec<&'static str> = Vec::new();
    for name in list.split(',') {
        match name {
            "host" => wanted.extend(
                STEPS
                    .iter()
                    .copied()
                    .filter(|step| !EMULATOR_STEPS.contains(step)),
            ),
            _ => match STEPS.iter().find(|&&step| step == name) {
                Some(&step) => wanted.push(step),
                None => {
                    return Err(format!(
                        "unknown step `{name}` (steps: {}, or host)",
                        STEPS.join(", ")
                    ));
                }
            },
        }
    }
    // Keep the canonical order.
    Ok(STEPS
        .iter()
        .copied()
        .filter(|step| wanted.contains(step))
        .collect())
}

/// Runs the selected steps.
pub fn run(options: &TestOptions) -> Result<(), String> {
    let mut table = Table::new("step");
    let started = Instant::now();
    let needs_qemu = options.steps.contains(&"qemu");
    let result = prereq::ensure(needs_qemu);
    table.add(
        "prerequisites",
        status_of(&result),
        detail_of(&result),
        Some(started.elapsed()),
    );
    let mut failure = result.err();

    for &step in STEPS.iter().filter(|step| options.steps.contains(step)) {
        if failure.is_some() {
            table.add(step, Status::NotRun, "", None);
            continue;
        }
        println!("\n==> step {step}");
        let started = Instant::now();
        let result = match step {
            "fmt" => fmt(),
            "clippy" => clippy(),
            "doc" => doc(),
            "test" => test(),
            "loom" => crate::loom::run(crate::loom::Options::all(crate::loom::CI_PREEMPTIONS)),
            "miri" => crate::miri::run_threaded(),
            "i586" => i586(),
            "msrv" => crate::publish::msrv(),
            "package" => crate::publish::package(),
            "qemu" => qemu_matrix(options.timeout, &mut table),
            _ => crate::bochs::test_step(options.timeout, &mut table),
        };
        table.add(
            step,
            status_of(&result),
            detail_of(&result),
            Some(started.elapsed()),
        );
        failure = result
            .err()
            .map(|error| format!("step `{step}` failed: {error}"));
    }
    table.print();
    match failure {
        Some(error) => Err(error),
        None => {
            println!("\nall {} selected steps passed", options.steps.len());
            Ok(())
        }
    }
}

fn status_of(result: &Result<(), String>) -> Status {
    if result.is_ok() {
        Status::Pass
    } else {
        Status::Fail
    }
}

fn detail_of(result: &Result<(), String>) -> String {
    match result {
        Ok(()) => String::new(),
        Err(error) => error.lines().next().unwrap_or_default().to_string(),
    }
}

/// A cargo command run at the workspace root.
fn workspace_cargo(args: &[&str]) -> Command {
    let mut command = process::cargo();
    command.current_dir(process::repo_root()).args(args);
    command
}

fn fmt() -> Result<(), String> {
    process::run(&mut workspace_cargo(&["fmt", "--all", "--check"]))?;
    kernel::fmt_check()
}

fn clippy() -> Result<(), String> {
    process::run(&mut workspace_cargo(&[
        "clippy",
        "--workspace",
        "--all-targets",
        "--all-features",
        "--",
        "-D",
        "warnings",
    ]))?;
    for kernel in Kernel::ALL {
        Mode::ALL
            .into_iter()
            .try_for_each(|mode| kernel::clippy(kernel, mode))?;
    }
    kernel::minimal_host_clippy()
}

/// The docs with every feature and with none (what docs.rs and a default
/// build each show), warnings denied.
fn doc() -> Result<(), String> {
    for features in ["--all-features", "--no-default-features"] {
        let mut command = workspace_cargo(&["doc", "--workspace", "--no-deps", features]);
        command.env("RUSTDOCFLAGS", "-D warnings");
        process::run(&mut command)?;
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| process::repo_root().join("target"));
    host_docs_show_cpu(&target.join("doc"))
}

/// The pages of `paging_core::cpu` the guide links to, which a host
/// `cargo doc` must produce although the module is compiled only for x86.
const HOST_CPU_DOC_PAGES: [&str; 4] = [
    "index.html",
    "struct.NativeTlb.html",
    "trait.CpuPaging.html",
    "struct.PagingFeatures.html",
];

/// Checks that the host docs just built show `paging_core::cpu` (issue 22:
/// the guide names its items, and a newcomer reads the host's docs).
fn host_docs_show_cpu(doc: &Path) -> Result<(), String> {
    let dir = doc.join("paging_core/cpu");
    let missing: Vec<&str> = HOST_CPU_DOC_PAGES
        .into_iter()
        .filter(|page| !dir.join(page).is_file())
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "host docs lack paging_core::cpu pages {missing:?} in {}",
            dir.display()
        ))
    }
}

fn test() -> Result<(), String> {
    crate::layers::check(&process::repo_root())?;
    let blocks = crate::adopting::check_repository(&process::repo_root())?;
    println!(
        "{}: all {blocks} Rust blocks are code of {}",
        crate::adopting::GUIDE,
        crate::adopting::SOURCES
    );
    process::run(&mut workspace_cargo(&[
        "test",
        "--workspace",
        "--all-features",
    ]))?;
    kernel::minimal_host_tests()
}

/// Builds every library crate (workspace members except xtask) for the
/// bare-metal target.
fn i586() -> Result<(), String> {
    process::run(&mut workspace_cargo(&[
        "build",
        "--target",
        TARGET,
        "--workspace",
        "--exclude",
        "xtask",
        "--lib",
    ]))
}

/// Builds both kernels in both modes and boots the matrix, the crash
/// demos, the minimal kernel and the ISO; checks the README's memory map;
/// adds one row per boot to `table`.
fn qemu_matrix(timeout: Duration, table: &mut Table) -> Result<(), String> {
    let mut elves = Vec::new();
    let mut minimal = Vec::new();
    for mode in Mode::ALL {
        elves.push((mode, kernel::build(mode)?));
        minimal.push((mode, kernel::build_kernel(Kernel::Minimal, mode)?));
    }
    let started = Instant::now();
    let fpu = elves
        .iter()
        .chain(&minimal)
        .try_for_each(|(_, elf)| kernel::check_no_fpu(elf));
    table.add(
        "  kernels' code uses no x87/MMX/SSE (but the process switch's fnsave/frstor)",
        status_of(&fpu),
        detail_of(&fpu),
        Some(started.elapsed()),
    );
    fpu?;
    let elf_of = |mode: Mode| -> &Path {
        elves
            .iter()
            .find(|(m, _)| *m == mode)
            .map(|(_, elf)| elf.as_path())
            .unwrap_or(Path::new(""))
    };
    // Boots the host cannot afford (RAM above 4 GiB wants -m 8G) are
    // reported as skipped, with the reason.
    let available = host::available();
    let mut skipped_default_mem = false;
    let affordable = MATRIX
        .iter()
        .filter(|&&(mode, mem, emulator, cmdline, smp)| {
            let Some(why) = host::too_big(mem, available) else {
                return true;
            };
            let label = format!(
                "{} -m {mem}{}",
                mode.name(),
                if smp > 1 {
                    format!(" -smp {smp}")
                } else {
                    String::new()
                }
            );
            let extra = cmdline.map_or(String::new(), |c| format!(" [{c}]"));
            let emulator = if emulator == QEMU {
                String::new()
            } else {
                format!(" ({emulator})")
            };
            println!("\nskipped {label}{emulator}{extra}: {why}");
            table.add(
                format!("  qemu {label}{emulator}{extra}"),
                Status::NotRun,
                format!("skipped: {why}"),
                None,
            );
            skipped_default_mem |= mem == mode.default_mem();
            false
        });
    let mut boots: Vec<qemu::Boot> = affordable
        .map(|&(mode, mem, emulator, cmdline, smp)| qemu::Boot {
            kernel: Kernel::Example,
            medium: Medium::Kernel(elf_of(mode).to_path_buf()),
            emulator,
            mode,
            mem: mem.to_string(),
            cpu: mode.qemu_cpu().to_string(),
            cmdline: cmdline.map(str::to_string),
            smp,
            timeout,
            expect: Expect::Pass,
        })
        .collect();
    boots.extend(
        FEATURE_POOR
            .iter()
            .map(|&(mode, mem, cpu, expect)| qemu::Boot {
                kernel: Kernel::Example,
                medium: Medium::Kernel(elf_of(mode).to_path_buf()),
                emulator: QEMU,
                mode,
                mem: mem.to_string(),
                cpu: cpu.to_string(),
                cmdline: None,
                smp: 1,
                timeout,
                expect,
            }),
    );
    for demo in CRASH_DEMOS {
        boots.push(qemu::Boot {
            kernel: Kernel::Example,
            medium: Medium::Kernel(elf_of(Mode::TwoLevel).to_path_buf()),
            emulator: QEMU,
            mode: Mode::TwoLevel,
            mem: "128M".to_string(),
            cpu: Mode::TwoLevel.qemu_cpu().to_string(),
            cmdline: Some(demo.to_string()),
            smp: 1,
            timeout,
            expect: Expect::for_cmdline(Some(demo)),
        });
    }
    for mode in Mode::ALL {
        boots.push(qemu::Boot {
            kernel: Kernel::Example,
            medium: Medium::Kernel(elf_of(mode).to_path_buf()),
            emulator: QEMU,
            mode,
            mem: "256M".to_string(),
            cpu: mode.qemu_cpu().to_string(),
            cmdline: Some(HANG_DEMO.to_string()),
            smp: 4,
            timeout,
            expect: Expect::Watchdog,
        });
    }
    // 20 seconds of the soak in each mode (`cargo xtask soak` runs minutes).
    for mode in Mode::ALL {
        boots.push(crate::soak::qemu_boot(
            mode,
            SOAK_SECONDS,
            timeout.max(Duration::from_secs(u64::from(SOAK_SECONDS) * 3 + 240)),
        )?);
    }
    boots.extend(minimal.iter().map(|(mode, elf)| qemu::Boot {
        kernel: Kernel::Minimal,
        medium: Medium::Kernel(elf.clone()),
        emulator: QEMU,
        mode: *mode,
        mem: Kernel::Minimal.default_mem(*mode).to_string(),
        cpu: mode.qemu_cpu().to_string(),
        cmdline: None,
        smp: 1,
        timeout,
        expect: Expect::Pass,
    }));
    boots.extend(iso_boots(timeout, table)?);
    let mut failed = Vec::new();
    let mut layouts = Vec::new();
    for boot in &boots {
        println!();
        let outcome = qemu::boot(boot)?;
        if !outcome.passed {
            failed.push(boot.label());
        }
        if boot.kernel == Kernel::Example
            && boot.emulator == QEMU
            && boot.cmdline.is_none()
            && boot.smp == 1
            && matches!(boot.medium, Medium::Kernel(_))
            && boot.mem == boot.mode.default_mem()
        {
            layouts.push(memory_map::parse(&outcome.layout, &boot.mem)?);
        }
        let mut name = format!("  qemu {}", boot.label());
        if boot.cpu != boot.mode.qemu_cpu() {
            name.push_str(&format!(" -cpu {}", boot.cpu));
        }
        table.push(name, outcome);
    }
    if !failed.is_empty() {
        return Err(format!(
            "{} of {} boots failed: {}",
            failed.len(),
            boots.len(),
            failed.join("; ")
        ));
    }
    if skipped_default_mem {
        table.add(
            "  README memory map is what the kernel prints",
            Status::NotRun,
            "skipped: it needs the boots at the default RAM, skipped above",
            None,
        );
        return Ok(());
    }
    let started = Instant::now();
    let check = memory_map::check(&layouts);
    table.add(
        "  README memory map is what the kernel prints",
        status_of(&check),
        detail_of(&check),
        Some(started.elapsed()),
    );
    check
}

/// Boots of the GRUB ISO, one per mode (the menu's default set to it), or
/// none if the GRUB tools are missing and cannot be installed.
fn iso_boots(timeout: Duration, table: &mut Table) -> Result<Vec<qemu::Boot>, String> {
    let started = Instant::now();
    match iso::tools_available(true) {
        Ok(true) => {}
        Ok(false) | Err(_) => {
            let why = "GRUB ISO boot skipped: grub-mkrescue, the i386-pc GRUB modules or xorriso are missing and could not be installed (Debian: grub-common grub-pc-bin xorriso mtools)";
            println!("\n{why}");
            table.add(
                "  qemu GRUB ISO",
                Status::NotRun,
                why,
                Some(started.elapsed()),
            );
            return Ok(Vec::new());
        }
    }
    let mut boots = Vec::new();
    for (mode, mem) in ISO_MEM {
        let out = kernel::kernel_dir()
            .join("target")
            .join("iso")
            .join(format!("test-{}.iso", mode.name()));
        let nonce = verdict::nonce();
        let iso = iso::build(&out, mode, 0, Some(&verdict::with_nonce(None, &nonce)))?;
        boots.push(qemu::Boot {
            kernel: Kernel::Example,
            medium: Medium::Cdrom(iso, Some(nonce)),
            emulator: QEMU,
            mode,
            mem: mem.to_string(),
            cpu: mode.qemu_cpu().to_string(),
            cmdline: None,
            smp: 1,
            timeout,
            expect: Expect::Pass,
        });
    }
    Ok(boots)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn steps(args: &[&str]) -> Vec<&'static str> {
        let args: Vec<String> = args.iter().map(|arg| arg.to_string()).collect();
        parse(&args).unwrap().steps
    }

    #[test]
    fn bochs_runs_last_and_is_selectable() {
        assert_eq!(steps(&[]).last(), Some(&"bochs"));
        assert_eq!(steps(&["--only", "bochs"]), ["bochs"]);
        assert_eq!(steps(&["--only", "bochs,qemu"]), ["qemu", "bochs"]);
    }

    #[test]
    fn no_qemu_and_host_leave_out_both_emulators() {
        for selected in [steps(&["--no-qemu"]), steps(&["--only", "host"])] {
            assert!(!selected.contains(&"qemu") && !selected.contains(&"bochs"));
            assert!(selected.contains(&"test"));
        }
        let no_bochs = steps(&["--no-bochs"]);
        assert!(no_bochs.contains(&"qemu") && !no_bochs.contains(&"bochs"));
    }

    #[test]
    fn host_docs_check_names_each_missing_cpu_page() {
        let doc = std::env::temp_dir().join(format!("xtask-doc-check-{}", std::process::id()));
        let cpu = doc.join("paging_core/cpu");
        std::fs::create_dir_all(&cpu).unwrap();
        std::fs::write(cpu.join("index.html"), "").unwrap();
        let err = host_docs_show_cpu(&doc).unwrap_err();
        assert!(err.contains("struct.NativeTlb.html") && !err.contains("index.html"));
        for page in HOST_CPU_DOC_PAGES {
            std::fs::write(cpu.join(page), "").unwrap();
        }
        assert_eq!(host_docs_show_cpu(&doc), Ok(()));
        std::fs::remove_dir_all(&doc).unwrap();
    }
}
