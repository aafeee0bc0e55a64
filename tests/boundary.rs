//! The sandbox boundary, attacked from inside: every escape attempt SECURITY.md lists, run as
//! root, as a user with a subuid range and as one without, against the busybox fixture. A script
//! prints `ESCAPE: <what>` for each attempt that got through and `held: <what>` for each that was
//! stopped, so a failure names the hole and a script that stopped early cannot pass.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{fixtures, stale_pids_cgroups, stderr, stdout, Runner, Who};
use pookie_ns::confine;

/// `check NAME CMD...`: CMD must fail. The shell's own redirections are in CMD's subshell.
const PRELUDE: &str = r#"
check() { n=$1; shift; if ( eval "$*" ) >/dev/null 2>&1; then echo "ESCAPE: $n"; else echo "held: $n"; fi; }
"#;

/// Runs `script` (after [`PRELUDE`]) with the bundle at /buildroot/src; returns the held checks
/// and the other lines the script printed.
fn attempts(r: &Runner, bundle: &Path, script: &str) -> (Vec<String>, Vec<String>) {
    let full = format!("{PRELUDE}\n{script}\necho DONE");
    let out = r.run(&[
        "run",
        "--baseos",
        "bb",
        "--bundle",
        bundle.to_str().unwrap(),
        "--",
        "/bin/sh",
        "-c",
        &full,
    ]);
    let text = stdout(&out);
    let escapes: Vec<&str> = text.lines().filter(|l| l.starts_with("ESCAPE")).collect();
    assert!(escapes.is_empty(), "[{:?}] {escapes:?}\n{text}", r.who);
    assert!(
        out.status.success() && text.ends_with("DONE\n"),
        "[{:?}] the script did not finish: {}\n{text}",
        r.who,
        stderr(&out)
    );
    let (held, other): (Vec<&str>, Vec<&str>) = text.lines().partition(|l| l.starts_with("held: "));
    (
        held.iter()
            .map(|l| l["held: ".len()..].to_string())
            .collect(),
        other.iter().map(|l| l.to_string()).collect(),
    )
}

#[test]
fn host_files_processes_and_devices_are_out_of_reach() {
    let marker = format!("/tmp/pookie-ns-boundary-marker-{}", std::process::id());
    if !common::require(common::is_root(), "the boundary tests run as root") {
        return;
    }
    std::fs::write(&marker, "secret").unwrap();
    // The disk the store lives on, as a device number to mknod.
    let dev = nix::sys::stat::stat("/tmp").unwrap().st_dev;
    let (major, minor) = (nix::sys::stat::major(dev), nix::sys::stat::minor(dev));
    let host_pid = std::process::id();
    let mut tried = 0;
    for r in common::everyone_with_busybox() {
        let who = r.who;
        let bundle = r.bundle();
        let before = common::hash_tree(&bundle);
        let script = format!(
            r#"
check host-marker "cat {marker}"
for p in /proc/[0-9]*; do check "proc-root-$p" "cat $p/root{marker}"; done
check proc-1-root-store "ls /proc/1/root{store}"
check host-pid "ls /proc/{host_pid}/"
check host-pid-environ "cat /proc/{host_pid}/environ"
check store "ls {store}"
check sysfs-present "test -e /sys/fs/cgroup/cgroup.procs || test -e /sys/fs/cgroup/pids/tasks"
mkdir -p /tmp/m
check mount-sysfs "mount -t sysfs sysfs /tmp/m"
check mount-cgroup2 "mount -t cgroup2 none /tmp/m"
check mount-cgroup1 "mount -t cgroup -o pids none /tmp/m"
check mount-proc "mount -t proc proc /tmp/m"
check mount-tmpfs "mount -t tmpfs none /tmp/m"
check nested-userns-proc "unshare -U -r -m -p -f --mount-proc true"
check nested-userns-cgroup2 "unshare -U -r -m mount -t cgroup2 none /tmp/m"
check nested-userns-sysfs "unshare -U -r -m -n mount -t sysfs none /tmp/m"
check mknod-disk "mknod /tmp/disk b {major} {minor}"
check mknod-disk-in-root "mknod /root/disk b {major} {minor}"
check host-disk-nodes "ls /dev/vda /dev/sda /dev/nvme0n1 /dev/mem /dev/kmem /dev/port /dev/kmsg /dev/loop0"
check dev-extra "test \"\$(ls /dev | tr '\n' ' ')\" != 'fd full null ptmx pts random shm stderr stdin stdout tty urandom zero '"
check core-pattern "exec 3>>/proc/sys/kernel/core_pattern"
check drop-caches "exec 3>>/proc/sys/vm/drop_caches"
check sysrq "test -e /proc/sysrq-trigger && exec 3>>/proc/sysrq-trigger"
check kcore "head -c 1 /proc/kcore | grep -q ."
check proc-keys "grep -q . /proc/keys"
check umount-proc-sys "umount /proc/sys"
check bundle-write "touch /buildroot/src/new"
check bundle-rm "rm /buildroot/src/setup.py"
check bundle-remount "mount -o remount,rw,bind /buildroot/src && touch /buildroot/src/new"
check bundle-umount "umount /buildroot/src"
check bundle-nested-remount "unshare -U -r -m sh -c 'mount -o remount,rw,bind /buildroot/src && touch /buildroot/src/new'"
check bundle-nested-umount "unshare -U -r -m umount -l /buildroot/src"
check no-new-privs "! grep -q 'NoNewPrivs:.1' /proc/self/status"
check fd-leak "test \"\$(ls /proc/$$/fd | tr '\n' ' ')\" != '0 1 2 '"
check net-interfaces "test \"\$(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | tr '\n' ' ')\" != 'lo '"
check hostname "test \"\$(hostname)\" != pookie-ns"
check sethostname "hostname evil"
# The nested-namespace attempts above mean something only if nesting works.
unshare -U -r -m true && echo nesting-works
"#,
            store = r.store.display()
        );
        let (held, other) = attempts(&r, &bundle, &script);
        assert!(
            other.iter().any(|l| l == "nesting-works"),
            "[{who:?}] nested user namespaces fail inside: the nested attempts prove nothing"
        );
        // Every attempt ran: 36 named checks plus one per visible process.
        assert!(held.len() >= 36, "[{who:?}] only {} checks ran", held.len());
        tried += held.len();
        assert_eq!(
            common::hash_tree(&bundle),
            before,
            "[{who:?}] bundle changed"
        );
    }
    eprintln!("escape attempts tried: {tried}");
    std::fs::remove_file(&marker).unwrap();
}

