//! Targets that build in a container image: cibuildwheel's `manylinux-<arch>-image` and
//! `musllinux-<arch>-image` options (pypa's images, or any image with CPythons under
//! `/opt/python`). The image is a base OS like any other — pulled into the store on first use,
//! found again by its reference — but a target that names one builds there or nowhere: its
//! CPythons are the image's own (`/opt/python/cp311-cp311/bin/python`), its compilers the
//! image's (no cross toolchain), its repair policy the image's `AUDITWHEEL_POLICY` unless the
//! target names one.
//!
//! musllinux targets always build in an image (Debian's base OSes are glibc ones): the option's,
//! else cibuildwheel's default, pypa's `musllinux_1_2`. cibuildwheel builds them by default;
//! here they are added when the project asks for them ([`add_musllinux`]), since each needs
//! its image pulled.

use std::collections::BTreeMap;

use crate::arch::Arch;
use crate::baseos;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::oci::detect::PythonInstall;
use crate::oci::policy::{self, option_name, Family};
use crate::project::{Mode, Project};
use crate::store::{BaseOs, Store};
use crate::target::{self, Platform, Target};

use super::plan::ImageOffer;

/// The image a build identifier builds in, loaded.
#[derive(Debug, Clone)]
pub struct ImageTarget {
    pub offer: ImageOffer,
    pub base: BaseOs,
}

impl ImageTarget {
    /// The interpreter of CPython `version` in the image (its regular build, not `t`).
    pub fn interpreter(&self, version: &str) -> Option<String> {
        self.pythons()
            .find(|p| p.version == version)
            .map(|p| p.path.clone())
    }

    fn pythons(&self) -> impl Iterator<Item = &PythonInstall> {
        self.base.meta.pythons.iter().filter(|p| !p.free_threaded)
    }

    /// The policy a wheel built here is repaired to when the target names none: the image's
    /// `AUDITWHEEL_POLICY` (pypa's images set it: `manylinux_2_28`), else none (`--plat auto`).
    pub fn policy(&self) -> Option<String> {
        self.base
            .meta
            .image
            .as_ref()
            .and_then(|i| i.env_var("AUDITWHEEL_POLICY"))
            .filter(|p| p.starts_with("manylinux"))
            .map(str::to_string)
    }
}

/// The policy family of a platform: musllinux when it names a musllinux policy.
fn family(platform: &Platform) -> Family {
    if platform.policy.as_deref().is_some_and(target::is_musllinux) {
        Family::Musllinux
    } else {
        Family::Manylinux
    }
}

/// `platforms` and, for each arch among them named without a policy, a musllinux platform
/// (`musllinux_1_2`) when the project asks for that arch's musllinux targets: a
/// `musllinux-<arch>-image` option for one of `versions`, or a `build` selector that names
/// musllinux (`*-musllinux_*`). A platform that names a policy is taken as it is.
pub fn add_musllinux(
    project: &Project,
    platforms: Vec<Platform>,
    versions: &[String],
) -> Result<Vec<Platform>> {
    let mut out = platforms.clone();
    for platform in platforms.iter().filter(|p| p.policy.is_none()) {
        let musl = Platform {
            arch: platform.arch,
            policy: Some(target::DEFAULT_MUSLLINUX.to_string()),
        };
        if out.contains(&musl) {
            continue;
        }
        let key = option_name(Family::Musllinux, platform.arch);
        let mut wanted = project.build.names("musllinux");
        for python in versions {
            if wanted {
                break;
            }
            let identifier = Target {
                arch: musl.arch,
                python: python.clone(),
                policy: musl.policy.clone(),
            }
            .identifier();
            wanted = project.options(&identifier)?.images.contains_key(&key);
        }
        if wanted {
            out.push(musl);
        }
    }
    Ok(out)
}

/// The images of a build's identifiers: those loaded, and those that could not be had.
#[derive(Debug, Clone, Default)]
pub struct Images {
    /// Keyed by build identifier.
    pub loaded: BTreeMap<String, ImageTarget>,
    /// Identifiers whose image could not be loaded (unreachable, `--offline`): they fail with
    /// the reason, the others build.
    pub failed: BTreeMap<String, FailedImage>,
}

/// An image that could not be loaded for an identifier.
#[derive(Debug, Clone)]
pub struct FailedImage {
    /// The name it would have had in the store, and why the identifier builds there.
    pub offer: ImageOffer,
    /// `docker://quay.io/pypa/manylinux_2_28_x86_64`
    pub reference: String,
    pub arch: Arch,
    pub reason: String,
}

