//! Build targets: a CPU architecture, a CPython version and, optionally, the manylinux or
//! musllinux policy the wheel must meet. Parses the platform tags users write
//! (`manylinux_2_17_aarch64`, `manylinux2014_x86_64`, `musllinux_1_2_x86_64`, `linux_armv7l`, or
//! plain `aarch64`), names each target the way cibuildwheel does (`cp311-manylinux_aarch64`,
//! `cp311-musllinux_x86_64`), and matches cibuildwheel's `build`/`skip` selectors against those
//! names.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::arch::Arch;

/// What a user asked for with `--target` (or `archs` in pyproject.toml), before Python versions
/// are paired with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub arch: Arch,
    /// `manylinux_2_17` (or `musllinux_1_2`) when the tag named a policy; `None` for a plain
    /// arch or `linux_<arch>`.
    pub policy: Option<String>,
}

/// The musllinux policy of cibuildwheel's default images (`musllinux_1_2`): what
/// `musllinux_<arch>` and a musllinux identifier stand for.
pub const DEFAULT_MUSLLINUX: &str = "musllinux_1_2";

/// The C library a policy is for: glibc (manylinux) or musl (musllinux).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Libc {
    Glibc,
    Musl,
}

/// The legacy manylinux aliases and the glibc version each one stands for.
const LEGACY_ALIASES: [(&str, &str); 3] = [
    ("manylinux1", "manylinux_2_5"),
    ("manylinux2010", "manylinux_2_12"),
    ("manylinux2014", "manylinux_2_17"),
];

/// Parses a platform tag or an arch name (`uname -m` or Debian spelling).
pub fn parse_platform(tag: &str) -> Result<Platform, String> {
    let lower = tag.trim().to_ascii_lowercase();
    let unknown = || {
        format!(
            "target {tag:?} is not a platform tag or an architecture; write e.g. x86_64, aarch64, \
             armv7l, ppc64le, s390x, riscv64, manylinux_2_17_aarch64, manylinux2014_x86_64 or \
             musllinux_1_2_x86_64 (architectures: {})",
            Arch::names()
        )
    };
    if let Ok(arch) = lower.parse::<Arch>() {
        return Ok(Platform { arch, policy: None });
    }
    if let Some(rest) = lower.strip_prefix("linux_") {
        let arch = rest.parse::<Arch>().map_err(|_| unknown())?;
        return Ok(Platform { arch, policy: None });
    }
    for (alias, policy) in LEGACY_ALIASES {
        if let Some(rest) = lower.strip_prefix(alias).and_then(|r| r.strip_prefix('_')) {
            let arch = rest.parse::<Arch>().map_err(|_| unknown())?;
            return Ok(Platform {
                arch,
                policy: Some(policy.to_string()),
            });
        }
    }
    if let Some(rest) = lower.strip_prefix("musllinux_") {
        // cibuildwheel's `musllinux_<arch>`: its default policy.
        if let Ok(arch) = rest.parse::<Arch>() {
            return Ok(Platform {
                arch,
                policy: Some(DEFAULT_MUSLLINUX.to_string()),
            });
        }
    }
    for family in ["manylinux", "musllinux"] {
        let Some(rest) = lower.strip_prefix(family).and_then(|r| r.strip_prefix('_')) else {
            continue;
        };
        // <family>_<major>_<minor>_<arch>; the arch itself may contain '_' (x86_64).
        let mut parts = rest.splitn(3, '_');
        let (major, minor, arch) = (parts.next(), parts.next(), parts.next());
        if let (Some(major), Some(minor), Some(arch)) = (major, minor, arch) {
            let numeric = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
            if numeric(major) && numeric(minor) {
                let arch = arch.parse::<Arch>().map_err(|_| unknown())?;
                return Ok(Platform {
                    arch,
                    policy: Some(format!("{family}_{major}_{minor}")),
                });
            }
        }
    }
    Err(unknown())
}

/// The C library of a policy and the version it stands for: `manylinux_2_17` (or
/// `manylinux2014`) → (glibc, 2.17), `musllinux_1_2` → (musl, 1.2).
pub fn policy_version(policy: &str) -> Option<(Libc, (u32, u32))> {
    let policy = LEGACY_ALIASES
        .iter()
        .find(|(alias, _)| *alias == policy)
        .map_or(policy, |(_, p)| p);
    let (libc, rest) = if let Some(rest) = policy.strip_prefix("manylinux_") {
        (Libc::Glibc, rest)
    } else {
        (Libc::Musl, policy.strip_prefix("musllinux_")?)
    };
    let (major, minor) = rest.split_once('_')?;
    Some((libc, (major.parse().ok()?, minor.parse().ok()?)))
}

