//! QEMU user-mode emulation through binfmt_misc: the magic/mask table of each foreign
//! architecture, finding `qemu-<arch>-static`, and registering it.
//!
//! Preference, decided once per run ([`choose`]):
//! 1. a **private** binfmt_misc instance in the sandbox's own user namespace (Linux ≥ 6.7): no
//!    root, no global change; it is mounted under the new root before `pivot_root`, because the
//!    instance dies with its last mount, and registered with `F` so the interpreter is opened from
//!    the host's filesystem at registration time;
//! 2. an existing host registration of that arch with the `F` flag;
//! 3. otherwise an error naming the kernel, the reason and the one command that fixes it.
//!
//! Table values: Debian's `/usr/share/binfmts/qemu-*` from `qemu-user-static` 1:10.0 (checked on
//! 2026-11-23), which are generated from QEMU's `scripts/qemu-binfmt-conf.sh`. i386 and x86_64
//! binaries run natively on an x86_64 host and have no entry.

use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::MsFlags;

use crate::arch::Arch;
use crate::sys;

/// The binfmt_misc match of one architecture: `(header & mask) == magic` at offset 0.
#[derive(Debug, Clone, Copy)]
pub struct Entry {
    pub arch: Arch,
    pub magic: [u8; 20],
    pub mask: [u8; 20],
}

/// ELF e_ident + e_type (EXEC or DYN: the mask clears the low bit of e_type) + e_machine.
pub const TABLE: [Entry; 5] = [
    Entry {
        arch: Arch::Arm64,
        magic: *b"\x7f\x45\x4c\x46\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00",
        mask: *b"\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff",
    },
    Entry {
        arch: Arch::Armhf,
        magic: *b"\x7f\x45\x4c\x46\x01\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x28\x00",
        mask: *b"\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff",
    },
    Entry {
        arch: Arch::Ppc64el,
        magic: *b"\x7f\x45\x4c\x46\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x15\x00",
        mask: *b"\xff\xff\xff\xff\xff\xff\xff\xfc\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\x00",
    },
    Entry {
        arch: Arch::S390x,
        magic: *b"\x7f\x45\x4c\x46\x02\x02\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x16",
        mask: *b"\xff\xff\xff\xff\xff\xff\xff\xfc\xff\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff",
    },
    Entry {
        arch: Arch::Riscv64,
        magic: *b"\x7f\x45\x4c\x46\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xf3\x00",
        mask: *b"\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff",
    },
];

/// Flags of a registration: `F` opens the interpreter at registration time (so it works inside
/// any root filesystem, and after `pivot_root`), `P` passes the program's own argv[0] (Debian
/// registers the same). Not `C`: credentials of setuid binaries mean nothing under no_new_privs.
pub const FLAGS: &str = "FP";

/// Where the host's binfmt_misc lives.
pub const HOST_DIR: &str = "/proc/sys/fs/binfmt_misc";

pub fn entry(arch: Arch) -> Option<&'static Entry> {
    TABLE.iter().find(|e| e.arch == arch)
}

/// The registration name, as Debian names it: `qemu-aarch64`.
pub fn entry_name(arch: Arch) -> String {
    format!("qemu-{}", arch.qemu())
}

#[derive(Debug, thiserror::Error)]
pub enum BinfmtError {
    #[error(
        "no QEMU interpreter for {arch} ({}): install it with `sudo apt-get install qemu-user-static`{}",
        .arch.uname(),
        qemu_dir.as_ref().map(|d| format!(" (looked in qemu_dir = {})", d.display())).unwrap_or_default()
    )]
    NoInterpreter {
        arch: Arch,
        qemu_dir: Option<PathBuf>,
    },
    #[error("pookie-ns has no binfmt_misc entry for {0}: it runs natively or is not supported")]
    NoEntry(Arch),
    #[error(
        "cannot run {arch} binaries: {reason}. Linux {kernel} found. Fix: \
         `sudo pookie-ns binfmt register --arch {}` (a host-wide registration with the F flag)",
        .arch.uname()
    )]
    Unavailable {
        arch: Arch,
        kernel: String,
        reason: String,
    },
    #[error("{op} {}: {} ({errno}){}", path.display(), errno.desc(), hint.as_ref().map(|h| format!("\n  hint: {h}")).unwrap_or_default())]
    Sys {
        op: &'static str,
        path: PathBuf,
        errno: Errno,
        hint: Option<String>,
    },
}

