//! The store (`work_dir`): base OSes, instance layers, workspaces and locks, laid out as DESIGN.md
//! says. This module knows where things are and which of them are in use; it mounts nothing.
//!
//! ```text
//! baseos/<name>/<arch>/rootfs/           lower layer, never written after import
//! baseos/<name>/<arch>/meta.json
//! instances/<branch>/<name>/<arch>/layers/NNNN/   committed changes, newest on top
//! workspaces/<id>/{upper,work,merged,lock,info.json}
//! tmp/<id>/                              imports in progress (renamed into baseos/ when whole)
//! locks/
//! ```
//!
//! An instance is a stack of layers rather than one upper dir: `run --commit` builds its changes in
//! a workspace like any run and, when the command succeeded, renames that workspace's upper dir
//! into `layers/` — one atomic rename, so an instance is always either fully old or fully new.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use crate::arch::Arch;
use crate::error::{Error, Result};
use crate::import::ImportSummary;
use crate::overlay::Layers;
use crate::sys::{self, SysError};
use crate::userns::IdMap;

pub const DEFAULT_BRANCH: &str = "stable";

/// What `meta.json` records about an imported base OS.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BaseOsMeta {
    pub name: String,
    pub arch: Arch,
    /// `detected` (from the rootfs's ELF binaries) or `given` (--arch).
    pub arch_source: String,
    /// The archive it was imported from.
    pub source: PathBuf,
    pub imported_at: String,
    pub imported_at_unix: u64,
    /// How file owners were kept: `root`, `subuid` or `single-uid`.
    pub ownership: String,
    /// The id map the files were written with; runs must use the same.
    pub id_map: IdMap,
    /// Set when the base OS was built from a recipe.
    #[serde(default)]
    pub recipe: Option<crate::recipe::RecipeInfo>,
    /// Set when the base OS was loaded from an OCI image (its manifest digest, Env ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<crate::oci::ImageMeta>,
    /// The CPythons under `/opt/python` (manylinux and musllinux images).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pythons: Vec<crate::oci::detect::PythonInstall>,
    /// `apt`, `dnf`, `yum` or `apk`.
    #[serde(default)]
    pub package_manager: Option<String>,
    #[serde(flatten)]
    pub import: ImportSummary,
}

#[derive(Debug, Clone)]
pub struct BaseOs {
    pub name: String,
    pub arch: Arch,
    pub dir: PathBuf,
    pub meta: BaseOsMeta,
}

impl BaseOs {
    pub fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs")
    }
}

/// An instance layer: the changes a branch made on top of one base OS for one arch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceId {
    pub branch: String,
    pub name: String,
    pub arch: Arch,
}

impl std::fmt::Display for InstanceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}", self.branch, self.name, self.arch)
    }
}

impl InstanceId {
    /// Parses `branch/name/arch`.
    pub fn parse(s: &str) -> Option<InstanceId> {
        let mut it = s.split('/');
        let (b, n, a) = (it.next()?, it.next()?, it.next()?);
        if it.next().is_some() || check_name(b).is_err() || check_name(n).is_err() {
            return None;
        }
        Some(InstanceId {
            branch: b.into(),
            name: n.into(),
            arch: a.parse().ok()?,
        })
    }

    fn rel_dir(&self) -> PathBuf {
        Path::new("instances")
            .join(&self.branch)
            .join(&self.name)
            .join(self.arch.debian())
    }

    fn lock_name(&self) -> String {
        format!("instance-{}-{}-{}.lock", self.branch, self.name, self.arch)
    }
}

/// A name used as a directory of the store: base OS names, branches.
pub fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with(['.', '-'])
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(Error::usage(format!(
            "invalid name {name:?}: use 1-64 letters, digits, '.', '_' or '-', not starting with '.' or '-'"
        )))
    }
}

/// What `workspaces/<id>/info.json` says about a workspace.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkspaceInfo {
    pub id: String,
    pub pid: u32,
    pub created_unix: u64,
    pub instance: String,
    pub command: Vec<String>,
    /// Kept on purpose (`--keep-failed`): not removed by the stale sweep.
    #[serde(default)]
    pub kept: bool,
}

