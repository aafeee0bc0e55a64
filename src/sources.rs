//! Bundles that are not directories: a requirement (`msgpack==1.1.0`) resolved against a package
//! index to one sdist, downloaded, checked against the index's sha256 and cached by hash in the
//! store; and an sdist (`.tar.gz`), local or downloaded, unpacked through the hostile-input-safe
//! importer into a private directory of the store's `tmp/` that lives as long as the build.
//!
//! Store layout:
//! ```text
//! sources/sha256/<hex>      one sdist, named by the sha256 of its bytes (temp file + rename)
//! sources/index.json        what the cache holds: name, version, file name, URL, sha256
//! ```
//! A pinned requirement (`name==1.2.3`) found in `sources/index.json` is served from the cache
//! without asking the index (its file's hash is checked again); `--offline` serves any
//! requirement from the cache (the newest cached version that matches) and never asks.
//!
//! The index is spoken to through the JSON simple API of PEP 691 (`Accept:
//! application/vnd.pypi.simple.v1+json`); a static index whose pages hold that JSON serves too.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};

use nix::fcntl::Flock;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::import::{self, ImportOptions};
use crate::pep440::Specifier;
use crate::store::Store;

/// PyPI's simple API.
pub const DEFAULT_INDEX: &str = "https://pypi.org/simple";

/// The largest sdist downloaded, and the most an sdist may unpack to.
const MAX_SDIST_BYTES: u64 = 512 << 20;
const MAX_UNPACKED_BYTES: u64 = 2 << 30;

/// A PEP 508 requirement as far as a bundle needs it: a name and a version specifier (no extras,
/// no markers, no URL).
#[derive(Debug, Clone)]
pub struct Requirement {
    /// As written.
    pub text: String,
    /// Normalised (PEP 503): lower case, runs of `-_.` as one `-`.
    pub name: String,
    pub specifier: Specifier,
    /// The version of an exact pin (`==1.2.3`, no wildcard), which the cache can serve alone.
    pub pinned: Option<String>,
}

/// PEP 503's normalised name.
pub fn normalise(name: &str) -> String {
    let mut out = String::new();
    let mut dash = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            dash = true;
        } else {
            if dash && !out.is_empty() {
                out.push('-');
            }
            dash = false;
            out.push(c.to_ascii_lowercase());
        }
    }
    out
}

impl Requirement {
    /// `name`, `name==1.0`, `name>=1,<2`; `Err` says what is wrong.
    pub fn parse(text: &str) -> std::result::Result<Requirement, String> {
        let t = text.trim();
        let end = t
            .find(|c: char| !(c.is_ascii_alphanumeric() || "-_.".contains(c)))
            .unwrap_or(t.len());
        let (name, rest) = t.split_at(end);
        let rest = rest.trim();
        if name.is_empty()
            || !name.starts_with(|c: char| c.is_ascii_alphanumeric())
            || !name.ends_with(|c: char| c.is_ascii_alphanumeric())
        {
            return Err(format!(
                "requirement {text:?}: a package name (letters, digits, -_.) must come first"
            ));
        }
        if rest.starts_with('[') || rest.contains(';') || rest.starts_with('@') {
            return Err(format!(
                "requirement {text:?}: extras, markers and URLs are not bundles; write NAME or \
                 NAME==VERSION"
            ));
        }
        let specifier = Specifier::parse(rest).map_err(|e| {
            format!(
                "requirement {text:?}: {}",
                e.replace("requires-python ", "")
            )
        })?;
        let pinned = rest
            .strip_prefix("==")
            .map(str::trim)
            .filter(|v| !v.contains(['*', ',']) && !v.is_empty())
            .map(str::to_string);
        Ok(Requirement {
            text: t.to_string(),
            name: normalise(name),
            specifier,
            pinned,
        })
    }

    /// Whether a release of the package is one this requirement takes: the specifier admits it,
    /// and it is a final release unless the pin names it.
    pub fn admits(&self, version: &str) -> bool {
        if self.pinned.as_deref() == Some(version) {
            return true;
        }
        let final_release =
            version.chars().all(|c| c.is_ascii_digit() || c == '.') || version.contains(".post");
        final_release && self.specifier.admits_version(version)
    }
}

/// Where an sdist of a build came from (report.json's `sources`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SourceRecord {
    /// The bundle as written: `msgpack==1.1.0`, `dist/foo-1.0.tar.gz`.
    pub bundle: String,
    pub name: String,
    pub version: String,
    /// The file's URL on the index, or its path.
    pub url: String,
    pub sha256: String,
    /// Served from `sources/` without asking the index.
    pub from_cache: bool,
}

