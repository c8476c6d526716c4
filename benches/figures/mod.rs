//! The deterministic figures: counts and sizes that do not depend on
//! machine noise. Shared by the bench harness (which prints them) and
//! `tests/figures.rs` (which asserts their targets).
// Each includer uses a different subset.
#![allow(dead_code)]

pub mod flush_counts;
pub mod lowmem;
pub mod metadata;
pub mod sim_kernel;

use paging_benches::report::markdown;

/// The flush table for one mode's four policies.
pub fn flush_table(mode: &str, figures: &[flush_counts::FlushFigure]) -> String {
    let rows: Vec<Vec<String>> = figures
        .iter()
        .map(|f| {
            vec![
                mode.to_string(),
                f.policy.to_string(),
                f.wraps.to_string(),
                f.counts.pages.to_string(),
                f.counts.ranges.to_string(),
                f.counts.globals.to_string(),
                f.counts.avoided.to_string(),
                f.tlb_invlpg.to_string(),
                f.tlb_full.to_string(),
            ]
        })
        .collect();
    markdown(
        &[
            "mode",
            "policy",
            "wraps",
            "invlpg",
            "range",
            "global",
            "avoided",
            "TLB saw invlpg",
            "TLB saw full",
        ],
        &rows,
    )
}

/// The metadata and lowmem tables.
pub fn cost_table(
    metadata: &[metadata::MetadataFigure],
    lowmem: &[lowmem::LowmemFigure],
) -> String {
    let mut rows = Vec::new();
    for m in metadata {
        rows.push(vec![
            format!("pool metadata per slot, {}", m.mode),
            format!(
                "{:.1} B/slot marginal; {:.1} B/slot at 1,024 slots ({} B)",
                m.per_slot,
                m.per_slot_at_1024(),
                m.sizes[1]
            ),
            "-".to_string(),
            "-".to_string(),
        ]);
    }
    for l in lowmem {
        rows.push(vec![
            format!("lowmem per address space mapping 1 GiB, {}", l.mode),
            format!(
                "pte-highmem {} KiB vs lowmem tables {} KiB",
                l.pte_highmem.lowmem_bytes() / 1024,
                l.pte_lowmem.lowmem_bytes() / 1024
            ),
            format!("{:.0}x less (target >= 100x)", l.ratio()),
            if l.ratio() >= 100.0 { "yes" } else { "**no**" }.to_string(),
        ]);
    }
    markdown(&["figure", "value", "ratio", "met"], &rows)
}
