//! Writing to a binfmt_misc: the line written to `register`, what the kernel would refuse in it,
//! registering and removing an entry, and the advice for a failed write.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;

use nix::errno::Errno;

use crate::arch::Arch;
use crate::sys::SysError;

use super::entry::{entry, entry_name};
use super::error::{errno_of, file_error, needs_root_hint, BinfmtError, Result};
use super::registration::read_entry;

fn escape(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("\\x{b:02x}")).collect()
}

/// The line written to `register`: `:qemu-<qemu>:M::<magic>:<mask>:<interpreter>:<flags>`, magic
/// and mask as `\xHH` escapes (so no byte can be taken for the `:` separator).
pub fn register_line(arch: Arch, interpreter: &Path, flags: &str) -> String {
    let e = entry(arch);
    format!(
        ":{}:M::{}:{}:{}:{flags}",
        entry_name(arch),
        escape(&e.magic),
        escape(&e.mask),
        interpreter.display()
    )
}

/// What the kernel's parser (fs/binfmt_misc.c `create_entry`) would refuse or misread.
fn validate(arch: Arch, interpreter: &Path, flags: &str) -> Result<()> {
    let invalid = |reason: String| Err(BinfmtError::Invalid { arch, reason });
    let Some(text) = interpreter.to_str() else {
        return invalid(format!("{} is not UTF-8", interpreter.display()));
    };
    if !interpreter.is_absolute() {
        return invalid(format!("the interpreter {text} is not an absolute path"));
    }
    if text.contains([':', '\n']) {
        return invalid(format!(
            "the interpreter path {text:?} contains ':' or a newline, which the kernel takes for \
             a field separator"
        ));
    }
    if let Some(c) = flags.chars().find(|c| !"POCF".contains(*c)) {
        return invalid(format!(
            "unknown flag {c:?} in {flags:?} (the kernel knows P, O, C and F)"
        ));
    }
    Ok(())
}

/// Opens an existing control file and writes `data` in one write; never creates the file (a
/// directory where binfmt_misc is not mounted must stay untouched).
fn write_control(path: &Path, data: &str) -> std::io::Result<()> {
    OpenOptions::new()
        .write(true)
        .open(path)?
        .write_all(data.as_bytes())
}

/// Registers `arch` in the binfmt_misc mounted at `binfmt_dir`. Idempotent: an enabled
/// `qemu-<qemu>` entry with the same table values, interpreter and flags is left alone; a
/// different one is removed first.
pub fn register(binfmt_dir: &Path, arch: Arch, interpreter: &Path, flags: &str) -> Result<()> {
    if arch.is_native() {
        // An entry for the host's own arch would match qemu itself: every exec would loop.
        return Err(BinfmtError::Native(arch));
    }
    validate(arch, interpreter, flags)?;
    let e = entry(arch);
    let name = entry_name(arch);
    if let Some(existing) = read_entry(binfmt_dir, arch)? {
        if existing.enabled && existing.has_table_values(&e) && existing.is_same(interpreter, flags)
        {
            tracing::debug!(dir = %binfmt_dir.display(), %name, "already registered");
            return Ok(());
        }
        tracing::debug!(dir = %binfmt_dir.display(), ?existing, "replacing a different entry");
        remove_entry(binfmt_dir, &name)?;
    }
    let line = register_line(arch, interpreter, flags);
    let reg = binfmt_dir.join("register");
    tracing::debug!(register = %reg.display(), %line, "registering");
    match write_control(&reg, &line) {
        Ok(()) => Ok(()),
        Err(err) => {
            let errno = errno_of(&err);
            // Registered meanwhile by someone else (two `binfmt register` at once): fine if it
            // is what we wanted.
            if errno == Errno::EEXIST {
                if let Some(now) = read_entry(binfmt_dir, arch)? {
                    if now.enabled && now.is_same(interpreter, flags) {
                        return Ok(());
                    }
                }
            }
            Err(BinfmtError::Sys(SysError {
                op: "register in".into(),
                hint: register_hint(binfmt_dir, errno, &name, interpreter, &line),
                path: Some(reg),
                errno,
            }))
        }
    }
}

