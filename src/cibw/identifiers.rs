//! Build identifiers (`cp311-manylinux_aarch64`): what `--only` builds, an identifier's Python
//! version, and whether that version meets `requires-python`.

/// What `--only IDENTIFIER` builds: `cp311-manylinux_aarch64` → ("3.11", aarch64),
/// `cp311-musllinux_x86_64` → ("3.11", musllinux_1_2 x86_64).
pub fn split_identifier(identifier: &str) -> Result<(String, crate::target::Platform), String> {
    let bad = |why: &str| {
        format!(
            "--only {identifier:?}: {why}; write an identifier as --print-build-identifiers \
             prints it, e.g. cp311-manylinux_x86_64"
        )
    };
    let (py, plat) = identifier
        .split_once('-')
        .ok_or_else(|| bad("not PYTHON-PLATFORM"))?;
    if !py.starts_with("cp") || py.ends_with('t') {
        return Err(bad(
            "pookie-ns's base OSes provide CPython only (no free-threaded, PyPy or GraalPy build)",
        ));
    }
    let (major, minor) = identifier_python(identifier).ok_or_else(|| bad("no Python version"))?;
    let (policy, arch) = if let Some(arch) = plat.strip_prefix("manylinux_") {
        (None, arch)
    } else if let Some(arch) = plat.strip_prefix("musllinux_") {
        (Some(crate::target::DEFAULT_MUSLLINUX.to_string()), arch)
    } else {
        return Err(bad(
            "only manylinux_<arch> and musllinux_<arch> identifiers are built here",
        ));
    };
    let arch = arch
        .parse::<crate::arch::Arch>()
        .map_err(|_| bad("unknown arch"))?;
    Ok((
        format!("{major}.{minor}"),
        crate::target::Platform { arch, policy },
    ))
}

/// The Python version of an identifier: `cp311-manylinux_x86_64` → (3, 11).
pub fn identifier_python(identifier: &str) -> Option<(u32, u32)> {
    let tag = identifier.split('-').next()?.split('_').next()?;
    let digits = tag
        .strip_prefix("cp")
        .or_else(|| tag.strip_prefix("pp"))
        .or_else(|| tag.strip_prefix("gp"))?
        .trim_end_matches('t');
    if digits.len() < 2 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((digits[..1].parse().ok()?, digits[1..].parse().ok()?))
}

/// True when Python `major.minor` meets a PEP 440 specifier set (`>=3.9, !=3.10.*`), tested as
/// cibuildwheel tests it: with the version `major.minor.99` ([`crate::pep440`]).
pub fn python_matches(spec: &str, (major, minor): (u32, u32)) -> Result<bool, String> {
    Ok(crate::pep440::Specifier::parse(spec)?.admits_minor(&format!("{major}.{minor}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cibw::testing::ok;

    #[test]
    fn requires_python_filters_like_cibuildwheel() {
        let p = |s: &str, v| python_matches(s, v).unwrap();
        assert!(p(">=3.9", (3, 9)));
        assert!(!p(">=3.10", (3, 9)));
        assert!(p(">=3.8,<3.12", (3, 11)));
        assert!(!p(">=3.8,<3.12", (3, 12)));
        assert!(!p("<3.11", (3, 11)), "3.11.99 is not < 3.11");
        assert!(p("<=3.11", (3, 10)));
        assert!(!p("<=3.11", (3, 11)), "3.11.99 > 3.11");
        assert!(p("==3.11.*", (3, 11)));
        assert!(!p("!=3.10.*", (3, 10)));
        assert!(p("~=3.9", (3, 13)));
        assert!(!p("~=3.9", (4, 0)));
        assert!(p(">3.9", (3, 9)), "3.9.99 > 3.9");
        assert!(python_matches(">=three", (3, 9)).is_err());

        let r = ok(
            "[project]\nname = \"x\"\nrequires-python = \">=3.11\"\n",
            &[],
        );
        assert!(!r.selected("cp39-manylinux_x86_64"));
        assert!(r.selected("cp311-manylinux_x86_64"));
        assert!(r.selected("cp314t-manylinux_x86_64"));
        // The environment variable wins over [project].
        let r = ok(
            "[project]\nrequires-python = \">=3.11\"\n",
            &[("CIBW_PROJECT_REQUIRES_PYTHON", ">=3.8,<3.10")],
        );
        assert!(r.selected("cp39-manylinux_x86_64"));
        assert!(!r.selected("cp311-manylinux_x86_64"));
        assert_eq!(
            identifier_python("gp312_250-manylinux_x86_64"),
            Some((3, 12))
        );
        assert_eq!(identifier_python("pp310-manylinux_x86_64"), Some((3, 10)));
    }

    #[test]
    fn only_identifiers() {
        use crate::arch::Arch;
        use crate::target::Platform;
        assert_eq!(
            split_identifier("cp311-manylinux_aarch64").unwrap(),
            (
                "3.11".to_string(),
                Platform {
                    arch: Arch::Arm64,
                    policy: None
                }
            )
        );
        assert_eq!(
            split_identifier("cp39-musllinux_x86_64").unwrap(),
            (
                "3.9".to_string(),
                Platform {
                    arch: Arch::Amd64,
                    policy: Some("musllinux_1_2".into())
                }
            )
        );
        for bad in [
            "cp311",
            "pp311-manylinux_x86_64",
            "cp314t-manylinux_x86_64",
            "cp311-musllinux_sparc",
            "cp311-macosx_arm64",
            "cp311-manylinux_sparc",
        ] {
            assert!(split_identifier(bad).unwrap_err().contains(bad), "{bad}");
        }
    }
}
