//! `cargo xtask cpus`: the example kernel under every CPU model of
//! `qemu-system-i386`.
//!
//! The models come from `qemu-system-i386 -cpu help` (the named models, not
//! their `-vN` versions or aliases; `host` needs KVM and is left out). For
//! each model QEMU itself says which features it has
//! (`query-cpu-model-expansion` over QMP, one QEMU with `-machine none` for
//! all models), which decides:
//!
//! - the CPU count: `-smp 4` with a local APIC, else 1 (a 486 is a
//!   uniprocessor PC);
//! - what each mode must do: boot and pass every self-test where the model
//!   has what the mode needs (PSE for 2-level, PAE for PAE), or refuse with
//!   one `BOOT FAILED: ...` line and the fail status where it has not (an
//!   expected refusal counts as correct);
//! - a cross-check: the kernel's own `cpu features: ...` line (read from
//!   CPUID) must name the same features as QEMU's model.
//!
//! Boots run two at a time at most (the `--jobs` limit), at 256 MiB, on
//! single-threaded TCG (one host thread per boot), each boot's console in
//! `examples/kernel/target/cpus/<model>-<mode>.log`.

use std::collections::{BTreeMap, VecDeque};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::kernel::{self, Mode};
use crate::qemu::{self, Expect, QEMU};
use crate::{option_value, parse_timeout, prereq, verdict};

/// Guest RAM of every boot: small, so the matrix is quick and fits anywhere.
const MEM: &str = "256M";
/// Boots at once by default, and at most: the machines this runs on have
/// two cores, and a 4-CPU guest already runs four threads.
const MAX_JOBS: usize = 2;
/// Seconds one boot may take (a loaded machine, four guest CPUs).
const DEFAULT_TIMEOUT_SECS: u64 = 300;

/// The features the kernel reports and QEMU's property name of each.
const FEATURES: [(&str, &str); 8] = [
    ("PSE", "pse"),
    ("PAE", "pae"),
    ("PGE", "pge"),
    ("PAT", "pat"),
    ("PSE-36", "pse36"),
    ("NX", "nx"),
    ("APIC", "apic"),
    ("TSC", "tsc"),
];

/// Options of `cargo xtask cpus`.
#[derive(Debug)]
pub struct CpusOptions {
    modes: Vec<Mode>,
    models: Option<Vec<String>>,
    jobs: usize,
    timeout: Duration,
}

/// Parses the options of `cpus`.
pub fn parse(args: &[String]) -> Result<CpusOptions, String> {
    let mut options = CpusOptions {
        modes: Mode::ALL.to_vec(),
        models: None,
        jobs: MAX_JOBS,
        timeout: Duration::from_secs(DEFAULT_TIMEOUT_SECS),
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--mode" => options.modes = Mode::parse_list(option_value(arg, &mut args)?)?,
            "--models" => {
                let list = option_value(arg, &mut args)?;
                options.models = Some(list.split(',').map(str::to_string).collect());
            }
            "--jobs" => {
                let value = option_value(arg, &mut args)?;
                options.jobs = match value.parse::<usize>() {
                    Ok(n) if (1..=MAX_JOBS).contains(&n) => n,
                    _ => {
                        return Err(format!("--jobs expects 1 to {MAX_JOBS}, got `{value}`"));
                    }
                };
            }
            "--timeout" => options.timeout = parse_timeout(option_value(arg, &mut args)?)?,
            other => return Err(format!("unknown option `{other}` for cpus")),
        }
    }
    Ok(options)
}

/// One model's features, as QEMU expands it (property name -> on).
type ModelFeatures = BTreeMap<String, bool>;

/// The named models of `qemu-system-i386 -cpu help`: not the `-vN`
/// versions, not the `(alias of ...)` names, not `host` (KVM only).
fn models_from_help(help: &str) -> Vec<String> {
    help.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            (words.next() == Some("x86")).then_some(())?;
            let name = words.next()?;
            let versioned = name
                .rsplit_once("-v")
                .is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
            let alias = line.contains("(alias of");
            (!versioned && !alias && name != "host").then(|| name.to_string())
        })
        .collect()
}