/// A workspace owned by this process. Its lock is held for as long as the value lives, so that
/// another pookie-ns can tell a live workspace from one left by a killed process; dropping it
/// removes the workspace.
pub struct Workspace {
    pub id: String,
    pub dir: PathBuf,
    map: IdMap,
    _lock: Flock<File>,
    kept: bool,
}

impl Workspace {
    pub fn upper(&self) -> PathBuf {
        self.dir.join("upper")
    }
    pub fn work(&self) -> PathBuf {
        self.dir.join("work")
    }
    /// Where the sandbox mounts the overlay: the workspace directory itself, in the sandbox's
    /// own mount namespace (the layers are resolved before the mount hides them). No `merged/`
    /// of its own: every directory made and removed per run costs, on ext4 mounted with
    /// `discard`, a synchronous discard of its block when it is removed (~3 ms here).
    pub fn merged(&self) -> PathBuf {
        self.dir.clone()
    }

    /// Keeps the workspace for inspection (`--keep-failed`): marked so that the stale sweep
    /// leaves it; `cleanup workspaces` removes it. Returns its directory.
    pub fn keep(self) -> Result<PathBuf> {
        let path = self.dir.join("info.json");
        let mut info: WorkspaceInfo = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| {
                Error::io(
                    "read",
                    &path,
                    std::io::Error::other("missing or unreadable"),
                )
            })?;
        info.kept = true;
        write_json(&path, &info)?;
        let mut this = self;
        // Dropping now releases the lock and leaves the directory.
        this.kept = true;
        Ok(this.dir.clone())
    }

    /// Removes the workspace now, reporting failure (dropping it does the same silently).
    pub fn remove(self) -> Result<()> {
        // Drop finds nothing left to do.
        remove_workspace_dir(&self.map, &self.dir)
    }
}

impl Drop for Workspace {
    fn drop(&mut self) {
        if !self.kept && self.dir.exists() {
            if let Err(e) = remove_workspace_dir(&self.map, &self.dir) {
                tracing::warn!("could not remove workspace {}: {e}", self.dir.display());
            }
        }
    }
}

fn remove_workspace_dir(map: &IdMap, dir: &Path) -> Result<()> {
    // Fast path: the helper process usually emptied upper/ and work/ already.
    if std::fs::remove_dir_all(dir).is_ok() {
        return Ok(());
    }
    crate::userns::remove_tree(map, dir)
}

/// The lock of an instance, held shared by runs and exclusively by commits.
pub struct InstanceLock {
    _lock: Flock<File>,
}

pub struct Store {
    pub root: PathBuf,
    pub map: IdMap,
}

impl Store {
    /// Opens (creating if needed) the store at `root`, then removes what killed processes left.
    pub fn open(root: &Path, map: IdMap) -> Result<Store> {
        for d in ["baseos", "instances", "workspaces", "tmp", "locks"] {
            sys::mkdir_p(&root.join(d), 0o755).map_err(|e| {
                e.hint(format!(
                    "pookie-ns keeps its store in {}; choose another with --work-dir DIR",
                    root.display()
                ))
            })?;
        }
        let store = Store {
            root: root.to_path_buf(),
            map,
        };
        store.sweep_stale()?;
        Ok(store)
    }

    /// A base OS's files are owned through the id map it was imported with; another map would see
    /// them under other owners.
    pub fn check_id_map(&self, base: &BaseOs) -> Result<()> {
        if base.meta.id_map != self.map {
            return Err(Error::usage(format!(
                "base OS {} ({}) was imported with the id map \"{}\", but this run uses \"{}\"; \
                 re-import it (`pookie-ns cleanup baseos`, then load-baseos) or use the store of the \
                 user who imported it",
                base.name,
                base.arch,
                base.meta.id_map.describe(),
                self.map.describe()
            )));
        }
        Ok(())
    }

    // ---- base OSes -------------------------------------------------------------------------

    pub fn baseos_dir(&self, name: &str, arch: Arch) -> PathBuf {
        self.root.join("baseos").join(name).join(arch.debian())
    }

