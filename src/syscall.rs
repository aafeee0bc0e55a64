//! The seam under the sandbox's mount sequence (youki's `Syscall` trait): the privileged calls
//! that build a sandbox's root filesystem go through [`Syscall`], so that their order and flags
//! can be pinned by unit tests without root. [`Kernel`] makes the calls (through [`crate::sys`],
//! whose errors carry the operation, the path and the errno); the tests' `Recorder` only writes
//! them down.

use std::path::Path;

use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;

use crate::sys::{self, SysError, SysResult};

/// The privileged system calls of the sandbox's set-up, and the mounts made of them.
pub trait Syscall {
    /// unshare(2).
    fn unshare(&self, flags: CloneFlags) -> SysResult<()>;
    /// mount(2).
    fn mount(
        &self,
        source: Option<&str>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> SysResult<()>;
    /// umount2(2).
    fn umount2(&self, target: &Path, flags: MntFlags) -> SysResult<()>;
    /// pivot_root(2).
    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> SysResult<()>;
    /// chdir(2).
    fn chdir(&self, path: &Path) -> SysResult<()>;
    /// sethostname(2).
    fn sethostname(&self, name: &str) -> SysResult<()>;
    /// Brings up `lo` in the current network namespace (the SIOCSIFFLAGS ioctl).
    fn loopback_up(&self) -> SysResult<()>;
    /// The flags of the mount at `path` that a user namespace may not clear in a remount
    /// (statvfs(2)).
    fn locked_flags(&self, path: &Path) -> MsFlags;

    /// Makes every mount of this (new) mount namespace private, recursively: nothing mounted from
    /// then on propagates back to the namespace it was copied from, and pivot_root(2) accepts the
    /// root (it refuses a shared one with EINVAL).
    fn make_mounts_private(&self) -> SysResult<()> {
        self.mount(
            None,
            Path::new("/"),
            None,
            MsFlags::MS_REC | MsFlags::MS_PRIVATE,
            None,
        )
    }

    /// A recursive bind mount of `source` on `target`, read-only if asked.
    fn bind(&self, source: &Path, target: &Path, readonly: bool) -> SysResult<()> {
        let src = source.to_str().ok_or_else(|| {
            SysError::new(
                "bind mount of a path that is not UTF-8:",
                Some(source),
                nix::errno::Errno::EINVAL,
            )
        })?;
        self.mount(
            Some(src),
            target,
            None,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None,
        )?;
        if readonly {
            // A bind mount ignores MS_RDONLY on creation; it takes a remount of the bind
            // (mount(8)). Keep the flags the source mount has (nosuid, nodev, noexec) or the
            // kernel refuses the remount inside a user namespace with EPERM.
            let locked = self.locked_flags(target);
            self.mount(
                None,
                target,
                None,
                MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | locked,
                None,
            )?;
        }
        Ok(())
    }

    /// A lazy unmount (MNT_DETACH): gone from the tree now, freed when no longer in use.
    fn umount_detach(&self, target: &Path) -> SysResult<()> {
        self.umount2(target, MntFlags::MNT_DETACH)
    }
}

/// The real thing: each call goes to the kernel.
pub struct Kernel;

impl Syscall for Kernel {
    fn unshare(&self, flags: CloneFlags) -> SysResult<()> {
        sys::unshare(flags)
    }

    fn mount(
        &self,
        source: Option<&str>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> SysResult<()> {
        sys::mount(source, target, fstype, flags, data)
    }

    fn umount2(&self, target: &Path, flags: MntFlags) -> SysResult<()> {
        sys::umount2(target, flags)
    }

    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> SysResult<()> {
        sys::pivot_root(new_root, put_old)
    }

    fn chdir(&self, path: &Path) -> SysResult<()> {
        sys::chdir(path)
    }

    fn sethostname(&self, name: &str) -> SysResult<()> {
        sys::sethostname(name)
    }

    fn loopback_up(&self) -> SysResult<()> {
        sys::loopback_up()
    }

    fn locked_flags(&self, path: &Path) -> MsFlags {
        sys::mount_flags_of(path)
    }
}

/// A fake for unit tests: records every call, one line each, with `root` shown as `ROOT`, and
/// changes nothing. Mounts report `locked` as their locked flags.
#[cfg(test)]
pub struct Recorder {
    pub root: std::path::PathBuf,
    pub locked: MsFlags,
    calls: std::cell::RefCell<Vec<String>>,
}

#[cfg(test)]
impl Recorder {
    pub fn new(root: &Path, locked: MsFlags) -> Recorder {
        Recorder {
            root: root.to_path_buf(),
            locked,
            calls: Default::default(),
        }
    }

    /// The calls so far, in order.
    pub fn calls(&self) -> Vec<String> {
        self.calls.borrow().clone()
    }

    fn record(&self, line: String) -> SysResult<()> {
        self.calls.borrow_mut().push(line);
        Ok(())
    }

    fn show(&self, p: &Path) -> String {
        match p.strip_prefix(&self.root) {
            Ok(rest) => format!("ROOT/{}", rest.display())
                .trim_end_matches('/')
                .to_string(),
            Err(_) => p.display().to_string(),
        }
    }
}

/// `A|B` of the names of a set of flags, from its `iter_names()` (`-` for none).
#[cfg(test)]
fn names<'a, T>(flags: impl Iterator<Item = (&'a str, T)>) -> String {
    let v: Vec<&str> = flags.map(|(n, _)| n).collect();
    if v.is_empty() {
        "-".into()
    } else {
        v.join("|")
    }
}

#[cfg(test)]
impl Syscall for Recorder {
    fn unshare(&self, flags: CloneFlags) -> SysResult<()> {
        self.record(format!("unshare {}", names(flags.iter_names())))
    }

    fn mount(
        &self,
        source: Option<&str>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> SysResult<()> {
        let source = source.map_or("-".to_string(), |s| self.show(Path::new(s)));
        self.record(format!(
            "mount {source} on {} type {} flags {} data {}",
            self.show(target),
            fstype.unwrap_or("-"),
            names(flags.iter_names()),
            data.unwrap_or("-")
        ))
    }

    fn umount2(&self, target: &Path, flags: MntFlags) -> SysResult<()> {
        self.record(format!(
            "umount {} flags {}",
            self.show(target),
            names(flags.iter_names())
        ))
    }

    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> SysResult<()> {
        self.record(format!(
            "pivot_root {} {}",
            self.show(new_root),
            self.show(put_old)
        ))
    }

    fn chdir(&self, path: &Path) -> SysResult<()> {
        self.record(format!("chdir {}", self.show(path)))
    }

    fn sethostname(&self, name: &str) -> SysResult<()> {
        self.record(format!("sethostname {name}"))
    }

    fn loopback_up(&self) -> SysResult<()> {
        self.record("loopback up".into())
    }

    fn locked_flags(&self, _path: &Path) -> MsFlags {
        self.locked
    }
}
