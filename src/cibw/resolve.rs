//! The whole configuration, read once: the config file's tables and the `CIBW_*` variables in
//! their layers, and what holds for the whole run (`build`, `skip`, `test-skip`, `archs`,
//! `enable`, the environment-only options, `[project]`, `[dependency-groups]`), every
//! identifier's options checked on the way.

use std::collections::BTreeSet;

use super::env;
use super::identifiers::python_matches;
use super::options::find;
use super::tables::{self, Tables};
use super::values::Val;
use super::{invalid, Input, Resolved};
use crate::config::{parse_toml, ConfigError};
use crate::target::Selector;

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
    // archs: an empty value falls through to the layer below (cibuildwheel's ignore_empty);
    // [tool.pookie-ns]'s own words (platform tags) are pookie-ns's.
    fn nonempty(v: Option<&Val>) -> Option<&Val> {
        v.filter(|v| !matches!(v, Val::List(l) if l.is_empty()))
    }
    let archs_env = nonempty(
        env_linux
            .get("archs")
            .filter(|_| find("archs").is_some_and(|o| o.env_plat)),
    )
    .or_else(|| nonempty(env_generic.get("archs")));
    r.archs_own = archs_env.is_none() && nonempty(own.get("archs")).is_some();
    r.archs = list(
        archs_env
            .or_else(|| nonempty(own.get("archs")))
            .or_else(|| nonempty(linux.get("archs")))
            .or_else(|| nonempty(generic.get("archs"))),
    );
    // enable: the environment adds to the file's.
    let mut enable = list(
        own.get("enable")
            .or(linux.get("enable"))
            .or(generic.get("enable")),
    );
    enable.extend(list(env_generic.get("enable")));
    super::build_set::check_enable(&enable)
        .map_err(|e| invalid(format!("{}: {e}", input.path.display())))?;
    if !enable.is_empty() {
        noted.insert(format!(
            "enable = {}: --print-build-identifiers lists the identifiers it enables, as \
             cibuildwheel does; pookie-ns's base OSes build CPython only (no pre-release, PyPy, \
             GraalPy or Pyodide interpreter)",
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
        // cibuildwheel's order: pyproject.toml's [project], setup.cfg's [options], setup.py's
        // setup(python_requires=...).
        _ => project_file
            .get("project")
            .and_then(|p| p.get("requires-python"))
            .and_then(|v| v.as_str())
            .map(str::to_string)
            .or_else(|| {
                input
                    .setup_cfg
                    .and_then(super::requires_python::from_setup_cfg)
            })
            .or_else(|| {
                input
                    .setup_py
                    .and_then(super::requires_python::from_setup_py)
            }),
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
mod tests {
    use crate::cibw::testing::ok;

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
        assert!(notes.contains("no pre-release, PyPy"), "{notes}");
        assert!(!notes.contains("universal2"), "{notes}");
        assert!(r.archs.is_empty());
    }
}
