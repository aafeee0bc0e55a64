//! `report.html`, written beside `report.json` from the same [`Report`]: a page that a person
//! reads offline or as a CI artifact. One arch × Python grid per project (each cell a target's
//! result, mode, toolchain and wheel tag, or why it was skipped), the times of each step, peak
//! memory and disk, links to each target's logs (relative to the page, so the output directory
//! can be moved or zipped), the skipped identifiers with their reasons. Self-contained: styles
//! inline, no script, no image, no font, and a Content-Security-Policy of `default-src 'none'`
//! so that a browser fetches nothing even if a value slipped through. Every value of the report
//! is escaped ([`escape`]); link targets are percent-encoded as well ([`href`]).

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::Path;

use super::plan::Skipped;
use super::report::{Outcome, Report, TargetResult};
use crate::store::human_size;

/// The page for `report`, whose file will be in `dir` (log links are made relative to it).
pub fn render(report: &Report, dir: &Path) -> String {
    let mut h = String::new();
    let title = format!("pookie-ns build of {} ({})", report.project, report.branch);
    h.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    // Nothing may be fetched: no script, no image, no font, no stylesheet but the one inline.
    h.push_str(
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; \
         style-src 'unsafe-inline'\">\n",
    );
    h.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    let _ = writeln!(h, "<title>{}</title>", escape(&title));
    h.push_str(STYLE);
    h.push_str("</head>\n<body>\n");
    let _ = writeln!(h, "<h1>{}</h1>", escape(&title));
    summary(&mut h, report);
    let projects = projects(report);
    let group = projects.len() > 1;
    for project in &projects {
        let targets: Vec<&TargetResult> = report
            .targets
            .iter()
            .filter(|t| t.project.as_deref().unwrap_or(&report.project) == project)
            .collect();
        // The skipped identifiers carry no project: in a group build they are listed below only.
        let skipped: &[Skipped] = if group { &[] } else { &report.skipped };
        if group {
            let _ = writeln!(h, "<h2>{}</h2>", escape(project));
        } else {
            h.push_str("<h2>Targets</h2>\n");
        }
        grid(&mut h, &targets, skipped);
    }
    details(&mut h, report, dir, group);
    skipped_list(&mut h, &report.skipped);
    sources(&mut h, report);
    h.push_str("</body>\n</html>\n");
    h
}

