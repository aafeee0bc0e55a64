//! The default build command of each build frontend (cibuildwheel's `build-frontend`: pip,
//! build, build[uv], uv), with its args, config settings and verbosity.

use crate::project::Frontend;

use super::worker::OUT_INSIDE;

/// The frontend's verbosity when `build-verbosity` is 0 (unset): `pip wheel -v` shows the
/// backend's output, setuptools' compile commands among it.
pub(super) const DEFAULT_VERBOSITY: i32 = 1;

/// The build command of cibuildwheel's `build-frontend` with its `args`, `config-settings` and
/// `build-verbosity`, run by the target's own interpreter (`python3.14`), never the suite's
/// default `python3`; with a toolchain, without build isolation (the requirements are installed
/// natively first).
pub(super) fn frontend_command(
    o: &crate::cibw::BuildOptions,
    toolchain: bool,
    python: &str,
) -> String {
    // A version (`3.14`), or an image's interpreter path.
    let py = if python.starts_with('/') {
        python.to_string()
    } else {
        format!("python{python}")
    };
    let f = &o.frontend;
    // cibuildwheel's default, 0, hides the backend's output in pip; a build log shows each
    // compile command, so that the flags a wheel was built with can be read after the fact.
    let v = match o.build_verbosity {
        0 => DEFAULT_VERBOSITY,
        v => v,
    };
    let verbosity = if v > 0 {
        format!(" -{}", "v".repeat(v as usize))
    } else if v < 0 {
        format!(" -{}", "q".repeat(v.unsigned_abs() as usize))
    } else {
        String::new()
    };
    let mut extra = String::new();
    for (k, val) in &o.config_settings {
        let flag = match f.frontend {
            Frontend::Pip => "--config-settings",
            Frontend::Build | Frontend::BuildUv | Frontend::Uv => "--config-setting",
        };
        extra.push_str(&format!(
            " {}",
            crate::shell::quote(&format!("{flag}={k}={val}"))
        ));
    }
    for a in &f.args {
        extra.push(' ');
        extra.push_str(&crate::shell::quote(a));
    }
    match (f.frontend, toolchain) {
        (Frontend::Pip, false) => format!(
            "{py} -m pip wheel{verbosity} --no-deps --wheel-dir {OUT_INSIDE}{extra} {{project}}"
        ),
        (Frontend::Pip, true) => format!(
            "{py} -m pip wheel{verbosity} --no-deps --no-build-isolation --wheel-dir {OUT_INSIDE}{extra} {{project}}"
        ),
        (Frontend::Uv, iso) => {
            let no_iso = if iso { " --no-build-isolation" } else { "" };
            format!(
                "{py} -m pip install --quiet uv && {py} -m uv build{verbosity} --wheel{no_iso} --out-dir {OUT_INSIDE}{extra} {{project}}"
            )
        }
        (Frontend::Build | Frontend::BuildUv, iso) => {
            let uv = f.frontend == Frontend::BuildUv;
            let install = if uv { "build uv" } else { "build" };
            let no_iso = if iso { " --no-isolation" } else { "" };
            let own_no_iso = f.args.iter().any(|a| a == "-n" || a == "--no-isolation");
            let installer = if uv && !iso && !own_no_iso {
                " --installer=uv"
            } else {
                ""
            };
            format!(
                "{py} -m pip install --quiet {install} && {py} -m build{verbosity} --wheel{no_iso}{installer} --outdir {OUT_INSIDE}{extra} {{project}}"
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The command of a frontend with no options of its own.
    fn default_build_command(frontend: Frontend, toolchain: bool, python: &str) -> String {
        frontend_command(
            &crate::cibw::BuildOptions {
                frontend: crate::cibw::FrontendSpec {
                    frontend,
                    args: Vec::new(),
                },
                ..Default::default()
            },
            toolchain,
            python,
        )
    }

    #[test]
    fn default_build_commands_write_to_the_output_dir() {
        for toolchain in [false, true] {
            let pip = default_build_command(Frontend::Pip, toolchain, "3.14");
            assert!(
                pip.starts_with("python3.14 -m pip wheel -v --no-deps"),
                "{pip}"
            );
            assert!(pip.ends_with("{project}"));
            assert_eq!(pip.contains("--no-build-isolation"), toolchain, "{pip}");
            let build = default_build_command(Frontend::Build, toolchain, "3.9");
            assert!(
                build.contains("&& python3.9 -m build -v --wheel"),
                "{build}"
            );
            assert_eq!(build.contains("--no-isolation"), toolchain, "{build}");
        }
    }

    #[test]
    fn frontends_carry_args_settings_and_verbosity() {
        let o = |frontend, args: &[&str], settings: &[(&str, &str)], v| crate::cibw::BuildOptions {
            frontend: crate::cibw::FrontendSpec {
                frontend,
                args: args.iter().map(|a| a.to_string()).collect(),
            },
            config_settings: settings
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            build_verbosity: v,
            ..Default::default()
        };
        let c = frontend_command(
            &o(Frontend::Pip, &["--no-build-isolation"], &[("a", "b c")], 2),
            false,
            "3.11",
        );
        assert!(
            c.starts_with("python3.11 -m pip wheel -vv --no-deps"),
            "{c}"
        );
        assert!(
            c.contains(" '--config-settings=a=b c' --no-build-isolation {project}"),
            "{c}"
        );
        let c = frontend_command(&o(Frontend::BuildUv, &[], &[("x", "1")], -1), false, "3.11");
        assert!(
            c.starts_with("python3.11 -m pip install --quiet build uv && "),
            "{c}"
        );
        assert!(
            c.contains("python3.11 -m build -q --wheel --installer=uv"),
            "{c}"
        );
        assert!(c.contains("--config-setting=x=1"), "{c}");
        let c = frontend_command(
            &o(Frontend::BuildUv, &["--no-isolation"], &[], 0),
            false,
            "3.11",
        );
        assert!(!c.contains("--installer=uv"), "{c}");
        let c = frontend_command(&o(Frontend::Uv, &[], &[], 0), true, "3.11");
        assert!(
            c.contains("python3.11 -m uv build -v --wheel --no-build-isolation --out-dir"),
            "{c}"
        );
        let c = frontend_command(&o(Frontend::Build, &[], &[], 0), true, "3.11");
        assert!(c.contains("--no-isolation") && !c.contains("uv"), "{c}");
    }
}
