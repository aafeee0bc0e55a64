//! Phase 1 of `pookie-ns build`: each bundle of the command line and of the wheels file made a
//! project directory (a directory, an sdist unpacked, a requirement fetched from the index or
//! the store's cache), and each bundle's project read with its configuration.

use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::project::Project;
use crate::store::Store;

use super::request::{BuildRequest, BundleSettings};

/// One bundle's project, as its configuration describes it.
pub(super) struct Request {
    pub(super) bundle: PathBuf,
    pub(super) project: Project,
    pub(super) project_name: String,
    pub(super) allow_empty: bool,
    pub(super) keep_failed: bool,
}

/// A bundle's project and its configuration: cibuildwheel's file, then the `CIBW_*` variables,
/// then the command line (with a wheels file's settings for the package applied).
pub(super) fn read_project(args: &BuildRequest, b: &Bundle) -> Result<Request> {
    let ui = args.output;
    let bundle = b.dir.clone();
    let env: std::collections::BTreeMap<String, String> = std::env::vars().collect();
    let config_file = args
        .config_file
        .as_ref()
        .filter(|f| !f.is_empty())
        .map(|f| PathBuf::from(f.replace("{package}", &bundle.to_string_lossy())));
    let mut project = Project::load(&bundle, config_file.as_deref(), &env)?;
    // An sdist's project without a `[project] name` (setup.py metadata) is named as the sdist.
    if project.name.is_none() {
        project.name = b
            .source
            .as_ref()
            .map(|s| s.name.clone())
            .filter(|n| !n.is_empty());
    }
    if ui.say && !args.print_build_identifiers {
        for note in &project.config.notes {
            eprintln!("pookie-ns: note: {note}");
        }
    }
    Ok(Request {
        allow_empty: args.allow_empty || project.config.allow_empty,
        keep_failed: args.keep_failed || project.config.keep_failed,
        project_name: project_dir_name(&project, &bundle),
        bundle,
        project,
    })
}

/// One thing to build, made a project directory.
pub(super) struct Bundle {
    /// As the user wrote it (a path, a requirement).
    pub(super) shown: String,
    /// The project directory: the user's own, or an unpacked sdist in the store's `tmp/`.
    pub(super) dir: PathBuf,
    /// The command line's settings, or a wheels file's for this package.
    pub(super) settings: BundleSettings,
    pub(super) source: Option<crate::sources::SourceRecord>,
}

pub(super) struct Bundles {
    pub(super) list: Vec<Bundle>,
    /// A group build's directory name in `output/<branch>/`: `group-<wheels file's stem>`.
    pub(super) group_name: String,
    /// The unpacked sdists, removed when the build is over.
    _unpacked: Vec<crate::sources::Unpacked>,
}

/// What a bundle argument is.
enum BundleKind {
    Dir(PathBuf),
    Sdist(PathBuf),
    Requirement(crate::sources::Requirement),
}

