//! Bundles that are not directories: three real packages from PyPI (C extensions with their own
//! tests) named in a wheels file and built as one group for x86_64 and aarch64 (cross-compiled,
//! tested under QEMU on bookworm arm64), then again from the store's cache with the index
//! unreachable; and bad input — a requirement nothing matches, an sdist whose sha256 is not the
//! index's (a fake index served on 127.0.0.1), sdists with `../` names or a symlink out of their
//! root, a wheels file with an unknown key — each refused with exit status 2 and nothing left in
//! the store.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use common::{everyone, stderr, wheels, Runner};
use serde_json::Value;

/// The three packages: pinned sdists whose C code builds with bookworm's Python 3.11 and
/// setuptools, each test command checking first that the C extension is the one imported.
const PACKAGES: &[(&str, &str, &str, &str)] = &[
    (
        "msgpack",
        "1.1.0",
        "[\"pytest\"]",
        "python3 -c 'import msgpack._cmsgpack' && python3 -m pytest -q {project}/test",
    ),
    (
        "MarkupSafe",
        "2.1.5",
        "[\"pytest\"]",
        "python3 -c 'import markupsafe._speedups' && python3 -m pytest -q {project}/tests",
    ),
    (
        "simplejson",
        "3.19.3",
        "[]",
        "python3 -c 'import simplejson._speedups' && python3 -m simplejson.tests._cibw_runner {project}",
    ),
];

fn wheels_file(dir: &Path, name: &str, targets: &str, extra: &str) -> PathBuf {
    let mut text = String::new();
    for (name, version, requires, test) in PACKAGES {
        text.push_str(&format!(
            "[[package]]\nname = \"{name}\"\nversion = \"{version}\"\ntest-requires = {requires}\n\
             test-command = \"{}\"\ntargets = {targets}\n\n",
            test.replace('\\', "\\\\").replace('"', "\\\"")
        ));
    }
    text.push_str(extra);
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// The branch of these builds: bookworm's main for the host's arch only. The host-arch instance
/// gets the cross toolchain from it; the arm64 one, which only runs the tests (pytest comes from
/// PyPI), has nothing to fetch, so its refresh skips the minutes of an emulated dist-upgrade.
const BRANCH: &str = "bundles";

fn branch_list(r: &Runner) {
    let dir = r.config.join("source_lists");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join(format!("{BRANCH}.list")),
        "deb [arch=amd64] http://deb.debian.org/debian bookworm main\n",
    )
    .unwrap();
    chown_for(r, &r.config);
}

fn build(r: &Runner, args: &[&str]) -> (i32, Value, String) {
    let mut all = vec!["--branch", BRANCH, "--python", "3.11", "--compiler", "gcc"];
    all.extend_from_slice(args);
    common::build_json(r, &all)
}

fn sources(report: &Value) -> Vec<Value> {
    report["sources"].as_array().cloned().unwrap_or_default()
}

