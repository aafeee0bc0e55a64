//! The binfmt_misc entry of each architecture: QEMU's magic and mask over the first 20 bytes of
//! an ELF file, the headers they must match, and the kernel's masked comparison.

use crate::arch::Arch;

/// The binfmt_misc match of one architecture: `header & mask == magic & mask` at offset 0 over
/// the ELF identification, `e_type` and `e_machine` (20 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub arch: Arch,
    pub magic: [u8; 20],
    pub mask: [u8; 20],
}

/// The binfmt_misc entry of `arch` (every [`Arch`] has one; the host's own are never registered):
/// the values of QEMU's scripts/qemu-binfmt-conf.sh (`<cpu>_magic` / `<cpu>_mask`, pinned byte for
/// byte by the test `table_is_qemus`). The magic is the start of an `ET_EXEC` SYSV executable of
/// the arch ([`elf_header`]); the mask compares all of it but EI_OSABI (byte 7) and the low bit of
/// `e_type`, so that ET_EXEC (2) and ET_DYN (3, PIE) both match, and QEMU leaves out besides
/// - for i386 and x86_64, the low bits of EI_DATA and EI_VERSION;
/// - for ppc64le, the last byte (e_machine's high byte).
///
/// These are identical in the qemu/qemu revisions read (from the 3.x layout to the 10.x one that
/// adds riscv64be). Compared on 2026-11-23 with Debian 12's /usr/share/binfmts/qemu-{aarch64,arm,
/// ppc64le,s390x,riscv64} from qemu-user-static 1:7.2+dfsg-7+deb12u18: identical, except that
/// Debian masks EI_OSABI of ppc64le and s390x with 0xfc instead of 0x00 (it accepts OSABI 0-3
/// only; QEMU accepts any). Linux binaries carry 0 (SYSV) or 3 (GNU), so both match the same
/// programs, and host registrations are recognised by what they match, not by their bytes
/// ([`Registration::serves`](super::Registration::serves)). Debian ships no qemu-i386/qemu-x86_64
/// entries on an amd64 host.
pub fn entry(arch: Arch) -> Entry {
    let mut mask = [0xff; 20];
    mask[7] = 0x00;
    // e_type's low byte: the first of the two in little endian, the second in big endian.
    let e_type_low = if arch.elf().data == 2 { 17 } else { 16 };
    mask[e_type_low] = 0xfe;
    match arch {
        Arch::I386 | Arch::Amd64 => {
            mask[5] = 0xfe;
            mask[6] = 0xfe;
        }
        Arch::Ppc64el => mask[19] = 0x00,
        _ => {}
    }
    Entry {
        arch,
        magic: elf_header(arch, 2, 0),
        mask,
    }
}

impl Entry {
    /// Whether the kernel would hand a file starting with `header` to this entry.
    pub fn matches(&self, header: &[u8]) -> bool {
        masked_match(header, &self.magic, Some(&self.mask))
    }
}

/// The kernel's comparison: `((h ^ magic) & mask) == 0` for each byte; no mask = all bits.
pub(super) fn masked_match(header: &[u8], magic: &[u8], mask: Option<&[u8]>) -> bool {
    header.len() >= magic.len()
        && magic.iter().enumerate().all(|(i, m)| {
            let bits = mask.map_or(0xff, |k| k.get(i).copied().unwrap_or(0xff));
            (header[i] ^ m) & bits == 0
        })
}

/// The first 20 bytes of a real `arch` executable: `e_ident`, `e_type` (`ET_EXEC` = 2 or
/// `ET_DYN` = 3) and `e_machine`, both in the arch's byte order; `osabi` 0 (SYSV) or 3 (GNU).
pub fn elf_header(arch: Arch, e_type: u16, osabi: u8) -> [u8; 20] {
    let id = arch.elf();
    let mut h = [0u8; 20];
    h[..4].copy_from_slice(b"\x7fELF");
    h[4] = id.class;
    h[5] = id.data;
    h[6] = 1; // EV_CURRENT
    h[7] = osabi;
    let (t, m) = if id.data == 2 {
        (e_type.to_be_bytes(), id.machine.to_be_bytes())
    } else {
        (e_type.to_le_bytes(), id.machine.to_le_bytes())
    };
    h[16..18].copy_from_slice(&t);
    h[18..20].copy_from_slice(&m);
    h
}

