//! What each step of a target did, as the values the steps return ([`Preparation`],
//! [`StepRun`], [`BuildRun`]), and [`report_entry`]: the one place that turns them into the
//! target's entry of the report. No step writes the report itself.

use std::path::PathBuf;

use super::harvest::wheel_platform;
use super::TargetJob;
use crate::pipeline::report::{Outcome, SetupState, TargetResult};

/// A kind of setup layer (run once per instance state, cached).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SetupKind {
    /// The toolchain's packages (cross compilers, zig).
    Toolchain,
    /// The project's before-all.
    BeforeAll,
}

impl SetupKind {
    /// Its directory in the instance's and the name of its log.
    pub(super) fn name(self) -> &'static str {
        match self {
            SetupKind::Toolchain => "toolchain",
            SetupKind::BeforeAll => "before-all",
        }
    }

    pub(super) fn prefix(self) -> &'static str {
        match self {
            SetupKind::Toolchain => "tc",
            SetupKind::BeforeAll => "ba",
        }
    }
}

/// How one setup layer (toolchain, before-all) went while an instance was prepared.
#[derive(Debug, Clone)]
pub(super) struct SetupRun {
    pub(super) kind: SetupKind,
    pub(super) state: SetupState,
    /// Its log, when it ran (a cached layer has none of this build).
    pub(super) log: Option<PathBuf>,
    /// How long it ran, when it did.
    pub(super) secs: Option<f64>,
}

/// What preparing one instance did: the image it is, its setup layers, how long it took, and
/// why it failed (a setup's exit status) when it did.
#[derive(Debug, Clone, Default)]
pub(super) struct Preparation {
    /// `REFERENCE@sha256:...` when the base OS is an image.
    pub(super) image: Option<String>,
    pub(super) setups: Vec<SetupRun>,
    pub(super) secs: f64,
    pub(super) failed: Option<String>,
}

/// What a build or test step's sandbox did.
#[derive(Debug, Clone)]
pub(super) struct StepRun {
    pub(super) log: PathBuf,
    pub(super) exit_code: i32,
    pub(super) secs: f64,
    /// Why the step failed; `None`: it succeeded.
    pub(super) failed: Option<String>,
    /// The failed step's workspace, kept by --keep-failed.
    pub(super) kept_workspace: Option<PathBuf>,
}

/// What the build step did: its run, the bytes it left in its workspace and the wheel it made
/// (`None`: it failed, `run.failed` says why).
#[derive(Debug, Clone)]
pub(super) struct BuildRun {
    pub(super) run: StepRun,
    pub(super) workspace_bytes: Option<u64>,
    pub(super) wheel: Option<PathBuf>,
}

/// Everything a target's steps returned, in the order they ran.
#[derive(Debug, Clone, Default)]
pub(super) struct Steps {
    pub(super) preparations: Vec<Preparation>,
    pub(super) build: Option<BuildRun>,
    /// The wheel another target built (abi3), copied to this target's wheelhouse.
    pub(super) prebuilt: Option<String>,
    pub(super) test: Option<StepRun>,
}

