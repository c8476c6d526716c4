//! The summary table printed at the end of `run` and `test`.

use std::time::Duration;

/// State of one row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Ran and succeeded.
    Pass,
    /// Ran and failed.
    Fail,
    /// Not run (an earlier step failed).
    NotRun,
}

struct Row {
    name: String,
    status: Status,
    detail: String,
    elapsed: Option<Duration>,
}

/// Rows of results, printed as an aligned table.
pub struct Table {
    title: &'static str,
    rows: Vec<Row>,
}

impl Table {
    /// An empty table whose first column is headed `title`.
    pub fn new(title: &'static str) -> Self {
        Self {
            title,
            rows: Vec::new(),
        }
    }

    /// Adds a row.
    pub fn add(
        &mut self,
        name: impl Into<String>,
        status: Status,
        detail: impl Into<String>,
        elapsed: Option<Duration>,
    ) {
        self.rows.push(Row {
            name: name.into(),
            status,
            detail: detail.into(),
            elapsed,
        });
    }

    /// Adds the row of a QEMU boot.
    pub fn push(&mut self, name: String, outcome: crate::qemu::Outcome) {
        let status = if outcome.passed {
            Status::Pass
        } else {
            Status::Fail
        };
        self.add(name, status, outcome.detail, Some(outcome.elapsed));
    }

    /// Prints the table.
    pub fn print(&self) {
        let width = self
            .rows
            .iter()
            .map(|row| row.name.len())
            .chain([self.title.len()])
            .max()
            .unwrap_or(0);
        println!();
        println!("{:width$}  result   time     detail", self.title);
        println!("{}", "-".repeat(width + 40));
        for row in &self.rows {
            let status = match row.status {
                Status::Pass => "PASS",
                Status::Fail => "FAIL",
                Status::NotRun => "not run",
            };
            let time = row
                .elapsed
                .map(|t| format!("{:.1}s", t.as_secs_f64()))
                .unwrap_or_default();
            println!("{:width$}  {status:7}  {time:>7}  {}", row.name, row.detail);
        }
    }
}
