//! Loading base OSes into the store: importing an archive (unpacked inside the user namespace so
//! files keep their owners, staged in `tmp/` and renamed into place whole), and building a recipe
//! with mmdebstrap first.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::arch::Arch;
use crate::baseos_cache;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::import::{self, ImportOptions, ImportSummary};
use crate::recipe::{Recipe, RecipeInfo};
use crate::store::{self, BaseOsMeta, Store};
use crate::userns::{self, IdMap};

/// How loading reports itself, and whether it may replace a loaded base OS.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    pub quiet: bool,
    pub json: bool,
    /// update-baseos: swap the new base OS in for the loaded one.
    pub replace: bool,
}

/// The base OS name an archive gets without --name: its file name less the archive extensions.
pub fn name_from_archive(path: &Path) -> String {
    let mut name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    for ext in [
        ".gz", ".xz", ".zst", ".zstd", ".tgz", ".txz", ".tzst", ".tar",
    ] {
        if let Some(stem) = name.strip_suffix(ext) {
            name = stem.to_string();
        }
    }
    name
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

fn mkdir(p: &Path) -> Result<()> {
    Ok(crate::sys::mkdir_p(p, 0o755)?)
}

/// Removes a scratch dir of the store when dropped (an import that failed half-way).
struct TmpGuard {
    dir: PathBuf,
    map: IdMap,
}

impl Drop for TmpGuard {
    fn drop(&mut self) {
        if let Err(e) = userns::remove_tree(&self.map, &self.dir) {
            tracing::warn!("could not remove {}: {e}", self.dir.display());
        }
    }
}

fn progress_bar(len: u64, name: &str, quiet: bool) -> indicatif::ProgressBar {
    if quiet {
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

/// Imports `archive` as base OS `name`. The arch is read from the rootfs unless `arch` is given.
pub fn import_archive(
    config: &Config,
    store: &Store,
    archive: &Path,
    name: &str,
    arch: Option<Arch>,
    recipe: Option<RecipeInfo>,
    out: Output,
) -> Result<BaseOsMeta> {
    let archive = std::path::absolute(archive).map_err(|e| Error::io("resolve", archive, e))?;
    let meta = std::fs::metadata(&archive).map_err(|e| {
        Error::usage(format!(
            "cannot read the archive {}: {e}",
            archive.display()
        ))
    })?;
    if !meta.is_file() {
        return Err(Error::usage(format!("{} is not a file", archive.display())));
    }
    let len = meta.len();
    let fill = |rootfs: &Path, opts: &ImportOptions| -> Result<ImportSummary> {
        let bar = progress_bar(len, name, out.quiet || out.json);
        let mut report = |n: u64| bar.set_position(n);
        let summary = import::unpack_archive(&archive, rootfs, opts, &mut report)?;
        bar.finish_and_clear();
        Ok(summary)
    };
    let source = Source {
        path: archive.clone(),
        recipe,
        image: None,
    };
    stage(config, store, name, arch, source, out, fill)
}

/// Where a base OS comes from, for its meta.json.
struct Source {
    path: PathBuf,
    recipe: Option<RecipeInfo>,
    image: Option<crate::oci::ImageMeta>,
}

/// Unpacks a base OS into a scratch dir of the store (`fill`, run inside the user namespace so
/// that files keep their owners), finds its arch, CPythons and package manager, writes its
/// meta.json, and moves it into place whole — or swaps it with the loaded one (`out.replace`).
fn stage(
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
    let dest = store.baseos_dir(name, arch);
    if out.replace && dest.exists() {
        // One atomic exchange: runs see the old base OS or the new one, never none. The old
        // one is then in the scratch dir, removed with it (through its own id map).
        let old_map = store
            .list_baseos()?
            .into_iter()
            .find(|b| b.name == name && b.arch == arch)
            .map(|b| b.meta.id_map)
            .unwrap_or_else(|| store.map.clone());
        crate::sys::exchange(&staged, &dest)?;
        userns::remove_tree(&old_map, &staged)?;
    } else {
        refuse_existing(store, name, arch)?;
        mkdir(dest.parent().expect("baseos/<name>"))?;
        // The base OS appears whole or not at all.
        std::fs::rename(&staged, &dest)
            .map_err(|e| Error::io("move the imported base OS to", &dest, e))?;
    }
    tracing::debug!(secs = started.elapsed().as_secs_f64(), "moved into place");
    drop(guard);

    let secs = started.elapsed().as_secs_f64();
    if out.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&base_meta).expect("serializable")
        );
    } else if !out.quiet {
        eprintln!(
            "loaded base OS {name} ({arch}, {}): {} entries, {} unpacked, in {secs:.1} s{}{}",
            base_meta.arch_source,
            base_meta.import.entries,
            store::human_size(base_meta.import.unpacked_bytes),
            match &base_meta.image {
                Some(i) => format!("; image {}", i.manifest_digest),
                None => String::new(),
            },
            match store.map {
                IdMap::Single { .. } => " — single-uid mode: every file is owned by you",
                _ => "",
            }
        );
    }
    Ok(base_meta)
}

