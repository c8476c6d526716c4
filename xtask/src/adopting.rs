//! The adoption guide's code is the minimal kernel's code, so it cannot
//! rot: every ```` ```rust ```` block of `docs/adopting.md` must appear, line
//! for line, in one file of `examples/minimal/src` (lines compared without
//! their leading and trailing whitespace). The test below checks it; it is
//! part of `cargo xtask test`'s `test` step, and the minimal kernel's own
//! build, clippy, host tests and QEMU boots check that the code works.

use std::path::Path;

/// The guide, relative to the repository root.
pub const GUIDE: &str = "docs/adopting.md";
/// Where its code must come from, relative to the repository root.
pub const SOURCES: &str = "examples/minimal/src";

/// The ```` ```rust ```` blocks of `markdown` (any info string starting
/// with `rust`), each as its first line number and its lines.
pub fn rust_blocks(markdown: &str) -> Vec<(usize, Vec<&str>)> {
    let mut blocks = Vec::new();
    let mut current: Option<(usize, Vec<&str>)> = None;
    for (number, line) in markdown.lines().enumerate() {
        let fence = line.trim_start();
        match current.take() {
            None if fence.starts_with("```rust") => current = Some((number + 2, Vec::new())),
            None => {}
            Some(block) if fence.starts_with("```") => blocks.push(block),
            Some((start, mut lines)) => {
                lines.push(line);
                current = Some((start, lines));
            }
        }
    }
    blocks.extend(current);
    blocks
}

/// Whether `block` appears in `source` as consecutive lines, each compared
/// without leading and trailing whitespace.
fn appears_in(block: &[&str], source: &str) -> bool {
    let block: Vec<&str> = block.iter().map(|line| line.trim()).collect();
    let source: Vec<&str> = source.lines().map(str::trim).collect();
    !block.is_empty() && source.windows(block.len()).any(|window| window == block)
}

/// Checks every Rust block of `markdown` against `sources` (name, text);
/// returns how many blocks there are, or which ones drifted.
pub fn check(markdown: &str, sources: &[(String, String)]) -> Result<usize, String> {
    let blocks = rust_blocks(markdown);
    if blocks.is_empty() {
        return Err(format!("{GUIDE} has no ```rust block"));
    }
    let drifted: Vec<String> = blocks
        .iter()
        .filter(|(_, lines)| !sources.iter().any(|(_, text)| appears_in(lines, text)))
        .map(|(line, lines)| {
            let first = lines.iter().map(|l| l.trim()).find(|l| !l.is_empty());
            format!("line {line}: `{}`", first.unwrap_or(""))
        })
        .collect();
    if drifted.is_empty() {
        Ok(blocks.len())
    } else {
        Err(format!(
            "{} of {} Rust blocks of {GUIDE} are not verbatim code of {SOURCES}: {}",
            drifted.len(),
            blocks.len(),
            drifted.join("; ")
        ))
    }
}

/// The guide and the minimal kernel's sources, read from `root`.
pub fn check_repository(root: &Path) -> Result<usize, String> {
    let read = |path: &Path| {
        std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))
    };
    let guide = read(&root.join(GUIDE))?;
    let dir = root.join(SOURCES);
    let entries = std::fs::read_dir(&dir).map_err(|e| format!("reading {}: {e}", dir.display()))?;
    let mut sources = Vec::new();
    for entry in entries {
        let path = entry
            .map_err(|e| format!("reading {}: {e}", dir.display()))?
            .path();
        if path.extension().is_some_and(|ext| ext == "rs") {
            sources.push((path.display().to_string(), read(&path)?));
        }
    }
    check(&guide, &sources)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guide_is_the_minimal_kernels_code() {
        let blocks = check_repository(&crate::process::repo_root()).unwrap();
        assert!(blocks >= 5, "only {blocks} Rust blocks in {GUIDE}");
    }

    #[test]
    fn drift_is_caught_and_indentation_is_not() {
        let source = vec![(
            "main.rs".to_string(),
            "fn main() {\n    let x = 1;\n\n    run(x);\n}\n".to_string(),
        )];
        let same = "text\n```rust\nlet x = 1;\n\n  run(x);\n```\n";
        assert_eq!(check(same, &source), Ok(1));
        let drifted = "```rust\nlet x = 2;\n```\n```toml\nnot = \"checked\"\n```\n";
        let error = check(drifted, &source).unwrap_err();
        assert!(error.contains("line 2: `let x = 2;`"), "{error}");
        let out_of_order = "```rust,ignore\nrun(x);\nlet x = 1;\n```\n";
        assert!(check(out_of_order, &source).is_err());
        assert!(check("no code", &source).is_err());
    }
}
