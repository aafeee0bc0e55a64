//! The crate's error type and how each kind of failure maps to an exit status. Modules have their
//! own error enums; this one gathers them so that `main` can print one message and pick the status:
//! 2 for what the user can fix in what they typed or gave us (usage, config, input), 75 (`EX_TEMPFAIL`
//! of sysexits.h) for what another pookie-ns holds (try again later), 1 otherwise.

use std::path::PathBuf;

use crate::sys::{PathIoError, SysError};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request that cannot be satisfied as given: names what was wrong and what exists.
    #[error("{0}")]
    Usage(String),

    /// What the command needs is held by another pookie-ns (an instance in use, a lock): the same
    /// command succeeds once that one has finished.
    #[error("{0}")]
    Busy(String),

    /// pookie-ns's own state or data is not as it should be (its store, a file it wrote, a limit
    /// it set): nothing the command line can fix.
    #[error("{0}")]
    Internal(String),

    #[error(transparent)]
    Overlay(#[from] crate::overlay::OverlayError),

    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),

    #[error(transparent)]
    Import(#[from] crate::import::ImportError),

    #[error(transparent)]
    Oci(#[from] crate::oci::OciError),

    #[error(transparent)]
    Binfmt(#[from] crate::binfmt::BinfmtError),

    #[error(transparent)]
    Sys(#[from] SysError),

    #[error(transparent)]
    Io(#[from] PathIoError),

    /// A failure reported by a helper process (one that ran inside a user namespace).
    #[error("{message}")]
    Child { message: String, exit_code: i32 },

    /// An external tool (newuidmap, mmdebstrap ...) failed.
    #[error("{command} failed ({status}){}", if stderr.is_empty() { String::new() } else { format!(":\n{}", stderr.trim_end()) })]
    Command {
        command: String,
        status: String,
        stderr: String,
    },
}

impl Error {
    pub fn usage(msg: impl Into<String>) -> Self {
        Error::Usage(msg.into())
    }

    pub fn busy(msg: impl Into<String>) -> Self {
        Error::Busy(msg.into())
    }

    pub fn internal(msg: impl Into<String>) -> Self {
        Error::Internal(msg.into())
    }

    pub fn io(what: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io(PathIoError::new(what, path, source))
    }

    /// The exit status `main` returns for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Usage(_) | Error::Config(_) => 2,
            Error::Busy(_) => EXIT_BUSY,
            Error::Import(e) if e.is_input_error() => 2,
            Error::Binfmt(e) if e.is_input_error() => 2,
            Error::Oci(e) if e.is_input_error() => 2,
            Error::Child { exit_code, .. } => *exit_code,
            _ => 1,
        }
    }
}

/// The exit status of [`Error::Busy`]: `EX_TEMPFAIL` (sysexits.h), "try again later", which a
/// script can tell from a failure (1) and from a mistake in its own command line (2).
pub const EXIT_BUSY: i32 = 75;

pub type Result<T, E = Error> = std::result::Result<T, E>;
