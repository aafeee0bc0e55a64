//! Importing a root filesystem archive (`.tar`, `.tar.gz`, `.tar.xz`, `.tar.zst`).

use std::path::Path;

use super::stage::{progress_bar, stage, Output, Source};
use crate::arch::Arch;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::import::{self, ImportOptions, ImportSummary};
use crate::recipe::RecipeInfo;
use crate::store::{BaseOsMeta, Store};

/// The base OS name an archive gets without --name: its file name less the archive extensions.
pub fn name_from_archive(path: &Path) -> String {
    let mut name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    for ext in [
        ".gz", ".xz", ".zst", ".zstd", ".tgz", ".txz", ".tzst", ".tar",
    ] {
        if let Some(stem) = name.strip_suffix(ext) {
            name = stem.to_string();
        }
    }
    name
}

/// Imports `archive` as base OS `name`. The arch is read from the rootfs unless `arch` is given.
pub fn import_archive(
    config: &Config,
    store: &Store,
    archive: &Path,
    name: &str,
    arch: Option<Arch>,
    recipe: Option<RecipeInfo>,
    out: Output,
) -> Result<BaseOsMeta> {
    let archive = std::path::absolute(archive).map_err(|e| Error::io("resolve", archive, e))?;
    let meta = std::fs::metadata(&archive).map_err(|e| {
        Error::usage(format!(
            "cannot read the archive {}: {e}",
            archive.display()
        ))
    })?;
    if !meta.is_file() {
        return Err(Error::usage(format!("{} is not a file", archive.display())));
    }
    let len = meta.len();
    let fill = |rootfs: &Path, opts: &ImportOptions| -> Result<ImportSummary> {
        let bar = progress_bar(len, name, !out.bars);
        let mut report = |n: u64| bar.set_position(n);
        let summary = import::unpack_archive(&archive, rootfs, opts, &mut report)?;
        bar.finish_and_clear();
        Ok(summary)
    };
    let source = Source {
        path: archive.clone(),
        recipe,
        image: None,
    };
    stage(config, store, name, arch, source, out, fill)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_names_lose_their_extensions() {
        assert_eq!(
            name_from_archive(Path::new("/x/busybox.tar.zst")),
            "busybox"
        );
        assert_eq!(
            name_from_archive(Path::new("debian-bookworm.tgz")),
            "debian-bookworm"
        );
        assert_eq!(name_from_archive(Path::new("root.tar")), "root");
        assert_eq!(name_from_archive(Path::new("plain")), "plain");
    }
}
