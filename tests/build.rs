//! `pookie-ns build` end to end on real Debian bookworm base OSes (their tarballs built once per
//! machine by scripts/build-test-rootfs through the recipe): the example C extension built and
//! tested for x86_64 natively and for aarch64 under QEMU, the before-all layer reused by a second
//! build, a failing test that fails only its own target, a failing build, and bad input that is
//! refused before anything runs; cross mode (gcc-cross, zig, clang) for aarch64 and armv7l, with
//! C, C++ (CMake, and setuptools alone: cppsetup-ext, an extra bundle of existing builds) and an
//! external library, tested on each target's own base OS, each build log showing a compile
//! command with the release flags; a base OS whose mirror answers 404 failing only its targets.

mod common;

use std::path::{Path, PathBuf};

use common::{everyone, require, stderr, wheels, Runner, Who};
use serde_json::Value;

/// A store with the cached bookworm tarballs of `arches` where `build` loads them on first use.
fn runner_with_tarballs(who: Who, arches: &[&str]) -> Option<Runner> {
    let names: Vec<String> = arches
        .iter()
        .map(|a| format!("debian-bookworm-{a}"))
        .collect();
    common::runner_with_debian(who, &names.iter().map(String::as_str).collect::<Vec<_>>())
}

/// A copy of the example project the runner's user owns (the checkout may not be readable by
/// the test users), optionally changed by `edit`.
fn project_copy(r: &Runner, name: &str) -> PathBuf {
    common::example_copy(r, "c-ext", name)
}

fn dist(r: &Runner, name: &str) -> PathBuf {
    r.store.parent().unwrap().join(name)
}

/// `build PROJECT --branch stable --target TARGETS... EXTRA... --out OUT`, with bookworm's
/// 3.11 unless EXTRA names `--python`.
fn build_for(
    r: &Runner,
    project: &Path,
    targets: &[&str],
    extra: &[&str],
    out: &Path,
) -> (i32, Value, String) {
    let mut extra = extra.to_vec();
    if !extra.contains(&"--python") {
        extra.extend_from_slice(&["--python", "3.11"]);
    }
    common::build_in(r, project, targets, &extra, out)
}

/// The target of `project` for `arch` in a group build's report.
fn target_of<'a>(report: &'a Value, project: &str, arch: &str) -> &'a Value {
    report["targets"]
        .as_array()
        .unwrap_or_else(|| panic!("no targets in {report}"))
        .iter()
        .find(|t| t["arch"] == arch && t["project"] == project)
        .unwrap_or_else(|| panic!("no {project} target for {arch} in {report}"))
}

fn target<'a>(report: &'a Value, arch: &str) -> &'a Value {
    report["targets"]
        .as_array()
        .unwrap_or_else(|| panic!("no targets in {report}"))
        .iter()
        .find(|t| t["arch"] == arch)
        .unwrap_or_else(|| panic!("no {arch} target in {report}"))
}

/// `e_machine` of the (first) extension module inside a wheel: 62 x86_64, 183 aarch64, 40 arm.
fn extension_machine(wheel: &Path) -> u16 {
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import sys, zipfile; z = zipfile.ZipFile(sys.argv[1]); \
             so = [n for n in z.namelist() if n.endswith('.so')][0]; \
             h = z.read(so)[:20]; assert h[:4] == b'\\x7fELF', so; \
             print(int.from_bytes(h[18:20], 'little'))",
        ])
        .arg(wheel)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}: {}",
        wheel.display(),
        stderr(&out)
    );
    text.trim()
        .parse()
        .unwrap_or_else(|_| panic!("not a number: {text}"))
}

/// The names inside a wheel (a zip file).
fn wheel_names(wheel: &Path) -> Vec<String> {
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import sys, zipfile; print('\\n'.join(zipfile.ZipFile(sys.argv[1]).namelist()))",
        ])
        .arg(wheel)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

