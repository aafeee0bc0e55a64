//! Registry credentials, read the way podman, skopeo and docker store them: `auths.<registry>.auth`
//! (base64 of `user:password`) in `$REGISTRY_AUTH_FILE`, `$XDG_RUNTIME_DIR/containers/auth.json`,
//! `~/.config/containers/auth.json`, then `~/.docker/config.json`. Credential helpers are not run.

use std::path::PathBuf;

/// A user and password for one registry, with the file they came from (for error messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub user: String,
    pub password: String,
    pub from: PathBuf,
}

impl Credentials {
    /// The value of an `Authorization: Basic` header.
    pub fn basic(&self) -> String {
        format!(
            "Basic {}",
            base64_encode(format!("{}:{}", self.user, self.password).as_bytes())
        )
    }
}

/// The auth files searched, in order.
pub fn auth_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    if let Some(f) = std::env::var_os("REGISTRY_AUTH_FILE") {
        files.push(PathBuf::from(f));
    }
    if let Some(d) = std::env::var_os("XDG_RUNTIME_DIR") {
        files.push(PathBuf::from(d).join("containers/auth.json"));
    }
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")));
    if let Some(c) = config {
        files.push(c.join("containers/auth.json"));
    }
    if let Some(h) = std::env::var_os("HOME") {
        files.push(PathBuf::from(h).join(".docker/config.json"));
    }
    files
}

/// The first credentials for `registry` (`docker.io` also matches Docker's historic key).
pub fn lookup(registry: &str) -> Option<Credentials> {
    auth_files()
        .into_iter()
        .find_map(|f| lookup_in(&f, registry))
}

fn lookup_in(file: &std::path::Path, registry: &str) -> Option<Credentials> {
    let text = std::fs::read(file).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&text).ok()?;
    let auths = v.get("auths")?.as_object()?;
    let keys = [
        registry.to_string(),
        format!("https://{registry}"),
        format!("http://{registry}"),
        if registry == super::reference::DOCKER_HUB {
            "https://index.docker.io/v1/".to_string()
        } else {
            String::new()
        },
    ];
    let entry = keys.iter().find_map(|k| auths.get(k))?;
    let (user, password) = match entry.get("auth").and_then(|a| a.as_str()) {
        Some(a) => {
            let decoded = String::from_utf8(base64_decode(a)?).ok()?;
            let (u, p) = decoded.split_once(':')?;
            (u.to_string(), p.to_string())
        }
        None => (
            entry.get("username")?.as_str()?.to_string(),
            entry.get("password")?.as_str()?.to_string(),
        ),
    };
    Some(Credentials {
        user,
        password,
        from: file.to_path_buf(),
    })
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

pub fn base64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

pub fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.trim().bytes().filter(|c| *c != b'=') {
        let v = ALPHABET.iter().position(|a| *a == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips() {
        for s in ["", "a", "ab", "abc", "user:pass word", "pookie:s3cr3t!"] {
            assert_eq!(
                base64_decode(&base64_encode(s.as_bytes())).unwrap(),
                s.as_bytes()
            );
        }
        assert_eq!(base64_encode(b"user:pass"), "dXNlcjpwYXNz");
        assert!(base64_decode("not*base64").is_none());
    }

    #[test]
    fn auth_files_are_read_by_registry() {
        let dir = std::env::temp_dir().join(format!("pookie-auth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("auth.json");
        std::fs::write(
            &f,
            r#"{"auths":{"127.0.0.1:5000":{"auth":"dXNlcjpwYXNz"},"https://index.docker.io/v1/":{"username":"d","password":"p"}}}"#,
        )
        .unwrap();
        let c = lookup_in(&f, "127.0.0.1:5000").unwrap();
        assert_eq!((c.user.as_str(), c.password.as_str()), ("user", "pass"));
        assert_eq!(lookup_in(&f, "docker.io").unwrap().user, "d");
        assert!(lookup_in(&f, "quay.io").is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
