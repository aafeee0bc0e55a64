//! End-to-end tests of the foundation with the real binary: import, layers, the rootless sandbox,
//! list and cleanup — each as root, as a user with a subuid range, and as one without.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{everyone, fixtures, hash_tree, stderr, stdout, Runner, Who};

#[test]
fn imports_every_compression_and_runs_on_each() {
    for who in everyone() {
        let r = Runner::new(who);
        for ext in ["tar", "tar.gz", "tar.xz", "tar.zst"] {
            let name = format!("bb-{}", ext.replace('.', "-"));
            r.load_busybox(ext, &name);
            let out = r.sh_ok(&name, "cat /etc/motd");
            assert_eq!(out, "hello from the base\n");
        }
        let list: serde_json::Value = serde_json::from_str(&r.ok(&["--json", "list"])).unwrap();
        let bases = list["baseos"].as_array().unwrap();
        assert_eq!(bases.len(), 4, "{list}");
        let compressions: Vec<&str> = bases
            .iter()
            .map(|b| b["meta"]["compression"].as_str().unwrap())
            .collect();
        for c in ["none", "gzip", "xz", "zstd"] {
            assert!(compressions.contains(&c), "{compressions:?}");
        }
        for b in bases {
            assert_eq!(b["meta"]["arch"], "amd64");
            assert_eq!(b["meta"]["arch_source"], "detected");
            assert_eq!(b["meta"]["sha256"].as_str().unwrap().len(), 64);
        }
        let expected_mode = match who {
            Who::Root => "root",
            Who::SubUser => "subuid",
            Who::SingleUser => "single-uid",
        };
        assert_eq!(list["id_map"]["mode"], expected_mode_tag(who));
        assert_eq!(bases[0]["meta"]["ownership"], expected_mode);
        let text = r.ok(&["list"]);
        assert!(text.contains(expected_mode), "{text}");
    }
}

#[test]
fn owners_are_kept_unless_single_uid() {
    for r in common::everyone_with_busybox() {
        let who = r.who;
        let out = r.sh_ok("bb", "stat -c %u:%g /home/www/index.html");
        let expected = if who == Who::SingleUser {
            "0:0"
        } else {
            "33:33"
        };
        assert_eq!(out.trim(), expected, "{who:?}");
    }
}

#[test]
fn pid_namespace_shows_only_the_sandbox() {
    for r in common::everyone_with_busybox() {
        let who = r.who;
        let out = r.sh_ok("bb", "ls /proc | grep -c '^[0-9][0-9]*$'; echo $$");
        let mut lines = out.lines();
        let count: u32 = lines.next().unwrap().parse().unwrap();
        // init, the shell, and the ls/grep of the pipeline.
        assert!(count <= 4, "{who:?}: {count} processes visible");
        assert_eq!(
            lines.next().unwrap(),
            "2",
            "the command is pid 2 under the sandbox's init"
        );
    }
}

#[test]
fn host_files_are_invisible() {
    let marker = format!("/root/pookie-ns-host-marker-{}", std::process::id());
    let home_marker = format!("/home/pookie-ns-host-marker-{}", std::process::id());
    if !common::require(common::is_root(), "writing host markers needs root") {
        return;
    }
    std::fs::write(&marker, "secret").unwrap();
    std::fs::write(&home_marker, "secret").unwrap();
    for r in common::everyone_with_busybox() {
        for path in [&marker, &home_marker] {
            let out = r.sh("bb", &format!("cat {path} /proc/1/root{path}"));
            assert!(!out.status.success());
            assert!(!stdout(&out).contains("secret"));
        }
        // Only the sandbox's own tree: no /sys, no host /home contents.
        let out = r.sh_ok("bb", "ls /; ls /home");
        assert!(!out.contains("sys\n"), "{out}");
        assert!(!out.contains("pookie-ns-host-marker"), "{out}");
        // The store itself is not reachable either.
        let out = r.sh("bb", &format!("ls {}", r.store.display()));
        assert!(!out.status.success());
    }
    std::fs::remove_file(&marker).unwrap();
    std::fs::remove_file(&home_marker).unwrap();
}

