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
pub mod image;
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

use crate::arch::Arch;
use crate::branch;
use crate::cli::{BuildArgs, Cli};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::project::{self, Frontend, Mode};
use crate::store::{self, Store};
use crate::target;
use crate::toolchain::{self, Compiler};
use bundles::{read_project, resolve_bundles, Bundle, Request};
use report::{Outcome, Report, TargetResult};
use resolve::{ensure_base_oses, resolve_targets, Resolution, Targets};
use worker::{BaseRef, Job, OUT_INSIDE, PROJECT_INSIDE};

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

/// Phase 4: one job per target — its options (the identifier's overrides applied, command-line
/// flags winning), base OSes, toolchain, commands and output directory — written to its
/// `job.json` for the worker.
fn make_jobs(
    store: &Store,
    args: &BuildArgs,
    request: &Request,
    targets: &Targets,
    ui: Ui,
) -> Result<Vec<Job>> {
    let project = &request.project;
    let out_root = output_dir(store, &args.branch, &request.project_name);
    let sub = |c: &str| project::substitute(c, PROJECT_INSIDE, PROJECT_INSIDE);
    let mut jobs = Vec::new();
    for (p, d) in targets.planned.iter().zip(&targets.decisions) {
        let identifier = p.target.identifier();
        let mut o = project.options(&identifier)?;
        let custom_build = args.build.clone().or_else(|| o.build_command.clone());
        let test_command = args.test.clone().or_else(|| o.test_command.clone());
        let test_requires = if args.test_requires.is_empty() {
            o.test_requires
                .iter()
                .chain(&o.test_group_requires)
                .cloned()
                .collect()
        } else {
            args.test_requires.clone()
        };
        let before_all = args.before_all.clone().or_else(|| o.before_all.clone());
        let tested = project.config.tested(&identifier);
        if !tested && test_command.is_some() && ui.say {
            eprintln!("pookie-ns: {identifier}: tests skipped (test-skip)");
        }
        let dir = out_root.join(p.target.name());
        reset_dir(store, &dir)?;
        let test_base = BaseRef {
            name: p.source.name().to_string(),
            arch: p.target.arch,
        };
        let build_base = BaseRef {
            arch: if d.mode == Mode::Cross {
                Arch::host()
            } else {
                p.target.arch
            },
            ..test_base.clone()
        };
        let toolchain = match d.toolchain {
            Some(i) => Some(resolve_toolchain(&targets.toolchains[i], &p.target)?),
            None => None,
        };
        // Build backends that need more than the toolchain's environment (backends.rs): Rust
        // a compiler and the target's standard library in a layer over the toolchain's, meson-python a
        // cross file for a foreign arch, handed over as a config setting unless the project
        // passes one of its own.
        let rust_setup = (project.backend.rust && toolchain.is_some())
            .then(|| backends::rust_setup(p.target.arch));
        let meson_cross =
            project.backend.meson && toolchain.is_some() && !p.target.arch.is_native();
        if meson_cross
            && !o
                .config_settings
                .iter()
                .any(|(k, v)| k == "setup-args" && v.contains("--cross-file"))
        {
            o.config_settings.push(backends::meson_setup_args());
        }
        // With a toolchain, the default build command installs the build requirements natively
        // first and then builds without isolation (an isolated build would fetch them for the
        // target's platform).
        // An image's own interpreter (/opt/python/cp311-cp311/bin/python), else python3.X.
        let image = targets.images.get(&identifier);
        let interpreter = image.and_then(|i| i.interpreter(&p.target.python));
        let (build_command, install_build_requires) = match &custom_build {
            Some(c) => (c.clone(), false),
            None => (
                frontend_command(
                    &o,
                    toolchain.is_some(),
                    interpreter.as_deref().unwrap_or(&p.target.python),
                ),
                toolchain.is_some(),
            ),
        };
        let repair_policy =
            repair_policy(&p.target, toolchain.as_ref()).or_else(|| image.and_then(|i| i.policy()));
        let job = Job {
            project: request.project_name.clone(),
            repair_policy,
            interpreter,
            target: p.target.clone(),
            mode: d.mode,
            branch: args.branch.clone(),
            build_base,
            test_base,
            toolchain,
            install_build_requires,
            meson_cross,
            rust_setup,
            prebuilt_wheel: None,
            wheel_built_by: None,
            bundle: request.bundle.clone(),
            build_command: sub(&build_command),
            before_all: before_all.as_deref().map(sub),
            before_build: o.before_build.as_deref().map(sub),
            test_command: test_command.as_deref().map(sub).filter(|_| tested),
            test_requires,
            environment: o.environment.clone(),
            environment_pass: o.environment_pass.clone(),
            before_test: o.before_test.as_deref().map(sub),
            test_extras: o.test_extras.clone(),
            test_sources: o.test_sources.clone(),
            test_environment: o.test_environment.clone(),
            repair_wheel_command: o.repair_wheel_command.as_deref().map(sub),
            dir: dir.clone(),
            keep_failed: request.keep_failed,
        };
        store::write_json(&dir.join("job.json"), &job)?;
        jobs.push(job);
    }
    Ok(jobs)
}

