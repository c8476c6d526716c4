//! `cargo xtask layers`: a structure drawing of the example kernel's
//! source (`examples/kernel/src`) from its imports, checked against three
//! rules (issue 24):
//!
//! 1. no file is over [`MAX_LINES`] lines;
//! 2. no import circle (strongly connected component of the file graph) is
//!    wider than two files;
//! 3. imports point down the folder ranks of [`RANKS`]: at most
//!    [`MAX_UP`] point back up, and each of those carries a `// layer: why`
//!    comment on a line that names it.
//!
//! An import is a distinct (file, file) pair: file A imports file B when a
//! `use` line or a path in A's code names B's module (`crate::mm::frames`,
//! `super::x`, or a child module by its bare name). A path is resolved to
//! the longest module prefix that is a file; a name at the crate root that
//! is no module (a `#[macro_export]` macro, a `pub use` re-export of
//! `main.rs`) is resolved to the file that defines it. Comments are not
//! read (but for the `// layer:` mark), so doc links do not count.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Longest a source file may be, in lines.
pub const MAX_LINES: usize = 600;

/// Widest allowed import circle, in files.
pub const MAX_CIRCLE: usize = 2;

/// Most imports that may point back up (each with a `// layer:` comment).
pub const MAX_UP: usize = 3;

/// The comment that justifies an import pointing back up.
pub const MARK: &str = "// layer:";

/// Folder ranks, lowest first: a file may import files of its own folder
/// and of lower ranks. Files directly in `src/` (`main.rs`, the crate root
/// with `kmain`, and its helpers) rank as `main`, above all.
pub const RANKS: [&str; 8] = [
    "base",
    "arch",
    "boot",
    "mm",
    "smp",
    "proc",
    "selftests",
    "main",
];

/// The kernel's source, relative to the repository root.
pub const SOURCE: &str = "examples/kernel/src";

/// One source file: its module path (`["mm", "frames"]`; empty for
/// `main.rs`), its path relative to `src/` and its text.
#[derive(Debug, Clone)]
pub struct File {
    /// Module path from the crate root.
    pub module: Vec<String>,
    /// Path relative to the source folder, `/`-separated.
    pub path: String,
    /// The file's text.
    pub text: String,
}

impl File {
    /// A file from its path relative to `src/` and its text.
    pub fn new(path: &str, text: &str) -> Self {
        let stem = path.strip_suffix(".rs").unwrap_or(path);
        let mut module: Vec<String> = stem.split('/').map(str::to_string).collect();
        if module.last().is_some_and(|last| last == "mod") {
            module.pop();
        }
        if module == ["main"] {
            module.clear();
        }
        File {
            module,
            path: path.to_string(),
            text: text.to_string(),
        }
    }

    fn lines(&self) -> usize {
        self.text.lines().count()
    }

    /// The folder whose rank this file has.
    fn folder(&self) -> &str {
        match self.path.split_once('/') {
            Some((folder, _)) => folder,
            None => "main",
        }
    }
}

/// Rank of a folder in [`RANKS`]; unknown folders rank with `base`.
fn rank(folder: &str) -> usize {
    RANKS.iter().position(|&r| r == folder).unwrap_or(0)
}

/// One import: from one file to another, and whether a line naming it
/// carries the [`MARK`] comment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Import {
    /// Importing file (index into the file list).
    pub from: usize,
    /// Imported file.
    pub to: usize,
    /// A `// layer:` comment says why (text after the mark).
    pub why: Option<String>,
}

/// The drawing: files, imports and what breaks the rules.
#[derive(Debug)]
pub struct Drawing {
    /// The files, sorted by path.
    pub files: Vec<File>,
    /// Distinct imports between different files.
    pub imports: Vec<Import>,
    /// Files over [`MAX_LINES`]: (path, lines).
    pub long_files: Vec<(String, usize)>,
    /// Import circles wider than [`MAX_CIRCLE`] (paths of each).
    pub circles: Vec<Vec<String>>,
    /// Widest import circle, in files.
    pub widest_circle: usize,
    /// Imports that point back up.
    pub up: Vec<Import>,
}

