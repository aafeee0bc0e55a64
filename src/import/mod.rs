//! Importing a root filesystem archive into a directory, safely. Archives are untrusted: every
//! entry name must stay inside the destination, nothing is ever written through a symlink, and
//! hard links may only point at files already inside. The archive is streamed (compression told
//! by its magic bytes, not its name) and hashed on the way.
//!
//! Every entry is created with the `*at` system calls relative to a directory descriptor opened
//! with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`, so a symlink planted by an earlier entry
//! (`a -> /etc`, then `a/passwd`) makes the kernel refuse the walk instead of following it.
//! PAX extended attributes (`SCHILY.xattr.*`, e.g. file capabilities) are not restored.

use std::cell::Cell;
use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{Mode, SFlag};
use sha2::{Digest, Sha256};

use crate::arch::{parse_elf_header, Arch};
use crate::sys::OpenHow;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    None,
    Gzip,
    Xz,
    Zstd,
}

impl Compression {
    /// Tells the compression from the first bytes of a file.
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
    #[error("cannot read the archive {}: {source}", path.display())]
    Open {
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
        "the archive {} has more than {limit} entries; if it is genuine, raise \
         max_archive_entries in config.toml",
        path.display()
    )]
    TooManyEntries { path: PathBuf, limit: u64 },
    #[error("{op} of archive entry {entry:?} failed: {} ({errno})", errno.desc())]
    Write {
        op: &'static str,
        entry: String,
        errno: Errno,
    },
    #[error("cannot tell the architecture of {}: {detail}; name it with --arch", root.display())]
    Arch { root: PathBuf, detail: String },
}

impl ImportError {
    /// True when the archive is at fault (exit status 2), false for trouble on the host's side.
    pub fn is_input_error(&self) -> bool {
        match self {
            ImportError::Write { errno, .. } => !matches!(
                errno,
                Errno::ENOSPC
                    | Errno::EDQUOT
                    | Errno::EROFS
                    | Errno::EIO
                    | Errno::EACCES
                    | Errno::EPERM
            ),
            _ => true,
        }
    }
}

type Result<T> = std::result::Result<T, ImportError>;

/// Reads a file while hashing and counting what passes through.
struct HashingReader<'a> {
    inner: &'a mut File,
    hasher: &'a mut Sha256,
    count: &'a Cell<u64>,
}

impl Read for HashingReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count.set(self.count.get() + n as u64);
        Ok(n)
    }
}