/// The base OS name an image gets without --name: the last part of its repository or file
/// name, with its tag (`docker://quay.io/pypa/manylinux_2_28_x86_64:2024` → `manylinux_2_28_x86_64-2024`).
pub fn name_from_image(source: &crate::oci::ImageSource) -> String {
    use crate::oci::ImageSource;
    let raw = match source {
        ImageSource::Registry(r) => {
            let last = r.repository.rsplit('/').next().unwrap_or(&r.repository);
            match &r.tag {
                Some(t) if t != "latest" => format!("{last}-{t}"),
                _ => last.to_string(),
            }
        }
        ImageSource::Layout { dir, name } => {
            let base = dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "image".into());
            match name {
                Some(n) => format!("{base}-{n}"),
                None => base,
            }
        }
        ImageSource::OciArchive(p) | ImageSource::DockerArchive(p) => name_from_archive(p),
    };
    let cleaned: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    let cleaned = cleaned.trim_start_matches(['.', '-']).to_string();
    if cleaned.is_empty() {
        "image".into()
    } else {
        cleaned.chars().take(64).collect()
    }
}

/// An image source as meta.json records it: local paths made absolute (`update-baseos` and
/// `build` compare and read it again from anywhere).
pub fn canonical_source(source: &crate::oci::ImageSource) -> Result<crate::oci::ImageSource> {
    use crate::oci::ImageSource;
    let abs = |p: &Path| std::path::absolute(p).map_err(|e| Error::io("resolve", p, e));
    Ok(match source {
        ImageSource::Layout { dir, name } => ImageSource::Layout {
            dir: abs(dir)?,
            name: name.clone(),
        },
        ImageSource::OciArchive(p) => ImageSource::OciArchive(abs(p)?),
        ImageSource::DockerArchive(p) => ImageSource::DockerArchive(abs(p)?),
        s => s.clone(),
    })
}

/// The base OS loaded from the image `source` for `arch` (any name), else the image loaded now
/// — pulled from its registry, or read from its layout or archive — under the name
/// [`name_from_image`] gives it, with a line saying `why`. `build` uses it for the images of
/// cibuildwheel's `manylinux-<arch>-image` options.
#[allow(clippy::too_many_arguments)]
pub fn ensure_image(
    config: &Config,
    store: &Store,
    source: &crate::oci::ImageSource,
    arch: Arch,
    registry: &crate::oci::registry::Options,
    why: &str,
    out: Output,
) -> Result<store::BaseOs> {
    let source = canonical_source(source)?;
    let reference = source.to_string();
    let loaded = store.list_baseos()?;
    if let Some(b) = loaded.iter().find(|b| {
        b.arch == arch
            && b.meta
                .image
                .as_ref()
                .is_some_and(|i| i.reference == reference)
    }) {
        return Ok(b.clone());
    }
    let name = name_from_image(&source);
    if let Some(other) = loaded.iter().find(|b| b.name == name && b.arch == arch) {
        return Err(Error::usage(format!(
            "{why}: {reference} is not loaded, and the base OS {name} ({arch}) it would be loaded \
             as comes from {}; load the image under another name (`pookie-ns load-baseos \
             {reference} --arch {arch} --name NAME`: build finds it by its reference) or remove \
             that one",
            other.meta.image.as_ref().map_or_else(
                || other.meta.source.display().to_string(),
                |i| i.reference.clone()
            )
        )));
    }
    if !out.quiet {
        eprintln!("pookie-ns: loading the image {reference} for {arch} as base OS {name}: {why}");
    }
    import_image(config, store, &source, &name, Some(arch), registry, out)?;
    store.find_baseos(Some(&name), Some(arch))
}

