//! Importing a root filesystem archive (tar, optionally gzip/xz/zstd compressed) into a directory,
//! safely: no entry may land outside the destination. (Being written by a helper: see the
//! interface below.)

use std::path::Path;

use crate::arch::Arch;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    None,
    Gzip,
    Xz,
    Zstd,
}

#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// Keep the archive's uid/gid (true as root, or inside a user namespace with a full subuid map).
    /// When false, every file belongs to the calling user (single-uid mode).
    pub keep_owners: bool,
    /// Create device nodes (only possible as real root). When false they are skipped and counted.
    pub create_devices: bool,
    /// Keep setuid/setgid bits.
    pub keep_setid: bool,
    /// Refuse archives with more entries than this.
    pub max_entries: u64,
}

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct ImportSummary {
    pub compression: Option<Compression>,
    pub archive_bytes: u64,
    pub sha256: String,
    pub entries: u64,
    pub unpacked_bytes: u64,
    pub skipped_devices: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("import failed: {0}")]
    Todo(String),
}

impl ImportError {
    pub fn is_input_error(&self) -> bool {
        true
    }
}

pub fn unpack_archive(
    _archive: &Path,
    _dest: &Path,
    _opts: &ImportOptions,
    _progress: &mut dyn FnMut(u64),
) -> Result<ImportSummary, ImportError> {
    Err(ImportError::Todo("not written yet".into()))
}

pub fn detect_arch(_rootfs: &Path) -> Result<Arch, ImportError> {
    Err(ImportError::Todo("not written yet".into()))
}
