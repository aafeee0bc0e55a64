//! The config file's tables: `[tool.cibuildwheel]`, its `[tool.cibuildwheel.linux]` table, its
//! `[[tool.cibuildwheel.overrides]]` (`select`, `inherit`) and `[tool.pookie-ns]` (with its own
//! `mode` and `compiler`), each option checked against the option table and converted.

use std::collections::{BTreeMap, BTreeSet};

use super::env::env_name;
use super::options::{find, is_image, Scope, IMAGE_NOTE, OPTIONS, OTHER_PLATFORMS};
use super::place::{suggest, Place};
use super::values::{from_toml, inherit, string_list, Inherit, Layer, Val};
use super::{invalid, Input, Mode, PythonSource};
use crate::config::ConfigError;
use crate::target::Selector;
use crate::toolchain::Compiler;

/// One `[[tool.cibuildwheel.overrides]]` entry: the identifiers it selects, its options and their
/// `inherit` rules.
#[derive(Debug, Clone)]
pub(super) struct Override {
    pub(super) select: Selector,
    pub(super) values: Layer,
    pub(super) inherit: BTreeMap<String, Inherit>,
}

/// What the config file's tables hold.
pub(super) struct Tables {
    /// `[tool.cibuildwheel]`.
    pub(super) generic: Layer,
    /// `[tool.cibuildwheel.linux]`.
    pub(super) linux: Layer,
    /// `[tool.pookie-ns]`.
    pub(super) own: Layer,
    /// `[[tool.cibuildwheel.overrides]]`, in order.
    pub(super) overrides: Vec<Override>,
    /// `[tool.pookie-ns] mode`.
    pub(super) mode: Option<Mode>,
    /// `[tool.pookie-ns] compiler`.
    pub(super) compiler: Option<Compiler>,
    /// `[tool.pookie-ns] python-source`.
    pub(super) python_source: Option<PythonSource>,
}

/// Reads the tables of `file` (the config file, parsed). What is accepted without effect goes to
/// `noted`, another platform's table or option to `other_platform`.
pub(super) fn read(
    input: &Input,
    file: &toml::Table,
    noted: &mut BTreeSet<String>,
    other_platform: &mut BTreeSet<String>,
) -> Result<Tables, ConfigError> {
    let mut overrides = Vec::new();
    let tool = file.get("tool").and_then(|t| t.as_table());

    // [tool.cibuildwheel] and its platform tables.
    let mut generic = Layer::new();
    let mut linux = Layer::new();
    let mut linux_inherit: BTreeMap<String, Inherit> = BTreeMap::new();
    if let Some(v) = tool.and_then(|t| t.get("cibuildwheel")) {
        let place = Place::of(input, "tool.cibuildwheel", None);
        let table = place.table(v)?;
        for (key, value) in table {
            match key.as_str() {
                "linux" => {
                    let place = Place {
                        table: "tool.cibuildwheel.linux".into(),
                        ..place
                    };
                    let t = place.table(value)?;
                    for (k, v) in t {
                        if k == "inherit" {
                            // cibuildwheel's platform-table inherit: this table's value of
                            // an option appended (prepended) to [tool.cibuildwheel]'s.
                            linux_inherit = read_inherit(&place, v)?;
                            continue;
                        }
                        read_option(&place, k, v, false, &mut linux, noted)?;
                    }
                }
                p if OTHER_PLATFORMS.contains(&p) => {
                    other_platform.insert(format!("[tool.cibuildwheel.{p}]"));
                }
                "overrides" => {
                    overrides = read_overrides(input, value, noted)?;
                }
                _ => {
                    if find(key).is_some_and(|o| o.scope == Scope::OtherPlatform) {
                        other_platform.insert(key.clone());
                        continue;
                    }
                    read_option(&place, key, value, false, &mut generic, noted)?;
                }
            }
        }
    }
    for (k, rule) in &linux_inherit {
        if let Some(v) = linux.get(k) {
            let combined = inherit(generic.get(k), v, *rule);
            linux.insert(k.clone(), combined);
        }
    }
    // [tool.pookie-ns]: the same keys, and pookie-ns's own.
    let mut own = Layer::new();
    if let Some(v) = tool.and_then(|t| t.get("pookie-ns")) {
        let place = Place::of(input, "tool.pookie-ns", None);
        let t = place.table(v)?;
        for (k, v) in t {
            read_option(&place, k, v, true, &mut own, noted)?;
        }
    }
    let (mode, compiler, python_source) = own_choices(input, &own)?;
    Ok(Tables {
        generic,
        linux,
        own,
        overrides,
        mode,
        compiler,
        python_source,
    })
}