#[test]
fn three_pypi_packages_build_as_one_group_and_again_from_the_cache() {
    let Some(r) = common::root_runner_with_debian(
        "the group build test runs as root",
        &["debian-bookworm-amd64", "debian-bookworm-arm64"],
    ) else {
        return;
    };
    branch_list(&r);
    let dir = r.store.parent().unwrap().to_path_buf();
    let file = wheels_file(&dir, "wheels.toml", "[\"x86_64\", \"aarch64\"]", "");
    let out = dir.join("dist");
    let started = std::time::Instant::now();
    let (code, report, err) = build(
        &r,
        &[
            "-r",
            file.to_str().unwrap(),
            "--jobs",
            "2",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    eprintln!("group build: {:.1} s", started.elapsed().as_secs_f64());
    assert_eq!(code, 0, "{err}\n{report:#}");
    let targets = report["targets"].as_array().unwrap();
    assert_eq!(targets.len(), 6, "{report:#}");
    for t in targets {
        assert_eq!(t["result"], "passed", "{t:#}");
        assert_eq!(t["test_exit_code"], 0, "{t:#}");
        let expect_mode = if t["arch"] == "x86_64" {
            "native"
        } else {
            "cross"
        };
        assert_eq!(t["mode"], expect_mode, "{t:#}");
    }
    for project in ["msgpack", "markupsafe", "simplejson"] {
        let mut arches: Vec<&str> = targets
            .iter()
            .filter(|t| t["project"].as_str().unwrap().eq_ignore_ascii_case(project))
            .map(|t| t["arch"].as_str().unwrap())
            .collect();
        arches.sort();
        assert_eq!(arches, ["aarch64", "x86_64"], "{project}: {report:#}");
    }
    // One report for the group, in output/<branch>/group-<file stem>/.
    let report_path = r
        .store
        .join(format!("output/{BRANCH}/group-wheels/report.json"));
    let on_disk: Value = serde_json::from_slice(&std::fs::read(&report_path).unwrap()).unwrap();
    assert_eq!(on_disk["targets"], report["targets"]);
    // Each sdist: recorded with its URL and hash, cached in the store by that hash.
    let src = sources(&report);
    assert_eq!(src.len(), 3, "{report:#}");
    for s in &src {
        assert_eq!(s["from_cache"], false, "{s}");
        let sha = s["sha256"].as_str().unwrap();
        assert_eq!(sha.len(), 64, "{s}");
        assert!(s["url"].as_str().unwrap().ends_with(".tar.gz"), "{s}");
        assert!(r.store.join("sources/sha256").join(sha).is_file(), "{s}");
    }
    let w = wheels(&out);
    assert_eq!(w.len(), 6, "{w:?}");
    assert_eq!(
        w.iter().filter(|n| n.contains("aarch64")).count(),
        3,
        "{w:?}"
    );
    // The unpacked sdists went with the build.
    assert_eq!(std::fs::read_dir(r.store.join("tmp")).unwrap().count(), 0);

    // Again, with the index unreachable: every sdist comes from the cache. x86_64 only, and a
    // local project whose tests fail beside them: that one fails alone, the exit status is 1.
    // The local project goes as an sdist file, unpacked like the downloaded ones.
    let failing = common::example_copy(&r, "c-ext", "fastmath-0.1");
    let sdist = dir.join("fastmath-0.1.tar.gz");
    let st = Command::new("tar")
        .arg("czf")
        .arg(&sdist)
        .arg("-C")
        .arg(&dir)
        .arg(failing.file_name().unwrap())
        .status()
        .unwrap();
    assert!(st.success());
    let file2 = wheels_file(
        &dir,
        "again.toml",
        "[\"x86_64\"]",
        "[[package]]\npath = \"fastmath-0.1.tar.gz\"\ntest-command = \"exit 3\"\n\
         targets = [\"x86_64\"]\n",
    );
    let out2 = dir.join("dist2");
    let started = std::time::Instant::now();
    let (code, report, err) = build(
        &r,
        &[
            "-r",
            file2.to_str().unwrap(),
            "--index-url",
            "http://127.0.0.1:9/simple",
            "--out",
            out2.to_str().unwrap(),
        ],
    );
    eprintln!("cached build: {:.1} s", started.elapsed().as_secs_f64());
    assert_eq!(code, 1, "{err}\n{report:#}");
    assert!(err.contains("from the cache"), "{err}");
    assert!(
        err.contains("fastmath/cp311-manylinux_x86_64: TEST FAILED"),
        "{err}"
    );
    let src = sources(&report);
    assert_eq!(src.len(), 4, "{report:#}");
    assert!(
        src[..3].iter().all(|s| s["from_cache"] == true),
        "{report:#}"
    );
    assert_eq!(src[3]["name"], "fastmath", "{report:#}");
    assert_eq!(src[3]["sha256"].as_str().unwrap().len(), 64, "{report:#}");
    let targets = report["targets"].as_array().unwrap();
    assert_eq!(targets.len(), 4, "{report:#}");
    for t in targets {
        let want = if t["project"] == "fastmath" {
            "test-failed"
        } else {
            "passed"
        };
        assert_eq!(t["result"], want, "{t:#}");
    }
    assert_eq!(report["failed"], 1, "{report:#}");
    assert_eq!(wheels(&out2).len(), 3);
}

/// Every file under the store (directories aside): nothing a refused build may leave.
fn store_files(r: &Runner) -> Vec<String> {
    fn walk(dir: &Path, root: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if e.file_type().unwrap().is_dir() {
                walk(&p, root, out);
            } else {
                out.push(p.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(&r.store, &r.store, &mut out);
    out.sort();
    out
}

/// A `python3 -m http.server` on a free port of 127.0.0.1 serving `dir`, killed when dropped.
struct Server {
    child: Child,
    port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(dir: &Path) -> Server {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("python3")
        .args([
            "-m",
            "http.server",
            "--bind",
            "127.0.0.1",
            &port.to_string(),
        ])
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let server = Server { child, port };
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return server;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("python3 -m http.server did not listen on {port}");
}

/// Writes a gzip'd tar with python's tarfile: `entries` are (name, kind, data or link target),
/// kind `f` a file, `l` a symlink.
fn make_sdist(path: &Path, entries: &[(&str, char, &str)]) {
    let mut script = String::from(
        "import io, sys, tarfile\nt = tarfile.open(sys.argv[1], 'w:gz')\n\
         def add(name, kind, data):\n    i = tarfile.TarInfo(name)\n    if kind == 'l':\n        \
         i.type = tarfile.SYMTYPE; i.linkname = data; t.addfile(i)\n    else:\n        \
         b = data.encode(); i.size = len(b); t.addfile(i, io.BytesIO(b))\n",
    );
    for (name, kind, data) in entries {
        script.push_str(&format!("add({name:?}, {kind:?}, {data:?})\n"));
    }
    script.push_str("t.close()\n");
    let st = Command::new("python3")
        .arg("-c")
        .arg(&script)
        .arg(path)
        .status()
        .unwrap();
    assert!(st.success());
}

fn sha256_hex(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// A PEP 691 project page for `name` listing `files` (file name, sha256) under `../../files/`.
fn index_page(root: &Path, name: &str, files: &[(&str, &str)]) {
    let dir = root.join("simple").join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let files: Vec<Value> = files
        .iter()
        .map(|(f, sha)| {
            serde_json::json!({
                "filename": f, "url": format!("../../files/{f}"), "hashes": {"sha256": sha}
            })
        })
        .collect();
    let page = serde_json::json!({"meta": {"api-version": "1.1"}, "name": name, "files": files});
    let mut f = std::fs::File::create(dir.join("index.html")).unwrap();
    f.write_all(page.to_string().as_bytes()).unwrap();
}

fn chown_for(r: &Runner, path: &Path) {
    if let Some(user) = r.who.user() {
        let st = Command::new("chown")
            .args(["-R", &format!("{user}:{user}")])
            .arg(path)
            .status()
            .unwrap();
        assert!(st.success());
    }
}

#[test]
fn bad_bundles_exit_2_and_leave_nothing_in_the_store() {
    for who in everyone() {
        let r = Runner::new(who);
        let dir = r.store.parent().unwrap().to_path_buf();
        // A fake index: a good sdist listed with a wrong hash, and versions that exist.
        let web = dir.join("web");
        std::fs::create_dir_all(web.join("files")).unwrap();
        let good = web.join("files/pkg-1.0.tar.gz");
        make_sdist(
            &good,
            &[(
                "pkg-1.0/setup.py",
                'f',
                "from setuptools import setup\nsetup(name='pkg')\n",
            )],
        );
        let sha = sha256_hex(&good);
        let wrong = format!(
            "{}{}",
            &sha[..63],
            if sha.ends_with('0') { "1" } else { "0" }
        );
        index_page(&web, "pkg", &[("pkg-1.0.tar.gz", &wrong)]);
        let server = serve(&web);
        let index = format!("http://127.0.0.1:{}/simple", server.port);

        let escape = dir.join("escape-1.0.tar.gz");
        make_sdist(
            &escape,
            &[
                ("escape-1.0/setup.py", 'f', "x"),
                ("escape-1.0/../../evil", 'f', "x"),
            ],
        );
        let link = dir.join("link-1.0.tar.gz");
        make_sdist(
            &link,
            &[
                ("link-1.0/setup.py", 'f', "x"),
                ("link-1.0/data", 'l', "../../../etc"),
            ],
        );
        let unknown = dir.join("wheels.toml");
        std::fs::write(
            &unknown,
            "[[package]]\nname = \"msgpack\"\nversion = \"1.1.0\"\ntest-comand = \"true\"\n",
        )
        .unwrap();
        chown_for(&r, &dir);

        for (args, why) in [
            (
                vec!["pkg==9.9", "--index-url", &index],
                "no sdist (.tar.gz, not yanked)",
            ),
            (
                vec!["nosuchpkg", "--index-url", &index],
                "has no project \"nosuchpkg\"",
            ),
            (vec!["pkg==1.0", "--index-url", &index], "the index says"),
            (vec![escape.to_str().unwrap()], "escape-1.0/../../evil"),
            (vec![link.to_str().unwrap()], "out of the sdist's root"),
            (
                vec!["-r", unknown.to_str().unwrap()],
                "unknown field `test-comand`",
            ),
            (vec!["pkg[x]==1"], "extras, markers and URLs"),
            (
                vec!["pkg==1.0", "--offline"],
                "--offline forbids asking the index",
            ),
        ] {
            let mut all = vec!["build", "--branch", "stable"];
            all.extend_from_slice(&args);
            let out = r.run(&all);
            let e = stderr(&out);
            assert_eq!(out.status.code(), Some(2), "{who:?} {args:?}: {e}");
            assert!(e.contains(why), "{who:?} {args:?}: {e}");
            assert_eq!(store_files(&r), Vec::<String>::new(), "{who:?} {args:?}");
        }
        let out = r.run(&[
            "build",
            "--branch",
            "stable",
            "-r",
            unknown.to_str().unwrap(),
        ]);
        assert!(stderr(&out).contains("line 4"), "{}", stderr(&out));
    }
}
