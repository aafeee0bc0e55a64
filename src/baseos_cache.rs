//! The per-user cache (`~/.cache/pookie-ns`): toolchains' cache directories (zig's, pip's, see
//! [`toolchain_dir`]) and built base OS tarballs, so that a second store, a CI job or a
//! `cleanup all` followed by a build does not run mmdebstrap again (minutes under QEMU).
//!
//! An entry is keyed by the recipe (its whole text as parsed), the mirror, the arch and the
//! `Date:` of the suite's `InRelease` on that mirror: when the archive publishes a new release
//! file the key changes and the next build is fresh. When the date cannot be read (offline, the
//! mirror unreachable), the newest entry for recipe + mirror + arch is used as the best there is.
//!
//! Lives in `$XDG_CACHE_HOME/pookie-ns/baseos` (else `~/.cache/pookie-ns/baseos`); removed by
//! `pookie-ns cleanup all --cache`. Failures to read or fill it are warnings, never errors.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::arch::Arch;
use crate::error::{Error, Result};
use crate::recipe::Recipe;

/// This user's pookie-ns cache, `$XDG_CACHE_HOME/pookie-ns` (else `~/.cache/pookie-ns`), if a
/// home or `XDG_CACHE_HOME` is known.
pub fn user_cache() -> Option<PathBuf> {
    let var = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
    };
    var("XDG_CACHE_HOME")
        .or_else(|| var("HOME").map(|h| h.join(".cache")))
        .map(|c| c.join("pookie-ns"))
}

/// The cache directory of base OS tarballs for this user.
pub fn dir() -> Option<PathBuf> {
    user_cache().map(|c| c.join("baseos"))
}

/// Where this user keeps the directory `inside` (a toolchain's `caches` entry) of toolchain
/// `name` between stores: `<user cache>/toolchains/<name>/<inside, '/' as '_'>`, created.
/// None (with a debug line) when there is no user cache or it cannot be made: the directory is
/// then the step's own, as before.
pub fn toolchain_dir(name: &str, inside: &str) -> Option<PathBuf> {
    let flat = inside.trim_matches('/').replace('/', "_");
    let dir = user_cache()?.join("toolchains").join(name).join(flat);
    match crate::sys::mkdir_p(&dir, 0o755) {
        Ok(()) => Some(dir),
        Err(e) => {
            tracing::debug!("no per-user toolchain cache at {}: {e}", dir.display());
            None
        }
    }
}

/// What identifies one build of a recipe.
#[derive(Debug, Clone)]
pub struct Key {
    /// `<recipe>-<arch>-<hash of recipe + mirror>`: every release date shares it.
    pub prefix: String,
    /// The suite's release date, when the mirror could be asked.
    pub release_date: Option<String>,
}

impl Key {
    pub fn new(recipe: &Recipe, mirror: &str, arch: Arch, release_date: Option<String>) -> Key {
        let mut h = Sha256::new();
        h.update(format!(
            "v1\n{:?}\n{mirror}\n{}\n",
            recipe.spec,
            arch.debian()
        ));
        let short = &format!("{:x}", h.finalize())[..12];
        Key {
            prefix: format!("{}-{}-{short}", recipe.name, arch.debian()),
            release_date,
        }
    }

    /// The file name of the entry for this key's release date.
    pub fn file_name(&self, date: &str) -> String {
        let short = &format!("{:x}", Sha256::digest(date.as_bytes()))[..12];
        format!("{}-{short}.tar.zst", self.prefix)
    }
}

/// How long asking the mirror may take, all told: the date is only a cache key, and without it
/// the newest entry serves.
const RELEASE_DATE_TIMEOUT: Duration = Duration::from_secs(20);
/// `Date:` is near the top of `InRelease`: only this much of it is asked for (a range request).
const RELEASE_HEAD: u64 = 4096;

/// The `Date:` field of `<mirror>/dists/<suite>/InRelease` (only its first 4 KiB are fetched);
/// `None`, with a warning saying why, when the mirror cannot be asked.
pub fn release_date(mirror: &str, suite: &str) -> Option<String> {
    let url = format!("{}/dists/{suite}/InRelease", mirror.trim_end_matches('/'));
    match fetch_release_date(&crate::oci::registry::agent(), &url) {
        Ok(date) => Some(date),
        Err(why) => {
            tracing::warn!(
                "reading the release date from {url}: {why}; the newest cached build of the recipe \
                 is used, if there is one (check the recipe's mirror, the network and https_proxy)"
            );
            None
        }
    }
}

