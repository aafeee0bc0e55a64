//! The subcommands: each takes the validated configuration and the open store and does one job.

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::arch::Arch;
use crate::binfmt;
use crate::cli::{BinfmtCommand, Cli, Command, LoadBaseosArgs, RunArgs};
use crate::config::{BinfmtChoice, Config, Env, Overrides};
use crate::error::{Error, Result};
use crate::import::{self, ImportOptions, ImportSummary};
use crate::overlay::Layers;
use crate::sandbox::{self, Bind, Spec};
use crate::store::{self, BaseOs, BaseOsMeta, InstanceId, Store};
use crate::userns::{self, IdMap};

/// Runs the command the user asked for; returns the exit status.
pub fn dispatch(cli: &Cli) -> Result<i32> {
    let config = Config::load(
        &Overrides {
            config_dir: cli.config_dir.clone(),
            work_dir: cli.work_dir.clone(),
        },
        &Env::current(),
    )?;
    if let Command::Binfmt(cmd) = &cli.command {
        return binfmt_command(&config, cmd);
    }
    let map = IdMap::detect(config.id_map);
    tracing::debug!(store = %config.work_dir.display(), id_map = %map.describe(), "opening store");
    // Opening the store also removes what killed pookie-ns processes left behind.
    let store = Store::open(&config.work_dir, map)?;
    match &cli.command {
        Command::LoadBaseos(args) => load_baseos(&config, &store, args, cli),
        Command::Run(args) => run(&config, &store, args),
        Command::List => list(&config, &store, cli.json),
        Command::Cleanup { what } => cleanup(&store, what),
        Command::Binfmt(_) => unreachable!("handled above"),
    }
}

// ---- load-baseos ---------------------------------------------------------------------------

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

fn load_baseos(config: &Config, store: &Store, args: &LoadBaseosArgs, cli: &Cli) -> Result<i32> {
    let archive =
        std::path::absolute(&args.path).map_err(|e| Error::io("resolve", &args.path, e))?;
    let meta = std::fs::metadata(&archive).map_err(|e| {
        Error::usage(format!(
            "cannot read the archive {}: {e}",
            archive.display()
        ))
    })?;
    if !meta.is_file() {
        return Err(Error::usage(format!("{} is not a file", archive.display())));
    }
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| name_from_archive(&archive));
    store::check_name(&name)?;
    if let Some(arch) = args.arch {
        refuse_existing(store, &name, arch)?;
    }

    let started = Instant::now();
    let (tmp, _lock) = store.create_tmp()?;
    let guard = TmpGuard {
        dir: tmp.clone(),
        map: store.map.clone(),
    };
    let staged = tmp.join("new");
    let rootfs = staged.join("rootfs");
    sys_mkdir(&rootfs)?;
    let result_path = tmp.join("result.json");
    let opts = ImportOptions {
        keep_owners: store.map.keeps_owners(),
        create_devices: store.map == IdMap::Root,
        keep_setid: store.map == IdMap::Root,
        max_entries: config.max_archive_entries,
    };
    let quiet = cli.quiet || cli.json;
    let unpack = || -> Result<()> {
        let bar = progress_bar(meta.len(), &name, quiet);
        let mut report = |n: u64| bar.set_position(n);
        let summary = import::unpack_archive(&archive, &rootfs, &opts, &mut report)?;
        bar.finish_and_clear();
        let detected = import::detect_arch(&rootfs);
        let arch = match (args.arch, detected) {
            (Some(given), Ok(found)) if given != found => {
                tracing::warn!("--arch {given} given, but the rootfs's binaries are {found}");
                given
            }
            (Some(given), _) => given,
            (None, Ok(found)) => found,
            (None, Err(e)) => return Err(e.into()),
        };
        store::write_json(&result_path, &(summary, arch, args.arch.is_none()))
    };
    // The unpacking runs in the user namespace so that files keep their owners as mapped ids.
    match &store.map {
        IdMap::Root => unpack()?,
        map => userns::run(map, unpack)?,
    }
    let (summary, arch, detected): (ImportSummary, Arch, bool) = serde_json::from_slice(
        &std::fs::read(&result_path).map_err(|e| Error::io("read", &result_path, e))?,
    )
    .map_err(|e| Error::usage(format!("corrupt import result: {e}")))?;

    let now = std::time::SystemTime::now();
    let base_meta = BaseOsMeta {
        name: name.clone(),
        arch,
        arch_source: if detected { "detected" } else { "given" }.into(),
        source: archive.clone(),
        imported_at: humantime::format_rfc3339_seconds(now).to_string(),
        imported_at_unix: store::unix_now(),
        ownership: store.map.mode_name().into(),
        id_map: store.map.clone(),
        import: summary,
    };
    store::write_json(&staged.join("meta.json"), &base_meta)?;
    refuse_existing(store, &name, arch)?;
    let dest = store.baseos_dir(&name, arch);
    sys_mkdir(dest.parent().expect("baseos/<name>"))?;
    // The base OS appears whole or not at all.
    std::fs::rename(&staged, &dest)
        .map_err(|e| Error::io("move the imported base OS to", &dest, e))?;
    drop(guard);

    let secs = started.elapsed().as_secs_f64();
    if cli.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&base_meta).expect("serializable")
        );
    } else if !cli.quiet {
        eprintln!(
            "loaded base OS {name} ({arch}, {}): {} entries, {} unpacked, in {secs:.1} s{}",
            base_meta.arch_source,
            base_meta.import.entries,
            store::human_size(base_meta.import.unpacked_bytes),
            match store.map {
                IdMap::Single { .. } => " — single-uid mode: every file is owned by you",
                _ => "",
            }
        );
    }
    Ok(0)
}

