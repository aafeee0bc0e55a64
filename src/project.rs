//! A bundle's own build configuration: the `[tool.pookie-ns]` table of its `pyproject.toml`, with
//! keys named as cibuildwheel names them where the meaning is the same, so that projects can
//! move over by renaming the table. Unknown keys and ill-typed values are errors that name the
//! file, the line and the key.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::config::{parse_toml, ConfigError};
use crate::target::{parse_platform, Platform, Selector};

/// A value cibuildwheel accepts either as one string (words separated by spaces) or as a list.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum Words {
    One(String),
    Many(Vec<String>),
}

impl Words {
    pub fn words(&self) -> Vec<String> {
        match self {
            Words::One(s) => s.split_whitespace().map(str::to_string).collect(),
            Words::Many(v) => v.clone(),
        }
    }
}

/// A command cibuildwheel accepts as a string or as a list of commands joined with `&&`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum Commands {
    One(String),
    Many(Vec<String>),
}

impl Commands {
    pub fn script(&self) -> String {
        match self {
            Commands::One(s) => s.clone(),
            Commands::Many(v) => v.join(" && "),
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
pub enum Frontend {
    #[default]
    #[serde(rename = "pip")]
    Pip,
    #[serde(rename = "build")]
    Build,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Native,
    Emulate,
    Cross,
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mode::Native => "native",
            Mode::Emulate => "emulate",
            Mode::Cross => "cross",
        })
    }
}

/// How a built wheel becomes the one delivered.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Repair {
    /// `auditwheel show` + `auditwheel repair`: a manylinux tag, or the target fails.
    #[default]
    Auditwheel,
    /// `repair-wheel-command = ""`: delivered as built (`linux_*`), and the report says so.
    Skip,
    /// The project's own command, `{wheel}` and `{dest_dir}` substituted.
    Command(String),
}

/// `[tool.pookie-ns]` as written.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ToolTable {
    pub build: Option<Words>,
    pub skip: Option<Words>,
    pub archs: Option<Words>,
    pub test_command: Option<Commands>,
    pub test_requires: Option<Words>,
    pub before_all: Option<Commands>,
    pub before_build: Option<Commands>,
    pub environment: Option<BTreeMap<String, String>>,
    pub build_frontend: Option<Frontend>,
    /// cibuildwheel's: how a wheel is repaired (`{wheel}`, `{dest_dir}`); `""` delivers it
    /// unrepaired. Default: auditwheel.
    pub repair_wheel_command: Option<Commands>,
    /// pookie-ns's own: the whole build command, instead of the frontend's.
    pub build_command: Option<Commands>,
    /// pookie-ns's own: `emulate` or `cross` for non-native targets.
    pub mode: Option<Mode>,
    /// pookie-ns's own: `gcc`, `clang` or `zig`, the toolchain of cross (and native) builds.
    pub compiler: Option<crate::toolchain::Compiler>,
}

#[derive(Debug, Deserialize)]
struct PyProject {
    project: Option<ProjectTable>,
    tool: Option<Tools>,
}

#[derive(Debug, Deserialize)]
struct ProjectTable {
    name: Option<String>,
    #[serde(rename = "requires-python")]
    requires_python: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Tools {
    #[serde(rename = "pookie-ns")]
    pookie_ns: Option<ToolTable>,
}

/// The checked project configuration.
#[derive(Debug, Clone, Default)]
pub struct Project {
    /// `[project] name`, if the file has one.
    pub name: Option<String>,
    /// `[project] requires-python`: the CPythons a build covers by default.
    pub requires_python: Option<crate::pep440::Specifier>,
    pub build: Selector,
    pub skip: Selector,
    pub archs: Vec<Platform>,
    pub test_command: Option<String>,
    pub test_requires: Vec<String>,
    pub before_all: Option<String>,
    pub before_build: Option<String>,
    pub environment: Vec<(String, String)>,
    pub frontend: Frontend,
    pub repair: Repair,
    pub build_command: Option<String>,
    pub mode: Option<Mode>,
    pub compiler: Option<crate::toolchain::Compiler>,
}

impl Project {
    /// Reads `BUNDLE/pyproject.toml` (a bundle without one builds with the defaults).
    pub fn load(bundle: &Path) -> Result<Project, ConfigError> {
        let path = bundle.join("pyproject.toml");
        match crate::config::read_optional(&path)? {
            Some(text) => Project::parse(&path, &text),
            None => Ok(Project::default()),
        }
    }

