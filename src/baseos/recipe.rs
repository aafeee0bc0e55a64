//! Loading a base OS from a recipe: the store's tarball or the per-user cache's build if there
//! is one, else a build with mmdebstrap, then the import of its tarball.

use std::path::{Path, PathBuf};
use std::time::Instant;

use super::archive::import_archive;
use super::mirror::mirror_for;
use super::mmdebstrap::{fetch_failure, index_fetch_failed, run_mmdebstrap, Emulation};
use super::stage::{refuse_existing, Output, TmpGuard};
use crate::arch::Arch;
use crate::baseos_cache;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::recipe::{Recipe, RecipeInfo};
use crate::store::{self, BaseOsMeta, Store};
use crate::userns::IdMap;

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

/// Builds `recipe` for `arch` with mmdebstrap (rootless through its unshare mode; a foreign arch
/// emulated as `crate::binfmt`'s policy decides: a private binfmt_misc instance on Linux >= 6.7)
/// and imports it as base OS `name`; or imports `work_dir/baseos-<recipe>-<arch>.tar.*` or the
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
        if out.say {
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
            if out.say {
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

    let built = build(config, store, recipe, arch, &mirror, out)?;
    if let (Some(dir), Some(key), false) = (&cache_dir, &cache_key, built.fell_back) {
        match baseos_cache::store(dir, key, &built.tarball) {
            Ok(Some(entry)) => tracing::debug!(entry = %entry.display(), "cached the base OS"),
            Ok(None) => tracing::debug!("release date unknown: not cached"),
            Err(e) => tracing::warn!("could not cache the base OS in {}: {e}", dir.display()),
        }
    }
    let meta = import_archive(
        config,
        store,
        &built.tarball,
        name,
        Some(arch),
        Some(info),
        out,
    )?;
    if let Some(dest) = save_tarball {
        if std::fs::rename(&built.tarball, dest).is_err() {
            std::fs::copy(&built.tarball, dest)
                .map_err(|e| Error::io("save the tarball to", dest, e))?;
        }
        if out.say {
            eprintln!("saved the tarball as {}", dest.display());
        }
    }
    drop(built);
    Ok(meta)
}

/// A tarball mmdebstrap built, in a scratch dir of the store that goes with it.
struct Built {
    tarball: PathBuf,
    /// Built from the suite alone: the `-updates`/`-security` indexes could not be fetched.
    fell_back: bool,
    _tmp: TmpGuard,
    _lock: nix::fcntl::Flock<std::fs::File>,
}

/// How mmdebstrap runs a foreign `arch`: `crate::binfmt`'s one policy, as for `run` and `build`
/// (a private instance, the host's entry, or one root registers for the command). mmdebstrap
/// needs `arch-test` besides.
fn foreign_emulation(config: &Config, store: &Store, arch: Arch) -> Result<Emulation> {
    if !which("arch-test") {
        return Err(Error::usage(format!(
            "building a {arch} base OS needs arch-test: install it with `{}apt-get install \
             arch-test qemu-user-static`",
            if store.map == IdMap::Root {
                ""
            } else {
                "sudo "
            }
        )));
    }
    let private = crate::binfmt::emulation_for(config, arch)?;
    Ok(match private.into_iter().next() {
        Some((_, interpreter)) => Emulation::Private(interpreter),
        None => Emulation::Host,
    })
}

/// Builds `recipe` for `arch` from `mirror` with mmdebstrap, into a scratch dir of the store.
fn build(
    config: &Config,
    store: &Store,
    recipe: &Recipe,
    arch: Arch,
    mirror: &str,
    out: Output,
) -> Result<Built> {
    if !which("mmdebstrap") {
        return Err(Error::usage(
            "building a base OS needs mmdebstrap: install it with `sudo apt-get install mmdebstrap`",
        ));
    }
    // A host registration root makes for this build is taken back when the outermost scope
    // ends: this one, or the command's.
    let _scope = crate::binfmt::CommandScope::enter();
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
    let (tmp, lock) = store.create_tmp()?;
    let guard = TmpGuard {
        dir: tmp.clone(),
        map: store.map.clone(),
    };
    // mmdebstrap picks the output format from the file name.
    let tarball = tmp.join(format!("baseos-{}-{}.tar.zst", recipe.name, arch.debian()));
    let started = Instant::now();
    let fell_back = attempts(store, recipe, arch, mirror, &emulation, &tmp, &tarball, out)?;
    if out.say {
        eprintln!(
            "built {} for {arch} in {:.0} s ({})",
            recipe.name,
            started.elapsed().as_secs_f64(),
            store::human_size(std::fs::metadata(&tarball).map(|m| m.len()).unwrap_or(0))
        );
    }
    Ok(Built {
        tarball,
        fell_back,
        _tmp: guard,
        _lock: lock,
    })
}

/// Runs mmdebstrap until it builds `tarball`: once more after a failed fetch, and from the suite
/// alone when the `-updates`/`-security` indexes cannot be fetched. True in the second case.
#[allow(clippy::too_many_arguments)]
fn attempts(
    store: &Store,
    recipe: &Recipe,
    arch: Arch,
    mirror: &str,
    emulation: &Emulation,
    tmp: &Path,
    tarball: &Path,
    out: Output,
) -> Result<bool> {
    // Inside pookie-ns's own user namespace mmdebstrap is uid 0 and its unshare mode only adds
    // a mount and pid namespace; outside, a non-root user needs the unshare mode's own one.
    let rootless = !matches!(store.map, IdMap::Root) || matches!(emulation, Emulation::Private(_));
    let log = tmp.join("mmdebstrap.log");
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
    let deferred_bytecode = deferred_bytecode(store, recipe, arch);
    // A fetch that failed (a mirror mid-sync answering 404 for packages it still lists, the
    // network) is tried once more before the build gives up or falls back.
    let mut retried = false;
    let mut n = 0;
    while let Some(&updates) = attempts.get(n) {
        let mut args = recipe.mmdebstrap_args_with(arch, mirror, tarball, rootless, updates);
        // Options go before mmdebstrap's positional arguments (suite, target, mirrors).
        let options_end = args
            .iter()
            .position(|a| !a.starts_with("--"))
            .unwrap_or(args.len());
        args.splice(options_end..options_end, deferred_bytecode.iter().cloned());
        let code = run_mmdebstrap(recipe, arch, emulation, tmp, &store.map, &args, &log, out)?;
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
    Ok(fell_back)
}

/// mmdebstrap's hook options that defer a foreign arch's byte-compilation to a native
/// interpreter after the build (crate::bytecode), with the host-arch base OS of the same recipe
/// when the store has one. POOKIE_NS_EMULATED_BYTECODE=1 keeps it all under QEMU (for
/// bench/run's comparison).
fn deferred_bytecode(store: &Store, recipe: &Recipe, arch: Arch) -> Vec<String> {
    let emulated_bytecode =
        std::env::var_os("POOKIE_NS_EMULATED_BYTECODE").is_some_and(|v| v == "1");
    if arch.is_native() || emulated_bytecode {
        return Vec::new();
    }
    let native = native_twin(store, &recipe.name);
    tracing::debug!(native = ?native, "byte-compilation deferred to a native interpreter");
    crate::bytecode::hook_args(&recipe.spec.python, native.as_deref(), Arch::host())
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