/// True for a musllinux policy (`musllinux_1_2`).
pub fn is_musllinux(policy: &str) -> bool {
    policy.starts_with("musllinux_")
}

/// The glibc version a manylinux policy stands for: `manylinux_2_17` (or its alias
/// `manylinux2014`) → (2, 17).
pub fn policy_glibc(policy: &str) -> Option<(u32, u32)> {
    match policy_version(policy)? {
        (Libc::Glibc, version) => Some(version),
        (Libc::Musl, _) => None,
    }
}

/// The policy a wheel gets by default where the toolchain reaches it (zig links against its
/// glibc): `manylinux_2_17` (manylinux2014, cibuildwheel's default images), which
/// auditwheel 6.4.2 defines for x86_64, i686, aarch64, armv7l, ppc64le and s390x.
pub const DEFAULT_POLICY: &str = "manylinux_2_17";

/// The oldest manylinux policy auditwheel 6.4.2 (the pinned repairer) defines for an arch, from
/// its `manylinux-policy.json`: `manylinux_2_5` for x86_64 and i686, `manylinux_2_17` for
/// aarch64, armv7l, ppc64le and s390x (manylinux2014 was their first), `manylinux_2_31` for
/// riscv64 (whose glibc port starts at 2.27; no manylinux2014 exists for it).
pub fn oldest_policy(arch: Arch) -> &'static str {
    match arch {
        Arch::Amd64 | Arch::I386 => "manylinux_2_5",
        Arch::Arm64 | Arch::Armhf | Arch::Ppc64el | Arch::S390x => "manylinux_2_17",
        Arch::Riscv64 => "manylinux_2_31",
    }
}

/// The policy a target that names none is built for (the glibc a zig build links against) and
/// repaired to: [`DEFAULT_POLICY`], or the arch's oldest policy where that is newer (riscv64:
/// `manylinux_2_31`).
pub fn default_policy(arch: Arch) -> &'static str {
    let oldest = oldest_policy(arch);
    if policy_glibc(oldest) > policy_glibc(DEFAULT_POLICY) {
        oldest
    } else {
        DEFAULT_POLICY
    }
}

/// One target of a build: what the report, the logs and the selectors call it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    pub arch: Arch,
    /// `3.11`
    pub python: String,
    pub policy: Option<String>,
}

impl Target {
    /// True for a musllinux target (built against musl, in a musllinux image).
    pub fn is_musllinux(&self) -> bool {
        self.policy.as_deref().is_some_and(is_musllinux)
    }

    /// cibuildwheel's build identifier: `cp311-manylinux_aarch64`, `cp311-musllinux_x86_64`.
    pub fn identifier(&self) -> String {
        format!(
            "cp{}-{}_{}",
            self.python.replace('.', ""),
            self.family(),
            self.arch.uname()
        )
    }

