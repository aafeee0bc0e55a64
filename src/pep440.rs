//! PEP 440 version specifiers, as far as a project's `requires-python` needs them: which CPython
//! minor versions (`3.11`) a build covers by default. Clauses are comma-separated, each an
//! operator (`==`, `!=`, `<=`, `>=`, `<`, `>`, `~=`, `===`) and a release (`3.9`, `3.10.2`),
//! with a `.*` wildcard after `==` and `!=`. Pre-, post- and dev-release suffixes are ignored:
//! what is compared is the release. As cibuildwheel does, a minor version `3.11` is judged as
//! `3.11.99`, its newest patch release: `>=3.11.4` admits 3.11, `<3.11.4` does not.

use std::cmp::Ordering;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Le,
    Ge,
    Lt,
    Gt,
    Compatible,
    Arbitrary,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Clause {
    op: Op,
    release: Vec<u64>,
    /// `==3.9.*` / `!=3.9.*`: a prefix match.
    wildcard: bool,
}

/// A parsed `requires-python`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Specifier {
    text: String,
    clauses: Vec<Clause>,
}

impl std::fmt::Display for Specifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

fn cmp_release(a: &[u64], b: &[u64]) -> Ordering {
    let n = a.len().max(b.len());
    for i in 0..n {
        let (x, y) = (
            a.get(i).copied().unwrap_or(0),
            b.get(i).copied().unwrap_or(0),
        );
        match x.cmp(&y) {
            Ordering::Equal => continue,
            other => return other,
        }
    }
    Ordering::Equal
}

/// The release part of a version: `3.10.2rc1` → [3, 10, 2].
fn parse_release(text: &str) -> Option<Vec<u64>> {
    let text = text.trim().trim_start_matches(['v', 'V']);
    let end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let release: Option<Vec<u64>> = text[..end]
        .trim_end_matches('.')
        .split('.')
        .map(|p| p.parse().ok())
        .collect();
    release.filter(|r| !r.is_empty())
}

impl Specifier {
    pub fn parse(text: &str) -> Result<Specifier, String> {
        let bad = |why: &str| format!("requires-python {text:?}: {why}");
        let mut clauses = Vec::new();
        for raw in text.split(',') {
            let raw = raw.trim();
            if raw.is_empty() {
                if text.trim().is_empty() {
                    break;
                }
                return Err(bad("an empty clause between commas"));
            }
            let (op, rest) = [
                ("===", Op::Arbitrary),
                ("~=", Op::Compatible),
                ("==", Op::Eq),
                ("!=", Op::Ne),
                ("<=", Op::Le),
                (">=", Op::Ge),
                ("<", Op::Lt),
                (">", Op::Gt),
            ]
            .iter()
            .find_map(|(s, op)| raw.strip_prefix(s).map(|rest| (*op, rest.trim())))
            .ok_or_else(|| {
                bad(&format!(
                    "{raw:?} does not start with an operator (>=, ==, ...)"
                ))
            })?;
            let (version, wildcard) = match rest.strip_suffix(".*") {
                Some(v) if matches!(op, Op::Eq | Op::Ne) => (v, true),
                Some(_) => return Err(bad(&format!("{raw:?}: '.*' only follows == or !="))),
                None => (rest, false),
            };
            let release =
                parse_release(version).ok_or_else(|| bad(&format!("{raw:?}: no version")))?;
            if op == Op::Compatible && release.len() < 2 {
                return Err(bad(&format!("{raw:?}: ~= needs at least two components")));
            }
            clauses.push(Clause {
                op,
                release,
                wildcard,
            });
        }
        Ok(Specifier {
            text: text.trim().to_string(),
            clauses,
        })
    }

    /// Whether a CPython minor version (`3.11`) is allowed, judged as `3.11.99`.
    pub fn admits_minor(&self, minor: &str) -> bool {
        match parse_release(minor) {
            Some(mut v) => {
                v.truncate(2);
                v.push(99);
                self.admits(&v)
            }
            None => false,
        }
    }

    /// Whether a package version (`1.2.3`, `1.2.3.post1`) is allowed: its release is compared.
    pub fn admits_version(&self, version: &str) -> bool {
        parse_release(version).is_some_and(|v| self.admits(&v))
    }

    fn admits(&self, v: &[u64]) -> bool {
        self.clauses.iter().all(|c| {
            let ord = cmp_release(v, &c.release);
            let prefix = || {
                c.release
                    .iter()
                    .enumerate()
                    .all(|(i, p)| v.get(i).copied().unwrap_or(0) == *p)
            };
            match c.op {
                Op::Eq if c.wildcard => prefix(),
                Op::Ne if c.wildcard => !prefix(),
                Op::Eq | Op::Arbitrary => ord == Ordering::Equal,
                Op::Ne => ord != Ordering::Equal,
                Op::Le => ord != Ordering::Greater,
                Op::Ge => ord != Ordering::Less,
                Op::Lt => ord == Ordering::Less,
                Op::Gt => ord == Ordering::Greater,
                Op::Compatible => {
                    let head = &c.release[..c.release.len() - 1];
                    ord != Ordering::Less
                        && head
                            .iter()
                            .enumerate()
                            .all(|(i, p)| v.get(i).copied().unwrap_or(0) == *p)
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(spec: &str) -> Vec<&'static str> {
        let s = Specifier::parse(spec).unwrap();
        ["3.8", "3.9", "3.10", "3.11", "3.12", "3.13", "3.14", "3.15"]
            .into_iter()
            .filter(|v| s.admits_minor(v))
            .collect()
    }

    #[test]
    fn the_usual_requires_python_values() {
        assert_eq!(allowed(">=3.13"), ["3.13", "3.14", "3.15"]);
        assert_eq!(allowed(">=3.9"), allowed(">= 3.9 "));
        assert_eq!(allowed(">=3.9,<3.12"), ["3.9", "3.10", "3.11"]);
        assert_eq!(
            allowed(">=3.9, !=3.10.*"),
            ["3.9", "3.11", "3.12", "3.13", "3.14", "3.15"]
        );
        assert_eq!(allowed("~=3.11"), ["3.11", "3.12", "3.13", "3.14", "3.15"]);
        assert_eq!(allowed("~=3.11.0"), ["3.11"]);
        assert_eq!(allowed("==3.12.*"), ["3.12"]);
        assert_eq!(allowed("<3.10"), ["3.8", "3.9"]);
        assert_eq!(allowed(">3.13"), ["3.13", "3.14", "3.15"], "3.13.99 > 3.13");
        assert_eq!(
            allowed(">=3.11.4"),
            ["3.11", "3.12", "3.13", "3.14", "3.15"]
        );
        assert_eq!(allowed("<=3.11"), ["3.8", "3.9", "3.10"], "3.11.99 > 3.11");
        assert_eq!(
            allowed(">=3.10.0rc1"),
            ["3.10", "3.11", "3.12", "3.13", "3.14", "3.15"]
        );
        assert_eq!(allowed("").len(), 8, "no clause admits everything");
    }

    #[test]
    fn malformed_specifiers_say_what_is_wrong() {
        for (text, why) in [
            ("3.9", "operator"),
            (">=", "no version"),
            (">=3.9,,<4", "empty clause"),
            (">=3.*", "'.*' only follows"),
            ("~=3", "two components"),
        ] {
            let e = Specifier::parse(text).unwrap_err();
            assert!(e.contains(why), "{text}: {e}");
        }
    }
}
