//! A task's build options: what `POST /task` takes as JSON, checked the way `pookie-ns build`
//! checks its command line (the very same clap definition parses them), then handed to the child
//! `build` as arguments. Unknown keys are refused: a typo must not build with defaults.

use clap::Parser;
use serde::{Deserialize, Serialize};

use crate::cli::{Cli, TaskBuildArgs};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskOptions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub target: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub python: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archs: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub only: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub test_requires: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before_all: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compiler: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jobs: Option<usize>,
}

impl TaskOptions {
    /// The options of `submit`'s command line.
    pub fn from_cli(a: &TaskBuildArgs) -> TaskOptions {
        TaskOptions {
            branch: Some(a.branch.clone()),
            target: a.target.clone(),
            python: a.python.clone(),
            archs: a.archs.clone(),
            only: a.only.clone(),
            build: a.build.clone(),
            test: a.test.clone(),
            test_requires: a.test_requires.clone(),
            before_all: a.before_all.clone(),
            mode: a.mode.clone(),
            compiler: a.compiler.clone(),
            jobs: a.jobs,
        }
    }

    pub fn branch(&self) -> &str {
        self.branch
            .as_deref()
            .unwrap_or(crate::store::DEFAULT_BRANCH)
    }

    /// `build`'s arguments after the bundle, each written `--name=value` so that a value starting
    /// with `-` stays a value.
    pub fn build_args(&self) -> Vec<String> {
        let mut v = vec![format!("--branch={}", self.branch())];
        let mut one = |name: &str, value: &Option<String>| {
            if let Some(value) = value {
                v.push(format!("--{name}={value}"));
            }
        };
        one("archs", &self.archs);
        one("only", &self.only);
        one("build", &self.build);
        one("test", &self.test);
        one("before-all", &self.before_all);
        one("mode", &self.mode);
        one("compiler", &self.compiler);
        for (name, values) in [
            ("target", &self.target),
            ("python", &self.python),
            ("test-requires", &self.test_requires),
        ] {
            v.extend(values.iter().map(|x| format!("--{name}={x}")));
        }
        if let Some(jobs) = self.jobs {
            v.push(format!("--jobs={jobs}"));
        }
        v
    }

    /// Parses the options as `build`'s command line would; the error is clap's message, which
    /// names the option and what it accepts.
    pub fn check(&self) -> Result<(), String> {
        let mut argv = vec!["pookie-ns".to_string(), "build".into(), "BUNDLE".into()];
        argv.extend(self.build_args());
        match Cli::try_parse_from(&argv) {
            Ok(_) => Ok(()),
            Err(e) => Err(e
                .render()
                .to_string()
                .lines()
                .find(|l| l.starts_with("error:"))
                .unwrap_or("the options do not parse as `build`'s")
                .trim_start_matches("error: ")
                .to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_become_build_arguments_that_parse() {
        let o = TaskOptions {
            target: vec!["x86_64".into(), "aarch64".into()],
            python: vec!["3.11".into()],
            build: Some("-x weird".into()),
            ..Default::default()
        };
        assert_eq!(
            o.build_args(),
            [
                "--branch=stable",
                "--build=-x weird",
                "--target=x86_64",
                "--target=aarch64",
                "--python=3.11"
            ]
        );
        assert_eq!(o.check(), Ok(()));
        let bad = TaskOptions {
            mode: Some("teleport".into()),
            ..Default::default()
        };
        let e = bad.check().unwrap_err();
        assert!(e.contains("teleport"), "{e}");
        assert!(serde_json::from_str::<TaskOptions>(r#"{"tagret": ["x86_64"]}"#).is_err());
    }
}
