//! QEMU user-mode emulation through binfmt_misc: the magic/mask table of each architecture,
//! finding a static `qemu-<arch>-static`, registering it, and deciding once per run how a
//! foreign architecture gets emulated.
//!
//! One policy (`policy`, applied by [`choose`] and [`emulation_for`]) serves `run`, `build` and
//! mmdebstrap alike:
//! 1. a **private** binfmt_misc instance in the sandbox's own user namespace (Linux ≥ 6.7): no
//!    root, no global change. [`setup_private`] mounts it under the new root before `pivot_root`,
//!    because an instance dies with its last mount, and registers with `F`, so the interpreter is
//!    opened from the host's filesystem at registration time and need not exist in the rootfs;
//! 2. an existing, enabled host registration of that arch with the `F` flag;
//! 3. as root, a host-wide registration for the time of the command, taken back when its
//!    [`CommandScope`] ends;
//! 4. otherwise an error naming the kernel, the reason and the one command that fixes it
//!    ([`register_host`] behind `sudo pookie-ns binfmt register --arch ARCH`).
//!
//! How the kernel matches (fs/binfmt_misc.c, `search_binfmt_handler`): a file is handled by an
//! entry when `((header[i] ^ magic[i]) & mask[i]) == 0` for every byte, i.e. when
//! `header & mask == magic & mask`. The kernel keeps the magic as written (checked on 6.18: a
//! magic byte 0x01 under mask 0xfe is shown as `01`), so the comparison masks both sides.
//!
//! The files: `entry` (each arch's magic/mask and ELF headers), `interpreter` (finding and
//! checking QEMU), `registration` (reading the kernel's entries), `register` (writing and removing
//! entries), `private` (the private instance of a user namespace), `host` (host-wide registration,
//! root), `temporary` (root's registrations for one command), `policy` (the decision as a pure
//! function), `error` (`BinfmtError` and its hints); this file gathers the facts and applies it.

use std::path::{Path, PathBuf};

use crate::arch::Arch;
use crate::config::{BinfmtChoice, Config};
use nix::mount::MsFlags;

use crate::sys::{self, SysError};
use crate::syscall::Syscall;

mod entry;
mod error;
mod host;
mod interpreter;
mod policy;
mod private;
mod register;
mod registration;
mod temporary;

pub use entry::{elf_header, entry, entry_name, Entry};
pub use error::BinfmtError;
pub use host::{register_host, unregister_host, HOST_FLAGS};
pub use interpreter::find_interpreter;
pub use private::{setup_private, PRIVATE_FLAGS};
pub use register::{register, register_line, unregister};
pub use registration::{
    find_registration, list_entries, parse_registration, read_entry, Registration,
};
pub use temporary::{take_back_now, CommandScope};

use error::Result;
use policy::{Decision, Facts, HostState};
use registration::entries_serving;

/// Where the host's binfmt_misc lives.
pub const HOST_DIR: &str = "/proc/sys/fs/binfmt_misc";

/// The first kernel that lets a user namespace mount its own binfmt_misc instance (Linux 6.7,
/// "binfmt_misc: enable sandboxed mounts").
pub const PRIVATE_MIN_KERNEL: (u32, u32) = (6, 7);

