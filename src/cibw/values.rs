//! An option's value ([`Val`]): converted from TOML or from an environment variable by the
//! option's [`Kind`], and combined by an override's `inherit` rule.

use std::collections::BTreeMap;

use super::options::{Kind, Opt};
use super::words::{parse_assignments, quoted, shell_words, valid_var};
use super::{Frontend, FrontendSpec};

/// A value, converted from TOML or from an environment variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Val {
    /// Lists: words, commands (joined with ` && `), patterns.
    List(Vec<String>),
    /// Assignments and settings, in order (later ones win when evaluated).
    Pairs(Vec<(String, String)>),
    Frontend(FrontendSpec),
    Int(i64),
    Text(String),
    Flag(bool),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Inherit {
    None,
    Append,
    Prepend,
}

pub(super) type Layer = BTreeMap<String, Val>;

fn toml_type(v: &toml::Value) -> &'static str {
    v.type_str()
}

pub(super) fn string_list(v: &toml::Value) -> Result<Vec<String>, String> {
    match v {
        toml::Value::Array(items) => items
            .iter()
            .map(|i| match i {
                toml::Value::String(s) => Ok(s.clone()),
                other => Err(format!(
                    "a list of strings is expected, and it holds a {}",
                    toml_type(other)
                )),
            })
            .collect(),
        other => Err(format!(
            "a string or a list of strings is expected, not a {}",
            toml_type(other)
        )),
    }
}

fn parse_frontend(s: &str, args: Vec<String>) -> Result<FrontendSpec, String> {
    let (name, rest) = match s.split_once(';') {
        Some((n, r)) => (n.trim(), Some(r.trim())),
        None => (s.trim(), None),
    };
    let frontend = match name {
        "" | "default" | "build" => Frontend::Build,
        "build[uv]" => Frontend::BuildUv,
        "pip" => Frontend::Pip,
        "uv" => Frontend::Uv,
        other => {
            return Err(format!(
                "{other:?} is not a build frontend; write pip, build, build[uv] or uv \
                 (optionally followed by \"; args: ...\")"
            ))
        }
    };
    let mut all = args;
    if let Some(rest) = rest {
        let r = rest
            .strip_prefix("args:")
            .ok_or_else(|| format!("{rest:?}: only \"args: ...\" may follow the frontend"))?;
        all.extend(shell_words(r)?);
    }
    Ok(FrontendSpec {
        frontend,
        args: all,
    })
}

