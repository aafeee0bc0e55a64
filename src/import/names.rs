//! Entry names and link targets of an untrusted archive, checked before anything touches the disk:
//! a name must be relative and made of normal components, so that no entry (and no hard link
//! target) can leave the root filesystem by name. Symlinks planted by earlier entries are the
//! kernel's job (`openat2` with `RESOLVE_NO_SYMLINKS`, in [`super::at`]).

use std::ffi::CString;

/// A checked entry name, split the way the `*at` calls need it: the directory holding the entry
/// (relative to the root, `""` for the root itself) and the entry's own name (`None` when the
/// entry is the root directory itself, as `./` is).
#[derive(Debug, PartialEq, Eq)]
pub(super) struct SafePath {
    pub parent: CString,
    pub name: Option<CString>,
}

impl SafePath {
    /// The normalised name (`a/b/c`, `""` for the root), to compare two entries' names.
    pub fn normalised(&self) -> Vec<u8> {
        let mut out = self.parent.as_bytes().to_vec();
        if let Some(name) = &self.name {
            if !out.is_empty() {
                out.push(b'/');
            }
            out.extend_from_slice(name.as_bytes());
        }
        out
    }
}

/// Checks an entry name (or a hard link's target) from the archive. `./` prefixes, `.` components
/// and repeated or trailing slashes are fine; an absolute name, `..` anywhere (even `a/../b`, which
/// stays inside: GNU tar refuses it too) and NUL bytes are refused, with the reason.
pub(super) fn safe_path(raw: &[u8]) -> Result<SafePath, &'static str> {
    if raw.contains(&0) {
        return Err("contains a NUL byte");
    }
    if raw.starts_with(b"/") {
        return Err("is an absolute path, which would escape the root filesystem");
    }
    // Longer than PATH_MAX: no program inside could open it by name, only a bomb needs it.
    if raw.len() >= libc::PATH_MAX as usize {
        return Err("is longer than a path may be (4096 bytes)");
    }
    let mut comps = Vec::new();
    for c in raw.split(|b| *b == b'/') {
        match c {
            b"" | b"." => continue,
            b".." => return Err("escapes the root filesystem (..)"),
            c => comps.push(c),
        }
    }
    let Some((name, parents)) = comps.split_last() else {
        return Ok(SafePath {
            parent: CString::default(),
            name: None,
        });
    };
    // Neither can fail (NUL bytes were refused above); map rather than unwrap all the same.
    let parent = CString::new(parents.join(&b'/')).map_err(|_| "contains a NUL byte")?;
    let name = CString::new(name.to_vec()).map_err(|_| "contains a NUL byte")?;
    Ok(SafePath {
        parent,
        name: Some(name),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(s: &str) -> (String, Option<String>) {
        let p = safe_path(s.as_bytes()).unwrap();
        (
            p.parent.to_str().unwrap().to_owned(),
            p.name.map(|n| n.to_str().unwrap().to_owned()),
        )
    }

    #[test]
    fn names_longer_than_path_max_are_refused() {
        let long = "d/".repeat(2048);
        assert_eq!(
            safe_path(long.as_bytes()),
            Err("is longer than a path may be (4096 bytes)")
        );
        assert!(safe_path("d/".repeat(2047).as_bytes()).is_ok());
    }

    #[test]
    fn normal_names_are_split_into_parent_and_name() {
        assert_eq!(split("./bin/sh"), ("bin".into(), Some("sh".into())));
        assert_eq!(split("bin//sh/."), ("bin".into(), Some("sh".into())));
        assert_eq!(split("usr/lib/x/"), ("usr/lib".into(), Some("x".into())));
        assert_eq!(split("etc"), ("".into(), Some("etc".into())));
        assert_eq!(
            split("./.hidden/..x/..."),
            (".hidden/..x".into(), Some("...".into()))
        );
    }

    #[test]
    fn the_root_itself_has_no_name() {
        for s in ["./", ".", "", "././", ".//."] {
            assert_eq!(split(s), ("".into(), None), "{s:?}");
        }
    }

    #[test]
    fn escapes_are_refused_with_the_reason() {
        let why = |s: &[u8]| safe_path(s).unwrap_err();
        assert_eq!(why(b"../x"), "escapes the root filesystem (..)");
        assert_eq!(why(b"a/../../x"), "escapes the root filesystem (..)");
        assert_eq!(why(b"a/../b"), "escapes the root filesystem (..)");
        assert_eq!(why(b"./.."), "escapes the root filesystem (..)");
        assert_eq!(why(b"a/.."), "escapes the root filesystem (..)");
        assert!(why(b"/etc/passwd").starts_with("is an absolute path"));
        assert!(why(b"//etc").starts_with("is an absolute path"));
        assert_eq!(why(b"a\0b"), "contains a NUL byte");
    }

    #[test]
    fn normalised_names_compare_equal() {
        let p = safe_path(b"./a//b/./c").unwrap();
        assert_eq!(p.parent.as_bytes(), b"a/b");
        assert_eq!(p.normalised(), b"a/b/c");
        assert_eq!(safe_path(b"x").unwrap().normalised(), b"x");
        assert_eq!(safe_path(b"./").unwrap().normalised(), b"");
    }
}
