//! Phases 2 and 3 of `pookie-ns build`: a project's targets resolved (platforms × CPythons,
//! selected by build/skip and requires-python, images loaded), how each builds (its mode and
//! toolchain: `decide`), and the base OSes they need loaded on first use.

use crate::arch::Arch;
use crate::baseos;
use crate::cibw::PythonSource;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::project::{self, Mode};
use crate::recipe;
use crate::store::Store;
use crate::target;
use crate::toolchain::{self, Compiler};

use super::bundles::Request;
use super::plan::{self, Loaded, Offer};
use super::request::{BuildRequest, BundleSettings};
use super::{image, Ui};

/// The targets to build, how each builds, and what was left out.
pub(super) struct Targets {
    pub(super) planned: Vec<plan::Planned>,
    /// One per planned target.
    pub(super) decisions: Vec<Decision>,
    pub(super) skipped: Vec<plan::Skipped>,
    recipes: Vec<recipe::Recipe>,
    pub(super) toolchains: Vec<toolchain::Toolchain>,
    /// The targets that build in an image (cibuildwheel's `manylinux-<arch>-image`), by
    /// identifier.
    pub(super) images: std::collections::BTreeMap<String, image::ImageTarget>,
    /// The images that could not be loaded: their targets fail with the reason.
    image_failures: Vec<Unloaded>,
}

/// A target's line of the plan: where its CPython comes from and how it builds —
/// `cp312-manylinux_aarch64 ← image docker://quay.io/pypa/manylinux_2_28_aarch64@sha256:…,
/// emulate` or `cp311-manylinux_x86_64 ← base OS debian-bookworm, native (zig, glibc 2.17)`.
fn plan_line(
    p: &plan::Planned,
    d: &Decision,
    toolchains: &[toolchain::Toolchain],
    images: &image::Images,
) -> String {
    let id = p.target.identifier();
    let source = if let Some(i) = images.loaded.get(&id) {
        let at = i.base.meta.image.as_ref().map_or_else(String::new, |m| {
            format!("{}@{}", m.reference, m.manifest_digest)
        });
        format!("image {at} ({})", i.offer.why)
    } else if let Some(f) = images.failed.get(&id) {
        format!("image {} ({}), not loaded", f.reference, f.offer.why)
    } else {
        match &p.source {
            plan::Source::Recipe(n) => format!("base OS {n} (from its recipe)"),
            s => format!("base OS {}", s.name()),
        }
    };
    let how = match d.toolchain.map(|i| &toolchains[i]) {
        Some(t) => {
            let policy = p
                .target
                .policy
                .as_deref()
                .unwrap_or_else(|| target::default_policy(p.target.arch));
            match target::policy_glibc(policy).filter(|_| t.spec.compiler == Compiler::Zig) {
                Some((a, b)) => format!(
                    "{} ({}, glibc {})",
                    d.mode,
                    t.name,
                    toolchain::target_glibc(p.target.arch, (a, b))
                ),
                None => format!("{} ({})", d.mode, t.name),
            }
        }
        None => d.mode.to_string(),
    };
    format!("{} \u{2190} {source}, {how}", p.target.name())
}

/// What target resolution ends in: targets to build, or nothing to run (the identifiers
/// printed, or an allowed empty selection).
pub(super) enum Resolution {
    Targets(Targets),
    Done,
}

