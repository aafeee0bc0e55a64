//! What a root filesystem offers a build: the CPythons under `/opt/python` (manylinux and
//! musllinux images: `cp311-cp311`, free-threaded `cp313-cp313t`) and its package manager. Paths
//! are resolved inside the root (`openat2(RESOLVE_IN_ROOT)`): `/opt/python/cp311-cp311` is a
//! symlink to `/opt/_internal/...` in those images, and must never lead out onto the host.

use std::os::fd::{AsRawFd, IntoRawFd};
use std::path::Path;

use serde::{Deserialize, Serialize};

/// One interpreter under `/opt/python`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PythonInstall {
    /// The directory name, e.g. `cp313-cp313t`.
    pub id: String,
    /// `3.13`
    pub version: String,
    pub free_threaded: bool,
    /// `/opt/python/<id>/bin/python`
    pub path: String,
}

/// The parts of a `/opt/python` entry name: (minor version, free-threaded), for `cp3XY-cp3XY[t]`.
fn parse_id(id: &str) -> Option<(u32, bool)> {
    let (a, b) = id.split_once('-')?;
    let minor: u32 = a.strip_prefix("cp3")?.parse().ok()?;
    let rest = b.strip_prefix(&format!("cp3{minor}"))?;
    match rest {
        "" | "m" | "mu" => Some((minor, false)),
        "t" => Some((minor, true)),
        _ => None,
    }
}

fn exists_in_root(root: &Path, path: &str) -> bool {
    crate::sys::open_in_root(root, Path::new(path), libc::O_PATH).is_ok()
}

fn list_in_root(root: &Path, path: &str) -> Vec<String> {
    let Ok(fd) =
        crate::sys::open_in_root(root, Path::new(path), libc::O_RDONLY | libc::O_DIRECTORY)
    else {
        return Vec::new();
    };
    let raw = fd.into_raw_fd();
    let Ok(mut dir) = nix::dir::Dir::from_fd(raw) else {
        // SAFETY: from_fd failed, so the descriptor is still ours to close.
        unsafe { libc::close(raw) };
        return Vec::new();
    };
    let _ = dir.as_raw_fd();
    dir.iter()
        .flatten()
        .filter_map(|e| e.file_name().to_str().ok().map(str::to_string))
        .filter(|n| n != "." && n != "..")
        .collect()
}

/// The CPythons under `/opt/python`, oldest first (free-threaded after the regular build).
pub fn pythons(root: &Path) -> Vec<PythonInstall> {
    let mut found: Vec<(u32, bool, PythonInstall)> = list_in_root(root, "/opt/python")
        .into_iter()
        .filter_map(|id| {
            let (minor, ft) = parse_id(&id)?;
            let path = format!("/opt/python/{id}/bin/python");
            exists_in_root(root, &path).then(|| {
                (
                    minor,
                    ft,
                    PythonInstall {
                        version: format!("3.{minor}"),
                        free_threaded: ft,
                        path,
                        id,
                    },
                )
            })
        })
        .collect();
    found.sort_by_key(|a| (a.0, a.1));
    found.into_iter().map(|(_, _, p)| p).collect()
}

/// The package manager: `apt`, `dnf`, `yum` or `apk`, by the first of their binaries present.
pub fn package_manager(root: &Path) -> Option<String> {
    [
        ("apt", "/usr/bin/apt-get"),
        ("dnf", "/usr/bin/dnf"),
        ("dnf", "/usr/bin/microdnf"),
        ("yum", "/usr/bin/yum"),
        ("apk", "/sbin/apk"),
        ("apk", "/usr/bin/apk"),
    ]
    .into_iter()
    .find(|(_, p)| exists_in_root(root, p))
    .map(|(name, _)| name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_ids_are_told_apart() {
        assert_eq!(parse_id("cp311-cp311"), Some((11, false)));
        assert_eq!(parse_id("cp313-cp313t"), Some((13, true)));
        assert_eq!(parse_id("cp37-cp37m"), Some((7, false)));
        assert_eq!(parse_id("pp310-pypy310_pp73"), None);
        assert_eq!(parse_id("cp311-cp312"), None);
        assert_eq!(parse_id("cp3x-cp3x"), None);
    }

    #[test]
    fn interpreters_are_found_through_symlinks_inside_the_root() {
        let root = std::env::temp_dir().join(format!("pookie-detect-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("opt/_internal/cpython-3.11/bin")).unwrap();
        std::fs::write(root.join("opt/_internal/cpython-3.11/bin/python"), "").unwrap();
        std::fs::create_dir_all(root.join("opt/python/cp313-cp313t/bin")).unwrap();
        std::fs::write(root.join("opt/python/cp313-cp313t/bin/python"), "").unwrap();
        std::fs::create_dir_all(root.join("opt/python/cp312-cp312")).unwrap(); // no bin/python
                                                                               // Absolute symlink: resolved inside the root, not on the host.
        std::os::unix::fs::symlink(
            "/opt/_internal/cpython-3.11",
            root.join("opt/python/cp311-cp311"),
        )
        .unwrap();
        std::fs::create_dir_all(root.join("sbin")).unwrap();
        std::fs::write(root.join("sbin/apk"), "").unwrap();
        let found = pythons(&root);
        assert_eq!(
            found.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(),
            ["cp311-cp311", "cp313-cp313t"]
        );
        assert!(found[1].free_threaded);
        assert_eq!(found[0].path, "/opt/python/cp311-cp311/bin/python");
        assert_eq!(package_manager(&root).as_deref(), Some("apk"));
        std::fs::remove_dir_all(&root).unwrap();
    }
}
