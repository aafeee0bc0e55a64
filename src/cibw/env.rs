//! The `CIBW_*` environment variables: an option's variable name, and the variables read into two
//! layers, `CIBW_<OPTION>` and `CIBW_<OPTION>_LINUX`, leaving out those of other platforms and
//! those cibuildwheel does not read.

use std::collections::{BTreeMap, BTreeSet};

use super::invalid;
use super::options::{find, image_names, is_image, Scope, IMAGE_NOTE, OTHER_PLATFORMS};
use super::values::{from_env, Layer, Val};
use crate::config::ConfigError;

/// The variable of an option: `test-command` → `CIBW_TEST_COMMAND`.
pub(super) fn env_name(option: &str) -> String {
    format!("CIBW_{}", option.to_ascii_uppercase().replace('-', "_"))
}

/// Reads the `CIBW_*` variables of `env` into two layers: `CIBW_<OPTION>`, then
/// `CIBW_<OPTION>_LINUX`. What is accepted without effect goes to `noted`, another platform's
/// variable to `other_platform`.
pub(super) fn read(
    env: &BTreeMap<String, String>,
    noted: &mut BTreeSet<String>,
    other_platform: &mut BTreeSet<String>,
) -> Result<(Layer, Layer), ConfigError> {
    let mut env_generic = Layer::new();
    let mut env_linux = Layer::new();
    for (var, value) in env {
        let Some(rest) = var.strip_prefix("CIBW_") else {
            continue;
        };
        let (base, plat) = match rest.strip_suffix("_LINUX") {
            Some(b) => (b, true),
            None => (rest, false),
        };
        // The option whose CIBW_ name this is (image names keep their arch's underscore:
        // CIBW_MANYLINUX_X86_64_IMAGE is manylinux-x86_64-image).
        let lower = image_names()
            .into_iter()
            .find(|n| env_name(n) == format!("CIBW_{base}"))
            .unwrap_or_else(|| base.to_ascii_lowercase().replace('_', "-"));
        let other_plat = OTHER_PLATFORMS
            .iter()
            .any(|p| rest.ends_with(&format!("_{}", p.to_ascii_uppercase())));
        let (name, o) = match find(&lower) {
            Some(o) => (o.name.to_string(), Some(o)),
            None if is_image(&lower) => (lower.clone(), None),
            // Another platform's variable, or one cibuildwheel does not read: not ours.
            None => continue,
        };
        if other_plat {
            continue;
        }
        if let Some(o) = o {
            if plat && !o.env_plat && o.name != "environment-pass" {
                continue;
            }
            if matches!(o.scope, Scope::Own) {
                continue;
            }
            if o.scope == Scope::OtherPlatform {
                if !value.is_empty() {
                    other_platform.insert(var.clone());
                }
                continue;
            }
            // Empty archs fall through to the file, as in cibuildwheel.
            if o.name == "archs" && value.trim().is_empty() {
                continue;
            }
            let val = from_env(o, value).map_err(|e| invalid(format!("{var}: {e}")))?;
            if let Scope::Noted(why) = o.scope {
                noted.insert(format!("{var}: {why}"));
            }
            if plat {
                env_linux.insert(name, val);
            } else {
                env_generic.insert(name, val);
            }
        } else {
            if value.trim().is_empty() {
                continue;
            }
            noted.insert(format!("{var}: {IMAGE_NOTE}"));
            env_generic.insert(name, Val::Text(value.clone()));
        }
    }
    Ok((env_generic, env_linux))
}

#[cfg(test)]
mod tests {
    use crate::cibw::testing::{ok, opts};

    #[test]
    fn precedence_env_over_platform_table_over_generic() {
        let text = r#"
[tool.cibuildwheel]
test-command = "generic"
before-build = "generic-before"
test-requires = ["pytest"]

[tool.cibuildwheel.linux]
test-command = "linux"
"#;
        let r = ok(text, &[]);
        let o = opts(&r, "cp311-manylinux_x86_64");
        assert_eq!(o.test_command.as_deref(), Some("linux"));
        assert_eq!(o.before_build.as_deref(), Some("generic-before"));
        assert_eq!(o.test_requires, ["pytest"]);

        let r = ok(text, &[("CIBW_TEST_COMMAND", "env")]);
        assert_eq!(
            opts(&r, "cp311-manylinux_x86_64").test_command.as_deref(),
            Some("env")
        );
        let r = ok(
            text,
            &[
                ("CIBW_TEST_COMMAND_LINUX", "env-linux"),
                ("CIBW_TEST_COMMAND", "env"),
                ("CIBW_TEST_COMMAND_MACOS", "mac"),
                ("CIBW_TEST_REQUIRES", "pytest numpy>=2"),
            ],
        );
        let o = opts(&r, "cp311-manylinux_x86_64");
        assert_eq!(o.test_command.as_deref(), Some("env-linux"));
        assert_eq!(o.test_requires, ["pytest", "numpy>=2"]);
        // An empty variable overrides too (no test command), as in cibuildwheel.
        let r = ok(text, &[("CIBW_TEST_COMMAND", "")]);
        assert_eq!(opts(&r, "cp311-manylinux_x86_64").test_command, None);
        // ... except for archs, which falls through when empty.
        let r = ok(
            "[tool.cibuildwheel.linux]\narchs = [\"auto\", \"aarch64\"]\n",
            &[("CIBW_ARCHS", "")],
        );
        assert_eq!(r.archs, ["auto", "aarch64"]);
        let r = ok(
            "[tool.cibuildwheel]\narchs = \"auto64\"\n",
            &[("CIBW_ARCHS_LINUX", "x86_64 aarch64")],
        );
        assert_eq!(r.archs, ["x86_64", "aarch64"]);
        // build and skip have no _LINUX form.
        let r = ok(
            "",
            &[("CIBW_BUILD_LINUX", "cp39-*"), ("CIBW_SKIP", "*aarch64")],
        );
        assert!(r.selected("cp311-manylinux_x86_64"));
        assert!(!r.selected("cp311-manylinux_aarch64"));
    }

    #[test]
    fn environment_only_options() {
        let r = ok(
            "",
            &[
                ("CIBW_ALLOW_EMPTY", "True"),
                ("CIBW_OUTPUT_DIR", "wheelhouse"),
                ("CIBW_DEBUG_KEEP_CONTAINER", "1"),
                ("CIBW_PLATFORM", "linux"),
                ("CIBW_ENABLE", "cpython-prerelease"),
                ("CIBW_SOMETHING_ELSE", "ignored"),
            ],
        );
        assert!(r.allow_empty && r.keep_failed);
        assert_eq!(r.output_dir.as_deref(), Some("wheelhouse"));
        // The environment adds to the file's enable.
        let r = ok(
            "[tool.cibuildwheel]\nenable = [\"pypy\"]\n",
            &[("CIBW_ENABLE", "cpython-prerelease")],
        );
        assert_eq!(r.enable, ["pypy", "cpython-prerelease"]);
    }
}
