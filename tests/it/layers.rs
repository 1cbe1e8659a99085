//! The architecture as a test (docs/architecture.md): every `crate::` and
//! `super::` path in `src/` is read, each file's imports are resolved to the
//! files they name, and the test fails on an import cycle between files or
//! on an import from a lower layer to a higher one. Tests inside a module
//! (`#[cfg(test)] mod tests`) are left out: they may reach anywhere.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers, top first. A file may import files of its own layer's folder
/// and of any layer below; never one above, never a sibling folder's.
const LAYERS: &[(&str, &str)] = &[
    (
        "main",
        "the binary: parses the command line, calls one command",
    ),
    (
        "cli",
        "the command-line clients: check, diff, status, fleet, demo",
    ),
    (
        "serve",
        "the serving tasks: start, proxy, admin, probe, gate task, comparisons",
    ),
    (
        "state",
        "what outlives a read: live snapshot, route state, metrics, logs, reload",
    ),
    (
        "net",
        "networking: consumer connections, upstream clients, header rules",
    ),
    (
        "decide",
        "pure per-read decisions: routing, sequences, fallback, freshness, comparison",
    ),
    ("config", "the config file: raw types, compile, watch"),
];

/// The layer of a module path (`["serve", "proxy"]`): its first segment;
/// `lib` (the crate root, which only declares modules) is outside them.
fn layer(module: &[String]) -> Option<usize> {
    let first = module.first()?;
    LAYERS.iter().position(|(name, _)| name == first)
}

#[test]
fn imports_point_down_and_never_in_a_circle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let files = modules(&src);
    assert!(files.len() > 20, "found only {} source files", files.len());
    let known: BTreeSet<Vec<String>> = files.keys().cloned().collect();
    let mut edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    let mut wrong = Vec::new();
    for (module, path) in &files {
        let text = std::fs::read_to_string(path).expect("read source");
        let code = without_tests(&text);
        for target in imports(module, &code) {
            let Some(to) = resolve(&known, &target) else {
                continue;
            };
            if &to == module {
                continue;
            }
            edges.entry(module.clone()).or_default().insert(to.clone());
        }
    }
    for (from, tos) in &edges {
        for to in tos {
            if let Some(why) = climbs(from, to) {
                wrong.push(format!(
                    "{} imports {}: {why}",
                    files[from].display(),
                    files[to].display()
                ));
            }
        }
    }
    let cycles = cycles(&edges);
    for c in &cycles {
        let names: Vec<String> = c.iter().map(|m| m.join("::")).collect();
        wrong.push(format!("import cycle: {}", names.join(" -> ")));
    }
    assert!(
        wrong.is_empty(),
        "{} layering problem(s):\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

/// Why an import from `from` to `to` breaks the layering, if it does.
fn climbs(from: &[String], to: &[String]) -> Option<String> {
    if from.first().map(String::as_str) == Some("lib") || to.is_empty() {
        return None;
    }
    if to.first().map(String::as_str) == Some("lib") {
        return Some("the crate root declares modules and is imported by none".into());
    }
    let (Some(a), Some(b)) = (layer(from), layer(to)) else {
        return Some(format!(
            "{} is in no layer (tests/it/layers.rs LAYERS)",
            if layer(from).is_none() {
                from.join("::")
            } else {
                to.join("::")
            }
        ));
    };
    if a > b {
        return Some(format!(
            "layer `{}` is below `{}`",
            LAYERS[a].0, LAYERS[b].0
        ));
    }
    None
}

/// Every `.rs` file under `src`, by module path (`src/serve/proxy/error.rs`
/// is `["serve", "proxy", "error"]`; `mod.rs` and `lib.rs`/`main.rs` as
/// their folder or the crate).
fn modules(src: &Path) -> BTreeMap<Vec<String>, PathBuf> {
    let mut out = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read src dir") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().and_then(|e| e.to_str()) != Some("rs") {
                continue;
            }
            let rel = path.strip_prefix(src).expect("under src");
            let mut parts: Vec<String> = rel
                .iter()
                .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_owned())
                .collect();
            if parts.last().map(String::as_str) == Some("mod") {
                parts.pop();
            }
            out.insert(parts, path);
        }
    }
    out
}

