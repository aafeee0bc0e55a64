//! A signal to `pookie-ns build` stops the whole build (issue 21): SIGTERM or SIGINT to the main
//! process only, and SIGINT to its process group (Ctrl-C), during an emulated aarch64 build.
//! Within two seconds no process the build started is left (workers, sandboxes, QEMU), no
//! workspace remains, the report says "interrupted", and the exit status is 128 + the signal.
//! And a SIGTERM to `load-baseos` while mmdebstrap builds a base OS (natively, and under QEMU in
//! pookie-ns's user namespace) leaves no mmdebstrap behind and no base OS in the store.

mod common;

use std::os::unix::process::CommandExt;
use std::time::{Duration, Instant};

use common::{require, Who};

/// Every descendant of `pid` (by the parent links of /proc/*/stat).
fn descendants(pid: i32) -> Vec<i32> {
    let mut parent_of = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(p) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
            continue;
        };
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // A zombie has exited already.
        if fields.first() == Some(&"Z") {
            continue;
        }
        if let Some(pp) = fields.get(1).and_then(|f| f.parse::<i32>().ok()) {
            parent_of.push((p, pp));
        }
    }
    let mut out = Vec::new();
    let mut frontier = vec![pid];
    while let Some(p) = frontier.pop() {
        for (child, parent) in &parent_of {
            if *parent == p && !out.contains(child) {
                out.push(*child);
                frontier.push(*child);
            }
        }
    }
    out
}

fn alive(pids: &[i32]) -> Vec<String> {
    pids.iter()
        .filter_map(|p| {
            let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).ok()?;
            let state = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .next()?
                .to_string();
            (state != "Z").then(|| {
                let cmd = std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
                format!("{p}: {}", String::from_utf8_lossy(&cmd).replace('\0', " "))
            })
        })
        .collect()
}

/// An `alive` line of apt at work: apt-get, or one of its fetch methods (`/usr/lib/apt/methods/http`).
fn is_apt(line: &str) -> bool {
    let cmd = line.split_once(": ").map_or(line, |(_, c)| c);
    cmd.split_whitespace().next().is_some_and(|exe| {
        exe.ends_with("/apt-get") || exe == "apt-get" || exe.contains("/apt/methods/")
    })
}

enum Send {
    /// To the main process only.
    Main(nix::sys::signal::Signal),
    /// To its whole process group, as a terminal's Ctrl-C.
    Group(nix::sys::signal::Signal),
}

#[test]
fn signals_stop_the_whole_build_and_report_it_interrupted() {
    let Some(r) =
        common::root_runner_with_debian("the signal tests run as root", &["debian-bookworm-arm64"])
    else {
        return;
    };
    // A branch with no package sources: its refresh takes seconds even under QEMU.
    std::fs::create_dir_all(r.config.join("source_lists")).unwrap();
    std::fs::write(r.config.join("source_lists/none.list"), "").unwrap();
    let project = r.store.parent().unwrap().join("slow");
    std::fs::create_dir_all(&project).unwrap();
    std::fs::write(
        project.join("pyproject.toml"),
        "[project]\nname = \"slow\"\nversion = \"1\"\n",
    )
    .unwrap();
    r.ok(&["load-baseos", "--arch", "arm64"]);

    for (send, code) in [
        (Send::Main(nix::sys::signal::Signal::SIGTERM), 143),
        (Send::Main(nix::sys::signal::Signal::SIGINT), 130),
        (Send::Group(nix::sys::signal::Signal::SIGINT), 130),
    ] {
        let mut cmd = r.command(&[
            "--json",
            "build",
            project.to_str().unwrap(),
            "--branch",
            "none",
            "--target",
            "aarch64",
            "--python",
            "3.11",
            "--mode",
            "emulate",
            "--build",
            "echo pookie-ns-test-started; sleep 600",
        ]);
        cmd.stdout(std::process::Stdio::piped());
        cmd.stderr(std::process::Stdio::null());
        // Its own process group, so that a group signal reaches the build only.
        cmd.process_group(0);
        let log = r
            .store
            .join("output/none/slow/cp311-manylinux_aarch64/build.log");
        // The previous round's log must not pass for this one's.
        let _ = std::fs::remove_file(&log);
        let mut child = cmd.spawn().unwrap();
        let main = child.id() as i32;
        // Readiness: the emulated build command has started.
        let deadline = Instant::now() + Duration::from_secs(300);
        while !std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("pookie-ns-test-started")
        {
            assert!(
                Instant::now() < deadline,
                "the build did not start in 5 minutes"
            );
            assert!(child.try_wait().unwrap().is_none(), "build ended early");
            std::thread::sleep(Duration::from_millis(100));
        }
        let tree = descendants(main);
        assert!(
            alive(&tree).iter().any(|p| p.contains("qemu-aarch64")),
            "QEMU runs the build: {:?}",
            alive(&tree)
        );
        let sent = Instant::now();
        match send {
            Send::Main(sig) => {
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(main), sig).unwrap()
            }
            Send::Group(sig) => {
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(-main), sig).unwrap()
            }
        }
        let status = loop {
            if let Some(st) = child.try_wait().unwrap() {
                break st;
            }
            assert!(
                sent.elapsed() < Duration::from_secs(5),
                "build still running 5 s after the signal"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let took = sent.elapsed();
        assert_eq!(status.code(), Some(code), "exit status after {took:?}");
        assert!(took < Duration::from_secs(2), "took {took:?}");
        assert!(alive(&tree).is_empty(), "left running: {:?}", alive(&tree));
        let workspaces = std::fs::read_dir(r.store.join("workspaces"))
            .map(|d| d.count())
            .unwrap_or(0);
        assert_eq!(workspaces, 0, "no workspace remains");
        let mut stdout = String::new();
        std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut stdout).unwrap();
        let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(report["targets"][0]["result"], "interrupted", "{report}");
        eprintln!("stopped in {took:?} with {code}");
    }
}

