//! The docs ship with the code: every relative link in every markdown file
//! of the repository resolves (to a file, and to a heading when it names
//! one), and nothing points outside the repository. A clone has no
//! `../shared`, so a link or a command there is one a reader cannot follow.
//!
//! std only: a line-based reading of markdown that is enough for links,
//! inline code, fenced blocks and headings as this repository writes them.

use std::collections::HashSet;
use std::fs;
use std::path::{Component, Path, PathBuf};

/// Directories never walked: build output and git's own.
const SKIP_DIRS: &[&str] = &["target", ".git"];

/// The front door's budget, from issue 19.
const README_MAX_LINES: usize = 200;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every `*.md` under `dir`, sorted, skipping [`SKIP_DIRS`].
fn markdown_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries = fs::read_dir(&dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display()));
        for entry in entries {
            let entry = entry.expect("directory entry");
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let kind = entry.file_type().expect("file type");
            if kind.is_dir() {
                if !SKIP_DIRS.contains(&name.as_ref()) {
                    pending.push(path);
                }
            } else if name.ends_with(".md") {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

/// What one markdown file holds that the checks look at.
#[derive(Default)]
struct Parsed {
    /// `(line, destination)` of every inline link, image and reference
    /// definition outside code.
    links: Vec<(usize, String)>,
    /// `(line, word)` of every word inside inline code or a fenced block.
    code_words: Vec<(usize, String)>,
    /// The anchors its headings (and `<a id>`/`<a name>`) define.
    anchors: HashSet<String>,
}

fn parse(text: &str) -> Parsed {
    let mut parsed = Parsed::default();
    let mut slugs_seen: Vec<String> = Vec::new();
    let mut add_heading = |parsed: &mut Parsed, heading: &str| {
        let base = slug(heading);
        // GitHub numbers repeated headings: `x`, `x-1`, `x-2`.
        let count = slugs_seen.iter().filter(|s| **s == base).count();
        slugs_seen.push(base.clone());
        let anchor = if count == 0 {
            base
        } else {
            format!("{base}-{count}")
        };
        parsed.anchors.insert(anchor);
    };
    let mut fence: Option<String> = None;
    let mut previous_prose: Option<String> = None;
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        if let Some(open) = &fence {
            let close = trimmed.trim_end();
            let fence_char = open.chars().next().unwrap_or('`');
            if indent <= 3 && close.len() >= open.len() && close.chars().all(|c| c == fence_char) {
                fence = None;
            } else {
                parsed
                    .code_words
                    .extend(words(line).map(|w| (number, w.to_owned())));
            }
            previous_prose = None;
            continue;
        }
        if indent <= 3 && (trimmed.starts_with("```") || trimmed.starts_with("~~~")) {
            let fence_char = trimmed.chars().next().unwrap_or('`');
            let marker: String = trimmed.chars().take_while(|c| *c == fence_char).collect();
            fence = Some(marker);
            previous_prose = None;
            continue;
        }
        let (masked, code) = mask_code_spans(line);
        for span in code {
            parsed
                .code_words
                .extend(words(&span).map(|w| (number, w.to_owned())));
        }
        for name in html_anchors(&masked) {
            parsed.anchors.insert(name);
        }
        if let Some(heading) = atx_heading(line) {
            add_heading(&mut parsed, &heading);
            previous_prose = None;
        } else if let Some(prose) = previous_prose.take().filter(|_| is_setext_underline(line)) {
            add_heading(&mut parsed, &prose);
        } else if !trimmed.is_empty()
            && indent <= 3
            && !trimmed.starts_with(['|', '-', '*', '>', '<'])
        {
            previous_prose = Some(trimmed.to_owned());
        } else {
            previous_prose = None;
        }
        if let Some(target) = reference_definition(&masked) {
            parsed.links.push((number, target));
        }
        parsed
            .links
            .extend(inline_links(line, &masked).into_iter().map(|t| (number, t)));
    }
    parsed
}

/// Words of code text, split where a path cannot continue.
fn words(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| c.is_whitespace() || "\"'`()[]{}<>=,;|".contains(c))
        .filter(|w| !w.is_empty())
}

