//! Creating one archive entry at a time beneath the root, without ever following a symlink.
//!
//! Each entry's directory is opened with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)` (the
//! last one is kept: archives list a directory's entries together) and the entry is created in it
//! with the `*at` calls of [`super::at`]. What is planted by an earlier entry (`a -> /etc`, then
//! `a/passwd`) makes the kernel refuse the walk, and the import stops naming both. Per-entry state
//! is not kept, except each directory's mode and time, applied at the end (after its contents).

use std::cmp::Reverse;
use std::ffi::{CStr, CString};
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;
use nix::sys::stat::SFlag;
use nix::sys::time::TimeSpec;
use tar::EntryType;

use super::at;
use super::names::{safe_path, SafePath};
use super::{ImportError, ImportOptions, Result};
use crate::sys::SysError;

/// How much of a file is written at once: big enough for few system calls, small enough to stay
/// in the CPU cache between the copy in and the copy out (128 KiB measured faster than 1 MiB).
const BUFFER: usize = 1 << 17;

/// The largest sparse file accepted. A GNU sparse header can claim any size for a few bytes of
/// data (a 10 GB file from a 1 KB archive): the holes cost nothing on disk, but reading them back
/// costs time, and every later full copy (an overlay copy-up, a `cp` without `--sparse`) writes
/// them out. Real root filesystems hold no sparse file near this size (`/var/log/lastlog`, the
/// usual one, is a few MB).
pub const MAX_SPARSE_SIZE: u64 = 1 << 30;

/// The prefix of a whiteout entry's name, and the name of the opaque-directory marker after it.
const WHITEOUT: &[u8] = b".wh.";
const OPAQUE: &[u8] = b".wh..opq";

/// A directory whose mode and time are applied once everything inside it is written.
struct DirMeta {
    /// Beneath the root, normalised; empty for the root itself.
    path: CString,
    mode: u32,
    mtime: TimeSpec,
}

/// What the archive says about an entry's metadata, PAX records applied.
#[derive(Clone, Copy)]
struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: TimeSpec,
}

/// Where an entry goes: its parent directory (open), its name there, its whole path, and the name
/// messages show it by.
#[derive(Clone, Copy)]
struct Dest<'a> {
    pfd: BorrowedFd<'a>,
    name: &'a CStr,
    path: &'a SafePath,
    shown: &'a str,
}

/// Why a directory is being walked: to create an entry in it, or to find a hard link's target.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Walk {
    Create,
    LinkTarget,
}

pub(super) struct Unpacker<'a> {
    root: BorrowedFd<'a>,
    opts: &'a ImportOptions,
    archive: &'a Path,
    /// The directory of the last entry, by its path beneath the root. It stays valid: an entry
    /// only ever removes its own name from its own directory, never a directory above it, and the
    /// next entry with another directory replaces it.
    parent: Option<(CString, OwnedFd)>,
    dirs: Vec<DirMeta>,
    buf: Vec<u8>,
    pub unpacked_bytes: u64,
    pub skipped_devices: u64,
    /// The skipped device nodes (a handful, under `dev/`), so that hard links to them are skipped
    /// rather than refused as links to nothing.
    skipped: Vec<Vec<u8>>,
    pub first_skipped: Option<String>,
    /// An OCI image layer: `.wh.NAME` entries remove NAME from the layers below and
    /// `.wh..wh..opq` empties its directory of what the layers below put there.
    layer: bool,
    /// In a layer, what this layer created (normalised names): an opaque directory keeps those.
    created: std::collections::HashSet<Vec<u8>>,
    /// In a layer, the times of the lower layers' directories it changes without listing them.
    kept_times: std::collections::HashMap<CString, TimeSpec>,
    pub whiteouts: u64,
}

/// The error of a failed `op` (`write`) on the file of the entry `shown`: its errno and name.
fn io_failed<'a>(op: &'static str, shown: &'a str) -> impl Fn(io::Error) -> ImportError + 'a {
    move |e| {
        SysError::new(
            op,
            None,
            Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
        )
        .on(shown)
    }
}

