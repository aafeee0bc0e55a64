//! The module graph is one-way. Every `crate::` path in `src/` points to a module of a lower layer
//! than its own, in the order `src/lib.rs`'s module doc writes down; `pipeline` never names `cli`
//! (the command line is an edge: `commands` turns it into a request); inside any module
//! directory the submodules' references to each other (`super::x`, `crate::m::x`, `self::x`)
//! form no circle; and no file embeds (`include_str!`) a file of a module above its own. Reads
//! the sources as text, so it needs no build of the crate's internals and no privileges. The
//! checks run on a list of (path, text), so that the tests below can plant each kind of fault.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};

/// Uses that the layers allow but the design forbids: (from, to, why).
const FORBIDDEN: &[(&str, &str, &str)] = &[(
    "pipeline",
    "cli",
    "the pipeline takes a BuildRequest, never clap's structs (commands makes the request)",
)];

/// The layers from `src/lib.rs`'s doc: each module's layer number, lowest first.
fn layers(lib: &str) -> BTreeMap<String, usize> {
    let mut layer = BTreeMap::new();
    for line in lib.lines().map_while(|l| l.strip_prefix("//!")) {
        // A list item: `N. `a`, `b`: what they are`; its continuation lines start otherwise.
        let Some((number, rest)) = line.trim().split_once(". ") else {
            continue;
        };
        let Ok(number) = number.parse::<usize>() else {
            continue;
        };
        let names = rest.split(':').next().unwrap_or_default();
        for name in names.split('`').skip(1).step_by(2) {
            assert!(
                layer.insert(name.to_string(), number).is_none(),
                "{name} is listed twice"
            );
        }
    }
    assert!(!layer.is_empty(), "src/lib.rs's doc lists no layers");
    layer
}

/// A source file's code: its unit tests and its comment lines left out.
fn code(source: &str) -> String {
    source
        .split("#[cfg(test)]\nmod tests")
        .next()
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn ident(s: &str) -> String {
    s.chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

/// The paths of a use tree that starts at `s` (just after `crate::`, `super::` or `self::`):
/// `a::b::{c, d::{self, e}}` → [a, b, c], [a, b, d], [a, b, d, e]. Paths stop at the first
/// segment that is not an identifier.
fn tree(s: &str) -> Vec<Vec<String>> {
    fn parse(s: &str, prefix: &[String], out: &mut Vec<Vec<String>>) -> usize {
        let mut path = prefix.to_vec();
        let mut i = 0;
        loop {
            let rest = &s[i..];
            let trimmed = rest.trim_start();
            i += rest.len() - trimmed.len();
            if let Some(group) = trimmed.strip_prefix('{') {
                i += 1;
                let mut consumed = 0;
                loop {
                    let g = &group[consumed..];
                    let t = g.trim_start();
                    consumed += g.len() - t.len();
                    if t.starts_with('}') || t.is_empty() {
                        consumed += 1.min(t.len());
                        break;
                    }
                    consumed += parse(&group[consumed..], &path, out);
                    let g = &group[consumed..];
                    let t = g.trim_start();
                    consumed += g.len() - t.len();
                    if t.starts_with(',') {
                        consumed += 1;
                    }
                }
                return i + consumed;
            }
            let name = ident(trimmed);
            if name.is_empty() {
                break;
            }
            i += name.len();
            if name != "self" {
                path.push(name);
            }
            if s[i..].starts_with("::") {
                i += 2;
            } else {
                break;
            }
        }
        if !path.is_empty() {
            out.push(path);
        }
        i
    }
    let mut out = Vec::new();
    parse(s, &[], &mut out);
    out
}

/// Every module path a file names: `crate::` paths as they are, `super::`/`self::` paths made
/// absolute from `here` (the file's own module path), outside its unit tests and comments.
fn paths(source: &str, here: &[String]) -> Vec<Vec<String>> {
    let code = code(source);
    let mut found = Vec::new();
    for (at, _) in code.match_indices("::") {
        // The start of the path this `::` belongs to: only its first `::` is looked at.
        let head_start = code[..at]
            .rfind(|c: char| !(c.is_alphanumeric() || c == '_'))
            .map_or(0, |i| i + 1);
        let head = &code[head_start..at];
        let before = code[..head_start].chars().next_back();
        if before == Some(':') {
            continue; // a later segment of a path already read
        }
        let rest = &code[at + 2..];
        let base: Vec<String> = match head {
            "crate" => Vec::new(),
            "self" => here.to_vec(),
            "super" => {
                // super::super::x: each `super` one level up.
                let mut base = here.to_vec();
                base.pop();
                let mut r = rest;
                while let Some(more) = r.strip_prefix("super::") {
                    base.pop();
                    r = more;
                }
                for p in tree(r) {
                    found.push(base.iter().cloned().chain(p).collect());
                }
                continue;
            }
            _ => continue,
        };
        for p in tree(rest) {
            found.push(base.iter().cloned().chain(p).collect());
        }
    }
    found
}

/// A source file's module path from its path under `src/`: `pipeline/worker/mod.rs` →
/// [pipeline, worker]; `pipeline/plan.rs` → [pipeline, plan].
fn module_path(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    let file = parts.pop().unwrap_or_default();
    let stem = file.trim_end_matches(".rs");
    if stem != "mod" && stem != "lib" && stem != "main" {
        parts.push(stem.to_string());
    }
    parts
}

/// `a/b/../c` → `a/c`, without touching the file system.
fn normal(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            c => out.push(c),
        }
    }
    out
}

