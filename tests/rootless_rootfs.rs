//! Foreign base OSes built with no host-wide binfmt_misc registration (issue 19): `load-baseos`
//! of a tiny arm64 recipe (busybox-static, variant `extract`: seconds, not minutes), as the
//! subuid test user and as root, with every host entry that serves arm64 taken away for the
//! build (and put back after). pookie-ns runs mmdebstrap inside its own user namespace with a
//! private binfmt_misc instance; the host's `/proc/sys/fs/binfmt_misc` must be the same before
//! and after, and nothing may advise sudo. A second store then gets the base OS from the
//! per-user cache without mmdebstrap, and `cleanup all --cache` removes the cache.
//!
//! Needs: root (the test switches users), Linux >= 6.7, mmdebstrap, arch-test,
//! qemu-user-static, the test user pookie-sub and the Debian mirror. Missing prerequisites skip
//! locally and fail under `CI=true`.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;

use common::{require, stderr, stdout, HostEntriesRemoved, Runner, Who};
use pookie_ns::arch::Arch;
use pookie_ns::binfmt;

const RECIPE: &str = "tiny-arm64";

/// Set (outside CI) to leave the host's entries registered during the build.
const KEEP_HOST_ENV: &str = "POOKIE_NS_TEST_KEEP_HOST_BINFMT";

fn which(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
}

/// The host's entries with what the kernel says about each.
fn host_listing() -> Vec<(String, String)> {
    common::host_binfmt_entries()
}

/// A recipe of one static package: mmdebstrap downloads and unpacks it (1 MB, seconds), from
/// the suite with its -updates and -security sources.
fn write_recipe(r: &Runner) {
    let dir = r.config.join("rootfs");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let p = dir.join(format!("{RECIPE}.toml"));
    std::fs::write(
        &p,
        "distribution = \"debian\"\nsuite = \"bookworm\"\nvariant = \"extract\"\n\
         packages = [\"busybox-static\"]\npython = \"3.11\"\narches = [\"arm64\"]\n\
         updates = true\n",
    )
    .unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
}

/// A per-user cache dir for this runner, owned by its user.
fn cache_dir(r: &Runner) -> PathBuf {
    let dir = r.config.parent().unwrap().join("cache");
    std::fs::create_dir_all(&dir).unwrap();
    if let Some(user) = r.who.user() {
        let u = nix::unistd::User::from_name(user).unwrap().unwrap();
        nix::unistd::chown(&dir, Some(u.uid), Some(u.gid)).unwrap();
    }
    dir
}

fn run_with_cache(r: &Runner, cache: &Path, args: &[&str]) -> Output {
    let out = r
        .command(args)
        .env("XDG_CACHE_HOME", cache)
        .output()
        .unwrap();
    eprintln!(
        "[{:?}] pookie-ns {}\n  status: {:?}\n  stderr: {}",
        r.who,
        args.join(" "),
        out.status.code(),
        stderr(&out).trim_end()
    );
    out
}

fn prerequisites() -> bool {
    let mirror = "http://deb.debian.org/debian/dists/bookworm/InRelease";
    common::rootless_emulation(&[Arch::Arm64])
        && require(which("mmdebstrap"), "mmdebstrap")
        && require(which("arch-test"), "arch-test")
        && require(
            std::process::Command::new("curl")
                .args(["-fsS", "--max-time", "20", "-r", "0-99", "-o", "/dev/null"])
                .arg(mirror)
                .status()
                .is_ok_and(|s| s.success()),
            "the Debian mirror (deb.debian.org) reachable",
        )
}