/// Advice for a failed write to `register`.
fn register_hint(
    dir: &Path,
    errno: Errno,
    name: &str,
    interpreter: &Path,
    line: &str,
) -> Option<String> {
    match errno {
        Errno::ENOENT if !dir.join("register").exists() => Some(format!(
            "binfmt_misc is not mounted at {} (mount -t binfmt_misc binfmt_misc {})",
            dir.display(),
            dir.display()
        )),
        Errno::ENOENT => Some(format!(
            "the interpreter {} does not exist (flag F opens it when registering)",
            interpreter.display()
        )),
        Errno::EEXIST => Some(format!(
            "an entry named {name} exists already; remove it with `echo -1 > {}`",
            dir.join(name).display()
        )),
        Errno::EINVAL => Some(format!("the kernel rejected the line `{line}`")),
        Errno::EACCES | Errno::EPERM => needs_root_hint(dir).or_else(|| {
            Some("only the user namespace that mounted this binfmt_misc can register in it".into())
        }),
        Errno::EROFS => Some(format!(
            "{} is read-only here (inside a container?): register on the host",
            dir.display()
        )),
        _ => None,
    }
}

fn remove_entry(binfmt_dir: &Path, name: &str) -> Result<()> {
    let path = binfmt_dir.join(name);
    write_control(&path, "-1").map_err(|e| file_error("remove binfmt_misc entry", path, &e))
}

/// Removes `qemu-<qemu>` from the binfmt_misc at `binfmt_dir`; false if it was not there.
pub fn unregister(binfmt_dir: &Path, arch: Arch) -> Result<bool> {
    let name = entry_name(arch);
    if read_entry(binfmt_dir, arch)?.is_none() {
        return Ok(false);
    }
    remove_entry(binfmt_dir, &name)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::binfmt::HOST_DIR;

    #[test]
    fn register_line_is_what_the_kernel_expects() {
        let line = register_line(Arch::Arm64, Path::new("/usr/bin/qemu-aarch64-static"), "FP");
        assert_eq!(
            line,
            ":qemu-aarch64:M::\
             \\x7f\\x45\\x4c\\x46\\x02\\x01\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x02\\x00\\xb7\\x00:\
             \\xff\\xff\\xff\\xff\\xff\\xff\\xff\\x00\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xfe\\xff\\xff\\xff:\
             /usr/bin/qemu-aarch64-static:FP"
        );
        for arch in Arch::ALL {
            let line = register_line(arch, Path::new("/q"), "F");
            assert_eq!(line.matches(':').count(), 7, "{line}");
            assert!(line.starts_with(&format!(":qemu-{}:M::", arch.qemu())));
        }
    }

    #[test]
    fn validation_catches_what_the_kernel_would_misread() {
        let bad = |p: &str, f: &str| validate(Arch::Arm64, Path::new(p), f).unwrap_err();
        assert!(bad("/opt/q:1/qemu", "F").to_string().contains("':'"));
        assert!(bad("qemu-aarch64-static", "F")
            .to_string()
            .contains("absolute"));
        assert!(bad("/usr/bin/q", "FX").to_string().contains("'X'"));
        assert!(bad("/usr/bin/q", "FX").is_input_error());
        assert!(validate(Arch::Arm64, Path::new("/usr/bin/q"), "POCF").is_ok());
    }

    #[test]
    fn host_wide_permission_errors_advise_sudo() {
        let e = BinfmtError::Sys(SysError {
            op: "register in".into(),
            path: Some(Path::new(HOST_DIR).join("register")),
            errno: Errno::EACCES,
            hint: register_hint(
                Path::new(HOST_DIR),
                Errno::EACCES,
                "qemu-aarch64",
                Path::new("/q"),
                "",
            ),
        });
        assert!(e.is_input_error());
        assert!(e.to_string().contains("run it with sudo"), "{e}");
        let unmounted = tempfile::tempdir().unwrap();
        let hint =
            register_hint(unmounted.path(), Errno::ENOENT, "x", Path::new("/q"), "").unwrap();
        assert!(hint.contains("not mounted"), "{hint}");
    }
}
