//! A wheels file (`build -r wheels.toml`): the packages of a group build, each with its own
//! settings, as dockerbuild's `wheels.py` lists the third-party wheels it rebuilds — as data.
//!
//! ```toml
//! [[package]]
//! name = "msgpack"
//! version = "==1.1.0"          # a PEP 440 specifier; a bare version means ==
//! test-command = "python3 -m pytest -q {project}/test"
//! test-requires = ["pytest"]
//! targets = ["x86_64", "aarch64"]
//!
//! [[package]]
//! path = "vendor/foo-1.0.tar.gz"   # or a project directory; relative to this file
//! before-all = "apt-get install -y libfoo-dev"
//! ```
//! Unknown keys are errors that name the key and its line.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    package: Vec<Package>,
}

/// One package of a wheels file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Package {
    /// A name on the index (with `version`) ...
    pub name: Option<String>,
    pub version: Option<String>,
    /// ... or a project directory or sdist, relative to the wheels file.
    pub path: Option<PathBuf>,
    pub test_command: Option<String>,
    #[serde(default)]
    pub test_requires: Vec<String>,
    pub before_all: Option<String>,
    /// Platform tags or arch names, as `--target`.
    #[serde(default)]
    pub targets: Vec<String>,
    /// cibuildwheel's archs words, as `--archs`.
    pub archs: Option<String>,
}

impl Package {
    /// The bundle argument this package stands for: `name==1.0`, `name>=1`, or the path.
    pub fn bundle(&self) -> String {
        match (&self.path, &self.name, &self.version) {
            (Some(p), _, _) => p.display().to_string(),
            (None, Some(n), Some(v)) => {
                let v = v.trim();
                if v.starts_with(|c: char| c.is_ascii_digit()) {
                    format!("{n}=={v}")
                } else {
                    format!("{n}{v}")
                }
            }
            (None, Some(n), None) => n.clone(),
            (None, None, _) => unreachable!("checked by load"),
        }
    }
}

/// Reads a wheels file; paths in it are made relative to the file's directory.
pub fn load(path: &Path) -> Result<Vec<Package>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::usage(format!("wheels file {}: {e}", path.display())))?;
    parse(&text, path)
}

fn parse(text: &str, path: &Path) -> Result<Vec<Package>> {
    let bad = |what: String| Error::usage(format!("wheels file {}: {what}", path.display()));
    let file: File = toml::from_str(text).map_err(|e| bad(e.to_string().trim_end().to_string()))?;
    if file.package.is_empty() {
        return Err(bad(
            "no packages: list them as [[package]] tables with name and version, or path".into(),
        ));
    }
    let base = path.parent().unwrap_or(Path::new("."));
    let mut out = Vec::new();
    for (i, mut p) in file.package.into_iter().enumerate() {
        let n = i + 1;
        match (&p.name, &p.path) {
            (None, None) => {
                return Err(bad(format!("package {n} has neither name nor path")));
            }
            (Some(_), Some(_)) => {
                return Err(bad(format!("package {n} has both name and path; give one")));
            }
            (None, Some(_)) if p.version.is_some() => {
                return Err(bad(format!(
                    "package {n}: version goes with name, not path"
                )));
            }
            _ => {}
        }
        if !p.targets.is_empty() && p.archs.is_some() {
            return Err(bad(format!("package {n}: give targets or archs, not both")));
        }
        if let Some(rel) = p.path.take() {
            p.path = Some(if rel.is_absolute() {
                rel
            } else {
                base.join(rel)
            });
        }
        out.push(p);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(text: &str) -> Result<Vec<Package>> {
        parse(text, Path::new("/w/wheels.toml"))
    }

    #[test]
    fn packages_and_their_bundles() {
        let p = parse_str(
            "[[package]]\nname = \"msgpack\"\nversion = \"1.1.0\"\ntargets = [\"aarch64\"]\n\
             [[package]]\nname = \"markupsafe\"\nversion = \">=2,<3\"\ntest-requires = [\"pytest\"]\n\
             [[package]]\npath = \"src/foo-1.0.tar.gz\"\nbefore-all = \"true\"\n",
        )
        .unwrap();
        let b: Vec<String> = p.iter().map(Package::bundle).collect();
        assert_eq!(
            b,
            [
                "msgpack==1.1.0",
                "markupsafe>=2,<3",
                "/w/src/foo-1.0.tar.gz"
            ]
        );
        assert_eq!(p[0].targets, ["aarch64"]);
        assert_eq!(p[1].test_requires, ["pytest"]);
    }

    #[test]
    fn unknown_keys_name_the_key_and_the_line() {
        let e = parse_str("[[package]]\nname = \"x\"\n\ntest-comand = \"true\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("test-comand") && e.contains("line 4"), "{e}");
        let e = parse_str("packages = []\n").unwrap_err().to_string();
        assert!(e.contains("packages") && e.contains("line 1"), "{e}");
        for (text, why) in [
            ("", "no packages"),
            ("[[package]]\nversion = \"1\"\n", "neither name nor path"),
            ("[[package]]\nname = \"a\"\npath = \"b\"\n", "both"),
            (
                "[[package]]\npath = \"b\"\nversion = \"1\"\n",
                "version goes with name",
            ),
            (
                "[[package]]\nname = \"a\"\ntargets = [\"x\"]\narchs = \"y\"\n",
                "not both",
            ),
        ] {
            let e = parse_str(text).unwrap_err().to_string();
            assert!(e.contains(why), "{text}: {e}");
        }
    }
}