/// Phase 2: the targets (platforms × CPythons, selected by build/skip and requires-python), the
/// base OS each builds on, and its mode and toolchain. Emulation is checked here: a missing QEMU
/// fails before anything is loaded or built.
pub(super) fn resolve_targets(
    config: &Config,
    store: &Store,
    args: &BuildRequest,
    settings: &BundleSettings,
    request: &mut Request,
    ui: Ui,
) -> Result<Resolution> {
    // For CI matrices: cibuildwheel's identifiers, computed as cibuildwheel computes them,
    // whatever base OSes are loaded; nothing is pulled or loaded.
    if args.print_build_identifiers {
        for id in build_set(args, settings, &request.project)? {
            println!("{id}");
        }
        return Ok(Resolution::Done);
    }
    let project = &mut request.project;
    let loaded: Vec<Loaded> = store
        .list_baseos()?
        .into_iter()
        .map(|b| Loaded {
            name: b.name.clone(),
            arch: b.arch,
            python: b
                .meta
                .recipe
                .as_ref()
                .map(|r| r.python.clone())
                .unwrap_or_default(),
        })
        .collect();
    let recipes = recipe::all(&config.config_dir)?;
    let offers: Vec<Offer> = recipes
        .iter()
        .map(|r| Offer {
            name: r.name.clone(),
            python: r.spec.python.clone(),
            arches: r.spec.arches.clone(),
        })
        .collect();
    let mut pythons = args.python.clone();
    let platforms = if let Some(id) = &args.only {
        // cibuildwheel's --only: this identifier, whatever build, skip and archs say.
        let (python, platform) = crate::cibw::split_identifier(id).map_err(Error::usage)?;
        project.build = target::Selector::parse(id).map_err(Error::usage)?;
        project.skip = target::Selector::default();
        pythons = vec![python];
        vec![platform]
    } else {
        platforms(settings, project)?
    };
    let versions: Vec<String> = if pythons.is_empty() {
        plan::CPYTHONS.iter().map(|v| v.to_string()).collect()
    } else {
        pythons.clone()
    };
    let platforms = if args.only.is_some() {
        platforms
    } else {
        image::add_musllinux(project, platforms, &versions)?
    };
    // Where each identifier's CPython comes from: a Debian base OS that has it (preferred),
    // else the image cibuildwheel would use — the project's manylinux-<arch>-image /
    // musllinux-<arch>-image, else cibuildwheel's default — loaded now (pulled when the store
    // lacks it) since an image's CPythons decide the plan. `python-source` forces one.
    let python_source = args
        .python_source
        .or(project.python_source)
        .unwrap_or_default();
    let wants_default = |t: &target::Target| match python_source {
        PythonSource::Image => true,
        PythonSource::BaseOs => false,
        PythonSource::Auto => {
            plan::choose(t.arch, &t.python, &loaded, &offers, recipe::DEFAULT_RECIPE).is_none()
        }
    };
    let registry = crate::oci::registry::Options {
        insecure: args.insecure_registry.clone(),
    };
    let images = if python_source == PythonSource::BaseOs {
        image::Images::default()
    } else {
        image::load(
            config,
            store,
            project,
            &platforms,
            &versions,
            &wants_default,
            &image::LoadOptions {
                registry: &registry,
                offline: args.offline,
                say: ui.say,
            },
        )?
    };
    let planned = plan::plan(
        &platforms,
        &pythons,
        project,
        &loaded,
        &offers,
        recipe::DEFAULT_RECIPE,
        &|t| images.offer(&t.identifier()),
    );
    let (planned, skipped) = match planned {
        Err(e) if request.allow_empty && e.starts_with(plan::NOTHING_LEFT) => {
            if ui.say {
                eprintln!("pookie-ns: {e}; nothing to build (allowed by --allow-empty)");
            }
            return Ok(Resolution::Done);
        }
        p => p.map_err(Error::usage)?,
    };
    // How each target builds, and with which toolchain. A cross build runs on the host-arch
    // base OS of the target's own (same name: same suite, same Python), loaded or from a recipe.
    let toolchains = toolchain::all(&config.config_dir)?;
    let compiler = args.compiler.or(project.compiler);
    let asked = args.mode.or(project.mode);
    let mut decisions = Vec::new();
    for p in &planned {
        let name = p.source.name();
        let host_base = loaded
            .iter()
            .any(|l| l.name == name && l.arch == Arch::host())
            || offers
                .iter()
                .any(|o| o.name == name && o.arches.contains(&Arch::host()));
        let d = match images.offer(&p.target.identifier()) {
            Some(offer) => {
                let (mode, note) = image::mode(p.target.arch, asked, &offer.why, offer.default)?;
                Decision {
                    mode,
                    toolchain: None,
                    note,
                }
            }
            None => decide(p.target.arch, asked, compiler, &toolchains, host_base)?,
        };
        if let (Some(why), true) = (&d.note, ui.say) {
            eprintln!("pookie-ns: {}: {why}", p.target.name());
        }
        decisions.push(d);
    }
    for p in &planned {
        crate::binfmt::emulation_for(config, p.target.arch)?;
    }
    if ui.say {
        for (p, d) in planned.iter().zip(&decisions) {
            eprintln!("pookie-ns: plan: {}", plan_line(p, d, &toolchains, &images));
        }
        for s in &skipped {
            eprintln!("pookie-ns: {}: skipped: {}", s.identifier, s.reason);
        }
    }
    let image_failures = images
        .failed
        .iter()
        .filter_map(|(id, f)| {
            let p = planned.iter().find(|p| p.target.identifier() == *id)?;
            Some(Unloaded {
                name: f.offer.name.clone(),
                arch: p.target.arch,
                reason: f.reason.clone(),
            })
        })
        .collect();
    Ok(Resolution::Targets(Targets {
        planned,
        decisions,
        skipped,
        recipes,
        toolchains,
        images: images.loaded,
        image_failures,
    }))
}

