//! `pookie-ns build`: makes each bundle a project directory (`resolve_bundles`: a directory, an
//! sdist unpacked, a requirement fetched from the index or the store's cache), resolves the
//! targets of each project and loads the base OSes they need (`plan_bundle`), runs one worker
//! process per target of all of them (up to `--jobs` at a time) with a progress line each,
//! copies the wheels of the targets that passed to `--out`, and reports once for the group.
//! This file holds the phase sequence; each phase lives in its own file: `bundles.rs` (bundles
//! and their projects), `resolve.rs` (targets, modes and toolchains, base OSes), `jobs.rs` (one
//! job per target; the frontends' build commands in `frontend.rs`), `schedule.rs` (the workers
//! run; in which waves for abi3 wheels, `abi3.rs`), `finish.rs` (wheels to --out, report, exit status).
//!
//! ```text
//! build (this process: plans, loads base OSes, shows progress; threads, never forks a sandbox)
//!  ├ pookie-ns __build-target job.json    (worker/: one target, single-threaded)
//!  └ pookie-ns __build-target job.json
//! ```
//! Store layout of a build's output: `output/<branch>/<project>/<target>/` holds `job.json`,
//! `build.log`, `test.log`, `before-all.log`, `pookie-ns.log`, `wheelhouse/` and `result.json`;
//! `output/<branch>/<project>/report.json` the whole report and `report.html` the same as a page
//! (a group's: `output/<branch>/group-<wheels file stem>/`).

mod abi3;
pub mod backends;
mod bundles;
mod finish;
mod frontend;
pub mod image;
mod jobs;
pub mod plan;
pub mod report;
pub mod report_html;
pub mod request;
mod resolve;
mod schedule;
pub mod skip_existing;
pub mod worker;

use std::path::PathBuf;
use std::time::Instant;

use crate::branch;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::store::{self, Store};
use bundles::{read_project, resolve_bundles, Bundle};
use finish::{finish, ReportHeader};
use jobs::make_jobs;
use request::{BuildRequest, Output};
use resolve::{ensure_base_oses, resolve_targets, Resolution};
use worker::TargetJob;

/// `pookie-ns build`, in phases: check the settings → resolve the bundles (directories, sdists,
/// requirements) → plan each bundle (read its project → resolve its targets → ensure their base
/// OSes → make one job per target) → run the workers of all bundles → deliver the wheels and the
/// report. A group (several bundles, or a wheels file) is one plan: the base OSes, instances and
/// before-all layers its packages share are made once, and the workers run in parallel across all.
pub fn build(config: &Config, store: &Store, args: &BuildRequest) -> Result<i32> {
    let started = Instant::now();
    let ui = args.output;
    let max_workers = args.jobs;
    let bundles = resolve_bundles(config, store, args, ui.say)?;
    let mut jobs: Vec<TargetJob> = Vec::new();
    let mut skipped = Vec::new();
    let mut projects: Vec<String> = Vec::new();
    let mut output_dir = None;
    let mut abi3_projects = Vec::new();
    for b in &bundles.list {
        let Some(p) = plan_bundle(config, store, args, b)? else {
            continue;
        };
        if projects.contains(&p.name) {
            return Err(Error::usage(format!(
                "{} is named twice in this build (as project {}); name each package once",
                b.shown, p.name
            )));
        }
        if abi3::may_be_abi3(&b.dir) {
            abi3_projects.push(p.name.clone());
        }
        projects.push(p.name);
        jobs.extend(p.jobs);
        skipped.extend(p.skipped);
        output_dir = output_dir.or(p.output_dir);
    }
    if args.print_build_identifiers || jobs.is_empty() {
        return Ok(0);
    }
    // Targets whose base OS failed to load fail with the reason; the others run.
    let mut runnable: Vec<TargetJob> = jobs
        .iter()
        .filter(|j| j.unavailable.is_none())
        .cloned()
        .collect();
    let mut ran = if runnable.is_empty() {
        Vec::new()
    } else {
        abi3::run_workers_abi3_once(
            config,
            store,
            ui,
            &mut runnable,
            &abi3_projects,
            max_workers,
        )?
    }
    .into_iter();
    let mut results = Vec::new();
    for job in &jobs {
        results.push(match &job.unavailable {
            Some(why) => worker::unavailable_result(job, why)?,
            None => ran.next().expect("a result for every target that ran"),
        });
    }
    let interrupted = crate::process::interrupted();
    if interrupted.is_some() {
        // Workers killed after the grace period leave their workspaces: their owners are gone.
        store.sweep_stale()?;
    }
    let group = args.wheels_file.is_some() || bundles.list.len() > 1;
    let header = ReportHeader {
        project_name: if group {
            bundles.group_name.clone()
        } else {
            projects[0].clone()
        },
        bundle: match (&args.wheels_file, group) {
            (Some(f), true) => std::fs::canonicalize(f).unwrap_or_else(|_| f.clone()),
            _ => bundles.list[0].dir.clone(),
        },
        group,
        output_dir,
        skipped,
        sources: bundles
            .list
            .iter()
            .filter_map(|b| b.source.clone())
            .collect(),
        max_workers,
        started,
        interrupted,
    };
    finish(store, args, header, &jobs, results)
}

