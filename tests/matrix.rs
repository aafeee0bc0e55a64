//! The publishable matrix (issue 16): the C and C++ examples for x86_64 and aarch64 × three
//! CPythons — 3.11 from Debian bookworm, 3.14 and 3.15 from forky, one base OS giving several —
//! twelve wheels built by the default toolchain (zig against glibc 2.17) with the release flags
//! (c-ext does not compile without them; each build log shows a compile command), each confirmed
//! manylinux_2_17 by `auditwheel show` and installed and tested on its own arch with its own
//! Python; a named policy (manylinux_2_28) delivered exactly; `requires-python` choosing the
//! CPythons when `--python` names none. Base OSes come from the tarballs scripts/build-test-rootfs
//! caches.

mod common;

use common::{build_in, stderr, wheels, Runner};
use serde_json::Value;

/// A root store with the cached bookworm and forky tarballs where `build` loads them from.
fn runner() -> Option<Runner> {
    common::root_runner_with_debian(
        "the matrix test runs as root",
        &[
            "debian-bookworm-amd64",
            "debian-bookworm-arm64",
            "debian-forky-amd64",
            "debian-forky-arm64",
        ],
    )
}

/// `manylinux_2_5_x86_64` → (2, 5).
fn glibc_of(tag: &str) -> (u32, u32) {
    let rest = tag
        .strip_prefix("manylinux_")
        .unwrap_or_else(|| panic!("{tag}"));
    let mut it = rest.split('_');
    (
        it.next().unwrap().parse().unwrap(),
        it.next().unwrap().parse().unwrap(),
    )
}

