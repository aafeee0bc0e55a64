//! Package files of any owner install for every identity (issue 15). In single-uid mode only
//! uid 0 is mapped, so a change of owner to any other id would fail with EINVAL and dpkg with it;
//! the sandbox makes such changes succeed as no-ops and keeps apt from switching to `_apt`
//! (src/single_uid.rs). The Debian tests here do not depend on what the mirror published this
//! week: the package is built by the test (`dpkg-deb --build`), with a `root:shadow` file, a
//! setgid program and an `_apt` directory, and served from a local repository — through `file:`
//! for the install, over HTTP on 127.0.0.1 for the branch refreshes that upgrade it.

mod common;

use std::io::BufRead;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use common::{debian_runner, everyone, fixtures, require, stderr, stdout, Runner, Who};

/// chown to an unmapped id: a no-op that succeeds in single-uid mode, a real change elsewhere;
/// also through QEMU, whose host-side chown the filter judges.
#[test]
fn chown_to_any_id_succeeds_and_keeps_what_the_map_can_keep() {
    for who in everyone() {
        let r = Runner::new(who);
        r.load_busybox("tar", "bb");
        let script =
            "touch /tmp/f && chown 42:42 /tmp/f && chgrp 7 /tmp/f && stat -c %u:%g /tmp/f \
                      && chown 0:0 /tmp/f && echo ok";
        let out = r.sh("bb", script);
        let expected = if who == Who::SingleUser {
            "0:0\nok\n"
        } else {
            "42:7\nok\n"
        };
        assert_eq!(stdout(&out), expected, "{who:?}: {}", stderr(&out));
        assert_eq!(out.status.code(), Some(0));

        // A chown the kernel itself refuses for another reason still fails (ENOENT).
        let out = r.sh("bb", "chown 42 /nonexistent");
        assert_ne!(out.status.code(), Some(0), "{who:?}");

        let Some(arm64) = fixtures().foreign("arm64") else {
            require(
                false,
                "busybox-arm64 in /var/cache/pookie-ns-test (scripts/setup-host)",
            );
            return;
        };
        r.ok(&["load-baseos", arm64.to_str().unwrap(), "--name", "bb-arm64"]);
        let out = r.run(&[
            "run",
            "--baseos",
            "bb-arm64",
            "--",
            "/bin/sh",
            "-c",
            "uname -m; touch /tmp/f && chown 42:42 /tmp/f && stat -c %u:%g /tmp/f",
        ]);
        let expected = if who == Who::SingleUser {
            "aarch64\n0:0\n"
        } else {
            "aarch64\n42:42\n"
        };
        assert_eq!(stdout(&out), expected, "{who:?}: {}", stderr(&out));
    }
}

/// The test package `pookie-test` at `version`, built with dpkg-deb from a tree whose files
/// carry the owners the package should install: `root:shadow` 0640, a setgid `root:shadow`
/// program, and a 0700 directory of `_apt` (the host's and the rootfs's `_apt` differ in
/// number: dpkg resolves the names in the tar headers inside the root filesystem).
fn build_package(dir: &Path, version: &str) -> PathBuf {
    let tree = dir.join(format!("tree-{version}"));
    let sh = format!(
        "set -e
         rm -rf {t}; mkdir -p {t}/DEBIAN {t}/usr/lib/pookie-test {t}/usr/bin {t}/var/lib/pookie-test {t}/usr/share/pookie-test
         printf 'Package: pookie-test\\nVersion: {version}\\nArchitecture: all\\nMaintainer: pookie-ns tests <tests@pookie-ns.invalid>\\nDescription: files of other owners, for the pookie-ns tests\\n' > {t}/DEBIAN/control
         echo secret-{version} > {t}/usr/lib/pookie-test/secret
         printf '#!/bin/sh\\necho sgid-{version}\\n' > {t}/usr/bin/pookie-test-sgid
         echo {version} > {t}/usr/share/pookie-test/version
         chown root:shadow {t}/usr/lib/pookie-test/secret {t}/usr/bin/pookie-test-sgid
         chmod 0640 {t}/usr/lib/pookie-test/secret
         chmod 2755 {t}/usr/bin/pookie-test-sgid
         chown _apt:root {t}/var/lib/pookie-test
         chmod 0700 {t}/var/lib/pookie-test
         dpkg-deb -Zgzip --build {t} {dir}/pookie-test_{version}_all.deb >/dev/null
         rm -rf {t}",
        t = tree.display(),
        dir = dir.display(),
    );
    let st = Command::new("sh").arg("-c").arg(&sh).status().unwrap();
    assert!(st.success(), "building the test package {version}");
    dir.join(format!("pookie-test_{version}_all.deb"))
}

