//! cibuildwheel's configuration, read as cibuildwheel reads it, so that a project configured for
//! cibuildwheel builds unchanged: `[tool.cibuildwheel]`, its `[tool.cibuildwheel.linux]` table,
//! `[[tool.cibuildwheel.overrides]]` (`select`, `inherit` with `append`/`prepend`) and the
//! `CIBW_*` environment variables (and their `_LINUX` forms), plus pookie-ns's own
//! `[tool.pookie-ns]` table, whose keys override cibuildwheel's key by key.
//!
//! Pure: a function of the file's text, the environment variables and nothing else. The
//! precedence, lowest first, for one build identifier:
//!
//! ```text
//! [tool.cibuildwheel] → [tool.cibuildwheel.linux] → [tool.pookie-ns]
//!   → each matching [[tool.cibuildwheel.overrides]], in order (inherit: none/append/prepend)
//!   → CIBW_<OPTION> → CIBW_<OPTION>_LINUX → (the command line, applied by the caller)
//! ```
//!
//! Options of other platforms (macOS, Windows, iOS, Android, Pyodide) are ignored with one note;
//! an unknown option is an error that names it, its file and line, and the nearest known name.

mod env;
mod identifiers;
mod options;
mod per_identifier;
mod place;
mod tables;
mod values;
mod words;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::config::{parse_toml, ConfigError};
use crate::target::Selector;
use crate::toolchain::Compiler;
use serde::Deserialize;

pub use identifiers::{identifier_python, python_matches, split_identifier};
use options::{find, ENABLE_GROUPS};
use tables::{Override, Tables};
use values::{Layer, Val};
pub use words::{parse_assignments, shell_words};

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
pub enum Frontend {
    /// `python3 -m pip wheel` (pookie-ns's default).
    #[default]
    #[serde(rename = "pip")]
    Pip,
    /// `python3 -m build --wheel` (cibuildwheel's default, `"default"`).
    #[serde(rename = "build")]
    Build,
    /// `python3 -m build --wheel --installer=uv`.
    #[serde(rename = "build[uv]")]
    BuildUv,
    /// `uv build --wheel`.
    #[serde(rename = "uv")]
    Uv,
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

/// `build-frontend`: its name and extra arguments.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FrontendSpec {
    pub frontend: Frontend,
    pub args: Vec<String>,
}

/// What the resolution reads.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    /// The config file (pyproject.toml, or `--config-file`), for messages.
    pub path: &'a Path,
    pub text: &'a str,
    /// The project's pyproject.toml when the config file is another file: `[project]` and
    /// `[dependency-groups]` are read from it.
    pub pyproject: Option<&'a str>,
    /// The environment variables (`CIBW_*`, and those `environment-pass` names).
    pub env: &'a BTreeMap<String, String>,
}

/// The options of one build identifier.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BuildOptions {
    pub before_all: Option<String>,
    pub before_build: Option<String>,
    /// pookie-ns's own: the whole build command, instead of the frontend's.
    pub build_command: Option<String>,
    pub frontend: FrontendSpec,
    /// `KEY=VALUE` pairs for the backend (`--config-settings`).
    pub config_settings: Vec<(String, String)>,
    /// Variables and their values as shell words (`"$PATH:/x"`, `'-g -Wall'`), exported in order,
    /// so that they expand as cibuildwheel expands them (`$VAR`, `$(cmd)`).
    pub environment: Vec<(String, String)>,
    /// Names of host variables passed in (`SOURCE_DATE_EPOCH` always).
    pub environment_pass: Vec<String>,
    /// `None`: pookie-ns's own repair (auditwheel with the target's policy); `Some("")`: none.
    pub repair_wheel_command: Option<String>,
    pub before_test: Option<String>,
    pub test_command: Option<String>,
    pub test_requires: Vec<String>,
    pub test_extras: Vec<String>,
    /// The requirements of the `test-groups` (PEP 735), resolved.
    pub test_group_requires: Vec<String>,
    pub test_groups: Vec<String>,
    pub test_sources: Vec<String>,
    pub test_environment: Vec<(String, String)>,
    /// -3..=3: `-v`/`-q` flags for the frontend.
    pub build_verbosity: i32,
    /// The `manylinux-<arch>-image` / `musllinux-<arch>-image` options set for this identifier
    /// (key, value as written).
    pub images: BTreeMap<String, String>,
}