/// One entry of `sources/index.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Cached {
    name: String,
    version: String,
    filename: String,
    url: String,
    sha256: String,
}

/// The JSON simple API's project page (PEP 691), the fields used.
#[derive(Debug, Deserialize)]
struct ProjectPage {
    files: Vec<IndexFile>,
}

#[derive(Debug, Deserialize)]
struct IndexFile {
    filename: String,
    url: String,
    #[serde(default)]
    hashes: BTreeMap<String, String>,
    /// `true`, or the reason as a string.
    #[serde(default)]
    yanked: serde_json::Value,
}

/// `name-1.2.3.tar.gz` → (`name`, `1.2.3`).
fn sdist_name_version(filename: &str) -> Option<(String, String)> {
    let stem = filename.strip_suffix(".tar.gz")?;
    let (name, version) = stem.rsplit_once('-')?;
    (!name.is_empty() && !version.is_empty()).then(|| (normalise(name), version.to_string()))
}

fn version_key(v: &str) -> Vec<u64> {
    v.split(|c: char| !c.is_ascii_digit())
        .filter(|p| !p.is_empty())
        .map(|p| p.parse().unwrap_or(0))
        .collect()
}

/// The sources part of the store.
pub struct Sources<'a> {
    store: &'a Store,
    index_url: String,
    offline: bool,
}

/// The sdists of a build, unpacked: a private directory of the store's `tmp/`, removed when this
/// is dropped (and by the next start if the process was killed).
pub struct Unpacked {
    pub dir: PathBuf,
    _lock: Flock<File>,
}

