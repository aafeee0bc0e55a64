//! Image references as the user types them: `docker://[REGISTRY/]REPO[:TAG|@sha256:DIGEST]`
//! (Docker Hub's short names too: `debian` is `docker.io/library/debian:latest`),
//! `oci:DIR[:REF]`, `oci-archive:FILE` and `docker-archive:FILE` — skopeo's transports.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use oci_spec::distribution::Reference;

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

/// `[REGISTRY/]REPOSITORY[:TAG][@sha256:HEX]`, with Docker Hub's defaults filled in
/// (`debian` is `docker.io/library/debian`, `index.docker.io` is `docker.io`).
///
/// oci-spec's `Reference` parses it, with the grammar and normalisation of the distribution
/// project (docker's). Where it says more, or less, than pookie-ns can use, the result is
/// checked again: a digest must be `sha256:` and lowercase hex (the only one verified); a tag
/// the user did not write stays unwritten (oci-spec fills in `latest`; the reference is shown
/// and stored as written, and `manifest_ref` asks for `latest` all the same); a tag is ASCII
/// (oci-spec's `\w` lets any letter through); a Docker Hub repository is lowercase (oci-spec
/// takes `Upper/case` as a Docker Hub repository as it is); and `registry-1.docker.io`, Docker
/// Hub's API host, is Docker Hub too.
pub fn parse_registry(s: &str) -> Result<ImageSource, String> {
    // Before the grammar, which would only say "invalid reference format".
    if let Some((_, digest)) = s.split_once('@') {
        check_digest(digest)?;
    }
    let parsed = Reference::from_str(s).map_err(|e| {
        format!(
            "{e}: write it [REGISTRY/]REPOSITORY[:TAG][@sha256:HEX], the repository in lowercase \
             letters, digits and . _ - between slashes"
        )
    })?;
    let name = s.split_once('@').map_or(s, |(name, _)| name);
    let tag = parsed
        .tag()
        .filter(|t| name.ends_with(&format!(":{t}")))
        .map(str::to_string);
    if let Some(t) = tag.as_deref().filter(|t| !t.is_ascii()) {
        return Err(format!(
            "invalid tag {t:?}: ASCII letters, digits and _ . - only"
        ));
    }
    let (registry, repository) = match parsed.registry() {
        DOCKER_HUB_API if !parsed.repository().contains('/') => {
            (DOCKER_HUB, format!("library/{}", parsed.repository()))
        }
        DOCKER_HUB_API => (DOCKER_HUB, parsed.repository().to_string()),
        r => (r, parsed.repository().to_string()),
    };
    if repository.chars().any(|c| c.is_ascii_uppercase()) {
        return Err(format!(
            "invalid repository {repository:?}: lowercase letters, digits and . _ - between slashes"
        ));
    }
    Ok(ImageSource::Registry(RegistryRef {
        registry: registry.to_string(),
        repository,
        tag,
        digest: parsed.digest().map(str::to_string),
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
            "docker://x/a..b",
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
    fn docker_hub_hosts_and_written_tags() {
        for s in [
            "docker://index.docker.io/debian",
            "docker://registry-1.docker.io/debian",
            "docker://docker.io/library/debian",
        ] {
            let r = reg(s);
            assert_eq!(
                (r.registry.as_str(), r.repository.as_str()),
                ("docker.io", "library/debian"),
                "{s}"
            );
            assert_eq!(r.tag, None, "{s}: no tag written, none kept");
            assert_eq!(r.to_string(), "docker://docker.io/library/debian", "{s}");
        }
        assert_eq!(reg("docker://debian:latest").tag.as_deref(), Some("latest"));
        let d = format!("sha256:{}", "0".repeat(64));
        let r = reg(&format!("docker://debian@{d}"));
        assert_eq!((r.tag, r.digest.as_deref()), (None, Some(d.as_str())));
        let r = reg("docker://localhost:5000/a/b/c:1.0-rc_1");
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str(), r.tag.as_deref()),
            ("localhost:5000", "a/b/c", Some("1.0-rc_1"))
        );
    }

    #[test]
    fn refusals_say_what_to_write() {
        let reason = |s: &str| match parse(s) {
            Some(Err(OciError::BadReference { reason, .. })) => reason,
            other => panic!("{s}: {other:?}"),
        };
        assert!(reason("docker://x@sha256:abc").contains("sha256:<64 hex digits>"));
        let upper = format!("docker://x@sha256:{}", "A".repeat(64));
        assert!(reason(&upper).contains("sha256:<64 hex digits>"));
        let sha512 = format!("docker://x@sha512:{}", "a".repeat(128));
        assert!(reason(&sha512).contains("unsupported digest"));
        assert!(reason("docker://Upper/case").contains("lowercase"));
        assert!(reason("docker://a//b").contains("[REGISTRY/]REPOSITORY[:TAG]"));
        assert!(reason("docker://debian:b\u{fc}cher").contains("ASCII"));
        assert!(reason(&format!("docker://x:{}", "t".repeat(129))).contains("[:TAG]"));
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
