//! Base OS recipes: how to build a Debian root filesystem with mmdebstrap. The repository's
//! `rootfs/*.toml` are embedded in the binary; the config dir's `rootfs/` may add or override
//! recipes. Branch source lists (`source_lists/<branch>.list`) are rendered from a recipe too.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::arch::Arch;
use crate::config::{parse_toml, ConfigError};

/// What a base OS built from a recipe records about it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RecipeInfo {
    pub recipe: String,
    pub suite: String,
    /// The CPython versions it provides (older stores wrote one string).
    #[serde(deserialize_with = "one_or_many")]
    pub python: Vec<String>,
    pub mirror: String,
    #[serde(default = "main_component")]
    pub components: Vec<String>,
    /// The suite the `testing` branch moves to.
    #[serde(default)]
    pub next: Option<String>,
}

fn main_component() -> Vec<String> {
    vec!["main".into()]
}

/// The recipes shipped with pookie-ns: (name, TOML text).
pub const EMBEDDED: [(&str, &str); 4] = [
    (
        "debian-bookworm",
        include_str!("../rootfs/debian-bookworm.toml"),
    ),
    (
        "debian-bullseye",
        include_str!("../rootfs/debian-bullseye.toml"),
    ),
    (
        "debian-trixie",
        include_str!("../rootfs/debian-trixie.toml"),
    ),
    ("debian-forky", include_str!("../rootfs/debian-forky.toml")),
];

/// Reads a string or a list of strings as a list: recipes and older `meta.json` files write
/// `python = "3.11"`, newer ones a list.
pub fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    })
}

/// The recipe `load-baseos` builds when none is named.
pub const DEFAULT_RECIPE: &str = "debian-bookworm";

/// A recipe as written in TOML.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecipeFile {
    pub distribution: String,
    pub suite: String,
    #[serde(default = "default_variant")]
    pub variant: String,
    #[serde(default = "default_components")]
    pub components: Vec<String>,
    #[serde(default)]
    pub packages: Vec<String>,
    /// The CPython versions the suite provides, each with its `-dev` and `-venv` packages and
    /// its own interpreter (`python3.14`): `"3.11"` or `["3.13", "3.14", "3.15"]`.
    #[serde(deserialize_with = "one_or_many")]
    pub python: Vec<String>,
    pub arches: Vec<Arch>,
    /// Archive mirror (default: config.toml's `mirror`, else the host's Debian mirror).
    pub mirror: Option<String>,
    /// The suite the `testing` branch moves to.
    pub next: Option<String>,
    /// apt options for the build, kept in the root filesystem for its refreshes too (mmdebstrap
    /// writes them to `/etc/apt/apt.conf.d/99mmdebstrap`), e.g. `Acquire::Check-Valid-Until
    /// "false"` for a testing suite whose week-long Release validity a lagging mirror outlives.
    #[serde(default)]
    pub aptopt: Vec<String>,
    /// Build from the suite's `-updates` and `-security` sources as well, so that the first
    /// refresh of a new instance has nothing to upgrade (under QEMU, every upgraded package's
    /// maintainer scripts are emulated: bookworm arm64's ca-certificates alone took minutes).
    /// Every shipped Debian recipe sets it; a recipe without the key builds from the suite
    /// alone (a mirror of another layout may lack the sources).
    #[serde(default)]
    pub updates: bool,
}

fn default_variant() -> String {
    "minbase".into()
}

fn default_components() -> Vec<String> {
    vec!["main".into()]
}

/// A checked recipe with its name and where it came from.
#[derive(Debug, Clone)]
pub struct Recipe {
    pub name: String,
    pub origin: String,
    pub spec: RecipeFile,
}

const VARIANTS: [&str; 6] = ["extract", "custom", "essential", "apt", "minbase", "buildd"];