/// The platforms a build covers (without `--only`): `--archs` (cibuildwheel's words), else
/// `--target` (platform tags), else the project's `archs` ([`project::project_archs`]: the
/// host's arch only unless something asks for more, as cibuildwheel).
fn platforms(
    settings: &BundleSettings,
    project: &project::Project,
) -> Result<Vec<target::Platform>> {
    if let Some(archs) = &settings.archs {
        let words = vec![archs.clone()];
        return project::cibuildwheel_archs(&words)
            .map_err(|e| Error::usage(format!("--archs: {e}")));
    }
    if !settings.target.is_empty() {
        return settings
            .target
            .iter()
            .map(|t| target::parse_platform(t).map_err(Error::usage))
            .collect();
    }
    Ok(project.archs.clone())
}

/// cibuildwheel's identifiers for this project and command line, in its order
/// ([`crate::cibw::build_set`]). pookie-ns's own inputs narrow them: a `--target` or
/// `[tool.pookie-ns] archs` platform tag that names a policy lists that family only, and
/// `--python` those CPythons only.
fn build_set(
    args: &BuildRequest,
    settings: &BundleSettings,
    project: &project::Project,
) -> Result<Vec<String>> {
    use crate::cibw::build_set::{self, ArchChoice, Families};
    let archs: Vec<ArchChoice> = if args.only.is_some() {
        Vec::new()
    } else {
        platforms(settings, project)?
            .into_iter()
            .map(|p| ArchChoice {
                arch: p.arch.uname().to_string(),
                families: match p.policy.as_deref() {
                    None => Families::Both,
                    Some(policy) if target::is_musllinux(policy) => Families::Musllinux,
                    Some(_) => Families::Manylinux,
                },
            })
            .collect()
    };
    let pythons = args.python.clone();
    build_set::identifiers(&build_set::Request {
        build: project.build.patterns().to_vec(),
        skip: project.skip.patterns().to_vec(),
        enable: project.config.enable.clone(),
        requires_python: project.config.requires_python.clone(),
        archs,
        pythons,
        only: args.only.clone(),
    })
    .map_err(Error::usage)
}

/// A base OS a build needed and could not load (mirror, network, disk ...): the targets that
/// need it fail with `reason`, the others build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Unloaded {
    pub(super) name: String,
    pub(super) arch: Arch,
    pub(super) reason: String,
}

/// Why a target whose build runs on `build` and whose tests run on `test` cannot run: the first
/// of them that failed to load.
pub(super) fn unavailable(
    build: (&str, Arch),
    test: (&str, Arch),
    unloaded: &[Unloaded],
) -> Option<String> {
    [build, test].iter().find_map(|(name, arch)| {
        unloaded
            .iter()
            .find(|u| u.name == *name && u.arch == *arch)
            .map(|u| u.reason.clone())
    })
}

