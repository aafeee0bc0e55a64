//! The archive importer against archives built here, byte by byte where a name is hostile (the
//! tar crate's Builder refuses `..` and absolute names, so headers are written by hand). Each test
//! unpacks into `<tmp>/root` next to an `<tmp>/outside` directory that must stay untouched. No
//! test needs root; the few that check what only root can do (owners, device nodes) say so and
//! return early otherwise.

mod common;

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use common::archive::{gzip, noise, xz, Tar, MTIME};
use pookie_ns::arch::Arch;
use pookie_ns::import::{
    detect_arch, unpack_archive, Compression, ImportError, ImportOptions, ImportSummary,
};
use sha2::Digest;
use tar::EntryType;

// ---------------------------------------------------------------------------------------------
// Building archives

fn compress(data: &[u8], c: Compression) -> Vec<u8> {
    match c {
        Compression::None => data.to_vec(),
        Compression::Gzip => gzip(data),
        Compression::Xz => xz(data),
        Compression::Zstd => zstd::encode_all(data, 3).unwrap(),
    }
}

/// The first 64 bytes of an ELF executable for `machine` (64-bit little endian).
fn fake_elf(machine: u16) -> Vec<u8> {
    let mut h = vec![0u8; 64];
    h[..4].copy_from_slice(b"\x7fELF");
    h[4] = 2; // 64-bit
    h[5] = 1; // little endian
    h[6] = 1; // version
    h[16] = 2; // ET_EXEC
    h[18..20].copy_from_slice(&machine.to_le_bytes());
    h
}

// ---------------------------------------------------------------------------------------------
// A scene: <tmp>/root to unpack into, <tmp>/outside that must stay as it is

struct Scene {
    tmp: tempfile::TempDir,
    root: PathBuf,
    outside: PathBuf,
}

impl Scene {
    fn new() -> Scene {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        let outside = tmp.path().join("outside");
        fs::create_dir(&root).unwrap();
        fs::create_dir(&outside).unwrap();
        Scene { tmp, root, outside }
    }

    fn write_archive(&self, bytes: &[u8]) -> PathBuf {
        // The name says nothing: compression is told by magic bytes.
        let path = self.tmp.path().join("archive.bin");
        fs::write(&path, bytes).unwrap();
        path
    }

    fn unpack(&self, bytes: &[u8], opts: &ImportOptions) -> Result<ImportSummary, ImportError> {
        let archive = self.write_archive(bytes);
        unpack_archive(&archive, &self.root, opts, &mut |_| {})
    }

    /// Unpacks, expecting a refusal; checks it is an input error and nothing leaked outside.
    fn refused(&self, bytes: &[u8]) -> String {
        let err = self
            .unpack(bytes, &opts())
            .expect_err("the archive should be refused");
        assert!(err.is_input_error(), "not an input error: {err}");
        self.assert_outside_untouched();
        err.to_string()
    }

    fn assert_outside_untouched(&self) {
        let names: Vec<_> = fs::read_dir(&self.outside)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(
            names.is_empty() || names == ["f"],
            "written outside: {names:?}"
        );
    }
}

impl Drop for Scene {
    /// Read-only directories from an archive would stop an unprivileged cleanup.
    fn drop(&mut self) {
        fn writable(dir: &Path) {
            let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o755));
            for e in fs::read_dir(dir).into_iter().flatten().flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    writable(&e.path());
                }
            }
        }
        writable(self.tmp.path());
    }
}