impl Drop for Unpacked {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl<'a> Sources<'a> {
    pub fn new(store: &'a Store, index_url: Option<&str>, offline: bool) -> Sources<'a> {
        Sources {
            store,
            index_url: index_url
                .unwrap_or(DEFAULT_INDEX)
                .trim_end_matches('/')
                .to_string(),
            offline,
        }
    }

    fn dir(&self) -> PathBuf {
        self.store.root.join("sources")
    }

    fn cache_file(&self, sha256: &str) -> PathBuf {
        self.dir().join("sha256").join(sha256)
    }

    fn read_index(&self) -> Result<Vec<Cached>> {
        let path = self.dir().join("index.json");
        match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| {
                Error::internal(format!(
                    "{} is damaged ({e}); remove it (the cache is rebuilt on demand)",
                    path.display()
                ))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(Error::io("read", path, e)),
        }
    }

    /// The cached sdist a requirement takes without the index: an exact pin's (or, offline,
    /// the newest that matches), its file present with the right hash.
    fn cached(&self, req: &Requirement) -> Result<Option<(Cached, PathBuf)>> {
        let mut found: Vec<Cached> = self
            .read_index()?
            .into_iter()
            .filter(|c| c.name == req.name && req.admits(&c.version))
            .collect();
        if !self.offline && req.pinned.is_none() {
            return Ok(None);
        }
        found.sort_by_key(|c| version_key(&c.version));
        while let Some(c) = found.pop() {
            let path = self.cache_file(&c.sha256);
            if path.is_file() && sha256_file(&path)? == c.sha256 {
                return Ok(Some((c, path)));
            }
            tracing::warn!(path = %path.display(), "cached sdist missing or damaged: ignored");
        }
        Ok(None)
    }

    /// Resolves a requirement to one cached, hash-checked sdist file.
    pub fn resolve(&self, req: &Requirement) -> Result<(PathBuf, SourceRecord)> {
        if let Some((c, path)) = self.cached(req)? {
            tracing::info!(requirement = %req.text, version = %c.version, "sdist from the cache");
            return Ok((
                path,
                SourceRecord {
                    bundle: req.text.clone(),
                    name: c.name,
                    version: c.version,
                    url: c.url,
                    sha256: c.sha256,
                    from_cache: true,
                },
            ));
        }
        if self.offline {
            return Err(Error::usage(format!(
                "{}: no cached sdist matches and --offline forbids asking the index; build once \
                 without --offline",
                req.text
            )));
        }
        let agent = crate::oci::registry::agent();
        let page_url = format!("{}/{}/", self.index_url, req.name);
        let page = self.project_page(&agent, &page_url, req)?;
        let mut candidates: Vec<(String, &IndexFile)> = page
            .files
            .iter()
            .filter(|f| {
                matches!(
                    f.yanked,
                    serde_json::Value::Null | serde_json::Value::Bool(false)
                )
            })
            .filter_map(|f| {
                let (name, version) = sdist_name_version(&f.filename)?;
                (name == req.name && req.admits(&version)).then_some((version, f))
            })
            .collect();
        candidates.sort_by_key(|(v, _)| version_key(v));
        let Some((version, file)) = candidates.pop() else {
            return Err(Error::usage(format!(
                "{}: no sdist (.tar.gz, not yanked) on {page_url} matches; check the name and \
                 the version specifier",
                req.text
            )));
        };
        let expected = file
            .hashes
            .get("sha256")
            .map(|h| h.to_ascii_lowercase())
            .ok_or_else(|| {
                Error::usage(format!(
                    "{}: the index gives no sha256 for {}; pookie-ns builds only verified sources",
                    req.text, file.filename
                ))
            })?;
        let url = join_url(&page_url, &file.url);
        let path = self.download(&agent, &url, &expected, req)?;
        let c = Cached {
            name: req.name.clone(),
            version: version.clone(),
            filename: file.filename.clone(),
            url: url.clone(),
            sha256: expected.clone(),
        };
        self.remember(c)?;
        Ok((
            path,
            SourceRecord {
                bundle: req.text.clone(),
                name: req.name.clone(),
                version,
                url,
                sha256: expected,
                from_cache: false,
            },
        ))
    }

    fn project_page(
        &self,
        agent: &ureq::Agent,
        url: &str,
        req: &Requirement,
    ) -> Result<ProjectPage> {
        let unreachable = |e: String| {
            Error::usage(format!(
                "{}: cannot read the package index at {url}: {e}; check --index-url and the \
                 network (or build from the cache with --offline)",
                req.text
            ))
        };
        let mut resp = agent
            .get(url)
            .header(
                "Accept",
                "application/vnd.pypi.simple.v1+json, application/json;q=0.9",
            )
            .call()
            .map_err(|e| unreachable(e.to_string()))?;
        let status = resp.status().as_u16();
        if status == 404 {
            return Err(Error::usage(format!(
                "{}: the index has no project {:?} ({url}: 404)",
                req.text, req.name
            )));
        }
        if status != 200 {
            return Err(unreachable(format!("HTTP {status}")));
        }
        let body = resp
            .body_mut()
            .with_config()
            .limit(64 << 20)
            .read_to_vec()
            .map_err(|e| unreachable(e.to_string()))?;
        serde_json::from_slice(&body).map_err(|e| {
            Error::usage(format!(
                "{}: {url} is not a PEP 691 JSON project page ({e}); give an index that serves \
                 the JSON simple API with --index-url",
                req.text
            ))
        })
    }

    /// Downloads `url` into the cache as `sources/sha256/<expected>`: a temp file in the store's
    /// `tmp/`, hashed on the way, renamed into place only when the hash is the index's.
    fn download(
        &self,
        agent: &ureq::Agent,
        url: &str,
        expected: &str,
        req: &Requirement,
    ) -> Result<PathBuf> {
        let (tmp, _lock) = self.store.create_tmp()?;
        let result = (|| {
            let fail =
                |e: String| Error::usage(format!("{}: downloading {url} failed: {e}", req.text));
            let mut resp = agent.get(url).call().map_err(|e| fail(e.to_string()))?;
            if resp.status().as_u16() != 200 {
                return Err(fail(format!("HTTP {}", resp.status())));
            }
            let part = tmp.join("sdist");
            let mut out = File::create(&part).map_err(|e| Error::io("create", &part, e))?;
            let mut reader = resp.body_mut().as_reader().take(MAX_SDIST_BYTES + 1);
            let mut hasher = Sha256::new();
            let mut buf = vec![0u8; 1 << 16];
            let mut total = 0u64;
            loop {
                let n = reader.read(&mut buf).map_err(|e| fail(e.to_string()))?;
                if n == 0 {
                    break;
                }
                total += n as u64;
                if total > MAX_SDIST_BYTES {
                    return Err(fail(format!("larger than {MAX_SDIST_BYTES} bytes")));
                }
                hasher.update(&buf[..n]);
                out.write_all(&buf[..n])
                    .map_err(|e| Error::io("write", &part, e))?;
            }
            out.sync_all().map_err(|e| Error::io("sync", &part, e))?;
            let got = format!("{:x}", hasher.finalize());
            if got != expected {
                return Err(Error::usage(format!(
                    "{}: the sha256 of {url} is {got}, the index says {expected}: the download \
                     or the index is not what it should be; nothing was kept",
                    req.text
                )));
            }
            let dest = self.cache_file(expected);
            let dir = dest.parent().expect("sha256/<hex>");
            crate::sys::mkdir_p(dir, 0o755)?;
            std::fs::rename(&part, &dest).map_err(|e| Error::io("rename into", &dest, e))?;
            Ok(dest)
        })();
        let _ = std::fs::remove_dir_all(&tmp);
        result
    }

    /// Adds an entry to `sources/index.json` (under a lock; temp file + rename).
    fn remember(&self, c: Cached) -> Result<()> {
        let lock_path = self.store.root.join("locks").join("sources.lock");
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| Error::io("open lock", &lock_path, e))?;
        let _lock = Flock::lock(f, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, e)| crate::sys::SysError::new("flock", Some(&lock_path), e))?;
        let mut all = self.read_index()?;
        all.retain(|x| !(x.name == c.name && x.version == c.version));
        all.push(c);
        let path = self.dir().join("index.json");
        let tmp = self
            .dir()
            .join(format!("index.json.{}", std::process::id()));
        let text = serde_json::to_vec_pretty(&all).expect("serializable");
        std::fs::write(&tmp, text).map_err(|e| Error::io("write", &tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| Error::io("rename into", &path, e))
    }
}

/// A file URL of a project page, made absolute.
fn join_url(page: &str, href: &str) -> String {
    if href.contains("://") {
        return href.to_string();
    }
    let scheme_end = page.find("://").map_or(0, |i| i + 3);
    if let Some(abs) = href.strip_prefix('/') {
        let host_end = page[scheme_end..]
            .find('/')
            .map_or(page.len(), |i| scheme_end + i);
        return format!("{}/{abs}", &page[..host_end]);
    }
    let base = &page[..page.rfind('/').map_or(page.len(), |i| i + 1)];
    let mut parts: Vec<&str> = base[scheme_end..]
        .trim_end_matches('/')
        .split('/')
        .collect();
    for p in href.split('/') {
        match p {
            ".." if parts.len() > 1 => {
                parts.pop();
            }
            "." | ".." => {}
            p => parts.push(p),
        }
    }
    format!("{}{}", &page[..scheme_end], parts.join("/"))
}

pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = File::open(path).map_err(|e| Error::io("open", path, e))?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).map_err(|e| Error::io("read", path, e))?;
    Ok(format!("{:x}", h.finalize()))
}