/// Every model's features, from one QEMU run (`-machine none`, QMP on
/// stdio).
fn expand_models(models: &[String]) -> Result<BTreeMap<String, ModelFeatures>, String> {
    let mut input = String::from("{\"execute\":\"qmp_capabilities\"}\n");
    for model in models {
        input.push_str(&format!(
            "{{\"execute\":\"query-cpu-model-expansion\",\"arguments\":{{\"type\":\"full\",\"model\":{{\"name\":\"{model}\"}}}}}}\n"
        ));
    }
    input.push_str("{\"execute\":\"quit\"}\n");
    let mut child = Command::new(QEMU)
        .args(["-machine", "none", "-nodefaults", "-display", "none"])
        .args(["-qmp", "stdio"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {QEMU}: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(input.as_bytes())
            .map_err(|e| format!("writing to {QEMU}'s QMP: {e}"))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("reading {QEMU}'s QMP: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut expanded = BTreeMap::new();
    for line in text.lines() {
        if let Some((name, features)) = parse_expansion(line) {
            expanded.insert(name, features);
        }
    }
    Ok(expanded)
}

/// The model name and boolean properties of one `query-cpu-model-expansion`
/// reply line: `{"return": {"model": {"name": "486", "props": {"pse":
/// true, ...}}}}`. A small reader for exactly this shape (flat `"key":
/// value` pairs inside `props`).
fn parse_expansion(line: &str) -> Option<(String, ModelFeatures)> {
    let model = line.split_once("\"model\"")?.1;
    let name = model.split_once("\"name\"")?.1;
    let name = name.split('"').nth(1)?.to_string();
    let props = model.split_once("\"props\"")?.1;
    let props = props.split_once('{')?.1;
    let props = props.split_once('}').map_or(props, |(p, _)| p);
    let mut features = ModelFeatures::new();
    for pair in props.split(',') {
        let Some((key, value)) = pair.split_once(':') else {
            continue;
        };
        let key = key.trim().trim_matches('"');
        match value.trim() {
            "true" => features.insert(key.to_string(), true),
            "false" => features.insert(key.to_string(), false),
            _ => None,
        };
    }
    Some((name, features))
}

/// What a mode needs: its feature's QEMU property and the kernel's name.
fn needs(mode: Mode) -> (&'static str, &'static str) {
    match mode {
        Mode::TwoLevel => ("pse", "PSE"),
        Mode::Pae => ("pae", "PAE"),
    }
}

/// One boot of the matrix.
#[derive(Clone, Debug)]
struct CpuBoot {
    model: String,
    mode: Mode,
    elf: PathBuf,
    smp: u32,
    /// The model lacks what the mode needs: the kernel must refuse.
    refuse: bool,
    /// QEMU's view of the model's features.
    features: ModelFeatures,
    /// The boot's verdict nonce ([`crate::verdict`]).
    nonce: String,
}

/// What one boot showed.
#[derive(Clone, Debug)]
struct CpuResult {
    correct: bool,
    /// `pass (42)`, `refused: no PAE`, or what went wrong.
    detail: String,
    /// The features the kernel printed (`have ...; lack ...`), if it did.
    kernel_features: Option<String>,
    elapsed: Duration,
}

/// The QEMU command of one boot, as `qemu::Boot` builds it but with
/// single-threaded TCG: the guest's CPUs take turns on one host thread, so
/// two boots at once keep to two host cores (a 4-CPU boot with a thread per
/// CPU took 15 times longer on a loaded 2-core machine). The SMP races on
/// truly parallel CPUs are the `cargo xtask test` matrix's job.
fn command(boot: &CpuBoot) -> Command {
    let mut command = Command::new(QEMU);
    command
        .arg("-kernel")
        .arg(&boot.elf)
        .args(["-m", MEM, "-cpu", &boot.model])
        .args(["-no-reboot", "-display", "none", "-serial", "stdio"])
        .args(["-monitor", "none"])
        .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"])
        .args(["-append", &verdict::with_nonce(None, &boot.nonce)]);
    if boot.smp > 1 {
        command
            .args(["-smp", &boot.smp.to_string()])
            .args(["-accel", "tcg,thread=single"]);
    }
    command
}

/// Boots one model in one mode, console to `log`, and judges it.
fn run_one(boot: &CpuBoot, log: &Path, timeout: Duration) -> CpuResult {
    let started = Instant::now();
    let result = (|| -> Result<(Option<i32>, Vec<String>), String> {
        let file = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
        let mut child = command(boot)
            .stdin(Stdio::null())
            .stdout(file.try_clone().map_err(|e| e.to_string())?)
            .stderr(file)
            .spawn()
            .map_err(|e| format!("cannot start {QEMU}: {e}"))?;
        let code = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status.code(),
                Ok(None) if started.elapsed() >= timeout => {
                    // Best effort: it may have exited meanwhile.
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!("TIMEOUT after {} s", timeout.as_secs()));
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(100)),
                Err(e) => return Err(format!("waiting for {QEMU}: {e}")),
            }
        };
        let text = std::fs::read(log).map_err(|e| format!("{}: {e}", log.display()))?;
        let lines = String::from_utf8_lossy(&text)
            .lines()
            .map(|line| line.replace('\r', ""))
            .collect();
        Ok((code, lines))
    })();
    let elapsed = started.elapsed();
    match result {
        Ok((code, lines)) => {
            let (correct, detail, kernel_features) = judge(boot, code, &lines);
            CpuResult {
                correct,
                detail,
                kernel_features,
                elapsed,
            }
        }
        Err(detail) => CpuResult {
            correct: false,
            detail,
            kernel_features: None,
            elapsed,
        },
    }
}

