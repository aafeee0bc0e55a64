//! `requires-python` where cibuildwheel reads it when pyproject.toml's `[project]` has none
//! (`projectfiles.py`): setup.cfg's `[options] python_requires` (configparser's syntax), else
//! setup.py's `python_requires="..."` keyword of a `setup(...)` call that is a top-level
//! statement, or one directly under `if __name__ == "__main__":`, with a string literal as its
//! value (the last such keyword wins). Pure: read from the files' text.

/// setup.cfg's `[options] python_requires` (keys are case-insensitive, `=` or `:` separates,
/// indented lines continue a value, `#`/`;` lines are comments; `[DEFAULT]` values are seen in
/// every section, as configparser's are).
pub(super) fn from_setup_cfg(text: &str) -> Option<String> {
    type Entry = (String, String, String);
    fn finish(cur: Option<Entry>, found: &mut Option<(String, String)>) {
        if let Some((sec, key, value)) = cur {
            if key == "python_requires" && (sec == "options" || sec == "DEFAULT") {
                let keep = sec == "options" || found.as_ref().is_none_or(|(s, _)| s != "options");
                if keep {
                    *found = Some((sec, value.trim().to_string()));
                }
            }
        }
    }
    let mut section: Option<String> = None;
    let mut found: Option<(String, String)> = None; // (section, value)
    let mut current: Option<Entry> = None; // (section, key, value)
    let mut has_options = false;
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || trimmed.starts_with(';') {
            continue;
        }
        if trimmed.is_empty() {
            continue;
        }
        let indented = line.starts_with([' ', '\t']);
        if indented {
            if let Some((_, _, v)) = current.as_mut() {
                v.push('\n');
                v.push_str(trimmed);
                continue;
            }
        }
        if let Some(name) = trimmed.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
            finish(current.take(), &mut found);
            has_options |= name == "options";
            section = Some(name.to_string());
            continue;
        }
        finish(current.take(), &mut found);
        let Some(sec) = &section else { continue };
        let at = trimmed.find(['=', ':']);
        if let Some(at) = at {
            let key = trimmed[..at].trim().to_ascii_lowercase();
            let value = trimmed[at + 1..].trim().to_string();
            current = Some((sec.clone(), key, value));
        }
    }
    finish(current.take(), &mut found);
    match found {
        Some((_, v)) if has_options => Some(v),
        _ => None,
    }
}

/// A token of Python source, as far as finding `setup(python_requires=...)` goes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Name(String),
    /// A string literal: its prefix (lower case) and decoded value.
    Str(String, String),
    Op(char),
    Other,
}

/// A logical line: its indentation and tokens.
struct Line {
    indent: usize,
    toks: Vec<Tok>,
}

/// Splits Python source into logical lines (brackets and backslashes join physical lines;
/// comments and strings are skipped as Python's tokenizer skips them).
fn logical_lines(src: &str) -> Vec<Line> {
    let c: Vec<char> = src.chars().collect();
    let mut lines = Vec::new();
    let mut toks = Vec::new();
    let mut depth = 0usize;
    let mut indent = 0usize;
    let mut at_start = true;
    let mut i = 0;
    while i < c.len() {
        let ch = c[i];
        if at_start {
            let mut col = 0;
            while i < c.len() && (c[i] == ' ' || c[i] == '\t') {
                col += 1;
                i += 1;
            }
            if i >= c.len() {
                break;
            }
            if c[i] == '\n' || c[i] == '#' || c[i] == '\r' {
                // A blank or comment-only line.
                while i < c.len() && c[i] != '\n' {
                    i += 1;
                }
                i += 1;
                continue;
            }
            indent = col;
            at_start = false;
            continue;
        }
        match ch {
            '\n' => {
                if depth == 0 {
                    lines.push(Line {
                        indent,
                        toks: std::mem::take(&mut toks),
                    });
                    at_start = true;
                }
                i += 1;
            }
            '\\' if c.get(i + 1) == Some(&'\n') => i += 2,
            '#' => {
                while i < c.len() && c[i] != '\n' {
                    i += 1;
                }
            }
            ' ' | '\t' | '\r' | '\x0c' => i += 1,
            '(' | '[' | '{' => {
                depth += 1;
                toks.push(Tok::Op(ch));
                i += 1;
            }
            ')' | ']' | '}' => {
                depth = depth.saturating_sub(1);
                toks.push(Tok::Op(ch));
                i += 1;
            }
            '"' | '\'' => {
                let (value, next) = string_at(&c, i, false);
                toks.push(Tok::Str(String::new(), value));
                i = next;
            }
            _ if ch.is_alphabetic() || ch == '_' => {
                let start = i;
                while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                    i += 1;
                }
                let word: String = c[start..i].iter().collect();
                let lower = word.to_ascii_lowercase();
                let is_prefix = matches!(
                    lower.as_str(),
                    "r" | "u" | "b" | "f" | "br" | "rb" | "fr" | "rf" | "t" | "tr" | "rt"
                );
                if is_prefix && matches!(c.get(i), Some('"') | Some('\'')) {
                    let (value, next) = string_at(&c, i, lower.contains('r'));
                    toks.push(Tok::Str(lower, value));
                    i = next;
                } else {
                    toks.push(Tok::Name(word));
                }
            }
            '=' | ',' | ':' | ';' | '.' => {
                // `==` is one operator, not two `=`.
                if ch == '=' && c.get(i + 1) == Some(&'=') {
                    toks.push(Tok::Op('≡'));
                    i += 2;
                } else {
                    toks.push(Tok::Op(ch));
                    i += 1;
                }
            }
            _ => {
                toks.push(Tok::Other);
                i += 1;
            }
        }
    }
    if !toks.is_empty() {
        lines.push(Line { indent, toks });
    }
    lines
}

