//! Running mmdebstrap: natively, through the host's binfmt_misc, or in a helper inside
//! pookie-ns's user namespace with a private binfmt_misc instance; signals passed on to its
//! process group; and what its log says about a failed fetch.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::stage::{mkdir, Output};
use crate::arch::Arch;
use crate::error::{Error, Result};
use crate::recipe::Recipe;
use crate::userns::{self, IdMap};

/// Runs mmdebstrap with `args` (under the emulation the build needs), its output in `log`,
/// behind a spinner; its exit code.
/// How mmdebstrap gets to run the binaries of the arch it builds, as `crate::binfmt`'s policy
/// decided it.
pub(super) enum Emulation {
    Native,
    /// Inside pookie-ns's own user namespace, with a private binfmt_misc instance serving this
    /// interpreter (Linux >= 6.7). The host's binfmt_misc is neither needed nor changed.
    Private(PathBuf),
    /// The host's registration: one that was there, or one root made for the command (taken
    /// back when its `binfmt::CommandScope` ends).
    Host,
}

#[allow(clippy::too_many_arguments)]
pub(super) fn run_mmdebstrap(
    recipe: &Recipe,
    arch: Arch,
    emulation: &Emulation,
    tmp: &Path,
    map: &IdMap,
    args: &[String],
    log: &Path,
    out: Output,
) -> Result<i32> {
    tracing::debug!(command = %format!("mmdebstrap {}", args.join(" ")), "building base OS");
    let spinner = crate::progress::spinner(
        format!(
            "building {} ({} {}, {arch}) with mmdebstrap{}",
            recipe.name,
            recipe.spec.distribution,
            recipe.spec.suite,
            if arch.is_native() {
                ""
            } else {
                " under QEMU (several minutes)"
            }
        ),
        !out.bars,
    );
    let log_file = std::fs::File::create(log).map_err(|e| Error::io("create", log, e))?;
    let code = match emulation {
        Emulation::Private(interpreter) => {
            let binfmt_dir = tmp.join("binfmt_misc");
            if !binfmt_dir.exists() {
                mkdir(&binfmt_dir)?;
            }
            let child = userns::spawn(map, |_| {
                mmdebstrap_with_private_binfmt(arch, interpreter, &binfmt_dir, args, &log_file)
            })?;
            // The spinner's thread starts only now: nothing is forked from this process while
            // it runs.
            spinner.tick();
            child.wait()
        }
        Emulation::Native | Emulation::Host => {
            let ran = mmdebstrap_to_end(args, &log_file, || spinner.tick());
            let _ = crate::process::default_interrupts();
            match ran {
                Ok((_, Some(sig))) => {
                    spinner.finish();
                    eprintln!("pookie-ns: {sig}: mmdebstrap stopped, base OS not built");
                    // Dying of the signal runs no destructor: a registration made for this
                    // command is taken back first.
                    crate::binfmt::take_back_now();
                    crate::process::die_of(sig)
                }
                Ok((code, None)) => Ok(code),
                Err(e) => Err(e),
            }
        }
    };
    // The ticker thread ends here, before anything else forks.
    spinner.finish();
    code
}

/// Whether mmdebstrap's log shows apt failing to fetch an index (not a package, a script or a
/// missing mirror): the case a build without the update sources may get past.
pub(super) fn index_fetch_failed(log: &Path) -> bool {
    std::fs::read_to_string(log).is_ok_and(|text| {
        text.contains("Some index files failed to download")
            || text
                .lines()
                .any(|l| l.starts_with("E: Failed to fetch") && l.contains("/dists/"))
    })
}

/// The first line of mmdebstrap's log that shows apt failing to fetch from the mirror (an
/// index, a package, the Release file) or to reach it, if any: worth one more try.
pub(super) fn fetch_failure(log: &Path) -> Option<String> {
    let text = std::fs::read_to_string(log).ok()?;
    let line = text.lines().find(|l| {
        l.starts_with("E: Failed to fetch")
            || l.starts_with("E: Unable to fetch")
            || (l.starts_with("E: The repository") && l.contains("does not have a Release file"))
            || l.contains("Some index files failed to download")
            || l.contains("Temporary failure resolving")
            || l.contains("Could not connect to")
    })?;
    let line = line.trim();
    Some(match line.char_indices().nth(300) {
        Some((at, _)) => format!("{}...", &line[..at]),
        None => line.to_string(),
    })
}

/// `mmdebstrap ARGS` with its output going to the log.
fn mmdebstrap_command(args: &[String], log: &std::fs::File) -> Result<Command> {
    let dup = |f: &std::fs::File| {
        f.try_clone()
            .map_err(|e| Error::io("dup", "the mmdebstrap log", e))
    };
    let mut c = Command::new("mmdebstrap");
    c.args(args)
        .stdin(Stdio::null())
        .stdout(dup(log)?)
        .stderr(dup(log)?);
    // A SIGINT or SIGTERM to pookie-ns is passed on to mmdebstrap's whole process group
    // (mmdebstrap_to_end); when its parent is killed outright (SIGKILL), mmdebstrap's top process
    // gets a SIGTERM at least, which ends it outside the phases where it ignores signals.
    crate::sys::set_parent_death_signal_of(&mut c, nix::sys::signal::Signal::SIGTERM);
    Ok(c)
}

