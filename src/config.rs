//! Configuration: the command line and the optional files of the config dir become one validated
//! [`Config`] before anything touches the disk. Every file is optional; unknown keys are errors
//! that name the file, the line and the key, so a typo never silently does nothing.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// `config.toml` as written by the user.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct ConfigFile {
    /// Where the store lives.
    pub work_dir: Option<PathBuf>,
    /// `auto` (a subordinate id range when there is one) or `single` (force single-uid mode).
    pub id_map: Option<IdMapChoice>,
    /// Directory holding `qemu-<arch>-static` (default: /usr/bin).
    pub qemu_dir: Option<PathBuf>,
    /// `auto` (private binfmt_misc instance first) or `host` (only the host's registrations).
    pub binfmt: Option<BinfmtChoice>,
    /// Refuse archives with more entries than this (default 2,000,000).
    pub max_archive_entries: Option<u64>,
    /// Debian mirror for recipes that name none (default: the host's apt source).
    pub mirror: Option<String>,
    /// Where cibuildwheel's default images are pulled from instead of `quay.io/pypa` (a mirror
    /// of pypa's images: `registry.example.com/pypa`).
    pub image_mirror: Option<String>,
    /// How often a branch's instance layer is refreshed with apt, e.g. "1h" (the default), "30m".
    pub refresh_interval: Option<String>,
}

/// What the user asked for in `config.toml` (`id_map = "auto" | "single"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IdMapChoice {
    #[default]
    Auto,
    Single,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BinfmtChoice {
    #[default]
    Auto,
    Host,
}

/// A config file that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}:{line}:{column}: {message}", path.display())]
    Parse {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
}

/// Everything the commands need to know, resolved once.
#[derive(Debug, Clone)]
pub struct Config {
    pub config_dir: PathBuf,
    pub work_dir: PathBuf,
    pub id_map: IdMapChoice,
    pub qemu_dir: Option<PathBuf>,
    pub binfmt: BinfmtChoice,
    pub max_archive_entries: u64,
    pub mirror: Option<String>,
    /// `image_mirror`: stands in for `quay.io/pypa` in cibuildwheel's default images.
    pub image_mirror: Option<String>,
    pub refresh_interval: std::time::Duration,
}

pub const DEFAULT_MAX_ARCHIVE_ENTRIES: u64 = 2_000_000;

/// Reads and checks a TOML file into `T`; errors carry the file, line and column.
pub fn parse_toml<T: for<'de> Deserialize<'de>>(path: &Path, text: &str) -> Result<T, ConfigError> {
    toml::from_str(text).map_err(|e| {
        let (line, column) = e.span().map(|s| line_col(text, s.start)).unwrap_or((1, 1));
        ConfigError::Parse {
            path: path.to_path_buf(),
            line,
            column,
            message: e.message().trim_end().to_string(),
        }
    })
}

/// 1-based line and column of byte offset `pos`.
fn line_col(text: &str, pos: usize) -> (usize, usize) {
    let before = &text[..pos.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map(|i| i + 1).unwrap_or(0) + 1;
    (line, column)
}

/// Reads an optional file: `Ok(None)` when it does not exist.
pub fn read_optional(path: &Path) -> Result<Option<String>, ConfigError> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ConfigError::Read {
            path: path.to_path_buf(),
            source: e,
        }),
    }
}

/// The definitions of one kind (`rootfs`, `toolchains`): the ones embedded in the binary, then
/// `<config_dir>/<kind>/*.toml`, which add to them or replace them by name. Returns (name, where
/// it came from, TOML text), in that order of precedence (a later one overrides an earlier one).
pub fn definitions(
    config_dir: &Path,
    kind: &str,
    embedded: &[(&str, &str)],
) -> Result<Vec<(String, PathBuf, String)>, ConfigError> {
    let mut out: Vec<(String, PathBuf, String)> = embedded
        .iter()
        .map(|(name, text)| {
            (
                name.to_string(),
                PathBuf::from(format!("<built-in>/{kind}/{name}.toml")),
                text.to_string(),
            )
        })
        .collect();
    let dir = config_dir.join(kind);
    let mut extra: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    extra.retain(|p| p.extension().is_some_and(|e| e == "toml"));
    extra.sort();
    for path in extra {
        let Some(text) = read_optional(&path)? else {
            continue;
        };
        let name = path
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        out.retain(|(n, _, _)| *n != name);
        out.push((name, path, text));
    }
    Ok(out)
}

/// The process environment that decides defaults, kept apart so that resolution can be tested.
#[derive(Debug, Clone, Default)]
pub struct Env {
    pub euid: u32,
    pub home: Option<PathBuf>,
    pub xdg_config_home: Option<PathBuf>,
    pub xdg_data_home: Option<PathBuf>,
}

impl Env {
    pub fn current() -> Env {
        let path = |k: &str| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
                .filter(|p| p.is_absolute())
        };
        Env {
            euid: nix::unistd::geteuid().as_raw(),
            home: path("HOME"),
            xdg_config_home: path("XDG_CONFIG_HOME"),
            xdg_data_home: path("XDG_DATA_HOME"),
        }
    }

    /// `$XDG_CONFIG_HOME/pookie-ns` (or `~/.config/pookie-ns`) when it exists, else
    /// `/etc/pookie-ns`.
    pub fn default_config_dir(&self) -> PathBuf {
        let user = self
            .xdg_config_home
            .clone()
            .or_else(|| self.home.as_ref().map(|h| h.join(".config")))
            .map(|d| d.join("pookie-ns"));
        match user {
            Some(d) if d.is_dir() => d,
            _ => PathBuf::from("/etc/pookie-ns"),
        }
    }

    /// `/var/lib/pookie-ns` for root, `$XDG_DATA_HOME/pookie-ns` (`~/.local/share/pookie-ns`)
    /// for anyone else.
    pub fn default_work_dir(&self) -> Result<PathBuf, ConfigError> {
        if self.euid == 0 {
            return Ok(PathBuf::from("/var/lib/pookie-ns"));
        }
        self.xdg_data_home
            .clone()
            .or_else(|| self.home.as_ref().map(|h| h.join(".local/share")))
            .map(|d| d.join("pookie-ns"))
            .ok_or_else(|| {
                ConfigError::Invalid(
                    "cannot choose a store: neither XDG_DATA_HOME nor HOME is set; pass --work-dir DIR"
                        .into(),
                )
            })
    }
}

