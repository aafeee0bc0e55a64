//! `build --skip-existing-on URL`: build only the wheels a package index lacks (dockerbuild's
//! habit). The index's project page is read through the simple API — PEP 691's JSON
//! (`Accept: application/vnd.pypi.simple.v1+json`), or PEP 503's HTML where an index serves
//! only that (PEP 691's content negotiation; pypiserver is one) — and every planned target
//! whose wheel the release already has is taken out of the plan, listed as skipped with the
//! file that serves it. Uploading stays with twine; nothing here writes to an index.
//!
//! A release "has" a target's wheel when one of its files has the project's name and version
//! (PEP 503 names, PEP 440 versions compared normalised) and tags that serve the target: the
//! target's CPython tag with its own ABI (`cp311-cp311`), or the stable ABI of an older or the
//! same CPython (`cp39-abi3` serves 3.11), and, among the platform tags of a compound tag
//! (`manylinux_2_17_x86_64.manylinux2014_x86_64`), one of the target's arch and libc family no
//! newer than the target's policy (any manylinux one for a target that names none, as
//! cibuildwheel's `manylinux_x86_64` identifiers do). A `linux_<arch>` wheel serves nobody.

use std::path::Path;

use crate::error::{Error, Result};
use crate::target::{self, Libc, Target};

use super::plan::Skipped;
use super::resolve::Targets;
use super::Ui;

/// A wheel file name, split (PEP 427): `{name}-{version}(-{build})?-{python}-{abi}-{platform}.whl`,
/// each tag a `.`-separated set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WheelName {
    /// PEP 503 normalised.
    pub name: String,
    pub version: String,
    pub python: Vec<String>,
    pub abi: Vec<String>,
    pub platform: Vec<String>,
}

/// Splits a wheel's file name; None for anything else (an sdist, a malformed name).
pub fn parse_wheel_filename(filename: &str) -> Option<WheelName> {
    let stem = filename.strip_suffix(".whl")?;
    let parts: Vec<&str> = stem.split('-').collect();
    if !(parts.len() == 5 || parts.len() == 6) || parts.iter().any(|p| p.is_empty()) {
        return None;
    }
    let n = parts.len();
    let tags = |s: &str| s.split('.').map(|t| t.to_ascii_lowercase()).collect();
    Some(WheelName {
        name: crate::sources::normalise(parts[0]),
        version: parts[1].to_string(),
        python: tags(parts[n - 3]),
        abi: tags(parts[n - 2]),
        platform: tags(parts[n - 1]),
    })
}

/// A version in a form equal versions share: lower case, no leading `v`, and a release
/// segment without trailing zeros (`1.0` = `1.0.0`, PEP 440's rule) when it is all numbers.
fn version_key(v: &str) -> String {
    let v = v.trim().to_ascii_lowercase();
    let v = v.strip_prefix('v').unwrap_or(&v);
    let numeric = !v.is_empty()
        && v.split('.')
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    if !numeric {
        return v.to_string();
    }
    let mut parts: Vec<u64> = v
        .split('.')
        .map(|p| p.parse().unwrap_or(u64::MAX))
        .collect();
    while parts.len() > 1 && parts.last() == Some(&0) {
        parts.pop();
    }
    parts
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(".")
}

