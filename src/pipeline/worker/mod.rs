//! One target of a build, in its own single-threaded process (`pookie-ns __build-target JOB`):
//! the sandbox forks, and forking is only safe from a process with one thread, so `build` runs
//! one worker process per target and keeps its threads (progress bars) to itself.
//!
//! The pipeline:
//! ```text
//! instance fresh (apt refresh under lock)
//!  → before-all layer (run once per instance state and cached by a hash of its text)
//!  → build workspace: the bundle copied in, before-build, build command → *.whl harvested
//!  → rolled back
//!  → test workspace on the target's own base OS: the wheel installed with test-requires,
//!    the test command run from outside the source tree → rolled back
//! ```
//! The build and the test step each name their base OS, so that a cross build (host-arch base
//! OS) can be tested on the target's own. A cross build prepares the target's instance first
//! (refresh, before-all): it is mounted read-only at `/sysroot` in the build and is where the
//! tests run. The host-arch instance gets the toolchain's setup layer, then before-all (native
//! tools such as cmake), each cached like before-all.
//!
//! Progress goes to stdout as `phase NAME` lines; the outcome to `result.json` in the target's
//! output directory. Errors of pookie-ns itself become an `error` outcome, never a lost target.
//!
//! # Files
//!
//! This file holds the [`TargetJob`] a worker reads, its entry point [`run`] and the step
//! sequence (`steps`, with the test of a wheel another target built: abi3 reuse). An instance
//! is made ready for a step, with its cached setup layers (toolchain, before-all), by
//! `prepare.rs`. The build step is `build_step.rs` (with what a toolchain build adds), the test
//! step `test_step.rs`; both run in the sandbox that `spec.rs` describes, with the environment
//! of `env.rs`, and run scripts assembled from the fragments of `src/shell/scripts/` by
//! `scripts.rs`. The repair of the wheel inside the build (auditwheel, or the project's
//! `repair-wheel-command`) is `repair.rs`; the wheel's check on the host after it,
//! `harvest.rs`; the project's copy into a workspace, `project_copy.rs`. Each step returns
//! what it did (`outcome.rs`: a preparation, a build or test run); the sequence keeps the
//! values in order and `outcome::report_entry` alone turns them into the target's result.

mod audit;
mod build_step;
mod env;
mod harvest;
mod outcome;
mod prepare;
mod project_copy;
mod repair;
mod scripts;
mod spec;
mod test_step;

pub use harvest::wheel_platform;
pub use project_copy::copy_project;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::report::{Outcome, TargetResult};
use crate::arch::Arch;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::project::Mode;
use crate::store::Store;
use crate::target::Target;
use build_step::build_step;
pub(in crate::pipeline) use outcome::unrun_entry;
use outcome::{report_entry, Preparation, SetupKind, Steps};
use prepare::{prepare, Prepared, Setup};
use test_step::test_step;

/// Where the project is inside the sandbox (`{project}`), and where wheels go.
pub const PROJECT_INSIDE: &str = "/buildroot/src";
pub const OUT_INSIDE: &str = "/buildroot/out";
const WHEELHOUSE_INSIDE: &str = "/buildroot/wheelhouse";

/// A base OS by name and arch.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BaseRef {
    pub name: String,
    pub arch: Arch,
}

impl std::fmt::Display for BaseRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.name, self.arch)
    }
}

