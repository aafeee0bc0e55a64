//! A bundle's own build configuration: cibuildwheel's (`[tool.cibuildwheel]`, `CIBW_*`) and
//! pookie-ns's `[tool.pookie-ns]` table of its `pyproject.toml`, read by [`crate::cibw`], with
//! what holds for the whole run (selectors, archs, mode, compiler) unpacked. Unknown keys and
//! ill-typed values are errors that name the file, the line and the key.

use std::collections::BTreeMap;
use std::path::Path;

use crate::config::ConfigError;
use crate::target::{parse_platform, Platform, Selector};

// The build frontend and the build mode are options of the configuration layer below.
pub use crate::cibw::{Frontend, Mode};

/// The build backend, as far as a cross build cares: Meson needs a cross file, Rust a compiler
/// with the target's standard library.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Backend {
    /// `build-backend = "mesonpy"` (meson-python).
    pub meson: bool,
    /// maturin, or setuptools-rust among the build requirements.
    pub rust: bool,
}

impl Backend {
    /// Reads `[build-system]` of a pyproject.toml's text; anything unreadable is no backend of
    /// these (the configuration parser reports a broken file).
    pub fn of(pyproject: &str) -> Backend {
        let Ok(doc) = pyproject.parse::<toml::Table>() else {
            return Backend::default();
        };
        let Some(system) = doc.get("build-system").and_then(|v| v.as_table()) else {
            return Backend::default();
        };
        let backend = system
            .get("build-backend")
            .and_then(|v| v.as_str())
            .unwrap_or("");
        // A requirement's name: up to the first character that cannot be in one, normalised
        // as PEP 503 does.
        let names: Vec<String> = system
            .get("requires")
            .and_then(|v| v.as_array())
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str())
            .map(|r| {
                r.trim()
                    .split(|c: char| !(c.is_ascii_alphanumeric() || "-_.".contains(c)))
                    .next()
                    .unwrap_or("")
                    .to_ascii_lowercase()
                    .replace(['_', '.'], "-")
            })
            .collect();
        Backend {
            meson: backend == "mesonpy",
            rust: backend == "maturin"
                || backend.starts_with("maturin.")
                || names
                    .iter()
                    .any(|n| n == "setuptools-rust" || n == "maturin"),
        }
    }
}

/// The checked project configuration: cibuildwheel's options and `[tool.pookie-ns]`'s, resolved
/// by [`crate::cibw`] (which documents the precedence), with what holds for the whole run
/// unpacked here and the per-identifier options behind [`Project::options`].
#[derive(Debug, Clone, Default)]
pub struct Project {
    /// `[project] name`, if the file has one.
    pub name: Option<String>,
    pub build: Selector,
    pub skip: Selector,
    pub archs: Vec<Platform>,
    pub mode: Option<Mode>,
    pub compiler: Option<crate::toolchain::Compiler>,
    /// `[tool.pookie-ns] python-source`.
    pub python_source: Option<crate::cibw::PythonSource>,
    /// What `[build-system]` says builds the wheel (which cross-build hooks a toolchain build needs).
    pub backend: Backend,
    /// Everything else (per identifier, notes, requires-python, test-skip ...).
    pub config: crate::cibw::Resolved,
}

