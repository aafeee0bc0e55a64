//! The last phase of `pookie-ns build`: the wheels that passed copied to `--out`, the report
//! written and printed, the exit status.

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::error::{Error, Result};
use crate::store::{self, Store};

use super::report::{self, Report, TargetResult};
use super::request::BuildRequest;
use super::worker::TargetJob;
use super::{output_dir, plan};

/// What the report of a build (one project, or a group) says besides its targets.
pub(super) struct ReportHeader {
    /// The directory name in `output/<branch>/`: the project's, or `group-<wheels file>`.
    pub(super) project_name: String,
    /// The project directory, or the wheels file of a group.
    pub(super) bundle: PathBuf,
    pub(super) group: bool,
    /// The first project's own output dir (cibuildwheel's `output-dir`).
    pub(super) output_dir: Option<String>,
    pub(super) skipped: Vec<plan::Skipped>,
    pub(super) sources: Vec<crate::sources::SourceRecord>,
    pub(super) max_workers: usize,
    pub(super) started: Instant,
    pub(super) interrupted: Option<nix::sys::signal::Signal>,
}

/// The last phase: the wheels of the targets that passed go to `--out`; the report is written
/// (`report.json`), printed (a table, or JSON with --json) and summed up; the exit status
/// follows (0, 1 when a target failed, 128 + N when a signal stopped the build).
pub(super) fn finish(
    store: &Store,
    args: &BuildRequest,
    d: ReportHeader,
    jobs: &[TargetJob],
    mut results: Vec<TargetResult>,
) -> Result<i32> {
    let out = &args
        .out
        .clone()
        .or_else(|| d.output_dir.clone().map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("dist"));
    if results.iter().any(|r| r.result.ok()) {
        std::fs::create_dir_all(out).map_err(|e| Error::io("create the output dir", out, e))?;
    }
    for (r, job) in results.iter_mut().zip(jobs) {
        if let (true, Some(wheel)) = (r.result.ok(), &r.wheel) {
            let dest = out.join(wheel);
            std::fs::copy(job.wheelhouse().join(wheel), &dest)
                .map_err(|e| Error::io("copy the wheel to", &dest, e))?;
            r.wheel_path = Some(std::fs::canonicalize(&dest).unwrap_or(dest));
        }
    }
    let failed = results.iter().filter(|r| !r.result.ok()).count();
    let out_root = output_dir(store, &args.branch, &d.project_name);
    crate::sys::mkdir_p(&out_root, 0o755)?;
    let report = Report {
        bundle: d.bundle,
        project: d.project_name,
        branch: args.branch.clone(),
        out: std::fs::canonicalize(out).unwrap_or_else(|_| out.clone()),
        jobs: d.max_workers,
        total_secs: d.started.elapsed().as_secs_f64(),
        passed: results.len() - failed,
        failed,
        skipped: d.skipped,
        targets: results,
        sources: d.sources,
    };
    let report_path = out_root.join("report.json");
    store::write_json(&report_path, &report)?;
    // The same report as a page, beside it (its log links are relative to it).
    let html_path = out_root.join("report.html");
    write_html(&html_path, &super::report_html::render(&report, &out_root))?;
    if args.output.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("serializable")
        );
    } else {
        print!("{}", report::table(&report));
    }
    for t in report.targets.iter().filter(|t| !t.result.ok()) {
        eprintln!(
            "pookie-ns: {}: {}{}; log: {}",
            match (&t.project, d.group) {
                (Some(p), true) => format!("{p}/{}", t.target),
                _ => t.target.clone(),
            },
            t.result.label(),
            t.error
                .as_ref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default(),
            t.failure_log().display()
        );
        if args.output.verbose > 0 {
            stream_log(t.failure_log());
        }
    }
    if args.output.say {
        eprintln!(
            "pookie-ns: {} target(s): {} passed, {} failed in {:.1} s{}; wheels in {}; report: {} \
             (as a page: {})",
            report.targets.len(),
            report.passed,
            report.failed,
            report.total_secs,
            d.interrupted
                .map(|s| format!(", interrupted by {s}"))
                .unwrap_or_default(),
            report.out.display(),
            report_path.display(),
            html_path.display()
        );
    }
    // The shell's convention for a command stopped by a signal: 128 + N (130 INT, 143 TERM).
    Ok(match d.interrupted {
        Some(sig) => 128 + sig as i32,
        None if failed == 0 => 0,
        None => 1,
    })
}

/// Writes `report.html` through a temporary file, as `report.json` is written.
fn write_html(path: &Path, page: &str) -> Result<()> {
    let tmp = path.with_extension("html.tmp");
    std::fs::write(&tmp, page).map_err(|e| Error::io("write", &tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io("rename into place", path, e))
}

/// Copies a failed target's log to stderr (-v).
fn stream_log(path: &Path) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    eprintln!("----- {} -----", path.display());
    eprint!("{text}");
    if !text.ends_with('\n') {
        eprintln!();
    }
    eprintln!("----- end of {} -----", path.display());
}
