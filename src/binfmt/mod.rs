//! QEMU user-mode emulation through binfmt_misc: the magic/mask table of each architecture,
//! finding a static `qemu-<arch>-static`, registering it, and deciding once per run how a
//! foreign architecture gets emulated.
//!
//! Preference, decided by [`choose`]:
//! 1. a **private** binfmt_misc instance in the sandbox's own user namespace (Linux ≥ 6.7): no
//!    root, no global change. [`setup_private`] mounts it under the new root before `pivot_root`,
//!    because an instance dies with its last mount, and registers with `F`, so the interpreter is
//!    opened from the host's filesystem at registration time and need not exist in the rootfs;
//! 2. an existing, enabled host registration of that arch with the `F` flag;
//! 3. otherwise an error naming the kernel, the reason and the one command that fixes it
//!    ([`register_host`] behind `sudo pookie-ns binfmt register --arch ARCH`).
//!
//! How the kernel matches (fs/binfmt_misc.c, `search_binfmt_handler`): a file is handled by an
//! entry when `((header[i] ^ magic[i]) & mask[i]) == 0` for every byte, i.e. when
//! `header & mask == magic & mask`. The kernel keeps the magic as written (checked on 6.18: a
//! magic byte 0x01 under mask 0xfe is shown as `01`), so the comparison masks both sides.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::MsFlags;

use crate::arch::{parse_elf_header, Arch};
use crate::config::{BinfmtChoice, Config};
use crate::sys::{self, SysError};

/// Where the host's binfmt_misc lives.
pub const HOST_DIR: &str = "/proc/sys/fs/binfmt_misc";

/// The first kernel that lets a user namespace mount its own binfmt_misc instance (Linux 6.7,
/// "binfmt_misc: enable sandboxed mounts").
pub const PRIVATE_MIN_KERNEL: (u32, u32) = (6, 7);

/// Flags of a registration in a private instance.
///
/// - `F` (fix binary): the kernel opens the interpreter when the line is written, from the host's
///   filesystem; without it the path is looked up at each exec *inside the rootfs*, where there
///   is no qemu (`required file not found`), and after `pivot_root` the host path is gone.
/// - `P` (preserve argv[0]): the program sees the argv[0] it was started with, as natively.
///   Busybox applets, `python3` vs `python3.11`, login shells (`-sh`) depend on it. QEMU learns
///   about it from `AT_FLAGS_PRESERVE_ARGV0` in its auxv (Linux ≥ 5.12, QEMU ≥ 6.0), which every
///   kernel with private instances has. Debian registers the same pair (`fix_binary yes`,
///   `preserve yes` in /usr/share/binfmts/qemu-*).
/// - not `C` (and so not `O`): credentials computed from the emulated binary only matter for
///   setuid/setgid programs, and the sandbox runs its command under `no_new_privs`, where the
///   kernel ignores setuid bits anyway; `C` would also make a setuid binary start qemu itself
///   with raised privileges. Debian says `credentials no` too.
pub const PRIVATE_FLAGS: &str = "FP";

/// Flags of a host-wide registration: only `F`. A host registration serves kernels older than
/// 6.7, and before 5.12 the kernel cannot tell QEMU that `P` was set, so a plain
/// `qemu-<arch>-static` would take the program's argv[0] for its first argument.
pub const HOST_FLAGS: &str = "F";

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
/// ([`Registration::serves`]). Debian ships no qemu-i386/qemu-x86_64 entries on an amd64 host.
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
fn masked_match(header: &[u8], magic: &[u8], mask: Option<&[u8]>) -> bool {
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
fn representative_headers(arch: Arch) -> impl Iterator<Item = [u8; 20]> {
    [(2, 0), (3, 0), (2, 3), (3, 3)]
        .into_iter()
        .map(move |(t, abi)| elf_header(arch, t, abi))
}

/// The registration name, as Debian names it: `qemu-aarch64`.
pub fn entry_name(arch: Arch) -> String {
    format!("qemu-{}", arch.qemu())
}

#[derive(Debug, thiserror::Error)]
pub enum BinfmtError {
    #[error(
        "no usable QEMU interpreter for {}: {}; install it with: sudo apt-get install qemu-user-static{}",
        .arch.uname(),
        describe_tried(.tried),
        .qemu_dir.as_ref().map(|d| format!(" (or correct qemu_dir = {} in config.toml)", d.display())).unwrap_or_default()
    )]
    NoInterpreter {
        arch: Arch,
        qemu_dir: Option<PathBuf>,
        /// Each candidate path and why it was not taken.
        tried: Vec<(PathBuf, String)>,
    },

    #[error("{} runs natively on this host: it needs no binfmt_misc registration", .0.uname())]
    Native(Arch),

    #[error("invalid binfmt_misc registration for {}: {reason}", .arch.uname())]
    Invalid { arch: Arch, reason: String },

    #[error("cannot run {} binaries on Linux {kernel}: {reason}.\n  fix: {fix}", .arch.uname())]
    Unavailable {
        arch: Arch,
        /// The kernel release found (`uname -r`).
        kernel: String,
        reason: String,
        /// The one command that makes it work.
        fix: String,
    },

    #[error(
        "refusing to mount binfmt_misc on {}: this process is in the host's user namespace, \
         where binfmt_misc is the host's own instance and registering would change the whole \
         machine (setup_private must run inside a new user namespace)",
        .path.display()
    )]
    NotInUserNamespace { path: PathBuf },

    #[error(transparent)]
    Sys(#[from] SysError),
}

