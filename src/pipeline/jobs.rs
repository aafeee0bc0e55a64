//! Phase 4 of `pookie-ns build`: one job per target (its options, base OSes, resolved
//! toolchain, build command, repair policy and output directory), written to its `job.json` for
//! the worker.

use std::path::Path;

use crate::arch::Arch;
use crate::cibw::BuildOptions;
use crate::error::{Error, Result};
use crate::project::{self, Mode};
use crate::store::{self, Store};
use crate::target;
use crate::toolchain::{self, Compiler};

use super::bundles::Request;
use super::frontend::frontend_command;
use super::plan::Planned;
use super::request::{BuildRequest, BundleSettings};
use super::resolve::{unavailable, Decision, Targets, Unloaded};
use super::worker::{BaseRef, TargetJob, PROJECT_INSIDE};
use super::{backends, output_dir, Ui};

/// What one bundle's jobs are made from.
#[derive(Clone, Copy)]
struct Inputs<'a> {
    args: &'a BuildRequest,
    settings: &'a BundleSettings,
    request: &'a Request,
    targets: &'a Targets,
    unloaded: &'a [Unloaded],
    ui: Ui,
}

/// Phase 4: one job per target — its options (the identifier's overrides applied, command-line
/// flags winning), base OSes, toolchain, commands and output directory — written to its
/// `job.json` for the worker. A target whose base OS is among `unloaded` gets the reason.
pub(super) fn make_jobs(
    store: &Store,
    args: &BuildRequest,
    settings: &BundleSettings,
    request: &Request,
    targets: &Targets,
    unloaded: &[Unloaded],
    ui: Ui,
) -> Result<Vec<TargetJob>> {
    let inputs = Inputs {
        args,
        settings,
        request,
        targets,
        unloaded,
        ui,
    };
    let mut jobs = Vec::new();
    for (p, d) in targets.planned.iter().zip(&targets.decisions) {
        let job = make_job(store, inputs, p, d)?;
        store::write_json(&job.dir.join("job.json"), &job)?;
        jobs.push(job);
    }
    Ok(jobs)
}

/// The job of planned target `p`, decided as `d`; its output directory emptied.
fn make_job(store: &Store, inputs: Inputs, p: &Planned, d: &Decision) -> Result<TargetJob> {
    let project = &inputs.request.project;
    let out_root = output_dir(store, &inputs.args.branch, &inputs.request.project_name);
    let sub = |c: &str| project::substitute(c, PROJECT_INSIDE, PROJECT_INSIDE);
    let identifier = p.target.identifier();
    let mut o = project.options(&identifier)?;
    let custom_build = inputs
        .args
        .build
        .clone()
        .or_else(|| o.build_command.clone());
    let test_command = inputs
        .settings
        .test
        .clone()
        .or_else(|| o.test_command.clone());
    let test_requires = if inputs.settings.test_requires.is_empty() {
        [&o.test_requires[..], &o.test_group_requires[..]].concat()
    } else {
        inputs.settings.test_requires.clone()
    };
    let before_all = inputs
        .settings
        .before_all
        .clone()
        .or_else(|| o.before_all.clone());
    let tested = project.config.tested(&identifier);
    if !tested && test_command.is_some() && inputs.ui.say {
        eprintln!("pookie-ns: {identifier}: tests skipped (test-skip)");
    }
    let dir = out_root.join(p.target.name());
    reset_dir(store, &dir)?;
    let (build_base, test_base) = bases(p, d.mode);
    let toolchain = match d.toolchain {
        Some(i) => Some(resolve_toolchain(&inputs.targets.toolchains[i], &p.target)?),
        None => None,
    };
    let (rust_setup, meson_cross) =
        backend_settings(&project.backend, toolchain.is_some(), p.target.arch, &mut o);
    // With a toolchain, the default build command installs the build requirements natively
    // first and then builds without isolation (an isolated build would fetch them for the
    // target's platform).
    // An image's own interpreter (/opt/python/cp311-cp311/bin/python), else python3.X.
    let image = inputs.targets.images.get(&identifier);
    let interpreter = image.and_then(|i| i.interpreter(&p.target.python));
    let (build_command, install_build_requires) = match &custom_build {
        Some(c) => (c.clone(), false),
        None => (
            frontend_command(
                &o,
                toolchain.is_some(),
                interpreter.as_deref().unwrap_or(&p.target.python),
            ),
            toolchain.is_some(),
        ),
    };
    let repair_policy =
        repair_policy(&p.target, toolchain.as_ref()).or_else(|| image.and_then(|i| i.policy()));
    let unavailable = unavailable(
        (&build_base.name, build_base.arch),
        (&test_base.name, test_base.arch),
        inputs.unloaded,
    );
    Ok(TargetJob {
        unavailable,
        project: inputs.request.project_name.clone(),
        repair_policy,
        interpreter,
        target: p.target.clone(),
        mode: d.mode,
        branch: inputs.args.branch.clone(),
        build_base,
        test_base,
        toolchain,
        install_build_requires,
        meson_cross,
        rust_setup,
        prebuilt_wheel: None,
        wheel_built_by: None,
        bundle: inputs.request.bundle.clone(),
        build_command: sub(&build_command),
        before_all: before_all.as_deref().map(sub),
        before_build: o.before_build.as_deref().map(sub),
        test_command: test_command.as_deref().map(sub).filter(|_| tested),
        test_requires,
        environment: o.environment.clone(),
        environment_pass: o.environment_pass.clone(),
        before_test: o.before_test.as_deref().map(sub),
        test_extras: o.test_extras.clone(),
        test_sources: o.test_sources.clone(),
        test_environment: o.test_environment.clone(),
        repair_wheel_command: o.repair_wheel_command.as_deref().map(sub),
        audit_command: sub(&o.audit_command),
        audit_requires: o.audit_requires.clone(),
        dir,
        keep_failed: inputs.request.keep_failed,
    })
}

