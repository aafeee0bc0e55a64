//! Runs tasks: up to `--jobs` at once, oldest queued first, each as a `pookie-ns build --json`
//! child process (spawn + exec: the server's threads never fork, so the sandbox's fork rules
//! hold), in a process group of its own, with its stderr as the task's log and its stdout as the
//! report. Cancelling is SIGTERM to the child, which `build` answers by stopping its workers,
//! removing their workspaces and reporting `interrupted`.
//!
//! After a crash of the server (`kill -9`), [`recover`] finds the tasks the database still says
//! are running: a child that outlived the server is stopped (SIGTERM, then SIGKILL to its group
//! and tree), the task is marked `interrupted`, and the store's stale workspaces are swept.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::monitor;
use super::tasks::{Task, Tasks};
use crate::error::{Error, Result};
use crate::store::Store;

pub struct Runner {
    pub tasks: Arc<Tasks>,
    exe: PathBuf,
    config_dir: Option<PathBuf>,
    work_dir: PathBuf,
    jobs: usize,
    /// Running tasks and their child's pid.
    running: Mutex<HashMap<i64, i32>>,
    wake: Condvar,
    pub draining: AtomicBool,
    /// Set with `draining` when running builds are to be cancelled (`--on-stop cancel`).
    cancel_on_drain: AtomicBool,
    keep_tasks: usize,
    keep_secs: u64,
}

impl Runner {
    pub fn new(
        tasks: Arc<Tasks>,
        config_dir: Option<PathBuf>,
        work_dir: PathBuf,
        jobs: usize,
        keep_tasks: usize,
        keep_secs: u64,
    ) -> Result<Runner> {
        let exe = std::env::current_exe()
            .map_err(|e| Error::io("find the running executable", "/proc/self/exe", e))?;
        Ok(Runner {
            tasks,
            exe,
            config_dir,
            work_dir,
            jobs: jobs.max(1),
            running: Mutex::new(HashMap::new()),
            wake: Condvar::new(),
            draining: AtomicBool::new(false),
            cancel_on_drain: AtomicBool::new(false),
            keep_tasks,
            keep_secs,
        })
    }

    fn running(&self) -> std::sync::MutexGuard<'_, HashMap<i64, i32>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Running tasks and their child's pid.
    pub fn running_pids(&self) -> Vec<(i64, i32)> {
        let mut v: Vec<(i64, i32)> = self.running().iter().map(|(t, p)| (*t, *p)).collect();
        v.sort();
        v
    }

    /// Wakes the scheduler (a task was queued, or one ended).
    pub fn notify(&self) {
        self.wake.notify_all();
    }

    /// The scheduler: starts queued tasks while slots are free, until draining.
    pub fn schedule(self: &Arc<Self>) {
        loop {
            if self.draining.load(Ordering::SeqCst) {
                return;
            }
            let free = self.jobs.saturating_sub(self.running().len());
            for _ in 0..free {
                match self.tasks.claim_next() {
                    Ok(Some(task)) => self.start(task),
                    Ok(None) => break,
                    Err(e) => {
                        tracing::error!("{e}");
                        break;
                    }
                }
            }
            let guard = self.running();
            let _ = self
                .wake
                .wait_timeout(guard, Duration::from_secs(1))
                .unwrap_or_else(|p| p.into_inner());
        }
    }

    fn command(&self, task: &Task) -> Command {
        let dir = self.tasks.task_dir(task.id);
        let project = dir
            .join("bundle")
            .join(task.project.as_deref().unwrap_or("."));
        let mut c = Command::new(&self.exe);
        if let Some(d) = &self.config_dir {
            c.arg("-c").arg(d);
        }
        c.arg("--work-dir")
            .arg(&self.work_dir)
            .arg("--json")
            .arg("build");
        c.arg(&project).args(task.options.build_args());
        c.arg("--out").arg(dir.join("wheels"));
        c
    }

