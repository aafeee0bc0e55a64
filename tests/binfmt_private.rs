//! Private binfmt_misc instances, for real: the test binary re-executes itself under
//! `unshare --user --map-root-user --mount` (util-linux), and there mounts a binfmt_misc instance
//! on a temporary directory with `binfmt::setup_private`, registers aarch64 and runs an arm64
//! busybox through QEMU. The host's `/proc/sys/fs/binfmt_misc` must be the same before and after.
//!
//! Needs: Linux >= 6.7, `unshare`, `qemu-user-static`, and an arm64 busybox at the path in
//! `POOKIE_NS_TEST_ARM64_BUSYBOX`, by default /var/cache/pookie-ns-test/busybox-arm64 (where
//! scripts/setup-host leaves one). Missing prerequisites skip the test locally and
//! fail it under `CI=true`. Works as root and as an unprivileged user.

mod common;

use pookie_ns::syscall::{Kernel, Syscall};
use std::path::{Path, PathBuf};
use std::process::Command;

use pookie_ns::arch::Arch;
use pookie_ns::binfmt::{self, BinfmtError};

/// Set in the re-executed test binary, which runs inside the new namespaces.
const CHILD_ENV: &str = "POOKIE_NS_TEST_BINFMT_CHILD";
/// Printed by the child when every check passed, so that a child that did nothing cannot pass.
const CHILD_OK: &str = "binfmt-private-child: all checks passed";
const BUSYBOX_ENV: &str = "POOKIE_NS_TEST_ARM64_BUSYBOX";

use common::require;

/// Names and descriptions of the host's binfmt_misc entries.
fn host_entries() -> Vec<(String, String)> {
    common::host_binfmt_entries()
}

fn which(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
}

/// The busybox scripts/setup-host caches, unless the environment names another.
const DEFAULT_BUSYBOX: &str = "/var/cache/pookie-ns-test/busybox-arm64";

fn arm64_busybox() -> Option<PathBuf> {
    std::env::var_os(BUSYBOX_ENV)
        .map(PathBuf::from)
        .or_else(|| Some(PathBuf::from(DEFAULT_BUSYBOX)))
        .filter(|p| p.is_file())
}

