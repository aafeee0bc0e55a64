//! `pookie-ns build`: resolves the targets of a project, loads the base OSes they need, runs one
//! worker process per target (up to `--jobs` at a time) with a progress line each, copies the
//! wheels of the targets that passed to `--out`, and reports.
//!
//! ```text
//! build (this process: plans, loads base OSes, shows progress; threads, never forks a sandbox)
//!  ├ pookie-ns __build-target job.json    (worker.rs: one target, single-threaded)
//!  └ pookie-ns __build-target job.json
//! ```
//! Store layout of a build's output: `output/<branch>/<project>/<target>/` holds `job.json`,
//! `build.log`, `test.log`, `before-all.log`, `pookie-ns.log`, `wheelhouse/` and `result.json`;
//! `output/<branch>/<project>/report.json` the whole report.

pub mod plan;
pub mod report;
pub mod worker;

use std::collections::VecDeque;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::arch::Arch;
use crate::baseos;
use crate::branch;
use crate::cli::{BuildArgs, Cli};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::project::{self, Frontend, Mode, Project};
use crate::recipe;
use crate::store::{self, Store};
use crate::target;
use plan::{Loaded, Offer, Source};
use report::{Report, TargetResult};
use worker::{BaseRef, Job, OUT_INSIDE, PROJECT_INSIDE};

