//! An instance made ready for a step: refreshed on the job's branch, with its setup layers (the
//! toolchain's, a Rust project's, the project's before-all) each run once per instance state in
//! a layer of its own, cached by a hash of what it depends on, and held under a shared lock.

use std::path::{Path, PathBuf};
use std::time::Instant;

use sha2::{Digest, Sha256};

use super::outcome::{Preparation, SetupKind, SetupRun};
use super::scripts::script_text;
use super::spec::{step_spec, toolchain_cache_binds};
use super::{phase, BaseRef, TargetJob, PROJECT_INSIDE};
use crate::branch;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::pipeline::report::SetupState;
use crate::sandbox::{self, Bind, Spec};
use crate::store::{BaseOs, InstanceId, InstanceLock, Store, Workspace};

/// An instance made ready for a step: refreshed, with its setup layers, held shared.
pub(super) struct Prepared {
    pub(super) base: BaseOs,
    pub(super) instance: InstanceId,
    /// The setup layers (toolchain, before-all), relative to the store root, newest first.
    pub(super) extra: Vec<PathBuf>,
    _lock: InstanceLock,
}

impl Prepared {
    /// Its whole read-only stack, relative to the store root: a cross build's sysroot.
    pub(super) fn lower(&self, store: &Store) -> Result<Vec<PathBuf>> {
        store.lower_layers(&self.base, &self.instance, &self.extra)
    }
}

/// [`step_spec`] on the prepared instance of the target (its base OS, instance and setup
/// layers), for the build and test steps.
pub(super) fn prepared_spec(
    config: &Config,
    store: &Store,
    job: &TargetJob,
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

/// A script run once per instance state in a layer of its own, cached.
#[derive(Debug, Clone, Copy)]
pub(super) struct Setup<'a> {
    pub(super) kind: SetupKind,
    pub(super) script: &'a str,
    /// More of what the layer depends on (before-all: the project's `environment` and passed
    /// variables, exported while it runs: [`before_all_salt`]); empty for none.
    pub(super) salt: &'a str,
    /// Appended to the log's name (`toolchain-rust.log`), for a second layer of one kind.
    pub(super) log_suffix: &'a str,
}

/// Refreshes the instance of `base` on the job's branch and makes its setup layers, each over
/// the ones before it: the instance, `None` when a setup failed, and what was done.
pub(super) fn prepare(
    config: &Config,
    store: &Store,
    job: &TargetJob,
    base_ref: &BaseRef,
    setups: &[Setup],
) -> Result<(Option<Prepared>, Preparation)> {
    let started = Instant::now();
    let base = store.find_baseos(Some(&base_ref.name), Some(base_ref.arch))?;
    store.check_id_map(&base)?;
    let mut done = Preparation {
        image: base
            .meta
            .image
            .as_ref()
            .map(|image| format!("{}@{}", image.reference, image.manifest_digest)),
        ..Preparation::default()
    };
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
                done.setups.push(SetupRun {
                    kind: setup.kind,
                    state: SetupState::Cached,
                    log: None,
                    secs: None,
                });
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
                let (run, failed) =
                    run_setup(config, store, job, &base, &instance, &extra, setup, &layer)?;
                done.setups.push(run);
                if failed.is_some() {
                    done.failed = failed;
                    done.secs = started.elapsed().as_secs_f64();
                    return Ok((None, done));
                }
            }
            // Around again for the shared lock; a refresh in between changes the keys and the
            // layers are made anew.
            continue 'again;
        }
        done.secs = started.elapsed().as_secs_f64();
        let prepared = Prepared {
            base,
            instance,
            extra,
            _lock: lock,
        };
        return Ok((Some(prepared), done));
    }
}

