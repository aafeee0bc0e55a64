//! The routes. aoinb's under their own names (`GET/POST /task`, `PUT /task/ID/build_bundle`,
//! `PUT /task/ID/branch`, `PUT /task/ID/build`, `GET /task/ID/status`, `GET /builder/status`),
//! and ours: one-call submission (`POST /task` with the bundle as the body and the options in a
//! `Pookie-Options` header), `GET /task/ID/log` (`?follow=1` streams it while the task runs),
//! `GET /task/ID/report`, `GET /task/ID/wheels[/NAME]`, `DELETE /task/ID`, `GET /metrics` and the
//! page at `/`. Every answer but the log, wheels, metrics and page is JSON, every error
//! `{"error": "..."}` with its status. A request is authenticated before its body is read, and
//! checked whole before anything is written.

use std::fs::File;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tiny_http::{Header, Method, Request, Response};

use super::auth::{Denied, Role, Tokens};
use super::options::TaskOptions;
use super::runner::Runner;
use super::tasks::{is_terminal, Task, Tasks};
use super::{bundle, monitor, page};

/// Largest JSON body (options, branch).
const MAX_JSON: u64 = 64 * 1024;
/// Log followers at once (each holds a thread while its task runs).
const MAX_FOLLOWERS: usize = 64;

pub struct Service {
    pub tasks: Arc<Tasks>,
    pub runner: Arc<Runner>,
    pub tokens: Tokens,
    pub config_dir: PathBuf,
    pub store_root: PathBuf,
    pub max_bundle: u64,
    pub max_entries: u64,
    pub jobs: usize,
    pub requests: AtomicU64,
    pub errors: AtomicU64,
    pub followers: AtomicUsize,
}

/// An answer: status, content type and body.
pub struct Reply {
    status: u16,
    content_type: &'static str,
    body: Body,
}

enum Body {
    Bytes(Vec<u8>),
    File(File),
    /// The task whose log to stream until it ends, and its log if it has one yet.
    Follow(i64, Option<File>),
}

fn json_reply(status: u16, v: &Value) -> Reply {
    Reply {
        status,
        content_type: "application/json",
        body: Body::Bytes(serde_json::to_vec_pretty(v).expect("serializable")),
    }
}

fn err(status: u16, message: impl Into<String>) -> Reply {
    json_reply(status, &json!({ "error": message.into() }))
}

fn ok(v: Value) -> Reply {
    json_reply(200, &v)
}

/// A request's method, path segments, query and headers we use.
struct Asked<'a> {
    method: &'a Method,
    path: Vec<&'a str>,
    query: &'a str,
}

fn header<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    req.headers()
        .iter()
        .find(|h| h.field.as_str().as_str().eq_ignore_ascii_case(name))
        .map(|h| h.value.as_str())
}

impl Service {
    /// Answers one request (on the calling thread; a log follower gets a thread of its own).
    pub fn handle(self: &Arc<Self>, mut req: Request) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let reply = self.route(&mut req);
        if reply.status >= 400 {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        let Reply {
            status,
            content_type,
            body,
        } = reply;
        let ct = Header::from_bytes("Content-Type", content_type).expect("valid header");
        let result = match body {
            Body::Bytes(b) => req.respond(
                Response::from_data(b)
                    .with_status_code(status)
                    .with_header(ct),
            ),
            Body::File(f) => req.respond(
                Response::from_file(f)
                    .with_status_code(status)
                    .with_header(ct),
            ),
            Body::Follow(id, file) => {
                let me = Arc::clone(self);
                let spawned = std::thread::Builder::new()
                    .name(format!("follow-{id}"))
                    .spawn(move || {
                        me.follow(req.into_writer(), id, file);
                        me.followers.fetch_sub(1, Ordering::SeqCst);
                    });
                if spawned.is_err() {
                    self.followers.fetch_sub(1, Ordering::SeqCst);
                }
                Ok(())
            }
        };
        if let Err(e) = result {
            tracing::debug!("answering a request failed: {e}");
        }
    }

    fn route(&self, req: &mut Request) -> Reply {
        let url = req.url().to_string();
        let (path, query) = url.split_once('?').unwrap_or((&url, ""));
        let method = req.method().clone();
        let asked = Asked {
            method: &method,
            path: path.split('/').filter(|s| !s.is_empty()).collect(),
            query,
        };
        let needs = match method {
            Method::Get | Method::Head => Role::Read,
            _ => Role::Submit,
        };
        match self.tokens.check(header(req, "Authorization"), needs) {
            Ok(()) => {}
            Err(Denied::Unauthenticated(why)) => return err(401, why),
            Err(Denied::Forbidden(role)) => {
                return err(
                    403,
                    format!(
                        "this token has the role {}, and {} {path} needs {}",
                        role.name(),
                        method,
                        needs.name()
                    ),
                )
            }
        }
        self.dispatch(req, &asked)
    }