/// The base OS a target builds on and the one it is tested on: its source's, for the target's
/// arch; a cross build's on the host's.
fn bases(p: &Planned, mode: Mode) -> (BaseRef, BaseRef) {
    let test_base = BaseRef {
        name: p.source.name().to_string(),
        arch: p.target.arch,
    };
    let build_base = BaseRef {
        arch: if mode == Mode::Cross {
            Arch::host()
        } else {
            p.target.arch
        },
        ..test_base.clone()
    };
    (build_base, test_base)
}

/// What build backends need beyond the toolchain's environment (backends.rs), as
/// (`rust_setup`, `meson_cross`), with the config settings they add to `o`.
fn backend_settings(
    backend: &project::Backend,
    toolchain: bool,
    arch: Arch,
    o: &mut BuildOptions,
) -> (Option<String>, bool) {
    // Build backends that need more than the toolchain's environment (backends.rs): Rust
    // a compiler and the target's standard library in a layer over the toolchain's, meson-python a
    // cross file for a foreign arch, handed over as a config setting unless the project
    // passes one of its own.
    let rust_setup = (backend.rust && toolchain).then(|| backends::rust_setup(arch));
    let meson_cross = backend.meson && toolchain && !arch.is_native();
    if meson_cross
        && !o
            .config_settings
            .iter()
            .any(|(k, v)| k == "setup-args" && v.contains("--cross-file"))
    {
        o.config_settings.push(backends::meson_setup_args());
    }
    // ninja shows a compile command only with -v (the log keeps the flags used).
    if backend.meson && !o.config_settings.iter().any(|(k, _)| k == "compile-args") {
        o.config_settings.push(("compile-args".into(), "-v".into()));
    }
    (rust_setup, meson_cross)
}

