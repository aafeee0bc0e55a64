//! The OverlayFS mount that stacks a sandbox's layers: the base OS at the bottom, the instance's
//! committed layers above it, the workspace's upper dir on top. Only the option string lives here
//! (pure, unit-tested); the sandbox makes the mount.

use std::path::{Path, PathBuf};

/// The layers of one overlay mount. Paths may be relative to the directory the mount is made
/// from (the sandbox mounts from the store root to keep the option string short: the kernel limits
/// it to one page).
#[derive(Debug, Clone)]
pub struct Layers {
    /// Read-only layers, topmost first; the last one is the base OS rootfs.
    pub lower: Vec<PathBuf>,
    pub upper: PathBuf,
    pub work: PathBuf,
}

/// The kernel's limit on mount option data (one page).
const MAX_OPTIONS: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum OverlayError {
    #[error("overlay layer path {} contains a character overlayfs cannot take (',' ':' or '\\\\')", .0.display())]
    BadPath(PathBuf),
    #[error(
        "the overlay options are {0} bytes, more than the kernel's {MAX_OPTIONS}: too many layers"
    )]
    TooLong(usize),
    #[error("an overlay needs at least one lower layer")]
    NoLower,
}

impl Layers {
    /// `lowerdir=a:b,upperdir=u,workdir=w,userxattr`.
    ///
    /// `userxattr`: inside a user namespace overlayfs cannot use `trusted.*` xattrs; without this
    /// option the mount succeeds but removing a lower directory fails with EIO (FIELD-NOTES).
    /// It excludes `redirect_dir` and `metacopy`, which stay off. Inside a user namespace
    /// overlayfs cannot decode file handles either (index and origin checks need
    /// `CAP_DAC_READ_SEARCH` in the host's namespace), so a lower file hard-linked in the merged
    /// tree gets two overlay inodes and a rename of one name over the other fails with ESTALE
    /// (ovl_rename's upper check); `index=on` changes nothing here. dpkg meets it only when it
    /// restores backups after a failed unpack (README, "What the kernel must allow").
    pub fn options(&self) -> Result<String, OverlayError> {
        if self.lower.is_empty() {
            return Err(OverlayError::NoLower);
        }
        let all = self
            .lower
            .iter()
            .chain([&self.upper, &self.work])
            .map(|p| check(p))
            .collect::<Result<Vec<_>, _>>()?;
        let n = self.lower.len();
        let opts = format!(
            "lowerdir={},upperdir={},workdir={},userxattr",
            all[..n].join(":"),
            all[n],
            all[n + 1]
        );
        if opts.len() >= MAX_OPTIONS {
            return Err(OverlayError::TooLong(opts.len()));
        }
        Ok(opts)
    }
}

/// `lowerdir=a:b,userxattr`: an overlay of read-only layers only (no upper dir), e.g. a cross
/// build's sysroot. The kernel wants at least two layers for that ("at least 2 lowerdir are
/// needed while upperdir nonexistent"); `None` for a single layer, which is bind-mounted instead.
/// `userxattr` makes the kernel read the opaque-dir markers the layers were written with.
pub fn read_only_options(lower: &[PathBuf]) -> Result<Option<String>, OverlayError> {
    match lower {
        [] => Err(OverlayError::NoLower),
        [_] => Ok(None),
        _ => {
            let all = lower
                .iter()
                .map(|p| check(p))
                .collect::<Result<Vec<_>, _>>()?;
            let opts = format!("lowerdir={},userxattr", all.join(":"));
            if opts.len() >= MAX_OPTIONS {
                return Err(OverlayError::TooLong(opts.len()));
            }
            Ok(Some(opts))
        }
    }
}

fn check(p: &Path) -> Result<String, OverlayError> {
    match p.to_str() {
        Some(s) if !s.contains([',', ':', '\\']) && !s.is_empty() => Ok(s.to_string()),
        _ => Err(OverlayError::BadPath(p.to_path_buf())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_stack_topmost_first() {
        let l = Layers {
            lower: vec![
                "inst/0002".into(),
                "inst/0001".into(),
                "baseos/x/amd64/rootfs".into(),
            ],
            upper: "ws/upper".into(),
            work: "ws/work".into(),
        };
        assert_eq!(
            l.options().unwrap(),
            "lowerdir=inst/0002:inst/0001:baseos/x/amd64/rootfs,upperdir=ws/upper,workdir=ws/work,userxattr"
        );
    }

    #[test]
    fn read_only_overlays_need_two_layers() {
        assert_eq!(
            read_only_options(&["a/0001".into(), "baseos/x/arm64/rootfs".into()]).unwrap(),
            Some("lowerdir=a/0001:baseos/x/arm64/rootfs,userxattr".into())
        );
        assert_eq!(
            read_only_options(&["baseos/x/arm64/rootfs".into()]).unwrap(),
            None
        );
        assert!(matches!(read_only_options(&[]), Err(OverlayError::NoLower)));
        assert!(matches!(
            read_only_options(&["a,b".into(), "c".into()]),
            Err(OverlayError::BadPath(_))
        ));
    }

    #[test]
    fn bad_paths_and_limits_are_refused() {
        let mut l = Layers {
            lower: vec!["a:b".into()],
            upper: "u".into(),
            work: "w".into(),
        };
        assert!(matches!(l.options(), Err(OverlayError::BadPath(_))));
        l.lower = vec![];
        assert!(matches!(l.options(), Err(OverlayError::NoLower)));
        l.lower = (0..400)
            .map(|i| PathBuf::from(format!("instances/x/y/z/layers/{i:04}")))
            .collect();
        assert!(matches!(l.options(), Err(OverlayError::TooLong(_))));
    }
}