/// The whole configuration: what holds for every identifier, and what to resolve per identifier.
#[derive(Debug, Clone, Default)]
pub struct Resolved {
    pub build: Selector,
    pub skip: Selector,
    pub test_skip: Selector,
    /// As written: arch names, platform tags, `auto`, `auto64`, `auto32`, `native`, `all`.
    pub archs: Vec<String>,
    pub enable: Vec<String>,
    /// `CIBW_PROJECT_REQUIRES_PYTHON`, else `[project] requires-python`.
    pub requires_python: Option<String>,
    pub allow_empty: bool,
    /// `CIBW_OUTPUT_DIR`.
    pub output_dir: Option<String>,
    /// `CIBW_DEBUG_KEEP_CONTAINER`: like `--keep-failed`.
    pub keep_failed: bool,
    pub mode: Option<Mode>,
    pub compiler: Option<Compiler>,
    /// `[project] name`.
    pub name: Option<String>,
    /// What was accepted but has no effect here, one line each.
    pub notes: Vec<String>,
    layers: Vec<Layer>,
    overrides: Vec<Override>,
    env_layers: Vec<Layer>,
    groups: Option<toml::Table>,
    path: String,
}

fn invalid(msg: String) -> ConfigError {
    ConfigError::Invalid(msg)
}

/// Reads the configuration. `env` holds the process's environment variables (only `CIBW_*` are
/// read here).
pub fn resolve(input: &Input) -> Result<Resolved, ConfigError> {
    let file: toml::Table = parse_toml(input.path, input.text)?;
    let project_file: toml::Table = match input.pyproject {
        Some(t) => parse_toml(input.path, t)?,
        None => file.clone(),
    };
    let mut r = Resolved {
        path: input.path.display().to_string(),
        ..Resolved::default()
    };
    let mut noted: BTreeSet<String> = BTreeSet::new();
    let mut other_platform: BTreeSet<String> = BTreeSet::new();
    let Tables {
        generic,
        linux,
        own,
        overrides,
        mode,
        compiler,
    } = tables::read(input, &file, &mut noted, &mut other_platform)?;
    r.overrides = overrides;
    r.mode = mode;
    r.compiler = compiler;

    // The environment: CIBW_<OPTION>, then CIBW_<OPTION>_LINUX.
    let (env_generic, env_linux) = env::read(input.env, &mut noted, &mut other_platform)?;

    // Globals: build, skip, test-skip, archs, enable and the environment-only ones.
    let global = |key: &str| -> Option<&Val> {
        env_linux
            .get(key)
            .filter(|_| find(key).is_some_and(|o| o.env_plat))
            .or_else(|| env_generic.get(key))
            .or_else(|| own.get(key))
            .or_else(|| linux.get(key))
            .or_else(|| generic.get(key))
    };
    let list = |v: Option<&Val>| match v {
        Some(Val::List(l)) => l.clone(),
        _ => Vec::new(),
    };
    let selector = |key: &str| {
        Selector::parse(&list(global(key)).join(" "))
            .map_err(|e| invalid(format!("{}: {key}: {e}", input.path.display())))
    };
    r.build = selector("build")?;
    r.skip = selector("skip")?;
    r.test_skip = selector("test-skip")?;
    r.archs = list(global("archs"));
    // enable: the environment adds to the file's.
    let mut enable = list(
        own.get("enable")
            .or(linux.get("enable"))
            .or(generic.get("enable")),
    );
    enable.extend(list(env_generic.get("enable")));
    for group in &enable {
        if group != "all" && !ENABLE_GROUPS.contains(&group.as_str()) {
            return Err(invalid(format!(
                "{}: enable: {group:?} is not a group cibuildwheel knows ({}, all)",
                input.path.display(),
                ENABLE_GROUPS.join(", ")
            )));
        }
    }
    if !enable.is_empty() {
        noted.insert(format!(
            "enable = {}: accepted; pookie-ns's base OSes provide only their release's CPython \
             (no pre-release, free-threaded, PyPy, GraalPy or Pyodide interpreter), so no \
             identifier is added",
            enable.join(" ")
        ));
    }
    enable.dedup();
    r.enable = enable;
    if let Some(Val::Text(p)) = env_generic.get("platform") {
        if !matches!(p.as_str(), "auto" | "linux") {
            return Err(invalid(format!(
                "CIBW_PLATFORM={p}: pookie-ns builds Linux wheels only (auto or linux)"
            )));
        }
    }
    r.requires_python = match env_generic.get("project-requires-python") {
        Some(Val::Text(s)) if !s.trim().is_empty() => Some(s.trim().to_string()),
        _ => project_file
            .get("project")
            .and_then(|p| p.get("requires-python"))
            .and_then(|v| v.as_str())
            .map(str::to_string),
    };
    if let Some(spec) = &r.requires_python {
        python_matches(spec, (3, 11))
            .map_err(|e| invalid(format!("requires-python {spec:?}: {e}")))?;
    }
    r.allow_empty = matches!(env_generic.get("allow-empty"), Some(Val::Flag(true)));
    r.keep_failed = matches!(
        env_generic.get("debug-keep-container"),
        Some(Val::Flag(true))
    );
    r.output_dir = match env_generic.get("output-dir") {
        Some(Val::Text(s)) if !s.is_empty() => Some(s.clone()),
        _ => None,
    };
    r.name = project_file
        .get("project")
        .and_then(|p| p.get("name"))
        .and_then(|v| v.as_str())
        .map(str::to_string);
    r.groups = project_file
        .get("dependency-groups")
        .and_then(|g| g.as_table())
        .cloned();

    if !other_platform.is_empty() {
        noted.insert(format!(
            "ignored (options of another platform; pookie-ns builds Linux wheels): {}",
            other_platform.into_iter().collect::<Vec<_>>().join(", ")
        ));
    }
    r.notes = noted.into_iter().collect();
    r.layers = vec![generic, linux, own];
    r.env_layers = vec![env_generic, env_linux];
    // Every identifier's options must resolve (test-groups name existing groups ...).
    let mut group_lists: Vec<&Val> = r
        .layers
        .iter()
        .chain(&r.env_layers)
        .filter_map(|l| l.get("test-groups"))
        .collect();
    group_lists.extend(
        r.overrides
            .iter()
            .filter_map(|o| o.values.get("test-groups")),
    );
    for v in group_lists {
        if let Val::List(names) = v {
            r.group_requires(names)?;
        }
    }
    r.options_for("cp311-manylinux_x86_64")?;
    Ok(r)
}