impl Images {
    /// The offer of an identifier's image, loaded or not.
    pub fn offer(&self, identifier: &str) -> Option<ImageOffer> {
        self.loaded
            .get(identifier)
            .map(|i| i.offer.clone())
            .or_else(|| self.failed.get(identifier).map(|f| f.offer.clone()))
    }

    /// True when the identifier builds in an image (loaded or not).
    pub fn has(&self, identifier: &str) -> bool {
        self.loaded.contains_key(identifier) || self.failed.contains_key(identifier)
    }
}

/// How image loading goes: the registries' options, `--offline`, whether to speak.
pub struct LoadOptions<'a> {
    pub registry: &'a crate::oci::registry::Options,
    /// Never pull: an image the store lacks fails its identifiers.
    pub offline: bool,
    pub say: bool,
}

/// Every identifier of `platforms` × `versions` whose options name an image, or that takes
/// cibuildwheel's default image (`wants_default`: no Debian base OS provides its CPython, or
/// `python-source = "image"`; musllinux always), with that image loaded (pulled now when the
/// store lacks it). An image that cannot be had fails its identifiers, not the build.
pub fn load(
    config: &Config,
    store: &Store,
    project: &Project,
    platforms: &[Platform],
    versions: &[String],
    wants_default: &dyn Fn(&Target) -> bool,
    opts: &LoadOptions,
) -> Result<Images> {
    let mut out = Images::default();
    let mut tried: Vec<(String, Arch, std::result::Result<ImageTarget, String>)> = Vec::new();
    for platform in platforms {
        let arch = platform.arch;
        let family = family(platform);
        let key = option_name(family, arch);
        for python in versions {
            let target = Target {
                arch,
                python: python.clone(),
                policy: platform.policy.clone(),
            };
            let identifier = target.identifier();
            // Left out by the selectors or requires-python: no image pulled for it.
            if out.has(&identifier) || !project.selected(&identifier) {
                continue;
            }
            let options = project.options(&identifier)?;
            let (value, why, default) = match options.images.get(&key) {
                Some(value) => (value.clone(), format!("{key} = {value:?}"), false),
                None if family == Family::Musllinux || wants_default(&target) => {
                    let short = policy::default_image(family, arch);
                    // config.toml's image_mirror stands in for quay.io/pypa.
                    let value = match &config.image_mirror {
                        Some(m) => format!("{}/{short}_{}", m.trim_end_matches('/'), arch.uname()),
                        None => short.to_string(),
                    };
                    (
                        value,
                        format!("{key} (cibuildwheel's default, {short})"),
                        true,
                    )
                }
                None => continue,
            };
            let source = policy::image_for(family, arch, &value)?;
            let reference = baseos::canonical_source(&source)?.to_string();
            let result = match tried.iter().find(|(r, a, _)| *r == reference && *a == arch) {
                Some((_, _, t)) => t.clone(),
                None => {
                    let t = load_one(config, store, &source, arch, &why, default, opts)?;
                    tried.push((reference.clone(), arch, t.clone()));
                    t
                }
            };
            match result {
                Ok(t) => {
                    out.loaded.insert(identifier, t);
                }
                Err(e) => {
                    let offer = ImageOffer {
                        name: baseos::name_from_image(&source),
                        why,
                        python: Vec::new(),
                        default,
                        failed: Some(e.clone()),
                    };
                    out.failed.insert(
                        identifier,
                        FailedImage {
                            offer,
                            reference: reference.clone(),
                            arch,
                            reason: e,
                        },
                    );
                }
            }
        }
    }
    explain_failures(&mut out);
    Ok(out)
}

/// One reason for all the identifiers of an image that could not be had (they fail by its
/// name): which they are, and what to do.
fn explain_failures(out: &mut Images) {
    let all: Vec<(String, String)> = out
        .failed
        .iter()
        .map(|(id, f)| (id.clone(), format!("{} {}", f.reference, f.arch)))
        .collect();
    for f in out.failed.values_mut() {
        let ids: Vec<&str> = all
            .iter()
            .filter(|(_, r)| *r == format!("{} {}", f.reference, f.arch))
            .map(|(id, _)| id.as_str())
            .collect();
        let arch = f.arch;
        let reason = format!(
            "its image {} ({}) could not be loaded: {}; leave it out (skip = \"{}\"), or pull \
             the image where the registry is reachable (pookie-ns load-baseos {} --arch {arch}) \
             so that later builds, --offline ones too, find it in the store",
            f.reference,
            f.offer.why,
            f.reason,
            ids.join(" "),
            f.reference
        );
        f.offer.failed = Some(reason.clone());
        f.reason = reason;
    }
}