/// GET `url` with `Range: bytes=0-4095` and reads `Date:` from what comes back: a 206, or a
/// whole 200 from a server that ignores ranges (only its head is read).
fn fetch_release_date(agent: &ureq::Agent, url: &str) -> std::result::Result<String, String> {
    let range = format!("bytes=0-{}", RELEASE_HEAD - 1);
    tracing::debug!(url, range, "reading the release date");
    let mut response = agent
        .get(url)
        .header("Range", &range)
        .config()
        .timeout_global(Some(RELEASE_DATE_TIMEOUT))
        .build()
        .call()
        .map_err(|e| format!("the request failed ({e})"))?;
    let status = response.status();
    if !status.is_success() {
        return Err(format!("the mirror answered {status}"));
    }
    let mut head = Vec::new();
    response
        .body_mut()
        .as_reader()
        .take(RELEASE_HEAD)
        .read_to_end(&mut head)
        .map_err(|e| format!("reading the answer failed ({e})"))?;
    parse_release_date(&String::from_utf8_lossy(&head))
        .ok_or_else(|| format!("no Date: field in its first {RELEASE_HEAD} bytes"))
}

fn parse_release_date(text: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix("Date:"))
        .map(|d| d.trim().to_string())
        .filter(|d| !d.is_empty())
}

/// The cached tarball for `key`: the exact release's, or (date unknown) the newest of the prefix.
pub fn lookup(dir: &Path, key: &Key) -> Option<PathBuf> {
    if let Some(date) = &key.release_date {
        let p = dir.join(key.file_name(date));
        return p.is_file().then_some(p);
    }
    let rd = std::fs::read_dir(dir).ok()?;
    rd.flatten()
        .filter(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.starts_with(&format!("{}-", key.prefix)) && n.ends_with(".tar.zst")
        })
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .max()
        .map(|(_, p)| p)
}