#[cfg(test)]
mod testing {
    //! Shared by the unit tests of cibw's files: resolve a config file's text and variables.

    use super::*;

    pub(super) fn env(vars: &[(&str, &str)]) -> BTreeMap<String, String> {
        vars.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    pub(super) fn read(text: &str, vars: &[(&str, &str)]) -> Result<Resolved, ConfigError> {
        resolve(&Input {
            path: Path::new("/p/pyproject.toml"),
            text,
            pyproject: None,
            env: &env(vars),
        })
    }

    pub(super) fn ok(text: &str, vars: &[(&str, &str)]) -> Resolved {
        read(text, vars).unwrap_or_else(|e| panic!("{e}"))
    }

    pub(super) fn err(text: &str, vars: &[(&str, &str)]) -> String {
        read(text, vars).unwrap_err().to_string()
    }

    pub(super) fn opts(r: &Resolved, id: &str) -> BuildOptions {
        r.options_for(id).unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;

    #[test]
    fn other_platforms_are_ignored_with_one_note_and_unused_options_are_noted() {
        let r = ok(
            r#"
[tool.cibuildwheel]
xbuild-tools = ["cmake"]
container-engine = "podman"
manylinux-x86_64-image = "manylinux2014"
enable = ["pypy"]

[tool.cibuildwheel.macos]
archs = ["universal2"]
repair-wheel-command = "delocate"

[tool.cibuildwheel.windows]
before-build = "x"
"#,
            &[
                ("CIBW_ARCHS_MACOS", "arm64"),
                ("CIBW_MUSLLINUX_AARCH64_IMAGE", "musllinux_1_2"),
                ("CIBW_MANYLINUX_PYPY_X86_64_IMAGE", "manylinux_2_28"),
            ],
        );
        let notes = r.notes.join("\n");
        assert_eq!(
            r.notes
                .iter()
                .filter(|n| n.contains("another platform"))
                .count(),
            1,
            "{notes}"
        );
        assert!(notes.contains("[tool.cibuildwheel.macos]"), "{notes}");
        assert!(notes.contains("[tool.cibuildwheel.windows]"), "{notes}");
        assert!(notes.contains("xbuild-tools"), "{notes}");
        assert!(notes.contains("container-engine"), "{notes}");
        assert!(
            notes.contains("manylinux-x86_64-image = \"manylinux2014\""),
            "{notes}"
        );
        assert!(notes.contains("CIBW_MUSLLINUX_AARCH64_IMAGE"), "{notes}");
        assert!(
            notes.contains("CIBW_MANYLINUX_PYPY_X86_64_IMAGE"),
            "{notes}"
        );
        assert!(
            notes.contains("no pre-release, free-threaded, PyPy"),
            "{notes}"
        );
        assert!(!notes.contains("universal2"), "{notes}");
        assert!(r.archs.is_empty());
    }
}
