//! The printed table: one row per comparison, with its ratio, target and
//! whether the target is met, and the instruction counts beside it.

/// What a row's ratio must reach.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Target {
    /// `other / ours` at least this (ours this many times faster).
    Faster(f64),
    /// `ours / other` at most this (ours within this factor of the other).
    Within(f64),
    /// `ours / other`, reported without a target.
    Info,
}

/// One comparison.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// What is measured.
    pub metric: String,
    /// Our time per operation, in nanoseconds (fastest sample).
    pub ours_ns: f64,
    /// The peer's, bound's or baseline's time per operation.
    pub other_ns: f64,
    /// Criterion's median for ours.
    pub ours_median_ns: f64,
    /// Criterion's median for the other side.
    pub other_median_ns: f64,
    /// What the other column is ("x86_64", "bound", "lock+lookup").
    pub other: &'static str,
    /// The target.
    pub target: Target,
    /// Our instructions per operation (callgrind), if counted.
    pub ours_ir: Option<f64>,
    /// The other side's instructions per operation, if counted.
    pub other_ir: Option<f64>,
}

impl Row {
    /// The ratio the target is about.
    pub fn ratio(&self) -> f64 {
        match self.target {
            Target::Faster(_) => self.other_ns / self.ours_ns,
            Target::Within(_) | Target::Info => self.ours_ns / self.other_ns,
        }
    }

    /// Whether the target is met (`None` without a target).
    pub fn met(&self) -> Option<bool> {
        let r = self.ratio();
        match self.target {
            Target::Faster(min) => Some(r >= min),
            Target::Within(max) => Some(r <= max),
            Target::Info => None,
        }
    }

    fn cells(&self) -> Vec<String> {
        let (ratio, target) = match self.target {
            Target::Faster(min) => (
                format!("{:.2}x faster", self.ratio()),
                format!(">= {min}x faster"),
            ),
            Target::Within(max) => (
                format!("{:.2}x", self.ratio()),
                format!("<= {max}x {}", self.other),
            ),
            Target::Info => (format!("{:.2}x", self.ratio()), "-".to_string()),
        };
        let met = match self.met() {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "-",
        };
        let ir = |v: Option<f64>| v.map_or("n/a".to_string(), |v| format!("{v:.0}"));
        let ir_ratio = match (self.ours_ir, self.other_ir) {
            (Some(a), Some(b)) if a > 0.0 && b > 0.0 => match self.target {
                Target::Faster(_) => format!("{:.2}x fewer", b / a),
                _ => format!("{:.2}x", a / b),
            },
            _ => "n/a".to_string(),
        };
        let median_ratio = match self.target {
            Target::Faster(_) => self.other_median_ns / self.ours_median_ns,
            Target::Within(_) | Target::Info => self.ours_median_ns / self.other_median_ns,
        };
        vec![
            self.metric.clone(),
            duration(self.ours_ns),
            format!("{} ({})", duration(self.other_ns), self.other),
            ratio,
            format!("{median_ratio:.2}x"),
            target,
            met.to_string(),
            ir(self.ours_ir),
            ir(self.other_ir),
            ir_ratio,
        ]
    }
}

/// A time in nanoseconds, with a readable unit.
pub fn duration(ns: f64) -> String {
    if ns < 1_000.0 {
        format!("{ns:.1} ns")
    } else if ns < 1_000_000.0 {
        format!("{:.2} us", ns / 1_000.0)
    } else {
        format!("{:.3} ms", ns / 1_000_000.0)
    }
}

/// The timing table, as Markdown.
pub fn timing_table(rows: &[Row]) -> String {
    markdown(
        &[
            "metric",
            "ours",
            "other",
            "ratio",
            "median ratio",
            "target",
            "met",
            "Ir ours",
            "Ir other",
            "Ir ratio",
        ],
        &rows.iter().map(Row::cells).collect::<Vec<_>>(),
    )
}

/// A Markdown table with padded columns.
pub fn markdown(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, &w)| format!("{c:<w$}"))
            .collect();
        format!("| {} |\n", padded.join(" | "))
    };
    let mut out = line(headers.to_vec());
    let dashes: Vec<String> = widths.iter().map(|&w| "-".repeat(w)).collect();
    out.push_str(&line(dashes.iter().map(String::as_str).collect()));
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(target: Target, ours: f64, other: f64) -> Row {
        Row {
            metric: "m".into(),
            ours_ns: ours,
            other_ns: other,
            ours_median_ns: ours,
            other_median_ns: other,
            other: "x",
            target,
            ours_ir: Some(10.0),
            other_ir: Some(30.0),
        }
    }

    #[test]
    fn ratios_and_targets_point_the_right_way() {
        let fast = row(Target::Faster(1.5), 10.0, 20.0);
        assert_eq!(fast.ratio(), 2.0);
        assert_eq!(fast.met(), Some(true));
        assert_eq!(row(Target::Faster(1.5), 10.0, 12.0).met(), Some(false));
        let within = row(Target::Within(3.0), 40.0, 10.0);
        assert_eq!(within.ratio(), 4.0);
        assert_eq!(within.met(), Some(false));
        assert_eq!(row(Target::Info, 1.0, 1.0).met(), None);
    }

    #[test]
    fn markdown_rows_line_up() {
        let t = markdown(&["a", "bb"], &[vec!["long cell".into(), "x".into()]]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines.iter().all(|l| l.len() == lines[0].len()));
        assert!(lines[1].starts_with("| ---------"));
    }

    #[test]
    fn durations_pick_a_unit() {
        assert_eq!(duration(12.34), "12.3 ns");
        assert_eq!(duration(1_500.0), "1.50 us");
        assert_eq!(duration(2_500_000.0), "2.500 ms");
    }
}
