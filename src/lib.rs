//! pookie-ns: build and test native Python wheels for several Linux architectures on one x86_64
//! host, rootless: base OS root filesystems, three OverlayFS layers, Linux namespaces and QEMU.
//!
//! # Layers
//!
//! Dependencies point one way, down: a module uses only modules of the layers before its own (never
//! one of its own layer, never one above). `tests/layering.rs` reads this list and fails on any
//! `crate::` path that points up or sideways. Lowest first:
//!
//! 1. `sys`, `fault`, `arch`, `progress`, `overlay`, `pep440`: syscalls, fault points,
//!    architectures, progress output and sizes, the overlay mount options, PEP 440 specifiers;
//!    they know no other module.
//! 2. `config`, `target`, `confine`, `process`, `import`, `single_uid`, `oci`: the validated
//!    configuration, target selectors, the confinement of the sandbox's init, child processes,
//!    the archive importer, single-uid mode's seccomp filter, OCI references, registries and
//!    image layouts.
//! 3. `recipe`, `toolchain`, `binfmt`: what the config dir defines (recipes, toolchains) and how a
//!    foreign arch is emulated.
//! 4. `cibw`: cibuildwheel's options and `[tool.pookie-ns]`, resolved with their precedence.
//! 5. `project`, `error`: a project's build settings; the crate's error type, which gathers the
//!    lower modules' errors.
//! 6. `userns`: id maps and the helper processes run inside a user namespace.
//! 7. `store`: the store's layout, base OSes, instances, workspaces and locks.
//! 8. `sandbox`, `sudo`, `cli`: running a command in an instance; the sudo wrapper; the command
//!    line's definition.
//! 9. `baseos`: loading base OSes (import, recipes, images).
//! 10. `branch`: a branch's package refresh.
//! 11. `build`: the build pipeline.
//! 12. `commands`: each subcommand, top to bottom; `main` calls only this and `cli`.

pub mod arch;
pub mod baseos;
pub mod binfmt;
pub mod branch;
pub mod build;
pub mod cibw;
pub mod cli;
pub mod commands;
pub mod config;
pub mod confine;
pub mod error;
pub mod fault;
pub mod import;
pub mod oci;
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