/// The string literal whose quote starts at `i`: its value and the index after it.
fn string_at(c: &[char], i: usize, raw: bool) -> (String, usize) {
    let q = c[i];
    let triple = c.get(i + 1) == Some(&q) && c.get(i + 2) == Some(&q);
    let mut j = if triple { i + 3 } else { i + 1 };
    let mut value = String::new();
    while j < c.len() {
        let ch = c[j];
        if ch == '\\' && j + 1 < c.len() {
            let next = c[j + 1];
            if raw {
                value.push(ch);
                value.push(next);
            } else {
                match next {
                    '\n' => {}
                    'n' => value.push('\n'),
                    't' => value.push('\t'),
                    '\\' | '\'' | '"' => value.push(next),
                    other => {
                        value.push('\\');
                        value.push(other);
                    }
                }
            }
            j += 2;
            continue;
        }
        if ch == q {
            if !triple {
                return (value, j + 1);
            }
            if c.get(j + 1) == Some(&q) && c.get(j + 2) == Some(&q) {
                return (value, j + 3);
            }
        }
        if ch == '\n' && !triple {
            return (value, j);
        }
        value.push(ch);
        j += 1;
    }
    (value, j)
}

/// The statements of a logical line, split at its top-level `;`.
fn statements(toks: &[Tok]) -> Vec<&[Tok]> {
    let mut out = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, t) in toks.iter().enumerate() {
        match t {
            Tok::Op('(' | '[' | '{') => depth += 1,
            Tok::Op(')' | ']' | '}') => depth = depth.saturating_sub(1),
            Tok::Op(';') if depth == 0 => {
                out.push(&toks[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&toks[start..]);
    out
}

/// `python_requires` of a statement that is one call `a.b(...)`: the last such keyword whose
/// value is a plain string literal (adjacent literals concatenated, parentheses allowed).
fn call_keyword(stmt: &[Tok]) -> Option<Option<String>> {
    // NAME (. NAME)* ( ... ) and nothing after.
    let mut i = 0;
    loop {
        match stmt.get(i) {
            Some(Tok::Name(_)) => i += 1,
            _ => return None,
        }
        match stmt.get(i) {
            Some(Tok::Op('.')) => i += 1,
            Some(Tok::Op('(')) => break,
            _ => return None,
        }
    }
    if stmt.last() != Some(&Tok::Op(')')) {
        return None;
    }
    let args = &stmt[i + 1..stmt.len() - 1];
    // The arguments at the call's own depth.
    let mut found = None;
    let mut depth = 0usize;
    let mut parts: Vec<&[Tok]> = Vec::new();
    let mut start = 0;
    for (k, t) in args.iter().enumerate() {
        match t {
            Tok::Op('(' | '[' | '{') => depth += 1,
            Tok::Op(')' | ']' | '}') => {
                if depth == 0 {
                    return None; // `f(a)(b)`: not one call
                }
                depth -= 1
            }
            Tok::Op(',') if depth == 0 => {
                parts.push(&args[start..k]);
                start = k + 1;
            }
            _ => {}
        }
    }
    parts.push(&args[start..]);
    for part in parts {
        if let [Tok::Name(n), Tok::Op('='), value @ ..] = part {
            if n == "python_requires" {
                if let Some(v) = literal(value) {
                    found = Some(v);
                }
            }
        }
    }
    Some(found)
}

/// A plain string constant: string tokens (no bytes, f- or t-strings), in parentheses or not.
fn literal(mut toks: &[Tok]) -> Option<String> {
    while let [Tok::Op('('), inner @ .., Tok::Op(')')] = toks {
        toks = inner;
    }
    if toks.is_empty() {
        return None;
    }
    let mut out = String::new();
    for t in toks {
        match t {
            Tok::Str(prefix, v) if !prefix.contains(['b', 'f', 't']) => out.push_str(v),
            _ => return None,
        }
    }
    Some(out)
}

/// True for `if __name__ == "__main__":` (either side), returning what follows the colon.
fn main_guard(stmt: &[Tok]) -> Option<&[Tok]> {
    let rest = match stmt {
        [Tok::Name(kw), Tok::Name(n), Tok::Op('≡'), Tok::Str(p, v), Tok::Op(':'), rest @ ..]
        | [Tok::Name(kw), Tok::Str(p, v), Tok::Op('≡'), Tok::Name(n), Tok::Op(':'), rest @ ..]
            if kw == "if" && n == "__name__" && v == "__main__" && !p.contains(['b', 'f']) =>
        {
            rest
        }
        _ => return None,
    };
    Some(rest)
}

/// setup.py's `python_requires`.
pub(super) fn from_setup_py(src: &str) -> Option<String> {
    let lines = logical_lines(src);
    let mut found: Option<String> = None;
    fn take(stmt: &[Tok], found: &mut Option<String>) {
        if let Some(Some(v)) = call_keyword(stmt) {
            *found = Some(v);
        }
    }
    let mut i = 0;
    while i < lines.len() {
        let line = &lines[i];
        i += 1;
        if line.indent != 0 {
            continue;
        }
        if let Some(rest) = main_guard(&line.toks) {
            if !rest.is_empty() {
                for s in statements(rest) {
                    take(s, &mut found);
                }
                continue;
            }
            // The block: its first line's indentation is the block's.
            while let Some(first) = lines.get(i) {
                if first.indent == 0 {
                    // `else:` belongs to the same `if`: its block counts too.
                    if first.toks == [Tok::Name("else".into()), Tok::Op(':')] {
                        i += 1;
                        continue;
                    }
                    break;
                }
                let block = first.indent;
                while let Some(l) = lines.get(i).filter(|l| l.indent != 0) {
                    if l.indent == block {
                        for s in statements(&l.toks) {
                            take(s, &mut found);
                        }
                    }
                    i += 1;
                }
            }
            continue;
        }
        for s in statements(&line.toks) {
            take(s, &mut found);
        }
    }
    found.filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setup_cfg_options() {
        assert_eq!(
            from_setup_cfg("[metadata]\nname = x\n\n[options]\npython_requires = >=3.10\n")
                .as_deref(),
            Some(">=3.10")
        );
        assert_eq!(
            from_setup_cfg("[options]\n# c\nPython_Requires:\n    >=3.9,\n    <4\n").as_deref(),
            Some(">=3.9,\n<4")
        );
        assert_eq!(
            from_setup_cfg("[metadata]\npython_requires = >=3.9\n"),
            None
        );
        assert_eq!(
            from_setup_cfg("[DEFAULT]\npython_requires = >=3.12\n[options]\nzip_safe = 0\n")
                .as_deref(),
            Some(">=3.12")
        );
        assert_eq!(
            from_setup_cfg("[DEFAULT]\npython_requires = >=3.12\n"),
            None,
            "no [options]"
        );
    }

    #[test]
    fn setup_py_keyword_of_a_top_level_setup_call() {
        let p = |s: &str| from_setup_py(s);
        assert_eq!(
            p("from setuptools import setup\nsetup(\n    name='x',  # n\n    python_requires=\">=3.10\",\n)\n")
                .as_deref(),
            Some(">=3.10")
        );
        assert_eq!(
            p("import setuptools\nsetuptools.setup(python_requires=('>=3' '.11'))\n").as_deref(),
            Some(">=3.11")
        );
        assert_eq!(
            p("if __name__ == '__main__':\n    setup(python_requires='>=3.12')\n").as_deref(),
            Some(">=3.12")
        );
        assert_eq!(
            p("if \"__main__\" == __name__: setup(python_requires='>=3.13')\n").as_deref(),
            Some(">=3.13")
        );
        // Nested, assigned, computed or not a str: not read.
        assert_eq!(
            p("def main():\n    setup(python_requires='>=3.12')\n"),
            None
        );
        assert_eq!(
            p("if __name__ == '__main__':\n    if x:\n        setup(python_requires='>=3.12')\n"),
            None
        );
        assert_eq!(p("x = setup(python_requires='>=3.12')\n"), None);
        assert_eq!(p("setup(python_requires=REQ)\n"), None);
        assert_eq!(p("setup(python_requires=f'>=3.{m}')\n"), None);
        assert_eq!(p("setup(python_requires=b'>=3.9')\n"), None);
        assert_eq!(p("setup(**dict(python_requires='>=3.9'))\n"), None);
        assert_eq!(p("s = '''\nsetup(python_requires=\">=3.9\")\n'''\n"), None);
        assert_eq!(p("# setup(python_requires='>=3.9')\n"), None);
        // The last one wins; an empty one is none.
        assert_eq!(
            p("setup(python_requires='>=3.9')\nsetup(python_requires='>=3.11')\n").as_deref(),
            Some(">=3.11")
        );
        assert_eq!(p("setup(python_requires='')\n"), None);
    }
}