fn refuse_existing(store: &Store, name: &str, arch: Arch) -> Result<()> {
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

fn sys_mkdir(p: &Path) -> Result<()> {
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
    // No steady tick: that would start a thread, and sandboxes are forked from this process.
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

// ---- run -----------------------------------------------------------------------------------

fn run(config: &Config, store: &Store, args: &RunArgs) -> Result<i32> {
    store::check_name(&args.branch)?;
    let base = store.find_baseos(args.baseos.as_deref(), args.arch)?;
    check_id_map(store, &base)?;
    let binfmt = emulation_for(config, base.arch)?;

    let instance = InstanceId {
        branch: args.branch.clone(),
        name: base.name.clone(),
        arch: base.arch,
    };
    store.ensure_instance(&instance)?;
    // Runs share the instance; a commit has it alone.
    let _lock = store.lock_instance(&instance, args.commit)?;
    let commit_to = if args.commit {
        Some(store.next_layer_path(&instance)?)
    } else {
        None
    };

    let mut lower = store.instance_layers(&instance)?;
    lower.push(
        base.rootfs()
            .strip_prefix(&store.root)
            .expect("inside the store")
            .to_path_buf(),
    );
    let ws = store.create_workspace(&instance, &args.command)?;
    let rel = |p: PathBuf| {
        p.strip_prefix(&store.root)
            .expect("inside the store")
            .to_path_buf()
    };

    let mut binds = Vec::new();
    if let Some(bundle) = &args.bundle {
        let src = std::fs::canonicalize(bundle)
            .map_err(|e| Error::usage(format!("bundle {}: {e}", bundle.display())))?;
        if !src.is_dir() {
            return Err(Error::usage(format!(
                "bundle {} is not a directory",
                src.display()
            )));
        }
        binds.push(Bind {
            src,
            dst: "/buildroot/src".into(),
            readonly: true,
        });
    }
    let mut env = sandbox::base_env(args.network);
    for kv in &args.env {
        let (k, v) = kv
            .split_once('=')
            .filter(|(k, _)| !k.is_empty())
            .ok_or_else(|| Error::usage(format!("--env {kv:?}: expected KEY=VALUE")))?;
        env.retain(|(key, _)| key != k);
        env.push((k.to_string(), v.to_string()));
    }
    let cwd = args
        .cwd
        .clone()
        .or_else(|| args.bundle.as_ref().map(|_| "/buildroot/src".into()));
    let spec = Spec {
        store_root: store.root.clone(),
        layers: Layers {
            lower,
            upper: rel(ws.upper()),
            work: rel(ws.work()),
        },
        merged: ws.merged(),
        binds,
        network: args.network,
        hostname: "pookie-ns".into(),
        cwd,
        env,
        argv: args.command.clone(),
        binfmt,
        commit_to: commit_to.clone(),
    };
    tracing::debug!(instance = %instance, workspace = %ws.dir.display(), command = ?args.command, "running");
    let result = sandbox::run(&store.map, &spec);
    let removed = ws.remove();
    let code = result?;
    removed?;
    if let (Some(layer), 0) = (&commit_to, code) {
        tracing::info!(
            "committed the changes into instance {instance} ({})",
            layer.display()
        );
    } else if args.commit {
        eprintln!(
            "pookie-ns: the command failed (status {code}); nothing was committed to {instance}"
        );
    }
    Ok(code)
}

/// A base OS's files are owned through the id map it was imported with; another map would see
/// them under other owners.
fn check_id_map(store: &Store, base: &BaseOs) -> Result<()> {
    if base.meta.id_map != store.map {
        return Err(Error::usage(format!(
            "base OS {} ({}) was imported with the id map \"{}\", but this run uses \"{}\"; \
             re-import it (`pookie-ns cleanup baseos`, then load-baseos) or use the store of the \
             user who imported it",
            base.name,
            base.arch,
            base.meta.id_map.describe(),
            store.map.describe()
        )));
    }
    Ok(())
}

/// What a run on `arch` needs for emulation: nothing for the host's arch; otherwise a private
/// binfmt_misc registration (kernel 6.7+), or nothing when the host's registration serves. Decided
/// before anything is mounted, so a missing interpreter fails early and names its package.
fn emulation_for(config: &Config, arch: Arch) -> Result<Vec<(Arch, PathBuf)>> {
    if arch.is_native() {
        return Ok(Vec::new());
    }
    match binfmt::choose(
        arch,
        config.qemu_dir.as_deref(),
        allow_private_binfmt(config),
    )? {
        binfmt::Strategy::Private { interpreter } => {
            tracing::debug!(%arch, interpreter = %interpreter.display(), "emulation: private binfmt_misc instance");
            Ok(vec![(arch, interpreter)])
        }
        binfmt::Strategy::Host { entry } => {
            tracing::info!(
                "emulating {arch} through the host's binfmt_misc registration ({entry:?})"
            );
            Ok(Vec::new())
        }
    }
}

/// Private binfmt_misc instances are used unless `binfmt = "host"` in config.toml or
/// `POOKIE_NS_BINFMT=host` in the environment says otherwise.
fn allow_private_binfmt(config: &Config) -> bool {
    config.binfmt != BinfmtChoice::Host
        && std::env::var("POOKIE_NS_BINFMT").as_deref() != Ok("host")
}

// ---- list ----------------------------------------------------------------------------------

/// How each foreign arch of the loaded base OSes would be emulated, for `list`.
fn emulation_summary(config: &Config, bases: &[BaseOs]) -> Vec<(Arch, String)> {
    let mut arches: Vec<Arch> = bases
        .iter()
        .map(|b| b.arch)
        .filter(|a| !a.is_native())
        .collect();
    arches.sort();
    arches.dedup();
    arches
        .into_iter()
        .map(|arch| {
            let how = match binfmt::choose(
                arch,
                config.qemu_dir.as_deref(),
                allow_private_binfmt(config),
            ) {
                Ok(binfmt::Strategy::Private { interpreter }) => {
                    format!("private binfmt_misc instance ({})", interpreter.display())
                }
                Ok(binfmt::Strategy::Host { entry }) => format!(
                    "host registration {} ({}, flags {})",
                    entry.name,
                    entry.interpreter.display(),
                    entry.flags
                ),
                Err(e) => format!("unavailable: {e}"),
            };
            (arch, how)
        })
        .collect()
}

fn list(config: &Config, store: &Store, json: bool) -> Result<i32> {
    let bases = store.list_baseos()?;
    let emulation = emulation_summary(config, &bases);
    let instances = store.list_instances()?;
    let workspaces = store.list_workspaces()?;
    if json {
        let out = serde_json::json!({
            "store": store.root,
            "id_map": store.map,
            "baseos": bases.iter().map(|b| serde_json::json!({
                "name": b.name, "arch": b.arch, "dir": b.dir, "size": store::disk_usage(&b.dir).0, "meta": b.meta,
            })).collect::<Vec<_>>(),
            "instances": instances.iter().map(|i| serde_json::json!({
                "instance": i.to_string(), "dir": store.instance_dir(i),
                "layers": store.instance_layers(i).map(|l| l.len()).unwrap_or(0),
                "size": store::disk_usage(&store.instance_dir(i)).0,
                "in_use": store.instance_in_use(i),
            })).collect::<Vec<_>>(),
            "emulation": emulation.iter().map(|(a, how)| serde_json::json!({"arch": a, "how": how})).collect::<Vec<_>>(),
            "workspaces": workspaces.iter().map(|(dir, info, live)| serde_json::json!({
                "dir": dir, "info": info, "live": live, "size": store::disk_usage(dir).0,
            })).collect::<Vec<_>>(),
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&out).expect("serializable")
        );
        return Ok(0);
    }
    println!("store: {}", store.root.display());
    println!("id map: {}", store.map.describe());
    println!();
    if bases.is_empty() {
        println!("no base OS loaded (pookie-ns load-baseos ARCHIVE)");
    } else {
        println!(
            "{:<24} {:<8} {:>10} {:<11} {:<21} SOURCE",
            "BASE OS", "ARCH", "SIZE", "OWNERSHIP", "IMPORTED"
        );
        for b in &bases {
            println!(
                "{:<24} {:<8} {:>10} {:<11} {:<21} {}",
                b.name,
                b.arch.debian(),
                size_column(&b.dir),
                b.meta.ownership,
                b.meta.imported_at,
                b.meta.source.display()
            );
        }
    }
    for (arch, how) in &emulation {
        println!("emulation of {} ({}): {how}", arch, arch.uname());
    }
    if !instances.is_empty() {
        println!();
        println!("{:<40} {:>6} {:>10} IN USE", "INSTANCE", "LAYERS", "SIZE");
        for i in &instances {
            println!(
                "{:<40} {:>6} {:>10} {}",
                i.to_string(),
                store.instance_layers(i)?.len(),
                size_column(&store.instance_dir(i)),
                if store.instance_in_use(i) {
                    "yes"
                } else {
                    "no"
                }
            );
        }
    }
    if !workspaces.is_empty() {
        println!();
        println!("{:<28} {:<8} {:>10} COMMAND", "WORKSPACE", "STATE", "SIZE");
        for (dir, info, live) in &workspaces {
            let state = match (live, info.as_ref().is_some_and(|i| i.kept)) {
                (true, _) => "running",
                (false, true) => "kept",
                (false, false) => "stale",
            };
            println!(
                "{:<28} {:<8} {:>10} {}",
                dir.file_name().unwrap_or_default().to_string_lossy(),
                state,
                size_column(dir),
                info.as_ref()
                    .map(|i| i.command.join(" "))
                    .unwrap_or_default()
            );
        }
    }
    Ok(0)
}

fn size_column(dir: &Path) -> String {
    let (bytes, complete) = store::disk_usage(dir);
    format!(
        "{}{}",
        if complete { "" } else { ">" },
        store::human_size(bytes)
    )
}

// ---- cleanup -------------------------------------------------------------------------------

fn cleanup(store: &Store, what: &str) -> Result<i32> {
    let instances = store.list_instances()?;
    let remove_instance = |id: &InstanceId| -> Result<()> {
        // Holding the exclusive lock while removing keeps new runs out.
        if store.instance_in_use(id) {
            return Err(Error::usage(format!(
                "instance {id} is in use by a running pookie-ns; try again when it has finished"
            )));
        }
        let _lock = store.lock_instance(id, true)?;
        let dir = store.instance_dir(id);
        userns::remove_tree(&store.map, &dir)?;
        store::prune_empty_parents(&dir, &store.root.join("instances"));
        eprintln!("removed instance {id}");
        Ok(())
    };
    let remove_workspaces = || -> Result<()> {
        for (dir, _, live) in store.list_workspaces()? {
            if live {
                eprintln!("keeping {} (in use)", dir.display());
                continue;
            }
            userns::remove_tree(&store.map, &dir)?;
            eprintln!("removed workspace {}", dir.display());
        }
        Ok(())
    };
    let remove_baseos = || -> Result<()> {
        let busy: Vec<String> = instances
            .iter()
            .filter(|i| store.instance_in_use(i))
            .map(|i| i.to_string())
            .collect();
        if !busy.is_empty() {
            return Err(Error::usage(format!(
                "base OSes are in use by running instances ({}); try again when they have finished",
                busy.join(", ")
            )));
        }
        // Instances are changes on top of a base OS: without it they mean nothing.
        for i in &instances {
            remove_instance(i)?;
        }
        for b in store.list_baseos()? {
            userns::remove_tree(&b.meta.id_map, &b.dir)?;
            store::prune_empty_parents(&b.dir, &store.root.join("baseos"));
            eprintln!("removed base OS {} ({})", b.name, b.arch);
        }
        Ok(())
    };
    match what {
        "workspaces" => remove_workspaces()?,
        "baseos" => remove_baseos()?,
        "all" => {
            remove_workspaces()?;
            remove_baseos()?;
        }
        other => match InstanceId::parse(other).filter(|id| instances.contains(id)) {
            Some(id) => remove_instance(&id)?,
            None => {
                return Err(Error::usage(format!(
                    "unknown cleanup target {other:?}: use all, baseos, workspaces or one of the instances: {}",
                    if instances.is_empty() {
                        "(none)".to_string()
                    } else {
                        instances.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(", ")
                    }
                )))
            }
        },
    }
    Ok(0)
}

// ---- binfmt --------------------------------------------------------------------------------

fn binfmt_command(config: &Config, cmd: &BinfmtCommand) -> Result<i32> {
    let messages = match cmd {
        BinfmtCommand::Register { arch } => {
            binfmt::register_host(arch, config.qemu_dir.as_deref())?
        }
        BinfmtCommand::Unregister { arch } => binfmt::unregister_host(arch)?,
    };
    for m in messages {
        println!("{m}");
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

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
