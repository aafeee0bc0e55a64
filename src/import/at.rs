//! The system calls the importer makes, each relative to a directory descriptor and none of them
//! following a symlink: directories are opened with `openat2(RESOLVE_BENEATH |
//! RESOLVE_NO_SYMLINKS)`, the last component is created with `O_EXCL`/`*at` calls and changed
//! with `AT_SYMLINK_NOFOLLOW` or through the descriptor just created. Each wrapper is safe and its
//! error carries the operation and the errno; the caller adds the archive entry ([`SysError::on`]).

use std::ffi::CStr;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{FchmodatFlags, Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid, UnlinkatFlags};

use super::ImportError;
use crate::sys::{self, SysError, SysResult};

/// A failed call carries the operation and the errno ([`SysError`], without a path: the caller
/// names the archive entry with [`SysError::on`]).
pub(super) type AtResult<T> = SysResult<T>;

impl SysError {
    /// The error for the archive entry `entry`.
    pub(super) fn on(self, entry: &str) -> ImportError {
        ImportError::Write {
            op: self.op,
            entry: entry.to_owned(),
            errno: self.errno,
        }
    }
}

fn failed(op: &'static str) -> impl Fn(Errno) -> SysError {
    move |errno| SysError::new(op, None, errno)
}

/// Opens the directory `path` beneath `dir`, refusing any symlink on the way (`ELOOP`), any
/// escape (`EXDEV`) and magic links. `access` is `O_PATH` for a handle to create entries in, or
/// `O_RDONLY` for one that fchmod/futimens accept.
pub fn open_dir(dir: BorrowedFd, path: &CStr, access: i32) -> AtResult<OwnedFd> {
    let resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS;
    sys::openat2(dir, path, access | libc::O_DIRECTORY, resolve).map_err(|errno| {
        let op = match errno {
            Errno::ENOSYS => "open directory (openat2 needs Linux 5.6 or later)",
            _ => "open directory",
        };
        SysError::new(op, None, errno)
    })
}

/// A second descriptor of `fd` (close-on-exec).
pub fn dup(fd: BorrowedFd) -> AtResult<OwnedFd> {
    fd.try_clone_to_owned()
        .map_err(|e| failed("dup")(Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))))
}

pub fn mkdir(dir: BorrowedFd, name: &CStr, mode: u32) -> AtResult<()> {
    nix::sys::stat::mkdirat(Some(dir.as_raw_fd()), name, Mode::from_bits_truncate(mode))
        .map_err(failed("mkdir"))
}

