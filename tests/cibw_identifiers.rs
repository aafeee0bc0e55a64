//! `pookie-ns build DIR --print-build-identifiers` against cibuildwheel 4.3.5's own
//! `cibuildwheel --print-build-identifiers --platform linux DIR`, line for line, for one
//! configuration per option that selects identifiers: selectors with brackets, braces and
//! negations, `archs` keywords, `enable` groups, `requires-python` bounds (pyproject.toml,
//! setup.cfg, setup.py, the environment), `CIBW_*` variables, overrides, `--archs`, `--only`.
//! Also: pookie-ns's copy of cibuildwheel's table is cibuildwheel's, and the list needs no
//! network.
//!
//! cibuildwheel comes from PyPI, installed once per machine into a venv under
//! /var/cache/pookie-ns-test/cibuildwheel-4.3.5 (its `--print-build-identifiers` needs no
//! container engine).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use common::{require, stderr, stdout, Runner, Who};
use pookie_ns::cibw::build_set::{linux_configurations, CIBUILDWHEEL_VERSION};

/// The venv's python (`python -m cibuildwheel`: a venv's scripts name its path in their
/// shebang, so the venv is built beside its final place and renamed, and only its python,
/// which finds the venv by its own path, is run). None (after `require`) when it cannot be had.
fn cibuildwheel() -> Option<PathBuf> {
    static VENV: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let got = VENV.get_or_init(install);
    match got {
        Ok(p) => Some(p.clone()),
        Err(e) => {
            require(false, &format!("cibuildwheel {CIBUILDWHEEL_VERSION}: {e}"));
            None
        }
    }
}

fn install() -> Result<PathBuf, String> {
    common::cached_venv(
        &format!("cibuildwheel-{CIBUILDWHEEL_VERSION}"),
        &[&format!("cibuildwheel=={CIBUILDWHEEL_VERSION}")],
    )
}

/// One configuration: the project's files, the environment and the command line.
struct Case {
    name: &'static str,
    files: &'static [(&'static str, &'static str)],
    env: &'static [(&'static str, &'static str)],
    /// Options both command lines take (`--archs`, `--only`).
    args: &'static [&'static str],
}

const PROJECT: &str = "[build-system]\nrequires = [\"setuptools\"]\nbuild-backend = \"setuptools.build_meta\"\n\n[project]\nname = \"idfix\"\nversion = \"0.1\"\n";