/// Everything a worker needs for one target (`job.json`, written by `build`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TargetJob {
    /// The project's directory name in the store (a group build has several).
    #[serde(default)]
    pub project: String,
    pub target: Target,
    pub mode: Mode,
    pub branch: String,
    pub build_base: BaseRef,
    pub test_base: BaseRef,
    /// The cross toolchain (or another compiler natively), filled in for the target.
    pub toolchain: Option<crate::toolchain::Resolved>,
    /// The default build command of a toolchain build: install the project's build
    /// requirements natively, before the cross environment is set, then build without isolation.
    pub install_build_requires: bool,
    /// meson-python in cross mode: the build writes a Meson cross file from the toolchain's
    /// environment (backends.rs) before the build command.
    #[serde(default)]
    pub meson_cross: bool,
    /// A Rust project's toolchain build: the script that installs rustc, cargo and the target's
    /// standard library (backends.rs), cached as a layer over the toolchain's.
    #[serde(default)]
    pub rust_setup: Option<String>,
    /// An abi3 wheel another target of the same arch built: this target only tests it on its
    /// own CPython (set after that target's build, by `build`).
    #[serde(default)]
    pub prebuilt_wheel: Option<PathBuf>,
    /// That target's name, for the report.
    #[serde(default)]
    pub wheel_built_by: Option<String>,
    /// Why the target cannot run: a base OS it builds or tests on failed to load. `build`
    /// reports it failed with this reason and runs no worker for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unavailable: Option<String>,
    /// The project directory on the host (canonical); copied in, never written.
    pub bundle: PathBuf,
    /// Placeholders already substituted.
    pub build_command: String,
    pub before_all: Option<String>,
    pub before_build: Option<String>,
    pub test_command: Option<String>,
    pub test_requires: Vec<String>,
    /// Variables and their values as shell words, exported in order (cibuildwheel's
    /// `environment`).
    pub environment: Vec<(String, String)>,
    /// The manylinux policy auditwheel repairs the wheel to: the target's (exactly), or the
    /// default toolchain's (zig: manylinux_2_17, else the oldest the wheel meets); `None`: the
    /// oldest one the wheel's symbols allow.
    #[serde(default)]
    pub repair_policy: Option<String>,
    /// The target's interpreter when the base OS is an image with CPythons under `/opt/python`
    /// (`/opt/python/cp311-cp311/bin/python`); `None`: `python3.X` on the base OS's PATH.
    #[serde(default)]
    pub interpreter: Option<String>,
    /// Names of variables whose values the worker takes from its own environment (inherited
    /// from `build`) and exports before `environment`: values such as tokens never reach the
    /// job file.
    pub environment_pass: Vec<String>,
    /// cibuildwheel's `before-test`: run in the test workspace before the wheel is installed.
    pub before_test: Option<String>,
    /// Extras the wheel is installed with for the tests (`pkg.whl[test,qt]`).
    pub test_extras: Vec<String>,
    /// Paths of the project copied into the tests' working directory.
    pub test_sources: Vec<String>,
    /// Exported in the test step only, after `environment`.
    pub test_environment: Vec<(String, String)>,
    /// cibuildwheel's `repair-wheel-command` (`{wheel}`, `{dest_dir}`); `None`: pookie-ns's own
    /// repair; empty: the wheel as built.
    pub repair_wheel_command: Option<String>,
    /// cibuildwheel's `audit-command`, run on each repaired abi3 wheel (`{wheel}`); empty: no
    /// audit (audit.rs).
    #[serde(default)]
    pub audit_command: String,
    /// cibuildwheel's `audit-requires`: installed before the audit.
    #[serde(default)]
    pub audit_requires: Vec<String>,
    /// The target's output directory: logs, the wheel, result.json.
    pub dir: PathBuf,
    pub keep_failed: bool,
}

impl TargetJob {
    pub fn result_path(&self) -> PathBuf {
        self.dir.join("result.json")
    }
    pub fn worker_log(&self) -> PathBuf {
        self.dir.join("pookie-ns.log")
    }
    pub fn wheelhouse(&self) -> PathBuf {
        self.dir.join("wheelhouse")
    }
}

/// The worker's entry point: runs the pipeline and writes `result.json`.
pub fn run(config: &Config, store: &Store, job_path: &Path) -> Result<i32> {
    let text = std::fs::read(job_path).map_err(|e| Error::io("read the job file", job_path, e))?;
    let job: TargetJob = serde_json::from_slice(&text).map_err(|e| {
        Error::internal(format!(
            "{}: not a job file written by `pookie-ns build`: {e}",
            job_path.display()
        ))
    })?;
    let result = pipeline(config, store, &job);
    crate::store::write_json(&job.result_path(), &result)?;
    Ok(if result.result.ok() { 0 } else { 1 })
}