fn opts() -> ImportOptions {
    ImportOptions {
        keep_owners: false,
        create_devices: false,
        keep_setid: false,
        max_entries: 10_000,
    }
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn mode(p: &Path) -> u32 {
    fs::symlink_metadata(p).unwrap().mode() & 0o7777
}

/// A case the machine cannot run: a SKIPPED line locally, a failure under `CI=true` (through
/// [`common::require`], as every other prerequisite).
fn skip(why: &str) {
    common::require(false, why);
}

// ---------------------------------------------------------------------------------------------
// A good archive

const BIG: usize = 3 << 20;

fn good_archive() -> Vec<u8> {
    let mut t = Tar::new();
    let long_name = format!("./usr/share/{}", "long-name-".repeat(15));
    let long_target = format!("/usr/lib/{}", "long-target-".repeat(10));
    t.dir("./", 0o755)
        .dir("./etc/", 0o755)
        .file("./etc/hostname", 0o644, b"first\n")
        .file("./etc/hostname", 0o640, b"second\n") // a repeated entry: the last one wins
        .dir("./usr/bin/", 0o755)
        .file("./usr/bin/dash", 0o755, &noise(BIG, 7))
        .file("./usr/bin/su", 0o4755, b"setuid\n")
        .symlink("./bin", "usr/bin")
        .symlink("./usr/bin/sh", "/usr/bin/dash")
        .hardlink("./usr/bin/dash.hard", "./usr/bin/dash")
        .hardlink("usr/bin/other-dir-link", "usr/bin/su")
        .dir("./tmp/", 0o1777)
        .dir("./ro/", 0o555)
        .file("./ro/inside", 0o444, b"read only\n")
        .dir("./dev/", 0o755)
        .node("./dev/null", EntryType::Char, 1, 3)
        .node("./dev/sda", EntryType::Block, 8, 0)
        .node("./run/initctl", EntryType::Fifo, 0, 0)
        .file(&long_name, 0o600, b"long\n")
        .symlink("./usr/lib/long", &long_target)
        .file("a/b/c/deep", 0o644, b"deep\n") // parents not listed: created
        .dir("./usr/", 0o755); // after its contents: its time is still the archive's
    t.bytes()
}

fn check_good_tree(root: &Path, summary: &ImportSummary, c: Compression) {
    let p = |s: &str| root.join(s);
    assert_eq!(fs::read(p("etc/hostname")).unwrap(), b"second\n");
    assert_eq!(mode(&p("etc/hostname")), 0o640);
    assert_eq!(fs::read(p("usr/bin/dash")).unwrap(), noise(BIG, 7));
    assert_eq!(mode(&p("usr/bin/dash")), 0o755);
    assert_eq!(
        mode(&p("usr/bin/su")),
        0o755,
        "setuid dropped without keep_setid"
    );
    assert_eq!(fs::read_link(p("bin")).unwrap(), Path::new("usr/bin"));
    assert_eq!(
        fs::read_link(p("usr/bin/sh")).unwrap(),
        Path::new("/usr/bin/dash")
    );
    let dash = fs::metadata(p("usr/bin/dash")).unwrap();
    let hard = fs::metadata(p("usr/bin/dash.hard")).unwrap();
    assert_eq!((dash.ino(), dash.nlink()), (hard.ino(), 2), "hard link");
    assert_eq!(
        fs::metadata(p("usr/bin/other-dir-link")).unwrap().ino(),
        fs::metadata(p("usr/bin/su")).unwrap().ino()
    );
    assert_eq!(mode(&p("tmp")), 0o1777);
    assert_eq!(mode(&p("ro")), 0o555);
    assert_eq!(fs::read(p("ro/inside")).unwrap(), b"read only\n");
    assert_eq!(mode(&p("ro/inside")), 0o444);
    assert!(!p("dev/null").exists() && !p("dev/sda").exists());
    let fifo = fs::symlink_metadata(p("run/initctl")).unwrap();
    assert!(fifo.file_type().is_fifo());
    assert_eq!(fifo.mode() & 0o7777, 0o666);
    let long_name = format!("usr/share/{}", "long-name-".repeat(15));
    assert_eq!(fs::read(p(&long_name)).unwrap(), b"long\n");
    assert_eq!(
        fs::read_link(p("usr/lib/long")).unwrap(),
        PathBuf::from(format!("/usr/lib/{}", "long-target-".repeat(10)))
    );
    assert_eq!(fs::read(p("a/b/c/deep")).unwrap(), b"deep\n");
    for timed in [
        "",
        "usr",
        "usr/bin",
        "ro",
        "etc",
        "etc/hostname",
        "usr/bin/dash",
    ] {
        let m = fs::symlink_metadata(p(timed)).unwrap();
        assert_eq!(m.mtime() as u64, MTIME, "mtime of {timed:?}");
    }
    assert_eq!(
        fs::symlink_metadata(p("usr/bin/sh")).unwrap().mtime() as u64,
        MTIME
    );
    assert_eq!(summary.compression, Some(c));
    assert_eq!(summary.skipped_devices, 2);
    assert_eq!(summary.entries, 22);
    let files = 6 + 7 + BIG + 7 + 10 + 5 + 5;
    assert_eq!(summary.unpacked_bytes, files as u64);
}

#[test]
fn a_good_archive_unpacks_alike_in_every_compression() {
    let plain = good_archive();
    for c in [
        Compression::None,
        Compression::Gzip,
        Compression::Xz,
        Compression::Zstd,
    ] {
        let s = Scene::new();
        let bytes = compress(&plain, c);
        let archive = s.write_archive(&bytes);
        let mut seen = Vec::new();
        let summary = unpack_archive(&archive, &s.root, &opts(), &mut |n| seen.push(n))
            .unwrap_or_else(|e| panic!("{c:?}: {e}"));
        check_good_tree(&s.root, &summary, c);
        assert_eq!(summary.archive_bytes, bytes.len() as u64);
        assert_eq!(
            summary.sha256,
            format!("{:x}", sha2::Sha256::digest(&bytes)),
            "{c:?}"
        );
        // Progress: increasing, every megabyte or so, the whole file at the end.
        assert!(seen.windows(2).all(|w| w[0] <= w[1]), "{seen:?}");
        assert!(seen.len() >= 3, "{c:?}: {seen:?}");
        assert_eq!(seen.last(), Some(&(bytes.len() as u64)));
        s.assert_outside_untouched();
    }
}

#[test]
fn setid_bits_are_kept_when_asked() {
    let s = Scene::new();
    let mut t = Tar::new();
    t.file("su", 0o4755, b"x").dir("shared", 0o2775);
    let o = ImportOptions {
        keep_setid: true,
        ..opts()
    };
    s.unpack(&t.bytes(), &o).unwrap();
    assert_eq!(mode(&s.root.join("su")), 0o4755);
    assert_eq!(mode(&s.root.join("shared")), 0o2775);
}

#[test]
fn owners_are_kept_when_asked() {
    if !is_root() {
        return skip("chown to other uids needs root");
    }
    let s = Scene::new();
    let mut t = Tar::new();
    let mut h = Tar::header(EntryType::Regular, 0o4755, 1);
    h.set_uid(1234);
    h.set_gid(5678);
    t.raw(h, b"owned", None, b"x");
    let mut h = Tar::header(EntryType::Symlink, 0o777, 0);
    h.set_uid(4321);
    h.set_gid(8765);
    t.raw(h, b"link", Some(b"owned"), b"");
    // PAX ids win over the header's.
    t.pax(&[("uid", b"2000000"), ("gid", b"3000000")]);
    t.file("pax", 0o644, b"p");
    let o = ImportOptions {
        keep_owners: true,
        keep_setid: true,
        ..opts()
    };
    s.unpack(&t.bytes(), &o).unwrap();
    let m = fs::metadata(s.root.join("owned")).unwrap();
    assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (1234, 5678, 0o4755));
    let m = fs::symlink_metadata(s.root.join("link")).unwrap();
    assert_eq!((m.uid(), m.gid()), (4321, 8765));
    let m = fs::metadata(s.root.join("pax")).unwrap();
    assert_eq!((m.uid(), m.gid()), (2_000_000, 3_000_000));
}