/// The files a source embeds with `include_str!`/`include_bytes!`, relative to `src/`'s parent
/// (`src/shell/scripts/x.sh`, `examples/c-ext/pyproject.toml`).
fn includes(source: &str, rel: &Path) -> Vec<PathBuf> {
    let code = code(source);
    let dir = Path::new("src").join(rel.parent().unwrap_or(Path::new("")));
    let mut out = Vec::new();
    for macro_name in ["include_str!(\"", "include_bytes!(\""] {
        for (at, _) in code.match_indices(macro_name) {
            let rest = &code[at + macro_name.len()..];
            if let Some(end) = rest.find('"') {
                out.push(normal(&dir.join(&rest[..end])));
            }
        }
    }
    out
}

/// Every fault of the module graph of `files` ((path under `src/`, text)), as messages.
fn faults(files: &[(PathBuf, String)], layer: &BTreeMap<String, usize>) -> Vec<String> {
    let modules: BTreeSet<Vec<String>> = files.iter().map(|(p, _)| module_path(p)).collect();
    let mut wrong = Vec::new();
    // Inside each module directory: which child names which sibling.
    let mut siblings: BTreeMap<Vec<String>, BTreeSet<(String, String)>> = BTreeMap::new();
    for (rel, text) in files {
        let here = module_path(rel);
        let Some(top) = here.first().cloned() else {
            continue; // lib.rs and main.rs
        };
        let Some(&from) = layer.get(&top) else {
            wrong.push(format!(
                "src/{}: {top} is no module listed in src/lib.rs",
                rel.display()
            ));
            continue;
        };
        for mut path in paths(text, &here) {
            if path.first().is_some_and(|f| f == "Error" || f == "Result") {
                path[0] = "error".into(); // the root's re-exports of `error`'s types
            }
            let Some(used) = path.first().cloned() else {
                continue;
            };
            if used != top {
                match layer.get(&used) {
                    None => wrong.push(format!(
                        "src/{}: crate::{used} is no module listed in src/lib.rs",
                        rel.display()
                    )),
                    Some(&to) if to >= from => wrong.push(format!(
                        "src/{}: {top} (layer {from}) uses {used} (layer {to})",
                        rel.display()
                    )),
                    _ => {}
                }
                for (f, t, why) in FORBIDDEN {
                    if top == *f && used == *t {
                        wrong.push(format!("src/{}: {f} uses {t}: {why}", rel.display()));
                    }
                }
                continue;
            }
            // The same top-level module: an edge between two children of their common parent.
            let k = here.iter().zip(&path).take_while(|(a, b)| a == b).count();
            if k == 0 || k >= here.len() || k >= path.len() {
                continue;
            }
            if modules.contains(&path[..=k]) {
                siblings
                    .entry(here[..k].to_vec())
                    .or_default()
                    .insert((here[k].clone(), path[k].clone()));
            }
        }
        for inc in includes(text, rel) {
            let Ok(under) = inc.strip_prefix("src") else {
                continue; // examples/, rootfs/, toolchains/: data, not a module's
            };
            let owner = under
                .components()
                .next()
                .map(|c| {
                    c.as_os_str()
                        .to_string_lossy()
                        .trim_end_matches(".rs")
                        .to_string()
                })
                .unwrap_or_default();
            if owner == top {
                continue;
            }
            match layer.get(&owner) {
                Some(&to) if to < from => {}
                _ => wrong.push(format!(
                    "src/{}: {top} embeds {}, a file of {owner}, which is not below it",
                    rel.display(),
                    inc.display()
                )),
            }
        }
    }
    for (dir, edges) in &siblings {
        if let Some(cycle) = circle(edges) {
            wrong.push(format!(
                "a circle inside src/{}: {}",
                dir.join("/"),
                cycle.join(" → ")
            ));
        }
    }
    wrong.sort();
    wrong.dedup();
    wrong
}