#[test]
fn workspace_changes_vanish_and_commits_persist_in_the_instance_only() {
    for r in common::everyone_with_busybox() {
        let who = r.who;
        let base = r.store.join("baseos/bb/amd64/rootfs");
        let before = hash_tree(&base);

        r.sh_ok(
            "bb",
            "echo scratch > /root/scratch; rm /etc/motd; mkdir /newdir",
        );
        let out = r.sh_ok("bb", "ls /root; cat /etc/motd; ls -d /newdir 2>&1 || true");
        assert!(!out.contains("scratch"), "{out}");
        assert!(out.contains("hello from the base"), "{out}");

        r.commit(
            "bb",
            "echo kept > /etc/committed; rm /etc/motd; rm -r /home/www; chown 33:33 /etc/committed || true",
        );
        let out = r.sh_ok("bb", "cat /etc/committed; ls /etc; ls /home");
        assert!(out.contains("kept"), "{out}");
        assert!(
            !out.contains("motd"),
            "whiteout of a base file persists: {out}"
        );
        assert!(!out.contains("www"), "removed dir persists: {out}");

        // A failing command commits nothing.
        let out = r.run(&common::commit_args("bb", "touch /etc/failed; exit 3"));
        assert_eq!(out.status.code(), Some(3));
        let out = r.sh_ok("bb", "ls /etc");
        assert!(!out.contains("failed"), "{out}");

        // The base never changes; the instance holds the committed layer.
        assert_eq!(
            hash_tree(&base),
            before,
            "{who:?}: the base rootfs was modified"
        );
        let list: serde_json::Value = serde_json::from_str(&r.ok(&["--json", "list"])).unwrap();
        assert_eq!(list["instances"][0]["instance"], "stable/bb/amd64");
        assert_eq!(list["instances"][0]["layers"], 1);
        assert!(list["workspaces"].as_array().unwrap().is_empty(), "{list}");

        // Another branch does not see the commit.
        let out = r.run(&[
            "run",
            "--baseos",
            "bb",
            "--branch",
            "testing",
            "--",
            "cat",
            "/etc/motd",
        ]);
        assert!(out.status.success(), "{}", stderr(&out));

        // cleanup of one instance resets it.
        r.ok(&["cleanup", "stable/bb/amd64"]);
        let out = r.sh_ok("bb", "cat /etc/motd");
        assert!(out.contains("hello"));
    }
}

#[test]
fn exit_status_and_signals_pass_through() {
    for r in common::everyone_with_busybox() {
        assert_eq!(r.sh("bb", "exit 7").status.code(), Some(7));
        assert_eq!(r.sh("bb", "kill -TERM $$").status.code(), Some(143));
        assert_eq!(r.sh("bb", "kill -KILL $$").status.code(), Some(137));
        let out = r.run(&["run", "--baseos", "bb", "--", "no-such-command"]);
        assert_eq!(out.status.code(), Some(127), "{}", stderr(&out));
        assert!(stderr(&out).contains("not found"));
    }
}

/// How `IdMap` serializes its mode.
fn expected_mode_tag(who: Who) -> &'static str {
    match who {
        Who::Root => "root",
        Who::SubUser => "subid",
        Who::SingleUser => "single",
    }
}

