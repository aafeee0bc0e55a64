//! `pookie-ns serve`: a build service over HTTP for a shared build host — aoinb's REST API over
//! `build`. The server is a thin layer: HTTP threads (tiny_http) answer requests from the task
//! store (SQLite), a scheduler starts each task as a `pookie-ns build --json` child process, and a
//! monitor samples the running ones every 3 s. Its threads never fork.
//!
//! Start-up: tokens are loaded (a non-loopback address without them is refused), the task store
//! is opened, tasks a killed server left running are recovered (`runner::recover`), then the
//! threads start. SIGTERM or SIGINT drains: no new task starts, running builds are cancelled or
//! finished (`--on-stop`), queued tasks stay queued for the next start.

pub mod auth;
pub mod bundle;
pub mod http;
pub mod monitor;
pub mod options;
pub mod page;
pub mod runner;
pub mod tasks;

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::cli::ServeArgs;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::store::Store;

/// How often running tasks are sampled (aoinb: "rusage data every 3 seconds").
pub const SAMPLE_SECONDS: u64 = 3;

/// HTTP worker threads.
const HTTP_THREADS: usize = 8;

/// `serve`'s arguments checked before anything starts: the addresses to listen on and the
/// tokens; an open server only on loopback.
fn checked_args(args: &ServeArgs) -> Result<(Vec<SocketAddr>, auth::Tokens)> {
    let addrs: Vec<SocketAddr> = args
        .listen
        .to_socket_addrs()
        .map_err(|e| Error::usage(format!("--listen {}: {e} (write HOST:PORT)", args.listen)))?
        .collect();
    let tokens = match &args.tokens {
        Some(p) => auth::Tokens::load(p).map_err(Error::usage)?,
        None => auth::Tokens::Open,
    };
    if matches!(tokens, auth::Tokens::Open) && addrs.iter().any(|a| !a.ip().is_loopback()) {
        return Err(Error::usage(format!(
            "--listen {} is reachable from other hosts, and without --tokens anyone there could \
             run builds: give --tokens FILE (see README, \"Serving builds over HTTP\"), or listen \
             on 127.0.0.1",
            args.listen
        )));
    }
    if args.jobs == 0 {
        return Err(Error::usage("--jobs must be at least 1"));
    }
    Ok((addrs, tokens))
}

pub fn serve(config: &Config, store: &Store, args: &ServeArgs) -> Result<i32> {
    let (addrs, tokens) = checked_args(args)?;
    let root = store.root.join("serve");
    let tasks = Arc::new(tasks::Tasks::open(&root)?);
    let recovered = runner::recover(&tasks, store)?;
    if !recovered.is_empty() {
        tracing::warn!(
            "tasks {recovered:?} were running when the server was killed: marked interrupted"
        );
    }
    let runner = Arc::new(runner::Runner::new(
        Arc::clone(&tasks),
        config
            .config_dir
            .is_dir()
            .then(|| config.config_dir.clone()),
        store.root.clone(),
        args.jobs,
        args.keep_tasks,
        args.keep_days.saturating_mul(86_400),
    )?);
    runner.expire();
    let server = tiny_http::Server::http(&addrs[..])
        .map_err(|e| Error::usage(format!("cannot listen on {}: {e}", args.listen)))?;
    let bound = server
        .server_addr()
        .to_ip()
        .map_or(args.listen.clone(), |a| a.to_string());
    crate::process::catch_interrupts()?;
    let service = Arc::new(http::Service {
        tasks: Arc::clone(&tasks),
        runner: Arc::clone(&runner),
        tokens,
        config_dir: config.config_dir.clone(),
        store_root: store.root.clone(),
        max_bundle: args.max_bundle_mib.saturating_mul(1 << 20),
        max_entries: config.max_archive_entries.min(100_000),
        jobs: args.jobs,
        requests: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        followers: AtomicUsize::new(0),
    });
    let server = Arc::new(server);
    let stop = Arc::new(AtomicBool::new(false));
    let threads = start_threads(&server, &service, &runner, &stop)?;
    let scheduler = {
        let runner = Arc::clone(&runner);
        spawn_named("scheduler", Box::new(move || runner.schedule()))?
    };
    // One line on stdout that scripts (and the tests) wait for.
    println!("pookie-ns serve: listening on http://{bound}");
    eprintln!(
        "pookie-ns serve: {} task(s) at once, tasks in {}",
        args.jobs,
        root.display()
    );
    while crate::process::interrupted().is_none() {
        std::thread::sleep(Duration::from_millis(200));
    }
    let cancel = args.on_stop == "cancel";
    eprintln!(
        "pookie-ns serve: stopping: no new task starts; running builds are {}",
        if cancel {
            "cancelled"
        } else {
            "finished first"
        }
    );
    runner.drain(cancel);
    let _ = scheduler.join();
    stop.store(true, Ordering::SeqCst);
    server.unblock();
    for t in threads {
        let _ = t.join();
    }
    eprintln!("pookie-ns serve: stopped; queued tasks wait for the next start");
    Ok(0)
}

/// Starts a thread named `name`.
fn spawn_named(name: &str, f: Box<dyn FnOnce() + Send>) -> Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .map_err(|e| Error::internal(format!("cannot start the {name} thread: {e}")))
}

/// The HTTP threads and the monitor (which samples the running tasks), until `stop`.
fn start_threads(
    server: &Arc<tiny_http::Server>,
    service: &Arc<http::Service>,
    runner: &Arc<runner::Runner>,
    stop: &Arc<AtomicBool>,
) -> Result<Vec<std::thread::JoinHandle<()>>> {
    let mut threads = Vec::new();
    for i in 0..HTTP_THREADS {
        let (server, service, stop) = (Arc::clone(server), Arc::clone(service), Arc::clone(stop));
        threads.push(spawn_named(
            &format!("http-{i}"),
            Box::new(move || {
                while !stop.load(Ordering::SeqCst) {
                    match server.recv_timeout(Duration::from_millis(250)) {
                        Ok(Some(req)) => service.handle(req),
                        Ok(None) => {}
                        Err(e) => tracing::debug!("accepting a request failed: {e}"),
                    }
                }
            }),
        )?);
    }
    {
        let (runner, stop) = (Arc::clone(runner), Arc::clone(stop));
        threads.push(spawn_named(
            "monitor",
            Box::new(move || {
                while !stop.load(Ordering::SeqCst) {
                    sample_running(&runner);
                    for _ in 0..SAMPLE_SECONDS * 4 {
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(250));
                    }
                }
            }),
        )?);
    }
    Ok(threads)
}

/// One sample of every running task: its process tree's CPU and memory, its files' disk use.
fn sample_running(runner: &runner::Runner) {
    for (id, pid) in runner.running_pids() {
        let (cpu_seconds, rss_kib) = monitor::sample_tree(pid);
        let disk_bytes = crate::store::disk_usage(&runner.tasks.task_dir(id)).0;
        let sample = tasks::Sample {
            t: crate::store::unix_now(),
            cpu_seconds,
            rss_kib,
            disk_bytes,
        };
        if let Err(e) = runner.tasks.sample(id, &sample) {
            tracing::error!("{e}");
        }
    }
}