/// `3.11` → (3, 11).
fn minor_of(python: &str) -> Option<(u32, u32)> {
    let (a, b) = python.split_once('.')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// `cp39` → (3, 9).
fn minor_of_tag(tag: &str) -> Option<(u32, u32)> {
    let digits = tag.strip_prefix("cp")?;
    if digits.len() < 2 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((digits[..1].parse().ok()?, digits[1..].parse().ok()?))
}

/// True when the wheel's python and ABI tags serve the target's CPython.
fn serves_python(w: &WheelName, t: &Target) -> bool {
    let own = format!("cp{}", t.python.replace('.', ""));
    if w.python.contains(&own) && w.abi.contains(&own) {
        return true;
    }
    // The stable ABI: a cp3Y-abi3 wheel serves every CPython 3.Y and later (not free-threaded).
    let Some(want) = minor_of(&t.python) else {
        return false;
    };
    w.abi.iter().any(|a| a == "abi3")
        && w.python
            .iter()
            .filter_map(|p| minor_of_tag(p))
            .any(|have| have.0 == want.0 && have <= want)
}

/// True when one of the wheel's platform tags serves the target's platform.
fn serves_platform(w: &WheelName, t: &Target) -> bool {
    let want = t
        .policy
        .as_deref()
        .and_then(target::policy_version)
        .map(|(libc, v)| (libc, Some(v)))
        .unwrap_or((Libc::Glibc, None));
    w.platform.iter().any(|tag| {
        // A plain arch or `linux_<arch>` parses with no policy: no manylinux wheel, no match.
        let Ok(p) = target::parse_platform(tag) else {
            return false;
        };
        let Some((libc, version)) = p.policy.as_deref().and_then(target::policy_version) else {
            return false;
        };
        p.arch == t.arch && libc == want.0 && want.1.is_none_or(|newest| version <= newest)
    })
}

/// The file of the release (`name` `version`) among `files` that serves target `t`, if any.
pub fn existing_wheel<'a>(
    files: &'a [String],
    name: &str,
    version: &str,
    t: &Target,
) -> Option<&'a str> {
    let name = crate::sources::normalise(name);
    let version = version_key(version);
    files.iter().map(String::as_str).find(|f| {
        parse_wheel_filename(f).is_some_and(|w| {
            w.name == name
                && version_key(&w.version) == version
                && serves_python(&w, t)
                && serves_platform(&w, t)
        })
    })
}

/// The file names on a project page of the simple API: PEP 691's JSON (`files[].filename`) or
/// PEP 503's HTML (each anchor's text is its file's name).
pub fn page_files(content_type: &str, body: &[u8]) -> std::result::Result<Vec<String>, String> {
    let ct = content_type.to_ascii_lowercase();
    if ct.contains("json") {
        #[derive(serde::Deserialize)]
        struct Page {
            files: Vec<File>,
        }
        #[derive(serde::Deserialize)]
        struct File {
            filename: String,
        }
        let page: Page = serde_json::from_slice(body)
            .map_err(|e| format!("not a PEP 691 JSON project page: {e}"))?;
        return Ok(page.files.into_iter().map(|f| f.filename).collect());
    }
    if ct.contains("html") {
        return Ok(html_anchor_texts(&String::from_utf8_lossy(body)));
    }
    Err(format!(
        "the answer is {content_type:?}, neither PEP 691's JSON nor PEP 503's HTML"
    ))
}

/// The texts of the `<a>` elements of a PEP 503 page, with HTML's character references of
/// file names (`&amp;`, `&#43;` ...) decoded.
fn html_anchor_texts(html: &str) -> Vec<String> {
    let lower = html.to_ascii_lowercase();
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(start) = lower[at..].find("<a").map(|i| at + i) {
        // `<a` followed by whitespace or `>`: not `<abbr>`.
        let next = lower.as_bytes().get(start + 2).copied().unwrap_or(b'>');
        if !(next == b'>' || next.is_ascii_whitespace()) {
            at = start + 2;
            continue;
        }
        let Some(open_end) = lower[start..].find('>').map(|i| start + i + 1) else {
            break;
        };
        let Some(close) = lower[open_end..].find("</a").map(|i| open_end + i) else {
            break;
        };
        out.push(unescape(html[open_end..close].trim()));
        at = close + 3;
    }
    out
}

fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let Some(end) = rest.find(';').filter(|e| *e <= 10) else {
            out.push('&');
            rest = &rest[1..];
            continue;
        };
        let entity = &rest[1..end];
        let c = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            e => e
                .strip_prefix("#x")
                .or_else(|| e.strip_prefix("#X"))
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .or_else(|| e.strip_prefix('#').and_then(|d| d.parse().ok()))
                .and_then(char::from_u32),
        };
        match c {
            Some(c) => {
                out.push(c);
                rest = &rest[end + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The files of project `name` on the index at `index_url` (none when it has no such project).
fn index_files(index_url: &str, name: &str) -> Result<Vec<String>> {
    let url = format!(
        "{}/{}/",
        index_url.trim_end_matches('/'),
        crate::sources::normalise(name)
    );
    let fail = |e: String| {
        Error::usage(format!(
            "--skip-existing-on: cannot read the package index at {url}: {e}; check the URL (the \
             index's simple API, e.g. https://pypi.org/simple) and the network"
        ))
    };
    let agent = crate::oci::registry::agent();
    let mut resp = agent
        .get(&url)
        .header(
            "Accept",
            "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, \
             text/html;q=0.01",
        )
        .call()
        .map_err(|e| fail(e.to_string()))?;
    let status = resp.status().as_u16();
    if status == 404 {
        return Ok(Vec::new());
    }
    if status != 200 {
        return Err(fail(format!("HTTP {status}")));
    }
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = resp
        .body_mut()
        .with_config()
        .limit(64 << 20)
        .read_to_vec()
        .map_err(|e| fail(e.to_string()))?;
    page_files(&content_type, &body).map_err(fail)
}

/// The release a bundle builds: its name and version, known before anything is built. An
/// sdist's come from its file name; a directory's from its pyproject.toml's `[project]` (a
/// static `version`; a dynamic one is known only to the build backend, so it is an error to
/// ask for the skip then).
pub(super) fn release_of(
    dir: &Path,
    name: Option<&str>,
    source: Option<&crate::sources::SourceRecord>,
) -> Result<(String, String)> {
    if let Some(s) = source.filter(|s| !s.name.is_empty() && !s.version.is_empty()) {
        return Ok((name.unwrap_or(&s.name).to_string(), s.version.clone()));
    }
    let path = dir.join("pyproject.toml");
    let text = crate::config::read_optional(&path)?.unwrap_or_default();
    let doc: toml::Table = text.parse().unwrap_or_default();
    let project = doc.get("project").and_then(|p| p.as_table());
    let version = project
        .and_then(|p| p.get("version"))
        .and_then(|v| v.as_str());
    let name = name.or_else(|| project.and_then(|p| p.get("name")).and_then(|v| v.as_str()));
    match (name, version) {
        (Some(n), Some(v)) => Ok((n.to_string(), v.to_string())),
        _ => Err(Error::usage(format!(
            "--skip-existing-on needs the release's name and version before the build, and {} \
             has no static [project] name and version (a version set by setup.py or marked \
             dynamic is known only after building); give them in pyproject.toml, build an \
             sdist, or build without --skip-existing-on",
            path.display()
        ))),
    }
}

/// Takes the targets whose wheel the release `name` `version` on `index_url` already has out
/// of `targets`, each listed as skipped with the file that serves it. Returns how many remain.
pub(super) fn apply(
    index_url: &str,
    name: &str,
    version: &str,
    targets: &mut Targets,
    ui: Ui,
) -> Result<usize> {
    let files = index_files(index_url, name)?;
    let mut kept_planned = Vec::new();
    let mut kept_decisions = Vec::new();
    let planned = std::mem::take(&mut targets.planned);
    let decisions = std::mem::take(&mut targets.decisions);
    for (p, d) in planned.into_iter().zip(decisions) {
        match existing_wheel(&files, name, version, &p.target) {
            Some(file) => {
                let reason = format!("{index_url} already has {file} (release {name} {version})");
                if ui.say {
                    eprintln!("pookie-ns: {}: skipped: {reason}", p.target.identifier());
                }
                targets.skipped.push(Skipped {
                    identifier: p.target.identifier(),
                    reason,
                });
            }
            None => {
                kept_planned.push(p);
                kept_decisions.push(d);
            }
        }
    }
    targets.planned = kept_planned;
    targets.decisions = kept_decisions;
    Ok(targets.planned.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::Arch;

    fn t(arch: Arch, python: &str, policy: Option<&str>) -> Target {
        Target {
            arch,
            python: python.into(),
            policy: policy.map(str::to_string),
        }
    }

    fn files(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn wheel_file_names_split_into_their_tags() {
        let w = parse_wheel_filename(
            "Fast.Math-0.1.0-1-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
        )
        .unwrap();
        assert_eq!(w.name, "fast-math");
        assert_eq!(w.version, "0.1.0");
        assert_eq!(w.python, ["cp311"]);
        assert_eq!(
            w.platform,
            ["manylinux_2_17_x86_64", "manylinux2014_x86_64"]
        );
        assert_eq!(parse_wheel_filename("fastmath-0.1.0.tar.gz"), None);
        assert_eq!(parse_wheel_filename("fastmath-0.1.0-cp311.whl"), None);
    }

    #[test]
    fn a_compound_manylinux_tag_serves_the_default_and_newer_policies() {
        let have = files(&[
            "fastmath-0.1.0.tar.gz",
            "fastmath-0.1.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
        ]);
        let find = |t: &Target| existing_wheel(&have, "FastMath", "0.1", t);
        assert!(find(&t(Arch::Amd64, "3.11", None)).is_some());
        assert!(find(&t(Arch::Amd64, "3.11", Some("manylinux_2_28"))).is_some());
        assert!(find(&t(Arch::Amd64, "3.11", Some("manylinux_2_17"))).is_some());
        // An older policy than the file's, another arch, CPython, libc or version: not served.
        assert!(find(&t(Arch::Amd64, "3.11", Some("manylinux_2_12"))).is_none());
        assert!(find(&t(Arch::Arm64, "3.11", None)).is_none());
        assert!(find(&t(Arch::Amd64, "3.13", None)).is_none());
        assert!(find(&t(Arch::Amd64, "3.11", Some("musllinux_1_2"))).is_none());
        assert!(
            existing_wheel(&have, "fastmath", "0.1.1", &t(Arch::Amd64, "3.11", None)).is_none()
        );
        assert!(existing_wheel(&have, "other", "0.1.0", &t(Arch::Amd64, "3.11", None)).is_none());
    }

    #[test]
    fn linux_wheels_serve_nobody_and_abi3_serves_later_cpythons() {
        let have = files(&[
            "fastmath-0.1.0-cp311-cp311-linux_x86_64.whl",
            "fastmath-0.1.0-cp39-abi3-manylinux_2_28_aarch64.whl",
            "fastmath-0.1.0-cp311-cp311-musllinux_1_1_x86_64.whl",
        ]);
        let find = |t: &Target| existing_wheel(&have, "fastmath", "0.1.0", t);
        assert!(find(&t(Arch::Amd64, "3.11", None)).is_none());
        assert!(find(&t(Arch::Arm64, "3.13", None)).is_some());
        assert!(find(&t(Arch::Arm64, "3.9", None)).is_some());
        assert!(find(&t(Arch::Arm64, "3.13", Some("manylinux_2_17"))).is_none());
        assert_eq!(
            find(&t(Arch::Amd64, "3.11", Some("musllinux_1_2"))),
            Some("fastmath-0.1.0-cp311-cp311-musllinux_1_1_x86_64.whl")
        );
    }

    #[test]
    fn project_pages_are_read_as_json_or_html() {
        let json = br#"{"meta":{"api-version":"1.1"},"name":"fastmath","files":[
            {"filename":"fastmath-0.1.0-cp311-cp311-manylinux_2_17_x86_64.whl","url":"x","hashes":{}}]}"#;
        assert_eq!(
            page_files("application/vnd.pypi.simple.v1+json", json).unwrap(),
            ["fastmath-0.1.0-cp311-cp311-manylinux_2_17_x86_64.whl"]
        );
        let html = "<!DOCTYPE html><html><body><h1>Links for fastmath</h1>\n\
            <a href=\"/packages/fastmath-0.1.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl#sha256=ab\">\
            fastmath-0.1.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl</a><br>\n\
            <abbr>x</abbr><A HREF=\"y\">fastmath-0.1.0+local&#43;x.tar.gz</A></body></html>";
        assert_eq!(
            page_files("text/html; charset=utf-8", html.as_bytes()).unwrap(),
            [
                "fastmath-0.1.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
                "fastmath-0.1.0+local+x.tar.gz"
            ]
        );
        assert!(page_files("application/vnd.pypi.simple.v1+json", b"{}").is_err());
        assert!(page_files("image/png", b"").is_err());
    }

    #[test]
    fn versions_compare_as_pep_440_releases() {
        assert_eq!(version_key("1.0"), version_key("1.0.0"));
        assert_eq!(version_key("V2.1"), "2.1");
        assert_ne!(version_key("1.0"), version_key("1.0.1"));
        assert_eq!(version_key("1.0rc1"), "1.0rc1");
    }
}
