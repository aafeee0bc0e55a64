//! Keeps `bench/run` working: its `--quick` mode (one run per figure, smaller sizes) against the
//! binary under test must exit 0 and print every row of the table, each pookie-ns cell a time
//! (every feature the bench measures exists now) and each peer cell a time or the reason the peer
//! cannot run here. The full bench is too slow and too noisy for CI; this is all CI runs.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::{require, FOREIGN_CACHE};

/// Every row bench/run prints, by its key.
const ROWS: &[&str] = &[
    "1a", "1b", "1c", "1d", "2a", "2b", "3a", "3b", "3c", "4a", "4b", "4c", "4d", "4e", "5", "9a",
    "9b",
];

fn is_time(cell: &str) -> bool {
    let Some((n, unit)) = cell.split_once(' ') else {
        return false;
    };
    n.parse::<f64>().is_ok_and(|v| v > 0.0) && (unit == "ms" || unit == "s")
}

/// A peer cell without a number must say why: root needed, not installed, cannot run here.
fn is_reason(cell: &str) -> bool {
    cell == "needs root"
        || cell == "not built yet"
        || cell.starts_with("cannot run here: ")
        || cell.contains("not installed")
        || cell.starts_with("full bench only (")
}

#[test]
fn quick_bench_prints_every_row() {
    for arch in ["amd64", "arm64"] {
        let tarball = Path::new(FOREIGN_CACHE).join(format!("debian-bookworm-{arch}.tar.zst"));
        if !require(
            tarball.exists(),
            &format!("{} (scripts/build-test-rootfs)", tarball.display()),
        ) {
            return;
        }
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/run");
    let out = Command::new(&script)
        .arg("--quick")
        .env("POOKIE_NS_BIN", env!("CARGO_BIN_EXE_pookie-ns"))
        // Not root's real ~/.cache (tests/user_caches.rs): the bench's pookie-ns runs and its
        // gzip copies of the tarballs are kept with the suite's fixtures instead.
        .env(
            "XDG_CACHE_HOME",
            common::FOREIGN_CACHE.to_owned() + "/bench-cache",
        )
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("stdout:\n{stdout}\nstderr (tail):\n{}", tail(&stderr, 40));
    assert!(out.status.success(), "bench/run --quick: {:?}", out.status);

    assert!(stdout.starts_with("machine: "), "machine first: {stdout}");
    assert!(stdout.contains("cores"), "{stdout}");
    assert!(stdout.contains("kernel"), "{stdout}");
    assert!(stdout.contains("pookie-ns: commit "), "{stdout}");
    for key in ROWS {
        let prefix = format!("| {key}. ");
        let line = stdout
            .lines()
            .find(|l| l.starts_with(&prefix))
            .unwrap_or_else(|| panic!("row {key} missing:\n{stdout}"));
        // | label | pookie-ns | peer | ratio |
        let cells: Vec<&str> = line.trim_matches('|').split(" | ").map(str::trim).collect();
        assert_eq!(cells.len(), 4, "row {key}: {line}");
        let (ours, peer, ratio) = (cells[1], cells[2], cells[3]);
        assert!(is_time(ours), "row {key}: pookie-ns cell {ours:?}: {line}");
        assert!(
            is_time(peer) || is_reason(peer),
            "row {key}: peer cell {peer:?}: {line}"
        );
        if is_time(ours) && is_time(peer) {
            assert!(ratio.ends_with('×'), "row {key}: ratio {ratio:?}");
        }
    }
    // The wheel-matrix rows, the first build, the group build and the Rust row take many
    // minutes: --quick prints them with the reason.
    for key in ["6", "7", "8", "10", "11"] {
        let prefix = format!("| {key}. ");
        let line = stdout
            .lines()
            .find(|l| l.starts_with(&prefix))
            .unwrap_or_else(|| panic!("row {key} missing:\n{stdout}"));
        assert!(line.contains("--quick"), "row {key}: {line}");
    }
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