/// Creates a new regular file, private until its mode is set; fails with `EEXIST` rather than
/// open anything that exists (a symlink above all).
pub fn create_file(dir: BorrowedFd, name: &CStr) -> AtResult<File> {
    let flags =
        OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_WRONLY | OFlag::O_CLOEXEC;
    let fd = nix::fcntl::openat(
        Some(dir.as_raw_fd()),
        name,
        flags,
        Mode::from_bits_truncate(0o600),
    )
    .map_err(failed("create"))?;
    // SAFETY: openat returned a new descriptor that nothing else owns.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

pub fn symlink(target: &CStr, dir: BorrowedFd, name: &CStr) -> AtResult<()> {
    nix::unistd::symlinkat(target, Some(dir.as_raw_fd()), name).map_err(failed("symlink"))
}

/// A hard link to `old` (in `old_dir`) itself: without `AT_SYMLINK_FOLLOW`, a symlink is linked,
/// not its target.
pub fn hard_link(old_dir: BorrowedFd, old: &CStr, dir: BorrowedFd, name: &CStr) -> AtResult<()> {
    nix::unistd::linkat(
        Some(old_dir.as_raw_fd()),
        old,
        Some(dir.as_raw_fd()),
        name,
        AtFlags::empty(),
    )
    .map_err(failed("hard link"))
}

pub fn mknod(dir: BorrowedFd, name: &CStr, kind: SFlag, mode: u32, dev: u64) -> AtResult<()> {
    nix::sys::stat::mknodat(
        Some(dir.as_raw_fd()),
        name,
        kind,
        Mode::from_bits_truncate(mode),
        dev,
    )
    .map_err(failed("mknod"))
}

/// chown of `name` in `dir` itself, never of what it points to.
pub fn chown_at(dir: BorrowedFd, name: &CStr, uid: u32, gid: u32) -> AtResult<()> {
    nix::unistd::fchownat(
        Some(dir.as_raw_fd()),
        name,
        Some(Uid::from_raw(uid)),
        Some(Gid::from_raw(gid)),
        AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .map_err(failed("chown"))
}

pub fn chown_fd(fd: BorrowedFd, uid: u32, gid: u32) -> AtResult<()> {
    nix::unistd::fchown(
        fd.as_raw_fd(),
        Some(Uid::from_raw(uid)),
        Some(Gid::from_raw(gid)),
    )
    .map_err(failed("chown"))
}

pub fn chmod_fd(fd: BorrowedFd, mode: u32) -> AtResult<()> {
    nix::sys::stat::fchmod(fd.as_raw_fd(), Mode::from_bits_truncate(mode)).map_err(failed("chmod"))
}

/// chmod of `name` in `dir` (a FIFO or device node just created) without following a symlink.
pub fn chmod_at(dir: BorrowedFd, name: &CStr, mode: u32) -> AtResult<()> {
    nix::sys::stat::fchmodat(
        Some(dir.as_raw_fd()),
        name,
        Mode::from_bits_truncate(mode),
        FchmodatFlags::NoFollowSymlink,
    )
    .map_err(failed("chmod"))
}

pub fn set_mtime_fd(fd: BorrowedFd, mtime: TimeSpec) -> AtResult<()> {
    nix::sys::stat::futimens(fd.as_raw_fd(), &mtime, &mtime).map_err(failed("set times"))
}

/// Sets the times of `name` in `dir` itself (of a symlink, not of its target).
pub fn set_mtime_at(dir: BorrowedFd, name: &CStr, mtime: TimeSpec) -> AtResult<()> {
    nix::sys::stat::utimensat(
        Some(dir.as_raw_fd()),
        name,
        &mtime,
        &mtime,
        UtimensatFlags::NoFollowSymlink,
    )
    .map_err(failed("set times"))
}

/// The file type (`S_IFMT` bits) of `name` in `dir`, not following a symlink.
pub fn file_type(dir: BorrowedFd, name: &CStr) -> AtResult<u32> {
    nix::sys::stat::fstatat(Some(dir.as_raw_fd()), name, AtFlags::AT_SYMLINK_NOFOLLOW)
        .map(|st| st.st_mode & libc::S_IFMT)
        .map_err(failed("stat"))
}

/// Removes `name` from `dir`, whatever it is (an empty directory included).
pub fn remove(dir: BorrowedFd, name: &CStr) -> AtResult<()> {
    let flag = if file_type(dir, name)? == libc::S_IFDIR {
        UnlinkatFlags::RemoveDir
    } else {
        UnlinkatFlags::NoRemoveDir
    };
    nix::unistd::unlinkat(Some(dir.as_raw_fd()), name, flag).map_err(failed("replace"))
}

/// The names in the directory `fd` (opened `O_RDONLY`), `.` and `..` left out.
pub fn list(fd: BorrowedFd) -> AtResult<Vec<std::ffi::CString>> {
    let dup = dup(fd)?;
    let mut dir = nix::dir::Dir::from_fd(dup.into_raw_fd()).map_err(failed("read directory"))?;
    let mut names = Vec::new();
    for e in dir.iter() {
        let e = e.map_err(failed("read directory"))?;
        let name = e.file_name();
        if name.to_bytes() != b"." && name.to_bytes() != b".." {
            names.push(name.to_owned());
        }
    }
    Ok(names)
}

/// Removes `name` from `dir` with everything beneath it; a symlink is removed, never followed
/// (each directory is opened with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`). A name that
/// is not there is no error.
pub fn remove_tree(dir: BorrowedFd, name: &CStr) -> AtResult<()> {
    match file_type(dir, name) {
        Ok(libc::S_IFDIR) => {
            let sub = open_dir(dir, name, libc::O_RDONLY)?;
            for child in list(sub.as_fd())? {
                remove_tree(sub.as_fd(), &child)?;
            }
            nix::unistd::unlinkat(Some(dir.as_raw_fd()), name, UnlinkatFlags::RemoveDir)
                .map_err(failed("remove directory"))
        }
        Ok(_) => nix::unistd::unlinkat(Some(dir.as_raw_fd()), name, UnlinkatFlags::NoRemoveDir)
            .map_err(failed("remove")),
        Err(e) if e.errno == Errno::ENOENT => Ok(()),
        Err(e) => Err(e),
    }
}

/// Runs `create`; when the name exists already (tarballs may repeat an entry), removes what is
/// there and tries once more. What exists is never opened: it may be a symlink.
pub fn replacing<T>(
    dir: BorrowedFd,
    name: &CStr,
    mut create: impl FnMut() -> AtResult<T>,
) -> AtResult<T> {
    match create() {
        Err(SysError {
            errno: Errno::EEXIST,
            ..
        }) => {
            remove(dir, name)?;
            create()
        }
        r => r,
    }
}
