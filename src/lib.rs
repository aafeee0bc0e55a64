//! pookie-ns: build and test native Python wheels for several Linux architectures on one x86_64
//! host, rootless: base OS root filesystems, three OverlayFS layers, Linux namespaces and QEMU.

pub mod arch;
pub mod baseos;
pub mod baseos_cache;
pub mod binfmt;
pub mod branch;
pub mod build;
pub mod cli;
pub mod commands;
pub mod config;
pub mod confine;
pub mod error;
pub mod fault;
pub mod hostcheck;
pub mod import;
pub mod overlay;
pub mod pep440;
pub mod process;
pub mod progress;
pub mod project;
pub mod recipe;
pub mod sandbox;
pub mod single_uid;
pub mod store;
pub mod sudo;
pub mod sys;
pub mod target;
pub mod toolchain;
pub mod userns;

pub use error::{Error, Result};
