//! OCI images as base OSes. An image is found (a registry, a layout directory, an `oci-archive`
//! or a `docker-archive`), its manifest picked for the wanted arch from an index, every blob
//! checked against its digest and size, and its layers handed to the importer in order (which
//! applies their whiteouts). Nothing here writes a base OS: [`crate::baseos::import_image`] does,
//! from the [`Image`] this module resolves.
//!
//! Manifests, indexes and configs are parsed with `oci-spec`; Docker's v2 schema 2 manifests and
//! manifest lists have the same shape and parse with the same types.

pub mod archive;
pub mod auth;
pub mod detect;
pub mod policy;
pub mod reference;
pub mod registry;

use std::io::Read;
use std::path::{Path, PathBuf};

use oci_spec::image::{Descriptor, ImageConfiguration, ImageIndex, ImageManifest};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::arch::Arch;
pub use reference::{ImageSource, RegistryRef};

/// The largest manifest, index or config accepted (registries cap manifests at 4 MiB too).
pub const MAX_MANIFEST: u64 = 4 << 20;

#[derive(Debug, thiserror::Error)]
pub enum OciError {
    #[error("invalid image reference {reference:?}: {reason}")]
    BadReference { reference: String, reason: String },
    #[error("cannot reach the registry {registry}: {detail}{hint}")]
    UnknownRegistry {
        registry: String,
        detail: String,
        hint: String,
    },
    #[error("the registry {registry} refused access to {repository} ({status}); credentials tried: {tried}")]
    Unauthorized {
        registry: String,
        repository: String,
        status: u16,
        tried: String,
    },
    #[error("{what} not found (404){hint}")]
    NotFound { what: String, hint: String },
    #[error("{reference} has no image for {arch} ({wanted}); its index offers: {available}")]
    NoSuchArch {
        reference: String,
        arch: Arch,
        wanted: String,
        available: String,
    },
    #[error("the registry {registry} is rate-limiting us (429){}", match retry_after { Some(s) => format!("; it asks to retry after {s}"), None => String::new() })]
    RateLimited {
        registry: String,
        retry_after: Option<String>,
    },
    #[error(
        "{what} does not match its digest: expected {expected}, got {actual}; nothing was imported"
    )]
    DigestMismatch {
        what: String,
        expected: String,
        actual: String,
    },
    #[error(
        "{what} has {actual} bytes where its descriptor says {expected}; nothing was imported"
    )]
    SizeMismatch {
        what: String,
        expected: u64,
        actual: u64,
    },
    #[error("{what} has the unsupported media type {media_type:?}")]
    UnsupportedMediaType { what: String, media_type: String },
    #[error("{what} is larger than {limit} bytes: refused")]
    TooLarge { what: String, limit: u64 },
    #[error("{what} is malformed: {detail}")]
    Malformed { what: String, detail: String },
    #[error("{what} {url}: {detail}")]
    Http {
        what: &'static str,
        url: String,
        detail: String,
    },
    #[error(transparent)]
    Io(#[from] crate::sys::PathIoError),
}

impl OciError {
    /// True when what the user named is at fault (exit status 2), false for the host's or the
    /// network's trouble (a full disk, a connection reset mid-download, a 5xx).
    pub fn is_input_error(&self) -> bool {
        !matches!(self, OciError::Http { .. } | OciError::Io(_))
    }

    pub(crate) fn io(what: &'static str, path: &Path, source: std::io::Error) -> Self {
        OciError::Io(crate::sys::PathIoError::new(what, path, source))
    }
}

pub type Result<T, E = OciError> = std::result::Result<T, E>;

/// A layer ready for the importer: a blob file, its digest (hex) and size, both checked again as
/// it is unpacked.
#[derive(Debug, Clone)]
pub struct Layer {
    pub path: PathBuf,
    /// The blob's digest (hex), when known: compared with the importer's hash of the file.
    pub sha256: Option<String>,
    pub size: Option<u64>,
    /// The digest of the uncompressed tar (a docker-archive's `rootfs.diff_ids`): compared when
    /// the blob is an uncompressed tar and no blob digest is known.
    pub diff_id: Option<String>,
}

/// An image resolved to one manifest, with its blobs on local disk.
#[derive(Debug)]
pub struct Image {
    pub meta: ImageMeta,
    pub layers: Vec<Layer>,
    /// The config's architecture, in our terms (None for one pookie-ns does not know).
    pub arch: Option<Arch>,
    /// Unpacked archive contents, removed when the image is dropped.
    pub scratch: Option<Scratch>,
}