fn phase(name: &str) {
    let mut out = std::io::stdout().lock();
    // The parent may be gone (killed); the work goes on and result.json tells the outcome.
    let _ = writeln!(out, "phase {name}");
    let _ = out.flush();
}

/// The result of a target that could not run (`job.unavailable`: a base OS it needs failed to
/// load): an error with the reason, also written to its worker log, which the summary names.
pub(in crate::pipeline) fn unavailable_result(job: &TargetJob, why: &str) -> Result<TargetResult> {
    let log = job.worker_log();
    std::fs::write(&log, format!("{why}\n")).map_err(|e| Error::io("write", &log, e))?;
    Ok(unrun_entry(job, Outcome::Error, Some(why.to_string())))
}

/// The target's steps, then its report entry from what they returned.
fn pipeline(config: &Config, store: &Store, job: &TargetJob) -> TargetResult {
    let started = Instant::now();
    let mut done = Steps::default();
    let (outcome, error) = match steps(config, store, job, &mut done) {
        Ok(outcome) => (outcome, None),
        Err(e) => {
            tracing::error!("{e}");
            (Outcome::Error, Some(e.to_string()))
        }
    };
    TargetResult {
        total_secs: started.elapsed().as_secs_f64(),
        peak_rss_kib: peak_rss_kib(),
        ..report_entry(job, &done, outcome, error)
    }
}

/// The largest resident set of any process this worker waited for, directly or through its
/// children (the sandbox's processes are reaped along the chain).
fn peak_rss_kib() -> Option<u64> {
    nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN)
        .ok()
        .map(|u| u.max_rss().max(0) as u64)
}

/// The instance a preparation made ready (`None`: a setup failed), its record kept in `done`.
fn keep(
    done: &mut Steps,
    prepared: Result<(Option<Prepared>, Preparation)>,
) -> Result<Option<Prepared>> {
    let (prepared, preparation) = prepared?;
    done.preparations.push(preparation);
    Ok(prepared)
}

/// The step sequence: what each step returns is kept in `done`, in order; the target's outcome.
fn steps(config: &Config, store: &Store, job: &TargetJob, done: &mut Steps) -> Result<Outcome> {
    phase("prepare");
    // A layer made with other variables (set or passed) is another layer.
    let env_salt = prepare::before_all_salt(&job.environment, &job.environment_pass, |k| {
        std::env::var(k).ok()
    });
    let before_all: Vec<Setup> = job
        .before_all
        .as_deref()
        .map(|script| Setup {
            kind: SetupKind::BeforeAll,
            script,
            salt: &env_salt,
            log_suffix: "",
        })
        .into_iter()
        .collect();
    if let Some(built) = &job.prebuilt_wheel {
        return test_prebuilt(config, store, job, built, &before_all, done);
    }
    let cross = job.build_base != job.test_base;
    // A cross build's sysroot, and where its tests run: the target's own instance.
    let target = if cross {
        match keep(
            done,
            prepare(config, store, job, &job.test_base, &before_all),
        )? {
            Some(p) => Some(p),
            None => return Ok(Outcome::BuildFailed),
        }
    } else {
        None
    };
    let build_setups = build_setups(job, &before_all);
    let Some(build) = keep(
        done,
        prepare(config, store, job, &job.build_base, &build_setups),
    )?
    else {
        return Ok(Outcome::BuildFailed);
    };

    phase("build");
    let sysroot = match (&job.toolchain, &target) {
        (None, _) => None,
        (Some(_), Some(target)) => Some(target.lower(store)?),
        // Another compiler on the host's arch: the build's own stack is the sysroot.
        (Some(_), None) => Some(build.lower(store)?),
    };
    let built = build_step(config, store, job, &build, sysroot)?;
    let wheel = built.wheel.clone();
    done.build = Some(built);
    let Some(wheel) = wheel else {
        return Ok(Outcome::BuildFailed);
    };
    drop(build);

    let Some(test_command) = &job.test_command else {
        return Ok(Outcome::Built);
    };
    let test = match target {
        Some(target) => Some(target),
        None => keep(
            done,
            prepare(config, store, job, &job.test_base, &before_all),
        )?,
    };
    run_tests(config, store, job, test, &wheel, test_command, done)
}

