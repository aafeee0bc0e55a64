//! The whole configuration, read once: the config file's tables and the `CIBW_*` variables in
//! their layers, and what holds for the whole run (`build`, `skip`, `test-skip`, `archs`,
//! `enable`, the environment-only options, `[project]`, `[dependency-groups]`), every
//! identifier's options checked on the way.

use std::collections::{BTreeMap, BTreeSet};

use super::env;
use super::identifiers::python_matches;
use super::options::find;
use super::tables::{self, Tables};
use super::values::{inherit, Inherit, Val};
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
        python_source,
    } = tables::read(input, &file, &mut noted, &mut other_platform)?;
    r.overrides = overrides;
    r.mode = mode;
    r.compiler = compiler;
    r.python_source = python_source;

    // The environment: CIBW_<OPTION>, then CIBW_<OPTION>_LINUX.
    let (env_generic, env_linux) = env::read(input.env, &mut noted, &mut other_platform)?;

    // Globals: build, skip, test-skip, archs, enable and the environment-only ones.
    let list = |v: Option<&Val>| match v {
        Some(Val::List(l)) => l.clone(),
        _ => Vec::new(),
    };
    // CIBW_INHERIT: how CIBW_<OPTION> (and CIBW_<OPTION>_LINUX, `option-linux`) combine
    // with the file's value.
    let env_inherit = read_env_inherit(input.env.get("CIBW_INHERIT").map(String::as_str))?;
    let rule = |key: &str, default: Inherit| env_inherit.get(key).copied().unwrap_or(default);
    // build, skip, test-skip: not read from CIBW_<OPTION>_LINUX.
    let file_or_env = |key: &str, default: Inherit| -> Option<Val> {
        let file = own
            .get(key)
            .or_else(|| linux.get(key))
            .or_else(|| generic.get(key));
        match env_generic.get(key) {
            Some(e) => Some(inherit(file, e, rule(key, default))),
            None => file.cloned(),
        }
    };
    let selector = |key: &str| {
        Selector::parse(&list(file_or_env(key, Inherit::None).as_ref()).join(" "))
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
    let archs_file = nonempty(own.get("archs"))
        .or_else(|| nonempty(linux.get("archs")))
        .or_else(|| nonempty(generic.get("archs")));
    let mut archs = archs_file.cloned();
    let mut from_env = false;
    for (v, key) in [
        (env_generic.get("archs"), "archs"),
        (env_linux.get("archs"), "archs-linux"),
    ] {
        if let Some(v) = nonempty(v) {
            archs = Some(inherit(archs.as_ref(), v, rule(key, Inherit::None)));
            from_env = true;
        }
    }
    r.archs_own = !from_env && nonempty(own.get("archs")).is_some();
    r.archs = list(archs.as_ref());
    // enable: the environment adds to the file's (unless CIBW_INHERIT says otherwise).
    let mut enable = list(file_or_env("enable", Inherit::Append).as_ref());
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
    r.env_inherit = env_inherit;
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

/// `CIBW_INHERIT`, in cibuildwheel's key-value syntax: fields separated by `;`, each `OPTION:
/// RULE` or bare option names (which append): `skip; test-command-linux: prepend`. `OPTION-linux`
/// is for `CIBW_<OPTION>_LINUX`; RULE is `none`, `append` or `prepend`, one per option.
fn read_env_inherit(value: Option<&str>) -> Result<BTreeMap<String, Inherit>, ConfigError> {
    let bad = |why: String| invalid(format!("CIBW_INHERIT={:?}: {why}", value.unwrap_or("")));
    let mut given: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for field in value.unwrap_or("").split(';') {
        let words = shlex::split(field).ok_or_else(|| bad("unbalanced quotes".into()))?;
        let Some(first) = words.first() else {
            continue;
        };
        match first.split_once(':') {
            Some((key, v)) => {
                let values = given.entry(key.to_string()).or_default();
                if !v.is_empty() {
                    values.push(v.to_string());
                }
                values.extend(words[1..].iter().cloned());
            }
            None => {
                for key in &words {
                    given.entry(key.clone()).or_default().push("append".into());
                }
            }
        }
    }
    let mut rules = BTreeMap::new();
    for (key, values) in given {
        let option = key.strip_suffix("-linux").unwrap_or(&key);
        let other = super::options::OTHER_PLATFORMS
            .iter()
            .find_map(|p| key.strip_suffix(&format!("-{p}")));
        let known = |o: &str| find(o).is_some() || super::options::is_image(o);
        if !known(option) && !other.is_some_and(known) {
            return Err(bad(format!(
                "{key:?} is not an option (write e.g. CIBW_INHERIT=\"skip; test-command: prepend\")"
            )));
        }
        let rule = match values.as_slice() {
            [r] if r == "none" => Inherit::None,
            [r] if r == "append" => Inherit::Append,
            [r] if r == "prepend" => Inherit::Prepend,
            _ => {
                return Err(bad(format!(
                    "{key}: give one rule, none, append or prepend (not {})",
                    values.join(" ")
                )))
            }
        };
        if other.is_none() {
            rules.insert(key, rule);
        }
    }
    Ok(rules)
}

#[cfg(test)]
mod tests {
    use crate::cibw::testing::ok;

    #[test]
    fn cibw_inherit_combines_the_environment_with_the_file() {
        let file = "[tool.cibuildwheel]\nskip = \"cp39-*\"\nenable = [\"pypy\"]\ntest-requires = \"pytest\"\n";
        let r = ok(file, &[("CIBW_SKIP", "cp310-*")]);
        assert!(r.selected("cp39-manylinux_x86_64") && !r.selected("cp310-manylinux_x86_64"));
        let r = ok(
            file,
            &[
                ("CIBW_SKIP", "cp310-*"),
                ("CIBW_ENABLE", "graalpy"),
                ("CIBW_TEST_REQUIRES_LINUX", "numpy"),
                (
                    "CIBW_INHERIT",
                    "skip; enable: none; test-requires-linux: prepend",
                ),
            ],
        );
        assert!(!r.selected("cp39-manylinux_x86_64") && !r.selected("cp310-manylinux_x86_64"));
        assert_eq!(r.enable, ["graalpy"]);
        assert_eq!(
            crate::cibw::testing::opts(&r, "cp311-manylinux_x86_64").test_requires,
            ["numpy", "pytest"]
        );
        let r = ok(
            "[tool.cibuildwheel]\narchs = \"aarch64\"\n",
            &[
                ("CIBW_ARCHS_LINUX", "x86_64"),
                ("CIBW_INHERIT", "archs-linux"),
            ],
        );
        assert_eq!(r.archs, ["aarch64", "x86_64"]);
        let e = crate::cibw::testing::err("", &[("CIBW_INHERIT", "skpi")]);
        assert!(e.contains("skpi"), "{e}");
        let e = crate::cibw::testing::err("", &[("CIBW_INHERIT", "skip: after")]);
        assert!(e.contains("none, append or prepend"), "{e}");
        let e = crate::cibw::testing::err("", &[("CIBW_INHERIT", "skip: append; skip")]);
        assert!(e.contains("one rule"), "{e}");
    }

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
