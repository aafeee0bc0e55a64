//! Importing a root filesystem archive into a directory, safely. Archives are untrusted: every
//! entry name must stay inside the destination, nothing is ever written through a symlink, and
//! hard links may only point at files already inside. The archive is streamed (compression told
//! by its magic bytes, not its name) and hashed on the way; nothing is staged in a temporary file.
//!
//! Every entry is created with the `*at` system calls relative to a directory descriptor opened
//! with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`, so a symlink planted by an earlier entry
//! (`a -> /etc`, then `a/passwd`) makes the kernel refuse the walk instead of following it. The tar
//! crate's own `unpack`/`unpack_in` are not used: their guards check path strings before opening
//! (the class of bug behind CVE-2018-20990 and CVE-2021-38511), and skip bad entries rather than
//! refuse the archive.
//! PAX extended attributes (`SCHILY.xattr.*`, e.g. file capabilities) are not restored.
//!
//! On error the destination holds part of the tree; the caller unpacks into a staging directory
//! and removes it.

mod at;
mod names;
mod unpack;

use std::cell::Cell;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use nix::errno::Errno;
use sha2::{Digest, Sha256};

use crate::arch::{parse_elf_header, Arch};
use unpack::Unpacker;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    None,
    Gzip,
    Xz,
    Zstd,
}

impl Compression {
    /// Tells the compression from the first bytes of a file (its name is not asked).
    pub fn detect(head: &[u8]) -> Compression {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
            Compression::Xz
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "uncompressed",
            Compression::Gzip => "gzip",
            Compression::Xz => "xz",
            Compression::Zstd => "zstd",
        }
    }
}

#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// Keep the archive's uid/gid (true as root, or inside a user namespace with a full subuid map).
    /// When false, every file belongs to the calling user (single-uid mode).
    pub keep_owners: bool,
    /// Create device nodes (only possible as real root). When false they are skipped and counted.
    /// FIFOs need no privilege and are always created.
    pub create_devices: bool,
    /// Keep setuid/setgid bits.
    pub keep_setid: bool,
    /// Refuse archives with more entries than this (`max_archive_entries` in config.toml).
    pub max_entries: u64,
}

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct ImportSummary {
    pub compression: Option<Compression>,
    /// Size of the archive file.
    pub archive_bytes: u64,
    /// SHA-256 of the whole archive file, hex.
    pub sha256: String,
    pub entries: u64,
    /// Bytes of file data written (sparse files at their full size).
    pub unpacked_bytes: u64,
    pub skipped_devices: u64,
    /// OCI image layers: whiteouts and opaque-directory markers applied.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub whiteouts: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot read the archive {}: {source}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("reading the archive {} failed: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{} is not a tar archive (plain, gzip, xz or zstd): {detail}", path.display())]
    NotAnArchive { path: PathBuf, detail: String },
    #[error("the archive {} is corrupt or truncated: {detail}", path.display())]
    Corrupt { path: PathBuf, detail: String },
    #[error("archive entry {entry:?} {reason}; nothing was imported")]
    Unsafe { entry: String, reason: String },
    #[error(
        "the archive {} has more than {limit} entries (stopped at entry {entry:?}); if it is \
         genuine, raise max_archive_entries in config.toml",
        path.display()
    )]
    TooManyEntries {
        path: PathBuf,
        limit: u64,
        entry: String,
    },
    #[error("cannot unpack into {}: {source}", path.display())]
    Destination {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{op} of archive entry {entry:?} failed: {} ({errno})", errno.desc())]
    Write {
        op: String,
        entry: String,
        errno: Errno,
    },
    #[error("cannot tell the architecture of {}: {detail}; name it with --arch", root.display())]
    Arch { root: PathBuf, detail: String },
}

impl ImportError {
    /// True when the archive is at fault (exit status 2), false for trouble on the host's side
    /// (a full disk, a read-only or unreadable destination, an I/O error, a refused chown).
    pub fn is_input_error(&self) -> bool {
        match self {
            // What the archive's own structure causes: a file where it puts a directory, a
            // directory it replaces that is not empty, a name too long for the filesystem.
            ImportError::Write { errno, .. } => matches!(
                errno,
                Errno::EEXIST
                    | Errno::ENOTEMPTY
                    | Errno::ENOTDIR
                    | Errno::EISDIR
                    | Errno::ENAMETOOLONG
                    | Errno::ELOOP
            ),
            ImportError::Read { .. } | ImportError::Destination { .. } => false,
            ImportError::Open { .. }
            | ImportError::NotAnArchive { .. }
            | ImportError::Corrupt { .. }
            | ImportError::Unsafe { .. }
            | ImportError::TooManyEntries { .. }
            | ImportError::Arch { .. } => true,
        }
    }
}