    pub fn list_baseos(&self) -> Result<Vec<BaseOs>> {
        let mut out = Vec::new();
        for name in list_dir_names(&self.root.join("baseos"))? {
            for arch_name in list_dir_names(&self.root.join("baseos").join(&name))? {
                let Ok(arch) = arch_name.parse::<Arch>() else {
                    continue;
                };
                let dir = self.baseos_dir(&name, arch);
                let meta_path = dir.join("meta.json");
                let meta: BaseOsMeta = match std::fs::read(&meta_path)
                    .ok()
                    .and_then(|b| serde_json::from_slice(&b).ok())
                {
                    Some(m) => m,
                    None => {
                        tracing::warn!(
                            "ignoring {}: missing or unreadable meta.json",
                            dir.display()
                        );
                        continue;
                    }
                };
                out.push(BaseOs {
                    name: name.clone(),
                    arch,
                    dir,
                    meta,
                });
            }
        }
        Ok(out)
    }

    /// The base OS a run uses: the named one, or the only one loaded for `arch`.
    pub fn find_baseos(&self, name: Option<&str>, arch: Option<Arch>) -> Result<BaseOs> {
        let all = self.list_baseos()?;
        if all.is_empty() {
            return Err(Error::usage(format!(
                "no base OS loaded in {}: run `pookie-ns load-baseos ARCHIVE` first",
                self.root.display()
            )));
        }
        let describe = |v: &[&BaseOs]| {
            v.iter()
                .map(|b| format!("{} ({})", b.name, b.arch))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let all_refs: Vec<&BaseOs> = all.iter().collect();
        let arch = arch.or_else(|| {
            // Without --arch: the host's arch if that base OS has it, else its only arch.
            let named: Vec<&BaseOs> = all
                .iter()
                .filter(|b| name.is_none_or(|n| b.name == n))
                .collect();
            if named.iter().any(|b| b.arch == Arch::host()) {
                Some(Arch::host())
            } else if named.len() == 1 {
                Some(named[0].arch)
            } else {
                None
            }
        });
        let matching: Vec<&BaseOs> = all
            .iter()
            .filter(|b| name.is_none_or(|n| b.name == n) && arch.is_none_or(|a| b.arch == a))
            .collect();
        match (matching.len(), name, arch) {
            (1, _, _) => Ok(matching[0].clone()),
            (0, Some(n), Some(a)) => Err(Error::usage(format!(
                "no base OS {n} for {a}; loaded: {}",
                describe(&all_refs)
            ))),
            (0, Some(n), None) => Err(Error::usage(format!(
                "no base OS named {n}; loaded: {}",
                describe(&all_refs)
            ))),
            (0, None, Some(a)) => Err(Error::usage(format!(
                "no base OS loaded for {a}; loaded: {} (load one with `pookie-ns load-baseos ARCHIVE`)",
                describe(&all_refs)
            ))),
            _ => Err(Error::usage(format!(
                "several base OSes match: {}; choose one with --baseos NAME and --arch ARCH",
                describe(&matching)
            ))),
        }
    }

    // ---- instances -------------------------------------------------------------------------

    pub fn instance_dir(&self, id: &InstanceId) -> PathBuf {
        self.root.join(id.rel_dir())
    }

    pub fn list_instances(&self) -> Result<Vec<InstanceId>> {
        let mut out = Vec::new();
        let base = self.root.join("instances");
        for branch in list_dir_names(&base)? {
            for name in list_dir_names(&base.join(&branch))? {
                for arch in list_dir_names(&base.join(&branch).join(&name))? {
                    if let Some(id) = InstanceId::parse(&format!("{branch}/{name}/{arch}")) {
                        out.push(id);
                    }
                }
            }
        }
        Ok(out)
    }

    /// The instance's committed layers, newest first, as paths relative to the store root (the
    /// sandbox mounts from there, which keeps the overlay's option string short).
    pub fn instance_layers(&self, id: &InstanceId) -> Result<Vec<PathBuf>> {
        let rel = id.rel_dir().join("layers");
        let mut names: Vec<String> = list_dir_names(&self.root.join(&rel))?
            .into_iter()
            .filter(|n| n.len() == 4 && n.bytes().all(|b| b.is_ascii_digit()))
            .collect();
        names.sort();
        names.reverse();
        Ok(names.into_iter().map(|n| rel.join(n)).collect())
    }

    /// The overlay layers of a run of `id` on `base` in workspace `ws`: the instance's layers
    /// over the base rootfs, the workspace on top; relative to the store root.
    pub fn layers(&self, base: &BaseOs, id: &InstanceId, ws: &Workspace) -> Result<Layers> {
        self.layers_over(base, id, &[], ws)
    }

    /// Like [`Store::layers`], with `extra` layers (relative to the store root, newest first)
    /// between the workspace and the instance's own: a build's cached `before-all` layer.
    pub fn layers_over(
        &self,
        base: &BaseOs,
        id: &InstanceId,
        extra: &[PathBuf],
        ws: &Workspace,
    ) -> Result<Layers> {
        Ok(Layers {
            lower: self.lower_layers(base, id, extra)?,
            upper: self.relative(&ws.upper()),
            work: self.relative(&ws.work()),
        })
    }

    /// The read-only part of [`Store::layers_over`]: `extra`, the instance's layers and the base
    /// OS, newest first, relative to the store root (also a cross build's sysroot).
    pub fn lower_layers(
        &self,
        base: &BaseOs,
        id: &InstanceId,
        extra: &[PathBuf],
    ) -> Result<Vec<PathBuf>> {
        let mut lower = extra.to_vec();
        lower.extend(self.instance_layers(id)?);
        lower.push(self.relative(&base.rootfs()));
        Ok(lower)
    }

    /// A path inside the store, relative to its root.
    pub fn relative(&self, path: &Path) -> PathBuf {
        path.strip_prefix(&self.root)
            .expect("inside the store")
            .to_path_buf()
    }

    /// Where the next committed layer of `id` goes (absolute).
    pub fn next_layer_path(&self, id: &InstanceId) -> Result<PathBuf> {
        let layers = self.instance_layers(id)?;
        let next = layers
            .first()
            .and_then(|p| p.file_name()?.to_str()?.parse::<u32>().ok())
            .map_or(1, |n| n + 1);
        if next > 9999 {
            return Err(Error::internal(format!(
                "instance {id} has too many layers; reset it with `pookie-ns cleanup {id}`"
            )));
        }
        Ok(self
            .root
            .join(id.rel_dir())
            .join("layers")
            .join(format!("{next:04}")))
    }

    pub fn ensure_instance(&self, id: &InstanceId) -> Result<()> {
        sys::mkdir_p(&self.instance_dir(id).join("layers"), 0o755)?;
        Ok(())
    }

    /// Takes the instance's lock: shared for runs, exclusive for commits. When another process
    /// holds it, says so and waits.
    pub fn lock_instance(&self, id: &InstanceId, exclusive: bool) -> Result<InstanceLock> {
        let path = self.root.join("locks").join(id.lock_name());
        let (try_arg, wait_arg) = if exclusive {
            (FlockArg::LockExclusiveNonblock, FlockArg::LockExclusive)
        } else {
            (FlockArg::LockSharedNonblock, FlockArg::LockShared)
        };
        let lock = lock_file(&path, try_arg, wait_arg, || {
            eprintln!(
                "pookie-ns: waiting for instance {id}: {} (lock {})",
                if exclusive {
                    "other runs are using it"
                } else {
                    "a commit into it is in progress"
                },
                path.display()
            )
        })?;
        Ok(InstanceLock { _lock: lock })
    }

    /// True when some process holds the instance's lock.
    pub fn instance_in_use(&self, id: &InstanceId) -> bool {
        let path = self.root.join("locks").join(id.lock_name());
        match File::open(&path) {
            Ok(f) => Flock::lock(f, FlockArg::LockExclusiveNonblock).is_err(),
            Err(_) => false,
        }
    }

    // ---- workspaces ------------------------------------------------------------------------

    /// Creates a fresh workspace with its lock held.
    pub fn create_workspace(&self, instance: &InstanceId, command: &[String]) -> Result<Workspace> {
        let id = new_id();
        let dir = self.root.join("workspaces").join(&id);
        std::fs::create_dir(&dir).map_err(|e| Error::io("create workspace", &dir, e))?;
        let lock_path = dir.join("lock");
        let f = File::create(&lock_path).map_err(|e| Error::io("create", &lock_path, e))?;
        let lock = Flock::lock(f, FlockArg::LockExclusiveNonblock)
            .map_err(|(_, e)| SysError::new("flock", Some(&lock_path), e))?;
        let ws = Workspace {
            id: id.clone(),
            dir: dir.clone(),
            map: self.map.clone(),
            _lock: lock,
            kept: false,
        };
        for sub in ["upper", "work"] {
            sys::mkdir_p(&dir.join(sub), 0o755)?;
        }
        let info = WorkspaceInfo {
            id,
            pid: std::process::id(),
            created_unix: unix_now(),
            instance: instance.to_string(),
            command: command.to_vec(),
            kept: false,
        };
        write_json(&dir.join("info.json"), &info)?;
        Ok(ws)
    }

    pub fn list_workspaces(&self) -> Result<Vec<(PathBuf, Option<WorkspaceInfo>, bool)>> {
        let base = self.root.join("workspaces");
        let mut out = Vec::new();
        for name in list_dir_names(&base)? {
            let dir = base.join(&name);
            let info: Option<WorkspaceInfo> = std::fs::read(dir.join("info.json"))
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok());
            let live = lock_is_held(&dir.join("lock"));
            out.push((dir, info, live));
        }
        Ok(out)
    }