fn read(p: &Value) -> String {
    std::fs::read_to_string(p.as_str().unwrap_or_else(|| panic!("not a path: {p}")))
        .unwrap_or_else(|e| panic!("{p}: {e}"))
}

/// The check: two wheels with the right tags, each installed and tested on its own arch;
/// the second build reuses the before-all layer; a test failing on one arch fails that target
/// only, and --keep-failed keeps its workspace.
#[test]
fn example_builds_and_tests_for_x86_64_and_aarch64() {
    if !require(common::is_root(), "the build tests run as root") {
        return;
    }
    let Some(r) = runner_with_tarballs(Who::Root, &["amd64", "arm64"]) else {
        return;
    };
    let project = project_copy(&r, "c-ext");
    let out1 = dist(&r, "dist1");
    let (code, report, err) = build_for(
        &r,
        &project,
        &["x86_64", "aarch64"],
        &["--mode", "emulate"],
        &out1,
    );
    assert_eq!(code, 0, "{err}\n{report}");
    assert!(
        err.contains("loading base OS debian-bookworm for arm64"),
        "says why it loads: {err}"
    );
    // Both repaired by auditwheel: the x86_64 one built by zig is manylinux_2_17 (auditwheel
    // also names the older policies its symbols meet), the emulated aarch64 one (bookworm's
    // gcc) carries the oldest policy its symbols allow.
    let w1 = wheels(&out1);
    assert_eq!(w1.len(), 2, "{w1:?}");
    let of = |arch: &str| {
        w1.iter()
            .find(|w| w.ends_with(&format!("_{arch}.whl")))
            .unwrap_or_else(|| panic!("no {arch} wheel in {w1:?}"))
            .clone()
    };
    let (w_aarch64, w_x86_64) = (of("aarch64"), of("x86_64"));
    assert!(
        w_aarch64.starts_with("fastmath-0.1.0-cp311-cp311-manylinux"),
        "{w1:?}"
    );
    assert!(w_x86_64.contains(".manylinux_2_17_x86_64."), "{w1:?}");
    for (arch, mode) in [("x86_64", "native"), ("aarch64", "emulate")] {
        let t = target(&report, arch);
        assert_eq!(t["result"], "passed", "{t}");
        assert_eq!(t["mode"], mode, "{t}");
        assert_eq!(t["before_all"], "ran", "{t}");
        assert_eq!(t["test_exit_code"], 0, "{t}");
        assert!(t["peak_rss_kib"].as_u64().unwrap() > 1000, "{t}");
        assert!(t["workspace_bytes"].as_u64().unwrap() > 0, "{t}");
        let log = read(&t["test_log"]);
        assert!(
            log.contains(&format!("platform.machine() == '{arch}'")),
            "tested on its own arch: {log}"
        );
        assert!(log.contains("6 passed"), "{log}");
        assert!(Path::new(t["wheel_path"].as_str().unwrap()).is_file());
    }
    // The compiled extension inside the aarch64 wheel is an aarch64 ELF.
    let wheel = out1.join(&w_aarch64);
    assert_eq!(extension_machine(&wheel), 183, "e_machine aarch64");

    // Second build: the instance layers and the before-all layer are reused.
    let out2 = dist(&r, "dist2");
    let (code, report, err) = build_for(
        &r,
        &project,
        &["x86_64", "aarch64"],
        &["--mode", "emulate"],
        &out2,
    );
    assert_eq!(code, 0, "{err}");
    for arch in ["x86_64", "aarch64"] {
        let t = target(&report, arch);
        assert_eq!(t["before_all"], "cached", "before-all ran again: {t}");
        assert!(t["before_all_log"].is_null(), "{t}");
    }
    assert_eq!(wheels(&out2).len(), 2);
    assert!(!err.contains("loading base OS"), "{err}");

    // A test that fails on aarch64 only: exit 1, the failed target named with its log, the
    // x86_64 wheel still delivered, the aarch64 one not.
    let failing = project_copy(&r, "c-ext-failing");
    std::fs::write(
        failing.join("tests/test_arch.py"),
        "import platform\n\ndef test_not_on_aarch64():\n    assert platform.machine() != 'aarch64'\n",
    )
    .unwrap();
    let out3 = dist(&r, "dist3");
    let (code, report, err) = build_for(
        &r,
        &failing,
        &["x86_64", "aarch64"],
        &["--mode", "emulate", "--keep-failed"],
        &out3,
    );
    assert_eq!(code, 1, "{err}");
    let bad = target(&report, "aarch64");
    assert_eq!(bad["result"], "test-failed", "{bad}");
    assert_eq!(target(&report, "x86_64")["result"], "passed");
    let log = bad["test_log"].as_str().unwrap();
    assert!(
        err.contains("cp311-manylinux_aarch64: TEST FAILED") && err.contains(log),
        "names the target and its log: {err}"
    );
    assert!(read(&bad["test_log"]).contains("test_not_on_aarch64"));
    assert_eq!(wheels(&out3), std::slice::from_ref(&w_x86_64));
    // --keep-failed: the workspace stays (the stale sweep leaves it), `list` shows it, and
    // `cleanup workspaces` removes it.
    let kept = PathBuf::from(bad["kept_workspace"].as_str().expect("kept workspace"));
    assert!(kept.join("upper/buildroot/src/tests/test_arch.py").exists());
    let listing = r.ok(&["list"]);
    assert!(
        listing.contains(kept.file_name().unwrap().to_str().unwrap()),
        "{listing}"
    );
    r.ok(&["cleanup", "workspaces"]);
    assert!(!kept.exists());
}