    /// Spawns a claimed task's build and a thread that waits for it.
    fn start(self: &Arc<Self>, task: Task) {
        let id = task.id;
        let dir = self.tasks.task_dir(id);
        let spawned = (|| -> Result<std::process::Child> {
            let log_path = dir.join("log");
            let mut log = File::options()
                .create(true)
                .append(true)
                .open(&log_path)
                .map_err(|e| Error::io("open", &log_path, e))?;
            let report_path = dir.join("report.json.part");
            let report =
                File::create(&report_path).map_err(|e| Error::io("create", &report_path, e))?;
            let mut cmd = self.command(&task);
            let _ = writeln!(log, "pookie-ns serve: task {id}: {cmd:?}");
            let err = log
                .try_clone()
                .map_err(|e| Error::io("dup", &log_path, e))?;
            // process_group keeps std on posix_spawn (no pre_exec closure, hence no fork).
            cmd.stdin(Stdio::null())
                .stdout(report)
                .stderr(err)
                .process_group(0);
            cmd.spawn()
                .map_err(|e| Error::io("start pookie-ns build for", &self.exe, e))
        })();
        let mut child = match spawned {
            Ok(c) => c,
            Err(e) => {
                let _ = self.tasks.finish(id, "error", None, &e.to_string());
                return;
            }
        };
        let pid = child.id() as i32;
        let start = monitor::stat(pid).map_or(0, |s| s.start);
        if let Err(e) = self.tasks.set_pid(id, pid, start) {
            tracing::error!("{e}");
        }
        self.running().insert(id, pid);
        tracing::info!(task = id, pid, "build started");
        // A drain that began while this task was being claimed did not see it: cancel it here.
        if self.draining.load(Ordering::SeqCst) && self.cancel_on_drain.load(Ordering::SeqCst) {
            let _ = self.cancel(id);
        }
        let me = Arc::clone(self);
        let waiter = std::thread::Builder::new()
            .name(format!("task-{id}"))
            .spawn(move || {
                let status = child.wait();
                me.finished(id, status);
            });
        if let Err(e) = waiter {
            tracing::error!("cannot start a thread to wait for task {id}: {e}");
        }
    }

    /// Records how a task's build ended and folds the resource samples into its report.
    fn finished(&self, id: i64, status: std::io::Result<std::process::ExitStatus>) {
        let code = match &status {
            Ok(s) => s.code().or_else(|| s.signal().map(|n| 128 + n)),
            Err(_) => None,
        };
        let cancelled = self
            .tasks
            .get(id)
            .ok()
            .flatten()
            .is_some_and(|t| t.cancel_requested);
        let (state, message) = match code {
            _ if cancelled => ("cancelled", "cancelled: the build was stopped (SIGTERM)"),
            Some(0) => ("passed", "every target built and passed its tests"),
            Some(1) => (
                "failed",
                "a build or test failed: see the report and the log",
            ),
            Some(2) => ("error", "build refused the task's input: see the log"),
            Some(130) | Some(143) => ("interrupted", "the build was stopped by a signal"),
            _ => ("error", "the build ended abnormally: see the log"),
        };
        self.write_report(id);
        if let Err(e) = self.tasks.finish(id, state, code, message) {
            tracing::error!("{e}");
        }
        tracing::info!(task = id, state, "build ended");
        self.running().remove(&id);
        self.expire();
        self.notify();
    }

    /// report.json: build's report with the task's resource samples under `resources`.
    fn write_report(&self, id: i64) {
        let dir = self.tasks.task_dir(id);
        let part = dir.join("report.json.part");
        let text = std::fs::read(&part).unwrap_or_default();
        let _ = std::fs::remove_file(&part);
        let Ok(mut report) = serde_json::from_slice::<serde_json::Value>(&text) else {
            return;
        };
        let samples = self.tasks.samples(id).unwrap_or_default();
        let task = self.tasks.get(id).ok().flatten();
        if let (Some(obj), Some(task)) = (report.as_object_mut(), task) {
            obj.insert(
                "resources".into(),
                serde_json::json!({
                    "interval_seconds": super::SAMPLE_SECONDS,
                    "cpu_seconds": task.resources.cpu_seconds,
                    "peak_rss_kib": task.resources.peak_rss_kib,
                    "disk_bytes": task.resources.disk_bytes,
                    "samples": samples,
                }),
            );
        }
        if let Err(e) = crate::store::write_json(&dir.join("report.json"), &report) {
            tracing::error!("{e}");
        }
    }

    /// Removes finished tasks past the retention limits.
    pub fn expire(&self) {
        let cutoff = crate::store::unix_now().saturating_sub(self.keep_secs);
        match self.tasks.expired(self.keep_tasks, cutoff) {
            Ok(ids) => {
                for id in ids {
                    tracing::info!(task = id, "removing a finished task (retention)");
                    if let Err(e) = self.tasks.delete(id) {
                        tracing::error!("{e}");
                    }
                }
            }
            Err(e) => tracing::error!("{e}"),
        }
    }

    /// DELETE of a running task: SIGTERM to its build. False when it is not running here.
    pub fn cancel(&self, id: i64) -> Result<bool> {
        let Some(pid) = self.running().get(&id).copied() else {
            return Ok(false);
        };
        self.tasks.request_cancel(id)?;
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        Ok(true)
    }

