//! Branches: named package-source lists, and keeping each instance layer up to date with its
//! branch. `source_lists/<branch>.list` in the config dir wins; built in are `stable` (the
//! recipe's suite with its -updates and -security) and `testing` (the recipe's next suite).
//!
//! A refresh is a committed sandbox run: it writes the branch's list into the instance,
//! `apt-get update && apt-get dist-upgrade`, and commits the result as a new layer — atomically,
//! under the instance's exclusive lock, at most once per `refresh_interval`. A foreign
//! instance's lists and packages are fetched first by the host-arch base OS's apt when the store
//! has one of the same recipe (a sandbox of its own, the instance read-only inside), so that
//! only dpkg and the maintainer scripts run under QEMU.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::arch::Arch;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::recipe::RecipeInfo;
use crate::sandbox::{self, Bind, Spec};
use crate::shell::scripts::{APT_PREFETCH, BRANCH_REFRESH, IMAGE_REFRESH};
use crate::store::{self, BaseOs, InstanceId, Store};

pub const BUILT_IN: [&str; 2] = ["stable", "testing"];

/// The sources.list text of `branch` for a base OS built from `info`.
pub fn sources_list(config_dir: &Path, branch: &str, info: &RecipeInfo) -> Result<String> {
    let file = list_path(config_dir, branch);
    if let Some(text) = crate::config::read_optional(&file)? {
        check_list(&file, &text)?;
        return Ok(text);
    }
    let components = info.components.join(" ");
    let security = info
        .mirror
        .strip_suffix("/debian")
        .map(|m| format!("{m}/debian-security"));
    match branch {
        "stable" => {
            let mut text = format!(
                "deb {m} {s} {c}\ndeb {m} {s}-updates {c}\n",
                m = info.mirror,
                s = info.suite,
                c = components
            );
            if let Some(sec) = security {
                text.push_str(&format!("deb {sec} {}-security {components}\n", info.suite));
            }
            Ok(text)
        }
        "testing" => match &info.next {
            Some(next) => Ok(format!("deb {} {next} {components}\n", info.mirror)),
            None => Err(Error::usage(format!(
                "branch testing needs the recipe {} to name its next suite (`next = ...`), or {}",
                info.recipe,
                file.display()
            ))),
        },
        _ => Err(Error::usage(format!(
            "no source list for branch {branch:?}: looked for {}; branches: {}",
            file.display(),
            branches(config_dir).join(", ")
        ))),
    }
}

pub fn list_path(config_dir: &Path, branch: &str) -> PathBuf {
    config_dir
        .join("source_lists")
        .join(format!("{branch}.list"))
}

/// Every branch: the built-in ones and those with a file in `source_lists/`.
pub fn branches(config_dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = BUILT_IN.iter().map(|s| s.to_string()).collect();
    if let Ok(rd) = std::fs::read_dir(config_dir.join("source_lists")) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(b) = name.strip_suffix(".list") {
                if !out.iter().any(|o| o == b) {
                    out.push(b.to_string());
                }
            }
        }
    }
    out
}

/// A sources.list must hold only `deb`/`deb-src` lines and comments.
fn check_list(path: &Path, text: &str) -> Result<()> {
    for (i, line) in text.lines().enumerate() {
        let l = line.trim();
        if l.is_empty() || l.starts_with('#') || l.starts_with("deb ") || l.starts_with("deb-src ")
        {
            continue;
        }
        return Err(Error::usage(format!(
            "{}:{}: not a sources.list line (expected `deb URI SUITE COMPONENT...`): {l}",
            path.display(),
            i + 1
        )));
    }
    Ok(())
}

/// What the store remembers of an instance's last refresh.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RefreshState {
    pub last_refresh_unix: u64,
    pub base_sha256: String,
    pub sources: String,
}

fn state_path(store: &Store, id: &InstanceId) -> PathBuf {
    store.instance_dir(id).join("refresh.json")
}