/// The setup layers of the build's instance: the toolchain's (and a Rust project's compiler
/// over it), then before-all.
fn build_setups<'a>(job: &'a TargetJob, before_all: &[Setup<'a>]) -> Vec<Setup<'a>> {
    let mut setups = Vec::new();
    if let Some(t) = &job.toolchain {
        setups.push(Setup {
            kind: SetupKind::Toolchain,
            script: &t.setup,
            salt: "",
            log_suffix: "",
        });
        // A Rust project's compiler and target std: a layer of its own over the toolchain's,
        // which C projects of the same store share.
        if let Some(rust) = &job.rust_setup {
            setups.push(Setup {
                kind: SetupKind::Toolchain,
                script: rust,
                salt: "",
                log_suffix: "-rust",
            });
        }
    }
    setups.extend(before_all.iter().copied());
    setups
}

/// A target whose wheel another one built (abi3, the same arch): the wheel copied to this
/// target's wheelhouse, then tested on the target's own base OS and CPython as after a build.
fn test_prebuilt(
    config: &Config,
    store: &Store,
    job: &TargetJob,
    built: &Path,
    before_all: &[Setup],
    done: &mut Steps,
) -> Result<Outcome> {
    let name = built
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| Error::usage(format!("no wheel file name in {}", built.display())))?;
    let wheelhouse = job.wheelhouse();
    crate::sys::mkdir_p(&wheelhouse, 0o755)?;
    let wheel = wheelhouse.join(&name);
    std::fs::copy(built, &wheel).map_err(|e| Error::io("copy the abi3 wheel to", &wheel, e))?;
    done.prebuilt = Some(name);
    let Some(test_command) = &job.test_command else {
        return Ok(Outcome::Built);
    };
    let test = keep(
        done,
        prepare(config, store, job, &job.test_base, before_all),
    )?;
    run_tests(config, store, job, test, &wheel, test_command, done)
}

/// The test step on the prepared test instance (`None`: its preparation failed, which `done`
/// says); the target's outcome.
fn run_tests(
    config: &Config,
    store: &Store,
    job: &TargetJob,
    test: Option<Prepared>,
    wheel: &Path,
    test_command: &str,
    done: &mut Steps,
) -> Result<Outcome> {
    let Some(test) = test else {
        return Ok(Outcome::TestFailed);
    };
    phase("test");
    let run = test_step(config, store, job, &test, wheel, test_command)?;
    let passed = run.failed.is_none();
    done.test = Some(run);
    Ok(if passed {
        Outcome::Passed
    } else {
        Outcome::TestFailed
    })
}

#[cfg(test)]
mod script_tests {
    //! Every script a step runs, as the worker assembles it, passes `shellcheck -s sh` (POSIX
    //! sh: the base OSes run dash or busybox), not only the fragments it is made of.
    use super::*;
    use crate::arch::Arch;
    use crate::toolchain::{self, Compiler, Context};

    pub(super) fn job(
        arch: Arch,
        mode: Mode,
        toolchain: Option<crate::toolchain::Resolved>,
    ) -> TargetJob {
        TargetJob {
            project: "c-ext".into(),
            target: Target {
                arch,
                python: "3.14".into(),
                policy: Some("manylinux_2_17".into()),
            },
            mode,
            branch: "stable".into(),
            build_base: BaseRef {
                name: "debian-forky".into(),
                arch: Arch::host(),
            },
            test_base: BaseRef {
                name: "debian-forky".into(),
                arch,
            },
            toolchain,
            install_build_requires: true,
            meson_cross: true,
            rust_setup: None,
            prebuilt_wheel: None,
            wheel_built_by: None,
            unavailable: None,
            bundle: "/nonexistent/c-ext".into(),
            build_command: "python3 -m pip wheel --no-deps -w /buildroot/out /buildroot/src".into(),
            before_all: Some("apt-get install -y libffi-dev".into()),
            before_build: Some("echo \"it's $HOME\"".into()),
            test_command: Some("python3 -m pytest -q {project}/tests".into()),
            test_requires: vec!["pytest>=8".into(), "numpy; python_version<'3.15'".into()],
            environment: vec![
                ("PATH".into(), "\"$PATH:/opt/x\"".into()),
                ("CFLAGS".into(), "'-O2 -g'".into()),
            ],
            repair_policy: Some("manylinux_2_17_aarch64".into()),
            interpreter: None,
            environment_pass: vec!["HOME".into()],
            before_test: Some("pip list".into()),
            test_extras: vec!["test".into()],
            test_sources: vec!["tests".into(), "conftest.py".into()],
            test_environment: vec![("PYTHONFAULTHANDLER".into(), "1".into())],
            repair_wheel_command: None,
            audit_command: String::new(),
            audit_requires: Vec::new(),
            dir: "/nonexistent/out".into(),
            keep_failed: false,
        }
    }