/// `line` with every inline code span blanked (same byte length, so offsets
/// still match `line`), and the spans' contents.
fn mask_code_spans(line: &str) -> (String, Vec<String>) {
    let bytes = line.as_bytes();
    let mut masked = line.as_bytes().to_vec();
    let mut spans = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'`' {
            i += 1;
            continue;
        }
        let run = bytes[i..].iter().take_while(|b| **b == b'`').count();
        let open_end = i + run;
        // The closing run is the next run of exactly the same length.
        let mut j = open_end;
        let mut close = None;
        while j < bytes.len() {
            if bytes[j] == b'`' {
                let len = bytes[j..].iter().take_while(|b| **b == b'`').count();
                if len == run {
                    close = Some(j);
                    break;
                }
                j += len;
            } else {
                j += 1;
            }
        }
        match close {
            Some(j) => {
                spans.push(line[open_end..j].to_owned());
                for b in &mut masked[i..j + run] {
                    *b = b' ';
                }
                i = j + run;
            }
            None => i = open_end,
        }
    }
    let masked = String::from_utf8(masked).expect("only ASCII bytes were replaced");
    (masked, spans)
}

/// The destinations of `[text](destination)` and `![alt](destination)` on
/// one line; `masked` (code spans blanked) says where they are.
fn inline_links(line: &str, masked: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(at) = masked[from..].find("](") {
        let start = from + at + 2;
        let rest = &line[start..];
        let destination = if let Some(inner) = rest.strip_prefix('<') {
            inner.split('>').next().unwrap_or("").to_owned()
        } else {
            // Up to the parenthesis that closes the link, or a title.
            let mut depth = 0usize;
            let mut end = rest.len();
            for (k, c) in rest.char_indices() {
                match c {
                    '(' => depth += 1,
                    ')' if depth == 0 => {
                        end = k;
                        break;
                    }
                    ')' => depth -= 1,
                    c if c.is_whitespace() => {
                        end = k;
                        break;
                    }
                    _ => {}
                }
            }
            rest[..end].to_owned()
        };
        found.push(destination);
        from = start;
    }
    found
}

/// `[label]: destination` at the start of a line.
fn reference_definition(masked: &str) -> Option<String> {
    let trimmed = masked.trim_start();
    if masked.len() - trimmed.len() > 3 || !trimmed.starts_with('[') {
        return None;
    }
    let close = trimmed.find("]:")?;
    if trimmed[1..close].contains(']') {
        return None;
    }
    let destination = trimmed[close + 2..].split_whitespace().next()?;
    Some(
        destination
            .trim_start_matches('<')
            .trim_end_matches('>')
            .to_owned(),
    )
}

/// The text of an ATX heading (`## Text ##`).
fn atx_heading(line: &str) -> Option<String> {
    let trimmed = line.trim_start();
    if line.len() - trimmed.len() > 3 {
        return None;
    }
    let level = trimmed.chars().take_while(|c| *c == '#').count();
    if !(1..=6).contains(&level) {
        return None;
    }
    let rest = &trimmed[level..];
    if !(rest.is_empty() || rest.starts_with([' ', '\t'])) {
        return None;
    }
    Some(rest.trim().trim_end_matches('#').trim_end().to_owned())
}

fn is_setext_underline(line: &str) -> bool {
    let t = line.trim();
    !t.is_empty() && (t.chars().all(|c| c == '=') || (t.len() >= 2 && t.chars().all(|c| c == '-')))
}

/// `<a id="x">` and `<a name="x">` anchors.
fn html_anchors(masked: &str) -> Vec<String> {
    let mut found = Vec::new();
    for attr in ["id=\"", "name=\""] {
        let mut from = 0;
        while let Some(at) = masked[from..].find(attr) {
            let start = from + at + attr.len();
            if let Some(len) = masked[start..].find('"') {
                found.push(masked[start..start + len].to_owned());
            }
            from = start;
        }
    }
    found
}

