//! What `pookie-ns build` is asked to do, as one value checked before anything runs. The command
//! line is an edge: `commands` turns clap's structs into a [`BuildRequest`] (every flag parsed,
//! the platform, branch and `--jobs` checked), and the pipeline reads nothing of `cli`. Every
//! input error is therefore reported before an sdist is downloaded or a base OS loaded.

use std::path::PathBuf;

use crate::project::{self, Mode};
use crate::target;
use crate::toolchain::Compiler;

/// `pookie-ns build`'s request: what to build, where, and how the build talks.
#[derive(Debug, Clone)]
pub struct BuildRequest {
    /// Project directories, sdists or requirements, as the user wrote them.
    pub bundles: Vec<String>,
    /// A wheels file (`-r`): more bundles, each with its own [`BundleSettings`].
    pub wheels_file: Option<PathBuf>,
    /// The package index requirements are resolved on (PEP 691).
    pub index_url: Option<String>,
    /// Resolve requirements from the store's cache only.
    pub offline: bool,
    /// A package index (simple API) whose release's wheels are not built again.
    pub skip_existing_on: Option<String>,
    /// The branch whose instance layers the builds use; it exists.
    pub branch: String,
    /// cibuildwheel's `--only`: one identifier, checked to be one.
    pub only: Option<String>,
    pub print_build_identifiers: bool,
    /// A configuration file to read instead of the bundle's pyproject.toml (`{package}` stands
    /// for the bundle).
    pub config_file: Option<String>,
    pub allow_empty: bool,
    /// CPython versions (`3.11`, `3.14t`), parsed.
    pub python: Vec<String>,
    /// The build command, when not the frontend's.
    pub build: Option<String>,
    pub mode: Option<Mode>,
    pub compiler: Option<Compiler>,
    pub python_source: Option<crate::cibw::PythonSource>,
    /// Where the wheels go (else the project's `output-dir`, else `./dist`).
    pub out: Option<PathBuf>,
    /// Workers at a time: at least 1.
    pub jobs: usize,
    pub keep_failed: bool,
    /// Registries spoken to in plain HTTP.
    pub insecure_registry: Vec<String>,
    /// The settings a wheels file may set per package; the command line's for the others.
    pub settings: BundleSettings,
    pub output: Output,
}

/// What one bundle of a build may set for itself: the command line's values, or a wheels
/// file's for its package.
#[derive(Debug, Clone, Default)]
pub struct BundleSettings {
    /// Platform tags or arch names (`--target`), each checked to parse.
    pub target: Vec<String>,
    /// cibuildwheel's archs words (`--archs`), checked to parse.
    pub archs: Option<String>,
    pub test: Option<String>,
    pub test_requires: Vec<String>,
    pub before_all: Option<String>,
}

/// How the build talks to the person or the script that started it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Output {
    /// Progress bars (not with -q or --json).
    pub progress: bool,
    /// Messages on stderr (not with -q).
    pub say: bool,
    /// The report as JSON on stdout instead of a table.
    pub json: bool,
    /// `-v` count: passed on to the workers, and the failed targets' logs streamed.
    pub verbose: u8,
}

impl BundleSettings {
    /// Checks that `target` and `archs` parse, so that a typo fails before anything runs.
    /// `what` names where they came from (`--target`, or a wheels file's package).
    pub fn check(&self, what: &str) -> Result<(), String> {
        for t in &self.target {
            target::parse_platform(t).map_err(|e| format!("{what}: {e}"))?;
        }
        if let Some(archs) = &self.archs {
            project::cibuildwheel_archs(std::slice::from_ref(archs))
                .map_err(|e| format!("{what}: archs: {e}"))?;
        }
        Ok(())
    }

    /// These settings with a wheels file's package's own applied: each it sets stands in for
    /// the command line's (`targets` and `archs` replace both of the command line's).
    pub fn with_package(&self, p: &crate::wheels_file::Package) -> BundleSettings {
        let mut s = self.clone();
        if let Some(c) = &p.test_command {
            s.test = Some(c.clone());
        }
        if !p.test_requires.is_empty() {
            s.test_requires = p.test_requires.clone();
        }
        if let Some(c) = &p.before_all {
            s.before_all = Some(c.clone());
        }
        if !p.targets.is_empty() {
            s.target = p.targets.clone();
            s.archs = None;
        }
        if let Some(x) = &p.archs {
            s.archs = Some(x.clone());
            s.target.clear();
        }
        s
    }
}

/// `--platform`: only Linux is built here.
pub fn check_platform(platform: Option<&str>) -> Result<(), String> {
    match platform {
        None | Some("linux" | "auto") => Ok(()),
        Some(p) => Err(format!(
            "--platform {p}: pookie-ns builds Linux wheels only (linux or auto)"
        )),
    }
}

/// `--jobs`: the number given, else the CPUs; never 0.
pub fn check_jobs(jobs: Option<usize>) -> Result<usize, String> {
    let n = jobs.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    if n == 0 {
        return Err("--jobs must be at least 1".into());
    }
    Ok(n)
}

/// `--python`: each version parsed (`3.11`, `cp311`, `3.14t`).
pub fn check_pythons(pythons: &[String]) -> Result<Vec<String>, String> {
    pythons.iter().map(|p| target::parse_python(p)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_platform_is_linux_or_auto() {
        assert!(check_platform(None).is_ok());
        assert!(check_platform(Some("linux")).is_ok());
        assert!(check_platform(Some("auto")).is_ok());
        let e = check_platform(Some("macos")).unwrap_err();
        assert!(e.contains("Linux wheels only"), "{e}");
    }

    #[test]
    fn jobs_are_never_zero() {
        assert_eq!(check_jobs(Some(3)), Ok(3));
        assert!(check_jobs(None).unwrap() >= 1);
        assert!(check_jobs(Some(0)).is_err());
    }

    #[test]
    fn a_bad_target_or_archs_word_is_caught_before_anything_runs() {
        let ok = BundleSettings {
            target: vec!["aarch64".into(), "manylinux_2_17_x86_64".into()],
            archs: Some("x86_64, aarch64".into()),
            ..Default::default()
        };
        assert!(ok.check("--target").is_ok());
        let bad = BundleSettings {
            target: vec!["sparc99".into()],
            ..Default::default()
        };
        assert!(bad.check("--target").unwrap_err().starts_with("--target: "));
        let bad = BundleSettings {
            archs: Some("x86_64,vax".into()),
            ..Default::default()
        };
        assert!(bad.check("--archs").is_err());
    }

    #[test]
    fn a_wheels_file_package_replaces_what_it_sets() {
        let cli = BundleSettings {
            target: vec!["aarch64".into()],
            test: Some("pytest".into()),
            ..Default::default()
        };
        let p = crate::wheels_file::Package {
            archs: Some("x86_64".into()),
            before_all: Some("true".into()),
            ..Default::default()
        };
        let s = cli.with_package(&p);
        assert!(
            s.target.is_empty(),
            "archs replaces the command line's targets"
        );
        assert_eq!(s.archs.as_deref(), Some("x86_64"));
        assert_eq!(
            s.test.as_deref(),
            Some("pytest"),
            "kept: the package sets none"
        );
        assert_eq!(s.before_all.as_deref(), Some("true"));
    }
}
