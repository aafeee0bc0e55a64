//! The build step: the project copied into a workspace, before-build, the build command, the
//! wheel repaired into the wheelhouse and harvested; and what a toolchain build adds to it (the
//! files in the cross directory, the sysconfigdata prelude, the toolchain's environment, the
//! build requirements installed natively).

use std::path::{Path, PathBuf};

use super::harvest::harvest;
use super::outcome::BuildRun;
use super::prepare::{prepared_spec, Prepared};
use super::project_copy::copy_project;
use super::repair::{auditwheel_script, repair_script};
use super::scripts::{self, fragment, python_selection, script_text, traced};
use super::spec::{end_step, timed_run, toolchain_cache_binds};
use super::{TargetJob, PROJECT_INSIDE, WHEELHOUSE_INSIDE};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::pipeline::backends;
use crate::sandbox::{Bind, LowerMount, Spec};
use crate::store::Store;
use crate::toolchain::{Resolved, CROSS_DIR, SYSROOT};

/// The build: what it did, with the wheel it made unless it failed.
/// `sysroot`: the read-only stack mounted at /sysroot for a toolchain build.
pub(super) fn build_step(
    config: &Config,
    store: &Store,
    job: &TargetJob,
    prep: &Prepared,
    sysroot: Option<Vec<PathBuf>>,
) -> Result<BuildRun> {
    let wheelhouse = job.wheelhouse();
    crate::sys::mkdir_p(&wheelhouse, 0o755)?;
    let log = job.dir.join("build.log");
    let ws = store.create_workspace(&prep.instance, &["build".into(), job.target.name()])?;
    copy_project(&job.bundle, &ws.upper().join(&PROJECT_INSIDE[1..]))?;
    if let Some(t) = &job.toolchain {
        write_cross_files(&ws.upper().join(&CROSS_DIR[1..]), t)?;
    }
    let usage = job.dir.join("build.disk");
    let script = build_script(job, &prep.base.name, prep.base.arch);
    let spec = Spec {
        binds: std::iter::once(Bind {
            src: wheelhouse.clone(),
            dst: WHEELHOUSE_INSIDE.into(),
            readonly: false,
        })
        .chain(toolchain_cache_binds(job))
        .collect(),
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
    let ran = timed_run(store, &spec)?;
    let workspace_bytes = std::fs::read_to_string(&usage)
        .ok()
        .and_then(|s| s.trim().parse().ok());
    let mut run = end_step(ws, job, log, ran, "the build command failed")?;
    let unrepaired = job
        .repair_wheel_command
        .as_deref()
        .is_some_and(|c| c.trim().is_empty());
    let wheel = if run.failed.is_some() {
        None
    } else {
        match harvest(&wheelhouse, &job.target, unrepaired) {
            Ok(wheel) => Some(wheel),
            Err(why) => {
                run.failed = Some(why);
                None
            }
        }
    };
    Ok(BuildRun {
        run,
        workspace_bytes,
        wheel,
    })
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
fn cross_prelude(job: &TargetJob, t: &Resolved) -> String {
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

/// `export K="V"` for the toolchain's environment (values may use shell variables). A flags
/// variable (`CPPFLAGS`, `LDFLAGS` ...) the project's `environment` set keeps its words after the
/// toolchain's: the project adds to where the target's headers and libraries are, it does not
/// lose them.
fn export_toolchain(t: &Resolved) -> String {
    let mut s = format!("echo '+ cross environment of {}:'\n", t.name);
    for (k, v) in &t.env {
        let v = v.replace('\\', "\\\\").replace('"', "\\\"");
        let own = if k.ends_with("FLAGS") {
            format!("${{{k}:+ ${k}}}")
        } else {
            String::new()
        };
        s.push_str(&format!("export {k}=\"{v}{own}\"\necho \"  {k}=${k}\"\n"));
    }
    s
}

/// The build step's script on base OS `base_name`/`base_arch`: the target's CPython selected,
/// the toolchain's prelude and environment, before-build, the build requirements, the build
/// command, then the repair and delivery of the wheel.
pub(super) fn build_script(
    job: &TargetJob,
    base_name: &str,
    base_arch: crate::arch::Arch,
) -> String {
    let mut body = python_selection(job);
    if let Some(t) = &job.toolchain {
        body.push_str(&cross_prelude(job, t));
    }
    if let Some(before) = &job.before_build {
        body.push_str(&traced(&format!("before-build: {before}"), before));
    }
    if job.install_build_requires {
        // pypa's build, for the target's CPython (the toolchain's setup installed it for the
        // suite's default python3 only).
        body.push_str("python3 -c 'import build' 2>/dev/null || python3 -m pip install --quiet build==1.2.2.post1\n");
        let install = format!("python3 {CROSS_DIR}/{BUILD_REQUIRES_PY} {PROJECT_INSIDE}");
        body.push_str(&traced(&format!("{install}  # natively"), &install));
    }
    if let Some(t) = &job.toolchain {
        body.push_str(&export_toolchain(t));
        if job.meson_cross {
            body.push_str(&backends::meson_cross_step(job.target.arch));
        }
    }
    body.push_str(&traced(&job.build_command, &job.build_command));
    match &job.repair_wheel_command {
        Some(repair) => body.push_str(&repair_script(
            repair,
            job.target.arch,
            job.toolchain.as_ref(),
        )),
        None => body.push_str(&auditwheel_script(
            &job.target,
            job.repair_policy.as_deref(),
            job.toolchain.as_ref(),
            job.interpreter.is_some(),
        )),
    }
    body.push_str(&super::audit::audit_script(
        &job.audit_command,
        &job.audit_requires,
    ));
    script_text(
        job,
        &format!(
            "build ({}{}) on {base_name}/{base_arch}",
            job.mode,
            job.toolchain
                .as_ref()
                .map(|t| format!(", {}", t.name))
                .unwrap_or_default(),
        ),
        &body,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::Arch;
    use crate::toolchain::{self, Context};

    #[test]
    fn the_project_s_own_flags_follow_the_toolchain_s_and_cflags_stay_its_own() {
        let all = toolchain::all(Path::new("/nonexistent")).unwrap();
        let zig = toolchain::choose(&all, Arch::Arm64, Some(toolchain::Compiler::Zig))
            .unwrap()
            .resolve(&Context {
                arch: Arch::Arm64,
                python: "3.14",
                glibc: "2.17",
            })
            .unwrap();
        let script = format!(
            "POOKIE_NS_SYSCONFIGDATA=_sysconfigdata__linux_aarch64-linux-gnu\n\
             export CPPFLAGS=-DPROJECT CFLAGS='-O3 -DNDEBUG'\n{}\
             echo \"[$CPPFLAGS] [$CFLAGS] [$LDFLAGS] [$CC]\"",
            export_toolchain(&zig)
        );
        let out = std::process::Command::new("sh")
            .args(["-c", &script])
            .output()
            .unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        let last = text.lines().last().unwrap();
        assert!(
            last.starts_with("[-I/sysroot/usr/include/python3.14 ")
                && last.contains(" -DPROJECT] [-O3 -DNDEBUG] [-L/sysroot/usr/lib/aarch64-linux-gnu ")
                && last.ends_with("-L/sysroot/lib/aarch64-linux-gnu] [/opt/pookie-ns/zig/bin/aarch64-linux-gnu-cc]"),
            "{text}"
        );
    }
}