fn workspaces(store: &Path) -> usize {
    std::fs::read_dir(store.join("workspaces"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[test]
fn interrupted_runs_leave_no_workspace_and_no_mount() {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    for r in common::everyone_with_busybox() {
        let who = r.who;
        for sig in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGKILL] {
            // The command says it is up from inside the sandbox; its stdout stays open in every
            // process of the run until the last of them is gone.
            let mut child = r
                .sh_command("bb", "echo ready; exec sleep 60")
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let mut up = BufReader::new(child.stdout.take().unwrap());
            let mut line = String::new();
            up.read_line(&mut line).unwrap();
            assert_eq!(line, "ready\n", "{who:?} {sig}: the run never got ready");
            assert_eq!(workspaces(&r.store), 1, "{who:?} {sig}: no workspace");
            // runuser forwards signals to its child; signal the real pookie-ns either way.
            let pid = find_pookie_pid(child.id());
            kill(Pid::from_raw(pid as i32), sig).unwrap();
            let started = Instant::now();
            let status = child.wait().unwrap();
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "{sig} did not stop the run"
            );
            if sig != Signal::SIGKILL {
                use std::os::unix::process::ExitStatusExt;
                let code = status.code().or(status.signal().map(|s| 128 + s));
                assert_eq!(code, Some(128 + sig as i32), "{who:?} {sig}");
                assert_eq!(workspaces(&r.store), 0, "{who:?} {sig}: workspace left");
            }
            // Every process of the run is gone (the sandbox follows pookie-ns through its
            // parent-death signal) once the pipe they shared is closed; then the next command
            // sweeps what a SIGKILL left.
            let mut rest = String::new();
            up.read_to_string(&mut rest).unwrap();
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "{who:?} {sig}: the sandbox outlived pookie-ns"
            );
            r.ok(&["list"]);
            assert_eq!(
                workspaces(&r.store),
                0,
                "{who:?} {sig}: workspace left after the next command"
            );
            assert!(
                common::host_mounts_containing(r.store.to_str().unwrap()).is_empty(),
                "{who:?} {sig}: a mount leaked into the host"
            );
        }
    }
}

/// The pookie-ns process itself: `pid`, or its child when started through runuser.
fn find_pookie_pid(pid: u32) -> u32 {
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    if comm.trim() == "pookie-ns" {
        return pid;
    }
    let children =
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    children
        .split_whitespace()
        .filter_map(|c| c.parse().ok())
        .find(|c: &u32| {
            std::fs::read_to_string(format!("/proc/{c}/comm"))
                .is_ok_and(|s| s.trim() == "pookie-ns")
        })
        .unwrap_or(pid)
}