/// Unpacks `archive` into the existing empty directory `dest`. `progress` receives the number of
/// archive bytes read so far (about every megabyte).
pub fn unpack_archive(
    archive: &Path,
    dest: &Path,
    opts: &ImportOptions,
    progress: &mut dyn FnMut(u64),
) -> Result<ImportSummary> {
    let open_err = |source| ImportError::Open {
        path: archive.to_path_buf(),
        source,
    };
    let mut file = File::open(archive).map_err(open_err)?;
    let mut head = [0u8; 6];
    let n = read_full(&mut file, &mut head).map_err(open_err)?;
    let compression = Compression::detect(&head[..n]);
    let mut file = File::open(archive).map_err(open_err)?;

    let root = File::open(dest).map_err(|e| ImportError::Write {
        op: "open destination",
        entry: dest.display().to_string(),
        errno: Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
    })?;
    let mut hasher = Sha256::new();
    let count = Cell::new(0u64);
    let mut summary = ImportSummary {
        compression: Some(compression),
        ..Default::default()
    };
    let corrupt = |e: io::Error| ImportError::Corrupt {
        path: archive.to_path_buf(),
        detail: e.to_string(),
    };
    {
        let reader = BufReader::with_capacity(
            1 << 20,
            HashingReader {
                inner: &mut file,
                hasher: &mut hasher,
                count: &count,
            },
        );
        let decoded: Box<dyn Read + '_> = match compression {
            Compression::None => Box::new(reader),
            Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(reader)),
            Compression::Xz => Box::new(xz2::read::XzDecoder::new_multi_decoder(reader)),
            Compression::Zstd => {
                Box::new(zstd::stream::read::Decoder::with_buffer(reader).map_err(corrupt)?)
            }
        };
        let mut tar = tar::Archive::new(decoded);
        let mut unpacker = Unpacker::new(root.as_fd(), opts);
        let mut reported = 0u64;
        let entries = tar.entries().map_err(corrupt)?;
        for entry in entries {
            let mut entry = entry.map_err(|e| {
                if summary.entries == 0 && compression == Compression::None {
                    ImportError::NotAnArchive {
                        path: archive.to_path_buf(),
                        detail: e.to_string(),
                    }
                } else {
                    corrupt(e)
                }
            })?;
            summary.entries += 1;
            if summary.entries > opts.max_entries {
                return Err(ImportError::TooManyEntries {
                    path: archive.to_path_buf(),
                    limit: opts.max_entries,
                });
            }
            summary.unpacked_bytes += entry.header().size().unwrap_or(0);
            unpacker.entry(&mut entry, archive)?;
            if count.get() >= reported + (1 << 20) {
                reported = count.get();
                progress(reported);
            }
        }
        if summary.entries == 0 {
            return Err(ImportError::NotAnArchive {
                path: archive.to_path_buf(),
                detail: "it holds no entries".into(),
            });
        }
        // Read the compressed stream to its end: that checks its trailer (a truncated archive
        // whose tar end marker survived is still caught here).
        io::copy(&mut tar.into_inner(), &mut io::sink()).map_err(corrupt)?;
        unpacker.finish()?;
        summary.skipped_devices = unpacker.skipped_devices;
        if unpacker.skipped_devices > 0 {
            tracing::warn!(
                "skipped {} device nodes (e.g. {}): they cannot be created without root; \
                 pookie-ns builds /dev at run time",
                unpacker.skipped_devices,
                unpacker.first_skipped.as_deref().unwrap_or("?")
            );
        }
    }
    // Hash what follows the compressed stream too, so the digest is the whole file's.
    io::copy(&mut file, &mut hasher).map_err(corrupt)?;
    summary.archive_bytes = count.get()
        + file
            .metadata()
            .map(|m| m.len())
            .unwrap_or(0)
            .saturating_sub(count.get());
    summary.sha256 = format!("{:x}", hasher.finalize());
    progress(summary.archive_bytes);
    Ok(summary)
}

fn read_full(f: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// An entry name made safe: its normal components, or the reason it is refused.
pub fn safe_components(raw: &[u8]) -> std::result::Result<Vec<&OsStr>, &'static str> {
    if raw.contains(&0) {
        return Err("contains a NUL byte");
    }
    if raw.starts_with(b"/") {
        return Err("is an absolute path");
    }
    let mut out = Vec::new();
    for c in raw.split(|b| *b == b'/') {
        match c {
            b"" | b"." => continue,
            b".." => return Err("escapes the root filesystem (..)"),
            c => out.push(OsStr::from_bytes(c)),
        }
    }
    Ok(out)
}

struct DirTimes {
    path: Vec<u8>,
    mode: u32,
    mtime: u64,
}

struct Unpacker<'a> {
    root: BorrowedFd<'a>,
    opts: &'a ImportOptions,
    /// The last parent directory opened, by relative path (entries come grouped by directory).
    cached: Option<(Vec<u8>, OwnedFd)>,
    dirs: Vec<DirTimes>,
    skipped_devices: u64,
    first_skipped: Option<String>,
}

