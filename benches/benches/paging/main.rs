//! `cargo xtask bench` / `cargo bench -p paging-benches`: runs the
//! criterion groups, counts the hot paths' instructions with callgrind,
//! computes the deterministic figures, and prints one report (also written
//! to `<target>/paging-benches/report.md`).
//!
//! Options (after `--`): `--quick` (short measurements, for a smoke run),
//! `--no-callgrind` (skip the instruction counts).

mod estimates;
#[path = "../../figures/mod.rs"]
mod figures;
mod groups;
mod rows;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use criterion::Criterion;
use paging_x86_2level::TwoLevel;
use paging_x86_pae::Pae;

const USAGE: &str = "usage: cargo bench -p paging-benches -- [--quick] [--no-callgrind]";

/// Command-line options.
#[derive(Debug, Clone, Copy)]
struct Options {
    quick: bool,
    callgrind: bool,
}

fn parse() -> Result<Options, String> {
    let mut options = Options {
        quick: false,
        callgrind: true,
    };
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            // What `cargo bench` passes to every harness.
            "--bench" => {}
            "--quick" => options.quick = true,
            "--no-callgrind" => options.callgrind = false,
            other => return Err(format!("unknown option `{other}`\n{USAGE}")),
        }
    }
    Ok(options)
}

/// `<target>/paging-benches`: cargo's target directory is the parent of
/// the temporary directory it gives benchmarks.
fn output_dir() -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().unwrap_or(tmp).join("paging-benches")
}

fn criterion(quick: bool, dir: &Path) -> Criterion {
    let (warm, measure, samples) = if quick {
        (100, 300, 10)
    } else {
        (300, 1000, 40)
    };
    Criterion::default()
        .output_directory(dir)
        .warm_up_time(Duration::from_millis(warm))
        .measurement_time(Duration::from_millis(measure))
        .sample_size(samples)
        .nresamples(10_000)
        .without_plots()
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("paging-benches: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let options = parse()?;
    let dir = output_dir();
    let criterion_dir = dir.join("criterion");
    let mut c = criterion(options.quick, &criterion_dir);
    groups::map(&mut c);
    groups::translate(&mut c);
    groups::range(&mut c, options.quick);
    groups::kmap(&mut c);
    groups::kmap_threads(&mut c);
    let times = estimates::Estimates::load(&criterion_dir);

    let counts = if options.callgrind {
        rows::callgrind_counts(
            Path::new(env!("CARGO_BIN_EXE_hotpaths")),
            &dir.join("callgrind"),
        )?
    } else {
        rows::Counts::default()
    };
    let timing = rows::timing_rows(&times, &counts)?;

    let flushes = [
        figures::flush_counts::all::<TwoLevel>()?,
        figures::flush_counts::all::<Pae>()?,
    ];
    let metadata = [
        figures::metadata::figure::<TwoLevel>(),
        figures::metadata::figure::<Pae>(),
    ];
    let lowmem = [
        figures::lowmem::figure::<TwoLevel>()?,
        figures::lowmem::figure::<Pae>()?,
    ];

    let report = rows::report(
        &options_line(&options, &counts),
        &timing,
        &counts,
        &flushes,
        &metadata,
        &lowmem,
    );
    println!("\n{report}");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let file = dir.join("report.md");
    std::fs::write(&file, &report).map_err(|e| format!("{}: {e}", file.display()))?;
    println!("report written to {}", file.display());
    Ok(())
}

fn options_line(options: &Options, counts: &rows::Counts) -> String {
    format!(
        "criterion, {} measurement; callgrind {}",
        if options.quick { "--quick" } else { "full" },
        if !options.callgrind {
            "skipped (--no-callgrind)"
        } else if counts.is_empty() {
            "not available"
        } else {
            "counted"
        }
    )
}
