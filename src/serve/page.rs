//! What people and Prometheus read: the status page at `/` (server-rendered HTML that reloads
//! itself every 5 s: the queue, running tasks with their log tail and resource sparklines,
//! finished tasks with their results and wheel links) and `/metrics` in Prometheus's text format.

use std::fmt::Write as _;
use std::io::{Read, Seek, SeekFrom};

use super::monitor::Host;
use super::tasks::{Sample, Task, Tasks, TERMINAL};

/// The last bytes of the log shown for a running task.
const TAIL_BYTES: u64 = 4096;

pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn tail(tasks: &Tasks, id: i64) -> String {
    let p = tasks.task_dir(id).join("log");
    let Ok(mut f) = std::fs::File::open(p) else {
        return String::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(TAIL_BYTES)));
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

/// An inline SVG polyline of `values`, scaled to its own maximum.
pub fn sparkline(values: &[f64]) -> String {
    let (w, h) = (160.0, 28.0);
    let max = values.iter().cloned().fold(0.0f64, f64::max).max(1e-9);
    let n = values.len().max(2) as f64 - 1.0;
    let points: Vec<String> = values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            format!(
                "{:.1},{:.1}",
                i as f64 * w / n,
                h - v / max * (h - 2.0) - 1.0
            )
        })
        .collect();
    format!(
        "<svg class=\"spark\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\">\
         <polyline fill=\"none\" stroke=\"#36c\" stroke-width=\"1.5\" points=\"{}\"/></svg>",
        points.join(" ")
    )
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn targets(options: &super::options::TaskOptions) -> String {
    let mut v = options.target.clone();
    v.extend(options.python.iter().map(|p| format!("py{p}")));
    if v.is_empty() {
        "default".into()
    } else {
        v.join(" ")
    }
}

fn resources_cells(t: &Task, samples: &[Sample]) -> String {
    let rss: Vec<f64> = samples.iter().map(|s| s.rss_kib as f64).collect();
    let cpu: Vec<f64> = samples.iter().map(|s| s.cpu_seconds).collect();
    format!(
        "<td>{:.2} s {}</td><td>{} (peak {}) {}</td><td>{}</td>",
        t.resources.cpu_seconds,
        sparkline(&cpu),
        mib(t.resources.rss_kib),
        mib(t.resources.peak_rss_kib),
        sparkline(&rss),
        crate::store::human_size(t.resources.disk_bytes)
    )
}

