//! Toolchains: how a build on the host's arch makes code for a target arch (cross mode), or with
//! another compiler than the base OS's gcc on the host's arch. The repository's `toolchains/*.toml`
//! are embedded in the binary; the config dir's `toolchains/` adds or replaces them by name.
//!
//! A toolchain names the compiler it stands for (`gcc`, `clang`, `zig`), the target arches it
//! serves, a `setup` script (run once, cached, in a layer over the host-arch instance), the lines of
//! a CMake toolchain file, and the environment that makes a Python build frontend cross-compile.
//! Its text uses placeholders (`{triplet}`, `{sysroot}` …, listed in [`Context::value`]) that
//! [`Toolchain::resolve`] fills in for one target. The target's own base OS is the sysroot, mounted
//! read-only at [`SYSROOT`] in the build sandbox.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::arch::Arch;
use crate::config::{parse_toml, ConfigError};

/// The toolchains shipped with pookie-ns: (name, TOML text).
pub const EMBEDDED: [(&str, &str); 3] = [
    ("gcc-cross", include_str!("../toolchains/gcc-cross.toml")),
    ("clang", include_str!("../toolchains/clang.toml")),
    ("zig", include_str!("../toolchains/zig.toml")),
];

/// Where the target's base OS (with its instance and before-all layers) appears in a cross build.
pub const SYSROOT: &str = "/sysroot";
/// Where a cross build finds the target's sysconfigdata and the CMake toolchain file.
pub const CROSS_DIR: &str = "/buildroot/cross";
/// The body of the zig toolchain's compiler programs (`{zig_cc}`): C++ sources to `zig c++`
/// whichever program is called, and never zig's debug mode.
pub const ZIG_CC: &str = crate::shell::scripts::ZIG_CC;
/// The glibc a zig build targets when the target names no manylinux policy.
pub const DEFAULT_GLIBC: &str = "2.17";

/// The oldest glibc zig (0.17.1) provides for an arch, where it is newer than 2.17: its
/// powerpc64le libc starts at 2.19 and its riscv64 one at 2.27 (`zig cc -target
/// powerpc64le-linux-gnu.2.17`: "unable to provide libc ... related target ...-gnu.2.19").
/// ppc64le's symbol versions still start at `GLIBC_2.17` (glibc's baseline for that port), so
/// a build against 2.19 is `manylinux_2_17` for auditwheel.
pub fn zig_glibc_floor(arch: Arch) -> Option<(u32, u32)> {
    match arch {
        Arch::Ppc64el => Some((2, 19)),
        Arch::Riscv64 => Some((2, 27)),
        _ => None,
    }
}

/// The glibc `{glibc}` stands for: the policy's (`(2, 17)` for manylinux_2_17), raised to what
/// zig provides for the arch ([`zig_glibc_floor`]): `2.17`, ppc64le `2.19`.
pub fn target_glibc(arch: Arch, policy: (u32, u32)) -> String {
    let (a, b) = zig_glibc_floor(arch).map_or(policy, |floor| floor.max(policy));
    format!("{a}.{b}")
}

/// What `--compiler` picks.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Deserialize,
    Serialize,
    clap::ValueEnum,
    PartialOrd,
    Ord,
)]
#[serde(rename_all = "lowercase")]
pub enum Compiler {
    Gcc,
    Clang,
    Zig,
}

impl std::fmt::Display for Compiler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Compiler::Gcc => "gcc",
            Compiler::Clang => "clang",
            Compiler::Zig => "zig",
        })
    }
}

/// A toolchain as written in TOML.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolchainFile {
    pub description: String,
    pub compiler: Compiler,
    /// Target arches it serves (Debian or `uname -m` names).
    pub arches: Vec<Arch>,
    /// Shell script run once in a cached layer over the host-arch instance, with the network.
    pub setup: String,
    /// Lines of the CMake toolchain file, after the ones every toolchain gets.
    #[serde(default)]
    pub cmake: String,
    pub env: BTreeMap<String, String>,
    /// Directories inside (absolute) whose contents depend only on the toolchain and the target,
    /// never on the project: zig's global cache (its libc stubs, libc++ and compiled objects,
    /// keyed by zig itself), pip's download cache. Each is kept per user between stores, in
    /// `$XDG_CACHE_HOME/pookie-ns/toolchains/<toolchain>/`, and mounted there in the toolchain's
    /// setup and in every build step, so that a new store neither fetches nor rebuilds them.
    #[serde(default)]
    pub caches: Vec<String>,
}

/// A checked toolchain with its name and where it came from.
#[derive(Debug, Clone)]
pub struct Toolchain {
    pub name: String,
    pub origin: String,
    pub spec: ToolchainFile,
}

