//! Quoting for the POSIX shell scripts pookie-ns writes (the steps a build runs inside a base
//! OS, mmdebstrap's hooks): one implementation for every module that assembles a script.

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

/// `name=VALUE` lines, each value quoted, to set shell variables before a fragment.
pub fn assignments(vars: &[(&str, &str)]) -> String {
    vars.iter()
        .map(|(k, v)| format!("{k}={}\n", quote(v)))
        .collect()
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
