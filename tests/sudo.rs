//! The documented workflow: `sudo pookie-ns load-baseos`, then `run` and `cleanup all` as the same
//! user without sudo. These tests play sudo (root with SUDO_UID/SUDO_GID/SUDO_USER of a test user)
//! and work on the test users' default stores, so they hold one lock and run one at a time.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;

use common::{binary, fixtures, require, stderr, stdout, FOREIGN_CACHE, SINGLE_USER, SUB_USER};

static DEFAULT_STORES: Mutex<()> = Mutex::new(());

struct TestUser {
    name: &'static str,
    uid: u32,
    gid: u32,
    home: PathBuf,
}

fn test_user(name: &'static str) -> Option<TestUser> {
    if !require(common::is_root(), "playing sudo needs root") {
        return None;
    }
    let u = nix::unistd::User::from_name(name).ok().flatten();
    if !require(
        u.is_some(),
        &format!("test user {name} (scripts/setup-host)"),
    ) {
        return None;
    }
    let u = u.unwrap();
    let user = TestUser {
        name,
        uid: u.uid.as_raw(),
        gid: u.gid.as_raw(),
        home: u.dir,
    };
    // Start from an empty default store.
    let _ = std::fs::remove_dir_all(user.store());
    Some(user)
}

impl TestUser {
    fn store(&self) -> PathBuf {
        self.home.join(".local/share/pookie-ns")
    }

    /// `sudo pookie-ns ARGS` as this user would type it.
    fn sudo(&self, args: &[&str]) -> Output {
        let out = Command::new(binary())
            .args(args)
            .env("SUDO_UID", self.uid.to_string())
            .env("SUDO_GID", self.gid.to_string())
            .env("SUDO_USER", self.name)
            .env("HOME", "/root")
            .current_dir("/tmp")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        eprintln!(
            "[sudo {}] pookie-ns {}\n{}{}",
            self.name,
            args.join(" "),
            stdout(&out),
            stderr(&out)
        );
        out
    }

    /// `pookie-ns ARGS` as the user, without sudo.
    fn plain(&self, args: &[&str]) -> Output {
        let out = Command::new("runuser")
            .args(["-u", self.name, "--"])
            .arg(binary())
            .args(args)
            .env_remove("XDG_DATA_HOME")
            .env("HOME", &self.home)
            .current_dir("/tmp")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        eprintln!(
            "[{}] pookie-ns {}\n{}{}",
            self.name,
            args.join(" "),
            stdout(&out),
            stderr(&out)
        );
        out
    }

    fn subuid_start(&self) -> Option<u32> {
        let text = std::fs::read_to_string("/etc/subuid").unwrap_or_default();
        pookie_ns::userns::subid_range(&text, Some(self.name), self.uid).map(|r| r.0)
    }

    /// After `cleanup all`, the user alone can remove what is left of the store.
    fn cleanup_and_check(&self) {
        assert!(self.plain(&["cleanup", "all"]).status.success());
        let st = Command::new("runuser")
            .args(["-u", self.name, "--", "rm", "-rf"])
            .arg(self.store())
            .status()
            .unwrap();
        assert!(
            st.success() && !self.store().exists(),
            "{}: store not removable by its user",
            self.name
        );
    }
}