#[test]
fn private_instance_runs_an_arm64_busybox() {
    if std::env::var_os(CHILD_ENV).is_some() {
        inside_the_namespaces();
        return;
    }
    if !require(
        pookie_ns::sys::kernel_version() >= binfmt::PRIVATE_MIN_KERNEL,
        &format!(
            "Linux {} has no private binfmt_misc instances (6.7+)",
            pookie_ns::sys::kernel_release()
        ),
    ) || !require(which("unshare"), "unshare (util-linux) in PATH")
        || !require(
            binfmt::find_interpreter(Arch::Arm64, None).is_ok(),
            "qemu-aarch64-static (apt-get install qemu-user-static)",
        )
        || !require(
            arm64_busybox().is_some(),
            &format!("an arm64 busybox at ${BUSYBOX_ENV} (see scripts/setup-host)"),
        )
    {
        return;
    }

    let before = host_entries();
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("unshare")
        .args(["--user", "--map-root-user", "--mount", "--"])
        .arg(&exe)
        .args([
            "--exact",
            "private_instance_runs_an_arm64_busybox",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains(CHILD_OK),
        "the child in the new namespaces failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
    assert_eq!(host_entries(), before, "the host's binfmt_misc changed");
}

/// Runs `program args` and returns its stdout, asserting success.
fn run(program: &Path, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run {}: {e}", program.display());
        });
    assert!(
        out.status.success(),
        "{} {args:?}: {}\n{}",
        program.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The child: root of a new user namespace, in a new mount namespace.
fn inside_the_namespaces() {
    let busybox = arm64_busybox().expect("the parent checked the busybox");
    let interpreter = binfmt::find_interpreter(Arch::Arm64, None).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let mnt = tmp.path().join("binfmt_misc");
    std::fs::create_dir(&mnt).unwrap();
    let bin = tmp.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let bb = bin.join("busybox");
    std::fs::copy(&busybox, &bb).unwrap();
    std::os::unix::fs::symlink("busybox", bin.join("uname")).unwrap();

    // Until it mounts its own instance, a user namespace uses its parent's (the host's); from
    // the mount on, only the private entries count.
    binfmt::setup_private(&Kernel, &mnt, &[(Arch::Arm64, interpreter.clone())])
        .unwrap_or_else(|e| panic!("setup_private: {e}"));

    // The instance holds exactly our entry, as we wrote it.
    assert_eq!(binfmt::list_entries(&mnt), ["qemu-aarch64"]);
    let r = binfmt::read_entry(&mnt, Arch::Arm64).unwrap().unwrap();
    assert!(r.enabled, "{r:?}");
    assert_eq!(r.interpreter, interpreter);
    assert!(
        r.has_flag('F') && r.has_flag('P') && !r.has_flag('C'),
        "{r:?}"
    );
    assert!(r.serves(Arch::Arm64), "{r:?}");
    assert!(binfmt::find_registration(&mnt, Arch::Arm64).is_some());
    assert!(binfmt::read_entry(&mnt, Arch::Riscv64).unwrap().is_none());

    // The arm64 busybox runs, and QEMU reports the target's machine.
    assert_eq!(run(&bb, &["uname", "-m"]), "aarch64\n");
    // P: the applet is chosen by argv[0] (a symlink named uname), as natively.
    assert_eq!(run(&bin.join("uname"), &["-m"]), "aarch64\n");
    // Arguments arrive intact (no shift by the preserved argv[0]).
    assert_eq!(
        run(&bb, &["sh", "-c", "echo \"$0|$1\"", "zero", "one two"]),
        "zero|one two\n"
    );

    // Idempotent: the same registration again changes nothing.
    binfmt::register(&mnt, Arch::Arm64, &interpreter, binfmt::PRIVATE_FLAGS).unwrap();
    assert_eq!(binfmt::list_entries(&mnt), ["qemu-aarch64"]);
    // Different flags: the entry is replaced, not duplicated.
    binfmt::register(&mnt, Arch::Arm64, &interpreter, "F").unwrap();
    let r = binfmt::read_entry(&mnt, Arch::Arm64).unwrap().unwrap();
    assert_eq!(r.flags, "F");
    assert_eq!(run(&bb, &["uname", "-m"]), "aarch64\n");

    // The kernel's refusals come back with advice.
    let e = binfmt::register(
        &mnt,
        Arch::Armhf,
        Path::new("/nonexistent/qemu-arm-static"),
        "F",
    )
    .unwrap_err();
    assert!(
        matches!(e, BinfmtError::Sys { .. }) && e.to_string().contains("does not exist"),
        "{e}"
    );
    let e = binfmt::register(&mnt, Arch::Amd64, &interpreter, "F").unwrap_err();
    assert!(matches!(e, BinfmtError::Native(Arch::Amd64)), "{e}");

    // Unregistering removes it, and the binary is foreign again: the empty private instance
    // hides whatever the host has registered.
    assert!(binfmt::unregister(&mnt, Arch::Arm64).unwrap());
    assert!(!binfmt::unregister(&mnt, Arch::Arm64).unwrap());
    assert!(binfmt::list_entries(&mnt).is_empty());
    let err = Command::new(&bb).arg("true").output().unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENOEXEC), "{err}");

    Kernel.umount_detach(&mnt).unwrap();

    // The host-wide functions, pointed at a private instance: mounted over
    // /proc/sys/fs/binfmt_misc in this mount namespace only, it stands in for the host's.
    binfmt::setup_private(&Kernel, Path::new(binfmt::HOST_DIR), &[]).unwrap();
    let shown = |v: Vec<String>| v.join("\n");
    let msgs = shown(binfmt::register_host(&[Arch::Arm64, Arch::Amd64], None).unwrap());
    assert_eq!(
        msgs,
        format!(
            "registered qemu-aarch64 ({}, flags F)\nx86_64 runs natively on this host: nothing to \
             register",
            interpreter.display()
        )
    );
    let msgs = shown(binfmt::register_host(&[Arch::Arm64], None).unwrap());
    assert_eq!(
        msgs,
        format!(
            "qemu-aarch64 already registered ({}, flags F)",
            interpreter.display()
        )
    );
    assert_eq!(run(&bb, &["uname", "-m"]), "aarch64\n");
    match binfmt::choose(Arch::Arm64, None, false) {
        Ok(binfmt::Strategy::Host { entry }) => assert_eq!(entry.name, "qemu-aarch64"),
        other => panic!("expected the (stand-in) host registration: {other:?}"),
    }
    // An entry without F is replaced by one with F.
    binfmt::register(Path::new(binfmt::HOST_DIR), Arch::Arm64, &interpreter, "P").unwrap();
    assert!(binfmt::choose(Arch::Arm64, None, false).is_err());
    let msgs = shown(binfmt::register_host(&[Arch::Arm64], None).unwrap());
    assert!(
        msgs.starts_with("registered qemu-aarch64") && msgs.contains("replacing"),
        "{msgs}"
    );
    let msgs = shown(binfmt::unregister_host(&[Arch::Arm64, Arch::Riscv64]).unwrap());
    assert_eq!(
        msgs,
        format!(
            "unregistered qemu-aarch64 ({})\nqemu-riscv64 was not registered",
            interpreter.display()
        )
    );
    assert!(binfmt::list_entries(Path::new(binfmt::HOST_DIR)).is_empty());
    registered_for_the_command_only(&bb, tmp.path());
    Kernel.umount_detach(Path::new(binfmt::HOST_DIR)).unwrap();

    println!("{CHILD_OK}");
}