    /// False (said) when shellcheck is missing outside CI; under CI=true that is a failure.
    fn have_shellcheck() -> bool {
        let found = std::process::Command::new("shellcheck")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            assert!(
                std::env::var_os("CI").is_none(),
                "shellcheck is missing (scripts/setup-host installs it)"
            );
            eprintln!("skipped: shellcheck is not installed (scripts/setup-host installs it)");
        }
        found
    }

    fn shellcheck(what: &str, script: &str) {
        let out = std::process::Command::new("shellcheck")
            .args(["-s", "sh", "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write as _;
                c.stdin.take().unwrap().write_all(script.as_bytes())?;
                c.wait_with_output()
            })
            .expect("run shellcheck");
        assert!(
            out.status.success(),
            "{what}: shellcheck -s sh finds faults:\n{}\n--- the script:\n{script}",
            String::from_utf8_lossy(&out.stdout)
        );
    }

    /// The built-in toolchain of `compiler` for `arch`, when there is one (zig serves no armhf).
    fn resolved(arch: Arch, compiler: Compiler) -> Option<crate::toolchain::Resolved> {
        let all = toolchain::all(Path::new("/nonexistent")).unwrap();
        let t = toolchain::choose(&all, arch, Some(compiler))?;
        (t.spec.compiler == compiler).then(|| {
            t.resolve(&Context {
                arch,
                python: "3.14",
                glibc: "2.17",
            })
            .unwrap()
        })
    }

    #[test]
    fn every_step_script_passes_shellcheck() {
        if !have_shellcheck() {
            return;
        }
        let native = job(Arch::host(), Mode::Native, None);
        let mut image = job(Arch::host(), Mode::Native, None);
        image.interpreter = Some("/opt/python/cp314-cp314/bin/python".into());
        image.repair_wheel_command = Some("auditwheel repair -w {dest_dir} {wheel}".into());
        image.install_build_requires = false;
        image.meson_cross = false;
        let mut cases = vec![("native".to_string(), native), ("image".into(), image)];
        for compiler in [Compiler::Zig, Compiler::Gcc, Compiler::Clang] {
            for arch in [Arch::Arm64, Arch::Armhf] {
                let Some(t) = resolved(arch, compiler) else {
                    continue;
                };
                shellcheck(&format!("{compiler:?} {arch} toolchain setup"), &t.setup);
                cases.push((
                    format!("{compiler:?} {arch} cross"),
                    job(arch, Mode::Cross, Some(t)),
                ));
            }
        }
        assert!(cases.len() >= 6, "too few cases: is a toolchain missing?");
        for (what, job) in &cases {
            shellcheck(
                &format!("{what} build"),
                &build_step::build_script(job, "debian-forky", Arch::host()),
            );
            shellcheck(
                &format!("{what} test"),
                &test_step::test_script(
                    job,
                    "c_ext-1.0-cp314-cp314-manylinux_2_17_aarch64.whl",
                    "python3 -m pytest -q /buildroot/src/tests",
                    "debian-forky",
                    job.target.arch,
                ),
            );
            shellcheck(
                &format!("{what} before-all"),
                &scripts::script_text(
                    job,
                    "before-all on debian-forky",
                    "apt-get install -y libffi-dev",
                ),
            );
        }
    }
}