fn refuse(entry: &str, reason: impl Into<String>) -> ImportError {
    ImportError::Unsafe {
        entry: entry.to_owned(),
        reason: reason.into(),
    }
}

impl<'a> Unpacker<'a> {
    pub fn new(
        root: BorrowedFd<'a>,
        opts: &'a ImportOptions,
        archive: &'a Path,
        layer: bool,
    ) -> Self {
        Unpacker {
            layer,
            created: Default::default(),
            kept_times: Default::default(),
            whiteouts: 0,
            root,
            opts,
            archive,
            parent: None,
            dirs: Vec::new(),
            buf: vec![0; BUFFER],
            unpacked_bytes: 0,
            skipped_devices: 0,
            skipped: Vec::new(),
            first_skipped: None,
        }
    }

    fn corrupt(&self, entry: &str, detail: impl std::fmt::Display) -> ImportError {
        ImportError::Corrupt {
            path: self.archive.to_path_buf(),
            detail: format!("entry {entry:?}: {detail}"),
        }
    }

    /// Creates one entry. The tar crate has already consumed GNU long names and PAX headers.
    pub fn entry<R: Read>(&mut self, entry: &mut tar::Entry<R>) -> Result<()> {
        let raw = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw).into_owned();
        let mut kind = entry.header().entry_type();
        match kind {
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                // Pre-POSIX archives mark directories by a trailing slash only.
                if raw.ends_with(b"/") && kind == EntryType::Regular {
                    kind = EntryType::Directory;
                }
            }
            EntryType::Directory
            | EntryType::Symlink
            | EntryType::Link
            | EntryType::Char
            | EntryType::Block
            | EntryType::Fifo => {}
            other => {
                // Global PAX headers, volume labels, multi-volume continuations: nothing to create.
                tracing::debug!(entry = %shown, kind = ?other, "skipping archive entry of a kind that creates nothing");
                return Ok(());
            }
        }
        let path = safe_path(&raw).map_err(|reason| refuse(&shown, reason))?;
        let meta = self.meta(entry, &shown)?;
        let Some(name) = &path.name else {
            return self.root_entry(kind, meta, &shown);
        };
        if self.layer {
            if let Some(hidden) = name.to_bytes().strip_prefix(WHITEOUT) {
                return self.whiteout(&path, hidden, &shown);
            }
            self.created.insert(path.normalised());
        }
        let parent = self.take_parent(&path.parent, &shown)?;
        let pfd = parent.1.as_fd();
        // A layer turns a lower layer's directory into a file or a symlink (merged /usr: `lib`
        // becomes `usr/lib`) by naming it as one: the directory goes, with what it held.
        if self.layer
            && kind != EntryType::Directory
            && at::file_type(pfd, name).is_ok_and(|t| t == libc::S_IFDIR)
        {
            at::remove_tree(pfd, name).map_err(|f| f.on(&shown))?;
        }
        let dest = Dest {
            pfd,
            name,
            path: &path,
            shown: &shown,
        };
        let done = match kind {
            EntryType::Directory => self.directory(dest, meta),
            EntryType::Symlink => self.symlink(entry, dest, meta),
            EntryType::Link => self.hard_link(entry, dest),
            EntryType::Char | EntryType::Block | EntryType::Fifo => self.node(entry, dest, meta),
            _ => self.file(entry, dest, meta),
        };
        self.parent = Some(parent);
        done
    }

    /// An OCI whiteout (image-spec layer.md): `.wh..wh..opq` removes what the layers below put
    /// in its directory; `.wh.NAME` removes NAME (a whole tree for a directory). The marker
    /// itself is not created. A directory that does not exist has nothing to hide.
    fn whiteout(&mut self, path: &SafePath, hidden: &[u8], shown: &str) -> Result<()> {
        self.whiteouts += 1;
        let dir = match self.open_dir(&path.parent, Walk::LinkTarget, shown) {
            Ok(fd) => fd,
            Err(ImportError::Unsafe { reason, .. }) if reason.contains("not in the archive") => {
                return Ok(())
            }
            Err(e) => return Err(e),
        };
        // The directory keeps its time: what the layer says, not when it was unpacked.
        let dir = at::open_dir(dir.as_fd(), c".", libc::O_RDONLY).map_err(|f| f.on(shown))?;
        let mtime = nix::sys::stat::fstat(dir.as_raw_fd())
            .map(|st| TimeSpec::new(st.st_mtime, st.st_mtime_nsec))
            .map_err(|errno| SysError::new("stat", None, errno).on(shown))?;
        if hidden == OPAQUE {
            let listing = at::list(dir.as_fd()).map_err(|f| f.on(shown))?;
            let prefix = path.parent.to_bytes();
            for child in listing {
                let mut full = prefix.to_vec();
                if !full.is_empty() {
                    full.push(b'/');
                }
                full.extend_from_slice(child.to_bytes());
                if !self.created.contains(&full) {
                    at::remove_tree(dir.as_fd(), &child).map_err(|f| f.on(shown))?;
                }
            }
        } else {
            if hidden.is_empty() || hidden == b"." || hidden.starts_with(WHITEOUT) {
                return Err(refuse(shown, "is a whiteout of no valid name"));
            }
            let hidden = CString::new(hidden).map_err(|_| refuse(shown, "contains a NUL byte"))?;
            at::remove_tree(dir.as_fd(), &hidden).map_err(|f| f.on(shown))?;
        }
        at::set_mtime_fd(dir.as_fd(), mtime).map_err(|f| f.on(shown))
    }

    /// Mode, owner and time from the header, overridden by the entry's PAX records if any.
    /// Extended attributes (`SCHILY.xattr.*`, e.g. file capabilities) are ignored: they cannot be
    /// set for other uids without root, and a build root does not need them.
    fn meta<R: Read>(&self, entry: &mut tar::Entry<R>, shown: &str) -> Result<Meta> {
        let h = entry.header();
        let old = h.as_old();
        // An empty field (all NULs or spaces, as some writers leave uid/gid) reads as 0, as GNU
        // tar has it; anything else that is not a number is corruption.
        let field = |name: &str, raw: &[u8], r: io::Result<u64>| match r {
            Ok(v) => Ok(v),
            Err(_) if raw.iter().all(|b| *b == 0 || *b == b' ') => Ok(0),
            Err(e) => Err(self.corrupt(shown, format!("bad {name} field: {e}"))),
        };
        let mut mode = field("mode", &old.mode, h.mode().map(u64::from))? as u32 & 0o7777;
        let mut uid = field("uid", &old.uid, h.uid())?;
        let mut gid = field("gid", &old.gid, h.gid())?;
        let mut mtime = TimeSpec::new(field("mtime", &old.mtime, h.mtime())? as i64, 0);
        if !self.opts.keep_setid {
            mode &= !0o6000;
        }
        let pax = entry
            .pax_extensions()
            .map_err(|e| self.corrupt(shown, format!("bad PAX header: {e}")))?;
        for ext in pax.into_iter().flatten() {
            let ext = ext.map_err(|e| self.corrupt(shown, format!("bad PAX record: {e}")))?;
            let (Ok(key), Ok(value)) = (ext.key(), ext.value()) else {
                continue;
            };
            let number = || {
                value
                    .parse::<u64>()
                    .map_err(|_| self.corrupt(shown, format!("bad PAX {key} {value:?}")))
            };
            match key {
                "uid" => uid = number()?,
                "gid" => gid = number()?,
                "mtime" => {
                    mtime = pax_time(value)
                        .ok_or_else(|| self.corrupt(shown, format!("bad PAX mtime {value:?}")))?
                }
                _ => {}
            }
        }
        // u32::MAX is chown's "leave unchanged"; larger ids would wrap to another owner.
        let id = |name: &str, v: u64| {
            u32::try_from(v)
                .ok()
                .filter(|v| *v != u32::MAX)
                .ok_or_else(|| self.corrupt(shown, format!("{name} {v} is out of range")))
        };
        Ok(Meta {
            mode,
            uid: id("uid", uid)?,
            gid: id("gid", gid)?,
            mtime,
        })
    }

    /// `./` itself: the destination directory's own owner, mode and time.
    fn root_entry(&mut self, kind: EntryType, meta: Meta, shown: &str) -> Result<()> {
        if kind != EntryType::Directory {
            return Err(refuse(
                shown,
                "names the root directory but is not a directory",
            ));
        }
        if self.opts.keep_owners {
            at::chown_fd(self.root, meta.uid, meta.gid).map_err(|f| f.on(shown))?;
        }
        self.dirs.push(DirMeta {
            path: CString::default(),
            mode: meta.mode,
            mtime: meta.mtime,
        });
        Ok(())
    }

    fn directory(&mut self, d: Dest, meta: Meta) -> Result<()> {
        // Private until its mode is set at the end, after its contents.
        match at::mkdir(d.pfd, d.name, 0o700) {
            Ok(()) => {}
            Err(SysError {
                errno: Errno::EEXIST,
                ..
            }) => {
                // A repeated entry, or one that made it as a parent: a directory stays.
                if at::file_type(d.pfd, d.name).map_err(|f| f.on(d.shown))? != libc::S_IFDIR {
                    at::remove(d.pfd, d.name)
                        .and_then(|()| at::mkdir(d.pfd, d.name, 0o700))
                        .map_err(|f| f.on(d.shown))?;
                }
            }
            Err(f) => return Err(f.on(d.shown)),
        }
        self.keep_owner(d, meta)?;
        let path = CString::new(d.path.normalised())
            .map_err(|_| refuse(d.shown, "contains a NUL byte"))?;
        self.dirs.push(DirMeta {
            path,
            mode: meta.mode,
            mtime: meta.mtime,
        });
        Ok(())
    }

    fn file<R: Read>(&mut self, entry: &mut tar::Entry<R>, d: Dest, meta: Meta) -> Result<()> {
        let sparse = entry.header().entry_type() == EntryType::GNUSparse;
        let size = entry.size();
        if sparse && size > MAX_SPARSE_SIZE {
            return Err(refuse(
                d.shown,
                format!(
                    "is a sparse file of {size} bytes holding {} bytes of data; sparse files over \
                     {MAX_SPARSE_SIZE} bytes are refused (a decompression bomb?)",
                    entry.header().entry_size().unwrap_or(0)
                ),
            ));
        }
        let mut file = at::replacing(d.pfd, d.name, || at::create_file(d.pfd, d.name))
            .map_err(|f| f.on(d.shown))?;
        let written = self.write_contents(entry, &mut file, sparse, d.shown)?;
        if written != size {
            return Err(self.corrupt(
                d.shown,
                format!("cut short after {written} of {size} bytes"),
            ));
        }
        self.unpacked_bytes += written;
        let fd = file.as_fd();
        if self.opts.keep_owners {
            at::chown_fd(fd, meta.uid, meta.gid).map_err(|f| f.on(d.shown))?;
        }
        // After chown, which clears the setuid and setgid bits.
        at::chmod_fd(fd, meta.mode).map_err(|f| f.on(d.shown))?;
        at::set_mtime_fd(fd, meta.mtime).map_err(|f| f.on(d.shown))
    }

    /// Copies an entry's data into `file`; the holes of a GNU sparse entry (which the tar crate
    /// reads back as runs of zeros, one run per read) are skipped over rather than written.
    fn write_contents(
        &mut self,
        entry: &mut impl Read,
        file: &mut File,
        sparse: bool,
        shown: &str,
    ) -> Result<u64> {
        let mut written = 0u64;
        let mut hole_at_end = false;
        loop {
            let n = match entry.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(super::stream_error(self.archive, Some(shown), e)),
            };
            let chunk = &self.buf[..n];
            let write_err = io_failed("write", shown);
            hole_at_end = sparse && chunk.iter().all(|b| *b == 0);
            if hole_at_end {
                file.seek(SeekFrom::Current(n as i64)).map_err(write_err)?;
            } else {
                file.write_all(chunk).map_err(write_err)?;
            }
            written += n as u64;
        }
        if hole_at_end {
            file.set_len(written)
                .map_err(io_failed("truncate", shown))?;
        }
        Ok(written)
    }

    fn symlink<R: Read>(&mut self, entry: &mut tar::Entry<R>, d: Dest, meta: Meta) -> Result<()> {
        // The target may be anything (`/usr/bin/dash` is normal in a root filesystem): it is
        // stored, never followed while unpacking.
        let target = entry
            .link_name_bytes()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| refuse(d.shown, "is a symlink without a target"))?;
        let target = CString::new(target.into_owned())
            .map_err(|_| refuse(d.shown, "has a NUL byte in its link target"))?;
        at::replacing(d.pfd, d.name, || at::symlink(&target, d.pfd, d.name))
            .map_err(|f| f.on(d.shown))?;
        self.keep_owner(d, meta)?;
        at::set_mtime_at(d.pfd, d.name, meta.mtime).map_err(|f| f.on(d.shown))
    }

    /// A hard link: its target must be a safe name too, already unpacked, reached without any
    /// symlink on the way, and not a directory. A symlink as the target is linked itself.
    fn hard_link<R: Read>(&mut self, entry: &mut tar::Entry<R>, d: Dest) -> Result<()> {
        let raw = entry
            .link_name_bytes()
            .ok_or_else(|| refuse(d.shown, "is a hard link without a target"))?;
        let target_shown = String::from_utf8_lossy(&raw).into_owned();
        let target = safe_path(&raw).map_err(|r| {
            refuse(
                d.shown,
                format!("is a hard link to {target_shown:?}, which {r}"),
            )
        })?;
        let Some(tname) = &target.name else {
            return Err(refuse(d.shown, "is a hard link to the root directory"));
        };
        let tnorm = target.normalised();
        if tnorm == d.path.normalised() {
            return Ok(()); // a link to itself
        }
        if self.skipped.contains(&tnorm) {
            self.skip_device(d.path, d.shown);
            return Ok(());
        }
        let tdir_owned;
        let tdir = if target.parent == d.path.parent {
            d.pfd
        } else {
            tdir_owned = self.open_dir(&target.parent, Walk::LinkTarget, d.shown)?;
            tdir_owned.as_fd()
        };
        match at::file_type(tdir, tname) {
            Ok(libc::S_IFDIR) => {
                return Err(refuse(
                    d.shown,
                    format!("is a hard link to the directory {target_shown:?}"),
                ))
            }
            Ok(_) => {}
            Err(SysError {
                errno: Errno::ENOENT,
                ..
            }) => {
                return Err(refuse(
                    d.shown,
                    format!(
                        "is a hard link to {target_shown:?}, which is not in the archive before it"
                    ),
                ))
            }
            Err(f) => return Err(f.on(d.shown)),
        }
        at::replacing(d.pfd, d.name, || at::hard_link(tdir, tname, d.pfd, d.name))
            .map_err(|f| f.on(d.shown))
    }

    /// A device node or a FIFO. FIFOs need no privilege and are always created; device nodes
    /// only with `create_devices` (real root), else counted and skipped.
    fn node<R: Read>(&mut self, entry: &mut tar::Entry<R>, d: Dest, meta: Meta) -> Result<()> {
        let kind = entry.header().entry_type();
        let (flag, dev) = match kind {
            EntryType::Fifo => (SFlag::S_IFIFO, 0),
            _ if !self.opts.create_devices => {
                self.skip_device(d.path, d.shown);
                return Ok(());
            }
            _ => {
                let h = entry.header();
                let number = |r: io::Result<Option<u32>>| {
                    r.map(Option::unwrap_or_default)
                        .map_err(|e| self.corrupt(d.shown, format!("bad device number: {e}")))
                };
                let dev = nix::sys::stat::makedev(
                    number(h.device_major())?.into(),
                    number(h.device_minor())?.into(),
                );
                let flag = if kind == EntryType::Char {
                    SFlag::S_IFCHR
                } else {
                    SFlag::S_IFBLK
                };
                (flag, dev)
            }
        };
        at::replacing(d.pfd, d.name, || at::mknod(d.pfd, d.name, flag, 0o600, dev))
            .map_err(|f| f.on(d.shown))?;
        self.keep_owner(d, meta)?;
        at::chmod_at(d.pfd, d.name, meta.mode).map_err(|f| f.on(d.shown))?;
        at::set_mtime_at(d.pfd, d.name, meta.mtime).map_err(|f| f.on(d.shown))
    }

    /// Gives the entry at `dest` (not followed if a symlink) the archive's owner, when owners are
    /// kept.
    fn keep_owner(&self, dest: Dest, meta: Meta) -> Result<()> {
        if self.opts.keep_owners {
            at::chown_at(dest.pfd, dest.name, meta.uid, meta.gid).map_err(|f| f.on(dest.shown))?;
        }
        Ok(())
    }

    fn skip_device(&mut self, path: &SafePath, shown: &str) {
        self.skipped_devices += 1;
        self.skipped.push(path.normalised());
        self.first_skipped.get_or_insert_with(|| shown.to_owned());
    }

    /// The directory `dir` (beneath the root), from the cache when it was the last entry's.
    fn take_parent(&mut self, dir: &CStr, shown: &str) -> Result<(CString, OwnedFd)> {
        if let Some((key, fd)) = self.parent.take() {
            if key.as_c_str() == dir {
                return Ok((key, fd));
            }
        }
        let fd = self.open_dir(dir, Walk::Create, shown)?;
        if self.layer
            && !self.created.contains(dir.to_bytes())
            && !self.kept_times.contains_key(dir)
        {
            // A lower layer's directory this layer does not list: it keeps its time, whatever
            // this layer adds to it or removes from it (so every transport gives the same tree).
            let st = nix::sys::stat::fstat(fd.as_raw_fd())
                .map_err(|errno| SysError::new("stat", None, errno).on(shown))?;
            self.kept_times
                .insert(dir.to_owned(), TimeSpec::new(st.st_mtime, st.st_mtime_nsec));
        }
        Ok((dir.to_owned(), fd))
    }

    /// Opens the directory `dir` beneath the root without following any symlink; to create an
    /// entry, missing directories are created on the way (mode 0755, as tar does).
    fn open_dir(&self, dir: &CStr, walk: Walk, shown: &str) -> Result<OwnedFd> {
        if dir.is_empty() {
            return at::dup(self.root).map_err(|f| f.on(shown));
        }
        // The whole path in one call; walked again one component at a time only to create what
        // is missing or to name the symlink that was refused.
        if let Ok(fd) = at::open_dir(self.root, dir, libc::O_PATH) {
            return Ok(fd);
        }
        let mut cur = at::dup(self.root).map_err(|f| f.on(shown))?;
        let mut so_far = Vec::new();
        for comp in dir.to_bytes().split(|b| *b == b'/') {
            if !so_far.is_empty() {
                so_far.push(b'/');
            }
            so_far.extend_from_slice(comp);
            let so_far = || String::from_utf8_lossy(&so_far).into_owned();
            let c = CString::new(comp).map_err(|_| refuse(shown, "contains a NUL byte"))?;
            cur = match at::open_dir(cur.as_fd(), &c, libc::O_PATH) {
                Ok(fd) => fd,
                Err(SysError { errno, .. }) if errno == Errno::ENOENT && walk == Walk::Create => {
                    match at::mkdir(cur.as_fd(), &c, 0o755) {
                        Ok(())
                        | Err(SysError {
                            errno: Errno::EEXIST,
                            ..
                        }) => {}
                        Err(f) => return Err(f.on(shown)),
                    }
                    at::open_dir(cur.as_fd(), &c, libc::O_PATH).map_err(|f| f.on(shown))?
                }
                Err(SysError { errno, .. }) => {
                    let reason = match (errno, walk) {
                        (Errno::ELOOP | Errno::EXDEV, Walk::Create) => {
                            format!("would be written through the symlink {:?}", so_far())
                        }
                        (Errno::ELOOP | Errno::EXDEV, Walk::LinkTarget) => {
                            format!("is a hard link through the symlink {:?}", so_far())
                        }
                        (Errno::ENOTDIR, _) => {
                            format!("needs {:?} to be a directory, but it is not", so_far())
                        }
                        (Errno::ENOENT, _) => format!(
                            "is a hard link into {:?}, which is not in the archive before it",
                            so_far()
                        ),
                        (errno, _) => {
                            return Err(SysError::new("open directory", None, errno).on(shown))
                        }
                    };
                    return Err(refuse(shown, reason));
                }
            };
        }
        Ok(cur)
    }

    /// Applies directories' modes and times, deepest first: after their contents are written
    /// (which changes a directory's mtime), and so that a read-only directory could be filled.
    pub fn finish(&mut self) -> Result<()> {
        self.parent = None;
        for (path, mtime) in std::mem::take(&mut self.kept_times) {
            if self.created.contains(path.to_bytes()) {
                continue; // listed later in the layer: its own time is applied below
            }
            let shown = String::from_utf8_lossy(path.as_bytes()).into_owned();
            let fd = if path.is_empty() {
                at::dup(self.root)
            } else {
                at::open_dir(self.root, &path, libc::O_RDONLY)
            };
            match fd {
                Ok(fd) => at::set_mtime_fd(fd.as_fd(), mtime).map_err(|f| f.on(&shown))?,
                Err(e) if matches!(e.errno, Errno::ENOENT | Errno::ELOOP | Errno::ENOTDIR) => {}
                Err(e) => return Err(e.on(&shown)),
            }
        }
        let mut dirs = std::mem::take(&mut self.dirs);
        // A directory's path is longer than its parent's; the sort is stable, so of a repeated
        // entry the last one wins.
        dirs.sort_by_key(|d| Reverse(d.path.as_bytes().len()));
        for d in dirs {
            let shown = String::from_utf8_lossy(d.path.as_bytes()).into_owned();
            let fd = if d.path.is_empty() {
                at::dup(self.root)
            } else {
                at::open_dir(self.root, &d.path, libc::O_RDONLY)
            };
            let fd = match fd {
                Ok(fd) => fd,
                Err(SysError {
                    errno: Errno::ENOENT | Errno::ELOOP | Errno::ENOTDIR,
                    ..
                }) => {
                    tracing::debug!(entry = %shown, "directory replaced by a later entry");
                    continue;
                }
                Err(f) => return Err(f.on(&shown)),
            };
            at::chmod_fd(fd.as_fd(), d.mode).map_err(|f| f.on(&shown))?;
            at::set_mtime_fd(fd.as_fd(), d.mtime).map_err(|f| f.on(&shown))?;
        }
        Ok(())
    }
}