/// pookie-ns's own choices in `[tool.pookie-ns]`: `mode`, `compiler` and `python-source`.
type OwnChoices = (Option<Mode>, Option<Compiler>, Option<PythonSource>);

fn own_choices(input: &Input, own: &Layer) -> Result<OwnChoices, ConfigError> {
    let mut mode = None;
    let mut compiler = None;
    let mut python_source = None;
    for (k, v) in own {
        if let ("mode" | "compiler" | "python-source", Val::Text(s)) = (k.as_str(), v) {
            let place = Place::of(input, "tool.pookie-ns", None);
            if k == "python-source" {
                python_source = Some(match s.as_str() {
                    "auto" => PythonSource::Auto,
                    "image" => PythonSource::Image,
                    "base-os" => PythonSource::BaseOs,
                    _ => return Err(place.err(k, format!("{s:?} is not auto, image or base-os"))),
                });
            } else if k == "mode" {
                mode = Some(match s.as_str() {
                    "native" => Mode::Native,
                    "emulate" => Mode::Emulate,
                    "cross" => Mode::Cross,
                    _ => return Err(place.err(k, format!("{s:?} is not native, emulate or cross"))),
                });
            } else {
                compiler = Some(match s.as_str() {
                    "gcc" => Compiler::Gcc,
                    "clang" => Compiler::Clang,
                    "zig" => Compiler::Zig,
                    _ => return Err(place.err(k, format!("{s:?} is not gcc, clang or zig"))),
                });
            }
        }
    }
    Ok((mode, compiler, python_source))
}

/// Reads one option of a table into `layer`.
fn read_option(
    place: &Place,
    key: &str,
    value: &toml::Value,
    ours: bool,
    layer: &mut Layer,
    noted: &mut BTreeSet<String>,
) -> Result<(), ConfigError> {
    if is_image(key) {
        let s = value
            .as_str()
            .ok_or_else(|| place.err(key, "an image name (a string) is expected"))?;
        if !s.is_empty() {
            noted.insert(format!("{key} = {s:?}: {IMAGE_NOTE}"));
            layer.insert(key.to_string(), Val::Text(s.to_string()));
        }
        return Ok(());
    }
    let known: Vec<&str> = OPTIONS
        .iter()
        .filter(|o| ours || o.scope != Scope::Own)
        .filter(|o| o.scope != Scope::EnvOnly)
        .map(|o| o.name)
        .collect();
    let Some(o) = find(key).filter(|o| known.contains(&o.name)) else {
        if let Some(o) = find(key) {
            if o.scope == Scope::EnvOnly {
                return Err(place.err(
                    key,
                    format!(
                        "cibuildwheel reads this option only from the environment ({}) or the \
                         command line, never from a file",
                        env_name(key)
                    ),
                ));
            }
        }
        return Err(place.err(key, format!("unknown option{}", suggest(key, &known))));
    };
    let val = from_toml(o, value).map_err(|e| place.err(key, e))?;
    match o.scope {
        Scope::Noted(why) => {
            noted.insert(format!("{key}: {why}"));
        }
        Scope::OtherPlatform => {
            noted.insert(format!(
                "ignored (an option of another platform; pookie-ns builds Linux wheels): {key}"
            ));
            return Ok(());
        }
        _ => {}
    }
    layer.insert(key.to_string(), val);
    Ok(())
}