/// The target's entry of the report, from what its steps did, how it ended (`outcome`, and
/// `error`: an error of pookie-ns itself, which wins over a step's failure), its total time and
/// peak memory. A target that did not run gives `Steps::default()`.
pub(super) fn report_entry(
    job: &TargetJob,
    steps: &Steps,
    outcome: Outcome,
    error: Option<String>,
) -> TargetResult {
    let mut r = TargetResult {
        project: Some(job.project.clone()).filter(|p| !p.is_empty()),
        target: job.target.name(),
        identifier: job.target.identifier(),
        arch: job.target.arch.uname().into(),
        python: job.target.python.clone(),
        platform_tag: job.target.platform_tag(),
        mode: job.mode,
        toolchain: job.toolchain.as_ref().map(|t| t.name.clone()),
        toolchain_setup: SetupState::None,
        repair: match job.repair_wheel_command.as_deref().map(str::trim) {
            None => "auditwheel".into(),
            Some("") => "none (repair-wheel-command = \"\"): unrepaired".into(),
            Some(c) => format!("repair-wheel-command: {c}"),
        },
        build_base: job.build_base.to_string(),
        test_base: job.test_base.to_string(),
        image: None,
        result: outcome,
        wheel: None,
        wheel_tag: None,
        wheel_path: None,
        before_all: SetupState::None,
        prepare_secs: None,
        before_all_secs: None,
        build_secs: None,
        test_secs: None,
        total_secs: 0.0,
        build_exit_code: None,
        test_exit_code: None,
        peak_rss_kib: None,
        workspace_bytes: None,
        before_all_log: None,
        toolchain_log: None,
        build_log: None,
        test_log: None,
        worker_log: job.worker_log(),
        kept_workspace: None,
        wheel_built_by: job.wheel_built_by.clone(),
        error: None,
    };
    let mut failed = None;
    for p in &steps.preparations {
        r.image = p.image.clone().or(r.image.take());
        r.prepare_secs = Some(r.prepare_secs.unwrap_or(0.0) + p.secs);
        for s in &p.setups {
            let (state, log) = match s.kind {
                SetupKind::Toolchain => (&mut r.toolchain_setup, &mut r.toolchain_log),
                SetupKind::BeforeAll => (&mut r.before_all, &mut r.before_all_log),
            };
            // "ran" wins over "cached", "failed" over both.
            if rank(s.state) > rank(*state) {
                *state = s.state;
            }
            *log = s.log.clone().or(log.take());
            if let (SetupKind::BeforeAll, Some(secs)) = (s.kind, s.secs) {
                r.before_all_secs = Some(r.before_all_secs.unwrap_or(0.0) + secs);
            }
        }
        failed = p.failed.clone().or(failed);
    }
    if let Some(b) = &steps.build {
        r.build_log = Some(b.run.log.clone());
        r.build_secs = Some(b.run.secs);
        r.build_exit_code = Some(b.run.exit_code);
        r.workspace_bytes = b.workspace_bytes;
        r.kept_workspace = b.run.kept_workspace.clone();
        failed = b.run.failed.clone().or(failed);
        r.wheel = b
            .wheel
            .as_ref()
            .and_then(|w| w.file_name())
            .map(|n| n.to_string_lossy().into_owned());
        r.wheel_tag = r
            .wheel
            .as_deref()
            .and_then(wheel_platform)
            .map(str::to_string);
    }
    if let Some(name) = &steps.prebuilt {
        r.wheel = Some(name.clone());
    }
    if let Some(t) = &steps.test {
        r.test_log = Some(t.log.clone());
        r.test_secs = Some(t.secs);
        r.test_exit_code = Some(t.exit_code);
        r.kept_workspace = t.kept_workspace.clone().or(r.kept_workspace.take());
        failed = t.failed.clone().or(failed);
    }
    r.error = error.or(failed);
    r
}

/// The entry of a target that never ran (its base OS did not load, the build was interrupted
/// before it started, its worker died without a result).
pub(in crate::pipeline) fn unrun_entry(
    job: &TargetJob,
    outcome: Outcome,
    error: Option<String>,
) -> TargetResult {
    report_entry(job, &Steps::default(), outcome, error)
}

