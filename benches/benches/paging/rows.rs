//! Turning measurements into the report: the timing rows (criterion
//! medians side by side, with instruction counts), the deterministic
//! figures, and a profile for every missed target.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use paging_benches::callgrind::{self, PerOp};
use paging_benches::hotpaths::HOT_PATHS;
use paging_benches::report::{Row, Target, timing_table};

use crate::estimates::Estimates;
use crate::figures::{self, flush_counts::FlushFigure, lowmem::LowmemFigure};
use crate::groups::{POLICIES, THREADS};

/// Instructions per operation of each hot path, by name.
#[derive(Debug, Clone, Default)]
pub struct Counts {
    per_op: BTreeMap<&'static str, PerOp>,
    /// The `hotpaths` binary that was counted.
    binary: Option<PathBuf>,
    /// Where the callgrind outputs are.
    dir: PathBuf,
}

impl Counts {
    /// Whether nothing was counted.
    pub fn is_empty(&self) -> bool {
        self.per_op.is_empty()
    }

    fn ir(&self, path: &str) -> Option<f64> {
        self.per_op.get(path).map(|p| p.instructions)
    }
}

/// Count every hot path with callgrind, if valgrind runs here.
pub fn callgrind_counts(binary: &Path, dir: &Path) -> Result<Counts, String> {
    if !callgrind::available() {
        println!("valgrind not found: instruction counts skipped (cargo xtask bench installs it)");
        return Ok(Counts::default());
    }
    let mut per_op = BTreeMap::new();
    for path in HOT_PATHS {
        println!("callgrind: {}", path.name);
        per_op.insert(path.name, callgrind::per_op(binary, path, dir)?);
    }
    Ok(Counts {
        per_op,
        binary: Some(binary.to_path_buf()),
        dir: dir.to_path_buf(),
    })
}

struct Builder<'a> {
    times: &'a Estimates,
    counts: &'a Counts,
    rows: Vec<Row>,
    /// For each row, the hot path to profile if its target is missed.
    paths: Vec<Option<String>>,
}

impl Builder<'_> {
    #[allow(clippy::too_many_arguments)]
    fn row(
        &mut self,
        metric: String,
        group: &str,
        (ours, other): (&str, &str),
        other_name: &'static str,
        target: Target,
        (ours_ir, other_ir): (Option<&str>, Option<&str>),
    ) -> Result<(), String> {
        self.rows.push(Row {
            metric,
            ours_ns: self.times.fastest_ns(group, ours)?,
            other_ns: self.times.fastest_ns(group, other)?,
            ours_median_ns: self.times.median_ns(group, ours)?,
            other_median_ns: self.times.median_ns(group, other)?,
            other: other_name,
            target,
            ours_ir: ours_ir.and_then(|p| self.counts.ir(p)),
            other_ir: other_ir.and_then(|p| self.counts.ir(p)),
        });
        self.paths.push(ours_ir.map(str::to_string));
        Ok(())
    }
}