/// Makes `dir` a flat apt repository holding exactly `debs` (Packages + Release).
fn publish(dir: &Path, debs: &[PathBuf]) {
    use sha2::{Digest, Sha256};
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "deb") {
            std::fs::remove_file(p).unwrap();
        }
    }
    let mut packages = String::new();
    for deb in debs {
        let name = deb.file_name().unwrap().to_str().unwrap();
        let dest = dir.join(name);
        std::fs::copy(deb, &dest).unwrap();
        let bytes = std::fs::read(&dest).unwrap();
        let control = Command::new("dpkg-deb")
            .arg("-f")
            .arg(&dest)
            .output()
            .unwrap();
        assert!(control.status.success());
        packages.push_str(String::from_utf8_lossy(&control.stdout).trim_end());
        packages.push_str(&format!(
            "\nFilename: ./{name}\nSize: {}\nSHA256: {:x}\n\n",
            bytes.len(),
            Sha256::digest(&bytes)
        ));
    }
    std::fs::write(dir.join("Packages"), &packages).unwrap();
    let release = format!(
        "Origin: pookie-ns-test\nLabel: pookie-ns-test\nSuite: local\nCodename: local\n\
         Date: Thu, 01 Jan 2026 00:00:00 UTC\nArchitectures: amd64 all\nSHA256:\n {:x} {} Packages\n",
        Sha256::digest(packages.as_bytes()),
        packages.len()
    );
    std::fs::write(dir.join("Release"), release).unwrap();
    // apt asks with If-Modified-Since and http.server compares whole seconds of the files'
    // mtimes: two publications within one second would look unchanged. Each one gets a later
    // time than every one before.
    static PUBLISHED: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);
    let n = PUBLISHED.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let when = format!("@{}", 1_767_225_600 + 60 * n);
    for name in ["Packages", "Release"] {
        let st = Command::new("touch")
            .args(["-d", &when])
            .arg(dir.join(name))
            .status()
            .unwrap();
        assert!(st.success());
    }
    let st = Command::new("chmod")
        .args(["-R", "a+rX"])
        .arg(dir)
        .status()
        .unwrap();
    assert!(st.success());
}

/// `python3 -m http.server` on 127.0.0.1, a free port; killed on drop.
struct HttpServer {
    child: Child,
    port: u16,
}