fn describe_tried(tried: &[(PathBuf, String)]) -> String {
    let parts: Vec<String> = tried
        .iter()
        .map(|(p, why)| format!("{} ({why})", p.display()))
        .collect();
    format!("looked for {}", parts.join(", "))
}

impl BinfmtError {
    /// True for what the user fixes in their setup or command line (exit status 2): a missing
    /// package, an arch that needs nothing, no usable emulation, host-wide changes without root.
    pub fn is_input_error(&self) -> bool {
        match self {
            BinfmtError::NoInterpreter { .. }
            | BinfmtError::Native(_)
            | BinfmtError::Invalid { .. }
            | BinfmtError::Unavailable { .. } => true,
            BinfmtError::Sys(e) => {
                matches!(e.errno, Errno::EACCES | Errno::EPERM)
                    && e.path.as_ref().is_some_and(|p| p.starts_with(HOST_DIR))
            }
            BinfmtError::NotInUserNamespace { .. } => false,
        }
    }
}

type Result<T> = std::result::Result<T, BinfmtError>;

fn errno_of(e: &std::io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
}

fn needs_root_hint(path: &Path) -> Option<String> {
    path.starts_with(HOST_DIR).then(|| {
        "changing the host's binfmt_misc needs root: run it with sudo \
         (e.g. `sudo pookie-ns binfmt register --arch ARCH`)"
            .to_string()
    })
}

// ---- finding the interpreter ---------------------------------------------------------------

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

