//! What a build reports for each target: the worker process writes one [`TargetResult`] as JSON;
//! `build` gathers them into `report.json` and the table it prints.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::project::Mode;
use crate::store::human_size;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    Passed,
    /// Built; no test command was configured.
    Built,
    BuildFailed,
    TestFailed,
    /// pookie-ns itself could not carry the step out (no base OS, a sandbox error, a crash).
    Error,
    /// Stopped by SIGINT or SIGTERM to `build` before it finished (or before it started).
    Interrupted,
}

impl Outcome {
    pub fn ok(self) -> bool {
        matches!(self, Outcome::Passed | Outcome::Built)
    }

    pub fn label(self) -> &'static str {
        match self {
            Outcome::Passed => "passed",
            Outcome::Built => "built (no tests)",
            Outcome::BuildFailed => "BUILD FAILED",
            Outcome::TestFailed => "TEST FAILED",
            Outcome::Error => "ERROR",
            Outcome::Interrupted => "INTERRUPTED",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SetupState {
    /// The project has no before-all command.
    None,
    /// It ran in this build and its layer was cached.
    Ran,
    /// Its cached layer from an earlier build was used.
    Cached,
    Failed,
}

/// One target's outcome and figures.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TargetResult {
    /// The project the target belongs to (a group build has several).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// The identifier (`cp311-manylinux_aarch64`), or `cp311-manylinux_2_28_aarch64` when a
    /// policy was asked for.
    pub target: String,
    /// cibuildwheel's identifier, what the selectors match: `cp311-manylinux_aarch64`
    pub identifier: String,
    /// `uname -m` spelling
    pub arch: String,
    pub python: String,
    /// The platform asked for: `manylinux_aarch64` (the default policy) or a named one,
    /// `manylinux_2_28_aarch64`.
    pub platform_tag: String,
    pub mode: Mode,
    /// The toolchain of a cross build (or of a native one with another compiler): `gcc-cross`,
    /// `zig`, `clang`; none for the base OS's own gcc.
    #[serde(default)]
    pub toolchain: Option<String>,
    /// Its setup layer: made in this build, cached from an earlier one, or failed.
    #[serde(default = "no_setup")]
    pub toolchain_setup: SetupState,
    /// How the wheel was repaired: `auditwheel`, the project's command, or not at all.
    #[serde(default)]
    pub repair: String,
    /// `NAME/ARCH` of the base OS the build ran on, and the one the tests ran on.
    pub build_base: String,
    pub test_base: String,
    /// The image the target built in (`REFERENCE@sha256:...`), when its base OS is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    pub result: Outcome,
    /// File name of the wheel built.
    pub wheel: Option<String>,
    /// The platform tag of that wheel, as delivered (auditwheel's):
    /// `manylinux2014_aarch64.manylinux_2_17_aarch64`.
    #[serde(default)]
    pub wheel_tag: Option<String>,
    /// Where the wheel was copied (the --out directory), when the target passed.
    pub wheel_path: Option<PathBuf>,
    /// The target whose build made this target's wheel: an abi3 wheel is built once per arch
    /// and tested on every CPython (none: built by this target).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wheel_built_by: Option<String>,
    pub before_all: SetupState,
    /// Bringing the instances up to date (apt refresh when due) and before-all, in seconds.
    pub prepare_secs: Option<f64>,
    pub before_all_secs: Option<f64>,
    pub build_secs: Option<f64>,
    pub test_secs: Option<f64>,
    pub total_secs: f64,
    pub build_exit_code: Option<i32>,
    pub test_exit_code: Option<i32>,
    /// Peak resident set size of the largest process of the target's build and test (KiB,
    /// `getrusage(RUSAGE_CHILDREN)` of its worker).
    pub peak_rss_kib: Option<u64>,
    /// Bytes the build left in its workspace's upper layer.
    pub workspace_bytes: Option<u64>,
    pub before_all_log: Option<PathBuf>,
    #[serde(default)]
    pub toolchain_log: Option<PathBuf>,
    pub build_log: Option<PathBuf>,
    pub test_log: Option<PathBuf>,
    /// pookie-ns's own log of the target (its worker's messages).
    pub worker_log: PathBuf,
    /// The failed step's workspace, kept by --keep-failed.
    pub kept_workspace: Option<PathBuf>,
    pub error: Option<String>,
}

fn no_setup() -> SetupState {
    SetupState::None
}

impl TargetResult {
    /// The log to read when this target failed.
    pub fn failure_log(&self) -> &PathBuf {
        match self.result {
            Outcome::TestFailed => self.test_log.as_ref(),
            Outcome::BuildFailed if self.before_all == SetupState::Failed => {
                self.before_all_log.as_ref()
            }
            Outcome::BuildFailed if self.toolchain_setup == SetupState::Failed => {
                self.toolchain_log.as_ref()
            }
            Outcome::BuildFailed => self.build_log.as_ref(),
            _ => None,
        }
        .unwrap_or(&self.worker_log)
    }
}

/// The whole build's report (`report.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub bundle: PathBuf,
    pub project: String,
    pub branch: String,
    pub out: PathBuf,
    pub jobs: usize,
    pub total_secs: f64,
    pub passed: usize,
    pub failed: usize,
    /// Targets the project's build/skip selectors left out.
    /// Targets left out (by requires-python, the selectors, or because nothing provides their
    /// CPython for their arch), each with the reason.
    pub skipped: Vec<super::plan::Skipped>,
    pub targets: Vec<TargetResult>,
    /// The sdists built (requirements resolved on the index, sdist files), with their hashes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<crate::sources::SourceRecord>,
}

