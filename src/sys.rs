//! Safe wrappers around the system calls pookie-ns makes. Each wrapper turns a failure into a
//! [`SysError`] that carries the operation, the path it was made on and the errno, plus advice where
//! the errno has a well-known cause (a disabled user namespace, an old kernel), so that no caller has
//! to remember which errno means what.

use std::ffi::{CStr, CString};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;

/// A failed system call: what was attempted, on which path, the errno, and what to do about it.
#[derive(Debug, thiserror::Error)]
pub struct SysError {
    pub op: String,
    pub path: Option<PathBuf>,
    pub errno: Errno,
    pub hint: Option<String>,
}

impl std::fmt::Display for SysError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.op)?;
        if let Some(p) = &self.path {
            write!(f, " {}", p.display())?;
        }
        write!(f, " failed: {} ({})", self.errno.desc(), self.errno)?;
        if let Some(h) = &self.hint {
            write!(f, "\n  hint: {h}")?;
        }
        Ok(())
    }
}

impl SysError {
    pub fn new(op: impl Into<String>, path: Option<&Path>, errno: Errno) -> Self {
        SysError {
            op: op.into(),
            path: path.map(Path::to_path_buf),
            errno,
            hint: None,
        }
    }

    pub fn hint(mut self, h: impl Into<String>) -> Self {
        self.hint = Some(h.into());
        self
    }

    pub fn io(op: impl Into<String>, path: &Path, e: &std::io::Error) -> Self {
        let errno = Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO));
        SysError::new(op, Some(path), errno)
    }
}

pub type SysResult<T> = Result<T, SysError>;

/// A failed file operation of the standard library: what was attempted (`"read"`), on which path,
/// and the error. The `Io` variant of both [`crate::error::Error`] and
/// [`crate::oci::OciError`].
#[derive(Debug, thiserror::Error)]
#[error("{what} {}: {source}", path.display())]
pub struct PathIoError {
    pub what: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

impl PathIoError {
    pub fn new(what: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        PathIoError {
            what,
            path: path.into(),
            source,
        }
    }
}

fn cstr(path: &Path) -> SysResult<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| SysError::new("path contains a NUL byte:", Some(path), Errno::EINVAL))
}

/// unshare(2) with advice for the usual reasons a user namespace is refused.
pub fn unshare(flags: CloneFlags) -> SysResult<()> {
    nix::sched::unshare(flags).map_err(|e| {
        let err = SysError::new(format!("unshare({flags:?})"), None, e);
        match e {
            Errno::EPERM | Errno::ENOSPC if crate::hostcheck::current_advice().is_some() => {
                err.hint(crate::hostcheck::current_advice().unwrap_or_default())
            }
            Errno::EPERM if flags.contains(CloneFlags::CLONE_NEWUSER) => err.hint(
                "unprivileged user namespaces are disabled on this host: enable them with \
                 `sudo sysctl -w kernel.unprivileged_userns_clone=1` (Debian) or \
                 `sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0` (Ubuntu)",
            ),
            Errno::ENOSPC => err.hint(
                "the per-user namespace limit is reached: check /proc/sys/user/max_user_namespaces \
                 (and max_mnt_namespaces, max_pid_namespaces)",
            ),
            Errno::EINVAL => err.hint("this kernel does not support one of the namespace kinds"),
            _ => err,
        }
    })
}

/// mount(2); `what` names the mount for the message ("overlay", "proc" ...).
pub fn mount(
    source: Option<&str>,
    target: &Path,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
) -> SysResult<()> {
    nix::mount::mount(source, target, fstype, flags, data).map_err(|e| {
        let what = fstype.unwrap_or(if flags.contains(MsFlags::MS_BIND) {
            "bind"
        } else {
            "remount"
        });
        let mut err = SysError::new(
            format!(
                "mount {what}{}{} on",
                source
                    .filter(|s| s.starts_with('/'))
                    .map(|s| format!(" of {s}"))
                    .unwrap_or_default(),
                data.map(|d| format!(" ({d})")).unwrap_or_default()
            ),
            Some(target),
            e,
        );
        if fstype == Some("overlay") {
            err = match e {
                Errno::EINVAL => err.hint(
                    "overlayfs refused the layers: inside a user namespace it needs Linux >= 5.11 \
                     with the `userxattr` option, and the upper and work dirs on the same \
                     filesystem that is not itself an overlay; see dmesg for the kernel's reason",
                ),
                Errno::EPERM => err.hint(
                    "this kernel does not allow overlayfs mounts in a user namespace (Linux >= 5.11 \
                     needed)",
                ),
                _ => err,
            };
        }
        err
    })
}

