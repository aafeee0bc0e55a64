//! What every import goes through: a scratch dir of the store, the unpacking inside the user
//! namespace (so files keep their owners), the base OS's meta.json, and the move into place
//! whole. Also how loading reports itself ([`Output`]).

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::arch::Arch;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::import::{self, ImportOptions, ImportSummary};
use crate::recipe::RecipeInfo;
use crate::store::{self, BaseOsMeta, Store};
use crate::userns::{self, IdMap};

/// How loading reports itself, and whether it may replace a loaded base OS.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    /// Progress bars and spinners on stderr (off with -q or --json).
    pub bars: bool,
    /// Messages on stderr (off with -q).
    pub say: bool,
    pub json: bool,
    /// update-baseos: swap the new base OS in for the loaded one.
    pub replace: bool,
}

pub fn refuse_existing(store: &Store, name: &str, arch: Arch) -> Result<()> {
    let dest = store.baseos_dir(name, arch);
    if dest.exists() {
        return Err(Error::usage(format!(
            "base OS {name} ({arch}) is already loaded at {}; remove it first with \
             `pookie-ns cleanup baseos` or choose another --name",
            dest.display()
        )));
    }
    Ok(())
}

pub(super) fn mkdir(p: &Path) -> Result<()> {
    Ok(crate::sys::mkdir_p(p, 0o755)?)
}

/// Removes a scratch dir of the store when dropped (an import that failed half-way).
pub(super) struct TmpGuard {
    pub(super) dir: PathBuf,
    pub(super) map: IdMap,
}

impl Drop for TmpGuard {
    fn drop(&mut self) {
        if let Err(e) = userns::remove_tree(&self.map, &self.dir) {
            tracing::warn!("could not remove {}: {e}", self.dir.display());
        }
    }
}

pub(super) fn progress_bar(len: u64, name: &str, hidden: bool) -> indicatif::ProgressBar {
    if hidden {
        return indicatif::ProgressBar::hidden();
    }
    // No steady tick: that would start a thread, and helpers are forked from this process.
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(len),
        indicatif::ProgressDrawTarget::stderr(),
    );
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "importing {msg} [{bar:30}] {bytes}/{total_bytes} {elapsed}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar.set_message(name.to_string());
    bar
}

/// Where a base OS comes from, for its meta.json.
pub(super) struct Source {
    pub(super) path: PathBuf,
    pub(super) recipe: Option<RecipeInfo>,
    pub(super) image: Option<crate::oci::ImageMeta>,
}