impl BinfmtError {
    pub fn is_input_error(&self) -> bool {
        matches!(
            self,
            BinfmtError::NoInterpreter { .. }
                | BinfmtError::NoEntry(_)
                | BinfmtError::Unavailable { .. }
        )
    }

    fn sys(op: &'static str, path: &Path, e: &std::io::Error) -> Self {
        let errno = Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO));
        let hint = match errno {
            Errno::EACCES | Errno::EPERM if path.starts_with(HOST_DIR) => {
                Some("host-wide registration needs root: run it with sudo".to_string())
            }
            Errno::EEXIST => Some("an entry of that name exists; unregister it first".into()),
            Errno::EINVAL => Some("the kernel refused the registration line".into()),
            Errno::ENOENT => Some("binfmt_misc is not mounted there".into()),
            _ => None,
        };
        BinfmtError::Sys {
            op,
            path: path.to_path_buf(),
            errno,
            hint,
        }
    }
}

type Result<T> = std::result::Result<T, BinfmtError>;

/// `qemu-<arch>-static`: in `qemu_dir` when given; else Debian's `-binfmt-P` link (what Debian
/// itself registers), else `/usr/bin/qemu-<arch>-static`.
pub fn find_interpreter(arch: Arch, qemu_dir: Option<&Path>) -> Result<PathBuf> {
    let q = arch.qemu();
    let candidates: Vec<PathBuf> = match qemu_dir {
        Some(d) => vec![
            d.join(format!("qemu-{q}-static")),
            d.join(format!("qemu-{q}")),
        ],
        None => vec![
            PathBuf::from(format!("/usr/libexec/qemu-binfmt/{q}-binfmt-P")),
            PathBuf::from(format!("/usr/bin/qemu-{q}-static")),
        ],
    };
    candidates
        .into_iter()
        .find(|p| p.is_file())
        .ok_or(BinfmtError::NoInterpreter {
            arch,
            qemu_dir: qemu_dir.map(Path::to_path_buf),
        })
}

fn escape(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("\\x{b:02x}")).collect()
}

/// The line written to `register`: `:name:M::magic:mask:interpreter:flags`.
pub fn register_line(arch: Arch, interpreter: &Path, flags: &str) -> Result<String> {
    let e = entry(arch).ok_or(BinfmtError::NoEntry(arch))?;
    Ok(format!(
        ":{}:M::{}:{}:{}:{flags}",
        entry_name(arch),
        escape(&e.magic),
        escape(&e.mask),
        interpreter.display()
    ))
}

/// A registration as the kernel shows it in `<binfmt_misc>/<name>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    pub name: String,
    pub enabled: bool,
    pub interpreter: PathBuf,
    pub flags: String,
    pub magic: String,
    pub mask: String,
}

impl Registration {
    /// True when this entry runs `interpreter` with exactly `flags` (in any order).
    pub fn is_same(&self, interpreter: &Path, flags: &str) -> bool {
        let sorted = |s: &str| {
            let mut v: Vec<char> = s.chars().collect();
            v.sort_unstable();
            v
        };
        self.interpreter == interpreter && sorted(&self.flags) == sorted(flags)
    }
}

/// Parses the kernel's description of an entry.
pub fn parse_registration(name: &str, text: &str) -> Registration {
    let mut r = Registration {
        name: name.to_string(),
        enabled: false,
        interpreter: PathBuf::new(),
        flags: String::new(),
        magic: String::new(),
        mask: String::new(),
    };
    for line in text.lines() {
        if line == "enabled" {
            r.enabled = true;
        } else if let Some(v) = line.strip_prefix("interpreter ") {
            r.interpreter = v.into();
        } else if let Some(v) = line.strip_prefix("flags: ") {
            r.flags = v.trim().to_string();
        } else if let Some(v) = line.strip_prefix("magic ") {
            r.magic = v.trim().to_string();
        } else if let Some(v) = line.strip_prefix("mask ") {
            r.mask = v.trim().to_string();
        }
    }
    r
}

/// Names of the entries registered in `dir`.
pub fn list_entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
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