// ---- registering ---------------------------------------------------------------------------

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
    fn has_table_values(&self, e: &Entry) -> bool {
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
        Err(e) => Err(BinfmtError::Sys(SysError {
            op: "read binfmt_misc entry".into(),
            hint: needs_root_hint(&path),
            errno: errno_of(&e),
            path: Some(path),
        })),
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
fn entries_serving(binfmt_dir: &Path, arch: Arch) -> Vec<Registration> {
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
    write_control(&path, "-1").map_err(|e| {
        BinfmtError::Sys(SysError {
            op: "remove binfmt_misc entry".into(),
            hint: needs_root_hint(&path),
            errno: errno_of(&e),
            path: Some(path),
        })
    })
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

// ---- the decision --------------------------------------------------------------------------

/// How a run on a foreign arch gets its emulation.
#[derive(Debug, Clone)]
pub enum Strategy {
    /// Register `interpreter` in a private binfmt_misc instance inside the sandbox.
    Private { interpreter: PathBuf },
    /// The host has a usable registration (enabled, flag `F`): nothing to do.
    Host { entry: Registration },
}

/// What a run on `arch` needs for emulation: nothing for the host's arch; otherwise a private
/// binfmt_misc registration (kernel 6.7+), or nothing when the host's registration serves. Decided
/// before anything is mounted, so a missing interpreter fails early and names its package.
pub fn emulation_for(config: &Config, arch: Arch) -> Result<Vec<(Arch, PathBuf)>> {
    if arch.is_native() {
        return Ok(Vec::new());
    }
    match choose(arch, config.qemu_dir.as_deref(), allow_private(config))? {
        Strategy::Private { interpreter } => {
            tracing::debug!(%arch, interpreter = %interpreter.display(), "emulation: private binfmt_misc instance");
            Ok(vec![(arch, interpreter)])
        }
        Strategy::Host { entry } => {
            tracing::info!(
                "emulating {arch} through the host's binfmt_misc registration ({entry:?})"
            );
            Ok(Vec::new())
        }
    }
}

/// Private binfmt_misc instances are used unless `binfmt = "host"` in config.toml or
/// `POOKIE_NS_BINFMT=host` in the environment says otherwise.
pub fn allow_private(config: &Config) -> bool {
    config.binfmt != BinfmtChoice::Host
        && std::env::var("POOKIE_NS_BINFMT").as_deref() != Ok("host")
}

/// True when this kernel can mount binfmt_misc in a user namespace (Linux 6.7).
pub fn kernel_has_private_instances() -> bool {
    sys::kernel_version() >= PRIVATE_MIN_KERNEL
}

/// Decides how to emulate `arch`; see the module documentation for the order. `allow_private`
/// is false when the user asked for the host's registrations only (`POOKIE_NS_BINFMT=host`,
/// `binfmt = "host"`: the caller reads those). Reads the host's binfmt_misc, changes nothing.
pub fn choose(arch: Arch, qemu_dir: Option<&Path>, allow_private: bool) -> Result<Strategy> {
    if arch.is_native() {
        return Err(BinfmtError::Native(arch));
    }
    let interpreter = match find_interpreter(arch, qemu_dir) {
        // A configured qemu_dir that does not hold the interpreter is a mistake to report, not
        // to paper over with whatever the host has registered (and the outcome must not depend
        // on the host's state of the moment).
        Err(e) if qemu_dir.is_some() => return Err(e),
        found => found,
    };
    let strategy = choose_in(
        arch,
        interpreter,
        allow_private,
        sys::kernel_version(),
        &sys::kernel_release(),
        Path::new(HOST_DIR),
    )
    .map_err(|e| match e {
        // Root is never told to use sudo: the same command without it.
        BinfmtError::Unavailable {
            arch,
            kernel,
            reason,
            fix,
        } if nix::unistd::geteuid().is_root() => BinfmtError::Unavailable {
            arch,
            kernel,
            reason,
            fix: fix.replace("sudo ", ""),
        },
        e => e,
    })?;
    tracing::debug!(%arch, ?strategy, "emulation strategy");
    Ok(strategy)
}

/// The decision, given what [`find_interpreter`] found, the kernel and the host's binfmt_misc.
fn choose_in(
    arch: Arch,
    interpreter: Result<PathBuf>,
    allow_private: bool,
    kernel: (u32, u32),
    release: &str,
    host_dir: &Path,
) -> Result<Strategy> {
    let private_possible = kernel >= PRIVATE_MIN_KERNEL;
    if allow_private && private_possible {
        if let Ok(interpreter) = &interpreter {
            return Ok(Strategy::Private {
                interpreter: interpreter.clone(),
            });
        }
    }
    let on_host = entries_serving(host_dir, arch);
    if let Some(r) = on_host.iter().find(|r| r.enabled && r.has_flag('F')) {
        return Ok(Strategy::Host { entry: r.clone() });
    }
    let interpreter_missing = match interpreter {
        // Private instances would work; only the package is missing: say that, not sudo.
        Err(e) if allow_private && private_possible => return Err(e),
        Err(_) => true,
        Ok(_) => false,
    };

    let (major, minor) = kernel;
    let why_private = if !allow_private {
        "private binfmt_misc instances are disabled (POOKIE_NS_BINFMT=host or binfmt = \"host\" \
         in config.toml)"
            .to_string()
    } else {
        format!(
            "Linux {major}.{minor} has no private binfmt_misc instances (they need {}.{}+)",
            PRIVATE_MIN_KERNEL.0, PRIVATE_MIN_KERNEL.1
        )
    };
    let u = arch.uname();
    let why_host = match on_host.iter().find(|r| r.enabled).or(on_host.first()) {
        None if !host_dir.join("register").exists() => {
            format!("binfmt_misc is not mounted at {}", host_dir.display())
        }
        None => format!(
            "no host registration for {u} with the F flag in {}",
            host_dir.display()
        ),
        Some(r) if !r.enabled => format!("the host's registration {} is disabled", r.name),
        Some(r) => format!(
            "the host's registration {} ({}, flags {}) lacks the F flag, so its interpreter is \
             not found inside a foreign root filesystem",
            r.name,
            r.interpreter.display(),
            if r.flags.is_empty() { "none" } else { &r.flags }
        ),
    };
    let fix = if interpreter_missing {
        format!(
            "sudo apt-get install qemu-user-static && sudo pookie-ns binfmt register --arch {u}"
        )
    } else {
        format!("sudo pookie-ns binfmt register --arch {u}")
    };
    Err(BinfmtError::Unavailable {
        arch,
        kernel: release.to_string(),
        reason: format!("{why_private}, and {why_host}"),
        fix,
    })
}

// ---- the private instance ------------------------------------------------------------------

/// `/proc/<pid>/ns/user` of the initial user namespace has this fixed inode number
/// (include/linux/proc_ns.h, `PROC_USER_INIT_INO`).
const PROC_USER_INIT_INO: u64 = 0xEFFF_FFFD;

/// Refuses to go on in the initial user namespace, where a binfmt_misc mount is the host's.
fn ensure_own_user_namespace(mount_point: &Path) -> Result<()> {
    let ns = Path::new("/proc/self/ns/user");
    match std::fs::metadata(ns) {
        Ok(m) if m.ino() != PROC_USER_INIT_INO => Ok(()),
        Ok(_) => Err(BinfmtError::NotInUserNamespace {
            path: mount_point.to_path_buf(),
        }),
        Err(e) => Err(BinfmtError::Sys(SysError {
            op: "find the user namespace of this process:".into(),
            path: Some(ns.to_path_buf()),
            errno: errno_of(&e),
            hint: Some("/proc must be mounted".into()),
        })),
    }
}

/// Inside a new user + mount namespace, before `pivot_root`: mounts a private binfmt_misc
/// instance at `binfmt_mount_point` (normally `<newroot>/proc/sys/fs/binfmt_misc`, so that the
/// instance outlives the detach of the old root) and registers each `(arch, interpreter)` with
/// [`PRIVATE_FLAGS`]. The instance starts empty, hides the host's entries and dies with the
/// namespace. Refuses to run in the host's user namespace.
pub fn setup_private(binfmt_mount_point: &Path, arches: &[(Arch, PathBuf)]) -> Result<()> {
    ensure_own_user_namespace(binfmt_mount_point)?;
    // nosuid, nodev, noexec: nothing in binfmt_misc is meant to be executed or opened as a device.
    sys::mount(
        Some("binfmt_misc"),
        binfmt_mount_point,
        Some("binfmt_misc"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None,
    )
    .map_err(|e| {
        let (major, minor) = sys::kernel_version();
        let hint = match e.errno {
            Errno::EPERM | Errno::EINVAL | Errno::ENODEV => Some(format!(
                "this kernel ({major}.{minor}) cannot mount a private binfmt_misc instance in a \
                 user namespace (needs {}.{}+): use the host's registration instead \
                 (POOKIE_NS_BINFMT=host) after `sudo pookie-ns binfmt register{}`",
                PRIVATE_MIN_KERNEL.0,
                PRIVATE_MIN_KERNEL.1,
                arches
                    .iter()
                    .map(|(a, _)| format!(" --arch {}", a.uname()))
                    .collect::<String>()
            )),
            _ => None,
        };
        BinfmtError::Sys(SysError {
            op: "mount a private binfmt_misc instance on".into(),
            path: Some(binfmt_mount_point.to_path_buf()),
            errno: e.errno,
            hint,
        })
    })?;
    for (arch, interpreter) in arches {
        register(binfmt_mount_point, *arch, interpreter, PRIVATE_FLAGS)?;
    }
    tracing::debug!(
        dir = %binfmt_mount_point.display(),
        entries = ?list_entries(binfmt_mount_point),
        "private binfmt_misc instance ready"
    );
    Ok(())
}

// ---- the host's registrations (root) -------------------------------------------------------

/// Mounts binfmt_misc at [`HOST_DIR`] unless it is there already (systemd mounts it on demand;
/// minimal systems and containers may not).
fn ensure_host_mounted() -> Result<()> {
    let dir = Path::new(HOST_DIR);
    if dir.join("status").exists() {
        return Ok(());
    }
    sys::mount(
        Some("binfmt_misc"),
        dir,
        Some("binfmt_misc"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None,
    )
    .map_err(|e| {
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

    /// What Linux 6.18 prints for a private registration (captured on the development host).
    const KERNEL_TEXT: &str = "enabled\ninterpreter /usr/bin/qemu-aarch64-static\nflags: PF\n\
         offset 0\nmagic 7f454c460201010000000000000000000200b700\n\
         mask ffffffffffffff00fffffffffffffffffeffffff\n";

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

    // ---- interpreters ----

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

    // ---- the decision ----

    /// A directory that looks like a mounted binfmt_misc with the given entries.
    fn fake_binfmt(entries: &[(&str, &str)]) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("register"), "").unwrap();
        std::fs::write(d.path().join("status"), "enabled\n").unwrap();
        for (name, text) in entries {
            std::fs::write(d.path().join(name), text).unwrap();
        }
        d
    }

    const QEMU: &str = "/usr/bin/qemu-aarch64-static";

    fn found() -> Result<PathBuf> {
        Ok(PathBuf::from(QEMU))
    }

    fn missing() -> Result<PathBuf> {
        Err(BinfmtError::NoInterpreter {
            arch: Arch::Arm64,
            qemu_dir: None,
            tried: vec![(PathBuf::from(QEMU), "not found".into())],
        })
    }

    #[test]
    fn private_instance_first_on_new_kernels() {
        let host = fake_binfmt(&[("qemu-aarch64", KERNEL_TEXT)]);
        let arm = |interp, allow, kernel| {
            choose_in(Arch::Arm64, interp, allow, kernel, "6.x", host.path())
        };
        let s = arm(found(), true, (6, 7));
        assert!(
            matches!(&s, Ok(Strategy::Private { interpreter }) if interpreter == Path::new(QEMU)),
            "{s:?}"
        );
        // Disabled by the user, an old kernel, or no interpreter here: the host's entry
        // (enabled, F) serves.
        for s in [
            arm(found(), false, (6, 18)),
            arm(found(), true, (6, 6)),
            arm(missing(), true, (6, 18)),
        ] {
            assert!(
                matches!(&s, Ok(Strategy::Host { entry }) if entry.name == "qemu-aarch64"),
                "{s:?}"
            );
        }
        assert!(matches!(
            choose(Arch::host(), None, true),
            Err(BinfmtError::Native(_))
        ));
    }

    #[test]
    fn without_emulation_the_error_names_kernel_reason_and_fix() {
        let empty = fake_binfmt(&[]);
        let msg = |r: Result<Strategy>| {
            let e = r.unwrap_err();
            assert!(e.is_input_error(), "{e}");
            assert!(matches!(e, BinfmtError::Unavailable { .. }), "{e}");
            e.to_string()
        };
        let arm = |interp, allow, kernel, host: &Path| {
            choose_in(Arch::Arm64, interp, allow, kernel, "6.1.0-18-amd64", host)
        };

        let m = msg(arm(found(), true, (6, 1), empty.path()));
        assert!(m.contains("on Linux 6.1.0-18-amd64: "), "{m}");
        assert!(
            m.contains("Linux 6.1 has no private binfmt_misc instances (they need 6.7+)"),
            "{m}"
        );
        assert!(
            m.contains("no host registration for aarch64 with the F flag"),
            "{m}"
        );
        assert!(
            m.ends_with("\n  fix: sudo pookie-ns binfmt register --arch aarch64"),
            "{m}"
        );

        // Private instances disabled: what the host's registrations lack is named.
        let no_f = KERNEL_TEXT.replace("flags: PF", "flags: P");
        let off = KERNEL_TEXT.replace("enabled", "disabled");
        for (entries, expect) in [
            (
                vec![],
                "private binfmt_misc instances are disabled (POOKIE_NS_BINFMT=host",
            ),
            (
                vec![("qemu-aarch64", no_f.as_str())],
                "qemu-aarch64 (/usr/bin/qemu-aarch64-static, flags P) lacks the F flag",
            ),
            (
                vec![("aarch64", off.as_str())],
                "the host's registration aarch64 is disabled",
            ),
        ] {
            let host = fake_binfmt(&entries);
            let m = msg(arm(found(), false, (6, 18), host.path()));
            assert!(m.contains(expect), "{m}");
        }

        let unmounted = tempfile::tempdir().unwrap();
        let m = msg(arm(found(), false, (6, 18), unmounted.path()));
        assert!(m.contains("binfmt_misc is not mounted at"), "{m}");

        // No interpreter either: the fix installs it first ...
        let m = msg(arm(missing(), true, (6, 1), empty.path()));
        assert!(
            m.ends_with(
                "fix: sudo apt-get install qemu-user-static && \
                 sudo pookie-ns binfmt register --arch aarch64"
            ),
            "{m}"
        );
        // ... and where private instances would work, only the package is missing.
        let e = arm(missing(), true, (6, 18), empty.path()).unwrap_err();
        assert!(matches!(e, BinfmtError::NoInterpreter { .. }), "{e}");
        assert!(e
            .to_string()
            .contains("sudo apt-get install qemu-user-static"));
    }

    #[test]
    fn a_broken_qemu_dir_is_reported_whatever_the_host_has() {
        let d = tempfile::tempdir().unwrap();
        let e = choose(Arch::Riscv64, Some(d.path()), false).unwrap_err();
        assert!(matches!(e, BinfmtError::NoInterpreter { .. }), "{e}");
        assert!(e.to_string().contains("correct qemu_dir"), "{e}");
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
