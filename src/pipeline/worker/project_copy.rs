//! The project's copy into a step's workspace: modes and symlinks kept, earlier build results
//! and caches left out, the host directory only read.

use std::path::Path;

use crate::error::{Error, Result};

/// Directory names never copied into a build: results of earlier builds on the host (a stale
/// `build/` would feed host-arch objects to a foreign build) and caches.
const SKIP_DIRS: [&str; 9] = [
    "build",
    "dist",
    "wheelhouse",
    ".eggs",
    ".tox",
    ".nox",
    ".venv",
    "__pycache__",
    ".pytest_cache",
];

/// Copies the project into `dest` (a path in a workspace's upper dir), keeping modes and
/// symlinks, leaving out [`SKIP_DIRS`] and `*.egg-info`. The host directory is only read.
pub fn copy_project(src: &Path, dest: &Path) -> Result<()> {
    crate::sys::mkdir_p(dest, 0o755)?;
    copy_dir(src, dest, true)
}

fn copy_dir(src: &Path, dest: &Path, top: bool) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let entries = std::fs::read_dir(src).map_err(|e| Error::io("read the project dir", src, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("read the project dir", src, e))?;
        let name = entry.file_name();
        let name_str = name.to_string_lossy();
        let from = entry.path();
        let to = dest.join(&name);
        let meta = std::fs::symlink_metadata(&from).map_err(|e| Error::io("stat", &from, e))?;
        let ft = meta.file_type();
        if ft.is_dir() {
            let skip = (top && SKIP_DIRS.contains(&name_str.as_ref()))
                || name_str == "__pycache__"
                || name_str == ".pytest_cache"
                || (top && name_str.ends_with(".egg-info"));
            if skip {
                continue;
            }
            std::fs::create_dir(&to).map_err(|e| Error::io("create", &to, e))?;
            copy_dir(&from, &to, false)?;
            std::fs::set_permissions(&to, meta.permissions())
                .map_err(|e| Error::io("chmod", &to, e))?;
        } else if ft.is_symlink() {
            let target = std::fs::read_link(&from).map_err(|e| Error::io("readlink", &from, e))?;
            std::os::unix::fs::symlink(&target, &to).map_err(|e| Error::io("symlink", &to, e))?;
        } else if ft.is_file() {
            std::fs::copy(&from, &to).map_err(|e| Error::io("copy the project file", &from, e))?;
            let mode = meta.permissions().mode() & 0o7777 & !0o6000;
            std::fs::set_permissions(&to, std::fs::Permissions::from_mode(mode))
                .map_err(|e| Error::io("chmod", &to, e))?;
        }
        // Sockets, fifos and devices have no place in a source tree: left out.
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_project_copy_leaves_out_build_results() {
        let src = tempfile::tempdir().unwrap();
        let s = src.path();
        for d in [
            "pkg/__pycache__",
            "build/lib",
            "dist",
            "x.egg-info",
            "tests",
        ] {
            std::fs::create_dir_all(s.join(d)).unwrap();
        }
        std::fs::write(s.join("setup.py"), "print()").unwrap();
        std::fs::write(s.join("pkg/a.c"), "int x;").unwrap();
        std::fs::write(s.join("pkg/__pycache__/a.pyc"), "").unwrap();
        std::fs::write(s.join("build/lib/stale.so"), "").unwrap();
        std::os::unix::fs::symlink("pkg/a.c", s.join("link")).unwrap();
        let dest = tempfile::tempdir().unwrap();
        let d = dest.path().join("buildroot/src");
        copy_project(s, &d).unwrap();
        assert!(d.join("setup.py").is_file());
        assert!(d.join("pkg/a.c").is_file());
        assert!(d.join("tests").is_dir());
        assert_eq!(
            std::fs::read_link(d.join("link")).unwrap(),
            Path::new("pkg/a.c")
        );
        for gone in ["pkg/__pycache__", "build", "dist", "x.egg-info"] {
            assert!(!d.join(gone).exists(), "{gone}");
        }
    }
}
