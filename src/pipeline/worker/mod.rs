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

mod deliver;
mod harvest;
mod project_copy;
mod scripts;

pub use harvest::wheel_platform;
pub use project_copy::copy_project;
pub use scripts::sh_quote;

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
use crate::target::Target;
use crate::toolchain::{Resolved, CROSS_DIR, SYSROOT};
use deliver::{auditwheel_plat, deliver_script, repair_script};
use harvest::harvest;
use scripts::{fragment, python_selection, script_text, script_text_with};

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

fn shell(script: &str) -> Vec<String> {
    vec!["/bin/sh".into(), "-c".into(), script.into()]
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
