//! The layering ARCHITECTURE.md states ("Layering"), checked from the source and from Cargo:
//!
//! - the delivery core (`crates/core`) depends on no runtime, HTTP, clock or system crate, and
//!   the emulator (`crates/emulator`) on nothing of the product;
//! - the library's top-level modules form the layers listed in [`LAYERS`]: a module uses only
//!   modules of lower layers (a `crate::<module>` path anywhere in its code outside `#[cfg(test)]`
//!   modules; a planted back-edge fails [`the_modules_keep_their_layers`]);
//! - no file imports, through any chain, a file that imports it back (files as nodes, `crate::`,
//!   `super::` and `self::` paths as edges; a module's own submodules, named without a prefix,
//!   are part of it).
//!
//! Hand-written rather than a crate: what is checked is a few path patterns in this
//! repository's own code, which a token scan finds; a full Rust parser would add a dependency
//! and minutes of build for nothing it would find here.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The library's top-level modules, lowest layer first. A module may use the modules of the
/// layers before its own, never one of its own layer or a later one.
const LAYERS: &[&[&str]] = &[
    &["text", "error", "exit", "hash"],
    &["inbox"],
    &["state"],
    &["config"],
    &["notion"],
    &["record", "audit", "tenants", "serve"],
    &["discover"],
    &["connect"],
    &["daemon"],
    &["commands", "logging"],
    &["cli"],
];

/// Crates the core must never depend on: it does no I/O and reads no clock.
const NOT_IN_CORE: &[&str] = &[
    "tokio",
    "reqwest",
    "hyper",
    "axum",
    "chrono",
    "governor",
    "libc",
    "getrandom",
    "mio",
    "notion-inbox",
    "notion-emulator",
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The packages `package` depends on (normal dependencies, transitively), by name.
fn dependencies(package: &str) -> BTreeSet<String> {
    let out = std::process::Command::new(env!("CARGO"))
        .current_dir(root())
        .args(["tree", "--offline", "-e", "normal", "--prefix", "none"])
        .args(["--format", "{p}", "-p", package])
        .output()
        .expect("cargo tree runs");
    assert!(
        out.status.success(),
        "cargo tree -p {package} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect()
}

#[test]
fn the_core_depends_on_no_runtime_http_clock_or_system_crate() {
    let deps = dependencies("notion-inbox-core");
    assert!(deps.contains("serde"), "cargo tree was read: {deps:?}");
    let found: Vec<&&str> = NOT_IN_CORE.iter().filter(|c| deps.contains(**c)).collect();
    assert!(found.is_empty(), "the core depends on {found:?}");
}

#[test]
fn the_emulator_depends_on_nothing_of_the_product() {
    let deps = dependencies("notion-emulator");
    assert!(deps.contains("axum"), "cargo tree was read: {deps:?}");
    for product in ["notion-inbox", "notion-inbox-core"] {
        assert!(!deps.contains(product), "the emulator depends on {product}");
    }
}

/// One `.rs` file of a crate: its module path and its code outside `#[cfg(test)]` modules,
/// without comments.
struct SourceFile {
    path: PathBuf,
    module: Vec<String>,
    code: String,
}

fn source_files(src: &Path) -> Vec<SourceFile> {
    let mut out = Vec::new();
    let mut dirs = vec![src.to_owned()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") && !path.ends_with("main.rs") {
                let rel = path.strip_prefix(src).unwrap().with_extension("");
                let mut module: Vec<String> = rel
                    .iter()
                    .map(|s| s.to_string_lossy().into_owned())
                    .collect();
                if matches!(module.last().map(String::as_str), Some("mod" | "lib")) {
                    module.pop();
                }
                let text = std::fs::read_to_string(&path).unwrap();
                out.push(SourceFile {
                    path,
                    module,
                    code: without_tests_and_comments(&text),
                });
            }
        }
    }
    out
}

