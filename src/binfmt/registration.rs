//! Reading a binfmt_misc: the kernel's description of an entry parsed into a [`Registration`],
//! the entries of a mount, and which of them serve an arch.

use std::path::{Path, PathBuf};

use crate::arch::Arch;

use super::entry::{entry_name, masked_match, representative_headers, Entry};
use super::error::{file_error, Result};

/// A registration as the kernel shows it in `<binfmt_misc>/<name>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    pub name: String,
    pub enabled: bool,
    pub interpreter: PathBuf,
    /// As the kernel prints them, e.g. `PF` or `POCF`.
    pub flags: String,
    pub offset: usize,
    /// Empty for an extension (`E`) entry.
    pub magic: Vec<u8>,
    /// `None` when registered without a mask (all bits compared).
    pub mask: Option<Vec<u8>>,
}

impl Registration {
    pub fn has_flag(&self, flag: char) -> bool {
        self.flags.contains(flag)
    }

    /// Whether the kernel would hand a file starting with `header` to this entry.
    pub fn matches(&self, header: &[u8]) -> bool {
        !self.magic.is_empty()
            && header.len() > self.offset
            && masked_match(&header[self.offset..], &self.magic, self.mask.as_deref())
    }

    /// True when the entry handles `arch`'s executables and PIEs (whatever its name, and
    /// whether its table is QEMU's or Debian's).
    pub fn serves(&self, arch: Arch) -> bool {
        representative_headers(arch).all(|h| self.matches(&h))
    }

    /// True when this entry runs `interpreter` with the same flags (in any order; `C` implies
    /// `O`, which the kernel then shows).
    pub fn is_same(&self, interpreter: &Path, flags: &str) -> bool {
        self.interpreter == interpreter && flag_set(&self.flags) == flag_set(flags)
    }

    /// True when the entry is exactly `entry`'s magic and mask at offset 0.
    pub(super) fn has_table_values(&self, e: &Entry) -> bool {
        self.offset == 0 && self.magic == e.magic && self.mask.as_deref() == Some(&e.mask[..])
    }
}

fn flag_set(flags: &str) -> Vec<char> {
    let mut v: Vec<char> = flags.chars().collect();
    if v.contains(&'C') && !v.contains(&'O') {
        v.push('O');
    }
    v.sort_unstable();
    v.dedup();
    v
}

fn parse_hex(s: &str) -> Vec<u8> {
    s.as_bytes()
        .chunks_exact(2)
        .filter_map(|p| u8::from_str_radix(std::str::from_utf8(p).ok()?, 16).ok())
        .collect()
}

/// Parses the kernel's description of an entry (fs/binfmt_misc.c `entry_status`):
/// `enabled`, `interpreter /usr/bin/…`, `flags: PF`, `offset 0`, `magic 7f45…`, `mask ff…`.
pub fn parse_registration(name: &str, text: &str) -> Registration {
    let mut r = Registration {
        name: name.to_string(),
        enabled: false,
        interpreter: PathBuf::new(),
        flags: String::new(),
        offset: 0,
        magic: Vec::new(),
        mask: None,
    };
    for line in text.lines() {
        let line = line.trim_end();
        if line == "enabled" {
            r.enabled = true;
        } else if let Some(v) = line.strip_prefix("interpreter ") {
            r.interpreter = v.into();
        } else if let Some(v) = line.strip_prefix("flags:") {
            r.flags = v.trim().to_string();
        } else if let Some(v) = line.strip_prefix("offset ") {
            r.offset = v.trim().parse().unwrap_or(0);
        } else if let Some(v) = line.strip_prefix("magic ") {
            r.magic = parse_hex(v.trim());
        } else if let Some(v) = line.strip_prefix("mask ") {
            r.mask = Some(parse_hex(v.trim()));
        }
    }
    r
}

/// The entry `qemu-<qemu>` in the binfmt_misc mounted at `binfmt_dir`, if there is one.
pub fn read_entry(binfmt_dir: &Path, arch: Arch) -> Result<Option<Registration>> {
    read_named(binfmt_dir, &entry_name(arch))
}