/// The flags of the mount at `path` that a user namespace may not clear (statfs(2) f_flag).
pub fn mount_flags_of(path: &Path) -> MsFlags {
    let mut out = MsFlags::empty();
    if let Ok(st) = nix::sys::statvfs::statvfs(path) {
        use nix::sys::statvfs::FsFlags;
        let f = st.flags();
        for (have, want) in [
            (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
            (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
            (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
            (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
            (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
            (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
        ] {
            if f.contains(have) {
                out |= want;
            }
        }
    }
    out
}

/// Swaps two paths atomically (renameat2 with RENAME_EXCHANGE): each name points at the
/// other's object at once, so a reader sees either the old or the new one, never neither.
pub fn exchange(a: &Path, b: &Path) -> SysResult<()> {
    let (ca, cb) = (cstr(a)?, cstr(b)?);
    // SAFETY: two valid NUL-terminated paths; renameat2 reads them only.
    let r = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            ca.as_ptr(),
            libc::AT_FDCWD,
            cb.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    Errno::result(r)
        .map(drop)
        .map_err(|e| SysError::new(format!("exchange with {}", b.display()), Some(a), e))
}

pub fn umount2(target: &Path, flags: MntFlags) -> SysResult<()> {
    nix::mount::umount2(target, flags).map_err(|e| SysError::new("umount", Some(target), e))
}

pub fn pivot_root(new_root: &Path, put_old: &Path) -> SysResult<()> {
    nix::unistd::pivot_root(new_root, put_old).map_err(|e| {
        SysError::new(
            format!("pivot_root(put_old={})", put_old.display()),
            Some(new_root),
            e,
        )
    })
}

pub fn chdir(path: &Path) -> SysResult<()> {
    nix::unistd::chdir(path).map_err(|e| SysError::new("chdir", Some(path), e))
}

pub fn chroot(path: &Path) -> SysResult<()> {
    nix::unistd::chroot(path).map_err(|e| SysError::new("chroot", Some(path), e))
}

pub fn mkdir_p(path: &Path, mode: u32) -> SysResult<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(path)
        .map_err(|e| SysError::io("mkdir", path, &e))
}

/// Creates an empty regular file to bind-mount a file onto.
pub fn touch(path: &Path) -> SysResult<()> {
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map(drop)
        .map_err(|e| SysError::io("create mount point", path, &e))
}

pub fn write_file(path: &Path, data: &[u8]) -> SysResult<()> {
    std::fs::write(path, data).map_err(|e| SysError::io("write", path, &e))
}

/// Brings up `lo` in the current network namespace (SIOCSIFFLAGS, as `ip link set lo up` does);
/// a new network namespace has only this device, down.
pub fn loopback_up() -> SysResult<()> {
    // SAFETY: a plain datagram socket used only for the ioctl below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(SysError::new("socket for lo", None, Errno::last()));
    }
    // SAFETY: the kernel returned a new descriptor that nothing else owns; closed on drop.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: ifreq is plain data; the name fits its 16-byte buffer.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (i, b) in b"lo".iter().enumerate() {
        req.ifr_name[i] = *b as libc::c_char;
    }
    req.ifr_ifru.ifru_flags = (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
    // SAFETY: fd is a valid socket and req a valid ifreq for SIOCSIFFLAGS.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::SIOCSIFFLAGS, &req) };
    Errno::result(r)
        .map(drop)
        .map_err(|e| SysError::new("bring up lo", None, e))
}

pub fn sethostname(name: &str) -> SysResult<()> {
    nix::unistd::sethostname(name).map_err(|e| SysError::new("sethostname", None, e))
}

/// PR_SET_NO_NEW_PRIVS: setuid binaries and file capabilities grant nothing from here on.
pub fn set_no_new_privs() -> SysResult<()> {
    // SAFETY: prctl with PR_SET_NO_NEW_PRIVS takes integer arguments only.
    let r = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
    Errno::result(r)
        .map(drop)
        .map_err(|e| SysError::new("prctl(PR_SET_NO_NEW_PRIVS)", None, e))
}

/// Becomes `uid`:`gid` with `gid` as the only group (an image's `User`): setgroups, setresgid,
/// setresuid, in the order that keeps the right to make the next call.
pub fn become_ids(uid: u32, gid: u32, keep_groups: bool) -> SysResult<()> {
    let g = nix::unistd::Gid::from_raw(gid);
    let u = nix::unistd::Uid::from_raw(uid);
    if !keep_groups {
        nix::unistd::setgroups(&[g]).map_err(|e| SysError::new("setgroups", None, e))?;
    }
    nix::unistd::setresgid(g, g, g)
        .map_err(|e| SysError::new(format!("setresgid({gid})"), None, e))?;
    nix::unistd::setresuid(u, u, u).map_err(|e| SysError::new(format!("setresuid({uid})"), None, e))
}

/// Gives every entry under `path` (itself included, symlinks not followed) to `uid`:`gid`.
pub fn chown_tree(path: &Path, uid: u32, gid: u32) -> SysResult<()> {
    let (u, g) = (
        Some(nix::unistd::Uid::from_raw(uid)),
        Some(nix::unistd::Gid::from_raw(gid)),
    );
    nix::unistd::fchownat(None, path, u, g, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)
        .map_err(|e| SysError::new("chown", Some(path), e))?;
    let meta = std::fs::symlink_metadata(path).map_err(|e| SysError::io("stat", path, &e))?;
    if meta.is_dir() {
        let entries = std::fs::read_dir(path).map_err(|e| SysError::io("read", path, &e))?;
        for e in entries {
            let e = e.map_err(|e| SysError::io("read", path, &e))?;
            chown_tree(&e.path(), uid, gid)?;
        }
    }
    Ok(())
}

/// Asks the kernel to send `sig` to this process when its parent dies, so that a killed pookie-ns
/// does not leave a sandbox running.
pub fn set_parent_death_signal(sig: nix::sys::signal::Signal) -> SysResult<()> {
    nix::sys::prctl::set_pdeathsig(sig)
        .map_err(|e| SysError::new("prctl(PR_SET_PDEATHSIG)", None, e))
}

/// Makes the process `cmd` starts get `sig` when its parent (the thread that spawned it) dies:
/// [`set_parent_death_signal`] between fork and exec.
pub fn set_parent_death_signal_of(cmd: &mut std::process::Command, sig: nix::sys::signal::Signal) {
    // SAFETY: prctl is async-signal-safe, and nothing else runs between fork and exec.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(cmd, move || {
            nix::sys::prctl::set_pdeathsig(sig).map_err(std::io::Error::from)
        });
    }
}

/// Closes every file descriptor from `first` up, so that nothing of pookie-ns leaks into the
/// sandboxed command.
pub fn close_fds_from(first: RawFd) -> SysResult<()> {
    // SAFETY: close_range only closes descriptors; no memory is passed.
    let r = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first as libc::c_uint,
            libc::c_uint::MAX,
            0,
        )
    };
    if r == 0 {
        return Ok(());
    }
    // Kernels before 5.9: walk /proc/self/fd instead.
    let fds: Vec<RawFd> = std::fs::read_dir("/proc/self/fd")
        .map_err(|e| SysError::io("list", Path::new("/proc/self/fd"), &e))?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|fd| *fd >= first)
        .collect();
    for fd in fds {
        // SAFETY: closing a descriptor number; at worst it is already closed (EBADF).
        unsafe { libc::close(fd) };
    }
    Ok(())
}

