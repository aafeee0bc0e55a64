//! `pookie-ns serve` and `submit` with a real server on 127.0.0.1 (an ephemeral port) over a
//! temporary store: bad input refused with a 4xx and nothing written; aoinb's route sequence
//! driven with curl; a bounded load test (200 pollers, 10 tasks, 2 at once) that prints its
//! latencies and the server's RSS; and one real end-to-end build — `submit examples/c-ext` for
//! x86_64 and aarch64 with `--follow`, the wheels checked with auditwheel — followed by a
//! `kill -9` of the server in the middle of a build and a restart.
//!
//! The cheap tasks fail fast on purpose: `--python 3.8` is refused by `build` (exit 2) in
//! milliseconds, so the server's machinery is exercised without building anything.
// The service is the `serve` feature's (on by default): without it there is nothing to test.
#![cfg(feature = "serve")]

mod common;

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::archive::{gzip, noise, Tar};
use common::{require, Runner, Who};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// A `pookie-ns serve` child on an ephemeral loopback port, killed when dropped.
struct Server {
    child: Child,
    url: String,
}

impl Server {
    fn start(r: &Runner, extra: &[&str]) -> Server {
        let mut args = vec!["serve", "--listen", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        let mut child = r
            .command(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        // The server prints one line once it listens (recovery of a killed server's tasks is
        // done by then); EOF means it exited.
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line
            .trim()
            .strip_prefix("pookie-ns serve: listening on ")
            .unwrap_or_else(|| {
                let st = child.wait().unwrap();
                panic!("the server did not start ({st}): {line:?}")
            })
            .to_string();
        Server { child, url }
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// SIGTERM, then the exit status (bounded).
    fn stop(mut self) -> i32 {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid()),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        let until = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st.code().unwrap_or(-1);
            }
            assert!(Instant::now() < until, "the server did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn kill9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Server {
    /// A failed test's server is drained (SIGTERM cancels its builds) before it is killed, so
    /// that no build outlives the test.
    fn drop(&mut self) {
        // Only a server still running: the pid of a reaped one may belong to anyone now.
        if !matches!(self.child.try_wait(), Ok(None)) {
            return;
        }
        let pid = nix::unistd::Pid::from_raw(self.pid());
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let until = Instant::now() + Duration::from_secs(30);
        while Instant::now() < until && matches!(self.child.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .new_agent()
}

/// One request: (status, body). `headers` are (name, value) pairs.
fn call(
    method: &str,
    url: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> (u16, String) {
    let mut req = ureq::http::Request::builder().method(method).uri(url);
    if let Some(t) = token {
        req = req.header("Authorization", format!("Bearer {t}"));
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let a = agent();
    let resp = match body {
        Some(b) => a.run(req.body(b.to_vec()).unwrap()),
        None => a.run(req.body(()).unwrap()),
    };
    let mut resp = resp.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = resp.status().as_u16();
    let text = resp
        .body_mut()
        .with_config()
        .limit(64 << 20)
        .read_to_string()
        .unwrap_or_default();
    (status, text)
}

fn get_json(url: &str, token: Option<&str>) -> Value {
    let (status, text) = call("GET", url, token, &[], None);
    assert_eq!(status, 200, "GET {url}: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("GET {url}: {e}: {text}"))
}

/// Asserts an error answer: the status and `{"error": "..."}` mentioning `says`.
fn assert_error(got: (u16, String), status: u16, says: &str, what: &str) {
    assert_eq!(got.0, status, "{what}: {}", got.1);
    let v: Value = serde_json::from_str(&got.1)
        .unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {}", got.1));
    let msg = v["error"].as_str().unwrap_or_else(|| panic!("{what}: {v}"));
    assert!(msg.contains(says), "{what}: {msg:?} lacks {says:?}");
}

/// examples/NAME as a tar.gz with one top directory, as `submit` packs it.
fn example_tgz(name: &str) -> Vec<u8> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(name);
    pookie_ns::submit::pack(&dir).unwrap()
}

/// Polls a task's status until it has ended (bounded).
fn wait_terminal(url: &str, id: i64, limit: Duration) -> Value {
    let until = Instant::now() + limit;
    loop {
        let s = get_json(&format!("{url}/task/{id}/status"), None);
        if ["passed", "failed", "error", "cancelled", "interrupted"]
            .contains(&s["state"].as_str().unwrap())
        {
            return s;
        }
        assert!(
            Instant::now() < until,
            "task {id} did not end in {limit:?}: {s}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// What the store holds under `dir` (names, recursively), for "nothing was written".
fn listing(dir: &Path) -> Vec<String> {
    common::tree_lines(dir, |p, _| p.display().to_string())
}

/// No token, a wrong one, a read token used to submit; a bundle over the limit; tars with `..`,
/// an absolute name, a symlink out, a device node; malformed JSON; unknown options, tasks,
/// routes and branches: each a 4xx with `{"error"}`, and the store holds no task afterwards.
/// A non-loopback address without tokens, and a tokens file with a plain token, stop the start.
#[test]
fn bad_input_is_refused_and_nothing_is_written() {
    if !require(common::is_root(), "the serve tests run as root") {
        return;
    }
    let r = Runner::new(Who::Root);
    let tokens = r.config.join("tokens");
    std::fs::write(
        &tokens,
        format!(
            "# test tokens\nread {:x} reader\nsubmit {:x} ci\n",
            Sha256::digest(b"read-token"),
            Sha256::digest(b"submit-token")
        ),
    )
    .unwrap();

    // Refused at start-up, before listening.
    let out = r.run(&["serve", "--listen", "0.0.0.0:0"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        common::stderr(&out).contains("--tokens"),
        "{}",
        common::stderr(&out)
    );
    let plain = r.config.join("plain");
    std::fs::write(&plain, "submit my-secret-token\n").unwrap();
    let out = r.run(&["serve", "--tokens", plain.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(common::stderr(&out).contains("never the token"));

    let s = Server::start(
        &r,
        &[
            "--tokens",
            tokens.to_str().unwrap(),
            "--max-bundle-mib",
            "1",
        ],
    );
    let before = listing(&r.store);
    let task = format!("{}/task", s.url);
    let good = example_tgz("c-ext");
    let submit = |token: Option<&str>, headers: &[(&str, &str)], body: &[u8]| {
        let mut h = vec![("Content-Type", "application/gzip")];
        h.extend_from_slice(headers);
        call("POST", &task, token, &h, Some(body))
    };
    let st = Some("submit-token");

    assert_error(submit(None, &[], &good), 401, "no bearer token", "no token");
    assert_error(
        submit(Some("guess"), &[], &good),
        401,
        "not known",
        "wrong token",
    );
    assert_error(
        submit(Some("read-token"), &[], &good),
        403,
        "needs submit",
        "read token",
    );
    assert_error(
        call("GET", &task, None, &[], None),
        401,
        "bearer",
        "read without a token",
    );
    assert_error(
        call(
            "DELETE",
            &format!("{task}/1"),
            Some("read-token"),
            &[],
            None,
        ),
        403,
        "role read",
        "read token deletes",
    );

    // Over the 1 MiB limit: random bytes do not compress.
    let big = gzip(
        &Tar::new()
            .file("pkg/setup.py", 0o644, &noise(1536 << 10, 7))
            .bytes(),
    );
    assert_error(submit(st, &[], &big), 413, "larger than", "oversize bundle");

    let evil_abs = format!("/tmp/pookie-serve-evil-{}", std::process::id());
    let hostile: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "dot-dot",
            Tar::new()
                .file("pkg/setup.py", 0o644, b"x")
                .file("pkg/../../evil", 0o644, b"x")
                .bytes(),
            "`..`",
        ),
        (
            "absolute",
            Tar::new()
                .file("pkg/setup.py", 0o644, b"x")
                .file(&evil_abs, 0o644, b"x")
                .bytes(),
            "absolute",
        ),
        (
            "symlink out",
            Tar::new()
                .file("pkg/setup.py", 0o644, b"x")
                .symlink("pkg/etc", "../../../etc")
                .file("pkg/etc/evil", 0o644, b"x")
                .bytes(),
            "out of the bundle",
        ),
        (
            "device node",
            Tar::new()
                .file("pkg/setup.py", 0o644, b"x")
                .node("pkg/null", tar::EntryType::Char, 1, 3)
                .bytes(),
            "device node",
        ),
        ("not a tar", b"just some text, no archive".to_vec(), "tar"),
    ];
    for (what, tar, says) in &hostile {
        assert_error(submit(st, &[], &gzip(tar)), 400, says, what);
    }
    assert!(!Path::new(&evil_abs).exists());

    // Options: malformed JSON, an unknown key, a bad value, an unknown branch.
    let json = [("Content-Type", "application/json")];
    assert_error(
        call("POST", &task, st, &json, Some(b"{\"target\": [")),
        400,
        "not a JSON object",
        "malformed JSON",
    );
    assert_error(
        submit(st, &[("Pookie-Options", "{\"target\": ")], &good),
        400,
        "Pookie-Options",
        "malformed options header",
    );
    assert_error(
        call("POST", &task, st, &json, Some(br#"{"tagret": ["x86_64"]}"#)),
        400,
        "unknown field `tagret`",
        "unknown option",
    );
    assert_error(
        call("POST", &task, st, &json, Some(br#"{"mode": "teleport"}"#)),
        400,
        "teleport",
        "bad option value",
    );
    assert_error(
        submit(st, &[("Pookie-Options", r#"{"branch": "nope"}"#)], &good),
        400,
        "no branch \"nope\"",
        "unknown branch",
    );
    assert_error(
        call("POST", &task, st, &json, Some(br#"{"branch": "../x"}"#)),
        400,
        "no branch",
        "branch with a path",
    );

    // Unknown tasks and routes.
    for (method, path) in [
        ("GET", "/task/999/status"),
        ("PUT", "/task/999/build"),
        ("DELETE", "/task/999"),
        ("GET", "/task/abc/log"),
        ("GET", "/nothing-here"),
    ] {
        assert_error(
            call(method, &format!("{}{path}", s.url), st, &[], None),
            404,
            "no ",
            &format!("{method} {path}"),
        );
    }

    // Nothing was written: no task, no file of one, nothing else in the store.
    let tasks = get_json(&task, Some("read-token"));
    assert_eq!(tasks["tasks"], json!([]), "{tasks}");
    assert_eq!(listing(&r.store), before, "the store changed");
    assert_eq!(
        std::fs::read_dir(r.store.join("serve/tasks"))
            .unwrap()
            .count(),
        0
    );

    // A PUT of a hostile bundle to an existing task leaves it without one.
    let (code, text) = call("POST", &task, st, &json, Some(b"{}"));
    assert_eq!(code, 201, "{text}");
    let id = serde_json::from_str::<Value>(&text).unwrap()["id"]
        .as_i64()
        .unwrap();
    assert_error(
        call(
            "PUT",
            &format!("{task}/{id}/build_bundle"),
            st,
            &[],
            Some(&hostile[0].1),
        ),
        400,
        "`..`",
        "hostile PUT",
    );
    assert!(!r.store.join(format!("serve/tasks/{id}/bundle")).exists());
    assert_error(
        call("PUT", &format!("{task}/{id}/build"), st, &[], None),
        409,
        "no bundle",
        "start without a bundle",
    );
    assert_eq!(s.stop(), 0);
}

/// aoinb's sequence, route by route with curl: POST /task, PUT build_bundle, PUT branch, PUT
/// build, poll status; then log, report, builder status, metrics, the page, DELETE.
#[test]
fn aoinb_route_sequence_with_curl() {
    if !require(common::is_root(), "the serve tests run as root")
        || !require(
            Command::new("curl").arg("--version").output().is_ok(),
            "curl (apt-get install curl)",
        )
    {
        return;
    }
    let r = Runner::new(Who::Root);
    let s = Server::start(&r, &[]);
    let curl = |args: &[&str]| -> Value {
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "30", "-w", "\n%{http_code}"])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "curl {args:?}: {}",
            common::stderr(&out)
        );
        let text = common::stdout(&out);
        let (body, code) = text.rsplit_once('\n').unwrap();
        assert!(code.starts_with('2'), "curl {args:?}: {code} {body}");
        serde_json::from_str(body).unwrap_or(Value::String(body.to_string()))
    };
    let bundle = r.store.parent().unwrap().join("c-ext.tar.gz");
    std::fs::write(&bundle, example_tgz("c-ext")).unwrap();
    let u = &s.url;

    let created = curl(&[
        "-X",
        "POST",
        "-H",
        "Content-Type: application/json",
        "-d",
        r#"{"python": ["3.8"]}"#,
        &format!("{u}/task"),
    ]);
    assert_eq!(created["state"], "new", "{created}");
    let id = created["id"].as_i64().unwrap();
    let t = format!("{u}/task/{id}");
    let put = curl(&[
        "-X",
        "PUT",
        "--data-binary",
        &format!("@{}", bundle.display()),
        &format!("{t}/build_bundle"),
    ]);
    assert_eq!(put["project"], "c-ext", "{put}");
    let branch = curl(&[
        "-X",
        "PUT",
        "-d",
        r#"{"branch": "testing"}"#,
        &format!("{t}/branch"),
    ]);
    assert_eq!(branch["branch"], "testing");
    assert_eq!(curl(&[&format!("{t}/status")])["state"], "new");
    // A follower started before the build: it waits for the log, streams it, and ends with
    // the task.
    let follower = Command::new("curl")
        .args([
            "-sS",
            "-N",
            "--max-time",
            "60",
            &format!("{t}/log?follow=1"),
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        curl(&["-X", "PUT", &format!("{t}/build")])["state"],
        "queued"
    );
    let followed = follower.wait_with_output().unwrap();
    assert!(followed.status.success(), "the follower failed");
    assert!(
        common::stdout(&followed).contains("no target left to build"),
        "{}",
        common::stdout(&followed)
    );

    let status = wait_terminal(u, id, Duration::from_secs(60));
    // requires-python >= 3.9 leaves nothing for 3.8: build refuses it (exit 2).
    assert_eq!(status["state"], "error", "{status}");
    assert_eq!(status["exit_code"], 2);
    assert_eq!(status["branch"], "testing");
    let log = curl(&[&format!("{t}/log")]);
    let log = log.as_str().unwrap();
    assert!(log.contains("--branch=testing"), "{log}");
    assert!(log.contains("no target left to build"), "{log}");
    let (code, _) = call("GET", &format!("{t}/report"), None, &[], None);
    assert_eq!(code, 404, "no report of a refused build");

    let list = curl(&[&format!("{u}/task")]);
    assert_eq!(list["tasks"][0]["id"], id);
    let builder = curl(&[&format!("{u}/builder/status")]);
    assert_eq!(builder["queue"], json!([]));
    assert!(
        builder["host"]["mem_total_kib"].as_u64().unwrap() > 0,
        "{builder}"
    );
    let metrics = curl(&[&format!("{u}/metrics")]);
    assert!(
        metrics
            .as_str()
            .unwrap()
            .contains("pookie_ns_tasks{state=\"error\"} 1"),
        "{metrics}"
    );
    let page = curl(&[&format!("{u}/")]);
    assert!(page.as_str().unwrap().contains("<h2>Finished</h2>"));

    assert_eq!(curl(&["-X", "DELETE", &t])["deleted"], true);
    let (code, _) = call("GET", &format!("{t}/status"), None, &[], None);
    assert_eq!(code, 404);
    assert!(!r.store.join(format!("serve/tasks/{id}")).exists());
    assert_eq!(s.stop(), 0);
}

/// 10 tasks queued, 2 at a time, while 200 clients poll status, logs, the task list and the
/// builder's status at once: no request fails, every task runs exactly once. Prints the
/// latencies and the server's RSS.
#[test]
fn load_200_pollers_while_10_tasks_queue() {
    if !require(common::is_root(), "the serve tests run as root") {
        return;
    }
    let r = Runner::new(Who::Root);
    let s = Server::start(&r, &["--jobs", "2"]);
    let bundle = example_tgz("c-ext");
    let opts = r#"{"python": ["3.8"]}"#;
    let mut ids = Vec::new();
    for _ in 0..10 {
        let (code, text) = call(
            "POST",
            &format!("{}/task", s.url),
            None,
            &[
                ("Content-Type", "application/gzip"),
                ("Pookie-Options", opts),
            ],
            Some(&bundle),
        );
        assert_eq!(code, 201, "{text}");
        ids.push(
            serde_json::from_str::<Value>(&text).unwrap()["id"]
                .as_i64()
                .unwrap(),
        );
    }
    let started = Instant::now();
    let pollers: Vec<_> = (0..200)
        .map(|i| {
            let url = s.url.clone();
            let id = ids[i % ids.len()];
            std::thread::spawn(move || {
                let a = agent();
                let mut times = Vec::new();
                for path in [
                    format!("/task/{id}/status"),
                    format!("/task/{id}/log"),
                    "/task".to_string(),
                    "/builder/status".to_string(),
                    format!("/task/{id}/status"),
                ] {
                    let t0 = Instant::now();
                    let mut resp = a.get(format!("{url}{path}")).call().unwrap();
                    let status = resp.status().as_u16();
                    let _ = resp.body_mut().read_to_vec();
                    times.push(t0.elapsed());
                    assert_eq!(status, 200, "GET {path}");
                }
                times
            })
        })
        .collect();
    let mut times: Vec<Duration> = pollers
        .into_iter()
        .flat_map(|p| p.join().expect("a poller failed"))
        .collect();
    let polled = started.elapsed();
    times.sort();
    let pct = |p: usize| times[(times.len() * p / 100).min(times.len() - 1)];
    for id in &ids {
        let st = wait_terminal(&s.url, *id, Duration::from_secs(120));
        assert_eq!(st["state"], "error", "{st}");
        assert_eq!(st["exit_code"], 2, "{st}");
        let log = std::fs::read_to_string(r.store.join(format!("serve/tasks/{id}/log"))).unwrap();
        let runs = log.matches(&format!("pookie-ns serve: task {id}:")).count();
        assert_eq!(runs, 1, "task {id} ran {runs} times: {log}");
    }
    let rss = std::fs::read_to_string(format!("/proc/{}/status", s.pid()))
        .unwrap()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .unwrap()
        .to_string();
    eprintln!(
        "load: {} requests by 200 clients in {:.2?}: p50 {:.2?}, p99 {:.2?}, max {:.2?}; server {rss}",
        times.len(),
        polled,
        pct(50),
        pct(99),
        times[times.len() - 1]
    );
    assert_eq!(times.len(), 1000);
    assert!(pct(99) < Duration::from_secs(5), "p99 {:?}", pct(99));
    let list = get_json(&format!("{}/task", s.url), None);
    assert_eq!(
        list["tasks"].as_array().unwrap().len(),
        10,
        "no task lost or added"
    );
    assert_eq!(s.stop(), 0);
}

/// Whether `pid` is still the process that started at `start`.
fn alive(pid: i32, start: u64) -> bool {
    pookie_ns::serve::monitor::stat(pid).is_some_and(|s| s.start == start && !s.zombie)
}

/// The one real build: `submit examples/c-ext --target x86_64 aarch64 --python 3.11 --follow`
/// streams the log and delivers two wheels that auditwheel accepts. Then a task driven with
/// aoinb's routes runs a long build step, two more wait in the queue, and the server is killed
/// with SIGKILL: after a restart the long task reads `interrupted`, no process of it remains,
/// no workspace is left, the queued tasks run, and the finished task keeps its wheels and report.
/// While the long task runs, the page shows the queue, its log tail and its resource
/// sparklines (and headless Chromium takes a screenshot of it, kept in `target/tmp/`). Last, a
/// SIGTERM while a build runs drains the server: the task reads `cancelled`.
#[test]
fn submit_end_to_end_then_kill_9_and_restart() {
    let Some(r) = common::root_runner_with_debian(
        "the serve tests run as root",
        &["debian-bookworm-amd64", "debian-bookworm-arm64"],
    ) else {
        return;
    };
    let mut s = Server::start(&r, &[]);
    let project = common::example_copy(&r, "c-ext", "c-ext");
    let dist = r.store.parent().unwrap().join("dist");
    let t0 = Instant::now();
    let out = r
        .command(&[
            "submit",
            project.to_str().unwrap(),
            "--server",
            &s.url,
            "--target",
            "x86_64",
            "aarch64",
            "--python",
            "3.11",
            "--follow",
            "--out",
            dist.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let err = common::stderr(&out);
    eprintln!("submit took {:.1?}:\n{err}", t0.elapsed());
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("pookie-ns serve: task 1:"),
        "the log streamed: {err}"
    );
    assert!(err.contains("task 1 passed"), "{err}");
    let wheels = common::wheels(&dist);
    assert_eq!(wheels.len(), 2, "{wheels:?}");
    let shown = common::auditwheel_show(&r, "debian-bookworm", &dist);
    assert_eq!(shown.len(), 2, "{shown:?}");
    // auditwheel names the oldest policy each wheel meets: glibc 2.17 (zig's target) or older.
    for (wheel, tag) in &shown {
        assert!(wheel.contains("manylinux_2_17_"), "{wheel}");
        let minor: u32 = tag
            .strip_prefix("manylinux_2_")
            .and_then(|t| t.split('_').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{wheel}: {tag}"));
        assert!(minor <= 17, "{wheel}: {tag}");
    }
    let status = get_json(&format!("{}/task/1/status", s.url), None);
    assert!(
        status["resources"]["peak_rss_kib"].as_u64().unwrap() > 0,
        "{status}"
    );
    let report = get_json(&format!("{}/task/1/report", s.url), None);
    assert!(
        !report["resources"]["samples"]
            .as_array()
            .unwrap()
            .is_empty(),
        "{report}"
    );
    assert_eq!(report["targets"].as_array().unwrap().len(), 2, "{report}");

    // A task whose build step sleeps, created route by route; two fast ones queue behind it.
    let u = s.url.clone();
    let json_h = [("Content-Type", "application/json")];
    let (code, text) = call(
        "POST",
        &format!("{u}/task"),
        None,
        &json_h,
        Some(
            json!({"target": ["x86_64"], "python": ["3.11"], "build": "sleep 4321"})
                .to_string()
                .as_bytes(),
        ),
    );
    assert_eq!(code, 201, "{text}");
    let long = serde_json::from_str::<Value>(&text).unwrap()["id"]
        .as_i64()
        .unwrap();
    let (code, text) = call(
        "PUT",
        &format!("{u}/task/{long}/build_bundle"),
        None,
        &[],
        Some(&pookie_ns::submit::pack(&project).unwrap()),
    );
    assert_eq!(code, 200, "{text}");
    assert_eq!(
        call(
            "PUT",
            &format!("{u}/task/{long}/branch"),
            None,
            &[],
            Some(b"stable")
        )
        .0,
        200
    );
    assert_eq!(
        call("PUT", &format!("{u}/task/{long}/build"), None, &[], None).0,
        200
    );
    let mut queued = Vec::new();
    for _ in 0..2 {
        let (code, text) = call(
            "POST",
            &format!("{u}/task"),
            None,
            &[
                ("Content-Type", "application/gzip"),
                ("Pookie-Options", r#"{"python": ["3.8"]}"#),
            ],
            Some(&example_tgz("c-ext")),
        );
        assert_eq!(code, 201, "{text}");
        queued.push(
            serde_json::from_str::<Value>(&text).unwrap()["id"]
                .as_i64()
                .unwrap(),
        );
    }
    // Wait until the sleep runs inside its sandbox, then take the server's process tree.
    let tree = wait_for_sleep(s.pid());
    let tree: Vec<(i32, u64)> = tree
        .into_iter()
        .filter(|p| *p != s.pid())
        .filter_map(|p| pookie_ns::serve::monitor::stat(p).map(|st| (p, st.start)))
        .collect();
    assert!(
        std::fs::read_dir(r.store.join("workspaces"))
            .unwrap()
            .count()
            > 0,
        "the long task has a workspace"
    );
    // While it runs: its resources are sampled (every 3 s) into the status, the metrics, the
    // builder's status and the page, which shows its log tail and sparklines.
    let until = Instant::now() + Duration::from_secs(30);
    let st = loop {
        let st = get_json(&format!("{u}/task/{long}/status"), None);
        let r = &st["resources"];
        if r["rss_kib"].as_u64().unwrap_or(0) > 0 && r["cpu_seconds"].as_f64().unwrap_or(0.0) > 0.0
        {
            break st;
        }
        assert!(Instant::now() < until, "no sample in 30 s: {st}");
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(
        st["resources"]["cpu_seconds"].as_f64().unwrap() > 0.0,
        "{st}"
    );
    let builder = get_json(&format!("{u}/builder/status"), None);
    assert_eq!(builder["running"][0]["id"], long, "{builder}");
    assert_eq!(builder["queue"], json!(queued), "{builder}");
    let (_, metrics) = call("GET", &format!("{u}/metrics"), None, &[], None);
    assert!(
        metrics.contains(&format!("pookie_ns_task_rss_bytes{{task=\"{long}\"}}")),
        "{metrics}"
    );
    let (_, page) = call("GET", &format!("{u}/"), None, &[], None);
    let running = page
        .split(&format!("id=\"task-{long}\""))
        .nth(1)
        .unwrap_or_else(|| panic!("the page shows no running task {long}: {page}"));
    assert!(
        running.contains("--build=sleep 4321"),
        "log tail: {running}"
    );
    assert!(running.contains("<polyline"), "sparkline: {running}");
    for id in &queued {
        assert!(page.contains(&format!("<tr><td>{id} (queued)")), "{page}");
    }
    screenshot(&format!("{u}/"));
    s.kill9();

    let t0 = Instant::now();
    let s = Server::start(&r, &[]);
    eprintln!("restart with recovery took {:.1?}", t0.elapsed());
    let st = get_json(&format!("{}/task/{long}/status", s.url), None);
    assert_eq!(st["state"], "interrupted", "{st}");
    let left: Vec<_> = tree.iter().filter(|(p, start)| alive(*p, *start)).collect();
    assert!(
        left.is_empty(),
        "processes of the killed server's build remain: {left:?}"
    );
    let ws: Vec<PathBuf> = std::fs::read_dir(r.store.join("workspaces"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(ws.is_empty(), "workspaces remain: {ws:?}");
    for id in &queued {
        let st = wait_terminal(&s.url, *id, Duration::from_secs(60));
        assert_eq!(
            st["state"], "error",
            "the queued task ran after the restart: {st}"
        );
    }
    // The finished task kept its log, report and wheels.
    let first = get_json(&format!("{}/task/1/status", s.url), None);
    assert_eq!(first["state"], "passed");
    assert_eq!(first["wheels"].as_array().unwrap().len(), 2, "{first}");
    for w in &wheels {
        let resp = agent()
            .get(format!("{}/task/1/wheels/{w}", s.url))
            .call()
            .unwrap();
        let mut body = Vec::new();
        resp.into_body()
            .into_reader()
            .read_to_end(&mut body)
            .unwrap();
        assert_eq!(body, std::fs::read(dist.join(w)).unwrap(), "{w}");
    }
    assert_eq!(
        get_json(&format!("{}/task/1/report", s.url), None)["targets"],
        report["targets"]
    );

    // SIGTERM drains: the running build is cancelled, the server exits 0, nothing is left.
    let (code, text) = call(
        "POST",
        &format!("{}/task", s.url),
        None,
        &[
            ("Content-Type", "application/gzip"),
            (
                "Pookie-Options",
                r#"{"target": ["x86_64"], "python": ["3.11"], "build": "sleep 4321"}"#,
            ),
        ],
        Some(&pookie_ns::submit::pack(&project).unwrap()),
    );
    assert_eq!(code, 201, "{text}");
    let last = serde_json::from_str::<Value>(&text).unwrap()["id"]
        .as_i64()
        .unwrap();
    wait_for_sleep(s.pid());
    assert_eq!(s.stop(), 0);
    let s = Server::start(&r, &[]);
    let st = get_json(&format!("{}/task/{last}/status", s.url), None);
    assert_eq!(st["state"], "cancelled", "{st}");
    assert_eq!(
        std::fs::read_dir(r.store.join("workspaces"))
            .unwrap()
            .count(),
        0
    );
    assert_eq!(s.stop(), 0);
}

/// The page in headless Chromium (Debian's `chromium`), kept as a test artifact:
/// `target/tmp/serve-status-page.png`.
fn screenshot(url: &str) {
    let chromium = ["chromium", "chromium-browser"].into_iter().find(|c| {
        Command::new(c)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    });
    if !require(chromium.is_some(), "chromium (apt-get install chromium)") {
        return;
    }
    let png = Path::new(env!("CARGO_TARGET_TMPDIR")).join("serve-status-page.png");
    let _ = std::fs::remove_file(&png);
    let profile = tempfile::tempdir().unwrap();
    let mut child = Command::new(chromium.unwrap())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--screenshot={}", png.display()))
        .args(["--window-size=1280,1000", url])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // A group of its own, removed whole afterwards: none of its helpers outlives it.
        .process_group(0)
        .spawn()
        .unwrap();
    let group = nix::unistd::Pid::from_raw(-(child.id() as i32));
    let until = Instant::now() + Duration::from_secs(90);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > until {
            let _ = nix::sys::signal::kill(group, nix::sys::signal::Signal::SIGKILL);
            let _ = child.wait();
            panic!("chromium took more than 90 s to take the screenshot");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = nix::sys::signal::kill(group, nix::sys::signal::Signal::SIGKILL);
    let bytes = std::fs::read(&png).unwrap_or_else(|e| panic!("{}: {e}", png.display()));
    assert!(bytes.starts_with(b"\x89PNG"), "not a PNG");
    assert!(bytes.len() > 10_000, "a blank page? {} bytes", bytes.len());
    eprintln!("the status page: {} ({} bytes)", png.display(), bytes.len());
}

/// Waits (bounded) until `sleep 4321`, a task's build step, runs under the server `pid`; returns
/// the server's process tree then.
fn wait_for_sleep(pid: i32) -> Vec<i32> {
    let until = Instant::now() + Duration::from_secs(300);
    loop {
        let tree = pookie_ns::serve::monitor::tree(pid);
        let sleeping = tree.iter().any(|p| {
            std::fs::read(format!("/proc/{p}/cmdline")).is_ok_and(|c| c == b"sleep\x004321\x00")
        });
        if sleeping {
            return tree;
        }
        assert!(Instant::now() < until, "the long build step never started");
        std::thread::sleep(Duration::from_millis(300));
    }
}