/// The one policy's case for root where nothing serves (private instances disabled, the
/// (stand-in) host without an entry): `emulation_for` registers QEMU for the time of the
/// command, and the command's scope takes it back when it ends, on a panic too; without a scope
/// nothing is registered.
fn registered_for_the_command_only(bb: &Path, dir: &Path) {
    let host = Path::new(binfmt::HOST_DIR);
    let config = pookie_ns::config::Config {
        config_dir: dir.to_path_buf(),
        work_dir: dir.to_path_buf(),
        id_map: Default::default(),
        qemu_dir: None,
        binfmt: pookie_ns::config::BinfmtChoice::Host,
        max_archive_entries: pookie_ns::config::DEFAULT_MAX_ARCHIVE_ENTRIES,
        mirror: None,
        image_mirror: None,
        refresh_interval: std::time::Duration::from_secs(3600),
    };
    let e = binfmt::emulation_for(&config, Arch::Arm64).unwrap_err();
    assert!(matches!(e, BinfmtError::NoCommandScope(Arch::Arm64)), "{e}");
    assert!(binfmt::list_entries(host).is_empty());
    {
        let _scope = binfmt::CommandScope::enter();
        let inner = binfmt::CommandScope::enter();
        // Served by the host's (stand-in) binfmt_misc: nothing for a private instance.
        assert!(binfmt::emulation_for(&config, Arch::Arm64)
            .unwrap()
            .is_empty());
        assert_eq!(binfmt::list_entries(host), ["qemu-aarch64"]);
        let r = binfmt::read_entry(host, Arch::Arm64).unwrap().unwrap();
        assert_eq!(r.flags, binfmt::HOST_FLAGS);
        assert_eq!(run(bb, &["uname", "-m"]), "aarch64\n");
        // Asked again, the registration is there and serves.
        assert!(binfmt::emulation_for(&config, Arch::Arm64)
            .unwrap()
            .is_empty());
        drop(inner);
        assert_eq!(
            binfmt::list_entries(host),
            ["qemu-aarch64"],
            "an inner scope keeps it"
        );
    }
    assert!(
        binfmt::list_entries(host).is_empty(),
        "the scope took it back"
    );
    let panicked = std::panic::catch_unwind(|| {
        let _scope = binfmt::CommandScope::enter();
        assert!(binfmt::emulation_for(&config, Arch::Arm64)
            .unwrap()
            .is_empty());
        assert_eq!(binfmt::list_entries(host), ["qemu-aarch64"]);
        panic!("the command fails half-way");
    });
    assert!(panicked.is_err());
    assert!(
        binfmt::list_entries(host).is_empty(),
        "taken back on the panic's unwind"
    );
    // An entry of its own name that does not serve (no F) is never replaced for a command.
    let interpreter = binfmt::find_interpreter(Arch::Arm64, None).unwrap();
    binfmt::register(host, Arch::Arm64, &interpreter, "P").unwrap();
    {
        let _scope = binfmt::CommandScope::enter();
        let e = binfmt::emulation_for(&config, Arch::Arm64).unwrap_err();
        assert!(matches!(e, BinfmtError::Unavailable { .. }), "{e}");
    }
    assert_eq!(
        binfmt::read_entry(host, Arch::Arm64)
            .unwrap()
            .unwrap()
            .flags,
        "P"
    );
    assert!(binfmt::unregister(host, Arch::Arm64).unwrap());
}