/// A toolchain filled in for one target: what the build worker needs (in `job.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resolved {
    pub name: String,
    pub compiler: Compiler,
    pub setup: String,
    /// The whole CMake toolchain file.
    pub cmake: String,
    /// Exported before the build command, in this order.
    pub env: Vec<(String, String)>,
    /// Directories of the target's shared libraries inside the sandbox, where auditwheel looks
    /// for the libraries the wheel links (LD_LIBRARY_PATH of the repair step).
    pub library_path: String,
    /// [`ToolchainFile::caches`], placeholders filled in.
    #[serde(default)]
    pub caches: Vec<String>,
}

/// What the placeholders of a toolchain stand for, for one target.
#[derive(Debug, Clone)]
pub struct Context<'a> {
    pub arch: Arch,
    pub python: &'a str,
    pub glibc: &'a str,
}

impl Context<'_> {
    /// The value of placeholder `name`, or `None` for an unknown one.
    fn value(&self, name: &str) -> Option<String> {
        let a = self.arch;
        Some(match name {
            "triplet" => a.multiarch().into(),
            "debarch" => a.debian().into(),
            "uname" => a.uname().into(),
            "rust_target" => a.rust_target().into(),
            "rust_target_env" => a.rust_target().to_ascii_uppercase().replace('-', "_"),
            "glibc" => self.glibc.into(),
            "python" => self.python.into(),
            "sysroot" => SYSROOT.into(),
            "cross" => CROSS_DIR.into(),
            // Found in the sysroot by the build script (its file name differs between Debian
            // releases): a shell variable the script sets before the environment is exported.
            "sysconfigdata" => "${POOKIE_NS_SYSCONFIGDATA}".into(),
            "zig_cc" => ZIG_CC.into(),
            _ => return None,
        })
    }

    /// `text` with every `{name}` replaced; an unknown placeholder is an error naming it.
    pub fn fill(&self, text: &str) -> Result<String, String> {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            out.push_str(&rest[..open]);
            let after = &rest[open + 1..];
            let name_len = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            // `{name}` is a placeholder; any other brace (shell `${x}`, C code) is kept as is.
            let shell = out.ends_with('$');
            if !shell && name_len > 0 && after[name_len..].starts_with('}') {
                let name = &after[..name_len];
                let value = self
                    .value(name)
                    .ok_or_else(|| format!("unknown placeholder {{{name}}}"))?;
                out.push_str(&value);
                rest = &after[name_len + 1..];
            } else {
                out.push('{');
                rest = after;
            }
        }
        out.push_str(rest);
        Ok(out)
    }
}

impl Toolchain {
    /// Parses and checks one toolchain; `origin` names the file in errors.
    pub fn parse(name: &str, origin: &Path, text: &str) -> Result<Toolchain, ConfigError> {
        let spec: ToolchainFile = parse_toml(origin, text)?;
        let invalid = |what: String| ConfigError::Invalid(format!("{}: {what}", origin.display()));
        if spec.arches.is_empty() {
            return Err(invalid("arches is empty".into()));
        }
        if spec.setup.trim().is_empty() {
            return Err(invalid("setup is empty".into()));
        }
        if let Some(c) = spec
            .caches
            .iter()
            .find(|c| !c.starts_with('/') || c.split('/').any(|part| part == ".."))
        {
            return Err(invalid(format!(
                "caches: {c:?} is not an absolute path inside the sandbox"
            )));
        }
        for key in spec.env.keys() {
            let ok = !key.is_empty()
                && key
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '{' | '}'));
            if !ok {
                return Err(invalid(format!(
                    "env key {key:?} is not an environment variable name"
                )));
            }
        }
        let t = Toolchain {
            name: name.to_string(),
            origin: origin.display().to_string(),
            spec,
        };
        // Every placeholder must be known: checked now, not when a build needs it.
        for arch in t.spec.arches.clone() {
            t.resolve(&Context {
                arch,
                python: "3.11",
                glibc: DEFAULT_GLIBC,
            })
            .map_err(&invalid)?;
        }
        Ok(t)
    }

    /// The toolchain filled in for one target.
    pub fn resolve(&self, cx: &Context) -> Result<Resolved, String> {
        let fill = |what: &str, text: &str| cx.fill(text).map_err(|e| format!("{what}: {e}"));
        let mut env = Vec::new();
        for (k, v) in &self.spec.env {
            env.push((fill("env key", k)?, fill(&format!("env {k}"), v)?));
        }
        let triplet = cx.arch.multiarch();
        let cmake = format!(
            "# Written by pookie-ns for the {} toolchain, target {}.\n\
             set(CMAKE_SYSTEM_NAME Linux)\n\
             set(CMAKE_SYSTEM_PROCESSOR {})\n\
             # Programs run on the build machine; libraries, headers and packages come from the\n\
             # target's base OS.\n\
             set(CMAKE_FIND_ROOT_PATH {SYSROOT})\n\
             set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)\n\
             set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)\n\
             set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)\n\
             set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)\n\
             # Where the target's headers are (CPPFLAGS): CMake reads CFLAGS and CXXFLAGS from\n\
             # the environment, not CPPFLAGS.\n\
             string(APPEND CMAKE_C_FLAGS_INIT \" $ENV{{CPPFLAGS}}\")\n\
             string(APPEND CMAKE_CXX_FLAGS_INIT \" $ENV{{CPPFLAGS}}\")\n\
             {}",
            self.name,
            cx.arch.uname(),
            cx.arch.uname(),
            fill("cmake", &self.spec.cmake)?
        );
        Ok(Resolved {
            name: self.name.clone(),
            compiler: self.spec.compiler,
            setup: fill("setup", &self.spec.setup)?,
            cmake,
            env,
            library_path: format!(
                "{SYSROOT}/usr/lib/{triplet}:{SYSROOT}/lib/{triplet}:{SYSROOT}/usr/lib:{SYSROOT}/lib"
            ),
            caches: self
                .spec
                .caches
                .iter()
                .map(|c| fill("caches", c))
                .collect::<Result<_, _>>()?,
        })
    }
}

