//! Where a config error points (`FILE:LINE: [TABLE] KEY`) and the nearest known option name it
//! suggests.

use std::path::Path;

use super::{invalid, Input};
use crate::config::ConfigError;

/// Where a message points: `FILE:LINE: [TABLE] KEY`.
pub(super) struct Place<'a> {
    pub(super) path: &'a Path,
    pub(super) text: &'a str,
    pub(super) table: String,
    /// Index of the `[[tool.cibuildwheel.overrides]]` entry.
    pub(super) nth: Option<usize>,
}

impl<'a> Place<'a> {
    /// The table `table` of `input` (`nth`: the entry of an array of tables).
    pub(super) fn of(input: &Input<'a>, table: &str, nth: Option<usize>) -> Place<'a> {
        Place {
            path: input.path,
            text: input.text,
            table: table.into(),
            nth,
        }
    }

    /// `value` as this place's table, or an error saying it must be one.
    pub(super) fn table<'v>(&self, value: &'v toml::Value) -> Result<&'v toml::Table, ConfigError> {
        value
            .as_table()
            .ok_or_else(|| self.err("", "must be a table"))
    }

    pub(super) fn err(&self, key: &str, message: impl std::fmt::Display) -> ConfigError {
        let line = locate(self.text, &self.table, self.nth, key)
            .map(|l| format!(":{l}"))
            .unwrap_or_default();
        let table = match self.nth {
            Some(n) => format!("[[{}]] #{}", self.table, n + 1),
            None => format!("[{}]", self.table),
        };
        invalid(format!(
            "{}{line}: {table} {key}: {message}",
            self.path.display()
        ))
    }
}

/// The 1-based line where `key` is set in `table` (its `nth` array entry), if it can be found.
fn locate(text: &str, table: &str, nth: Option<usize>, key: &str) -> Option<usize> {
    let mut current = String::new();
    let mut entries = 0usize;
    let mut inside = false;
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.starts_with('[') {
            let name = t.trim_start_matches('[');
            let name = name.split(']').next().unwrap_or("").trim();
            current = name.to_string();
            if t.starts_with("[[") && name == table {
                entries += 1;
            }
            inside = match nth {
                Some(n) => t.starts_with("[[") && name == table && entries == n + 1,
                None => name == table,
            };
            continue;
        }
        let head = t
            .split(['=', '.'])
            .next()
            .unwrap_or("")
            .trim()
            .trim_matches('"');
        if (inside && head == key)
            || (!current.is_empty()
                && nth.is_none()
                && t.starts_with(&format!(
                    "{}.{key}",
                    table
                        .strip_prefix(&format!("{current}."))
                        .unwrap_or("\u{0}")
                )))
        {
            return Some(i + 1);
        }
    }
    None
}

/// The nearest known option name, for "did you mean".
pub(super) fn suggest(name: &str, known: &[&str]) -> String {
    let best = known
        .iter()
        .map(|k| (distance(name, k), *k))
        .min()
        .filter(|(d, k)| *d <= 3.max(k.len() / 4));
    match best {
        Some((_, k)) => format!("; did you mean {k:?}?"),
        None => String::new(),
    }
}

fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}