/// A circle of `edges`, as the names along it (the first repeated at the end), if there is one.
fn circle(edges: &BTreeSet<(String, String)>) -> Option<Vec<String>> {
    let mut next: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (a, b) in edges {
        next.entry(a).or_default().push(b);
    }
    fn walk<'a>(
        n: &'a str,
        next: &BTreeMap<&'a str, Vec<&'a str>>,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| *p == n) {
            let mut c: Vec<String> = path[i..].iter().map(|s| s.to_string()).collect();
            c.push(n.to_string());
            return Some(c);
        }
        if !done.insert(n) {
            return None;
        }
        path.push(n);
        for m in next.get(n).into_iter().flatten() {
            if let Some(c) = walk(m, next, path, done) {
                return Some(c);
            }
        }
        path.pop();
        None
    }
    let mut done = BTreeSet::new();
    for n in next.keys() {
        if let Some(c) = walk(n, &next, &mut Vec::new(), &mut done) {
            return Some(c);
        }
    }
    None
}

/// Every source file of `src/`, as (path under `src/`, text).
fn sources(src: &Path) -> Vec<(PathBuf, String)> {
    let mut files = Vec::new();
    let mut dirs = vec![src.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("read a source dir") {
            let path = entry.expect("read a source dir").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).expect("read a source file");
                files.push((path.strip_prefix(src).unwrap().to_path_buf(), text));
            }
        }
    }
    files.sort();
    files
}

#[test]
fn no_module_uses_one_above_it() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let lib = std::fs::read_to_string(root.join("src/lib.rs")).expect("read src/lib.rs");
    let layer = layers(&lib);

    // Every module of lib.rs has its layer, and the list names no module that does not exist.
    let declared: Vec<String> = lib
        .lines()
        .filter_map(|l| l.strip_prefix("pub mod "))
        .map(|l| l.trim_end_matches(';').to_string())
        .collect();
    for m in &declared {
        assert!(
            layer.contains_key(m),
            "src/lib.rs's layers do not list the module {m}"
        );
    }
    for m in layer.keys() {
        assert!(
            declared.contains(m),
            "src/lib.rs's layers list {m}, which is no module"
        );
    }

    let files = sources(&root.join("src"));
    assert!(files.len() > 20, "found only {} source files", files.len());
    let edges: usize = files
        .iter()
        .map(|(p, t)| paths(t, &module_path(p)).len())
        .sum();
    assert!(
        edges > 300,
        "read only {edges} paths: is the reader broken?"
    );
    let wrong = faults(&files, &layer);
    assert!(
        wrong.is_empty(),
        "the module graph has faults:\n{}",
        wrong.join("\n")
    );
}

/// A small tree whose graph is sound, to plant faults in.
fn sound() -> Vec<(PathBuf, String)> {
    vec![
        ("arch.rs".into(), "pub fn host() {}".into()),
        ("cli.rs".into(), "use crate::arch;".into()),
        (
            "pipeline/mod.rs".into(),
            "mod a;\nmod b;\nuse crate::arch::host;\nuse a::f;".into(),
        ),
        (
            "pipeline/a.rs".into(),
            "use super::b::g;\npub fn f() {}".into(),
        ),
        (
            "pipeline/b.rs".into(),
            "use super::Thing;\npub fn g() {}".into(),
        ),
        (
            "shell/mod.rs".into(),
            "pub const X: &str = include_str!(\"x.sh\");".into(),
        ),
        (
            "commands.rs".into(),
            "use crate::{cli::Cli, pipeline};".into(),
        ),
    ]
}