#[test]
fn sparse_entries_keep_their_holes() {
    // GNU sparse ('S'): 512 bytes of data at 1 MiB in a 2 MiB file; the zero-length block at the
    // end is how GNU tar records a trailing hole.
    fn octal(dst: &mut [u8], v: u64) {
        let s = format!("{v:0w$o}\0", w = dst.len() - 1);
        dst.copy_from_slice(s.as_bytes());
    }
    let s = Scene::new();
    let mut t = Tar::new();
    let mut h = Tar::header(EntryType::GNUSparse, 0o644, 512);
    {
        let gnu = h.as_gnu_mut().unwrap();
        octal(&mut gnu.sparse[0].offset, 1 << 20);
        octal(&mut gnu.sparse[0].numbytes, 512);
        octal(&mut gnu.sparse[1].offset, 2 << 20);
        octal(&mut gnu.sparse[1].numbytes, 0);
        octal(&mut gnu.realsize, 2 << 20);
    }
    t.raw(h, b"sparse", None, &[b'S'; 512]);
    let summary = s.unpack(&t.bytes(), &opts()).unwrap();
    let data = fs::read(s.root.join("sparse")).unwrap();
    let mut want = vec![0u8; 2 << 20];
    want[1 << 20..(1 << 20) + 512].fill(b'S');
    assert!(data == want, "sparse file contents differ");
    assert_eq!(summary.unpacked_bytes, 2 << 20);
    let blocks = fs::metadata(s.root.join("sparse")).unwrap().blocks();
    assert!(blocks * 512 < 1 << 20, "not sparse: {blocks} blocks");
}