impl Drawing {
    /// Draws the graph of `files`.
    pub fn new(mut files: Vec<File>) -> Self {
        files.sort_by(|a, b| a.path.cmp(&b.path));
        let imports = imports(&files);
        let long_files = files
            .iter()
            .filter(|f| f.lines() > MAX_LINES)
            .map(|f| (f.path.clone(), f.lines()))
            .collect();
        let components = strongly_connected(files.len(), &imports);
        let widest_circle = components.iter().map(Vec::len).max().unwrap_or(0);
        let circles = components
            .into_iter()
            .filter(|c| c.len() > MAX_CIRCLE)
            .map(|c| {
                let mut paths: Vec<String> = c.iter().map(|&i| files[i].path.clone()).collect();
                paths.sort();
                paths
            })
            .collect();
        let up = imports
            .iter()
            .filter(|i| {
                let (from, to) = (&files[i.from], &files[i.to]);
                from.folder() != to.folder() && rank(to.folder()) > rank(from.folder())
            })
            .cloned()
            .collect();
        Drawing {
            files,
            imports,
            long_files,
            circles,
            widest_circle,
            up,
        }
    }

    /// Reads every `.rs` file under `src`.
    pub fn read(src: &Path) -> Result<Self, String> {
        let mut files = Vec::new();
        read_dir(src, src, &mut files)?;
        Ok(Drawing::new(files))
    }

    /// The rules this drawing breaks, one line each.
    pub fn violations(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (path, lines) in &self.long_files {
            out.push(format!("{path} has {lines} lines (at most {MAX_LINES})"));
        }
        for circle in &self.circles {
            out.push(format!(
                "import circle of {} files (at most {MAX_CIRCLE}): {}",
                circle.len(),
                circle.join(", ")
            ));
        }
        if self.up.len() > MAX_UP {
            out.push(format!(
                "{} imports point back up (at most {MAX_UP})",
                self.up.len()
            ));
        }
        for import in self.up.iter().filter(|i| i.why.is_none()) {
            out.push(format!(
                "{} imports {} (up) without a `{MARK} why` comment",
                self.files[import.from].path, self.files[import.to].path
            ));
        }
        out
    }

    /// The report: figures, then each finding.
    pub fn report(&self) -> String {
        let mut out = String::new();
        let folders: BTreeSet<&str> = self.files.iter().map(File::folder).collect();
        out.push_str(&format!(
            "{} files in {} folders, {} imports; folder ranks (low to high): {}\n",
            self.files.len(),
            folders.len(),
            self.imports.len(),
            RANKS.join(" < ")
        ));
        out.push_str(&format!(
            "files over {MAX_LINES} lines: {}\n",
            self.long_files.len()
        ));
        for (path, lines) in &self.long_files {
            out.push_str(&format!("  {path}: {lines}\n"));
        }
        out.push_str(&format!(
            "import circles wider than {MAX_CIRCLE} files: {} (widest: {} files)\n",
            self.circles.len(),
            self.widest_circle
        ));
        for circle in &self.circles {
            out.push_str(&format!(
                "  {} files: {}\n",
                circle.len(),
                circle.join(", ")
            ));
        }
        out.push_str(&format!(
            "imports pointing back up: {} (at most {MAX_UP}, each with `{MARK} why`)\n",
            self.up.len()
        ));
        for import in &self.up {
            out.push_str(&format!(
                "  {} -> {}{}\n",
                self.files[import.from].path,
                self.files[import.to].path,
                match &import.why {
                    Some(why) => format!(" ({why})"),
                    None => " (no `// layer:` comment)".to_string(),
                }
            ));
        }
        out
    }
}

fn read_dir(root: &Path, dir: &Path, files: &mut Vec<File>) -> Result<(), String> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    for entry in entries {
        let path = entry
            .map_err(|e| format!("cannot read {}: {e}", dir.display()))?
            .path();
        if path.is_dir() {
            read_dir(root, &path, files)?;
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            let relative = path
                .strip_prefix(root)
                .map_err(|e| e.to_string())?
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
            files.push(File::new(&relative, &text));
        }
    }
    Ok(())
}

