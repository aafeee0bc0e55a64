//! Which targets a build has and which base OS serves each: platforms × CPython versions,
//! filtered by the project's `build`/`skip` selectors, each paired with a loaded base OS that
//! provides that Python for that arch, or with the recipe that will load one. Pure logic: the
//! caller gathers what is loaded and which recipes exist.

use crate::arch::Arch;
use crate::project::Project;
use crate::target::{Platform, Target};

/// A loaded base OS, as far as choosing one goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loaded {
    pub name: String,
    pub arch: Arch,
    /// From its recipe; `None` for an archive imported by path (not chosen for builds).
    pub python: Option<String>,
}

/// A recipe, as far as choosing one goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    pub name: String,
    pub python: String,
    pub arches: Vec<Arch>,
}

/// Where a target's base OS comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Loaded already, under this name.
    Loaded(String),
    /// To be built from this recipe (and loaded under the recipe's name) first.
    Recipe(String),
}

impl Source {
    pub fn name(&self) -> &str {
        match self {
            Source::Loaded(n) | Source::Recipe(n) => n,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    pub target: Target,
    pub source: Source,
}

/// The platforms to build when the command line and pyproject.toml name none: the host's arch
/// and every arch with a loaded base OS that provides a Python.
pub fn default_platforms(loaded: &[Loaded]) -> Vec<Platform> {
    let mut arches: Vec<Arch> = loaded
        .iter()
        .filter(|l| l.python.is_some())
        .map(|l| l.arch)
        .collect();
    arches.push(Arch::host());
    arches.sort();
    arches.dedup();
    arches
        .into_iter()
        .map(|arch| Platform { arch, policy: None })
        .collect()
}

/// How the error of a plan that the selectors left empty starts (`--allow-empty` accepts it).
pub const NOTHING_LEFT: &str = "no target left to build";

/// Pairs platforms with Python versions and chooses a base OS for each pair.
///
/// Without `pythons`, each arch gets the versions of its loaded base OSes, or else the default
/// recipe's. A pair nothing provides is an error that lists what is available. Targets the
/// selectors exclude are left out (and named in the second list).
pub fn plan(
    platforms: &[Platform],
    pythons: &[String],
    project: &Project,
    loaded: &[Loaded],
    offers: &[Offer],
    default_recipe: &str,
) -> Result<(Vec<Planned>, Vec<String>), String> {
    let mut planned = Vec::new();
    let mut skipped = Vec::new();
    let mut missing = Vec::new();
    for platform in platforms {
        let versions: Vec<String> = if pythons.is_empty() {
            let mut v: Vec<String> = loaded
                .iter()
                .filter(|l| l.arch == platform.arch)
                .filter_map(|l| l.python.clone())
                .collect();
            if v.is_empty() {
                v.extend(
                    offers
                        .iter()
                        .find(|o| o.name == default_recipe)
                        .map(|o| o.python.clone()),
                );
            }
            v.sort_by_key(|p| version_key(p));
            v.dedup();
            v
        } else {
            pythons.to_vec()
        };
        for python in versions {
            let target = Target {
                arch: platform.arch,
                python: python.clone(),
                policy: platform.policy.clone(),
            };
            if planned.iter().any(|p: &Planned| p.target == target) {
                continue;
            }
            if !project.selected(&target.identifier()) {
                skipped.push(target.identifier());
                continue;
            }
            match choose(platform.arch, &python, loaded, offers, default_recipe) {
                Some(source) => planned.push(Planned { target, source }),
                None => missing.push(format!("CPython {python} for {}", platform.arch.uname())),
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
            "{NOTHING_LEFT}: the project's build/skip selectors (and requires-python) exclude \
             every one ({})",
            skipped.join(", ")
        ));
    }
    Ok((planned, skipped))
}

/// A loaded base OS with that Python for that arch (the default recipe's first), else a recipe
/// that provides it.
fn choose(
    arch: Arch,
    python: &str,
    loaded: &[Loaded],
    offers: &[Offer],
    default_recipe: &str,
) -> Option<Source> {
    let mut have: Vec<&Loaded> = loaded
        .iter()
        .filter(|l| l.arch == arch && l.python.as_deref() == Some(python))
        .collect();
    have.sort_by_key(|l| (l.name != default_recipe, l.name.clone()));
    if let Some(l) = have.first() {
        return Some(Source::Loaded(l.name.clone()));
    }
    let mut can: Vec<&Offer> = offers
        .iter()
        .filter(|o| o.python == python && o.arches.contains(&arch))
        // A loaded base OS of that name for that arch provides another Python: not this one.
        .filter(|o| !loaded.iter().any(|l| l.name == o.name && l.arch == arch))
        .collect();
    can.sort_by_key(|o| (o.name != default_recipe, o.name.clone()));
    can.first().map(|o| Source::Recipe(o.name.clone()))
}

fn version_key(v: &str) -> (u32, u32) {
    let mut it = v.split('.').map(|p| p.parse().unwrap_or(0));
    (it.next().unwrap_or(0), it.next().unwrap_or(0))
}

fn describe_available(loaded: &[Loaded], offers: &[Offer]) -> String {
    let mut parts = Vec::new();
    let with_python: Vec<String> = loaded
        .iter()
        .filter_map(|l| {
            l.python
                .as_ref()
                .map(|p| format!("{} {} (CPython {p})", l.name, l.arch.uname()))
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
                format!("{} (CPython {}: {})", o.name, o.python, arches.join(" "))
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
                python: "3.9".into(),
                arches: all.clone(),
            },
            Offer {
                name: "debian-bookworm".into(),
                python: "3.11".into(),
                arches: all.clone(),
            },
            Offer {
                name: "debian-trixie".into(),
                python: "3.13".into(),
                arches: vec![Arch::Amd64, Arch::Arm64],
            },
        ]
    }

    fn loaded(name: &str, arch: Arch, python: Option<&str>) -> Loaded {
        Loaded {
            name: name.into(),
            arch,
            python: python.map(str::to_string),
        }
    }

    fn platforms(tags: &[&str]) -> Vec<Platform> {
        tags.iter().map(|t| parse_platform(t).unwrap()).collect()
    }

    fn ids(p: &[Planned]) -> Vec<String> {
        p.iter().map(|p| p.target.identifier()).collect()
    }

    #[test]
    fn loaded_base_oses_are_preferred_and_missing_ones_come_from_recipes() {
        let l = vec![loaded("debian-bookworm", Arch::Amd64, Some("3.11"))];
        let (p, skipped) = plan(
            &platforms(&["x86_64", "aarch64"]),
            &[],
            &Project::default(),
            &l,
            &offers(),
            "debian-bookworm",
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
        let (p, _) = plan(
            &platforms(&["x86_64"]),
            &["3.9".into(), "3.11".into(), "3.13".into()],
            &Project::default(),
            &[loaded("mine", Arch::Amd64, Some("3.13"))],
            &offers(),
            "debian-bookworm",
        )
        .unwrap();
        let sources: Vec<&str> = p.iter().map(|p| p.source.name()).collect();
        assert_eq!(sources, ["debian-bullseye", "debian-bookworm", "mine"]);
    }

    #[test]
    fn default_python_follows_what_is_loaded_for_the_arch() {
        let l = vec![
            loaded("debian-trixie", Arch::Arm64, Some("3.13")),
            loaded("debian-bullseye", Arch::Arm64, Some("3.9")),
            loaded("busybox", Arch::Arm64, None),
        ];
        let (p, _) = plan(
            &default_platforms(&l),
            &[],
            &Project::default(),
            &l,
            &offers(),
            "debian-bookworm",
        )
        .unwrap();
        assert_eq!(
            ids(&p),
            [
                "cp311-manylinux_x86_64",
                "cp39-manylinux_aarch64",
                "cp313-manylinux_aarch64"
            ]
        );
    }

    #[test]
    fn unsatisfiable_pairs_list_what_is_available() {
        let e = plan(
            &platforms(&["armv7l", "x86_64"]),
            &["3.13".into(), "3.12".into()],
            &Project::default(),
            &[],
            &offers(),
            "debian-bookworm",
        )
        .unwrap_err();
        assert!(e.contains("CPython 3.13 for armv7l"), "{e}");
        assert!(e.contains("CPython 3.12 for x86_64"), "{e}");
        assert!(!e.contains("CPython 3.13 for x86_64"), "{e}");
        assert!(
            e.contains("debian-trixie (CPython 3.13: x86_64 aarch64)"),
            "{e}"
        );
    }

    #[test]
    fn selectors_filter_targets() {
        let project = Project {
            skip: Selector::parse("*-manylinux_aarch64").unwrap(),
            ..Project::default()
        };
        let (p, skipped) = plan(
            &platforms(&["x86_64", "aarch64"]),
            &[],
            &project,
            &[],
            &offers(),
            "debian-bookworm",
        )
        .unwrap();
        assert_eq!(ids(&p), ["cp311-manylinux_x86_64"]);
        assert_eq!(skipped, ["cp311-manylinux_aarch64"]);

        let project = Project {
            build: Selector::parse("cp39-*").unwrap(),
            ..Project::default()
        };
        let e = plan(
            &platforms(&["x86_64"]),
            &[],
            &project,
            &[],
            &offers(),
            "debian-bookworm",
        )
        .unwrap_err();
        assert!(
            e.contains("exclude every one (cp311-manylinux_x86_64)"),
            "{e}"
        );
    }

    #[test]
    fn repeated_targets_build_once_and_policies_are_kept() {
        let (p, _) = plan(
            &platforms(&["manylinux_2_17_aarch64", "aarch64"]),
            &[],
            &Project::default(),
            &[],
            &offers(),
            "debian-bookworm",
        )
        .unwrap();
        assert_eq!(p.len(), 2, "a policy makes it another target");
        assert_eq!(p[0].target.platform_tag(), "manylinux_2_17_aarch64");
        let (p, _) = plan(
            &platforms(&["aarch64", "arm64"]),
            &[],
            &Project::default(),
            &[],
            &offers(),
            "debian-bookworm",
        )
        .unwrap();
        assert_eq!(p.len(), 1);
    }
}