#[test]
fn sudo_load_then_run_and_cleanup_as_the_user() {
    let _one = DEFAULT_STORES.lock().unwrap_or_else(|e| e.into_inner());
    for name in [SUB_USER, SINGLE_USER] {
        let Some(user) = test_user(name) else { return };
        let archive = fixtures().archive("tar.zst");
        let out = user.sudo(&["load-baseos", archive.to_str().unwrap(), "--name", "bb"]);
        assert!(out.status.success(), "{name}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(&format!("working for {name} on their store")),
            "{}",
            stderr(&out)
        );

        // Owned as the user's own rootless runs expect.
        let store = user.store();
        assert_eq!(std::fs::metadata(&store).unwrap().uid(), user.uid);
        assert_eq!(
            std::fs::metadata(store.join("baseos/bb/amd64/meta.json"))
                .unwrap()
                .uid(),
            user.uid
        );
        let www =
            std::fs::metadata(store.join("baseos/bb/amd64/rootfs/home/www/index.html")).unwrap();
        let expected = match user.subuid_start() {
            Some(start) => start + 32, // uid 33 inside → range start + 33 - 1
            None => user.uid,
        };
        assert_eq!(
            www.uid(),
            expected,
            "{name}: ids shifted into the user's range"
        );
        assert!(
            !Path::new("/var/lib/pookie-ns/baseos/bb").exists(),
            "root's store untouched"
        );

        let out = user.sudo(&["list"]);
        assert!(
            stdout(&out).contains(&format!("user {name}'s, through sudo")),
            "{}",
            stdout(&out)
        );

        let out = user.plain(&["run", "--", "stat", "-c", "%u:%g", "/home/www/index.html"]);
        let inside = if user.subuid_start().is_some() {
            "33:33"
        } else {
            "0:0"
        };
        assert_eq!(stdout(&out).trim(), inside, "{name}: {}", stderr(&out));
        let out = user.plain(&[
            "run",
            "--commit",
            "--",
            "sh",
            "-c",
            "mkdir -p /var/x && touch /var/x/f",
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        user.cleanup_and_check();
    }
}

#[test]
fn system_flag_keeps_roots_own_store() {
    let _one = DEFAULT_STORES.lock().unwrap_or_else(|e| e.into_inner());
    let Some(user) = test_user(SUB_USER) else {
        return;
    };
    let out = user.sudo(&["--system", "list"]);
    assert!(
        stdout(&out).contains("store: /var/lib/pookie-ns (root's own)"),
        "{}",
        stdout(&out)
    );
    assert!(!user.store().exists(), "the user's store was not touched");
}

#[test]
fn add_subuid_gives_a_range_and_says_what_it_changed() {
    let _one = DEFAULT_STORES.lock().unwrap_or_else(|e| e.into_inner());
    let Some(user) = test_user("pookie-addsub") else {
        return;
    };
    let strip = || {
        let st = Command::new("sed")
            .args(["-i", "/^pookie-addsub:/d", "/etc/subuid", "/etc/subgid"])
            .status()
            .unwrap();
        assert!(st.success());
    };
    strip();
    let out = user.sudo(&["list"]);
    assert!(
        stdout(&out).contains("single-uid"),
        "without a range: {}",
        stdout(&out)
    );

    let out = user.sudo(&["--add-subuid", "list"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let start = user.subuid_start().expect("a range was added");
    let err = stderr(&out);
    assert!(
        err.contains(&format!("added pookie-addsub:{start}:65536 to /etc/subuid")),
        "{err}"
    );
    assert!(
        err.contains(&format!("added pookie-addsub:{start}:65536 to /etc/subgid")),
        "{err}"
    );
    assert!(
        stdout(&out).contains(&format!("subuid range {start}+65536")),
        "{}",
        stdout(&out)
    );

    let out = user.sudo(&["--add-subuid", "list"]);
    assert!(
        stderr(&out).contains("already has subordinate id ranges"),
        "{}",
        stderr(&out)
    );
    let out = user.plain(&["--add-subuid", "list"]);
    assert_eq!(out.status.code(), Some(2), "--add-subuid needs sudo");
    strip();
    user.cleanup_and_check();
}

/// The slow part: the default Debian recipe (its tarball from the cache, as the aoinb seed's
/// `work_dir/baseos-<recipe>-<arch>.tar.*`) loaded with sudo, then `apt-get install` rootless.
#[test]
fn sudo_loaded_debian_takes_rootless_apt_installs() {
    let _one = DEFAULT_STORES.lock().unwrap_or_else(|e| e.into_inner());
    let tarball = Path::new(FOREIGN_CACHE).join("debian-bookworm-amd64.tar.zst");
    if !require(
        tarball.exists(),
        "the cached Debian tarball (scripts/build-test-rootfs)",
    ) {
        return;
    }
    let Some(user) = test_user(SUB_USER) else {
        return;
    };
    let st = Command::new("runuser")
        .args(["-u", SUB_USER, "--", "mkdir", "-p"])
        .arg(user.store())
        .status()
        .unwrap();
    assert!(st.success());
    std::os::unix::fs::symlink(
        &tarball,
        user.store().join("baseos-debian-bookworm-amd64.tar.zst"),
    )
    .unwrap();
    let out = user.sudo(&["load-baseos"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = user.plain(common::INSTALL_HELLO);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = user.plain(&["run", "--", "hello"]);
    assert_eq!(stdout(&out), "Hello, world!\n", "{}", stderr(&out));
    user.cleanup_and_check();
}
