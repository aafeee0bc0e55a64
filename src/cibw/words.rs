//! Shell words, as cibuildwheel's options write them: splitting a string into words the way the
//! shell does, `environment`'s `NAME=VALUE` assignments (each value kept as the shell word it is,
//! to be expanded inside), and quoting a table's value so that it still expands.

/// Splits a string into words the way the POSIX shell does ([`crate::shell::split_words`]).
pub use crate::shell::split_words as shell_words;

pub(super) fn valid_var(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// cibuildwheel's `environment` string: `A=x B="$A y" C=$(cmd)`, assignments in bash syntax
/// separated by blanks. Each value is kept as the shell word it is, to be expanded inside.
pub fn parse_assignments(s: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let b: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < b.len() {
        if b[i].is_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && b[i] != '=' && !b[i].is_whitespace() {
            i += 1;
        }
        let name: String = b[start..i].iter().collect();
        if i >= b.len() || b[i] != '=' {
            return Err(format!(
                "{name:?} is not an assignment; write NAME=VALUE (several separated by spaces)"
            ));
        }
        if !valid_var(&name) {
            return Err(format!("{name:?} is not a valid variable name"));
        }
        i += 1;
        let vstart = i;
        // One shell word: quotes, $(...) and `...` may hold blanks.
        let mut depth = 0usize;
        while i < b.len() && (depth > 0 || !b[i].is_whitespace()) {
            match b[i] {
                '\\' => i += 1,
                '\'' if depth == 0 => {
                    i += 1;
                    while i < b.len() && b[i] != '\'' {
                        i += 1;
                    }
                    if i >= b.len() {
                        return Err(format!("unterminated ' in the value of {name}"));
                    }
                }
                '"' => {
                    i += 1;
                    while i < b.len() && b[i] != '"' {
                        if b[i] == '\\' {
                            i += 1;
                        }
                        i += 1;
                    }
                    if i >= b.len() {
                        return Err(format!("unterminated \" in the value of {name}"));
                    }
                }
                '$' if b.get(i + 1) == Some(&'(') => {
                    depth += 1;
                    i += 1;
                }
                ')' if depth > 0 => depth -= 1,
                _ => {}
            }
            i += 1;
        }
        if depth > 0 {
            return Err(format!("unterminated $( in the value of {name}"));
        }
        let value: String = b[vstart..i.min(b.len())].iter().collect();
        out.push((name, value));
    }
    Ok(out)
}

/// A table value as a double-quoted shell word: `$VAR` and `$(cmd)` still expand.
pub(super) fn quoted(v: &str) -> String {
    format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cibw::testing::{ok, opts};

    #[test]
    fn environment_strings_and_tables() {
        let a = parse_assignments(
            "CFLAGS='-g -Wall' CXXFLAGS=-Wall PATH=$PATH:/usr/local/bin BUILD_TIME=\"$(date -u +%s)\" X=$(echo a b)c",
        )
        .unwrap();
        assert_eq!(
            a,
            [
                ("CFLAGS".to_string(), "'-g -Wall'".to_string()),
                ("CXXFLAGS".into(), "-Wall".into()),
                ("PATH".into(), "$PATH:/usr/local/bin".into()),
                ("BUILD_TIME".into(), "\"$(date -u +%s)\"".into()),
                ("X".into(), "$(echo a b)c".into()),
            ]
        );
        assert!(parse_assignments("A='x").is_err());
        assert!(parse_assignments("1A=x").is_err());
        assert!(parse_assignments("A=$(x").is_err());
        assert_eq!(parse_assignments("  ").unwrap(), []);

        let r = ok(
            "[tool.cibuildwheel.linux.environment]\nBUILD_TIME = \"$(date)\"\nSAMPLE = 'say \"hi\"'\n",
            &[],
        );
        assert_eq!(
            opts(&r, "cp311-manylinux_x86_64").environment,
            [
                ("BUILD_TIME".to_string(), "\"$(date)\"".to_string()),
                ("SAMPLE".into(), "\"say \\\"hi\\\"\"".into())
            ]
        );
        let r = ok(
            "[tool.cibuildwheel]\nenvironment = \"A=1 B=$A\"\ntest-environment = { T = \"x\" }\nenvironment-pass = [\"CI_TOKEN\"]\n",
            &[],
        );
        let o = opts(&r, "cp311-manylinux_x86_64");
        assert_eq!(o.environment.len(), 2);
        assert_eq!(o.test_environment, [("T".into(), "\"x\"".into())]);
        assert_eq!(o.environment_pass, ["CI_TOKEN", "SOURCE_DATE_EPOCH"]);
        let r = ok("", &[("CIBW_ENVIRONMENT_PASS_LINUX", "A B")]);
        assert_eq!(
            opts(&r, "cp311-manylinux_x86_64").environment_pass,
            ["A", "B", "SOURCE_DATE_EPOCH"]
        );
    }

    #[test]
    fn shell_words_split_like_shlex() {
        assert_eq!(
            shell_words("a 'b c' \"d\\\"e\" f\\ g ''").unwrap(),
            ["a", "b c", "d\"e", "f g", ""]
        );
        assert!(shell_words("'x").is_err());
        assert!(shell_words("\"x").is_err());
    }

    /// POSIX: inside double quotes a backslash is kept before any other character (the old
    /// hand-written splitter dropped it: `"a\b"` gave `ab`).
    #[test]
    fn backslashes_in_double_quotes_follow_posix() {
        for (text, word) in [
            (r#""a\b""#, r"a\b"),
            (r#""a\\b""#, r"a\b"),
            (r#""a\$b""#, "a$b"),
            (r#""a\"b""#, "a\"b"),
            (r"a\b", "ab"),
            (r"'a\b'", r"a\b"),
        ] {
            assert_eq!(shell_words(text).unwrap(), [word], "{text}");
            // What sh itself makes of it.
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(format!("printf %s {text}"))
                .output()
                .unwrap();
            assert_eq!(String::from_utf8(out.stdout).unwrap(), word, "sh: {text}");
        }
    }
}
