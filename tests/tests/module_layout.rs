//! The workspace's code layout rules, checked over the source files: no import cycles between the
//! modules of any crate at any depth (sibling modules that name each other through `crate::` or
//! `super::` paths, directly or around a loop), a `//!` module doc at the top of every source file,
//! thin command-line files (every file of `experiments/src/cli/` under 300 lines), and no code
//! above `sim` that calls the CPU backend's kernels (`sim::cpu`) instead of a `Backend` op.
//!
//! The import graph is read from the text: a file `src/a/b.rs` (or `src/a/b/mod.rs`) is module
//! `a::b`; a path `crate::x::y::Item` or `super::y` in it is resolved to the deepest module that
//! exists on disk; an edge joins the two sibling modules under their common ancestor. Code after
//! `#[cfg(test)]` (unit-test modules, whose `super` is the file itself) is not read.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const CRATES: [&str; 6] = ["sim", "devices", "ep", "host-gpu", "experiments", "tests"];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = rd.flatten().map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// Module path of a source file relative to `src/` (`a/b.rs`, `a/b/mod.rs` → [a, b]; `lib.rs`,
/// `main.rs` → []).
fn module_of(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .iter()
        .map(|c| c.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().unwrap_or_default();
    let stem = last.trim_end_matches(".rs");
    if !matches!(stem, "mod" | "lib" | "main") {
        parts.push(stem.to_string());
    }
    parts
}

/// Whether module `m` exists under `src` (as `m.rs` or `m/`).
fn exists(src: &Path, m: &[String]) -> bool {
    if m.is_empty() {
        return true;
    }
    let mut p = src.to_path_buf();
    for c in &m[..m.len() - 1] {
        p.push(c);
    }
    let last = &m[m.len() - 1];
    p.join(format!("{last}.rs")).is_file() || p.join(last).is_dir()
}

/// Split `text` at the commas outside braces.
fn split_top(text: &str) -> Vec<&str> {
    let (mut depth, mut start, mut out) = (0i32, 0usize, Vec::new());
    for (i, c) in text.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&text[start..]);
    out
}

/// The paths of one `use` tree `tree` (e.g. `a::{b, c::{d, self}}`) below `prefix`.
fn expand(prefix: &[String], tree: &str, out: &mut Vec<Vec<String>>) {
    let tree = tree.trim();
    if tree.is_empty() {
        return;
    }
    let (head, group) = match tree.find('{') {
        Some(i) => {
            let end = tree.rfind('}').unwrap_or(tree.len());
            (&tree[..i], Some(&tree[i + 1..end]))
        }
        None => (tree, None),
    };
    let mut path = prefix.to_vec();
    for seg in head.split("::") {
        let seg: String = seg
            .trim()
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !seg.is_empty() && seg != "self" {
            path.push(seg);
        }
    }
    match group {
        Some(g) => {
            for item in split_top(g) {
                expand(&path, item, out);
            }
        }
        None => out.push(path),
    }
}

/// The `crate::`/`super::` paths a source text names, `use` groups expanded, comments and
/// unit-test modules removed.
fn paths_in(text: &str) -> Vec<Vec<String>> {
    let code: String = text
        .split("#[cfg(test)]")
        .next()
        .unwrap_or("")
        .lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    let bytes = code.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < code.len() {
        let rest = &code[i..];
        let starts = rest.starts_with("crate::") || rest.starts_with("super::");
        let boundary = i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
        if !(starts && boundary) {
            i += rest.chars().next().map_or(1, char::len_utf8);
            continue;
        }
        // The path: identifiers and `::`, then possibly a balanced `{...}` group.
        let mut j = i;
        let mut depth = 0i32;
        for (k, c) in code[i..].char_indices() {
            let ok = c.is_ascii_alphanumeric() || c == '_' || c == ':' || depth > 0 || c == '{';
            if !ok {
                break;
            }
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                _ => {}
            }
            j = i + k + c.len_utf8();
            if depth == 0 && c == '}' {
                break;
            }
        }
        expand(&[], &code[i..j], &mut out);
        i = j.max(i + 1);
    }
    out
}

/// Resolve a `crate::`/`super::` path named in module `from` to the deepest existing module.
fn resolve(src: &Path, from: &[String], is_mod_file: bool, path: &[String]) -> Option<Vec<String>> {
    let mut base: Vec<String>;
    let mut rest = path;
    match rest.first().map(String::as_str) {
        Some("crate") => {
            base = Vec::new();
            rest = &rest[1..];
        }
        Some("super") => {
            // `super` of a file module `a::b` is `a`; of `a/b/mod.rs` (module a::b) also `a`.
            base = from.to_vec();
            let _ = is_mod_file;
            while rest.first().map(String::as_str) == Some("super") {
                base.pop()?;
                rest = &rest[1..];
            }
        }
        _ => return None,
    }
    for seg in rest {
        if seg == "self" {
            break;
        }
        let mut next = base.clone();
        next.push(seg.clone());
        if exists(src, &next) {
            base = next;
        } else {
            break;
        }
    }
    Some(base)
}