// ---------------------------------------------------------------------------------------------
// Names that leave the root

#[test]
fn dot_dot_names_are_refused() {
    for name in ["../x", "a/../../x", "./../outside/x", "a/.."] {
        let s = Scene::new();
        let mut t = Tar::new();
        t.file("ok", 0o644, b"fine").file(name, 0o644, b"evil");
        let msg = s.refused(&t.bytes());
        assert!(
            msg.contains(&format!(
                "archive entry {name:?} escapes the root filesystem (..)"
            )),
            "{msg}"
        );
    }
}

#[test]
fn absolute_names_are_refused() {
    let s = Scene::new();
    let target = format!("{}/x", s.outside.display());
    for name in ["/etc/pookie-ns-import-test", target.as_str()] {
        let mut t = Tar::new();
        t.file(name, 0o644, b"evil");
        let msg = s.refused(&t.bytes());
        assert!(
            msg.contains(&format!("{name:?} is an absolute path")),
            "{msg}"
        );
    }
    assert!(!Path::new("/etc/pookie-ns-import-test").exists());
}

#[test]
fn long_and_pax_names_are_checked_too() {
    let s = Scene::new();
    let long = format!("{}/../../../outside/x", "d".repeat(120));
    let mut t = Tar::new();
    t.file(&long, 0o644, b"evil");
    assert!(s
        .refused(&t.bytes())
        .contains("escapes the root filesystem"));

    let mut t = Tar::new();
    t.pax(&[("path", b"../outside/x")])
        .file("innocent", 0o644, b"evil");
    let msg = s.refused(&t.bytes());
    assert!(msg.contains("\"../outside/x\" escapes"), "{msg}");

    let mut t = Tar::new();
    t.pax(&[("path", b"a\0b")]).file("innocent", 0o644, b"evil");
    assert!(s.refused(&t.bytes()).contains("NUL byte"));

    let mut t = Tar::new();
    t.pax(&[("linkpath", b"../outside/f")])
        .symlink("fine", "x")
        .pax(&[("linkpath", b"../outside/f")])
        .hardlink("h", "x");
    let msg = s.refused(&t.bytes());
    assert!(
        msg.contains("\"h\" is a hard link to \"../outside/f\""),
        "{msg}"
    );
}