/// Refuses, before anything is unpacked, an sdist whose links point out of its root (absolute,
/// or climbing above it with `..`) or whose contents are larger than [`MAX_UNPACKED_BYTES`]. The
/// importer then refuses names out of the root, and writes nothing through a symlink.
fn check_sdist(path: &Path, shown: &str) -> Result<()> {
    let f = File::open(path).map_err(|e| Error::io("open the sdist", path, e))?;
    let bad = |what: String| Error::usage(format!("sdist {shown}: {what}; nothing was built"));
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(f));
    let mut total = 0u64;
    let entries = archive
        .entries()
        .map_err(|e| bad(format!("not a gzip'd tar archive ({e})")))?;
    for entry in entries {
        let entry = entry.map_err(|e| bad(format!("corrupt archive ({e})")))?;
        total = total.saturating_add(entry.header().size().unwrap_or(0));
        if total > MAX_UNPACKED_BYTES {
            return Err(bad(format!(
                "unpacks to more than {MAX_UNPACKED_BYTES} bytes"
            )));
        }
        let kind = entry.header().entry_type();
        if !(kind.is_symlink() || kind.is_hard_link()) {
            continue;
        }
        let name = entry
            .path()
            .map_err(|e| bad(format!("an entry name is not readable ({e})")))?
            .into_owned();
        let target = entry
            .link_name()
            .map_err(|e| bad(format!("the link {} is not readable ({e})", name.display())))?
            .unwrap_or_default()
            .into_owned();
        // A symlink's target is relative to its own directory, a hard link's to the root.
        let start = if kind.is_symlink() {
            name.parent().map(Path::to_path_buf).unwrap_or_default()
        } else {
            PathBuf::new()
        };
        if !stays_inside(&start, &target) {
            return Err(bad(format!(
                "the link {} points to {}, out of the sdist's root",
                name.display(),
                target.display()
            )));
        }
    }
    Ok(())
}

/// Whether `target`, followed from the directory `from` (both relative to a root), stays inside.
pub fn stays_inside(from: &Path, target: &Path) -> bool {
    let mut depth: i64 = 0;
    for c in from.components().chain(target.components()) {
        match c {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir => {
                depth -= 1;
                if depth < 0 {
                    return false;
                }
            }
            Component::RootDir | Component::Prefix(_) => return false,
        }
    }
    true
}