/// The same pipeline as each identity (root, a subuid user, a single-uid user) for the host arch:
/// a good build, a build that fails to compile (exit 1, the log names the error, no wheel), and
/// configuration mistakes refused with exit 2 before anything runs.
#[test]
fn native_builds_as_every_identity() {
    for who in everyone() {
        let Some(r) = runner_with_tarballs(who, &["amd64"]) else {
            return;
        };
        let project = project_copy(&r, "c-ext");
        // A manylinux policy: the wheel is repaired by auditwheel and carries the tag.
        let out_m = dist(&r, "dist-manylinux");
        let (code, report, err) = build_for(&r, &project, &["manylinux_2_17_x86_64"], &[], &out_m);
        assert_eq!(code, 0, "{who:?}: {err}");
        let t = target(&report, "x86_64");
        assert_eq!(t["platform_tag"], "manylinux_2_17_x86_64");
        let w = wheels(&out_m);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("manylinux_2_17_x86_64"), "{w:?}");
        assert!(read(&t["build_log"]).contains("auditwheel repair"));

        let out = dist(&r, "dist");
        let (code, report, err) = build_for(&r, &project, &["x86_64"], &[], &out);
        assert_eq!(code, 0, "{who:?}: {err}");
        let t = target(&report, "x86_64");
        assert_eq!(t["result"], "passed", "{who:?}: {t}");
        // zig against glibc 2.17 by default, the host's arch too: a wheel PyPI accepts.
        assert_eq!(t["toolchain"], "zig", "{who:?}: {t}");
        assert_eq!(t["repair"], "auditwheel", "{who:?}: {t}");
        let w = wheels(&out);
        assert_eq!(w.len(), 1, "{who:?}: {w:?}");
        assert!(
            w[0].starts_with("fastmath-0.1.0-cp311-cp311-")
                && w[0].contains("manylinux_2_17_x86_64"),
            "{who:?}: {w:?}"
        );
        // The project directory was only read.
        assert!(!project.join("build").exists() && !project.join("dist").exists());

        // A compile error: exit 1, the build log shows the compiler's message.
        let broken = project_copy(&r, "c-ext-broken");
        let c = broken.join("src/fastmath/_fastmath.c");
        let text = std::fs::read_to_string(&c).unwrap();
        std::fs::write(&c, format!("{text}\nthis is not C;\n")).unwrap();
        let out_b = dist(&r, "dist-broken");
        let (code, report, err) = build_for(&r, &broken, &["x86_64"], &[], &out_b);
        assert_eq!(code, 1, "{who:?}: {err}");
        let t = target(&report, "x86_64");
        assert_eq!(t["result"], "build-failed", "{t}");
        assert!(read(&t["build_log"]).contains("error:"), "{t}");
        assert!(wheels(&out_b).is_empty());
        assert!(t["kept_workspace"].is_null());

        // Bad input: exit 2 and a message naming the problem; nothing is built.
        let bad = project_copy(&r, "c-ext-badkey");
        let pp = bad.join("pyproject.toml");
        let text = std::fs::read_to_string(&pp).unwrap();
        std::fs::write(&pp, format!("{text}test-comand = \"pytest\"\n")).unwrap();
        for (args, needle) in [
            (
                vec![bad.to_str().unwrap(), "--branch", "stable"],
                "test-comand",
            ),
            (
                vec![project.to_str().unwrap(), "--branch", "nosuch"],
                "no branch \"nosuch\"",
            ),
            (
                vec![
                    project.to_str().unwrap(),
                    "--branch",
                    "stable",
                    "--target",
                    "sparc",
                ],
                "manylinux_2_17_aarch64",
            ),
            (
                vec![
                    project.to_str().unwrap(),
                    "--branch",
                    "stable",
                    "--python",
                    "3.12",
                    // Debian's base OSes only: no Debian suite has 3.12 (without this, the
                    // identifier's source is cibuildwheel's default image: tests/oci.rs).
                    "--python-source",
                    "base-os",
                ],
                "no base OS provides CPython 3.12 for x86_64",
            ),
            (vec!["/nonexistent", "--branch", "stable"], "/nonexistent"),
        ] {
            let out = r.run(&[&["build"], args.as_slice()].concat());
            assert_eq!(
                out.status.code(),
                Some(2),
                "{who:?} {args:?}: {}",
                stderr(&out)
            );
            assert!(stderr(&out).contains(needle), "{args:?}: {}", stderr(&out));
        }
    }
}

