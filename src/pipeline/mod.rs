//! `pookie-ns build`: makes each bundle a project directory (`resolve_bundles`: a directory, an
//! sdist unpacked, a requirement fetched from the index or the store's cache), resolves the
//! targets of each project and loads the base OSes they need (`plan_bundle`), runs one worker
//! process per target of all of them (up to `--jobs` at a time) with a progress line each,
//! copies the wheels of the targets that passed to `--out`, and reports once for the group.
//!
//! ```text
//! build (this process: plans, loads base OSes, shows progress; threads, never forks a sandbox)
//!  ├ pookie-ns __build-target job.json    (worker.rs: one target, single-threaded)
//!  └ pookie-ns __build-target job.json
//! ```
//! Store layout of a build's output: `output/<branch>/<project>/<target>/` holds `job.json`,
//! `build.log`, `test.log`, `before-all.log`, `pookie-ns.log`, `wheelhouse/` and `result.json`;
//! `output/<branch>/<project>/report.json` the whole report (a group's:
//! `output/<branch>/group-<wheels file stem>/report.json`).

pub mod backends;
mod bundles;
mod frontend;
pub mod image;
mod jobs;
pub mod plan;
pub mod report;
mod resolve;
pub mod worker;

use std::collections::VecDeque;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::branch;
use crate::cli::{BuildArgs, Cli};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::store::{self, Store};
use bundles::{read_project, resolve_bundles, Bundle};
use jobs::make_jobs;
use report::{Outcome, Report, TargetResult};
use resolve::{ensure_base_oses, resolve_targets, Resolution};
use worker::Job;