impl Project {
    /// Reads the configuration of the bundle: `--config-file` (else `BUNDLE/pyproject.toml`) and
    /// the `CIBW_*` variables of `env`. A bundle without pyproject.toml builds with the defaults.
    pub fn load(
        bundle: &Path,
        config_file: Option<&Path>,
        env: &BTreeMap<String, String>,
    ) -> Result<Project, ConfigError> {
        let pyproject_path = bundle.join("pyproject.toml");
        let pyproject = crate::config::read_optional(&pyproject_path)?;
        // Where cibuildwheel reads requires-python when [project] has none.
        let setup_cfg = crate::config::read_optional(&bundle.join("setup.cfg"))?;
        let setup_py = crate::config::read_optional(&bundle.join("setup.py"))?;
        let setup = Setup {
            cfg: setup_cfg.as_deref(),
            py: setup_py.as_deref(),
        };
        match config_file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
                    path: path.to_path_buf(),
                    source: e,
                })?;
                Project::parse_files(
                    path,
                    &text,
                    Some(pyproject.as_deref().unwrap_or("")),
                    setup,
                    env,
                )
            }
            None => Project::parse_files(
                &pyproject_path,
                pyproject.as_deref().unwrap_or(""),
                None,
                setup,
                env,
            ),
        }
    }

    /// Parses a pyproject.toml without `CIBW_*` variables.
    pub fn parse(path: &Path, text: &str) -> Result<Project, ConfigError> {
        Project::parse_with(path, text, None, &BTreeMap::new())
    }

    /// Parses a config file; `pyproject`: the project's own pyproject.toml when `text` is another
    /// file (`--config-file`).
    pub fn parse_with(
        path: &Path,
        text: &str,
        pyproject: Option<&str>,
        env: &BTreeMap<String, String>,
    ) -> Result<Project, ConfigError> {
        Project::parse_files(path, text, pyproject, Setup::default(), env)
    }

    /// [`Project::parse_with`] with the project's setup.cfg and setup.py.
    pub fn parse_files(
        path: &Path,
        text: &str,
        pyproject: Option<&str>,
        setup: Setup,
        env: &BTreeMap<String, String>,
    ) -> Result<Project, ConfigError> {
        let config = crate::cibw::resolve(&crate::cibw::Input {
            path,
            text,
            pyproject,
            env,
            setup_cfg: setup.cfg,
            setup_py: setup.py,
        })?;
        let archs = project_archs(&config)
            .map_err(|e| ConfigError::Invalid(format!("{}: archs: {e}", path.display())))?;
        Ok(Project {
            name: config.name.clone(),
            build: config.build.clone(),
            skip: config.skip.clone(),
            archs,
            mode: config.mode,
            compiler: config.compiler,
            python_source: config.python_source,
            backend: Backend::of(pyproject.unwrap_or(text)),
            config,
        })
    }

    /// True when the `build`/`skip` selectors and `requires-python` let this identifier through.
    pub fn selected(&self, identifier: &str) -> bool {
        (self.build.is_empty() || self.build.matches(identifier))
            && !self.skip.matches(identifier)
            && self.config.selected_python(identifier)
    }

    /// The options of one build identifier (overrides applied).
    pub fn options(&self, identifier: &str) -> Result<crate::cibw::BuildOptions, ConfigError> {
        self.config.options_for(identifier)
    }
}

/// The text of a project's setup.cfg and setup.py, where they exist.
#[derive(Debug, Clone, Copy, Default)]
pub struct Setup<'a> {
    pub cfg: Option<&'a str>,
    pub py: Option<&'a str>,
}

/// The platforms a project's `archs` select: `[tool.pookie-ns] archs` in pookie-ns's words
/// ([`resolve_archs`]: platform tags too), else cibuildwheel's `archs` read as cibuildwheel
/// reads them (default `auto`: the host's arch only).
pub fn project_archs(config: &crate::cibw::Resolved) -> Result<Vec<Platform>, String> {
    if config.archs_own {
        return resolve_archs(&config.archs);
    }
    cibuildwheel_archs(&config.archs)
}

/// cibuildwheel's `archs` (or `--archs`) words as cibuildwheel reads them
/// ([`crate::cibw::build_set::parse_archs`]); none: `auto`.
pub fn cibuildwheel_archs(words: &[String]) -> Result<Vec<Platform>, String> {
    let auto = ["auto".to_string()];
    let words = if words.iter().all(|w| w.trim().is_empty()) {
        &auto[..]
    } else {
        words
    };
    crate::cibw::build_set::parse_archs(words, crate::arch::Arch::host(), false)?
        .iter()
        .map(|a| parse_platform(a))
        .collect()
}