/// Converts a TOML value of the option `o`.
pub(super) fn from_toml(o: &Opt, v: &toml::Value) -> Result<Val, String> {
    Ok(match (o.kind, v) {
        (Kind::Patterns, toml::Value::String(s)) => {
            Val::List(s.split_whitespace().map(str::to_string).collect())
        }
        (Kind::Words(sep), toml::Value::String(s)) => Val::List(split_words(s, sep)?),
        (Kind::Patterns | Kind::Words(_), v) => Val::List(string_list(v)?),
        (Kind::Command, toml::Value::String(s)) => Val::List(vec![s.clone()]),
        (Kind::Command, v) => Val::List(string_list(v)?),
        (Kind::Env, toml::Value::String(s)) => Val::Pairs(parse_assignments(s)?),
        (Kind::Env, toml::Value::Table(t)) => {
            let mut pairs = Vec::new();
            for (k, v) in t {
                if !valid_var(k) {
                    return Err(format!("{k:?} is not a valid variable name"));
                }
                let v = match v {
                    toml::Value::String(s) => s.clone(),
                    toml::Value::Integer(i) => i.to_string(),
                    toml::Value::Boolean(b) => b.to_string(),
                    other => {
                        return Err(format!(
                            "the value of {k} must be a string, not a {}",
                            toml_type(other)
                        ))
                    }
                };
                pairs.push((k.clone(), quoted(&v)));
            }
            Val::Pairs(pairs)
        }
        (Kind::Settings, toml::Value::String(s)) => Val::Pairs(split_settings(s)?),
        (Kind::Settings, toml::Value::Table(t)) => {
            let mut pairs = Vec::new();
            for (k, v) in t {
                match v {
                    toml::Value::String(s) => pairs.push((k.clone(), s.clone())),
                    toml::Value::Array(_) => {
                        for s in string_list(v)? {
                            pairs.push((k.clone(), s));
                        }
                    }
                    other => pairs.push((k.clone(), other.to_string())),
                }
            }
            Val::Pairs(pairs)
        }
        (Kind::Frontend, toml::Value::String(s)) => Val::Frontend(parse_frontend(s, Vec::new())?),
        (Kind::Frontend, toml::Value::Table(t)) => {
            let name = match t.get("name") {
                Some(toml::Value::String(s)) => s.clone(),
                _ => return Err("a table needs name = \"pip\" (or build, build[uv], uv)".into()),
            };
            if let Some(k) = t.keys().find(|k| *k != "name" && *k != "args") {
                return Err(format!("{k:?} is not a key of build-frontend (name, args)"));
            }
            let args = match t.get("args") {
                None => Vec::new(),
                Some(toml::Value::String(s)) => shell_words(s)?,
                Some(v) => string_list(v)?,
            };
            Val::Frontend(parse_frontend(&name, args)?)
        }
        (Kind::Spec, toml::Value::String(s)) => Val::Text(s.clone()),
        (Kind::Spec, v @ (toml::Value::Table(_) | toml::Value::Array(_))) => {
            Val::Text(v.to_string())
        }
        (Kind::Int, toml::Value::Integer(i)) => Val::Int(*i),
        (Kind::Int, toml::Value::String(s)) => Val::Int(parse_int(s)?),
        (Kind::Text, toml::Value::String(s)) => Val::Text(s.clone()),
        (Kind::Flag, toml::Value::Boolean(b)) => Val::Flag(*b),
        (kind, v) => {
            return Err(format!(
                "a {} is not a valid value here ({})",
                toml_type(v),
                match kind {
                    Kind::Int => "an integer is expected",
                    Kind::Env => "a string of NAME=VALUE assignments or a table is expected",
                    Kind::Settings => "a string of KEY=VALUE words or a table is expected",
                    Kind::Flag => "true or false is expected",
                    _ => "a string is expected",
                }
            ))
        }
    })
}

fn parse_int(s: &str) -> Result<i64, String> {
    s.trim()
        .parse()
        .map_err(|_| format!("{s:?} is not an integer"))
}

fn split_words(s: &str, sep: &str) -> Result<Vec<String>, String> {
    Ok(if sep == "," {
        s.split(',')
            .map(str::trim)
            .filter(|w| !w.is_empty())
            .map(str::to_string)
            .collect()
    } else {
        shell_words(s)?
    })
}

fn split_settings(s: &str) -> Result<Vec<(String, String)>, String> {
    shell_words(s)?
        .into_iter()
        .map(|w| match w.split_once('=') {
            Some((k, v)) => Ok((k.to_string(), v.to_string())),
            None => Err(format!("{w:?} is not KEY=VALUE")),
        })
        .collect()
}

/// Converts an environment variable's value.
pub(super) fn from_env(o: &Opt, s: &str) -> Result<Val, String> {
    Ok(match o.kind {
        Kind::Patterns => Val::List(s.split_whitespace().map(str::to_string).collect()),
        Kind::Words(sep) => Val::List(split_words(s, sep)?),
        Kind::Command => Val::List(if s.trim().is_empty() {
            Vec::new()
        } else {
            vec![s.to_string()]
        }),
        Kind::Env => Val::Pairs(parse_assignments(s)?),
        Kind::Settings => Val::Pairs(split_settings(s)?),
        Kind::Frontend => Val::Frontend(parse_frontend(s, Vec::new())?),
        Kind::Spec | Kind::Text => Val::Text(s.to_string()),
        Kind::Int => Val::Int(parse_int(s)?),
        Kind::Flag => Val::Flag(matches!(
            s.trim().to_ascii_lowercase().as_str(),
            "1" | "true" | "yes" | "on"
        )),
    })
}