/// A line without its `//` comment (quotes respected), and the text after
/// a [`MARK`] in that comment, if any.
fn split_comment(line: &str) -> (&str, Option<&str>) {
    let bytes = line.as_bytes();
    let mut in_string = false;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if in_string => i += 1,
            b'"' => in_string = !in_string,
            b'/' if !in_string && bytes.get(i + 1) == Some(&b'/') => {
                let comment = &line[i..];
                let why = comment.strip_prefix(MARK).map(str::trim);
                return (&line[..i], why);
            }
            _ => {}
        }
        i += 1;
    }
    (line, None)
}

/// Expands a use tree (`a::{b, c::{d, e}}`) into its paths.
fn expand_use(tree: &str) -> Vec<String> {
    // `x as y` keeps `x`: mark the rename before dropping the spaces.
    let tree: String = tree
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace(" as ", "@")
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let mut out = Vec::new();
    expand_into("", &tree, &mut out);
    out
}

fn expand_into(prefix: &str, tree: &str, out: &mut Vec<String>) {
    if let Some(open) = tree.find('{') {
        let head = &tree[..open];
        let inner = tree[open + 1..]
            .strip_suffix('}')
            .unwrap_or(&tree[open + 1..]);
        let mut depth = 0;
        let mut start = 0;
        for (i, c) in inner.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    expand_into(&format!("{prefix}{head}"), &inner[start..i], out);
                    start = i + 1;
                }
                _ => {}
            }
        }
        expand_into(&format!("{prefix}{head}"), &inner[start..], out);
    } else if !tree.is_empty() {
        let tree = tree.split('@').next().unwrap_or(tree);
        let path = format!("{prefix}{tree}");
        out.push(path.trim_end_matches("::").to_string());
    }
}

/// Paths (`a::b::c`) that appear in code: each maximal run of identifiers
/// joined by `::`, with at least one `::`.
fn code_paths(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let bytes = code.as_bytes();
    let ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut i = 0;
    while i < bytes.len() {
        if ident(bytes[i]) && (i == 0 || !(ident(bytes[i - 1]) || bytes[i - 1] == b':')) {
            let start = i;
            let mut end = i;
            loop {
                while end < bytes.len() && ident(bytes[end]) {
                    end += 1;
                }
                if code[end..].starts_with("::") && bytes.get(end + 2).copied().is_some_and(ident) {
                    end += 2;
                } else {
                    break;
                }
            }
            let path = &code[start..end];
            if path.contains("::") {
                out.push(path.to_string());
            }
            i = end.max(i + 1);
        } else {
            i += 1;
        }
    }
    out
}

/// Every path a file names, with the line's `// layer:` text: from `use`
/// statements (joined over lines, trees expanded) and from code.
fn named_paths(text: &str) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    let mut statement = String::new();
    let mut statement_why: Option<String> = None;
    for line in text.lines() {
        let (code, why) = split_comment(line);
        let trimmed = code.trim();
        let is_use = ["use ", "pub use ", "pub(crate) use ", "pub(super) use "]
            .iter()
            .any(|p| trimmed.starts_with(p));
        if statement.is_empty() && !is_use {
            for path in code_paths(code) {
                out.push((path, why.map(str::to_string)));
            }
            continue;
        }
        statement.push_str(trimmed);
        statement.push(' ');
        if statement_why.is_none() {
            statement_why = why.map(str::to_string);
        }
        if trimmed.ends_with(';') {
            let tree = statement
                .trim()
                .trim_end_matches(';')
                .split_once("use ")
                .map_or("", |(_, t)| t);
            for path in expand_use(tree) {
                out.push((path, statement_why.clone()));
            }
            statement.clear();
            statement_why = None;
        }
    }
    out
}