    /// Removes workspaces and half-made imports whose process is gone (its lock is free).
    pub fn sweep_stale(&self) -> Result<()> {
        for area in ["workspaces", "tmp"] {
            let base = self.root.join(area);
            for name in list_dir_names(&base)? {
                let dir = base.join(&name);
                let lock = dir.join("lock");
                let stale = if lock.exists() {
                    !lock_is_held(&lock)
                } else {
                    // A crash between mkdir and creating the lock: give a racing creator time.
                    modified_before(&dir, Duration::from_secs(60))
                };
                if !stale {
                    continue;
                }
                let kept = std::fs::read(dir.join("info.json"))
                    .ok()
                    .and_then(|b| serde_json::from_slice::<WorkspaceInfo>(&b).ok())
                    .is_some_and(|i| i.kept);
                if kept {
                    continue;
                }
                tracing::info!(
                    "removing {} left by a process that no longer runs",
                    dir.display()
                );
                remove_workspace_dir(&self.map, &dir)?;
            }
        }
        Ok(())
    }

    /// A private directory for an import in progress, swept if the importer dies.
    pub fn create_tmp(&self) -> Result<(PathBuf, Flock<File>)> {
        let dir = self.root.join("tmp").join(new_id());
        std::fs::create_dir(&dir).map_err(|e| Error::io("create", &dir, e))?;
        let lock_path = dir.join("lock");
        let f = File::create(&lock_path).map_err(|e| Error::io("create", &lock_path, e))?;
        let lock = Flock::lock(f, FlockArg::LockExclusiveNonblock)
            .map_err(|(_, e)| SysError::new("flock", Some(&lock_path), e))?;
        Ok((dir, lock))
    }
}