    pub fn parse(path: &Path, text: &str) -> Result<Project, ConfigError> {
        let file: PyProject = parse_toml(path, text).map_err(|e| match e {
            ConfigError::Parse {
                path,
                line,
                column,
                message,
            } => {
                // serde names an unknown key but not the key of an ill-typed value: take it
                // from the line the error points at.
                let in_our_table = text
                    .lines()
                    .take(line)
                    .filter(|l| l.trim_start().starts_with('['))
                    .last()
                    .is_some_and(|h| h.trim_start().starts_with("[tool.pookie-ns"));
                let key = text
                    .lines()
                    .nth(line - 1)
                    .filter(|_| in_our_table)
                    .and_then(|l| l.split_once('='))
                    .map(|(k, _)| k.trim().trim_matches('"').to_string())
                    .filter(|k| !k.is_empty() && !message.contains(k.as_str()));
                let message = match key {
                    Some(k) => format!("[tool.pookie-ns] {k}: {message}"),
                    None if in_our_table && message.starts_with("unknown field") => {
                        format!("[tool.pookie-ns]: {message}")
                    }
                    None => message,
                };
                ConfigError::Parse {
                    path,
                    line,
                    column,
                    message,
                }
            }
            e => e,
        })?;
        let table = file.tool.and_then(|t| t.pookie_ns).unwrap_or_default();
        let invalid = |what: String| {
            ConfigError::Invalid(format!("{}: [tool.pookie-ns] {what}", path.display()))
        };
        let selector = |key: &str, w: &Option<Words>| {
            Selector::parse(&w.as_ref().map(|w| w.words().join(" ")).unwrap_or_default())
                .map_err(|e| invalid(format!("{key}: {e}")))
        };
        let mut archs = Vec::new();
        for word in table.archs.as_ref().map(Words::words).unwrap_or_default() {
            // cibuildwheel's "auto"/"native" mean the host's arch.
            let platform = match word.as_str() {
                "auto" | "native" => Ok(Platform {
                    arch: crate::arch::Arch::host(),
                    policy: None,
                }),
                w => parse_platform(w),
            };
            archs.push(platform.map_err(|e| invalid(format!("archs: {e}")))?);
        }
        let mut environment = Vec::new();
        for (k, v) in table.environment.clone().unwrap_or_default() {
            let ok = !k.is_empty()
                && !k.starts_with(|c: char| c.is_ascii_digit())
                && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !ok {
                return Err(invalid(format!(
                    "environment: {k:?} is not a valid variable name"
                )));
            }
            environment.push((k, v));
        }
        let command = |c: &Option<Commands>| {
            c.as_ref()
                .map(Commands::script)
                .filter(|s| !s.trim().is_empty())
        };
        let (name, requires_python) = match file.project {
            Some(p) => (p.name, p.requires_python),
            None => (None, None),
        };
        let requires_python = requires_python
            .map(|text| {
                crate::pep440::Specifier::parse(&text)
                    .map_err(|e| ConfigError::Invalid(format!("{}: [project] {e}", path.display())))
            })
            .transpose()?;
        Ok(Project {
            name,
            requires_python,
            build: selector("build", &table.build)?,
            skip: selector("skip", &table.skip)?,
            archs,
            test_command: command(&table.test_command),
            test_requires: table
                .test_requires
                .as_ref()
                .map(Words::words)
                .unwrap_or_default(),
            before_all: command(&table.before_all),
            before_build: command(&table.before_build),
            environment,
            frontend: table.build_frontend.unwrap_or_default(),
            repair: match &table.repair_wheel_command {
                None => Repair::Auditwheel,
                Some(c) if c.script().trim().is_empty() => Repair::Skip,
                Some(c) => Repair::Command(c.script()),
            },
            build_command: command(&table.build_command),
            mode: table.mode,
            compiler: table.compiler,
        })
    }

