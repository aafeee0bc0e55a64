//! Every common build backend cross-compiles (issue 20, item 3): the meson-python, Cython and
//! Rust examples (PyO3 and abi3, built by maturin and by setuptools-rust), each built for x86_64
//! and aarch64 by the default toolchain (zig against glibc 2.17; aarch64 in cross mode on the
//! x86_64 base OS, with the arm64 one as sysroot), each wheel confirmed manylinux by
//! `auditwheel show`, installed and tested on its own arch (aarch64 under QEMU) with the
//! example's own tests. One store, the cached forky tarballs (CPython 3.13–3.15, rustc 1.97):
//! one emulated instance refresh for all.

mod common;

use common::{build_in, wheels, Runner};

/// The union of the examples' own before-all.
const BEFORE_ALL: &str =
    "apt-get install -y --no-install-recommends python3-pytest zlib1g-dev pkgconf";

/// A root store with the cached forky tarballs where `build` loads them from.
fn runner() -> Option<Runner> {
    common::root_runner_with_debian(
        "the backends test runs as root",
        &["debian-forky-amd64", "debian-forky-arm64"],
    )
}

/// One example for x86_64 and aarch64 × `pythons`: every target passed with the zig toolchain,
/// aarch64 cross-compiled and tested on its own arch and CPython; the wheels' names.
fn build_example(
    r: &Runner,
    name: &str,
    pythons: &[&str],
    passed: &str,
    check_log: impl Fn(&str, &str),
) -> Vec<String> {
    let project = common::example_copy(r, name, name);
    let dist = r.store.parent().unwrap().join(format!("dist-{name}"));
    // One before-all for them all (what each example's own asks for, together): its layer
    // is made once per instance of the shared store, not once per example.
    let mut extra = vec!["--before-all", BEFORE_ALL, "--python"];
    extra.extend_from_slice(pythons);
    let (code, report, err) = build_in(r, &project, &["x86_64", "aarch64"], &extra, &dist);
    assert_eq!(code, 0, "{name}: {err}\n{report}");
    let targets = report["targets"].as_array().unwrap();
    assert_eq!(targets.len(), 2 * pythons.len(), "{report}");
    for t in targets {
        let (arch, python) = (t["arch"].as_str().unwrap(), t["python"].as_str().unwrap());
        assert_eq!(t["result"], "passed", "{name}: {t}");
        assert_eq!(t["toolchain"], "zig", "{t}");
        if arch == "aarch64" {
            assert_eq!(t["mode"], "cross", "{t}");
        }
        let log = std::fs::read_to_string(t["test_log"].as_str().unwrap()).unwrap();
        assert!(
            log.contains(&format!("platform.machine() == '{arch}', python {python}.")),
            "{name} {arch} {python}: {log}"
        );
        assert!(log.contains(passed), "{name} {arch} {python}: {log}");
        // An abi3 wheel is built once per arch: the other targets only test it.
        if let Some(by) = t["wheel_built_by"].as_str() {
            assert!(t["build_log"].is_null(), "{t}");
            assert!(by.ends_with(arch), "{t}");
            continue;
        }
        let build_log = std::fs::read_to_string(t["build_log"].as_str().unwrap()).unwrap();
        check_log(arch, &build_log);
        assert!(t["wheel"].as_str().unwrap().contains("manylinux_"), "{t}");
    }
    wheels(&dist)
}

/// `wheels` is one `NAME_VERSION-cp39-abi3-...manylinux_2_17_ARCH` wheel for each of x86_64 and
/// aarch64.
fn one_abi3_wheel_per_arch(wheels: &[String], name_version: &str) {
    assert_eq!(wheels.len(), 2, "one abi3 wheel per arch: {wheels:?}");
    for arch in ["x86_64", "aarch64"] {
        assert!(
            wheels
                .iter()
                .any(|n| n.starts_with(&format!("{name_version}-cp39-abi3-"))
                    && n.ends_with(&format!("manylinux_2_17_{arch}.whl"))),
            "{wheels:?}"
        );
    }
}

