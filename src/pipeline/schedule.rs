//! Phase 5 of `pookie-ns build`: the worker processes run, up to `--jobs` at a time, each with
//! its progress line; Ctrl-C stops them. (In which waves, when a project may build an abi3
//! wheel, `abi3.rs` decides.)

use std::collections::VecDeque;
use std::io::BufRead;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::store::Store;

use super::report::{Outcome, TargetResult};
use super::request::Output;
use super::worker::{self, TargetJob};

enum Event {
    Phase(usize, String),
    Exited(usize, std::process::ExitStatus),
}

/// Phase 5: runs the workers, at most `max_workers` at a time, and gathers their results in job
/// order.
pub(super) fn run_workers(
    config: &Config,
    store: &Store,
    output: Output,
    jobs: &[TargetJob],
    max_workers: usize,
) -> Result<Vec<TargetResult>> {
    let exe = std::env::current_exe()
        .map_err(|e| Error::io("find pookie-ns's own executable", "/proc/self/exe", e))?;
    let (_multi, bars) = progress_lines(jobs, output);
    let mut results: Vec<Option<TargetResult>> = vec![None; jobs.len()];
    let mut queue: VecDeque<usize> = (0..jobs.len()).collect();
    let (tx, rx) = mpsc::channel::<Event>();
    let mut running: Vec<(usize, nix::unistd::Pid)> = Vec::new();
    // SIGINT/SIGTERM: stop starting workers, ask the running ones to stop (their sandboxes get
    // the signal forwarded and remove their workspaces), kill what is left after a grace period.
    crate::process::catch_interrupts()?;
    let mut stopping: Option<Instant> = None;
    std::thread::scope(|scope| -> Result<()> {
        loop {
            while running.len() < max_workers && stopping.is_none() {
                let Some(i) = queue.pop_front() else { break };
                let (pid, mut child) = spawn_worker(config, store, output, &exe, &jobs[i])?;
                running.push((i, pid));
                bars[i].set_message(format!("starting ({})", jobs[i].mode));
                bars[i].reset_elapsed();
                bars[i].enable_steady_tick(Duration::from_millis(250));
                let stdout = child.stdout.take().expect("piped");
                let tx = tx.clone();
                scope.spawn(move || {
                    for line in std::io::BufReader::new(stdout).lines() {
                        let Ok(line) = line else { break };
                        if let Some(p) = line.strip_prefix("phase ") {
                            let _ = tx.send(Event::Phase(i, p.to_string()));
                        }
                    }
                    let status = child.wait();
                    let status = status.unwrap_or_else(|_| {
                        std::os::unix::process::ExitStatusExt::from_raw(1 << 8)
                    });
                    let _ = tx.send(Event::Exited(i, status));
                });
            }
            if running.is_empty() {
                break;
            }
            stop_on_interrupt(&mut stopping, &mut queue, &running, &bars);
            match rx.recv_timeout(Duration::from_millis(100)) {
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    unreachable!("a worker thread holds a sender")
                }
                Ok(Event::Phase(i, p)) => bars[i].set_message(format!("{p} ({})", jobs[i].mode)),
                Ok(Event::Exited(i, status)) => {
                    running.retain(|(j, _)| *j != i);
                    let mut r = read_result(&jobs[i], status);
                    if stopping.is_some() {
                        mark_interrupted(&mut r);
                    }
                    bars[i].finish_with_message(finished_line(&r, &jobs[i]));
                    results[i] = Some(r);
                }
            }
        }
        Ok(())
    })?;
    // A signal to the whole process group (Ctrl-C) reaches the sandboxed commands as soon as
    // this process: a worker may report its failed step before the loop above saw the flag.
    let interrupted = crate::process::interrupted().is_some();
    Ok(results
        .into_iter()
        .zip(jobs)
        .map(|(r, job)| match r {
            Some(mut r) => {
                if interrupted {
                    mark_interrupted(&mut r);
                }
                r
            }
            None => worker::unrun_entry(
                job,
                Outcome::Interrupted,
                Some("interrupted before it started".into()),
            ),
        })
        .collect())
}

