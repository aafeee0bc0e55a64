//! cibuildwheel's selector patterns, matched as cibuildwheel matches them (`selector.py`): each
//! whitespace-separated word is brace-expanded as bracex expands it (`cp3{9,10}-*`,
//! `cp3{10..12}-*`), and each expansion is an `fnmatch` pattern with Python's semantics: `*`
//! any run of characters, `?` one character, `[abc]`, `[a-c]`, `[!abc]` a character class (`!`
//! negates it; `^` is a literal member; `]` right after `[` or `[!` is a member; a range whose
//! ends are reversed is empty; an unclosed `[` is a literal `[`). Case-sensitive, as `fnmatch`
//! is on Linux. Pure.

/// More expansions than this from one word is an error (bracex's default limit is 1000).
pub const MAX_EXPANSIONS: usize = 1000;

/// The brace expansions of one word, in bash's (and bracex's) order: `a{b,c}d` → `abd`, `acd`;
/// `{1..3}` → `1`, `2`, `3`; `{a..c}`; `{01..10..3}` (zero-padded, with a step). A `{` without
/// a matching `}`, or whose body has neither a top-level comma nor a sequence, is literal.
pub fn expand_braces(word: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    expand_into(word, &mut out)?;
    Ok(out)
}

fn expand_into(word: &str, out: &mut Vec<String>) -> Result<(), String> {
    let chars: Vec<char> = word.chars().collect();
    let mut start = 0;
    while let Some(open) = (start..chars.len()).find(|&i| chars[i] == '{') {
        let Some((close, commas)) = matching_brace(&chars, open) else {
            start = open + 1;
            continue;
        };
        let prefix: String = chars[..open].iter().collect();
        let suffix: String = chars[close + 1..].iter().collect();
        let body: String = chars[open + 1..close].iter().collect();
        let alternatives: Vec<String> = if commas.is_empty() {
            match sequence(&body) {
                Some(seq) => seq,
                None => {
                    start = open + 1;
                    continue;
                }
            }
        } else {
            let mut alts = Vec::new();
            let mut from = open + 1;
            for &c in commas.iter().chain(std::iter::once(&close)) {
                alts.push(chars[from..c].iter().collect());
                from = c + 1;
            }
            alts
        };
        for alt in alternatives {
            expand_into(&format!("{prefix}{alt}{suffix}"), out)?;
            if out.len() > MAX_EXPANSIONS {
                return Err(format!(
                    "selector {word:?} expands to more than {MAX_EXPANSIONS} patterns"
                ));
            }
        }
        return Ok(());
    }
    out.push(word.to_string());
    Ok(())
}

/// The `}` that closes the `{` at `open`, and the positions of its top-level commas.
fn matching_brace(chars: &[char], open: usize) -> Option<(usize, Vec<usize>)> {
    let mut depth = 0usize;
    let mut commas = Vec::new();
    for (i, &c) in chars.iter().enumerate().skip(open) {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return Some((i, commas));
                }
            }
            ',' if depth == 1 => commas.push(i),
            _ => {}
        }
    }
    None
}