/// Mounts a binfmt_misc instance on `at`: the host's ([`HOST_DIR`]), or a user namespace's own
/// ([`setup_private`]). nosuid, nodev, noexec: nothing in binfmt_misc is meant to be executed or
/// opened as a device.
fn mount_instance(os: &dyn Syscall, at: &Path) -> std::result::Result<(), SysError> {
    os.mount(
        Some("binfmt_misc"),
        at,
        Some("binfmt_misc"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None,
    )
}

/// How a run on a foreign arch gets its emulation.
#[derive(Debug, Clone)]
pub enum Strategy {
    /// Register `interpreter` in a private binfmt_misc instance inside the sandbox.
    Private { interpreter: PathBuf },
    /// The host has a usable registration (enabled, flag `F`): nothing to do.
    Host { entry: Registration },
    /// Root, and nothing else serves: register `interpreter` host-wide for the time of the
    /// command ([`CommandScope`]).
    ForCommand { interpreter: PathBuf },
}

/// What a run on `arch` needs for emulation: nothing for the host's arch; otherwise a private
/// binfmt_misc registration (kernel 6.7+), or nothing when the host's registration serves — one
/// root makes now for the time of the command if need be (inside a [`CommandScope`]). Decided
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
        Strategy::ForCommand { interpreter } => {
            temporary::register_for_command(arch, &interpreter)?;
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
    let root = nix::unistd::geteuid().is_root();
    let strategy = choose_in(
        arch,
        interpreter,
        allow_private,
        root,
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
        } if root => BinfmtError::Unavailable {
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

/// What the host's binfmt_misc in `host_dir` offers for `arch`.
fn host_state(host_dir: &Path, arch: Arch) -> HostState {
    let on_host = entries_serving(host_dir, arch);
    match on_host.iter().find(|r| r.enabled && r.has_flag('F')) {
        Some(r) => HostState::Usable(r.clone()),
        None => HostState::Unusable {
            own_name_taken: host_dir.join(entry_name(arch)).exists(),
        },
    }
}

/// The decision ([`policy::decide`]), given what [`find_interpreter`] found, the kernel, the
/// caller and the host's binfmt_misc.
fn choose_in(
    arch: Arch,
    interpreter: Result<PathBuf>,
    allow_private: bool,
    root: bool,
    kernel: (u32, u32),
    release: &str,
    host_dir: &Path,
) -> Result<Strategy> {
    let facts = Facts {
        kernel_has_private: kernel >= PRIVATE_MIN_KERNEL,
        allow_private,
        root,
        qemu_found: interpreter.is_ok(),
    };
    match (
        policy::decide(facts, || host_state(host_dir, arch)),
        interpreter,
    ) {
        (Decision::Private, Ok(interpreter)) => Ok(Strategy::Private { interpreter }),
        (Decision::Host(entry), _) => Ok(Strategy::Host { entry }),
        (Decision::RegisterForCommand, Ok(interpreter)) => Ok(Strategy::ForCommand { interpreter }),
        // Private instances would work; only the package is missing: say that, not sudo.
        (Decision::NoInterpreter, Err(e)) => Err(e),
        (_, interpreter) => Err(unavailable(
            arch,
            interpreter.is_err(),
            allow_private,
            (kernel, release),
            host_dir,
        )),
    }
}

/// The error when nothing serves `arch`: the kernel, why neither a private instance nor the
/// host's entries serve, and the one command that fixes it.
fn unavailable(
    arch: Arch,
    interpreter_missing: bool,
    allow_private: bool,
    ((major, minor), release): ((u32, u32), &str),
    host_dir: &Path,
) -> BinfmtError {
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
    let on_host = entries_serving(host_dir, arch);
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
    BinfmtError::Unavailable {
        arch,
        kernel: release.to_string(),
        reason: format!("{why_private}, and {why_host}"),
        fix,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What Linux 6.18 prints for a private registration (captured on the development host).
    pub(super) const KERNEL_TEXT: &str =
        "enabled\ninterpreter /usr/bin/qemu-aarch64-static\nflags: PF\n\
         offset 0\nmagic 7f454c460201010000000000000000000200b700\n\
         mask ffffffffffffff00fffffffffffffffffeffffff\n";

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
            choose_in(
                Arch::Arm64,
                interp,
                allow,
                false,
                kernel,
                "6.x",
                host.path(),
            )
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
            choose_in(
                Arch::Arm64,
                interp,
                allow,
                false,
                kernel,
                "6.1.0-18-amd64",
                host,
            )
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
    fn root_registers_for_the_command_only_where_nothing_serves_and_nothing_is_replaced() {
        let root = |interp, allow, kernel, host: &Path| {
            choose_in(
                Arch::Arm64,
                interp,
                allow,
                true,
                kernel,
                "6.1.0-18-amd64",
                host,
            )
        };
        let empty = fake_binfmt(&[]);
        // An old kernel, or private instances disabled: root registers for the command.
        for (allow, kernel) in [(true, (6, 1)), (false, (6, 18))] {
            let s = root(found(), allow, kernel, empty.path());
            assert!(
                matches!(&s, Ok(Strategy::ForCommand { interpreter }) if interpreter == Path::new(QEMU)),
                "{s:?}"
            );
        }
        // A usable host entry serves root as it is; a private instance comes first.
        let host = fake_binfmt(&[("qemu-aarch64", KERNEL_TEXT)]);
        let s = root(found(), true, (6, 1), host.path());
        assert!(matches!(&s, Ok(Strategy::Host { .. })), "{s:?}");
        let s = root(found(), true, (6, 7), empty.path());
        assert!(matches!(&s, Ok(Strategy::Private { .. })), "{s:?}");
        // An entry of pookie-ns's own name that does not serve is not replaced for a command,
        // and without QEMU there is nothing to register: the error names the fix.
        let no_f = KERNEL_TEXT.replace("flags: PF", "flags: P");
        let taken = fake_binfmt(&[("qemu-aarch64", no_f.as_str())]);
        for (interp, host) in [(found(), taken.path()), (missing(), empty.path())] {
            let e = root(interp, true, (6, 1), host).unwrap_err();
            assert!(matches!(e, BinfmtError::Unavailable { .. }), "{e}");
            assert!(
                e.to_string()
                    .contains("pookie-ns binfmt register --arch aarch64"),
                "{e}"
            );
        }
    }

    #[test]
    fn a_broken_qemu_dir_is_reported_whatever_the_host_has() {
        let d = tempfile::tempdir().unwrap();
        let e = choose(Arch::Riscv64, Some(d.path()), false).unwrap_err();
        assert!(matches!(e, BinfmtError::NoInterpreter { .. }), "{e}");
        assert!(e.to_string().contains("correct qemu_dir"), "{e}");
    }
}