/// Phase 3: the base OSes the targets need, loaded on first use from their recipes — each
/// target's own, and the host-arch one a cross build runs on. One that fails to load (its
/// mirror, the network, the disk) is returned with the reason, tried once: the targets that need
/// it fail, the others build. Only a missing recipe (an input error) or an interruption stops
/// the build.
pub(super) fn ensure_base_oses(
    config: &Config,
    store: &Store,
    targets: &Targets,
    ui: Ui,
) -> Result<Vec<Unloaded>> {
    let mut needed: Vec<(String, Arch, String)> = Vec::new();
    for (p, d) in targets.planned.iter().zip(&targets.decisions) {
        // An image is loaded already (or failed to: targets.image_failures).
        if matches!(p.source, plan::Source::Image(_)) {
            continue;
        }
        let why = format!(
            "target {} needs CPython {}, which no loaded base OS provides for {}",
            p.target.name(),
            p.target.python,
            p.target.arch.uname()
        );
        needed.push((p.source.name().to_string(), p.target.arch, why));
        if d.mode == Mode::Cross {
            let why = format!(
                "target {} cross-compiles on the {} base OS of its suite",
                p.target.name(),
                Arch::host().uname()
            );
            needed.push((p.source.name().to_string(), Arch::host(), why));
        }
    }
    let mut unloaded: Vec<Unloaded> = targets.image_failures.clone();
    for (name, arch, why) in needed {
        if unloaded.iter().any(|u| u.name == name && u.arch == arch)
            || store
                .list_baseos()?
                .iter()
                .any(|b| b.name == name && b.arch == arch)
        {
            continue;
        }
        let recipe = targets
            .recipes
            .iter()
            .find(|r| r.name == name)
            .ok_or_else(|| {
                Error::usage(format!(
                    "no base OS {name} for {arch} is loaded and no recipe of that name builds \
                     one; load it (pookie-ns load-baseos ... --name {name} --arch {arch}) or use \
                     --mode emulate"
                ))
            })?;
        if ui.say {
            eprintln!("pookie-ns: loading base OS {name} for {arch}: {why}");
        }
        let loaded = baseos::load_recipe(
            config,
            store,
            recipe,
            arch,
            &name,
            None,
            baseos::Output {
                // A build without progress lines (--json, -q) loads without a word.
                bars: ui.progress,
                say: ui.progress,
                json: false,
                replace: false,
            },
        );
        if let Err(e) = loaded {
            if crate::process::interrupted().is_some() {
                return Err(e);
            }
            let reason = format!("base OS {name} for {arch} could not be loaded: {e}");
            let users: Vec<String> = targets
                .planned
                .iter()
                .zip(&targets.decisions)
                .filter(|(p, d)| {
                    p.source.name() == name
                        && (p.target.arch == arch
                            || (d.mode == Mode::Cross && arch == Arch::host()))
                })
                .map(|(p, _)| p.target.name())
                .collect();
            if ui.say {
                eprintln!(
                    "pookie-ns: {reason}\npookie-ns: the targets that need it fail ({}); the \
                     others build",
                    users.join(", ")
                );
            }
            unloaded.push(Unloaded { name, arch, reason });
        }
    }
    Ok(unloaded)
}

/// How one target builds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Decision {
    pub(super) mode: Mode,
    /// Index into the toolchains.
    pub(super) toolchain: Option<usize>,
    /// Why the mode is not the one a user might expect (said once per target).
    note: Option<String>,
}

