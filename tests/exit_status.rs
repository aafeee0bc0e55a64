//! The exit status of each kind of failure, as the README's "Exit status" paragraph documents it:
//! 2 for bad input, 75 (EX_TEMPFAIL) when another pookie-ns holds what is needed, 1 for an
//! internal failure. A failed build's 1 is checked where a build fails for real
//! (tests/build.rs, `native_builds_as_every_identity`: the broken C extension).

mod common;

use common::{require, stderr, Runner, Who};

#[test]
fn each_kind_of_failure_has_its_exit_status() {
    if !require(common::is_root(), "the exit status tests run as root") {
        return;
    }
    let r = Runner::new(Who::Root);
    r.load_busybox("tar.zst", "bb");

    // Bad input: a cleanup target that does not exist, an unknown base OS, a malformed --env.
    for args in [
        &["cleanup", "nonsense"][..],
        &["run", "--baseos", "nope", "--", "true"],
        &["run", "--baseos", "bb", "--env", "NOEQUALS", "--", "true"],
    ] {
        let out = r.run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
    }

    // Busy: the instance is held by a running command; cleanup of it says so and exits 75.
    let held = r.hold(&["--baseos", "bb"], "", "cat /etc/motd");
    let out = r.run(&["cleanup", "stable/bb/amd64"]);
    assert_eq!(out.status.code(), Some(75), "{}", stderr(&out));
    assert!(stderr(&out).contains("in use"), "{}", stderr(&out));
    let out = held.release();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(common::stdout(&out), "hello from the base\n");

    // Internal: an instance whose layers have run out of numbers (the store's own limit).
    r.commit("bb", "echo one > /etc/one");
    let layers = r.store.join("instances/stable/bb/amd64/layers");
    std::fs::rename(layers.join("0001"), layers.join("9999")).unwrap();
    let out = r.run(&["run", "--baseos", "bb", "--commit", "--", "true"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("too many layers"), "{}", stderr(&out));

    // The command's own status comes back out of `run`.
    let out = r.sh("bb", "exit 7");
    assert_eq!(out.status.code(), Some(7));
}
