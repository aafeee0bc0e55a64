//! cibuildwheel's image options, `manylinux-<arch>-image` and `musllinux-<arch>-image`: which
//! image a policy's targets build in. A value is an image reference, or a short name that expands
//! to pypa's image on quay.io (`manylinux_2_28` → `docker://quay.io/pypa/manylinux_2_28_x86_64`).
//! Parsed and checked here; `build` loads the images (src/pipeline/image.rs).

use crate::arch::Arch;

use super::reference::{self, ImageSource};
use super::OciError;

/// The two policy families cibuildwheel names images for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Manylinux,
    Musllinux,
}

impl Family {
    const ALL: [Family; 2] = [Family::Manylinux, Family::Musllinux];

    /// `manylinux` or `musllinux`, as the options and the platform tags spell it.
    pub fn name(self) -> &'static str {
        match self {
            Family::Manylinux => "manylinux",
            Family::Musllinux => "musllinux",
        }
    }
}

/// `manylinux-aarch64-image` → (Manylinux, arm64); None for any other key.
pub fn image_key(key: &str) -> Option<(Family, Arch)> {
    let rest = key.strip_suffix("-image")?;
    let (family, arch) = rest.split_once('-')?;
    let family = Family::ALL.into_iter().find(|f| f.name() == family)?;
    let arch = Arch::ALL.into_iter().find(|a| a.uname() == arch)?;
    Some((family, arch))
}

/// The option naming the image of `arch`'s targets of `family` (the inverse of [`image_key`]):
/// (Manylinux, arm64) → `manylinux-aarch64-image`.
pub fn option_name(family: Family, arch: Arch) -> String {
    format!("{}-{}-image", family.name(), arch.uname())
}

/// The short name of the image cibuildwheel 4 uses for `arch`'s targets of `family` when no
/// option names one (pypa's README, mid-2026): manylinux_2_28, except armv7l's manylinux_2_31
/// and riscv64's manylinux_2_39; musllinux_1_2 for every arch.
pub fn default_image(family: Family, arch: Arch) -> &'static str {
    match (family, arch) {
        (Family::Musllinux, _) => "musllinux_1_2",
        (Family::Manylinux, Arch::Armhf) => "manylinux_2_31",
        (Family::Manylinux, Arch::Riscv64) => "manylinux_2_39",
        (Family::Manylinux, _) => "manylinux_2_28",
    }
}

/// The image a key's value names: a reference with a transport, else a short name for pypa's
/// images (`manylinux2014`, `manylinux_2_28`, `musllinux_1_2` …), else a registry reference
/// without `docker://`.
pub fn image_for(family: Family, arch: Arch, value: &str) -> Result<ImageSource, OciError> {
    if let Some(parsed) = reference::parse(value) {
        return parsed;
    }
    let short = match family {
        Family::Manylinux => value == "manylinux2014" || value.starts_with("manylinux_2_"),
        Family::Musllinux => value.starts_with("musllinux_1_"),
    };
    let full = if short
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        format!("quay.io/pypa/{value}_{}", arch.uname())
    } else {
        value.to_string()
    };
    reference::parse_registry(&full).map_err(|reason| OciError::BadReference {
        reference: value.to_string(),
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_name_a_family_and_an_arch() {
        assert_eq!(
            image_key("manylinux-aarch64-image"),
            Some((Family::Manylinux, Arch::Arm64))
        );
        assert_eq!(
            image_key("musllinux-x86_64-image"),
            Some((Family::Musllinux, Arch::Amd64))
        );
        assert_eq!(
            image_key("manylinux-armv7l-image"),
            Some((Family::Manylinux, Arch::Armhf))
        );
        for family in Family::ALL {
            for arch in Arch::ALL {
                assert_eq!(image_key(&option_name(family, arch)), Some((family, arch)));
            }
        }
        assert_eq!(image_key("manylinux-sparc-image"), None);
        assert_eq!(image_key("before-all"), None);
    }

    #[test]
    fn cibuildwheel_4_default_images() {
        let r = |f, a| image_for(f, a, default_image(f, a)).unwrap().to_string();
        assert_eq!(
            r(Family::Manylinux, Arch::Arm64),
            "docker://quay.io/pypa/manylinux_2_28_aarch64"
        );
        assert_eq!(
            r(Family::Manylinux, Arch::Armhf),
            "docker://quay.io/pypa/manylinux_2_31_armv7l"
        );
        assert_eq!(
            r(Family::Manylinux, Arch::Riscv64),
            "docker://quay.io/pypa/manylinux_2_39_riscv64"
        );
        assert_eq!(
            r(Family::Musllinux, Arch::S390x),
            "docker://quay.io/pypa/musllinux_1_2_s390x"
        );
    }

    #[test]
    fn short_names_expand_to_pypa_images() {
        let r = |f, a, v| image_for(f, a, v).unwrap().to_string();
        assert_eq!(
            r(Family::Manylinux, Arch::Amd64, "manylinux_2_28"),
            "docker://quay.io/pypa/manylinux_2_28_x86_64"
        );
        assert_eq!(
            r(Family::Manylinux, Arch::Arm64, "manylinux2014"),
            "docker://quay.io/pypa/manylinux2014_aarch64"
        );
        assert_eq!(
            r(Family::Musllinux, Arch::Amd64, "musllinux_1_2"),
            "docker://quay.io/pypa/musllinux_1_2_x86_64"
        );
        assert_eq!(
            r(
                Family::Manylinux,
                Arch::Amd64,
                "quay.io/pypa/manylinux_2_34_x86_64:2025.01.01-1"
            ),
            "docker://quay.io/pypa/manylinux_2_34_x86_64:2025.01.01-1"
        );
        assert_eq!(
            r(Family::Manylinux, Arch::Amd64, "oci:/srv/images/ml"),
            "oci:/srv/images/ml"
        );
        assert!(image_for(Family::Manylinux, Arch::Amd64, "Bad Name").is_err());
    }
}