    fn dispatch(&self, req: &mut Request, a: &Asked) -> Reply {
        use Method::*;
        let task_id = |s: &str| s.parse::<i64>().ok();
        match (a.method, a.path.as_slice()) {
            (Get, []) => self.page(),
            (Get, ["metrics"]) => Reply {
                status: 200,
                content_type: "text/plain; version=0.0.4",
                body: Body::Bytes(self.metrics().into_bytes()),
            },
            (Get, ["builder", "status"]) => self.builder_status(),
            (Get, ["task"]) => match self.tasks.list() {
                Ok(list) => ok(
                    json!({ "tasks": list.iter().map(|t| self.status_json(t)).collect::<Vec<_>>() }),
                ),
                Err(e) => err(500, e.to_string()),
            },
            (Post, ["task"]) => self.create(req),
            (_, ["task", id, rest @ ..]) => {
                let Some(id) = task_id(id) else {
                    return err(
                        404,
                        format!("no task {id:?}: task ids are numbers (GET /task lists them)"),
                    );
                };
                let task = match self.tasks.get(id) {
                    Ok(Some(t)) => t,
                    Ok(None) => return err(404, format!("no task {id} (GET /task lists them)")),
                    Err(e) => return err(500, e.to_string()),
                };
                self.task_route(req, a, task, rest)
            }
            (_, [] | ["metrics"] | ["builder", "status"] | ["task"]) => err(
                405,
                format!("{} is not allowed on /{}", a.method, a.path.join("/")),
            ),
            _ => err(
                404,
                format!(
                    "no route /{}: see the README's REST API table",
                    a.path.join("/")
                ),
            ),
        }
    }

    fn task_route(&self, req: &mut Request, a: &Asked, task: Task, rest: &[&str]) -> Reply {
        use Method::*;
        let id = task.id;
        match (a.method, rest) {
            (Get, ["status"]) => ok(self.status_json(&task)),
            (Put, ["build_bundle"]) => self.put_bundle(req, &task),
            (Put, ["branch"]) => self.put_branch(req, &task),
            (Put, ["build"]) => match self.tasks.enqueue(id) {
                Ok(true) => {
                    self.runner.notify();
                    ok(json!({ "id": id, "state": "queued" }))
                }
                Ok(false) if task.state != "new" => err(
                    409,
                    format!(
                        "task {id} is {} already: only a new task can be started",
                        task.state
                    ),
                ),
                Ok(false) => err(
                    409,
                    format!("task {id} has no bundle yet: PUT /task/{id}/build_bundle first"),
                ),
                Err(e) => err(500, e.to_string()),
            },
            (Get, ["log"]) => self.log(&task, a.query),
            (Get, ["report"]) => {
                let p = self.tasks.task_dir(id).join("report.json");
                match std::fs::read(&p) {
                    Ok(b) if serde_json::from_slice::<Value>(&b).is_ok() => Reply {
                        status: 200,
                        content_type: "application/json",
                        body: Body::Bytes(b),
                    },
                    _ => err(404, format!("task {id} has no report yet (it is {}): the report comes when its build ends", task.state)),
                }
            }
            (Get, ["wheels"]) => ok(json!({ "wheels": self.wheels(id) })),
            (Get, ["wheels", name]) => {
                if !self.wheels(id).iter().any(|w| w == name) {
                    return err(
                        404,
                        format!(
                            "task {id} has no wheel {name:?} (GET /task/{id}/wheels lists them)"
                        ),
                    );
                }
                let p = self.tasks.task_dir(id).join("wheels").join(name);
                match File::open(&p) {
                    Ok(f) => Reply {
                        status: 200,
                        content_type: "application/octet-stream",
                        body: Body::File(f),
                    },
                    Err(e) => err(500, format!("cannot read {}: {e}", p.display())),
                }
            }
            (Delete, []) => self.delete(&task),
            (
                _,
                ["status" | "build_bundle" | "branch" | "build" | "log" | "report" | "wheels", ..],
            )
            | (_, []) => err(
                405,
                format!(
                    "{} is not allowed on /task/{id}/{}",
                    a.method,
                    rest.join("/")
                ),
            ),
            _ => err(
                404,
                format!(
                    "no route /task/{id}/{}: see the README's REST API table",
                    rest.join("/")
                ),
            ),
        }
    }