impl<'a> Unpacker<'a> {
    fn new(root: BorrowedFd<'a>, opts: &'a ImportOptions) -> Self {
        Unpacker {
            root,
            opts,
            cached: None,
            dirs: Vec::new(),
            skipped_devices: 0,
            first_skipped: None,
        }
    }

    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<R>, archive: &Path) -> Result<()> {
        let raw = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw).into_owned();
        let comps = safe_components(&raw).map_err(|r| ImportError::Unsafe {
            entry: shown.clone(),
            reason: r.into(),
        })?;
        let header = entry.header();
        let kind = header.entry_type();
        let mut mode = header.mode().unwrap_or(0o644) & 0o7777;
        if !self.opts.keep_setid {
            mode &= !0o6000;
        }
        let uid = header.uid().unwrap_or(0) as u32;
        let gid = header.gid().unwrap_or(0) as u32;
        let mtime = header.mtime().unwrap_or(0);
        let werr = |op: &'static str| {
            let entry = shown.clone();
            move |errno: Errno| ImportError::Write { op, entry, errno }
        };

        let Some((name, parents)) = comps.split_last() else {
            // "./" itself: the root directory's own mode and time.
            if kind.is_dir() {
                self.dirs.push(DirTimes {
                    path: Vec::new(),
                    mode,
                    mtime,
                });
                self.chown(self.root, None, uid, gid, &shown)?;
            }
            return Ok(());
        };
        let name = CString::new(name.as_bytes()).expect("no NUL (checked)");
        let parent = self.open_parent(parents, &shown)?;
        let pfd = parent.as_fd();

        match kind {
            tar::EntryType::Directory => {
                match nix::sys::stat::mkdirat(
                    Some(pfd.as_raw_fd()),
                    name.as_c_str(),
                    Mode::from_bits_truncate(0o700),
                ) {
                    Ok(()) => {}
                    Err(Errno::EEXIST) if is_dir_at(pfd, &name) => {}
                    Err(Errno::EEXIST) => {
                        unlink_at(pfd, &name, false).map_err(werr("replace"))?;
                        nix::sys::stat::mkdirat(
                            Some(pfd.as_raw_fd()),
                            name.as_c_str(),
                            Mode::from_bits_truncate(0o700),
                        )
                        .map_err(werr("mkdir"))?;
                    }
                    Err(e) => return Err(werr("mkdir")(e)),
                }
                self.chown(pfd, Some(&name), uid, gid, &shown)?;
                self.dirs.push(DirTimes {
                    path: raw.clone(),
                    mode,
                    mtime,
                });
            }
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                let fd = self.create_file(pfd, &name, &shown)?;
                let mut f = File::from(fd);
                io::copy(entry, &mut f).map_err(|e| match e.raw_os_error() {
                    Some(code) => werr("write")(Errno::from_raw(code)),
                    None => ImportError::Corrupt {
                        path: archive.to_path_buf(),
                        detail: format!("entry {shown:?}: {e}"),
                    },
                })?;
                if self.opts.keep_owners {
                    nix::unistd::fchown(f.as_raw_fd(), Some(uid.into()), Some(gid.into()))
                        .map_err(werr("chown"))?;
                }
                // After chown, which clears setuid bits.
                nix::sys::stat::fchmod(f.as_raw_fd(), Mode::from_bits_truncate(mode))
                    .map_err(werr("chmod"))?;
                set_times(f.as_fd(), None, mtime, false).map_err(werr("set times"))?;
            }
            tar::EntryType::Symlink => {
                let target = entry.link_name_bytes().ok_or_else(|| ImportError::Unsafe {
                    entry: shown.clone(),
                    reason: "is a symlink without a target".into(),
                })?;
                let target =
                    CString::new(target.into_owned()).map_err(|_| ImportError::Unsafe {
                        entry: shown.clone(),
                        reason: "has a NUL byte in its link target".into(),
                    })?;
                replace_existing(pfd, &name, |pfd| {
                    nix::unistd::symlinkat(
                        target.as_c_str(),
                        Some(pfd.as_raw_fd()),
                        name.as_c_str(),
                    )
                })
                .map_err(werr("symlink"))?;
                self.chown(pfd, Some(&name), uid, gid, &shown)?;
                set_times(pfd, Some(&name), mtime, true).map_err(werr("set times"))?;
            }
            tar::EntryType::Link => {
                let target_raw = entry
                    .link_name_bytes()
                    .map(|c| c.into_owned())
                    .unwrap_or_default();
                let shown_target = String::from_utf8_lossy(&target_raw).into_owned();
                let tcomps = safe_components(&target_raw).map_err(|r| ImportError::Unsafe {
                    entry: shown.clone(),
                    reason: format!("is a hard link to {shown_target:?}, which {r}"),
                })?;
                let Some((tname, tparents)) = tcomps.split_last() else {
                    return Err(ImportError::Unsafe {
                        entry: shown,
                        reason: "is a hard link to the root directory".into(),
                    });
                };
                let tname = CString::new(tname.as_bytes()).expect("no NUL (checked)");
                let tparent = self.open_dir(tparents, &shown, false)?;
                let parent = self.open_parent(parents, &shown)?;
                replace_existing(parent.as_fd(), &name, |pfd| {
                    nix::unistd::linkat(
                        Some(tparent.as_raw_fd()),
                        tname.as_c_str(),
                        Some(pfd.as_raw_fd()),
                        name.as_c_str(),
                        AtFlags::empty(),
                    )
                })
                .map_err(|e| match e {
                    Errno::ENOENT => ImportError::Unsafe {
                        entry: shown.clone(),
                        reason: format!("is a hard link to {shown_target:?}, which is not in the archive before it"),
                    },
                    e => werr("hard link")(e),
                })?;
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                let kind_flag = match kind {
                    tar::EntryType::Char => SFlag::S_IFCHR,
                    tar::EntryType::Block => SFlag::S_IFBLK,
                    _ => SFlag::S_IFIFO,
                };
                if kind_flag != SFlag::S_IFIFO && !self.opts.create_devices {
                    self.skipped_devices += 1;
                    self.first_skipped.get_or_insert(shown);
                    return Ok(());
                }
                let dev = nix::sys::stat::makedev(
                    header.device_major().ok().flatten().unwrap_or(0).into(),
                    header.device_minor().ok().flatten().unwrap_or(0).into(),
                );
                replace_existing(pfd, &name, |pfd| {
                    nix::sys::stat::mknodat(
                        Some(pfd.as_raw_fd()),
                        name.as_c_str(),
                        kind_flag,
                        Mode::from_bits_truncate(mode),
                        dev,
                    )
                })
                .map_err(werr("mknod"))?;
                self.chown(pfd, Some(&name), uid, gid, &shown)?;
            }
            other => {
                tracing::debug!(entry = %shown, kind = ?other, "skipping archive entry of an unsupported kind");
            }
        }
        Ok(())
    }

    fn create_file(&self, pfd: BorrowedFd, name: &CString, shown: &str) -> Result<OwnedFd> {
        let flags =
            OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let open = || {
            nix::fcntl::openat(
                Some(pfd.as_raw_fd()),
                name.as_c_str(),
                flags,
                Mode::from_bits_truncate(0o600),
            )
        };
        let fd = match open() {
            Err(Errno::EEXIST) => {
                // A repeated entry: replace it (never open it, it may be a symlink).
                unlink_at(pfd, name, is_dir_at(pfd, name)).map_err(|errno| ImportError::Write {
                    op: "replace",
                    entry: shown.into(),
                    errno,
                })?;
                open()
            }
            r => r,
        }
        .map_err(|errno| ImportError::Write {
            op: "create",
            entry: shown.into(),
            errno,
        })?;
        // SAFETY: openat returned a fresh descriptor that we now own.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    fn chown(
        &self,
        pfd: BorrowedFd,
        name: Option<&CString>,
        uid: u32,
        gid: u32,
        shown: &str,
    ) -> Result<()> {
        if !self.opts.keep_owners {
            return Ok(());
        }
        let (dirfd, flags) = match name {
            Some(_) => (pfd.as_raw_fd(), AtFlags::AT_SYMLINK_NOFOLLOW),
            None => (pfd.as_raw_fd(), AtFlags::AT_EMPTY_PATH),
        };
        let empty = CString::default();
        let path = name.unwrap_or(&empty);
        nix::unistd::fchownat(
            Some(dirfd),
            path.as_c_str(),
            Some(uid.into()),
            Some(gid.into()),
            flags,
        )
        .map_err(|errno| ImportError::Write {
            op: "chown",
            entry: shown.into(),
            errno,
        })
    }

    /// The directory holding an entry, opened beneath the root without following any symlink;
    /// missing directories are created.
    fn open_parent(&mut self, parents: &[&OsStr], shown: &str) -> Result<OwnedFd> {
        let key: Vec<u8> = parents.join(OsStr::new("/")).into_encoded_bytes();
        if let Some((k, fd)) = &self.cached {
            if *k == key {
                return fd.try_clone().map_err(|e| ImportError::Write {
                    op: "dup",
                    entry: shown.into(),
                    errno: Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
                });
            }
        }
        let fd = self.open_dir(parents, shown, true)?;
        let copy = fd.try_clone().map_err(|e| ImportError::Write {
            op: "dup",
            entry: shown.into(),
            errno: Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
        })?;
        self.cached = Some((key, copy));
        Ok(fd)
    }

    /// Opens `dirs` (relative to the root) one component at a time; a symlink anywhere is refused.
    fn open_dir(&self, dirs: &[&OsStr], shown: &str, create: bool) -> Result<OwnedFd> {
        let mut cur = self
            .root
            .try_clone_to_owned()
            .map_err(|e| ImportError::Write {
                op: "dup",
                entry: shown.into(),
                errno: Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
            })?;
        if dirs.is_empty() {
            return Ok(cur);
        }
        // Fast path: the whole path at once, refusing symlinks and escapes.
        let joined = CString::new(dirs.join(OsStr::new("/")).into_encoded_bytes()).expect("no NUL");
        match openat2_beneath(self.root, &joined) {
            Ok(fd) => return Ok(fd),
            Err(Errno::ENOENT) if create => {}
            Err(_) => {}
        }
        // Slow path: component by component, to name the culprit or create what is missing.
        for (i, c) in dirs.iter().enumerate() {
            let cname = CString::new(c.as_bytes()).expect("no NUL");
            let so_far = || {
                dirs[..=i]
                    .join(OsStr::new("/"))
                    .to_string_lossy()
                    .into_owned()
            };
            match openat2_beneath(cur.as_fd(), &cname) {
                Ok(fd) => cur = fd,
                Err(Errno::ELOOP) | Err(Errno::EXDEV) => {
                    return Err(ImportError::Unsafe {
                        entry: shown.into(),
                        reason: format!("would be written through the symlink {:?}", so_far()),
                    })
                }
                Err(Errno::ENOTDIR) => {
                    return Err(ImportError::Unsafe {
                        entry: shown.into(),
                        reason: format!("needs {:?} to be a directory, but it is not", so_far()),
                    })
                }
                Err(Errno::ENOENT) if create => {
                    nix::sys::stat::mkdirat(
                        Some(cur.as_raw_fd()),
                        cname.as_c_str(),
                        Mode::from_bits_truncate(0o755),
                    )
                    .map_err(|errno| ImportError::Write {
                        op: "mkdir",
                        entry: so_far(),
                        errno,
                    })?;
                    cur = openat2_beneath(cur.as_fd(), &cname).map_err(|errno| {
                        ImportError::Write {
                            op: "open",
                            entry: so_far(),
                            errno,
                        }
                    })?;
                }
                Err(errno) => {
                    return Err(ImportError::Write {
                        op: "open directory",
                        entry: so_far(),
                        errno,
                    })
                }
            }
        }
        Ok(cur)
    }

    /// Applies directories' modes and times last (deepest first), so that a read-only directory
    /// could still be filled and its mtime is not changed by its own contents.
    fn finish(&mut self) -> Result<()> {
        self.cached = None;
        let mut dirs = std::mem::take(&mut self.dirs);
        dirs.sort_by_key(|d| std::cmp::Reverse(d.path.len()));
        for d in dirs {
            let shown = String::from_utf8_lossy(&d.path).into_owned();
            let comps = safe_components(&d.path).expect("checked when unpacked");
            let fd = if comps.is_empty() {
                self.root
                    .try_clone_to_owned()
                    .map_err(|e| ImportError::Write {
                        op: "dup",
                        entry: shown.clone(),
                        errno: Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
                    })?
            } else {
                let path = self.open_dir(&comps[..comps.len() - 1], &shown, false)?;
                let name = CString::new(comps[comps.len() - 1].as_bytes()).expect("no NUL");
                openat2_dir(path.as_fd(), &name, libc::O_RDONLY).map_err(|errno| {
                    ImportError::Write {
                        op: "open directory",
                        entry: shown.clone(),
                        errno,
                    }
                })?
            };
            nix::sys::stat::fchmod(fd.as_raw_fd(), Mode::from_bits_truncate(d.mode)).map_err(
                |errno| ImportError::Write {
                    op: "chmod",
                    entry: shown.clone(),
                    errno,
                },
            )?;
            set_times(fd.as_fd(), None, d.mtime, false).map_err(|errno| ImportError::Write {
                op: "set times",
                entry: shown,
                errno,
            })?;
        }
        Ok(())
    }
}

