//! The build set: the build identifiers cibuildwheel 4.3.5 would build on Linux, computed as it
//! computes them, in its order.
//!
//! cibuildwheel's `--print-build-identifiers` walks its table of Linux Python configurations
//! (`resources/build-platforms.toml`, kept here as `build-platforms-linux.toml`) in order, and
//! keeps a configuration when its identifier ends with one of the selected arches
//! (`architecture.py`) and its `BuildSelector` admits it (`selector.py`): `requires-python`
//! (the identifier's version judged as `X.Y.99`), then the `enable` groups (PyPy, GraalPy,
//! CPython pre-releases are left out unless enabled), then `build` and `skip`. `--only ID`
//! builds that identifier on every arch with every group enabled (`requires-python` still
//! applies). Free-threaded CPythons (`cp314t`, `cp315t`) and musllinux are in the table and
//! built by default, as cibuildwheel 4 builds them.
//!
//! pookie-ns's own additions (a `--target` platform tag, `--python`, platform tags in
//! `[tool.pookie-ns] archs`) narrow an arch to one family ([`Families`]) or the CPythons to the
//! versions asked for; cibuildwheel's inputs never do.
//!
//! Pure: a function of the options and the host's arch.

use serde::Deserialize;

use super::identifiers::{identifier_python, python_matches};
use crate::arch::Arch;
use crate::fnmatch::{fnmatch, selector_matches};

/// The cibuildwheel release whose identifiers these are.
pub const CIBUILDWHEEL_VERSION: &str = "4.3.5";

/// cibuildwheel's `[linux]` table of Python configurations, as it ships it.
const LINUX_TABLE: &str = include_str!("build-platforms-linux.toml");

/// cibuildwheel 4.3.5's `enable` groups (`selector.py`'s `EnableGroup`). `all` enables every
/// one.
pub const ENABLE_GROUPS: [&str; 6] = [
    "cpython-prerelease",
    "graalpy",
    "pypy",
    "pypy-eol",
    "pyodide-eol",
    "pyodide-prerelease",
];

/// Groups older cibuildwheel releases knew, which cibuildwheel 4.3.5 refuses, and what to do.
pub const RETIRED_GROUPS: [(&str, &str); 2] = [
    (
        "cpython-freethreading",
        "cibuildwheel 4 builds the free-threaded CPythons (cp314t, cp315t) by default; remove \
         it from enable (skip = \"cp3??t-*\" leaves them out)",
    ),
    (
        "cpython-experimental-riscv64",
        "riscv64 is an arch like the others since cibuildwheel 3.1 (archs = [\"riscv64\"]); \
         remove it from enable",
    ),
];

/// The arches cibuildwheel builds on Linux (`Architecture.all_archs("linux")`).
pub const LINUX_ARCHS: [&str; 7] = [
    "x86_64", "i686", "aarch64", "ppc64le", "s390x", "armv7l", "riscv64",
];

/// The arch names cibuildwheel knows for its other platforms (macOS, Windows, Pyodide,
/// Android, iOS): accepted in `archs`, they select nothing on Linux.
const OTHER_ARCHS: [&str; 10] = [
    "universal2",
    "arm64",
    "x86",
    "AMD64",
    "ARM64",
    "wasm32",
    "arm64_v8a",
    "arm64_iphoneos",
    "arm64_iphonesimulator",
    "x86_64_iphonesimulator",
];

/// One Python configuration of the table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Configuration {
    /// `cp311-manylinux_x86_64`.
    pub identifier: String,
    /// `3.11`.
    pub version: String,
    /// Where pypa's images carry it: `/opt/python/cp311-cp311`.
    pub path_str: String,
}

#[derive(Deserialize)]
struct Table {
    linux: Linux,
}

#[derive(Deserialize)]
struct Linux {
    python_configurations: Vec<Configuration>,
}

/// cibuildwheel's Linux configurations, in its order.
pub fn linux_configurations() -> Result<Vec<Configuration>, String> {
    toml::from_str::<Table>(LINUX_TABLE)
        .map(|t| t.linux.python_configurations)
        .map_err(|e| {
            format!("pookie-ns's copy of cibuildwheel's build-platforms.toml does not parse: {e}")
        })
}