type Result<T> = std::result::Result<T, ImportError>;

/// A failed read of the archive stream: the host's trouble when the OS says so, else the
/// decompressor or the tar parser found the data bad.
fn stream_error(archive: &Path, entry: Option<&str>, e: io::Error) -> ImportError {
    if e.raw_os_error().is_some() {
        return ImportError::Read {
            path: archive.to_path_buf(),
            source: e,
        };
    }
    ImportError::Corrupt {
        path: archive.to_path_buf(),
        detail: match entry {
            Some(entry) => format!("entry {entry:?}: {e}"),
            None => e.to_string(),
        },
    }
}

/// How often the progress callback hears from us, in archive bytes.
const PROGRESS_STEP: u64 = 1 << 20;

/// Decompressed data goes from the reading thread to the unpacking one in chunks this big, at
/// most [`CHUNKS_IN_FLIGHT`] queued: memory stays bounded whatever the archive.
const CHUNK: usize = 1 << 20;
const CHUNKS_IN_FLIGHT: usize = 4;

/// Unpacks `archive` into the existing empty directory `dest`. `progress` receives the number of
/// archive bytes read so far (about every megabyte, and once at the end).
///
/// Reading, hashing and decompressing run in a second thread, unpacking in this one: like
/// `zstd -dc X | tar -x`, the two halves use two cores.
pub fn unpack_archive(
    archive: &Path,
    dest: &Path,
    opts: &ImportOptions,
    progress: &mut dyn FnMut(u64),
) -> Result<ImportSummary> {
    unpack(archive, dest, opts, false, progress)
}

/// Unpacks one OCI image layer over what `dest` holds: like [`unpack_archive`], and besides
/// `.wh.NAME` whiteouts remove NAME from the layers below, `.wh..wh..opq` empties its directory of
/// them, and an empty layer is fine. The summary's `sha256` is the blob's digest: the caller
/// compares it with the manifest's.
pub fn unpack_layer(
    archive: &Path,
    dest: &Path,
    opts: &ImportOptions,
    progress: &mut dyn FnMut(u64),
) -> Result<ImportSummary> {
    unpack(archive, dest, opts, true, progress)
}

fn unpack(
    archive: &Path,
    dest: &Path,
    opts: &ImportOptions,
    layer: bool,
    progress: &mut dyn FnMut(u64),
) -> Result<ImportSummary> {
    let file = File::open(archive).map_err(|source| ImportError::Open {
        path: archive.to_path_buf(),
        source,
    })?;
    let root = File::options()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(dest)
        .map_err(|source| ImportError::Destination {
            path: dest.to_path_buf(),
            source,
        })?;
    // The magic bytes, read without moving the file offset.
    let mut head = [0u8; 6];
    let n = read_full_at(&file, &mut head).map_err(|source| ImportError::Open {
        path: archive.to_path_buf(),
        source,
    })?;
    let compression = Compression::detect(&head[..n]);

    std::thread::scope(|scope| {
        let (chunks_tx, chunks_rx) = mpsc::sync_channel(CHUNKS_IN_FLIGHT);
        let (spare_tx, spare_rx) = mpsc::sync_channel(CHUNKS_IN_FLIGHT + 2);
        let reader = std::thread::Builder::new()
            .name("unpack-read".into())
            .spawn_scoped(scope, || {
                read_archive(&file, compression, chunks_tx, spare_rx)
            })
            .map_err(|source| ImportError::Read {
                path: archive.to_path_buf(),
                source,
            })?;
        let stream = Chunks {
            rx: chunks_rx,
            spare: spare_tx,
            cur: Vec::new(),
            pos: 0,
            state: StreamState::Open,
            reported: 0,
            progress: &mut *progress,
        };
        let mut summary = unpack_stream(
            stream,
            archive,
            root.as_fd(),
            opts,
            compression,
            n == 0,
            layer,
        )?;
        // The reader hashed the rest of the file after the compressed stream ended.
        let (sha256, bytes) = match reader.join() {
            Ok(r) => r.map_err(|e| stream_error(archive, None, e))?,
            Err(panic) => std::panic::resume_unwind(panic),
        };
        summary.compression = Some(compression);
        summary.sha256 = sha256;
        summary.archive_bytes = bytes;
        progress(bytes);
        Ok(summary)
    })
}

