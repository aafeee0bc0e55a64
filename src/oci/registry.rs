//! A registry client for the OCI distribution API, without a daemon: manifests and blobs over
//! HTTPS (plain HTTP only for registries named with `--insecure-registry`), anonymous bearer
//! tokens from the `WWW-Authenticate` challenge, or the user's credentials (see [`super::auth`]).
//!
//! The client is `ureq`, which is blocking and starts no thread: pookie-ns forks helpers and
//! sandboxes from this process, and no runtime thread may be alive when it does. TLS is rustls
//! with the platform's verifier, so the host's CA store (TLS-inspecting proxies included) counts.
//!
//! Blobs are streamed into the store's cache `blobs/sha256/<hex>` through a temporary file,
//! hashed and counted on the way, and renamed into place only when digest and size match; a
//! blob already there is not downloaded again.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use oci_spec::image::ImageManifest;
use sha2::{Digest as _, Sha256};

use super::auth::{self, Credentials};
use super::{
    check_manifest, describe, parse_doc, pick, sha256_of, verify, Doc, Image, Layer, OciError,
    RegistryRef, Result, ACCEPT, MAX_MANIFEST,
};
use crate::arch::Arch;

/// How the registry client may connect.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Registries (`HOST[:PORT]`) spoken to over plain HTTP.
    pub insecure: Vec<String>,
}

struct Client<'a> {
    agent: ureq::Agent,
    r: &'a RegistryRef,
    base: String,
    insecure: bool,
    /// The `Authorization` header that worked (a bearer token, or basic credentials).
    authorization: Option<String>,
    creds: Option<Credentials>,
}

/// pookie-ns's HTTP agent (registries here, the package index in `sources`): the platform's
/// CA store, bounded waits, statuses returned rather than turned into errors.
pub fn agent() -> ureq::Agent {
    let tls = ureq::tls::TlsConfig::builder()
        .root_certs(ureq::tls::RootCerts::PlatformVerifier)
        .build();
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .tls_config(tls)
        .timeout_connect(Some(std::time::Duration::from_secs(30)))
        .timeout_recv_response(Some(std::time::Duration::from_secs(120)))
        .user_agent(concat!("pookie-ns/", env!("CARGO_PKG_VERSION")))
        .build()
        .new_agent()
}