/// In the host's user namespace `setup_private` must refuse before mounting anything: there a
/// binfmt_misc mount is the host's instance and a registration would change the machine.
#[test]
fn setup_private_refuses_the_host_user_namespace() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return;
    }
    let ns = std::fs::metadata("/proc/self/ns/user").unwrap();
    if !common::require(
        std::os::unix::fs::MetadataExt::ino(&ns) == 0xEFFF_FFFD,
        "the test runs in the initial user namespace (not in a user namespace already)",
    ) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let e = binfmt::setup_private(&Kernel, tmp.path(), &[]).unwrap_err();
    let mounted = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(tmp.path().to_str().unwrap()));
    if mounted {
        // Should never happen; do not leave the host's instance mounted on a temp dir.
        let _ = Kernel.umount_detach(tmp.path());
    }
    assert!(
        !mounted,
        "setup_private mounted in the host's user namespace"
    );
    assert!(matches!(e, BinfmtError::NotInUserNamespace { .. }), "{e}");
}

/// Registering where binfmt_misc is not mounted says so, and creates no file there.
#[test]
fn registering_in_a_plain_directory_says_it_is_not_mounted() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let e = binfmt::register(
        tmp.path(),
        Arch::Arm64,
        Path::new("/usr/bin/qemu-aarch64-static"),
        "F",
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("binfmt_misc is not mounted at"),
        "{e}"
    );
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
    assert!(!binfmt::unregister(tmp.path(), Arch::Arm64).unwrap());
}

/// With private instances disabled, `choose` takes the host's registration if it is usable,
/// else root registers for the time of a command, else it names the kernel, the reason and the
/// fix. Reads the host's state only.
#[test]
fn host_fallback_names_the_fix() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return;
    }
    let before = host_entries();
    match binfmt::choose(Arch::Arm64, None, false) {
        Ok(binfmt::Strategy::Host { entry }) => {
            assert!(entry.enabled && entry.has_flag('F'), "{entry:?}");
            assert!(entry.serves(Arch::Arm64));
        }
        Ok(binfmt::Strategy::ForCommand { interpreter }) => {
            assert!(nix::unistd::geteuid().is_root(), "only root registers");
            assert!(
                interpreter.ends_with("qemu-aarch64-static"),
                "{interpreter:?}"
            );
            assert!(
                !Path::new(binfmt::HOST_DIR).join("qemu-aarch64").exists(),
                "never over an entry of its own name"
            );
        }
        Ok(other) => panic!("private instances were disabled: {other:?}"),
        Err(e) => {
            let m = e.to_string();
            assert!(matches!(e, BinfmtError::Unavailable { .. }) && e.is_input_error());
            assert!(
                m.contains(&format!("Linux {}", pookie_ns::sys::kernel_release())),
                "{m}"
            );
            assert!(m.contains("disabled (POOKIE_NS_BINFMT=host"), "{m}");
            // Root is told the command itself, a user to run it through sudo.
            let fix = if nix::unistd::geteuid().is_root() {
                "fix: pookie-ns binfmt register --arch aarch64"
            } else {
                "sudo pookie-ns binfmt register --arch aarch64"
            };
            assert!(m.contains(fix), "{m}");
        }
    }
    assert_eq!(host_entries(), before);
}