/// Whether a finished boot did what the model calls for, why, and the
/// features the kernel printed.
fn judge(boot: &CpuBoot, code: Option<i32>, lines: &[String]) -> (bool, String, Option<String>) {
    let printed = lines
        .iter()
        .find_map(|line| line.strip_prefix("cpu features: "))
        .map(str::to_string);
    let (_, need) = needs(boot.mode);
    if boot.refuse {
        let failed: Vec<&String> = lines
            .iter()
            .filter(|line| line.starts_with("BOOT FAILED: "))
            .collect();
        let (ok, console) =
            qemu::judge_console(Expect::Crash("BOOT FAILED: this CPU has no "), None, lines);
        let correct = ok && failed.len() == 1 && failed[0].contains(need) && code == Some(35);
        let detail = if correct {
            format!("refused: no {need} (one BOOT FAILED line, exit 35)")
        } else {
            format!(
                "expected one `BOOT FAILED` line naming {need} and exit 35; got {console}, exit {code:?}"
            )
        };
        return (correct, detail, printed);
    }
    let (ok, console) = qemu::judge_console(Expect::Pass, Some(&boot.nonce), lines);
    if !ok || code != Some(33) {
        let reason = lines
            .iter()
            .filter(|line| {
                line.contains("FAILED") || line.contains("reason:") || line.contains("PANIC")
            })
            .take(3)
            .cloned()
            .collect::<Vec<_>>()
            .join(" | ");
        return (
            false,
            format!("{console}, exit {code:?}: {reason}"),
            printed,
        );
    }
    let Some(seen) = &printed else {
        return (false, "no `cpu features:` line".to_string(), None);
    };
    match mismatch(seen, &boot.features) {
        Some(why) => (false, format!("{console}; but {why}"), printed),
        None => (true, console, printed),
    }
}

/// Where the kernel's `have ...; lack ...` differs from QEMU's model.
fn mismatch(seen: &str, model: &ModelFeatures) -> Option<String> {
    let have = have_list(seen);
    let differ: Vec<String> = FEATURES
        .iter()
        .filter_map(|&(name, prop)| {
            let qemu = *model.get(prop)?;
            let kernel = have.contains(&name);
            (qemu != kernel).then(|| {
                format!(
                    "{name} (kernel: {}, QEMU: {})",
                    if kernel { "yes" } else { "no" },
                    if qemu { "yes" } else { "no" }
                )
            })
        })
        .collect();
    (!differ.is_empty()).then(|| format!("the kernel saw otherwise: {}", differ.join(", ")))
}

