//! The host's own binfmt_misc (needs root): mounting it if need be, and registering or removing
//! `qemu-<qemu>` entries for the whole machine (`pookie-ns binfmt register|unregister`).

use std::path::Path;

use nix::errno::Errno;

use crate::arch::Arch;
use crate::sys::SysError;

use super::entry::entry_name;
use super::error::{needs_root_hint, BinfmtError, Result};
use super::interpreter::find_interpreter;
use super::register::{register, unregister};
use super::registration::{find_registration, read_entry};
use super::{mount_instance, HOST_DIR};

/// Flags of a host-wide registration: only `F`. A host registration serves kernels older than
/// 6.7, and before 5.12 the kernel cannot tell QEMU that `P` was set, so a plain
/// `qemu-<arch>-static` would take the program's argv[0] for its first argument.
pub const HOST_FLAGS: &str = "F";

/// Mounts binfmt_misc at [`HOST_DIR`] unless it is there already (systemd mounts it on demand;
/// minimal systems and containers may not).
fn ensure_host_mounted() -> Result<()> {
    let dir = Path::new(HOST_DIR);
    if dir.join("status").exists() {
        return Ok(());
    }
    mount_instance(&crate::syscall::Kernel, dir).map_err(|e| {
        BinfmtError::Sys(SysError {
            op: "mount binfmt_misc on".into(),
            path: Some(dir.to_path_buf()),
            errno: e.errno,
            hint: match e.errno {
                Errno::EPERM | Errno::EACCES => needs_root_hint(dir),
                Errno::ENOENT | Errno::ENODEV => Some(
                    "this kernel has no binfmt_misc: load it with `sudo modprobe binfmt_misc`"
                        .into(),
                ),
                _ => None,
            },
        })
    })
}

/// Host-wide registration (needs root): `qemu-<qemu>` with flag `F` for each arch. Idempotent:
/// an arch the host already emulates with `F` (Debian's own `qemu-user-static` entries count)
/// is left as it is. Returns one message per arch.
pub fn register_host(arches: &[Arch], qemu_dir: Option<&Path>) -> Result<Vec<String>> {
    ensure_host_mounted()?;
    let dir = Path::new(HOST_DIR);
    let mut out = Vec::new();
    for &arch in arches {
        let name = entry_name(arch);
        if arch.is_native() {
            out.push(format!(
                "{} runs natively on this host: nothing to register",
                arch.uname()
            ));
            continue;
        }
        if let Some(r) = find_registration(dir, arch).filter(|r| r.has_flag('F')) {
            out.push(format!(
                "{} already registered ({}, flags {})",
                r.name,
                r.interpreter.display(),
                r.flags
            ));
            continue;
        }
        let interpreter = find_interpreter(arch, qemu_dir)?;
        let replaced = read_entry(dir, arch)?;
        register(dir, arch, &interpreter, HOST_FLAGS)?;
        let mut msg = format!(
            "registered {name} ({}, flags {HOST_FLAGS})",
            interpreter.display()
        );
        if let Some(old) = replaced {
            msg.push_str(&format!(
                ", replacing the previous entry ({}, flags {}{})",
                old.interpreter.display(),
                if old.flags.is_empty() {
                    "none"
                } else {
                    &old.flags
                },
                if old.enabled { "" } else { ", disabled" }
            ));
        }
        out.push(msg);
    }
    Ok(out)
}

/// Registers `interpreter` for `arch` host-wide with [`HOST_FLAGS`] for the time of one command
/// ([`super::CommandScope`]). Never replaces an entry: one named `qemu-<qemu>` already there is
/// an error (taking ours back later would lose it). Returns what was done.
pub(super) fn register_temporary(arch: Arch, interpreter: &Path) -> Result<String> {
    ensure_host_mounted()?;
    let dir = Path::new(HOST_DIR);
    if let Some(old) = read_entry(dir, arch)? {
        return Err(BinfmtError::Invalid {
            arch,
            reason: format!(
                "the host already has an entry {} ({}, flags {}); replace it with `pookie-ns \
                 binfmt register --arch {}`",
                old.name,
                old.interpreter.display(),
                if old.flags.is_empty() {
                    "none"
                } else {
                    &old.flags
                },
                arch.uname()
            ),
        });
    }
    register(dir, arch, interpreter, HOST_FLAGS)?;
    Ok(format!(
        "registered {} ({}, flags {HOST_FLAGS}) host-wide",
        entry_name(arch),
        interpreter.display()
    ))
}

/// Removes the host-wide `qemu-<qemu>` entry of each arch (needs root). Returns one message per
/// arch.
pub fn unregister_host(arches: &[Arch]) -> Result<Vec<String>> {
    let dir = Path::new(HOST_DIR);
    let mut out = Vec::new();
    for &arch in arches {
        let name = entry_name(arch);
        let before = read_entry(dir, arch)?;
        out.push(if unregister(dir, arch)? {
            format!(
                "unregistered {name} ({})",
                before
                    .map(|r| r.interpreter.display().to_string())
                    .unwrap_or_default()
            )
        } else {
            format!("{name} was not registered")
        });
    }
    Ok(out)
}
