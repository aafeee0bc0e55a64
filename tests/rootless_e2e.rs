//! Issue 19's end-to-end check: from a fresh store to tested wheels for three arches with no
//! sudo and no host-wide QEMU registration. As the subuid test user pookie-sub, then as root,
//! each on a fresh store:
//!
//! `pookie-ns build examples/c-ext --branch stable --target x86_64 aarch64 armv7l --python 3.11`
//!
//! succeeds while the host's binfmt_misc has no `qemu-*` entry (and none serving a foreign
//! arch): the test takes every such entry away for the build and registers it again after,
//! on a failure too (a guard, [`common::HostEntriesRemoved`]), under the lock the other
//! host-binfmt tests take. The host's `/proc/sys/fs/binfmt_misc` listing must be identical
//! before and after each build, and no output may advise sudo. The window without host
//! entries is the build alone: pookie-ns never relies on them (every sandbox registers QEMU in
//! a private binfmt_misc instance), so emulated work elsewhere on the machine is not broken by
//! it either.
//!
//! `--python 3.11`: without it a build covers every CPython the project admits (3.9 ... 3.15),
//! i.e. bullseye, trixie and forky base OSes too — the command predates that; the main
//! job (`scripts/main-job`) names 3.11 as well.
//!
//! Base OSes: the bookworm amd64, arm64 and armhf tarballs that `scripts/build-test-rootfs`
//! cached in /var/cache/pookie-ns-test (built by the recipe), linked into each fresh store as
//! `work_dir/baseos-debian-bookworm-<arch>.tar.zst`, which `build` imports on first use instead
//! of running mmdebstrap. The rootless mmdebstrap path itself (a foreign recipe built in
//! pookie-ns's user namespace with no host entry, then served by the per-user cache) is
//! tests/rootless_rootfs.rs's.
//!
//! Needs: root (the test switches users and edits the host's binfmt_misc), Linux >= 6.7,
//! qemu-user-static, pookie-sub, the cached tarballs and the network (refreshes, PyPI).
//! Missing prerequisites skip locally and fail under `CI=true`.

mod common;

use std::time::Instant;

use common::{HostEntriesRemoved, Who};
use pookie_ns::arch::Arch;

const ARCHES: [&str; 3] = ["amd64", "arm64", "armhf"];
const TARGETS: [&str; 3] = ["x86_64", "aarch64", "armv7l"];

fn prerequisites() -> bool {
    common::rootless_emulation(&[Arch::Arm64, Arch::Armhf])
}

/// The build of the issue as `who` on a fresh store, with no host entry for any foreign arch.
fn build_without_host_binfmt(who: Who) {
    let names: Vec<String> = ARCHES
        .iter()
        .map(|a| format!("debian-bookworm-{a}"))
        .collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let Some(r) = common::runner_with_debian(who, &names) else {
        return;
    };
    let project = common::example_copy(&r, "c-ext", "c-ext");
    let out = r.store.parent().unwrap().join("dist");

    let lock = common::host_binfmt_lock();
    let foreign: Vec<Arch> = Arch::ALL.into_iter().filter(|a| !a.is_native()).collect();
    let removed = HostEntriesRemoved::take(&foreign);
    let before = common::host_binfmt_entries();
    assert!(
        before.iter().all(|(n, _)| !n.starts_with("qemu-")),
        "no qemu-* entry on the host during the build: {before:?}"
    );
    let started = Instant::now();
    let (code, report, err) = common::build_in(&r, &project, &TARGETS, &["--python", "3.11"], &out);
    let after = common::host_binfmt_entries();
    drop(removed);
    drop(lock);
    eprintln!(
        "[{who:?}] first build of {TARGETS:?} on a fresh store: {:.0} s",
        started.elapsed().as_secs_f64()
    );

    assert_eq!(code, 0, "[{who:?}] the build failed: {err}\n{report}");
    assert_eq!(
        before, after,
        "[{who:?}] the host's binfmt_misc changed during the build"
    );
    let said = format!("{err}\n{report}");
    assert!(
        !mentions_sudo(&said),
        "[{who:?}] no advice to run sudo: {said}"
    );

    // Three wheels, each built for and tested on its own arch.
    let targets = report["targets"].as_array().expect("targets in the report");
    assert_eq!(targets.len(), 3, "{report}");
    for t in targets {
        assert_eq!(t["result"], "passed", "{t}");
        let arch = t["arch"].as_str().unwrap();
        let log = std::fs::read_to_string(t["test_log"].as_str().unwrap()).unwrap();
        assert!(
            log.contains(&format!("platform.machine() == '{arch}'")),
            "[{who:?}] tested on its own arch: {log}"
        );
    }
    // The foreign instances' first refreshes fetched lists and packages with the amd64 base
    // OS's apt, natively: only dpkg and maintainer scripts ran under QEMU.
    for arch in &ARCHES[1..] {
        let dir = r
            .store
            .join(format!("instances/stable/debian-bookworm/{arch}"));
        let log = std::fs::read_to_string(dir.join("refresh.log")).unwrap();
        assert!(
            log.contains("+ package lists and packages fetched natively"),
            "[{who:?}] {arch}: {log}"
        );
        let download = std::fs::read_to_string(dir.join("refresh-download.log")).unwrap();
        assert!(
            download.contains(&format!("+ apt for {arch}, run natively: dist-upgrade")),
            "[{who:?}] {arch}: {download}"
        );
    }
    let wheels = common::wheels(&out);
    for arch in TARGETS {
        assert!(
            wheels
                .iter()
                .any(|w| w.contains("cp311") && w.ends_with(&format!("_{arch}.whl"))),
            "[{who:?}] a cp311 {arch} wheel: {wheels:?}"
        );
    }
}

/// Whether `text` names sudo as a word (not inside another, as in "pseudo-terminal").
fn mentions_sudo(text: &str) -> bool {
    let lower = text.to_lowercase();
    lower.match_indices("sudo").any(|(i, _)| {
        !lower[..i]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric())
    })
}

#[test]
fn sudo_is_found_as_a_word_only() {
    assert!(mentions_sudo("run `sudo pookie-ns binfmt register`"));
    assert!(mentions_sudo("Sudo is needed"));
    assert!(!mentions_sudo("allocating a pseudo-terminal"));
}

/// One test, so that the two builds (minutes each, mostly the emulated refreshes of the arm64
/// and armhf instances) never overlap and the host's entries are back between them.
#[test]
fn fresh_store_to_three_arches_without_sudo_or_host_binfmt() {
    if !prerequisites() {
        return;
    }
    build_without_host_binfmt(Who::SubUser);
    build_without_host_binfmt(Who::Root);
}
