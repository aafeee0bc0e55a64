//! Image references as the user types them: `docker://[REGISTRY/]REPO[:TAG|@sha256:DIGEST]`
//! (Docker Hub's short names too: `debian` is `docker.io/library/debian:latest`),
//! `oci:DIR[:REF]`, `oci-archive:FILE` and `docker-archive:FILE` — skopeo's transports.

use std::fmt;
use std::path::PathBuf;

use super::OciError;

/// Docker Hub: the name users write, and the host its API answers on.
pub const DOCKER_HUB: &str = "docker.io";
const DOCKER_HUB_API: &str = "registry-1.docker.io";

/// Where an image comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageSource {
    Registry(RegistryRef),
    /// An OCI image layout directory, with the `org.opencontainers.image.ref.name` to pick.
    Layout {
        dir: PathBuf,
        name: Option<String>,
    },
    OciArchive(PathBuf),
    DockerArchive(PathBuf),
}

/// An image in a registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryRef {
    /// As named (`docker.io`, `quay.io`, `127.0.0.1:5000`).
    pub registry: String,
    pub repository: String,
    pub tag: Option<String>,
    /// `sha256:<hex>`
    pub digest: Option<String>,
}

impl RegistryRef {
    /// The host (and port) the distribution API answers on.
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_API
        } else {
            &self.registry
        }
    }

    /// What goes after `/manifests/`: the digest when pinned, else the tag (`latest` by default).
    pub fn manifest_ref(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or("latest")
    }

    /// The same image by tag only (what `update-baseos` re-resolves).
    pub fn unpinned(&self) -> RegistryRef {
        RegistryRef {
            digest: if self.tag.is_some() {
                None
            } else {
                self.digest.clone()
            },
            ..self.clone()
        }
    }
}

impl fmt::Display for RegistryRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "docker://{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl fmt::Display for ImageSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImageSource::Registry(r) => r.fmt(f),
            ImageSource::Layout { dir, name: None } => write!(f, "oci:{}", dir.display()),
            ImageSource::Layout { dir, name: Some(n) } => write!(f, "oci:{}:{n}", dir.display()),
            ImageSource::OciArchive(p) => write!(f, "oci-archive:{}", p.display()),
            ImageSource::DockerArchive(p) => write!(f, "docker-archive:{}", p.display()),
        }
    }
}

fn bad(reference: &str, reason: impl Into<String>) -> OciError {
    OciError::BadReference {
        reference: reference.to_string(),
        reason: reason.into(),
    }
}

/// Parses an image reference; `None` when `s` names none of the transports (a recipe or a file).
pub fn parse(s: &str) -> Option<Result<ImageSource, OciError>> {
    let (transport, rest) = s.split_once(':')?;
    Some(match transport {
        "docker" => match rest.strip_prefix("//") {
            Some(r) => parse_registry(r).map_err(|reason| bad(s, reason)),
            None => Err(bad(s, "write it docker://[REGISTRY/]REPOSITORY[:TAG]")),
        },
        "oci" => {
            // The last `:` starts a ref name only when no `/` follows it.
            let (dir, name) = match rest.rsplit_once(':') {
                Some((d, n)) if !n.contains('/') && !d.is_empty() => (d, Some(n.to_string())),
                _ => (rest, None),
            };
            if dir.is_empty() {
                return Some(Err(bad(s, "oci: needs a directory: oci:DIR[:REF]")));
            }
            Ok(ImageSource::Layout {
                dir: dir.into(),
                name: name.filter(|n| !n.is_empty()),
            })
        }
        "oci-archive" | "docker-archive" if rest.is_empty() => Err(bad(
            s,
            format!("{transport}: needs a file: {transport}:FILE"),
        )),
        // skopeo allows docker-archive:FILE:REF; a ref in a one-image archive changes nothing.
        "oci-archive" => Ok(ImageSource::OciArchive(rest.into())),
        "docker-archive" => Ok(ImageSource::DockerArchive(rest.into())),
        _ => return None,
    })
}

