//! Where a config error points (`FILE:LINE: [TABLE] KEY`) and the nearest known option name it
//! suggests.

use std::path::Path;

use toml_edit::TableLike;

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

/// The 1-based line where `key` is set in `table` (its `nth` array entry), if it can be found:
/// the key's span in toml_edit's parse of the text, wherever it is written (under the table's
/// header, as a dotted key in a table above, in an inline table). With no key, the line of the
/// table's own name.
fn locate(text: &str, table: &str, nth: Option<usize>, key: &str) -> Option<usize> {
    let doc = toml_edit::ImDocument::parse(text).ok()?;
    let (parents, last) = table.rsplit_once('.').unwrap_or(("", table));
    let mut parent: &dyn TableLike = doc.as_table();
    for name in parents.split('.').filter(|n| !n.is_empty()) {
        parent = parent.get(name)?.as_table_like()?;
    }
    let (name, item) = parent.get_key_value(last)?;
    let span = match (nth, key) {
        (Some(n), "") => item.as_array_of_tables()?.get(n)?.span()?,
        (None, "") => name.span()?,
        (Some(n), key) => {
            let entry: &dyn TableLike = item.as_array_of_tables()?.get(n)?;
            entry.get_key_value(key)?.0.span()?
        }
        (None, key) => item.as_table_like()?.get_key_value(key)?.0.span()?,
    };
    Some(text.get(..span.start)?.matches('\n').count() + 1)
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

#[cfg(test)]
mod tests {
    use super::locate;

    #[test]
    fn keys_are_found_wherever_they_are_written() {
        let text = "[project]\nname = \"x\"\n\n[tool.cibuildwheel]\nbuild = \"*\"\nlinux.before-all = \"a\"\n\"test-command\" = \"t\"\nmacos = { archs = [\n  \"x\"], repair = 1 }\n\n[[tool.cibuildwheel.overrides]]\nselect = \"a\"\n\n[[tool.cibuildwheel.overrides]]\nselect = \"b\"\ntest-comand = \"x\"\n";
        let at = |table: &str, nth: Option<usize>, key: &str| locate(text, table, nth, key);
        assert_eq!(at("tool.cibuildwheel", None, "build"), Some(5));
        assert_eq!(at("tool.cibuildwheel.linux", None, "before-all"), Some(6));
        assert_eq!(at("tool.cibuildwheel", None, "test-command"), Some(7));
        assert_eq!(at("tool.cibuildwheel.macos", None, "repair"), Some(9));
        assert_eq!(
            at("tool.cibuildwheel.overrides", Some(0), "select"),
            Some(12)
        );
        assert_eq!(
            at("tool.cibuildwheel.overrides", Some(1), "test-comand"),
            Some(16)
        );
        assert_eq!(at("tool.cibuildwheel.overrides", Some(1), ""), Some(14));
        assert_eq!(at("tool.cibuildwheel", None, ""), Some(4));
        // Not there: no line rather than a wrong one.
        assert_eq!(
            at("tool.cibuildwheel.overrides", Some(0), "test-comand"),
            None
        );
        assert_eq!(at("tool.cibuildwheel.overrides", Some(2), "select"), None);
        assert_eq!(at("tool.pookie-ns", None, "mode"), None);
        assert_eq!(at("project", None, "name"), Some(2));
    }
}
