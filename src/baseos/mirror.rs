//! Which Debian mirror a recipe builds from.

use std::path::PathBuf;

use crate::config::Config;
use crate::recipe::Recipe;

/// The Debian mirror to build from: the recipe's, else config.toml's `mirror`, else the host's
/// own apt source when it is a Debian mirror, else deb.debian.org.
pub fn mirror_for(config: &Config, recipe: &Recipe) -> String {
    recipe
        .spec
        .mirror
        .clone()
        .or_else(|| config.mirror.clone())
        .or_else(host_debian_mirror)
        .unwrap_or_else(|| "http://deb.debian.org/debian".into())
}

/// The first `URIs:` (deb822) or `deb URI` line of the host's apt sources that serves Debian.
fn host_debian_mirror() -> Option<String> {
    let mut files = vec![PathBuf::from("/etc/apt/sources.list")];
    if let Ok(rd) = std::fs::read_dir("/etc/apt/sources.list.d") {
        let mut more: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
        more.sort();
        files.extend(more);
    }
    for f in files {
        let Ok(text) = std::fs::read_to_string(&f) else {
            continue;
        };
        for line in text.lines().map(str::trim) {
            let uri = if let Some(rest) = line.strip_prefix("URIs:") {
                rest.split_whitespace().next()
            } else if let Some(rest) = line.strip_prefix("deb ") {
                rest.split_whitespace().find(|w| !w.starts_with('['))
            } else {
                None
            };
            if let Some(u) = uri {
                let u = u.trim_end_matches('/');
                if u.ends_with("/debian") && !u.contains("security") {
                    return Some(u.to_string());
                }
            }
        }
    }
    None
}