#[test]
fn twelve_manylinux_2_17_wheels_over_two_arches_and_three_pythons() {
    let Some(r) = runner() else { return };
    let dist = r.store.parent().unwrap().join("dist");
    for (name, module_test) in [("c-ext", "6 passed"), ("cpp-ext", "6 passed")] {
        let project = common::example_copy(&r, name, name);
        let (code, report, err) = build_in(
            &r,
            &project,
            &["x86_64", "aarch64"],
            &["--python", "3.11", "3.14", "3.15"],
            &dist,
        );
        assert_eq!(code, 0, "{name}: {err}\n{report}");
        let targets = report["targets"].as_array().unwrap();
        assert_eq!(targets.len(), 6, "{report}");
        for t in targets {
            let (arch, python) = (t["arch"].as_str().unwrap(), t["python"].as_str().unwrap());
            assert_eq!(t["result"], "passed", "{t}");
            assert_eq!(t["toolchain"], "zig", "{t}");
            let suite = if python == "3.11" {
                "bookworm"
            } else {
                "forky"
            };
            let text = |key: &str| t[key].as_str().unwrap();
            assert!(
                text("test_base").starts_with(&format!("debian-{suite}/")),
                "{t}"
            );
            // Tested on its own arch, with its own CPython (not the suite's python3).
            let log = std::fs::read_to_string(text("test_log")).unwrap();
            assert!(
                log.contains(&format!("platform.machine() == '{arch}', python {python}.")),
                "{name} {arch} {python}: {log}"
            );
            assert!(log.contains(module_test), "{log}");
            // The build log shows how each source was compiled: with the release flags (c-ext
            // does not compile without them on any CPython; issue 28).
            let build = std::fs::read_to_string(text("build_log")).unwrap();
            assert!(
                common::compile_commands(&build)
                    .iter()
                    .any(|c| c.contains("-DNDEBUG")),
                "{name} {arch} {python}: no compile command with -DNDEBUG in {build}"
            );
            let wheel = text("wheel");
            assert!(
                wheel.contains(&format!("-cp{0}-cp{0}-", python.replace('.', "")))
                    && wheel.contains(&format!("manylinux_2_17_{arch}")),
                "{wheel}"
            );
            // The report names the target as cibuildwheel does, and the tag delivered.
            assert_eq!(t["target"], t["identifier"], "{t}");
            assert_eq!(
                t["identifier"],
                format!("cp{}-manylinux_{arch}", python.replace('.', "")).as_str()
            );
            assert!(
                text("wheel_tag").contains(&format!("manylinux_2_17_{arch}")),
                "{t}"
            );
        }
    }
    let all = wheels(&dist);
    assert_eq!(all.len(), 12, "{all:?}");
    // auditwheel itself: every wheel's symbols fit glibc 2.17.
    let shown = common::auditwheel_show(&r, "debian-bookworm", &dist);
    assert_eq!(shown.len(), 12, "{shown:?}");
    for (wheel, tag) in &shown {
        eprintln!("auditwheel show: {wheel}: {tag}");
        assert!(glibc_of(tag) <= (2, 17), "{wheel}: {tag}");
        assert!(wheel.contains("manylinux_2_17"), "{wheel}");
    }

    // A named policy is met exactly: manylinux_2_28 for x86_64 (zig against glibc 2.28).
    let c_ext = r.store.parent().unwrap().join("c-ext");
    let dist_28 = r.store.parent().unwrap().join("dist-228");
    let (code, report, err) = build_in(
        &r,
        &c_ext,
        &["manylinux_2_28_x86_64"],
        &["--python", "3.14"],
        &dist_28,
    );
    assert_eq!(code, 0, "{err}\n{report}");
    let w = wheels(&dist_28);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].starts_with("fastmath-0.1.0-cp314-cp314-") && w[0].contains("manylinux_2_28_x86_64"),
        "{w:?}"
    );
    let t = &report["targets"][0];
    assert_eq!(t["target"], "cp314-manylinux_2_28_x86_64", "{t}");
    assert_eq!(t["identifier"], "cp314-manylinux_x86_64", "{t}");
    // auditwheel also names the older policies the wheel meets.
    assert!(
        t["wheel_tag"]
            .as_str()
            .is_some_and(|tag| tag.contains("manylinux_2_28_x86_64") && w[0].contains(tag)),
        "{t}"
    );

    // A version asked for that nothing provides: exit 2, with what is available.
    let build_x86_64 = |python: &str| {
        r.run(&[
            "build",
            c_ext.to_str().unwrap(),
            "--branch",
            "stable",
            "--target",
            "x86_64",
            "--python",
            python,
            // Debian's base OSes only: with `auto`, 3.12's source would be cibuildwheel's
            // default image (tests/oci.rs).
            "--python-source",
            "base-os",
        ])
    };
    let build_312 = || build_x86_64("3.12");
    let out = build_312();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no base OS provides CPython 3.12 for x86_64")
            && stderr(&out).contains("debian-forky (CPython 3.13, 3.14, 3.15"),
        "{}",
        stderr(&out)
    );

    // Free-threaded CPython: no Debian suite ships one, so asking for it is an input error.
    let out = build_x86_64("3.14t");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no Debian suite ships a free-threaded interpreter"),
        "{}",
        stderr(&out)
    );

    // requires-python chooses the CPythons when --python names none: >=3.13 gives 3.13, 3.14
    // and 3.15 (all from the loaded forky) and nothing older; 3.10 and 3.12 are not even
    // candidates, so nothing is reported skipped for them.
    let pp = c_ext.join("pyproject.toml");
    let text = std::fs::read_to_string(&pp).unwrap().replace(
        "requires-python = \">=3.9\"",
        "requires-python = \">=3.13\"",
    );
    std::fs::write(&pp, text).unwrap();
    let dist_req = r.store.parent().unwrap().join("dist-req");
    let (code, report, err) = build_in(&r, &c_ext, &["x86_64"], &[], &dist_req);
    assert_eq!(code, 0, "{err}\n{report}");
    let pythons: Vec<&str> = report["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["python"].as_str().unwrap())
        .collect();
    assert_eq!(pythons, ["3.13", "3.14", "3.15"], "{report}");
    assert_eq!(report["skipped"], Value::Array(vec![]), "{report}");
    // Asked for explicitly, a version requires-python excludes is left out with that reason.
    let out = build_312();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(
            "cp312-manylinux_x86_64 (the project's requires-python (>=3.13) excludes it)"
        ),
        "{}",
        stderr(&out)
    );
}