pub fn build(config: &Config, store: &Store, args: &BuildArgs, cli: &Cli) -> Result<i32> {
    let started = Instant::now();
    // Progress bars go with --json too; messages only with -q.
    let quiet = cli.quiet || cli.json;
    let say = !cli.quiet;
    // Everything the user wrote is checked before anything runs.
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
    let bundle = std::fs::canonicalize(&args.bundle)
        .map_err(|e| Error::usage(format!("bundle {}: {e}", args.bundle.display())))?;
    if !bundle.join("pyproject.toml").is_file() && !bundle.join("setup.py").is_file() {
        return Err(Error::usage(format!(
            "bundle {} has neither pyproject.toml nor setup.py: not a Python project",
            bundle.display()
        )));
    }
    let project = Project::load(&bundle)?;
    let project_name = project_dir_name(&project, &bundle);
    let jobs_n = args.jobs.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    if jobs_n == 0 {
        return Err(Error::usage("--jobs must be at least 1"));
    }

    // Targets and the base OS of each.
    let loaded: Vec<Loaded> = store
        .list_baseos()?
        .into_iter()
        .map(|b| Loaded {
            name: b.name.clone(),
            arch: b.arch,
            python: b.meta.recipe.as_ref().map(|r| r.python.clone()),
        })
        .collect();
    let recipes = recipe::all(&config.config_dir)?;
    let offers: Vec<Offer> = recipes
        .iter()
        .map(|r| Offer {
            name: r.name.clone(),
            python: r.spec.python.clone(),
            arches: r.spec.arches.clone(),
        })
        .collect();
    let platforms = if !args.target.is_empty() {
        args.target
            .iter()
            .map(|t| target::parse_platform(t).map_err(Error::usage))
            .collect::<Result<Vec<_>>>()?
    } else if !project.archs.is_empty() {
        project.archs.clone()
    } else {
        plan::default_platforms(&loaded)
    };
    let pythons = args
        .python
        .iter()
        .map(|p| target::parse_python(p).map_err(Error::usage))
        .collect::<Result<Vec<_>>>()?;
    let (planned, skipped) = plan::plan(
        &platforms,
        &pythons,
        &project,
        &loaded,
        &offers,
        recipe::DEFAULT_RECIPE,
    )
    .map_err(Error::usage)?;
    let mut modes = Vec::new();
    for p in &planned {
        modes.push(mode_for(p.target.arch, args.mode.or(project.mode))?);
    }
    // Emulation is checked before anything is loaded or built: a missing QEMU fails now.
    for p in &planned {
        crate::commands::emulation_for(config, p.target.arch)?;
    }
    for name in &skipped {
        if say {
            eprintln!("pookie-ns: {name}: left out by the project's build/skip selectors");
        }
    }

    // Base OSes loaded on first use.
    for p in &planned {
        if let Source::Recipe(name) = &p.source {
            if store
                .list_baseos()?
                .iter()
                .any(|b| &b.name == name && b.arch == p.target.arch)
            {
                continue;
            }
            let recipe = recipes
                .iter()
                .find(|r| &r.name == name)
                .expect("planned from these recipes");
            if say {
                eprintln!(
                    "pookie-ns: loading base OS {name} for {}: target {} needs CPython {}, which \
                     no loaded base OS provides for {}",
                    p.target.arch,
                    p.target.name(),
                    p.target.python,
                    p.target.arch.uname()
                );
            }
            baseos::load_recipe(
                config,
                store,
                recipe,
                p.target.arch,
                name,
                None,
                baseos::Output {
                    quiet,
                    json: false,
                    replace: false,
                },
            )?;
        }
    }

    // One job per target.
    let out_root = store
        .root
        .join("output")
        .join(&args.branch)
        .join(&project_name);
    let build_command = args
        .build
        .clone()
        .or_else(|| project.build_command.clone())
        .unwrap_or_else(|| default_build_command(project.frontend));
    let test_command = args.test.clone().or_else(|| project.test_command.clone());
    let test_requires = if args.test_requires.is_empty() {
        project.test_requires.clone()
    } else {
        args.test_requires.clone()
    };
    let before_all = args
        .before_all
        .clone()
        .or_else(|| project.before_all.clone());
    let sub = |c: &str| project::substitute(c, PROJECT_INSIDE, PROJECT_INSIDE);
    let mut jobs = Vec::new();
    for (p, mode) in planned.iter().zip(&modes) {
        let dir = out_root.join(p.target.name());
        reset_dir(store, &dir)?;
        let base = BaseRef {
            name: p.source.name().to_string(),
            arch: p.target.arch,
        };
        let job = Job {
            target: p.target.clone(),
            mode: *mode,
            branch: args.branch.clone(),
            build_base: base.clone(),
            test_base: base,
            bundle: bundle.clone(),
            build_command: sub(&build_command),
            before_all: before_all.as_deref().map(sub),
            before_build: project.before_build.as_deref().map(sub),
            test_command: test_command.as_deref().map(sub),
            test_requires: test_requires.clone(),
            environment: project.environment.clone(),
            dir: dir.clone(),
            keep_failed: args.keep_failed,
        };
        store::write_json(&dir.join("job.json"), &job)?;
        jobs.push(job);
    }

    let mut results = run_workers(config, store, cli, &jobs, jobs_n, quiet)?;

    // The wheels of the targets that passed go to --out.
    let out = &args.out;
    if results.iter().any(|r| r.result.ok()) {
        std::fs::create_dir_all(out).map_err(|e| Error::io("create the output dir", out, e))?;
    }
    for (r, job) in results.iter_mut().zip(&jobs) {
        if let (true, Some(wheel)) = (r.result.ok(), &r.wheel) {
            let dest = out.join(wheel);
            std::fs::copy(job.wheelhouse().join(wheel), &dest)
                .map_err(|e| Error::io("copy the wheel to", &dest, e))?;
            r.wheel_path = Some(std::fs::canonicalize(&dest).unwrap_or(dest));
        }
    }
    let failed = results.iter().filter(|r| !r.result.ok()).count();
    let report = Report {
        bundle: bundle.clone(),
        project: project_name,
        branch: args.branch.clone(),
        out: std::fs::canonicalize(out).unwrap_or_else(|_| out.clone()),
        jobs: jobs_n,
        total_secs: started.elapsed().as_secs_f64(),
        passed: results.len() - failed,
        failed,
        skipped,
        targets: results,
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
            t.target,
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
            "pookie-ns: {} target(s): {} passed, {} failed in {:.1} s; wheels in {}; report: {}",
            report.targets.len(),
            report.passed,
            report.failed,
            report.total_secs,
            report.out.display(),
            report_path.display()
        );
    }
    Ok(if failed == 0 { 0 } else { 1 })
}