/// The names after `have` in a `cpu features:` line.
fn have_list(seen: &str) -> Vec<&str> {
    seen.split(';')
        .find_map(|part| part.trim().strip_prefix("have"))
        .map(|names| {
            names
                .split_whitespace()
                .filter(|n| *n != "nothing")
                .collect()
        })
        .unwrap_or_default()
}

/// The features column: what the kernel saw (`lack` list), or QEMU's model
/// if no boot printed it (both modes refused before the kernel ran).
fn features_column(kernel: Option<&str>, model: &ModelFeatures) -> String {
    if let Some(seen) = kernel {
        let lack = seen
            .split(';')
            .find_map(|part| part.trim().strip_prefix("lack"))
            .unwrap_or("")
            .trim();
        let phys = seen
            .split(';')
            .find_map(|part| part.trim().strip_prefix("MAXPHYADDR "))
            .and_then(|p| p.split_whitespace().next())
            .unwrap_or("?");
        return if lack == "nothing" {
            format!("all 8, MAXPHYADDR {phys}")
        } else {
            format!("no {}, MAXPHYADDR {phys}", lack)
        };
    }
    let lack: Vec<&str> = FEATURES
        .iter()
        .filter(|(_, prop)| model.get(*prop) == Some(&false))
        .map(|(name, _)| *name)
        .collect();
    format!("(QEMU model) no {}", lack.join(" "))
}

/// `cargo xtask cpus`.
pub fn run(options: &CpusOptions) -> Result<(), String> {
    prereq::ensure(true)?;
    let help = Command::new(QEMU)
        .args(["-cpu", "help"])
        .output()
        .map_err(|e| format!("cannot run {QEMU} -cpu help: {e}"))?;
    let all = models_from_help(&String::from_utf8_lossy(&help.stdout));
    let models = match &options.models {
        Some(wanted) => {
            for model in wanted {
                if !all.contains(model) {
                    return Err(format!(
                        "`{model}` is not a model this command boots; `{QEMU} -cpu help` lists: {}",
                        all.join(" ")
                    ));
                }
            }
            wanted.clone()
        }
        None => all,
    };
    let expanded = expand_models(&models)?;
    let mut elves = Vec::new();
    for &mode in &options.modes {
        elves.push((mode, kernel::build(mode)?));
    }
    let logs = kernel::kernel_dir().join("target").join("cpus");
    std::fs::create_dir_all(&logs).map_err(|e| format!("{}: {e}", logs.display()))?;
    let mut boots = VecDeque::new();
    for model in &models {
        let features = expanded
            .get(model)
            .cloned()
            .ok_or_else(|| format!("QEMU did not expand the CPU model `{model}`"))?;
        let smp = if features.get("apic") == Some(&true) {
            4
        } else {
            1
        };
        for (mode, elf) in &elves {
            let (prop, _) = needs(*mode);
            boots.push_back(CpuBoot {
                model: model.clone(),
                mode: *mode,
                elf: elf.clone(),
                smp,
                refuse: features.get(prop) != Some(&true),
                features: features.clone(),
                nonce: verdict::nonce(),
            });
        }
    }
    let total = boots.len();
    println!(
        "\n{total} boots: {} models x {} mode(s) at -m {MEM}, -smp 4 where the model has a local APIC, {} at a time; consoles in {}",
        models.len(),
        elves.len(),
        options.jobs,
        logs.display()
    );
    let queue = Mutex::new(boots);
    let results = Mutex::new(Vec::<(CpuBoot, CpuResult)>::new());
    std::thread::scope(|scope| {
        for _ in 0..options.jobs {
            scope.spawn(|| {
                loop {
                    let next = queue.lock().map(|mut q| q.pop_front());
                    let Ok(Some(boot)) = next else { break };
                    let log = logs.join(format!("{}-{}.log", boot.model, boot.mode.name()));
                    let result = run_one(&boot, &log, options.timeout);
                    if let Ok(mut done) = results.lock() {
                        println!(
                            "[{}/{total}] {} {} -smp {}: {} ({:.0} s) {}",
                            done.len() + 1,
                            boot.model,
                            boot.mode.name(),
                            boot.smp,
                            if result.correct { "ok" } else { "WRONG" },
                            result.elapsed.as_secs_f64(),
                            result.detail
                        );
                        done.push((boot, result));
                    }
                }
            });
        }
    });
    let results = results.into_inner().unwrap_or_default();
    print_table(&models, &options.modes, &expanded, &results);
    let wrong: Vec<String> = results
        .iter()
        .filter(|(_, r)| !r.correct)
        .map(|(b, _)| format!("{} {}", b.model, b.mode.name()))
        .collect();
    let refused = results
        .iter()
        .filter(|(b, r)| r.correct && b.refuse)
        .count();
    println!(
        "\n{} of {total} boots correct ({refused} of them expected refusals); logs in {}",
        total - wrong.len(),
        logs.display()
    );
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} boot(s) did not do what the model calls for: {}",
            wrong.len(),
            wrong.join(", ")
        ))
    }
}