/// A sequence body: `1..5`, `05..1`, `a..e`, `1..10..2`.
fn sequence(body: &str) -> Option<Vec<String>> {
    let parts: Vec<&str> = body.split("..").collect();
    let (from, to, step) = match parts.as_slice() {
        [a, b] => (*a, *b, None),
        [a, b, s] => (*a, *b, Some(s.parse::<i64>().ok()?)),
        _ => return None,
    };
    let step = step.map(i64::unsigned_abs).filter(|s| *s != 0).unwrap_or(1) as usize;
    if let (Ok(a), Ok(b)) = (from.parse::<i64>(), to.parse::<i64>()) {
        let padded = |s: &str| {
            s.trim_start_matches('-').len() > 1 && s.trim_start_matches('-').starts_with('0')
        };
        let width = if padded(from) || padded(to) {
            from.len().max(to.len())
        } else {
            0
        };
        let values: Vec<i64> = if a <= b {
            (a..=b).step_by(step).collect()
        } else {
            (b..=a).rev().step_by(step).collect()
        };
        return Some(
            values
                .into_iter()
                .map(|v| {
                    if v < 0 {
                        format!("-{:0w$}", -v, w = width.saturating_sub(1))
                    } else {
                        format!("{v:0width$}")
                    }
                })
                .collect(),
        );
    }
    let one = |s: &str| {
        let mut c = s.chars();
        match (c.next(), c.next()) {
            (Some(x), None) if x.is_ascii_alphabetic() => Some(x),
            _ => None,
        }
    };
    let (a, b) = (one(from)?, one(to)?);
    let values: Vec<char> = if a <= b {
        (a..=b).step_by(step).collect()
    } else {
        (b..=a).rev().step_by(step).collect()
    };
    Some(values.into_iter().map(String::from).collect())
}