const CASES: &[Case] = &[
    Case {
        name: "issue 29: >=3.9, [tool.cibuildwheel.linux] archs x86_64 aarch64",
        files: &[(
            "pyproject.toml",
            "[project]\nname = \"x\"\nrequires-python = \">=3.9\"\n\n[tool.cibuildwheel.linux]\narchs = [\"x86_64\", \"aarch64\"]\n",
        )],
        env: &[],
        args: &[],
    },
    Case {
        name: "no archs: the native arch only",
        files: &[(
            "pyproject.toml",
            "[project]\nname = \"x\"\nrequires-python = \">=3.9\"\n",
        )],
        env: &[],
        args: &[],
    },
    Case {
        // `[^9]` is a literal `^` or `9` in fnmatch (no negation: cp310 on s390x stays), `[!x]`
        // a negation, `{13..14}` bracex's sequence.
        name: "build and skip: brackets, negations, braces, ranges",
        files: &[(
            "pyproject.toml",
            "[project]\nname = \"x\"\n\n[tool.cibuildwheel]\narchs = \"all\"\nbuild = \"cp31[!0-2]-* cp3{9,10}-*_{x86_64,s390x} *-musllinux_[a-i]*\"\nskip = [\"*t-*\", \"cp3{13..14}-musllinux_*\", \"cp3[^9]?-manylinux_s390x\", \"*-manylinux_[!x]?????\"]\n",
        )],
        env: &[],
        args: &[],
    },
    Case {
        name: "archs keywords: auto64 auto32 native",
        files: &[(
            "pyproject.toml",
            "[project]\nname = \"x\"\n\n[tool.cibuildwheel]\narchs = [\"auto64\", \"auto32\", \"native\"]\nskip = \"cp31[0-3]-*\"\n",
        )],
        env: &[],
        args: &[],
    },
    Case {
        name: "archs all, other platforms' arch names, CIBW_SKIP",
        files: &[(
            "pyproject.toml",
            "[project]\nname = \"x\"\n\n[tool.cibuildwheel]\narchs = \"all,universal2 ARM64\"\nskip = \"cp39-*\"\n",
        )],
        env: &[("CIBW_SKIP", "*-musllinux_* cp31[0-3]*")],
        args: &[],
    },
    Case {
        name: "enable pypy graalpy (file), pypy-eol (CIBW_ENABLE appends)",
        files: &[(
            "pyproject.toml",
            "[project]\nname = \"x\"\nrequires-python = \">=3.10\"\n\n[tool.cibuildwheel]\nenable = [\"pypy\", \"graalpy\"]\narchs = [\"x86_64\", \"aarch64\", \"i686\"]\nbuild = \"[pg]p* cp315*\"\n",
        )],
        env: &[("CIBW_ENABLE", "pypy-eol")],
        args: &[],
    },
    Case {
        name: "enable all, cpython-prerelease",
        files: &[(
            "pyproject.toml",
            "[project]\nname = \"x\"\n\n[tool.cibuildwheel.linux]\nenable = [\"all\"]\narchs = \"ppc64le s390x\"\n",
        )],
        env: &[],
        args: &[],
    },
    Case {
        name: "requires-python bounds",
        files: &[(
            "pyproject.toml",
            "[project]\nname = \"x\"\nrequires-python = \">=3.10, <3.15, !=3.12.*\"\n\n[tool.cibuildwheel]\narchs = [\"x86_64\", \"armv7l\"]\n",
        )],
        env: &[],
        args: &[],
    },
    Case {
        name: "requires-python from setup.cfg",
        files: &[
            ("pyproject.toml", PROJECT),
            (
                "setup.cfg",
                "[metadata]\nname = x\n\n[options]\nzip_safe = False\npython_requires = >=3.12\n",
            ),
            ("setup.py", "from setuptools import setup\nsetup(python_requires='>=3.9')\n"),
        ],
        env: &[],
        args: &[],
    },
    Case {
        name: "requires-python from setup.py",
        files: &[(
            "setup.py",
            "from setuptools import setup\n\nif __name__ == \"__main__\":\n    setup(\n        name=\"x\",\n        python_requires=\"~=3.11\",  # 3.11 and later\n    )\n",
        )],
        env: &[],
        args: &[],
    },
    Case {
        name: "CIBW_PROJECT_REQUIRES_PYTHON and CIBW_BUILD over the file",
        files: &[(
            "pyproject.toml",
            "[project]\nname = \"x\"\nrequires-python = \">=3.13\"\n\n[tool.cibuildwheel]\nbuild = \"cp313-*\"\n",
        )],
        env: &[
            ("CIBW_PROJECT_REQUIRES_PYTHON", "<3.12"),
            ("CIBW_BUILD", "cp3{9,10,11,13}-*"),
        ],
        args: &[],
    },
    Case {
        name: "CIBW_ARCHS_LINUX over CIBW_ARCHS; CIBW_BUILD_LINUX is not read",
        files: &[("pyproject.toml", PROJECT)],
        env: &[
            ("CIBW_ARCHS", "aarch64"),
            ("CIBW_ARCHS_LINUX", "riscv64 auto"),
            ("CIBW_BUILD_LINUX", "cp39-*"),
            ("CIBW_SKIP", "*t-*"),
        ],
        args: &[],
    },
    Case {
        name: "CIBW_INHERIT: CIBW_SKIP appended, CIBW_ARCHS_LINUX prepended",
        files: &[(
            "pyproject.toml",
            "[project]\nname = \"x\"\n\n[tool.cibuildwheel]\nskip = \"cp3{9,10,11}-*\"\narchs = \"x86_64\"\n",
        )],
        env: &[
            ("CIBW_SKIP", "*-musllinux_*"),
            ("CIBW_ARCHS_LINUX", "armv7l"),
            ("CIBW_INHERIT", "skip; archs-linux: prepend"),
        ],
        args: &[],
    },
    Case {
        name: "empty archs fall through: the linux table's [] and CIBW_ARCHS=\"\"",
        files: &[(
            "pyproject.toml",
            "[project]\nname = \"x\"\n\n[tool.cibuildwheel]\narchs = [\"aarch64\"]\nskip = \"*-musllinux_*\"\n\n[tool.cibuildwheel.linux]\narchs = []\n",
        )],
        env: &[("CIBW_ARCHS", "")],
        args: &[],
    },
    Case {
        name: "[tool.cibuildwheel.linux] inherit: skip appended to the generic one",
        files: &[(
            "pyproject.toml",
            "[project]\nname = \"x\"\n\n[tool.cibuildwheel]\nskip = \"cp39-* cp310-*\"\narchs = [\"x86_64\", \"s390x\"]\n\n[tool.cibuildwheel.linux]\nskip = [\"*-musllinux_s390x\", \"cp311-*\"]\ninherit.skip = \"append\"\n",
        )],
        env: &[],
        args: &[],
    },
    Case {
        name: "overrides do not change the selection",
        files: &[(
            "pyproject.toml",
            "[project]\nname = \"x\"\nrequires-python = \">=3.12\"\n\n[tool.cibuildwheel]\narchs = [\"x86_64\", \"aarch64\"]\ntest-command = \"true\"\n\n[[tool.cibuildwheel.overrides]]\nselect = \"cp313-*\"\ntest-command = \"false\"\nmanylinux-x86_64-image = \"manylinux_2_34\"\n\n[[tool.cibuildwheel.overrides]]\nselect = \"*-musllinux_*\"\ninherit.environment = \"append\"\nenvironment = { A = \"1\" }\n",
        )],
        env: &[],
        args: &[],
    },
    Case {
        name: "--archs over CIBW_ARCHS and the file",
        files: &[(
            "pyproject.toml",
            "[project]\nname = \"x\"\n\n[tool.cibuildwheel]\narchs = \"x86_64\"\nbuild = \"cp314*\"\n",
        )],
        env: &[("CIBW_ARCHS_LINUX", "i686")],
        args: &["--archs", "aarch64,ppc64le"],
    },
    Case {
        name: "--only: any arch and group, build and skip ignored",
        files: &[(
            "pyproject.toml",
            "[project]\nname = \"x\"\n\n[tool.cibuildwheel]\nskip = \"*\"\narchs = \"x86_64\"\n",
        )],
        env: &[("CIBW_BUILD", "cp313-*")],
        args: &["--only", "pp310-manylinux_aarch64"],
    },
    Case {
        name: "--only with requires-python excluding it",
        files: &[(
            "pyproject.toml",
            "[project]\nname = \"x\"\nrequires-python = \">=3.15\"\n",
        )],
        env: &[],
        args: &["--only", "cp314t-musllinux_riscv64"],
    },
];