/// The text without `//` comments and without what follows a `#[cfg(test)]` (test modules close
/// every file here).
fn without_tests_and_comments(text: &str) -> String {
    let end = text.find("#[cfg(test)]").unwrap_or(text.len());
    text[..end]
        .lines()
        .map(|l| match l.find("//") {
            // `//` inside a string ("http://") is kept: only a comment that starts a line's
            // code, or follows code after a space, is cut.
            Some(i) if l[..i].trim().is_empty() || l[..i].ends_with(' ') => &l[..i],
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every path of `code` that starts with `crate::`, `super::` or `self::`, as segments from the
/// crate's root (`use a::{b, c::d}` groups expanded to one path per item).
fn paths(file: &SourceFile) -> Vec<Vec<String>> {
    let code = file.code.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < code.len() {
        if !file.code.is_char_boundary(i) {
            i += 1;
            continue;
        }
        let starts_word = i == 0 || !(code[i - 1].is_ascii_alphanumeric() || code[i - 1] == b'_');
        let rest = &file.code[i..];
        let base = if !starts_word {
            None
        } else if rest.starts_with("crate::") {
            Some((Vec::new(), "crate::".len()))
        } else if rest.starts_with("super::") || rest.starts_with("self::") {
            let mut base = file.module.clone();
            let mut at = 0;
            if rest.starts_with("self::") {
                at = "self::".len();
            }
            while file.code[i + at..].starts_with("super::") {
                base.pop();
                at += "super::".len();
            }
            Some((base, at))
        } else {
            None
        };
        let Some((base, at)) = base else {
            i += 1;
            continue;
        };
        let (found, used) = path_at(&file.code[i + at..], base);
        out.extend(found);
        i += at + used.max(1);
    }
    out
}

/// The paths written at the start of `text` after `base::` (one, or one per item of a group),
/// and how many bytes they took.
fn path_at(text: &str, base: Vec<String>) -> (Vec<Vec<String>>, usize) {
    let mut segs = base;
    let mut at = 0;
    loop {
        let ident: String = text[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if ident.is_empty() {
            break;
        }
        at += ident.len();
        segs.push(ident);
        if !text[at..].starts_with("::") {
            break;
        }
        at += 2;
    }
    if !text[at..].starts_with('{') {
        return (vec![segs], at);
    }
    // A group: split at the commas of this level, each item a path below `segs`.
    let mut depth = 0;
    let mut items = Vec::new();
    let mut start = at + 1;
    let mut end = at;
    for (j, c) in text[at..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    items.push(&text[start..at + j]);
                    end = at + j + 1;
                    break;
                }
            }
            ',' if depth == 1 => {
                items.push(&text[start..at + j]);
                start = at + j + 1;
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    for item in items {
        let item = item.trim();
        if item.is_empty() || item == "self" {
            out.push(segs.clone());
            continue;
        }
        out.extend(path_at(item, segs.clone()).0);
    }
    (out, end)
}

/// The file a path names: the longest prefix of it that is a module of the crate.
fn resolve<'a>(modules: &'a BTreeMap<Vec<String>, PathBuf>, path: &[String]) -> Option<&'a Path> {
    (0..=path.len())
        .rev()
        .find_map(|n| modules.get(&path[..n]))
        .map(PathBuf::as_path)
}

/// For every crate's source directory, each file's edges to the other files of its crate.
fn file_graph(sources: &[PathBuf]) -> BTreeMap<PathBuf, BTreeSet<PathBuf>> {
    let mut graph = BTreeMap::new();
    for src in sources {
        let files = source_files(src);
        let modules: BTreeMap<Vec<String>, PathBuf> = files
            .iter()
            .map(|f| (f.module.clone(), f.path.clone()))
            .collect();
        for f in &files {
            let edges: BTreeSet<PathBuf> = paths(f)
                .iter()
                .filter_map(|p| resolve(&modules, p))
                .filter(|t| *t != f.path)
                .map(Path::to_owned)
                .collect();
            graph.insert(f.path.clone(), edges);
        }
    }
    graph
}

/// A cycle of `graph`, if it has one (depth-first search, colouring nodes).
fn a_cycle(graph: &BTreeMap<PathBuf, BTreeSet<PathBuf>>) -> Option<Vec<PathBuf>> {
    fn visit(
        node: &PathBuf,
        graph: &BTreeMap<PathBuf, BTreeSet<PathBuf>>,
        done: &mut BTreeSet<PathBuf>,
        stack: &mut Vec<PathBuf>,
    ) -> Option<Vec<PathBuf>> {
        if let Some(i) = stack.iter().position(|n| n == node) {
            return Some(stack[i..].to_vec());
        }
        if done.contains(node) {
            return None;
        }
        stack.push(node.clone());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, done, stack) {
                return Some(cycle);
            }
        }
        stack.pop();
        done.insert(node.clone());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|n| visit(n, graph, &mut done, &mut Vec::new()))
}