// ---------------------------------------------------------------------------------------------
// Symlinks planted by earlier entries

#[test]
fn nothing_is_written_through_a_symlinked_directory() {
    let s = Scene::new();
    let abs = s.outside.display().to_string();
    for (target, entry) in [
        ("../outside", "a/passwd"),
        (abs.as_str(), "a/passwd"),
        (abs.as_str(), "./a/sub/passwd"),
        (".", "a/loop"), // even a symlink that stays inside is not walked through
    ] {
        let mut t = Tar::new();
        t.symlink("a", target).file(entry, 0o644, b"evil");
        let msg = s.refused(&t.bytes());
        assert!(
            msg.contains(&format!(
                "archive entry {entry:?} would be written through the symlink \"a\""
            )),
            "{msg}"
        );
    }
    // Every kind of entry, one level deeper.
    for kind in ["dir", "symlink", "hardlink", "fifo"] {
        let s = Scene::new();
        let mut t = Tar::new();
        t.file("f", 0o644, b"f")
            .dir("d", 0o755)
            .symlink("d/e", "../../outside");
        match kind {
            "dir" => t.dir("d/e/x/", 0o755),
            "symlink" => t.symlink("d/e/x", "/etc/passwd"),
            "hardlink" => t.hardlink("d/e/x", "f"),
            _ => t.node("d/e/x", EntryType::Fifo, 0, 0),
        };
        let msg = s.refused(&t.bytes());
        assert!(msg.contains("through the symlink \"d/e\""), "{kind}: {msg}");
    }
}

#[test]
fn symlink_chains_are_refused() {
    let s = Scene::new();
    let mut t = Tar::new();
    t.symlink("a", "b")
        .symlink("b", "../outside")
        .file("a/x", 0o644, b"evil");
    let msg = s.refused(&t.bytes());
    assert!(msg.contains("through the symlink \"a\""), "{msg}");
}

#[test]
fn a_repeated_name_replaces_a_symlink_rather_than_follow_it() {
    let s = Scene::new();
    fs::write(s.outside.join("f"), b"original").unwrap();
    let mut t = Tar::new();
    t.symlink("file", "../outside/f")
        .file("file", 0o644, b"new")
        .symlink("dir", "../outside")
        .dir("dir", 0o755)
        .file("dir/inside", 0o644, b"inside")
        .symlink("fifo", "../outside/f")
        .node("fifo", EntryType::Fifo, 0, 0)
        .file("plain", 0o644, b"x")
        .symlink("plain", "../outside/f")
        .dir("was-dir", 0o755)
        .file("was-dir", 0o644, b"now a file");
    s.unpack(&t.bytes(), &opts()).unwrap();
    assert_eq!(fs::read(s.outside.join("f")).unwrap(), b"original");
    assert_eq!(fs::read(s.root.join("file")).unwrap(), b"new");
    assert!(fs::symlink_metadata(s.root.join("dir")).unwrap().is_dir());
    assert_eq!(fs::read(s.root.join("dir/inside")).unwrap(), b"inside");
    assert!(fs::symlink_metadata(s.root.join("fifo"))
        .unwrap()
        .file_type()
        .is_fifo());
    assert_eq!(
        fs::read_link(s.root.join("plain")).unwrap(),
        Path::new("../outside/f")
    );
    assert_eq!(fs::read(s.root.join("was-dir")).unwrap(), b"now a file");
    s.assert_outside_untouched();
}

#[test]
fn a_file_where_a_directory_is_needed_is_refused() {
    let s = Scene::new();
    let mut t = Tar::new();
    t.file("f", 0o644, b"x").file("f/x", 0o644, b"y");
    let msg = s.refused(&t.bytes());
    assert!(msg.contains("needs \"f\" to be a directory"), "{msg}");
}

// ---------------------------------------------------------------------------------------------
// Hard links