/// Which of an arch's identifiers are built: cibuildwheel builds both families; a pookie-ns
/// platform tag that names a policy asks for one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Families {
    Both,
    Manylinux,
    Musllinux,
}

/// One selected arch: its `uname -m` name (`aarch64`) and the families built for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchChoice {
    pub arch: String,
    pub families: Families,
}

impl ArchChoice {
    pub fn both(arch: &str) -> ArchChoice {
        ArchChoice {
            arch: arch.to_string(),
            families: Families::Both,
        }
    }

    /// True when this choice selects the configuration `identifier`.
    fn admits(&self, identifier: &str) -> bool {
        let Some((_, platform)) = identifier.split_once('-') else {
            return false;
        };
        let Some((family, arch)) = platform.split_once('_') else {
            return false;
        };
        arch == self.arch
            && match self.families {
                Families::Both => true,
                Families::Manylinux => family == "manylinux",
                Families::Musllinux => family == "musllinux",
            }
    }
}

/// cibuildwheel's `archs` words on Linux (`Architecture.parse_config`): `auto` and `native`
/// (the host's arch), `auto64` (the host's, when 64-bit), `auto32` (i686 on x86_64; armv7l on
/// aarch64 only where the CPU runs 32-bit code, `host_runs_armv7l`), `all` (the seven), an arch
/// name (any case), or another platform's arch name (`universal2`, `arm64`, `AMD64` ...), which
/// selects nothing on Linux. Words are separated by whitespace or commas. In cibuildwheel's
/// order, without repeats.
pub fn parse_archs(
    words: &[String],
    host: Arch,
    host_runs_armv7l: bool,
) -> Result<Vec<String>, String> {
    let native = host.uname();
    let mut set: Vec<&str> = Vec::new();
    for word in words
        .iter()
        .flat_map(|w| w.split(|c: char| c.is_whitespace() || c == ','))
        .filter(|w| !w.is_empty())
    {
        match word {
            "auto" | "native" => set.push(native),
            "all" => set.extend(LINUX_ARCHS),
            "auto64" => {
                if !matches!(native, "i686" | "armv7l") {
                    set.push(native);
                }
            }
            "auto32" => match native {
                "i686" | "armv7l" => set.push(native),
                "x86_64" => set.push("i686"),
                "aarch64" if host_runs_armv7l => set.push("armv7l"),
                _ => {}
            },
            w => {
                if let Some(a) = LINUX_ARCHS.iter().find(|a| a.eq_ignore_ascii_case(w)) {
                    set.push(a);
                } else if !OTHER_ARCHS.iter().any(|a| a.eq_ignore_ascii_case(w)) {
                    return Err(format!(
                        "invalid architecture {w:?}: cibuildwheel's archs on Linux are {}, or \
                         auto, auto64, auto32, native, all",
                        LINUX_ARCHS.join(", ")
                    ));
                }
            }
        }
    }
    Ok(LINUX_ARCHS
        .iter()
        .filter(|a| set.contains(a))
        .map(|a| a.to_string())
        .collect())
}

/// What the build set is computed from.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// `build` patterns (none: `*`).
    pub build: Vec<String>,
    pub skip: Vec<String>,
    /// `enable` groups, or `all`.
    pub enable: Vec<String>,
    pub requires_python: Option<String>,
    /// The selected arches.
    pub archs: Vec<ArchChoice>,
    /// pookie-ns's `--python`: only these CPythons (`3.11`: `cp311`), when not empty.
    pub pythons: Vec<String>,
    /// `--only IDENTIFIER`.
    pub only: Option<String>,
}

/// Checks `enable` groups as cibuildwheel 4.3.5 does: its six, or `all`.
pub fn check_enable(groups: &[String]) -> Result<(), String> {
    for g in groups {
        if g == "all" || ENABLE_GROUPS.contains(&g.as_str()) {
            continue;
        }
        let why = RETIRED_GROUPS
            .iter()
            .find(|(name, _)| name == g)
            .map(|(_, why)| format!(": {why}"))
            .unwrap_or_default();
        return Err(format!(
            "enable: {g:?} is not a group cibuildwheel {CIBUILDWHEEL_VERSION} knows{why} \
             (groups: {}, all)",
            ENABLE_GROUPS.join(", ")
        ));
    }
    Ok(())
}