/// The C++17 example (CMake through scikit-build-core, Debian's cmake and ninja from before-all)
/// and C++ built by setuptools alone (cppsetup-ext: bookworm's setuptools compiles the .cpp
/// with $CC), in one build with the default toolchain (zig) on the host arch: both built, both
/// value-checking test suites passed, both manylinux_2_17 (libc++ static).
#[test]
fn cpp_examples_build_with_scikit_build_core_and_setuptools() {
    if !require(common::is_root(), "the build tests run as root") {
        return;
    }
    let Some(r) = runner_with_tarballs(Who::Root, &["amd64"]) else {
        return;
    };
    let cpp = common::example_copy(&r, "cpp-ext", "cpp-ext");
    let cppsetup = common::example_copy(&r, "cppsetup-ext", "cppsetup-ext");
    let (report, w) = build_passing_all(&r, &[&cpp, &cppsetup], &["x86_64"], &[], "dist");
    let t = target_of(&report, "cppstats", "x86_64");
    assert_eq!(t["toolchain"], "zig", "{t}");
    // scikit-build-core's CMake build names the module with the full SOABI (WITH_SOABI).
    assert!(read(&t["build_log"]).contains("Created wheel for cppstats"));
    assert!(read(&t["test_log"]).contains("6 passed"), "{t}");
    let t = target_of(&report, "cppwords", "x86_64");
    assert_eq!(t["toolchain"], "zig", "{t}");
    assert!(read(&t["test_log"]).contains("4 passed"), "{t}");
    // The .cpp went to zig's cc program (bookworm's setuptools compiles with $CC).
    assert!(
        common::compile_commands(&read(&t["build_log"]))
            .iter()
            .any(|c| c.contains("x86_64-linux-gnu-cc ") && c.contains("_cppwords.cpp")),
        "{t}"
    );
    // C++ with zig: libc++ linked statically, so only glibc 2.17 symbols remain (auditwheel
    // show, in the build log, says manylinux_2_17).
    assert_eq!(w.len(), 2, "{w:?}");
    for (wheel, project) in w.iter().zip(["cppstats", "cppwords"]) {
        assert!(
            wheel.contains(&format!("/{project}-0.1.0-cp311-cp311-"))
                && wheel.contains("manylinux_2_17_x86_64"),
            "{w:?}"
        );
        let log = read(&target_of(&report, project, "x86_64")["build_log"])
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        assert!(
            log.contains(
                "is consistent with the following platform tag: \"manylinux_2_17_x86_64\""
            ),
            "{log}"
        );
    }
    // zig's cache (the libc stubs and the libc++ this C++ build needed) and the toolchain's
    // pinned wheels are the user's, kept between stores: filled in the runner's cache, while the
    // store's toolchain layer keeps only an empty mount point.
    let kept = r.cache.join("pookie-ns/toolchains/zig");
    for dir in ["opt_pookie-ns_zig_cache", "opt_pookie-ns_wheels"] {
        let n = std::fs::read_dir(kept.join(dir)).map_or(0, |d| d.count());
        assert!(n > 0, "{} is empty", kept.join(dir).display());
    }
    let layers = r
        .store
        .join("instances/stable/debian-bookworm/amd64/toolchain");
    for layer in std::fs::read_dir(&layers).unwrap() {
        let inside = layer.unwrap().path().join("opt/pookie-ns/zig/cache");
        let n = std::fs::read_dir(&inside).map_or(0, |d| d.count());
        assert_eq!(n, 0, "{} holds zig's cache", inside.display());
    }
}