/// Loads an OCI image as base OS `name`: resolves it (pulling what the blob cache lacks), then
/// applies its layers in order through the importer, each checked against its digest and size.
#[allow(clippy::too_many_arguments)]
pub fn import_image(
    config: &Config,
    store: &Store,
    source: &crate::oci::ImageSource,
    name: &str,
    arch: Option<Arch>,
    registry: &crate::oci::registry::Options,
    out: Output,
) -> Result<BaseOsMeta> {
    store::check_name(name)?;
    if let (Some(arch), false) = (arch, out.replace) {
        refuse_existing(store, name, arch)?;
    }
    let source = canonical_source(source)?;
    // Recorded in meta.json in its canonical form (absolute paths): update-baseos reads it again.
    let reference = source.to_string();
    let reference = reference.as_str();
    let (scratch, _lock) = store.create_tmp()?;
    let _scratch_guard = crate::oci::Scratch::new(scratch.clone());
    let started = Instant::now();
    let image = crate::oci::resolve(&source, arch, &store.root.join("blobs"), &scratch, registry)?;
    tracing::debug!(
        secs = started.elapsed().as_secs_f64(),
        "image resolved, its blobs on disk"
    );
    let arch = arch.or(image.arch);
    if let (Some(arch), false) = (arch, out.replace) {
        refuse_existing(store, name, arch)?;
    }
    let mut meta = image.meta.clone();
    meta.reference = reference.to_string();
    let layers = image.layers.clone();
    let total: u64 = layers
        .iter()
        .map(|l| {
            l.size
                .unwrap_or_else(|| std::fs::metadata(&l.path).map(|m| m.len()).unwrap_or(0))
        })
        .sum();
    let fill = |rootfs: &Path, opts: &ImportOptions| -> Result<ImportSummary> {
        let bar = progress_bar(total, name, out.quiet || out.json);
        let mut all = ImportSummary::default();
        let mut done = 0u64;
        for (i, layer) in layers.iter().enumerate() {
            let mut report = |n: u64| bar.set_position(done + n);
            let s = import::unpack_layer(&layer.path, rootfs, opts, &mut report)?;
            let what = format!("layer {} of {reference}", i + 1);
            if let Some(size) = layer.size {
                if s.archive_bytes != size {
                    return Err(crate::oci::OciError::SizeMismatch {
                        what,
                        expected: size,
                        actual: s.archive_bytes,
                    }
                    .into());
                }
            }
            let expected = match (&layer.sha256, &layer.diff_id) {
                (Some(h), _) => Some(h),
                (None, Some(d)) if s.compression == Some(import::Compression::None) => Some(d),
                _ => None,
            };
            if let Some(h) = expected {
                if &s.sha256 != h {
                    return Err(crate::oci::OciError::DigestMismatch {
                        what,
                        expected: format!("sha256:{h}"),
                        actual: format!("sha256:{}", s.sha256),
                    }
                    .into());
                }
            }
            done += s.archive_bytes;
            all.compression = s.compression;
            all.archive_bytes += s.archive_bytes;
            all.entries += s.entries;
            all.unpacked_bytes += s.unpacked_bytes;
            all.skipped_devices += s.skipped_devices;
            all.whiteouts += s.whiteouts;
        }
        all.sha256 = meta
            .manifest_digest
            .strip_prefix("sha256:")
            .unwrap_or(&meta.manifest_digest)
            .to_string();
        bar.finish_and_clear();
        Ok(all)
    };
    let src = Source {
        path: PathBuf::from(reference),
        recipe: None,
        image: Some(meta.clone()),
    };
    let result = stage(config, store, name, arch, src, out, fill);
    drop(image);
    result
}

/// The Debian mirror to build from: the recipe's, else config.toml's `mirror`, else the host's
/// own apt source when it is a Debian mirror, else deb.debian.org.
pub fn mirror_for(config: &Config, recipe: &Recipe) -> String {
    recipe
        .spec
        .mirror
        .clone()
        .or_else(|| config.mirror.clone())
        .or_else(host_debian_mirror)
        .unwrap_or_else(|| "http://deb.debian.org/debian".into())
}

/// The first `URIs:` (deb822) or `deb URI` line of the host's apt sources that serves Debian.
fn host_debian_mirror() -> Option<String> {
    let mut files = vec![PathBuf::from("/etc/apt/sources.list")];
    if let Ok(rd) = std::fs::read_dir("/etc/apt/sources.list.d") {
        let mut more: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
        more.sort();
        files.extend(more);
    }
    for f in files {
        let Ok(text) = std::fs::read_to_string(&f) else {
            continue;
        };
        for line in text.lines().map(str::trim) {
            let uri = if let Some(rest) = line.strip_prefix("URIs:") {
                rest.split_whitespace().next()
            } else if let Some(rest) = line.strip_prefix("deb ") {
                rest.split_whitespace().find(|w| !w.starts_with('['))
            } else {
                None
            };
            if let Some(u) = uri {
                let u = u.trim_end_matches('/');
                if u.ends_with("/debian") && !u.contains("security") {
                    return Some(u.to_string());
                }
            }
        }
    }
    None
}

/// Finds an existing tarball `work_dir/baseos-<recipe>-<arch>.tar.*` (the aoinb seed's cache).
pub fn cached_tarball(store: &Store, recipe: &str, arch: Arch) -> Option<PathBuf> {
    ["tar.zst", "tar.xz", "tar.gz", "tar"]
        .iter()
        .map(|ext| {
            store
                .root
                .join(format!("baseos-{recipe}-{}.{ext}", arch.debian()))
        })
        .find(|p| p.is_file())
}