#[test]
fn the_capability_set_is_the_documented_one() {
    let mask = confine::kept_capability_mask();
    let security = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/SECURITY.md"))
        .expect("SECURITY.md documents the capability set");
    assert!(
        security.contains(&format!("{mask:016x}")),
        "the mask {mask:016x}"
    );
    for cap in confine::KEPT_CAPABILITIES {
        assert!(
            security.contains(&cap.to_string()),
            "SECURITY.md does not list {cap}"
        );
    }
    for r in common::everyone_with_busybox() {
        let who = r.who;
        let out = r.sh_ok(
            "bb",
            "grep -E '^Cap(Inh|Prm|Eff|Bnd|Amb)' /proc/self/status",
        );
        let caps: Vec<(&str, u64)> = out
            .lines()
            .map(|l| {
                let (k, v) = l.split_once(':').unwrap();
                (k, u64::from_str_radix(v.trim(), 16).unwrap())
            })
            .collect();
        assert_eq!(
            caps,
            [
                ("CapInh", 0),
                ("CapPrm", mask),
                ("CapEff", mask),
                ("CapBnd", mask),
                ("CapAmb", 0)
            ],
            "{who:?}"
        );
    }
}

#[test]
fn device_nodes_of_the_base_os_do_not_open() {
    // A base OS imported as root keeps its device nodes; one naming the host's disk must not
    // open inside (overlayfs mounted in a user namespace is nodev).
    if !common::require(common::is_root(), "device nodes are imported by root only") {
        return;
    }
    let r = Runner::new(Who::Root);
    let dev = nix::sys::stat::stat("/tmp").unwrap().st_dev;
    let (major, minor) = (nix::sys::stat::major(dev), nix::sys::stat::minor(dev));
    let tmp = r.store.parent().unwrap();
    let archive = tmp.join("with-disk.tar");
    let st = std::process::Command::new("sh")
        .arg("-ec")
        .arg(format!(
            "cp {fixture} {archive}; mkdir -p {t}/d/opt; mknod {t}/d/opt/disk b {major} {minor}
             mknod {t}/d/opt/mem c 1 1
             tar -rf {archive} -C {t}/d ./opt",
            fixture = fixtures().archive("tar").display(),
            archive = archive.display(),
            t = tmp.display()
        ))
        .status()
        .unwrap();
    assert!(st.success());
    r.ok(&["load-baseos", archive.to_str().unwrap(), "--name", "bb"]);
    let bundle = r.bundle();
    let (held, other) = attempts(
        &r,
        &bundle,
        "test -b /opt/disk && test -c /opt/mem && echo nodes-imported
         check read-disk \"head -c 1 /opt/disk | grep -q .\"
         check read-disk-dd \"dd if=/opt/disk of=/dev/null bs=512 count=1\"
         check read-mem \"head -c 1 /opt/mem\"
         check write-disk \"dd if=/dev/zero of=/opt/disk bs=512 count=0 seek=0 conv=notrunc\"",
    );
    assert_eq!(held.len(), 4, "{held:?}");
    assert!(other.iter().any(|l| l == "nodes-imported"), "{other:?}");
}