/// The unpacking half: tar entries from the decompressed stream, then the stream to its end.
fn unpack_stream(
    stream: Chunks,
    archive: &Path,
    root: BorrowedFd,
    opts: &ImportOptions,
    compression: Compression,
    empty_file: bool,
    layer: bool,
) -> Result<ImportSummary> {
    let mut summary = ImportSummary::default();
    let mut tar = tar::Archive::new(stream);
    let mut unpacker = Unpacker::new(root, opts, archive, layer);
    let entries = tar.entries().map_err(|e| stream_error(archive, None, e))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| match summary.entries {
            0 => first_entry_error(archive, compression, e),
            _ => stream_error(archive, None, e),
        })?;
        summary.entries += 1;
        if summary.entries > opts.max_entries {
            return Err(ImportError::TooManyEntries {
                path: archive.to_path_buf(),
                limit: opts.max_entries,
                entry: String::from_utf8_lossy(&entry.path_bytes()).into_owned(),
            });
        }
        unpacker.entry(&mut entry)?;
        if summary.entries == 10 {
            crate::fault::point("import-unpacking");
        }
    }
    if summary.entries == 0 && !layer {
        return Err(ImportError::NotAnArchive {
            path: archive.to_path_buf(),
            detail: if empty_file {
                "the file is empty".into()
            } else {
                "it holds no entries".into()
            },
        });
    }
    // Read the stream to its end: that checks the compressed trailer (CRC, size), so a truncated
    // archive whose tar end marker survived is caught too.
    io::copy(&mut tar.into_inner(), &mut io::sink()).map_err(|e| stream_error(archive, None, e))?;
    unpacker.finish()?;
    summary.unpacked_bytes = unpacker.unpacked_bytes;
    summary.skipped_devices = unpacker.skipped_devices;
    summary.whiteouts = unpacker.whiteouts;
    if unpacker.skipped_devices > 0 {
        tracing::warn!(
            "skipped {} device nodes (e.g. {}): they cannot be created without root; \
             pookie-ns builds /dev at run time",
            unpacker.skipped_devices,
            unpacker.first_skipped.as_deref().unwrap_or("?")
        );
    }
    Ok(summary)
}

/// What the reading thread sends: decompressed data with the archive bytes read so far, a read
/// or decompression error, or the clean end of the stream.
enum Msg {
    Data(Vec<u8>, u64),
    Failed(io::Error),
    End,
}

/// Reads the archive file, hashing and counting every byte on the way to the decompressor.
struct Counting<'a> {
    file: &'a File,
    hasher: &'a mut Sha256,
    read: &'a Cell<u64>,
}

impl Read for Counting<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.read.set(self.read.get() + n as u64);
        Ok(n)
    }
}