/// What `meta.json` records about an image.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ImageMeta {
    /// The reference it was loaded from, as given (`update-baseos` resolves it again).
    pub reference: String,
    /// `sha256:...` of the manifest.
    pub manifest_digest: String,
    pub config_digest: String,
    /// The layers' digests, bottom first.
    pub layers: Vec<String>,
    /// The config's `Env`, `WorkingDir` and `User`: `run` and `build` start commands with them.
    #[serde(default)]
    pub env: Vec<String>,
    #[serde(default)]
    pub working_dir: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
    /// `os/arch[/variant]` from the config.
    pub platform: String,
}

impl ImageMeta {
    /// Sets the config's `Env` (`KEY=VALUE` lines) over `env`: what `run` and `build` start
    /// commands with (`PATH=/opt/rh/gcc-toolset-14/root/usr/bin:...` in manylinux images).
    pub fn apply_env(&self, env: &mut Vec<(String, String)>) {
        for kv in &self.env {
            if let Some((k, v)) = kv.split_once('=').filter(|(k, _)| !k.is_empty()) {
                env.retain(|(key, _)| key != k);
                env.push((k.to_string(), v.to_string()));
            }
        }
    }

    /// A variable of the config's `Env` (`AUDITWHEEL_POLICY` in pypa's images).
    pub fn env_var(&self, name: &str) -> Option<&str> {
        self.env
            .iter()
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v)
    }
}

/// A directory removed when dropped (archive contents unpacked for reading), with the archive's
/// symlinks (normalised name -> normalised target), which are never created on disk.
#[derive(Debug)]
pub struct Scratch {
    dir: PathBuf,
    links: std::collections::HashMap<String, String>,
}