fn lock_file(
    path: &Path,
    try_arg: FlockArg,
    wait_arg: FlockArg,
    on_wait: impl FnOnce(),
) -> Result<Flock<File>> {
    let open = || {
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(|e| Error::io("open lock", path, e))
    };
    match Flock::lock(open()?, try_arg) {
        Ok(l) => Ok(l),
        Err((f, nix::errno::Errno::EWOULDBLOCK)) => {
            on_wait();
            Flock::lock(f, wait_arg).map_err(|(_, e)| SysError::new("flock", Some(path), e).into())
        }
        Err((_, e)) => Err(SysError::new("flock", Some(path), e).into()),
    }
}

fn lock_is_held(path: &Path) -> bool {
    match File::open(path) {
        Ok(f) => Flock::lock(f, FlockArg::LockExclusiveNonblock).is_err(),
        Err(_) => false,
    }
}

fn modified_before(path: &Path, age: Duration) -> bool {
    std::fs::symlink_metadata(path)
        .and_then(|m| m.modified())
        .map(|t| t.elapsed().unwrap_or_default() > age)
        .unwrap_or(true)
}

/// Names of the subdirectories of `dir` (none if it does not exist), sorted.
pub fn list_dir_names(dir: &Path) -> Result<Vec<String>> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("list", dir, e)),
    };
    let mut names: Vec<String> = rd
        .flatten()
        .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    Ok(names)
}

