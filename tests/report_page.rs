//! Issue 33, items 5 and 6, on one build's output: `report.html` of a four-target build with one
//! failure (x86_64 × CPython 3.11 from bookworm, 3.13, 3.14 and 3.15 from forky, the 3.15 test
//! made to fail), opened in headless Chromium (Debian's package): the failing cell is marked in
//! the DOM, a screenshot is kept under target/, and the page loads nothing. Then
//! `--skip-existing-on` against a real index on loopback: pypiserver (from PyPI, installed once
//! per machine into a venv under /var/cache/pookie-ns-test, as tests/cibw_identifiers.rs does
//! for cibuildwheel), started by the test on 127.0.0.1, the cp311 wheel of that build uploaded
//! with twine; a second build asked for 3.11 and 3.13 builds cp313 only and says, in its plan
//! and its report, that cp311 was skipped because the index has that wheel.
//!
//! Base OSes from the tarballs scripts/build-test-rootfs caches; native builds only (the base
//! OSes' own gcc, a one-line test), so that the page and the index are what is tested.

mod common;

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{require, stderr, wheels, Who};
use serde_json::Value;

const PYPISERVER: &str = "pypiserver==2.4.2";
const TWINE: &str = "twine==7.0.0";

/// The venv with pypiserver and twine (built beside its final place and renamed, so that a
/// half-made one is never used). None (after `require`) when it cannot be had.
fn index_tools() -> Option<PathBuf> {
    match common::cached_venv("pypiserver-2.4.2-twine-7.0.0", &[PYPISERVER, TWINE]) {
        Ok(python) => Some(python),
        Err(e) => {
            require(false, &format!("{PYPISERVER} and {TWINE}: {e}"));
            None
        }
    }
}

/// pypiserver on 127.0.0.1, killed when dropped.
struct Index {
    child: Child,
    port: u16,
}

impl Index {
    fn start(python: &Path, packages: &Path) -> Index {
        // A free port: bound, read and released; pypiserver binds it a moment later.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(python)
            .args(["-m", "pypiserver", "run", "-i", "127.0.0.1", "-p"])
            .arg(port.to_string())
            // Uploads without passwords (loopback, for the test); no redirect to PyPI.
            .args(["-a", ".", "-P", ".", "--disable-fallback"])
            .arg(packages)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut index = Index { child, port };
        // Listening: pypiserver is up (or gone, which fails the test here).
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(st) = index.child.try_wait().unwrap() {
                panic!("pypiserver exited before it listened: {st}");
            }
            assert!(
                Instant::now() < deadline,
                "pypiserver did not listen in 60 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        index
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Index {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs headless Chromium on `url` with `extra` arguments, the flags that keep it from reaching
/// out and a fresh profile in `profile`; returns what it printed on stdout. Its process group is
/// killed afterwards (none of its helpers outlives it), and after 90 s.
fn chromium(profile: &Path, extra: &[String], url: &str) -> String {
    use std::os::unix::process::CommandExt;
    let stdout_path = profile.with_extension("stdout");
    let stderr_path = profile.with_extension("stderr");
    let mut child = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--window-size=1400,1000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout_path).unwrap())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .process_group(0)
        .spawn()
        .unwrap();
    let group = nix::unistd::Pid::from_raw(-(child.id() as i32));
    let until = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > until {
            let _ = nix::sys::signal::kill(group, nix::sys::signal::Signal::SIGKILL);
            let _ = child.wait();
            panic!("chromium {extra:?} took more than 90 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let _ = nix::sys::signal::kill(group, nix::sys::signal::Signal::SIGKILL);
    assert!(
        status.success(),
        "chromium {extra:?}: {status}: {}",
        std::fs::read_to_string(&stderr_path).unwrap_or_default()
    );
    std::fs::read_to_string(&stdout_path).unwrap()
}

/// The values of every `NAME="..."` attribute in `html`.
fn attribute_values<'a>(html: &'a str, name: &str) -> Vec<&'a str> {
    let needle = format!(" {name}=\"");
    html.match_indices(&needle)
        .map(|(i, _)| {
            let rest = &html[i + needle.len()..];
            &rest[..rest.find('"').unwrap_or(rest.len())]
        })
        .collect()
}

fn target<'a>(report: &'a Value, python: &str) -> &'a Value {
    report["targets"]
        .as_array()
        .unwrap_or_else(|| panic!("no targets in {report}"))
        .iter()
        .find(|t| t["python"] == python)
        .unwrap_or_else(|| panic!("no {python} target in {report}"))
}

