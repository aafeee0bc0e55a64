//! The subcommands: each takes the validated configuration and the open store and does one job.

use std::path::Path;

use crate::arch::Arch;
use crate::baseos;
use crate::binfmt;
use crate::branch;
use crate::cli::{
    BinfmtCommand, BuildArgs, Cli, Command, LoadBaseosArgs, RunArgs, UpdateBaseosArgs,
};
use crate::config::{Config, Env, Overrides};
use crate::error::{Error, Result};
use crate::pipeline::request::{self, BuildRequest, BundleSettings};
use crate::recipe;
use crate::sandbox::{self, Bind, Spec};
use crate::store::{self, BaseOs, InstanceId, Store};
use crate::sudo;
use crate::userns::{self, IdMap};

/// Runs the command the user asked for; returns the exit status.
pub fn dispatch(cli: &Cli) -> Result<i32> {
    if let Command::Binfmt(cmd) = &cli.command {
        return binfmt_command(&load_config(cli)?, cmd);
    }
    // The client talks to a server: no store, no sudo.
    if let Command::Submit(args) = &cli.command {
        #[cfg(feature = "serve")]
        return crate::submit::submit(args);
        #[cfg(not(feature = "serve"))]
        return Err(without_serve("submit", args));
    }
    // Completions and the man page are the command line's own description: no store, no sudo.
    if let Command::Completions { shell } = &cli.command {
        return completions(*shell);
    }
    if let Command::Man { out_dir } = &cli.command {
        return man(out_dir.as_deref());
    }
    // Reports are files: no store, no sudo.
    if let Command::Report(crate::cli::ReportCommand::Merge { reports, output }) = &cli.command {
        return crate::pipeline::report::merge_files(reports, output.as_deref());
    }
    let via_sudo = if cli.system || cli.work_dir.is_some() {
        None
    } else {
        sudo::invoker()
    };
    match &via_sudo {
        Some(user) => act_for_sudo_user(cli, user)?,
        None if cli.add_subuid => {
            return Err(Error::usage(
                "--add-subuid gives the user who runs `sudo pookie-ns` a subordinate id range: \
                 run it through sudo (without --system or --work-dir)",
            ))
        }
        None => {}
    }
    // After a switch to the sudo user: their environment decides the defaults now.
    let config = load_config(cli)?;
    // The command line of a build becomes one checked request before the store is opened.
    let build_request = match &cli.command {
        Command::Build(args) => Some(build_request(&config, cli, args)?),
        _ => None,
    };
    let map = IdMap::detect(config.id_map);
    // Everything below runs in user namespaces: a host policy that forbids them is said first.
    if let Some(advice) = crate::hostcheck::current_advice() {
        eprintln!("pookie-ns: warning: {advice}");
    }
    tracing::debug!(store = %config.work_dir.display(), id_map = %map.describe(), "opening store");
    // Opening the store also removes what killed pookie-ns processes left behind.
    let store = Store::open(&config.work_dir, map)?;
    // The commands that may emulate a foreign arch: a host-wide QEMU registration root makes for
    // one of them (no private binfmt_misc instance, no host entry) is taken back when the scope
    // ends, on success, error and panic alike. A build's workers hold none: their parent's
    // registration serves them, and only the parent takes it back.
    let _emulation = match &cli.command {
        Command::LoadBaseos(_) | Command::UpdateBaseos(_) | Command::Build(_) | Command::Run(_) => {
            Some(binfmt::CommandScope::enter())
        }
        _ => None,
    };
    match &cli.command {
        Command::LoadBaseos(args) => load_baseos(&config, &store, args, cli),
        Command::UpdateBaseos(args) => update_baseos(&config, &store, args, cli),
        Command::Build(_) => {
            crate::pipeline::build(&config, &store, build_request.as_ref().expect("made above"))
        }
        Command::BuildTarget { job } => crate::pipeline::worker::run(&config, &store, job),
        Command::Run(args) => run(&config, &store, args, cli.quiet),
        Command::List => list(&config, &store, cli.json),
        Command::Cleanup { what, cache } => cleanup(&store, what, *cache),
        #[cfg(feature = "serve")]
        Command::Serve(args) => crate::serve::serve(&config, &store, args),
        #[cfg(not(feature = "serve"))]
        Command::Serve(args) => Err(without_serve("serve", args)),
        Command::Binfmt(_)
        | Command::Report(_)
        | Command::Submit(_)
        | Command::Completions { .. }
        | Command::Man { .. } => {
            unreachable!("handled above")
        }
    }
}