/// The parameters of a `WWW-Authenticate` challenge: its scheme and `key="value"` pairs.
fn parse_challenge(header: &str) -> (String, Vec<(String, String)>) {
    let (scheme, rest) = header.trim().split_once(' ').unwrap_or((header.trim(), ""));
    let mut params = Vec::new();
    let mut rest = rest.trim();
    while let Some((key, after)) = rest.split_once('=') {
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let after = after.trim_start();
        let (value, next) = if let Some(q) = after.strip_prefix('"') {
            match q.split_once('"') {
                Some((v, n)) => (v.to_string(), n),
                None => (q.to_string(), ""),
            }
        } else {
            match after.split_once(',') {
                Some((v, n)) => (v.trim().to_string(), n),
                None => (after.trim().to_string(), ""),
            }
        };
        params.push((key, value));
        rest = next.trim_start_matches([',', ' ']);
    }
    (scheme.to_ascii_lowercase(), params)
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

type Response = ureq::http::Response<ureq::Body>;

impl<'a> Client<'a> {
    fn new(r: &'a RegistryRef, opts: &Options) -> Self {
        let insecure = opts
            .insecure
            .iter()
            .any(|h| h == &r.registry || h == r.api_host());
        Client {
            agent: agent(),
            r,
            base: format!(
                "{}://{}",
                if insecure { "http" } else { "https" },
                r.api_host()
            ),
            insecure,
            authorization: None,
            creds: auth::lookup(&r.registry),
        }
    }

    /// What to do about a registry that cannot be reached, told from the error's text.
    fn unreachable(&self, detail: String) -> OciError {
        let hint = if detail.contains("InvalidContentType") || detail.contains("corrupt message") {
            if self.insecure {
                ""
            } else {
                " (it does not speak TLS: if it serves plain HTTP, name it with \
                 --insecure-registry HOST)"
            }
        } else if detail.contains("lookup") || detail.contains("resolve") {
            " (check the registry's name; pulling needs the network)"
        } else {
            ""
        };
        OciError::UnknownRegistry {
            registry: self.r.registry.clone(),
            detail,
            hint: hint.to_string(),
        }
    }

    fn transport_error(&self, url: &str, e: ureq::Error) -> OciError {
        match e {
            ureq::Error::HostNotFound
            | ureq::Error::ConnectionFailed
            | ureq::Error::Tls(_)
            | ureq::Error::Rustls(_) => self.unreachable(e.to_string()),
            // Before any response: a name that does not resolve, a refused or reset
            // connection, or no TLS at all (a plain HTTP registry answers a ClientHello with
            // garbage: "corrupt message of type InvalidContentType").
            ureq::Error::Io(io) => self.unreachable(io.to_string()),
            e => OciError::Http {
                what: "GET",
                url: url.to_string(),
                detail: e.to_string(),
            },
        }
    }

    fn send(&self, url: &str, accept: &str, authorization: Option<&str>) -> Result<Response> {
        let mut req = self.agent.get(url).header("Accept", accept);
        if let Some(a) = authorization {
            req = req.header("Authorization", a);
        }
        tracing::debug!(%url, "GET");
        req.call().map_err(|e| self.transport_error(url, e))
    }

    fn tried(&self) -> String {
        match &self.creds {
            Some(c) => format!("user {:?} from {}", c.user, c.from.display()),
            None => format!(
                "none (anonymous); none for {} in {}",
                self.r.registry,
                auth::auth_files()
                    .iter()
                    .map(|f| f.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }

    /// Answers a 401's challenge: a bearer token from the realm (with the credentials if any),
    /// or the credentials themselves for a basic challenge.
    fn authenticate(&mut self, challenge: &str) -> Result<bool> {
        let (scheme, params) = parse_challenge(challenge);
        let get = |k: &str| {
            params
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.clone())
        };
        match scheme.as_str() {
            "basic" => match &self.creds {
                Some(c) => {
                    self.authorization = Some(c.basic());
                    Ok(true)
                }
                None => Ok(false),
            },
            "bearer" => {
                let Some(realm) = get("realm") else {
                    return Ok(false);
                };
                let scope = get("scope")
                    .unwrap_or_else(|| format!("repository:{}:pull", self.r.repository));
                let mut url = format!("{realm}?scope={}", percent_encode(&scope));
                if let Some(service) = get("service") {
                    url.push_str(&format!("&service={}", percent_encode(&service)));
                }
                let basic = self.creds.as_ref().map(|c| c.basic());
                let resp = self.send(&url, "application/json", basic.as_deref())?;
                let status = resp.status().as_u16();
                if status == 401 || status == 403 {
                    return Err(self.unauthorized(status));
                }
                if !(200..300).contains(&status) {
                    return Err(OciError::Http {
                        what: "token request",
                        url,
                        detail: format!("status {status}"),
                    });
                }
                let body = resp
                    .into_body()
                    .with_config()
                    .limit(1 << 20)
                    .read_to_vec()
                    .map_err(|e| OciError::Http {
                        what: "token request",
                        url: url.clone(),
                        detail: e.to_string(),
                    })?;
                let v: serde_json::Value =
                    serde_json::from_slice(&body).map_err(|e| OciError::Malformed {
                        what: format!("the token from {realm}"),
                        detail: e.to_string(),
                    })?;
                let token = v
                    .get("token")
                    .or_else(|| v.get("access_token"))
                    .and_then(|t| t.as_str())
                    .ok_or_else(|| OciError::Malformed {
                        what: format!("the token from {realm}"),
                        detail: "no token in it".into(),
                    })?;
                self.authorization = Some(format!("Bearer {token}"));
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    fn unauthorized(&self, status: u16) -> OciError {
        OciError::Unauthorized {
            registry: self.r.registry.clone(),
            repository: self.r.repository.clone(),
            status,
            tried: self.tried(),
        }
    }

    /// GET `/v2/<repo>/<path>`, authenticating when challenged; errors for every status but 2xx.
    fn get(&mut self, path: &str, accept: &str, what: &str) -> Result<Response> {
        let url = format!("{}/v2/{}/{path}", self.base, self.r.repository);
        let mut resp = self.send(&url, accept, self.authorization.as_deref())?;
        if resp.status().as_u16() == 401 && self.authorization.is_none() {
            let challenge = resp
                .headers()
                .get("www-authenticate")
                .and_then(|h| h.to_str().ok())
                .unwrap_or("")
                .to_string();
            if self.authenticate(&challenge)? {
                resp = self.send(&url, accept, self.authorization.as_deref())?;
            }
        }
        let status = resp.status().as_u16();
        match status {
            200..=299 => Ok(resp),
            401 | 403 => Err(self.unauthorized(status)),
            404 => Err(OciError::NotFound {
                what: format!("{what} in {}", self.r),
                hint: String::new(),
            }),
            429 => Err(OciError::RateLimited {
                registry: self.r.registry.clone(),
                retry_after: resp
                    .headers()
                    .get("retry-after")
                    .and_then(|h| h.to_str().ok())
                    .map(|s| {
                        if s.bytes().all(|b| b.is_ascii_digit()) {
                            format!("{s} s")
                        } else {
                            s.to_string()
                        }
                    }),
            }),
            _ => Err(OciError::Http {
                what: "GET",
                url,
                detail: format!("status {status}"),
            }),
        }
    }

    /// A manifest or index by tag or digest, at most [`MAX_MANIFEST`] bytes; its media type and
    /// its digest (checked against the reference when that is one).
    fn manifest(&mut self, reference: &str) -> Result<(Vec<u8>, Option<String>, String)> {
        let what = format!("manifest {reference}");
        let resp = self.get(&format!("manifests/{reference}"), ACCEPT, &what)?;
        let media_type = resp
            .headers()
            .get("content-type")
            .and_then(|h| h.to_str().ok())
            .map(str::to_string);
        let bytes = self.read_small(resp, &what)?;
        let digest = format!("{:x}", Sha256::digest(&bytes));
        if let Ok(hex) = super::reference::check_digest(reference) {
            verify(&what, &bytes, hex, None)?;
        }
        Ok((bytes, media_type, format!("sha256:{digest}")))
    }

    fn read_small(&self, resp: Response, what: &str) -> Result<Vec<u8>> {
        resp.into_body()
            .with_config()
            .limit(MAX_MANIFEST)
            .read_to_vec()
            .map_err(|e| match e {
                ureq::Error::BodyExceedsLimit(_) => OciError::TooLarge {
                    what: what.to_string(),
                    limit: MAX_MANIFEST,
                },
                e => OciError::Http {
                    what: "read",
                    url: what.to_string(),
                    detail: e.to_string(),
                },
            })
    }
}

/// Resolves a reference to the manifest for `arch`: its digest and the parsed manifest.
fn resolve_manifest(client: &mut Client, arch: Option<Arch>) -> Result<(String, ImageManifest)> {
    let r = client.r;
    let (bytes, media_type, digest) = client.manifest(r.manifest_ref())?;
    match parse_doc(
        &format!("the manifest of {r}"),
        &bytes,
        media_type.as_deref(),
    )? {
        Doc::Manifest(m) => Ok((digest, *m)),
        Doc::Index(index) => {
            let d = pick(&r.to_string(), &index, arch)?.clone();
            let hex = sha256_of("an index entry", &d)?;
            let what = format!("the manifest {} of {r}", d.digest());
            let (bytes, media_type, digest) = client.manifest(&format!("sha256:{hex}"))?;
            verify(&what, &bytes, &hex, Some(d.size()))?;
            let mt = media_type.or_else(|| Some(d.media_type().to_string()));
            match parse_doc(&what, &bytes, mt.as_deref())? {
                Doc::Manifest(m) => Ok((digest, *m)),
                Doc::Index(_) => Err(OciError::UnsupportedMediaType {
                    what,
                    media_type: "an index inside an index".into(),
                }),
            }
        }
    }
}

/// The digest of the manifest `r` names for `arch` now (what `update-baseos` compares).
pub fn current_digest(r: &RegistryRef, arch: Option<Arch>, opts: &Options) -> Result<String> {
    let mut client = Client::new(r, opts);
    resolve_manifest(&mut client, arch).map(|(d, _)| d)
}

/// Pulls `r` for `arch`: manifest, config and every layer not in the cache yet.
pub fn pull(r: &RegistryRef, arch: Option<Arch>, blobs: &Path, opts: &Options) -> Result<Image> {
    let mut client = Client::new(r, opts);
    let (manifest_digest, manifest) = resolve_manifest(&mut client, arch)?;
    let name = r.to_string();
    check_manifest(&name, &manifest)?;
    let cfg = manifest.config();
    let cfg_hex = sha256_of("the config descriptor", cfg)?;
    let what = format!("the config {} of {name}", cfg.digest());
    if cfg.size() > MAX_MANIFEST {
        return Err(OciError::TooLarge {
            what,
            limit: MAX_MANIFEST,
        });
    }
    let resp = client.get(&format!("blobs/sha256:{cfg_hex}"), "*/*", &what)?;
    let config = client.read_small(resp, &what)?;
    verify(&what, &config, &cfg_hex, Some(cfg.size()))?;
    let (meta, image_arch) = describe(&name, manifest_digest, &manifest, &config)?;

    let dir = blobs.join("sha256");
    crate::sys::mkdir_p(&dir, 0o755)
        .map_err(|e| OciError::io("create", &dir, std::io::Error::other(e.to_string())))?;
    sweep_partials(&dir);
    let mut layers = Vec::new();
    let (mut fetched, mut cached) = (0u64, 0usize);
    for (i, l) in manifest.layers().iter().enumerate() {
        let hex = sha256_of("a layer descriptor", l)?;
        let path = dir.join(&hex);
        if cached_blob_ok(&path, &hex, l.size()) {
            cached += 1;
        } else {
            let what = format!("layer {} ({}) of {name}", i + 1, l.digest());
            let started = std::time::Instant::now();
            let resp = client.get(&format!("blobs/sha256:{hex}"), "*/*", &what)?;
            download(resp, &path, &hex, l.size(), &what)?;
            crate::fault::point("oci-blob-landed");
            tracing::debug!(
                layer = i + 1,
                bytes = l.size(),
                secs = started.elapsed().as_secs_f64(),
                "downloaded"
            );
            fetched += l.size();
        }
        layers.push(Layer {
            path,
            sha256: Some(hex),
            size: Some(l.size()),
            diff_id: None,
        });
    }
    tracing::info!(
        "pulled {name}: {} layers, {} downloaded, {cached} from the cache",
        layers.len(),
        crate::progress::human_size(fetched)
    );
    Ok(Image {
        meta,
        layers,
        arch: image_arch,
        scratch: None,
    })
}

/// True when the cache holds the blob intact. It was verified when it was downloaded; it is
/// hashed again (a fraction of the unpacking's cost) because a file on disk can be damaged since,
/// and a damaged one is removed so that it is downloaded again.
fn cached_blob_ok(path: &Path, hex: &str, size: u64) -> bool {
    let Ok(mut f) = File::open(path) else {
        return false;
    };
    if !f.metadata().is_ok_and(|m| m.len() == size) {
        let _ = std::fs::remove_file(path);
        return false;
    }
    let mut h = Sha256::new();
    if std::io::copy(&mut f, &mut h).is_err() || format!("{:x}", h.finalize()) != hex {
        tracing::warn!(
            "the cached blob {} is damaged: downloading it again",
            path.display()
        );
        let _ = std::fs::remove_file(path);
        return false;
    }
    true
}

/// Removes the partial downloads of pookie-ns processes that are gone.
fn sweep_partials(dir: &Path) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some((_, pid)) = name.split_once(".partial.") {
            if !Path::new("/proc").join(pid).exists() {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

/// Streams a blob into `path` through a temporary file, checking size and digest on the way;
/// only a verified blob is renamed into place.
fn download(resp: Response, path: &Path, hex: &str, size: u64, what: &str) -> Result<()> {
    let tmp = PathBuf::from(format!("{}.partial.{}", path.display(), std::process::id()));
    let result = (|| {
        let mut out = File::create(&tmp).map_err(|e| OciError::io("create", &tmp, e))?;
        let mut body = resp.into_body();
        let mut reader = body.as_reader();
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 17];
        let mut got = 0u64;
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                // The connection ended before the length announced: a truncated blob.
                Err(e) if got < size => {
                    return Err(OciError::SizeMismatch {
                        what: format!("{what} (the connection ended early: {e})"),
                        expected: size,
                        actual: got,
                    })
                }
                Err(e) => {
                    return Err(OciError::Http {
                        what: "download of",
                        url: what.to_string(),
                        detail: e.to_string(),
                    })
                }
            };
            got += n as u64;
            if got > size {
                return Err(OciError::SizeMismatch {
                    what: what.to_string(),
                    expected: size,
                    actual: got,
                });
            }
            hasher.update(&buf[..n]);
            out.write_all(&buf[..n])
                .map_err(|e| OciError::io("write", &tmp, e))?;
            if got > (1 << 20) {
                crate::fault::point("oci-downloading");
            }
        }
        if got != size {
            return Err(OciError::SizeMismatch {
                what: what.to_string(),
                expected: size,
                actual: got,
            });
        }
        let actual = format!("{:x}", hasher.finalize());
        if actual != hex {
            return Err(OciError::DigestMismatch {
                what: what.to_string(),
                expected: format!("sha256:{hex}"),
                actual: format!("sha256:{actual}"),
            });
        }
        let synced = std::time::Instant::now();
        out.sync_all().map_err(|e| OciError::io("sync", &tmp, e))?;
        tracing::debug!(secs = synced.elapsed().as_secs_f64(), "fsync of the blob");
        std::fs::rename(&tmp, path).map_err(|e| OciError::io("rename", &tmp, e))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_are_parsed() {
        let (s, p) = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/debian:pull""#,
        );
        assert_eq!(s, "bearer");
        assert_eq!(
            p,
            vec![
                ("realm".into(), "https://auth.docker.io/token".into()),
                ("service".into(), "registry.docker.io".into()),
                ("scope".into(), "repository:library/debian:pull".into()),
            ]
        );
        let (s, p) = parse_challenge(r#"Basic realm="Registry Realm""#);
        assert_eq!(s, "basic");
        assert_eq!(p, vec![("realm".into(), "Registry Realm".into())]);
        assert_eq!(
            percent_encode("repository:a/b:pull"),
            "repository%3Aa%2Fb%3Apull"
        );
    }
}