/// The reading half (its own thread): file → hash and count → decompressor → chunks. Stops
/// quietly when the unpacking half hangs up (it failed). Returns the digest of the whole file and
/// its size, what follows the compressed stream included.
fn read_archive(
    file: &File,
    compression: Compression,
    tx: mpsc::SyncSender<Msg>,
    spare: mpsc::Receiver<Vec<u8>>,
) -> io::Result<(String, u64)> {
    let mut hasher = Sha256::new();
    let read = Cell::new(0u64);
    {
        let counting = Counting {
            file,
            hasher: &mut hasher,
            read: &read,
        };
        // The bufread decoders read straight from this buffer; all of them go on past the end
        // of the first stream (concatenated gzip members, xz streams, zstd frames).
        let input = BufReader::with_capacity(CHUNK, counting);
        let decoded: io::Result<Box<dyn Read + '_>> = match compression {
            Compression::None => Ok(Box::new(input)),
            Compression::Gzip => Ok(Box::new(flate2::bufread::MultiGzDecoder::new(input))),
            Compression::Xz => Ok(Box::new(liblzma::bufread::XzDecoder::new_multi_decoder(
                input,
            ))),
            Compression::Zstd => zstd::stream::read::Decoder::with_buffer(input)
                .map(|d| Box::new(d) as Box<dyn Read + '_>),
        };
        let mut decoded = match decoded {
            Ok(d) => d,
            Err(e) => {
                let _ = tx.send(Msg::Failed(e));
                return Ok((String::new(), 0));
            }
        };
        loop {
            let mut buf = spare.try_recv().unwrap_or_default();
            buf.resize(CHUNK, 0);
            let filled = match read_full(&mut decoded, &mut buf) {
                Ok(n) => n,
                Err(e) => {
                    let _ = tx.send(Msg::Failed(e));
                    return Ok((String::new(), 0));
                }
            };
            buf.truncate(filled);
            let last = filled < CHUNK;
            if filled > 0 && tx.send(Msg::Data(buf, read.get())).is_err() {
                return Ok((String::new(), 0)); // the unpacking half gave up
            }
            if last {
                break;
            }
        }
    }
    // Whatever follows the compressed stream (nothing, normally) belongs to the digest too.
    let _ = tx.send(Msg::End);
    let mut rest = Counting {
        file,
        hasher: &mut hasher,
        read: &read,
    };
    io::copy(&mut rest, &mut io::sink())?;
    Ok((format!("{:x}", hasher.finalize()), read.get()))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum StreamState {
    Open,
    Ended,
    Failed,
}

/// The unpacking half's view of the stream: the chunks the reading thread sends, as a `Read`.
/// Progress is reported from here, on the caller's thread.
struct Chunks<'a> {
    rx: mpsc::Receiver<Msg>,
    spare: mpsc::SyncSender<Vec<u8>>,
    cur: Vec<u8>,
    pos: usize,
    state: StreamState,
    reported: u64,
    progress: &'a mut dyn FnMut(u64),
}