/// `openat2(dir, path, O_PATH|O_DIRECTORY, RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS)`: a handle to walk
/// from, not to change (fchmod/futimens need [`openat2_dir`] with O_RDONLY).
fn openat2_beneath(dir: BorrowedFd, path: &CString) -> std::result::Result<OwnedFd, Errno> {
    openat2_dir(dir, path, libc::O_PATH)
}

/// `openat2` of a directory beneath `dir`, refusing symlinks; `access` is O_PATH or O_RDONLY.
fn openat2_dir(
    dir: BorrowedFd,
    path: &CString,
    access: i32,
) -> std::result::Result<OwnedFd, Errno> {
    let how = OpenHow {
        flags: (access | libc::O_DIRECTORY | libc::O_CLOEXEC) as u64,
        mode: 0,
        resolve: libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS,
    };
    // SAFETY: `path` is NUL-terminated and `how` is a valid open_how of the size passed.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir.as_raw_fd(),
            path.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    };
    if fd < 0 {
        return Err(Errno::last());
    }
    // SAFETY: the kernel returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

fn is_dir_at(dir: BorrowedFd, name: &CString) -> bool {
    nix::sys::stat::fstatat(
        Some(dir.as_raw_fd()),
        name.as_c_str(),
        AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFDIR)
}

