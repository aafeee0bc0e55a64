//! The test step: a fresh workspace on the target's own base OS, the wheel installed with its
//! test requirements and extras, before-test and the test sources, the test command run outside
//! the source tree.

use std::path::Path;

use super::outcome::StepRun;
use super::prepare::{prepared_spec, Prepared};
use super::project_copy::copy_project;
use super::scripts::{python_selection, script_text_with, sh_quote, traced};
use super::spec::{end_step, timed_run};
use super::{TargetJob, PROJECT_INSIDE, WHEELHOUSE_INSIDE};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::sandbox::Spec;
use crate::store::Store;

/// The test command's working directory: outside the source tree, so that `import pkg` finds
/// the installed wheel and not the sources.
const TEST_CWD: &str = "/tmp/pookie-ns-test";

/// The test: a fresh workspace, the wheel installed, the test command run outside the source
/// tree: what it did (`failed` unset: it passed).
pub(super) fn test_step(
    config: &Config,
    store: &Store,
    job: &TargetJob,
    prep: &Prepared,
    wheel: &Path,
    test_command: &str,
) -> Result<StepRun> {
    let log = job.dir.join("test.log");
    let ws = store.create_workspace(&prep.instance, &["test".into(), job.target.name()])?;
    copy_project(&job.bundle, &ws.upper().join(&PROJECT_INSIDE[1..]))?;
    let wheel_name = wheel.file_name().expect("a file").to_string_lossy();
    let house = ws.upper().join(&WHEELHOUSE_INSIDE[1..]);
    crate::sys::mkdir_p(&house, 0o755)?;
    std::fs::copy(wheel, house.join(&*wheel_name))
        .map_err(|e| Error::io("copy the wheel into the test workspace", &house, e))?;
    let script = test_script(
        job,
        &wheel_name,
        test_command,
        &prep.base.name,
        prep.base.arch,
    );
    let spec = Spec {
        // The script makes and enters TEST_CWD: it does not exist before.
        cwd: Some("/".into()),
        ..prepared_spec(config, store, job, prep, &ws, &log, &script)?
    };
    let ran = timed_run(store, &spec)?;
    end_step(ws, job, log, ran, "the tests failed")
}

/// The test step's script on base OS `base_name`/`base_arch`: the target's CPython selected,
/// the wheel `wheel_name` installed with its extras and the test requirements, before-test,
/// the test sources copied, and the test command run outside the source tree.
pub(super) fn test_script(
    job: &TargetJob,
    wheel_name: &str,
    test_command: &str,
    base_name: &str,
    base_arch: crate::arch::Arch,
) -> String {
    let extras = if job.test_extras.is_empty() {
        String::new()
    } else {
        format!("[{}]", job.test_extras.join(","))
    };
    let mut install = format!(
        "python3 -m pip install {}",
        sh_quote(&format!("{WHEELHOUSE_INSIDE}/{wheel_name}{extras}"))
    );
    for req in &job.test_requires {
        install.push(' ');
        install.push_str(&sh_quote(req));
    }
    let before_test = job
        .before_test
        .as_ref()
        .map(|b| traced(&format!("before-test: {b}"), b))
        .unwrap_or_default();
    let mut sources = String::new();
    for src in &job.test_sources {
        let from = format!("{PROJECT_INSIDE}/{src}");
        let to = format!("{TEST_CWD}/{src}");
        sources.push_str(&format!(
            "echo {}\nmkdir -p \"$(dirname {})\"\ncp -a {} {}\n",
            sh_quote(&format!("+ test-sources: {src}")),
            sh_quote(&to),
            sh_quote(&from),
            sh_quote(&to)
        ));
    }
    let body = format!(
        "{}python3 -c 'import platform, sys; print(\"pookie-ns: testing on platform.machine() == %r, python %s\" % (platform.machine(), sys.version.split()[0]))'\n\
         {before_test}{}mkdir -p {TEST_CWD}\n{sources}cd {TEST_CWD}\n{}",
        python_selection(job),
        traced(&install, &install),
        traced(&format!("(in {TEST_CWD}) {test_command}"), test_command),
    );
    script_text_with(
        job,
        &format!("test on {base_name}/{base_arch}"),
        &body,
        &job.test_environment,
    )
}