    /// `manylinux` or `musllinux`.
    pub fn family(&self) -> &'static str {
        if self.is_musllinux() {
            "musllinux"
        } else {
            "manylinux"
        }
    }

    /// What reports, logs and output directories call it: its identifier
    /// (`cp311-manylinux_aarch64`), or `cp311-manylinux_2_28_aarch64` when a policy was asked
    /// for (two targets may share an identifier and differ in policy).
    pub fn name(&self) -> String {
        format!("cp{}-{}", self.python.replace('.', ""), self.platform_tag())
    }

    /// The platform asked for, as the end of [`Target::name`]: `manylinux_2_28_aarch64` when a
    /// policy was named, otherwise cibuildwheel's `manylinux_aarch64` (the policy is the
    /// default one the toolchain reaches, or the oldest the wheel's symbols allow; the
    /// delivered wheel's tag says which).
    pub fn platform_tag(&self) -> String {
        match &self.policy {
            Some(p) => format!("{p}_{}", self.arch.uname()),
            None => format!("manylinux_{}", self.arch.uname()),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// Why a free-threaded CPython (`3.14t`, `cp314t`) cannot be built: no Debian suite ships one.
/// `apt-cache search` over forky and sid (2026-11-29) lists python3.13, 3.14 and 3.15 with their
/// -dev, -venv, -dbg and -nopie builds, and no free-threaded (`python3.14t`, `-nogil`) one.
pub const NO_FREE_THREADING: &str = "free-threaded CPython builds (cp314t) are not available: no \
     Debian suite ships a free-threaded interpreter (forky and sid have python3.13, 3.14 and 3.15 \
     with the GIL only); build for the default interpreter (e.g. --python 3.14)";

/// Checks a `--python` value: `3.11` (also accepted: `cp311`, `311`). A free-threaded version
/// (`3.14t`) is refused with [`NO_FREE_THREADING`].
pub fn parse_python(s: &str) -> Result<String, String> {
    let t = s.trim().trim_start_matches("cp");
    if let Some(v) = t.strip_suffix('t') {
        if parse_python(v).is_ok() {
            return Err(format!("python {s:?}: {NO_FREE_THREADING}"));
        }
    }
    let version = if t.contains('.') {
        t.to_string()
    } else if t.len() >= 2 && t.bytes().all(|b| b.is_ascii_digit()) {
        format!("{}.{}", &t[..1], &t[1..])
    } else {
        String::new()
    };
    let mut parts = version.split('.');
    let ok = parts.next().is_some_and(|m| m.parse::<u32>().is_ok())
        && parts.next().is_some_and(|m| m.parse::<u32>().is_ok())
        && parts.next().is_none();
    if ok {
        Ok(version)
    } else {
        Err(format!(
            "python {s:?} is not a CPython version; write it as 3.11 (or cp311)"
        ))
    }
}

/// cibuildwheel's selectors: whitespace-separated shell-style patterns (`*`, `?`, `[...]`,
/// `[!...]`) matched against build identifiers, with `{cp39,cp311}-*` and `cp3{10..12}-*`
/// alternatives as cibuildwheel's bracex expands them, each matched as Python's `fnmatch`
/// matches it ([`crate::fnmatch`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector {
    patterns: Vec<String>,
    /// The patterns' brace expansions.
    expanded: Vec<String>,
}

impl Selector {
    pub fn parse(text: &str) -> Result<Selector, String> {
        let mut patterns = Vec::new();
        let mut expanded = Vec::new();
        for word in text.split_whitespace() {
            check_pattern(word)?;
            expanded.extend(crate::fnmatch::expand_braces(word)?);
            patterns.push(word.to_string());
        }
        Ok(Selector { patterns, expanded })
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    pub fn matches(&self, identifier: &str) -> bool {
        self.expanded
            .iter()
            .any(|p| crate::fnmatch::fnmatch(identifier, p))
    }

    /// True when a pattern spells out `word` (`*-musllinux_*` names `musllinux`; `*` does not).
    pub fn names(&self, word: &str) -> bool {
        self.patterns.iter().any(|p| p.contains(word))
    }

    /// The patterns as written.
    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }
}

/// The characters of build identifiers, wildcards and alternatives; anything else (a `/`, a
/// `;`) is a mistake, said before it is matched.
fn check_pattern(p: &str) -> Result<(), String> {
    match p
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || "*?_-.![]{},^".contains(c)))
    {
        Some(c) => Err(format!(
            "selector {p:?}: character {c:?} is not allowed (use identifiers like \
             cp311-manylinux_aarch64 with * ? [...] {{a,b}} wildcards)"
        )),
        None => balanced(p),
    }
}