    /// Stops starting tasks; with `cancel`, sends every running build SIGTERM. Then waits until
    /// none runs.
    pub fn drain(&self, cancel: bool) {
        self.cancel_on_drain.store(cancel, Ordering::SeqCst);
        self.draining.store(true, Ordering::SeqCst);
        self.notify();
        if cancel {
            for (id, _) in self.running_pids() {
                let _ = self.cancel(id);
            }
        }
        let mut guard = self.running();
        while !guard.is_empty() {
            guard = self
                .wake
                .wait_timeout(guard, Duration::from_millis(200))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

/// Whether `pid` is still the process that started at `start` (and not a zombie).
fn alive(pid: i32, start: u64) -> bool {
    monitor::stat(pid).is_some_and(|s| s.start == start && !s.zombie)
}

/// Waits up to `limit` for every process of `pids` (with its start time) to end.
fn wait_gone(pids: &[(i32, u64)], limit: Duration) -> bool {
    let until = Instant::now() + limit;
    loop {
        if pids.iter().all(|(p, s)| !alive(*p, *s)) {
            return true;
        }
        if Instant::now() > until {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A `pookie-ns build` process whose command line names a path under `bundle` (its project),
/// with its start time.
fn find_build(bundle: &Path) -> Option<(i32, u64)> {
    let needle = bundle.as_os_str().as_encoded_bytes();
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let mut args = cmdline.split(|b| *b == 0);
        let is_build = args.clone().any(|a| a == b"build");
        if is_build && args.any(|a| a.starts_with(needle)) {
            return monitor::stat(pid).map(|s| (pid, s.start));
        }
    }
    None
}

/// After a restart: tasks still marked running were cut off by the server's death. Their
/// builds are stopped if they outlived it, the tasks read `interrupted`, and the workspaces they
/// left are swept.
pub fn recover(tasks: &Tasks, store: &Store) -> Result<Vec<i64>> {
    let mut interrupted = Vec::new();
    for task in tasks.in_state("running")? {
        // A server killed between claiming the task and recording its child's pid: the build
        // is found by the project path on its command line.
        let found = match (task.pid, task.pid_start) {
            (Some(pid), Some(start)) => Some((pid, start)),
            _ => find_build(&tasks.task_dir(task.id).join("bundle")),
        };
        if let Some((pid, start)) = found {
            if alive(pid, start) {
                let tree: Vec<(i32, u64)> = monitor::tree(pid)
                    .into_iter()
                    .filter_map(|p| monitor::stat(p).map(|s| (p, s.start)))
                    .collect();
                tracing::warn!(
                    task = task.id,
                    pid,
                    "stopping the build a killed server left"
                );
                let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
                if !wait_gone(&tree, Duration::from_secs(20)) {
                    let _ = kill(Pid::from_raw(-pid), Signal::SIGKILL);
                    for (p, s) in &tree {
                        if alive(*p, *s) {
                            let _ = kill(Pid::from_raw(*p), Signal::SIGKILL);
                        }
                    }
                    wait_gone(&tree, Duration::from_secs(10));
                }
            }
        }
        let _ = std::fs::rename(
            tasks.task_dir(task.id).join("report.json.part"),
            tasks.task_dir(task.id).join("report.json"),
        );
        tasks.finish(
            task.id,
            "interrupted",
            None,
            "the server stopped while this task ran; its build was stopped and its workspaces \
             removed at the next start: submit it again",
        )?;
        interrupted.push(task.id);
    }
    // The builds are gone, so their workspace locks are free: the sweep removes what they left.
    store.sweep_stale()?;
    Ok(interrupted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_build_is_found_by_its_project_path() {
        let tmp = tempfile::tempdir().unwrap();
        let bundle = tmp.path().join("serve/tasks/7/bundle");
        let project = bundle.join("pkg");
        // A stand-in with build's argument shape: `sh -c 'sleep 30; :' build PROJECT`.
        let mut child = Command::new("sh")
            .args(["-c", "sleep 30; :", "build"])
            .arg(&project)
            .spawn()
            .unwrap();
        // Bounded: the child's command line may take a moment to show in /proc.
        let until = Instant::now() + Duration::from_secs(5);
        let mut found = find_build(&bundle);
        while found.is_none() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(50));
            found = find_build(&bundle);
        }
        let other = find_build(&tmp.path().join("serve/tasks/8/bundle"));
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(found.map(|f| f.0), Some(child.id() as i32));
        assert_eq!(other, None);
    }
}