fn which(tool: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false)
}

/// How mmdebstrap gets to run the binaries of the arch it builds.
enum Emulation {
    Native,
    /// Kernel >= 6.7: inside pookie-ns's own user namespace, with a private binfmt_misc instance
    /// serving this interpreter. The host's binfmt_misc is neither needed nor changed.
    Private(PathBuf),
    /// Older kernels (or `binfmt = "host"`): the host's registration, and the one root made
    /// for this build if there was none.
    Host {
        _temporary: Option<TemporaryHostEntry>,
    },
}

/// A host-wide registration root made for one build: removed when dropped, whatever the
/// outcome of the build.
struct TemporaryHostEntry(Arch);

impl Drop for TemporaryHostEntry {
    fn drop(&mut self) {
        if let Err(e) = crate::binfmt::unregister_host(&[self.0]) {
            tracing::warn!("could not remove the host registration for {}: {e}", self.0);
        }
    }
}

/// Decides how a foreign `arch` is emulated for mmdebstrap. Never advises sudo to root: root
/// registers host-wide for the time of the build instead (kernels before 6.7 only).
fn foreign_emulation(config: &Config, store: &Store, arch: Arch) -> Result<Emulation> {
    let interpreter = crate::binfmt::find_interpreter(arch, config.qemu_dir.as_deref());
    let interpreter = match (which("arch-test"), interpreter) {
        (true, Ok(i)) => i,
        _ => {
            return Err(Error::usage(format!(
                "building a {arch} base OS needs QEMU: install it with \
                 `{}apt-get install qemu-user-static arch-test`",
                if store.map == IdMap::Root {
                    ""
                } else {
                    "sudo "
                }
            )))
        }
    };
    let host_only = config.binfmt == crate::config::BinfmtChoice::Host
        || std::env::var("POOKIE_NS_BINFMT").as_deref() == Ok("host");
    let has_entry =
        || crate::binfmt::find_registration(Path::new(crate::binfmt::HOST_DIR), arch).is_some();
    match decide(
        crate::binfmt::kernel_has_private_instances() && !host_only,
        has_entry,
        store.map == IdMap::Root,
    ) {
        Decision::Private => return Ok(Emulation::Private(interpreter)),
        Decision::HostExisting => return Ok(Emulation::Host { _temporary: None }),
        Decision::RegisterForBuild => {
            for m in crate::binfmt::register_host(&[arch], config.qemu_dir.as_deref())? {
                tracing::info!("{m} (for this build only)");
            }
            return Ok(Emulation::Host {
                _temporary: Some(TemporaryHostEntry(arch)),
            });
        }
        Decision::Refuse => {}
    }
    Err(Error::usage(format!(
        "mmdebstrap runs {arch} binaries through the host's binfmt_misc, which has no \
         entry for {}{}: run `sudo pookie-ns binfmt register --arch {}` first (or import a \
         tarball built elsewhere with `pookie-ns load-baseos FILE`)",
        arch.uname(),
        if host_only {
            " (private instances are disabled by binfmt = \"host\" or POOKIE_NS_BINFMT=host)"
        } else {
            " (this kernel is older than 6.7 and has no private binfmt_misc instances)"
        },
        arch.uname()
    )))
}

#[derive(Debug, PartialEq, Eq)]
enum Decision {
    Private,
    HostExisting,
    RegisterForBuild,
    Refuse,
}

/// The order of [`foreign_emulation`]: a private instance when the kernel has them (the host's
/// entries are then not even read), else the host's entry, else root registers one for the
/// build, else the user is told what to run.
fn decide(private_ok: bool, host_has_entry: impl FnOnce() -> bool, root: bool) -> Decision {
    if private_ok {
        Decision::Private
    } else if host_has_entry() {
        Decision::HostExisting
    } else if root {
        Decision::RegisterForBuild
    } else {
        Decision::Refuse
    }
}