fn unlink_at(dir: BorrowedFd, name: &CString, is_dir: bool) -> std::result::Result<(), Errno> {
    let flag = if is_dir {
        nix::unistd::UnlinkatFlags::RemoveDir
    } else {
        nix::unistd::UnlinkatFlags::NoRemoveDir
    };
    nix::unistd::unlinkat(Some(dir.as_raw_fd()), name.as_c_str(), flag)
}

/// Runs `create`; if the name exists already (a repeated entry), removes it and tries once more.
fn replace_existing(
    dir: BorrowedFd,
    name: &CString,
    create: impl Fn(BorrowedFd) -> std::result::Result<(), Errno>,
) -> std::result::Result<(), Errno> {
    match create(dir) {
        Err(Errno::EEXIST) => {
            unlink_at(dir, name, is_dir_at(dir, name))?;
            create(dir)
        }
        r => r,
    }
}

/// Sets access and modification time to `mtime` (of `name` in `dir`, or of `dir` itself).
fn set_times(
    dir: BorrowedFd,
    name: Option<&CString>,
    mtime: u64,
    nofollow: bool,
) -> std::result::Result<(), Errno> {
    let t = nix::sys::time::TimeSpec::new(mtime as i64, 0);
    match name {
        Some(n) => nix::sys::stat::utimensat(
            Some(dir.as_raw_fd()),
            n.as_c_str(),
            &t,
            &t,
            if nofollow {
                nix::sys::stat::UtimensatFlags::NoFollowSymlink
            } else {
                nix::sys::stat::UtimensatFlags::FollowSymlink
            },
        ),
        None => nix::sys::stat::futimens(dir.as_raw_fd(), &t, &t),
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
    for c in CANDIDATES {
        let Ok(fd) = crate::sys::open_in_root(rootfs, Path::new(c), libc::O_RDONLY) else {
            continue;
        };
        let mut f = File::from(fd);
        let mut head = [0u8; 64];
        let n = read_full(&mut f, &mut head).unwrap_or(0);
        let Some(id) = parse_elf_header(&head[..n]) else {
            continue;
        };
        return Arch::from_elf(id).ok_or_else(|| ImportError::Arch {
            root: rootfs.to_path_buf(),
            detail: format!(
                "{c} is an ELF binary for an unknown machine (e_machine {})",
                id.machine
            ),
        });
    }
    Err(ImportError::Arch {
        root: rootfs.to_path_buf(),
        detail: format!("none of {} is an ELF binary", CANDIDATES.join(", ")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compression_is_told_by_magic_bytes() {
        assert_eq!(Compression::detect(&[0x1f, 0x8b, 8, 0]), Compression::Gzip);
        assert_eq!(Compression::detect(b"\xfd7zXZ\x00"), Compression::Xz);
        assert_eq!(
            Compression::detect(&[0x28, 0xb5, 0x2f, 0xfd, 0]),
            Compression::Zstd
        );
        assert_eq!(Compression::detect(b"./bin/"), Compression::None);
        assert_eq!(Compression::detect(b""), Compression::None);
    }

    #[test]
    fn entry_names_must_stay_inside() {
        let ok = |s: &str| safe_components(s.as_bytes()).map(|v| v.len());
        assert_eq!(ok("./bin/sh"), Ok(2));
        assert_eq!(ok("bin//sh/."), Ok(2));
        assert_eq!(ok("./"), Ok(0));
        assert!(ok("../x").is_err());
        assert!(ok("a/../../x").is_err());
        assert!(ok("/etc/passwd").is_err());
        assert!(safe_components(b"a\0b").is_err());
    }
}