impl Read for Chunks<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.cur.len() {
            match self.state {
                StreamState::Open => {}
                StreamState::Ended => return Ok(0),
                // Never let a later read take a failed stream for a finished one.
                StreamState::Failed => return Err(io::Error::other("the archive stream failed")),
            }
            match self.rx.recv() {
                Ok(Msg::Data(data, read)) => {
                    let used = std::mem::replace(&mut self.cur, data);
                    let _ = self.spare.try_send(used);
                    self.pos = 0;
                    if read >= self.reported + PROGRESS_STEP {
                        self.reported = read;
                        (self.progress)(read);
                    }
                }
                Ok(Msg::End) => self.state = StreamState::Ended,
                Ok(Msg::Failed(e)) => {
                    self.state = StreamState::Failed;
                    return Err(e);
                }
                Err(mpsc::RecvError) => {
                    self.state = StreamState::Failed;
                    return Err(io::Error::other("the archive reading thread stopped"));
                }
            }
        }
        let n = buf.len().min(self.cur.len() - self.pos);
        buf[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// The first entry could not be read: most likely the file is no (compressed) tar archive.
fn first_entry_error(archive: &Path, compression: Compression, e: io::Error) -> ImportError {
    if e.raw_os_error().is_some() {
        return stream_error(archive, None, e);
    }
    match compression {
        Compression::None => ImportError::NotAnArchive {
            path: archive.to_path_buf(),
            detail: format!(
                "it is not gzip, xz or zstd compressed, and does not start with a tar header ({e})"
            ),
        },
        c => ImportError::Corrupt {
            path: archive.to_path_buf(),
            detail: format!(
                "its {} stream does not start with a tar header ({e})",
                c.name()
            ),
        },
    }
}

/// The architecture of a root filesystem, read from the ELF header of its shell (symlinks are
/// resolved inside the root, never on the host).
pub fn detect_arch(rootfs: &Path) -> Result<Arch> {
    const CANDIDATES: [&str; 5] = [
        "/bin/sh",
        "/usr/bin/sh",
        "/bin/busybox",
        "/usr/bin/env",
        "/bin/ls",
    ];
    let fail = |detail: String| ImportError::Arch {
        root: rootfs.to_path_buf(),
        detail,
    };
    let mut passed = Vec::new();
    for c in CANDIDATES {
        // O_NONBLOCK: a FIFO planted as /bin/sh must not hang the import.
        let flags = libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOCTTY;
        let fd = match crate::sys::open_in_root(rootfs, Path::new(c), flags) {
            Ok(fd) => fd,
            Err(e) if e.errno == Errno::ENOENT => continue,
            Err(e) => {
                passed.push(format!("{c}: {}", e.errno.desc()));
                continue;
            }
        };
        let mut f = File::from(fd);
        if !f.metadata().is_ok_and(|m| m.is_file()) {
            passed.push(format!("{c} is not a regular file"));
            continue;
        }
        let mut head = [0u8; 64];
        let n = read_full(&mut f, &mut head).unwrap_or(0);
        let Some(id) = parse_elf_header(&head[..n]) else {
            passed.push(format!("{c} is not an ELF binary"));
            continue;
        };
        return Arch::from_elf(id).ok_or_else(|| {
            fail(format!(
                "{c} is an ELF binary for a machine pookie-ns does not know (e_machine {}, \
                 {}-bit, {} endian)",
                id.machine,
                if id.class == 2 { 64 } else { 32 },
                if id.data == 2 { "big" } else { "little" },
            ))
        });
    }
    Err(fail(if passed.is_empty() {
        format!("none of {} exists in it", CANDIDATES.join(", "))
    } else {
        passed.join("; ")
    }))
}

/// Fills `buf` by calls to `read` (given the part still empty and how many bytes came before it)
/// until it is full or at the end of the input, interrupted calls made again; the bytes read.
fn fill(
    buf: &mut [u8],
    mut read: impl FnMut(&mut [u8], usize) -> io::Result<usize>,
) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match read(&mut buf[n..], n) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Reads the start of `f` with pread, leaving its offset where it is.
fn read_full_at(f: &File, buf: &mut [u8]) -> io::Result<usize> {
    fill(buf, |rest, at| f.read_at(rest, at as u64))
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    fill(buf, |rest, _| r.read(rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compression_is_told_by_magic_bytes() {
        assert_eq!(Compression::detect(&[0x1f, 0x8b, 8, 0]), Compression::Gzip);
        assert_eq!(Compression::detect(b"\xfd7zXZ\x00\x00"), Compression::Xz);
        assert_eq!(
            Compression::detect(&[0x28, 0xb5, 0x2f, 0xfd, 0]),
            Compression::Zstd
        );
        assert_eq!(Compression::detect(b"./bin/"), Compression::None);
        assert_eq!(Compression::detect(b""), Compression::None);
        // Partial magic is no magic.
        assert_eq!(Compression::detect(&[0x1f]), Compression::None);
        assert_eq!(Compression::detect(b"\xfd7zXZ"), Compression::None);
        assert_eq!(Compression::detect(&[0x28, 0xb5, 0x2f]), Compression::None);
        // A file named .tar.gz that is an xz stream is xz.
        assert_eq!(Compression::detect(b"\xfd7zXZ\x00rest"), Compression::Xz);
    }

    #[test]
    fn input_errors_are_told_from_host_trouble() {
        let write = |errno| ImportError::Write {
            op: "create".into(),
            entry: "./x".into(),
            errno,
        };
        for host in [
            Errno::ENOSPC,
            Errno::EDQUOT,
            Errno::EACCES,
            Errno::EROFS,
            Errno::EIO,
        ] {
            assert!(!write(host).is_input_error(), "{host}");
        }
        assert!(write(Errno::ENOTEMPTY).is_input_error());
        assert!(ImportError::Unsafe {
            entry: "../x".into(),
            reason: "escapes the root filesystem (..)".into()
        }
        .is_input_error());
        assert!(!ImportError::Read {
            path: "a.tar".into(),
            source: io::Error::from_raw_os_error(libc::EIO)
        }
        .is_input_error());
    }

    #[test]
    fn messages_name_the_entry_and_the_reason() {
        let e = ImportError::Unsafe {
            entry: "a/passwd".into(),
            reason: "would be written through the symlink \"a\"".into(),
        };
        assert_eq!(
            e.to_string(),
            "archive entry \"a/passwd\" would be written through the symlink \"a\"; nothing was \
             imported"
        );
        let e = ImportError::TooManyEntries {
            path: "x.tar".into(),
            limit: 10,
            entry: "f11".into(),
        };
        assert!(e.to_string().contains("max_archive_entries"));
        assert!(e.to_string().contains("\"f11\""));
    }
}