/// A toolchain made concrete for a target: its arch, CPython and the glibc of the policy it
/// asks for, else of its arch's default (riscv64: manylinux_2_31), as far as the toolchain
/// reaches.
fn resolve_toolchain(
    t: &toolchain::Toolchain,
    target: &target::Target,
) -> Result<toolchain::Resolved> {
    let policy = target
        .policy
        .as_deref()
        .unwrap_or_else(|| target::default_policy(target.arch));
    let glibc = target::policy_glibc(policy).map_or_else(
        || toolchain::DEFAULT_GLIBC.into(),
        |v| toolchain::target_glibc(target.arch, v),
    );
    let cx = toolchain::Context {
        arch: target.arch,
        python: &target.python,
        glibc: &glibc,
    };
    t.resolve(&cx)
        .map_err(|e| Error::usage(format!("toolchain {}: {e}", t.origin)))
}

/// The manylinux policy a target's wheel is repaired to: the one it names; else, built by zig
/// against the glibc of the arch's default policy ([`target::default_policy`]), that policy
/// (`manylinux_2_17`, as cibuildwheel's default images; riscv64 `manylinux_2_31`, the first
/// auditwheel defines for it); else none (`--plat auto`: the best policy the wheel's symbols
/// allow).
fn repair_policy(
    target: &target::Target,
    toolchain: Option<&toolchain::Resolved>,
) -> Option<String> {
    if target.policy.is_some() {
        return target.policy.clone();
    }
    match toolchain {
        Some(t) if t.compiler == Compiler::Zig => {
            Some(target::default_policy(target.arch).to_string())
        }
        _ => None,
    }
}

/// Empties a target's output directory from an earlier build.
fn reset_dir(store: &Store, dir: &Path) -> Result<()> {
    if dir.exists() && std::fs::remove_dir_all(dir).is_err() {
        crate::userns::remove_tree(&store.map, dir)?;
    }
    crate::sys::mkdir_p(dir, 0o755)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zig_builds_are_repaired_to_the_arch_default_policy() {
        let t = toolchain::all(Path::new("/nonexistent")).unwrap();
        let resolved = |arch: Arch, c: Compiler| {
            toolchain::choose(&t, arch, Some(c)).map(|t| {
                t.resolve(&toolchain::Context {
                    arch,
                    python: "3.11",
                    glibc: toolchain::DEFAULT_GLIBC,
                })
                .unwrap()
            })
        };
        let target = |arch, policy: Option<&str>| target::Target {
            arch,
            python: "3.11".into(),
            policy: policy.map(str::to_string),
        };
        let zig = resolved(Arch::Arm64, Compiler::Zig);
        assert_eq!(
            repair_policy(&target(Arch::Arm64, None), zig.as_ref()).as_deref(),
            Some("manylinux_2_17")
        );
        // A policy asked for wins; gcc gets the best one auditwheel finds.
        assert_eq!(
            repair_policy(&target(Arch::Arm64, Some("manylinux_2_28")), zig.as_ref()).as_deref(),
            Some("manylinux_2_28")
        );
        let gcc = resolved(Arch::Arm64, Compiler::Gcc);
        assert_eq!(
            repair_policy(&target(Arch::Arm64, None), gcc.as_ref()),
            None
        );
        // riscv64 has no manylinux2014: its first policy, manylinux_2_31.
        let zig_rv = resolved(Arch::Riscv64, Compiler::Zig);
        assert_eq!(
            repair_policy(&target(Arch::Riscv64, None), zig_rv.as_ref()).as_deref(),
            Some("manylinux_2_31")
        );
        for arch in [Arch::Ppc64el, Arch::S390x, Arch::Amd64] {
            let zig = resolved(arch, Compiler::Zig);
            assert_eq!(
                repair_policy(&target(arch, None), zig.as_ref()).as_deref(),
                Some("manylinux_2_17"),
                "{arch}"
            );
        }
        assert_eq!(repair_policy(&target(Arch::Amd64, None), None), None);
    }

    #[test]
    fn policies_name_their_glibc() {
        assert_eq!(target::policy_glibc("manylinux_2_17"), Some((2, 17)));
        assert_eq!(target::policy_glibc("manylinux2014"), Some((2, 17)));
        assert_eq!(target::policy_glibc("manylinux_2_28"), Some((2, 28)));
        assert_eq!(target::policy_glibc("manylinux_x_17"), None);
        assert_eq!(target::policy_glibc("musllinux_1_2"), None);
    }
}
