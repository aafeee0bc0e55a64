//! A real Debian bookworm base OS from the embedded recipe (its tarball built once per machine by
//! scripts/build-test-rootfs through `pookie-ns load-baseos debian-bookworm --save-tarball`):
//! Python and gcc inside, the branch refresh with apt, and rootless `apt-get install` committed
//! into the instance layer, not the base.

mod common;

use common::{everyone, require, stderr, stdout, Runner, Who};

/// A bookworm amd64 store of `who` (tests/common), for root and the test users alike.
fn debian_runner(who: Who) -> Option<Runner> {
    if !require(
        common::is_root(),
        "the Debian tests run as root (and switch to the test users)",
    ) {
        return None;
    }
    common::debian_runner(who)
}

#[test]
fn debian_python_gcc_apt_and_branch_refresh() {
    for who in everyone() {
        let Some(r) = debian_runner(who) else { return };
        let base = r.store.join("baseos/debian-bookworm/amd64/rootfs");

        // The first run on a branch refreshes its instance; the next one, within the
        // interval, does not.
        let out = r.run(&[
            "run",
            "--",
            "python3",
            "-c",
            "import sys; print(sys.version_info[:2])",
        ]);
        assert_eq!(stdout(&out), "(3, 11)\n", "{who:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("refreshed instance stable/debian-bookworm/amd64"),
            "{}",
            stderr(&out)
        );
        assert!(r
            .store
            .join("instances/stable/debian-bookworm/amd64/refresh.log")
            .exists());
        let out = r.run(&["run", "--", "sh", "-c",
            "printf '%s\\n' '#include <stdio.h>' 'int main(void){printf(\"%d\\n\", 6*7);return 0;}' > /tmp/a.c && gcc -O2 -o /tmp/a /tmp/a.c && /tmp/a"]);
        assert_eq!(stdout(&out), "42\n", "{who:?}: {}", stderr(&out));
        assert!(
            !stderr(&out).contains("refresh"),
            "refreshed twice: {}",
            stderr(&out)
        );

        // apt, rootless: installed into the instance, not the base.
        let out = r.run(common::INSTALL_HELLO);
        assert!(out.status.success(), "{who:?}: {}", stderr(&out));
        let out = r.run(&["run", "--", "hello"]);
        assert_eq!(stdout(&out), "Hello, world!\n", "{who:?}: {}", stderr(&out));
        assert!(
            !base.join("usr/bin/hello").exists(),
            "the base OS was written"
        );

        let list = r.ok(&["list"]);
        assert!(list.contains("bookworm") && list.contains("3.11"), "{list}");
        assert!(list.contains(" ago"), "last refresh shown: {list}");
    }
}

#[test]
fn unknown_branch_names_its_file_and_the_branches() {
    let Some(r) = debian_runner(Who::Root) else {
        return;
    };
    let out = r.run(&["run", "--branch", "weekly", "--", "true"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("source_lists/weekly.list") && err.contains("stable, testing"),
        "{err}"
    );
}

#[test]
fn update_baseos_swaps_in_a_rebuilt_base_and_restarts_its_instances() {
    let Some(r) = debian_runner(Who::Root) else {
        return;
    };
    r.ok(&[
        "run",
        "--commit",
        "--",
        "sh",
        "-c",
        "echo old > /etc/pookie-marker",
    ]);
    let before: serde_json::Value = serde_json::from_str(&r.ok(&["--json", "list"])).unwrap();
    let old_sha = before["baseos"][0]["meta"]["sha256"]
        .as_str()
        .unwrap()
        .to_string();

    let out = r.run(&["update-baseos"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("built debian-bookworm for amd64"),
        "rebuilt, not the cached tarball: {err}"
    );
    assert!(
        err.contains("starting it afresh") && err.contains("refreshed instance"),
        "{err}"
    );

    let after: serde_json::Value = serde_json::from_str(&r.ok(&["--json", "list"])).unwrap();
    assert_eq!(after["baseos"].as_array().unwrap().len(), 1, "{after}");
    assert_ne!(
        after["baseos"][0]["meta"]["sha256"].as_str().unwrap(),
        old_sha
    );
    let out = r.run(&[
        "run",
        "--",
        "sh",
        "-c",
        "cat /etc/pookie-marker 2>/dev/null; python3 -c 'print(3)'",
    ]);
    assert_eq!(
        stdout(&out),
        "3\n",
        "the stale instance was reset: {}",
        stderr(&out)
    );
    assert!(
        !stderr(&out).contains("refreshed"),
        "refreshed by update-baseos already"
    );
    assert_eq!(
        std::fs::read_dir(r.store.join("tmp")).unwrap().count(),
        0,
        "the old base is gone"
    );
}

#[test]
fn a_missing_mmdebstrap_names_the_package_to_install() {
    if !require(common::is_root(), "runs as root") {
        return;
    }
    let r = Runner::new(Who::Root);
    let out = r
        .command(&["load-baseos", "debian-bullseye"])
        .env("PATH", "/nonexistent")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("sudo apt-get install mmdebstrap"),
        "{}",
        stderr(&out)
    );
    let out = r.run(&["load-baseos", "debian-bullseye", "--arch", "riscv64"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("has no riscv64"), "{}", stderr(&out));
    assert!(std::fs::read_dir(r.store.join("baseos"))
        .unwrap()
        .next()
        .is_none());
}