/// Removes the now empty directories between `removed` and `stop` (exclusive), e.g.
/// `baseos/<name>/` after its last arch went.
pub fn prune_empty_parents(removed: &Path, stop: &Path) {
    let mut dir = removed.parent();
    while let Some(d) = dir {
        if d == stop || !d.starts_with(stop) || std::fs::remove_dir(d).is_err() {
            break;
        }
        dir = d.parent();
    }
}

pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let text = serde_json::to_vec_pretty(value).expect("serializable");
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, text).map_err(|e| Error::io("write", &tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io("rename into place", path, e))
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A short unique id: time and pid.
fn new_id() -> String {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{:x}-{}", nanos & 0xffff_ffff_ffff, std::process::id())
}

/// Bytes used on disk under `path`, counting hard links once; `complete` is false when some
/// directory could not be read (files of other ids in a rootless store).
pub fn disk_usage(path: &Path) -> (u64, bool) {
    let mut seen = std::collections::HashSet::new();
    let mut total = 0u64;
    let mut complete = true;
    let mut stack = vec![path.to_path_buf()];
    while let Some(p) = stack.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&p) else {
            complete = false;
            continue;
        };
        if meta.nlink() > 1 && !meta.is_dir() && !seen.insert((meta.dev(), meta.ino())) {
            continue;
        }
        total += meta.blocks() * 512;
        if meta.is_dir() {
            match std::fs::read_dir(&p) {
                Ok(rd) => stack.extend(rd.flatten().map(|e| e.path())),
                Err(_) => complete = false,
            }
        }
    }
    (total, complete)
}

/// Sizes for people: `1.50 MiB` (kept here for the callers; it lives with the progress output).
pub use crate::progress::human_size;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        for ok in ["debian-bookworm", "busybox", "a.b_c-1"] {
            assert!(check_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".hidden", "-x", "a/b", "..", "a b", &"x".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn instance_ids_parse() {
        let id = InstanceId::parse("stable/busybox/aarch64").unwrap();
        assert_eq!(id.arch, Arch::Arm64);
        assert_eq!(id.to_string(), "stable/busybox/arm64");
        assert!(InstanceId::parse("stable/busybox").is_none());
        assert!(InstanceId::parse("stable/../arm64").is_none());
        assert!(InstanceId::parse("a/b/c/d").is_none());
    }

    #[test]
    fn layers_are_listed_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store {
            root: dir.path().into(),
            map: IdMap::Root,
        };
        let id = InstanceId::parse("stable/x/amd64").unwrap();
        store.ensure_instance(&id).unwrap();
        assert!(store.next_layer_path(&id).unwrap().ends_with("layers/0001"));
        for n in ["0001", "0002", "0010", "junk"] {
            std::fs::create_dir(store.instance_dir(&id).join("layers").join(n)).unwrap();
        }
        let layers = store.instance_layers(&id).unwrap();
        assert_eq!(
            layers,
            ["0010", "0002", "0001"]
                .iter()
                .map(|n| PathBuf::from("instances/stable/x/amd64/layers").join(n))
                .collect::<Vec<_>>()
        );
        assert!(store.next_layer_path(&id).unwrap().ends_with("layers/0011"));
    }

    #[test]
    fn sizes_are_human() {
        assert_eq!(human_size(512), "512 B");
        assert_eq!(human_size(1536), "1.50 KiB");
        assert_eq!(human_size(3 * 1024 * 1024 * 1024), "3.00 GiB");
    }
}