/// All toolchains: the embedded ones, then `<config_dir>/toolchains/*.toml`.
pub fn all(config_dir: &Path) -> Result<Vec<Toolchain>, ConfigError> {
    crate::config::definitions(config_dir, "toolchains", &EMBEDDED)?
        .into_iter()
        .map(|(name, origin, text)| Toolchain::parse(&name, &origin, &text))
        .collect()
}

/// The toolchain for a target on `arch`: the one for `compiler`; else (`None`) zig wherever it
/// serves the arch — the host's included — because it links against an old glibc
/// ([`DEFAULT_GLIBC`]: manylinux_2_17 wheels), then Debian's cross gcc for a foreign arch. With
/// `gcc` on the host's arch: none (the base OS's own gcc builds natively).
pub fn choose(
    toolchains: &[Toolchain],
    arch: Arch,
    compiler: Option<Compiler>,
) -> Option<&Toolchain> {
    let of = |c: Compiler| {
        toolchains
            .iter()
            .find(|t| t.spec.compiler == c && t.spec.arches.contains(&arch))
    };
    match compiler {
        Some(Compiler::Gcc) if arch.is_native() => None,
        Some(c) => of(c),
        None if arch.is_native() => of(Compiler::Zig),
        None => of(Compiler::Zig).or_else(|| of(Compiler::Gcc)),
    }
}