/// The bundles of the command line and of the wheels file (`-r`), each made a project
/// directory: a directory as it is, an sdist unpacked, a requirement resolved on the index (or
/// the cache) to a verified sdist, then unpacked. Every argument is checked before anything is
/// fetched. A wheels file's settings for a package stand in for the command-line flags of the
/// same meaning (`test-command` for `--test`, `targets` for `--target` ...).
pub(super) fn resolve_bundles(
    config: &Config,
    store: &Store,
    args: &BuildRequest,
    say: bool,
) -> Result<Bundles> {
    let mut wanted: Vec<(String, BundleSettings)> = args
        .bundles
        .iter()
        .map(|b| (b.clone(), args.settings.clone()))
        .collect();
    let mut group_name = "group".to_string();
    if let Some(file) = &args.wheels_file {
        for p in crate::wheels_file::load(file)? {
            let settings = args.settings.with_package(&p);
            settings
                .check(&format!("{}: package {}", file.display(), p.bundle()))
                .map_err(Error::usage)?;
            wanted.push((p.bundle(), settings));
        }
        let stem = file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        group_name = project_dir_name(
            &Project {
                name: Some(format!("group-{stem}")),
                ..Project::default()
            },
            file,
        );
    }
    // Every argument checked before anything is fetched.
    let kinds = wanted
        .iter()
        .map(|(text, _)| bundle_kind(text))
        .collect::<Result<Vec<_>>>()?;
    let sources = crate::sources::Sources::new(store, args.index_url.as_deref(), args.offline);
    let mut list = Vec::new();
    let mut unpacked = Vec::new();
    for ((shown, a), kind) in wanted.into_iter().zip(kinds) {
        let (sdist, source) = match kind {
            BundleKind::Dir(dir) => {
                list.push(Bundle {
                    shown,
                    dir,
                    settings: a,
                    source: None,
                });
                continue;
            }
            BundleKind::Sdist(path) => {
                let record = crate::sources::local_record(&path, &shown)?;
                (path, record)
            }
            BundleKind::Requirement(req) => {
                let (path, record) = sources.resolve(&req)?;
                if say {
                    eprintln!(
                        "pookie-ns: {shown}: {} {} ({}sha256 {})",
                        record.name,
                        record.version,
                        if record.from_cache {
                            "from the cache, "
                        } else {
                            ""
                        },
                        record.sha256
                    );
                }
                (path, record)
            }
        };
        let (u, dir) = crate::sources::unpack_sdist(config, store, &sdist, &shown)?;
        unpacked.push(u);
        list.push(Bundle {
            shown,
            dir,
            settings: a,
            source: Some(source),
        });
    }
    Ok(Bundles {
        list,
        group_name,
        _unpacked: unpacked,
    })
}

/// What a bundle argument is, checked: an sdist file that exists, a project directory, or a
/// requirement that parses.
fn bundle_kind(text: &str) -> Result<BundleKind> {
    let path = Path::new(text);
    Ok(if crate::sources::is_sdist_path(text) {
        if !path.is_file() {
            return Err(Error::usage(format!("sdist {text}: no such file")));
        }
        BundleKind::Sdist(path.to_path_buf())
    } else if path.is_dir() || text.contains('/') || text.starts_with('.') {
        let dir =
            std::fs::canonicalize(path).map_err(|e| Error::usage(format!("bundle {text}: {e}")))?;
        if !dir.join("pyproject.toml").is_file() && !dir.join("setup.py").is_file() {
            return Err(Error::usage(format!(
                "bundle {} has neither pyproject.toml nor setup.py: not a Python project",
                dir.display()
            )));
        }
        BundleKind::Dir(dir)
    } else {
        BundleKind::Requirement(crate::sources::Requirement::parse(text).map_err(|e| {
            Error::usage(format!(
                "{e} (a bundle is a project directory, an sdist .tar.gz, or a requirement)"
            ))
        })?)
    })
}

/// The project's directory name in the store: its `[project] name`, else the bundle's.
fn project_dir_name(project: &Project, bundle: &Path) -> String {
    let raw = project.name.clone().unwrap_or_else(|| {
        bundle
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "project".into())
    });
    let clean: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let clean = clean.trim_start_matches('.').to_string();
    if clean.is_empty() {
        "project".into()
    } else {
        clean
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_names_are_safe_directory_names() {
        let p = |name: Option<&str>| Project {
            name: name.map(str::to_string),
            ..Project::default()
        };
        assert_eq!(
            project_dir_name(&p(Some("fastmath")), Path::new("/x/y")),
            "fastmath"
        );
        assert_eq!(project_dir_name(&p(None), Path::new("/x/c-ext")), "c-ext");
        assert_eq!(
            project_dir_name(&p(Some("../evil/x")), Path::new("/x")),
            "_evil_x"
        );
        assert_eq!(project_dir_name(&p(Some("..")), Path::new("/x")), "project");
    }
}
