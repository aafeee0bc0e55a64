//! Importing an OCI image (a registry's, a layout directory, an OCI or docker archive): its
//! layers applied in order through the importer, each checked against its digest and size.

use std::path::{Path, PathBuf};
use std::time::Instant;

use super::archive::name_from_archive;
use super::stage::{progress_bar, refuse_existing, stage, Output, Source};
use crate::arch::Arch;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::import::{self, ImportOptions, ImportSummary};
use crate::store::{self, BaseOsMeta, Store};

/// The base OS name an image gets without --name: the last part of its repository or file
/// name, with its tag (`docker://quay.io/pypa/manylinux_2_28_x86_64:2024` → `manylinux_2_28_x86_64-2024`).
pub fn name_from_image(source: &crate::oci::ImageSource) -> String {
    use crate::oci::ImageSource;
    let raw = match source {
        ImageSource::Registry(r) => {
            let last = r.repository.rsplit('/').next().unwrap_or(&r.repository);
            match &r.tag {
                Some(t) if t != "latest" => format!("{last}-{t}"),
                _ => last.to_string(),
            }
        }
        ImageSource::Layout { dir, name } => {
            let base = dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "image".into());
            match name {
                Some(n) => format!("{base}-{n}"),
                None => base,
            }
        }
        ImageSource::OciArchive(p) | ImageSource::DockerArchive(p) => name_from_archive(p),
    };
    let cleaned: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    let cleaned = cleaned.trim_start_matches(['.', '-']).to_string();
    if cleaned.is_empty() {
        "image".into()
    } else {
        cleaned.chars().take(64).collect()
    }
}

/// An image source as meta.json records it: local paths made absolute (`update-baseos` and
/// `build` compare and read it again from anywhere).
pub fn canonical_source(source: &crate::oci::ImageSource) -> Result<crate::oci::ImageSource> {
    use crate::oci::ImageSource;
    let abs = |p: &Path| std::path::absolute(p).map_err(|e| Error::io("resolve", p, e));
    Ok(match source {
        ImageSource::Layout { dir, name } => ImageSource::Layout {
            dir: abs(dir)?,
            name: name.clone(),
        },
        ImageSource::OciArchive(p) => ImageSource::OciArchive(abs(p)?),
        ImageSource::DockerArchive(p) => ImageSource::DockerArchive(abs(p)?),
        s => s.clone(),
    })
}

/// The base OS loaded from the image `source` for `arch` (under any name), if the store has one:
/// found by its reference, so the digest pulled first is the one every later build uses.
pub fn find_image(
    store: &Store,
    source: &crate::oci::ImageSource,
    arch: Arch,
) -> Result<Option<store::BaseOs>> {
    let reference = canonical_source(source)?.to_string();
    Ok(store.list_baseos()?.into_iter().find(|b| {
        b.arch == arch
            && b.meta
                .image
                .as_ref()
                .is_some_and(|i| i.reference == reference)
    }))
}

/// The base OS loaded from the image `source` for `arch` (any name), else the image loaded now
/// — pulled from its registry, or read from its layout or archive — under the name
/// [`name_from_image`] gives it, with a line saying `why`. `build` uses it for the images of
/// cibuildwheel's `manylinux-<arch>-image` options.
#[allow(clippy::too_many_arguments)]
pub fn ensure_image(
    config: &Config,
    store: &Store,
    source: &crate::oci::ImageSource,
    arch: Arch,
    registry: &crate::oci::registry::Options,
    why: &str,
    out: Output,
) -> Result<store::BaseOs> {
    let source = canonical_source(source)?;
    let reference = source.to_string();
    if let Some(b) = find_image(store, &source, arch)? {
        return Ok(b);
    }
    let loaded = store.list_baseos()?;
    let name = name_from_image(&source);
    if let Some(other) = loaded.iter().find(|b| b.name == name && b.arch == arch) {
        return Err(Error::usage(format!(
            "{why}: {reference} is not loaded, and the base OS {name} ({arch}) it would be loaded \
             as comes from {}; load the image under another name (`pookie-ns load-baseos \
             {reference} --arch {arch} --name NAME`: build finds it by its reference) or remove \
             that one",
            other.meta.image.as_ref().map_or_else(
                || other.meta.source.display().to_string(),
                |i| i.reference.clone()
            )
        )));
    }
    if out.say {
        eprintln!("pookie-ns: loading the image {reference} for {arch} as base OS {name}: {why}");
    }
    import_image(config, store, &source, &name, Some(arch), registry, out)?;
    store.find_baseos(Some(&name), Some(arch))
}