#[test]
fn bundle_is_read_only_and_network_is_off_by_default() {
    for r in common::everyone_with_busybox() {
        let who = r.who;
        let bundle = r.bundle();
        let before = hash_tree(&bundle);
        let out = r.run(&[
            "run", "--baseos", "bb", "--bundle", bundle.to_str().unwrap(), "--", "/bin/sh", "-c",
            "pwd; cat setup.py; touch /buildroot/src/new && echo WROTE; rm -f setup.py && echo REMOVED; true",
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        let text = stdout(&out);
        assert!(text.starts_with("/buildroot/src\nprint('hi')\n"), "{text}");
        assert!(
            !text.contains("WROTE") && !text.contains("REMOVED"),
            "{text}"
        );
        assert_eq!(hash_tree(&bundle), before);

        let out = r.sh_ok("bb", "cat /proc/net/dev | tail -n +3 | cut -d: -f1");
        assert_eq!(
            out.split_whitespace().collect::<Vec<_>>(),
            ["lo"],
            "{who:?}"
        );
        let out = r.run(&[
            "run",
            "--baseos",
            "bb",
            "--network",
            "--",
            "/bin/sh",
            "-c",
            "cat /proc/net/dev | tail -n +3 | wc -l",
        ]);
        let n: u32 = stdout(&out).trim().parse().unwrap();
        assert!(
            n >= 1,
            "{who:?}: the host's interfaces are visible with --network"
        );
    }
}

#[test]
fn nothing_of_pookie_leaks_into_the_sandbox() {
    for r in common::everyone_with_busybox() {
        let who = r.who;
        let out = r.sh_ok(
            "bb",
            "ls /proc/$$/fd; grep NoNewPrivs /proc/self/status; hostname; echo $HOME",
        );
        let lines: Vec<&str> = out.lines().collect();
        let fds: Vec<&str> = lines
            .iter()
            .take_while(|l| l.parse::<u32>().is_ok())
            .copied()
            .collect();
        assert_eq!(fds, ["0", "1", "2"], "{who:?}: {out}");
        assert!(out.contains("NoNewPrivs:\t1"), "{out}");
        assert!(out.contains("pookie-ns\n/root\n"), "{out}");
    }
}

#[test]
fn hostile_archives_are_refused_and_nothing_escapes() {
    for who in everyone() {
        let r = Runner::new(who);
        let dir = r.store.parent().unwrap().join("hostile");
        std::fs::create_dir_all(&dir).unwrap();
        let outside = dir.join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        let cases = hostile_archives(&dir, &outside);
        for (name, path, entry) in &cases {
            let out = r.run(&["load-baseos", path.to_str().unwrap(), "--name", name]);
            assert_eq!(
                out.status.code(),
                Some(2),
                "{who:?} {name}: {}",
                stderr(&out)
            );
            assert!(
                stderr(&out).contains(entry),
                "{who:?} {name}: the message names {entry}: {}",
                stderr(&out)
            );
            assert_eq!(
                std::fs::read_dir(&outside).unwrap().count(),
                0,
                "{who:?} {name}: wrote outside"
            );
            assert!(!Path::new("/tmp/pookie-ns-escaped").exists());
        }
        let list: serde_json::Value = serde_json::from_str(&r.ok(&["--json", "list"])).unwrap();
        assert!(list["baseos"].as_array().unwrap().is_empty(), "{list}");
        assert_eq!(
            std::fs::read_dir(r.store.join("tmp")).unwrap().count(),
            0,
            "half-made import left"
        );
    }
}

/// Archives that try to write outside their root: (name, path, entry the error must name).
fn hostile_archives(dir: &Path, outside: &Path) -> Vec<(String, std::path::PathBuf, String)> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = Vec::new();
    let raw_entry = |b: &mut tar::Builder<std::fs::File>,
                     name: &str,
                     kind: tar::EntryType,
                     link: Option<&str>,
                     data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        {
            let gnu = h.as_gnu_mut().unwrap();
            gnu.name[..name.len()].copy_from_slice(name.as_bytes());
            if let Some(l) = link {
                gnu.linkname[..l.len()].copy_from_slice(l.as_bytes());
            }
        }
        h.set_entry_type(kind);
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append(&h, data).unwrap();
    };
    let outside_s = outside.to_str().unwrap().to_string();
    type Case = (
        &'static str,
        Vec<(String, tar::EntryType, Option<String>)>,
        &'static str,
    );
    let cases: Vec<Case> = vec![
        (
            "dotdot",
            vec![("../pookie-ns-escaped".into(), tar::EntryType::Regular, None)],
            "../pookie-ns-escaped",
        ),
        (
            "absolute",
            vec![(format!("{outside_s}/abs"), tar::EntryType::Regular, None)],
            "/abs",
        ),
        (
            "symlink-then-through",
            vec![
                ("a".into(), tar::EntryType::Symlink, Some(outside_s.clone())),
                ("a/passwd".into(), tar::EntryType::Regular, None),
            ],
            "a/passwd",
        ),
        (
            "hardlink-outside",
            vec![("h".into(), tar::EntryType::Link, Some("/etc/passwd".into()))],
            "/etc/passwd",
        ),
    ];
    for (name, entries, must_name) in cases {
        let path = dir.join(format!("{name}.tar"));
        let mut b = tar::Builder::new(std::fs::File::create(&path).unwrap());
        raw_entry(&mut b, "etc", tar::EntryType::Directory, None, b"");
        for (n, kind, link) in &entries {
            raw_entry(&mut b, n, *kind, link.as_deref(), b"pwned\n");
        }
        b.finish().unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        out.push((name.to_string(), path, must_name.to_string()));
    }
    out
}

