//! Images on local disk: an OCI image layout directory (`oci:DIR[:REF]`), and the two archive
//! formats — `oci-archive:` (a layout in a tar) and `docker-archive:` (what `docker save` and
//! `podman save` write: `manifest.json`, a config and layer tarballs). Archives are untrusted:
//! only regular files with plain names are written (into a scratch directory of the store), and
//! their symlinks are kept as aliases, never created.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use oci_spec::image::{ImageConfiguration, ImageIndex};

use super::{
    check_manifest, describe, describe_parts, parse_doc, pick, read_limited, sha256_of, verify,
    Doc, Image, Layer, OciError, Result, Scratch, MAX_MANIFEST,
};
use crate::arch::Arch;

const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// A member name made of plain components (`a/b/c`), or None for one that could escape.
pub fn normalise(name: &str) -> Option<String> {
    let mut out: Vec<&str> = Vec::new();
    for c in name.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop()?;
            }
            c => out.push(c),
        }
    }
    if out.is_empty() || out.len() > 6 {
        return None;
    }
    let ok = out.iter().all(|c| {
        c.len() <= 200
            && c.chars()
                .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '.' | '_' | '-' | ':' | '+'))
    });
    ok.then(|| out.join("/"))
}

/// Writes an archive's regular files into a fresh scratch directory under `parent`.
pub fn unpack_archive_files(file: &Path, parent: &Path) -> Result<Scratch> {
    let f = File::open(file).map_err(|e| OciError::NotFound {
        what: format!("the archive {}", file.display()),
        hint: format!(" ({e})"),
    })?;
    let mut head = [0u8; 2];
    let n = f
        .try_clone()
        .and_then(|mut c| c.read(&mut head))
        .map_err(|e| OciError::io("read", file, e))?;
    let f = File::open(file).map_err(|e| OciError::io("open", file, e))?;
    let input: Box<dyn Read> = if n == 2 && head == [0x1f, 0x8b] {
        Box::new(flate2::read::MultiGzDecoder::new(BufReader::new(f)))
    } else {
        Box::new(BufReader::new(f))
    };
    let dir = parent.join(format!("archive-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| OciError::io("create", &dir, e))?;
    let mut scratch = Scratch {
        dir: dir.clone(),
        links: HashMap::new(),
    };
    let corrupt = |detail: String| OciError::Malformed {
        what: format!("the archive {}", file.display()),
        detail,
    };
    let mut tar = tar::Archive::new(input);
    let entries = tar.entries().map_err(|e| corrupt(e.to_string()))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| corrupt(e.to_string()))?;
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let kind = entry.header().entry_type();
        if kind.is_dir() || kind.is_pax_global_extensions() || kind.is_pax_local_extensions() {
            continue;
        }
        let name = normalise(&raw).ok_or_else(|| {
            corrupt(format!(
                "member {raw:?} has a name pookie-ns does not accept"
            ))
        })?;
        if kind.is_symlink() || kind.is_hard_link() {
            let target = entry
                .link_name_bytes()
                .map(|t| String::from_utf8_lossy(&t).into_owned())
                .unwrap_or_default();
            // A symlink's target is relative to its directory; a hard link's to the root.
            let base = match (kind.is_symlink(), name.rsplit_once('/')) {
                (true, Some((d, _))) => format!("{d}/{target}"),
                _ => target.clone(),
            };
            let resolved = normalise(&base).ok_or_else(|| {
                corrupt(format!(
                    "member {raw:?} links to {target:?}, outside the archive"
                ))
            })?;
            scratch.links.insert(name, resolved);
            continue;
        }
        if !kind.is_file() {
            return Err(corrupt(format!("member {raw:?} is not a regular file")));
        }
        let path = dir.join(&name);
        if let Some(p) = path.parent() {
            std::fs::create_dir_all(p).map_err(|e| OciError::io("create", p, e))?;
        }
        let mut out = File::options()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| OciError::io("create", &path, e))?;
        std::io::copy(&mut entry, &mut out).map_err(|e| match e.raw_os_error() {
            Some(_) => OciError::io("write", &path, e),
            None => corrupt(format!("member {raw:?}: {e}")),
        })?;
    }
    Ok(scratch)
}

fn blob_path(dir: &Path, hex: &str) -> std::path::PathBuf {
    dir.join("blobs/sha256").join(hex)
}