/// `build`'s command line as one checked request: every flag parsed, the platform, branch and
/// `--jobs` checked, so that an input error is said before anything is fetched or loaded.
fn build_request(config: &Config, cli: &Cli, a: &BuildArgs) -> Result<BuildRequest> {
    request::check_platform(a.platform.as_deref()).map_err(Error::usage)?;
    crate::pipeline::check_branch(config, &a.branch)?;
    // An identifier this build cannot build fails now; printed, any of cibuildwheel's is listed.
    if let (Some(id), false) = (&a.only, a.print_build_identifiers) {
        crate::cibw::split_identifier(id).map_err(Error::usage)?;
    }
    let settings = BundleSettings {
        target: a.target.clone(),
        archs: a.archs.clone(),
        test: a.test.clone(),
        test_requires: a.test_requires.clone(),
        before_all: a.before_all.clone(),
    };
    settings
        .check(if a.archs.is_some() {
            "--archs"
        } else {
            "--target"
        })
        .map_err(Error::usage)?;
    Ok(BuildRequest {
        bundles: a.bundles.clone(),
        wheels_file: a.wheels_file.clone(),
        index_url: a.index_url.clone(),
        offline: a.offline,
        skip_existing_on: a.skip_existing_on.clone(),
        branch: a.branch.clone(),
        only: a.only.clone(),
        print_build_identifiers: a.print_build_identifiers,
        config_file: a.config_file.clone(),
        allow_empty: a.allow_empty,
        python: request::check_pythons(&a.python).map_err(Error::usage)?,
        build: a.build.clone(),
        mode: a.mode,
        compiler: a.compiler,
        python_source: a.python_source,
        out: a.out.clone(),
        jobs: request::check_jobs(a.jobs).map_err(Error::usage)?,
        keep_failed: a.keep_failed,
        insecure_registry: a.insecure_registry.clone(),
        settings,
        output: request::Output {
            progress: !cli.quiet && !cli.json,
            say: !cli.quiet,
            json: cli.json,
            verbose: cli.verbose,
        },
    })
}

/// `serve` and `submit` in a build without the `serve` feature.
#[cfg(not(feature = "serve"))]
fn without_serve(what: &str, _args: &impl std::fmt::Debug) -> Error {
    Error::usage(format!(
        "`{what}`: this pookie-ns was built without the `serve` feature; rebuild it with the \
         default features (cargo install pookie-ns)"
    ))
}

/// The configuration for the command line and the current process environment.
fn load_config(cli: &Cli) -> Result<Config> {
    Ok(Config::load(
        &Overrides {
            config_dir: cli.config_dir.clone(),
            work_dir: cli.work_dir.clone(),
        },
        &Env::current(),
    )?)
}

/// Through sudo: does what needs root in this call, says so, then becomes the invoking user.
fn act_for_sudo_user(cli: &Cli, user: &sudo::Invoker) -> Result<()> {
    let mut done = Vec::new();
    if cli.add_subuid {
        done.extend(sudo::add_subuid(user)?);
    }
    // Before Linux 6.7 mmdebstrap runs a foreign arch's maintainer scripts through the host's
    // binfmt_misc; later kernels serve it from a private instance (baseos::load_recipe).
    let needs_host_binfmt =
        !binfmt::kernel_has_private_instances() || !binfmt::allow_private(&load_config(cli)?);
    let foreign_build: Vec<Arch> = match &cli.command {
        _ if !needs_host_binfmt => Vec::new(),
        Command::LoadBaseos(a) if !is_archive_path(a.source.as_deref()) => a.arch.clone(),
        Command::UpdateBaseos(a) => a.arch.clone(),
        _ => Vec::new(),
    }
    .into_iter()
    .filter(|a| !a.is_native())
    // What the one emulation policy takes for a usable host entry: enabled, with `F`.
    .filter(|a| {
        !binfmt::find_registration(Path::new(binfmt::HOST_DIR), *a).is_some_and(|r| r.has_flag('F'))
    })
    .collect();
    if !foreign_build.is_empty() {
        let config = load_config(cli)?;
        done.extend(binfmt::register_host(
            &foreign_build,
            config.qemu_dir.as_deref(),
        )?);
        done.push("(host-wide and kept: mmdebstrap needs it to build those arches)".into());
    }
    sudo::become_user(user)?;
    if !cli.quiet {
        let what = if done.is_empty() {
            "nothing in this command needed root".to_string()
        } else {
            format!("done as root: {}", done.join("; "))
        };
        eprintln!(
            "pookie-ns: through sudo, working for {} on their store ({what}); use --system for root's own store",
            user.name
        );
    }
    Ok(())
}