#[test]
fn a_signal_during_a_base_os_build_leaves_no_mmdebstrap() {
    if !require(common::is_root(), "the signal tests run as root") {
        return;
    }
    for arch in ["amd64", "arm64"] {
        let r = common::Runner::new(Who::Root);
        // An empty per-user cache and no tarball in the store: mmdebstrap must run.
        let cache = r.store.parent().unwrap().join("cache");
        let mut cmd = r.command(&["load-baseos", "debian-bookworm", "--arch", arch]);
        cmd.env("XDG_CACHE_HOME", &cache);
        cmd.stdout(std::process::Stdio::null());
        cmd.stderr(std::process::Stdio::null());
        cmd.process_group(0);
        let mut child = cmd.spawn().unwrap();
        let main = child.id() as i32;
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut tree = loop {
            let tree = descendants(main);
            if alive(&tree).iter().any(|p| p.contains("mmdebstrap")) {
                break tree;
            }
            assert!(
                Instant::now() < deadline,
                "{arch}: mmdebstrap did not start in 60 s"
            );
            assert!(child.try_wait().unwrap().is_none(), "{arch}: ended early");
            std::thread::sleep(Duration::from_millis(50));
        };
        // Let it get under way (apt running: its downloads), then stop pookie-ns alone.
        let deadline = Instant::now() + Duration::from_secs(60);
        while !alive(&tree).iter().any(|p| is_apt(p)) {
            assert!(
                Instant::now() < deadline,
                "{arch}: apt did not start under mmdebstrap in 60 s"
            );
            assert!(child.try_wait().unwrap().is_none(), "{arch}: ended early");
            std::thread::sleep(Duration::from_millis(50));
            for p in descendants(main) {
                if !tree.contains(&p) {
                    tree.push(p);
                }
            }
        }
        let sent = Instant::now();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(main),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        let status = child.wait().unwrap();
        assert_ne!(status.code(), Some(0), "{arch}");
        // mmdebstrap removes its temporary directory (a partial root filesystem) as it goes.
        while !alive(&tree).is_empty() {
            assert!(
                sent.elapsed() < Duration::from_secs(20),
                "{arch}: left running 20 s after SIGTERM: {:?}",
                alive(&tree)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!(
            "{arch}: every process gone {:?} after SIGTERM",
            sent.elapsed()
        );
        let list = r.ok(&["list"]);
        assert!(!list.contains("debian-bookworm"), "{arch}: {list}");
        assert!(
            !cache.join("pookie-ns").exists()
                || common::tree_lines(&cache, |p, _| p.display().to_string())
                    .iter()
                    .all(|l| !l.contains(".tar")),
            "{arch}: nothing cached"
        );
    }
}
