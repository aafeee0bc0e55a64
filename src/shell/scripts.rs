//! The shell fragments of `scripts/`, each a POSIX sh file (shellcheck reads them in CI:
//! scripts/test), embedded here and nowhere else. Their parameters are shell variables that
//! [`super::fragment`] sets before each; each file's head comment names them.

/// `python`, `pip` … run the target's own CPython: its short names under a bin dir on PATH.
pub const PYTHON_SELECT: &str = include_str!("scripts/python-select.sh");
/// The start of a cross build: the target's sysconfig data and the toolchain's environment.
pub const CROSS_PRELUDE: &str = include_str!("scripts/cross-prelude.sh");
/// A repaired wheel copied out of the workspace.
pub const DELIVER: &str = include_str!("scripts/deliver.sh");
/// The repair command (auditwheel) of a build, or the project's own.
pub const REPAIR_COMMAND: &str = include_str!("scripts/repair-command.sh");
/// The build requirements a project declares, read by the target's Python.
pub const BUILD_REQUIRES: &str = include_str!("scripts/build-requires.py");
/// A Meson cross file made from the toolchain's exported environment.
pub const MESON_CROSS: &str = include_str!("scripts/meson-cross.sh");
/// A Rust compiler with the target's standard library (rustup or the base OS's).
pub const RUST_SETUP: &str = include_str!("scripts/rust-setup.sh");
/// The body of the zig toolchain's compiler programs (C++ sources to `zig c++`).
pub const ZIG_CC: &str = include_str!("scripts/zig-cc.sh");

/// The instance refresh of a Debian recipe's base OS: the branch's lists, `dist-upgrade`.
pub const BRANCH_REFRESH: &str = concat!(
    include_str!("scripts/apt-update.sh"),
    include_str!("scripts/branch-refresh.sh")
);
/// The download half of a foreign instance's refresh, run by the host-arch base OS's apt.
pub const APT_PREFETCH: &str = concat!(
    include_str!("scripts/apt-update.sh"),
    include_str!("scripts/apt-prefetch.sh")
);
/// The instance refresh of an image base OS: its own manager's package index, no upgrade.
pub const IMAGE_REFRESH: &str = include_str!("scripts/image-refresh.sh");
/// cibuildwheel's audit step (abi3audit) on the repaired abi3 wheels.
pub const AUDIT: &str = include_str!("scripts/audit.sh");