/// A heading's anchor as GitHub makes it: the rendered text, lower case,
/// punctuation dropped, each space a hyphen.
fn slug(heading: &str) -> String {
    let text = strip_inline_markup(heading);
    text.to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == '_' || *c == '-' || *c == ' ')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// `[text](url)` becomes `text`; backticks and `*` go.
fn strip_inline_markup(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(open) = rest.find('[') {
        let Some(mid) = rest[open..].find("](") else {
            break;
        };
        let Some(close) = rest[open + mid..].find(')') else {
            break;
        };
        out.push_str(&rest[..open]);
        out.push_str(&rest[open + 1..open + mid]);
        rest = &rest[open + mid + close + 1..];
    }
    out.push_str(rest);
    out.replace(['`', '*'], "")
}

/// `path` with `.` and `..` resolved lexically; `None` when it climbs above
/// `root`.
fn normalize(root: &Path, path: &Path) -> Option<PathBuf> {
    let relative = path.strip_prefix(root).ok()?;
    let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
    for component in relative.components() {
        match component {
            Component::Normal(part) => parts.push(part),
            Component::CurDir => {}
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(
        parts
            .iter()
            .fold(root.to_path_buf(), |p, part| p.join(part)),
    )
}

fn is_external(destination: &str) -> bool {
    ["http://", "https://", "mailto:"]
        .iter()
        .any(|scheme| destination.starts_with(scheme))
}

/// A scheme other than the web's (`file:`, `ftp:`...): never inside the
/// repository.
fn has_other_scheme(destination: &str) -> bool {
    match destination.split_once(':') {
        Some((scheme, _)) => {
            !scheme.is_empty()
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
                && !scheme.contains('/')
        }
        None => false,
    }
}

/// Every problem in the markdown files under `root`, as `FILE:LINE: what`.
fn problems(root: &Path) -> Vec<String> {
    let root = root.canonicalize().expect("repository root");
    let mut found = Vec::new();
    let mut anchors_of = std::collections::HashMap::<PathBuf, HashSet<String>>::new();
    let mut anchors = |path: &Path| -> HashSet<String> {
        anchors_of
            .entry(path.to_path_buf())
            .or_insert_with(|| parse(&fs::read_to_string(path).unwrap_or_default()).anchors)
            .clone()
    };
    for file in markdown_files(&root) {
        let text =
            fs::read_to_string(&file).unwrap_or_else(|e| panic!("read {}: {e}", file.display()));
        let shown = file
            .strip_prefix(&root)
            .expect("under root")
            .display()
            .to_string();
        let dir = file.parent().expect("a file has a directory");
        let parsed = parse(&text);
        for (line, destination) in &parsed.links {
            let report = |why: &str| format!("{shown}:{line}: {destination} ({why})");
            if is_external(destination) {
                continue;
            }
            if destination.contains("../shared") {
                found.push(report("../shared is not in a clone"));
                continue;
            }
            if has_other_scheme(destination) {
                found.push(report("points outside the repository"));
                continue;
            }
            let (path, anchor) = match destination.split_once('#') {
                Some((path, anchor)) => (path, Some(anchor)),
                None => (destination.as_str(), None),
            };
            let target = if path.is_empty() {
                file.clone()
            } else if let Some(from_root) = path.strip_prefix('/') {
                root.join(from_root)
            } else {
                dir.join(path)
            };
            let Some(target) = normalize(&root, &target) else {
                found.push(report("points outside the repository"));
                continue;
            };
            if !target.exists() {
                found.push(report("no such file"));
                continue;
            }
            let is_markdown = target.extension().is_some_and(|e| e == "md");
            if let Some(anchor) = anchor.filter(|_| is_markdown)
                && !anchors(&target).contains(anchor)
            {
                found.push(report("no such heading"));
            }
        }
        for (line, word) in &parsed.code_words {
            let report = |why: &str| format!("{shown}:{line}: {word} ({why})");
            if word.contains("../shared") {
                found.push(report("../shared is not in a clone"));
            } else if word.starts_with("../") && normalize(&root, &dir.join(word)).is_none() {
                found.push(report("points outside the repository"));
            }
        }
    }
    found
}

#[test]
fn every_markdown_link_resolves_inside_the_repository() {
    let found = problems(&repo_root());
    assert!(
        found.is_empty(),
        "{} broken link(s):\n{}",
        found.len(),
        found.join("\n")
    );
}

#[test]
fn the_readme_maps_every_doc() {
    let root = repo_root();
    let readme = fs::read_to_string(root.join("README.md")).expect("README.md");
    let linked: HashSet<String> = parse(&readme).links.into_iter().map(|(_, d)| d).collect();
    let mut unmapped = Vec::new();
    for doc in markdown_files(&root.join("docs")) {
        let name = format!(
            "docs/{}",
            doc.file_name().expect("a name").to_string_lossy()
        );
        if !linked.contains(&name) {
            unmapped.push(name);
        }
    }
    if !linked.contains("bench/README.md") {
        unmapped.push("bench/README.md".to_owned());
    }
    assert!(unmapped.is_empty(), "README.md does not link: {unmapped:?}");
}

#[test]
fn the_readme_is_a_front_door_not_a_manual() {
    let readme = fs::read_to_string(repo_root().join("README.md")).expect("README.md");
    let lines = readme.lines().count();
    assert!(
        lines <= README_MAX_LINES,
        "README.md has {lines} lines, more than {README_MAX_LINES}: move the detail into docs/"
    );
}

/// The checker itself, on a small tree with one of each kind of problem: a
/// test that passes on the repository only means something if it can fail.
#[test]
fn the_checker_finds_each_kind_of_broken_link() {
    let root = std::env::temp_dir().join(format!("cutover-docs-test-{}", std::process::id()));
    let _ = fs::remove_dir_all(&root);
    fs::create_dir_all(root.join("docs")).expect("temp tree");
    fs::create_dir_all(root.join("target")).expect("temp tree");
    fs::write(
        root.join("docs/a.md"),
        "# A page\n\n## Limits and timeouts\n\n## Sides: `batch`, `streaming`\n\nSetext\n------\n\n## Twice\n\n## Twice\n",
    )
    .expect("docs/a.md");
    fs::write(root.join("target/ignored.md"), "[gone](nowhere.md)\n").expect("ignored");
    fs::write(
        root.join("README.md"),
        "\
# Top

[ok](docs/a.md) and [ok](docs/a.md#limits-and-timeouts) and [ok](docs/a.md#sides-batch-streaming)
[ok](docs/a.md#setext) [ok](docs/a.md#twice-1) [ok](#top) [web](https://example.com/x)
[missing](docs/b.md)
[bad anchor](docs/a.md#nope)
[outside](../elsewhere/x.md)
[spec](../shared/SPEC.md)
[![img](docs/missing.png)](docs/a.md)
`[not a link](docs/none.md)` and `bench/ok.sh` but `../shared/bench/peers.sh`
[file](file:///etc/passwd)

```sh
../shared/bench/sweep.sh
[x](fenced.md)
```

[ref]: docs/gone.md
",
    )
    .expect("README.md");
    let found = problems(&root);
    fs::remove_dir_all(&root).expect("remove temp tree");
    assert_eq!(
        found,
        [
            "README.md:5: docs/b.md (no such file)",
            "README.md:6: docs/a.md#nope (no such heading)",
            "README.md:7: ../elsewhere/x.md (points outside the repository)",
            "README.md:8: ../shared/SPEC.md (../shared is not in a clone)",
            "README.md:9: docs/missing.png (no such file)",
            "README.md:11: file:///etc/passwd (points outside the repository)",
            "README.md:18: docs/gone.md (no such file)",
            "README.md:10: ../shared/bench/peers.sh (../shared is not in a clone)",
            "README.md:14: ../shared/bench/sweep.sh (../shared is not in a clone)",
        ]
    );
}