/// The table: one row per model, one column per mode.
fn print_table(
    models: &[String],
    modes: &[Mode],
    expanded: &BTreeMap<String, ModelFeatures>,
    results: &[(CpuBoot, CpuResult)],
) {
    let find = |model: &str, mode: Mode| {
        results
            .iter()
            .find(|(b, _)| b.model == model && b.mode == mode)
    };
    let mut rows = Vec::new();
    for model in models {
        let empty = ModelFeatures::new();
        let features = expanded.get(model).unwrap_or(&empty);
        let kernel = modes
            .iter()
            .filter_map(|&mode| find(model, mode))
            .find_map(|(_, r)| r.kernel_features.as_deref());
        let smp = modes
            .iter()
            .find_map(|&mode| find(model, mode))
            .map_or(1, |(b, _)| b.smp);
        let mut row = vec![
            model.clone(),
            smp.to_string(),
            features_column(kernel, features),
        ];
        for &mode in modes {
            row.push(match find(model, mode) {
                Some((boot, result)) => short(boot, result),
                None => "not run".to_string(),
            });
        }
        rows.push(row);
    }
    let mut header = vec![
        "model".to_string(),
        "cpus".to_string(),
        "features the kernel saw".to_string(),
    ];
    header.extend(modes.iter().map(|m| m.name().to_string()));
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            rows.iter()
                .map(|r| r[i].len())
                .chain([header[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: &[String]| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    println!();
    println!("{}", line(&header));
    println!(
        "{}",
        "-".repeat(widths.iter().sum::<usize>() + 2 * widths.len())
    );
    for row in &rows {
        println!("{}", line(row));
    }
}

/// A result cell: `pass`, `refused (no PAE)` or `WRONG: ...`.
fn short(boot: &CpuBoot, result: &CpuResult) -> String {
    let (_, need) = needs(boot.mode);
    match (result.correct, boot.refuse) {
        (true, false) => {
            let passed = result
                .detail
                .split(" passed")
                .next()
                .unwrap_or("")
                .to_string();
            format!("pass ({passed} tests)")
        }
        (true, true) => format!("refused (no {need})"),
        (false, _) => {
            let mut text = format!("WRONG: {}", result.detail);
            text.truncate(60);
            text
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn models_are_the_named_ones_without_versions_aliases_or_host() {
        let help = "Available CPUs:\n\
            x86 486                   (alias configured by machine type)\n\
            x86 486-v1                \n\
            x86 Broadwell-IBRS        (alias of Broadwell-v3)\n\
            x86 Skylake-Client        (alias configured by machine type)\n\
            x86 base                  base CPU model type with no features enabled\n\
            x86 host                  processor with all supported host features\n\
            x86 max                   Enables all features\n\
            \n\
            Recognized CPUID flags:\n  3dnow\n";
        assert_eq!(
            models_from_help(help),
            ["486", "Skylake-Client", "base", "max"]
        );
    }

    #[test]
    fn expansion_reply_gives_the_name_and_boolean_props() {
        let line = r#"{"return": {"model": {"name": "486", "props": {"pse": true, "apic": false, "family": 4, "model-id": "x"}}}}"#;
        let (name, features) = parse_expansion(line).unwrap();
        assert_eq!(name, "486");
        assert_eq!(features.get("pse"), Some(&true));
        assert_eq!(features.get("apic"), Some(&false));
        assert_eq!(features.get("family"), None);
        assert!(parse_expansion(r#"{"return": {}}"#).is_none());
    }

    fn boot(refuse: bool, mode: Mode, props: &[(&str, bool)]) -> CpuBoot {
        CpuBoot {
            model: "m".to_string(),
            mode,
            elf: PathBuf::new(),
            smp: 1,
            refuse,
            nonce: "00ff".into(),
            features: props.iter().map(|&(k, v)| (k.to_string(), v)).collect(),
        }
    }

    fn lines(text: &[&str]) -> Vec<String> {
        text.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_refusal_needs_one_line_naming_the_feature_and_exit_35() {
        let b = boot(true, Mode::Pae, &[("pae", false)]);
        let refused = lines(&[
            "",
            "BOOT FAILED: this CPU has no PAE (CPUID.1:EDX bit 6); boot the 2-level kernel on it",
        ]);
        assert!(judge(&b, Some(35), &refused).0);
        assert!(!judge(&b, Some(0), &refused).0, "a triple fault is wrong");
        assert!(!judge(&b, Some(35), &lines(&["KERNEL PANIC"])).0);
        let other = lines(&["BOOT FAILED: this CPU has no PSE (CPUID.1:EDX bit 3)"]);
        assert!(!judge(&b, Some(35), &other).0, "names the wrong feature");
    }

    #[test]
    fn a_pass_needs_the_summary_exit_33_and_the_features_qemu_reports() {
        let b = boot(false, Mode::TwoLevel, &[("pse", true), ("nx", false)]);
        let good = lines(&[
            "cpu features: have PSE PGE; lack PAE NX; NXE off; MAXPHYADDR 32",
            "42 passed, 0 failed [verdict 00ff]",
        ]);
        assert!(judge(&b, Some(33), &good).0);
        assert!(!judge(&b, Some(35), &good).0);
        let wrong = lines(&[
            "cpu features: have PSE NX; lack PAE; NXE off; MAXPHYADDR 32",
            "42 passed, 0 failed [verdict 00ff]",
        ]);
        let (ok, detail, _) = judge(&b, Some(33), &wrong);
        assert!(
            !ok && detail.contains("NX (kernel: yes, QEMU: no)"),
            "{detail}"
        );
        let no_line = lines(&["42 passed, 0 failed"]);
        assert!(!judge(&b, Some(33), &no_line).0);
    }

    #[test]
    fn features_column_lists_what_is_missing() {
        let seen = "have PSE PAE; lack PGE NX; NXE off; MAXPHYADDR 36 (default); GenuineIntel";
        assert_eq!(
            features_column(Some(seen), &ModelFeatures::new()),
            "no PGE NX, MAXPHYADDR 36"
        );
        let model: ModelFeatures = [("pse".to_string(), false), ("pae".to_string(), false)]
            .into_iter()
            .collect();
        assert_eq!(features_column(None, &model), "(QEMU model) no PSE PAE");
    }

    #[test]
    fn jobs_are_one_or_two() {
        let parse_jobs = |n: &str| parse(&["--jobs".to_string(), n.to_string()]);
        assert_eq!(parse_jobs("2").unwrap().jobs, 2);
        assert!(parse_jobs("3").is_err());
        assert!(parse_jobs("0").is_err());
    }
}