/// True when load-baseos's argument names an archive or an image rather than a recipe.
fn is_archive_path(source: Option<&str>) -> bool {
    source.is_some_and(|s| {
        Path::new(s).exists()
            || s.contains('/')
            || s.contains(".tar")
            || crate::oci::reference::parse(s).is_some()
    })
}

// ---- load-baseos ---------------------------------------------------------------------------

/// An image or archive load: one `--arch` at most (`one_arch` says why) and no `--save-tarball`
/// (`what` is loaded instead of a recipe's build).
fn one_arch_no_tarball(args: &LoadBaseosArgs, one_arch: &str, what: &str) -> Result<()> {
    if args.arch.len() > 1 {
        return Err(Error::usage(format!("{one_arch}: give --arch once")));
    }
    if args.save_tarball.is_some() {
        return Err(Error::usage(format!(
            "--save-tarball is for recipe builds, not {what}"
        )));
    }
    Ok(())
}

fn load_baseos(config: &Config, store: &Store, args: &LoadBaseosArgs, cli: &Cli) -> Result<i32> {
    let out = baseos::Output {
        bars: !cli.quiet && !cli.json,
        say: !cli.quiet,
        json: cli.json,
        replace: false,
    };
    let source = args.source.as_deref().unwrap_or(recipe::DEFAULT_RECIPE);
    // An image reference wins over a file of the same name only when it has a transport prefix.
    if let Some(image) =
        crate::oci::reference::parse(source).filter(|_| !Path::new(source).exists())
    {
        let image = image?;
        one_arch_no_tarball(
            args,
            "an image is loaded for one architecture at a time",
            "images",
        )?;
        let name = args
            .name
            .clone()
            .unwrap_or_else(|| baseos::name_from_image(&image));
        let registry = crate::oci::registry::Options {
            insecure: args.insecure_registry.clone(),
        };
        baseos::import_image(
            config,
            store,
            &image,
            &name,
            args.arch.first().copied(),
            &registry,
            out,
        )?;
        return Ok(0);
    }
    if is_archive_path(Some(source)) {
        one_arch_no_tarball(args, "an archive has one architecture", "archives")?;
        let name = args
            .name
            .clone()
            .unwrap_or_else(|| baseos::name_from_archive(Path::new(source)));
        baseos::import_archive(
            config,
            store,
            Path::new(source),
            &name,
            args.arch.first().copied(),
            None,
            out,
        )?;
        return Ok(0);
    }
    let recipe = recipe::find(&config.config_dir, source)
        .map_err(|e| Error::usage(format!("{e}; or give the path of an archive to import")))?;
    let arches = if args.arch.is_empty() {
        vec![Arch::host()]
    } else {
        args.arch.clone()
    };
    if args.save_tarball.is_some() && arches.len() > 1 {
        return Err(Error::usage(
            "--save-tarball keeps one tarball: give one --arch",
        ));
    }
    let name = args.name.clone().unwrap_or_else(|| recipe.name.clone());
    for arch in arches {
        baseos::load_recipe(
            config,
            store,
            &recipe,
            arch,
            &name,
            args.save_tarball.as_deref(),
            out,
        )?;
    }
    Ok(0)
}

