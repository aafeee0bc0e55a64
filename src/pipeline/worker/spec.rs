//! The sandbox a step runs in: its [`Spec`] (workspace, network, working directory,
//! environment, emulation, log, the script run by `/bin/sh`), how it is run and timed, and what
//! becomes of a failed step's workspace.

use std::path::Path;
use std::time::Instant;

use super::env::image_step_env;
use super::{TargetJob, PROJECT_INSIDE};
use crate::config::Config;
use crate::error::Result;
use crate::pipeline::report::TargetResult;
use crate::sandbox::{self, Bind, Spec};
use crate::store::{BaseOs, Store, Workspace};

fn shell(script: &str) -> Vec<String> {
    vec!["/bin/sh".into(), "-c".into(), script.into()]
}

/// What every step of a target shares: its workspace over `layers`, the network (pip needs
/// PyPI), the project's directory as working directory, the step environment, emulation for
/// `base`'s arch, the output in `log`, and `script` run by `/bin/sh`.
#[allow(clippy::too_many_arguments)]
pub(super) fn step_spec(
    config: &Config,
    store: &Store,
    job: &TargetJob,
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

/// The cache directories of the job's toolchain ([`crate::toolchain::ToolchainFile::caches`]),
/// each bound read-write from the user's per-user cache (none when there is none).
pub(super) fn toolchain_cache_binds(job: &TargetJob) -> Vec<Bind> {
    let Some(t) = &job.toolchain else {
        return Vec::new();
    };
    t.caches
        .iter()
        .filter_map(|inside| {
            crate::baseos_cache::toolchain_dir(&t.name, inside).map(|src| Bind {
                src,
                dst: inside.into(),
                readonly: false,
            })
        })
        .collect()
}

/// Runs a step's sandbox and times it. (On an error of pookie-ns itself the caller's `?` drops
/// the workspace, which removes it.)
pub(super) fn timed_run(store: &Store, spec: &Spec) -> Result<(i32, f64)> {
    let started = Instant::now();
    let code = sandbox::run(&store.map, spec)?;
    Ok((code, started.elapsed().as_secs_f64()))
}

/// The end of a build or test step that exited with `code`: its workspace removed; on a failure,
/// `failed` with the exit status is the target's error and the workspace goes as
/// [`finish_workspace`] says. True when the step succeeded.
pub(super) fn end_step(
    ws: Workspace,
    job: &TargetJob,
    r: &mut TargetResult,
    code: i32,
    failed: &str,
) -> Result<bool> {
    if code != 0 {
        r.error = Some(format!("{failed} (exit status {code})"));
        finish_workspace(ws, job, r)?;
        return Ok(false);
    }
    ws.remove()?;
    Ok(true)
}

/// Removes a failed step's workspace, or keeps it with --keep-failed.
fn finish_workspace(ws: Workspace, job: &TargetJob, r: &mut TargetResult) -> Result<()> {
    if job.keep_failed {
        r.kept_workspace = Some(ws.keep()?);
        Ok(())
    } else {
        ws.remove()
    }
}