/// `struct open_how` of openat2(2) (libc's is non-exhaustive and cannot be built).
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

/// `openat2(2)`: opens `path` relative to `dir` with the `RESOLVE_*` flags `resolve` (close-on-exec
/// always). The one place that makes the call; the callers name the operation in their errors.
pub fn openat2(dir: BorrowedFd, path: &CStr, flags: i32, resolve: u64) -> Result<OwnedFd, Errno> {
    let how = OpenHow {
        flags: (flags | libc::O_CLOEXEC) as u64,
        mode: 0,
        resolve,
    };
    // SAFETY: `path` is NUL-terminated, `how` is a valid open_how and its size is passed with it;
    // the kernel reads both and writes nothing.
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

/// `openat2(2)` resolving `path` as if `root` were `/`: symlinks, `..` and absolute links cannot
/// leave the tree. Used to read files of a root filesystem without being led out of it.
pub fn open_in_root(root: &Path, path: &Path, flags: i32) -> SysResult<OwnedFd> {
    let root_fd = std::fs::File::open(root).map_err(|e| SysError::io("open", root, &e))?;
    let c = cstr(path)?;
    openat2(
        root_fd.as_fd(),
        &c,
        flags,
        libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS,
    )
    .map_err(|errno| {
        SysError::new(
            format!("open (inside {})", root.display()),
            Some(path),
            errno,
        )
    })
}

/// The current kernel release, e.g. "6.18.44".
pub fn kernel_release() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_else(|_| "unknown".into())
}

/// `(major, minor)` of the running kernel.
pub fn kernel_version() -> (u32, u32) {
    let rel = kernel_release();
    let mut it = rel.split(|c: char| !c.is_ascii_digit());
    let major = it.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let minor = it.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    (major, minor)
}
