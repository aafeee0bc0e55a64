//! A bundle upload: a tar or tar.gz of a project (or an sdist), checked whole in memory before
//! anything touches the disk, then unpacked by the store's archive importer (`import`: every
//! entry created beneath the destination with `openat2(RESOLVE_BENEATH)`, nothing written
//! through a symlink). The check refuses what the importer would quietly skip or what has no
//! place in a project: absolute names, `..`, links that leave the tree, device nodes and FIFOs,
//! and more data than the limit.

use std::io::Read;
use std::path::{Component, Path, PathBuf};

use crate::import::{self, Compression, ImportOptions};
use crate::sources::stays_inside;

/// Why a bundle was refused: said to the client as a 400 (or 413 for size).
#[derive(Debug, PartialEq)]
pub struct Refused {
    pub too_large: bool,
    pub message: String,
}

fn refuse(message: String) -> Refused {
    Refused {
        too_large: false,
        message: format!("the bundle {message}; nothing was stored"),
    }
}

/// Checks an uploaded bundle: a plain or gzip'd tar whose entries stay inside it, with at most
/// `max_entries` entries and `max_bytes` of file data.
pub fn check(bytes: &[u8], max_bytes: u64, max_entries: u64) -> Result<(), Refused> {
    let reader: Box<dyn Read + '_> = match Compression::detect(bytes) {
        Compression::Gzip => Box::new(flate2::read::GzDecoder::new(bytes)),
        Compression::None => Box::new(bytes),
        other => {
            return Err(refuse(format!(
                "is {}-compressed: send a tar or a tar.gz",
                other.name()
            )))
        }
    };
    let mut archive = tar::Archive::new(reader);
    let entries = archive
        .entries()
        .map_err(|e| refuse(format!("is not a tar archive ({e})")))?;
    let (mut total, mut count) = (0u64, 0u64);
    for entry in entries {
        let entry = entry.map_err(|e| refuse(format!("is not a whole tar archive ({e})")))?;
        count += 1;
        if count > max_entries {
            return Err(refuse(format!("has more than {max_entries} entries")));
        }
        let name = entry
            .path()
            .map_err(|e| refuse(format!("has an unreadable entry name ({e})")))?
            .into_owned();
        let shown = name.display();
        for c in name.components() {
            match c {
                Component::RootDir | Component::Prefix(_) => {
                    return Err(refuse(format!("entry {shown} has an absolute name")))
                }
                Component::ParentDir => {
                    return Err(refuse(format!("entry {shown} climbs out with `..`")))
                }
                Component::Normal(_) | Component::CurDir => {}
            }
        }
        let kind = entry.header().entry_type();
        if kind.is_character_special() || kind.is_block_special() || kind.is_fifo() {
            return Err(refuse(format!(
                "entry {shown} is a device node or FIFO, which a project never holds"
            )));
        }
        if kind.is_symlink() || kind.is_hard_link() {
            let target = entry
                .link_name()
                .map_err(|e| refuse(format!("link {shown} is unreadable ({e})")))?
                .unwrap_or_default()
                .into_owned();
            // A symlink's target is relative to its own directory, a hard link's to the root.
            let from = if kind.is_symlink() {
                name.parent().map(Path::to_path_buf).unwrap_or_default()
            } else {
                PathBuf::new()
            };
            if !stays_inside(&from, &target) {
                return Err(refuse(format!(
                    "link {shown} points to {}, out of the bundle",
                    target.display()
                )));
            }
        } else if !(kind.is_file() || kind.is_dir() || kind.is_contiguous()) {
            return Err(refuse(format!(
                "entry {shown} is of a kind a project does not hold ({kind:?})"
            )));
        }
        total = total.saturating_add(entry.header().size().unwrap_or(0));
        if total > max_bytes {
            return Err(Refused {
                too_large: true,
                message: format!(
                    "the bundle unpacks to more than {max_bytes} bytes; nothing was stored"
                ),
            });
        }
    }
    if count == 0 {
        return Err(refuse("is an empty or unreadable tar archive".into()));
    }
    Ok(())
}

