//! Projects configured for cibuildwheel, built unchanged by `pookie-ns build`: which identifiers
//! a configuration selects (`--print-build-identifiers`, from the file, `CIBW_*` variables and
//! the command line, no base OS needed), configuration errors, and one real build (Debian
//! bookworm amd64, natively) whose logs show every option's effect. Fixtures: tests/fixtures/cibw-*.

mod common;

use std::path::PathBuf;
use std::process::Output;

use common::{require, stderr, stdout, Runner, Who};
use serde_json::Value;

fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// `pookie-ns ARGS` with the environment variables `vars` (and no other CIBW_* ones).
fn run_env(r: &Runner, args: &[&str], vars: &[(&str, &str)]) -> Output {
    let mut c = r.command(args);
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("CIBW_")) {
        c.env_remove(k);
    }
    for (k, v) in vars {
        c.env(k, v);
    }
    let out = c.output().unwrap();
    eprintln!(
        "pookie-ns {} {vars:?}\n  status: {:?}\n  stdout: {}\n  stderr: {}",
        args.join(" "),
        out.status.code(),
        stdout(&out).trim_end(),
        stderr(&out).trim_end()
    );
    out
}

fn identifiers(r: &Runner, extra: &[&str], vars: &[(&str, &str)]) -> Vec<String> {
    let f = fixture("cibw-selectors");
    let mut args = vec![
        "build",
        f.as_str(),
        "--branch",
        "stable",
        "--print-build-identifiers",
    ];
    args.extend_from_slice(extra);
    let out = run_env(r, &args, vars);
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out).lines().map(str::to_string).collect()
}

/// `--json build FIXTURE --branch stable` with one CPython and the distribution's gcc
/// (AUDITWHEEL_PLAT=auto), then `more`.
fn fixture_build<'a>(fixture: &'a str, more: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "--json",
        "build",
        fixture,
        "--branch",
        "stable",
        "--python",
        "3.11",
        "--compiler",
        "gcc",
    ];
    args.extend_from_slice(more);
    args
}

/// The build tests run as root, and these expect an x86_64 host (`why`).
fn root_on_x86_64(why: &str) -> bool {
    require(common::is_root(), "the build tests run as root")
        && require(std::env::consts::ARCH == "x86_64", why)
}