/// Combines `before` and `after` by the inherit rule.
pub(super) fn inherit(before: Option<&Val>, after: &Val, rule: Inherit) -> Val {
    match (before, after, rule) {
        (Some(Val::List(a)), Val::List(b), Inherit::Append) => {
            Val::List(a.iter().chain(b).cloned().collect())
        }
        (Some(Val::List(a)), Val::List(b), Inherit::Prepend) => {
            Val::List(b.iter().chain(a).cloned().collect())
        }
        (Some(Val::Pairs(a)), Val::Pairs(b), Inherit::Append) => {
            Val::Pairs(a.iter().chain(b).cloned().collect())
        }
        // A table prepended: older keys win (they come later and are evaluated last).
        (Some(Val::Pairs(a)), Val::Pairs(b), Inherit::Prepend) => {
            Val::Pairs(b.iter().chain(a).cloned().collect())
        }
        _ => after.clone(),
    }
}

#[cfg(test)]
mod tests {
    use crate::cibw::testing::{ok, opts, read};
    use crate::cibw::Frontend;

    #[test]
    fn frontends_settings_and_test_options() {
        let r = ok(
            r#"
[project]
name = "fastmath"

[dependency-groups]
test = ["pytest>=8", { include-group = "typing" }]
Typing_Extra = ["mypy"]
typing = ["typing-extensions"]

[tool.cibuildwheel]
build-frontend = { name = "build[uv]", args = ["--no-isolation"] }
config-settings = { "--build-option" = "--use-mypyc", setup-args = ["-Da=1", "-Db=2"] }
test-extras = "test,qt"
test-groups = ["test", "typing-extra"]
test-sources = ["tests", "conftest.py"]
test-skip = "*-manylinux_aarch64"
build-verbosity = 5
"#,
            &[],
        );
        let o = opts(&r, "cp311-manylinux_x86_64");
        assert_eq!(o.frontend.frontend, Frontend::BuildUv);
        assert_eq!(o.frontend.args, ["--no-isolation"]);
        assert_eq!(
            o.config_settings,
            [
                ("--build-option".to_string(), "--use-mypyc".to_string()),
                ("setup-args".into(), "-Da=1".into()),
                ("setup-args".into(), "-Db=2".into())
            ]
        );
        assert_eq!(o.test_extras, ["test", "qt"]);
        assert_eq!(
            o.test_group_requires,
            ["pytest>=8", "typing-extensions", "mypy"]
        );
        assert_eq!(o.test_sources, ["tests", "conftest.py"]);
        assert_eq!(o.build_verbosity, 3);
        assert!(!r.tested("cp311-manylinux_aarch64"));
        assert!(r.tested("cp311-manylinux_x86_64"));
        assert_eq!(r.name.as_deref(), Some("fastmath"));

        let r = ok(
            "",
            &[
                ("CIBW_BUILD_FRONTEND", "pip; args: --no-build-isolation -v"),
                (
                    "CIBW_CONFIG_SETTINGS",
                    "editable-verbose=true 'source-dir={package}'",
                ),
                ("CIBW_TEST_EXTRAS", "test"),
                ("CIBW_BUILD_VERBOSITY", "-1"),
            ],
        );
        let o = opts(&r, "cp311-manylinux_x86_64");
        assert_eq!(o.frontend.frontend, Frontend::Pip);
        assert_eq!(o.frontend.args, ["--no-build-isolation", "-v"]);
        assert_eq!(
            o.config_settings[1],
            ("source-dir".into(), "{package}".into())
        );
        assert_eq!(o.build_verbosity, -1);
        assert_eq!(
            opts(
                &ok("[tool.cibuildwheel]\nbuild-frontend = \"default\"\n", &[]),
                "x"
            )
            .frontend
            .frontend,
            Frontend::Build
        );
        for bad in [
            "build-frontend = \"poetry\"",
            "build-frontend = { args = [] }",
            "test-groups = [\"nope\"]",
            "test-sources = [\"../secret\"]",
            "environment = 3",
        ] {
            let e = read(&format!("[tool.cibuildwheel]\n{bad}\n"), &[]).unwrap_err();
            let key = bad.split(' ').next().unwrap();
            assert!(e.to_string().contains(key), "{bad}: {e}");
        }
        // An empty repair-wheel-command means no repair; unset means pookie-ns's own.
        let r = ok("[tool.cibuildwheel]\nrepair-wheel-command = \"\"\n", &[]);
        assert_eq!(opts(&r, "x").repair_wheel_command.as_deref(), Some(""));
        assert_eq!(opts(&ok("", &[]), "x").repair_wheel_command, None);
    }
}