fn read_named(binfmt_dir: &Path, name: &str) -> Result<Option<Registration>> {
    let path = binfmt_dir.join(name);
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(Some(parse_registration(name, &text))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(file_error("read binfmt_misc entry", path, &e)),
    }
}

/// Names of the entries registered in `binfmt_dir` (sorted; without `register` and `status`).
/// Empty when nothing is mounted there.
pub fn list_entries(binfmt_dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(binfmt_dir)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| n != "register" && n != "status")
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Every entry in `binfmt_dir` that handles `arch`'s executables, enabled or not, `qemu-<qemu>`
/// first.
pub(super) fn entries_serving(binfmt_dir: &Path, arch: Arch) -> Vec<Registration> {
    let ours = entry_name(arch);
    let mut found: Vec<Registration> = list_entries(binfmt_dir)
        .into_iter()
        .filter_map(|name| read_named(binfmt_dir, &name).ok().flatten())
        .filter(|r| r.serves(arch))
        .collect();
    found.sort_by_key(|r| r.name != ours);
    found
}

/// The enabled registration in `binfmt_dir` that handles `arch` (one with `F` preferred),
/// whatever its name.
pub fn find_registration(binfmt_dir: &Path, arch: Arch) -> Option<Registration> {
    let mut enabled: Vec<Registration> = entries_serving(binfmt_dir, arch)
        .into_iter()
        .filter(|r| r.enabled)
        .collect();
    enabled.sort_by_key(|r| !r.has_flag('F'));
    enabled.into_iter().next()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::binfmt::entry;
    use crate::binfmt::tests::KERNEL_TEXT;

    #[test]
    fn kernel_descriptions_parse() {
        let r = parse_registration("qemu-aarch64", KERNEL_TEXT);
        assert!(r.enabled);
        assert_eq!(r.flags, "PF");
        assert_eq!(r.offset, 0);
        assert_eq!(r.interpreter, Path::new("/usr/bin/qemu-aarch64-static"));
        assert!(r.has_table_values(&entry(Arch::Arm64)));
        assert!(r.is_same(Path::new("/usr/bin/qemu-aarch64-static"), "FP"));
        assert!(!r.is_same(Path::new("/usr/bin/qemu-aarch64-static"), "F"));
        assert!(r.serves(Arch::Arm64));
        assert!(!r.serves(Arch::Riscv64) && !r.serves(Arch::Amd64));

        let disabled = parse_registration("x", &KERNEL_TEXT.replace("enabled", "disabled"));
        assert!(!disabled.enabled);
        let ext = parse_registration(
            "jar",
            "enabled\ninterpreter /usr/bin/jexec\nflags: \nextension .jar\n",
        );
        assert!(ext.magic.is_empty() && !ext.serves(Arch::Arm64));
        // `C` implies `O`: the kernel shows "POCF" for "PCF".
        let poc = parse_registration("x", &KERNEL_TEXT.replace("flags: PF", "flags: POCF"));
        assert!(poc.is_same(Path::new("/usr/bin/qemu-aarch64-static"), "PCF"));
    }

    #[test]
    fn debians_entries_are_recognised_by_what_they_match() {
        // Debian 12's qemu-ppc64le and qemu-s390x mask EI_OSABI with 0xfc.
        let ppc = "enabled\ninterpreter /usr/libexec/qemu-binfmt/ppc64le-binfmt-P\nflags: PF\n\
                   offset 0\nmagic 7f454c4602010100000000000000000002001500\n\
                   mask fffffffffffffffcfffffffffffffffffeffff00\n";
        let r = parse_registration("qemu-ppc64le", ppc);
        assert!(r.serves(Arch::Ppc64el));
        assert!(!r.has_table_values(&entry(Arch::Ppc64el)));
        let s390 = "enabled\ninterpreter /usr/libexec/qemu-binfmt/s390x-binfmt-P\nflags: PF\n\
                    offset 0\nmagic 7f454c4602020100000000000000000000020016\n\
                    mask fffffffffffffffcfffffffffffffffffffeffff\n";
        assert!(parse_registration("qemu-s390x", s390).serves(Arch::S390x));
    }
}