/// Runs mmdebstrap with `args` (under the emulation the build needs), its output in `log`,
/// behind a spinner; its exit code.
#[allow(clippy::too_many_arguments)]
fn run_mmdebstrap(
    recipe: &Recipe,
    arch: Arch,
    emulation: &Emulation,
    tmp: &Path,
    map: &IdMap,
    args: &[String],
    log: &Path,
    out: Output,
) -> Result<i32> {
    tracing::debug!(command = %format!("mmdebstrap {}", args.join(" ")), "building base OS");
    let spinner = crate::progress::spinner(
        format!(
            "building {} ({} {}, {arch}) with mmdebstrap{}",
            recipe.name,
            recipe.spec.distribution,
            recipe.spec.suite,
            if arch.is_native() {
                ""
            } else {
                " under QEMU (several minutes)"
            }
        ),
        out.quiet || out.json,
    );
    let log_file = std::fs::File::create(log).map_err(|e| Error::io("create", log, e))?;
    let code = match emulation {
        Emulation::Private(interpreter) => {
            let binfmt_dir = tmp.join("binfmt_misc");
            if !binfmt_dir.exists() {
                mkdir(&binfmt_dir)?;
            }
            let child = userns::spawn(map, |_| {
                mmdebstrap_with_private_binfmt(arch, interpreter, &binfmt_dir, args, &log_file)
            })?;
            // The spinner's thread starts only now: nothing is forked from this process while
            // it runs.
            spinner.tick();
            child.wait()
        }
        Emulation::Native | Emulation::Host { .. } => {
            let ran = mmdebstrap_to_end(args, &log_file, || spinner.tick());
            let _ = crate::process::default_interrupts();
            match ran {
                Ok((_, Some(sig))) => {
                    spinner.finish();
                    eprintln!("pookie-ns: {sig}: mmdebstrap stopped, base OS not built");
                    crate::process::die_of(sig)
                }
                Ok((code, None)) => Ok(code),
                Err(e) => Err(e),
            }
        }
    };
    // The ticker thread ends here, before anything else forks.
    spinner.finish();
    code
}

/// Whether mmdebstrap's log shows apt failing to fetch an index (not a package, a script or a
/// missing mirror): the case a build without the update sources may get past.
fn index_fetch_failed(log: &Path) -> bool {
    std::fs::read_to_string(log).is_ok_and(|text| {
        text.contains("Some index files failed to download")
            || text
                .lines()
                .any(|l| l.starts_with("E: Failed to fetch") && l.contains("/dists/"))
    })
}

/// The first line of mmdebstrap's log that shows apt failing to fetch from the mirror (an
/// index, a package, the Release file) or to reach it, if any: worth one more try.
fn fetch_failure(log: &Path) -> Option<String> {
    let text = std::fs::read_to_string(log).ok()?;
    let line = text.lines().find(|l| {
        l.starts_with("E: Failed to fetch")
            || l.starts_with("E: Unable to fetch")
            || (l.starts_with("E: The repository") && l.contains("does not have a Release file"))
            || l.contains("Some index files failed to download")
            || l.contains("Temporary failure resolving")
            || l.contains("Could not connect to")
    })?;
    let line = line.trim();
    Some(match line.char_indices().nth(300) {
        Some((at, _)) => format!("{}...", &line[..at]),
        None => line.to_string(),
    })
}

/// `mmdebstrap ARGS` with its output going to the log.
fn mmdebstrap_command(args: &[String], log: &std::fs::File) -> Result<Command> {
    let dup = |f: &std::fs::File| {
        f.try_clone()
            .map_err(|e| Error::io("dup", "the mmdebstrap log", e))
    };
    let mut c = Command::new("mmdebstrap");
    c.args(args)
        .stdin(Stdio::null())
        .stdout(dup(log)?)
        .stderr(dup(log)?);
    // A SIGINT or SIGTERM to pookie-ns is passed on to mmdebstrap's whole process group
    // (mmdebstrap_to_end); when its parent is killed outright (SIGKILL), mmdebstrap's top process
    // gets a SIGTERM at least, which ends it outside the phases where it ignores signals.
    crate::sys::set_parent_death_signal_of(&mut c, nix::sys::signal::Signal::SIGTERM);
    Ok(c)
}

/// A process's exit status as a shell reports it (128 + N when killed by signal N).
fn exit_code(status: &std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

/// In the helper process, as uid 0 of pookie-ns's user namespace: a mount namespace of its own,
/// a private binfmt_misc instance at `binfmt_dir` with `arch` registered, then mmdebstrap.
///
/// The kernel's `load_binfmt_misc()` (fs/binfmt_misc.c, Linux 6.7) walks up from the caller's
/// user namespace to the nearest one that mounted an instance, so mmdebstrap and the
/// namespaces it creates itself run foreign binaries through this one. The instance dies with
/// its last mount, i.e. when this process and its mount namespace end.
fn mmdebstrap_with_private_binfmt(
    arch: Arch,
    interpreter: &Path,
    binfmt_dir: &Path,
    args: &[String],
    log: &std::fs::File,
) -> Result<i32> {
    use crate::syscall::{Kernel, Syscall};
    Kernel.unshare(nix::sched::CloneFlags::CLONE_NEWNS)?;
    // Nothing mounted from here on may propagate back into the caller's namespace.
    Kernel.make_mounts_private()?;
    crate::binfmt::setup_private(&Kernel, binfmt_dir, &[(arch, interpreter.to_path_buf())])?;
    // Fail early, and in pookie-ns's words, if the instance does not serve the arch (mmdebstrap
    // skips its own check for the extract variant).
    let check = Command::new("arch-test")
        .arg(arch.debian())
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::io("run", "arch-test", e))?;
    if !check.status.success() {
        return Err(Error::usage(format!(
            "the private binfmt_misc instance at {} does not make {arch} binaries runnable \
             (`arch-test {}`: {})",
            binfmt_dir.display(),
            arch.debian(),
            String::from_utf8_lossy(&check.stdout).trim()
        )));
    }
    // pookie-ns dying (SIGKILL included) ends this helper with SIGTERM, which stops mmdebstrap
    // as a signal to pookie-ns itself would (not SIGKILL, which would leave mmdebstrap on).
    crate::sys::set_parent_death_signal(nix::sys::signal::Signal::SIGTERM)?;
    let (code, sig) = mmdebstrap_to_end(args, log, || {})?;
    Ok(sig.map_or(code, |s| 128 + s as i32))
}