/// Copies a freshly built tarball into the cache (whole or not at all) and drops the entries of
/// older releases of the same key. Returns the entry's path.
pub fn store(dir: &Path, key: &Key, tarball: &Path) -> Result<Option<PathBuf>> {
    let Some(date) = &key.release_date else {
        return Ok(None);
    };
    crate::sys::mkdir_p(dir, 0o755)?;
    let dest = dir.join(key.file_name(date));
    let partial = dir.join(format!(".partial-{}-{}", std::process::id(), key.prefix));
    std::fs::copy(tarball, &partial).map_err(|e| Error::io("copy the tarball to", &partial, e))?;
    std::fs::rename(&partial, &dest).map_err(|e| Error::io("rename into place", &dest, e))?;
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if n.starts_with(&format!("{}-", key.prefix)) && e.path() != dest {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    Ok(Some(dest))
}

/// Removes the whole per-user cache (base OS tarballs and toolchain caches); returns what it
/// removed, if anything.
pub fn remove_all() -> Result<Option<PathBuf>> {
    let Some(dir) = user_cache() else {
        return Ok(None);
    };
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => Ok(Some(dir)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("remove", &dir, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recipe(packages: &str) -> Recipe {
        let text = format!(
            "distribution = \"debian\"\nsuite = \"bookworm\"\npython = \"3.11\"\narches = [\"arm64\"]\npackages = [{packages}]\n"
        );
        Recipe::parse("r", Path::new("r.toml"), &text).unwrap()
    }

    #[test]
    fn release_date_is_read_from_inrelease() {
        let text = "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n\nOrigin: Debian\nSuite: stable\nDate: Sat, 15 Nov 2026 09:14:02 UTC\nValid-Until: never\n";
        assert_eq!(
            parse_release_date(text).as_deref(),
            Some("Sat, 15 Nov 2026 09:14:02 UTC")
        );
        assert_eq!(parse_release_date("Origin: Debian\n"), None);
    }

    /// Asks a mirror on 127.0.0.1 for the release date; it answers the one request with
    /// `answer(its Range header)`: (status, body).
    fn ask(answer: fn(Option<String>) -> (u16, String)) -> std::result::Result<String, String> {
        let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
        let url = format!(
            "http://{}/debian/dists/bookworm/InRelease",
            server.server_addr().to_ip().unwrap()
        );
        let mirror = std::thread::spawn(move || {
            let request = server.recv().unwrap();
            let range = request
                .headers()
                .iter()
                .find(|h| h.field.equiv("Range"))
                .map(|h| h.value.to_string());
            assert_eq!(request.url(), "/debian/dists/bookworm/InRelease");
            let (status, body) = answer(range);
            request
                .respond(tiny_http::Response::from_string(body).with_status_code(status))
                .unwrap();
        });
        // The environment's proxy (if any) is not for 127.0.0.1.
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .proxy(None)
            .build()
            .new_agent();
        let got = fetch_release_date(&agent, &url);
        mirror.join().unwrap();
        got
    }

    #[test]
    fn release_date_is_asked_for_with_a_range_request() {
        let got = ask(|range| {
            assert_eq!(range.as_deref(), Some("bytes=0-4095"));
            (
                206,
                "Origin: Debian\nDate: Sat, 15 Nov 2026 09:14:02 UTC\n".into(),
            )
        });
        assert_eq!(got.as_deref(), Ok("Sat, 15 Nov 2026 09:14:02 UTC"));
        // A server that ignores the range sends the file whole: its head is read, no more.
        let got = ask(|_| {
            (
                200,
                format!("Date: Sun, 16 Nov 2026\n{}", "x".repeat(10_000)),
            )
        });
        assert_eq!(got.as_deref(), Ok("Sun, 16 Nov 2026"));
        let got = ask(|_| (200, format!("{}\nDate: too far\n", "x".repeat(5_000))));
        assert!(
            got.as_ref().is_err_and(|e| e.contains("no Date:")),
            "{got:?}"
        );
    }

    #[test]
    fn a_mirror_without_the_file_says_so() {
        let got = ask(|_| (404, "not here".into()));
        assert!(got.as_ref().is_err_and(|e| e.contains("404")), "{got:?}");
        let got = ask(|_| (206, "Origin: Debian\n".into()));
        assert!(
            got.as_ref().is_err_and(|e| e.contains("no Date:")),
            "{got:?}"
        );
    }

    #[test]
    fn keys_change_with_recipe_mirror_arch_and_date() {
        let m = "http://deb.debian.org/debian";
        let a = Key::new(&recipe("\"python3\""), m, Arch::Arm64, Some("d1".into()));
        let b = Key::new(
            &recipe("\"python3-dev\""),
            m,
            Arch::Arm64,
            Some("d1".into()),
        );
        let c = Key::new(
            &recipe("\"python3\""),
            "http://other/debian",
            Arch::Arm64,
            None,
        );
        let d = Key::new(&recipe("\"python3\""), m, Arch::Armhf, None);
        assert_ne!(a.prefix, b.prefix);
        assert_ne!(a.prefix, c.prefix);
        assert_ne!(a.prefix, d.prefix);
        assert!(a.prefix.starts_with("r-arm64-"));
        assert_ne!(a.file_name("d1"), a.file_name("d2"));
    }

    #[test]
    fn store_then_lookup_with_and_without_the_date() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("built.tar.zst");
        std::fs::write(&src, b"tarball").unwrap();
        let cache = dir.path().join("cache");
        let r = recipe("\"python3\"");
        let old = Key::new(&r, "m", Arch::Arm64, Some("d1".into()));
        let new = Key::new(&r, "m", Arch::Arm64, Some("d2".into()));
        let first = store(&cache, &old, &src).unwrap().unwrap();
        assert_eq!(lookup(&cache, &old), Some(first.clone()));
        assert_eq!(lookup(&cache, &new), None, "a new release is a miss");
        let second = store(&cache, &new, &src).unwrap().unwrap();
        assert!(!first.exists(), "the older release's entry is dropped");
        let offline = Key::new(&r, "m", Arch::Arm64, None);
        assert_eq!(lookup(&cache, &offline), Some(second));
        assert_eq!(store(&cache, &offline, &src).unwrap(), None);
    }
}