/// The arches some toolchain of `compiler` serves, for error messages.
pub fn arches_of(toolchains: &[Toolchain], compiler: Compiler) -> String {
    let mut v: Vec<&str> = toolchains
        .iter()
        .filter(|t| t.spec.compiler == compiler)
        .flat_map(|t| t.spec.arches.iter().map(|a| a.uname()))
        .collect();
    v.sort();
    v.dedup();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn builtin() -> Vec<Toolchain> {
        all(Path::new("/nonexistent")).unwrap()
    }

    fn cx(arch: Arch) -> Context<'static> {
        Context {
            arch,
            python: "3.11",
            glibc: "2.17",
        }
    }

    fn env<'a>(r: &'a Resolved, key: &str) -> &'a str {
        &r.env.iter().find(|(k, _)| k == key).unwrap().1
    }

    #[test]
    fn the_builtin_toolchains_parse_and_cover_the_foreign_arches() {
        let t = builtin();
        for arch in [
            Arch::Arm64,
            Arch::Armhf,
            Arch::Ppc64el,
            Arch::S390x,
            Arch::Riscv64,
        ] {
            // zig (glibc 2.17) by default where it serves, Debian's cross gcc elsewhere.
            let default = choose(&t, arch, None).unwrap();
            let expected = if arch == Arch::Armhf {
                "gcc-cross"
            } else {
                "zig"
            };
            assert_eq!(default.name, expected, "{arch}");
            assert_eq!(
                choose(&t, arch, Some(Compiler::Gcc)).unwrap().name,
                "gcc-cross"
            );
            assert!(choose(&t, arch, Some(Compiler::Clang)).is_some(), "{arch}");
        }
        // The host's arch: zig by default too; gcc means the base OS's own.
        assert_eq!(choose(&t, Arch::Amd64, None).unwrap().name, "zig");
        assert!(choose(&t, Arch::host(), Some(Compiler::Gcc)).is_none());
        assert_eq!(
            choose(&t, Arch::Amd64, Some(Compiler::Clang)).unwrap().name,
            "clang"
        );
        assert_eq!(
            choose(&t, Arch::Arm64, Some(Compiler::Zig)).unwrap().name,
            "zig"
        );
        assert!(choose(&t, Arch::I386, None).is_none() || Arch::host() != Arch::Amd64);
    }

    #[test]
    fn resolving_fills_in_the_target() {
        let t = builtin();
        let resolved = |arch: Arch, compiler: Option<Compiler>| {
            choose(&t, arch, compiler)
                .unwrap()
                .resolve(&cx(arch))
                .unwrap()
        };
        let expect_env = |r: &Resolved, want: &[(&str, &str)]| {
            for (var, value) in want {
                assert_eq!(env(r, var), *value, "{var}");
            }
        };
        let gcc = resolved(Arch::Arm64, Some(Compiler::Gcc));
        expect_env(
            &gcc,
            &[
                ("CC", "aarch64-linux-gnu-gcc --sysroot=/sysroot"),
                ("_PYTHON_HOST_PLATFORM", "linux-aarch64"),
                ("PYTHONPATH", CROSS_DIR),
                (
                    "CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER",
                    "aarch64-linux-gnu-gcc",
                ),
                ("_PYTHON_SYSCONFIGDATA_NAME", "${POOKIE_NS_SYSCONFIGDATA}"),
            ],
        );
        assert!(gcc.setup.contains("crossbuild-essential-arm64"));
        assert!(gcc.cmake.contains("set(CMAKE_SYSTEM_PROCESSOR aarch64)"));
        assert!(gcc
            .cmake
            .contains("set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)"));
        assert!(gcc
            .library_path
            .starts_with("/sysroot/usr/lib/aarch64-linux-gnu:"));

        expect_env(
            &resolved(Arch::Armhf, None),
            &[
                ("CC", "arm-linux-gnueabihf-gcc --sysroot=/sysroot"),
                ("CARGO_BUILD_TARGET", "armv7-unknown-linux-gnueabihf"),
            ],
        );

        let zig = resolved(Arch::Arm64, Some(Compiler::Zig));
        assert!(
            zig.setup
                .contains("\"$zig\" aarch64-linux-gnu.2.17 \"$driver\""),
            "{}",
            zig.setup
        );
        // Shell braces in the setup script are kept.
        assert!(zig.setup.contains("\"$@\""));
    }

    /// What the zig toolchain's `{driver}` program runs for `args`, with a zig that prints its
    /// arguments; `dir` holds the objects the arguments name.
    fn zig_program(dir: &Path, driver: &str, args: &[&str]) -> String {
        let zig = dir.join("zig");
        std::fs::write(&zig, "#!/bin/sh\necho \"$@\"\n").unwrap();
        std::process::Command::new("chmod")
            .arg("755")
            .arg(&zig)
            .status()
            .unwrap();
        let script = format!(
            "POOKIE_NS_ZIG={}\nPOOKIE_NS_ZIG_TARGET=aarch64-linux-gnu.2.17\nPOOKIE_NS_ZIG_DRIVER={driver}\n{ZIG_CC}",
            zig.display()
        );
        crate::shell::output_ok(
            "zig's compiler wrapper",
            std::process::Command::new("sh")
                .arg("-c")
                .arg(script)
                .arg("sh")
                .args(args)
                .current_dir(dir),
        )
        .trim()
        .to_string()
    }

    #[test]
    fn zig_compiles_cpp_whichever_program_is_called_and_never_in_debug_mode() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // A C object, and a C++ one that uses libc++'s std::string and operator new.
        std::fs::write(d.join("c.o"), b"\x7fELF\0PyInit_fastmath\0memcpy\0").unwrap();
        std::fs::write(
            d.join("cxx.o"),
            b"\x7fELF\0_ZNSt3__112basic_stringIcNS_11char_traitsIcEE\0_Znwm\0",
        )
        .unwrap();
        let base = "-target aarch64-linux-gnu.2.17 -O2 -fno-sanitize=undefined";
        for (driver, args, want) in [
            // setuptools (bookworm's) compiles C++ through $CC: zig c++, with libc++'s headers.
            ("cc", "-c x.cpp -o x.o -std=c++11", "c++"),
            ("cc", "-c src/a.cc -o a.o", "c++"),
            ("cc", "-x c++ -c conftest -o c.o", "c++"),
            ("cc", "-xc++ -E conftest", "c++"),
            ("cc", "-c x.c -o x.o", "cc"),
            // Links: C objects stay C (no libc++), C++ objects get zig's libc++.
            ("cc", "-shared c.o -o x.so", "cc"),
            ("cc", "-shared c.o cxx.o -o x.so", "c++"),
            ("cc", "-c c.c -o cxx.o", "cc"),
            ("c++", "-shared c.o -o x.so", "c++"),
            ("c++", "-c x.c", "c++"),
        ] {
            let argv: Vec<&str> = args.split(' ').collect();
            assert_eq!(
                zig_program(d, driver, &argv),
                format!("{want} {base} {args}"),
                "{driver} {args}"
            );
        }
        // The build's own -O comes after -O2, so it wins (zig: the last -O).
        let run = zig_program(d, "cc", &["-O0", "-g", "-c", "x.c"]);
        assert!(
            run.ends_with("-O2 -fno-sanitize=undefined -O0 -g -c x.c"),
            "{run}"
        );
    }

    #[test]
    fn the_zig_setup_is_a_shell_script_with_the_program_inside() {
        let zig = builtin().into_iter().find(|t| t.name == "zig").unwrap();
        let r = zig.resolve(&cx(Arch::Arm64)).unwrap();
        assert!(r.setup.contains(ZIG_CC), "{}", r.setup);
        assert!(r.setup.contains("POOKIE_NS_ZIG_TARGET=%s"), "{}", r.setup);
        crate::shell::output_ok(
            "zig's setup",
            std::process::Command::new("sh").args(["-n", "-c", &r.setup]),
        );
        // No toolchain sets CFLAGS or CXXFLAGS: setuptools would take them instead of the
        // interpreter's -DNDEBUG -O2. The target's headers come through CPPFLAGS.
        for t in builtin() {
            let r = t.resolve(&cx(Arch::Arm64)).unwrap();
            for (k, v) in &r.env {
                assert!(k != "CFLAGS" && k != "CXXFLAGS", "{}: {k}={v}", t.name);
            }
            assert!(env(&r, "CPPFLAGS").contains("-I/sysroot/usr/include/python3.11"));
            assert!(r.cmake.contains("$ENV{CPPFLAGS}"), "{}", r.cmake);
        }
    }

    #[test]
    fn zig_glibc_is_the_policy_s_raised_to_what_zig_provides() {
        assert_eq!(target_glibc(Arch::Arm64, (2, 17)), "2.17");
        assert_eq!(target_glibc(Arch::S390x, (2, 17)), "2.17");
        assert_eq!(target_glibc(Arch::Ppc64el, (2, 17)), "2.19");
        assert_eq!(target_glibc(Arch::Ppc64el, (2, 28)), "2.28");
        assert_eq!(target_glibc(Arch::Riscv64, (2, 31)), "2.31");
        assert_eq!(target_glibc(Arch::Riscv64, (2, 17)), "2.27");
        assert_eq!(target_glibc(Arch::Amd64, (2, 5)), "2.5");
    }

    #[test]
    fn placeholders() {
        let c = cx(Arch::Arm64);
        assert_eq!(c.fill("{triplet}-gcc").unwrap(), "aarch64-linux-gnu-gcc");
        assert_eq!(c.fill("${HOME} {x y} {").unwrap(), "${HOME} {x y} {");
        assert_eq!(
            c.fill("int f() { return 0; }").unwrap(),
            "int f() { return 0; }"
        );
        assert!(c.fill("{nope}").unwrap_err().contains("{nope}"));
        assert_eq!(
            c.fill("{rust_target_env}").unwrap(),
            "AARCH64_UNKNOWN_LINUX_GNU"
        );
    }

    #[test]
    fn bad_toolchains_are_refused_with_the_file_named() {
        let p = Path::new("/etc/pookie-ns/toolchains/x.toml");
        let base =
            "description = \"d\"\ncompiler = \"gcc\"\narches = [\"arm64\"]\nsetup = \"true\"\n";
        assert!(Toolchain::parse("x", p, &format!("{base}[env]\nCC = \"cc\"\n")).is_ok());
        let e = Toolchain::parse("x", p, &format!("{base}[env]\nCC = \"{{cc}}\"\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("x.toml") && e.contains("{cc}"), "{e}");
        let e = Toolchain::parse("x", p, "compiler = \"tcc\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("x.toml"), "{e}");
        let e = Toolchain::parse("x", p, &format!("{base}[env]\n\"A B\" = \"1\"\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("not an environment variable name"), "{e}");
    }
}
