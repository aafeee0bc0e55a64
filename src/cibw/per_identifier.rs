//! What holds for one build identifier: whether it is built and tested (`build`, `skip`,
//! `test-skip`, `requires-python`), its [`BuildOptions`] with the layers, overrides and variables
//! applied in their precedence, and the requirements of its `test-groups`.

use std::path::Path;

use super::identifiers::{identifier_python, python_matches};
use super::options::{find, image_names};
use super::values::{inherit, Inherit, Val};
use super::{invalid, BuildOptions, FrontendSpec, Resolved};
use crate::config::ConfigError;

impl Resolved {
    /// True when `build`, `skip` and `requires-python` let this identifier through.
    pub fn selected(&self, identifier: &str) -> bool {
        (self.build.is_empty() || self.build.matches(identifier))
            && !self.skip.matches(identifier)
            && self.selected_python(identifier)
    }

    /// True when `requires-python` (if any) accepts the identifier's Python.
    pub fn selected_python(&self, identifier: &str) -> bool {
        match (&self.requires_python, identifier_python(identifier)) {
            (Some(spec), Some(v)) => python_matches(spec, v).unwrap_or(true),
            _ => true,
        }
    }

    /// True when the tests of this identifier run (`test-skip` does not match it).
    pub fn tested(&self, identifier: &str) -> bool {
        !self.test_skip.matches(identifier)
    }

    /// The options of one build identifier.
    pub fn options_for(&self, identifier: &str) -> Result<BuildOptions, ConfigError> {
        let get = |key: &str| -> Option<Val> {
            let mut v: Option<Val> = None;
            for layer in &self.layers {
                if let Some(x) = layer.get(key) {
                    v = Some(x.clone());
                }
            }
            for o in self
                .overrides
                .iter()
                .filter(|o| o.select.matches(identifier))
            {
                if let Some(x) = o.values.get(key) {
                    let rule = o.inherit.get(key).copied().unwrap_or(Inherit::None);
                    v = Some(inherit(v.as_ref(), x, rule));
                }
            }
            for (i, layer) in self.env_layers.iter().enumerate() {
                let plat_ok = i == 0 || find(key).is_some_and(|o| o.env_plat);
                if let (true, Some(x)) = (plat_ok, layer.get(key)) {
                    let name = if i == 0 {
                        key.to_string()
                    } else {
                        format!("{key}-linux")
                    };
                    let rule = self
                        .env_inherit
                        .get(&name)
                        .copied()
                        .unwrap_or(Inherit::None);
                    v = Some(inherit(v.as_ref(), x, rule));
                }
            }
            v
        };
        let list = |key: &str| match get(key) {
            Some(Val::List(l)) => l,
            _ => Vec::new(),
        };
        let pairs = |key: &str| match get(key) {
            Some(Val::Pairs(p)) => p,
            _ => Vec::new(),
        };
        let command = |key: &str| match get(key) {
            Some(Val::List(l)) => {
                let l: Vec<String> = l.into_iter().filter(|c| !c.trim().is_empty()).collect();
                Some(l.join(" && "))
            }
            _ => None,
        };
        let nonempty = |c: Option<String>| c.filter(|c| !c.trim().is_empty());
        let test_groups = list("test-groups");
        let test_group_requires = self.group_requires(&test_groups)?;
        let mut environment_pass = list("environment-pass");
        if !environment_pass.iter().any(|n| n == "SOURCE_DATE_EPOCH") {
            environment_pass.push("SOURCE_DATE_EPOCH".into());
        }
        let test_sources = list("test-sources");
        for s in &test_sources {
            let p = Path::new(s);
            if p.is_absolute() || p.components().any(|c| c.as_os_str() == "..") {
                return Err(invalid(format!(
                    "{}: test-sources: {s:?} must be a path relative to the project, inside it",
                    self.path
                )));
            }
        }
        Ok(BuildOptions {
            before_all: nonempty(command("before-all")),
            before_build: nonempty(command("before-build")),
            build_command: nonempty(command("build-command")),
            frontend: match get("build-frontend") {
                Some(Val::Frontend(f)) => f,
                _ => FrontendSpec::default(),
            },
            config_settings: pairs("config-settings"),
            environment: pairs("environment"),
            environment_pass,
            // Set but empty: no repair (cibuildwheel's meaning of "").
            repair_wheel_command: command("repair-wheel-command"),
            audit_requires: match get("audit-requires") {
                Some(Val::List(l)) => l,
                _ => super::DEFAULT_AUDIT_REQUIRES
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
            },
            audit_command: command("audit-command")
                .unwrap_or_else(|| super::DEFAULT_AUDIT_COMMAND.to_string()),
            before_test: nonempty(command("before-test")),
            test_command: nonempty(command("test-command")),
            test_requires: list("test-requires"),
            test_extras: list("test-extras"),
            test_group_requires,
            test_groups,
            test_sources,
            test_environment: pairs("test-environment"),
            build_verbosity: match get("build-verbosity") {
                Some(Val::Int(i)) => i.clamp(-3, 3) as i32,
                _ => 0,
            },
            images: image_names()
                .into_iter()
                .filter_map(|k| match get(&k) {
                    Some(Val::Text(v)) if !v.trim().is_empty() => Some((k, v)),
                    _ => None,
                })
                .collect(),
        })
    }

