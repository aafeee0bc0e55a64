//! cibuildwheel's audit step (issue 29): after the repair, each abi3 wheel goes through
//! `audit-command` (by default abi3audit, installed from `audit-requires`) in the build's
//! sandbox. A real abi3 C extension on the cached Debian bookworm base OS: it passes
//! abi3audit; an `audit-command` that fails fails the target, its output in the build log,
//! no wheel delivered.

mod common;

use std::path::{Path, PathBuf};

use common::{require, Runner, Who};

/// A setuptools project whose one extension uses the stable ABI (3.9), tagged cp39-abi3;
/// `extra` goes at the end of its pyproject.toml.
fn abi3_project(r: &Runner, name: &str, extra: &str) -> PathBuf {
    let dir = r.store.parent().unwrap().join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("pyproject.toml"),
        format!(
            "[build-system]\nrequires = [\"setuptools>=61\", \"wheel\"]\n\
             build-backend = \"setuptools.build_meta\"\n{extra}"
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("setup.py"),
        "from setuptools import setup, Extension\n\
         setup(\n    name='limited', version='0.1.0',\n    \
         ext_modules=[Extension('limited', ['limited.c'], py_limited_api=True)],\n    \
         options={'bdist_wheel': {'py_limited_api': 'cp39'}},\n)\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("limited.c"),
        "#define Py_LIMITED_API 0x03090000\n#include <Python.h>\n\
         static PyObject *add(PyObject *self, PyObject *args) {\n    long a, b;\n    \
         if (!PyArg_ParseTuple(args, \"ll\", &a, &b)) return NULL;\n    \
         return PyLong_FromLong(a + b);\n}\n\
         static PyMethodDef methods[] = {{\"add\", add, METH_VARARGS, NULL}, {NULL, NULL, 0, NULL}};\n\
         static struct PyModuleDef mod = {PyModuleDef_HEAD_INIT, \"limited\", NULL, -1, methods};\n\
         PyMODINIT_FUNC PyInit_limited(void) { return PyModule_Create(&mod); }\n",
    )
    .unwrap();
    dir
}

fn build(r: &Runner, project: &Path, out: &str) -> (i32, serde_json::Value, String, PathBuf) {
    let out = r.store.parent().unwrap().join(out);
    let (code, report, err) = common::build_in(
        r,
        project,
        &["x86_64"],
        &[
            "--python",
            "3.11",
            "--compiler",
            "gcc",
            "--before-all",
            "true",
            "--test",
            "python -c 'import limited; assert limited.add(2, 3) == 5'",
        ],
        &out,
    );
    (code, report, err, out)
}

fn build_log(report: &serde_json::Value) -> String {
    let path = report["targets"][0]["build_log"]
        .as_str()
        .unwrap_or_default();
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}: {report:#}"))
}

#[test]
fn abi3_wheels_pass_abi3audit_and_a_failing_audit_fails_the_target() {
    if !require(common::is_root(), "the build tests run as root") {
        return;
    }
    let Some(r) = common::runner_with_debian(Who::Root, &["debian-bookworm-amd64"]) else {
        return;
    };
    let started = std::time::Instant::now();
    // The default: abi3audit (pinned) installed and run on the repaired abi3 wheel.
    let good = abi3_project(&r, "limited", "");
    let (code, report, err, out) = build(&r, &good, "dist-good");
    let log = build_log(&report);
    assert_eq!(code, 0, "{err}\n{report:#}\n{log}");
    assert!(
        log.contains("+ audit-requires: python3 -m pip install abi3audit==0.0.26")
            && log.contains("+ audit-command: abi3audit --strict --report {wheel}"),
        "{log}"
    );
    let wheels = common::wheels(&out);
    assert_eq!(wheels.len(), 1, "{wheels:?}");
    assert!(wheels[0].contains("-cp39-abi3-manylinux"), "{wheels:?}");

    // The project's audit-command fails: so does the target, with its output in the log.
    let bad = abi3_project(
        &r,
        "limited-bad",
        "[tool.cibuildwheel]\naudit-requires = []\n\
         audit-command = \"echo audit-says-no {wheel}; false\"\n",
    );
    let (code, report, err, out) = build(&r, &bad, "dist-bad");
    let log = build_log(&report);
    assert_eq!(code, 1, "{err}\n{report:#}\n{log}");
    assert_ne!(report["targets"][0]["result"], "passed", "{report:#}");
    assert!(log.contains("audit-says-no /"), "{log}");
    assert!(
        log.contains("the audit of limited-0.1.0-cp39-abi3"),
        "{log}"
    );
    assert!(
        !log.contains("pip install abi3audit"),
        "audit-requires = []: {log}"
    );
    assert!(common::wheels(&out).is_empty());
    eprintln!(
        "audit builds done in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
