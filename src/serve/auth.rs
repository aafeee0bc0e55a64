//! Bearer tokens. The tokens file holds only SHA-256 hashes, one line per token:
//! `ROLE HEX [NAME]` with ROLE `read` (look at tasks, logs, reports, wheels, metrics) or
//! `submit` (read, and create, start and cancel tasks). A presented token is hashed and compared
//! with every line in constant time, so neither the file nor the timing gives a token away.

use std::path::Path;

use sha2::{Digest, Sha256};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Read,
    Submit,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Submit => "submit",
        }
    }
}

/// Who may do what: no file means everyone may do everything (loopback only).
#[derive(Debug, Clone)]
pub enum Tokens {
    Open,
    Hashes(Vec<(Role, [u8; 32])>),
}

/// Why a request was turned away.
#[derive(Debug, PartialEq, Eq)]
pub enum Denied {
    /// 401: no token, or one that is not in the file.
    Unauthenticated(&'static str),
    /// 403: a known token whose role is too small.
    Forbidden(Role),
}

pub fn hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn parse_hex(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.strip_prefix("sha256:").unwrap_or(hex);
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// Every byte compared whatever the first difference: the time does not tell where it was.
fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Tokens {
    pub fn load(path: &Path) -> Result<Tokens, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the tokens file {}: {e}", path.display()))?;
        let mut hashes = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut words = line.split_whitespace();
            let (role, hex) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
            let role = match role {
                "read" => Role::Read,
                "submit" => Role::Submit,
                other => {
                    return Err(format!(
                        "{}:{}: unknown role {other:?}: write `read` or `submit`",
                        path.display(),
                        n + 1
                    ))
                }
            };
            let Some(h) = parse_hex(hex) else {
                return Err(format!(
                    "{}:{}: {hex:?} is no SHA-256 hex digest: write the token's hash \
                     (`printf %s TOKEN | sha256sum`), never the token",
                    path.display(),
                    n + 1
                ));
            };
            hashes.push((role, h));
        }
        if hashes.is_empty() {
            return Err(format!(
                "the tokens file {} lists no token: add lines `ROLE SHA256 [NAME]`",
                path.display()
            ));
        }
        Ok(Tokens::Hashes(hashes))
    }

    /// Checks the `Authorization` header against the role a route needs.
    pub fn check(&self, authorization: Option<&str>, needs: Role) -> Result<(), Denied> {
        let Tokens::Hashes(hashes) = self else {
            return Ok(());
        };
        let Some(token) = authorization.and_then(|h| h.strip_prefix("Bearer ")) else {
            return Err(Denied::Unauthenticated(
                "no bearer token: send `Authorization: Bearer TOKEN`",
            ));
        };
        let presented = hash(token.trim());
        let mut best: Option<Role> = None;
        for (role, h) in hashes {
            if same(h, &presented) {
                best = best.max(Some(*role));
            }
        }
        match best {
            None => Err(Denied::Unauthenticated(
                "the bearer token is not known here",
            )),
            Some(role) if role < needs => Err(Denied::Forbidden(role)),
            Some(_) => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_and_refusals() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("tokens");
        std::fs::write(
            &p,
            format!(
                "# team tokens\nread {:x} ci-reader\nsubmit sha256:{:x}\n",
                Sha256::digest(b"r"),
                Sha256::digest(b"s")
            ),
        )
        .unwrap();
        let t = Tokens::load(&p).unwrap();
        assert_eq!(t.check(Some("Bearer s"), Role::Submit), Ok(()));
        assert_eq!(t.check(Some("Bearer r"), Role::Read), Ok(()));
        assert_eq!(
            t.check(Some("Bearer r"), Role::Submit),
            Err(Denied::Forbidden(Role::Read))
        );
        assert!(matches!(
            t.check(Some("Bearer x"), Role::Read),
            Err(Denied::Unauthenticated(_))
        ));
        assert!(matches!(
            t.check(None, Role::Read),
            Err(Denied::Unauthenticated(_))
        ));
        std::fs::write(&p, "submit plaintext-token\n").unwrap();
        assert!(Tokens::load(&p).unwrap_err().contains("never the token"));
    }
}
