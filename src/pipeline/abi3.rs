//! abi3 (limited-API) wheels, decided here alone: which projects may build one (a hint read
//! from their files), which targets build first (one per project, arch, policy and mode), and,
//! after that first wave, which of the others only test the wheel it made on their own
//! CPython (its tag says abi3 and it passed): their `job.json` names the wheel and who built
//! it, and the worker tests it instead of building ([`TargetJob::prebuilt_wheel`]).

use std::path::Path;

use crate::config::Config;
use crate::error::Result;
use crate::store::{self, Store};

use super::report::{Outcome, TargetResult};
use super::request::Output;
use super::schedule::run_workers;
use super::worker::{self, TargetJob};

/// Whether the project may build an abi3 (limited-API) wheel: PyO3's `abi3` features in
/// Cargo.toml, `py_limited_api` in setup.py, setup.cfg or pyproject.toml. Only a hint that
/// decides whether `build` builds one target per arch first: the wheel's own tag decides
/// ([`is_abi3_wheel`]).
pub fn may_be_abi3(bundle: &Path) -> bool {
    let has = |file: &str, needles: &[&str]| {
        std::fs::read_to_string(bundle.join(file))
            .is_ok_and(|text| needles.iter().any(|n| text.contains(n)))
    };
    has("Cargo.toml", &["abi3"])
        || ["setup.py", "setup.cfg", "pyproject.toml"]
            .iter()
            .any(|f| has(f, &["py_limited_api", "py-limited-api"]))
}

/// A wheel file name whose ABI tag (the second tag from the end) is `abi3`.
pub fn is_abi3_wheel(name: &str) -> bool {
    let stem = name.strip_suffix(".whl").unwrap_or(name);
    stem.rsplit('-').nth(1) == Some("abi3")
}

/// Whether `a` and `b` would build the same abi3 wheel: one project, arch, policy and mode.
fn same_wheel(a: &TargetJob, b: &TargetJob) -> bool {
    a.project == b.project
        && a.target.arch == b.target.arch
        && a.target.policy == b.target.policy
        && a.mode == b.mode
}

/// The targets that build (indexes into `jobs`, in order): every target of a project that
/// cannot build abi3 wheels, and the first of each [`same_wheel`] kind of those that may.
fn firsts(jobs: &[TargetJob], abi3_projects: &[String]) -> Vec<usize> {
    (0..jobs.len())
        .filter(|&i| {
            !abi3_projects.contains(&jobs[i].project)
                || !jobs[..i].iter().any(|j| same_wheel(j, &jobs[i]))
        })
        .collect()
}

/// After the first wave: `job` tests the wheel its first built, when that is abi3 and passed
/// (its `job.json` rewritten to say so); otherwise it builds as usual.
fn reuse(job: &mut TargetJob, first: &TargetJob, built: &TargetResult) -> Result<()> {
    if let (true, Some(wheel)) = (built.result.ok(), &built.wheel) {
        if is_abi3_wheel(wheel) {
            job.prebuilt_wheel = Some(first.wheelhouse().join(wheel));
            job.wheel_built_by = Some(built.target.clone());
            store::write_json(&job.dir.join("job.json"), job)?;
        }
    }
    Ok(())
}

/// Runs the workers of `jobs`, where the projects `abi3_projects` may build an abi3 wheel: of
/// each, first one target per arch, policy and mode (its first CPython) builds; then the other
/// targets run, testing that wheel where [`reuse`] says so. Without such a project, one wave.
/// Results in the order of `jobs`.
pub(super) fn run_workers_abi3_once(
    config: &Config,
    store: &Store,
    output: Output,
    jobs: &mut [TargetJob],
    abi3_projects: &[String],
    max_workers: usize,
) -> Result<Vec<TargetResult>> {
    let firsts = firsts(jobs, abi3_projects);
    if firsts.len() == jobs.len() {
        return run_workers(config, store, output, jobs, max_workers);
    }
    let first_jobs: Vec<TargetJob> = firsts.iter().map(|&i| jobs[i].clone()).collect();
    let first_results = run_workers(config, store, output, &first_jobs, max_workers)?;
    let mut results: Vec<Option<TargetResult>> = vec![None; jobs.len()];
    let mut rest = Vec::new();
    for i in 0..jobs.len() {
        if let Some(k) = firsts.iter().position(|&f| f == i) {
            results[i] = Some(first_results[k].clone());
            continue;
        }
        let k = firsts
            .iter()
            .position(|&f| same_wheel(&jobs[f], &jobs[i]))
            .expect("every target has a first of its kind");
        let first = jobs[firsts[k]].clone();
        reuse(&mut jobs[i], &first, &first_results[k])?;
        rest.push(i);
    }
    let rest_jobs: Vec<TargetJob> = rest.iter().map(|&i| jobs[i].clone()).collect();
    let rest_results = if crate::process::interrupted().is_some() {
        rest_jobs
            .iter()
            .map(|j| worker::unrun_entry(j, Outcome::Interrupted, None))
            .collect()
    } else {
        run_workers(config, store, output, &rest_jobs, max_workers)?
    };
    for (k, &i) in rest.iter().enumerate() {
        results[i] = Some(rest_results[k].clone());
    }
    Ok(results
        .into_iter()
        .map(|r| r.expect("every target has a result"))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abi3_wheels_and_projects() {
        assert!(is_abi3_wheel(
            "rustmath-0.1.0-cp39-abi3-manylinux_2_17_aarch64.whl"
        ));
        assert!(is_abi3_wheel("x-1.0-1-cp39-abi3-linux_x86_64.whl"));
        assert!(!is_abi3_wheel(
            "zcheck-0.1.0-cp314-cp314-manylinux_2_17_x86_64.whl"
        ));
        let dir = tempfile::tempdir().unwrap();
        assert!(!may_be_abi3(dir.path()));
        std::fs::write(
            dir.path().join("setup.py"),
            "setup(ext_modules=[Extension('a', ['a.c'])])",
        )
        .unwrap();
        assert!(!may_be_abi3(dir.path()));
        std::fs::write(
            dir.path().join("setup.cfg"),
            "[bdist_wheel]\npy_limited_api = cp39\n",
        )
        .unwrap();
        assert!(may_be_abi3(dir.path()));
        let rust = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/rust-ext");
        assert!(may_be_abi3(&rust));
    }
}