/// How a target on `arch` builds: natively on the host's arch; otherwise as asked, emulated by
/// default.
fn mode_for(arch: Arch, asked: Option<Mode>) -> Result<Mode> {
    match (arch.is_native(), asked) {
        (true, _) => Ok(Mode::Native),
        (false, None | Some(Mode::Emulate)) => Ok(Mode::Emulate),
        (false, Some(Mode::Native)) => Err(Error::usage(format!(
            "mode native is only for the host's arch ({}); {} builds with --mode emulate",
            Arch::host().uname(),
            arch.uname()
        ))),
        (false, Some(Mode::Cross)) => Err(Error::usage(format!(
            "--mode cross for {}: no cross toolchain is defined yet; use --mode emulate",
            arch.uname()
        ))),
    }
}

fn default_build_command(frontend: Frontend) -> String {
    match frontend {
        Frontend::Pip => {
            format!("python3 -m pip wheel --no-deps --wheel-dir {OUT_INSIDE} {{project}}")
        }
        Frontend::Build => format!("python3 -m build --wheel --outdir {OUT_INSIDE} {{project}}"),
    }
}

/// The project's directory name in the store: its `[project] name`, else the bundle's.
fn project_dir_name(project: &Project, bundle: &Path) -> String {
    let raw = project.name.clone().unwrap_or_else(|| {
        bundle
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "project".into())
    });
    let clean: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let clean = clean.trim_start_matches('.').to_string();
    if clean.is_empty() {
        "project".into()
    } else {
        clean
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

/// Runs the workers, at most `jobs_n` at a time, and gathers their results in job order.
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
    let mut running = 0;
    std::thread::scope(|scope| -> Result<()> {
        loop {
            while running < jobs_n {
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
                let mut child = cmd
                    .spawn()
                    .map_err(|e| Error::io("start a build worker", &exe, e))?;
                running += 1;
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
            if running == 0 {
                break;
            }
            match rx.recv().expect("a worker thread holds a sender") {
                Event::Phase(i, p) => bars[i].set_message(format!("{p} ({})", jobs[i].mode)),
                Event::Exited(i, status) => {
                    running -= 1;
                    let r = read_result(&jobs[i], status);
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
    Ok(results
        .into_iter()
        .map(|r| r.expect("every job ran"))
        .collect())
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
    fn modes() {
        let foreign = if Arch::host() == Arch::Arm64 {
            Arch::Amd64
        } else {
            Arch::Arm64
        };
        assert_eq!(mode_for(Arch::host(), None).unwrap(), Mode::Native);
        assert_eq!(
            mode_for(Arch::host(), Some(Mode::Emulate)).unwrap(),
            Mode::Native
        );
        assert_eq!(mode_for(foreign, None).unwrap(), Mode::Emulate);
        assert!(mode_for(foreign, Some(Mode::Native))
            .unwrap_err()
            .to_string()
            .contains("--mode emulate"));
        assert!(mode_for(foreign, Some(Mode::Cross)).is_err());
    }

    #[test]
    fn project_names_are_safe_directory_names() {
        let p = |name: Option<&str>| Project {
            name: name.map(str::to_string),
            ..Project::default()
        };
        assert_eq!(
            project_dir_name(&p(Some("fastmath")), Path::new("/x/y")),
            "fastmath"
        );
        assert_eq!(project_dir_name(&p(None), Path::new("/x/c-ext")), "c-ext");
        assert_eq!(
            project_dir_name(&p(Some("../evil/x")), Path::new("/x")),
            "_evil_x"
        );
        assert_eq!(project_dir_name(&p(Some("..")), Path::new("/x")), "project");
    }

    #[test]
    fn default_build_commands_write_to_the_output_dir() {
        assert!(default_build_command(Frontend::Pip).contains("pip wheel --no-deps"));
        assert!(default_build_command(Frontend::Build).contains("-m build --wheel"));
        assert!(default_build_command(Frontend::Pip).ends_with("{project}"));
    }
}