/// Reads a small blob of a layout, checked against its descriptor.
fn small_blob(dir: &Path, d: &oci_spec::image::Descriptor, what: &str) -> Result<Vec<u8>> {
    let hex = sha256_of(what, d)?;
    if d.size() > MAX_MANIFEST {
        return Err(OciError::TooLarge {
            what: what.to_string(),
            limit: MAX_MANIFEST,
        });
    }
    let bytes = read_limited(what, &blob_path(dir, &hex), MAX_MANIFEST)?;
    verify(what, &bytes, &hex, Some(d.size()))?;
    Ok(bytes)
}

/// An image from an OCI layout directory: `index.json`, the manifest for `arch` (or the one
/// tagged `name`), its config, and its layers' blob files.
pub fn from_layout(
    reference: &str,
    dir: &Path,
    name: Option<&str>,
    arch: Option<Arch>,
    scratch: Option<Scratch>,
) -> Result<Image> {
    let index_path = dir.join("index.json");
    let bytes = read_limited(
        &format!("the index of {reference}"),
        &index_path,
        MAX_MANIFEST,
    )?;
    let mut index = match parse_doc(&format!("{}", index_path.display()), &bytes, None)? {
        Doc::Index(i) => i,
        Doc::Manifest(_) => {
            return Err(OciError::Malformed {
                what: index_path.display().to_string(),
                detail: "it is a manifest, not an index".into(),
            })
        }
    };
    if let Some(want) = name {
        keep_named(&mut index, want, &index_path)?;
    }
    let mut desc = pick(reference, &index, arch)?.clone();
    // An index may point at another index (a multi-arch image saved whole): one level more.
    for depth in 0..2 {
        let what = format!("the manifest {} of {reference}", desc.digest());
        let bytes = small_blob(dir, &desc, &what)?;
        let digest = desc.digest().to_string();
        match parse_doc(&what, &bytes, Some(desc.media_type().as_ref()))? {
            Doc::Index(inner) if depth == 0 => {
                desc = pick(reference, &inner, arch)?.clone();
            }
            Doc::Index(_) => {
                return Err(OciError::UnsupportedMediaType {
                    what,
                    media_type: "an index inside an index inside index.json".into(),
                })
            }
            Doc::Manifest(m) => {
                check_manifest(reference, &m)?;
                let cfg_what = format!("the config {} of {reference}", m.config().digest());
                let config = small_blob(dir, m.config(), &cfg_what)?;
                let (meta, image_arch) = describe(reference, digest, &m, &config)?;
                let mut layers = Vec::new();
                for (i, l) in m.layers().iter().enumerate() {
                    let hex = sha256_of("a layer descriptor", l)?;
                    let path = blob_path(dir, &hex);
                    if !path.is_file() {
                        return Err(OciError::NotFound {
                            what: format!("layer {} ({}) of {reference}", i + 1, l.digest()),
                            hint: format!(" (no file {})", path.display()),
                        });
                    }
                    layers.push(Layer {
                        path,
                        sha256: Some(hex),
                        size: Some(l.size()),
                        diff_id: None,
                    });
                }
                return Ok(Image {
                    meta,
                    layers,
                    arch: image_arch,
                    scratch,
                });
            }
        }
    }
    unreachable!("the loop returns or fails by its second turn")
}

