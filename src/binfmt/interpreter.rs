//! Finding the QEMU user-mode emulator of an arch and checking that binfmt_misc can use it: an
//! executable, statically linked ELF file of the host's architecture.

use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::arch::{parse_elf_header, Arch};

use super::error::{BinfmtError, Result};

/// The static QEMU user-mode emulator for `arch`.
///
/// With `qemu_dir` (config key `qemu_dir`): `<qemu_dir>/qemu-<qemu>-static`, then
/// `<qemu_dir>/qemu-<qemu>`, nothing else. Without: `/usr/bin/qemu-<qemu>-static` (Debian's
/// `qemu-user-static`), `/usr/libexec/qemu-binfmt/<qemu>-binfmt-P` (the name Debian registers; a
/// link to the former in Debian 12), `/usr/bin/qemu-<qemu>` (static in some distributions).
///
/// A candidate is taken only if it is an executable, **statically linked** ELF of the host's
/// architecture: a dynamic qemu's own loader (`/lib64/ld-linux-x86-64.so.2`) would be looked up
/// inside the foreign root filesystem at every exec and not be found.
pub fn find_interpreter(arch: Arch, qemu_dir: Option<&Path>) -> Result<PathBuf> {
    let q = arch.qemu();
    let candidates: Vec<PathBuf> = match qemu_dir {
        Some(d) => vec![
            d.join(format!("qemu-{q}-static")),
            d.join(format!("qemu-{q}")),
        ],
        None => vec![
            PathBuf::from(format!("/usr/bin/qemu-{q}-static")),
            PathBuf::from(format!("/usr/libexec/qemu-binfmt/{q}-binfmt-P")),
            PathBuf::from(format!("/usr/bin/qemu-{q}")),
        ],
    };
    let mut tried = Vec::new();
    for path in candidates {
        match check_interpreter(&path) {
            Ok(()) => {
                tracing::debug!(%arch, interpreter = %path.display(), "found QEMU interpreter");
                return Ok(path);
            }
            Err(why) => tried.push((path, why)),
        }
    }
    Err(BinfmtError::NoInterpreter {
        arch,
        qemu_dir: qemu_dir.map(Path::to_path_buf),
        tried,
    })
}

/// Why `path` cannot serve as a binfmt_misc interpreter, if it cannot.
fn check_interpreter(path: &Path) -> std::result::Result<(), String> {
    let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => "not found".to_string(),
        _ => format!("unreadable: {e}"),
    })?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    if meta.permissions().mode() & 0o111 == 0 {
        return Err("not executable".into());
    }
    let file = std::fs::File::open(path).map_err(|e| format!("unreadable: {e}"))?;
    let mut head = [0u8; 64];
    let n = file
        .read_at(&mut head, 0)
        .map_err(|e| format!("unreadable: {e}"))?;
    let arch = parse_elf_header(&head[..n])
        .and_then(Arch::from_elf)
        .ok_or("not an ELF executable of a known architecture")?;
    if !arch.is_native() {
        return Err(format!("built for {}, not for this host", arch.uname()));
    }
    if has_program_interpreter(&file, &head[..n]).map_err(|e| format!("unreadable: {e}"))? {
        return Err("dynamically linked; binfmt_misc needs a static build".into());
    }
    Ok(())
}