/// pookie-ns's `archs` words on this host: `auto` and `native` (the host's arch), `auto64`
/// (the host's, when 64-bit), `auto32` (i686 on x86_64, armv7l on aarch64), `all` (every arch
/// pookie-ns knows), arch names and platform tags.
pub fn resolve_archs(words: &[String]) -> Result<Vec<Platform>, String> {
    use crate::arch::Arch;
    let host = Arch::host();
    let plain = |arch| Platform { arch, policy: None };
    let mut out: Vec<Platform> = Vec::new();
    for word in words {
        let add: Vec<Platform> = match word.as_str() {
            "auto" | "native" => vec![plain(host)],
            "auto64" => match host {
                Arch::I386 | Arch::Armhf => Vec::new(),
                a => vec![plain(a)],
            },
            "auto32" => match host {
                Arch::Amd64 | Arch::I386 => vec![plain(Arch::I386)],
                Arch::Arm64 | Arch::Armhf => vec![plain(Arch::Armhf)],
                _ => Vec::new(),
            },
            "all" => Arch::ALL.iter().map(|&a| plain(a)).collect(),
            w => vec![parse_platform(w)?],
        };
        for p in add {
            if !out.contains(&p) {
                out.push(p);
            }
        }
    }
    Ok(out)
}

/// Replaces cibuildwheel's `{project}` and `{package}` placeholders; `#{project}` stands for
/// the literal `{project}`, as in cibuildwheel.
pub fn substitute(command: &str, project: &str, package: &str) -> String {
    placeholders(command, &[("project", project), ("package", package)])
}