/// A toolchain made concrete for a target: its arch, CPython and the glibc of the policy it
/// asks for, else of its arch's default (riscv64: manylinux_2_31), as far as the toolchain
/// reaches.
fn resolve_toolchain(
    t: &toolchain::Toolchain,
    target: &target::Target,
) -> Result<toolchain::Resolved> {
    let policy = target
        .policy
        .as_deref()
        .unwrap_or_else(|| target::default_policy(target.arch));
    let glibc = target::policy_glibc(policy).map_or_else(
        || toolchain::DEFAULT_GLIBC.into(),
        |v| toolchain::target_glibc(target.arch, v),
    );
    let cx = toolchain::Context {
        arch: target.arch,
        python: &target.python,
        glibc: &glibc,
    };
    t.resolve(&cx)
        .map_err(|e| Error::usage(format!("toolchain {}: {e}", t.origin)))
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

/// The manylinux policy a target's wheel is repaired to: the one it names; else, built by zig
/// against the glibc of the arch's default policy ([`target::default_policy`]), that policy
/// (`manylinux_2_17`, as cibuildwheel's default images; riscv64 `manylinux_2_31`, the first
/// auditwheel defines for it); else none (`--plat auto`: the best policy the wheel's symbols
/// allow).
fn repair_policy(
    target: &target::Target,
    toolchain: Option<&toolchain::Resolved>,
) -> Option<String> {
    if target.policy.is_some() {
        return target.policy.clone();
    }
    match toolchain {
        Some(t) if t.compiler == Compiler::Zig => {
            Some(target::default_policy(target.arch).to_string())
        }
        _ => None,
    }
}

#[cfg(test)]
fn default_build_command(frontend: Frontend, toolchain: bool, python: &str) -> String {
    frontend_command(
        &crate::cibw::BuildOptions {
            frontend: crate::cibw::FrontendSpec {
                frontend,
                args: Vec::new(),
            },
            ..Default::default()
        },
        toolchain,
        python,
    )
}

/// The build command of cibuildwheel's `build-frontend` with its `args`, `config-settings` and
/// `build-verbosity`, run by the target's own interpreter (`python3.14`), never the suite's
/// default `python3`; with a toolchain, without build isolation (the requirements are installed
/// natively first).
fn frontend_command(o: &crate::cibw::BuildOptions, toolchain: bool, python: &str) -> String {
    // A version (`3.14`), or an image's interpreter path.
    let py = if python.starts_with('/') {
        python.to_string()
    } else {
        format!("python{python}")
    };
    let f = &o.frontend;
    let v = o.build_verbosity;
    let verbosity = if v > 0 {
        format!(" -{}", "v".repeat(v as usize))
    } else if v < 0 {
        format!(" -{}", "q".repeat(v.unsigned_abs() as usize))
    } else {
        String::new()
    };
    let mut extra = String::new();
    for (k, val) in &o.config_settings {
        let flag = match f.frontend {
            Frontend::Pip => "--config-settings",
            Frontend::Build | Frontend::BuildUv | Frontend::Uv => "--config-setting",
        };
        extra.push_str(&format!(
            " {}",
            worker::sh_quote(&format!("{flag}={k}={val}"))
        ));
    }
    for a in &f.args {
        extra.push(' ');
        extra.push_str(&worker::sh_quote(a));
    }
    match (f.frontend, toolchain) {
        (Frontend::Pip, false) => format!(
            "{py} -m pip wheel{verbosity} --no-deps --wheel-dir {OUT_INSIDE}{extra} {{project}}"
        ),
        (Frontend::Pip, true) => format!(
            "{py} -m pip wheel{verbosity} --no-deps --no-build-isolation --wheel-dir {OUT_INSIDE}{extra} {{project}}"
        ),
        (Frontend::Uv, iso) => {
            let no_iso = if iso { " --no-build-isolation" } else { "" };
            format!(
                "{py} -m pip install --quiet uv && {py} -m uv build{verbosity} --wheel{no_iso} --out-dir {OUT_INSIDE}{extra} {{project}}"
            )
        }
        (Frontend::Build | Frontend::BuildUv, iso) => {
            let uv = f.frontend == Frontend::BuildUv;
            let install = if uv { "build uv" } else { "build" };
            let no_iso = if iso { " --no-isolation" } else { "" };
            let own_no_iso = f.args.iter().any(|a| a == "-n" || a == "--no-isolation");
            let installer = if uv && !iso && !own_no_iso {
                " --installer=uv"
            } else {
                ""
            };
            format!(
                "{py} -m pip install --quiet {install} && {py} -m build{verbosity} --wheel{no_iso}{installer} --outdir {OUT_INSIDE}{extra} {{project}}"
            )
        }
    }
}

/// Empties a target's output directory from an earlier build.
fn reset_dir(store: &Store, dir: &Path) -> Result<()> {
    if dir.exists() && std::fs::remove_dir_all(dir).is_err() {
        crate::userns::remove_tree(&store.map, dir)?;
    }
    crate::sys::mkdir_p(dir, 0o755)?;
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zig_builds_are_repaired_to_the_arch_default_policy() {
        let t = toolchain::all(Path::new("/nonexistent")).unwrap();
        let resolved = |arch: Arch, c: Compiler| {
            toolchain::choose(&t, arch, Some(c)).map(|t| {
                t.resolve(&toolchain::Context {
                    arch,
                    python: "3.11",
                    glibc: toolchain::DEFAULT_GLIBC,
                })
                .unwrap()
            })
        };
        let target = |arch, policy: Option<&str>| target::Target {
            arch,
            python: "3.11".into(),
            policy: policy.map(str::to_string),
        };
        let zig = resolved(Arch::Arm64, Compiler::Zig);
        assert_eq!(
            repair_policy(&target(Arch::Arm64, None), zig.as_ref()).as_deref(),
            Some("manylinux_2_17")
        );
        // A policy asked for wins; gcc gets the best one auditwheel finds.
        assert_eq!(
            repair_policy(&target(Arch::Arm64, Some("manylinux_2_28")), zig.as_ref()).as_deref(),
            Some("manylinux_2_28")
        );
        let gcc = resolved(Arch::Arm64, Compiler::Gcc);
        assert_eq!(
            repair_policy(&target(Arch::Arm64, None), gcc.as_ref()),
            None
        );
        // riscv64 has no manylinux2014: its first policy, manylinux_2_31.
        let zig_rv = resolved(Arch::Riscv64, Compiler::Zig);
        assert_eq!(
            repair_policy(&target(Arch::Riscv64, None), zig_rv.as_ref()).as_deref(),
            Some("manylinux_2_31")
        );
        for arch in [Arch::Ppc64el, Arch::S390x, Arch::Amd64] {
            let zig = resolved(arch, Compiler::Zig);
            assert_eq!(
                repair_policy(&target(arch, None), zig.as_ref()).as_deref(),
                Some("manylinux_2_17"),
                "{arch}"
            );
        }
        assert_eq!(repair_policy(&target(Arch::Amd64, None), None), None);
    }

    #[test]
    fn policies_name_their_glibc() {
        assert_eq!(target::policy_glibc("manylinux_2_17"), Some((2, 17)));
        assert_eq!(target::policy_glibc("manylinux2014"), Some((2, 17)));
        assert_eq!(target::policy_glibc("manylinux_2_28"), Some((2, 28)));
        assert_eq!(target::policy_glibc("manylinux_x_17"), None);
        assert_eq!(target::policy_glibc("musllinux_1_2"), None);
    }

    #[test]
    fn default_build_commands_write_to_the_output_dir() {
        for toolchain in [false, true] {
            let pip = default_build_command(Frontend::Pip, toolchain, "3.14");
            assert!(
                pip.starts_with("python3.14 -m pip wheel --no-deps"),
                "{pip}"
            );
            assert!(pip.ends_with("{project}"));
            assert_eq!(pip.contains("--no-build-isolation"), toolchain, "{pip}");
            let build = default_build_command(Frontend::Build, toolchain, "3.9");
            assert!(build.contains("&& python3.9 -m build --wheel"), "{build}");
            assert_eq!(build.contains("--no-isolation"), toolchain, "{build}");
        }
    }

    #[test]
    fn frontends_carry_args_settings_and_verbosity() {
        let o = |frontend, args: &[&str], settings: &[(&str, &str)], v| crate::cibw::BuildOptions {
            frontend: crate::cibw::FrontendSpec {
                frontend,
                args: args.iter().map(|a| a.to_string()).collect(),
            },
            config_settings: settings
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            build_verbosity: v,
            ..Default::default()
        };
        let c = frontend_command(
            &o(Frontend::Pip, &["--no-build-isolation"], &[("a", "b c")], 2),
            false,
            "3.11",
        );
        assert!(
            c.starts_with("python3.11 -m pip wheel -vv --no-deps"),
            "{c}"
        );
        assert!(
            c.contains(" '--config-settings=a=b c' --no-build-isolation {project}"),
            "{c}"
        );
        let c = frontend_command(&o(Frontend::BuildUv, &[], &[("x", "1")], -1), false, "3.11");
        assert!(
            c.starts_with("python3.11 -m pip install --quiet build uv && "),
            "{c}"
        );
        assert!(
            c.contains("python3.11 -m build -q --wheel --installer=uv"),
            "{c}"
        );
        assert!(c.contains("--config-setting=x=1"), "{c}");
        let c = frontend_command(
            &o(Frontend::BuildUv, &["--no-isolation"], &[], 0),
            false,
            "3.11",
        );
        assert!(!c.contains("--installer=uv"), "{c}");
        let c = frontend_command(&o(Frontend::Uv, &[], &[], 0), true, "3.11");
        assert!(
            c.contains("python3.11 -m uv build --wheel --no-build-isolation --out-dir"),
            "{c}"
        );
        let c = frontend_command(&o(Frontend::Build, &[], &[], 0), true, "3.11");
        assert!(c.contains("--no-isolation") && !c.contains("uv"), "{c}");
    }
}