/// Keeps of `index` (read from `index_path`) the manifests tagged `want`
/// (`org.opencontainers.image.ref.name`); none: an error listing the names it has.
fn keep_named(index: &mut ImageIndex, want: &str, index_path: &Path) -> Result<()> {
    let names: Vec<String> = index
        .manifests()
        .iter()
        .filter_map(|d| d.annotations().as_ref()?.get(REF_NAME).cloned())
        .collect();
    let chosen: Vec<_> = index
        .manifests()
        .iter()
        .filter(|d| {
            d.annotations()
                .as_ref()
                .and_then(|a| a.get(REF_NAME))
                .is_some_and(|n| n == want)
        })
        .cloned()
        .collect();
    if chosen.is_empty() {
        return Err(OciError::NotFound {
            what: format!("the name {want:?} in {}", index_path.display()),
            hint: format!(
                "; it names: {}",
                if names.is_empty() {
                    "nothing".to_string()
                } else {
                    names.join(", ")
                }
            ),
        });
    }
    index.set_manifests(chosen);
    Ok(())
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifest {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// The sha256 hex a member's name carries (`<hex>.json`, `blobs/sha256/<hex>`), if any.
fn hex_in_name(name: &str) -> Option<&str> {
    let last = name.rsplit('/').next()?;
    let stem = last.strip_suffix(".json").unwrap_or(last);
    let stem = stem.strip_suffix(".tar").unwrap_or(stem);
    (stem.len() == 64 && stem.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
        .then_some(stem)
}

/// An image from a docker-archive's unpacked files.
pub fn from_docker_archive(reference: &str, scratch: Scratch, arch: Option<Arch>) -> Result<Image> {
    let what = format!("manifest.json of {reference}");
    let path = scratch.member("manifest.json").unwrap_or_default();
    let bytes = read_limited(&what, &path, MAX_MANIFEST)?;
    let list: Vec<DockerManifest> =
        serde_json::from_slice(&bytes).map_err(|e| OciError::Malformed {
            what: what.clone(),
            detail: e.to_string(),
        })?;
    let Some(m) = list.first() else {
        return Err(OciError::Malformed {
            what,
            detail: "it lists no image".into(),
        });
    };
    if list.len() > 1 {
        tracing::warn!(
            "{reference} holds {} images; loading the first ({})",
            list.len(),
            m.repo_tags
                .as_ref()
                .map(|t| t.join(", "))
                .unwrap_or_default()
        );
    }
    let member = |name: &str, what: &str| {
        scratch
            .member(name)
            .filter(|p| p.is_file())
            .ok_or_else(|| OciError::NotFound {
                what: format!("{what} ({name}) in {reference}"),
                hint: String::new(),
            })
    };
    let cfg_what = format!("the config of {reference}");
    let config = read_limited(&cfg_what, &member(&m.config, "the config")?, MAX_MANIFEST)?;
    let config_hex = format!("{:x}", <sha2::Sha256 as sha2::Digest>::digest(&config));
    if let Some(hex) = hex_in_name(&m.config) {
        verify(&cfg_what, &config, hex, None)?;
    }
    let typed: ImageConfiguration =
        serde_json::from_slice(&config).map_err(|e| OciError::Malformed {
            what: cfg_what,
            detail: e.to_string(),
        })?;
    let diff_ids: Vec<String> = typed
        .rootfs()
        .diff_ids()
        .iter()
        .filter_map(|d| d.strip_prefix("sha256:").map(str::to_string))
        .collect();
    let mut layers = Vec::new();
    for (i, name) in m.layers.iter().enumerate() {
        let path = member(name, &format!("layer {}", i + 1))?;
        let named = scratch
            .links
            .get(&normalise(name).unwrap_or_default())
            .map(String::as_str)
            .unwrap_or(name);
        layers.push(Layer {
            path,
            sha256: hex_in_name(named)
                .filter(|_| named.contains("blobs/sha256/"))
                .map(str::to_string),
            size: None,
            diff_id: diff_ids.get(i).cloned(),
        });
    }
    // No manifest digest in this format: the image ID (the config's digest) stands for it.
    let (meta, image_arch) = describe_parts(
        reference,
        format!("sha256:{config_hex}"),
        format!("sha256:{config_hex}"),
        layers
            .iter()
            .map(|l| match (&l.sha256, &l.diff_id) {
                (Some(h), _) | (None, Some(h)) => format!("sha256:{h}"),
                (None, None) => String::new(),
            })
            .collect(),
        &config,
    )?;
    if let (Some(want), Some(have)) = (arch, image_arch) {
        if want != have {
            return Err(OciError::NoSuchArch {
                reference: reference.to_string(),
                arch: want,
                wanted: super::oci_platform(want).0.to_string(),
                available: meta.platform.clone(),
            });
        }
    }
    Ok(Image {
        meta,
        layers,
        arch: image_arch,
        scratch: Some(scratch),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_names_stay_inside() {
        assert_eq!(
            normalise("./blobs/sha256/ab").as_deref(),
            Some("blobs/sha256/ab")
        );
        assert_eq!(normalise("a/../b").as_deref(), Some("b"));
        assert_eq!(normalise("../x"), None);
        assert_eq!(normalise("/"), None);
        assert_eq!(normalise("a b"), None);
        assert_eq!(
            hex_in_name(&format!("{}.json", "a".repeat(64))),
            Some(&*"a".repeat(64))
        );
        assert_eq!(hex_in_name("manifest.json"), None);
    }
}