/// Combines the reports of several builds of one project and branch (one CI job per identifier,
/// `build --only ID`) into the report one build of them all would write: every target once
/// (a later report's wins), the counts recomputed, `skipped` what no report built, `total_secs`
/// and `jobs` those of the longest and widest build.
pub fn merge(reports: Vec<Report>) -> Result<Report, String> {
    let mut it = reports.into_iter();
    let mut merged = it.next().ok_or("no report to merge")?;
    let mut skipped: Vec<super::plan::Skipped> = std::mem::take(&mut merged.skipped);
    for r in it {
        if r.project != merged.project || r.branch != merged.branch {
            return Err(format!(
                "the reports are of different builds: {}/{} and {}/{} (merge the reports of one \
                 project on one branch)",
                merged.project, merged.branch, r.project, r.branch
            ));
        }
        merged.total_secs = merged.total_secs.max(r.total_secs);
        merged.jobs = merged.jobs.max(r.jobs);
        skipped.extend(r.skipped);
        for t in r.targets {
            match merged
                .targets
                .iter_mut()
                .find(|m| m.target == t.target && m.project == t.project)
            {
                Some(m) => *m = t,
                None => merged.targets.push(t),
            }
        }
    }
    // A target left out by one job (its --only named another) but built by another is no skip.
    skipped.sort_by(|a, b| a.identifier.cmp(&b.identifier));
    skipped.dedup_by(|a, b| a.identifier == b.identifier);
    skipped.retain(|s| !merged.targets.iter().any(|t| t.identifier == s.identifier));
    merged.skipped = skipped;
    merged.failed = merged.targets.iter().filter(|t| !t.result.ok()).count();
    merged.passed = merged.targets.len() - merged.failed;
    Ok(merged)
}

/// `pookie-ns report merge`: reads the files, writes the merged report (to `output`, else
/// stdout). Exit status 1 when a merged target failed, as the build's.
pub fn merge_files(
    paths: &[std::path::PathBuf],
    output: Option<&std::path::Path>,
) -> crate::Result<i32> {
    let mut reports = Vec::new();
    for p in paths {
        let text = std::fs::read(p).map_err(|e| crate::Error::io("read the report", p, e))?;
        let r: Report = serde_json::from_slice(&text).map_err(|e| {
            crate::Error::usage(format!(
                "{}: not a report.json written by `pookie-ns build`: {e}",
                p.display()
            ))
        })?;
        reports.push(r);
    }
    let merged = merge(reports).map_err(crate::Error::usage)?;
    let json = serde_json::to_string_pretty(&merged).expect("serializable") + "\n";
    match output {
        Some(path) => std::fs::write(path, json)
            .map_err(|e| crate::Error::io("write the merged report", path, e))?,
        None => print!("{json}"),
    }
    Ok(if merged.failed == 0 { 0 } else { 1 })
}

fn secs(v: Option<f64>) -> String {
    v.map_or("-".into(), |s| format!("{s:.1}"))
}