/// Python's `fnmatch.fnmatchcase(name, pattern)`.
pub fn fnmatch(name: &str, pattern: &str) -> bool {
    let items = compile(pattern);
    let name: Vec<char> = name.chars().collect();
    matches_at(&items, &name)
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Item {
    Star,
    Any,
    Char(char),
    Class {
        negated: bool,
        /// Inclusive ranges (a single character is `(c, c)`).
        ranges: Vec<(char, char)>,
    },
}

fn compile(pattern: &str) -> Vec<Item> {
    let p: Vec<char> = pattern.chars().collect();
    let mut items = Vec::new();
    let mut i = 0;
    while i < p.len() {
        let c = p[i];
        i += 1;
        match c {
            '*' => {
                if items.last() != Some(&Item::Star) {
                    items.push(Item::Star);
                }
            }
            '?' => items.push(Item::Any),
            '[' => {
                let mut j = i;
                if j < p.len() && p[j] == '!' {
                    j += 1;
                }
                if j < p.len() && p[j] == ']' {
                    j += 1;
                }
                while j < p.len() && p[j] != ']' {
                    j += 1;
                }
                if j >= p.len() {
                    items.push(Item::Char('['));
                    continue;
                }
                let mut content = &p[i..j];
                let negated = content.first() == Some(&'!');
                if negated {
                    content = &content[1..];
                }
                let mut ranges = Vec::new();
                let mut k = 0;
                while k < content.len() {
                    if k + 2 < content.len() && content[k + 1] == '-' {
                        // A reversed range is empty (fnmatch drops it).
                        if content[k] <= content[k + 2] {
                            ranges.push((content[k], content[k + 2]));
                        }
                        k += 3;
                    } else {
                        ranges.push((content[k], content[k]));
                        k += 1;
                    }
                }
                items.push(Item::Class { negated, ranges });
                i = j + 1;
            }
            c => items.push(Item::Char(c)),
        }
    }
    items
}

fn one(item: &Item, c: char) -> bool {
    match item {
        Item::Star => true,
        Item::Any => true,
        Item::Char(x) => *x == c,
        Item::Class { negated, ranges } => {
            ranges.iter().any(|(lo, hi)| *lo <= c && c <= *hi) != *negated
        }
    }
}

/// Glob matching with backtracking over the last `*` (linear for fnmatch's patterns).
fn matches_at(items: &[Item], name: &[char]) -> bool {
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match items.get(p) {
            Some(Item::Star) => {
                star = Some((p, n));
                p += 1;
            }
            Some(item) if one(item, name[n]) => {
                p += 1;
                n += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    p = sp + 1;
                    n = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    items[p..].iter().all(|i| *i == Item::Star)
}

/// cibuildwheel's `selector_matches`: true when any word of `patterns`, brace-expanded, matches
/// `name`.
pub fn selector_matches(patterns: &str, name: &str) -> Result<bool, String> {
    for word in patterns.split_whitespace() {
        for p in expand_braces(word)? {
            if fnmatch(name, &p) {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(w: &str) -> Vec<String> {
        expand_braces(w).unwrap()
    }

    #[test]
    fn braces_expand_as_bracex_does() {
        assert_eq!(ex("cp3{9,10}-*"), ["cp39-*", "cp310-*"]);
        assert_eq!(ex("cp3{10..12}-*"), ["cp310-*", "cp311-*", "cp312-*"]);
        assert_eq!(ex("{3..1}"), ["3", "2", "1"]);
        assert_eq!(ex("{01..03}"), ["01", "02", "03"]);
        assert_eq!(ex("{1..7..3}"), ["1", "4", "7"]);
        assert_eq!(ex("{a..c}x"), ["ax", "bx", "cx"]);
        assert_eq!(ex("{cp39,pp3{10,11}}-*"), ["cp39-*", "pp310-*", "pp311-*"]);
        assert_eq!(ex("{a,b}{1,2}"), ["a1", "a2", "b1", "b2"]);
        assert_eq!(ex("{,x}y"), ["y", "xy"]);
        // Literal: no comma, no sequence, no closing brace.
        assert_eq!(ex("{a}"), ["{a}"]);
        assert_eq!(ex("{a"), ["{a"]);
        assert_eq!(ex("a}"), ["a}"]);
        assert_eq!(ex("{a{b,c}}"), ["{ab}", "{ac}"]);
        assert!(expand_braces("{1..2000}").is_err());
    }

    #[test]
    fn fnmatch_has_pythons_semantics() {
        assert!(fnmatch("cp311-manylinux_x86_64", "cp311-*"));
        assert!(fnmatch("cp311-manylinux_x86_64", "*"));
        assert!(fnmatch("", "*"));
        assert!(!fnmatch("cp311-manylinux_x86_64", "cp31-*"));
        assert!(fnmatch("cp39-x", "cp3?-*"));
        assert!(!fnmatch("cp310-x", "cp3?-*"));
        assert!(fnmatch("cp314t-x", "cp3??t-*"));
        assert!(fnmatch("a", "[abc]") && !fnmatch("d", "[abc]"));
        assert!(fnmatch("d", "[!abc]") && !fnmatch("a", "[!abc]"));
        // `^` is a literal member, not a negation.
        assert!(fnmatch("^", "[^a]") && fnmatch("a", "[^a]") && !fnmatch("b", "[^a]"));
        assert!(fnmatch("b", "[a-c]") && !fnmatch("d", "[a-c]"));
        assert!(fnmatch("-", "[-a]") && fnmatch("-", "[a-]"));
        assert!(fnmatch("]", "[]a]") && !fnmatch("]", "[!]a]"));
        assert!(fnmatch("x", "[!]a]"));
        // A reversed range is empty; an empty class never matches, a negated one always.
        assert!(!fnmatch("b", "[c-a]"));
        assert!(fnmatch("b", "[!c-a]"));
        assert!(fnmatch("b", "[bz-ac]") && fnmatch("c", "[bz-ac]") && !fnmatch("z", "[bz-ac]"));
        // An unclosed bracket is literal.
        assert!(fnmatch("cp3[9", "cp3[9") && !fnmatch("cp39", "cp3[9"));
        assert!(fnmatch("ab", "a**b") && fnmatch("axxb", "a*b") && !fnmatch("axxbc", "a*b"));
        assert!(!fnmatch("CP311", "cp311"));
        assert!(fnmatch("aXbYc", "a*b*c") && !fnmatch("aXbYd", "a*b*c"));
    }

    #[test]
    fn selectors_match_any_word() {
        let m = |p: &str, s: &str| selector_matches(p, s).unwrap();
        assert!(m("cp39-* cp31[0-2]-*", "cp311-musllinux_x86_64"));
        assert!(!m("cp39-* cp31[0-2]-*", "cp313-musllinux_x86_64"));
        assert!(m("*-{many,musl}linux_x86_64", "cp313-musllinux_x86_64"));
        assert!(!m("", "cp313-musllinux_x86_64"));
    }
}
