//! `pookie-ns submit`: the client of `serve`. Packs the project (or takes an sdist as it is),
//! sends it with the build options in one `POST /task`, follows the log or polls the status until
//! the task ends, downloads the wheels into `--out`, and exits with the build's own status — so a
//! CI job drives a shared builder with one command.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::cli::SubmitArgs;
use crate::error::{Error, Result};
use crate::serve::options::TaskOptions;
use crate::serve::tasks::is_terminal;

/// Left out of a packed project: build output, VCS data and caches (as `build` leaves them out
/// of its copy).
const SKIPPED: [&str; 9] = [
    "build",
    "dist",
    ".git",
    "__pycache__",
    ".tox",
    ".nox",
    ".venv",
    ".pytest_cache",
    ".mypy_cache",
];

struct Client {
    agent: ureq::Agent,
    server: String,
    token: Option<String>,
}

fn fail(server: &str, what: &str, e: impl std::fmt::Display) -> Error {
    Error::internal(format!(
        "{what} at {server} failed: {e}; is `pookie-ns serve` running there (--server URL)?"
    ))
}

impl Client {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server.trim_end_matches('/'))
    }

    fn auth<B>(&self, req: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match &self.token {
            Some(t) => req.header("Authorization", format!("Bearer {t}")),
            None => req,
        }
    }

    /// A JSON answer of a 2xx status; the server's `{"error"}` otherwise, as an error of the
    /// kind its status says (4xx: what we sent, exit 2).
    fn json(
        &self,
        what: &str,
        resp: std::result::Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<Value> {
        let mut resp = resp.map_err(|e| fail(&self.server, what, e))?;
        let status = resp.status().as_u16();
        let text = resp
            .body_mut()
            .read_to_string()
            .map_err(|e| fail(&self.server, what, e))?;
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if (200..300).contains(&status) {
            return Ok(v);
        }
        let message = v["error"].as_str().unwrap_or(text.trim()).to_string();
        let message = format!("{what}: the server answered {status}: {message}");
        Err(if (400..500).contains(&status) {
            Error::usage(message)
        } else {
            Error::internal(message)
        })
    }

    fn get(&self, path: &str, what: &str) -> Result<Value> {
        let resp = self.auth(self.agent.get(self.url(path))).call();
        self.json(what, resp)
    }
}

/// The project directory as a tar.gz whose one top directory is named after it.
pub fn pack(dir: &Path) -> Result<Vec<u8>> {
    let abs = std::fs::canonicalize(dir).map_err(|e| Error::io("find", dir, e))?;
    let top = abs
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "project".into());
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    tar.follow_symlinks(false);
    let mut stack = vec![(abs.clone(), PathBuf::from(&top))];
    while let Some((path, name)) = stack.pop() {
        let meta = std::fs::symlink_metadata(&path).map_err(|e| Error::io("read", &path, e))?;
        if meta.is_dir() {
            tar.append_dir(&name, &path)
                .map_err(|e| Error::io("pack", &path, e))?;
            let rd = std::fs::read_dir(&path).map_err(|e| Error::io("list", &path, e))?;
            for e in rd.flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                if SKIPPED.contains(&n.as_str()) || n.ends_with(".egg-info") {
                    continue;
                }
                stack.push((e.path(), name.join(&n)));
            }
        } else if meta.is_file() || meta.file_type().is_symlink() {
            tar.append_path_with_name(&path, &name)
                .map_err(|e| Error::io("pack", &path, e))?;
        }
    }
    let gz = tar.into_inner().map_err(|e| Error::io("pack", dir, e))?;
    gz.finish().map_err(|e| Error::io("pack", dir, e))
}

fn token(args: &SubmitArgs) -> Result<Option<String>> {
    if let Some(p) = &args.token_file {
        let t = std::fs::read_to_string(p).map_err(|e| Error::io("read the token file", p, e))?;
        return Ok(Some(t.trim().to_string()));
    }
    Ok(std::env::var("POOKIE_NS_TOKEN")
        .ok()
        .filter(|t| !t.is_empty()))
}