/// Replaces `{NAME}` by its value for each pair; `#{NAME}` is the literal `{NAME}`.
pub fn placeholders(command: &str, values: &[(&str, &str)]) -> String {
    let mut out = String::new();
    let mut rest = command;
    'scan: while !rest.is_empty() {
        for (name, value) in values {
            let key = format!("{{{name}}}");
            if let Some(r) = rest.strip_prefix(&format!("#{key}")) {
                out.push_str(&key);
                rest = r;
                continue 'scan;
            }
            if let Some(r) = rest.strip_prefix(&key) {
                out.push_str(value);
                rest = r;
                continue 'scan;
            }
        }
        let c = rest.chars().next().expect("not empty");
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::Arch;

    fn parse(text: &str) -> Result<Project, ConfigError> {
        Project::parse(Path::new("/b/pyproject.toml"), text)
    }

    #[test]
    fn the_backend_is_read_from_build_system() {
        let of = |t: &str| Backend::of(&format!("[build-system]\n{t}\n"));
        assert_eq!(
            of("requires = [\"meson-python>=0.16\"]\nbuild-backend = \"mesonpy\""),
            Backend {
                meson: true,
                rust: false
            }
        );
        assert!(of("requires = [\"maturin>=1.9,<2\"]\nbuild-backend = \"maturin\"").rust);
        assert!(of("requires = [\"setuptools\", \"Setuptools_Rust>=1.5\"]").rust);
        assert_eq!(
            of("requires = [\"setuptools>=61\", \"Cython>=3\"]"),
            Backend::default()
        );
        // No [build-system], or a file that does not parse: none of them.
        assert_eq!(Backend::of("[project]\nname = \"x\"\n"), Backend::default());
        assert_eq!(Backend::of("[build-system"), Backend::default());
        let p = parse("[build-system]\nbuild-backend = \"mesonpy\"\n").unwrap();
        assert!(p.backend.meson);
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
        let o = p.options("cp311-manylinux_x86_64").unwrap();
        assert_eq!(
            o.test_command.as_deref(),
            Some("cd {project} && python3 -m pytest {package}/tests")
        );
        assert_eq!(o.test_requires, ["pytest", "numpy"]);
        assert_eq!(o.frontend.frontend, Frontend::Build);
        assert_eq!(p.mode, Some(Mode::Emulate));
        assert_eq!(p.compiler, Some(crate::toolchain::Compiler::Zig));
        assert_eq!(
            o.environment,
            [
                ("CFLAGS".to_string(), "\"-O2\"".to_string()),
                ("FOO_1".to_string(), "\"x y\"".to_string())
            ]
        );
    }

    #[test]
    fn no_table_means_defaults() {
        let p = parse("[project]\nname = \"x\"\n").unwrap();
        assert!(p.selected("cp311-manylinux_x86_64"));
        // cibuildwheel's default, `auto`: the host's arch only.
        assert_eq!(
            p.archs,
            [Platform {
                arch: Arch::host(),
                policy: None
            }]
        );
        let o = p.options("cp311-manylinux_x86_64").unwrap();
        assert_eq!(o.frontend.frontend, Frontend::Pip);
        assert!(o.test_command.is_none());
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
            ("environment = \"CFLAGS\"", "environment"),
        ] {
            let e = parse(&format!("[tool.pookie-ns]\n{text}\n"))
                .unwrap_err()
                .to_string();
            assert!(e.contains(needle), "{text}: {e}");
        }
    }

    #[test]
    fn the_examples_and_fixtures_parse() {
        for (name, text) in [
            ("c-ext", include_str!("../examples/c-ext/pyproject.toml")),
            (
                "cpp-ext",
                include_str!("../examples/cpp-ext/pyproject.toml"),
            ),
            (
                "ffi-ext",
                include_str!("../examples/ffi-ext/pyproject.toml"),
            ),
            (
                "cibw-options",
                include_str!("../tests/fixtures/cibw-options/pyproject.toml"),
            ),
            (
                "cibw-selectors",
                include_str!("../tests/fixtures/cibw-selectors/pyproject.toml"),
            ),
        ] {
            let p = parse(text).unwrap_or_else(|e| panic!("{name}: {e}"));
            p.options("cp311-manylinux_x86_64")
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }

    #[test]
    fn archs_words_resolve_on_this_host() {
        let w = |s: &[&str]| {
            resolve_archs(&s.iter().map(|x| x.to_string()).collect::<Vec<_>>()).unwrap()
        };
        let host = Arch::host();
        assert_eq!(w(&["auto"])[0].arch, host);
        assert_eq!(w(&["native", "auto", "auto64"]).len(), 1);
        assert_eq!(w(&["all"]).len(), Arch::ALL.len());
        if host == Arch::Amd64 {
            assert_eq!(w(&["auto32"])[0].arch, Arch::I386);
            assert_eq!(
                w(&["auto", "aarch64"])
                    .iter()
                    .map(|p| p.arch)
                    .collect::<Vec<_>>(),
                [Arch::Amd64, Arch::Arm64]
            );
        }
        assert!(resolve_archs(&["universal2".to_string()]).is_err());
    }

    #[test]
    fn cibuildwheel_archs_are_its_words_and_the_own_table_takes_tags() {
        let archs = |text: &str, env: &[(&str, &str)]| {
            let env = env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            Project::parse_with(Path::new("/b/pyproject.toml"), text, None, &env)
                .map(|p| p.archs.iter().map(|p| p.arch).collect::<Vec<_>>())
        };
        // cibuildwheel's `arm64` is macOS's: nothing on Linux; the own table's is aarch64.
        assert_eq!(
            archs("[tool.cibuildwheel]\narchs = [\"arm64\"]\n", &[]).unwrap(),
            []
        );
        assert_eq!(
            archs("[tool.pookie-ns]\narchs = [\"arm64\"]\n", &[]).unwrap(),
            [Arch::Arm64]
        );
        assert!(archs(
            "[tool.cibuildwheel]\narchs = [\"manylinux_2_17_aarch64\"]\n",
            &[]
        )
        .unwrap_err()
        .to_string()
        .contains("invalid architecture"));
        // An empty value falls through; the environment beats the own table.
        assert_eq!(
            archs(
                "[tool.cibuildwheel]\narchs = \"ppc64le\"\n[tool.cibuildwheel.linux]\narchs = []\n",
                &[("CIBW_ARCHS", "")]
            )
            .unwrap(),
            [Arch::Ppc64el]
        );
        assert_eq!(
            archs(
                "[tool.pookie-ns]\narchs = [\"manylinux_2_28_s390x\"]\n",
                &[("CIBW_ARCHS_LINUX", "all")]
            )
            .unwrap()
            .len(),
            7
        );
    }

    #[test]
    fn placeholders_are_replaced() {
        assert_eq!(
            substitute(
                "pytest {project}/tests {package}",
                "/buildroot/src",
                "/buildroot/src/pkg"
            ),
            "pytest /buildroot/src/tests /buildroot/src/pkg"
        );
        assert_eq!(
            substitute("echo #{project} {project} #x {package}", "/p", "/k"),
            "echo {project} /p #x /k"
        );
        assert_eq!(
            placeholders(
                "r -w {dest_dir} {wheel} #{wheel}",
                &[("wheel", "$w"), ("dest_dir", "/d")]
            ),
            "r -w /d $w {wheel}"
        );
    }
}