#[test]
fn hard_links_out_of_the_root_are_refused() {
    let s = Scene::new();
    fs::write(s.outside.join("f"), b"secret").unwrap();
    let abs = format!("{}/f", s.outside.display());
    let cases: [(&str, &str); 6] = [
        ("/etc/passwd", "is an absolute path"),
        ("../outside/f", "escapes the root filesystem (..)"),
        (abs.as_str(), "is an absolute path"),
        ("s/f", "is a hard link through the symlink \"s\""),
        ("missing", "is not in the archive before it"),
        ("d", "is a hard link to the directory \"d\""),
    ];
    for (target, why) in cases {
        let mut t = Tar::new();
        t.symlink("s", "../outside")
            .dir("d", 0o755)
            .hardlink("h", target);
        let msg = s.refused(&t.bytes());
        assert!(msg.contains("archive entry \"h\""), "{msg}");
        assert!(msg.contains(why), "{target}: {msg}");
        assert_eq!(fs::metadata(s.outside.join("f")).unwrap().nlink(), 1);
    }
}

#[test]
fn a_hard_link_to_a_symlink_inside_links_the_symlink() {
    let s = Scene::new();
    let mut t = Tar::new();
    t.symlink("l", "/nonexistent/target")
        .hardlink("h", "l")
        .symlink("out", "../outside")
        .dir("sub", 0o755)
        .hardlink("sub/h2", "./out");
    s.unpack(&t.bytes(), &opts()).unwrap();
    let l = fs::symlink_metadata(s.root.join("l")).unwrap();
    let h = fs::symlink_metadata(s.root.join("h")).unwrap();
    assert!(h.file_type().is_symlink());
    assert_eq!((h.ino(), h.nlink()), (l.ino(), 2));
    assert_eq!(
        fs::read_link(s.root.join("sub/h2")).unwrap(),
        Path::new("../outside")
    );
    s.assert_outside_untouched();
}

// ---------------------------------------------------------------------------------------------
// Device nodes

#[test]
fn device_nodes_are_skipped_and_counted_without_create_devices() {
    let s = Scene::new();
    let mut t = Tar::new();
    t.dir("./dev/", 0o755)
        .node("./dev/null", EntryType::Char, 1, 3)
        .node("./dev/loop0", EntryType::Block, 7, 0)
        .hardlink("./dev/null2", "./dev/null")
        .node("./dev/fifo", EntryType::Fifo, 0, 0);
    let summary = s.unpack(&t.bytes(), &opts()).unwrap();
    assert_eq!(summary.skipped_devices, 3);
    assert_eq!(summary.entries, 5);
    for gone in ["dev/null", "dev/loop0", "dev/null2"] {
        assert!(fs::symlink_metadata(s.root.join(gone)).is_err(), "{gone}");
    }
    assert!(fs::symlink_metadata(s.root.join("dev/fifo"))
        .unwrap()
        .file_type()
        .is_fifo());
}

#[test]
fn device_nodes_are_created_when_asked() {
    if !is_root() {
        return skip("mknod of a device node needs root");
    }
    let s = Scene::new();
    let mut t = Tar::new();
    t.node("null", EntryType::Char, 1, 3)
        .node("loop0", EntryType::Block, 7, 0);
    let o = ImportOptions {
        create_devices: true,
        ..opts()
    };
    match s.unpack(&t.bytes(), &o) {
        Ok(summary) => assert_eq!(summary.skipped_devices, 0),
        Err(ImportError::Write {
            errno: nix::errno::Errno::EPERM,
            ..
        }) => return skip("root without CAP_MKNOD (a user namespace?)"),
        Err(e) => panic!("{e}"),
    }
    let m = fs::symlink_metadata(s.root.join("null")).unwrap();
    assert!(m.file_type().is_char_device());
    assert_eq!(m.rdev(), nix::sys::stat::makedev(1, 3));
    assert!(fs::symlink_metadata(s.root.join("loop0"))
        .unwrap()
        .file_type()
        .is_block_device());
}

