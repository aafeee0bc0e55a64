//! The wheel a build left, checked on the host: one wheel, for the target's arch, with a tag
//! that meets the target's policy and that PyPI accepts; and a wheel file name's platform tag.

use std::path::{Path, PathBuf};

use super::OUT_INSIDE;
use crate::arch::Arch;
use crate::target::{policy_version, Libc, Target};

/// The one wheel the build left in the wheelhouse, checked to be for the target's arch, and —
/// unless the project opted out of repairs (`unrepaired`) — to carry a tag PyPI accepts.
pub(super) fn harvest(
    wheelhouse: &Path,
    target: &Target,
    unrepaired: bool,
) -> std::result::Result<PathBuf, String> {
    let arch = target.arch;
    let mut wheels: Vec<String> = std::fs::read_dir(wheelhouse)
        .map_err(|e| format!("{}: {e}", wheelhouse.display()))?
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.ends_with(".whl"))
        .collect();
    wheels.sort();
    let wheel = match wheels.as_slice() {
        [] => {
            return Err(format!(
                "the build command succeeded but left no *.whl in {OUT_INSIDE}"
            ))
        }
        [one] => one.clone(),
        many => {
            return Err(format!(
                "the build left {} wheels in {OUT_INSIDE} ({}); build one (pip wheel --no-deps)",
                many.len(),
                many.join(", ")
            ))
        }
    };
    let platform = wheel_platform(&wheel)
        .ok_or_else(|| format!("{wheel} is not a wheel file name (NAME-VER-PY-ABI-PLAT.whl)"))?;
    let fits = platform == "any"
        || platform
            .split('.')
            .all(|p| p.ends_with(&format!("_{}", arch.uname())));
    if !fits {
        return Err(format!(
            "{wheel} is tagged for {platform}, not for {}: the build did not run for the target",
            arch.uname()
        ));
    }
    if let Some(policy) = &target.policy {
        // A wheel for an older libc than asked meets the policy too (a cross build's repair
        // tags it with the best policy it meets); a wheel for the other libc does not.
        let (libc, wanted) = policy_version(policy).unwrap_or((Libc::Glibc, (0, 0)));
        let tags: Vec<(Libc, (u32, u32))> = platform
            .split('.')
            .filter_map(|p| tag_version(p, arch))
            .collect();
        if !tags.iter().any(|(l, v)| *l == libc && *v <= wanted) {
            let other = if tags.iter().any(|(l, _)| *l != libc) {
                match libc {
                    Libc::Glibc => "it was built against musl, not glibc",
                    Libc::Musl => {
                        "it was built against glibc, not musl (a musllinux target \
                                   builds in a musllinux image)"
                    }
                }
            } else {
                match libc {
                    Libc::Glibc => {
                        "its symbols need a newer glibc (the build log lists them, after \
                         `auditwheel show`); build with --compiler zig for an old glibc, or ask \
                         for a newer policy"
                    }
                    Libc::Musl => {
                        "its symbols need a newer musl (see `auditwheel show` in the build log); \
                         ask for a newer policy"
                    }
                }
            };
            return Err(format!(
                "{wheel} is tagged {platform}, not {policy}_{}: {other}",
                arch.uname()
            ));
        }
    }
    if !unrepaired && platform.split('.').any(|p| p.starts_with("linux_")) {
        return Err(format!(
            "{wheel} is tagged {platform}, which PyPI refuses: the repair command left it \
             unrepaired (set repair-wheel-command = \"\" to deliver such a wheel on purpose)"
        ));
    }
    Ok(wheelhouse.join(wheel))
}

/// The libc and its version of a manylinux or musllinux platform tag for `arch`:
/// `manylinux_2_17_aarch64` → (glibc, 2.17), `musllinux_1_2_x86_64` → (musl, 1.2).
fn tag_version(tag: &str, arch: Arch) -> Option<(Libc, (u32, u32))> {
    policy_version(tag.strip_suffix(&format!("_{}", arch.uname()))?)
}