fn rank(s: SetupState) -> u8 {
    match s {
        SetupState::None => 0,
        SetupState::Cached => 1,
        SetupState::Ran => 2,
        SetupState::Failed => 3,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::Arch;
    use crate::pipeline::worker::{script_tests, BaseRef};

    fn setup(kind: SetupKind, state: SetupState, log: Option<&str>, secs: Option<f64>) -> SetupRun {
        SetupRun {
            kind,
            state,
            log: log.map(PathBuf::from),
            secs,
        }
    }

    #[test]
    fn a_cross_build_s_steps_become_one_entry() {
        let mut job = script_tests::job(Arch::Arm64, crate::project::Mode::Cross, None);
        job.build_base = BaseRef {
            name: "debian-forky".into(),
            arch: Arch::Amd64,
        };
        let steps = Steps {
            preparations: vec![
                // The target's instance (sysroot, tests): its before-all ran.
                Preparation {
                    image: None,
                    setups: vec![setup(
                        SetupKind::BeforeAll,
                        SetupState::Ran,
                        Some("/o/before-all-arm64.log"),
                        Some(2.0),
                    )],
                    secs: 3.0,
                    failed: None,
                },
                // The build's: the toolchain cached, its own before-all ran.
                Preparation {
                    image: Some("img@sha256:1".into()),
                    setups: vec![
                        setup(SetupKind::Toolchain, SetupState::Cached, None, None),
                        setup(
                            SetupKind::BeforeAll,
                            SetupState::Ran,
                            Some("/o/before-all.log"),
                            Some(1.0),
                        ),
                        setup(SetupKind::BeforeAll, SetupState::Cached, None, None),
                    ],
                    secs: 1.5,
                    failed: None,
                },
            ],
            build: Some(BuildRun {
                run: StepRun {
                    log: "/o/build.log".into(),
                    exit_code: 0,
                    secs: 10.0,
                    failed: None,
                    kept_workspace: None,
                },
                workspace_bytes: Some(42),
                wheel: Some("/o/wheelhouse/m-1-cp314-cp314-manylinux_2_17_aarch64.whl".into()),
            }),
            prebuilt: None,
            test: Some(StepRun {
                log: "/o/test.log".into(),
                exit_code: 1,
                secs: 4.0,
                failed: Some("the tests failed (exit status 1)".into()),
                kept_workspace: Some("/kept".into()),
            }),
        };
        let r = report_entry(&job, &steps, Outcome::TestFailed, None);
        assert_eq!(r.result, Outcome::TestFailed);
        assert_eq!(r.prepare_secs, Some(4.5));
        assert_eq!(r.before_all_secs, Some(3.0));
        assert_eq!(r.before_all, SetupState::Ran);
        assert_eq!(r.toolchain_setup, SetupState::Cached);
        assert_eq!(r.toolchain_log, None);
        assert_eq!(r.before_all_log, Some("/o/before-all.log".into()));
        assert_eq!(r.image.as_deref(), Some("img@sha256:1"));
        assert_eq!(
            r.wheel.as_deref(),
            Some("m-1-cp314-cp314-manylinux_2_17_aarch64.whl")
        );
        assert_eq!(r.wheel_tag.as_deref(), Some("manylinux_2_17_aarch64"));
        assert_eq!((r.build_exit_code, r.test_exit_code), (Some(0), Some(1)));
        assert_eq!(r.workspace_bytes, Some(42));
        assert_eq!(r.kept_workspace, Some("/kept".into()));
        assert_eq!(r.error.as_deref(), Some("the tests failed (exit status 1)"));
        assert_eq!(r.failure_log(), &PathBuf::from("/o/test.log"));
        // An error of pookie-ns itself wins over what a step said.
        let r = report_entry(&job, &steps, Outcome::Error, Some("boom".into()));
        assert_eq!(r.error.as_deref(), Some("boom"));
        // A target that did not run: the job's fields, nothing of steps.
        let r = report_entry(&job, &Steps::default(), Outcome::Interrupted, None);
        assert_eq!(r.prepare_secs, None);
        assert_eq!(r.build_log, None);
        assert_eq!(r.before_all, SetupState::None);
    }

    #[test]
    fn a_failed_setup_is_the_failure_and_its_log() {
        let job = script_tests::job(Arch::host(), crate::project::Mode::Native, None);
        let steps = Steps {
            preparations: vec![Preparation {
                image: None,
                setups: vec![setup(
                    SetupKind::BeforeAll,
                    SetupState::Failed,
                    Some("/o/before-all.log"),
                    Some(0.5),
                )],
                secs: 0.7,
                failed: Some("before-all failed on debian-forky/amd64 (exit status 3)".into()),
            }],
            ..Steps::default()
        };
        let r = report_entry(&job, &steps, Outcome::BuildFailed, None);
        assert_eq!(r.before_all, SetupState::Failed);
        assert_eq!(r.failure_log(), &PathBuf::from("/o/before-all.log"));
        assert!(r.error.unwrap().contains("exit status 3"));
        assert_eq!(r.wheel, None);
    }
}