/// A PAX time, `SECONDS[.FRACTION]` (possibly negative).
fn pax_time(value: &str) -> Option<TimeSpec> {
    let (secs, frac) = value.split_once('.').unwrap_or((value, ""));
    let secs: i64 = secs.parse().ok()?;
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digits = &frac[..frac.len().min(9)];
    let mut nanos: i64 = if digits.is_empty() {
        0
    } else {
        digits.parse().ok()?
    };
    for _ in digits.len()..9 {
        nanos *= 10;
    }
    if value.starts_with('-') && nanos > 0 {
        // -1.25 is 1.25 s before the epoch: -2 s + 0.75 s.
        return Some(TimeSpec::new(secs - 1, 1_000_000_000 - nanos));
    }
    Some(TimeSpec::new(secs, nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_times_keep_their_fraction() {
        let t = |s| pax_time(s).map(|t| (t.tv_sec(), t.tv_nsec()));
        assert_eq!(t("1700000000"), Some((1_700_000_000, 0)));
        assert_eq!(t("1700000000.5"), Some((1_700_000_000, 500_000_000)));
        assert_eq!(t("1.1234567891"), Some((1, 123_456_789)));
        assert_eq!(t("-1.25"), Some((-2, 750_000_000)));
        assert_eq!(t("x"), None);
        assert_eq!(t("1.2e3"), None);
    }
}