impl HttpServer {
    fn start(dir: &Path) -> HttpServer {
        let mut child = Command::new("python3")
            .args([
                "-u",
                "-m",
                "http.server",
                "--bind",
                "127.0.0.1",
                "0",
                "--directory",
            ])
            .arg(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // "Serving HTTP on 127.0.0.1 port 40123 (http://127.0.0.1:40123/) ..."
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .split_whitespace()
            .skip_while(|w| *w != "port")
            .nth(1)
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("http.server said: {line}"));
        HttpServer { child, port }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the installed package looks like: owners, modes, the version file and dpkg's status.
const INSPECT: &str =
    "stat -c '%n %U:%G %a' /usr/lib/pookie-test/secret /usr/bin/pookie-test-sgid \
                       /var/lib/pookie-test; cat /usr/share/pookie-test/version; pookie-test-sgid; \
                       dpkg-query -W -f '${Version} ${db:Status-Abbrev}\\n' pookie-test";

fn expected(who: Who, version: &str) -> String {
    let (shadow, apt) = if who == Who::SingleUser {
        ("root:root", "root:root")
    } else {
        ("root:shadow", "_apt:root")
    };
    format!(
        "/usr/lib/pookie-test/secret {shadow} 640\n/usr/bin/pookie-test-sgid {shadow} 2755\n\
         /var/lib/pookie-test {apt} 700\n{version}\nsgid-{version}\n{version} ii \n"
    )
}

#[test]
fn packages_with_other_owners_install_and_upgrade_for_every_identity() {
    if !require(
        Command::new("dpkg-deb").arg("--version").output().is_ok(),
        "dpkg-deb on the host",
    ) {
        return;
    }
    let work = tempfile::Builder::new()
        .prefix("pookie-ns-repo-")
        .tempdir_in("/tmp")
        .unwrap();
    std::fs::set_permissions(work.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let debs: Vec<PathBuf> = ["1.0", "2.0", "3.0"]
        .iter()
        .map(|v| build_package(work.path(), v))
        .collect();
    // The file: repository the install reads (the bundle) and the one HTTP serves (refreshes).
    let file_repo = work.path().join("file-repo");
    let http_repo = work.path().join("http-repo");
    std::fs::create_dir_all(&file_repo).unwrap();
    std::fs::create_dir_all(&http_repo).unwrap();
    publish(&file_repo, &debs[..1]);
    publish(&http_repo, &debs[..1]);
    let server = HttpServer::start(&http_repo);

    for who in everyone() {
        let Some(r) = debian_runner(who) else { return };
        // A branch of the local repository only: its refreshes need no mirror.
        let lists = r.config.join("source_lists");
        std::fs::create_dir_all(&lists).unwrap();
        std::fs::write(
            lists.join("local.list"),
            format!("deb [trusted=yes] http://127.0.0.1:{}/ ./\n", server.port),
        )
        .unwrap();
        let _ = Command::new("chmod")
            .args(["-R", "a+rX"])
            .arg(&r.config)
            .status();
        r.write_config("refresh_interval = \"0s\"\n");
        publish(&http_repo, &debs[..1]);

        // Installed with apt from the file: repository, committed into the instance.
        let install = "echo 'deb [trusted=yes] file:/buildroot/src ./' > /tmp/local.list \
                       && apt-get -o Dir::Etc::SourceList=/tmp/local.list -o Dir::Etc::SourceParts=/nonexistent update \
                       && apt-get -o Dir::Etc::SourceList=/tmp/local.list -o Dir::Etc::SourceParts=/nonexistent \
                          install -y pookie-test";
        let out = r.run(&[
            "run",
            "--branch",
            "local",
            "--commit",
            "--bundle",
            file_repo.to_str().unwrap(),
            "--",
            "sh",
            "-c",
            install,
        ]);
        assert_eq!(out.status.code(), Some(0), "{who:?}: {}", stderr(&out));
        let out = r.run(&["run", "--branch", "local", "--", "sh", "-c", INSPECT]);
        assert_eq!(
            stdout(&out),
            expected(who, "1.0"),
            "{who:?}: {}",
            stderr(&out)
        );

        // Refreshes (apt-get update && dist-upgrade, committed) upgrade it, twice: the second
        // time over files that live in an instance layer, not the base.
        for (n, version) in [(2, "2.0"), (3, "3.0")] {
            publish(&http_repo, &debs[..n]);
            let out = r.run(&["run", "--branch", "local", "--", "sh", "-c", INSPECT]);
            assert!(
                stderr(&out).contains("refreshed instance local/debian-bookworm/amd64"),
                "{who:?}: {}",
                stderr(&out)
            );
            assert_eq!(
                stdout(&out),
                expected(who, version),
                "{who:?}: {}",
                stderr(&out)
            );
            let log = std::fs::read_to_string(
                r.store
                    .join("instances/local/debian-bookworm/amd64/refresh.log"),
            )
            .unwrap();
            assert!(
                log.contains(&format!("Unpacking pookie-test ({version})")),
                "{who:?}: {log}"
            );
        }
    }
}

/// The issue's own reproduction against the real mirror: as the single-uid user, apt updates
/// and installs a package whose files belong to group shadow, in a plain `run`.
#[test]
fn single_uid_apt_installs_from_the_mirror_in_a_plain_run() {
    if !everyone().contains(&Who::SingleUser) {
        return;
    }
    let Some(r) = debian_runner(Who::SingleUser) else {
        return;
    };
    let out = r.run(&[
        "run",
        "--network",
        "--",
        "sh",
        "-c",
        "apt-get update && apt-get install -y --reinstall libpam-modules-bin \
         && stat -c %a /sbin/unix_chkpwd",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).trim_end().ends_with("2755"),
        "unix_chkpwd keeps its setgid bit: {}",
        stdout(&out)
    );
}
