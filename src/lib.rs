//! pookie-ns: build and test native Python wheels for several Linux architectures on one x86_64
//! host, rootless: base OS root filesystems, three OverlayFS layers, Linux namespaces and QEMU.
//!
//! # Layers
//!
//! Dependencies point one way, down: a module uses only modules of the layers before its own (never
//! one of its own layer, never one above). `tests/layering.rs` reads this list and fails on any
//! `crate::` path that points up or sideways. Lowest first:
//!
//! 1. `hostcheck`: what the host allows (user namespaces, AppArmor), read from `/proc/sys`.
//! 2. `sys`, `fault`, `arch`, `progress`, `overlay`, `pep440`, `shell`, `fnmatch`: syscalls,
//!    fault points, architectures, progress output and sizes, the overlay mount options, PEP 440
//!    specifiers, the shell pookie-ns writes, cibuildwheel's selector patterns (Python's
//!    fnmatch, bracex's braces).
//! 3. `syscall`: the seam under the sandbox's mount sequence (a trait, the kernel's
//!    implementation, a recording fake for unit tests).
//! 4. `config`, `target`, `confine`, `process`, `import`, `single_uid`, `oci`: the validated
//!    configuration, target selectors, the confinement of the sandbox's init, child processes,
//!    the archive importer, single-uid mode's seccomp filter, OCI references, registries and
//!    image layouts.
//! 5. `recipe`, `toolchain`, `binfmt`, `bytecode`: what the config dir defines (recipes,
//!    toolchains), how a foreign arch is emulated, and the native byte-compilation of a foreign
//!    base OS's Python (mmdebstrap hooks).
//! 6. `cibw`: cibuildwheel's options and `[tool.pookie-ns]`, resolved with their precedence,
//!    and the build set: the identifiers cibuildwheel would build, in its order.
//! 7. `project`, `error`: a project's build settings; the crate's error type, which gathers the
//!    lower modules' errors.
//! 8. `userns`, `baseos_cache`, `wheels_file`: id maps and the helper processes run inside a
//!    user namespace; the per-user cache of built base OS tarballs; a group build's wheels file.
//! 9. `store`: the store's layout, base OSes, instances, workspaces and locks.
//! 10. `sandbox`, `sudo`, `cli`, `sources`: running a command in an instance; the sudo wrapper;
//!     the command line's definition; sdists from a package index, cached in the store, and
//!     unpacked safely.
//! 11. `baseos`: loading base OSes, one file per job (archives, images, recipes and mmdebstrap,
//!     the Debian mirror; emulation is `binfmt`'s).
//! 12. `branch`: a branch's package refresh.
//! 13. `pipeline`: the build pipeline (`pookie-ns build`: its phases, workers and reports).
//! 14. `serve`: the build service over HTTP (aoinb's REST API; each task a `build` child
//!     process, kept in SQLite).
//! 15. `submit`: the client of `serve`.
//! 16. `commands`: each subcommand, top to bottom; `main` calls only this and `cli`.

pub mod arch;
pub mod baseos;
pub mod baseos_cache;
pub mod binfmt;
pub mod branch;
pub mod bytecode;
pub mod cibw;
pub mod cli;
pub mod commands;
pub mod config;
pub mod confine;
pub mod error;
pub mod fault;
pub mod fnmatch;
pub mod hostcheck;
pub mod import;
pub mod oci;
pub mod overlay;
pub mod pep440;
pub mod pipeline;
pub mod process;
pub mod progress;
pub mod project;
pub mod recipe;
pub mod sandbox;
#[cfg(feature = "serve")]
pub mod serve;
pub mod shell;
pub mod single_uid;
pub mod sources;
pub mod store;
#[cfg(feature = "serve")]
pub mod submit;
pub mod sudo;
pub mod sys;
pub mod syscall;
pub mod target;
pub mod toolchain;
pub mod userns;
pub mod wheels_file;

pub use error::{Error, Result};