/// The headers an entry for `arch` must match: executables and PIEs, SYSV and GNU OSABI.
pub(super) fn representative_headers(arch: Arch) -> impl Iterator<Item = [u8; 20]> {
    [(2, 0), (3, 0), (2, 3), (3, 3)]
        .into_iter()
        .map(move |(t, abi)| elf_header(arch, t, abi))
}

/// The registration name, as Debian names it: `qemu-aarch64`.
pub fn entry_name(arch: Arch) -> String {
    format!("qemu-{}", arch.qemu())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The strings of QEMU's scripts/qemu-binfmt-conf.sh, transcribed a second time so that a
    /// typo in the table above shows.
    const UPSTREAM: [(Arch, &str, &str); 7] = [
        (
            Arch::Arm64,
            r"\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00",
            r"\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff",
        ),
        (
            Arch::Armhf,
            r"\x7fELF\x01\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x28\x00",
            r"\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff",
        ),
        (
            Arch::Ppc64el,
            r"\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x15\x00",
            r"\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\x00",
        ),
        (
            Arch::S390x,
            r"\x7fELF\x02\x02\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x16",
            r"\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff",
        ),
        (
            Arch::Riscv64,
            r"\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xf3\x00",
            r"\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff",
        ),
        (
            Arch::I386,
            r"\x7fELF\x01\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x03\x00",
            r"\xff\xff\xff\xff\xff\xfe\xfe\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff",
        ),
        (
            Arch::Amd64,
            r"\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x3e\x00",
            r"\xff\xff\xff\xff\xff\xfe\xfe\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff",
        ),
    ];

    /// Decodes the shell's `\xHH` escapes (and literal characters such as `ELF`).
    fn unescape(s: &str) -> Vec<u8> {
        let mut out = Vec::new();
        let b = s.as_bytes();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'\\' && b.get(i + 1) == Some(&b'x') {
                out.push(u8::from_str_radix(&s[i + 2..i + 4], 16).unwrap());
                i += 4;
            } else {
                out.push(b[i]);
                i += 1;
            }
        }
        out
    }

    #[test]
    fn table_is_qemus() {
        for (arch, magic, mask) in UPSTREAM {
            let e = entry(arch);
            assert_eq!(e.arch, arch);
            assert_eq!(e.magic.to_vec(), unescape(magic), "{arch:?} magic");
            assert_eq!(e.mask.to_vec(), unescape(mask), "{arch:?} mask");
        }
    }

    #[test]
    fn each_entry_matches_its_own_arch_and_no_other() {
        for own in Arch::ALL {
            let e = entry(own);
            for arch in Arch::ALL {
                for e_type in [2u16, 3] {
                    for osabi in [0u8, 3] {
                        let h = elf_header(arch, e_type, osabi);
                        assert_eq!(
                            e.matches(&h),
                            arch == own,
                            "{own:?} entry vs {arch:?} header, e_type {e_type}, osabi {osabi}"
                        );
                        // The same in the brief's words, with the magic masked too (the i386
                        // and x86_64 magics have bits outside their mask).
                        let masked = |b: &[u8]| -> Vec<u8> {
                            b.iter().zip(e.mask.iter()).map(|(x, m)| x & m).collect()
                        };
                        assert_eq!(masked(&h) == masked(&e.magic), arch == own);
                    }
                }
            }
        }
    }

    #[test]
    fn relocatable_objects_and_core_files_do_not_match() {
        for arch in Arch::ALL {
            for e_type in [0u16, 1, 4] {
                assert!(!entry(arch).matches(&elf_header(arch, e_type, 0)));
            }
            assert!(!entry(arch).matches(b"#!/bin/sh\n"), "short input");
        }
    }
}