/// The report as a table, one line per target.
pub fn table(report: &Report) -> String {
    // A group build's targets are named with their project.
    let group = report
        .targets
        .iter()
        .any(|t| t.project.is_some() && t.project.as_deref() != Some(&report.project));
    let header = [
        "target",
        "python",
        "mode",
        "toolchain",
        "wheel",
        "prep s",
        "build s",
        "test s",
        "result",
        "peak RSS",
        "disk",
    ];
    let rows: Vec<[String; 11]> = report
        .targets
        .iter()
        .map(|t| {
            [
                match (&t.project, group) {
                    (Some(p), true) => format!("{p}/{}", t.target),
                    _ => t.target.clone(),
                },
                t.python.clone(),
                t.mode.to_string(),
                t.toolchain.clone().unwrap_or_else(|| "-".into()),
                t.wheel.clone().unwrap_or_else(|| "-".into()),
                secs(t.prepare_secs),
                secs(t.build_secs),
                secs(t.test_secs),
                t.result.label().to_string(),
                t.peak_rss_kib
                    .map_or("-".into(), |k| human_size(k.saturating_mul(1024))),
                t.workspace_bytes.map_or("-".into(), human_size),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i > 0 {
                s.push_str("  ");
            }
            // Figures right-aligned, words left-aligned.
            if matches!(i, 5 | 6 | 7 | 9 | 10) {
                s.push_str(&format!("{cell:>w$}"));
            } else {
                s.push_str(&format!("{cell:<w$}"));
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(&header.map(String::from));
    for row in &rows {
        out.push_str(&line(row));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(target: &str, outcome: Outcome) -> TargetResult {
        TargetResult {
            project: None,
            target: target.into(),
            identifier: target.into(),
            arch: "x86_64".into(),
            python: "3.11".into(),
            platform_tag: "manylinux_x86_64".into(),
            mode: Mode::Native,
            toolchain: None,
            toolchain_setup: SetupState::None,
            repair: "auditwheel".into(),
            build_base: "debian-bookworm/amd64".into(),
            test_base: "debian-bookworm/amd64".into(),
            image: None,
            result: outcome,
            wheel: Some("fastmath-0.1.0-cp311-cp311-manylinux_2_17_x86_64.whl".into()),
            wheel_tag: Some("manylinux_2_17_x86_64".into()),
            wheel_path: None,
            before_all: SetupState::Cached,
            prepare_secs: Some(0.5),
            before_all_secs: None,
            build_secs: Some(1.234),
            test_secs: None,
            total_secs: 3.0,
            build_exit_code: Some(0),
            test_exit_code: None,
            peak_rss_kib: Some(2048),
            workspace_bytes: Some(3 * 1024 * 1024),
            before_all_log: None,
            toolchain_log: Some("/o/toolchain.log".into()),
            build_log: Some("/o/build.log".into()),
            test_log: Some("/o/test.log".into()),
            worker_log: "/o/pookie-ns.log".into(),
            kept_workspace: None,
            wheel_built_by: None,
            error: None,
        }
    }

    #[test]
    fn table_has_a_line_per_target_with_aligned_columns() {
        let report = Report {
            bundle: "/b".into(),
            project: "fastmath".into(),
            branch: "stable".into(),
            out: "dist".into(),
            jobs: 2,
            total_secs: 3.0,
            passed: 1,
            failed: 1,
            skipped: vec![],
            sources: vec![],
            targets: vec![
                result("cp311-manylinux_x86_64", Outcome::Passed),
                result("cp311-manylinux_aarch64", Outcome::TestFailed),
            ],
        };
        let t = table(&report);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("target"));
        assert!(lines[1].contains("passed") && lines[1].contains("1.2"));
        assert!(lines[1].contains("2.00 MiB") && lines[1].contains("3.00 MiB"));
        assert!(lines[2].contains("TEST FAILED"));
        let col = |l: &str| l.find("3.11").unwrap();
        assert_eq!(col(lines[1]), col(lines[2]));
    }

    fn report(targets: Vec<TargetResult>, skipped: &[&str], secs: f64) -> Report {
        Report {
            sources: vec![],
            bundle: "/b".into(),
            project: "fastmath".into(),
            branch: "stable".into(),
            out: "dist".into(),
            jobs: 1,
            total_secs: secs,
            passed: targets.iter().filter(|t| t.result.ok()).count(),
            failed: targets.iter().filter(|t| !t.result.ok()).count(),
            skipped: skipped
                .iter()
                .map(|s| super::super::plan::Skipped {
                    identifier: s.to_string(),
                    reason: "left out by the project's build/skip selectors".into(),
                })
                .collect(),
            targets,
        }
    }

    #[test]
    fn three_partial_reports_merge_into_the_whole_build_s() {
        let a = result("cp311-manylinux_x86_64", Outcome::Passed);
        let b = result("cp311-manylinux_aarch64", Outcome::TestFailed);
        let c = result("cp311-manylinux_ppc64le", Outcome::Built);
        let all = [
            "cp311-manylinux_x86_64",
            "cp311-manylinux_aarch64",
            "cp311-manylinux_ppc64le",
        ];
        // Each --only job left the others out; the whole build skipped armv7l by selector.
        let others = |me: &str| {
            let mut v: Vec<&str> = all.iter().copied().filter(|x| *x != me).collect();
            v.push("cp311-manylinux_armv7l");
            v
        };
        let whole = report(
            vec![a.clone(), b.clone(), c.clone()],
            &["cp311-manylinux_armv7l"],
            9.0,
        );
        let merged = merge(vec![
            report(vec![a], &others(all[0]), 3.0),
            report(vec![b], &others(all[1]), 9.0),
            report(vec![c], &others(all[2]), 4.0),
        ])
        .unwrap();
        assert_eq!(
            serde_json::to_value(&merged).unwrap(),
            serde_json::to_value(&whole).unwrap()
        );
        assert_eq!((merged.passed, merged.failed), (2, 1));

        let mut other = report(vec![], &[], 1.0);
        other.branch = "testing".into();
        assert!(merge(vec![whole, other])
            .unwrap_err()
            .contains("different builds"));
        assert!(merge(vec![]).is_err());
    }

    #[test]
    fn the_failure_log_is_the_failed_step_s() {
        let r = result("t", Outcome::TestFailed);
        assert_eq!(r.failure_log(), &PathBuf::from("/o/test.log"));
        let mut r = result("t", Outcome::BuildFailed);
        assert_eq!(r.failure_log(), &PathBuf::from("/o/build.log"));
        r.toolchain_setup = SetupState::Failed;
        assert_eq!(r.failure_log(), &PathBuf::from("/o/toolchain.log"));
        r.result = Outcome::Error;
        assert_eq!(r.failure_log(), &PathBuf::from("/o/pookie-ns.log"));
    }
}