/// The identifiers follow cibuildwheel's selectors and precedence, in cibuildwheel's order
/// (manylinux before musllinux, each arch in turn; tests/cibw_identifiers.rs compares with
/// cibuildwheel itself); `--python` (pookie-ns's own) narrows the CPythons. Nothing is built or
/// loaded.
#[test]
fn print_build_identifiers_honours_every_selector() {
    if !root_on_x86_64("the expected identifiers are an x86_64 host's") {
        return;
    }
    let r = Runner::new(Who::Root);
    let py = ["--python", "3.9", "3.11", "3.13"];
    // The file: archs from the linux table (auto = x86_64), manylinux armv7l skipped (musllinux
    // armv7l stays), requires-python >=3.10 leaves 3.9 out; the macos table is ignored.
    let from_file = [
        "cp311-manylinux_x86_64",
        "cp313-manylinux_x86_64",
        "cp311-manylinux_aarch64",
        "cp313-manylinux_aarch64",
        "cp311-musllinux_x86_64",
        "cp313-musllinux_x86_64",
        "cp311-musllinux_aarch64",
        "cp313-musllinux_aarch64",
        "cp311-musllinux_armv7l",
        "cp313-musllinux_armv7l",
    ];
    assert_eq!(identifiers(&r, &py, &[]), from_file);
    // CIBW_SKIP replaces the file's skip (armv7l comes back); CIBW_ARCHS_LINUX beats CIBW_ARCHS.
    assert_eq!(
        identifiers(
            &r,
            &py,
            &[
                ("CIBW_SKIP", "cp313-*"),
                ("CIBW_ARCHS", "aarch64"),
                ("CIBW_ARCHS_LINUX", "armv7l auto64")
            ]
        ),
        [
            "cp311-manylinux_x86_64",
            "cp311-manylinux_armv7l",
            "cp311-musllinux_x86_64",
            "cp311-musllinux_armv7l"
        ]
    );
    // CIBW_BUILD, CIBW_PROJECT_REQUIRES_PYTHON.
    assert_eq!(
        identifiers(
            &r,
            &py,
            &[
                ("CIBW_BUILD", "cp39-* cp313-*"),
                ("CIBW_PROJECT_REQUIRES_PYTHON", "<3.10")
            ]
        ),
        [
            "cp39-manylinux_x86_64",
            "cp39-manylinux_aarch64",
            "cp39-musllinux_x86_64",
            "cp39-musllinux_aarch64",
            "cp39-musllinux_armv7l"
        ]
    );
    // The command line beats the environment: --archs, then --only.
    assert_eq!(
        identifiers(
            &r,
            &["--archs", "aarch64,x86_64", "--python", "3.11"],
            &[("CIBW_ARCHS", "armv7l")]
        ),
        [
            "cp311-manylinux_x86_64",
            "cp311-manylinux_aarch64",
            "cp311-musllinux_x86_64",
            "cp311-musllinux_aarch64"
        ]
    );
    assert_eq!(
        identifiers(
            &r,
            &["--only", "cp311-manylinux_armv7l"],
            &[("CIBW_BUILD", "cp313-*")]
        ),
        ["cp311-manylinux_armv7l"]
    );
    // musllinux identifiers are listed as cibuildwheel lists them (by default); an image
    // option changes no identifier. No image is pulled to list them.
    assert_eq!(
        identifiers(&r, &py, &[("CIBW_BUILD", "*-musllinux_x86_64")]),
        ["cp311-musllinux_x86_64", "cp313-musllinux_x86_64"]
    );
    assert_eq!(
        identifiers(&r, &py, &[("CIBW_MUSLLINUX_X86_64_IMAGE", "musllinux_1_2")]),
        from_file
    );
    assert_eq!(
        identifiers(&r, &["--only", "cp313-musllinux_aarch64"], &[]),
        ["cp313-musllinux_aarch64"]
    );
    // pookie-ns's --target: a tag that names a policy lists that family only.
    assert_eq!(
        identifiers(
            &r,
            &[
                "--target",
                "manylinux_2_17_aarch64",
                "musllinux_1_2_x86_64",
                "--python",
                "3.11"
            ],
            &[]
        ),
        ["cp311-manylinux_aarch64", "cp311-musllinux_x86_64"]
    );

    // --config-file: another file's [tool.cibuildwheel]; [project] requires-python still applies.
    let other = r.store.parent().unwrap().join("cibw.toml");
    std::fs::write(
        &other,
        "[tool.cibuildwheel]\nbuild = \"cp39-* cp313-*\"\narchs = \"aarch64\"\n",
    )
    .unwrap();
    assert_eq!(
        identifiers(
            &r,
            &[
                "--config-file",
                other.to_str().unwrap(),
                "--python",
                "3.9",
                "3.13"
            ],
            &[]
        ),
        ["cp313-manylinux_aarch64", "cp313-musllinux_aarch64"]
    );

    // Nothing selected: an error (exit 2) that names the identifiers, unless allowed.
    let f = fixture("cibw-selectors");
    let base = ["build", f.as_str(), "--branch", "stable"];
    let out = run_env(&r, &base, &[("CIBW_BUILD", "cp27-*")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("no target left to build"),
        "{}",
        stderr(&out)
    );
    let out = run_env(
        &r,
        &base,
        &[("CIBW_BUILD", "cp27-*"), ("CIBW_ALLOW_EMPTY", "1")],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let mut args = base.to_vec();
    args.push("--allow-empty");
    let out = run_env(&r, &args, &[("CIBW_BUILD", "cp27-*")]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

/// An unknown option, a bad override and a bad variable are refused before anything runs, with
/// the file, the line, the key and the fix.
#[test]
fn configuration_errors_name_file_line_key_and_fix() {
    let r = Runner::new(Who::Root);
    let dir = r.store.parent().unwrap().join("bad");
    std::fs::create_dir_all(&dir).unwrap();
    let pyproject = dir.join("pyproject.toml");
    let d = dir.to_str().unwrap();
    for (text, vars, needles) in [
        (
            "[project]\nname = \"bad\"\n\n[tool.cibuildwheel]\ntest-comand = \"pytest\"\n",
            vec![],
            vec![
                ":5: [tool.cibuildwheel] test-comand",
                "did you mean \"test-command\"",
            ],
        ),
        (
            "[[tool.cibuildwheel.overrides]]\nselect = \"cp311-*\"\nskip = \"*\"\n",
            vec![],
            vec![":3:", "skip: cannot be overridden"],
        ),
        (
            "",
            vec![("CIBW_ENVIRONMENT", "CFLAGS")],
            vec!["CIBW_ENVIRONMENT", "NAME=VALUE"],
        ),
        (
            "[tool.cibuildwheel]\ntest-groups = [\"test\"]\n",
            vec![],
            vec!["no dependency group \"test\""],
        ),
    ] {
        std::fs::write(&pyproject, text).unwrap();
        let out = run_env(&r, &["build", d, "--branch", "stable"], &vars);
        assert_eq!(out.status.code(), Some(2), "{text}");
        let err = stderr(&out);
        assert!(
            err.contains(pyproject.to_str().unwrap()) || text.is_empty(),
            "{err}"
        );
        for n in needles {
            assert!(err.contains(n), "{n:?} not in {err}");
        }
    }
    std::fs::write(&pyproject, "[project]\nname = \"ok\"\n").unwrap();
    let out = run_env(
        &r,
        &["build", d, "--branch", "stable", "--platform", "macos"],
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("Linux wheels only"));
}

/// The whole option set of a cibuildwheel project, built natively on Debian bookworm: each
/// option's effect is asserted in the logs, the wheel lands in --output-dir, and `report merge`
/// of the build's report with itself is that report.
#[test]
fn a_cibuildwheel_project_builds_unchanged() {
    if !root_on_x86_64("the fixture build runs on an x86_64 host") {
        return;
    }
    let Some(r) = common::runner_with_debian(Who::Root, &["debian-bookworm-amd64"]) else {
        return;
    };
    let out_dir: PathBuf = r.store.parent().unwrap().join("wheelhouse");
    let f = fixture("cibw-options");
    let out = run_env(
        &r,
        &fixture_build(&f, &["--output-dir", out_dir.to_str().unwrap()]),
        &[
            ("CIBW_ENVIRONMENT_PASS_LINUX", "FIXTURE_TOKEN"),
            ("FIXTURE_TOKEN", "s3cret"),
            ("CIBW_BUILD_VERBOSITY", "1"),
            ("CIBW_ARCHS_LINUX", "auto"),
        ],
    );
    let err = stderr(&out);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    assert_eq!(out.status.code(), Some(0), "{err}\n{report}");
    // One note each for what has no effect here.
    assert!(err.contains("note: container-engine"), "{err}");
    assert!(err.contains("[tool.cibuildwheel.macos]"), "{err}");
    let targets = report["targets"].as_array().unwrap();
    assert_eq!(targets.len(), 1, "{report}");
    let t = &targets[0];
    assert_eq!(t["identifier"], "cp311-manylinux_x86_64");
    assert_eq!(t["result"], "passed", "{t}");
    // The project's repair command (auditwheel) gave it a manylinux tag.
    let wheel = t["wheel"].as_str().unwrap();
    assert!(
        wheel.starts_with("cibwfix-0.1.0-cp311-cp311-manylinux") && wheel.ends_with("_x86_64.whl"),
        "{wheel}"
    );
    assert!(out_dir.join(wheel).is_file(), "--output-dir");

    let log = |k: &str| std::fs::read_to_string(t[k].as_str().unwrap()).unwrap();
    // [tool.pookie-ns] before-all replaced the linux table's yum command.
    let before_all = log("before_all_log");
    assert!(
        before_all.contains("before-all from tool.pookie-ns"),
        "{before_all}"
    );
    assert!(!before_all.contains("yum"), "{before_all}");
    let build = log("build_log");
    for needle in [
        // CIBUILDWHEEL, AUDITWHEEL_PLAT, the identifier and environment's $(...) expansion.
        "before-build CIBUILDWHEEL=1 AUDITWHEEL_PLAT=auto id=cp311-manylinux_x86_64 SHOUT=HELLO WORLD",
        // CIBW_BUILD_VERBOSITY=1 → pip wheel -v.
        "python3.11 -m pip wheel -v --no-deps",
        // The override prepended to repair-wheel-command; {wheel} and {dest_dir}.
        "before the repair",
        "repairing /buildroot/out/cibwfix-0.1.0-cp311-cp311-linux_x86_64.whl into /buildroot/wheelhouse",
    ] {
        assert!(build.contains(needle), "{needle:?} not in the build log:\n{build}");
    }
    let test = log("test_log");
    let with_extra = format!("{wheel}[extra]");
    for needle in [
        "before-test ran for /buildroot/src",
        with_extra.as_str(),
        " six tomli",
        "+ test-sources: tests",
        "check.py: all good on 3.11",
    ] {
        assert!(
            test.contains(needle),
            "{needle:?} not in the test log:\n{test}"
        );
    }
    let before_test = test.find("before-test ran").unwrap();
    let install = test.find("pip install").unwrap();
    assert!(before_test < install, "before-test runs before the install");

    // report merge: the report merged with itself is itself (targets once, counts the same).
    let report_path = r
        .store
        .join("output/stable/cibwfix/report.json")
        .to_string_lossy()
        .into_owned();
    let merged = run_env(&r, &["report", "merge", &report_path, &report_path], &[]);
    assert!(merged.status.success(), "{}", stderr(&merged));
    let merged: Value = serde_json::from_slice(&merged.stdout).unwrap();
    let on_disk: Value =
        serde_json::from_str(&std::fs::read_to_string(&report_path).unwrap()).unwrap();
    assert_eq!(merged, on_disk);

    // --config-file: build[uv], config-settings, an empty repair-wheel-command, test-skip.
    let out_dir2 = r.store.parent().unwrap().join("wheelhouse2");
    let config = format!("{f}/frontend.toml");
    let out = run_env(
        &r,
        &fixture_build(
            &f,
            &[
                "--config-file",
                &config,
                "--out",
                out_dir2.to_str().unwrap(),
            ],
        ),
        &[],
    );
    let err = stderr(&out);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    assert_eq!(out.status.code(), Some(0), "{err}\n{report}");
    assert!(
        err.contains("cp311-manylinux_x86_64: tests skipped (test-skip)"),
        "{err}"
    );
    let t = &report["targets"][0];
    assert_eq!(t["result"], "built", "{t}");
    assert!(t["test_log"].is_null(), "{t}");
    let build = std::fs::read_to_string(t["build_log"].as_str().unwrap()).unwrap();
    for needle in [
        "python3.11 -m build -v --wheel --installer=uv --outdir /buildroot/out --config-setting=pookie-ns-fixture=1",
        "repair-wheel-command is empty: the wheel as built",
    ] {
        assert!(build.contains(needle), "{needle:?} not in the build log:\n{build}");
    }
    // The explicit opt-out: delivered as built, and the report says so.
    assert!(out_dir2
        .join("cibwfix-0.1.0-cp311-cp311-linux_x86_64.whl")
        .is_file());
    assert!(t["repair"].as_str().unwrap().contains("unrepaired"), "{t}");
}