const STYLE: &str = "<style>
body { font-family: system-ui, sans-serif; font-size: 14px; margin: 1.2em; color: #1d1d1f; background: #fff; }
h1 { font-size: 1.35em; } h2 { font-size: 1.1em; margin-top: 1.4em; }
table { border-collapse: collapse; margin: 0.4em 0; }
th, td { border: 1px solid #c8c8cc; padding: 0.25em 0.5em; text-align: left; vertical-align: top; }
th { background: #f0f0f3; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
code { font-size: 0.85em; word-break: break-all; }
table.grid td.cell { width: 10em; max-width: 12em; }
.cell .result { font-weight: bold; display: block; }
.cell .meta { font-size: 0.85em; display: block; color: #333; }
.result-passed, .result-built { background: #d9f2dc; }
.result-build-failed, .result-test-failed, .result-error { background: #f8d0cd; }
.result-build-failed .result, .result-test-failed .result, .result-error .result { color: #9b1c12; }
.result-interrupted { background: #fbeec2; }
.skipped { background: #ececec; color: #555; }
.empty { background: #fafafa; }
table.details td:nth-child(7) { max-width: 22em; }
dl.summary { display: grid; grid-template-columns: max-content auto; gap: 0.15em 1em;
  padding: 0.4em 0.8em; border-left: 6px solid #2e7d32; background: #f6f6f8; }
dl.summary.failed { border-left-color: #c62828; }
dl.summary dt { font-weight: bold; } dl.summary dd { margin: 0; }
</style>
";

/// The CSS class of a result (the report's own spelling: `result-test-failed`).
pub fn result_class(o: Outcome) -> &'static str {
    match o {
        Outcome::Passed => "result-passed",
        Outcome::Built => "result-built",
        Outcome::BuildFailed => "result-build-failed",
        Outcome::TestFailed => "result-test-failed",
        Outcome::Error => "result-error",
        Outcome::Interrupted => "result-interrupted",
    }
}

fn summary(h: &mut String, r: &Report) {
    let peak_rss = r.targets.iter().filter_map(|t| t.peak_rss_kib).max();
    let disk = r.targets.iter().filter_map(|t| t.workspace_bytes).max();
    let rows = [
        ("Project", r.project.clone()),
        ("Branch", r.branch.clone()),
        ("Bundle", r.bundle.display().to_string()),
        (
            "Result",
            format!(
                "{} target(s): {} passed, {} failed; {} skipped",
                r.targets.len(),
                r.passed,
                r.failed,
                r.skipped.len()
            ),
        ),
        (
            "Time",
            format!(
                "{:.1} s, up to {} target(s) at a time",
                r.total_secs, r.jobs
            ),
        ),
        (
            "Peak memory",
            peak_rss.map_or("-".into(), |k| {
                format!(
                    "{} (largest process of one target)",
                    human_size(k.saturating_mul(1024))
                )
            }),
        ),
        (
            "Disk",
            disk.map_or("-".into(), |b| {
                format!("{} (largest workspace of one target)", human_size(b))
            }),
        ),
        ("Wheels in", r.out.display().to_string()),
    ];
    let class = if r.failed == 0 { "passed" } else { "failed" };
    let _ = writeln!(h, "<dl class=\"summary {class}\" id=\"summary\">");
    for (k, v) in rows {
        let _ = writeln!(h, "<dt>{}</dt><dd>{}</dd>", escape(k), escape(&v));
    }
    h.push_str("</dl>\n");
}

/// The projects of the report, in the order of their first target (the report's own when it
/// has none).
fn projects(r: &Report) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for t in &r.targets {
        let p = t.project.clone().unwrap_or_else(|| r.project.clone());
        if !out.contains(&p) {
            out.push(p);
        }
    }
    if out.is_empty() {
        out.push(r.project.clone());
    }
    out
}

/// `cp311` → `3.11`, `cp314t` → `3.14t`; None for what is no CPython tag.
fn python_of_tag(tag: &str) -> Option<String> {
    let rest = tag.strip_prefix("cp")?;
    let (digits, t) = match rest.strip_suffix('t') {
        Some(d) => (d, "t"),
        None => (rest, ""),
    };
    if digits.len() < 2 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(format!("{}.{}{t}", &digits[..1], &digits[1..]))
}

/// An identifier split into (python, platform): `cp311-manylinux_x86_64` → (`3.11`,
/// `manylinux_x86_64`).
fn split_identifier(id: &str) -> Option<(String, String)> {
    let (py, platform) = id.split_once('-')?;
    Some((python_of_tag(py)?, platform.to_string()))
}

/// Python versions in numeric order (`3.9` before `3.10`), free-threaded after their version.
fn python_key(v: &str) -> (u32, u32, bool) {
    let t = v.ends_with('t');
    let v = v.trim_end_matches('t');
    let mut parts = v.split('.').map(|p| p.parse::<u32>().unwrap_or(u32::MAX));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0), t)
}

/// The platform of a target's row: the one it asked for (`manylinux_x86_64`, the default
/// policy, as its identifier says; `manylinux_2_28_x86_64` when it named one).
fn row_of(t: &TargetResult) -> String {
    t.platform_tag.clone()
}

fn grid(h: &mut String, targets: &[&TargetResult], skipped: &[Skipped]) {
    let skipped: Vec<(String, String, &Skipped)> = skipped
        .iter()
        .filter_map(|s| split_identifier(&s.identifier).map(|(py, p)| (py, p, s)))
        .collect();
    let mut pythons: Vec<String> = targets
        .iter()
        .map(|t| t.python.clone())
        .chain(skipped.iter().map(|(py, _, _)| py.clone()))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    pythons.sort_by_key(|v| python_key(v));
    // Rows in the order the targets were planned, then the platforms only skips name.
    let mut rows: Vec<String> = Vec::new();
    for p in targets
        .iter()
        .map(|t| row_of(t))
        .chain(skipped.iter().map(|(_, p, _)| p.clone()))
    {
        if !rows.contains(&p) {
            rows.push(p);
        }
    }
    h.push_str("<table class=\"grid\" id=\"grid\">\n<thead><tr><th>platform \\ CPython</th>");
    for py in &pythons {
        let _ = write!(h, "<th>{}</th>", escape(py));
    }
    h.push_str("</tr></thead>\n<tbody>\n");
    for row in &rows {
        let _ = write!(h, "<tr><th>{}</th>", escape(row));
        for py in &pythons {
            let here: Vec<&&TargetResult> = targets
                .iter()
                .filter(|t| &row_of(t) == row && &t.python == py)
                .collect();
            let skip = skipped
                .iter()
                .find(|(spy, sp, _)| spy == py && sp == row)
                .map(|(_, _, s)| *s);
            if here.is_empty() {
                match skip {
                    Some(s) => {
                        let _ = write!(
                            h,
                            "<td class=\"cell skipped\" data-identifier=\"{id}\" title=\"{why}\">\
                             <span class=\"result\">skipped</span>\
                             <span class=\"meta\">{why}</span></td>",
                            id = escape(&s.identifier),
                            why = escape(&s.reason),
                        );
                    }
                    None => h.push_str("<td class=\"cell empty\"></td>"),
                }
                continue;
            }
            // Several targets in one cell: the same identifier under several policies.
            let worst = here
                .iter()
                .map(|t| t.result)
                .find(|o| !o.ok())
                .unwrap_or(here[0].result);
            let _ = write!(
                h,
                "<td class=\"cell {}\" data-identifier=\"{}\">",
                result_class(worst),
                escape(&here[0].identifier)
            );
            for t in here {
                let _ = write!(
                    h,
                    "<a href=\"#t-{anchor}\"><span class=\"result\">{result}</span></a>\
                     <span class=\"meta\">{mode}{toolchain}</span>\
                     <span class=\"meta\"><code>{tag}</code></span>",
                    anchor = escape(&anchor(t)),
                    result = escape(t.result.label()),
                    mode = escape(&t.mode.to_string()),
                    toolchain = t
                        .toolchain
                        .as_deref()
                        .map(|c| format!(", {}", escape(c)))
                        .unwrap_or_default(),
                    tag = escape(t.wheel_tag.as_deref().unwrap_or(&t.platform_tag)),
                );
            }
            h.push_str("</td>");
        }
        h.push_str("</tr>\n");
    }
    h.push_str("</tbody>\n</table>\n");
}

/// The id of a target's row in the details table.
fn anchor(t: &TargetResult) -> String {
    match &t.project {
        Some(p) => format!("{p}-{}", t.target),
        None => t.target.clone(),
    }
}

fn secs(v: Option<f64>) -> String {
    v.map_or("-".into(), |s| format!("{s:.1}"))
}

fn details(h: &mut String, r: &Report, dir: &Path, group: bool) {
    h.push_str("<h2>Steps, resources and logs</h2>\n<table class=\"details\" id=\"details\">\n");
    h.push_str(
        "<thead><tr><th>target</th><th>result</th><th>mode</th><th>toolchain</th>\
         <th>built on</th><th>tested on</th><th>wheel</th><th>prepare s</th>\
         <th>before-all s</th><th>build s</th><th>test s</th><th>total s</th>\
         <th>peak RSS</th><th>disk</th><th>logs</th></tr></thead>\n<tbody>\n",
    );
    for t in &r.targets {
        let name = match (&t.project, group) {
            (Some(p), true) => format!("{p}/{}", t.target),
            _ => t.target.clone(),
        };
        let logs: Vec<String> = [
            ("toolchain", t.toolchain_log.as_deref()),
            ("before-all", t.before_all_log.as_deref()),
            ("build", t.build_log.as_deref()),
            ("test", t.test_log.as_deref()),
            ("pookie-ns", Some(t.worker_log.as_path())),
        ]
        .into_iter()
        .filter_map(|(what, p)| p.map(|p| (what, p)))
        .map(|(what, p)| format!("<a href=\"{}\">{}</a>", escape(&href(p, dir)), escape(what)))
        .collect();
        let wheel = match (&t.wheel, &t.wheel_built_by) {
            (Some(w), Some(by)) => format!("{w} (built by {by})"),
            (Some(w), None) => w.clone(),
            (None, _) => "-".into(),
        };
        let mut result = escape(t.result.label());
        if let Some(e) = &t.error {
            let _ = write!(result, "<br><span class=\"meta\">{}</span>", escape(e));
        }
        let _ = writeln!(
            h,
            "<tr id=\"t-{anchor}\" class=\"{class}\"><td>{name}</td><td>{result}</td>\
             <td>{mode}</td><td>{toolchain}</td><td>{build_base}</td><td>{test_base}</td>\
             <td><code>{wheel}</code></td><td class=\"num\">{prep}</td>\
             <td class=\"num\">{before}</td><td class=\"num\">{build}</td>\
             <td class=\"num\">{test}</td><td class=\"num\">{total:.1}</td>\
             <td class=\"num\">{rss}</td><td class=\"num\">{disk}</td><td>{logs}</td></tr>",
            anchor = escape(&anchor(t)),
            class = result_class(t.result),
            name = escape(&name),
            mode = escape(&t.mode.to_string()),
            toolchain = escape(t.toolchain.as_deref().unwrap_or("-")),
            build_base = escape(&t.build_base),
            test_base = escape(&t.test_base),
            wheel = escape(&wheel),
            prep = secs(t.prepare_secs),
            before = secs(t.before_all_secs),
            build = secs(t.build_secs),
            test = secs(t.test_secs),
            total = t.total_secs,
            rss = t
                .peak_rss_kib
                .map_or("-".into(), |k| human_size(k.saturating_mul(1024))),
            disk = t.workspace_bytes.map_or("-".into(), human_size),
            logs = logs.join(" "),
        );
    }
    h.push_str("</tbody>\n</table>\n");
}

fn skipped_list(h: &mut String, skipped: &[Skipped]) {
    h.push_str("<h2>Skipped</h2>\n");
    if skipped.is_empty() {
        h.push_str("<p>Nothing was skipped.</p>\n");
        return;
    }
    h.push_str(
        "<table class=\"skipped-list\" id=\"skipped\">\n<thead><tr><th>identifier</th>\
         <th>reason</th></tr></thead>\n<tbody>\n",
    );
    for s in skipped {
        let _ = writeln!(
            h,
            "<tr class=\"skipped\"><td><code>{}</code></td><td>{}</td></tr>",
            escape(&s.identifier),
            escape(&s.reason)
        );
    }
    h.push_str("</tbody>\n</table>\n");
}

fn sources(h: &mut String, r: &Report) {
    if r.sources.is_empty() {
        return;
    }
    h.push_str(
        "<h2>Sources</h2>\n<table class=\"sources\">\n<thead><tr><th>sdist</th>\
         <th>sha256</th></tr></thead>\n<tbody>\n",
    );
    for s in &r.sources {
        let _ = writeln!(
            h,
            "<tr><td>{} {}</td><td><code>{}</code></td></tr>",
            escape(&s.name),
            escape(&s.version),
            escape(&s.sha256)
        );
    }
    h.push_str("</tbody>\n</table>\n");
}

/// Text made safe for HTML content and attribute values (quoted with `"`).
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A link to `path` from a page in `dir`: relative when `path` is under `dir` (the logs are), a
/// `file:` URL otherwise; every byte but unreserved ones and `/` percent-encoded, so that a path
/// can never turn into another scheme (`javascript:`, `http:`).
fn href(path: &Path, dir: &Path) -> String {
    let (prefix, rel) = match path.strip_prefix(dir) {
        Ok(rel) => ("", rel),
        Err(_) => ("file://", path),
    };
    let mut out = String::from(prefix);
    for b in rel.as_os_str().as_encoded_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(*b as char)
            }
            b => {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    // A relative path whose first segment held a colon would read as a scheme: it is encoded
    // above (`%3A`), and one that starts with `/` is absolute, which needs `file://`.
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::report::SetupState;
    use crate::project::Mode;
    use std::path::PathBuf;

    fn target(id: &str, python: &str, outcome: Outcome) -> TargetResult {
        let platform = id.split_once('-').unwrap().1.to_string();
        TargetResult {
            project: None,
            target: id.into(),
            identifier: id.into(),
            arch: "x86_64".into(),
            python: python.into(),
            platform_tag: platform,
            mode: Mode::Cross,
            toolchain: Some("zig".into()),
            toolchain_setup: SetupState::Cached,
            repair: "auditwheel".into(),
            build_base: "debian-bookworm/amd64".into(),
            test_base: "debian-bookworm/arm64".into(),
            image: None,
            result: outcome,
            wheel: Some(format!("fastmath-0.1.0-{id}.whl")),
            wheel_tag: Some("manylinux2014_aarch64.manylinux_2_17_aarch64".into()),
            wheel_path: None,
            wheel_built_by: None,
            before_all: SetupState::None,
            prepare_secs: Some(0.4),
            before_all_secs: None,
            build_secs: Some(2.5),
            test_secs: Some(7.5),
            total_secs: 10.2,
            build_exit_code: Some(0),
            test_exit_code: Some(if outcome.ok() { 0 } else { 1 }),
            peak_rss_kib: Some(4096),
            workspace_bytes: Some(5 << 20),
            before_all_log: None,
            toolchain_log: None,
            build_log: Some(format!("/store/output/stable/fastmath/{id}/build.log").into()),
            test_log: Some(format!("/store/output/stable/fastmath/{id}/test.log").into()),
            worker_log: format!("/store/output/stable/fastmath/{id}/pookie-ns.log").into(),
            kept_workspace: None,
            error: None,
        }
    }

    fn report(targets: Vec<TargetResult>, skipped: Vec<Skipped>) -> Report {
        Report {
            bundle: "/src/c-ext".into(),
            project: "fastmath".into(),
            branch: "stable".into(),
            out: "/src/dist".into(),
            jobs: 2,
            total_secs: 12.0,
            passed: targets.iter().filter(|t| t.result.ok()).count(),
            failed: targets.iter().filter(|t| !t.result.ok()).count(),
            skipped,
            targets,
            sources: vec![],
        }
    }

    #[test]
    fn the_grid_has_a_cell_per_arch_and_python_with_the_failure_marked() {
        let r = report(
            vec![
                target("cp311-manylinux_x86_64", "3.11", Outcome::Passed),
                target("cp313-manylinux_x86_64", "3.13", Outcome::Passed),
                target("cp311-manylinux_aarch64", "3.11", Outcome::TestFailed),
            ],
            vec![Skipped {
                identifier: "cp39-manylinux_x86_64".into(),
                reason: "no base OS <provides> it".into(),
            }],
        );
        let page = render(&r, Path::new("/store/output/stable/fastmath"));
        // Columns in numeric order: 3.9 before 3.11.
        let head = page.split("<thead>").nth(1).unwrap();
        let (p39, p311, p313) = (
            head.find(">3.9<").unwrap(),
            head.find(">3.11<").unwrap(),
            head.find(">3.13<").unwrap(),
        );
        assert!(p39 < p311 && p311 < p313, "{head}");
        assert!(page.contains(
            "<td class=\"cell result-test-failed\" data-identifier=\"cp311-manylinux_aarch64\">"
        ));
        assert!(page.contains(
            "<td class=\"cell result-passed\" data-identifier=\"cp313-manylinux_x86_64\">"
        ));
        // aarch64 has no 3.13 target: an empty cell, not a skipped one.
        let aarch64_row = page
            .split("<tr><th>manylinux_aarch64</th>")
            .nth(1)
            .unwrap()
            .split("</tr>")
            .next()
            .unwrap();
        assert_eq!(
            aarch64_row.matches("cell empty").count(),
            2,
            "{aarch64_row}"
        );
        // The skip, escaped, in the grid and the list.
        assert!(page.contains("data-identifier=\"cp39-manylinux_x86_64\""));
        assert!(page.contains("no base OS &lt;provides&gt; it"));
        assert!(!page.contains("<provides>"));
        // Logs relative to the page; steps' times; the wheel's tag.
        assert!(page.contains("href=\"cp311-manylinux_aarch64/test.log\""));
        assert!(page.contains("<td class=\"num\">2.5</td>"));
        assert!(page.contains("manylinux2014_aarch64.manylinux_2_17_aarch64"));
        assert!(page.contains("4.00 MiB") && page.contains("5.00 MiB"));
    }

    #[test]
    fn nothing_is_fetched_and_every_value_is_escaped() {
        let mut t = target("cp311-manylinux_x86_64", "3.11", Outcome::BuildFailed);
        t.error = Some("<script>alert(1)</script>\" onmouseover=\"x".into());
        t.toolchain = Some("<img src=\"http://evil.example/x.png\">".into());
        t.build_log = Some(PathBuf::from("/elsewhere/javascript:alert(1) \"q\".log"));
        let mut r = report(vec![t], vec![]);
        r.project = "a&b".into();
        let page = render(&r, Path::new("/store/output/stable/fastmath"));
        assert!(!page.contains("<script"), "{page}");
        assert!(!page.contains("<img"), "{page}");
        assert!(!page.contains("\" onmouseover"), "{page}");
        assert!(page.contains("a&amp;b"));
        assert!(page.contains("href=\"file:///elsewhere/javascript%3Aalert%281%29%20%22q%22.log\""));
        // No attribute that loads anything, no link off the machine.
        for needle in ["src=\"", "href=\"http", "url(", "@import"] {
            assert!(!page.contains(needle), "{needle} in {page}");
        }
        assert!(page.contains("default-src 'none'"));
    }

    #[test]
    fn python_tags_and_identifiers_split() {
        assert_eq!(python_of_tag("cp39").as_deref(), Some("3.9"));
        assert_eq!(python_of_tag("cp314t").as_deref(), Some("3.14t"));
        assert_eq!(python_of_tag("pp311"), None);
        assert_eq!(
            split_identifier("cp311-musllinux_x86_64"),
            Some(("3.11".into(), "musllinux_x86_64".into()))
        );
        let mut v = vec!["3.13", "3.9", "3.14t", "3.14", "3.10"];
        v.sort_by_key(|v| python_key(v));
        assert_eq!(v, ["3.9", "3.10", "3.13", "3.14", "3.14t"]);
    }
}