fn sleepers_on_host(tag: &str) -> Vec<String> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(tag) {
                found.push(format!("{}: {cmd}", e.file_name().to_string_lossy()));
            }
        }
    }
    found
}

#[test]
fn processes_left_behind_die_with_the_command() {
    for r in common::everyone_with_busybox() {
        let who = r.who;
        let tag = format!("39{}", std::process::id() % 10_000);
        let started = Instant::now();
        // Background, double-forked (reparented to pid 1), setsid'd and nohup'd sleepers.
        let out = r.sh_ok(
            "bb",
            &format!(
                "sleep {tag}1 & (sleep {tag}2 &) ; setsid sleep {tag}3 & nohup sleep {tag}4 >/dev/null 2>&1 &
                 trap '' HUP; echo started"
            ),
        );
        assert!(out.contains("started"));
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{who:?}: the run waited for its background processes"
        );
        // The kill of the sandbox's processes is asynchronous: wait for it, with a bound.
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut left = sleepers_on_host(&format!("sleep {tag}"));
        while !left.is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
            left = sleepers_on_host(&format!("sleep {tag}"));
        }
        assert!(left.is_empty(), "{who:?}: left running: {left:?}");
    }
}

/// Tasks on the whole host right now (the 4th field of /proc/loadavg: "running/total"). Exact at
/// one instant, unlike a walk of /proc while processes come and go.
fn host_tasks() -> u64 {
    let s = std::fs::read_to_string("/proc/loadavg").unwrap();
    s.split_whitespace()
        .nth(3)
        .unwrap()
        .split('/')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn a_fork_bomb_is_contained() {
    let max = confine::max_processes();
    for r in common::everyone_with_busybox() {
        let who = r.who;
        let baseline = host_tasks();
        let started = Instant::now();
        // Every process of the bomb forks two more and waits for them forever: the population
        // grows until forks fail, then stays, until the command ends (5 s) and takes it along.
        let mut child = r
            .command(&[
                "run",
                "--baseos",
                "bb",
                "--",
                "/bin/sh",
                "-c",
                "grep pids /proc/self/cgroup; ulimit -u
                 sleep 5 & S=$!
                 b() { b & b & wait; }
                 b &
                 wait $S",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // The host must stay usable: sample its task count, a bounded wait, then kill.
        let mut peak = 0;
        let deadline = Instant::now() + Duration::from_secs(90);
        while child.try_wait().unwrap().is_none() {
            peak = peak.max(host_tasks());
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("{who:?}: the fork bomb was not contained within 90 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let out = child.wait_with_output().unwrap();
        let text = stdout(&out);
        let grown = peak.saturating_sub(baseline);
        eprintln!(
            "[{who:?}] {:.1?}, {grown} tasks more at the peak\n{text}",
            started.elapsed()
        );
        assert_eq!(
            out.status.code(),
            Some(0),
            "{who:?}: {}",
            stderr(&out).lines().next().unwrap_or("")
        );
        assert!(
            stderr(&out).contains("can't fork"),
            "{who:?}: the bomb never hit a limit"
        );
        // The other tests running meanwhile start a few hundred processes at most.
        assert!(grown <= max + 1000, "{who:?}: {grown} tasks > {max}");
        assert!(grown >= 1000, "{who:?}: the bomb did not run: {grown}");
        match who {
            // The host's root is exempt from RLIMIT_NPROC: a pids cgroup holds it.
            Who::Root => assert!(
                text.contains("pookie-ns-"),
                "{who:?}: no pids cgroup: {text}"
            ),
            _ => assert!(
                text.lines().any(|l| l == max.to_string()),
                "{who:?}: ulimit -u: {text}"
            ),
        }
        // Its cgroup is gone: a pookie-ns-<pid> cgroup whose helper has exited may live for the
        // moment between the helper's exit and its removal, not longer.
        let mut stale = Vec::new();
        for _ in 0..20 {
            stale = stale_pids_cgroups();
            if stale.is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(stale.is_empty(), "{who:?}: pids cgroups left: {stale:?}");
    }
}