/// What the command line says about configuration.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub config_dir: Option<PathBuf>,
    pub work_dir: Option<PathBuf>,
}

impl Config {
    /// Resolves the configuration: command line, then `config.toml`, then built-in defaults.
    pub fn load(over: &Overrides, env: &Env) -> Result<Config, ConfigError> {
        let config_dir = over
            .config_dir
            .clone()
            .unwrap_or_else(|| env.default_config_dir());
        if over.config_dir.is_some() && !config_dir.is_dir() {
            return Err(ConfigError::Invalid(format!(
                "config dir {} does not exist (given with -c)",
                config_dir.display()
            )));
        }
        let file_path = config_dir.join("config.toml");
        let file: ConfigFile = match read_optional(&file_path)? {
            Some(text) => parse_toml(&file_path, &text)?,
            None => ConfigFile::default(),
        };
        let work_dir = match (&over.work_dir, &file.work_dir) {
            (Some(w), _) => absolute(w)?,
            (None, Some(w)) if w.is_absolute() => w.clone(),
            (None, Some(w)) => {
                return Err(ConfigError::Invalid(format!(
                    "{}: work_dir must be an absolute path, not {}",
                    file_path.display(),
                    w.display()
                )))
            }
            (None, None) => env.default_work_dir()?,
        };
        if file.max_archive_entries == Some(0) {
            return Err(ConfigError::Invalid(format!(
                "{}: max_archive_entries must be at least 1",
                file_path.display()
            )));
        }
        let refresh_interval = match &file.refresh_interval {
            None => std::time::Duration::from_secs(3600),
            Some(text) => humantime::parse_duration(text).map_err(|e| {
                ConfigError::Invalid(format!(
                    "{}: refresh_interval = {text:?}: {e} (write e.g. \"1h\" or \"30m\")",
                    file_path.display()
                ))
            })?,
        };
        Ok(Config {
            mirror: file.mirror,
            image_mirror: file.image_mirror,
            refresh_interval,
            config_dir,
            work_dir,
            id_map: file.id_map.unwrap_or_default(),
            qemu_dir: file.qemu_dir,
            binfmt: file.binfmt.unwrap_or_default(),
            max_archive_entries: file
                .max_archive_entries
                .unwrap_or(DEFAULT_MAX_ARCHIVE_ENTRIES),
        })
    }
}

fn absolute(p: &Path) -> Result<PathBuf, ConfigError> {
    std::path::absolute(p)
        .map_err(|e| ConfigError::Invalid(format!("bad path {}: {e}", p.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(euid: u32) -> Env {
        Env {
            euid,
            home: Some("/home/u".into()),
            xdg_config_home: None,
            xdg_data_home: None,
        }
    }

    #[test]
    fn unknown_key_names_file_line_and_key() {
        let text = "work_dir = \"/x\"\n\nwork_dri = \"/y\"\n";
        let err = parse_toml::<ConfigFile>(Path::new("/c/config.toml"), text).unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("/c/config.toml:3:1:"), "{msg}");
        assert!(msg.contains("work_dri"), "{msg}");
    }

    #[test]
    fn bad_value_is_reported() {
        let err = parse_toml::<ConfigFile>(Path::new("c.toml"), "id_map = \"many\"\n").unwrap_err();
        assert!(err.to_string().contains("c.toml:1:10"), "{err}");
    }

    #[test]
    fn store_defaults_follow_the_user() {
        assert_eq!(
            env(0).default_work_dir().unwrap(),
            PathBuf::from("/var/lib/pookie-ns")
        );
        assert_eq!(
            env(1000).default_work_dir().unwrap(),
            PathBuf::from("/home/u/.local/share/pookie-ns")
        );
        let mut e = env(1000);
        e.xdg_data_home = Some("/data".into());
        assert_eq!(
            e.default_work_dir().unwrap(),
            PathBuf::from("/data/pookie-ns")
        );
        e.home = None;
        e.xdg_data_home = None;
        assert!(e.default_work_dir().is_err());
    }

    #[test]
    fn command_line_beats_config_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("config.toml"),
            "work_dir = \"/from/file\"\nid_map = \"single\"\n",
        )
        .unwrap();
        let over = Overrides {
            config_dir: Some(dir.path().into()),
            work_dir: None,
        };
        let c = Config::load(&over, &env(1000)).unwrap();
        assert_eq!(c.work_dir, PathBuf::from("/from/file"));
        assert_eq!(c.id_map, IdMapChoice::Single);
        let over = Overrides {
            work_dir: Some("/from/cli".into()),
            ..over
        };
        assert_eq!(
            Config::load(&over, &env(1000)).unwrap().work_dir,
            PathBuf::from("/from/cli")
        );
    }

    #[test]
    fn missing_config_dir_given_with_c_is_an_error() {
        let over = Overrides {
            config_dir: Some("/nonexistent/pookie".into()),
            work_dir: None,
        };
        assert!(Config::load(&over, &env(1000)).is_err());
    }
}