#[test]
fn meson_cython_and_rust_examples_cross_compile_and_pass_their_tests_emulated() {
    let Some(r) = runner() else { return };
    let mut all: Vec<(String, String)> = Vec::new();
    let mut shown_in = Vec::new();

    // meson-python: a cross file from the toolchain (compilers, sysroot, pkg-config), zlib
    // found through pkg-config in the target's base OS and vendored by auditwheel.
    let w = build_example(&r, "meson-ext", &["3.14"], "5 passed", |arch, log| {
        if arch == "aarch64" {
            assert!(
                log.contains("+ meson cross file /buildroot/cross/meson-cross.ini"),
                "{log}"
            );
            assert!(log.contains("cpu_family = 'aarch64'"), "{log}");
        }
    });
    assert_eq!(w.len(), 2, "{w:?}");
    for arch in ["x86_64", "aarch64"] {
        assert!(
            w.iter()
                .any(|n| n.starts_with("zcheck-0.1.0-cp314-cp314-") && n.contains(arch)),
            "{w:?}"
        );
    }
    shown_in.push(r.store.parent().unwrap().join("dist-meson-ext"));

    // Cython: the .pyx compiled to C natively (Cython from PyPI), the C for the target.
    let w = build_example(&r, "cython-ext", &["3.14"], "4 passed", |_, log| {
        assert!(
            log.contains("Cythonizing") || log.contains("Compiling src/cyfilters/_filters.pyx"),
            "{log}"
        );
    });
    assert_eq!(w.len(), 2, "{w:?}");
    shown_in.push(r.store.parent().unwrap().join("dist-cython-ext"));

    // Rust: maturin + PyO3 with Debian's rustc and the target's std (libstd-rust-dev:arm64),
    // linked by zig; abi3, so one wheel per arch, tested on CPython 3.13, 3.14 and 3.15.
    let w = build_example(
        &r,
        "rust-ext",
        &["3.13", "3.14", "3.15"],
        "5 passed",
        |_, log| {
            assert!(log.contains("PYO3_CROSS_LIB_DIR=/buildroot/cross"), "{log}");
        },
    );
    one_abi3_wheel_per_arch(&w, "rustmath-0.1.0");
    let report: serde_json::Value = serde_json::from_slice(
        &std::fs::read(r.store.join("output/stable/rustmath/report.json")).unwrap(),
    )
    .unwrap();
    let mut reused: Vec<&str> = report["targets"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["wheel_built_by"].as_str())
        .collect();
    reused.sort();
    // Per arch: 3.13 built it, 3.14 and 3.15 tested it.
    assert_eq!(
        reused,
        [
            "cp313-manylinux_aarch64",
            "cp313-manylinux_aarch64",
            "cp313-manylinux_x86_64",
            "cp313-manylinux_x86_64"
        ],
        "{report}"
    );
    shown_in.push(r.store.parent().unwrap().join("dist-rust-ext"));

    // Rust through setuptools-rust: the same Rust layer (setuptools-rust among the build
    // requirements), cargo run by setuptools-rust with `--target` from CARGO_BUILD_TARGET, the
    // platform tag from _PYTHON_HOST_PLATFORM; abi3 through `py_limited_api` (setup.py and
    // setup.cfg), so one cp39-abi3 wheel per arch.
    let w = build_example(
        &r,
        "setuptools-rust-ext",
        &["3.14"],
        "5 passed",
        |arch, log| {
            assert!(log.contains("PYO3_CROSS_LIB_DIR=/buildroot/cross"), "{log}");
            assert!(
                log.contains(&format!("CARGO_BUILD_TARGET={arch}-unknown-linux-gnu")),
                "{log}"
            );
            assert!(log.contains("Building wheel for rustsum"), "{log}");
        },
    );
    one_abi3_wheel_per_arch(&w, "rustsum-0.1.0");
    shown_in.push(r.store.parent().unwrap().join("dist-setuptools-rust-ext"));

    for dist in &shown_in {
        all.extend(common::auditwheel_show(&r, "debian-forky", dist));
    }
    assert_eq!(all.len(), 8, "{all:?}");
    for (wheel, tag) in &all {
        eprintln!("auditwheel show: {wheel}: {tag}");
        assert!(tag.starts_with("manylinux_"), "{wheel}: {tag}");
        assert!(
            wheel.contains(tag.as_str()),
            "{wheel} is tagged as auditwheel shows: {tag}"
        );
    }
}