    /// The wheels a task delivered, by name.
    fn wheels(&self, id: i64) -> Vec<String> {
        let dir = self.tasks.task_dir(id).join("wheels");
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .map(|rd| {
                rd.flatten()
                    .filter_map(|e| e.file_name().into_string().ok())
                    .filter(|n| n.ends_with(".whl"))
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    pub fn status_json(&self, t: &Task) -> Value {
        let mut v = serde_json::to_value(t).expect("serializable");
        if t.state == "queued" {
            let ahead = self
                .tasks
                .in_state("queued")
                .map(|q| q.iter().take_while(|o| o.id != t.id).count())
                .unwrap_or(0);
            v["queue_position"] = json!(ahead + 1);
        }
        v["branch"] = json!(t.options.branch());
        v["wheels"] = json!(self.wheels(t.id));
        v["links"] = json!({
            "status": format!("/task/{}/status", t.id),
            "log": format!("/task/{}/log", t.id),
            "report": format!("/task/{}/report", t.id),
            "wheels": format!("/task/{}/wheels", t.id),
        });
        v
    }

    /// Reads a body of at most `limit` bytes; 413 beyond.
    fn body(req: &mut Request, limit: u64) -> Result<Vec<u8>, Reply> {
        let too_big = || {
            err(413, format!("the request body is larger than {limit} bytes (the server's limit; see serve --max-bundle-mib)"))
        };
        if req.body_length().is_some_and(|n| n as u64 > limit) {
            return Err(too_big());
        }
        let mut buf = Vec::new();
        if let Err(e) = req.as_reader().take(limit + 1).read_to_end(&mut buf) {
            return Err(err(400, format!("reading the request body failed: {e}")));
        }
        if buf.len() as u64 > limit {
            return Err(too_big());
        }
        Ok(buf)
    }

    /// Checks options as `build` would, and that their branch exists.
    fn check_options(&self, o: &TaskOptions) -> Result<(), Reply> {
        o.check()
            .map_err(|e| err(400, format!("bad build option: {e}")))?;
        let branch = o.branch();
        let branches = crate::branch::branches(&self.config_dir);
        if crate::store::check_name(branch).is_err() || !branches.iter().any(|b| b == branch) {
            return Err(err(
                400,
                format!(
                    "no branch {branch:?}: the branches are {} (the server's admin adds one as {})",
                    branches.join(", "),
                    crate::branch::list_path(&self.config_dir, "NAME").display()
                ),
            ));
        }
        Ok(())
    }

    fn parse_options(text: &[u8], what: &str) -> Result<TaskOptions, Reply> {
        if text.iter().all(u8::is_ascii_whitespace) {
            return Ok(TaskOptions::default());
        }
        serde_json::from_slice(text).map_err(|e| {
            err(400, format!("{what} is not a JSON object of build options ({e}); the keys are branch, target, python, archs, only, build, test, test_requires, before_all, mode, compiler, jobs"))
        })
    }

    fn create(&self, req: &mut Request) -> Reply {
        if self.runner.draining.load(Ordering::SeqCst) {
            return err(503, "the server is stopping: it takes no new tasks");
        }
        let is_json = header(req, "Content-Type").is_none_or(|c| c.starts_with("application/json"));
        if is_json {
            // aoinb's first step: a task with its options, the bundle and start to follow.
            let body = match Self::body(req, MAX_JSON) {
                Ok(b) => b,
                Err(r) => return r,
            };
            let options = match Self::parse_options(&body, "the body") {
                Ok(o) => o,
                Err(r) => return r,
            };
            if let Err(r) = self.check_options(&options) {
                return r;
            }
            return match self.tasks.create(&options) {
                Ok(id) => json_reply(201, &json!({ "id": id, "state": "new" })),
                Err(e) => err(500, e.to_string()),
            };
        }
        // One call: the body is the bundle, the options come in a header.
        let options = match header(req, "Pookie-Options") {
            Some(h) => match Self::parse_options(h.as_bytes(), "the Pookie-Options header") {
                Ok(o) => o,
                Err(r) => return r,
            },
            None => TaskOptions::default(),
        };
        if let Err(r) = self.check_options(&options) {
            return r;
        }
        let bytes = match self.checked_bundle(req) {
            Ok(b) => b,
            Err(r) => return r,
        };
        let id = match self.tasks.create(&options) {
            Ok(id) => id,
            Err(e) => return err(500, e.to_string()),
        };
        if let Err(r) = self.store_bundle(id, &bytes) {
            let _ = self.tasks.delete(id);
            return r;
        }
        match self.tasks.enqueue(id) {
            Ok(_) => {
                self.runner.notify();
                json_reply(201, &json!({ "id": id, "state": "queued" }))
            }
            Err(e) => err(500, e.to_string()),
        }
    }

    /// The body, checked as a bundle.
    fn checked_bundle(&self, req: &mut Request) -> Result<Vec<u8>, Reply> {
        let bytes = Self::body(req, self.max_bundle)?;
        bundle::check(&bytes, self.max_bundle.saturating_mul(16), self.max_entries)
            .map_err(|r| err(if r.too_large { 413 } else { 400 }, r.message))?;
        Ok(bytes)
    }

    fn store_bundle(&self, id: i64, bytes: &[u8]) -> Result<(), Reply> {
        let dir = self.tasks.task_dir(id);
        let _ = std::fs::remove_dir_all(dir.join("bundle"));
        match bundle::unpack(bytes, &dir, self.max_entries) {
            Ok(project) => match self.tasks.set_project(id, &project) {
                Ok(true) => Ok(()),
                Ok(false) => Err(err(
                    409,
                    format!("task {id} has started: its bundle is fixed"),
                )),
                Err(e) => Err(err(500, e.to_string())),
            },
            Err(e) => {
                let _ = std::fs::remove_dir_all(dir.join("bundle"));
                Err(err(400, e))
            }
        }
    }

    fn put_bundle(&self, req: &mut Request, task: &Task) -> Reply {
        if task.state != "new" {
            return err(
                409,
                format!("task {} is {}: its bundle is fixed", task.id, task.state),
            );
        }
        let bytes = match self.checked_bundle(req) {
            Ok(b) => b,
            Err(r) => return r,
        };
        match self.store_bundle(task.id, &bytes) {
            Ok(()) => ok(
                json!({ "id": task.id, "project": self.tasks.get(task.id).ok().flatten().and_then(|t| t.project) }),
            ),
            Err(r) => r,
        }
    }

    fn put_branch(&self, req: &mut Request, task: &Task) -> Reply {
        if task.state != "new" {
            return err(
                409,
                format!("task {} is {}: its branch is fixed", task.id, task.state),
            );
        }
        let body = match Self::body(req, MAX_JSON) {
            Ok(b) => b,
            Err(r) => return r,
        };
        // `{"branch": "stable"}`, or the name as plain text.
        let branch = match serde_json::from_slice::<Value>(&body) {
            Ok(Value::Object(o)) => match o.get("branch").and_then(Value::as_str) {
                Some(b) if o.len() == 1 => b.to_string(),
                _ => {
                    return err(
                        400,
                        "the body must be {\"branch\": \"NAME\"} or the name as text",
                    )
                }
            },
            Ok(Value::String(s)) => s,
            Ok(_) => {
                return err(
                    400,
                    "the body must be {\"branch\": \"NAME\"} or the name as text",
                )
            }
            Err(_) => match std::str::from_utf8(&body) {
                Ok(s) if !s.trim().is_empty() && !s.trim().starts_with(['{', '[']) => {
                    s.trim().to_string()
                }
                _ => {
                    return err(
                        400,
                        "the body must be {\"branch\": \"NAME\"} or the name as text",
                    )
                }
            },
        };
        let mut options = task.options.clone();
        options.branch = Some(branch.clone());
        if let Err(r) = self.check_options(&options) {
            return r;
        }
        match self.tasks.set_options(task.id, &options) {
            Ok(true) => ok(json!({ "id": task.id, "branch": branch })),
            Ok(false) => err(
                409,
                format!("task {} has started: its branch is fixed", task.id),
            ),
            Err(e) => err(500, e.to_string()),
        }
    }

    fn delete(&self, task: &Task) -> Reply {
        let id = task.id;
        if is_terminal(&task.state) {
            return match self.tasks.delete(id) {
                Ok(()) => ok(json!({ "id": id, "deleted": true })),
                Err(e) => err(500, e.to_string()),
            };
        }
        match self.tasks.cancel_waiting(id) {
            Ok(true) => return ok(json!({ "id": id, "state": "cancelled" })),
            Ok(false) => {}
            Err(e) => return err(500, e.to_string()),
        }
        match self.runner.cancel(id) {
            Ok(true) => json_reply(202, &json!({ "id": id, "state": "cancelling" })),
            Ok(false) => err(
                409,
                format!(
                    "task {id} is {} and not running here: try again",
                    task.state
                ),
            ),
            Err(e) => err(500, e.to_string()),
        }
    }

    fn log(&self, task: &Task, query: &str) -> Reply {
        let p = self.tasks.task_dir(task.id).join("log");
        let follow = query
            .split('&')
            .any(|kv| kv == "follow=1" || kv == "follow=true");
        let file = File::open(&p).ok();
        if !follow {
            return Reply {
                status: 200,
                content_type: "text/plain; charset=utf-8",
                body: match file {
                    Some(f) => Body::File(f),
                    None => Body::Bytes(Vec::new()),
                },
            };
        }
        if self.followers.fetch_add(1, Ordering::SeqCst) >= MAX_FOLLOWERS {
            self.followers.fetch_sub(1, Ordering::SeqCst);
            return err(
                503,
                format!(
                    "{MAX_FOLLOWERS} logs are being followed already: poll GET /task/{}/log \
                     instead",
                    task.id
                ),
            );
        }
        Reply {
            status: 200,
            content_type: "text/plain; charset=utf-8",
            body: Body::Follow(task.id, file),
        }
    }

    /// Streams a log as chunks while its task runs (written by hand: tiny_http would hold the
    /// chunks back until 8 KiB gathered), ending when the task ends and the log is read. A task
    /// that has not started has no log yet: it is opened once the runner made it.
    fn follow(&self, mut out: Box<dyn Write + Send>, id: i64, mut file: Option<File>) {
        let head = "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n\
                    Transfer-Encoding: chunked\r\nCache-Control: no-store\r\n\r\n";
        if out
            .write_all(head.as_bytes())
            .and_then(|_| out.flush())
            .is_err()
        {
            return;
        }
        let path = self.tasks.task_dir(id).join("log");
        let mut buf = vec![0u8; 64 * 1024];
        let mut last_check = Instant::now() - Duration::from_secs(1);
        let mut ended = false;
        loop {
            if file.is_none() {
                file = File::open(&path).ok();
            }
            let n = file.as_mut().map_or(0, |f| f.read(&mut buf).unwrap_or(0));
            if n > 0 {
                let chunk = [format!("{n:x}\r\n").as_bytes(), &buf[..n], b"\r\n"].concat();
                if out.write_all(&chunk).and_then(|_| out.flush()).is_err() {
                    return; // the client went away
                }
                continue;
            }
            if ended {
                break;
            }
            // At the end of what is written: one more read after the task ended gets the rest.
            if last_check.elapsed() >= Duration::from_millis(250) {
                last_check = Instant::now();
                ended = match self.tasks.get(id) {
                    Ok(Some(t)) => is_terminal(&t.state),
                    _ => true,
                };
                if ended {
                    continue;
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = out.write_all(b"0\r\n\r\n").and_then(|_| out.flush());
    }

    fn builder_status(&self) -> Reply {
        let tasks = self.tasks.list().unwrap_or_default();
        let ids = |state: &str| {
            tasks
                .iter()
                .filter(|t| t.state == state)
                .map(|t| t.id)
                .collect::<Vec<_>>()
        };
        let running: Vec<Value> = tasks
            .iter()
            .filter(|t| t.state == "running")
            .map(|t| json!({ "id": t.id, "started": t.started, "resources": t.resources }))
            .collect();
        ok(json!({
            "version": env!("CARGO_PKG_VERSION"),
            "jobs": self.jobs,
            "draining": self.runner.draining.load(Ordering::SeqCst),
            "queue": ids("queued"),
            "running": running,
            "tasks": tasks.len(),
            "host": monitor::host(&self.store_root),
            "workspaces_bytes": crate::store::disk_usage(&self.store_root.join("workspaces")).0,
        }))
    }

    fn page(&self) -> Reply {
        let tasks = self.tasks.list().unwrap_or_default();
        let html = page::render(
            &tasks,
            &self.tasks,
            &monitor::host(&self.store_root),
            self.jobs,
        );
        Reply {
            status: 200,
            content_type: "text/html; charset=utf-8",
            body: Body::Bytes(html.into_bytes()),
        }
    }

    fn metrics(&self) -> String {
        let tasks = self.tasks.list().unwrap_or_default();
        page::metrics(
            &tasks,
            &monitor::host(&self.store_root),
            self.requests.load(Ordering::Relaxed),
            self.errors.load(Ordering::Relaxed),
        )
    }
}