/// Loads an OCI image as base OS `name`: resolves it (pulling what the blob cache lacks), then
/// applies its layers in order through the importer, each checked against its digest and size.
#[allow(clippy::too_many_arguments)]
pub fn import_image(
    config: &Config,
    store: &Store,
    source: &crate::oci::ImageSource,
    name: &str,
    arch: Option<Arch>,
    registry: &crate::oci::registry::Options,
    out: Output,
) -> Result<BaseOsMeta> {
    store::check_name(name)?;
    if let (Some(arch), false) = (arch, out.replace) {
        refuse_existing(store, name, arch)?;
    }
    let source = canonical_source(source)?;
    // Recorded in meta.json in its canonical form (absolute paths): update-baseos reads it again.
    let reference = source.to_string();
    let reference = reference.as_str();
    let (scratch, _lock) = store.create_tmp()?;
    let _scratch_guard = crate::oci::Scratch::new(scratch.clone());
    let started = Instant::now();
    let image = crate::oci::resolve(&source, arch, &store.root.join("blobs"), &scratch, registry)?;
    tracing::debug!(
        secs = started.elapsed().as_secs_f64(),
        "image resolved, its blobs on disk"
    );
    let arch = arch.or(image.arch);
    if let (Some(arch), false) = (arch, out.replace) {
        refuse_existing(store, name, arch)?;
    }
    let mut meta = image.meta.clone();
    meta.reference = reference.to_string();
    let layers = image.layers.clone();
    let total: u64 = layers
        .iter()
        .map(|l| {
            l.size
                .unwrap_or_else(|| std::fs::metadata(&l.path).map(|m| m.len()).unwrap_or(0))
        })
        .sum();
    let fill = |rootfs: &Path, opts: &ImportOptions| -> Result<ImportSummary> {
        let bar = progress_bar(total, name, !out.bars);
        let mut all = ImportSummary::default();
        let mut done = 0u64;
        for (i, layer) in layers.iter().enumerate() {
            let mut report = |n: u64| bar.set_position(done + n);
            let s = import::unpack_layer(&layer.path, rootfs, opts, &mut report)?;
            let what = format!("layer {} of {reference}", i + 1);
            if let Some(size) = layer.size {
                if s.archive_bytes != size {
                    return Err(crate::oci::OciError::SizeMismatch {
                        what,
                        expected: size,
                        actual: s.archive_bytes,
                    }
                    .into());
                }
            }
            let expected = match (&layer.sha256, &layer.diff_id) {
                (Some(h), _) => Some(h),
                (None, Some(d)) if s.compression == Some(import::Compression::None) => Some(d),
                _ => None,
            };
            if let Some(h) = expected {
                if &s.sha256 != h {
                    return Err(crate::oci::OciError::DigestMismatch {
                        what,
                        expected: format!("sha256:{h}"),
                        actual: format!("sha256:{}", s.sha256),
                    }
                    .into());
                }
            }
            done += s.archive_bytes;
            all.compression = s.compression;
            all.archive_bytes += s.archive_bytes;
            all.entries += s.entries;
            all.unpacked_bytes += s.unpacked_bytes;
            all.skipped_devices += s.skipped_devices;
            all.whiteouts += s.whiteouts;
        }
        all.sha256 = meta
            .manifest_digest
            .strip_prefix("sha256:")
            .unwrap_or(&meta.manifest_digest)
            .to_string();
        bar.finish_and_clear();
        Ok(all)
    };
    let src = Source {
        path: PathBuf::from(reference),
        recipe: None,
        image: Some(meta.clone()),
    };
    let result = stage(config, store, name, arch, src, out, fill);
    drop(image);
    result
}