/// Names defined at the crate root by a file other than `main.rs`:
/// `#[macro_export]` macros, and `pub use` re-exports of `main.rs`.
fn root_names(files: &[File], by_module: &BTreeMap<Vec<String>, usize>) -> BTreeMap<String, usize> {
    let mut names = BTreeMap::new();
    for (index, file) in files.iter().enumerate() {
        let mut exported = false;
        for line in file.text.lines() {
            let line = line.trim();
            if line.starts_with("#[macro_export]") {
                exported = true;
            } else if exported && let Some(rest) = line.strip_prefix("macro_rules!") {
                let name: String = rest
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                names.insert(name, index);
                exported = false;
            }
        }
    }
    if let Some(root) = files.iter().find(|f| f.module.is_empty()) {
        for line in root.text.lines() {
            let Some(tree) = line.trim().strip_prefix("pub use ") else {
                continue;
            };
            for path in expand_use(tree.trim_end_matches(';')) {
                let parts: Vec<String> = path.split("::").map(str::to_string).collect();
                if let (Some(name), Some(index)) = (parts.last(), resolve(&parts, by_module)) {
                    names.insert(name.clone(), index);
                }
            }
        }
    }
    names
}

/// The file of the longest module prefix of `parts`.
fn resolve(parts: &[String], by_module: &BTreeMap<Vec<String>, usize>) -> Option<usize> {
    (1..=parts.len())
        .rev()
        .find_map(|n| by_module.get(&parts[..n].to_vec()).copied())
}

fn imports(files: &[File]) -> Vec<Import> {
    let by_module: BTreeMap<Vec<String>, usize> = files
        .iter()
        .enumerate()
        .map(|(i, f)| (f.module.clone(), i))
        .collect();
    let root_names = root_names(files, &by_module);
    let mut found: BTreeMap<(usize, usize), Option<String>> = BTreeMap::new();
    for (from, file) in files.iter().enumerate() {
        // The module a path's first segment is relative to: `mod.rs` and
        // `main.rs` own their folder's children.
        let is_folder_root = file.path.ends_with("mod.rs") || file.module.is_empty();
        for (path, why) in named_paths(&file.text) {
            let mut parts: Vec<String> = path.split("::").map(str::to_string).collect();
            let absolute: Vec<String> = match parts[0].as_str() {
                "crate" => parts.split_off(1),
                "self" if is_folder_root => {
                    let mut p = file.module.clone();
                    p.extend(parts.split_off(1));
                    p
                }
                "self" => continue,
                "super" => {
                    // Each leading `super` is one module up: from
                    // `a/b.rs` (module `a::b`) `super::x` names `a::x`.
                    let mut base = file.module.clone();
                    let mut rest = parts.as_slice();
                    while rest.first().is_some_and(|p| p == "super") {
                        rest = &rest[1..];
                        base.pop();
                    }
                    base.extend(rest.iter().cloned());
                    base
                }
                _ => {
                    // A bare path names a child module of this file.
                    let mut child = file.module.clone();
                    child.push(parts[0].clone());
                    if !by_module.contains_key(&child) {
                        continue;
                    }
                    let mut p = file.module.clone();
                    p.extend(parts);
                    p
                }
            };
            let to = resolve(&absolute, &by_module)
                .or_else(|| absolute.first().and_then(|n| root_names.get(n).copied()))
                .or_else(|| by_module.get(&Vec::new()).copied());
            let Some(to) = to else { continue };
            if to == from {
                continue;
            }
            let entry = found.entry((from, to)).or_insert(None);
            if entry.is_none() {
                *entry = why;
            }
        }
    }
    found
        .into_iter()
        .map(|((from, to), why)| Import { from, to, why })
        .collect()
}