/// The registration in `dir` that matches `arch`'s magic and mask, whatever its name.
pub fn find_registration(dir: &Path, arch: Arch) -> Option<Registration> {
    let e = entry(arch)?;
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let (magic, mask) = (hex(&e.magic), hex(&e.mask));
    list_entries(dir).into_iter().find_map(|name| {
        let text = std::fs::read_to_string(dir.join(&name)).ok()?;
        let r = parse_registration(&name, &text);
        (r.magic == magic && r.mask == mask).then_some(r)
    })
}

/// Registers `arch` in the binfmt_misc mounted at `dir`; does nothing if an identical entry exists.
pub fn register(dir: &Path, arch: Arch, interpreter: &Path, flags: &str) -> Result<()> {
    let name = entry_name(arch);
    let existing = dir.join(&name);
    if let Ok(text) = std::fs::read_to_string(&existing) {
        if parse_registration(&name, &text).is_same(interpreter, flags) {
            return Ok(());
        }
        std::fs::write(&existing, "-1")
            .map_err(|e| BinfmtError::sys("unregister", &existing, &e))?;
    }
    let line = register_line(arch, interpreter, flags)?;
    let reg = dir.join("register");
    tracing::debug!(register = %reg.display(), %line, "registering");
    std::fs::write(&reg, line).map_err(|e| BinfmtError::sys("register in", &reg, &e))
}

pub fn unregister(dir: &Path, arch: Arch) -> Result<bool> {
    let path = dir.join(entry_name(arch));
    if !path.exists() {
        return Ok(false);
    }
    std::fs::write(&path, "-1").map_err(|e| BinfmtError::sys("unregister", &path, &e))?;
    Ok(true)
}

/// How a run on a foreign arch gets its emulation.
#[derive(Debug, Clone)]
pub enum Strategy {
    /// Register in a private binfmt_misc instance inside the sandbox.
    Private { interpreter: PathBuf },
    /// The host already has a usable registration.
    Host { entry: Registration },
}

/// True when this kernel can mount binfmt_misc in a user namespace (Linux 6.7).
pub fn kernel_has_private_instances() -> bool {
    sys::kernel_version() >= (6, 7)
}

/// Decides how to emulate `arch` (see the module documentation for the order).
pub fn choose(arch: Arch, qemu_dir: Option<&Path>, allow_private: bool) -> Result<Strategy> {
    entry(arch).ok_or(BinfmtError::NoEntry(arch))?;
    let private_ok = kernel_has_private_instances();
    if allow_private && private_ok {
        return Ok(Strategy::Private {
            interpreter: find_interpreter(arch, qemu_dir)?,
        });
    }
    if let Some(r) = find_registration(Path::new(HOST_DIR), arch) {
        if r.enabled && r.flags.contains('F') {
            return Ok(Strategy::Host { entry: r });
        }
    }
    let (major, minor) = sys::kernel_version();
    let why_private = if !allow_private {
        "private binfmt_misc instances are disabled (binfmt = \"host\" in config.toml or POOKIE_NS_BINFMT=host)".to_string()
    } else {
        format!("Linux {major}.{minor} has no private binfmt_misc instances (they need 6.7)")
    };
    Err(BinfmtError::Unavailable {
        arch,
        kernel: sys::kernel_release(),
        reason: format!(
            "{why_private}, and the host has no enabled registration for {} with the F flag in {HOST_DIR}",
            arch.uname()
        ),
    })
}

