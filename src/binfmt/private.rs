//! The private binfmt_misc instance of a user namespace (Linux ≥ 6.7): mounted under the new root
//! before `pivot_root`, with the registrations of the sandbox's foreign arches.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;

use crate::arch::Arch;
use crate::sys::{self, SysError};

use super::error::{errno_of, BinfmtError, Result};
use super::register::register;
use super::registration::list_entries;
use super::{mount_instance, PRIVATE_MIN_KERNEL};
use crate::syscall::Syscall;

/// Flags of a registration in a private instance.
///
/// - `F` (fix binary): the kernel opens the interpreter when the line is written, from the host's
///   filesystem; without it the path is looked up at each exec *inside the rootfs*, where there
///   is no qemu (`required file not found`), and after `pivot_root` the host path is gone.
/// - `P` (preserve argv[0]): the program sees the argv[0] it was started with, as natively.
///   Busybox applets, `python3` vs `python3.11`, login shells (`-sh`) depend on it. QEMU learns
///   about it from `AT_FLAGS_PRESERVE_ARGV0` in its auxv (Linux ≥ 5.12, QEMU ≥ 6.0), which every
///   kernel with private instances has. Debian registers the same pair (`fix_binary yes`,
///   `preserve yes` in /usr/share/binfmts/qemu-*).
/// - not `C` (and so not `O`): credentials computed from the emulated binary only matter for
///   setuid/setgid programs, and the sandbox runs its command under `no_new_privs`, where the
///   kernel ignores setuid bits anyway; `C` would also make a setuid binary start qemu itself
///   with raised privileges. Debian says `credentials no` too.
pub const PRIVATE_FLAGS: &str = "FP";

/// `/proc/<pid>/ns/user` of the initial user namespace has this fixed inode number
/// (include/linux/proc_ns.h, `PROC_USER_INIT_INO`).
const PROC_USER_INIT_INO: u64 = 0xEFFF_FFFD;

/// Refuses to go on in the initial user namespace, where a binfmt_misc mount is the host's.
fn ensure_own_user_namespace(mount_point: &Path) -> Result<()> {
    let ns = Path::new("/proc/self/ns/user");
    match std::fs::metadata(ns) {
        Ok(m) if m.ino() != PROC_USER_INIT_INO => Ok(()),
        Ok(_) => Err(BinfmtError::NotInUserNamespace {
            path: mount_point.to_path_buf(),
        }),
        Err(e) => Err(BinfmtError::Sys(SysError {
            op: "find the user namespace of this process:".into(),
            path: Some(ns.to_path_buf()),
            errno: errno_of(&e),
            hint: Some("/proc must be mounted".into()),
        })),
    }
}

/// Inside a new user + mount namespace, before `pivot_root`: mounts a private binfmt_misc
/// instance at `binfmt_mount_point` (normally `<newroot>/proc/sys/fs/binfmt_misc`, so that the
/// instance outlives the detach of the old root) and registers each `(arch, interpreter)` with
/// [`PRIVATE_FLAGS`]. The instance starts empty, hides the host's entries and dies with the
/// namespace. Refuses to run in the host's user namespace.
pub fn setup_private(
    os: &dyn Syscall,
    binfmt_mount_point: &Path,
    arches: &[(Arch, PathBuf)],
) -> Result<()> {
    ensure_own_user_namespace(binfmt_mount_point)?;
    mount_instance(os, binfmt_mount_point).map_err(|e| {
        let (major, minor) = sys::kernel_version();
        let hint = match e.errno {
            Errno::EPERM | Errno::EINVAL | Errno::ENODEV => Some(format!(
                "this kernel ({major}.{minor}) cannot mount a private binfmt_misc instance in a \
                 user namespace (needs {}.{}+): use the host's registration instead \
                 (POOKIE_NS_BINFMT=host) after `sudo pookie-ns binfmt register{}`",
                PRIVATE_MIN_KERNEL.0,
                PRIVATE_MIN_KERNEL.1,
                arches
                    .iter()
                    .map(|(a, _)| format!(" --arch {}", a.uname()))
                    .collect::<String>()
            )),
            _ => None,
        };
        BinfmtError::Sys(SysError {
            op: "mount a private binfmt_misc instance on".into(),
            path: Some(binfmt_mount_point.to_path_buf()),
            errno: e.errno,
            hint,
        })
    })?;
    for (arch, interpreter) in arches {
        register(binfmt_mount_point, *arch, interpreter, PRIVATE_FLAGS)?;
    }
    tracing::debug!(
        dir = %binfmt_mount_point.display(),
        entries = ?list_entries(binfmt_mount_point),
        "private binfmt_misc instance ready"
    );
    Ok(())
}