/// How a target on `arch` builds: on the host's arch natively (with a toolchain when `compiler`
/// asks for clang or zig); otherwise as asked, or cross where a toolchain exists for the arch and
/// the host-arch base OS of the target's suite can be had (`host_base`), else emulated.
fn decide(
    arch: Arch,
    asked: Option<Mode>,
    compiler: Option<Compiler>,
    toolchains: &[toolchain::Toolchain],
    host_base: bool,
) -> Result<Decision> {
    let find = || {
        toolchain::choose(toolchains, arch, compiler)
            .and_then(|t| toolchains.iter().position(|x| x.name == t.name))
    };
    let missing = |c: Compiler| {
        Error::usage(format!(
            "no {c} toolchain builds for {}; the {c} toolchains serve: {}",
            arch.uname(),
            toolchain::arches_of(toolchains, c)
        ))
    };
    if arch.is_native() {
        if asked == Some(Mode::Cross) {
            return Err(Error::usage(format!(
                "mode cross is for foreign arches; {} is the host's and builds natively (pick \
                 another compiler with --compiler)",
                arch.uname()
            )));
        }
        let toolchain = match compiler {
            Some(Compiler::Gcc) => None,
            // zig (glibc 2.17) where it serves the host's arch, else the base OS's gcc.
            None => find(),
            Some(c) => Some(find().ok_or_else(|| missing(c))?),
        };
        return Ok(Decision {
            mode: Mode::Native,
            toolchain,
            note: None,
        });
    }
    let exotic = compiler.filter(|c| *c != Compiler::Gcc);
    match asked {
        Some(Mode::Native) => Err(Error::usage(format!(
            "mode native is only for the host's arch ({}); {} builds with --mode cross or emulate",
            Arch::host().uname(),
            arch.uname()
        ))),
        Some(Mode::Emulate) => match exotic {
            Some(c) => Err(Error::usage(format!(
                "--compiler {c} builds in cross mode; an emulated build uses the target base OS's \
                 own gcc (drop --compiler or --mode emulate)"
            ))),
            None => Ok(Decision {
                mode: Mode::Emulate,
                toolchain: None,
                note: None,
            }),
        },
        Some(Mode::Cross) => {
            let t = find().ok_or_else(|| missing(compiler.unwrap_or(Compiler::Gcc)))?;
            if !host_base {
                return Err(Error::usage(format!(
                    "--mode cross for {} needs a {} base OS of the target's suite, and none is \
                     loaded nor has a recipe; load one or use --mode emulate",
                    arch.uname(),
                    Arch::host().uname()
                )));
            }
            Ok(Decision {
                mode: Mode::Cross,
                toolchain: Some(t),
                note: None,
            })
        }
        None => match (find(), host_base, exotic) {
            (Some(t), true, _) => Ok(Decision {
                mode: Mode::Cross,
                toolchain: Some(t),
                note: None,
            }),
            (None, _, Some(c)) => Err(missing(c)),
            (Some(_), false, Some(c)) => Err(Error::usage(format!(
                "--compiler {c} for {} needs a {} base OS of the target's suite, and none is \
                 loaded nor has a recipe",
                arch.uname(),
                Arch::host().uname()
            ))),
            (found, _, None) => Ok(Decision {
                mode: Mode::Emulate,
                toolchain: None,
                note: Some(if found.is_none() {
                    format!(
                        "no cross toolchain for {}: building under emulation",
                        arch.uname()
                    )
                } else {
                    format!(
                        "no {} base OS of the target's suite to cross-compile on: building under \
                         emulation",
                        Arch::host().uname()
                    )
                }),
            }),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn foreign() -> Arch {
        if Arch::host() == Arch::Arm64 {
            Arch::Amd64
        } else {
            Arch::Arm64
        }
    }

    fn err(r: Result<Decision>) -> String {
        r.unwrap_err().to_string()
    }

    #[test]
    fn a_target_is_unavailable_when_its_build_or_test_base_os_did_not_load() {
        let f = foreign();
        let unloaded = vec![Unloaded {
            name: "debian-bullseye".into(),
            arch: f,
            reason: "base OS debian-bullseye for arm64 could not be loaded: 404".into(),
        }];
        // A target of another suite, or of the same suite on another arch, builds.
        assert_eq!(
            unavailable(("debian-bookworm", f), ("debian-bookworm", f), &unloaded),
            None
        );
        assert_eq!(
            unavailable(
                ("debian-bullseye", Arch::host()),
                ("debian-bullseye", Arch::host()),
                &unloaded
            ),
            None
        );
        // Tested (emulated or cross) on the base OS that failed: it fails with the reason.
        let why = unavailable(
            ("debian-bullseye", Arch::host()),
            ("debian-bullseye", f),
            &unloaded,
        );
        assert!(why.unwrap().contains("404"));
        // Cross-compiled on a host-arch base OS that failed.
        let host_failed = vec![Unloaded {
            arch: Arch::host(),
            ..unloaded[0].clone()
        }];
        assert!(unavailable(
            ("debian-bullseye", Arch::host()),
            ("debian-bullseye", f),
            &host_failed
        )
        .is_some());
    }

    #[test]
    fn modes_and_toolchains() {
        let t = toolchain::all(Path::new("/nonexistent")).unwrap();
        let name = |d: &Decision| d.toolchain.map(|i| t[i].name.as_str());
        let host = Arch::host();
        let f = foreign();

        // The host's arch: native, with zig (glibc 2.17) by default, the base OS's gcc with
        // --compiler gcc, or another compiler.
        let d = decide(host, None, None, &t, true).unwrap();
        assert_eq!((d.mode, name(&d)), (Mode::Native, Some("zig")));
        let d = decide(host, None, Some(Compiler::Gcc), &t, true).unwrap();
        assert_eq!((d.mode, name(&d)), (Mode::Native, None));
        let d = decide(host, Some(Mode::Emulate), Some(Compiler::Gcc), &t, true).unwrap();
        assert_eq!((d.mode, name(&d)), (Mode::Native, None));
        let d = decide(host, None, Some(Compiler::Clang), &t, true).unwrap();
        assert_eq!((d.mode, name(&d)), (Mode::Native, Some("clang")));
        assert!(err(decide(host, Some(Mode::Cross), None, &t, true)).contains("builds natively"));

        // A foreign arch: cross by default where a toolchain and a host base OS exist.
        let d = decide(f, None, None, &t, true).unwrap();
        assert_eq!((d.mode, name(&d)), (Mode::Cross, Some("zig")));
        assert_eq!(d.note, None);
        let d = decide(f, None, Some(Compiler::Gcc), &t, true).unwrap();
        assert_eq!((d.mode, name(&d)), (Mode::Cross, Some("gcc-cross")));
        let d = decide(f, None, Some(Compiler::Zig), &t, true).unwrap();
        assert_eq!((d.mode, name(&d)), (Mode::Cross, Some("zig")));
        let d = decide(f, None, None, &t, false).unwrap();
        assert_eq!(d.mode, Mode::Emulate);
        assert!(d.note.unwrap().contains("base OS of the target's suite"));
        let d = decide(f, Some(Mode::Emulate), None, &t, true).unwrap();
        assert_eq!((d.mode, name(&d)), (Mode::Emulate, None));
        assert!(err(decide(
            f,
            Some(Mode::Emulate),
            Some(Compiler::Zig),
            &t,
            true
        ))
        .contains("builds in cross mode"));
        assert!(err(decide(f, Some(Mode::Cross), None, &t, false)).contains("--mode emulate"));
        assert!(err(decide(f, Some(Mode::Native), None, &t, true)).contains("only for the host"));

        // An arch no toolchain serves: emulated by default, an error when asked for.
        let none: Vec<toolchain::Toolchain> = Vec::new();
        let d = decide(f, None, None, &none, true).unwrap();
        assert_eq!(d.mode, Mode::Emulate);
        assert!(d.note.unwrap().contains("no cross toolchain"));
        assert!(err(decide(f, Some(Mode::Cross), None, &none, true))
            .contains("no gcc toolchain builds for"));
        assert!(err(decide(f, None, Some(Compiler::Zig), &none, true)).contains("serve: none"));
    }
}