impl Recipe {
    /// Parses and checks one recipe; `origin` names the file in errors.
    pub fn parse(name: &str, origin: &Path, text: &str) -> Result<Recipe, ConfigError> {
        let spec: RecipeFile = parse_toml(origin, text)?;
        let invalid = |what: String| ConfigError::Invalid(format!("{}: {what}", origin.display()));
        if spec.distribution != "debian" {
            return Err(invalid(format!(
                "distribution {:?} is not supported (only \"debian\", built with mmdebstrap)",
                spec.distribution
            )));
        }
        if !VARIANTS.contains(&spec.variant.as_str()) {
            return Err(invalid(format!(
                "variant {:?} is not one of mmdebstrap's: {}",
                spec.variant,
                VARIANTS.join(", ")
            )));
        }
        if spec.arches.is_empty() {
            return Err(invalid("arches is empty".into()));
        }
        if spec.python.is_empty() {
            return Err(invalid(
                "python is empty: list the CPython versions the suite provides".into(),
            ));
        }
        for version in &spec.python {
            let mut parts = version.split('.');
            let ok = parts.next().is_some_and(|m| m.parse::<u32>().is_ok())
                && parts.next().is_some_and(|m| m.parse::<u32>().is_ok())
                && parts.next().is_none();
            if !ok {
                return Err(invalid(format!(
                    "python {version:?} is not a MAJOR.MINOR version"
                )));
            }
        }
        for word in spec
            .packages
            .iter()
            .chain(&spec.components)
            .chain([&spec.suite])
        {
            let ok = !word.is_empty()
                && word
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '-' | ':' | '_'));
            if !ok {
                return Err(invalid(format!("{word:?} is not a valid Debian name")));
            }
        }
        Ok(Recipe {
            name: name.to_string(),
            origin: origin.display().to_string(),
            spec,
        })
    }

    /// Fails with the arches the suite has when `arch` is not one of them.
    pub fn check_arch(&self, arch: Arch) -> Result<(), ConfigError> {
        if self.spec.arches.contains(&arch) {
            return Ok(());
        }
        Err(ConfigError::Invalid(format!(
            "recipe {} ({} {}) has no {arch}; it has: {}",
            self.name,
            self.spec.distribution,
            self.spec.suite,
            self.spec
                .arches
                .iter()
                .map(|a| a.debian())
                .collect::<Vec<_>>()
                .join(", ")
        )))
    }

    /// The mmdebstrap command line that builds this recipe for `arch` into `out` (a `.tar.zst`:
    /// mmdebstrap picks the format from the name).
    pub fn mmdebstrap_args(
        &self,
        arch: Arch,
        mirror: &str,
        out: &Path,
        rootless: bool,
    ) -> Vec<String> {
        self.mmdebstrap_args_with(arch, mirror, out, rootless, self.spec.updates)
    }

    /// [`Recipe::mmdebstrap_args`] with or without the suite's `-updates` and `-security`
    /// sources, whatever the recipe says.
    pub fn mmdebstrap_args_with(
        &self,
        arch: Arch,
        mirror: &str,
        out: &Path,
        rootless: bool,
        updates: bool,
    ) -> Vec<String> {
        let mut args = vec![
            format!("--mode={}", if rootless { "unshare" } else { "auto" }),
            format!("--variant={}", self.spec.variant),
            format!("--architectures={}", arch.debian()),
            format!("--components={}", self.spec.components.join(",")),
        ];
        if !self.spec.packages.is_empty() {
            args.push(format!("--include={}", self.spec.packages.join(",")));
        }
        for opt in &self.spec.aptopt {
            args.push(format!("--aptopt={opt}"));
        }
        args.push(self.spec.suite.clone());
        args.push(out.display().to_string());
        args.push(mirror.to_string());
        if updates {
            // mmdebstrap takes whole sources.list lines as further mirror arguments.
            args.extend(self.update_sources(mirror));
        }
        args
    }

    /// The `-updates` and `-security` lines of the suite (security only on a Debian mirror,
    /// whose `debian-security` sits next to `debian`), as the `stable` branch lists them.
    pub fn update_sources(&self, mirror: &str) -> Vec<String> {
        let (suite, components) = (&self.spec.suite, self.spec.components.join(" "));
        let mirror = mirror.trim_end_matches('/');
        let mut lines = vec![format!("deb {mirror} {suite}-updates {components}")];
        if let Some(base) = mirror.strip_suffix("/debian") {
            lines.push(format!(
                "deb {base}/debian-security {suite}-security {components}"
            ));
        }
        lines
    }
}

/// All recipes: the embedded ones, then `<config_dir>/rootfs/*.toml` (which override by name).
pub fn all(config_dir: &Path) -> Result<Vec<Recipe>, ConfigError> {
    crate::config::definitions(config_dir, "rootfs", &EMBEDDED)?
        .into_iter()
        .map(|(name, origin, text)| Recipe::parse(&name, &origin, &text))
        .collect()
}

