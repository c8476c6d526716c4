//! Criterion's measurements, read back from its output directory
//! (`<dir>/<group>/<bench>/new/{estimates,sample}.json`).
//!
//! The report uses the fastest sample's time per iteration: the benchmarks
//! are deterministic CPU-bound loops, so other processes on a shared
//! machine can only add time, and the fastest of 40 samples (each
//! thousands of iterations) is the most stable figure from run to run.
//! Criterion's median is kept beside it.

use std::path::{Path, PathBuf};

/// Where criterion wrote its estimates.
#[derive(Debug, Clone)]
pub struct Estimates {
    dir: PathBuf,
}

impl Estimates {
    /// The estimates under `dir`.
    pub fn load(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
        }
    }

    fn json(&self, group: &str, bench: &str, name: &str) -> Result<serde_json::Value, String> {
        let file = self.dir.join(group).join(bench).join("new").join(name);
        let text =
            std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", file.display()))
    }

    /// Criterion's median time per iteration of `group/bench`, in
    /// nanoseconds.
    pub fn median_ns(&self, group: &str, bench: &str) -> Result<f64, String> {
        self.json(group, bench, "estimates.json")?["median"]["point_estimate"]
            .as_f64()
            .ok_or_else(|| format!("{group}/{bench}: no median point estimate"))
    }

    /// The fastest sample's time per iteration of `group/bench`, in
    /// nanoseconds.
    pub fn fastest_ns(&self, group: &str, bench: &str) -> Result<f64, String> {
        let json = self.json(group, bench, "sample.json")?;
        let numbers = |key: &str| -> Vec<f64> {
            json[key]
                .as_array()
                .map(|a| a.iter().filter_map(serde_json::Value::as_f64).collect())
                .unwrap_or_default()
        };
        numbers("times")
            .iter()
            .zip(numbers("iters"))
            .filter(|&(_, iters)| iters > 0.0)
            .map(|(t, iters)| t / iters)
            .min_by(f64::total_cmp)
            .ok_or_else(|| format!("{group}/{bench}: no samples"))
    }
}