/// The file's text without its `#[cfg(test)] mod tests` (kept at the end of
/// a file, by the house's convention) and without `//` comments.
fn without_tests(text: &str) -> String {
    let end = text.find("#[cfg(test)]\nmod tests").unwrap_or(text.len());
    text[..end]
        .lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The module paths a file names: every `crate::a::b`, `self::c` and `super::d`,
/// with `use` groups (`crate::{a::b, c}`) expanded.
fn imports(module: &[String], code: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let bytes = code.as_bytes();
    let mut i = 0;
    while i < code.len() {
        let rest = &bytes[i..];
        let boundary = i == 0 || !is_ident(bytes[i - 1]) && bytes[i - 1] != b':';
        let (base, skip) = if boundary && rest.starts_with(b"crate::") {
            (Vec::new(), "crate::".len())
        } else if boundary && rest.starts_with(b"self::") {
            (module.to_vec(), "self::".len())
        } else if boundary && rest.starts_with(b"super::") {
            // `super` of a file module is its parent; of `mod.rs` too
            // (module paths already drop the `mod`).
            let mut b = module.to_vec();
            b.pop();
            let mut j = i + "super::".len();
            while bytes[j..].starts_with(b"super::") {
                b.pop();
                j += "super::".len();
            }
            (b, j - i)
        } else {
            i += 1;
            continue;
        };
        let (paths, used) = path_tree(&code[i + skip..]);
        for p in paths {
            let mut full = base.clone();
            full.extend(p);
            out.push(full);
        }
        i += skip + used.max(1);
    }
    out
}

/// Parses `a::b::{c, d::e}` at the start of `s`: the paths it names and the
/// bytes it took.
fn path_tree(s: &str) -> (Vec<Vec<String>>, usize) {
    let bytes = s.as_bytes();
    let mut i = 0;
    let mut prefix = Vec::new();
    loop {
        let start = i;
        while i < bytes.len() && is_ident(bytes[i]) {
            i += 1;
        }
        if i > start {
            prefix.push(s[start..i].to_owned());
        }
        let group = if s[i..].starts_with("::{") {
            Some(3)
        } else if i == 0 && s.starts_with('{') {
            Some(1)
        } else {
            None
        };
        if let Some(open) = group {
            i += open;
            let mut paths = Vec::new();
            loop {
                while i < bytes.len() && (bytes[i].is_ascii_whitespace() || bytes[i] == b',') {
                    i += 1;
                }
                if i >= bytes.len() || bytes[i] == b'}' {
                    i += 1;
                    break;
                }
                let (inner, used) = path_tree(&s[i..]);
                for p in inner {
                    let mut full = prefix.clone();
                    full.extend(p);
                    paths.push(full);
                }
                i += used.max(1);
            }
            return (paths, i);
        }
        if s[i..].starts_with("::") {
            i += 2;
            continue;
        }
        return (vec![prefix], i);
    }
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// The file a path names: its longest prefix that is a module.
fn resolve(known: &BTreeSet<Vec<String>>, path: &[String]) -> Option<Vec<String>> {
    (1..=path.len())
        .rev()
        .map(|n| path[..n].to_vec())
        .find(|p| known.contains(p))
}

/// Every cycle of files (strongly connected components of more than one).
fn cycles(edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>) -> Vec<Vec<Vec<String>>> {
    // Tarjan's algorithm, iterative enough for a few dozen files.
    struct Walk<'a> {
        edges: &'a BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        index: BTreeMap<Vec<String>, usize>,
        low: BTreeMap<Vec<String>, usize>,
        stack: Vec<Vec<String>>,
        on_stack: BTreeSet<Vec<String>>,
        next: usize,
        found: Vec<Vec<Vec<String>>>,
    }
    fn visit(w: &mut Walk<'_>, v: &Vec<String>) {
        w.index.insert(v.clone(), w.next);
        w.low.insert(v.clone(), w.next);
        w.next += 1;
        w.stack.push(v.clone());
        w.on_stack.insert(v.clone());
        let tos: Vec<Vec<String>> = w.edges.get(v).into_iter().flatten().cloned().collect();
        for to in &tos {
            if !w.index.contains_key(to) {
                visit(w, to);
                let l = w.low[v].min(w.low[to]);
                w.low.insert(v.clone(), l);
            } else if w.on_stack.contains(to) {
                let l = w.low[v].min(w.index[to]);
                w.low.insert(v.clone(), l);
            }
        }
        if w.low[v] == w.index[v] {
            let mut scc = Vec::new();
            while let Some(x) = w.stack.pop() {
                w.on_stack.remove(&x);
                let done = &x == v;
                scc.push(x);
                if done {
                    break;
                }
            }
            if scc.len() > 1 {
                w.found.push(scc);
            }
        }
    }
    let mut w = Walk {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        next: 0,
        found: Vec::new(),
    };
    let nodes: Vec<Vec<String>> = edges.keys().cloned().collect();
    for v in &nodes {
        if !w.index.contains_key(v) {
            visit(&mut w, v);
        }
    }
    w.found
}

#[test]
fn the_reader_finds_use_groups_and_super_paths() {
    let module = vec!["serve".to_owned(), "proxy".to_owned(), "error".to_owned()];
    let code = "use crate::{state::live::{LiveRoute, Snapshot}, net::headers};\nuse super::ERROR;\nlet x = crate::decide::routing::rewrite(a);";
    let got = imports(&module, code);
    let want: Vec<Vec<String>> = [
        vec!["state", "live", "LiveRoute"],
        vec!["state", "live", "Snapshot"],
        vec!["net", "headers"],
        vec!["serve", "proxy", "ERROR"],
        vec!["decide", "routing", "rewrite"],
    ]
    .iter()
    .map(|p| p.iter().map(|s| (*s).to_owned()).collect())
    .collect();
    assert_eq!(got, want);
    let mut edges = BTreeMap::new();
    let a = vec!["a".to_owned()];
    let b = vec!["b".to_owned()];
    edges.insert(a.clone(), BTreeSet::from([b.clone()]));
    edges.insert(b.clone(), BTreeSet::from([a.clone()]));
    assert_eq!(cycles(&edges).len(), 1);
    assert!(climbs(&["decide".into()], &["serve".into()]).is_some());
    assert!(climbs(&["serve".into()], &["decide".into()]).is_none());
}