/// `[REGISTRY/]REPOSITORY[:TAG][@sha256:HEX]`, with Docker Hub's defaults filled in.
pub fn parse_registry(s: &str) -> Result<ImageSource, String> {
    let (name, digest) = match s.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (s, None),
    };
    if let Some(d) = digest {
        check_digest(d)?;
    }
    let (name, tag) = match name.rsplit_once(':') {
        Some((n, t)) if !t.contains('/') => (n, Some(t)),
        _ => (name, None),
    };
    if let Some(t) = tag {
        let ok = !t.is_empty()
            && t.len() <= 128
            && !t.starts_with(['.', '-'])
            && t.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if !ok {
            return Err(format!("invalid tag {t:?}"));
        }
    }
    let (registry, repository) = match name.split_once('/') {
        Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" => {
            (first.to_string(), rest.to_string())
        }
        Some(_) => (DOCKER_HUB.to_string(), name.to_string()),
        None => (DOCKER_HUB.to_string(), format!("library/{name}")),
    };
    let registry = if registry == "index.docker.io" || registry == DOCKER_HUB_API {
        DOCKER_HUB.to_string()
    } else {
        registry
    };
    let repository = if registry == DOCKER_HUB && !repository.contains('/') {
        format!("library/{repository}")
    } else {
        repository
    };
    let component_ok = |c: &str| {
        !c.is_empty()
            && c.starts_with(|ch: char| ch.is_ascii_lowercase() || ch.is_ascii_digit())
            && c.ends_with(|ch: char| ch.is_ascii_lowercase() || ch.is_ascii_digit())
            && c.chars().all(|ch| {
                ch.is_ascii_lowercase() || ch.is_ascii_digit() || matches!(ch, '.' | '_' | '-')
            })
    };
    if !repository.split('/').all(component_ok) {
        return Err(format!(
            "invalid repository {repository:?}: lowercase letters, digits and . _ - between slashes"
        ));
    }
    if registry.is_empty() || registry.contains(|c: char| c.is_whitespace() || c == '@') {
        return Err(format!("invalid registry {registry:?}"));
    }
    Ok(ImageSource::Registry(RegistryRef {
        registry,
        repository,
        tag: tag.map(str::to_string),
        digest: digest.map(str::to_string),
    }))
}

/// A digest we can check: `sha256:` and 64 lowercase hex digits.
pub fn check_digest(d: &str) -> Result<&str, String> {
    match d.strip_prefix("sha256:") {
        Some(hex)
            if hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) =>
        {
            Ok(hex)
        }
        _ => Err(format!(
            "unsupported digest {d:?}: pookie-ns checks sha256:<64 hex digits>"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(s: &str) -> RegistryRef {
        match parse(s).unwrap().unwrap() {
            ImageSource::Registry(r) => r,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn docker_hub_short_names_get_library_and_latest() {
        let r = reg("docker://debian");
        assert_eq!(r.registry, "docker.io");
        assert_eq!(r.repository, "library/debian");
        assert_eq!(r.manifest_ref(), "latest");
        assert_eq!(r.api_host(), "registry-1.docker.io");
        let r = reg("docker://pypa/manylinux:2024");
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str()),
            ("docker.io", "pypa/manylinux")
        );
        assert_eq!(r.tag.as_deref(), Some("2024"));
        assert_eq!(
            reg("docker://docker.io/ubuntu").repository,
            "library/ubuntu"
        );
    }

    #[test]
    fn registries_with_ports_tags_and_digests() {
        let d = format!("sha256:{}", "a".repeat(64));
        let r = reg(&format!("docker://127.0.0.1:5000/test/img:v1@{d}"));
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.repository, "test/img");
        assert_eq!(r.tag.as_deref(), Some("v1"));
        assert_eq!(r.manifest_ref(), d);
        assert_eq!(r.unpinned().manifest_ref(), "v1");
        let r = reg("docker://quay.io/pypa/manylinux_2_28_x86_64");
        assert_eq!(r.registry, "quay.io");
        assert_eq!(r.to_string(), "docker://quay.io/pypa/manylinux_2_28_x86_64");
        assert_eq!(reg("docker://localhost/x").registry, "localhost");
    }

    #[test]
    fn bad_references_are_refused() {
        for s in [
            "docker://Upper/case",
            "docker://x@sha256:abc",
            "docker://x@md5:00",
            "docker:debian",
            "docker://a//b",
            "docker://x:bad/tag:",
            "oci-archive:",
        ] {
            assert!(parse(s).unwrap().is_err(), "{s}");
        }
        assert!(parse("debian-bookworm").is_none());
        assert!(parse("/tmp/x.tar").is_none());
        assert!(parse("sftp:x").is_none());
    }

    #[test]
    fn layouts_and_archives() {
        assert_eq!(
            parse("oci:/tmp/lay:v2").unwrap().unwrap(),
            ImageSource::Layout {
                dir: "/tmp/lay".into(),
                name: Some("v2".into())
            }
        );
        assert_eq!(
            parse("oci:rel/dir").unwrap().unwrap(),
            ImageSource::Layout {
                dir: "rel/dir".into(),
                name: None
            }
        );
        assert_eq!(
            parse("docker-archive:/x/i.tar").unwrap().unwrap(),
            ImageSource::DockerArchive("/x/i.tar".into())
        );
        assert_eq!(
            parse("oci-archive:i.tar").unwrap().unwrap().to_string(),
            "oci-archive:i.tar"
        );
    }
}