fn update_baseos(
    config: &Config,
    store: &Store,
    args: &UpdateBaseosArgs,
    cli: &Cli,
) -> Result<i32> {
    let out = baseos::Output {
        bars: !cli.quiet && !cli.json,
        say: !cli.quiet,
        json: cli.json,
        replace: true,
    };
    let chosen: Vec<BaseOs> = store
        .list_baseos()?
        .into_iter()
        .filter(|b| {
            let from_recipe = b
                .meta
                .recipe
                .as_ref()
                .is_some_and(|r| args.recipe.as_ref().is_none_or(|want| &r.recipe == want));
            // Images have no recipe: they are chosen by name (or when no recipe is named).
            let from_image = b.meta.image.is_some() && args.recipe.is_none();
            (from_recipe || from_image)
                && args.name.as_ref().is_none_or(|n| &b.name == n)
                && (args.arch.is_empty() || args.arch.contains(&b.arch))
        })
        .collect();
    if chosen.is_empty() {
        return Err(Error::usage(
            "no base OS built from a recipe or loaded from an image matches; load one with \
             `pookie-ns load-baseos [RECIPE|IMAGE]` (archives imported from a file are updated by \
             importing a new file)",
        ));
    }
    let registry = crate::oci::registry::Options {
        insecure: args.insecure_registry.clone(),
    };
    let instances = store.list_instances()?;
    for base in chosen {
        let on_base: Vec<&InstanceId> = instances
            .iter()
            .filter(|i| i.name == base.name && i.arch == base.arch)
            .collect();
        if let Some(busy) = on_base.iter().find(|i| store.instance_in_use(i)) {
            return Err(Error::busy(format!(
                "instance {busy} is in use by a running pookie-ns; update {} when it has finished",
                base.name
            )));
        }
        let new = match (&base.meta.recipe, &base.meta.image) {
            (Some(info), _) => {
                let recipe = recipe::find(&config.config_dir, &info.recipe)?;
                baseos::load_recipe(config, store, &recipe, base.arch, &base.name, None, out)?
            }
            (None, Some(image)) => {
                match update_image(config, store, &base, image, &registry, out)? {
                    Some(new) => new,
                    None => continue,
                }
            }
            (None, None) => unreachable!("filtered on recipe or image"),
        };
        // Instances on the old base start afresh on the new one (their refresh sees the new
        // digest), and are refreshed now rather than at their next use.
        for id in on_base {
            let new_base = BaseOs {
                meta: new.clone(),
                ..base.clone()
            };
            branch::ensure_fresh(config, store, &new_base, id, true, cli.quiet)?;
        }
    }
    Ok(0)
}

/// Re-resolves an image base OS's reference and loads it again only when the manifest digest
/// changed (a reference pinned by digest never changes). None when it is up to date.
fn update_image(
    config: &Config,
    store: &Store,
    base: &BaseOs,
    image: &crate::oci::ImageMeta,
    registry: &crate::oci::registry::Options,
    out: baseos::Output,
) -> Result<Option<store::BaseOsMeta>> {
    use crate::oci::ImageSource;
    let source = crate::oci::reference::parse(&image.reference).ok_or_else(|| {
        Error::usage(format!(
            "base OS {} records the image reference {:?}, which pookie-ns cannot read",
            base.name, image.reference
        ))
    })??;
    let current = match &source {
        ImageSource::Registry(r) => {
            crate::oci::registry::current_digest(r, Some(base.arch), registry)?
        }
        // Local images are read whole: the import below compares nothing, so resolve here.
        other => {
            let (scratch, _lock) = store.create_tmp()?;
            let _guard = crate::oci::Scratch::new(scratch.clone());
            crate::oci::resolve(
                other,
                Some(base.arch),
                &store.root.join("blobs"),
                &scratch,
                registry,
            )?
            .meta
            .manifest_digest
        }
    };
    if current == image.manifest_digest {
        if out.say {
            eprintln!(
                "base OS {} ({}) is up to date: {} is still {current}",
                base.name, base.arch, image.reference
            );
        }
        return Ok(None);
    }
    if out.say {
        eprintln!(
            "{} moved from {} to {current}: loading it",
            image.reference, image.manifest_digest
        );
    }
    baseos::import_image(
        config,
        store,
        &source,
        &base.name,
        Some(base.arch),
        registry,
        out,
    )
    .map(Some)
}