/// Runs mmdebstrap to its end in a process group of its own, and passes on to that whole group
/// a SIGINT or SIGTERM this process gets meanwhile: mmdebstrap's top process ignores them while
/// its workers run (it expects a terminal's Ctrl-C, which reaches its whole group), so a signal
/// to pookie-ns alone would leave it building on. `started` runs once it is under way. Returns
/// its exit status, and the signal passed on, if any; the caller gives the signals their default
/// dispositions back.
fn mmdebstrap_to_end(
    args: &[String],
    log: &std::fs::File,
    started: impl FnOnce(),
) -> Result<(i32, Option<nix::sys::signal::Signal>)> {
    crate::process::catch_interrupts()?;
    let mut cmd = mmdebstrap_command(args, log)?;
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut child = cmd.spawn().map_err(|e| Error::io("run", "mmdebstrap", e))?;
    started();
    let group = nix::unistd::Pid::from_raw(-(child.id() as i32));
    let mut passed_on = None;
    loop {
        if let Some(status) = child
            .try_wait()
            .map_err(|e| Error::io("wait for", "mmdebstrap", e))?
        {
            return Ok((exit_code(&status), passed_on));
        }
        if let (None, Some(sig)) = (passed_on, crate::process::interrupted()) {
            tracing::debug!(signal = %sig, "passing the signal on to mmdebstrap's process group");
            let _ = nix::sys::signal::kill(group, sig);
            passed_on = Some(sig);
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Builds `recipe` for `arch` with mmdebstrap (rootless through its unshare mode; a foreign arch
/// inside pookie-ns's user namespace with a private binfmt_misc instance on Linux >= 6.7) and
/// imports it as base OS `name`; or imports `work_dir/baseos-<recipe>-<arch>.tar.*` or the
/// per-user cache's build if there is one.
pub fn load_recipe(
    config: &Config,
    store: &Store,
    recipe: &Recipe,
    arch: Arch,
    name: &str,
    save_tarball: Option<&Path>,
    out: Output,
) -> Result<BaseOsMeta> {
    recipe.check_arch(arch)?;
    store::check_name(name)?;
    if !out.replace {
        refuse_existing(store, name, arch)?;
    }
    let mirror = mirror_for(config, recipe);
    let info = RecipeInfo {
        recipe: recipe.name.clone(),
        suite: recipe.spec.suite.clone(),
        python: recipe.spec.python.clone(),
        mirror: mirror.clone(),
        components: recipe.spec.components.clone(),
        next: recipe.spec.next.clone(),
    };
    // An update always rebuilds: the cached tarball is what it replaces.
    if let (Some(tarball), false) = (cached_tarball(store, &recipe.name, arch), out.replace) {
        if !out.quiet {
            eprintln!(
                "importing the existing tarball {} instead of building",
                tarball.display()
            );
        }
        return import_archive(config, store, &tarball, name, Some(arch), Some(info), out);
    }

    // The per-user cache: a build of the same recipe, mirror, arch and release elsewhere.
    let cache_dir = baseos_cache::dir();
    let cache_key = cache_dir.as_ref().map(|_| {
        baseos_cache::Key::new(
            recipe,
            &mirror,
            arch,
            baseos_cache::release_date(&mirror, &recipe.spec.suite),
        )
    });
    if let (Some(dir), Some(key), false) = (&cache_dir, &cache_key, out.replace) {
        if let Some(cached) = baseos_cache::lookup(dir, key) {
            if !out.quiet {
                eprintln!(
                    "importing {} from the per-user cache {}{}",
                    recipe.name,
                    cached.display(),
                    if key.release_date.is_none() {
                        " (the mirror's release date could not be read: the newest build is used)"
                    } else {
                        ""
                    }
                );
            }
            let meta = import_archive(config, store, &cached, name, Some(arch), Some(info), out)?;
            if let Some(dest) = save_tarball {
                std::fs::copy(&cached, dest)
                    .map_err(|e| Error::io("save the tarball to", dest, e))?;
            }
            return Ok(meta);
        }
    }

    if !which("mmdebstrap") {
        return Err(Error::usage(
            "building a base OS needs mmdebstrap: install it with `sudo apt-get install mmdebstrap`",
        ));
    }
    let emulation = if arch.is_native() {
        Emulation::Native
    } else {
        foreign_emulation(config, store, arch)?
    };
    if matches!(store.map, IdMap::Single { .. }) {
        return Err(Error::usage(
            "mmdebstrap needs a subordinate id range to build rootless (this user has none in \
             /etc/subuid): add one (`sudo usermod --add-subuids 100000-165535 --add-subgids \
             100000-165535 USER`), build as root, or import a tarball with `pookie-ns load-baseos FILE`",
        ));
    }
    // Inside pookie-ns's own user namespace mmdebstrap is uid 0 and its unshare mode only adds
    // a mount and pid namespace; outside, a non-root user needs the unshare mode's own one.
    let rootless = !matches!(store.map, IdMap::Root) || matches!(emulation, Emulation::Private(_));

    let (tmp, _lock) = store.create_tmp()?;
    let guard = TmpGuard {
        dir: tmp.clone(),
        map: store.map.clone(),
    };
    // mmdebstrap picks the output format from the file name.
    let tarball = tmp.join(format!("baseos-{}-{}.tar.zst", recipe.name, arch.debian()));
    let log = tmp.join("mmdebstrap.log");
    let started = Instant::now();
    // With `updates = true`, a mirror caught mid-sync on the -updates or -security indexes
    // (seen: bookworm-security's armhf Packages.xz of another size than its Release names) fails
    // mmdebstrap, which allows no missing index. The suite alone is then built, said, and not
    // cached as the recipe's: the first refresh of its instance brings the updates.
    let attempts: &[bool] = if recipe.spec.updates {
        &[true, false]
    } else {
        &[false]
    };
    let mut fell_back = false;
    // A foreign arch's byte-compilation runs natively after the build (crate::bytecode), with
    // the host-arch base OS of the same recipe when the store has one.
    // POOKIE_NS_EMULATED_BYTECODE=1 keeps it all under QEMU (for bench/run's comparison).
    let emulated_bytecode =
        std::env::var_os("POOKIE_NS_EMULATED_BYTECODE").is_some_and(|v| v == "1");
    let deferred_bytecode = if arch.is_native() || emulated_bytecode {
        Vec::new()
    } else {
        let native = native_twin(store, &recipe.name);
        tracing::debug!(native = ?native, "byte-compilation deferred to a native interpreter");
        crate::bytecode::hook_args(&recipe.spec.python, native.as_deref(), Arch::host())
    };
    // A fetch that failed (a mirror mid-sync answering 404 for packages it still lists, the
    // network) is tried once more before the build gives up or falls back.
    let mut retried = false;
    let mut n = 0;
    while let Some(&updates) = attempts.get(n) {
        let mut args = recipe.mmdebstrap_args_with(arch, &mirror, &tarball, rootless, updates);
        // Options go before mmdebstrap's positional arguments (suite, target, mirrors).
        let options_end = args
            .iter()
            .position(|a| !a.starts_with("--"))
            .unwrap_or(args.len());
        args.splice(options_end..options_end, deferred_bytecode.iter().cloned());
        let code = run_mmdebstrap(recipe, arch, &emulation, &tmp, &store.map, &args, &log, out)?;
        if code == 0 {
            break;
        }
        if let (false, Some(line)) = (retried, fetch_failure(&log)) {
            eprintln!(
                "pookie-ns: warning: building {name} for {arch}: a fetch from {mirror} failed \
                 ({line}); trying once more",
                name = recipe.name
            );
            retried = true;
            continue;
        }
        n += 1;
        if n < attempts.len() && index_fetch_failed(&log) {
            eprintln!(
                "pookie-ns: warning: the mirror's {suite}-updates or {suite}-security indexes \
                 could not be fetched (mirror sync in progress?); building {name} for {arch} \
                 from {suite} alone: the first refresh of its instance brings the updates",
                suite = recipe.spec.suite,
                name = recipe.name
            );
            fell_back = true;
            continue;
        }
        return Err(Error::Command {
            command: format!("mmdebstrap {}", args.join(" ")),
            status: format!("exit status: {code}"),
            stderr: crate::progress::log_tail(&log, 15),
        });
    }
    // A host registration root made for this build is taken back now.
    drop(emulation);
    if !out.quiet {
        eprintln!(
            "built {} for {arch} in {:.0} s ({})",
            recipe.name,
            started.elapsed().as_secs_f64(),
            store::human_size(std::fs::metadata(&tarball).map(|m| m.len()).unwrap_or(0))
        );
    }
    if let (Some(dir), Some(key), false) = (&cache_dir, &cache_key, fell_back) {
        match baseos_cache::store(dir, key, &tarball) {
            Ok(Some(entry)) => tracing::debug!(entry = %entry.display(), "cached the base OS"),
            Ok(None) => tracing::debug!("release date unknown: not cached"),
            Err(e) => tracing::warn!("could not cache the base OS in {}: {e}", dir.display()),
        }
    }
    let meta = import_archive(config, store, &tarball, name, Some(arch), Some(info), out)?;
    if let Some(dest) = save_tarball {
        if std::fs::rename(&tarball, dest).is_err() {
            std::fs::copy(&tarball, dest).map_err(|e| Error::io("save the tarball to", dest, e))?;
        }
        if !out.quiet {
            eprintln!("saved the tarball as {}", dest.display());
        }
    }
    drop(guard);
    Ok(meta)
}

/// The root of a base OS of the store built from `recipe` for the host's own arch, if any: its
/// CPythons are the native twins of a foreign build's (see [`crate::bytecode`]).
fn native_twin(store: &Store, recipe: &str) -> Option<PathBuf> {
    store
        .list_baseos()
        .ok()?
        .into_iter()
        .find(|b| {
            b.arch == Arch::host() && b.meta.recipe.as_ref().is_some_and(|r| r.recipe == recipe)
        })
        .map(|b| b.rootfs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_fetch_is_worth_one_more_try_and_is_named() {
        let d = tempfile::tempdir().unwrap();
        let log = d.path().join("mmdebstrap.log");
        let check = |text: &str| {
            std::fs::write(&log, text).unwrap();
            fetch_failure(&log)
        };
        // The issue's: a mirror mid-sync answers 404 for packages its index lists.
        let pkg = "E: Failed to fetch http://deb.debian.org/debian-security/pool/updates/main/k/\
                   krb5/libkrb5support0_1.18.3-6+deb11u8_arm64.deb  404  Not Found [IP: 1.2.3.4 80]";
        assert_eq!(
            check(&format!(
                "Get:1 ...\n{pkg}\nE: Unable to fetch some archives\n"
            ))
            .as_deref(),
            Some(pkg)
        );
        assert!(check(
            "E: The repository 'http://127.0.0.1:8080/debian nosuch Release' does not have a \
             Release file.\n"
        )
        .is_some());
        assert!(
            check("W: Failed to fetch x  Temporary failure resolving 'deb.debian.org'\n").is_some()
        );
        // Not the mirror's fault: no second try.
        assert_eq!(check("E: mmdebstrap failed to run\n"), None);
        assert_eq!(check("E: Unable to locate package python3.99-dev\n"), None);
        assert_eq!(fetch_failure(&d.path().join("missing.log")), None);
        // A long line is cut.
        let long = format!("E: Failed to fetch http://m/{}", "x".repeat(1000));
        assert!(check(&long).unwrap().len() < 320);
    }

    #[test]
    fn an_index_fetch_failure_is_told_from_other_failures() {
        let d = tempfile::tempdir().unwrap();
        let log = d.path().join("mmdebstrap.log");
        let check = |text: &str| {
            std::fs::write(&log, text).unwrap();
            index_fetch_failed(&log)
        };
        assert!(check(
            "E: Failed to fetch http://deb.debian.org/debian-security/dists/bookworm-security/\
             main/binary-armhf/Packages.xz  File has unexpected size (334084 != 354640). Mirror \
             sync in progress?\nE: Some index files failed to download.\n"
        ));
        assert!(!check(
            "E: Failed to fetch http://m/debian/pool/main/p/python3.11/x.deb\n"
        ));
        assert!(!check("E: mmdebstrap failed to run\n"));
        assert!(!index_fetch_failed(&d.path().join("missing.log")));
    }

    #[test]
    fn foreign_builds_use_a_private_instance_and_root_never_needs_sudo() {
        let unread = || panic!("the host's binfmt_misc is not read when private instances work");
        assert_eq!(decide(true, unread, false), Decision::Private);
        assert_eq!(decide(true, unread, true), Decision::Private);
        assert_eq!(decide(false, || true, false), Decision::HostExisting);
        assert_eq!(decide(false, || true, true), Decision::HostExisting);
        assert_eq!(decide(false, || false, true), Decision::RegisterForBuild);
        assert_eq!(decide(false, || false, false), Decision::Refuse);
    }

    #[test]
    fn archive_names_lose_their_extensions() {
        assert_eq!(
            name_from_archive(Path::new("/x/busybox.tar.zst")),
            "busybox"
        );
        assert_eq!(
            name_from_archive(Path::new("debian-bookworm.tgz")),
            "debian-bookworm"
        );
        assert_eq!(name_from_archive(Path::new("root.tar")), "root");
        assert_eq!(name_from_archive(Path::new("plain")), "plain");
    }
}
