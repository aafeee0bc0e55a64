//! Fault injection for the crash-safety tests (tests/crash.rs). In debug builds only,
//! `POOKIE_NS_FAULT=<point>` kills pookie-ns at the named point with SIGKILL — every process of
//! its process group at once, the user-namespace helper and the sandbox included — as `kill -9`
//! or a power cut would. Release builds compile every call away.

/// The named points, in the order a command meets them.
pub const POINTS: [&str; 9] = [
    // load-baseos of a registry image: a layer blob partly downloaded into blobs/ (tests/oci.rs).
    "oci-downloading",
    // load-baseos of a registry image: a layer blob verified and in blobs/, the next ones not
    // yet downloaded (tests/oci.rs).
    "oci-blob-landed",
    // load-baseos: entries unpacked into tmp/, the rest not yet.
    "import-unpacking",
    // load-baseos: the base OS whole in tmp/, not yet renamed into baseos/.
    "import-unpacked",
    // run: overlay, /proc, /tmp, /dev and binds mounted in the sandbox, before pivot_root.
    "overlay-mounted",
    // run: the sandbox's command is running (a build step in progress).
    "command-running",
    // run --commit: the command succeeded, its upper dir not yet renamed into layers/.
    "commit-before-rename",
    // run --commit: the layer renamed into place, the workspace not yet removed.
    "commit-after-rename",
    // instance refresh: the instance locked, its workspace made, the sandbox not yet started.
    "refresh-started",
];

/// Kills pookie-ns here if `POOKIE_NS_FAULT` names this point (debug builds only).
#[inline]
pub fn point(name: &str) {
    #[cfg(debug_assertions)]
    if std::env::var_os("POOKIE_NS_FAULT").is_some_and(|v| v == name) {
        debug_assert!(POINTS.contains(&name), "unknown fault point {name}");
        // SAFETY: kill(2) with integer arguments; 0 is this process's group.
        unsafe { libc::kill(0, libc::SIGKILL) };
        // Only reached if the group could not be signalled.
        // SAFETY: as above.
        unsafe { libc::raise(libc::SIGKILL) };
    }
    #[cfg(not(debug_assertions))]
    let _ = name;
}