/// A project directory with the case's files.
fn project(r: &Runner, n: usize, case: &Case) -> PathBuf {
    let dir = r.store.parent().unwrap().join(format!("case-{n}"));
    std::fs::create_dir_all(&dir).unwrap();
    for (name, text) in case.files {
        std::fs::write(dir.join(name), text).unwrap();
    }
    dir
}

/// A command with the case's CIBW_* variables only.
fn with_env(mut c: Command, env: &[(&str, &str)]) -> Command {
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("CIBW_")) {
        c.env_remove(k);
    }
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

fn lines(out: &Output, who: &str) -> Result<Vec<String>, String> {
    if !out.status.success() {
        return Err(format!(
            "{who} exited {:?}: {}",
            out.status.code(),
            stderr(out)
        ));
    }
    Ok(stdout(out).lines().map(str::to_string).collect())
}

fn theirs(python: &Path, dir: &Path, case: &Case) -> Result<Vec<String>, String> {
    let mut c = Command::new(python);
    c.args(["-m", "cibuildwheel", "--print-build-identifiers"]);
    if !case.args.contains(&"--only") {
        // --only computes the platform itself and refuses --platform.
        c.args(["--platform", "linux"]);
    }
    c.args(case.args).arg(".").current_dir(dir);
    let out = with_env(c, case.env).output().unwrap();
    lines(&out, "cibuildwheel")
}

