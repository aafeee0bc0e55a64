//! Foreign architectures through QEMU in a private binfmt_misc instance: busybox root filesystems
//! of arm64, armhf, ppc64el and s390x, as root and as the two test users, without touching the
//! host's binfmt_misc; the fallback path and its error; a real Debian arm64 base OS.

mod common;

use std::path::Path;

use common::{everyone, fixtures, require, stderr, stdout, Runner, Who, FOREIGN_CACHE};

const FOREIGN: [(&str, &str); 4] = [
    ("arm64", "aarch64"),
    ("armhf", "armv7l"),
    ("ppc64el", "ppc64le"),
    ("s390x", "s390x"),
];

/// Held by the tests that look at or change the host's binfmt_misc.
static HOST_BINFMT: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn host_binfmt_entries() -> Vec<(String, String)> {
    let dir = Path::new("/proc/sys/fs/binfmt_misc");
    let mut v: Vec<(String, String)> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    let text = if name == "register" {
                        String::new()
                    } else {
                        std::fs::read_to_string(e.path()).unwrap_or_default()
                    };
                    (name, text)
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn foreign_busybox_runs_rootless_and_reports_its_machine() {
    let _host = HOST_BINFMT.lock().unwrap_or_else(|e| e.into_inner());
    let before = host_binfmt_entries();
    let f = fixtures();
    for who in everyone() {
        let r = Runner::new(who);
        for (debian, uname) in FOREIGN {
            let Some(archive) = f.foreign(debian) else {
                require(
                    false,
                    &format!("{FOREIGN_CACHE}/busybox-{debian} (scripts/setup-host)"),
                );
                continue;
            };
            let name = format!("bb-{debian}");
            r.ok(&["load-baseos", archive.to_str().unwrap(), "--name", &name]);
            let list: serde_json::Value = serde_json::from_str(&r.ok(&["--json", "list"])).unwrap();
            let meta = list["baseos"]
                .as_array()
                .unwrap()
                .iter()
                .find(|b| b["name"] == name.as_str())
                .unwrap();
            assert_eq!(meta["arch"], debian, "arch detected from the ELF header");
            let out = r.sh_ok(&name, "uname -m; echo ok > /tmp/x; cat /tmp/x");
            assert_eq!(out, format!("{uname}\nok\n"), "{who:?} {debian}");
        }
        let text = r.ok(&["list"]);
        assert!(
            text.contains("private binfmt_misc instance"),
            "{who:?}: {text}"
        );
    }
    assert_eq!(
        host_binfmt_entries(),
        before,
        "the host's binfmt_misc changed"
    );
}

#[test]
fn missing_interpreter_fails_before_anything_is_mounted() {
    // What a missing interpreter leads to depends on the host's registrations.
    let _host = HOST_BINFMT.lock().unwrap_or_else(|e| e.into_inner());
    for who in everyone() {
        let r = Runner::new(who);
        let Some(archive) = fixtures().foreign("arm64") else {
            require(false, "arm64 busybox (scripts/setup-host)");
            return;
        };
        r.ok(&["load-baseos", archive.to_str().unwrap(), "--name", "arm"]);
        r.write_config("qemu_dir = \"/nonexistent/qemu\"\n");
        let out = r.run(&["run", "--baseos", "arm", "--", "uname", "-m"]);
        assert_eq!(out.status.code(), Some(2), "{who:?}");
        let err = stderr(&out);
        assert!(
            err.contains("apt-get install qemu-user-static") && err.contains("/nonexistent/qemu"),
            "{err}"
        );
        assert_eq!(
            std::fs::read_dir(r.store.join("workspaces"))
                .unwrap()
                .count(),
            0
        );
        assert!(
            !r.store.join("instances/stable/arm").exists(),
            "{who:?}: nothing is prepared"
        );
    }
}

/// Forcing the host path (`binfmt = "host"`: what a kernel before 6.7 leaves): with no host
/// entry, root's `run` registers QEMU for the time of the command and takes it back when the
/// command ends, failed or not; a user is told the kernel, the reason and the sudo fix; after
/// `binfmt register` (root, host-wide) runs go through that entry; `unregister` undoes it. One
/// test, so that no other test sees the host registration change.
#[test]
fn host_registration_fallback_and_the_binfmt_command() {
    if !require(
        common::is_root(),
        "host-wide binfmt registration needs root",
    ) {
        return;
    }
    let _host = HOST_BINFMT.lock().unwrap_or_else(|e| e.into_inner());
    // Other test binaries (tests/rootless_e2e.rs, tests/rootless_rootfs.rs) compare the host's
    // listing around their builds: never register while they do.
    let _host_lock = common::host_binfmt_lock();
    let Some(archive) = fixtures().foreign("arm64") else {
        require(false, "arm64 busybox (scripts/setup-host)");
        return;
    };
    let host_entry = Path::new("/proc/sys/fs/binfmt_misc/qemu-aarch64");
    let had_entry = host_entry.exists();
    let r = Runner::new(Who::Root);
    r.ok(&["load-baseos", archive.to_str().unwrap(), "--name", "arm"]);
    r.write_config("binfmt = \"host\"\n");
    if !had_entry {
        let out = r.run(&["run", "--baseos", "arm", "--", "uname", "-m"]);
        assert_eq!(stdout(&out), "aarch64\n", "{}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains("registered qemu-aarch64") && err.contains("for this command"),
            "{err}"
        );
        assert!(
            !err.contains("sudo"),
            "root is never told to use sudo: {err}"
        );
        assert!(
            !host_entry.exists(),
            "the registration outlived the command"
        );
        // A failing command takes it back too.
        let out = r.run(&[
            "run",
            "--baseos",
            "arm",
            "--",
            "sh",
            "-c",
            "uname -m; exit 3",
        ]);
        assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
        assert_eq!(stdout(&out), "aarch64\n");
        assert!(
            !host_entry.exists(),
            "the registration outlived a failed command"
        );
        let text = r.ok(&["list"]);
        assert!(text.contains("for the time of each command"), "{text}");
        assert!(!host_entry.exists(), "list registers nothing");

        // A user cannot register: the error names the kernel, the reason and the sudo fix.
        if require(
            common::user_exists(common::SUB_USER),
            "test user for the unprivileged fallback",
        ) {
            let u = Runner::new(Who::SubUser);
            u.ok(&["load-baseos", archive.to_str().unwrap(), "--name", "arm"]);
            u.write_config("binfmt = \"host\"\n");
            let out = u.run(&["run", "--baseos", "arm", "--", "uname", "-m"]);
            assert_eq!(out.status.code(), Some(2));
            let err = stderr(&out);
            assert!(
                err.contains("sudo pookie-ns binfmt register --arch aarch64"),
                "{err}"
            );
            assert!(err.contains("Linux ") && err.contains("disabled"), "{err}");
            assert!(u.ok(&["list"]).contains("unavailable"));
        }
        r.ok(&["binfmt", "register", "--arch", "arm64"]);
    }
    let again = r.ok(&["binfmt", "register", "--arch", "arm64"]);
    assert!(again.contains("already registered"), "idempotent: {again}");
    let out = r.run(&["run", "--baseos", "arm", "--", "uname", "-m"]);
    assert_eq!(stdout(&out), "aarch64\n", "{}", stderr(&out));
    assert!(
        stderr(&out).contains("host's binfmt_misc registration"),
        "{}",
        stderr(&out)
    );
    if !had_entry {
        let out = r.ok(&["binfmt", "unregister", "--arch", "arm64"]);
        assert!(out.contains("unregistered qemu-aarch64"), "{out}");
        assert!(!host_entry.exists());
    }
}

/// A real Debian bookworm arm64 root filesystem (built once per machine by scripts/setup-host
/// with mmdebstrap under QEMU): its python3 and gcc, rootless.
#[test]
fn debian_arm64_python_and_gcc_run_emulated() {
    let tarball = Path::new(FOREIGN_CACHE).join("debian-bookworm-arm64.tar.zst");
    if !require(
        tarball.exists(),
        &format!("{} (scripts/setup-host)", tarball.display()),
    ) {
        return;
    }
    if !require(
        common::is_root(),
        "the emulation tests run as root (and switch to the test user)",
    ) {
        return;
    }
    let who = Who::SubUser;
    if !require(common::user_exists(common::SUB_USER), "test user") {
        return;
    }
    let r = Runner::new(who);
    r.ok(&[
        "load-baseos",
        tarball.to_str().unwrap(),
        "--name",
        "debian-bookworm",
    ]);
    let out = r.ok(&[
        "run",
        "--baseos",
        "debian-bookworm",
        "--",
        "python3",
        "-c",
        "import platform, sys; print(platform.machine(), sys.version_info[:2])",
    ]);
    assert_eq!(out, "aarch64 (3, 11)\n");
    let out = r.ok(&[
        "run", "--baseos", "debian-bookworm", "--", "sh", "-c",
        "printf '%s\\n' '#include <stdio.h>' 'int main(void){printf(\"%d\\n\", 6*7);return 0;}' > /tmp/a.c \
         && gcc -O2 -o /tmp/a /tmp/a.c && /tmp/a && od -An -tx1 -j18 -N2 /tmp/a",
    ]);
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("42"));
    assert_eq!(
        lines.next().map(str::trim),
        Some("b7 00"),
        "an aarch64 ELF (e_machine 183)"
    );
    // apt works rootless in subuid mode (its _apt sandbox user is a mapped id).
    let out = r.run(&[
        "run",
        "--baseos",
        "debian-bookworm",
        "--",
        "apt-get",
        "--version",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
}