pub fn render(all: &[Task], tasks: &Tasks, host: &Host, jobs: usize) -> String {
    let mut h = String::new();
    let count = |s: &str| all.iter().filter(|t| t.state == s).count();
    let _ = write!(
        h,
        "<!doctype html><html><head><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"5\">\
         <title>pookie-ns serve</title><style>body{{font:14px sans-serif;margin:1.5em}}\
         table{{border-collapse:collapse;margin-bottom:1.5em}}td,th{{border:1px solid #ccc;padding:3px 8px;text-align:left}}\
         pre{{background:#f4f4f4;padding:6px;max-height:16em;overflow:auto;font-size:12px;white-space:pre-wrap}}\
         .passed{{color:#080}}.failed,.error{{color:#c00}}.cancelled,.interrupted{{color:#a60}}</style></head><body>\
         <h1>pookie-ns serve</h1><p id=\"builder\">load {:.2} {:.2} {:.2} on {} CPUs · memory available {} of {} · \
         store disk free {} · {} running of {} slots · {} queued</p>",
        host.load[0],
        host.load[1],
        host.load[2],
        host.cpus,
        mib(host.mem_available_kib),
        mib(host.mem_total_kib),
        crate::store::human_size(host.store_disk_free_bytes),
        count("running"),
        jobs,
        count("queued"),
    );
    h.push_str("<h2>Queue</h2><table id=\"queue\"><tr><th>task</th><th>branch</th><th>targets</th><th>project</th></tr>");
    for t in all
        .iter()
        .filter(|t| t.state == "queued" || t.state == "new")
    {
        let _ = write!(
            h,
            "<tr><td>{} ({})</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            t.id,
            t.state,
            escape(t.options.branch()),
            escape(&targets(&t.options)),
            escape(t.project.as_deref().unwrap_or("(no bundle yet)"))
        );
    }
    h.push_str("</table><h2>Running</h2>");
    for t in all.iter().filter(|t| t.state == "running") {
        let samples = tasks.samples(t.id).unwrap_or_default();
        let _ = write!(
            h,
            "<div class=\"running\" id=\"task-{id}\"><h3>task {id}: {} on {}</h3><table><tr><th>CPU</th>\
             <th>memory</th><th>disk</th></tr><tr>{}</tr></table><pre class=\"log\">{}</pre></div>",
            escape(&targets(&t.options)),
            escape(t.options.branch()),
            resources_cells(t, &samples),
            escape(&tail(tasks, t.id)),
            id = t.id,
        );
    }
    h.push_str(
        "<h2>Finished</h2><table id=\"finished\"><tr><th>task</th><th>result</th><th>targets</th>\
                <th>CPU</th><th>memory</th><th>disk</th><th>wheels</th><th>links</th></tr>",
    );
    for t in all
        .iter()
        .rev()
        .filter(|t| TERMINAL.contains(&t.state.as_str()))
    {
        let samples = tasks.samples(t.id).unwrap_or_default();
        let wheels: Vec<String> = std::fs::read_dir(tasks.task_dir(t.id).join("wheels"))
            .map(|rd| {
                rd.flatten()
                    .filter_map(|e| e.file_name().into_string().ok())
                    .filter(|n| n.ends_with(".whl"))
                    .map(|n| {
                        format!(
                            "<a href=\"/task/{}/wheels/{n}\">{n}</a>",
                            t.id,
                            n = escape(&n)
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let _ = write!(
            h,
            "<tr><td>{id}</td><td class=\"{s}\" title=\"{m}\">{s}</td><td>{}</td>{}<td>{}</td>\
             <td><a href=\"/task/{id}/log\">log</a> <a href=\"/task/{id}/report\">report</a></td></tr>",
            escape(&targets(&t.options)),
            resources_cells(t, &samples),
            wheels.join("<br>"),
            id = t.id,
            s = escape(&t.state),
            m = escape(t.message.as_deref().unwrap_or("")),
        );
    }
    h.push_str("</table></body></html>\n");
    h
}

/// Prometheus text format: task counts by state, each running task's figures, the host's.
pub fn metrics(all: &[Task], host: &Host, requests: u64, errors: u64) -> String {
    let mut m = String::new();
    m.push_str("# HELP pookie_ns_tasks Tasks by state.\n# TYPE pookie_ns_tasks gauge\n");
    for state in ["new", "queued", "running"].iter().chain(TERMINAL.iter()) {
        let n = all.iter().filter(|t| t.state == *state).count();
        let _ = writeln!(m, "pookie_ns_tasks{{state=\"{state}\"}} {n}");
    }
    let running: Vec<&Task> = all.iter().filter(|t| t.state == "running").collect();
    for (name, help, value) in [
        (
            "pookie_ns_task_cpu_seconds",
            "CPU seconds of a running task's process tree.",
            &(|t: &Task| t.resources.cpu_seconds) as &dyn Fn(&Task) -> f64,
        ),
        (
            "pookie_ns_task_rss_bytes",
            "Resident memory of a running task's process tree.",
            &|t: &Task| (t.resources.rss_kib * 1024) as f64,
        ),
        (
            "pookie_ns_task_peak_rss_bytes",
            "Peak resident memory of a running task's process tree.",
            &|t: &Task| (t.resources.peak_rss_kib * 1024) as f64,
        ),
        (
            "pookie_ns_task_disk_bytes",
            "Disk used by a running task's files.",
            &|t: &Task| t.resources.disk_bytes as f64,
        ),
    ] {
        let _ = writeln!(m, "# HELP {name} {help}\n# TYPE {name} gauge");
        for t in &running {
            let _ = writeln!(m, "{name}{{task=\"{}\"}} {}", t.id, value(t));
        }
    }
    for (name, help, kind, value) in [
        (
            "pookie_ns_http_requests_total",
            "HTTP requests answered.",
            "counter",
            requests as f64,
        ),
        (
            "pookie_ns_http_errors_total",
            "HTTP requests answered with a 4xx or 5xx status.",
            "counter",
            errors as f64,
        ),
        (
            "pookie_ns_load1",
            "The host's 1-minute load average.",
            "gauge",
            host.load[0],
        ),
        (
            "pookie_ns_memory_available_bytes",
            "The host's available memory.",
            "gauge",
            (host.mem_available_kib * 1024) as f64,
        ),
        (
            "pookie_ns_store_disk_free_bytes",
            "Free space on the store's filesystem.",
            "gauge",
            host.store_disk_free_bytes as f64,
        ),
        (
            "pookie_ns_server_rss_bytes",
            "The server's own resident memory.",
            "gauge",
            (host.server_rss_kib * 1024) as f64,
        ),
    ] {
        let _ = writeln!(
            m,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_and_sparklines_scale() {
        assert_eq!(
            escape("<a href='x'>&</a>"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&lt;/a&gt;"
        );
        let s = sparkline(&[0.0, 10.0]);
        assert!(s.contains("points=\"0.0,27.0 160.0,1.0\""), "{s}");
    }
}