/// The timing rows, in the order of the issue.
pub fn timing_rows(
    times: &Estimates,
    counts: &Counts,
) -> Result<Vec<(Row, Option<String>)>, String> {
    let mut b = Builder {
        times,
        counts,
        rows: Vec::new(),
        paths: Vec::new(),
    };
    let modes = [("2level", "2-level"), ("pae", "PAE")];
    for (id, name) in modes {
        b.row(
            format!("map one 4 KiB page into existing tables, {name}"),
            "map",
            (&format!("ours-{id}"), "x86_64"),
            "x86_64 map_to",
            Target::Faster(1.5),
            (Some(&format!("map-{id}")), Some("map-x86_64")),
        )?;
    }
    for (id, name) in modes {
        b.row(
            format!("map 1 GiB of 4 KiB pages (range API, per 1 GiB), {name}"),
            "range",
            (&format!("ours-{id}"), &format!("bound-{id}")),
            "plain loop",
            Target::Within(3.0),
            (Some(&format!("range-{id}")), Some(&format!("bound-{id}"))),
        )?;
    }
    for (id, name) in modes {
        b.row(
            format!("map 1 GiB vs volatile-store loop (per 1 GiB), {name}"),
            "range",
            (&format!("ours-{id}"), &format!("volatile-{id}")),
            "volatile loop",
            Target::Info,
            (
                Some(&format!("range-{id}")),
                Some(&format!("volatile-{id}")),
            ),
        )?;
    }
    for (id, name) in modes {
        b.row(
            format!("translate, {name}"),
            "translate",
            (&format!("ours-{id}"), "x86_64"),
            "x86_64 translate_addr",
            Target::Faster(1.0),
            (Some(&format!("translate-{id}")), Some("translate-x86_64")),
        )?;
    }
    for (id, name) in modes {
        for policy in POLICIES {
            // The hit path never reaches the policy; callgrind counts it once.
            let ir = (policy == "global").then(|| format!("kmap-hit-{id}"));
            b.row(
                format!("kmap+kunmap hit, {name}, {policy}"),
                "kmap",
                (&format!("hit-{id}-{policy}"), &format!("lock-lookup-{id}")),
                "lock+lookup",
                // Issue 23: a hit takes no lock, so at or below one lock
                // round trip plus one lookup.
                Target::Within(1.0),
                (ir.as_deref(), Some("lock-lookup")),
            )?;
        }
        b.row(
            format!("kmap+kunmap hit, page held by another user, {name}, global"),
            "kmap",
            (
                &format!("hit-held-{id}-global"),
                &format!("lock-lookup-{id}"),
            ),
            "lock+lookup",
            Target::Within(1.0),
            (Some(&format!("kmap-hit-held-{id}")), Some("lock-lookup")),
        )?;
    }
    for (id, name) in modes {
        for policy in POLICIES {
            b.row(
                format!("kmap+kunmap miss (amortised over wraps), {name}, {policy}"),
                "kmap",
                (&format!("miss-{id}-{policy}"), &format!("lock-lookup-{id}")),
                "lock+lookup",
                Target::Info,
                (
                    Some(&format!("kmap-miss-{id}-{policy}")),
                    Some("lock-lookup"),
                ),
            )?;
        }
    }
    for threads in THREADS {
        let what = if threads == 1 { "thread" } else { "threads" };
        b.row(
            format!(
                "kmap+kunmap hit, {threads} {what} on one pool (time per op per thread), PAE, global"
            ),
            "kmap-threads",
            (
                &format!("hit-t{threads}"),
                &format!("lock-lookup-t{threads}"),
            ),
            "lock+lookup, same threads",
            Target::Info,
            (None, None),
        )?;
    }
    // Scaling: per-thread time with N threads against one thread, for the
    // pool and for a control whose threads share nothing (each its own
    // lock and map): the control shows how far the machine itself lets
    // threads run side by side (on a loaded two-core machine, not far).
    for threads in THREADS.into_iter().filter(|&t| t > 1) {
        b.row(
            format!(
                "kmap+kunmap hit, {threads} threads vs 1 thread on one pool (per-thread time), PAE, global"
            ),
            "kmap-threads",
            (&format!("hit-t{threads}"), "hit-t1"),
            "1 thread",
            if threads == 2 {
                Target::Within(1.3)
            } else {
                Target::Info
            },
            (None, None),
        )?;
        b.row(
            format!(
                "control: kmap hit, each thread its own pool, {threads} threads vs 1 thread (per-thread time)"
            ),
            "kmap-threads",
            (&format!("own-pool-t{threads}"), "own-pool-t1"),
            "1 thread",
            Target::Info,
            (None, None),
        )?;
        b.row(
            format!(
                "control: lock+lookup with nothing shared, {threads} threads vs 1 thread (per-thread time)"
            ),
            "kmap-threads",
            (&format!("private-t{threads}"), "private-t1"),
            "1 thread",
            Target::Info,
            (None, None),
        )?;
    }
    Ok(b.rows.into_iter().zip(b.paths).collect())
}

/// The whole report, as Markdown.
pub fn report(
    how: &str,
    timing: &[(Row, Option<String>)],
    counts: &Counts,
    flushes: &[[FlushFigure; 4]; 2],
    metadata: &[figures::metadata::MetadataFigure],
    lowmem: &[LowmemFigure],
) -> String {
    let rows: Vec<Row> = timing.iter().map(|(r, _)| r.clone()).collect();
    let mut out = format!("### Timings ({how})\n\n");
    out.push_str(
        "Times are per operation, from the fastest criterion sample of each side; \
         `median ratio` is the same ratio from criterion's medians. `Ir` is \
         instructions per operation (callgrind), `Ir ratio` their ratio.\n\n",
    );
    out.push_str(&timing_table(&rows));
    let missed: Vec<&(Row, Option<String>)> = timing
        .iter()
        .filter(|(r, _)| r.met() == Some(false))
        .collect();
    let targets = rows.iter().filter(|r| r.met().is_some()).count();
    out.push_str(&format!(
        "\nTiming targets met: {} of {targets}.\n",
        targets - missed.len()
    ));

    out.push_str("\n### Flushes per 100,000 kmaps (10,000 pages, 1,024 slots)\n\n");
    for (mode, figs) in ["2-level", "PAE"].iter().zip(flushes) {
        out.push_str(&figures::flush_table(mode, figs));
        let [per_page, _, global, accessed] = figs;
        out.push_str(&format!(
            "\n{mode}: global {} flushes for {} wraps (target <= 1 per wrap: {}); \
             accessed-bit {} invalidations vs per-page {} (target strictly fewer: {}).\n\n",
            global.counts.globals,
            global.wraps,
            yes_no(global.counts.globals <= global.wraps),
            accessed.invalidations(),
            per_page.invalidations(),
            yes_no(accessed.invalidations() < per_page.invalidations()),
        ));
    }
    out.push_str("### Memory\n\n");
    out.push_str(&figures::cost_table(metadata, lowmem));

    let profiled: Vec<_> = missed
        .iter()
        .filter_map(|(r, p)| Some((r, counts.per_op.get(p.as_deref()?)?)))
        .collect();
    if let (false, Some(binary)) = (profiled.is_empty(), counts.binary.as_deref()) {
        out.push_str("\n### Profiles of missed targets\n\n");
        out.push_str(
            "Callgrind, collecting only the measured loop; each function's own \
             instructions (inlined callees included), highest first.\n",
        );
        for (row, per_op) in profiled {
            out.push_str(&format!("\n{}:\n\n```text\n", row.metric));
            match callgrind::profile(binary, &per_op.path, &counts.dir, 10) {
                Ok(text) => out.push_str(&text),
                Err(e) => out.push_str(&format!("profile failed: {e}")),
            }
            out.push_str("\n```\n");
        }
    }
    out
}

fn yes_no(met: bool) -> &'static str {
    if met { "yes" } else { "**no**" }
}
