//! Crash safety: pookie-ns killed (SIGKILL to its whole process group, sandbox included) at each
//! named point of src/fault.rs, as root, as a user with a subuid range and as one without. After
//! each, the next command repairs the store: no workspace, no half-made import, no mount left on
//! the host, no process left, no lock held, the base OS intact (hashed) and the instance's layers
//! either fully old or fully new.

mod common;

use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::{everyone, hash_tree, stale_pids_cgroups, stderr, Runner, Who};
use pookie_ns::fault::POINTS;

/// Runs pookie-ns with `POOKIE_NS_FAULT=point` in a process group of its own, and checks that it
/// was killed (not that it finished).
fn crash(r: &Runner, point: &str, args: &[&str]) {
    let out = r
        .command(args)
        .env("POOKIE_NS_FAULT", point)
        .process_group(0)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    // As a test user, runuser (root's) survives the kill and reports its child's death.
    let killed = out.status.signal() == Some(libc::SIGKILL)
        || (r.who != Who::Root
            && out.status.code() == Some(128 + libc::SIGKILL)
            && stderr(&out).trim_end().ends_with("Killed"));
    assert!(
        killed,
        "[{:?}] {point}: pookie-ns was not killed at the point ({:?}): {}",
        r.who,
        out.status,
        stderr(&out)
    );
}

fn count(dir: &Path) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

/// Host processes whose command line holds `tag`.
fn processes_with(tag: &str) -> Vec<String> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            cmd.contains(tag).then_some(cmd)
        })
        .collect()
}

/// Processes with a file of the store open (a lock, a log): the killed sandbox's, while the
/// kernel is still taking them down.
fn holders_of(store: &Path) -> Vec<String> {
    let store = store.to_str().unwrap();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            std::fs::read_dir(e.path().join("fd"))
                .into_iter()
                .flatten()
                .flatten()
                .any(|fd| {
                    std::fs::read_link(fd.path()).is_ok_and(|l| l.to_string_lossy().contains(store))
                })
        })
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// True when no workspace's or import's lock is held (the kernel releases the locks of a dying
/// process's files a moment after its file table is gone).
fn locks_free(store: &Path) -> bool {
    use nix::fcntl::{Flock, FlockArg};
    ["workspaces", "tmp"].iter().all(|area| {
        std::fs::read_dir(store.join(area))
            .into_iter()
            .flatten()
            .flatten()
            .all(|d| match std::fs::File::open(d.path().join("lock")) {
                Ok(f) => Flock::lock(f, FlockArg::LockExclusiveNonblock).is_ok(),
                Err(_) => true,
            })
    })
}

/// True when no process is left in the pids cgroup of a killed sandbox: the next sandbox can
/// remove them.
fn stale_pids_cgroups_empty() -> bool {
    stale_pids_cgroups().iter().all(|dir| {
        std::fs::read_to_string(dir.join("cgroup.procs")).map_or(true, |p| p.trim().is_empty())
    })
}