impl Scratch {
    /// Takes charge of `dir`: it is removed when the value is dropped.
    pub fn new(dir: PathBuf) -> Self {
        Scratch {
            dir,
            links: Default::default(),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file an archive member name stands for, its symlinks resolved inside the archive.
    pub fn member(&self, name: &str) -> Option<PathBuf> {
        let mut name = archive::normalise(name)?;
        for _ in 0..8 {
            match self.links.get(&name) {
                Some(target) => name = target.clone(),
                None => return Some(self.dir.join(name)),
            }
        }
        None
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The OCI platform (`architecture`, `variant`) of one of our arches.
pub fn oci_platform(arch: Arch) -> (&'static str, Option<&'static str>) {
    match arch {
        Arch::Amd64 => ("amd64", None),
        Arch::I386 => ("386", None),
        Arch::Arm64 => ("arm64", None),
        Arch::Armhf => ("arm", Some("v7")),
        Arch::Ppc64el => ("ppc64le", None),
        Arch::S390x => ("s390x", None),
        Arch::Riscv64 => ("riscv64", None),
    }
}

/// Our arch for an OCI platform (an `arm` without variant is taken for v7, as Docker does).
pub fn arch_of(architecture: &str, variant: Option<&str>) -> Option<Arch> {
    Arch::ALL.into_iter().find(|a| {
        let (arch, var) = oci_platform(*a);
        arch == architecture && (var.is_none() || variant.is_none() || var == variant)
    })
}

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// What a registry is asked for.
pub const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
    application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.docker.distribution.manifest.v2+json";

const LAYER_TYPES: [&str; 8] = [
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
];
const CONFIG_TYPES: [&str; 2] = [
    "application/vnd.oci.image.config.v1+json",
    "application/vnd.docker.container.image.v1+json",
];

/// A parsed manifest document: an index to pick from, or an image manifest.
pub enum Doc {
    Index(Box<ImageIndex>),
    Manifest(Box<ImageManifest>),
}

/// Parses a manifest or index. The media type is the one the registry or the parent descriptor
/// gave, else the document's own `mediaType`, else told by its shape.
pub fn parse_doc(what: &str, bytes: &[u8], media_type: Option<&str>) -> Result<Doc> {
    let malformed = |e: serde_json::Error| OciError::Malformed {
        what: what.to_string(),
        detail: e.to_string(),
    };
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(malformed)?;
    let own = value.get("mediaType").and_then(|m| m.as_str());
    let kind = match media_type
        .filter(|m| !m.is_empty() && *m != "application/json")
        .or(own)
    {
        Some(m) => m.split(';').next().unwrap_or(m).trim().to_string(),
        None if value.get("manifests").is_some() => OCI_INDEX.into(),
        None if value.get("layers").is_some() => OCI_MANIFEST.into(),
        None => String::new(),
    };
    match kind.as_str() {
        OCI_INDEX | DOCKER_LIST => Ok(Doc::Index(Box::new(
            serde_json::from_value(value).map_err(malformed)?,
        ))),
        OCI_MANIFEST | DOCKER_MANIFEST => Ok(Doc::Manifest(Box::new(
            serde_json::from_value(value).map_err(malformed)?,
        ))),
        other => Err(OciError::UnsupportedMediaType {
            what: what.to_string(),
            media_type: if other.is_empty() {
                "(none)".into()
            } else {
                other.to_string()
            },
        }),
    }
}

/// Picks the manifest for `arch` from an index (the only one when it has one without platform
/// and no arch was asked for). Errors list the platforms the index offers.
pub fn pick<'a>(
    reference: &str,
    index: &'a ImageIndex,
    arch: Option<Arch>,
) -> Result<&'a Descriptor> {
    let platform = |d: &Descriptor| {
        d.platform().as_ref().map(|p| {
            (
                p.os().to_string(),
                p.architecture().to_string(),
                p.variant().clone(),
            )
        })
    };
    // Attestations and other artifacts ride in indexes with platform unknown/unknown.
    let candidates: Vec<&Descriptor> = index
        .manifests()
        .iter()
        .filter(|d| platform(d).is_none_or(|(os, _, _)| os == "linux"))
        .collect();
    let wanted = arch.unwrap_or_else(Arch::host);
    let (want_arch, want_var) = oci_platform(wanted);
    let found = candidates.iter().find(|d| {
        platform(d).is_some_and(|(_, a, v)| {
            a == want_arch && (want_var.is_none() || v.is_none() || v.as_deref() == want_var)
        })
    });
    if let Some(d) = found {
        return Ok(d);
    }
    if let [only] = candidates.as_slice() {
        if platform(only).is_none() {
            // A layout's index.json points at one manifest with no platform: its config says.
            return Ok(only);
        }
    }
    let available: Vec<String> = index
        .manifests()
        .iter()
        .map(|d| match platform(d) {
            Some((os, a, Some(v))) => format!("{os}/{a}/{v}"),
            Some((os, a, None)) => format!("{os}/{a}"),
            None => "(no platform)".into(),
        })
        .collect();
    if candidates.len() > 1 && candidates.iter().all(|d| platform(d).is_none()) {
        return Err(OciError::Malformed {
            what: reference.to_string(),
            detail: format!(
                "it holds {} images without a platform: name one (oci:DIR:REF)",
                candidates.len()
            ),
        });
    }
    Err(OciError::NoSuchArch {
        reference: reference.to_string(),
        arch: wanted,
        wanted: match want_var {
            Some(v) => format!("linux/{want_arch}/{v}"),
            None => format!("linux/{want_arch}"),
        },
        available: if available.is_empty() {
            "nothing".into()
        } else {
            available.join(", ")
        },
    })
}

/// Checks a manifest's media types: a config we can read, layers the importer can unpack.
pub fn check_manifest(what: &str, m: &ImageManifest) -> Result<()> {
    let config_type = m.config().media_type().to_string();
    if !CONFIG_TYPES.contains(&config_type.as_str()) {
        return Err(OciError::UnsupportedMediaType {
            what: format!("the config of {what}"),
            media_type: config_type,
        });
    }
    for (i, l) in m.layers().iter().enumerate() {
        let t = l.media_type().to_string();
        if !LAYER_TYPES.contains(&t.as_str()) {
            return Err(OciError::UnsupportedMediaType {
                what: format!("layer {} ({}) of {what}", i + 1, l.digest()),
                media_type: t,
            });
        }
    }
    Ok(())
}

/// The hex of a descriptor's sha256 digest; other algorithms are refused.
pub fn sha256_of(what: &str, d: &Descriptor) -> Result<String> {
    let digest = d.digest().to_string();
    reference::check_digest(&digest)
        .map(str::to_string)
        .map_err(|reason| OciError::Malformed {
            what: what.to_string(),
            detail: reason,
        })
}

/// Checks bytes against a digest (`sha256:hex`) and size.
pub fn verify(what: &str, bytes: &[u8], sha256_hex: &str, size: Option<u64>) -> Result<()> {
    if let Some(size) = size {
        if bytes.len() as u64 != size {
            return Err(OciError::SizeMismatch {
                what: what.to_string(),
                expected: size,
                actual: bytes.len() as u64,
            });
        }
    }
    let actual = format!("{:x}", Sha256::digest(bytes));
    if actual != sha256_hex {
        return Err(OciError::DigestMismatch {
            what: what.to_string(),
            expected: format!("sha256:{sha256_hex}"),
            actual: format!("sha256:{actual}"),
        });
    }
    Ok(())
}

/// Reads at most `limit` bytes of a file; a larger one is refused.
pub fn read_limited(what: &str, path: &Path, limit: u64) -> Result<Vec<u8>> {
    let f = std::fs::File::open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => OciError::NotFound {
            what: format!("{what} ({})", path.display()),
            hint: String::new(),
        },
        _ => OciError::io("read", path, e),
    })?;
    let mut bytes = Vec::new();
    f.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| OciError::io("read", path, e))?;
    if bytes.len() as u64 > limit {
        return Err(OciError::TooLarge {
            what: what.to_string(),
            limit,
        });
    }
    Ok(bytes)
}