/// True when an `enable` group lets the identifier through (`BuildSelector.__call__`): PyPy
/// 3.11+ needs `pypy`, older PyPy `pypy-eol`, GraalPy `graalpy`, CPython 3.16 (the next
/// pre-release) `cpython-prerelease`, Pyodide's CPython 3.12 `pyodide-eol`.
fn enabled(identifier: &str, enable: &[String]) -> bool {
    let on = |g: &str| enable.iter().any(|e| e == g || e == "all");
    let pypy_eol = fnmatch(identifier, "pp3?-*") || fnmatch(identifier, "pp310-*");
    let pypy = fnmatch(identifier, "pp*") && !pypy_eol;
    !((fnmatch(identifier, "cp316*") && !on("cpython-prerelease"))
        || (pypy && !on("pypy"))
        || (pypy_eol && !on("pypy-eol"))
        || (fnmatch(identifier, "gp*") && !on("graalpy"))
        || (fnmatch(identifier, "cp312-pyodide_*") && !on("pyodide-eol")))
}

/// The build identifiers, in cibuildwheel's order.
pub fn identifiers(request: &Request) -> Result<Vec<String>, String> {
    let table = linux_configurations()?;
    check_enable(&request.enable)?;
    let mut build = request.build.join(" ");
    let mut skip = request.skip.join(" ");
    let mut enable = request.enable.clone();
    let mut archs = request.archs.clone();
    let mut pythons = request.pythons.clone();
    if let Some(only) = &request.only {
        if !table.iter().any(|c| &c.identifier == only) {
            return Err(format!(
                "--only {only:?}: not one of cibuildwheel {CIBUILDWHEEL_VERSION}'s Linux \
                 identifiers (--print-build-identifiers --archs all with enable = [\"all\"] \
                 lists them)"
            ));
        }
        build = only.clone();
        skip = String::new();
        enable = vec!["all".to_string()];
        archs = LINUX_ARCHS.iter().map(|a| ArchChoice::both(a)).collect();
        pythons.clear();
    }
    if build.trim().is_empty() {
        build = "*".to_string();
    }
    let spec = request
        .requires_python
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty());
    let cpythons: Vec<String> = pythons
        .iter()
        .map(|p| format!("cp{}", p.replace('.', "")))
        .collect();
    let mut out = Vec::new();
    for c in &table {
        let id = c.identifier.as_str();
        if !archs.iter().any(|a| a.admits(id)) {
            continue;
        }
        if let Some(spec) = spec {
            let version = identifier_python(id)
                .ok_or_else(|| format!("identifier {id:?} has no Python version"))?;
            if !python_matches(spec, version)
                .map_err(|e| format!("requires-python {spec:?}: {e}"))?
            {
                continue;
            }
        }
        if !enabled(id, &enable) {
            continue;
        }
        if !selector_matches(&build, id)? || selector_matches(&skip, id)? {
            continue;
        }
        if !cpythons.is_empty() && !cpythons.iter().any(|p| id.split('-').next() == Some(p)) {
            continue;
        }
        out.push(c.identifier.clone());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    fn ids(r: &Request) -> Vec<String> {
        identifiers(r).unwrap()
    }

    fn on(archs: &[&str]) -> Vec<ArchChoice> {
        archs.iter().map(|a| ArchChoice::both(a)).collect()
    }

    #[test]
    fn the_table_is_cibuildwheels() {
        let t = linux_configurations().unwrap();
        assert_eq!(t.len(), 142);
        assert_eq!(t[0].identifier, "cp39-manylinux_x86_64");
        assert_eq!(t[6].identifier, "cp314t-manylinux_x86_64");
        assert_eq!(t[6].path_str, "/opt/python/cp314-cp314t");
        // Every identifier once; every arch has manylinux and musllinux CPythons.
        let mut unique: Vec<&str> = t.iter().map(|c| c.identifier.as_str()).collect();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), t.len());
        for arch in LINUX_ARCHS {
            for family in ["manylinux", "musllinux"] {
                let n = t
                    .iter()
                    .filter(|c| {
                        c.identifier.starts_with("cp")
                            && c.identifier.ends_with(&format!("-{family}_{arch}"))
                    })
                    .count();
                assert_eq!(n, 9, "{family} {arch}");
            }
        }
    }

    #[test]
    fn archs_words_as_cibuildwheel_reads_them() {
        let p = |s: &[&str], host| parse_archs(&w(s), host, false).unwrap();
        assert_eq!(p(&["auto"], Arch::Amd64), ["x86_64"]);
        assert_eq!(p(&["native"], Arch::Arm64), ["aarch64"]);
        assert_eq!(p(&["auto64"], Arch::Amd64), ["x86_64"]);
        assert!(p(&["auto64"], Arch::I386).is_empty());
        assert_eq!(p(&["auto32"], Arch::Amd64), ["i686"]);
        assert!(p(&["auto32"], Arch::Arm64).is_empty());
        assert_eq!(
            parse_archs(&w(&["auto32"]), Arch::Arm64, true).unwrap(),
            ["armv7l"]
        );
        assert_eq!(p(&["all"], Arch::Amd64).len(), 7);
        // cibuildwheel's order, whatever the words' order; commas too; any case.
        assert_eq!(
            p(&["riscv64,AARCH64 x86_64", "auto"], Arch::Amd64),
            ["x86_64", "aarch64", "riscv64"]
        );
        // Another platform's arch: nothing on Linux.
        assert!(p(&["universal2", "arm64", "AMD64"], Arch::Amd64).is_empty());
        let e = parse_archs(&w(&["sparc"]), Arch::Amd64, false).unwrap_err();
        assert!(e.contains("sparc") && e.contains("riscv64"), "{e}");
    }

    #[test]
    fn defaults_are_cpython_both_families_free_threaded_included() {
        let r = Request {
            archs: on(&["x86_64"]),
            ..Request::default()
        };
        let got = ids(&r);
        assert_eq!(got.len(), 18);
        assert_eq!(got[0], "cp39-manylinux_x86_64");
        assert_eq!(got[6], "cp314t-manylinux_x86_64");
        assert_eq!(got[9], "cp39-musllinux_x86_64");
        assert!(got.iter().all(|i| i.starts_with("cp")));
        // The example: >=3.9 on x86_64 and aarch64 is 36.
        let r = Request {
            archs: on(&["x86_64", "aarch64"]),
            requires_python: Some(">=3.9".into()),
            ..Request::default()
        };
        let got = ids(&r);
        assert_eq!(got.len(), 36);
        // cibuildwheel's order: manylinux x86_64, manylinux aarch64, then musllinux.
        assert_eq!(got[9], "cp39-manylinux_aarch64");
        assert_eq!(got[18], "cp39-musllinux_x86_64");
    }

    #[test]
    fn requires_python_bounds() {
        let r = |spec: &str| Request {
            archs: on(&["x86_64"]),
            requires_python: Some(spec.into()),
            build: w(&["*-manylinux_*"]),
            ..Request::default()
        };
        assert_eq!(
            ids(&r(">=3.13,<3.15")),
            [
                "cp313-manylinux_x86_64",
                "cp314-manylinux_x86_64",
                "cp314t-manylinux_x86_64"
            ]
        );
        // 3.11.99 is not < 3.11, and is <= 3.11.99 ... as cibuildwheel judges it.
        assert_eq!(ids(&r("<3.11")).len(), 2);
        assert_eq!(ids(&r("==3.12.*")), ["cp312-manylinux_x86_64"]);
        assert!(identifiers(&r(">=three")).is_err());
        assert_eq!(ids(&r("  ")).len(), 9, "an empty specifier admits all");
    }

    #[test]
    fn enable_groups_gate_pypy_graalpy_and_prereleases() {
        let r = |enable: &[&str]| Request {
            archs: on(&["x86_64"]),
            enable: w(enable),
            build: w(&["[pg]p*"]),
            ..Request::default()
        };
        assert!(ids(&r(&[])).is_empty());
        assert_eq!(
            ids(&r(&["pypy"])),
            ["pp311-manylinux_x86_64", "pp312-manylinux_x86_64"]
        );
        assert_eq!(
            ids(&r(&["pypy-eol"])),
            ["pp39-manylinux_x86_64", "pp310-manylinux_x86_64"]
        );
        assert_eq!(
            ids(&r(&["graalpy"])),
            ["gp312_250-manylinux_x86_64", "gp313_253-manylinux_x86_64"]
        );
        assert_eq!(ids(&r(&["all"])).len(), 6);
        // No PyPy on ppc64le, s390x or musllinux; GraalPy on aarch64.
        let mut all = r(&["all"]);
        all.archs = on(&LINUX_ARCHS);
        let got = ids(&all);
        assert_eq!(got.len(), 6 + 6 + 4, "{got:?}");
        assert!(got.iter().all(|i| i.contains("manylinux")));
        assert!(check_enable(&w(&["cpython-prerelease", "pyodide-eol"])).is_ok());
        let e = check_enable(&w(&["cpython-freethreading"])).unwrap_err();
        assert!(e.contains("by default") && e.contains("4.3.5"), "{e}");
        assert!(check_enable(&w(&["pypi"]))
            .unwrap_err()
            .contains("pypy-eol"));
        assert!(!enabled("cp316-manylinux_x86_64", &[]));
        assert!(enabled(
            "cp316-manylinux_x86_64",
            &w(&["cpython-prerelease"])
        ));
    }

    #[test]
    fn build_and_skip_with_brackets_braces_and_negations() {
        let r = Request {
            archs: on(&["x86_64", "aarch64"]),
            build: w(&["cp31[!0-2]-*", "cp3{9,10}-manylinux_*"]),
            skip: w(&["*t-*", "cp315-musllinux_aarch6?"]),
            ..Request::default()
        };
        assert_eq!(
            ids(&r),
            [
                "cp39-manylinux_x86_64",
                "cp310-manylinux_x86_64",
                "cp313-manylinux_x86_64",
                "cp314-manylinux_x86_64",
                "cp315-manylinux_x86_64",
                "cp39-manylinux_aarch64",
                "cp310-manylinux_aarch64",
                "cp313-manylinux_aarch64",
                "cp314-manylinux_aarch64",
                "cp315-manylinux_aarch64",
                "cp313-musllinux_x86_64",
                "cp314-musllinux_x86_64",
                "cp315-musllinux_x86_64",
                "cp313-musllinux_aarch64",
                "cp314-musllinux_aarch64",
            ]
        );
    }

    #[test]
    fn only_builds_one_identifier_on_any_arch_and_group() {
        let r = |only: &str, spec: Option<&str>| Request {
            archs: on(&["x86_64"]),
            skip: w(&["*"]),
            requires_python: spec.map(str::to_string),
            only: Some(only.into()),
            ..Request::default()
        };
        assert_eq!(
            ids(&r("pp310-manylinux_aarch64", None)),
            ["pp310-manylinux_aarch64"]
        );
        assert_eq!(
            ids(&r("cp314t-musllinux_riscv64", None)),
            ["cp314t-musllinux_riscv64"]
        );
        // requires-python still applies.
        assert!(ids(&r("cp39-manylinux_x86_64", Some(">=3.10"))).is_empty());
        assert!(identifiers(&r("cp38-manylinux_x86_64", None))
            .unwrap_err()
            .contains("cp38"));
    }

    #[test]
    fn pookie_ns_narrows_families_and_pythons() {
        let r = Request {
            archs: vec![
                ArchChoice {
                    arch: "aarch64".into(),
                    families: Families::Musllinux,
                },
                ArchChoice {
                    arch: "x86_64".into(),
                    families: Families::Manylinux,
                },
            ],
            pythons: w(&["3.11", "3.14"]),
            ..Request::default()
        };
        assert_eq!(
            ids(&r),
            [
                "cp311-manylinux_x86_64",
                "cp314-manylinux_x86_64",
                "cp311-musllinux_aarch64",
                "cp314-musllinux_aarch64"
            ]
        );
    }
}
