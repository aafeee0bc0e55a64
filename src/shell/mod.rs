//! The POSIX shell pookie-ns writes, in one place: quoting, word splitting (`shlex`), the
//! fragments of `scripts/` (each a POSIX sh file that shellcheck reads, parameterised by shell
//! variables set before it), the traced command lines of a step, and the assembly of a step's
//! script (its environment exported, a header line, its body). Every module that runs a script
//! inside a base OS — a build's steps, a branch's refresh, the toolchains' compiler wrappers,
//! mmdebstrap's hooks — builds it from here.

pub mod scripts;

/// Single-quotes a word for the shell; a word of only safe characters stays as it is.
pub fn quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:@+,".contains(c))
    {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// `name=VALUE` lines, each value quoted, to set shell variables before a fragment. A value
/// with `$` or a backquote is a literal that the fragment expands itself (a repair command's
/// `"$w"`): shellcheck is told so.
pub fn assignments(vars: &[(&str, &str)]) -> String {
    vars.iter()
        .map(|(k, v)| {
            let literal = if v.contains(['$', '`']) {
                "# shellcheck disable=SC2016 # expanded by the fragment, not here\n"
            } else {
                ""
            };
            format!("{literal}{k}={}\n", quote(v))
        })
        .collect()
}

/// A script fragment preceded by its parameters, each a shell assignment; it ends in a newline.
pub fn fragment(vars: &[(&str, &str)], text: &str) -> String {
    let mut s = assignments(vars);
    s.push_str(text);
    if !s.ends_with('\n') {
        s.push('\n');
    }
    s
}

/// A command of a step's script, shown in the log (`+ shown`, as written: not expanded) before
/// it runs.
pub fn traced(shown: &str, command: &str) -> String {
    format!(
        "# shellcheck disable=SC2016,SC1003 # the command as written, quoted by quote()\nprintf '%s\\n' {}\n{command}\n",
        quote(&format!("+ {shown}"))
    )
}

/// A step's whole script: `set -e`, each `(NAME, WORD)` exported in order (WORD is a shell word,
/// expanded as the shell expands it: cibuildwheel's `environment` may refer to `$PATH` or run
/// `$(cmd)`), an `echo` of `header` with the machine it runs on, then `body`.
pub fn step_script(exports: &[(String, String)], header: &str, body: &str) -> String {
    let mut s = String::from("set -e\n");
    for (k, v) in exports {
        s.push_str(&format!("export {k}={v}\n"));
    }
    s.push_str(&format!("echo \"pookie-ns: {header} ($(uname -m))\"\n"));
    s.push_str(body);
    s.push('\n');
    s
}

/// Splits a string into words the way the POSIX shell does (quotes removed; inside double
/// quotes a backslash escapes only `$`, `` ` ``, `"`, `\` and a newline), with `shlex`.
pub fn split_words(s: &str) -> Result<Vec<String>, String> {
    shlex::split(s).ok_or_else(|| format!("unterminated quote or trailing backslash in {s:?}"))
}

/// For unit tests: runs `cmd` and returns its stdout; a failure fails the test with `what` and
/// the command's stderr.
#[cfg(test)]
pub fn output_ok(what: &str, cmd: &mut std::process::Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{what}: {cmd:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `sh -c 'printf %s WORD'` prints for each quoted word is the word itself.
    #[test]
    fn quoted_words_come_back_unchanged_through_sh() {
        for w in [
            "",
            "plain",
            "a b",
            "it's",
            "$HOME",
            "`x`",
            "a\\b",
            "\"q\"",
            "new\nline",
            "*",
        ] {
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(format!("printf %s {}", quote(w)))
                .output()
                .unwrap();
            assert_eq!(String::from_utf8(out.stdout).unwrap(), w, "{w:?}");
        }
    }

    #[test]
    fn assignments_set_each_variable() {
        let script = format!(
            "{}printf '%s|%s' \"$a\" \"$b\"",
            assignments(&[("a", "x y"), ("b", "it's")])
        );
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(script)
            .output()
            .unwrap();
        assert_eq!(String::from_utf8(out.stdout).unwrap(), "x y|it's");
    }
}