// ---------------------------------------------------------------------------------------------
// Bad input

fn archive_with_data() -> Vec<u8> {
    let mut t = Tar::new();
    t.file("a", 0o644, &noise(200_000, 3))
        .file("b", 0o644, &noise(200_000, 4));
    t.bytes()
}

#[test]
fn truncated_streams_are_input_errors() {
    let plain = archive_with_data();
    for c in [
        Compression::None,
        Compression::Gzip,
        Compression::Xz,
        Compression::Zstd,
    ] {
        let whole = compress(&plain, c);
        // Cut in the middle of a file's data, and just before the end (the tar end marker may
        // survive; the compressed trailer does not).
        let cuts = if c == Compression::None {
            vec![whole.len() / 3, 300_000]
        } else {
            vec![whole.len() / 3, whole.len() - 4]
        };
        for cut in cuts {
            let s = Scene::new();
            let archive = s.write_archive(&whole[..cut]);
            let err = unpack_archive(&archive, &s.root, &opts(), &mut |_| {})
                .expect_err(&format!("{c:?} cut at {cut} of {}", whole.len()));
            assert!(err.is_input_error(), "{c:?}: {err}");
            let msg = err.to_string();
            assert!(
                msg.contains(&archive.display().to_string()),
                "does not name the archive: {msg}"
            );
            assert!(msg.contains("corrupt or truncated"), "{c:?}: {msg}");
        }
    }
}

#[test]
fn a_corrupt_header_checksum_is_refused() {
    let s = Scene::new();
    let mut bytes = archive_with_data();
    bytes[512 + 200_192 + 10] ^= 0x55; // in the second header's name
    let msg = s.refused(&bytes);
    assert!(msg.contains("corrupt or truncated"), "{msg}");
}

#[test]
fn a_file_that_is_no_archive_is_refused() {
    let s = Scene::new();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("text", b"#!/bin/sh\necho this is no archive\n".to_vec()),
        ("empty", Vec::new()),
        ("noise", noise(4096, 9)),
        ("zeros", vec![0; 10240]),
        ("gzip of text", compress(&noise(4096, 5), Compression::Gzip)),
        ("zstd of text", compress(b"hello", Compression::Zstd)),
    ];
    for (what, bytes) in cases {
        let archive = s.write_archive(&bytes);
        let err = unpack_archive(&archive, &s.root, &opts(), &mut |_| {}).expect_err(what);
        assert!(err.is_input_error(), "{what}: {err}");
        let msg = err.to_string();
        assert!(
            msg.contains(&archive.display().to_string()),
            "{what}: {msg}"
        );
        assert!(
            matches!(
                err,
                ImportError::NotAnArchive { .. } | ImportError::Corrupt { .. }
            ),
            "{what}: {err:?}"
        );
        assert_eq!(fs::read_dir(&s.root).unwrap().count(), 0, "{what}");
    }
    let archive = s.write_archive(b"plain text, long enough to fill a header? no.");
    let err = unpack_archive(&archive, &s.root, &opts(), &mut |_| {}).unwrap_err();
    assert!(err.to_string().contains("is not a tar archive"), "{err}");
}

#[test]
fn a_missing_archive_or_destination_is_reported() {
    let s = Scene::new();
    let err = unpack_archive(
        &s.tmp.path().join("missing.tar"),
        &s.root,
        &opts(),
        &mut |_| {},
    )
    .unwrap_err();
    assert!(err.to_string().contains("missing.tar"), "{err}");
    let archive = s.write_archive(&archive_with_data());
    let err =
        unpack_archive(&archive, &s.tmp.path().join("nodir"), &opts(), &mut |_| {}).unwrap_err();
    assert!(!err.is_input_error(), "{err}");
}