/// Unpacks an sdist into a new private directory of the store's `tmp/` and returns it with the
/// project directory inside (the archive's single top directory, else its root).
pub fn unpack_sdist(
    config: &Config,
    store: &Store,
    sdist: &Path,
    shown: &str,
) -> Result<(Unpacked, PathBuf)> {
    check_sdist(sdist, shown)?;
    let (dir, lock) = store.create_tmp()?;
    let unpacked = Unpacked { dir, _lock: lock };
    let root = unpacked.dir.join("src");
    std::fs::create_dir(&root).map_err(|e| Error::io("create", &root, e))?;
    let opts = ImportOptions {
        keep_owners: false,
        create_devices: false,
        keep_setid: false,
        max_entries: config.max_archive_entries,
    };
    import::unpack_archive(sdist, &root, &opts, &mut |_| {}).map_err(|e| {
        if e.is_input_error() {
            Error::usage(format!("sdist {shown}: {e}"))
        } else {
            e.into()
        }
    })?;
    let names = crate::store::list_dir_names(&root)?;
    let project = match names.as_slice() {
        [one] if root.join(one).is_dir() => root.join(one),
        _ => root.clone(),
    };
    if !project.join("pyproject.toml").is_file() && !project.join("setup.py").is_file() {
        return Err(Error::usage(format!(
            "sdist {shown} holds neither pyproject.toml nor setup.py (at its root or in its one \
             top directory): not a Python sdist"
        )));
    }
    Ok((unpacked, project))
}

/// A local sdist's record for the report.
pub fn local_record(path: &Path, shown: &str) -> Result<SourceRecord> {
    let filename = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let (name, version) = sdist_name_version(&filename).unwrap_or_default();
    Ok(SourceRecord {
        bundle: shown.to_string(),
        name,
        version,
        url: std::fs::canonicalize(path)
            .unwrap_or_else(|_| path.to_path_buf())
            .display()
            .to_string(),
        sha256: sha256_file(path)?,
        from_cache: false,
    })
}

/// Whether a bundle argument names an sdist file (`*.tar.gz`).
pub fn is_sdist_path(arg: &str) -> bool {
    arg.ends_with(".tar.gz")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requirements() {
        let r = Requirement::parse("MarkupSafe==2.1.5").unwrap();
        assert_eq!(
            (r.name.as_str(), r.pinned.as_deref()),
            ("markupsafe", Some("2.1.5"))
        );
        assert!(r.admits("2.1.5") && !r.admits("2.1.4"));
        let r = Requirement::parse("zope.interface >=5, <7").unwrap();
        assert_eq!(
            (r.name.as_str(), r.pinned.as_deref()),
            ("zope-interface", None)
        );
        assert!(r.admits("6.4.post2") && r.admits("5.0") && !r.admits("7.0"));
        assert!(!r.admits("6.5rc1"), "pre-releases only when pinned");
        let r = Requirement::parse("msgpack").unwrap();
        assert!(r.admits("1.1.0"));
        for bad in [
            "",
            "-x",
            "x[y]==1",
            "x; python_version<'3'",
            "x @ http://a",
            "x=1",
        ] {
            assert!(Requirement::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sdist_file_names() {
        assert_eq!(
            sdist_name_version("Markup_Safe-2.1.5.tar.gz"),
            Some(("markup-safe".into(), "2.1.5".into()))
        );
        assert_eq!(sdist_name_version("x-1.0-py3-none-any.whl"), None);
        assert!(version_key("1.10.0") > version_key("1.9.9"));
    }

    #[test]
    fn links_stay_inside() {
        assert!(stays_inside(Path::new("p/a"), Path::new("../b")));
        assert!(!stays_inside(Path::new("p"), Path::new("../../etc")));
        assert!(!stays_inside(Path::new("p"), Path::new("/etc/passwd")));
        assert!(stays_inside(Path::new(""), Path::new("p/x")));
    }

    #[test]
    fn urls() {
        let page = "http://127.0.0.1:8000/simple/msgpack/";
        assert_eq!(
            join_url(page, "../../files/m-1.tar.gz"),
            "http://127.0.0.1:8000/files/m-1.tar.gz"
        );
        assert_eq!(
            join_url(page, "/f/m.tar.gz"),
            "http://127.0.0.1:8000/f/m.tar.gz"
        );
        assert_eq!(
            join_url(page, "m.tar.gz"),
            "http://127.0.0.1:8000/simple/msgpack/m.tar.gz"
        );
        assert_eq!(join_url(page, "https://x/y"), "https://x/y");
    }
}