/// An unclosed `[` or an unbalanced brace is a typo here: cibuildwheel would read it as a
/// literal character, which no identifier contains, so the selector would match nothing.
fn balanced(p: &str) -> Result<(), String> {
    let mut depth = 0i32;
    for c in p.chars() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            _ => {}
        }
        if depth < 0 {
            break;
        }
    }
    if depth != 0 {
        return Err(format!(
            "selector {p:?}: unbalanced braces (write alternatives as {{cp39,cp311}}-*)"
        ));
    }
    let chars: Vec<char> = p.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '[' {
            let mut j = i + 1;
            if chars.get(j) == Some(&'!') {
                j += 1;
            }
            if chars.get(j) == Some(&']') {
                j += 1;
            }
            match (j..chars.len()).find(|&k| chars[k] == ']') {
                Some(k) => i = k,
                None => {
                    return Err(format!(
                        "selector {p:?}: unclosed [ (write a class as [0-9] or [!t])"
                    ))
                }
            }
        }
        i += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platform_tags_and_arch_names_parse() {
        let p = |s: &str| parse_platform(s).unwrap();
        assert_eq!(p("x86_64").arch, Arch::Amd64);
        assert_eq!(p("aarch64").policy, None);
        assert_eq!(p("arm64").arch, Arch::Arm64);
        assert_eq!(p("armv7l").arch, Arch::Armhf);
        assert_eq!(p("ppc64le").arch, Arch::Ppc64el);
        assert_eq!(p("linux_s390x").arch, Arch::S390x);
        assert_eq!(
            p("manylinux_2_17_x86_64"),
            Platform {
                arch: Arch::Amd64,
                policy: Some("manylinux_2_17".into())
            }
        );
        assert_eq!(
            p("manylinux2014_aarch64").policy.as_deref(),
            Some("manylinux_2_17")
        );
        assert_eq!(p("manylinux_2_28_riscv64").arch, Arch::Riscv64);
        assert_eq!(p("MANYLINUX_2_17_ARMV7L").arch, Arch::Armhf);
        assert_eq!(
            p("musllinux_1_1_aarch64"),
            Platform {
                arch: Arch::Arm64,
                policy: Some("musllinux_1_1".into())
            }
        );
        assert_eq!(
            p("musllinux_x86_64").policy.as_deref(),
            Some(DEFAULT_MUSLLINUX)
        );
    }

    #[test]
    fn policies_name_their_libc_and_version() {
        assert_eq!(
            policy_version("manylinux2014"),
            Some((Libc::Glibc, (2, 17)))
        );
        assert_eq!(policy_version("musllinux_1_2"), Some((Libc::Musl, (1, 2))));
        assert_eq!(policy_glibc("musllinux_1_2"), None);
        assert_eq!(policy_version("linux"), None);
        assert!(is_musllinux("musllinux_1_1") && !is_musllinux("manylinux_2_28"));
    }

    #[test]
    fn bad_platforms_say_what_is_accepted() {
        for bad in [
            "sparc",
            "manylinux_2_17",
            "manylinux_x_17_x86_64",
            "manylinux_2_17_mips",
            "linux_",
            "",
            "musllinux_1_2",
            "musllinux_x_2_x86_64",
            "musllinux_mips",
        ] {
            let e = parse_platform(bad).unwrap_err();
            assert!(e.contains("manylinux_2_17_aarch64"), "{bad}: {e}");
        }
    }

    #[test]
    fn identifiers_and_tags() {
        let t = Target {
            arch: Arch::Arm64,
            python: "3.11".into(),
            policy: None,
        };
        assert_eq!(t.identifier(), "cp311-manylinux_aarch64");
        assert_eq!(t.platform_tag(), "manylinux_aarch64");
        assert_eq!(t.name(), "cp311-manylinux_aarch64");
        let t = Target {
            arch: Arch::Armhf,
            python: "3.9".into(),
            policy: Some("manylinux_2_17".into()),
        };
        assert_eq!(t.identifier(), "cp39-manylinux_armv7l");
        assert_eq!(t.platform_tag(), "manylinux_2_17_armv7l");
        let t = Target {
            arch: Arch::Amd64,
            python: "3.11".into(),
            policy: Some("musllinux_1_2".into()),
        };
        assert!(t.is_musllinux());
        assert_eq!(t.identifier(), "cp311-musllinux_x86_64");
        assert_eq!(t.name(), "cp311-musllinux_1_2_x86_64");
    }

    #[test]
    fn python_versions() {
        assert_eq!(parse_python("3.11").unwrap(), "3.11");
        assert_eq!(parse_python("cp39").unwrap(), "3.9");
        assert_eq!(parse_python("313").unwrap(), "3.13");
        for bad in ["3", "three", "3.11.2", "cp", "3.x"] {
            assert!(parse_python(bad).is_err(), "{bad}");
        }
        // Free-threaded builds: refused with the reason, not as a malformed version.
        for ft in ["3.14t", "cp314t", "314t"] {
            let e = parse_python(ft).unwrap_err();
            assert!(
                e.contains("no Debian suite ships a free-threaded"),
                "{ft}: {e}"
            );
        }
        assert!(!parse_python("3.x").unwrap_err().contains("free-threaded"));
    }

    /// The six arches wheels are built for (every [`Arch`] but i386).
    const SIX: [Arch; 6] = [
        Arch::Amd64,
        Arch::Arm64,
        Arch::Armhf,
        Arch::Ppc64el,
        Arch::S390x,
        Arch::Riscv64,
    ];

    #[test]
    fn default_policies_per_arch() {
        // manylinux2014 wherever auditwheel 6.4.2 defines it; riscv64's first policy is 2_31.
        for arch in SIX.into_iter().filter(|a| *a != Arch::Riscv64) {
            assert_eq!(default_policy(arch), "manylinux_2_17", "{arch}");
        }
        assert_eq!(default_policy(Arch::Riscv64), "manylinux_2_31");
        assert_eq!(oldest_policy(Arch::Amd64), "manylinux_2_5");
        assert_eq!(policy_glibc(default_policy(Arch::Riscv64)), Some((2, 31)));
        assert_eq!(policy_glibc("manylinux2014"), Some((2, 17)));
        assert_eq!(policy_glibc("linux"), None);
    }

    #[test]
    fn identifiers_cover_python_arch_and_policy() {
        // Six arches × the Pythons: distinct identifiers, matched by selectors per axis; a
        // policy changes the name (output dir, report), not the identifier.
        let mut ids = Vec::new();
        for arch in SIX {
            for python in ["3.9", "3.11", "3.13", "3.14", "3.15"] {
                let t = Target {
                    arch,
                    python: python.into(),
                    policy: None,
                };
                assert_eq!(t.name(), t.identifier());
                let named = Target {
                    policy: Some("manylinux_2_28".into()),
                    ..t.clone()
                };
                assert_eq!(named.identifier(), t.identifier());
                assert_ne!(named.name(), t.name());
                ids.push(t.identifier());
            }
        }
        let mut unique = ids.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), 30);
        let count = |sel: &str| {
            let s = Selector::parse(sel).unwrap();
            ids.iter().filter(|i| s.matches(i)).count()
        };
        assert_eq!(count("*-manylinux_riscv64"), 5);
        assert_eq!(count("cp314-*"), 6);
        assert_eq!(count("cp31[45]-manylinux_{ppc64le,s390x}"), 4);
        assert!(ids.contains(&"cp314-manylinux_riscv64".to_string()));
    }

    #[test]
    fn selectors_match_like_cibuildwheel() {
        let s = Selector::parse("cp311-* cp39-manylinux_aarch64").unwrap();
        assert!(s.matches("cp311-manylinux_x86_64"));
        assert!(s.matches("cp39-manylinux_aarch64"));
        assert!(!s.matches("cp39-manylinux_x86_64"));
        assert!(!s.matches("cp313-manylinux_x86_64"));

        let s = Selector::parse("*-manylinux_aarch64").unwrap();
        assert!(s.matches("cp311-manylinux_aarch64"));
        assert!(!s.matches("cp311-manylinux_x86_64"));

        let s = Selector::parse("cp3?-* *_[a-c]arch64 *armv7[!x]").unwrap();
        assert!(s.matches("cp39-manylinux_x86_64"));
        assert!(!s.matches("cp311-manylinux_x86_64"));
        assert!(s.matches("cp311-manylinux_aarch64"));
        assert!(s.matches("cp311-manylinux_armv7l"));

        let s = Selector::parse("{cp39,cp313}-manylinux_*").unwrap();
        assert!(s.matches("cp39-manylinux_ppc64le"));
        assert!(s.matches("cp313-manylinux_s390x"));
        assert!(!s.matches("cp311-manylinux_s390x"));

        assert!(Selector::parse("").unwrap().is_empty());
        assert!(Selector::parse("*").unwrap().matches("anything"));
        assert!(Selector::parse("**x").unwrap().matches("abx"));
        assert!(!Selector::parse("a*b").unwrap().matches("acbd"));
    }

    #[test]
    fn bad_selectors_are_refused() {
        for bad in ["cp311-[x86", "{cp39", "cp39}", "cp311/x", "cp311;rm"] {
            assert!(Selector::parse(bad).is_err(), "{bad}");
        }
    }
}