/// An `inherit` table: option → `none`, `append` or `prepend`.
fn read_inherit(place: &Place, i: &toml::Value) -> Result<BTreeMap<String, Inherit>, ConfigError> {
    let it = i
        .as_table()
        .ok_or_else(|| place.err("inherit", "must be a table"))?;
    let mut rules = BTreeMap::new();
    for (k, v) in it {
        if find(k).is_none() && !is_image(k) {
            let names: Vec<&str> = OPTIONS.iter().map(|o| o.name).collect();
            return Err(place.err(
                "inherit",
                format!("{k}: unknown option{}", suggest(k, &names)),
            ));
        }
        let rule = match v.as_str() {
            Some("none") => Inherit::None,
            Some("append") => Inherit::Append,
            Some("prepend") => Inherit::Prepend,
            _ => {
                return Err(place.err(
                    "inherit",
                    format!("{k}: {v} is not \"none\", \"append\" or \"prepend\""),
                ))
            }
        };
        rules.insert(k.clone(), rule);
    }
    Ok(rules)
}

fn read_overrides(
    input: &Input,
    value: &toml::Value,
    noted: &mut BTreeSet<String>,
) -> Result<Vec<Override>, ConfigError> {
    let table = "tool.cibuildwheel.overrides";
    let entries = value.as_array().ok_or_else(|| {
        invalid(format!(
            "{}: [tool.cibuildwheel] overrides: must be an array of tables ([[{table}]])",
            input.path.display()
        ))
    })?;
    let mut out = Vec::new();
    for (n, entry) in entries.iter().enumerate() {
        let place = Place::of(input, table, Some(n));
        let t = place.table(entry)?;
        let select = match t.get("select") {
            Some(toml::Value::String(s)) => s.clone(),
            Some(v @ toml::Value::Array(_)) => string_list(v)
                .map_err(|e| place.err("select", e))?
                .join(" "),
            _ => {
                return Err(place.err(
                    "select",
                    "every override needs select = \"PATTERN\" (a build identifier selector)",
                ))
            }
        };
        let select = Selector::parse(&select).map_err(|e| place.err("select", e))?;
        let inherit_rules = match t.get("inherit") {
            Some(i) => read_inherit(&place, i)?,
            None => BTreeMap::new(),
        };
        let mut values = Layer::new();
        for (k, v) in t {
            if k == "select" || k == "inherit" {
                continue;
            }
            if find(k).is_some_and(|o| o.scope == Scope::Global) {
                return Err(place.err(
                    k,
                    "cannot be overridden (build, skip, test-skip, archs and enable hold for the \
                     whole run); set it in [tool.cibuildwheel]",
                ));
            }
            read_option(&place, k, v, false, &mut values, noted)?;
        }
        out.push(Override {
            select,
            values,
            inherit: inherit_rules,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use crate::cibw::testing::{err, ok, opts};
    use crate::cibw::Mode;
    use crate::toolchain::Compiler;

    #[test]
    fn the_linux_table_inherits_from_the_generic_one() {
        let r = ok(
            r#"
[tool.cibuildwheel]
skip = "cp39-*"
test-requires = ["pytest"]
before-all = "echo generic"

[tool.cibuildwheel.linux]
skip = "*-musllinux_*"
test-requires = ["numpy"]
before-all = "echo linux"
inherit.skip = "append"
inherit.test-requires = "prepend"
"#,
            &[],
        );
        assert!(!r.selected("cp39-manylinux_x86_64"));
        assert!(!r.selected("cp311-musllinux_x86_64"));
        assert!(r.selected("cp311-manylinux_x86_64"));
        let o = opts(&r, "cp311-manylinux_x86_64");
        assert_eq!(o.test_requires, ["numpy", "pytest"]);
        assert_eq!(o.before_all.as_deref(), Some("echo linux"));
        let e = err(
            "[tool.cibuildwheel.linux]\ninherit.skpi = \"append\"\n",
            &[],
        );
        assert!(e.contains("skpi") && e.contains("skip"), "{e}");
    }

    #[test]
    fn pookie_ns_keys_override_cibuildwheel_key_by_key() {
        let r = ok(
            r#"
[tool.cibuildwheel]
test-command = "cibw"
test-requires = "pytest"
skip = "*-manylinux_armv7l"

[tool.cibuildwheel.linux]
before-all = "yum install -y libffi-devel"

[tool.pookie-ns]
before-all = "apt-get install -y libffi-dev"
mode = "emulate"
compiler = "zig"
build-command = ["echo a", "echo b"]
"#,
            &[],
        );
        let o = opts(&r, "cp311-manylinux_x86_64");
        assert_eq!(o.test_command.as_deref(), Some("cibw"));
        assert_eq!(o.test_requires, ["pytest"]);
        assert_eq!(
            o.before_all.as_deref(),
            Some("apt-get install -y libffi-dev")
        );
        assert_eq!(o.build_command.as_deref(), Some("echo a && echo b"));
        assert_eq!(r.mode, Some(Mode::Emulate));
        assert_eq!(r.compiler, Some(Compiler::Zig));
        assert!(!r.selected("cp311-manylinux_armv7l"));
        // The environment still wins over [tool.pookie-ns].
        let r = ok(
            "[tool.pookie-ns]\nbefore-all = \"mine\"\n",
            &[("CIBW_BEFORE_ALL_LINUX", "env")],
        );
        assert_eq!(
            opts(&r, "cp311-manylinux_x86_64").before_all.as_deref(),
            Some("env")
        );
        // pookie-ns's own keys are not cibuildwheel's.
        let e = err("[tool.cibuildwheel]\nmode = \"cross\"\n", &[]);
        assert!(
            e.contains("[tool.cibuildwheel] mode: unknown option"),
            "{e}"
        );
        let e = err("[tool.pookie-ns]\nmode = \"fast\"\n", &[]);
        assert!(
            e.contains("\"fast\" is not native, emulate or cross"),
            "{e}"
        );
    }

    // The examples of cibuildwheel's documentation of overrides and inherit.
    #[test]
    fn overrides_select_and_inherit() {
        let text = r#"
[tool.cibuildwheel]
test-command = "pyproject"
environment = { FOO = "BAR", KEEP = "1" }
repair-wheel-command = "auditwheel repair -w {dest_dir} {wheel}"

[[tool.cibuildwheel.overrides]]
select = "cp311*"
inherit.test-command = "prepend"
test-command = ["pyproject-before"]
inherit.environment = "append"
environment = { FOO = "BAZ", PYTHON = "MONTY" }

[[tool.cibuildwheel.overrides]]
select = "cp311*"
inherit.test-command = "append"
test-command = ["pyproject-after"]

[[tool.cibuildwheel.overrides]]
select = "*"
inherit.repair-wheel-command = "prepend"
repair-wheel-command = "echo 'Before repair'"

[[tool.cibuildwheel.overrides]]
select = "*-musllinux*"
before-all = "apk add mylib"

[[tool.cibuildwheel.overrides]]
select = ["cp39-*", "cp310-*"]
inherit.environment = "prepend"
environment.FOO = "OLD-KEEPS"
environment.NEW = "Added!"
"#;
        let r = ok(text, &[]);
        let o = opts(&r, "cp311-manylinux_x86_64");
        assert_eq!(
            o.test_command.as_deref(),
            Some("pyproject-before && pyproject && pyproject-after")
        );
        assert_eq!(
            o.environment,
            [
                ("FOO".to_string(), "\"BAR\"".to_string()),
                ("KEEP".into(), "\"1\"".into()),
                ("FOO".into(), "\"BAZ\"".into()),
                ("PYTHON".into(), "\"MONTY\"".into()),
            ],
            "appended: the later FOO wins when evaluated"
        );
        assert_eq!(
            o.repair_wheel_command.as_deref(),
            Some("echo 'Before repair' && auditwheel repair -w {dest_dir} {wheel}")
        );
        assert_eq!(o.before_all, None);
        let o = opts(&r, "cp312-musllinux_x86_64");
        assert_eq!(o.test_command.as_deref(), Some("pyproject"));
        assert_eq!(o.before_all.as_deref(), Some("apk add mylib"));
        let o = opts(&r, "cp39-manylinux_x86_64");
        assert_eq!(
            o.environment.first(),
            Some(&("FOO".to_string(), "\"OLD-KEEPS\"".to_string()))
        );
        assert_eq!(
            o.environment.last(),
            Some(&("KEEP".to_string(), "\"1\"".to_string())),
            "prepended: older keys come last and win"
        );
        // The environment beats every override.
        let r = ok(text, &[("CIBW_TEST_COMMAND", "from-env")]);
        assert_eq!(
            opts(&r, "cp311-manylinux_x86_64").test_command.as_deref(),
            Some("from-env")
        );
    }

    #[test]
    fn bad_overrides_are_refused_with_their_place() {
        let e = err(
            "[tool.cibuildwheel]\n\n[[tool.cibuildwheel.overrides]]\ntest-command = \"x\"\n",
            &[],
        );
        assert!(e.contains("#1 select"), "{e}");
        let e = err(
            "[[tool.cibuildwheel.overrides]]\nselect = \"*\"\narchs = \"aarch64\"\n",
            &[],
        );
        assert!(e.contains("/p/pyproject.toml:3:"), "{e}");
        assert!(e.contains("archs: cannot be overridden"), "{e}");
        let e = err(
            "[[tool.cibuildwheel.overrides]]\nselect = \"*\"\ninherit.test-command = \"merge\"\n",
            &[],
        );
        assert!(e.contains("\"append\""), "{e}");
        let e = err(
            "[[tool.cibuildwheel.overrides]]\nselect = \"*\"\n[[tool.cibuildwheel.overrides]]\nselect = \"*\"\ntest-comand = \"x\"\n",
            &[],
        );
        assert!(e.contains(":5:") && e.contains("#2 test-comand"), "{e}");
        assert!(e.contains("did you mean \"test-command\""), "{e}");
    }

    #[test]
    fn unknown_options_are_errors_naming_file_line_and_fix() {
        let e = err(
            "[project]\nname = \"x\"\n\n[tool.cibuildwheel]\nbuild = \"*\"\ntest-comand = \"pytest\"\n",
            &[],
        );
        assert!(
            e.starts_with("/p/pyproject.toml:6: [tool.cibuildwheel] test-comand"),
            "{e}"
        );
        assert!(e.contains("did you mean \"test-command\""), "{e}");
        let e = err("[tool.cibuildwheel.linux]\nbefore_all = \"x\"\n", &[]);
        assert!(
            e.contains(":2: [tool.cibuildwheel.linux] before_all"),
            "{e}"
        );
        assert!(e.contains("\"before-all\""), "{e}");
        let e = err(
            "[tool.pookie-ns]\narchs = \"x86_64\"\ntest-comand = \"pytest\"\n",
            &[],
        );
        assert!(e.contains(":3: [tool.pookie-ns] test-comand"), "{e}");
        // Environment-only options are not file options.
        let e = err("[tool.cibuildwheel]\nallow-empty = true\n", &[]);
        assert!(e.contains("CIBW_ALLOW_EMPTY"), "{e}");
        let e = err("[tool.cibuildwheel]\nbuild-verbosity = \"loud\"\n", &[]);
        assert!(
            e.contains("build-verbosity") && e.contains("not an integer"),
            "{e}"
        );
        let e = err(
            "[tool.cibuildwheel]\nenable = [\"pypy\", \"jython\"]\n",
            &[],
        );
        assert!(e.contains("jython"), "{e}");
        let e = err("", &[("CIBW_PLATFORM", "macos")]);
        assert!(e.contains("Linux wheels only"), "{e}");
        let e = err("", &[("CIBW_ENVIRONMENT", "CFLAGS")]);
        assert!(
            e.contains("CIBW_ENVIRONMENT") && e.contains("NAME=VALUE"),
            "{e}"
        );
    }
}