pub fn submit(args: &SubmitArgs) -> Result<i32> {
    let client = Client {
        agent: ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(30)))
            .user_agent(concat!("pookie-ns/", env!("CARGO_PKG_VERSION")))
            .build()
            .new_agent(),
        server: args.server.clone(),
        token: token(args)?,
    };
    let options = TaskOptions::from_cli(&args.options);
    options.check().map_err(Error::usage)?;
    let body = if args.bundle.is_file() {
        std::fs::read(&args.bundle).map_err(|e| Error::io("read", &args.bundle, e))?
    } else if args.bundle.is_dir() {
        pack(&args.bundle)?
    } else {
        return Err(Error::usage(format!(
            "{} is neither a project directory nor an sdist file",
            args.bundle.display()
        )));
    };
    let resp = client
        .auth(client.agent.post(client.url("/task")))
        .header("Content-Type", "application/gzip")
        .header(
            "Pookie-Options",
            serde_json::to_string(&options).expect("serializable"),
        )
        .send(&body[..]);
    let created = client.json("submitting the bundle", resp)?;
    let id = created["id"]
        .as_i64()
        .ok_or_else(|| Error::internal(format!("the server answered no task id: {created}")))?;
    eprintln!(
        "pookie-ns submit: task {id} queued at {}",
        client.url(&format!("/task/{id}/status"))
    );
    if args.follow {
        follow_log(&client, id)?;
    }
    let status = loop {
        let s = client.get(&format!("/task/{id}/status"), "reading the task's status")?;
        if s["state"].as_str().is_some_and(is_terminal) {
            break s;
        }
        std::thread::sleep(Duration::from_secs(2));
    };
    let wheels = client.get(&format!("/task/{id}/wheels"), "listing the wheels")?;
    let names: Vec<String> = wheels["wheels"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|w| w.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    if !names.is_empty() {
        std::fs::create_dir_all(&args.out).map_err(|e| Error::io("create", &args.out, e))?;
    }
    for name in &names {
        download_wheel(&client, id, name, &args.out)?;
    }
    if let Some(path) = &args.report {
        let report = client.get(&format!("/task/{id}/report"), "fetching the report")?;
        crate::store::write_json(path, &report)?;
    }
    let state = status["state"].as_str().unwrap_or("?");
    eprintln!(
        "pookie-ns submit: task {id} {state}: {}",
        status["message"].as_str().unwrap_or("")
    );
    Ok(match (state, status["exit_code"].as_i64()) {
        ("passed", _) => 0,
        (_, Some(code)) if code == 1 || code == 2 => code as i32,
        _ => 1,
    })
}

/// Streams task `id`'s log to stderr until it ends (or the stream breaks: then the status is
/// polled).
fn follow_log(client: &Client, id: i64) -> Result<()> {
    let resp = client
        .auth(
            client
                .agent
                .get(client.url(&format!("/task/{id}/log?follow=1"))),
        )
        .call()
        .map_err(|e| fail(&client.server, "following the log", e))?;
    let mut reader = resp.into_body().into_reader();
    let mut buf = [0u8; 16 * 1024];
    let mut stderr = std::io::stderr();
    loop {
        match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                let _ = stderr.write_all(&buf[..n]);
            }
            Err(e) => {
                eprintln!("pookie-ns submit: the log stream broke ({e}); polling the status");
                break;
            }
        }
    }
    Ok(())
}

/// Downloads wheel `name` of task `id` into `out`, through a `.part` file renamed into place.
fn download_wheel(client: &Client, id: i64, name: &str, out: &Path) -> Result<()> {
    // The server lists names; a name with a slash would not be one of its files.
    if name.contains('/') || name.starts_with('.') {
        return Err(Error::internal(format!(
            "the server listed a wheel named {name:?}"
        )));
    }
    let mut resp = client
        .auth(
            client
                .agent
                .get(client.url(&format!("/task/{id}/wheels/{name}"))),
        )
        .call()
        .map_err(|e| fail(&client.server, "downloading a wheel", e))?;
    if resp.status().as_u16() != 200 {
        return Err(Error::internal(format!(
            "downloading {name} from task {id}: the server answered {}",
            resp.status()
        )));
    }
    let dest = out.join(name);
    let part = out.join(format!(".{name}.part"));
    let mut f = std::fs::File::create(&part).map_err(|e| Error::io("create", &part, e))?;
    std::io::copy(&mut resp.body_mut().as_reader(), &mut f)
        .map_err(|e| Error::io("download into", &part, e))?;
    std::fs::rename(&part, &dest).map_err(|e| Error::io("rename into place", &dest, e))?;
    eprintln!("pookie-ns submit: {}", dest.display());
    Ok(())
}