#[test]
fn no_file_imports_a_file_that_imports_it_back() {
    let sources = ["src", "crates/core/src", "crates/emulator/src"].map(|s| root().join(s));
    let graph = file_graph(&sources);
    let edges: usize = graph.values().map(BTreeSet::len).sum();
    assert!(
        graph.len() > 100 && edges > 200,
        "the source was read: {} files, {edges} edges",
        graph.len()
    );
    if let Some(cycle) = a_cycle(&graph) {
        let names: Vec<String> = cycle
            .iter()
            .map(|p| p.strip_prefix(root()).unwrap().display().to_string())
            .collect();
        panic!("an import cycle: {}", names.join(" -> "));
    }
}

/// The layer of each top-level module of the library.
fn layer_of() -> BTreeMap<&'static str, usize> {
    LAYERS
        .iter()
        .enumerate()
        .flat_map(|(i, names)| names.iter().map(move |n| (*n, i)))
        .collect()
}

/// The uses of `src/` that break [`LAYERS`]: (file, the module it is in, the module it uses).
fn layer_breaks(src: &Path) -> Vec<(PathBuf, String, String)> {
    let layers = layer_of();
    let mut breaks = Vec::new();
    for f in source_files(src) {
        let Some(top) = f.module.first() else {
            continue; // lib.rs declares the modules
        };
        let mine = *layers
            .get(top.as_str())
            .unwrap_or_else(|| panic!("module {top} is in no layer of LAYERS"));
        for p in paths(&f) {
            let Some(used) = p.first() else { continue };
            if used == top {
                continue;
            }
            match layers.get(used.as_str()) {
                Some(theirs) if *theirs < mine => {}
                _ => breaks.push((f.path.clone(), top.clone(), used.clone())),
            }
        }
    }
    breaks
}

#[test]
fn the_modules_keep_their_layers() {
    let breaks = layer_breaks(&root().join("src"));
    assert!(breaks.is_empty(), "uses against the layers: {breaks:#?}");
}

/// The checks can fail: a back-edge planted in a copy of the source is found by both.
#[test]
fn a_planted_back_edge_is_found() {
    let copy = tempfile::tempdir().unwrap();
    let src = copy.path().join("src");
    for f in source_files(&root().join("src")) {
        let rel = f.path.strip_prefix(root().join("src")).unwrap();
        std::fs::create_dir_all(src.join(rel).parent().unwrap()).unwrap();
        std::fs::copy(&f.path, src.join(rel)).unwrap();
    }
    assert!(layer_breaks(&src).is_empty());
    assert_eq!(a_cycle(&file_graph(std::slice::from_ref(&src))), None);
    // The bottom layer's `text` starts using the daemon's health, which uses `text`.
    let planted = src.join("text.rs");
    let mut text = std::fs::read_to_string(&planted).unwrap();
    text.insert_str(0, "use crate::daemon::health::TargetState;\n");
    std::fs::write(&planted, text).unwrap();
    let breaks = layer_breaks(&src);
    assert_eq!(breaks.len(), 1, "{breaks:#?}");
    assert_eq!(
        (breaks[0].1.as_str(), breaks[0].2.as_str()),
        ("text", "daemon")
    );
    let cycle = a_cycle(&file_graph(std::slice::from_ref(&src))).expect("the cycle is found");
    let mut names: Vec<String> = cycle
        .iter()
        .map(|p| p.strip_prefix(&src).unwrap().display().to_string())
        .collect();
    names.sort();
    assert_eq!(names, ["daemon/health.rs", "text.rs"]);
}

#[test]
fn paths_are_read_from_groups_and_relative_prefixes() {
    let file = SourceFile {
        path: PathBuf::from("src/daemon/target.rs"),
        module: vec!["daemon".into(), "target".into()],
        code: "use crate::{inbox::Tailer, state::{Commit, layout}};\nuse super::health::X;\nlet u = \"http://x\"; crate::text::label(a);".into(),
    };
    let found: Vec<String> = paths(&file).iter().map(|p| p.join("::")).collect();
    assert_eq!(
        found,
        [
            "inbox::Tailer",
            "state::Commit",
            "state::layout",
            "daemon::health::X",
            "text::label"
        ]
    );
}
