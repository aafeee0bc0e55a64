//! Which targets a build has and which base OS serves each: platforms × CPython versions,
//! filtered by the project's `build`/`skip` selectors, each paired with its source: a loaded
//! Debian base OS that provides that Python for that arch, or the recipe that will load one,
//! else the image cibuildwheel would use (the caller loads the images first: their CPythons
//! decide). Pure logic: the caller gathers what is loaded, which recipes exist and the images.

use crate::arch::Arch;
use crate::project::Project;
use crate::target::{Platform, Target};

/// A loaded base OS, as far as choosing one goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loaded {
    pub name: String,
    pub arch: Arch,
    /// The CPythons its recipe provides; empty for an archive imported by path (not chosen for
    /// builds).
    pub python: Vec<String>,
}

/// A recipe, as far as choosing one goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    pub name: String,
    pub python: Vec<String>,
    pub arches: Vec<Arch>,
}

/// Where a target's base OS comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Loaded already, under this name.
    Loaded(String),
    /// To be built from this recipe (and loaded under the recipe's name) first.
    Recipe(String),
    /// An image (cibuildwheel's `manylinux-<arch>-image`, or its default), loaded under this
    /// name — or, when it could not be pulled, the name it would have had.
    Image(String),
}

impl Source {
    pub fn name(&self) -> &str {
        match self {
            Source::Loaded(n) | Source::Recipe(n) | Source::Image(n) => n,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    pub target: Target,
    pub source: Source,
}

/// The CPython versions a build covers when `--python` names none, as cibuildwheel's: every
/// one the project's `requires-python` admits (those no base OS provides are reported skipped).
pub const CPYTHONS: [&str; 8] = ["3.8", "3.9", "3.10", "3.11", "3.12", "3.13", "3.14", "3.15"];

/// A target left out, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Skipped {
    /// cibuildwheel's identifier: `cp310-manylinux_x86_64`.
    pub identifier: String,
    pub reason: String,
}

/// How the error of a plan that the selectors left empty starts (`--allow-empty` accepts it).
pub const NOTHING_LEFT: &str = "no target left to build";

/// The image base OS a target must build in (cibuildwheel's `manylinux-<arch>-image`), loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageOffer {
    /// The base OS's name in the store.
    pub name: String,
    /// The option that names it, for messages: `manylinux-x86_64-image = "..."`.
    pub why: String,
    /// The CPythons under its `/opt/python` (`3.11`; free-threaded builds left out).
    pub python: Vec<String>,
    /// True for cibuildwheel's default image (no option names it).
    pub default: bool,
    /// Why the image could not be loaded: its targets are planned (pypa's images carry every
    /// CPython) and fail with this reason.
    pub failed: Option<String>,
}

