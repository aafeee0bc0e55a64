//! The sandbox a step runs in: its [`Spec`] (workspace, network, working directory,
//! environment, emulation, log, the script run by `/bin/sh`), how it is run and timed, and what
//! becomes of a failed step's workspace.

use std::path::{Path, PathBuf};
use std::time::Instant;

use super::env::image_step_env;
use super::outcome::StepRun;
use super::{TargetJob, PROJECT_INSIDE};
use crate::config::Config;
use crate::error::Result;
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

/// The end of a build or test step whose sandbox exited with `code` after `secs`, its output in
/// `log`: its workspace removed, or on a failure kept with --keep-failed; on a failure,
/// `failed` with the exit status is why.
pub(super) fn end_step(
    ws: Workspace,
    job: &TargetJob,
    log: PathBuf,
    (code, secs): (i32, f64),
    failed: &str,
) -> Result<StepRun> {
    let mut run = StepRun {
        log,
        exit_code: code,
        secs,
        failed: None,
        kept_workspace: None,
    };
    if code == 0 {
        ws.remove()?;
        return Ok(run);
    }
    run.failed = Some(format!("{failed} (exit status {code})"));
    if job.keep_failed {
        run.kept_workspace = Some(ws.keep()?);
    } else {
        ws.remove()?;
    }
    Ok(run)
}
