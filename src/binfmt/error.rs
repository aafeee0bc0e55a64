//! What goes wrong with emulation, as [`BinfmtError`], and the advice that goes with an errno.

use std::path::{Path, PathBuf};

use nix::errno::Errno;

use crate::arch::Arch;
use crate::sys::SysError;

use super::HOST_DIR;

#[derive(Debug, thiserror::Error)]
pub enum BinfmtError {
    #[error(
        "no usable QEMU interpreter for {}: {}; install it with: sudo apt-get install qemu-user-static{}",
        .arch.uname(),
        describe_tried(.tried),
        .qemu_dir.as_ref().map(|d| format!(" (or correct qemu_dir = {} in config.toml)", d.display())).unwrap_or_default()
    )]
    NoInterpreter {
        arch: Arch,
        qemu_dir: Option<PathBuf>,
        /// Each candidate path and why it was not taken.
        tried: Vec<(PathBuf, String)>,
    },

    #[error("{} runs natively on this host: it needs no binfmt_misc registration", .0.uname())]
    Native(Arch),

    #[error("invalid binfmt_misc registration for {}: {reason}", .arch.uname())]
    Invalid { arch: Arch, reason: String },

    #[error("cannot run {} binaries on Linux {kernel}: {reason}.\n  fix: {fix}", .arch.uname())]
    Unavailable {
        arch: Arch,
        /// The kernel release found (`uname -r`).
        kernel: String,
        reason: String,
        /// The one command that makes it work.
        fix: String,
    },

    #[error(
        "refusing to mount binfmt_misc on {}: this process is in the host's user namespace, \
         where binfmt_misc is the host's own instance and registering would change the whole \
         machine (setup_private must run inside a new user namespace)",
        .path.display()
    )]
    NotInUserNamespace { path: PathBuf },

    #[error(
        "no host-wide QEMU registration for {} may be made here: a registration for the time of \
         a command needs a binfmt::CommandScope to take it back (register it once with \
         `pookie-ns binfmt register --arch {}`)",
        .0.uname(), .0.uname()
    )]
    NoCommandScope(Arch),

    #[error(transparent)]
    Sys(#[from] SysError),
}

fn describe_tried(tried: &[(PathBuf, String)]) -> String {
    let parts: Vec<String> = tried
        .iter()
        .map(|(p, why)| format!("{} ({why})", p.display()))
        .collect();
    format!("looked for {}", parts.join(", "))
}

impl BinfmtError {
    /// True for what the user fixes in their setup or command line (exit status 2): a missing
    /// package, an arch that needs nothing, no usable emulation, host-wide changes without root.
    pub fn is_input_error(&self) -> bool {
        match self {
            BinfmtError::NoInterpreter { .. }
            | BinfmtError::Native(_)
            | BinfmtError::Invalid { .. }
            | BinfmtError::Unavailable { .. } => true,
            BinfmtError::Sys(e) => {
                matches!(e.errno, Errno::EACCES | Errno::EPERM)
                    && e.path.as_ref().is_some_and(|p| p.starts_with(HOST_DIR))
            }
            BinfmtError::NotInUserNamespace { .. } | BinfmtError::NoCommandScope(_) => false,
        }
    }
}

pub(super) type Result<T> = std::result::Result<T, BinfmtError>;

pub(super) fn errno_of(e: &std::io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
}

/// A failed read or write of `path`, a file of a mounted binfmt_misc (an entry or a control file),
/// with the advice to use sudo where it is the host's.
pub(super) fn file_error(op: &str, path: PathBuf, e: &std::io::Error) -> BinfmtError {
    BinfmtError::Sys(SysError {
        op: op.into(),
        hint: needs_root_hint(&path),
        errno: errno_of(e),
        path: Some(path),
    })
}

pub(super) fn needs_root_hint(path: &Path) -> Option<String> {
    path.starts_with(HOST_DIR).then(|| {
        "changing the host's binfmt_misc needs root: run it with sudo \
         (e.g. `sudo pookie-ns binfmt register --arch ARCH`)"
            .to_string()
    })
}
