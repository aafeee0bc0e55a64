//! A job's step scripts, from [`crate::shell`]'s fragments and assembly: the target's CPython
//! selected, the project's environment (and `environment-pass`) exported.

use super::TargetJob;

/// Where the build and test steps find the target's CPython under its short names.
const PYTHON_BIN: &str = "/run/pookie-ns/python/bin";

use crate::shell::scripts::PYTHON_SELECT;
pub(super) use crate::shell::scripts::{BUILD_REQUIRES, CROSS_PRELUDE, DELIVER, REPAIR_COMMAND};
pub(super) use crate::shell::{fragment, quote as sh_quote, traced};

/// The start of a build or test step: `python`, `pip` … run the target's own CPython
/// (scripts/python-select.sh).
pub(super) fn python_selection(job: &TargetJob) -> String {
    fragment(
        &[
            ("POOKIE_NS_PYTHON", &target_interpreter(job)),
            ("POOKIE_NS_PYTHON_BIN", PYTHON_BIN),
        ],
        PYTHON_SELECT,
    )
}

/// The target's interpreter: an image's `/opt/python/<id>/bin/python`, else `python3.X`.
fn target_interpreter(job: &TargetJob) -> String {
    job.interpreter
        .clone()
        .unwrap_or_else(|| format!("python{}", job.target.python))
}

/// A shell script: the project's environment exported (each value a shell word, expanded in
/// order as cibuildwheel expands it: `$PATH`, `$(cmd)`, quotes), a header line, and `body`.
pub(super) fn script_text(job: &TargetJob, what: &str, body: &str) -> String {
    script_text_with(job, what, body, &[])
}

/// [`script_text`] with more variables exported after the environment (`test-environment`).
pub(super) fn script_text_with(
    job: &TargetJob,
    what: &str,
    body: &str,
    more: &[(String, String)],
) -> String {
    let passed: Vec<(String, String)> = job
        .environment_pass
        .iter()
        .filter_map(|k| std::env::var(k).ok().map(|v| (k.clone(), sh_quote(&v))))
        .collect();
    let exports: Vec<(String, String)> = passed
        .into_iter()
        .chain(job.environment.iter().cloned())
        .chain(more.iter().cloned())
        .collect();
    crate::shell::step_script(&exports, &format!("{} {what}", job.target.name()), body)
}