/// One progress line per job (hidden without `output.progress`), waiting.
fn progress_lines(
    jobs: &[TargetJob],
    output: Output,
) -> (indicatif::MultiProgress, Vec<indicatif::ProgressBar>) {
    let multi = if !output.progress {
        indicatif::MultiProgress::with_draw_target(indicatif::ProgressDrawTarget::hidden())
    } else {
        indicatif::MultiProgress::new()
    };
    let style =
        indicatif::ProgressStyle::with_template("{spinner} {prefix} {wide_msg} {elapsed:>4}")
            .expect("valid template");
    let width = jobs
        .iter()
        .map(|j| j.target.name().len())
        .max()
        .unwrap_or(0);
    let bars = jobs
        .iter()
        .map(|j| {
            let bar = multi.add(indicatif::ProgressBar::new_spinner());
            bar.set_style(style.clone());
            bar.set_prefix(format!("{:<width$}", j.target.name()));
            bar.set_message(format!("waiting ({})", j.mode));
            bar
        })
        .collect();
    (multi, bars)
}

/// Starts the worker of `job`: `pookie-ns __build-target job.json`, its stdout (the `phase`
/// lines) piped, its stderr to its worker log.
fn spawn_worker(
    config: &Config,
    store: &Store,
    output: Output,
    exe: &std::path::Path,
    job: &TargetJob,
) -> Result<(nix::unistd::Pid, std::process::Child)> {
    let log = std::fs::File::create(job.worker_log())
        .map_err(|e| Error::io("create", job.worker_log(), e))?;
    let mut cmd = Command::new(exe);
    cmd.arg("--work-dir").arg(&store.root);
    // The default config dir need not exist; one given with -c must.
    if config.config_dir.is_dir() {
        cmd.arg("--config-dir").arg(&config.config_dir);
    }
    if output.verbose > 0 {
        cmd.arg(format!("-{}", "v".repeat(output.verbose as usize)));
    }
    cmd.arg("__build-target")
        .arg(job.dir.join("job.json"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log);
    // A worker dies with this process (SIGTERM: it stops its sandbox and removes its
    // workspace), even when this one is killed outright.
    crate::sys::set_parent_death_signal_of(&mut cmd, nix::sys::signal::Signal::SIGTERM);
    let child = cmd
        .spawn()
        .map_err(|e| Error::io("start a build worker", exe, e))?;
    Ok((nix::unistd::Pid::from_raw(child.id() as i32), child))
}

/// Once SIGINT or SIGTERM came: the queued jobs never start, the running workers get SIGTERM,
/// and SIGKILL after a grace period.
fn stop_on_interrupt(
    stopping: &mut Option<Instant>,
    queue: &mut VecDeque<usize>,
    running: &[(usize, nix::unistd::Pid)],
    bars: &[indicatif::ProgressBar],
) {
    let Some(sig) = crate::process::interrupted() else {
        return;
    };
    match stopping {
        None => {
            *stopping = Some(Instant::now());
            for i in queue.drain(..) {
                bars[i].finish_with_message("interrupted before it started");
            }
            for (_, pid) in running {
                let _ = nix::sys::signal::kill(*pid, nix::sys::signal::Signal::SIGTERM);
            }
            tracing::debug!(signal = %sig, "stopping the workers");
        }
        Some(at) if at.elapsed() > Duration::from_millis(1500) => {
            for (_, pid) in running {
                let _ = nix::sys::signal::kill(*pid, nix::sys::signal::Signal::SIGKILL);
            }
        }
        Some(_) => {}
    }
}

/// A finished target's progress line: its outcome, mode and the wheel it delivers.
fn finished_line(r: &TargetResult, job: &TargetJob) -> String {
    let mark = if r.result.ok() { "✓" } else { "✗" };
    format!(
        "{mark} {} ({}){}",
        r.result.label(),
        job.mode,
        r.wheel
            .as_ref()
            .filter(|_| r.result.ok())
            .map(|w| format!(" {w}"))
            .unwrap_or_default()
    )
}

/// A target that did not finish because `build` was interrupted says so (once).
fn mark_interrupted(r: &mut TargetResult) {
    if !r.result.ok() && r.result != Outcome::Interrupted {
        r.result = Outcome::Interrupted;
        r.error = Some(format!(
            "interrupted{}",
            r.error
                .take()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default()
        ));
    }
}

/// The worker's result.json, or an error result naming how the worker ended.
fn read_result(job: &TargetJob, status: std::process::ExitStatus) -> TargetResult {
    let read = std::fs::read(job.result_path())
        .ok()
        .and_then(|b| serde_json::from_slice::<TargetResult>(&b).ok());
    if let Some(r) = read {
        return r;
    }
    let tail = crate::progress::log_tail(&job.worker_log(), 8);
    let error = format!(
        "the worker process ended ({status}) without a result{}",
        if tail.is_empty() {
            String::new()
        } else {
            format!(":\n{tail}")
        }
    );
    worker::unrun_entry(job, Outcome::Error, Some(error))
}
