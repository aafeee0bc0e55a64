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

/// Every identifier of `platforms` × `versions` whose options name an image, with that image
/// loaded (pulled now when the store lacks it). Keyed by build identifier.
#[allow(clippy::too_many_arguments)]
pub fn load(
    config: &Config,
    store: &Store,
    project: &Project,
    platforms: &[Platform],
    versions: &[String],
    registry: &crate::oci::registry::Options,
    say: bool,
) -> Result<BTreeMap<String, ImageTarget>> {
    let mut out = BTreeMap::new();
    let mut loaded: Vec<(String, Arch, ImageTarget)> = Vec::new();
    for platform in platforms {
        let arch = platform.arch;
        let family = family(platform);
        let key = option_name(family, arch);
        for python in versions {
            let identifier = Target {
                arch,
                python: python.clone(),
                policy: platform.policy.clone(),
            }
            .identifier();
            // Left out by the selectors or requires-python: no image pulled for it.
            if out.contains_key(&identifier) || !project.selected(&identifier) {
                continue;
            }
            let options = project.options(&identifier)?;
            let (value, why) = match (options.images.get(&key), family) {
                (Some(value), _) => (value.clone(), format!("{key} = {value:?}")),
                (None, Family::Musllinux) => (
                    target::DEFAULT_MUSLLINUX.to_string(),
                    format!(
                        "{key} (cibuildwheel's default, {})",
                        target::DEFAULT_MUSLLINUX
                    ),
                ),
                (None, Family::Manylinux) => continue,
            };
            let source = policy::image_for(family, arch, &value)?;
            let reference = source.to_string();
            let target = match loaded
                .iter()
                .find(|(r, a, _)| *r == reference && *a == arch)
            {
                Some((_, _, t)) => t.clone(),
                None => {
                    let base = baseos::ensure_image(
                        config,
                        store,
                        &source,
                        arch,
                        registry,
                        &format!("the project's {why}"),
                        baseos::Output {
                            bars: say,
                            say,
                            json: false,
                            replace: false,
                        },
                    )?;
                    if base.arch != arch {
                        return Err(Error::usage(format!(
                            "{why}: the image is for {}, not {arch}",
                            base.arch
                        )));
                    }
                    let t = ImageTarget {
                        offer: ImageOffer {
                            name: base.name.clone(),
                            why: why.clone(),
                            python: Vec::new(),
                        },
                        base,
                    };
                    let python = t.pythons().map(|p| p.version.clone()).collect();
                    let t = ImageTarget {
                        offer: ImageOffer { python, ..t.offer },
                        ..t
                    };
                    loaded.push((reference, arch, t.clone()));
                    t
                }
            };
            out.insert(identifier, target);
        }
    }
    Ok(out)
}

/// How a target builds in its image: natively on the host's arch, emulated on another (the
/// image's own compilers; no cross toolchain uses an image as its sysroot yet).
pub fn mode(arch: Arch, asked: Option<Mode>, why: &str) -> Result<Mode> {
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
        assert_eq!(mode(host, None, "x").unwrap(), Mode::Native);
        assert_eq!(mode(foreign, None, "x").unwrap(), Mode::Emulate);
        assert_eq!(
            mode(foreign, Some(Mode::Emulate), "x").unwrap(),
            Mode::Emulate
        );
        assert!(mode(foreign, Some(Mode::Cross), "x")
            .unwrap_err()
            .to_string()
            .contains("does not use an image"));
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