/// Tarjan's strongly connected components of the graph (`n` nodes).
fn strongly_connected(n: usize, imports: &[Import]) -> Vec<Vec<usize>> {
    let mut next: Vec<Vec<usize>> = vec![Vec::new(); n];
    for import in imports {
        next[import.from].push(import.to);
    }
    struct State {
        index: Vec<Option<usize>>,
        low: Vec<usize>,
        on_stack: Vec<bool>,
        stack: Vec<usize>,
        counter: usize,
        out: Vec<Vec<usize>>,
    }
    fn visit(v: usize, next: &[Vec<usize>], s: &mut State) {
        s.index[v] = Some(s.counter);
        s.low[v] = s.counter;
        s.counter += 1;
        s.stack.push(v);
        s.on_stack[v] = true;
        for &w in &next[v] {
            match s.index[w] {
                None => {
                    visit(w, next, s);
                    s.low[v] = s.low[v].min(s.low[w]);
                }
                Some(index) if s.on_stack[w] => s.low[v] = s.low[v].min(index),
                Some(_) => {}
            }
        }
        if Some(s.low[v]) == s.index[v] {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack[w] = false;
                component.push(w);
                if w == v {
                    break;
                }
            }
            s.out.push(component);
        }
    }
    let mut state = State {
        index: vec![None; n],
        low: vec![0; n],
        on_stack: vec![false; n],
        stack: Vec::new(),
        counter: 0,
        out: Vec::new(),
    };
    for v in 0..n {
        if state.index[v].is_none() {
            visit(v, &next, &mut state);
        }
    }
    state.out
}

/// `cargo xtask layers`: prints the drawing's figures; fails if a rule is
/// broken.
/// `--imports` lists every import first; `--src DIR` reads another copy
/// of the source (an old commit's, to compare).
pub fn run(args: &[String]) -> Result<(), String> {
    let mut imports = false;
    let mut src = crate::process::repo_root().join(SOURCE);
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--imports" => imports = true,
            "--src" => src = crate::option_value(arg, &mut args)?.into(),
            other => return Err(format!("unknown option `{other}` for layers")),
        }
    }
    let drawing = Drawing::read(&src)?;
    if imports {
        for import in &drawing.imports {
            println!(
                "{} -> {}",
                drawing.files[import.from].path, drawing.files[import.to].path
            );
        }
    }
    judge(&drawing, &src.display().to_string())
}

/// Where the restructuring of issue 24 stands: the widest import circle
/// and the imports pointing back up that the source still has. The `test`
/// step fails if the source gets worse than this (a ratchet: lower these
/// as the circle and the up-imports go, down to [`MAX_CIRCLE`] and
/// [`MAX_UP`]); `cargo xtask layers` itself fails on every broken rule.
pub const RATCHET: Ratchet = Ratchet {
    widest_circle: 2,
    up: 2,
};

/// Ceilings the `test` step holds the source to while the rules are not
/// all met yet.
#[derive(Debug, Clone, Copy)]
pub struct Ratchet {
    /// Widest import circle allowed, in files.
    pub widest_circle: usize,
    /// Most imports that may point back up.
    pub up: usize,
}

impl Drawing {
    /// What makes this drawing worse than `ratchet` (files over
    /// [`MAX_LINES`] are never allowed), one line each.
    pub fn regressions(&self, ratchet: Ratchet) -> Vec<String> {
        let mut out: Vec<String> = self
            .long_files
            .iter()
            .map(|(path, lines)| format!("{path} has {lines} lines (at most {MAX_LINES})"))
            .collect();
        if self.widest_circle > ratchet.widest_circle.max(MAX_CIRCLE) {
            out.push(format!(
                "an import circle of {} files (the ratchet allows {})",
                self.widest_circle, ratchet.widest_circle
            ));
        }
        if self.up.len() > ratchet.up.max(MAX_UP) {
            out.push(format!(
                "{} imports point back up (the ratchet allows {})",
                self.up.len(),
                ratchet.up
            ));
        }
        out
    }
}