pub fn read_state(store: &Store, id: &InstanceId) -> Option<RefreshState> {
    let bytes = std::fs::read(state_path(store, id)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn is_fresh(
    state: Option<&RefreshState>,
    base: &BaseOs,
    sources: &str,
    interval: Duration,
) -> bool {
    state.is_some_and(|s| {
        s.base_sha256 == base.meta.import.sha256
            && s.sources == sources
            && store::unix_now().saturating_sub(s.last_refresh_unix) < interval.as_secs()
    })
}

/// How an instance is refreshed.
enum Refresh {
    /// A Debian recipe's base OS: the branch's list, `apt-get update && dist-upgrade`.
    Branch,
    /// An image's: the package index of its manager (`apt`, `dnf`, `yum`, `apk`).
    Image(String),
}

/// Brings the instance of `base` on `branch` up to date unless it was refreshed within the
/// interval. A Debian recipe's base OS gets the branch's packages; an image's gets the package
/// index of its own manager (the branch's lists are Debian suites and do not apply), or no
/// refresh when it has none pookie-ns knows (said in the log); an archive's, none.
/// `force` refreshes regardless of the interval (update-baseos).
pub fn ensure_fresh(
    config: &Config,
    store: &Store,
    base: &BaseOs,
    id: &InstanceId,
    force: bool,
    quiet: bool,
) -> Result<()> {
    let (how, sources) = match (&base.meta.recipe, &base.meta.image) {
        (Some(info), _) => (
            Refresh::Branch,
            sources_list(&config.config_dir, &id.branch, info)?,
        ),
        (None, Some(image)) => match &base.meta.package_manager {
            Some(pm) => (
                Refresh::Image(pm.clone()),
                format!("image {}: package index of {pm}", image.manifest_digest),
            ),
            None => {
                tracing::info!(
                    "instance {id}: not refreshed: the image {} has no package manager \
                     pookie-ns knows (apt-get, dnf, yum, apk)",
                    image.reference
                );
                return Ok(());
            }
        },
        (None, None) => return Ok(()),
    };
    if !force
        && is_fresh(
            read_state(store, id).as_ref(),
            base,
            &sources,
            config.refresh_interval,
        )
    {
        tracing::debug!(instance = %id, "refreshed within refresh_interval: not refreshing");
        return Ok(());
    }
    store.ensure_instance(id)?;
    let _lock = store.lock_instance(id, true)?;
    // Another pookie-ns may have refreshed while we waited for the lock.
    let state = read_state(store, id);
    if !force && is_fresh(state.as_ref(), base, &sources, config.refresh_interval) {
        return Ok(());
    }
    if state
        .as_ref()
        .is_some_and(|s| s.base_sha256 != base.meta.import.sha256)
    {
        eprintln!("pookie-ns: instance {id} was built on an older base OS: starting it afresh");
        for layer in store.instance_layers(id)? {
            crate::userns::remove_tree(&store.map, &store.root.join(layer))?;
        }
    }

    refresh(config, store, base, id, &how, sources, quiet)
}

/// The refresh itself, under the instance's exclusive lock: the branch's packages (or the
/// image's package index) updated in a workspace committed as the instance's next layer, and
/// the refresh's state written.
fn refresh(
    config: &Config,
    store: &Store,
    base: &BaseOs,
    id: &InstanceId,
    how: &Refresh,
    sources: String,
    quiet: bool,
) -> Result<()> {
    // The refresh's time, the native fetch of a foreign instance's packages included.
    let started = Instant::now();
    let (tmp, _tmp_lock) = store.create_tmp()?;
    let list_file = tmp.join("sources.list");
    std::fs::write(&list_file, &sources).map_err(|e| Error::io("write", &list_file, e))?;
    let log = store.instance_dir(id).join("refresh.log");
    let ws = store.create_workspace(id, &["refresh".to_string()])?;
    let RefreshInputs {
        script,
        what,
        binds,
        env,
    } = refresh_inputs(store, base, id, how, &tmp, &list_file)?;
    let spec = Spec {
        binds,
        network: true,
        env,
        binfmt: crate::binfmt::emulation_for(config, base.arch)?,
        commit_to: Some(store.next_layer_path(id)?),
        log: Some(log.clone()),
        ..Spec::new(
            store,
            store.layers(base, id, &ws)?,
            &ws,
            vec!["/bin/sh".into(), "-c".into(), script],
        )
    };
    crate::fault::point("refresh-started");
    let child = sandbox::spawn(&store.map, &spec)?;
    let spinner = crate::progress::spinner(
        format!(
            "refreshing instance {id} (branch {}): {what}, log: {}",
            id.branch,
            log.display()
        ),
        quiet,
    );
    // The fork is behind us: a ticking thread is safe now, until finish() joins it.
    spinner.tick();
    let code = child.wait();
    spinner.finish();
    ws.remove()?;
    // The list and the lock, and the prefetched lists and packages (written by the sandbox's
    // `_apt`, which may be a subordinate uid).
    crate::userns::remove_tree(&store.map, &tmp)?;
    let code = code?;
    if code != 0 {
        return Err(Error::Command {
            command: format!("refresh of instance {id} ({what})"),
            status: format!("exit status {code}; full log: {}", log.display()),
            stderr: crate::progress::log_tail(&log, 12),
        });
    }
    store::write_json(
        &state_path(store, id),
        &RefreshState {
            last_refresh_unix: store::unix_now(),
            base_sha256: base.meta.import.sha256.clone(),
            sources,
        },
    )?;
    if !quiet {
        eprintln!(
            "refreshed instance {id} in {:.0} s (log: {})",
            started.elapsed().as_secs_f64(),
            log.display()
        );
    }
    Ok(())
}

/// What a refresh runs: its script, what it does (for messages), its binds and environment.
struct RefreshInputs {
    script: String,
    what: String,
    binds: Vec<Bind>,
    env: Vec<(String, String)>,
}

/// What a refresh runs, by how the instance is refreshed. A foreign Debian instance's packages
/// are fetched natively first where a host-arch base OS of its recipe is loaded.
fn refresh_inputs(
    store: &Store,
    base: &BaseOs,
    id: &InstanceId,
    how: &Refresh,
    tmp: &Path,
    list_file: &Path,
) -> Result<RefreshInputs> {
    // In single-uid mode the sandbox itself keeps apt from switching to _apt and lets dpkg's
    // changes of owner pass (crate::single_uid).
    let mut env = sandbox::base_env(true);
    let mut binds = vec![Bind {
        src: list_file.to_path_buf(),
        dst: "/run/pookie-ns/branch.list".into(),
        readonly: true,
    }];
    let (script, what) = match how {
        Refresh::Branch => {
            if let Some(apt) = prefetch_natively(store, base, id, tmp, list_file)? {
                binds.push(Bind {
                    src: apt,
                    dst: "/run/pookie-ns/apt".into(),
                    readonly: true,
                });
            }
            (
                BRANCH_REFRESH.to_string(),
                "apt-get update && dist-upgrade".to_string(),
            )
        }
        Refresh::Image(pm) => {
            if let Some(image) = &base.meta.image {
                image.apply_env(&mut env);
            }
            env.push(("POOKIE_NS_PACKAGE_MANAGER".into(), pm.clone()));
            (
                IMAGE_REFRESH.to_string(),
                format!("the image's package index ({pm})"),
            )
        }
    };
    env.push(("DEBIAN_FRONTEND".into(), "noninteractive".into()));
    Ok(RefreshInputs {
        script,
        what,
        binds,
        env,
    })
}

/// The download half of a foreign instance's refresh, run natively (`apt-prefetch.sh`): the
/// host-arch base OS of the same recipe and mirror, loaded in this store, runs apt for the
/// instance's arch over its dpkg status, and leaves the branch's lists and the upgrade's
/// packages in a directory under `tmp`, which this returns. `None` when the instance is native,
/// when no such base OS is loaded, or when the native fetch failed (the log says why): the
/// emulated apt then fetches them itself, as before.
fn prefetch_natively(
    store: &Store,
    base: &BaseOs,
    id: &InstanceId,
    tmp: &Path,
    list_file: &Path,
) -> Result<Option<PathBuf>> {
    let Some(info) = base.meta.recipe.as_ref().filter(|_| !base.arch.is_native()) else {
        return Ok(None);
    };
    let native = store.list_baseos()?.into_iter().find(|b| {
        b.arch == Arch::host()
            && b.meta.recipe.as_ref().is_some_and(|r| {
                r.recipe == info.recipe && r.suite == info.suite && r.mirror == info.mirror
            })
            && store.check_id_map(b).is_ok()
    });
    let Some(native) = native else {
        tracing::info!(
            "instance {id}: apt runs emulated for the whole refresh (load {} for {} to fetch natively)",
            info.recipe,
            Arch::host()
        );
        return Ok(None);
    };
    let out = tmp.join("apt");
    crate::sys::mkdir_p(&out, 0o755)?;
    let log = store.instance_dir(id).join("refresh-download.log");
    let ws = store.create_workspace(id, &["refresh-download".to_string()])?;
    let mut env = sandbox::base_env(true);
    env.push(("DEBIAN_FRONTEND".into(), "noninteractive".into()));
    env.push(("POOKIE_NS_APT_ARCH".into(), base.arch.debian().to_string()));
    let layers = crate::overlay::Layers {
        lower: vec![store.relative(&native.rootfs())],
        upper: store.relative(&ws.upper()),
        work: store.relative(&ws.work()),
    };
    let spec = Spec {
        binds: vec![
            Bind {
                src: list_file.to_path_buf(),
                dst: "/run/pookie-ns/branch.list".into(),
                readonly: true,
            },
            Bind {
                src: out.clone(),
                dst: "/run/pookie-ns/apt".into(),
                readonly: false,
            },
        ],
        // The instance as it is, read-only: apt plans the upgrade from its dpkg status.
        lower_mounts: vec![sandbox::LowerMount {
            lower: store.lower_layers(base, id, &[])?,
            dst: "/target".into(),
        }],
        network: true,
        env,
        log: Some(log.clone()),
        ..Spec::new(
            store,
            layers,
            &ws,
            vec!["/bin/sh".into(), "-c".into(), APT_PREFETCH.into()],
        )
    };
    let started = Instant::now();
    let code = sandbox::spawn(&store.map, &spec).and_then(|child| child.wait());
    ws.remove()?;
    match code {
        Ok(0) => {
            tracing::info!(
                "instance {id}: package lists and downloads fetched natively by {} ({}) in {:.0} s",
                native.name,
                native.arch,
                started.elapsed().as_secs_f64()
            );
            Ok(Some(out))
        }
        failed => {
            let why = match failed {
                Ok(code) => format!("exit status {code}"),
                Err(e) => e.to_string(),
            };
            tracing::warn!(
                "instance {id}: fetching natively failed ({why}; log: {}): apt fetches under emulation instead",
                log.display()
            );
            crate::userns::remove_tree(&store.map, &out)?;
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> RecipeInfo {
        RecipeInfo {
            recipe: "debian-bookworm".into(),
            suite: "bookworm".into(),
            python: vec!["3.11".into()],
            mirror: "http://deb.debian.org/debian".into(),
            components: vec!["main".into()],
            next: Some("trixie".into()),
        }
    }

    #[test]
    fn built_in_branches() {
        let dir = tempfile::tempdir().unwrap();
        let stable = sources_list(dir.path(), "stable", &info()).unwrap();
        assert_eq!(
            stable,
            "deb http://deb.debian.org/debian bookworm main\n\
             deb http://deb.debian.org/debian bookworm-updates main\n\
             deb http://deb.debian.org/debian-security bookworm-security main\n"
        );
        let testing = sources_list(dir.path(), "testing", &info()).unwrap();
        assert_eq!(testing, "deb http://deb.debian.org/debian trixie main\n");
    }

    /// A config dir whose source_lists/ holds `file` with `text`.
    fn lists_with(file: &str, text: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("source_lists")).unwrap();
        std::fs::write(dir.path().join("source_lists").join(file), text).unwrap();
        dir
    }

    #[test]
    fn missing_branch_names_the_file_and_the_branches() {
        let dir = lists_with("nightly.list", "deb http://x/debian sid main\n");
        let err = sources_list(dir.path(), "weekly", &info())
            .unwrap_err()
            .to_string();
        assert!(err.contains("source_lists/weekly.list"), "{err}");
        assert!(err.contains("stable, testing, nightly"), "{err}");
        assert_eq!(
            sources_list(dir.path(), "nightly", &info()).unwrap(),
            "deb http://x/debian sid main\n"
        );
    }

    #[test]
    fn bad_list_lines_are_refused() {
        let dir = lists_with(
            "stable.list",
            "# ok\ndeb http://x/debian a main\nrm -rf /\n",
        );
        let err = sources_list(dir.path(), "stable", &info())
            .unwrap_err()
            .to_string();
        assert!(err.contains("stable.list:3"), "{err}");
    }
}