// ---- run -----------------------------------------------------------------------------------

/// The environment of `run`'s command: pookie-ns's own, the image's Env over it (PATH=/opt/rh/
/// devtoolset/... in manylinux images), each `--env KEY=VALUE` last.
fn run_env(args: &RunArgs, base: &BaseOs) -> Result<Vec<(String, String)>> {
    let mut env = sandbox::base_env(args.network);
    if let Some(image) = &base.meta.image {
        image.apply_env(&mut env);
    }
    for kv in &args.env {
        let (k, v) = kv
            .split_once('=')
            .filter(|(k, _)| !k.is_empty())
            .ok_or_else(|| Error::usage(format!("--env {kv:?}: expected KEY=VALUE")))?;
        env.retain(|(key, _)| key != k);
        env.push((k.to_string(), v.to_string()));
    }
    Ok(env)
}

fn run(config: &Config, store: &Store, args: &RunArgs, quiet: bool) -> Result<i32> {
    // Everything the user typed is checked before the store is touched.
    store::check_name(&args.branch)?;
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
    let base = store.find_baseos(args.baseos.as_deref(), args.arch)?;
    let env = run_env(args, &base)?;
    let cwd = args
        .cwd
        .clone()
        .or_else(|| args.bundle.as_ref().map(|_| "/buildroot/src".into()))
        .or_else(|| {
            // The image's WorkingDir, when the base OS has it (Docker would create it).
            base.meta
                .image
                .as_ref()
                .and_then(|i| i.working_dir.clone())
                .map(std::path::PathBuf::from)
                .filter(|wd| {
                    let flags = libc::O_PATH | libc::O_DIRECTORY;
                    crate::sys::open_in_root(&base.rootfs(), wd, flags).is_ok()
                })
        });

    store.check_id_map(&base)?;
    let binfmt = binfmt::emulation_for(config, base.arch)?;
    let instance = InstanceId {
        branch: args.branch.clone(),
        name: base.name.clone(),
        arch: base.arch,
    };
    store.ensure_instance(&instance)?;
    // The branch's packages first (at most once per refresh_interval), under its own lock.
    branch::ensure_fresh(config, store, &base, &instance, false, quiet)?;
    // Runs share the instance; a commit has it alone.
    let _lock = store.lock_instance(&instance, args.commit)?;
    let commit_to = if args.commit {
        Some(store.next_layer_path(&instance)?)
    } else {
        None
    };

    let ws = store.create_workspace(&instance, &args.command)?;
    let spec = Spec {
        binds,
        network: args.network,
        cwd,
        env,
        binfmt,
        commit_to: commit_to.clone(),
        // The image's User, as `docker run` would.
        user: base.meta.image.as_ref().and_then(|i| i.user.clone()),
        ..Spec::new(
            store,
            store.layers(&base, &instance, &ws)?,
            &ws,
            args.command.clone(),
        )
    };
    tracing::debug!(instance = %instance, workspace = %ws.dir.display(), command = ?args.command, "running");
    let result = sandbox::run(&store.map, &spec);
    let removed = ws.remove();
    let code = result?;
    removed?;
    match (&commit_to, code) {
        (Some(layer), 0) if !quiet => eprintln!(
            "pookie-ns: committed the changes into instance {instance} ({})",
            layer.display()
        ),
        (Some(_), _) if code != 0 => eprintln!(
            "pookie-ns: the command failed (status {code}); nothing was committed to {instance}"
        ),
        _ => {}
    }
    Ok(code)
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
                binfmt::allow_private(config),
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
                Ok(binfmt::Strategy::ForCommand { interpreter }) => format!(
                    "host registration made for the time of each command, as root ({})",
                    interpreter.display()
                ),
                Err(e) => format!("unavailable: {e}"),
            };
            (arch, how)
        })
        .collect()
}