/// How the build talks (the request's [`Output`]).
type Ui = Output;

/// The branch of a build, checked before anything runs: a valid name with a source list.
pub fn check_branch(config: &Config, branch: &str) -> Result<()> {
    store::check_name(branch)?;
    let branches = branch::branches(&config.config_dir);
    if !branches.contains(&branch.to_string()) {
        return Err(Error::usage(format!(
            "no branch {branch:?}: the branches are {} (add one as {})",
            branches.join(", "),
            branch::list_path(&config.config_dir, branch).display()
        )));
    }
    Ok(())
}

/// One bundle's part of the plan: its project's name, its jobs (their job.json written) and
/// the targets it leaves out.
struct BundlePlan {
    name: String,
    jobs: Vec<TargetJob>,
    skipped: Vec<plan::Skipped>,
    /// The project's own output dir (cibuildwheel's `output-dir`).
    output_dir: Option<String>,
}

/// Plans one bundle: its project read, its targets resolved, the base OSes they need loaded on
/// first use, one job per target. `None` when there is nothing to run (identifiers printed, or
/// nothing left and --allow-empty).
fn plan_bundle(
    config: &Config,
    store: &Store,
    args: &BuildRequest,
    b: &Bundle,
) -> Result<Option<BundlePlan>> {
    let ui = args.output;
    let mut request = read_project(args, b)?;
    let mut targets = match resolve_targets(config, store, args, &b.settings, &mut request, ui)? {
        Resolution::Targets(t) => t,
        Resolution::Done => return Ok(None),
    };
    // --skip-existing-on: what the index has already is skipped before any base OS is loaded.
    if let Some(index) = &args.skip_existing_on {
        let (name, version) =
            skip_existing::release_of(&b.dir, request.project.name.as_deref(), b.source.as_ref())?;
        if skip_existing::apply(index, &name, &version, &mut targets, ui)? == 0 {
            if ui.say {
                eprintln!(
                    "pookie-ns: {}: {index} has the wheel of every target of {name} {version}: \
                     nothing to build",
                    b.shown
                );
            }
            return Ok(None);
        }
    }
    let unloaded = ensure_base_oses(config, store, &targets, ui)?;
    let jobs = make_jobs(store, args, &b.settings, &request, &targets, &unloaded, ui)?;
    Ok(Some(BundlePlan {
        output_dir: request.project.config.output_dir.clone(),
        name: request.project_name,
        jobs,
        skipped: targets.skipped,
    }))
}

/// Where a build's per-target output lives, for `list`/tests.
pub fn output_dir(store: &Store, branch: &str, project: &str) -> PathBuf {
    store.root.join("output").join(branch).join(project)
}