/// A process's exit status as a shell reports it (128 + N when killed by signal N).
fn exit_code(status: &std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

/// In the helper process, as uid 0 of pookie-ns's user namespace: a mount namespace of its own,
/// a private binfmt_misc instance at `binfmt_dir` with `arch` registered, then mmdebstrap.
///
/// The kernel's `load_binfmt_misc()` (fs/binfmt_misc.c, Linux 6.7) walks up from the caller's
/// user namespace to the nearest one that mounted an instance, so mmdebstrap and the
/// namespaces it creates itself run foreign binaries through this one. The instance dies with
/// its last mount, i.e. when this process and its mount namespace end.
fn mmdebstrap_with_private_binfmt(
    arch: Arch,
    interpreter: &Path,
    binfmt_dir: &Path,
    args: &[String],
    log: &std::fs::File,
) -> Result<i32> {
    use crate::syscall::{Kernel, Syscall};
    Kernel.unshare(nix::sched::CloneFlags::CLONE_NEWNS)?;
    // Nothing mounted from here on may propagate back into the caller's namespace.
    Kernel.make_mounts_private()?;
    crate::binfmt::setup_private(&Kernel, binfmt_dir, &[(arch, interpreter.to_path_buf())])?;
    // Fail early, and in pookie-ns's words, if the instance does not serve the arch (mmdebstrap
    // skips its own check for the extract variant).
    let check = Command::new("arch-test")
        .arg(arch.debian())
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::io("run", "arch-test", e))?;
    if !check.status.success() {
        return Err(Error::usage(format!(
            "the private binfmt_misc instance at {} does not make {arch} binaries runnable \
             (`arch-test {}`: {})",
            binfmt_dir.display(),
            arch.debian(),
            String::from_utf8_lossy(&check.stdout).trim()
        )));
    }
    // pookie-ns dying (SIGKILL included) ends this helper with SIGTERM, which stops mmdebstrap
    // as a signal to pookie-ns itself would (not SIGKILL, which would leave mmdebstrap on).
    crate::sys::set_parent_death_signal(nix::sys::signal::Signal::SIGTERM)?;
    let (code, sig) = mmdebstrap_to_end(args, log, || {})?;
    Ok(sig.map_or(code, |s| 128 + s as i32))
}

/// Runs mmdebstrap to its end in a process group of its own, and passes on to that whole group
/// a SIGINT or SIGTERM this process gets meanwhile: mmdebstrap's top process ignores them while
/// its workers run (it expects a terminal's Ctrl-C, which reaches its whole group), so a signal
/// to pookie-ns alone would leave it building on. `started` runs once it is under way. Returns
/// its exit status, and the signal passed on, if any; the caller gives the signals their default
/// dispositions back.
fn mmdebstrap_to_end(
    args: &[String],
    log: &std::fs::File,
    started: impl FnOnce(),
) -> Result<(i32, Option<nix::sys::signal::Signal>)> {
    crate::process::catch_interrupts()?;
    let mut cmd = mmdebstrap_command(args, log)?;
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut child = cmd.spawn().map_err(|e| Error::io("run", "mmdebstrap", e))?;
    started();
    let group = nix::unistd::Pid::from_raw(-(child.id() as i32));
    let mut passed_on = None;
    loop {
        if let Some(status) = child
            .try_wait()
            .map_err(|e| Error::io("wait for", "mmdebstrap", e))?
        {
            return Ok((exit_code(&status), passed_on));
        }
        if let (None, Some(sig)) = (passed_on, crate::process::interrupted()) {
            tracing::debug!(signal = %sig, "passing the signal on to mmdebstrap's process group");
            let _ = nix::sys::signal::kill(group, sig);
            passed_on = Some(sig);
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_fetch_is_worth_one_more_try_and_is_named() {
        let d = tempfile::tempdir().unwrap();
        let log = d.path().join("mmdebstrap.log");
        let check = |text: &str| {
            std::fs::write(&log, text).unwrap();
            fetch_failure(&log)
        };
        // The issue's: a mirror mid-sync answers 404 for packages its index lists.
        let pkg = "E: Failed to fetch http://deb.debian.org/debian-security/pool/updates/main/k/\
                   krb5/libkrb5support0_1.18.3-6+deb11u8_arm64.deb  404  Not Found [IP: 1.2.3.4 80]";
        assert_eq!(
            check(&format!(
                "Get:1 ...\n{pkg}\nE: Unable to fetch some archives\n"
            ))
            .as_deref(),
            Some(pkg)
        );
        assert!(check(
            "E: The repository 'http://127.0.0.1:8080/debian nosuch Release' does not have a \
             Release file.\n"
        )
        .is_some());
        assert!(
            check("W: Failed to fetch x  Temporary failure resolving 'deb.debian.org'\n").is_some()
        );
        // Not the mirror's fault: no second try.
        assert_eq!(check("E: mmdebstrap failed to run\n"), None);
        assert_eq!(check("E: Unable to locate package python3.99-dev\n"), None);
        assert_eq!(fetch_failure(&d.path().join("missing.log")), None);
        // A long line is cut.
        let long = format!("E: Failed to fetch http://m/{}", "x".repeat(1000));
        assert!(check(&long).unwrap().len() < 320);
    }

    #[test]
    fn an_index_fetch_failure_is_told_from_other_failures() {
        let d = tempfile::tempdir().unwrap();
        let log = d.path().join("mmdebstrap.log");
        let check = |text: &str| {
            std::fs::write(&log, text).unwrap();
            index_fetch_failed(&log)
        };
        assert!(check(
            "E: Failed to fetch http://deb.debian.org/debian-security/dists/bookworm-security/\
             main/binary-armhf/Packages.xz  File has unexpected size (334084 != 354640). Mirror \
             sync in progress?\nE: Some index files failed to download.\n"
        ));
        assert!(!check(
            "E: Failed to fetch http://m/debian/pool/main/p/python3.11/x.deb\n"
        ));
        assert!(!check("E: mmdebstrap failed to run\n"));
        assert!(!index_fetch_failed(&d.path().join("missing.log")));
    }
}