/// Unpacks a base OS into a scratch dir of the store (`fill`, run inside the user namespace so
/// that files keep their owners), finds its arch, CPythons and package manager, writes its
/// meta.json, and moves it into place whole — or swaps it with the loaded one (`out.replace`).
pub(super) fn stage(
    config: &Config,
    store: &Store,
    name: &str,
    arch: Option<Arch>,
    source: Source,
    out: Output,
    fill: impl FnOnce(&Path, &ImportOptions) -> Result<ImportSummary>,
) -> Result<BaseOsMeta> {
    store::check_name(name)?;
    if let (Some(arch), false) = (arch, out.replace) {
        refuse_existing(store, name, arch)?;
    }

    let started = Instant::now();
    let (tmp, _lock) = store.create_tmp()?;
    let guard = TmpGuard {
        dir: tmp.clone(),
        map: store.map.clone(),
    };
    let staged = tmp.join("new");
    let rootfs = staged.join("rootfs");
    mkdir(&rootfs)?;
    let result_path = tmp.join("result.json");
    let opts = ImportOptions {
        keep_owners: store.map.keeps_owners(),
        create_devices: store.map == IdMap::Root,
        keep_setid: store.map == IdMap::Root,
        max_entries: config.max_archive_entries,
    };
    let unpack = || -> Result<()> {
        let summary = fill(&rootfs, &opts)?;
        let detected = import::detect_arch(&rootfs);
        let found = match (arch, detected) {
            (Some(given), Ok(found)) if given != found => {
                tracing::warn!("--arch {given} given, but the rootfs's binaries are {found}");
                given
            }
            (Some(given), _) => given,
            (None, Ok(found)) => found,
            (None, Err(e)) => return Err(e.into()),
        };
        let found_more = (
            crate::oci::detect::pythons(&rootfs),
            crate::oci::detect::package_manager(&rootfs),
        );
        store::write_json(&result_path, &(summary, found, arch.is_some(), found_more))
    };
    // The unpacking runs in the user namespace so that files keep their owners as mapped ids.
    match &store.map {
        IdMap::Root => unpack()?,
        map => userns::run(map, unpack)?,
    }
    #[allow(clippy::type_complexity)]
    let (summary, arch, given, (pythons, package_manager)): (
        ImportSummary,
        Arch,
        bool,
        (Vec<crate::oci::detect::PythonInstall>, Option<String>),
    ) = serde_json::from_slice(
        &std::fs::read(&result_path).map_err(|e| Error::io("read", &result_path, e))?,
    )
    .map_err(|e| Error::internal(format!("corrupt import result: {e}")))?;

    tracing::debug!(secs = started.elapsed().as_secs_f64(), "unpacked");
    let base_meta = BaseOsMeta {
        name: name.to_string(),
        arch,
        arch_source: if given { "given" } else { "detected" }.into(),
        source: source.path,
        imported_at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        imported_at_unix: store::unix_now(),
        ownership: store.map.mode_name().into(),
        id_map: store.map.clone(),
        recipe: source.recipe,
        image: source.image,
        pythons,
        package_manager,
        import: summary,
    };
    store::write_json(&staged.join("meta.json"), &base_meta)?;
    crate::fault::point("import-unpacked");
    move_into_place(store, name, arch, &staged, out.replace)?;
    tracing::debug!(secs = started.elapsed().as_secs_f64(), "moved into place");
    drop(guard);

    say_loaded(store, &base_meta, started.elapsed().as_secs_f64(), out);
    Ok(base_meta)
}

/// Moves the staged base OS (`staged`: its rootfs and meta.json) into place as `name` for
/// `arch`, whole or not at all; with `replace`, swaps it with the loaded one atomically.
fn move_into_place(
    store: &Store,
    name: &str,
    arch: Arch,
    staged: &Path,
    replace: bool,
) -> Result<()> {
    let dest = store.baseos_dir(name, arch);
    if replace && dest.exists() {
        // One atomic exchange: runs see the old base OS or the new one, never none. The old
        // one is then in the scratch dir, removed with it (through its own id map).
        let old_map = store
            .list_baseos()?
            .into_iter()
            .find(|b| b.name == name && b.arch == arch)
            .map(|b| b.meta.id_map)
            .unwrap_or_else(|| store.map.clone());
        crate::sys::exchange(staged, &dest)?;
        userns::remove_tree(&old_map, staged)?;
    } else {
        refuse_existing(store, name, arch)?;
        mkdir(dest.parent().expect("baseos/<name>"))?;
        // The base OS appears whole or not at all.
        std::fs::rename(staged, &dest)
            .map_err(|e| Error::io("move the imported base OS to", &dest, e))?;
    }
    Ok(())
}

/// Says what was loaded: meta.json on stdout with `--json`, else one line on stderr.
fn say_loaded(store: &Store, meta: &BaseOsMeta, secs: f64, out: Output) {
    if out.json {
        println!(
            "{}",
            serde_json::to_string_pretty(meta).expect("serializable")
        );
    } else if out.say {
        eprintln!(
            "loaded base OS {} ({}, {}): {} entries, {} unpacked, in {secs:.1} s{}{}",
            meta.name,
            meta.arch,
            meta.arch_source,
            meta.import.entries,
            store::human_size(meta.import.unpacked_bytes),
            match &meta.image {
                Some(i) => format!("; image {}", i.manifest_digest),
                None => String::new(),
            },
            match store.map {
                IdMap::Single { .. } => " — single-uid mode: every file is owned by you",
                _ => "",
            }
        );
    }
}