/// One image for `arch`, from the store or pulled now: the image target, or why it could not
/// be had (an interruption stops the build).
fn load_one(
    config: &Config,
    store: &Store,
    source: &crate::oci::ImageSource,
    arch: Arch,
    why: &str,
    default: bool,
    opts: &LoadOptions,
) -> Result<std::result::Result<ImageTarget, String>> {
    let base = match baseos::find_image(store, source, arch)? {
        Some(b) => Ok(b),
        None if opts.offline && matches!(source, crate::oci::ImageSource::Registry(_)) => {
            return Ok(Err(
                "it is not in the store, and --offline forbids pulling it".into(),
            ));
        }
        None => baseos::ensure_image(
            config,
            store,
            source,
            arch,
            opts.registry,
            &format!("the project's {why}"),
            baseos::Output {
                bars: opts.say,
                say: opts.say,
                json: false,
                replace: false,
            },
        ),
    };
    let base = match base {
        Ok(b) => b,
        Err(e) => {
            if crate::process::interrupted().is_some() {
                return Err(e);
            }
            return Ok(Err(e.to_string()));
        }
    };
    if base.arch != arch {
        return Ok(Err(format!("the image is for {}, not {arch}", base.arch)));
    }
    let python = base
        .meta
        .pythons
        .iter()
        .filter(|p| !p.free_threaded)
        .map(|p| p.version.clone())
        .collect();
    Ok(Ok(ImageTarget {
        offer: ImageOffer {
            name: base.name.clone(),
            why: why.to_string(),
            python,
            default,
            failed: None,
        },
        base,
    }))
}

/// How a target builds in its image: natively on the host's arch, emulated on another (the
/// image's own compilers; no cross toolchain uses an image as its sysroot yet). A target in
/// cibuildwheel's default image (`default`: no Debian base OS has its CPython) asked to build
/// cross builds emulated, with a note; one in an image the project names refuses.
pub fn mode(
    arch: Arch,
    asked: Option<Mode>,
    why: &str,
    default: bool,
) -> Result<(Mode, Option<String>)> {
    if default && !arch.is_native() && asked == Some(Mode::Cross) {
        let note = format!(
            "built emulated in its image ({why}): cross-compiling against an image's sysroot \
             is not available yet"
        );
        return Ok((Mode::Emulate, Some(note)));
    }
    mode_named(arch, asked, why).map(|m| (m, None))
}

fn mode_named(arch: Arch, asked: Option<Mode>, why: &str) -> Result<Mode> {
    match (arch.is_native(), asked) {
        (true, Some(Mode::Cross)) | (true, Some(Mode::Emulate)) | (true, None) => Ok(Mode::Native),
        (true, Some(Mode::Native)) => Ok(Mode::Native),
        (false, Some(Mode::Cross)) => Err(Error::usage(format!(
            "{why}: builds in that image run emulated for {}; --mode cross does not use an \
             image (drop --mode cross; a manylinux target cross-compiles on Debian without the \
             image option, a musllinux target has its image only)",
            arch.uname()
        ))),
        (false, Some(Mode::Native)) => Err(Error::usage(format!(
            "mode native is only for the host's arch ({}); {} builds in its image emulated",
            Arch::host().uname(),
            arch.uname()
        ))),
        (false, _) => Ok(Mode::Emulate),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_targets_build_natively_or_emulated() {
        let host = Arch::host();
        let foreign = if host == Arch::Arm64 {
            Arch::Amd64
        } else {
            Arch::Arm64
        };
        let m = |a, asked, default| mode(a, asked, "x", default).map(|(m, _)| m);
        assert_eq!(m(host, None, false).unwrap(), Mode::Native);
        assert_eq!(m(foreign, None, false).unwrap(), Mode::Emulate);
        assert_eq!(
            m(foreign, Some(Mode::Emulate), false).unwrap(),
            Mode::Emulate
        );
        assert!(m(foreign, Some(Mode::Cross), false)
            .unwrap_err()
            .to_string()
            .contains("does not use an image"));
        // cibuildwheel's default image, taken for want of a Debian CPython: emulated, said.
        let (mode, note) = mode(foreign, Some(Mode::Cross), "x", true).unwrap();
        assert_eq!(mode, Mode::Emulate);
        assert!(note.unwrap().contains("not available yet"));
        assert_eq!(m(host, Some(Mode::Cross), true).unwrap(), Mode::Native);
        assert_eq!(
            option_name(Family::Manylinux, Arch::Arm64),
            "manylinux-aarch64-image"
        );
        assert_eq!(
            option_name(Family::Musllinux, Arch::Amd64),
            "musllinux-x86_64-image"
        );
    }
}
