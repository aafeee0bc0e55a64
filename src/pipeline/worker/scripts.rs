//! The shell fragments steps are made of (`src/pipeline/scripts/`): POSIX sh, parameterised by
//! shell variables that [`fragment`] sets before each, checked by shellcheck in CI
//! (scripts/test); and the assembly of a step's script around them: the target's CPython
//! selected, the project's environment exported, shell words quoted.

use super::Job;

/// Where the build and test steps find the target's CPython under its short names.
const PYTHON_BIN: &str = "/run/pookie-ns/python/bin";

pub(super) const PYTHON_SELECT: &str = include_str!("../scripts/python-select.sh");
pub(super) const CROSS_PRELUDE: &str = include_str!("../scripts/cross-prelude.sh");
pub(super) const DELIVER: &str = include_str!("../scripts/deliver.sh");
pub(super) const REPAIR_COMMAND: &str = include_str!("../scripts/repair-command.sh");
pub(super) const BUILD_REQUIRES: &str = include_str!("../scripts/build-requires.py");

/// A script fragment preceded by its parameters, each a shell assignment.
pub(super) fn fragment(vars: &[(&str, &str)], text: &str) -> String {
    let mut s = String::new();
    for (k, v) in vars {
        s.push_str(&format!("{k}={}\n", sh_quote(v)));
    }
    s.push_str(text);
    if !s.ends_with('\n') {
        s.push('\n');
    }
    s
}

/// The start of a build or test step: `python`, `pip` … run the target's own CPython
/// (scripts/python-select.sh).
pub(super) fn python_selection(job: &Job) -> String {
    fragment(
        &[
            ("POOKIE_NS_PYTHON", &target_interpreter(job)),
            ("POOKIE_NS_PYTHON_BIN", PYTHON_BIN),
        ],
        PYTHON_SELECT,
    )
}

/// The target's interpreter: an image's `/opt/python/<id>/bin/python`, else `python3.X`.
fn target_interpreter(job: &Job) -> String {
    job.interpreter
        .clone()
        .unwrap_or_else(|| format!("python{}", job.target.python))
}

/// A shell script: the project's environment exported (each value a shell word, expanded in
/// order as cibuildwheel expands it: `$PATH`, `$(cmd)`, quotes), a header line, and `body`.
pub(super) fn script_text(job: &Job, what: &str, body: &str) -> String {
    script_text_with(job, what, body, &[])
}

/// [`script_text`] with more variables exported after the environment (`test-environment`).
pub(super) fn script_text_with(
    job: &Job,
    what: &str,
    body: &str,
    more: &[(String, String)],
) -> String {
    let mut s = String::from("set -e\n");
    let passed: Vec<(String, String)> = job
        .environment_pass
        .iter()
        .filter_map(|k| std::env::var(k).ok().map(|v| (k.clone(), sh_quote(&v))))
        .collect();
    for (k, v) in passed.iter().chain(&job.environment).chain(more) {
        s.push_str(&format!("export {k}={v}\n"));
    }
    s.push_str(&format!(
        "echo \"pookie-ns: {} {what} ($(uname -m))\"\n",
        job.target.name()
    ));
    s.push_str(body);
    s.push('\n');
    s
}

/// A command of a step's script, shown in the log (`+ shown`) before it runs.
pub(super) fn traced(shown: &str, command: &str) -> String {
    format!("echo {}\n{command}\n", sh_quote(&format!("+ {shown}")))
}

/// Single-quotes a word for the shell (the one quoting of [`crate::shell`]).
pub use crate::shell::quote as sh_quote;