fn ours_command(r: &Runner, dir: &Path, case: &Case) -> Command {
    let d = dir.to_str().unwrap();
    let mut args = vec![
        "build",
        d,
        "--branch",
        "stable",
        "--print-build-identifiers",
    ];
    args.extend_from_slice(case.args);
    with_env(r.command(&args), case.env)
}

fn ours(r: &Runner, dir: &Path, case: &Case) -> Result<Vec<String>, String> {
    let out = ours_command(r, dir, case).output().unwrap();
    lines(&out, "pookie-ns")
}

#[test]
fn identifiers_match_cibuildwheel_line_for_line() {
    let Some(python) = cibuildwheel() else {
        return;
    };
    assert!(CASES.len() >= 12);
    let r = Runner::new(Who::Root);
    let mut failures = Vec::new();
    eprintln!("{:>4} {:>4}  configuration", "ours", "cibw");
    for (n, case) in CASES.iter().enumerate() {
        let dir = project(&r, n, case);
        let want = theirs(&python, &dir, case).unwrap_or_else(|e| panic!("{}: {e}", case.name));
        let got = ours(&r, &dir, case).unwrap_or_else(|e| panic!("{}: {e}", case.name));
        eprintln!("{:>4} {:>4}  {}", got.len(), want.len(), case.name);
        if got != want {
            failures.push(format!(
                "{}:\n  pookie-ns:    {}\n  cibuildwheel: {}",
                case.name,
                got.join(" "),
                want.join(" ")
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // The cases are not all alike: some list nothing, some many.
    let counts: Vec<usize> = CASES
        .iter()
        .enumerate()
        .map(|(n, c)| ours(&r, &project(&r, n, c), c).unwrap().len())
        .collect();
    assert!(
        counts.contains(&0) && counts.iter().any(|&c| c >= 36),
        "{counts:?}"
    );
}

/// pookie-ns's table is cibuildwheel's: the same configurations, in the same order.
#[test]
fn the_table_is_the_installed_cibuildwheels() {
    let Some(python) = cibuildwheel() else {
        return;
    };
    let out = Command::new(&python)
        .args([
            "-c",
            "import importlib.metadata as m, pathlib, cibuildwheel; \
             print(m.version('cibuildwheel')); \
             print(pathlib.Path(cibuildwheel.__file__).parent / 'resources' / 'build-platforms.toml')",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let mut l = text.lines();
    assert_eq!(l.next(), Some(CIBUILDWHEEL_VERSION));
    let file = std::fs::read_to_string(l.next().unwrap()).unwrap();
    let table: toml::Table = file.parse().unwrap();
    let theirs: Vec<(String, String)> = table["linux"]["python_configurations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["identifier"].as_str().unwrap().to_string(),
                c["version"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let ours: Vec<(String, String)> = linux_configurations()
        .unwrap()
        .into_iter()
        .map(|c| (c.identifier, c.version))
        .collect();
    assert_eq!(ours, theirs);
}

/// Issue 29's offline check: a `requires-python = ">=3.9"` project with no `archs` lists
/// exactly cibuildwheel's identifiers in a network namespace with no network at all.
#[test]
fn the_list_needs_no_network() {
    let Some(python) = cibuildwheel() else {
        return;
    };
    let r = Runner::new(Who::Root);
    let case = &CASES[1];
    let dir = project(&r, 1, case);
    let want = theirs(&python, &dir, case).unwrap();
    assert_eq!(want.len(), 18, "{want:?}");
    // unshare --net (-r too when not root: a user namespace of one's own).
    let ours_cmd = ours_command(&r, &dir, case);
    let mut c = Command::new("unshare");
    if !common::is_root() {
        c.arg("-r");
    }
    c.arg("--net")
        .arg(ours_cmd.get_program())
        .args(ours_cmd.get_args());
    for (k, v) in ours_cmd.get_envs() {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    c.current_dir("/tmp");
    let probe = Command::new("unshare")
        .args(if common::is_root() {
            vec!["--net", "true"]
        } else {
            vec!["-r", "--net", "true"]
        })
        .status();
    if !require(
        probe.is_ok_and(|s| s.success()),
        "unshare --net (a network namespace) works here",
    ) {
        return;
    }
    let out = c.output().unwrap();
    assert_eq!(lines(&out, "pookie-ns offline").unwrap(), want);
}