/// The platform tag of a wheel file name.
pub fn wheel_platform(name: &str) -> Option<&str> {
    let stem = name.strip_suffix(".whl")?;
    let parts: Vec<&str> = stem.split('-').collect();
    (parts.len() == 5 || parts.len() == 6).then(|| parts[parts.len() - 1])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::policy_glibc;

    #[test]
    fn wheel_platforms() {
        assert_eq!(
            wheel_platform("fastmath-0.1.0-cp311-cp311-linux_aarch64.whl"),
            Some("linux_aarch64")
        );
        assert_eq!(
            wheel_platform("x-1-1-cp39-cp39-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"),
            Some("manylinux_2_17_x86_64.manylinux2014_x86_64")
        );
        assert_eq!(wheel_platform("x-1-py3-none-any.whl"), Some("any"));
        assert_eq!(wheel_platform("nonsense.whl"), None);
        assert_eq!(wheel_platform("x-1-py3-none-any.tar.gz"), None);
    }

    #[test]
    fn harvest_checks_the_count_the_arch_and_the_policy() {
        let t = |arch, policy: Option<&str>| Target {
            arch,
            python: "3.11".into(),
            policy: policy.map(str::to_string),
        };
        let aw = false;
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("m-1-cp311-cp311-linux_aarch64.whl"), "").unwrap();
        // No linux_* wheel is delivered unless the project opted out of repairs.
        let e = harvest(d.path(), &t(Arch::Arm64, None), aw).unwrap_err();
        assert!(e.contains("PyPI refuses"), "{e}");
        let e = harvest(d.path(), &t(Arch::Arm64, None), false).unwrap_err();
        assert!(e.contains("PyPI refuses"), "{e}");
        assert!(harvest(d.path(), &t(Arch::Arm64, None), true).is_ok());
        let e = harvest(d.path(), &t(Arch::Arm64, Some("manylinux_2_17")), aw).unwrap_err();
        assert!(e.contains("not manylinux_2_17_aarch64"), "{e}");
        std::fs::remove_file(d.path().join("m-1-cp311-cp311-linux_aarch64.whl")).unwrap();
        std::fs::write(
            d.path()
                .join("m-1-cp311-cp311-manylinux_2_17_aarch64.manylinux2014_aarch64.whl"),
            "",
        )
        .unwrap();
        assert!(harvest(d.path(), &t(Arch::Arm64, Some("manylinux_2_17")), aw).is_ok());
        // An older policy than asked meets it; a newer one does not, and says why.
        assert!(harvest(d.path(), &t(Arch::Arm64, Some("manylinux_2_28")), aw).is_ok());
        assert!(
            harvest(d.path(), &t(Arch::Arm64, Some("manylinux_2_5")), aw)
                .unwrap_err()
                .contains("newer glibc")
        );
        // A glibc wheel does not meet a musllinux policy, and says why.
        assert!(
            harvest(d.path(), &t(Arch::Arm64, Some("musllinux_1_2")), aw)
                .unwrap_err()
                .contains("built against glibc, not musl")
        );
        assert_eq!(policy_glibc("manylinux2014"), Some((2, 17)));
        assert_eq!(
            tag_version("manylinux_2_36_aarch64", Arch::Arm64),
            Some((Libc::Glibc, (2, 36)))
        );
        assert_eq!(tag_version("manylinux_2_36_x86_64", Arch::Arm64), None);
        // musllinux: the version asked for or an older one; never a manylinux wheel.
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("m-1-cp311-cp311-musllinux_1_2_x86_64.whl"),
            "",
        )
        .unwrap();
        assert!(harvest(d.path(), &t(Arch::Amd64, Some("musllinux_1_2")), aw).is_ok());
        assert!(
            harvest(d.path(), &t(Arch::Amd64, Some("musllinux_1_1")), aw)
                .unwrap_err()
                .contains("newer musl")
        );
        assert!(
            harvest(d.path(), &t(Arch::Amd64, Some("manylinux_2_17")), aw)
                .unwrap_err()
                .contains("built against musl, not glibc")
        );
        let d = tempfile::tempdir().unwrap();
        let e = harvest(d.path(), &t(Arch::Arm64, None), aw).unwrap_err();
        assert!(e.contains("no *.whl"), "{e}");
        std::fs::write(d.path().join("m-1-cp311-cp311-linux_x86_64.whl"), "").unwrap();
        let e = harvest(d.path(), &t(Arch::Arm64, None), aw).unwrap_err();
        assert!(e.contains("not for aarch64"), "{e}");
        assert!(harvest(d.path(), &t(Arch::Amd64, None), true).is_ok());
        std::fs::write(d.path().join("n-1-cp311-cp311-linux_x86_64.whl"), "").unwrap();
        assert!(harvest(d.path(), &t(Arch::Amd64, None), aw)
            .unwrap_err()
            .contains("2 wheels"));
    }
}