/// What a before-all depends on besides its script: the project's `environment` and the
/// `environment-pass` variables the worker exports from its own environment (`lookup`), by name
/// and value; a variable that is not set is not exported and leaves the key as it is. Empty for
/// a project with neither, the key such a project always had.
pub(super) fn before_all_salt(
    environment: &[(String, String)],
    pass: &[String],
    lookup: impl Fn(&str) -> Option<String>,
) -> String {
    let passed: Vec<(&str, String)> = pass
        .iter()
        .filter_map(|k| lookup(k).map(|v| (k.as_str(), v)))
        .collect();
    let mut salt = String::new();
    if !environment.is_empty() {
        salt = format!("{environment:?}");
    }
    if !passed.is_empty() {
        salt.push_str(&format!("\0pass{passed:?}"));
    }
    salt
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
    let key = &format!("{:x}", h.finalize())[..16];
    Ok(store
        .instance_dir(instance)
        .join(setup.kind.name())
        .join(format!("{}-{key}", setup.kind.prefix())))
}

/// The log of a setup on `base`: `before-all.log`, or `before-all-arm64.log` for the target's
/// instance of a cross build (whose build instance has a before-all of its own).
fn setup_log(job: &TargetJob, base: &BaseOs, setup: &Setup) -> PathBuf {
    let name = format!("{}{}", setup.kind.name(), setup.log_suffix);
    if job.build_base != job.test_base && base.arch == job.test_base.arch {
        job.dir.join(format!("{name}-{}.log", base.arch))
    } else {
        job.dir.join(format!("{name}.log"))
    }
}

/// Runs a setup script in a workspace over `below` and commits it as the cached layer `layer`:
/// how it went, and why it failed when it did.
#[allow(clippy::too_many_arguments)]
fn run_setup(
    config: &Config,
    store: &Store,
    job: &TargetJob,
    base: &BaseOs,
    instance: &InstanceId,
    below: &[PathBuf],
    setup: &Setup,
    layer: &Path,
) -> Result<(SetupRun, Option<String>)> {
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
    let ws = store.create_workspace(instance, &[what.into(), job.target.name()])?;
    let spec = Spec {
        // Read-only: the layer must not keep a copy of the project. A toolchain's caches are
        // the user's, not the layer's.
        binds: std::iter::once(Bind {
            src: job.bundle.clone(),
            dst: PROJECT_INSIDE.into(),
            readonly: true,
        })
        .chain(match setup.kind {
            SetupKind::Toolchain => toolchain_cache_binds(job),
            SetupKind::BeforeAll => Vec::new(),
        })
        .collect(),
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
    let mut run = SetupRun {
        kind: setup.kind,
        state: SetupState::Failed,
        log: Some(log),
        // The report counts a before-all's time (a toolchain's is the preparation's).
        secs: (setup.kind == SetupKind::BeforeAll).then(|| started.elapsed().as_secs_f64()),
    };
    if code != 0 {
        let why = format!(
            "{what} failed on {}/{} (exit status {code})",
            base.name, base.arch
        );
        return Ok((run, Some(why)));
    }
    std::fs::rename(&partial, layer).map_err(|e| Error::io("cache the setup layer", layer, e))?;
    run.state = SetupState::Ran;
    Ok((run, None))
}

#[cfg(test)]
mod tests {
    use super::before_all_salt;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn passed_variables_are_part_of_the_before_all_key() {
        let environment = env(&[("A", "1")]);
        let pass = vec!["TOKEN".to_string(), "SOURCE_DATE_EPOCH".to_string()];
        let unset = |_: &str| None;
        let with = |v: &'static str| move |k: &str| (k == "TOKEN").then(|| v.to_string());
        // Nothing passed is set: the key a project without environment-pass always had.
        assert_eq!(
            before_all_salt(&environment, &pass, unset),
            format!("{environment:?}")
        );
        assert_eq!(before_all_salt(&[], &pass, unset), "");
        // Another value is another layer, with or without an environment.
        let one = before_all_salt(&environment, &pass, with("one"));
        let two = before_all_salt(&environment, &pass, with("two"));
        assert_ne!(one, two);
        assert_ne!(one, before_all_salt(&environment, &pass, unset));
        assert_ne!(
            before_all_salt(&[], &pass, with("one")),
            before_all_salt(&[], &pass, with("two"))
        );
        // The name counts too: the same value under another name is another layer.
        let other = ["OTHER".to_string()];
        let other_set = |k: &str| (k == "OTHER").then(|| "one".to_string());
        assert_ne!(one, before_all_salt(&environment, &other, other_set));
        assert_eq!(one, before_all_salt(&environment, &pass, with("one")));
    }
}