/// The image meta and arch from a manifest and its config bytes (already verified).
pub fn describe(
    reference: &str,
    manifest_digest: String,
    manifest: &ImageManifest,
    config_bytes: &[u8],
) -> Result<(ImageMeta, Option<Arch>)> {
    describe_parts(
        reference,
        manifest_digest,
        manifest.config().digest().to_string(),
        manifest
            .layers()
            .iter()
            .map(|l| l.digest().to_string())
            .collect(),
        config_bytes,
    )
}

/// [`describe`] from the parts (a docker-archive has no manifest of this shape).
pub fn describe_parts(
    reference: &str,
    manifest_digest: String,
    config_digest: String,
    layers: Vec<String>,
    config_bytes: &[u8],
) -> Result<(ImageMeta, Option<Arch>)> {
    let config: ImageConfiguration =
        serde_json::from_slice(config_bytes).map_err(|e| OciError::Malformed {
            what: format!("the config of {reference}"),
            detail: e.to_string(),
        })?;
    let arch_name = config.architecture().to_string();
    let variant = config.variant().clone();
    let exec = config.config().clone().unwrap_or_default();
    let meta = ImageMeta {
        reference: reference.to_string(),
        manifest_digest,
        config_digest,
        layers,
        env: exec.env().clone().unwrap_or_default(),
        working_dir: exec.working_dir().clone().filter(|w| !w.is_empty()),
        user: exec.user().clone().filter(|u| !u.is_empty()),
        platform: match &variant {
            Some(v) => format!("{}/{arch_name}/{v}", config.os()),
            None => format!("{}/{arch_name}", config.os()),
        },
    };
    Ok((meta, arch_of(&arch_name, variant.as_deref())))
}

/// Resolves an image source to one manifest with its layers on local disk. Registry blobs land
/// in `blobs` (the store's content-addressed cache); archives are unpacked into `scratch_dir`.
pub fn resolve(
    source: &ImageSource,
    arch: Option<Arch>,
    blobs: &Path,
    scratch_dir: &Path,
    opts: &registry::Options,
) -> Result<Image> {
    match source {
        ImageSource::Registry(r) => registry::pull(r, arch, blobs, opts),
        ImageSource::Layout { dir, name } => {
            archive::from_layout(&source.to_string(), dir, name.as_deref(), arch, None)
        }
        ImageSource::OciArchive(file) => {
            let scratch = archive::unpack_archive_files(file, scratch_dir)?;
            let dir = scratch.dir().to_path_buf();
            archive::from_layout(&source.to_string(), &dir, None, arch, Some(scratch))
        }
        ImageSource::DockerArchive(file) => {
            let scratch = archive::unpack_archive_files(file, scratch_dir)?;
            archive::from_docker_archive(&source.to_string(), scratch, arch)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platforms_map_both_ways() {
        assert_eq!(oci_platform(Arch::Armhf), ("arm", Some("v7")));
        assert_eq!(arch_of("arm", Some("v7")), Some(Arch::Armhf));
        assert_eq!(arch_of("arm64", Some("v8")), Some(Arch::Arm64));
        assert_eq!(arch_of("amd64", None), Some(Arch::Amd64));
        assert_eq!(arch_of("arm", Some("v6")), None);
        assert_eq!(arch_of("mips", None), None);
    }

    #[test]
    fn an_index_lists_its_arches_when_one_is_missing() {
        let index: ImageIndex = serde_json::from_str(&format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[
            {{"mediaType":"{OCI_MANIFEST}","digest":"sha256:{a}","size":1,"platform":{{"os":"linux","architecture":"amd64"}}}},
            {{"mediaType":"{OCI_MANIFEST}","digest":"sha256:{b}","size":1,"platform":{{"os":"linux","architecture":"arm","variant":"v7"}}}}]}}"#,
            a = "a".repeat(64),
            b = "b".repeat(64)
        ))
        .unwrap();
        let d = pick("x", &index, Some(Arch::Armhf)).unwrap();
        assert!(d.digest().to_string().ends_with('b'));
        let e = pick("x", &index, Some(Arch::Riscv64)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "x has no image for riscv64 (linux/riscv64); its index offers: linux/amd64, linux/arm/v7"
        );
    }

    #[test]
    fn unknown_media_types_are_refused() {
        let e = match parse_doc(
            "m",
            br#"{"mediaType":"application/x-foo","schemaVersion":2}"#,
            None,
        ) {
            Err(e) => e,
            Ok(_) => panic!("accepted"),
        };
        assert!(matches!(e, OciError::UnsupportedMediaType { .. }), "{e}");
        assert!(parse_doc("m", b"{", None).is_err());
    }
}
