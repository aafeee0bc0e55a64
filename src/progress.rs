//! What long steps show while they run (a one-line spinner on stderr) and what they show when
//! they fail (the end of their log).

use std::path::Path;

/// A spinner with `msg` and the elapsed time; hidden when `quiet`. It does not tick yet: the
/// caller calls `enable_steady_tick` once nothing will be forked any more (the tick is a thread).
pub fn spinner(msg: String, quiet: bool) -> indicatif::ProgressBar {
    if quiet {
        return indicatif::ProgressBar::hidden();
    }
    let s = indicatif::ProgressBar::new_spinner();
    s.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {msg} {elapsed}")
            .expect("valid template"),
    );
    s.set_message(msg);
    s
}

/// The last `n` lines of a log file, for an error message.
pub fn log_tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    #[test]
    fn log_tail_keeps_the_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("log");
        std::fs::write(&p, "a\nb\nc\n").unwrap();
        assert_eq!(super::log_tail(&p, 2), "b\nc");
        assert_eq!(super::log_tail(&p, 10), "a\nb\nc");
        assert_eq!(super::log_tail(&dir.path().join("missing"), 3), "");
    }
}