#[test]
fn a_four_target_report_page_and_a_build_of_what_the_index_lacks() {
    if !require(common::is_root(), "the build tests run as root")
        || !require(
            Command::new("chromium")
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success()),
            "chromium (apt-get install chromium; scripts/setup-host)",
        )
    {
        return;
    }
    let Some(python) = index_tools() else { return };
    let Some(r) =
        common::runner_with_debian(Who::Root, &["debian-bookworm-amd64", "debian-forky-amd64"])
    else {
        return;
    };
    // forky loaded first: CPython 3.13 then comes from it, not from trixie's recipe.
    r.ok(&["load-baseos", "debian-forky"]);
    let project = common::example_copy(&r, "c-ext", "c-ext");
    let pp = project.join("pyproject.toml");
    let text = std::fs::read_to_string(&pp).unwrap().replace(
        "requires-python = \">=3.9\"",
        "requires-python = \">=3.10\"",
    );
    std::fs::write(&pp, text).unwrap();
    let common_args = [
        "--target",
        "x86_64",
        "--compiler",
        "gcc",
        "--before-all",
        "true",
        // Debian's base OSes only: 3.10 and 3.12, which no suite has, are skipped cells (with
        // `auto`, their source would be cibuildwheel's default image: tests/oci.rs).
        "--python-source",
        "base-os",
        "--test",
        "python3 -c 'import sys, fastmath; assert fastmath.gcd(12, 18) == 6; \
         sys.exit(sys.version_info[:2] == (3, 15))'",
    ];

    // ---- one build, four targets, one failure: its report.html --------------------------
    let dist = r.store.parent().unwrap().join("dist");
    let mut args = vec!["--json", "build", project.to_str().unwrap()];
    args.extend_from_slice(&common_args);
    args.extend_from_slice(&["--out", dist.to_str().unwrap()]);
    let started = Instant::now();
    let out = r.run(&args);
    eprintln!(
        "the four-target build took {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let err = stderr(&out);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    assert_eq!(out.status.code(), Some(1), "{err}\n{report}");
    assert_eq!(report["targets"].as_array().unwrap().len(), 4, "{report}");
    for (py, result) in [
        ("3.11", "passed"),
        ("3.13", "passed"),
        ("3.14", "passed"),
        ("3.15", "test-failed"),
    ] {
        assert_eq!(target(&report, py)["result"], result, "{report}");
    }
    // No base OS has 3.10 or 3.12: skipped, with the reason.
    let skipped: Vec<&str> = report["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["identifier"].as_str().unwrap())
        .collect();
    assert_eq!(
        skipped,
        ["cp310-manylinux_x86_64", "cp312-manylinux_x86_64"],
        "{report}"
    );
    let out_root = r.store.join("output/stable/fastmath");
    let page_path = out_root.join("report.html");
    assert!(
        err.contains(&format!("(as a page: {})", page_path.display())),
        "build prints the page's path: {err}"
    );
    let page = std::fs::read_to_string(&page_path).unwrap();

    // Self-contained: nothing in it loads anything, and its links are relative.
    for tag in [
        "<script", "<link", "<img", "<iframe", "<object", "<embed", "@import", "url(",
    ] {
        assert!(!page.contains(tag), "{tag} in {page}");
    }
    assert!(attribute_values(&page, "src").is_empty(), "{page}");
    for href in attribute_values(&page, "href") {
        assert!(
            !href.contains("://") && !href.starts_with('/'),
            "a link off the output dir: {href}"
        );
        let target = href.split('#').next().unwrap();
        if !target.is_empty() {
            assert!(
                out_root.join(target).is_file(),
                "{href} does not lead to a log"
            );
        }
    }
    let failed_log = target(&report, "3.15")["test_log"].as_str().unwrap();
    let failed_rel = Path::new(failed_log).strip_prefix(&out_root).unwrap();
    assert!(
        page.contains(&format!("href=\"{}\"", failed_rel.display())),
        "the failed test's log is linked: {page}"
    );

    // Chromium: the DOM it builds marks the failure; a screenshot of the page is kept.
    let artifacts = Path::new(env!("CARGO_TARGET_TMPDIR")).join("report-page");
    let _ = std::fs::remove_dir_all(&artifacts);
    std::fs::create_dir_all(&artifacts).unwrap();
    let url = format!("file://{}", page_path.display());
    let dom = chromium(
        &artifacts.join("profile-dom"),
        &["--dump-dom".to_string()],
        &url,
    );
    assert!(
        dom.contains(
            "<td class=\"cell result-test-failed\" data-identifier=\"cp315-manylinux_x86_64\">"
        ),
        "the failing cell is marked in the DOM: {dom}"
    );
    for passed in ["cp311", "cp313", "cp314"] {
        assert!(
            dom.contains(&format!(
                "<td class=\"cell result-passed\" data-identifier=\"{passed}-manylinux_x86_64\">"
            )),
            "{passed}: {dom}"
        );
    }
    assert!(
        dom.contains("data-identifier=\"cp312-manylinux_x86_64\""),
        "{dom}"
    );
    assert!(
        dom.contains("no loaded base OS nor recipe provides CPython 3.12"),
        "{dom}"
    );
    let shot = artifacts.join("report.png");
    chromium(
        &artifacts.join("profile-shot"),
        &[format!("--screenshot={}", shot.display())],
        &url,
    );
    let png = std::fs::read(&shot).unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    let width = u32::from_be_bytes(png[16..20].try_into().unwrap());
    assert_eq!(width, 1400, "the window's width");
    assert!(png.len() > 20_000, "{} bytes: an empty page?", png.len());
    std::fs::copy(&page_path, artifacts.join("report.html")).unwrap();
    eprintln!("screenshot kept: {}", shot.display());

    // ---- the cp311 wheel on an index; a build of 3.11 and 3.13 builds cp313 only ----------
    let packages = r.store.parent().unwrap().join("index-packages");
    std::fs::create_dir_all(&packages).unwrap();
    let index = Index::start(&python, &packages);
    let cp311 = wheels(&dist)
        .into_iter()
        .find(|w| w.starts_with("fastmath-0.1.0-cp311-cp311-manylinux"))
        .unwrap_or_else(|| panic!("no cp311 wheel in {}", dist.display()));
    let up = Command::new(&python)
        .args([
            "-m",
            "twine",
            "upload",
            "--non-interactive",
            "--disable-progress-bar",
        ])
        .args(["--repository-url", &format!("{}/", index.url())])
        .args(["-u", "test", "-p", "test"])
        .arg(dist.join(&cp311))
        .output()
        .unwrap();
    assert!(
        up.status.success(),
        "twine upload: {}{}",
        common::stdout(&up),
        stderr(&up)
    );
    assert!(packages.join(&cp311).is_file(), "the index holds {cp311}");

    let simple = format!("{}/simple", index.url());
    let dist2 = r.store.parent().unwrap().join("dist2");
    let mut args = vec!["--json", "build", project.to_str().unwrap()];
    args.extend_from_slice(&common_args);
    args.extend_from_slice(&[
        "--python",
        "3.11",
        "3.13",
        "--skip-existing-on",
        &simple,
        "--out",
        dist2.to_str().unwrap(),
    ]);
    let out = r.run(&args);
    let err = stderr(&out);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    assert_eq!(out.status.code(), Some(0), "{err}\n{report}");
    let built: Vec<&str> = report["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["identifier"].as_str().unwrap())
        .collect();
    assert_eq!(built, ["cp313-manylinux_x86_64"], "the others: {report}");
    let skip = &report["skipped"][0];
    assert_eq!(skip["identifier"], "cp311-manylinux_x86_64", "{report}");
    let why = skip["reason"].as_str().unwrap();
    assert!(why.contains(&simple) && why.contains(&cp311), "{why}");
    assert!(
        err.contains(&format!("cp311-manylinux_x86_64: skipped: {why}")),
        "the plan says it: {err}"
    );
    assert_eq!(wheels(&dist2).len(), 1, "{:?}", wheels(&dist2));
    let page = std::fs::read_to_string(&page_path).unwrap();
    assert!(
        page.contains("<td class=\"cell skipped\" data-identifier=\"cp311-manylinux_x86_64\"")
            && page.contains(&pookie_ns::pipeline::report_html::escape(why)),
        "{page}"
    );

    // An index that cannot be read is an input error, said before anything is built.
    drop(index);
    let mut args = vec!["build", project.to_str().unwrap()];
    args.extend_from_slice(&common_args);
    args.extend_from_slice(&["--python", "3.11", "--skip-existing-on", &simple]);
    let out = r.run(&args);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--skip-existing-on: cannot read the package index"),
        "{}",
        stderr(&out)
    );
}