/// Cycles among the sibling modules of each parent module of the crate whose sources are in `src`.
fn cycles(krate: &str, src: &Path) -> Vec<String> {
    let src = src.to_path_buf();
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    // edges[parent][child] = siblings it imports.
    let mut edges: BTreeMap<Vec<String>, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for f in &files {
        let rel = f.strip_prefix(&src).expect("under src");
        let from = module_of(rel);
        let is_mod = rel.file_name().is_some_and(|n| n == "mod.rs");
        let text = std::fs::read_to_string(f).expect("readable source");
        for p in paths_in(&text) {
            let Some(to) = resolve(&src, &from, is_mod, &p) else {
                continue;
            };
            let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
            if common < from.len() && common < to.len() {
                edges
                    .entry(from[..common].to_vec())
                    .or_default()
                    .entry(from[common].clone())
                    .or_default()
                    .insert(to[common].clone());
            }
        }
    }
    let mut found = Vec::new();
    for (parent, g) in &edges {
        // A cycle exists iff some node reaches itself: depth-first search from every node.
        let mut reported: BTreeSet<BTreeSet<String>> = BTreeSet::new();
        for start in g.keys() {
            let mut stack = vec![(start.clone(), vec![start.clone()])];
            let mut seen = BTreeSet::new();
            while let Some((v, trail)) = stack.pop() {
                for w in g.get(&v).into_iter().flatten() {
                    if w == start {
                        let set: BTreeSet<String> = trail.iter().cloned().collect();
                        if reported.insert(set) {
                            let at = if parent.is_empty() {
                                "crate".to_string()
                            } else {
                                parent.join("::")
                            };
                            found
                                .push(format!("{krate} ({at}): {} -> {start}", trail.join(" -> ")));
                        }
                    } else if seen.insert(w.clone()) {
                        let mut t = trail.clone();
                        t.push(w.clone());
                        stack.push((w.clone(), t));
                    }
                }
            }
        }
    }
    found
}

#[test]
fn the_path_reader_sees_groups_and_super() {
    let p = paths_in("use super::{ops::{self}, kinds, Result};\nuse crate::a::b::C; // crate::x\n");
    assert!(p.contains(&vec!["super".to_string(), "kinds".to_string()]));
    assert!(p.contains(&vec!["super".to_string(), "ops".to_string()]));
    assert!(p.contains(&vec![
        "crate".to_string(),
        "a".to_string(),
        "b".to_string(),
        "C".to_string()
    ]));
    assert!(!p.iter().any(|x| x.contains(&"x".to_string())));
}

#[test]
fn the_cycle_finder_finds_a_planted_cycle() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("m")).unwrap();
    std::fs::write(src.join("m/mod.rs"), "//! m\n").unwrap();
    std::fs::write(src.join("m/a.rs"), "//! a\nuse super::b::X;\n").unwrap();
    std::fs::write(src.join("m/b.rs"), "//! b\nuse crate::m::a::Y;\n").unwrap();
    let found = cycles("planted", &src);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].starts_with("planted (m): "), "{found:?}");
    // Without the back edge there is no cycle.
    std::fs::write(src.join("m/b.rs"), "//! b\n").unwrap();
    assert!(cycles("planted", &src).is_empty());
}

#[test]
fn no_import_cycles_in_any_crate() {
    let found: Vec<String> = CRATES
        .iter()
        .flat_map(|c| cycles(c, &root().join(c).join("src")))
        .collect();
    assert!(
        found.is_empty(),
        "modules that import each other in a cycle:\n{}",
        found.join("\n")
    );
}

#[test]
fn every_source_file_has_a_module_doc() {
    let mut missing = Vec::new();
    for c in CRATES {
        for sub in ["src", "tests", "benches", "examples"] {
            let mut files = Vec::new();
            rust_files(&root().join(c).join(sub), &mut files);
            for f in files {
                let text = std::fs::read_to_string(&f).expect("readable source");
                if !text.trim_start().starts_with("//!") {
                    missing.push(f.strip_prefix(root()).unwrap_or(&f).display().to_string());
                }
            }
        }
    }
    assert!(
        missing.is_empty(),
        "files without a //! module doc: {missing:?}"
    );
}

#[test]
fn command_line_files_are_thin() {
    let mut files = Vec::new();
    rust_files(&root().join("experiments/src/cli"), &mut files);
    assert!(
        !files.is_empty(),
        "experiments/src/cli/ holds the command line"
    );
    let fat: Vec<String> = files
        .iter()
        .filter_map(|f| {
            let n = std::fs::read_to_string(f)
                .expect("readable")
                .lines()
                .count();
            (n > 300).then(|| format!("{} ({n} lines)", f.display()))
        })
        .collect();
    assert!(fat.is_empty(), "CLI files over 300 lines: {fat:?}");
}

/// The lines of `text` that name `sim::cpu` in code (not in a comment) before its unit tests.
fn cpu_engine_uses(text: &str) -> Vec<String> {
    text.split("#[cfg(test)]")
        .next()
        .unwrap_or("")
        .lines()
        .filter(|l| {
            let code = l.split("//").next().unwrap_or("");
            code.contains("sim::cpu")
        })
        .map(|l| l.trim().to_string())
        .collect()
}

#[test]
fn the_crates_above_sim_reach_the_engine_only_through_the_backend() {
    // The reader sees a use and skips comments and unit tests.
    assert_eq!(
        cpu_engine_uses("use sim::cpu::analog;\n// sim::cpu in a comment\n#[cfg(test)]\nsim::cpu"),
        ["use sim::cpu::analog;"]
    );
    let mut found = Vec::new();
    for c in ["devices", "ep", "host-gpu", "experiments"] {
        let mut files = Vec::new();
        rust_files(&root().join(c).join("src"), &mut files);
        for f in files {
            let text = std::fs::read_to_string(&f).expect("readable source");
            for l in cpu_engine_uses(&text) {
                found.push(format!(
                    "{}: {l}",
                    f.strip_prefix(root()).unwrap_or(&f).display()
                ));
            }
        }
    }
    assert!(
        found.is_empty(),
        "code above sim that calls the CPU backend's kernels directly (use a `Backend` op):\n{}",
        found.join("\n")
    );
}