/// The `test` step's check: prints the figures of
/// `<root>/examples/kernel/src` and fails if the imports got worse than
/// [`RATCHET`] or any layer rule is broken (the rules hold since the
/// restructuring of issue 24 was finished: every up-import carries its
/// `// layer:` comment).
pub fn check(root: &Path) -> Result<(), String> {
    let drawing = Drawing::read(&root.join(SOURCE))?;
    println!("{SOURCE}: {}", drawing.report());
    let regressions = drawing.regressions(RATCHET);
    if !regressions.is_empty() {
        return Err(format!(
            "{SOURCE} got worse than the layer ratchet:\n  {}",
            regressions.join("\n  ")
        ));
    }
    let violations = drawing.violations();
    if !violations.is_empty() {
        return Err(format!(
            "{SOURCE} breaks {} layer rule(s) (`cargo xtask layers`):\n  {}",
            violations.len(),
            violations.join("\n  ")
        ));
    }
    println!("{SOURCE}: the layer rules hold");
    Ok(())
}

fn judge(drawing: &Drawing, name: &str) -> Result<(), String> {
    println!("{name}: {}", drawing.report());
    let violations = drawing.violations();
    if violations.is_empty() {
        println!("{name}: the layer rules hold");
        Ok(())
    } else {
        Err(format!(
            "{name} breaks {} layer rule(s):\n  {}",
            violations.len(),
            violations.join("\n  ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drawing(files: &[(&str, &str)]) -> Drawing {
        Drawing::new(files.iter().map(|(p, t)| File::new(p, t)).collect())
    }

    fn edges(d: &Drawing) -> Vec<(String, String)> {
        d.imports
            .iter()
            .map(|i| (d.files[i.from].path.clone(), d.files[i.to].path.clone()))
            .collect()
    }

    #[test]
    fn module_paths_follow_files_and_folders() {
        assert_eq!(File::new("main.rs", "").module, Vec::<String>::new());
        assert_eq!(File::new("mm/frames.rs", "").module, ["mm", "frames"]);
        assert_eq!(File::new("selftests/mod.rs", "").module, ["selftests"]);
    }

    #[test]
    fn use_trees_expand_to_every_path() {
        assert_eq!(
            expand_use("crate::{a, b::{c, d::E}, f as g, base::alias}"),
            [
                "crate::a",
                "crate::b::c",
                "crate::b::d::E",
                "crate::f",
                "crate::base::alias"
            ]
        );
    }

    #[test]
    fn comments_and_doc_links_name_nothing_but_the_mark_is_read() {
        let d = drawing(&[
            ("main.rs", "mod a;\nmod b;\n"),
            ("a.rs", "/// See [`crate::b::x`].\nfn f() {} // crate::b\n"),
            ("b.rs", "use crate::a::f; // layer: needs f\n"),
        ]);
        assert_eq!(edges(&d), [("b.rs".to_string(), "a.rs".to_string())]);
        assert_eq!(d.imports[0].why.as_deref(), Some("needs f"));
    }

    #[test]
    fn multi_line_use_code_paths_super_and_root_names_resolve_to_files() {
        let d = drawing(&[
            (
                "main.rs",
                "mod arch;\nmod mm;\npub use mm::frames::Frame;\nfn k() { arch::cpu::halt(); }\n",
            ),
            ("arch/mod.rs", "pub mod cpu;\npub mod serial;\n"),
            ("arch/cpu.rs", "use super::serial;\n"),
            (
                "arch/serial.rs",
                "#[macro_export]\nmacro_rules! println { () => {} }\n",
            ),
            ("mm/mod.rs", "pub mod frames;\n"),
            (
                "mm/frames.rs",
                "use crate::{\n    println,\n    arch::cpu,\n};\nfn f() -> crate::Frame { crate::arch::serial::x() }\n",
            ),
        ]);
        let mut found = edges(&d);
        found.sort();
        let want: Vec<(String, String)> = [
            ("arch/cpu.rs", "arch/serial.rs"),
            ("main.rs", "arch/cpu.rs"),
            ("main.rs", "mm/frames.rs"),
            ("mm/frames.rs", "arch/cpu.rs"),
            ("mm/frames.rs", "arch/serial.rs"),
        ]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        assert_eq!(found, want);
        // `crate::Frame` is mm/frames.rs itself: no self-import.
        assert!(d.violations().is_empty(), "{:?}", d.violations());
    }

    #[test]
    fn long_files_are_reported() {
        let long = "\n".repeat(MAX_LINES + 1);
        let d = drawing(&[("main.rs", ""), ("big.rs", &long)]);
        assert_eq!(d.long_files, [("big.rs".to_string(), MAX_LINES + 1)]);
        assert_eq!(d.violations().len(), 1);
        let ok = "\n".repeat(MAX_LINES);
        assert!(
            drawing(&[("main.rs", ""), ("ok.rs", &ok)])
                .violations()
                .is_empty()
        );
    }

    #[test]
    fn circles_of_two_pass_and_of_three_fail() {
        let two = drawing(&[
            ("main.rs", "mod a;\nmod b;\n"),
            ("a.rs", "use crate::b;\n"),
            ("b.rs", "use crate::a;\n"),
        ]);
        assert_eq!(two.widest_circle, 2);
        assert!(two.violations().is_empty());
        let three = drawing(&[
            ("main.rs", "mod a;\nmod b;\nmod c;\n"),
            ("a.rs", "use crate::b;\n"),
            ("b.rs", "use crate::c;\n"),
            ("c.rs", "use crate::a;\n"),
        ]);
        assert_eq!(three.circles, [["a.rs", "b.rs", "c.rs"]]);
        assert_eq!(three.violations().len(), 1);
    }

    #[test]
    fn up_imports_need_a_mark_and_at_most_three_are_allowed() {
        let unmarked = drawing(&[
            ("main.rs", ""),
            ("arch/idt.rs", "use crate::proc::sched;\n"),
            ("proc/sched.rs", "use crate::arch::idt;\n"),
        ]);
        assert_eq!(unmarked.up.len(), 1);
        assert_eq!(unmarked.violations().len(), 1);
        let marked = drawing(&[
            ("main.rs", ""),
            (
                "arch/idt.rs",
                "use crate::proc::sched; // layer: the timer\n",
            ),
            ("proc/sched.rs", "use crate::arch::idt;\n"),
        ]);
        assert!(marked.violations().is_empty());
        // Same folder is never up; main.rs may import anything.
        let four = drawing(&[
            ("main.rs", "mod arch;\n"),
            (
                "arch/a.rs",
                "use crate::{mm::x, mm::y, proc::z, smp::w}; // layer: test\n",
            ),
            ("mm/x.rs", ""),
            ("mm/y.rs", ""),
            ("proc/z.rs", ""),
            ("smp/w.rs", "use crate::smp::v;\n"),
            ("smp/v.rs", ""),
        ]);
        assert_eq!(four.up.len(), 4);
        assert_eq!(four.violations().len(), 1);
    }

    #[test]
    fn the_ratchet_refuses_what_got_worse_and_long_files() {
        let three = drawing(&[
            ("main.rs", "mod a;\nmod b;\nmod c;\n"),
            ("a.rs", "use crate::b;\n"),
            ("b.rs", "use crate::c;\n"),
            ("c.rs", "use crate::a;\n"),
        ]);
        let loose = Ratchet {
            widest_circle: 3,
            up: 0,
        };
        assert!(three.regressions(loose).is_empty());
        let tight = Ratchet {
            widest_circle: 2,
            up: 0,
        };
        assert_eq!(three.regressions(tight).len(), 1);
        let long = "\n".repeat(MAX_LINES + 1);
        let big = drawing(&[("main.rs", ""), ("big.rs", &long)]);
        assert_eq!(big.regressions(loose).len(), 1);
    }

    #[test]
    fn the_kernel_source_is_readable() {
        let d = Drawing::read(&crate::process::repo_root().join(SOURCE)).unwrap();
        assert!(d.files.len() > 40);
        assert!(d.imports.len() > 100);
        assert!(
            d.regressions(RATCHET).is_empty(),
            "{:?}",
            d.regressions(RATCHET)
        );
        assert!(d.violations().is_empty(), "{:?}", d.violations());
    }
}
