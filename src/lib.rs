//! pookie-ns: build and test native Python wheels for several Linux architectures on one x86_64
//! host, rootless: base OS root filesystems, three OverlayFS layers, Linux namespaces and QEMU.

pub mod arch;
pub mod binfmt;
pub mod config;
pub mod error;
pub mod import;
pub mod sys;

pub use error::{Error, Result};