/// Pairs platforms with Python versions and chooses a base OS for each pair.
///
/// Without `pythons`, each platform gets every CPython of [`CPYTHONS`] that the project's
/// `requires-python` admits; a version no loaded base OS nor recipe provides for the arch is
/// skipped with the reason. Versions asked for (`pythons`) must be provided: a pair nothing
/// provides is an error that lists what is available. Targets the selectors or
/// `requires-python` exclude are skipped too.
///
/// A target for which `image` names an image base OS builds there or nowhere: the image's own
/// CPythons decide, never a Debian recipe. An image that could not be loaded gets its targets
/// planned all the same, to fail with the reason.
pub fn plan(
    platforms: &[Platform],
    pythons: &[String],
    project: &Project,
    loaded: &[Loaded],
    offers: &[Offer],
    default_recipe: &str,
    image: &dyn Fn(&Target) -> Option<ImageOffer>,
) -> Result<(Vec<Planned>, Vec<Skipped>), String> {
    let mut planned = Vec::new();
    let mut skipped: Vec<Skipped> = Vec::new();
    let mut missing = Vec::new();
    let explicit = !pythons.is_empty();
    let versions: Vec<String> = if explicit {
        pythons.to_vec()
    } else {
        CPYTHONS.iter().map(|v| v.to_string()).collect()
    };
    for platform in platforms {
        for python in &versions {
            let target = Target {
                arch: platform.arch,
                python: python.clone(),
                policy: platform.policy.clone(),
            };
            if planned.iter().any(|p: &Planned| p.target == target) {
                continue;
            }
            let mut skip = |reason: String| {
                if !skipped.iter().any(|s| s.identifier == target.identifier()) {
                    skipped.push(Skipped {
                        identifier: target.identifier(),
                        reason,
                    });
                }
            };
            if !project.config.selected_python(&target.identifier()) {
                if explicit {
                    skip(format!(
                        "the project's requires-python ({}) excludes it",
                        project.config.requires_python.as_deref().unwrap_or("")
                    ));
                }
                continue;
            }
            if !project.selected(&target.identifier()) {
                skip("left out by the project's build/skip selectors".into());
                continue;
            }
            if let Some(img) = image(&target) {
                if img.failed.is_some() || img.python.iter().any(|p| p == python) {
                    planned.push(Planned {
                        target,
                        source: Source::Image(img.name),
                    });
                } else {
                    let why = format!(
                        "the image {} ({}) carries CPython {}, not {python}",
                        img.name,
                        img.why,
                        if img.python.is_empty() {
                            "none under /opt/python".to_string()
                        } else {
                            img.python.join(", ")
                        }
                    );
                    if explicit {
                        missing.push(why);
                    } else {
                        skip(why);
                    }
                }
                continue;
            }
            if target.is_musllinux() {
                // Debian's base OSes are glibc ones: a musllinux target has its image or nothing.
                let why = format!(
                    "musllinux targets build in a musllinux image (musllinux-{}-image), and \
                     none was loaded for {}",
                    platform.arch.uname(),
                    target.identifier()
                );
                if explicit {
                    missing.push(why);
                } else {
                    skip(why);
                }
                continue;
            }
            match choose(platform.arch, python, loaded, offers, default_recipe) {
                Some(source) => planned.push(Planned { target, source }),
                None if explicit => {
                    missing.push(format!("CPython {python} for {}", platform.arch.uname()))
                }
                None => skip(format!(
                    "no loaded base OS nor recipe provides CPython {python} for {}",
                    platform.arch.uname()
                )),
            }
        }
    }
    if !missing.is_empty() {
        return Err(format!(
            "no base OS provides {}; available: {}",
            missing.join(", "),
            describe_available(loaded, offers)
        ));
    }
    if planned.is_empty() {
        return Err(format!(
            "{NOTHING_LEFT}: {}",
            skipped
                .iter()
                .map(|s| format!("{} ({})", s.identifier, s.reason))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    Ok((planned, skipped))
}

/// A loaded base OS with that Python for that arch (the default recipe's first), else a recipe
/// that provides it; `None` when no Debian base OS has it (the image is the source then).
pub fn choose(
    arch: Arch,
    python: &str,
    loaded: &[Loaded],
    offers: &[Offer],
    default_recipe: &str,
) -> Option<Source> {
    let mut have: Vec<&Loaded> = loaded
        .iter()
        .filter(|l| l.arch == arch && l.python.iter().any(|p| p == python))
        .collect();
    have.sort_by_key(|l| (l.name != default_recipe, l.name.clone()));
    if let Some(l) = have.first() {
        return Some(Source::Loaded(l.name.clone()));
    }
    let mut can: Vec<&Offer> = offers
        .iter()
        .filter(|o| o.python.iter().any(|p| p == python) && o.arches.contains(&arch))
        // A loaded base OS of that name for that arch provides another Python: not this one.
        .filter(|o| !loaded.iter().any(|l| l.name == o.name && l.arch == arch))
        .collect();
    // The default recipe first, then in the recipes' own order (a released suite before
    // testing: trixie's 3.13 before forky's).
    can.sort_by_key(|o| o.name != default_recipe);
    can.first().map(|o| Source::Recipe(o.name.clone()))
}

fn describe_available(loaded: &[Loaded], offers: &[Offer]) -> String {
    let mut parts = Vec::new();
    let with_python: Vec<String> = loaded
        .iter()
        .filter(|l| !l.python.is_empty())
        .map(|l| {
            format!(
                "{} {} (CPython {})",
                l.name,
                l.arch.uname(),
                l.python.join(", ")
            )
        })
        .collect();
    if !with_python.is_empty() {
        parts.push(format!("loaded: {}", with_python.join(", ")));
    }
    if !offers.is_empty() {
        let recipes: Vec<String> = offers
            .iter()
            .map(|o| {
                let arches: Vec<&str> = o.arches.iter().map(|a| a.uname()).collect();
                format!(
                    "{} (CPython {}: {})",
                    o.name,
                    o.python.join(", "),
                    arches.join(" ")
                )
            })
            .collect();
        parts.push(format!("recipes: {}", recipes.join("; ")));
    }
    if parts.is_empty() {
        "nothing (no base OS loaded and no recipe)".into()
    } else {
        parts.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::{parse_platform, Selector};

    fn offers() -> Vec<Offer> {
        let all = vec![Arch::Amd64, Arch::Arm64, Arch::Armhf];
        vec![
            Offer {
                name: "debian-bullseye".into(),
                python: vec!["3.9".into()],
                arches: all.clone(),
            },
            Offer {
                name: "debian-bookworm".into(),
                python: vec!["3.11".into()],
                arches: all.clone(),
            },
            Offer {
                name: "debian-trixie".into(),
                python: vec!["3.13".into()],
                arches: vec![Arch::Amd64, Arch::Arm64],
            },
            Offer {
                name: "debian-forky".into(),
                python: vec!["3.13".into(), "3.14".into(), "3.15".into()],
                arches: vec![Arch::Amd64, Arch::Arm64],
            },
        ]
    }

    fn loaded(name: &str, arch: Arch, python: Option<&str>) -> Loaded {
        Loaded {
            name: name.into(),
            arch,
            python: python.map(str::to_string).into_iter().collect(),
        }
    }

    fn platforms(tags: &[&str]) -> Vec<Platform> {
        tags.iter().map(|t| parse_platform(t).unwrap()).collect()
    }

    /// A plan with the default recipe bookworm's, `loaded` base OSes and `image`'s offers.
    fn plan_with(
        tags: &[&str],
        pythons: &[String],
        project: &Project,
        loaded: &[Loaded],
        image: &dyn Fn(&Target) -> Option<ImageOffer>,
    ) -> Result<(Vec<Planned>, Vec<Skipped>), String> {
        plan(
            &platforms(tags),
            pythons,
            project,
            loaded,
            &offers(),
            "debian-bookworm",
            image,
        )
    }

    /// [`plan_with`] nothing loaded and no image.
    fn plan_for(
        tags: &[&str],
        pythons: &[String],
        project: &Project,
    ) -> Result<(Vec<Planned>, Vec<Skipped>), String> {
        plan_with(tags, pythons, project, &[], &|_| None)
    }

    fn ids(p: &[Planned]) -> Vec<String> {
        p.iter().map(|p| p.target.identifier()).collect()
    }

    fn py(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn requiring(spec: &str) -> Project {
        let mut p = Project::default();
        p.config.requires_python = Some(spec.to_string());
        p
    }

    #[test]
    fn image_targets_take_their_cpythons_from_the_image_only() {
        let image = |t: &Target| {
            (t.arch == Arch::Amd64).then(|| ImageOffer {
                name: "manylinux_2_28_x86_64".into(),
                why: "manylinux-x86_64-image = \"manylinux_2_28\"".into(),
                python: py(&["3.9", "3.11"]),
                default: false,
                failed: None,
            })
        };
        // Default CPythons: those the image carries, the rest skipped with the reason; the
        // other arch as before, from the recipes.
        let (p, skipped) = plan_with(
            &["x86_64", "aarch64"],
            &[],
            &requiring(">=3.10"),
            &[],
            &image,
        )
        .unwrap();
        assert_eq!(
            ids(&p),
            [
                "cp311-manylinux_x86_64",
                "cp311-manylinux_aarch64",
                "cp313-manylinux_aarch64",
                "cp314-manylinux_aarch64",
                "cp315-manylinux_aarch64"
            ]
        );
        assert_eq!(p[0].source, Source::Image("manylinux_2_28_x86_64".into()));
        let why = skipped
            .iter()
            .find(|s| s.identifier == "cp313-manylinux_x86_64")
            .unwrap();
        assert!(
            why.reason.contains("carries CPython 3.9, 3.11, not 3.13"),
            "{why:?}"
        );
        // Asked for and not in the image: an error, even where a recipe has it.
        let e = plan_with(
            &["x86_64"],
            &py(&["3.13"]),
            &Project::default(),
            &[],
            &image,
        )
        .unwrap_err();
        assert!(e.contains("manylinux-x86_64-image"), "{e}");
    }

    #[test]
    fn musllinux_targets_build_in_their_image_or_nowhere() {
        let image = |t: &Target| {
            t.is_musllinux().then(|| ImageOffer {
                name: "musllinux_1_2_x86_64".into(),
                why: "musllinux-x86_64-image = \"musllinux_1_2\"".into(),
                python: py(&["3.11", "3.13"]),
                default: false,
                failed: None,
            })
        };
        // Beside the manylinux target (a Debian recipe), the musllinux one in its image.
        let (p, _) = plan_with(
            &["x86_64", "musllinux_1_2_x86_64"],
            &py(&["3.11"]),
            &Project::default(),
            &[],
            &image,
        )
        .unwrap();
        assert_eq!(
            ids(&p),
            ["cp311-manylinux_x86_64", "cp311-musllinux_x86_64"]
        );
        assert_eq!(p[0].source, Source::Recipe("debian-bookworm".into()));
        assert_eq!(p[1].source, Source::Image("musllinux_1_2_x86_64".into()));
        // Without its image, never a Debian (glibc) base OS: skipped, or an error when asked.
        let (p, skipped) = plan_for(
            &["x86_64", "musllinux_1_2_x86_64"],
            &[],
            &Project::default(),
        )
        .unwrap();
        assert!(p.iter().all(|p| !p.target.is_musllinux()), "{p:?}");
        assert!(skipped
            .iter()
            .any(|s| s.identifier == "cp311-musllinux_x86_64"
                && s.reason.contains("build in a musllinux image")));
        let e = plan_for(
            &["musllinux_1_2_x86_64"],
            &py(&["3.11"]),
            &Project::default(),
        )
        .unwrap_err();
        assert!(e.contains("musllinux-x86_64-image"), "{e}");
    }

    #[test]
    fn cpythons_debian_lacks_come_from_the_default_image_even_when_it_failed_to_load() {
        // As the caller offers it: cibuildwheel's default image for the CPythons no Debian
        // base OS has (3.10, 3.12 here), the first loaded, the other not pullable.
        let image = |t: &Target| {
            let lacking = choose(t.arch, &t.python, &[], &offers(), "debian-bookworm").is_none();
            lacking.then(|| ImageOffer {
                name: "manylinux_2_28_x86_64".into(),
                why: "manylinux-x86_64-image (cibuildwheel's default, manylinux_2_28)".into(),
                python: py(&["3.10"]),
                default: true,
                failed: (t.python == "3.12").then(|| "cannot reach the registry".to_string()),
            })
        };
        let (p, skipped) =
            plan_with(&["x86_64"], &[], &requiring(">=3.10,<3.14"), &[], &image).unwrap();
        assert!(skipped.is_empty(), "never dropped: {skipped:?}");
        let sources: Vec<(String, &Source)> = p
            .iter()
            .map(|p| (p.target.identifier(), &p.source))
            .collect();
        let image = Source::Image("manylinux_2_28_x86_64".into());
        assert_eq!(
            sources,
            [
                ("cp310-manylinux_x86_64".into(), &image),
                (
                    "cp311-manylinux_x86_64".into(),
                    &Source::Recipe("debian-bookworm".into())
                ),
                ("cp312-manylinux_x86_64".into(), &image),
                (
                    "cp313-manylinux_x86_64".into(),
                    &Source::Recipe("debian-trixie".into())
                ),
            ]
        );
    }

    #[test]
    fn loaded_base_oses_are_preferred_and_missing_ones_come_from_recipes() {
        let l = vec![loaded("debian-bookworm", Arch::Amd64, Some("3.11"))];
        let (p, skipped) = plan_with(
            &["x86_64", "aarch64"],
            &py(&["3.11"]),
            &Project::default(),
            &l,
            &|_| None,
        )
        .unwrap();
        assert!(skipped.is_empty());
        assert_eq!(
            ids(&p),
            ["cp311-manylinux_x86_64", "cp311-manylinux_aarch64"]
        );
        assert_eq!(p[0].source, Source::Loaded("debian-bookworm".into()));
        assert_eq!(p[1].source, Source::Recipe("debian-bookworm".into()));
    }

    #[test]
    fn pythons_pick_their_base_os() {
        let (p, _) = plan_with(
            &["x86_64"],
            &py(&["3.9", "3.11", "3.13"]),
            &Project::default(),
            &[loaded("mine", Arch::Amd64, Some("3.13"))],
            &|_| None,
        )
        .unwrap();
        let sources: Vec<&str> = p.iter().map(|p| p.source.name()).collect();
        assert_eq!(sources, ["debian-bullseye", "debian-bookworm", "mine"]);
    }

    #[test]
    fn one_recipe_provides_several_pythons() {
        let (p, _) = plan_for(
            &["aarch64"],
            &py(&["3.13", "3.14", "3.15"]),
            &Project::default(),
        )
        .unwrap();
        let sources: Vec<&Source> = p.iter().map(|p| &p.source).collect();
        // 3.13 from trixie (the released suite, listed first), 3.14 and 3.15 from forky.
        assert_eq!(
            sources,
            [
                &Source::Recipe("debian-trixie".into()),
                &Source::Recipe("debian-forky".into()),
                &Source::Recipe("debian-forky".into())
            ]
        );
        // A loaded forky serves all three of its own.
        let mut l = loaded("debian-forky", Arch::Arm64, None);
        l.python = py(&["3.13", "3.14", "3.15"]);
        let (p, _) = plan_with(&["aarch64"], &[], &requiring(">=3.13"), &[l], &|_| None).unwrap();
        assert_eq!(
            ids(&p),
            [
                "cp313-manylinux_aarch64",
                "cp314-manylinux_aarch64",
                "cp315-manylinux_aarch64"
            ]
        );
        assert!(p
            .iter()
            .all(|p| p.source == Source::Loaded("debian-forky".into())));
    }

    #[test]
    fn default_pythons_are_what_requires_python_admits_and_something_provides() {
        let (p, skipped) = plan_for(&["x86_64"], &[], &requiring(">=3.9")).unwrap();
        assert_eq!(
            ids(&p),
            [
                "cp39-manylinux_x86_64",
                "cp311-manylinux_x86_64",
                "cp313-manylinux_x86_64",
                "cp314-manylinux_x86_64",
                "cp315-manylinux_x86_64"
            ]
        );
        let s: Vec<(&str, &str)> = skipped
            .iter()
            .map(|s| (s.identifier.as_str(), s.reason.as_str()))
            .collect();
        assert_eq!(
            s,
            [
                (
                    "cp310-manylinux_x86_64",
                    "no loaded base OS nor recipe provides CPython 3.10 for x86_64"
                ),
                (
                    "cp312-manylinux_x86_64",
                    "no loaded base OS nor recipe provides CPython 3.12 for x86_64"
                ),
            ],
            "3.8 is excluded by requires-python, not skipped"
        );
        // Without requires-python: every version, 3.8 included (and skipped: nothing has it).
        let (_, skipped) = plan_for(&["x86_64"], &[], &Project::default()).unwrap();
        assert_eq!(skipped[0].identifier, "cp38-manylinux_x86_64");
        // An explicit version requires-python excludes is skipped, with that reason.
        let (p, skipped) =
            plan_for(&["x86_64"], &py(&["3.11", "3.13"]), &requiring(">=3.13")).unwrap();
        assert_eq!(ids(&p), ["cp313-manylinux_x86_64"]);
        assert!(
            skipped[0].reason.contains("requires-python (>=3.13)"),
            "{skipped:?}"
        );
    }

    #[test]
    fn unsatisfiable_pairs_list_what_is_available() {
        let e = plan_for(
            &["armv7l", "x86_64"],
            &py(&["3.13", "3.12"]),
            &Project::default(),
        )
        .unwrap_err();
        assert!(e.contains("CPython 3.13 for armv7l"), "{e}");
        assert!(e.contains("CPython 3.12 for x86_64"), "{e}");
        assert!(!e.contains("CPython 3.13 for x86_64"), "{e}");
        assert!(
            e.contains("debian-trixie (CPython 3.13: x86_64 aarch64)"),
            "{e}"
        );
        assert!(
            e.contains("debian-forky (CPython 3.13, 3.14, 3.15: x86_64 aarch64)"),
            "{e}"
        );
    }

    #[test]
    fn selectors_filter_targets() {
        let project = Project {
            skip: Selector::parse("*-manylinux_aarch64").unwrap(),
            ..Project::default()
        };
        let (p, skipped) = plan_for(&["x86_64", "aarch64"], &py(&["3.11"]), &project).unwrap();
        assert_eq!(ids(&p), ["cp311-manylinux_x86_64"]);
        assert_eq!(skipped.len(), 1);
        assert_eq!(skipped[0].identifier, "cp311-manylinux_aarch64");
        assert!(skipped[0].reason.contains("selectors"));

        let project = Project {
            build: Selector::parse("cp39-*").unwrap(),
            ..Project::default()
        };
        let e = plan_for(&["x86_64"], &py(&["3.11"]), &project).unwrap_err();
        assert!(
            e.contains("no target left to build: cp311-manylinux_x86_64 (left out by the project's build/skip selectors)"),
            "{e}"
        );
    }

    #[test]
    fn repeated_targets_build_once_and_policies_are_kept() {
        let (p, _) = plan_for(
            &["manylinux_2_17_aarch64", "aarch64"],
            &py(&["3.11"]),
            &Project::default(),
        )
        .unwrap();
        assert_eq!(p.len(), 2, "a policy makes it another target");
        assert_eq!(p[0].target.platform_tag(), "manylinux_2_17_aarch64");
        let (p, _) = plan_for(&["aarch64", "arm64"], &py(&["3.11"]), &Project::default()).unwrap();
        assert_eq!(p.len(), 1);
    }
}
