//! The suite never reads or writes the real users' caches (issue 27): root's and each test
//! user's `~/.cache/pookie-ns`. `scripts/test` runs `plant` before every other test and `verify`
//! after them all (both are `#[ignore]`d, so a plain `cargo test` leaves the caches alone).
//!
//! `plant` fills each cache with a decoy for every embedded recipe and arch: a file that is not a
//! tarball, under the exact name the per-user cache would look up for today's release of the
//! suite on the configured mirror. A test whose pookie-ns read a real cache would import it and
//! fail on it; one that wrote there changes the digest. `verify` compares the digest of each
//! cache with the one taken after planting, then removes the decoys (only those it planted: a
//! real entry of the same name is left alone), so the caches end as they began.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use common::{hash_tree, is_root, require, user_exists};

const STATE: &str = "/var/cache/pookie-ns-test/user-caches.state";
const DECOY: &[u8] = b"not a tarball: a decoy planted by tests/user_caches.rs. A test that \
imports this read a real user's cache instead of its own.\n";

/// (home, uid, gid) of root and of each test user that exists.
fn homes() -> Vec<(PathBuf, u32, u32)> {
    let mut out = Vec::new();
    for name in [
        "root",
        common::SUB_USER,
        common::SINGLE_USER,
        "pookie-addsub",
    ] {
        if name != "root"
            && !require(
                user_exists(name),
                &format!("test user {name} (scripts/setup-host)"),
            )
        {
            continue;
        }
        let u = nix::unistd::User::from_name(name).unwrap().unwrap();
        out.push((u.dir, u.uid.as_raw(), u.gid.as_raw()));
    }
    out
}

fn cache_of(home: &Path) -> PathBuf {
    home.join(".cache/pookie-ns")
}

/// One line per cache: its path and the digest of its tree (or "absent").
fn digests() -> String {
    homes()
        .iter()
        .map(|(home, _, _)| {
            let c = cache_of(home);
            let d = if c.exists() {
                hash_tree(&c)
            } else {
                "absent".to_string()
            };
            format!("{} {d}\n", c.display())
        })
        .collect()
}

/// Every cache entry path the per-user cache would look up today, per embedded recipe and arch.
fn entry_names() -> Vec<String> {
    use pookie_ns::baseos_cache::{release_date, Key};
    // An empty config dir: the built-in recipes and the host's mirror, as a test's store sees them.
    let empty = tempfile::tempdir().unwrap();
    let config = pookie_ns::config::Config::load(
        &pookie_ns::config::Overrides {
            config_dir: Some(empty.path().to_path_buf()),
            work_dir: Some(PathBuf::from("/tmp")),
        },
        &pookie_ns::config::Env::current(),
    )
    .expect("the default configuration");
    let recipes = pookie_ns::recipe::all(empty.path()).unwrap();
    let mut names = Vec::new();
    for recipe in &recipes {
        let mirror = pookie_ns::baseos::mirror_for(&config, recipe);
        let Some(date) = release_date(&mirror, &recipe.spec.suite) else {
            panic!(
                "the release date of {} on {mirror} (the network is needed)",
                recipe.spec.suite
            );
        };
        for arch in &recipe.spec.arches {
            let key = Key::new(recipe, &mirror, *arch, Some(date.clone()));
            names.push(key.file_name(&date));
        }
    }
    names
}

#[test]
#[ignore = "run by scripts/test before the suite"]
fn plant() {
    if !require(
        is_root(),
        "root (the decoys go into every test user's cache)",
    ) {
        return;
    }
    let names = entry_names();
    let mut planted = Vec::new();
    for (home, uid, gid) in homes() {
        let dir = cache_of(&home).join("baseos");
        for d in [home.join(".cache"), cache_of(&home), dir.clone()] {
            if !d.exists() {
                std::fs::create_dir(&d).unwrap();
                std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
                nix::unistd::chown(&d, Some(uid.into()), Some(gid.into())).unwrap();
                planted.push(format!("dir {}", d.display()));
            }
        }
        for n in &names {
            let p = dir.join(n);
            if p.exists() {
                continue; // a real entry: left as it is
            }
            std::fs::write(&p, DECOY).unwrap();
            nix::unistd::chown(&p, Some(uid.into()), Some(gid.into())).unwrap();
            planted.push(p.display().to_string());
        }
    }
    eprintln!(
        "planted {} decoys in the users' caches",
        planted.iter().filter(|p| !p.starts_with("dir ")).count()
    );
    std::fs::write(STATE, format!("{}--\n{}", digests(), planted.join("\n"))).unwrap();
}

#[test]
#[ignore = "run by scripts/test after the suite"]
fn verify() {
    if !require(is_root(), "root (reads every test user's cache)") {
        return;
    }
    let state = std::fs::read_to_string(STATE).expect("user_caches::plant ran before the suite");
    let (before, planted) = state.split_once("--\n").unwrap();
    let after = digests();
    // The decoys go whatever the outcome: the caches end as they began.
    let mut dirs = Vec::new();
    for p in planted.lines().filter(|l| !l.is_empty()) {
        if let Some(d) = p.strip_prefix("dir ") {
            dirs.push(d);
        } else if std::fs::read(p).is_ok_and(|b| b == DECOY) {
            std::fs::remove_file(p).unwrap();
        }
    }
    // The directories plant made, deepest first, if nothing else went into them.
    for d in dirs.iter().rev() {
        let _ = std::fs::remove_dir(d);
    }
    let _ = std::fs::remove_file(STATE);
    assert_eq!(
        before, after,
        "a test read or wrote a real user's ~/.cache/pookie-ns (digests before and after the suite)"
    );
}