#[test]
fn clear_errors_for_bad_input() {
    if !common::require(common::is_root(), "the sandbox tests run as root") {
        return;
    }
    let r = Runner::new(Who::Root);
    let out = r.run(&["run", "--", "true"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("load-baseos"), "{}", stderr(&out));

    let out = r.run(&["cleanup", "nonsense"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("all, baseos, workspaces"),
        "{}",
        stderr(&out)
    );

    let out = r.run(&["load-baseos", "/nonexistent.tar"]);
    assert_eq!(out.status.code(), Some(2));

    let junk = r.store.parent().unwrap().join("junk.tar.gz");
    std::fs::write(&junk, vec![0x1fu8, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 1, 2, 3]).unwrap();
    let out = r.run(&["load-baseos", junk.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(
        std::fs::read_dir(r.store.join("baseos")).unwrap().count(),
        0
    );

    r.load_busybox("tar", "one");
    r.load_busybox("tar.gz", "two");
    let out = r.run(&["run", "--", "true"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("one") && stderr(&out).contains("two"),
        "{}",
        stderr(&out)
    );
    let out = r.run(&[
        "load-baseos",
        fixtures().archive("tar").to_str().unwrap(),
        "--name",
        "one",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("already loaded"));

    r.write_config("work_dir = \"/tmp\"\nmax_entries = 3\n");
    let out = r.run(&["list"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("config.toml:2:1") && stderr(&out).contains("max_entries"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn cleanup_all_leaves_nothing_the_user_cannot_delete() {
    for r in common::everyone_with_busybox() {
        let who = r.who;
        // The hard case: a directory of another user, closed to everyone else, with a file in it.
        // In single-uid mode only one id exists, so the chown is refused and the case cannot be
        // made; elsewhere it must be in the committed layer before cleanup.
        r.commit(
            "bb",
            "mkdir -p /var/x && chown 33:33 /var/x && chmod 700 /var/x && touch /var/x/f; true",
        );
        let x = r.store.join("instances/stable/bb/amd64/layers/0001/var/x");
        if who != Who::SingleUser {
            use std::os::unix::fs::MetadataExt;
            let m = std::fs::symlink_metadata(&x).unwrap();
            let user_uid = who.user().map_or(0, |u| {
                nix::unistd::User::from_name(u)
                    .unwrap()
                    .unwrap()
                    .uid
                    .as_raw()
            });
            assert!(
                m.uid() != user_uid && m.mode() & 0o777 == 0o700,
                "{who:?}: the hard case was not made (uid {}, mode {:o})",
                m.uid(),
                m.mode()
            );
            assert!(x.join("f").exists(), "{who:?}");
        }
        r.ok(&["cleanup", "all"]);
        for d in ["baseos", "instances", "workspaces"] {
            assert_eq!(
                std::fs::read_dir(r.store.join(d)).unwrap().count(),
                0,
                "{who:?}: {d} not empty"
            );
        }
        if let Some(user) = who.user() {
            let st = std::process::Command::new("runuser")
                .args(["-u", user, "--", "rm", "-rf"])
                .arg(&r.store)
                .status()
                .unwrap();
            assert!(
                st.success() && !r.store.exists(),
                "{who:?}: store not removable by its user"
            );
        }
    }
}

#[test]
fn config_can_force_single_uid_mode() {
    if !common::require(common::is_root(), "needs root to switch users") {
        return;
    }
    let r = Runner::new(Who::SubUser);
    r.write_config("id_map = \"single\"\n");
    r.load_busybox("tar.zst", "bb");
    let out = r.ok(&["list"]);
    assert!(out.contains("single-uid"), "{out}");
    assert_eq!(
        r.sh_ok("bb", "cat /proc/self/uid_map")
            .split_whitespace()
            .collect::<Vec<_>>()[..3],
        [
            "0",
            &nix::unistd::User::from_name(common::SUB_USER)
                .unwrap()
                .unwrap()
                .uid
                .to_string(),
            "1"
        ]
    );
}

#[test]
fn stdin_passes_through_and_a_tty_stays_a_tty() {
    use std::io::Write;
    for r in common::everyone_with_busybox() {
        let who = r.who;
        let mut child = r
            .sh_command("bb", "tr a-z A-Z")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"piped input\n")
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert_eq!(stdout(&out), "PIPED INPUT\n", "{who:?}");

        // Under a pseudo-terminal (script(1)), the command sees a terminal on 0, 1 and 2.
        let cmd = r.sh_command("bb", "for fd in 0 1 2; do [ -t $fd ] && echo tty$fd; done");
        let line = std::iter::once(cmd.get_program())
            .chain(cmd.get_args())
            .map(|a| format!("'{}'", a.to_string_lossy()))
            .collect::<Vec<_>>()
            .join(" ");
        let out = std::process::Command::new("script")
            .args(["-qec", &line, "/dev/null"])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let text = stdout(&out).replace('\r', "");
        assert!(text.contains("tty0\ntty1\ntty2"), "{who:?}: {text}");
    }
}