/// Builds `project` for `targets` with `extra` flags into a fresh `out` and checks that every
/// target passed its tests on its own arch; returns the report and the wheels.
fn build_passing(
    r: &Runner,
    project: &Path,
    targets: &[&str],
    extra: &[&str],
    out: &str,
) -> (Value, Vec<String>) {
    build_passing_all(r, &[project], targets, extra, out)
}

/// [`build_passing`] of several projects in one build (a group: one plan, shared layers), each
/// target's build log showing a compile command with the release flags.
fn build_passing_all(
    r: &Runner,
    projects: &[&Path],
    targets: &[&str],
    extra: &[&str],
    out: &str,
) -> (Value, Vec<String>) {
    let out = dist(r, out);
    let mut args: Vec<&str> = projects.iter().map(|p| p.to_str().unwrap()).collect();
    args.extend_from_slice(&["--branch", "stable", "--target"]);
    args.extend_from_slice(targets);
    args.extend_from_slice(extra);
    if !extra.contains(&"--python") {
        args.extend_from_slice(&["--python", "3.11"]);
    }
    args.extend_from_slice(&["--out", out.to_str().unwrap()]);
    let (code, report, err) = common::build_json(r, &args);
    assert_eq!(code, 0, "{targets:?} {extra:?}: {err}\n{report}");
    let all = report["targets"].as_array().unwrap();
    assert_eq!(all.len(), projects.len() * targets.len(), "{report}");
    for t in all {
        assert_eq!(t["result"], "passed", "{t}");
        let arch = t["arch"].as_str().unwrap();
        let log = read(&t["test_log"]);
        assert!(
            log.contains(&format!("platform.machine() == '{arch}'")),
            "tested on its own arch: {log}"
        );
        let build = read(&t["build_log"]);
        assert!(
            common::compile_commands(&build)
                .iter()
                .any(|c| c.contains("-DNDEBUG")),
            "the build log shows a compile command with the release flags: {build}"
        );
    }
    let w = wheels(&out);
    (
        report,
        w.iter()
            .map(|n| out.join(n).display().to_string())
            .collect(),
    )
}