/// `pookie-ns build`, in phases: check the settings → resolve the bundles (directories, sdists,
/// requirements) → plan each bundle (read its project → resolve its targets → ensure their base
/// OSes → make one job per target) → run the workers of all bundles → deliver the wheels and the
/// report. A group (several bundles, or a wheels file) is one plan: the base OSes, instances and
/// before-all layers its packages share are made once, and the workers run in parallel across all.
pub fn build(config: &Config, store: &Store, args: &BuildArgs, cli: &Cli) -> Result<i32> {
    let started = Instant::now();
    let ui = Ui {
        // Progress bars go with --json too; messages only with -q.
        quiet: cli.quiet || cli.json,
        say: !cli.quiet,
    };
    let jobs_n = check_settings(config, args)?;
    let bundles = resolve_bundles(config, store, args, ui.say)?;
    let mut jobs: Vec<Job> = Vec::new();
    let mut skipped = Vec::new();
    let mut projects: Vec<String> = Vec::new();
    let mut output_dir = None;
    let mut abi3_projects = Vec::new();
    for b in &bundles.list {
        let Some(p) = plan_bundle(config, store, b, ui)? else {
            continue;
        };
        if projects.contains(&p.name) {
            return Err(Error::usage(format!(
                "{} is named twice in this build (as project {}); name each package once",
                b.shown, p.name
            )));
        }
        if backends::may_be_abi3(&b.dir) {
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
    let results = if abi3_projects.is_empty() {
        run_workers(config, store, cli, &jobs, jobs_n, ui.quiet)?
    } else {
        run_abi3_once(
            config,
            store,
            cli,
            &mut jobs,
            &abi3_projects,
            jobs_n,
            ui.quiet,
        )?
    };
    let interrupted = crate::process::interrupted();
    if interrupted.is_some() {
        // Workers killed after the grace period leave their workspaces: their owners are gone.
        store.sweep_stale()?;
    }
    let group = args.wheels_file.is_some() || bundles.list.len() > 1;
    let delivery = Delivery {
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
        jobs_n,
        started,
        interrupted,
    };
    deliver(store, args, cli, delivery, &jobs, results)
}

/// How the build talks: progress bars (`!quiet`, with --json too) and messages (`say`, not
/// with -q).
#[derive(Debug, Clone, Copy)]
struct Ui {
    quiet: bool,
    say: bool,
}

/// The settings every bundle shares, checked before anything runs: the branch, and `--jobs`
/// (returned: workers at a time).
fn check_settings(config: &Config, args: &BuildArgs) -> Result<usize> {
    store::check_name(&args.branch)?;
    let branches = branch::branches(&config.config_dir);
    if !branches.contains(&args.branch) {
        return Err(Error::usage(format!(
            "no branch {:?}: the branches are {} (add one as {})",
            args.branch,
            branches.join(", "),
            branch::list_path(&config.config_dir, &args.branch).display()
        )));
    }
    let jobs = args.jobs.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    if jobs == 0 {
        return Err(Error::usage("--jobs must be at least 1"));
    }
    Ok(jobs)
}

/// One bundle's part of the plan: its project's name, its jobs (their job.json written) and
/// the targets it leaves out.
struct BundlePlan {
    name: String,
    jobs: Vec<Job>,
    skipped: Vec<plan::Skipped>,
    /// The project's own output dir (cibuildwheel's `output-dir`).
    output_dir: Option<String>,
}

/// Plans one bundle: its project read, its targets resolved, the base OSes they need loaded on
/// first use, one job per target. `None` when there is nothing to run (identifiers printed, or
/// nothing left and --allow-empty).
fn plan_bundle(config: &Config, store: &Store, b: &Bundle, ui: Ui) -> Result<Option<BundlePlan>> {
    let mut request = read_project(b, ui)?;
    let targets = match resolve_targets(config, store, &b.args, &mut request, ui)? {
        Resolution::Targets(t) => t,
        Resolution::Done => return Ok(None),
    };
    ensure_base_oses(config, store, &targets, ui)?;
    let jobs = make_jobs(store, &b.args, &request, &targets, ui)?;
    Ok(Some(BundlePlan {
        output_dir: request.project.config.output_dir.clone(),
        name: request.project_name,
        jobs,
        skipped: targets.skipped,
    }))
}

/// What the report of a build (one project, or a group) says besides its targets.
struct Delivery {
    /// The directory name in `output/<branch>/`: the project's, or `group-<wheels file>`.
    project_name: String,
    /// The project directory, or the wheels file of a group.
    bundle: PathBuf,
    group: bool,
    /// The first project's own output dir (cibuildwheel's `output-dir`).
    output_dir: Option<String>,
    skipped: Vec<plan::Skipped>,
    sources: Vec<crate::sources::SourceRecord>,
    jobs_n: usize,
    started: Instant,
    interrupted: Option<nix::sys::signal::Signal>,
}

/// The last phase: the wheels of the targets that passed go to `--out`; the report is written
/// (`report.json`), printed (a table, or JSON with --json) and summed up; the exit status
/// follows (0, 1 when a target failed, 128 + N when a signal stopped the build).
fn deliver(
    store: &Store,
    args: &BuildArgs,
    cli: &Cli,
    d: Delivery,
    jobs: &[Job],
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
        jobs: d.jobs_n,
        total_secs: d.started.elapsed().as_secs_f64(),
        passed: results.len() - failed,
        failed,
        skipped: d.skipped,
        targets: results,
        sources: d.sources,
    };
    let report_path = out_root.join("report.json");
    store::write_json(&report_path, &report)?;
    if cli.json {
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
        if cli.verbose > 0 {
            stream_log(t.failure_log());
        }
    }
    if !cli.quiet {
        eprintln!(
            "pookie-ns: {} target(s): {} passed, {} failed in {:.1} s{}; wheels in {}; report: {}",
            report.targets.len(),
            report.passed,
            report.failed,
            report.total_secs,
            d.interrupted
                .map(|s| format!(", interrupted by {s}"))
                .unwrap_or_default(),
            report.out.display(),
            report_path.display()
        );
    }
    // The shell's convention for a command stopped by a signal: 128 + N (130 INT, 143 TERM).
    Ok(match d.interrupted {
        Some(sig) => 128 + sig as i32,
        None if failed == 0 => 0,
        None => 1,
    })
}

/// The workers of a build with projects that may build an abi3 wheel (`abi3_projects`): of
/// each, first one target per arch, policy and mode (its first CPython) builds; when its wheel is abi3 and passed, the other targets of that
/// arch only test that wheel on their own CPythons; otherwise they build as usual. Results in
/// the order of `jobs`.
fn run_abi3_once(
    config: &Config,
    store: &Store,
    cli: &Cli,
    jobs: &mut [Job],
    abi3_projects: &[String],
    jobs_n: usize,
    quiet: bool,
) -> Result<Vec<TargetResult>> {
    let same = |a: &Job, b: &Job| {
        a.project == b.project
            && a.target.arch == b.target.arch
            && a.target.policy == b.target.policy
            && a.mode == b.mode
    };
    // Every target of a project that cannot build abi3 wheels is a first.
    let firsts: Vec<usize> = (0..jobs.len())
        .filter(|&i| {
            !abi3_projects.contains(&jobs[i].project)
                || !jobs[..i].iter().any(|j| same(j, &jobs[i]))
        })
        .collect();
    if firsts.len() == jobs.len() {
        return run_workers(config, store, cli, jobs, jobs_n, quiet);
    }
    let first_jobs: Vec<Job> = firsts.iter().map(|&i| jobs[i].clone()).collect();
    let first_results = run_workers(config, store, cli, &first_jobs, jobs_n, quiet)?;
    let mut results: Vec<Option<TargetResult>> = vec![None; jobs.len()];
    let mut rest = Vec::new();
    for i in 0..jobs.len() {
        if let Some(k) = firsts.iter().position(|&f| f == i) {
            results[i] = Some(first_results[k].clone());
            continue;
        }
        let k = firsts
            .iter()
            .position(|&f| same(&jobs[f], &jobs[i]))
            .expect("every target has a first of its kind");
        let first = &first_results[k];
        if let (true, Some(wheel)) = (first.result.ok(), &first.wheel) {
            if backends::is_abi3_wheel(wheel) {
                jobs[i].prebuilt_wheel = Some(jobs[firsts[k]].wheelhouse().join(wheel));
                jobs[i].wheel_built_by = Some(first.target.clone());
                store::write_json(&jobs[i].dir.join("job.json"), &jobs[i])?;
            }
        }
        rest.push(i);
    }
    let rest_jobs: Vec<Job> = rest.iter().map(|&i| jobs[i].clone()).collect();
    let rest_results = if crate::process::interrupted().is_some() {
        rest_jobs
            .iter()
            .map(|j| {
                let mut r = worker::new_result(j);
                r.result = report::Outcome::Interrupted;
                r
            })
            .collect()
    } else {
        run_workers(config, store, cli, &rest_jobs, jobs_n, quiet)?
    };
    for (k, &i) in rest.iter().enumerate() {
        results[i] = Some(rest_results[k].clone());
    }
    Ok(results
        .into_iter()
        .map(|r| r.expect("every target has a result"))
        .collect())
}

enum Event {
    Phase(usize, String),
    Exited(usize, std::process::ExitStatus),
}

/// Phase 5: runs the workers, at most `jobs_n` at a time, and gathers their results in job
/// order.
fn run_workers(
    config: &Config,
    store: &Store,
    cli: &Cli,
    jobs: &[Job],
    jobs_n: usize,
    quiet: bool,
) -> Result<Vec<TargetResult>> {
    let exe = std::env::current_exe()
        .map_err(|e| Error::io("find pookie-ns's own executable", "/proc/self/exe", e))?;
    let multi = if quiet {
        indicatif::MultiProgress::with_draw_target(indicatif::ProgressDrawTarget::hidden())
    } else {
        indicatif::MultiProgress::new()
    };
    let style =
        indicatif::ProgressStyle::with_template("{spinner} {prefix} {wide_msg} {elapsed:>4}")
            .expect("valid template");
    let width = jobs
        .iter()
        .map(|j| j.target.name().len())
        .max()
        .unwrap_or(0);
    let bars: Vec<indicatif::ProgressBar> = jobs
        .iter()
        .map(|j| {
            let bar = multi.add(indicatif::ProgressBar::new_spinner());
            bar.set_style(style.clone());
            bar.set_prefix(format!("{:<width$}", j.target.name()));
            bar.set_message(format!("waiting ({})", j.mode));
            bar
        })
        .collect();
    let mut results: Vec<Option<TargetResult>> = vec![None; jobs.len()];
    let mut queue: VecDeque<usize> = (0..jobs.len()).collect();
    let (tx, rx) = mpsc::channel::<Event>();
    let mut running: Vec<(usize, nix::unistd::Pid)> = Vec::new();
    // SIGINT/SIGTERM: stop starting workers, ask the running ones to stop (their sandboxes get
    // the signal forwarded and remove their workspaces), kill what is left after a grace period.
    crate::process::catch_interrupts()?;
    let mut stopping: Option<Instant> = None;
    std::thread::scope(|scope| -> Result<()> {
        loop {
            while running.len() < jobs_n && stopping.is_none() {
                let Some(i) = queue.pop_front() else { break };
                let job = &jobs[i];
                let log = std::fs::File::create(job.worker_log())
                    .map_err(|e| Error::io("create", job.worker_log(), e))?;
                let mut cmd = Command::new(&exe);
                cmd.arg("--work-dir").arg(&store.root);
                // The default config dir need not exist; one given with -c must.
                if config.config_dir.is_dir() {
                    cmd.arg("--config-dir").arg(&config.config_dir);
                }
                if cli.verbose > 0 {
                    cmd.arg(format!("-{}", "v".repeat(cli.verbose as usize)));
                }
                cmd.arg("__build-target")
                    .arg(job.dir.join("job.json"))
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(log);
                // A worker dies with this process (SIGTERM: it stops its sandbox and removes its
                // workspace), even when this one is killed outright.
                crate::sys::set_parent_death_signal_of(&mut cmd, nix::sys::signal::Signal::SIGTERM);
                let mut child = cmd
                    .spawn()
                    .map_err(|e| Error::io("start a build worker", &exe, e))?;
                running.push((i, nix::unistd::Pid::from_raw(child.id() as i32)));
                bars[i].set_message(format!("starting ({})", job.mode));
                bars[i].reset_elapsed();
                bars[i].enable_steady_tick(Duration::from_millis(250));
                let stdout = child.stdout.take().expect("piped");
                let tx = tx.clone();
                scope.spawn(move || {
                    for line in std::io::BufReader::new(stdout).lines() {
                        let Ok(line) = line else { break };
                        if let Some(p) = line.strip_prefix("phase ") {
                            let _ = tx.send(Event::Phase(i, p.to_string()));
                        }
                    }
                    let status = child.wait();
                    let status = status.unwrap_or_else(|_| {
                        std::os::unix::process::ExitStatusExt::from_raw(1 << 8)
                    });
                    let _ = tx.send(Event::Exited(i, status));
                });
            }
            if running.is_empty() {
                break;
            }
            if let Some(sig) = crate::process::interrupted() {
                match stopping {
                    None => {
                        stopping = Some(Instant::now());
                        for i in queue.drain(..) {
                            bars[i].finish_with_message("interrupted before it started");
                        }
                        for (_, pid) in &running {
                            let _ = nix::sys::signal::kill(*pid, nix::sys::signal::Signal::SIGTERM);
                        }
                        tracing::debug!(signal = %sig, "stopping the workers");
                    }
                    Some(at) if at.elapsed() > Duration::from_millis(1500) => {
                        for (_, pid) in &running {
                            let _ = nix::sys::signal::kill(*pid, nix::sys::signal::Signal::SIGKILL);
                        }
                    }
                    Some(_) => {}
                }
            }
            match rx.recv_timeout(Duration::from_millis(100)) {
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    unreachable!("a worker thread holds a sender")
                }
                Ok(Event::Phase(i, p)) => bars[i].set_message(format!("{p} ({})", jobs[i].mode)),
                Ok(Event::Exited(i, status)) => {
                    running.retain(|(j, _)| *j != i);
                    let mut r = read_result(&jobs[i], status);
                    if stopping.is_some() {
                        mark_interrupted(&mut r);
                    }
                    let mark = if r.result.ok() { "✓" } else { "✗" };
                    bars[i].finish_with_message(format!(
                        "{mark} {} ({}){}",
                        r.result.label(),
                        jobs[i].mode,
                        r.wheel
                            .as_ref()
                            .filter(|_| r.result.ok())
                            .map(|w| format!(" {w}"))
                            .unwrap_or_default()
                    ));
                    results[i] = Some(r);
                }
            }
        }
        Ok(())
    })?;
    // A signal to the whole process group (Ctrl-C) reaches the sandboxed commands as soon as
    // this process: a worker may report its failed step before the loop above saw the flag.
    let interrupted = crate::process::interrupted().is_some();
    Ok(results
        .into_iter()
        .zip(jobs)
        .map(|(r, job)| match r {
            Some(mut r) => {
                if interrupted {
                    mark_interrupted(&mut r);
                }
                r
            }
            None => TargetResult {
                result: Outcome::Interrupted,
                error: Some("interrupted before it started".into()),
                ..worker::new_result(job)
            },
        })
        .collect())
}

/// A target that did not finish because `build` was interrupted says so (once).
fn mark_interrupted(r: &mut TargetResult) {
    if !r.result.ok() && r.result != Outcome::Interrupted {
        r.result = Outcome::Interrupted;
        r.error = Some(format!(
            "interrupted{}",
            r.error
                .take()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default()
        ));
    }
}

/// The worker's result.json, or an error result naming how the worker ended.
fn read_result(job: &Job, status: std::process::ExitStatus) -> TargetResult {
    let read = std::fs::read(job.result_path())
        .ok()
        .and_then(|b| serde_json::from_slice::<TargetResult>(&b).ok());
    if let Some(r) = read {
        return r;
    }
    let tail = crate::progress::log_tail(&job.worker_log(), 8);
    TargetResult {
        error: Some(format!(
            "the worker process ended ({status}) without a result{}",
            if tail.is_empty() {
                String::new()
            } else {
                format!(":\n{tail}")
            }
        )),
        ..worker::new_result(job)
    }
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

/// Where a build's per-target output lives, for `list`/tests.
pub fn output_dir(store: &Store, branch: &str, project: &str) -> PathBuf {
    store.root.join("output").join(branch).join(project)
}