/// `list`: the store's base OSes, the emulation of their arches, instances and workspaces, as
/// tables or (--json) one JSON document.
fn list(config: &Config, store: &Store, json: bool) -> Result<i32> {
    let bases = store.list_baseos()?;
    let emulation = emulation_summary(config, &bases);
    let instances = store.list_instances()?;
    let workspaces = store.list_workspaces()?;
    if json {
        print_list_json(store, &bases, &emulation, &instances, &workspaces);
        return Ok(0);
    }
    println!(
        "store: {}{}",
        store.root.display(),
        match std::env::var("SUDO_USER") {
            Ok(u) if !nix::unistd::geteuid().is_root() => format!(" (user {u}'s, through sudo)"),
            _ if nix::unistd::geteuid().is_root() => " (root's own)".to_string(),
            _ => String::new(),
        }
    );
    println!("id map: {}", store.map.describe());
    println!();
    print_bases(&bases);
    for (arch, how) in &emulation {
        println!("emulation of {} ({}): {how}", arch, arch.uname());
    }
    if !instances.is_empty() {
        println!();
        println!(
            "{:<40} {:>6} {:>10} {:<7} REFRESHED",
            "INSTANCE", "LAYERS", "SIZE", "IN USE"
        );
        for i in &instances {
            println!(
                "{:<40} {:>6} {:>10} {:<7} {}",
                i.to_string(),
                store.instance_layers(i)?.len(),
                size_column(&store.instance_dir(i)),
                if store.instance_in_use(i) {
                    "yes"
                } else {
                    "no"
                },
                branch::read_state(store, i)
                    .map(|s| format!("{} ago", age(s.last_refresh_unix)))
                    .unwrap_or_else(|| "never".into())
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

/// `list --json`.
fn print_list_json(
    store: &Store,
    bases: &[BaseOs],
    emulation: &[(Arch, String)],
    instances: &[InstanceId],
    workspaces: &[(std::path::PathBuf, Option<store::WorkspaceInfo>, bool)],
) {
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
            "last_refresh_unix": branch::read_state(store, i).map(|s| s.last_refresh_unix),
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
}

/// `list`'s table of base OSes.
fn print_bases(bases: &[BaseOs]) {
    if bases.is_empty() {
        println!("no base OS loaded (pookie-ns load-baseos ARCHIVE)");
    } else {
        println!(
            "{:<20} {:<8} {:<10} {:<7} {:>10} {:<11} {:>8} SOURCE",
            "BASE OS", "ARCH", "SUITE", "PYTHON", "SIZE", "OWNERSHIP", "AGE"
        );
        for b in bases {
            let pythons = b
                .meta
                .pythons
                .iter()
                .map(|p| format!("{}{}", p.version, if p.free_threaded { "t" } else { "" }))
                .collect::<Vec<_>>()
                .join(",");
            let (suite, python) = b
                .meta
                .recipe
                .as_ref()
                .map(|r| (r.suite.as_str(), r.python.join(",")))
                .unwrap_or((
                    "-",
                    if pythons.is_empty() {
                        "-".to_string()
                    } else {
                        pythons
                    },
                ));
            println!(
                "{:<20} {:<8} {:<10} {:<7} {:>10} {:<11} {:>8} {}",
                b.name,
                b.arch.debian(),
                suite,
                python,
                size_column(&b.dir),
                b.meta.ownership,
                age(b.meta.imported_at_unix),
                match (&b.meta.recipe, &b.meta.image) {
                    (Some(r), _) => format!("recipe {} ({})", r.recipe, r.mirror),
                    (None, Some(i)) => format!("{} ({})", i.reference, i.manifest_digest),
                    (None, None) => b.meta.source.display().to_string(),
                }
            );
        }
    }
}

/// How long ago a unix time was, roughly: "42s", "5m", "3h", "2d".
fn age(unix: u64) -> String {
    let secs = store::unix_now().saturating_sub(unix);
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
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

fn cleanup(store: &Store, what: &str, cache: bool) -> Result<i32> {
    if cache && what != "all" {
        return Err(Error::usage(
            "--cache goes with `cleanup all` (the per-user cache serves every store)",
        ));
    }
    let instances = store.list_instances()?;
    let remove_instance = |id: &InstanceId| -> Result<()> {
        // Holding the exclusive lock while removing keeps new runs out.
        if store.instance_in_use(id) {
            return Err(Error::busy(format!(
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
            return Err(Error::busy(format!(
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
            // Build logs and wheelhouses: files the sandbox wrote, so removed through the map.
            let output = store.root.join("output");
            if output.exists() {
                userns::remove_tree(&store.map, &output)?;
                eprintln!("removed build output {}", output.display());
            }
            // Blobs pulled from registries (written by pookie-ns itself, outside the namespace).
            let blobs = store.root.join("blobs");
            if blobs.exists() {
                std::fs::remove_dir_all(&blobs).map_err(|e| Error::io("remove", &blobs, e))?;
                eprintln!("removed the blob cache {}", blobs.display());
            }
            if cache {
                match crate::baseos_cache::remove_all()? {
                    Some(dir) => eprintln!("removed the base OS cache {}", dir.display()),
                    None => eprintln!("the base OS cache is empty"),
                }
            }
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

// ---- completions and man ------------------------------------------------------------------

/// The binary's name in completions and man pages (what users type, whatever the file is called).
const BIN_NAME: &str = "pookie-ns";

/// `pookie-ns completions SHELL`: the shell's completion script, from the command line's own
/// definition (clap_complete), on stdout.
fn completions(shell: clap_complete::Shell) -> Result<i32> {
    let mut cmd = visible_command();
    let mut script = Vec::new();
    if shell != clap_complete::Shell::Bash {
        clap_complete::generate(shell, &mut cmd, BIN_NAME, &mut script);
        write_stdout(&script)?;
        return Ok(0);
    }
    // clap_complete's bash script completes nothing after a subcommand when the binary's name
    // has a hyphen (clap-rs/clap#6421: its loop and its case arms spell the state
    // differently). Generated for `pookie_ns`, every internal name agrees; only the
    // `complete` lines then register it for the command users type.
    let internal = BIN_NAME.replace('-', "_");
    clap_complete::generate(shell, &mut cmd, internal.as_str(), &mut script);
    let text = String::from_utf8_lossy(&script);
    let suffix = format!(" {internal}");
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        match line.strip_suffix(suffix.as_str()) {
            Some(head) if line.trim_start().starts_with("complete ") => {
                out.push_str(head);
                out.push(' ');
                out.push_str(BIN_NAME);
            }
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    write_stdout(out.as_bytes())?;
    Ok(0)
}

/// The command line for completions: the hidden subcommands (`__build-target`, which `build`
/// starts itself) left out, as clap_complete's generators would offer them.
fn visible_command() -> clap::Command {
    let full = <Cli as clap::CommandFactory>::command();
    let mut cmd = clap::Command::new(BIN_NAME)
        .version(env!("CARGO_PKG_VERSION"))
        .about(full.get_about().cloned().unwrap_or_default())
        .subcommand_required(true);
    for arg in full.get_arguments() {
        cmd = cmd.arg(arg.clone());
    }
    for sub in full.get_subcommands().filter(|s| !s.is_hide_set()) {
        cmd = cmd.subcommand(sub.clone());
    }
    cmd
}

/// `pookie-ns man`: pookie-ns.1 on stdout, or with `--out-dir` one page per subcommand
/// (pookie-ns.1, pookie-ns-build.1 ...), from the command line's definition (clap_mangen).
fn man(out_dir: Option<&Path>) -> Result<i32> {
    let cmd = <Cli as clap::CommandFactory>::command().name(BIN_NAME);
    match out_dir {
        None => {
            let mut page = Vec::new();
            clap_mangen::Man::new(cmd)
                .render(&mut page)
                .map_err(|e| Error::io("render the man page", Path::new("-"), e))?;
            write_stdout(&page)?;
        }
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .map_err(|e| Error::io("create the man page directory", dir, e))?;
            clap_mangen::generate_to(cmd, dir)
                .map_err(|e| Error::io("write the man pages into", dir, e))?;
            eprintln!(
                "pookie-ns: man pages written to {} (read one with `man -l {}`)",
                dir.display(),
                dir.join("pookie-ns.1").display()
            );
        }
    }
    Ok(0)
}

/// Writes generated text to stdout, all of it (a closed pipe ends the process by SIGPIPE, as
/// `main` leaves it).
fn write_stdout(bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .map_err(|e| Error::io("write to", Path::new("stdout"), e))
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
