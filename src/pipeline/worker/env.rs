//! The environment variables of a step: a clean base, pip's settings, cibuildwheel's variables,
//! and on an image base OS the image's own `Env` under them.

use super::repair::auditwheel_plat;
use super::TargetJob;
use crate::sandbox;
use crate::store::BaseOs;

/// The environment of every step: clean, networked (pip needs PyPI), pip told that the
/// system's Python is ours to change (the workspace is thrown away).
fn step_env(job: &TargetJob) -> Vec<(String, String)> {
    let mut env = sandbox::base_env(true);
    for (k, v) in [
        ("DEBIAN_FRONTEND", "noninteractive"),
        ("PIP_BREAK_SYSTEM_PACKAGES", "1"),
        ("PIP_ROOT_USER_ACTION", "ignore"),
        ("PIP_DISABLE_PIP_VERSION_CHECK", "1"),
        ("PIP_NO_INPUT", "1"),
        ("PYTHONUNBUFFERED", "1"),
        // Compile commands in the build log (the flags a wheel was built with, read after the
        // fact): CMake through scikit-build-core, rustc through cargo (maturin,
        // setuptools-rust). The project's `environment` may set them otherwise.
        ("SKBUILD_BUILD_VERBOSE", "true"),
        ("CARGO_TERM_VERBOSE", "true"),
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
pub(super) fn image_step_env(job: &TargetJob, base: &BaseOs) -> Vec<(String, String)> {
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