/// The cross-mode issue's checks: the C example cross-compiled for aarch64 and armv7l with
/// Debian's cross gcc (`--compiler gcc`; zig is the default where it serves), each extension an ELF of its arch,
/// each wheel tested under emulation on its own base OS and tagged with the policy its symbols
/// allow; with zig, a manylinux_2_17 wheel; the C++ example through CMake; a package linking
/// libffi (installed for the target by before-all), whose repaired wheel carries it; a policy
/// the symbols cannot meet is a failure that names them; the toolchain layer is reused.
#[test]
fn cross_mode_builds_for_aarch64_and_armv7l() {
    if !require(common::is_root(), "the build tests run as root") {
        return;
    }
    let Some(r) = runner_with_tarballs(Who::Root, &["amd64", "arm64", "armhf"]) else {
        return;
    };

    // gcc-cross (the default for armv7l, which zig does not serve), for two arches at once.
    let project = project_copy(&r, "c-ext");
    let gcc = ["--compiler", "gcc"];
    let (report, w) = build_passing(&r, &project, &["aarch64", "armv7l"], &gcc, "dist-gcc");
    for (arch, machine) in [("aarch64", 183), ("armv7l", 40)] {
        let t = target(&report, arch);
        assert_eq!(t["mode"], "cross", "{t}");
        assert_eq!(t["toolchain"], "gcc-cross", "{t}");
        assert_eq!(t["toolchain_setup"], "ran", "{t}");
        assert_eq!(t["build_base"], "debian-bookworm/amd64", "{t}");
        let wheel = w
            .iter()
            .find(|n| n.ends_with(&format!("_{arch}.whl")))
            .unwrap();
        assert!(
            wheel.contains("-manylinux"),
            "repaired to a policy: {wheel}"
        );
        assert_eq!(extension_machine(Path::new(wheel)), machine, "{wheel}");
        let log = read(&t["build_log"]);
        assert!(log.contains("--sysroot=/sysroot"), "{log}");
        assert!(log.contains("auditwheel repair --plat auto"), "{log}");
        assert!(read(&t["test_log"]).contains("6 passed"));
    }

    // A second build reuses the toolchain layer; with it, C++ built by setuptools alone
    // (cppsetup-ext: .cpp compiled through $CC by bookworm's setuptools, linked with g++).
    let cppsetup = common::example_copy(&r, "cppsetup-ext", "cppsetup-ext");
    let (report, w) =
        build_passing_all(&r, &[&project, &cppsetup], &["aarch64"], &gcc, "dist-gcc2");
    assert_eq!(
        target_of(&report, "fastmath", "aarch64")["toolchain_setup"],
        "cached"
    );
    let t = target_of(&report, "cppwords", "aarch64");
    assert_eq!(t["toolchain"], "gcc-cross", "{t}");
    assert!(read(&t["test_log"]).contains("4 passed"), "{t}");
    let cpp_wheel = w.iter().find(|n| n.contains("/cppwords-")).unwrap();
    assert_eq!(extension_machine(Path::new(cpp_wheel)), 183);

    // zig: glibc 2.17, so the wheel is manylinux_2_17 per auditwheel show.
    let (report, w) = build_passing(
        &r,
        &project,
        &["manylinux_2_17_aarch64"],
        &["--compiler", "zig"],
        "dist-zig",
    );
    let t = target(&report, "aarch64");
    assert_eq!(
        (t["mode"].as_str(), t["toolchain"].as_str()),
        (Some("cross"), Some("zig"))
    );
    assert_eq!(w.len(), 1);
    assert!(w[0].contains("manylinux_2_17_aarch64"), "{w:?}");
    assert_eq!(extension_machine(Path::new(&w[0])), 183);
    // auditwheel wraps its lines.
    let log = read(&t["build_log"])
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    assert!(
        log.contains("is consistent with the following platform tag: \"manylinux_2_17_aarch64\""),
        "auditwheel show says manylinux_2_17: {log}"
    );

    // C++ through scikit-build-core and CMake (the toolchain file), cross, with the default
    // toolchain: zig, libc++ static, manylinux_2_17.
    // With it, C++ through setuptools alone (cppsetup-ext): zig's cc gets the .cpp source and
    // hands it to zig c++; libc++ is linked statically, so the wheel is manylinux_2_17 too.
    let cpp = common::example_copy(&r, "cpp-ext", "cpp-ext");
    let (report, w) = build_passing_all(
        &r,
        &[&cpp, &cppsetup],
        &["aarch64"],
        &["--mode", "cross"],
        "dist-cpp",
    );
    for (project, passed) in [("cppstats", "6 passed"), ("cppwords", "4 passed")] {
        let t = target_of(&report, project, "aarch64");
        assert_eq!(t["mode"], "cross", "{t}");
        assert_eq!(t["toolchain"], "zig", "{t}");
        assert!(read(&t["test_log"]).contains(passed), "{t}");
    }
    assert_eq!(w.len(), 2, "{w:?}");
    for wheel in &w {
        assert!(wheel.contains("manylinux_2_17_aarch64"), "{w:?}");
        assert_eq!(extension_machine(Path::new(wheel)), 183, "{w:?}");
    }

    // An external library: libffi, installed for the target by before-all, vendored by the
    // repair (bookworm's libffi needs a newer glibc than 2.17: gcc-cross, the suite's policy).
    let ffi = common::example_copy(&r, "ffi-ext", "ffi-ext");
    let (report, w) = build_passing(&r, &ffi, &["aarch64"], &gcc, "dist-ffi");
    let t = target(&report, "aarch64");
    assert_eq!(t["mode"], "cross");
    assert!(
        read(&t["before_all_log"]).contains("libffi-dev"),
        "before-all ran for the target too"
    );
    let names = wheel_names(Path::new(&w[0]));
    assert!(
        names.iter().any(|n| n.starts_with("fficall.libs/libffi")),
        "libffi vendored: {names:?}"
    );
    assert!(read(&t["test_log"]).contains("3 passed"));

    // Symbols newer than the policy allows: the target fails and the log names them.
    let recent = project_copy(&r, "c-ext-recent");
    let source = recent.join("src/fastmath/_fastmath.c");
    let text = std::fs::read_to_string(&source).unwrap();
    // getentropy appeared in glibc 2.25.
    let text = text.replacen(
        "#include <stdint.h>",
        "#include <stdint.h>\n#include <unistd.h>\nint fm_entropy(void *b) { return getentropy(b, 8); }",
        1,
    );
    std::fs::write(&source, text).unwrap();
    let out = dist(&r, "dist-recent");
    let (code, report, err) = build_for(
        &r,
        &recent,
        &["manylinux_2_17_aarch64"],
        &["--compiler", "gcc"],
        &out,
    );
    assert_eq!(code, 1, "{err}");
    let t = target(&report, "aarch64");
    assert_eq!(t["result"], "build-failed", "{t}");
    let log = read(&t["build_log"]);
    assert!(
        log.contains("getentropy@GLIBC_2.25"),
        "names the symbol: {log}"
    );
    assert!(wheels(&out).is_empty());
}

