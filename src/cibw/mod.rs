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
//!
//! # Files
//!
//! This file holds the public types ([`Input`], [`Resolved`], [`BuildOptions`], [`Frontend`],
//! [`Mode`]) and re-exports the entry points. [`resolve()`] (`resolve.rs`) reads the whole
//! configuration; it reads the config file's tables with `tables.rs` and the `CIBW_*` variables
//! with `env.rs`, checks each option against the option table of `options.rs`, converts its value
//! with `values.rs` (shell words: `words.rs`) and points its errors at a file and line with
//! `place.rs`. What holds for one build identifier is in `per_identifier.rs`
//! ([`Resolved::options_for`], [`Resolved::selected`]); build identifiers themselves are in
//! `identifiers.rs`; the identifiers cibuildwheel would build, in its order, in `build_set.rs`
//! (`requires-python` from setup.cfg and setup.py: `requires_python.rs`).

pub mod build_set;
mod env;
mod identifiers;
mod options;
mod per_identifier;
mod place;
mod requires_python;
mod resolve;
mod tables;
mod values;
mod words;

use std::collections::BTreeMap;
use std::path::Path;

use crate::config::ConfigError;
use crate::target::Selector;
use crate::toolchain::Compiler;
use serde::Deserialize;

pub use identifiers::{identifier_python, python_matches, split_identifier};
pub use resolve::resolve;
use tables::Override;
use values::Layer;
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

/// Where each identifier's CPython comes from (`[tool.pookie-ns] python-source`,
/// `--python-source`): `auto`, a Debian base OS that provides it, else the image cibuildwheel
/// would use; `image`, that image always (cibuildwheel's own behaviour); `base-os`, Debian's
/// base OSes only (no image is pulled; what they lack is skipped with the reason).
#[derive(
    Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq, serde::Serialize, clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum PythonSource {
    #[default]
    Auto,
    Image,
    BaseOs,
}

impl std::fmt::Display for PythonSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PythonSource::Auto => "auto",
            PythonSource::Image => "image",
            PythonSource::BaseOs => "base-os",
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
    /// The project's setup.cfg and setup.py, where `requires-python` is read when
    /// pyproject.toml's `[project]` has none (as cibuildwheel reads it).
    pub setup_cfg: Option<&'a str>,
    pub setup_py: Option<&'a str>,
}

/// cibuildwheel 4's `audit-requires` default: abi3audit, pinned here (the version on PyPI on
/// 2026-12-07) so that an audit means the same thing from one build to the next.
pub const DEFAULT_AUDIT_REQUIRES: [&str; 1] = ["abi3audit==0.0.26"];

/// cibuildwheel 4's `audit-command` default, run on each repaired abi3 wheel.
pub const DEFAULT_AUDIT_COMMAND: &str = "abi3audit --strict --report {wheel}";

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
    /// `audit-requires`: what the audit step installs (default [`DEFAULT_AUDIT_REQUIRES`]).
    pub audit_requires: Vec<String>,
    /// `audit-command`, run on each repaired abi3 wheel (`{wheel}`); empty: no audit.
    pub audit_command: String,
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
    /// True when `archs` comes from `[tool.pookie-ns]` (whose words may be pookie-ns's own:
    /// platform tags, Debian arch names); otherwise they are cibuildwheel's words.
    pub archs_own: bool,
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
    /// `[tool.pookie-ns] python-source`.
    pub python_source: Option<PythonSource>,
    /// `[project] name`.
    pub name: Option<String>,
    /// What was accepted but has no effect here, one line each.
    pub notes: Vec<String>,
    layers: Vec<Layer>,
    overrides: Vec<Override>,
    env_layers: Vec<Layer>,
    /// `CIBW_INHERIT`'s rules (`skip`, `test-command-linux` ...).
    env_inherit: BTreeMap<String, values::Inherit>,
    groups: Option<toml::Table>,
    path: String,
}

fn invalid(msg: String) -> ConfigError {
    ConfigError::Invalid(msg)
}

#[cfg(test)]
mod testing {
    //! Shared by the unit tests of cibw's files: resolve a config file's text and variables.

    use super::*;

    fn env(vars: &[(&str, &str)]) -> BTreeMap<String, String> {
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
            setup_cfg: None,
            setup_py: None,
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
