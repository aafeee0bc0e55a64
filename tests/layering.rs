//! The module graph is one-way: every `crate::` path in `src/` points to a module of a lower layer
//! than its own, in the order `src/lib.rs`'s module doc writes down. Reads the sources as text, so it
//! needs no build of the crate's internals and no privileges.

use std::collections::BTreeMap;
use std::path::Path;

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

/// The modules a source file names through `crate::x` or `use crate::{x, y::z}`, outside its unit
/// tests and comments.
fn uses(source: &str) -> Vec<String> {
    let code: String = source
        .split("#[cfg(test)]\nmod tests")
        .next()
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let mut found = Vec::new();
    let mut rest = code.as_str();
    while let Some(at) = rest.find("crate::") {
        let before = rest[..at].chars().next_back();
        rest = &rest[at + "crate::".len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue; // `pookie_ns_crate::` or the like: not this crate's root
        }
        if let Some(group) = rest.strip_prefix('{') {
            // The first path segment of every item of the group, at its top level.
            let mut depth = 0;
            let mut item_start = true;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => {
                        rest = &group[i..];
                        break;
                    }
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if item_start && (c.is_alphanumeric() || c == '_') => {
                        item_start = false;
                        found.push(ident(&group[i..]));
                    }
                    _ => {}
                }
            }
        } else {
            found.push(ident(rest));
        }
    }
    found
}

fn ident(s: &str) -> String {
    s.chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

/// Every source file of `src/` with the top-level module it belongs to (`pipeline/plan.rs` → pipeline).
fn sources(src: &Path) -> Vec<(String, std::path::PathBuf)> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(src).expect("read src/") {
        let path = entry.expect("read src/").path();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            let mut dirs = vec![path.clone()];
            while let Some(dir) = dirs.pop() {
                for sub in std::fs::read_dir(&dir).expect("read a module dir") {
                    let sub = sub.expect("read a module dir").path();
                    if sub.is_dir() {
                        dirs.push(sub);
                    } else if sub.extension().is_some_and(|e| e == "rs") {
                        files.push((name.clone(), sub));
                    }
                }
            }
        } else if path.extension().is_some_and(|e| e == "rs") && name != "lib" && name != "main" {
            files.push((name, path));
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

    let mut wrong = Vec::new();
    let mut edges = 0;
    let files = sources(&root.join("src"));
    assert!(files.len() > 20, "found only {} source files", files.len());
    for (module, path) in &files {
        let text = std::fs::read_to_string(path).expect("read a source file");
        for mut used in uses(&text) {
            if used == "Error" || used == "Result" {
                used = "error".into(); // the root's re-exports of `error`'s types
            }
            if used == *module {
                continue;
            }
            edges += 1;
            let (Some(&from), Some(&to)) = (layer.get(module), layer.get(&used)) else {
                panic!(
                    "{}: crate::{used} is no module listed in src/lib.rs",
                    path.display()
                );
            };
            if to >= from {
                wrong.push(format!(
                    "{}: {module} (layer {from}) uses {used} (layer {to})",
                    path.strip_prefix(root).unwrap_or(path).display()
                ));
            }
        }
    }
    assert!(
        edges > 100,
        "read only {edges} edges: is the reader broken?"
    );
    wrong.sort();
    wrong.dedup();
    assert!(
        wrong.is_empty(),
        "modules that use one of their own layer or above:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_edge_reader_sees_groups_and_paths() {
    let source = "use crate::{arch::Arch, store::{self, Store}};\n\
                  // crate::commands in a comment\n\
                  fn f() { crate::binfmt::choose(); }\n\
                  #[cfg(test)]\nmod tests { use crate::pipeline; }\n";
    assert_eq!(uses(source), ["arch", "store", "binfmt"]);
}