/// clang on the host's arch (pookie's `--linux-x86_64-compiler clang`): a native build with
/// another compiler, repaired to the policy its symbols allow.
#[test]
fn native_build_with_clang() {
    if !require(common::is_root(), "the build tests run as root") {
        return;
    }
    let Some(r) = runner_with_tarballs(Who::Root, &["amd64"]) else {
        return;
    };
    // With C++ built by setuptools alone (cppsetup-ext), which clang compiles through $CC too.
    let project = project_copy(&r, "c-ext");
    let cppsetup = common::example_copy(&r, "cppsetup-ext", "cppsetup-ext");
    let (report, w) = build_passing_all(
        &r,
        &[&project, &cppsetup],
        &["x86_64"],
        &["--compiler", "clang"],
        "dist",
    );
    for project in ["fastmath", "cppwords"] {
        let t = target_of(&report, project, "x86_64");
        assert_eq!(
            (t["mode"].as_str(), t["toolchain"].as_str()),
            (Some("native"), Some("clang")),
            "{t}"
        );
        assert!(read(&t["build_log"]).contains("CC=clang --target=x86_64-linux-gnu"));
    }
    assert!(read(&target_of(&report, "cppwords", "x86_64")["test_log"]).contains("4 passed"));
    assert_eq!(w.len(), 2, "{w:?}");
    for wheel in &w {
        assert!(wheel.contains("manylinux"), "{w:?}");
        assert_eq!(extension_machine(Path::new(wheel)), 62);
    }
}

