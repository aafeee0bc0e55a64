//! Phase 5 of `pookie-ns build`: the worker processes run, up to `--jobs` at a time, each with
//! its progress line; Ctrl-C stops them; an abi3 wheel built once is tested on the other
//! CPythons of its arch.

use std::collections::VecDeque;
use std::io::BufRead;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::store::{self, Store};

use super::backends;
use super::report::{self, Outcome, TargetResult};
use super::request::Output;
use super::worker::{self, TargetJob};

/// The workers of a build with projects that may build an abi3 wheel (`abi3_projects`): of
/// each, first one target per arch, policy and mode (its first CPython) builds; when its wheel
/// is abi3 and passed, the other targets of that arch only test that wheel on their own
/// CPythons; otherwise they build as usual. Results in the order of `jobs`.
pub(super) fn run_abi3_once(
    config: &Config,
    store: &Store,
    output: Output,
    jobs: &mut [TargetJob],
    abi3_projects: &[String],
    max_workers: usize,
) -> Result<Vec<TargetResult>> {
    let same = |a: &TargetJob, b: &TargetJob| {
        a.project == b.project
            && a.target.arch == b.target.arch
            && a.target.policy == b.target.policy
            && a.mode == b.mode
    };
    // Every target of a project that cannot build abi3 wheels is a first.
    let firsts: Vec<usize> = (0..jobs.len())
        .filter(|&i| {
            !abi3_projects.contains(&jobs[i].project)
                || !jobs[..i].iter().any(|j| same(j, &jobs[i]))
        })
        .collect();
    if firsts.len() == jobs.len() {
        return run_workers(config, store, output, jobs, max_workers);
    }
    let first_jobs: Vec<TargetJob> = firsts.iter().map(|&i| jobs[i].clone()).collect();
    let first_results = run_workers(config, store, output, &first_jobs, max_workers)?;
    let mut results: Vec<Option<TargetResult>> = vec![None; jobs.len()];
    let mut rest = Vec::new();
    for i in 0..jobs.len() {
        if let Some(k) = firsts.iter().position(|&f| f == i) {
            results[i] = Some(first_results[k].clone());
            continue;
        }
        let k = firsts
            .iter()
            .position(|&f| same(&jobs[f], &jobs[i]))
            .expect("every target has a first of its kind");
        let first = &first_results[k];
        if let (true, Some(wheel)) = (first.result.ok(), &first.wheel) {
            if backends::is_abi3_wheel(wheel) {
                jobs[i].prebuilt_wheel = Some(jobs[firsts[k]].wheelhouse().join(wheel));
                jobs[i].wheel_built_by = Some(first.target.clone());
                store::write_json(&jobs[i].dir.join("job.json"), &jobs[i])?;
            }
        }
        rest.push(i);
    }
    let rest_jobs: Vec<TargetJob> = rest.iter().map(|&i| jobs[i].clone()).collect();
    let rest_results = if crate::process::interrupted().is_some() {
        rest_jobs
            .iter()
            .map(|j| {
                let mut r = worker::new_result(j);
                r.result = report::Outcome::Interrupted;
                r
            })
            .collect()
    } else {
        run_workers(config, store, output, &rest_jobs, max_workers)?
    };
    for (k, &i) in rest.iter().enumerate() {
        results[i] = Some(rest_results[k].clone());
    }
    Ok(results
        .into_iter()
        .map(|r| r.expect("every target has a result"))
        .collect())
}

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
    let bars: Vec<indicatif::ProgressBar> = jobs
        .iter()
        .map(|j| {
            let bar = multi.add(indicatif::ProgressBar::new_spinner());
            bar.set_style(style.clone());
            bar.set_prefix(format!("{:<width$}", j.target.name()));
            bar.set_message(format!("waiting ({})", j.mode));
            bar
        })
        .collect();
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
                let job = &jobs[i];
                let log = std::fs::File::create(job.worker_log())
                    .map_err(|e| Error::io("create", job.worker_log(), e))?;
                let mut cmd = Command::new(&exe);
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
                let mut child = cmd
                    .spawn()
                    .map_err(|e| Error::io("start a build worker", &exe, e))?;
                running.push((i, nix::unistd::Pid::from_raw(child.id() as i32)));
                bars[i].set_message(format!("starting ({})", job.mode));
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
            if let Some(sig) = crate::process::interrupted() {
                match stopping {
                    None => {
                        stopping = Some(Instant::now());
                        for i in queue.drain(..) {
                            bars[i].finish_with_message("interrupted before it started");
                        }
                        for (_, pid) in &running {
                            let _ = nix::sys::signal::kill(*pid, nix::sys::signal::Signal::SIGTERM);
                        }
                        tracing::debug!(signal = %sig, "stopping the workers");
                    }
                    Some(at) if at.elapsed() > Duration::from_millis(1500) => {
                        for (_, pid) in &running {
                            let _ = nix::sys::signal::kill(*pid, nix::sys::signal::Signal::SIGKILL);
                        }
                    }
                    Some(_) => {}
                }
            }
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
                    let mark = if r.result.ok() { "✓" } else { "✗" };
                    bars[i].finish_with_message(format!(
                        "{mark} {} ({}){}",
                        r.result.label(),
                        jobs[i].mode,
                        r.wheel
                            .as_ref()
                            .filter(|_| r.result.ok())
                            .map(|w| format!(" {w}"))
                            .unwrap_or_default()
                    ));
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
            None => TargetResult {
                result: Outcome::Interrupted,
                error: Some("interrupted before it started".into()),
                ..worker::new_result(job)
            },
        })
        .collect())
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
    TargetResult {
        error: Some(format!(
            "the worker process ended ({status}) without a result{}",
            if tail.is_empty() {
                String::new()
            } else {
                format!(":\n{tail}")
            }
        )),
        ..worker::new_result(job)
    }
}