/// What must hold after the command that follows a crash.
fn assert_repaired(r: &Runner, point: &str, base_hash: &str) {
    let who = r.who;
    // SIGKILL is immediate, dying is not: pid 1 of the sandbox lingers a moment while the kernel
    // tears its pid namespace down, and it holds the workspace's lock until then (rightly: its
    // mounts still exist). Repairing starts with the first command after that.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while !holders_of(&r.store).is_empty() || !locks_free(&r.store) {
        assert!(
            std::time::Instant::now() < deadline,
            "[{who:?}] {point}: processes still hold the store 15 s after the kill: {:?}",
            holders_of(&r.store)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The next command: any command sweeps what a dead one left.
    r.ok(&["list"]);
    assert_eq!(
        count(&r.store.join("workspaces")),
        0,
        "[{who:?}] {point}: workspace left"
    );
    assert_eq!(
        count(&r.store.join("tmp")),
        0,
        "[{who:?}] {point}: half-made import left"
    );
    assert!(
        common::host_mounts_containing(r.store.to_str().unwrap()).is_empty(),
        "[{who:?}] {point}: a mount leaked into the host"
    );
    assert!(
        processes_with(r.store.to_str().unwrap()).is_empty()
            && processes_with("sleep 3172").is_empty(),
        "[{who:?}] {point}: processes left: {:?}",
        processes_with(r.store.to_str().unwrap())
    );
    assert_eq!(
        hash_tree(&r.store.join("baseos/bb")),
        base_hash,
        "[{who:?}] {point}: the base OS changed"
    );
    // No lock is held: a commit neither waits nor fails.
    let out = r.run(&["run", "--baseos", "bb", "--commit", "--", "true"]);
    assert!(out.status.success(), "[{who:?}] {point}: {}", stderr(&out));
    assert!(
        !stderr(&out).contains("waiting"),
        "[{who:?}] {point}: a lock is still held: {}",
        stderr(&out)
    );
}

/// The instance's layers: (count, whether /etc/crashed is in the newest one, whole).
fn layers(r: &Runner) -> (usize, bool) {
    let dir = r.store.join("instances/stable/bb/amd64/layers");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    names.sort();
    let whole = names.last().is_some_and(|l| {
        std::fs::read_to_string(l.join("etc/crashed")).is_ok_and(|s| s == "whole\n")
            && std::fs::read_to_string(l.join("etc/second")).is_ok_and(|s| s == "also\n")
    });
    (names.len(), whole)
}

#[test]
fn every_crash_point_is_repaired_by_the_next_command() {
    let mut tried = 0;
    for who in everyone() {
        let r = Runner::new(who);
        r.load_busybox("tar.zst", "bb");
        let base_hash = hash_tree(&r.store.join("baseos/bb"));
        let archive = common::fixtures().archive("tar.zst");
        let archive = archive.to_str().unwrap();

        for point in ["import-unpacking", "import-unpacked"] {
            crash(&r, point, &["load-baseos", archive, "--name", "half"]);
            assert_repaired(&r, point, &base_hash);
            assert!(!r.store.join("baseos/half").exists(), "[{who:?}] {point}");
            tried += 1;
        }
        // After a crashed import the same import goes through.
        r.ok(&["load-baseos", archive, "--name", "half"]);

        for point in ["overlay-mounted", "command-running"] {
            crash(
                &r,
                point,
                &["run", "--baseos", "bb", "--", "/bin/sh", "-c", "sleep 3172"],
            );
            assert_repaired(&r, point, &base_hash);
            tried += 1;
        }

        let commit = [
            "run",
            "--baseos",
            "bb",
            "--commit",
            "--",
            "/bin/sh",
            "-c",
            "echo whole > /etc/crashed; echo also > /etc/second",
        ];
        // One layer more than `before`, with the crashed commit's files (`whole`) or not.
        let one_more = |before: usize, whole: bool, point: &str| {
            assert_eq!(layers(&r), (before + 1, whole), "[{who:?}] {point}");
        };
        let (before, _) = layers(&r);
        crash(&r, "commit-before-rename", &commit);
        assert_repaired(&r, "commit-before-rename", &base_hash);
        // Fully old: no new layer with these files (the check's own `true` commit adds one).
        one_more(before, false, "commit-before-rename");
        let out = r.sh("bb", "cat /etc/crashed");
        assert!(!out.status.success(), "[{who:?}] half a commit is visible");
        tried += 1;

        let (before, _) = layers(&r);
        crash(&r, "commit-after-rename", &commit);
        // Fully new: the layer is there, whole, before anything repairs.
        one_more(before, true, "commit-after-rename");
        assert_repaired(&r, "commit-after-rename", &base_hash);
        let out = r.sh_ok("bb", "cat /etc/crashed /etc/second");
        assert_eq!(out, "whole\nalso\n", "[{who:?}]");
        tried += 1;

        // The pids cgroup of a killed sandbox goes with the next sandbox, once the kernel has
        // taken its last process out of it (rmdir refuses a cgroup with processes: EBUSY).
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        while !stale_pids_cgroups_empty() {
            assert!(
                std::time::Instant::now() < deadline,
                "[{who:?}] the killed sandboxes' pids cgroups still have processes 15 s on"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        r.ok(&["run", "--baseos", "bb", "--", "true"]);
        let stale = stale_pids_cgroups();
        assert!(stale.is_empty(), "[{who:?}] pids cgroups left: {stale:?}");
    }
    eprintln!("crash scenarios tried: {tried}");
}

#[test]
fn a_crash_during_an_instance_refresh_is_repaired() {
    // A refresh needs a base OS built from a recipe: the cached Debian tarball. One identity is
    // enough here (the sandbox side is the same as above): a user with a subuid range.
    let Some(who) = everyone().into_iter().find(|w| *w == Who::SubUser) else {
        return;
    };
    let Some(r) = common::debian_runner(who) else {
        return;
    };
    let base = r.store.join("baseos/debian-bookworm");
    let base_listing = listing(&base);
    crash(&r, "refresh-started", &["run", "--", "true"]);
    r.ok(&["list"]);
    assert_eq!(count(&r.store.join("workspaces")), 0, "workspace left");
    assert_eq!(count(&r.store.join("tmp")), 0, "tmp left");
    let layers = r
        .store
        .join("instances/stable/debian-bookworm/amd64/layers");
    assert_eq!(count(&layers), 0, "a half refresh was committed");
    assert!(
        !r.store
            .join("instances/stable/debian-bookworm/amd64/refresh.json")
            .exists(),
        "the refresh is recorded as done"
    );
    assert!(common::host_mounts_containing(r.store.to_str().unwrap()).is_empty());
    assert!(listing(&base) == base_listing, "the base OS changed");
    // The lock is free: cleanup of the instance neither waits nor refuses.
    r.ok(&["cleanup", "stable/debian-bookworm/amd64"]);
    // Every point is exercised by one of the two tests (and oci-downloading and
    // oci-blob-landed by tests/oci.rs).
    assert_eq!(POINTS.len(), 9);
}

/// Paths, modes, sizes and times of a tree: cheaper than hashing a whole Debian base OS.
fn listing(root: &Path) -> Vec<String> {
    use std::os::unix::fs::MetadataExt;
    common::tree_lines(root, |p, m| {
        format!("{} {:o} {} {}", p.display(), m.mode(), m.size(), m.mtime())
    })
}