/// Builds the tiny recipe as `who` with no host registration for arm64; returns the cache dir.
fn build_without_host_binfmt(who: Who) {
    let r = Runner::new(who);
    write_recipe(&r);
    let cache = cache_dir(&r);

    let _lock = common::host_binfmt_lock();
    // On a shared machine where another build relies on the host's entry right now, the
    // entries can be left alone locally (the private instance hides them from mmdebstrap
    // anyway); CI always takes them away.
    let keep = std::env::var_os(KEEP_HOST_ENV).is_some() && !common::in_ci();
    let removed = if keep {
        eprintln!("{KEEP_HOST_ENV} set: the host's arm64 entries stay registered");
        HostEntriesRemoved::none()
    } else {
        HostEntriesRemoved::take(&[Arch::Arm64])
    };
    let before = host_listing();
    assert!(
        keep || binfmt::find_registration(Path::new(binfmt::HOST_DIR), Arch::Arm64).is_none(),
        "no host entry may serve arm64 during the build: {before:?}"
    );
    let out = run_with_cache(&r, &cache, &["load-baseos", RECIPE, "--arch", "arm64"]);
    let after = host_listing();
    drop(removed);

    assert!(
        out.status.success(),
        "[{who:?}] load-baseos failed: {}",
        stderr(&out)
    );
    assert_eq!(
        before, after,
        "[{who:?}] the host's binfmt_misc changed during the build"
    );
    assert!(
        !stderr(&out).contains("sudo"),
        "[{who:?}] no advice to run sudo: {}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("built tiny-arm64 for arm64"));

    // The base OS is arm64: its busybox is an aarch64 ELF (EM_AARCH64 = 183). (A `run` would
    // first refresh the instance with apt, which a busybox-only rootfs does not have.)
    let base = r.store.join("baseos").join(RECIPE).join("arm64");
    let meta = std::fs::read_to_string(base.join("meta.json")).unwrap();
    assert!(meta.contains("\"arm64\""), "{meta}");
    let elf = std::fs::read(base.join("rootfs/bin/busybox")).unwrap();
    assert_eq!(&elf[..4], b"\x7fELF");
    assert_eq!(
        u16::from_le_bytes([elf[18], elf[19]]),
        183,
        "not an aarch64 busybox"
    );
    // Built from the suite's -updates and -security sources too (the recipe's `updates`).
    let sources = std::fs::read_to_string(base.join("rootfs/etc/apt/sources.list")).unwrap();
    assert!(
        sources.contains("bookworm-updates") && sources.contains("bookworm-security"),
        "{sources}"
    );

    // The per-user cache serves a fresh store without mmdebstrap.
    r.ok(&["cleanup", "all"]);
    let again = run_with_cache(&r, &cache, &["load-baseos", RECIPE, "--arch", "arm64"]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(
        stderr(&again).contains("from the per-user cache"),
        "[{who:?}] expected a cache hit: {}",
        stderr(&again)
    );
    let removed = run_with_cache(&r, &cache, &["cleanup", "all", "--cache"]);
    assert!(removed.status.success(), "{}", stderr(&removed));
    assert!(
        !cache.join("pookie-ns").join("baseos").exists(),
        "cleanup all --cache leaves {}: {}",
        cache.display(),
        stdout(&removed)
    );
}

#[test]
fn foreign_base_os_without_host_binfmt_as_subuid_user() {
    if prerequisites() {
        build_without_host_binfmt(Who::SubUser);
    }
}

#[test]
fn foreign_base_os_without_host_binfmt_as_root() {
    if prerequisites() {
        build_without_host_binfmt(Who::Root);
    }
}

/// The old-kernel path (`binfmt = "host"`, what a kernel before 6.7 leaves) as root, with no host
/// entry for arm64: mmdebstrap runs through a host registration made for the command, which the
/// command takes back when it ends (binfmt's one policy, as for `run` and `build`). The host's
/// listing is the same after, and nothing advises sudo.
#[test]
fn foreign_base_os_as_root_on_the_host_path_registers_for_the_command_only() {
    if !prerequisites() || !require(common::is_root(), "host-wide registration needs root") {
        return;
    }
    let r = Runner::new(Who::Root);
    write_recipe(&r);
    r.write_config("binfmt = \"host\"\n");
    let cache = cache_dir(&r);
    let _lock = common::host_binfmt_lock();
    let removed = HostEntriesRemoved::take(&[Arch::Arm64]);
    let before = host_listing();
    let out = run_with_cache(&r, &cache, &["load-baseos", RECIPE, "--arch", "arm64"]);
    let after = host_listing();
    drop(removed);
    assert!(out.status.success(), "load-baseos failed: {}", stderr(&out));
    assert_eq!(before, after, "the registration outlived the command");
    let err = stderr(&out);
    assert!(
        err.contains("registered qemu-aarch64") && err.contains("for this command"),
        "{err}"
    );
    assert!(err.contains("built tiny-arm64 for arm64"), "{err}");
    assert!(
        !err.contains("sudo"),
        "root is never told to use sudo: {err}"
    );
}