fn planted(extra: (&str, &str)) -> Vec<String> {
    let layer: BTreeMap<String, usize> = [
        ("arch", 1),
        ("shell", 1),
        ("cli", 2),
        ("pipeline", 3),
        ("commands", 4),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let mut files = sound();
    files.retain(|(p, _)| p != Path::new(extra.0));
    files.push((extra.0.into(), extra.1.into()));
    faults(&files, &layer)
}

#[test]
fn the_sound_tree_has_no_faults() {
    assert_eq!(
        planted(("arch.rs", "pub fn host() {}")),
        Vec::<String>::new()
    );
}

#[test]
fn an_upward_use_fails() {
    let f = planted(("arch.rs", "use crate::pipeline::x;"));
    assert!(
        f.iter().any(|m| m.contains("arch (layer 1) uses pipeline")),
        "{f:?}"
    );
}

#[test]
fn a_circle_inside_a_directory_fails() {
    let f = planted(("pipeline/b.rs", "use crate::pipeline::a::f;"));
    assert!(
        f.iter()
            .any(|m| m.contains("a circle inside src/pipeline: a → b → a")),
        "{f:?}"
    );
    // Through super:: and a group, as well.
    let f = planted(("pipeline/b.rs", "use super::{a::{self, f}};"));
    assert!(f.iter().any(|m| m.contains("circle")), "{f:?}");
}

#[test]
fn an_upward_include_fails() {
    let f = planted((
        "shell/mod.rs",
        "const X: &str = include_str!(\"../pipeline/x.sh\");",
    ));
    assert!(
        f.iter().any(|m| m.contains("embeds src/pipeline/x.sh")),
        "{f:?}"
    );
    // Data outside src/ is no module's.
    let f = planted((
        "shell/mod.rs",
        "const X: &str = include_str!(\"../../examples/p.toml\");",
    ));
    assert!(f.is_empty(), "{f:?}");
}

#[test]
fn the_pipeline_naming_cli_fails() {
    let f = planted(("pipeline/a.rs", "use crate::cli::BuildArgs;"));
    assert!(f.iter().any(|m| m.contains("pipeline uses cli")), "{f:?}");
}

#[test]
fn the_path_reader_sees_groups_super_and_self() {
    let source = "use crate::{arch::Arch, store::{self, Store}};\n\
                  // crate::commands in a comment\n\
                  fn f() { crate::binfmt::choose(); super::super::x::y(); self::z::w(); }\n\
                  #[cfg(test)]\nmod tests { use crate::pipeline; }\n";
    let here = ["pipeline".to_string(), "worker".into(), "env".into()];
    let p: Vec<String> = paths(source, &here).iter().map(|p| p.join("::")).collect();
    assert_eq!(
        p,
        [
            "arch::Arch",
            "store",
            "store::Store",
            "binfmt::choose",
            "pipeline::x::y",
            "pipeline::worker::env::z::w"
        ]
    );
}

// ---- Function length ----------------------------------------------------------------------

/// The longest a function in `src/` may be, from its `fn` line to its closing brace.
const MAX_FN_LINES: usize = 100;

/// Functions allowed to be longer, each with the reason (README, "### Architecture", lists
/// them): (file under `src/`, function name, why).
const LONG_FNS: &[(&str, &str, &str)] = &[
    // A top-to-bottom set-up: the mount sequence of a new root, each step commented with its
    // reason, read in order as bubblewrap's is; split, the order would be in no one place.
    (
        "sandbox.rs",
        "set_up_root",
        "the sandbox's mount sequence, top to bottom",
    ),
    // Pending: these files are being rewritten for per-identifier sources (branch `parity`);
    // split them once that work is merged, and take them off this list.
    (
        "cibw/resolve.rs",
        "resolve",
        "pending the per-identifier sources rewrite",
    ),
    (
        "cibw/requires_python.rs",
        "logical_lines",
        "pending the per-identifier sources rewrite",
    ),
    (
        "cibw/per_identifier.rs",
        "options_for",
        "pending the per-identifier sources rewrite",
    ),
    (
        "pipeline/plan.rs",
        "plan",
        "pending the per-identifier sources rewrite",
    ),
    (
        "pipeline/resolve.rs",
        "resolve_targets",
        "pending the per-identifier sources rewrite",
    ),
    (
        "pipeline/resolve.rs",
        "decide",
        "pending the per-identifier sources rewrite",
    ),
];

/// `source` with its comments, string and char literals blanked (their newlines kept), so that
/// braces and `fn` in them count for nothing.
fn blank_literals(source: &str) -> String {
    let s = source.as_bytes();
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    // Keeps the newlines of s[from..to] and nothing else.
    let keep_lines = |out: &mut Vec<u8>, from: usize, to: usize| {
        out.extend(s[from..to.min(s.len())].iter().filter(|&&b| b == b'\n'));
    };
    let word_before = |i: usize| i > 0 && (s[i - 1].is_ascii_alphanumeric() || s[i - 1] == b'_');
    while i < s.len() {
        let rest = &s[i..];
        if rest.starts_with(b"//") {
            i += rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
        } else if rest.starts_with(b"/*") {
            // Rust's block comments nest.
            let (mut depth, mut j) = (0, i);
            while j < s.len() {
                if s[j..].starts_with(b"/*") {
                    depth += 1;
                    j += 2;
                } else if s[j..].starts_with(b"*/") {
                    depth -= 1;
                    j += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    j += 1;
                }
            }
            keep_lines(&mut out, i, j);
            i = j;
        } else if !word_before(i)
            && (rest.starts_with(b"r\"") || rest.starts_with(b"r#") || rest.starts_with(b"br"))
        {
            let start = i + usize::from(rest[0] == b'b') + 1;
            let hashes = s[start..].iter().take_while(|&&b| b == b'#').count();
            if s.get(start + hashes) != Some(&b'"') {
                out.push(s[i]);
                i += 1;
                continue;
            }
            let close: Vec<u8> = std::iter::once(b'"')
                .chain(std::iter::repeat_n(b'#', hashes))
                .collect();
            let body = start + hashes + 1;
            let end = s[body..]
                .windows(close.len())
                .position(|w| w == close.as_slice())
                .map_or(s.len(), |p| body + p + close.len());
            out.extend(b"\"\"");
            keep_lines(&mut out, i, end);
            i = end;
        } else if s[i] == b'"' {
            let mut j = i + 1;
            while j < s.len() && s[j] != b'"' {
                j += if s[j] == b'\\' { 2 } else { 1 };
            }
            out.extend(b"\"\"");
            keep_lines(&mut out, i, j + 1);
            i = j + 1;
        } else if s[i] == b'\'' {
            // A char literal ('x', '\n', '\u{1F600}'), not a lifetime ('a).
            let len = if rest.get(1) == Some(&b'\\') {
                // '\n', '\'', '\u{1F600}': the closing quote after the escaped char.
                rest.get(3..)
                    .and_then(|r| r.iter().position(|&b| b == b'\''))
                    .map(|p| p + 4)
            } else {
                // `'` is ASCII: the char after it starts at a char boundary.
                source[i + 1..]
                    .chars()
                    .next()
                    .map(|c| 1 + c.len_utf8())
                    .filter(|&n| rest.get(n) == Some(&b'\''))
                    .map(|n| n + 1)
            };
            match len {
                Some(n) => {
                    out.extend(b"' '");
                    i += n;
                }
                None => {
                    out.push(b'\'');
                    i += 1;
                }
            }
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Every function of `source` with its length in lines (from its `fn` line to the line of its
/// closing brace), as (name, first line, lines).
fn fn_lengths(source: &str) -> Vec<(String, usize, usize)> {
    let code = blank_literals(source);
    let b = code.as_bytes();
    let line_of = |at: usize| 1 + b[..at].iter().filter(|&&c| c == b'\n').count();
    let mut found = Vec::new();
    let mut at = 0;
    while let Some(p) = code[at..].find("fn ") {
        let start = at + p;
        at = start + 3;
        if start > 0 && (b[start - 1].is_ascii_alphanumeric() || b[start - 1] == b'_') {
            continue;
        }
        let name: String = code[at..]
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if name.is_empty() {
            continue;
        }
        // The body's `{`, or a `;` first (a declaration in a trait, a fn type).
        let mut depth = 0i32;
        let mut open = None;
        for (k, &c) in b.iter().enumerate().skip(at) {
            match c {
                b'(' | b'[' => depth += 1,
                b')' | b']' => depth -= 1,
                b';' if depth <= 0 => break,
                b'{' if depth <= 0 => {
                    open = Some(k);
                    break;
                }
                _ => {}
            }
        }
        let Some(open) = open else { continue };
        let mut braces = 0;
        let close = (open..b.len())
            .find(|&k| {
                match b[k] {
                    b'{' => braces += 1,
                    b'}' => braces -= 1,
                    _ => {}
                }
                braces == 0
            })
            .unwrap_or(b.len() - 1);
        found.push((name, line_of(start), line_of(close) - line_of(start) + 1));
    }
    found
}

/// The functions of `files` over [`MAX_FN_LINES`] and not allowed by `allowed`.
fn long_fns(files: &[(PathBuf, String)], allowed: &[(&str, &str, &str)]) -> Vec<String> {
    let mut faults = Vec::new();
    for (path, text) in files {
        for (name, line, lines) in fn_lengths(text) {
            let ok = allowed
                .iter()
                .any(|(p, f, _)| Path::new(p) == path && *f == name);
            if lines > MAX_FN_LINES && !ok {
                faults.push(format!(
                    "src/{}:{line}: fn {name} is {lines} lines (at most {MAX_FN_LINES}): split it \
                     into steps, or add it to LONG_FNS with the reason and list it in the \
                     README's Architecture section",
                    path.display()
                ));
            }
        }
    }
    faults
}

#[test]
fn no_function_is_over_100_lines() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let files = sources(&src);
    let faults = long_fns(&files, LONG_FNS);
    assert!(faults.is_empty(), "{}", faults.join("\n"));
    // The allow-list holds only what is still long: a function split or gone leaves it.
    for (path, name, _) in LONG_FNS {
        let text = &files
            .iter()
            .find(|(p, _)| p == Path::new(path))
            .unwrap_or_else(|| panic!("LONG_FNS names src/{path}, which is gone"))
            .1;
        assert!(
            fn_lengths(text)
                .iter()
                .any(|(n, _, l)| n == name && *l > MAX_FN_LINES),
            "LONG_FNS names {path}: fn {name}, which is no longer over {MAX_FN_LINES} lines"
        );
    }
}

#[test]
fn a_long_function_fails_and_literals_do_not_count() {
    let body = |n: usize| "    let x = 1;\n".repeat(n);
    let text = format!(
        "fn short() {{\n{}}}\n\
         /// fn in a comment {{\n\
         fn long<'a>(s: &'a str) -> [u8; 2] {{\n    let c = '{{';\n    let r = r#\"}} fn x() {{\"#;\n\
         /* }} /* nested }} */ */\n{}    [0; 2]\n}}\n\
         trait T {{ fn declared(&self); }}\n",
        body(MAX_FN_LINES - 2),
        body(MAX_FN_LINES),
    );
    let lengths = fn_lengths(&text);
    let names: Vec<&str> = lengths.iter().map(|(n, _, _)| n.as_str()).collect();
    assert_eq!(names, ["short", "long"], "{lengths:?}");
    assert_eq!(lengths[0].2, MAX_FN_LINES);
    assert_eq!(lengths[1].2, MAX_FN_LINES + 6);
    let files = vec![(PathBuf::from("a.rs"), text)];
    let faults = long_fns(&files, &[]);
    assert_eq!(faults.len(), 1, "{faults:?}");
    assert!(faults[0].starts_with("src/a.rs:"), "{faults:?}");
    assert!(long_fns(&files, &[("a.rs", "long", "planted")]).is_empty());
}
