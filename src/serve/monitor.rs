//! Resource figures, as aoinb planned them ("rusage every 3 seconds", `df` on the build folder):
//! a task's process tree read from /proc (the `build` child and every descendant, sandboxes
//! included: the host's /proc shows them with their host pids), the disk use of its files, and
//! the builder's load, memory and free disk. pookie-ns has no cgroup of its own to read.

use std::collections::HashMap;
use std::path::Path;

use serde::Serialize;

/// One line of /proc/PID/stat, the fields we use.
#[derive(Debug, Clone, Copy)]
pub struct Stat {
    pub ppid: i32,
    /// utime + stime + cutime + cstime, in clock ticks: the process's CPU and that of the
    /// children it has waited for.
    pub ticks: u64,
    /// Start time after boot, in clock ticks: with the pid, it names one process for good.
    pub start: u64,
    pub rss_pages: u64,
    /// Dead but not yet reaped.
    pub zombie: bool,
}

pub fn stat(pid: i32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text)
}

fn parse_stat(text: &str) -> Option<Stat> {
    // The command name may hold spaces and parentheses: the fields start after the last ')'.
    let rest = &text[text.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
    // Fields from 3 (state) on: ppid 4, utime 14 .. cstime 17, starttime 22, rss 24.
    Some(Stat {
        ppid: f.get(1)?.parse().ok()?,
        ticks: n(11)? + n(12)? + n(13)? + n(14)?,
        start: n(19)?,
        rss_pages: n(21)?,
        zombie: f.first() == Some(&"Z"),
    })
}

fn ticks_per_second() -> f64 {
    // SAFETY: sysconf only reads a constant.
    match unsafe { libc::sysconf(libc::_SC_CLK_TCK) } {
        n if n > 0 => n as f64,
        _ => 100.0,
    }
}

fn page_kib() -> u64 {
    // SAFETY: sysconf only reads a constant.
    match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
        n if n > 0 => n as u64 / 1024,
        _ => 4,
    }
}

/// Every live process and its stat.
fn all_processes() -> HashMap<i32, Stat> {
    let mut out = HashMap::new();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            if let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) {
                if let Some(s) = stat(pid) {
                    out.insert(pid, s);
                }
            }
        }
    }
    out
}

/// `root` and its descendants (empty when it is gone).
pub fn tree(root: i32) -> Vec<i32> {
    tree_in(&all_processes(), root)
}

fn tree_in(procs: &HashMap<i32, Stat>, root: i32) -> Vec<i32> {
    if !procs.contains_key(&root) {
        return Vec::new();
    }
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    for (pid, s) in procs {
        children.entry(s.ppid).or_default().push(*pid);
    }
    let mut out = vec![root];
    let mut i = 0;
    while i < out.len() {
        if let Some(c) = children.get(&out[i]) {
            out.extend(c);
        }
        i += 1;
    }
    out
}

/// CPU seconds and resident memory (KiB) of `root`'s process tree now.
pub fn sample_tree(root: i32) -> (f64, u64) {
    let procs = all_processes();
    let (mut ticks, mut pages) = (0u64, 0u64);
    for pid in tree_in(&procs, root) {
        let s = procs[&pid];
        ticks += s.ticks;
        pages += s.rss_pages;
    }
    (ticks as f64 / ticks_per_second(), pages * page_kib())
}

/// This process's resident memory, KiB (`VmRSS`).
pub fn self_rss_kib() -> u64 {
    status_kib("/proc/self/status", "VmRSS:")
}

fn status_kib(path: &str, key: &str) -> u64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Host {
    pub load: [f64; 3],
    pub cpus: usize,
    pub mem_total_kib: u64,
    pub mem_available_kib: u64,
    pub store_disk_free_bytes: u64,
    pub store_disk_total_bytes: u64,
    pub server_rss_kib: u64,
}

/// The builder's figures: load, memory, the free space where the store lives.
pub fn host(store: &Path) -> Host {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut l = load
        .split_whitespace()
        .map(|v| v.parse::<f64>().unwrap_or(0.0));
    let (free, total) = match nix::sys::statvfs::statvfs(store) {
        Ok(s) => (
            s.blocks_available() * s.fragment_size(),
            s.blocks() * s.fragment_size(),
        ),
        Err(_) => (0, 0),
    };
    Host {
        load: [
            l.next().unwrap_or(0.0),
            l.next().unwrap_or(0.0),
            l.next().unwrap_or(0.0),
        ],
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        mem_total_kib: status_kib("/proc/meminfo", "MemTotal:"),
        mem_available_kib: status_kib("/proc/meminfo", "MemAvailable:"),
        store_disk_free_bytes: free,
        store_disk_total_bytes: total,
        server_rss_kib: self_rss_kib(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_with_odd_names_parse() {
        let line = "1234 (a) b (c)) S 77 1234 1234 0 -1 4194560 100 0 0 0 5 6 7 8 20 0 1 0 \
                    999 1000000 321 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0";
        let s = parse_stat(line).unwrap();
        assert_eq!((s.ppid, s.ticks, s.start, s.rss_pages), (77, 26, 999, 321));
    }

    #[test]
    fn this_process_tree_has_cpu_and_memory() {
        let me = std::process::id() as i32;
        // Burn CPU until the kernel has counted a tick of it (bounded).
        let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut x = 0u64;
        while stat(me).unwrap().ticks == 0 && std::time::Instant::now() < until {
            for i in 0..100_000u64 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
            }
        }
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let t = tree(me);
        assert!(t.contains(&(child.id() as i32)), "{t:?}");
        let (cpu, rss) = sample_tree(me);
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(cpu > 0.0 && rss > 1000, "{cpu} {rss}");
        assert!(self_rss_kib() > 1000);
        assert!(host(Path::new("/")).mem_total_kib > 0);
    }
}
