//! What long steps show while they run (a one-line spinner on stderr) and what they show when
//! they fail (the end of their log).

use std::path::Path;

/// A one-line spinner with a message and the elapsed time, for a step that runs in a child
/// process. Its ticking is a thread, and pookie-ns forks without exec: so it ticks only between
/// [`Spinner::tick`] (once the child is started) and [`Spinner::finish`], which stops and joins
/// the thread (indicatif joins its ticker only when the bar is dropped, not when it is
/// finished). A hidden spinner never starts one.
pub struct Spinner {
    bar: Option<indicatif::ProgressBar>,
}

/// A [`Spinner`] with `msg`; hidden when `hidden`.
pub fn spinner(msg: String, hidden: bool) -> Spinner {
    if hidden {
        return Spinner { bar: None };
    }
    let s = indicatif::ProgressBar::new_spinner();
    s.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {msg} {elapsed}")
            .expect("valid template"),
    );
    s.set_message(msg);
    Spinner { bar: Some(s) }
}

impl Spinner {
    /// Starts ticking (a thread): call it only once nothing will be forked until [`finish`].
    ///
    /// [`finish`]: Spinner::finish
    pub fn tick(&self) {
        if let Some(bar) = &self.bar {
            bar.enable_steady_tick(std::time::Duration::from_millis(200));
        }
    }

    /// Clears the line and ends the ticker thread.
    pub fn finish(self) {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
            // Dropping the last handle joins the ticker thread.
            drop(bar);
        }
    }
}

/// Sizes for people, in binary units: `512 B`, `1.50 KiB` (indicatif's `HumanBytes`, as the
/// progress bars show them).
pub fn human_size(bytes: u64) -> String {
    indicatif::HumanBytes(bytes).to_string()
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
    #[should_panic(expected = "threads alive")]
    fn forking_with_a_second_thread_alive_fails_in_debug_builds() {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let t = std::thread::spawn(move || {
            let _ = rx.recv();
        });
        let result = std::panic::catch_unwind(|| {
            crate::process::debug_assert_single_threaded("a test");
        });
        drop(tx);
        t.join().unwrap();
        if let Err(e) = result {
            std::panic::resume_unwind(e);
        }
    }

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