/// One recipe by name, or an error listing the known ones.
pub fn find(config_dir: &Path, name: &str) -> Result<Recipe, ConfigError> {
    let recipes = all(config_dir)?;
    let names: Vec<String> = recipes.iter().map(|r| r.name.clone()).collect();
    recipes.into_iter().find(|r| r.name == name).ok_or_else(|| {
        ConfigError::Invalid(format!(
            "no recipe named {name:?}; known recipes: {}",
            names.join(", ")
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Recipe, ConfigError> {
        Recipe::parse("t", Path::new("t.toml"), text)
    }

    const GOOD: &str = "distribution = \"debian\"\nsuite = \"bookworm\"\npython = \"3.11\"\narches = [\"amd64\", \"aarch64\"]\npackages = [\"python3\", \"g++\"]\n";

    #[test]
    fn updates_add_the_suites_updates_and_security_sources() {
        let r = parse(&format!("{GOOD}updates = true\n")).unwrap();
        let args = r.mmdebstrap_args(
            Arch::Arm64,
            "http://deb.debian.org/debian/",
            Path::new("/o.tar.zst"),
            true,
        );
        assert_eq!(
            &args[args.len() - 3..],
            [
                "http://deb.debian.org/debian/",
                "deb http://deb.debian.org/debian bookworm-updates main",
                "deb http://deb.debian.org/debian-security bookworm-security main",
            ]
        );
        let plain = parse(GOOD).unwrap();
        let args = plain.mmdebstrap_args(Arch::Arm64, "http://m/debian", Path::new("/o"), true);
        assert_eq!(args.last().unwrap(), "http://m/debian");
        assert_eq!(
            r.update_sources("http://mirror.example/ubuntu-ports"),
            ["deb http://mirror.example/ubuntu-ports bookworm-updates main"]
        );
    }

    #[test]
    fn embedded_recipes_parse_and_provide_their_python() {
        let dir = tempfile::tempdir().unwrap();
        let all = all(dir.path()).unwrap();
        let py: Vec<(&str, Vec<&str>)> = all
            .iter()
            .map(|r| {
                (
                    r.name.as_str(),
                    r.spec.python.iter().map(String::as_str).collect(),
                )
            })
            .collect();
        assert!(py.contains(&("debian-bullseye", vec!["3.9"])));
        assert!(py.contains(&("debian-bookworm", vec!["3.11"])));
        assert!(py.contains(&("debian-trixie", vec!["3.13"])));
        assert!(py.contains(&("debian-forky", vec!["3.13", "3.14", "3.15"])));
        for r in &all {
            r.check_arch(Arch::Amd64).unwrap();
            r.check_arch(Arch::Arm64).unwrap();
            // Every Python a recipe names comes with its headers and venv.
            for v in &r.spec.python {
                for suffix in ["-dev", "-venv"] {
                    let versioned = format!("python{v}{suffix}");
                    let default = format!("python3{suffix}");
                    assert!(
                        r.spec.packages.iter().any(|p| *p == versioned || (r.spec.python.len() == 1 && *p == default)),
                        "{}: {versioned}",
                        r.name
                    );
                }
            }
        }
        assert!(find(dir.path(), "debian-trixie")
            .unwrap()
            .check_arch(Arch::Riscv64)
            .is_ok());
    }

    #[test]
    fn bad_recipes_are_refused_with_the_reason() {
        assert_eq!(
            parse(GOOD).unwrap().spec.arches,
            vec![Arch::Amd64, Arch::Arm64]
        );
        let err = parse(&format!("{GOOD}colour = \"blue\"\n"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("t.toml:6:1") && err.contains("colour"),
            "{err}"
        );
        let err = parse(&GOOD.replace("3.11", "eleven"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("MAJOR.MINOR"), "{err}");
        let list = parse(&GOOD.replace("\"3.11\"", "[\"3.13\", \"3.14\"]")).unwrap();
        assert_eq!(list.spec.python, ["3.13", "3.14"]);
        let err = parse(&GOOD.replace("\"3.11\"", "[\"3.13\", \"3\"]"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"3\" is not a MAJOR.MINOR"), "{err}");
        let err = parse(&GOOD.replace("\"3.11\"", "[]"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("python is empty"), "{err}");
        let err = parse(&GOOD.replace("aarch64", "sparc"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("sparc"), "{err}");
        let err = parse(&GOOD.replace("\"g++\"", "\"g++; rm -rf /\""))
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a valid Debian name"), "{err}");
        let err = parse(&GOOD.replace("\"debian\"", "\"arch\""))
            .unwrap_err()
            .to_string();
        assert!(err.contains("not supported"), "{err}");
    }

    #[test]
    fn unknown_arch_for_the_suite_lists_what_it_has() {
        let r = parse(GOOD).unwrap();
        let err = r.check_arch(Arch::S390x).unwrap_err().to_string();
        assert!(
            err.contains("has no s390x") && err.contains("amd64, arm64"),
            "{err}"
        );
    }

    #[test]
    fn mmdebstrap_command_line() {
        let r = parse(GOOD).unwrap();
        let args = r.mmdebstrap_args(
            Arch::Arm64,
            "http://deb.debian.org/debian",
            Path::new("/o/x.tar.zst"),
            true,
        );
        assert_eq!(
            args,
            [
                "--mode=unshare",
                "--variant=minbase",
                "--architectures=arm64",
                "--components=main",
                "--include=python3,g++",
                "bookworm",
                "/o/x.tar.zst",
                "http://deb.debian.org/debian"
            ]
        );
    }

    #[test]
    fn config_dir_recipes_add_and_override() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("rootfs")).unwrap();
        std::fs::write(
            dir.path().join("rootfs/debian-bookworm.toml"),
            GOOD.replace("3.11", "3.12"),
        )
        .unwrap();
        std::fs::write(dir.path().join("rootfs/mine.toml"), GOOD).unwrap();
        let all = all(dir.path()).unwrap();
        assert_eq!(
            find(dir.path(), "debian-bookworm").unwrap().spec.python,
            ["3.12"]
        );
        assert!(all.iter().any(|r| r.name == "mine"));
        let err = find(dir.path(), "nope").unwrap_err().to_string();
        assert!(
            err.contains("debian-trixie") && err.contains("mine"),
            "{err}"
        );
        std::fs::write(dir.path().join("rootfs/broken.toml"), "suite = 3\n").unwrap();
        assert!(all_err(dir.path()).contains("broken.toml"));
    }

    fn all_err(dir: &Path) -> String {
        all(dir).unwrap_err().to_string()
    }
}