#[test]
fn too_many_entries_are_refused() {
    let s = Scene::new();
    let mut t = Tar::new();
    for i in 0..10 {
        t.file(&format!("f{i}"), 0o644, b"x");
    }
    let bytes = t.bytes();
    let o = ImportOptions {
        max_entries: 5,
        ..opts()
    };
    let err = s.unpack(&bytes, &o).unwrap_err();
    assert!(err.is_input_error());
    let msg = err.to_string();
    assert!(msg.contains("more than 5 entries"), "{msg}");
    assert!(msg.contains("max_archive_entries"), "{msg}");
    let o = ImportOptions {
        max_entries: 10,
        ..opts()
    };
    let s = Scene::new();
    assert_eq!(s.unpack(&bytes, &o).unwrap().entries, 10);
}

// ---------------------------------------------------------------------------------------------
// Architecture detection

#[test]
fn detect_arch_follows_symlinks_inside_the_root() {
    // busybox: bin/sh -> busybox, an aarch64 binary.
    let s = Scene::new();
    fs::create_dir(s.root.join("bin")).unwrap();
    fs::write(s.root.join("bin/busybox"), fake_elf(183)).unwrap();
    std::os::unix::fs::symlink("busybox", s.root.join("bin/sh")).unwrap();
    assert_eq!(detect_arch(&s.root).unwrap(), Arch::Arm64);

    // Debian: bin -> usr/bin, sh -> /usr/bin/dash (absolute: resolved in the root, not on the
    // host, whose /usr/bin/dash is an x86-64 binary).
    let s = Scene::new();
    fs::create_dir_all(s.root.join("usr/bin")).unwrap();
    fs::write(s.root.join("usr/bin/dash"), fake_elf(243)).unwrap();
    std::os::unix::fs::symlink("usr/bin", s.root.join("bin")).unwrap();
    std::os::unix::fs::symlink("/usr/bin/dash", s.root.join("usr/bin/sh")).unwrap();
    assert_eq!(detect_arch(&s.root).unwrap(), Arch::Riscv64);

    // A symlink climbing out stays in the root too.
    let s = Scene::new();
    fs::create_dir_all(s.root.join("bin")).unwrap();
    fs::write(s.root.join("dash"), fake_elf(22)).unwrap();
    std::os::unix::fs::symlink("../../../../../../dash", s.root.join("bin/sh")).unwrap();
    let err = detect_arch(&s.root).unwrap_err(); // e_machine 22 little endian is no known arch
    assert!(err.to_string().contains("e_machine 22"), "{err}");
}

#[test]
fn detect_arch_says_what_it_found() {
    let s = Scene::new();
    fs::create_dir(s.root.join("bin")).unwrap();
    fs::write(s.root.join("bin/sh"), fake_elf(0x1234)).unwrap();
    let msg = detect_arch(&s.root).unwrap_err().to_string();
    assert!(msg.contains("/bin/sh"), "{msg}");
    assert!(msg.contains("e_machine 4660"), "{msg}");
    assert!(msg.contains("--arch"), "{msg}");

    let s = Scene::new();
    let msg = detect_arch(&s.root).unwrap_err().to_string();
    assert!(msg.contains("none of /bin/sh"), "{msg}");

    // A script, and a FIFO that must not hang the reader; then a real binary further down.
    let s = Scene::new();
    fs::create_dir_all(s.root.join("bin")).unwrap();
    fs::create_dir_all(s.root.join("usr/bin")).unwrap();
    fs::write(s.root.join("bin/sh"), b"#!/bin/busybox sh\n").unwrap();
    nix::unistd::mkfifo(
        &s.root.join("usr/bin/sh"),
        nix::sys::stat::Mode::from_bits_truncate(0o644),
    )
    .unwrap();
    assert!(detect_arch(&s.root).is_err());
    fs::write(s.root.join("usr/bin/env"), fake_elf(62)).unwrap();
    assert_eq!(detect_arch(&s.root).unwrap(), Arch::Amd64);
}