    /// The requirements of PEP 735 dependency groups, `{include-group = "..."}` followed.
    pub(super) fn group_requires(&self, names: &[String]) -> Result<Vec<String>, ConfigError> {
        let mut out = Vec::new();
        for name in names {
            self.group_into(name, &mut Vec::new(), &mut out)?;
        }
        Ok(out)
    }

    fn group_into(
        &self,
        name: &str,
        seen: &mut Vec<String>,
        out: &mut Vec<String>,
    ) -> Result<(), ConfigError> {
        let norm = |s: &str| {
            let mut n = String::new();
            for c in s.to_ascii_lowercase().chars() {
                if matches!(c, '-' | '_' | '.') {
                    if !n.ends_with('-') {
                        n.push('-');
                    }
                } else {
                    n.push(c);
                }
            }
            n
        };
        let wanted = norm(name);
        if seen.contains(&wanted) {
            return Err(invalid(format!(
                "{}: [dependency-groups] {name}: includes itself ({})",
                self.path,
                seen.join(" → ")
            )));
        }
        let groups = self.groups.as_ref();
        let Some((_, items)) = groups.and_then(|g| g.iter().find(|(k, _)| norm(k) == wanted))
        else {
            let have: Vec<&str> = groups
                .map(|g| g.keys().map(String::as_str).collect())
                .unwrap_or_default();
            return Err(invalid(format!(
                "{}: test-groups: no dependency group {name:?} in [dependency-groups] (groups: {})",
                self.path,
                if have.is_empty() {
                    "none".to_string()
                } else {
                    have.join(", ")
                }
            )));
        };
        seen.push(wanted);
        for item in items.as_array().into_iter().flatten() {
            match item {
                toml::Value::String(s) => out.push(s.clone()),
                toml::Value::Table(t) => match t.get("include-group").and_then(|v| v.as_str()) {
                    Some(g) => self.group_into(g, seen, out)?,
                    None => {
                        return Err(invalid(format!(
                            "{}: [dependency-groups] {name}: {item} is neither a requirement nor \
                             {{include-group = \"...\"}}",
                            self.path
                        )))
                    }
                },
                other => {
                    return Err(invalid(format!(
                        "{}: [dependency-groups] {name}: {other} is not a requirement",
                        self.path
                    )))
                }
            }
        }
        seen.pop();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::cibw::testing::{ok, opts};

    #[test]
    fn image_options_reach_each_identifier_with_overrides_and_the_environment() {
        let r = ok(
            r#"
[tool.cibuildwheel]
manylinux-x86_64-image = "manylinux2014"

[[tool.cibuildwheel.overrides]]
select = "cp313-*"
manylinux-x86_64-image = "manylinux_2_28"
"#,
            &[(
                "CIBW_MANYLINUX_AARCH64_IMAGE",
                "quay.io/pypa/manylinux_2_28_aarch64",
            )],
        );
        let img = |id: &str, key: &str| opts(&r, id).images.get(key).cloned();
        let x86 = "manylinux-x86_64-image";
        assert_eq!(
            img("cp311-manylinux_x86_64", x86).as_deref(),
            Some("manylinux2014")
        );
        assert_eq!(
            img("cp313-manylinux_x86_64", x86).as_deref(),
            Some("manylinux_2_28")
        );
        assert_eq!(
            img("cp311-manylinux_aarch64", "manylinux-aarch64-image").as_deref(),
            Some("quay.io/pypa/manylinux_2_28_aarch64")
        );
        assert!(!opts(&r, "cp311-manylinux_x86_64")
            .images
            .contains_key("musllinux-x86_64-image"));
    }

    // The examples of cibuildwheel's documentation of `build` and `skip`.
    #[test]
    fn documented_build_and_skip_examples() {
        let sel = |build: &str, skip: &str| {
            ok(
                &format!("[tool.cibuildwheel]\nbuild = {build:?}\nskip = {skip:?}\n"),
                &[],
            )
        };
        let r = sel("cp314-*", "");
        assert!(r.selected("cp314-manylinux_x86_64"));
        assert!(r.selected("cp314-manylinux_aarch64"));
        assert!(!r.selected("cp313-manylinux_x86_64"));
        let r = sel("*", "cp39-*");
        assert!(!r.selected("cp39-manylinux_x86_64"));
        assert!(r.selected("cp310-manylinux_x86_64"));
        let r = ok(
            "[tool.cibuildwheel]\nskip = [\"cp39-*\", \"cp310-*\"]\n",
            &[],
        );
        assert!(!r.selected("cp310-manylinux_s390x"));
        assert!(r.selected("cp311-manylinux_s390x"));
        let r = sel("*", "cp39-*linux*");
        assert!(!r.selected("cp39-manylinux_aarch64"));
        assert!(!r.selected("cp39-musllinux_x86_64"));
        assert!(r.selected("cp311-manylinux_aarch64"));
        let r = ok(
            "[tool.cibuildwheel]\nskip = [\"*-win32\", \"*-*linux_i686\"]\n",
            &[],
        );
        assert!(!r.selected("cp311-manylinux_i686"));
        assert!(!r.selected("cp311-musllinux_i686"));
        assert!(r.selected("cp311-manylinux_x86_64"));
        let r = sel("*", "cp3??t-*");
        assert!(!r.selected("cp314t-manylinux_x86_64"));
        assert!(r.selected("cp314-manylinux_x86_64"));
        assert!(r.selected("cp39-manylinux_x86_64"), "cp3??t needs 5 chars");
        let r = sel("*", "pp*");
        assert!(!r.selected("pp311-manylinux_x86_64"));
        assert!(r.selected("cp311-manylinux_x86_64"));
        // cibuildwheel's own unit test: "cp3*-* *-manylinux*".
        let r = sel("cp3*-* *-manylinux*", "");
        assert!(r.selected("cp36-manylinux_x86_64"));
        assert!(r.selected("cp315-manylinux_i686"));
        assert!(r.selected("pp311-manylinux_x86_64"));
        assert!(r.selected("cp39-macosx_arm64"));
        assert!(!r.selected("pp310-win32"));
        // Braces, as bracex expands them.
        let r = sel("cp3{10,11}-*", "");
        assert!(r.selected("cp310-manylinux_x86_64"));
        assert!(r.selected("cp311-manylinux_x86_64"));
        assert!(!r.selected("cp312-manylinux_x86_64"));
    }
}