    /// True when the `build`/`skip` selectors let this identifier through.
    pub fn selected(&self, identifier: &str) -> bool {
        (self.build.is_empty() || self.build.matches(identifier)) && !self.skip.matches(identifier)
    }
}

/// Replaces cibuildwheel's `{project}` and `{package}` placeholders.
pub fn substitute(command: &str, project: &str, package: &str) -> String {
    command
        .replace("{project}", project)
        .replace("{package}", package)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::Arch;

    fn parse(text: &str) -> Result<Project, ConfigError> {
        Project::parse(Path::new("/b/pyproject.toml"), text)
    }

    #[test]
    fn full_table_parses() {
        let p = parse(
            r#"
[project]
name = "fastmath"

[tool.pookie-ns]
build = "cp311-*"
skip = ["*-manylinux_armv7l"]
archs = ["x86_64", "manylinux_2_17_aarch64"]
test-command = ["cd {project}", "python3 -m pytest {package}/tests"]
test-requires = "pytest numpy"
before-all = "apt-get install -y libffi-dev"
before-build = "echo hi"
environment = { CFLAGS = "-O2", FOO_1 = "x y" }
build-frontend = "build"
mode = "emulate"
compiler = "zig"
"#,
        )
        .unwrap();
        assert_eq!(p.name.as_deref(), Some("fastmath"));
        assert!(p.selected("cp311-manylinux_x86_64"));
        assert!(!p.selected("cp311-manylinux_armv7l"));
        assert!(!p.selected("cp39-manylinux_x86_64"));
        assert_eq!(p.archs.len(), 2);
        assert_eq!(p.archs[1].arch, Arch::Arm64);
        assert_eq!(p.archs[1].policy.as_deref(), Some("manylinux_2_17"));
        assert_eq!(
            p.test_command.as_deref(),
            Some("cd {project} && python3 -m pytest {package}/tests")
        );
        assert_eq!(p.test_requires, ["pytest", "numpy"]);
        assert_eq!(p.frontend, Frontend::Build);
        assert_eq!(p.mode, Some(Mode::Emulate));
        assert_eq!(p.compiler, Some(crate::toolchain::Compiler::Zig));
        assert_eq!(
            p.environment,
            [
                ("CFLAGS".to_string(), "-O2".to_string()),
                ("FOO_1".to_string(), "x y".to_string())
            ]
        );
    }

    #[test]
    fn no_table_means_defaults() {
        let p = parse("[project]\nname = \"x\"\n").unwrap();
        assert!(p.selected("cp311-manylinux_x86_64"));
        assert!(p.archs.is_empty());
        assert_eq!(p.frontend, Frontend::Pip);
        assert!(p.test_command.is_none());
    }

    #[test]
    fn unknown_keys_are_named_with_their_line() {
        let e = parse("[tool.pookie-ns]\narchs = \"x86_64\"\ntest-comand = \"pytest\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("test-comand"), "{e}");
        assert!(e.contains("[tool.pookie-ns]"), "{e}");
        assert!(e.contains(":3:"), "{e}");
    }

    #[test]
    fn bad_values_are_refused_with_the_key() {
        for (text, needle) in [
            ("archs = [\"sparc\"]", "archs"),
            ("build-frontend = \"poetry\"", "poetry"),
            ("mode = \"fast\"", "fast"),
            ("skip = \"cp311-[x\"", "skip"),
            ("environment = { \"A-B\" = \"1\" }", "A-B"),
            ("test-requires = 3", "test-requires"),
            ("environment = \"CFLAGS=-O2\"", "environment"),
        ] {
            let e = parse(&format!("[tool.pookie-ns]\n{text}\n"))
                .unwrap_err()
                .to_string();
            assert!(e.contains(needle), "{text}: {e}");
        }
    }

    #[test]
    fn placeholders() {
        assert_eq!(
            substitute(
                "pytest {project}/tests {package}",
                "/buildroot/src",
                "/buildroot/src/pkg"
            ),
            "pytest /buildroot/src/tests /buildroot/src/pkg"
        );
    }
}