/// Issue 28: a base OS that cannot be loaded fails only the targets that need it. No
/// `--python`: the project's requires-python (3.11 to 3.13) plans cp311 on the bookworm base OS
/// (the cached tarball) and cp313 on a recipe (forky or trixie) that here names a mirror that
/// answers 404. The load is tried twice and fails; cp313 fails with the mirror's error in its reason,
/// cp311 builds, is tested and delivered, and the exit status is 1. No QEMU: both x86_64.
#[test]
fn a_base_os_that_fails_to_load_fails_only_its_own_targets() {
    if !require(common::is_root(), "the build tests run as root") {
        return;
    }
    let Some(r) = runner_with_tarballs(Who::Root, &["amd64"]) else {
        return;
    };
    let (mirror, answered) = common::mirror_answering_404();
    // Every recipe that may provide 3.13 (trixie, forky) builds from that mirror.
    let recipes = r.config.join("rootfs");
    std::fs::create_dir_all(&recipes).unwrap();
    for name in ["debian-trixie", "debian-forky"] {
        let text = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("rootfs/{name}.toml")),
        )
        .unwrap();
        std::fs::write(
            recipes.join(format!("{name}.toml")),
            format!("{text}mirror = \"{mirror}\"\n"),
        )
        .unwrap();
    }
    let project = project_copy(&r, "c-ext-mirror");
    let pp = project.join("pyproject.toml");
    let text = std::fs::read_to_string(&pp).unwrap().replace(
        "requires-python = \">=3.9\"",
        "requires-python = \">=3.11,<3.14\"",
    );
    std::fs::write(&pp, text).unwrap();
    let out = dist(&r, "dist-mirror");
    // The base OS's own gcc and a one-line test: what is checked is which targets run.
    let (code, report, err) = common::build_in(
        &r,
        &project,
        &["x86_64"],
        &[
            "--compiler",
            "gcc",
            "--before-all",
            "true",
            "--test",
            "python3 -c 'import fastmath; assert fastmath.gcd(12, 18) == 6'",
            // Debian's base OSes only: cp312 (no Debian CPython) skipped, no image pulled.
            "--python-source",
            "base-os",
        ],
        &out,
    );
    assert_eq!(code, 1, "{err}\n{report}");
    assert!(err.contains("trying once more"), "one more try: {err}");
    assert!(
        answered.load(std::sync::atomic::Ordering::SeqCst) >= 2,
        "{err}"
    );
    let by_python = |v: &str| {
        report["targets"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["python"] == v)
            .unwrap_or_else(|| panic!("no {v} target in {report}"))
            .clone()
    };
    let good = by_python("3.11");
    assert_eq!(good["result"], "passed", "{good}");
    let bad = by_python("3.13");
    assert_eq!(bad["result"], "error", "{bad}");
    let why = bad["error"].as_str().unwrap();
    assert!(
        why.contains("for amd64 could not be loaded")
            && why.contains(&mirror)
            && why.contains("404"),
        "{why}"
    );
    assert_eq!(report["failed"], 1, "{report}");
    // The report and the summary say what happened; the log named holds the reason.
    assert!(
        err.contains("cp313-manylinux_x86_64: ERROR: base OS debian-"),
        "{err}"
    );
    assert!(read(&bad["worker_log"]).contains("404"));
    let w = wheels(&out);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].starts_with("fastmath-0.1.0-cp311-cp311-"), "{w:?}");
}