/// Whether the ELF file has a `PT_INTERP` program header (i.e. is dynamically linked).
fn has_program_interpreter(file: &std::fs::File, head: &[u8]) -> std::io::Result<bool> {
    const PT_INTERP: u32 = 3;
    let big = head.get(5) == Some(&2);
    let u16_at = |b: &[u8], o: usize| -> u64 {
        let v = [b[o], b[o + 1]];
        u64::from(if big {
            u16::from_be_bytes(v)
        } else {
            u16::from_le_bytes(v)
        })
    };
    let u32_at = |b: &[u8], o: usize| -> u64 {
        let v = [b[o], b[o + 1], b[o + 2], b[o + 3]];
        u64::from(if big {
            u32::from_be_bytes(v)
        } else {
            u32::from_le_bytes(v)
        })
    };
    let u64_at = |b: &[u8], o: usize| -> u64 {
        let mut v = [0u8; 8];
        v.copy_from_slice(&b[o..o + 8]);
        if big {
            u64::from_be_bytes(v)
        } else {
            u64::from_le_bytes(v)
        }
    };
    // elf(5): e_phoff, e_phentsize, e_phnum.
    let (phoff, phentsize, phnum) = match head.get(4) {
        Some(2) if head.len() >= 64 => (u64_at(head, 32), u16_at(head, 54), u16_at(head, 56)),
        Some(1) if head.len() >= 52 => (u32_at(head, 28), u16_at(head, 42), u16_at(head, 44)),
        _ => return Err(std::io::Error::other("truncated ELF header")),
    };
    if phentsize < 4 || phnum > 4096 {
        return Err(std::io::Error::other("implausible program header table"));
    }
    let mut table = vec![0u8; (phentsize * phnum) as usize];
    file.read_exact_at(&mut table, phoff)?;
    Ok(table
        .chunks_exact(phentsize as usize)
        .any(|ph| u32_at(ph, 0) == u64::from(PT_INTERP)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ELF64 little-endian file for `machine`, with PT_LOAD and optionally PT_INTERP.
    fn fake_elf(machine: u16, dynamic: bool) -> Vec<u8> {
        let phnum: u16 = if dynamic { 2 } else { 1 };
        let mut f = vec![0u8; 64];
        f[..4].copy_from_slice(b"\x7fELF");
        f[4] = 2;
        f[5] = 1;
        f[6] = 1;
        f[16..18].copy_from_slice(&3u16.to_le_bytes());
        f[18..20].copy_from_slice(&machine.to_le_bytes());
        f[32..40].copy_from_slice(&64u64.to_le_bytes());
        f[54..56].copy_from_slice(&56u16.to_le_bytes());
        f[56..58].copy_from_slice(&phnum.to_le_bytes());
        for p_type in [1u32, 3].iter().take(phnum as usize) {
            let mut ph = vec![0u8; 56];
            ph[..4].copy_from_slice(&p_type.to_le_bytes());
            f.extend(ph);
        }
        f
    }

    fn put(dir: &Path, name: &str, data: &[u8], mode: u32) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, data).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    const HOST_MACHINE: u16 = 62; // x86_64; the tests below are skipped elsewhere

    #[test]
    fn only_static_host_executables_are_interpreters() {
        if Arch::host() != Arch::Amd64 {
            return;
        }
        let d = tempfile::tempdir().unwrap();
        let ok = put(d.path(), "static", &fake_elf(HOST_MACHINE, false), 0o755);
        assert_eq!(check_interpreter(&ok), Ok(()));
        let dynamic = put(d.path(), "dynamic", &fake_elf(HOST_MACHINE, true), 0o755);
        assert!(check_interpreter(&dynamic)
            .unwrap_err()
            .contains("dynamically linked"));
        let foreign = put(d.path(), "foreign", &fake_elf(183, false), 0o755);
        assert!(check_interpreter(&foreign).unwrap_err().contains("aarch64"));
        let noexec = put(d.path(), "noexec", &fake_elf(HOST_MACHINE, false), 0o644);
        assert_eq!(check_interpreter(&noexec).unwrap_err(), "not executable");
        let script = put(d.path(), "script", b"#!/bin/sh\nexit 0\n", 0o755);
        assert!(check_interpreter(&script)
            .unwrap_err()
            .contains("not an ELF"));
        assert_eq!(
            check_interpreter(&d.path().join("missing")).unwrap_err(),
            "not found"
        );
    }

    #[test]
    fn qemu_dir_is_searched_alone_and_failures_name_the_package() {
        if Arch::host() != Arch::Amd64 {
            return;
        }
        let d = tempfile::tempdir().unwrap();
        let err = find_interpreter(Arch::Arm64, Some(d.path())).unwrap_err();
        let msg = err.to_string();
        assert!(err.is_input_error());
        assert!(
            msg.contains("sudo apt-get install qemu-user-static"),
            "{msg}"
        );
        assert!(msg.contains(&d.path().display().to_string()), "{msg}");
        put(
            d.path(),
            "qemu-aarch64",
            &fake_elf(HOST_MACHINE, true),
            0o755,
        );
        let msg = find_interpreter(Arch::Arm64, Some(d.path()))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("dynamically linked"), "{msg}");
        let p = put(
            d.path(),
            "qemu-aarch64-static",
            &fake_elf(HOST_MACHINE, false),
            0o755,
        );
        assert_eq!(find_interpreter(Arch::Arm64, Some(d.path())).unwrap(), p);
    }
}