/// Unpacks a checked bundle into `dir/bundle/` and returns the project directory relative to it:
/// the archive's single top directory (an sdist's `NAME-VERSION/`), else its root. It must hold
/// pyproject.toml or setup.py.
pub fn unpack(bytes: &[u8], dir: &Path, max_entries: u64) -> Result<String, String> {
    let archive = dir.join("bundle.tar");
    let root = dir.join("bundle");
    let fail = |what: &str, p: &Path, e: std::io::Error| format!("{what} {}: {e}", p.display());
    std::fs::create_dir_all(dir).map_err(|e| fail("create", dir, e))?;
    std::fs::write(&archive, bytes).map_err(|e| fail("write", &archive, e))?;
    std::fs::create_dir(&root).map_err(|e| fail("create", &root, e))?;
    let opts = ImportOptions {
        keep_owners: false,
        create_devices: false,
        keep_setid: false,
        max_entries,
    };
    let unpacked = import::unpack_archive(&archive, &root, &opts, &mut |_| {});
    let _ = std::fs::remove_file(&archive);
    unpacked.map_err(|e| format!("the bundle: {e}"))?;
    let names = crate::store::list_dir_names(&root).map_err(|e| e.to_string())?;
    let files = std::fs::read_dir(&root)
        .map_err(|e| fail("read", &root, e))?
        .count();
    let project = match names.as_slice() {
        [one] if files == 1 => one.clone(),
        _ => ".".to_string(),
    };
    let p = root.join(&project);
    if !p.join("pyproject.toml").is_file() && !p.join("setup.py").is_file() {
        return Err(
            "the bundle holds neither pyproject.toml nor setup.py (at its root or in its one \
             top directory): send a Python project or an sdist"
                .into(),
        );
    }
    Ok(project)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_with(f: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        f(&mut b);
        b.into_inner().unwrap()
    }

    fn file(b: &mut tar::Builder<Vec<u8>>, name: &str, data: &[u8]) {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        // set_path refuses `..` and absolute names: write the raw name, as a hostile tool would.
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_cksum();
        b.append(&h, data).unwrap();
    }

    fn link(b: &mut tar::Builder<Vec<u8>>, kind: tar::EntryType, name: &str, target: &str) {
        let mut h = tar::Header::new_gnu();
        h.set_size(0);
        h.set_entry_type(kind);
        h.set_mode(0o644);
        if !target.is_empty() {
            h.set_link_name(target).unwrap();
        }
        b.append_data(&mut h, name, &[][..]).unwrap();
    }

    #[test]
    fn hostile_bundles_are_refused() {
        let ok = tar_with(|b| file(b, "pkg/setup.py", b"x"));
        assert_eq!(check(&ok, 100, 10), Ok(()));
        let cases = [
            (tar_with(|b| file(b, "../evil", b"x")), "`..`"),
            (tar_with(|b| file(b, "/etc/evil", b"x")), "absolute"),
            (
                tar_with(|b| link(b, tar::EntryType::Symlink, "pkg/l", "../../etc")),
                "out of the bundle",
            ),
            (
                tar_with(|b| link(b, tar::EntryType::Symlink, "pkg/l", "/etc/passwd")),
                "out of the bundle",
            ),
            (
                tar_with(|b| link(b, tar::EntryType::Char, "pkg/null", "")),
                "device node",
            ),
            (tar_with(|b| file(b, "pkg/big", &[0; 200])), "more than 100"),
            (b"not a tar at all, just text".to_vec(), "tar"),
        ];
        for (bytes, says) in cases {
            let e = check(&bytes, 100, 10).unwrap_err();
            assert!(e.message.contains(says), "{says}: {}", e.message);
        }
        let ok_link = tar_with(|b| link(b, tar::EntryType::Symlink, "pkg/a/l", "../setup.py"));
        assert_eq!(check(&ok_link, 100, 10), Ok(()));
    }
}