/// Inside a new user + mount namespace, before `pivot_root`: mounts a private binfmt_misc
/// instance at `mount_point` (normally `<newroot>/proc/sys/fs/binfmt_misc`) and registers each
/// (arch, interpreter).
pub fn setup_private(mount_point: &Path, arches: &[(Arch, PathBuf)]) -> Result<()> {
    nix::mount::mount(
        Some("binfmt_misc"),
        mount_point,
        Some("binfmt_misc"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None::<&str>,
    )
    .map_err(|errno| BinfmtError::Sys {
        op: "mount a private binfmt_misc instance on",
        path: mount_point.to_path_buf(),
        errno,
        hint: Some(format!(
            "Linux {} cannot mount binfmt_misc inside a user namespace (needs 6.7); \
             set binfmt = \"host\" and run `sudo pookie-ns binfmt register --arch ARCH`",
            sys::kernel_release()
        )),
    })?;
    for (arch, interpreter) in arches {
        register(mount_point, *arch, interpreter, FLAGS)?;
    }
    Ok(())
}

fn ensure_host_mounted() -> Result<()> {
    let dir = Path::new(HOST_DIR);
    if dir.join("status").exists() {
        return Ok(());
    }
    nix::mount::mount(
        Some("binfmt_misc"),
        dir,
        Some("binfmt_misc"),
        MsFlags::empty(),
        None::<&str>,
    )
    .map_err(|errno| BinfmtError::Sys {
        op: "mount binfmt_misc on",
        path: dir.to_path_buf(),
        errno,
        hint: Some("host-wide registration needs root: run it with sudo".into()),
    })
}

/// Host-wide registration (root): flags `F`, idempotent. Returns one message per arch.
pub fn register_host(arches: &[Arch], qemu_dir: Option<&Path>) -> Result<Vec<String>> {
    ensure_host_mounted()?;
    let dir = Path::new(HOST_DIR);
    let mut out = Vec::new();
    for &arch in arches {
        let interpreter = find_interpreter(arch, qemu_dir)?;
        let name = entry_name(arch);
        let before = std::fs::read_to_string(dir.join(&name)).ok();
        register(dir, arch, &interpreter, FLAGS)?;
        out.push(match before {
            Some(t) if parse_registration(&name, &t).is_same(&interpreter, FLAGS) => {
                format!("{name} already registered ({})", interpreter.display())
            }
            _ => format!(
                "registered {name} ({}, flags {FLAGS})",
                interpreter.display()
            ),
        });
    }
    Ok(out)
}

pub fn unregister_host(arches: &[Arch]) -> Result<Vec<String>> {
    let dir = Path::new(HOST_DIR);
    arches
        .iter()
        .map(|&arch| {
            let name = entry_name(arch);
            Ok(if unregister(dir, arch)? {
                format!("unregistered {name}")
            } else {
                format!("{name} was not registered")
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A synthetic ELF header (e_ident + e_type + e_machine) of `arch`.
    fn header(arch: Arch, e_type: u16) -> [u8; 20] {
        let id = arch.elf();
        let mut h = [0u8; 20];
        h[..4].copy_from_slice(b"\x7fELF");
        h[4] = id.class;
        h[5] = id.data;
        h[6] = 1;
        let (t, m) = if id.data == 2 {
            (e_type.to_be_bytes(), id.machine.to_be_bytes())
        } else {
            (e_type.to_le_bytes(), id.machine.to_le_bytes())
        };
        h[16..18].copy_from_slice(&t);
        h[18..20].copy_from_slice(&m);
        h
    }

    fn matches(e: &Entry, h: &[u8; 20]) -> bool {
        h.iter()
            .zip(e.mask.iter())
            .zip(e.magic.iter())
            .all(|((b, m), g)| b & m == *g)
    }

    #[test]
    fn each_entry_matches_its_own_arch_and_no_other() {
        for e in TABLE {
            for arch in Arch::ALL {
                for e_type in [2u16, 3] {
                    assert_eq!(
                        matches(&e, &header(arch, e_type)),
                        arch == e.arch,
                        "{:?} entry vs {arch:?} type {e_type}",
                        e.arch
                    );
                }
            }
        }
    }

    #[test]
    fn register_line_is_what_the_kernel_expects() {
        let line =
            register_line(Arch::Arm64, Path::new("/usr/bin/qemu-aarch64-static"), "FP").unwrap();
        assert!(
            line.starts_with(":qemu-aarch64:M::\\x7f\\x45\\x4c\\x46\\x02"),
            "{line}"
        );
        assert!(line.ends_with(":/usr/bin/qemu-aarch64-static:FP"), "{line}");
        assert_eq!(line.matches(':').count(), 7);
        assert!(register_line(Arch::Amd64, Path::new("/x"), "F").is_err());
    }

    #[test]
    fn kernel_descriptions_parse() {
        let text = "enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: POCF\noffset 0\nmagic 7f454c46\nmask ffffffff\n";
        let r = parse_registration("qemu-aarch64", text);
        assert!(r.enabled);
        assert_eq!(r.flags, "POCF");
        assert_eq!(
            r.interpreter,
            PathBuf::from("/usr/libexec/qemu-binfmt/aarch64-binfmt-P")
        );
        assert_eq!(r.magic, "7f454c46");
    }
}
