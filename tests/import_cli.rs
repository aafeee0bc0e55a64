//! The hostile archive corpus through the real command, `pookie-ns load-baseos`, as root, as a
//! user with a subuid range and as one without: every archive is refused with exit status 2 and a
//! message naming the entry (or, for a broken stream, the archive), nothing appears outside the
//! import's temporary directory, and the store is exactly as before. The archives are generated
//! here, byte by byte where a name is hostile (tests/import_hostile.rs checks the same cases
//! through the library, with the exact reasons).

mod common;

use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::archive::{gzip, noise, xz, Tar};
use common::{everyone, fixtures, stderr, Runner, Who};
use tar::{EntryType, Header};

/// A world-readable directory for the archives (the test users read them).
fn archive_dir(tag: &str) -> PathBuf {
    let dir = PathBuf::from(format!(
        "/tmp/pookie-ns-hostile-{tag}-{}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// Every path under `root` with its type, mode and size (not times: the store's directories are
/// touched by an import that is then rolled back).
fn snapshot(root: &Path) -> Vec<String> {
    common::tree_lines(root, |p, m| {
        format!(
            "{} {:o} {}",
            p.strip_prefix(root).unwrap().display(),
            m.mode(),
            if m.is_file() { m.size() } else { 0 }
        )
    })
}

/// (name, archive bytes, what the message must contain).
fn corpus(outside: &Path, tag: &str) -> Vec<(&'static str, Vec<u8>, String)> {
    let o = outside.display().to_string();
    let mut c: Vec<(&'static str, Vec<u8>, String)> = Vec::new();
    let mut t = Tar::new();
    let esc = format!("../pookie-ns-escaped-{tag}");
    c.push((
        "dot-dot",
        t.file("ok", 0o644, b"x").file(&esc, 0o644, b"evil").bytes(),
        esc.clone(),
    ));
    c.push((
        "dot-dot-deep",
        t.dir("usr", 0o755)
            .file("usr/../../x", 0o644, b"evil")
            .bytes(),
        "usr/../../x".into(),
    ));
    let abs = format!("/etc/pookie-ns-abs-{tag}");
    c.push((
        "absolute",
        t.file(&abs, 0o644, b"evil").bytes(),
        abs.clone(),
    ));
    let abs_out = format!("{o}/abs");
    c.push((
        "absolute-outside",
        t.file(&abs_out, 0o644, b"evil").bytes(),
        abs_out.clone(),
    ));
    let through = format!("etc/pookie-ns-through-{tag}");
    c.push((
        "symlink-to-etc-then-through",
        t.symlink("etc", "/etc")
            .file(&through, 0o644, b"evil")
            .bytes(),
        through.clone(),
    ));
    c.push((
        "symlink-outside-then-through",
        t.symlink("a", &o).file("a/x", 0o644, b"evil").bytes(),
        "a/x".into(),
    ));
    c.push((
        "symlink-chain",
        t.dir("d", 0o755)
            .symlink("a", "b")
            .symlink("b", "d/c")
            .symlink("d/c", "../../../../../..")
            .file("a/x", 0o644, b"evil")
            .bytes(),
        "a/x".into(),
    ));
    c.push((
        "symlink-then-dir-through",
        t.symlink("a", &o).dir("a/sub", 0o755).bytes(),
        "a/sub".into(),
    ));
    c.push((
        "hardlink-to-host-path",
        t.hardlink("h", "/etc/passwd").bytes(),
        "/etc/passwd".into(),
    ));
    c.push((
        "hardlink-dot-dot",
        t.hardlink("h", "../../../../../../etc/passwd").bytes(),
        "../../../../../../etc/passwd".into(),
    ));
    c.push((
        "hardlink-through-symlink",
        t.symlink("s", &o).hardlink("h", "s/f").bytes(),
        "\"h\" is a hard link through the symlink \"s\"".into(),
    ));
    c.push((
        "hardlink-to-symlink-then-through",
        t.symlink("s", &o)
            .hardlink("h", "s")
            .file("h/x", 0o644, b"evil")
            .bytes(),
        "h/x".into(),
    ));
    c.push((
        "fifo-through-symlink",
        t.symlink("a", &o)
            .node("a/fifo", EntryType::Fifo, 8, 0)
            .bytes(),
        "a/fifo".into(),
    ));
    c.push((
        "device-through-symlink",
        t.symlink("a", &o)
            .node("a/sda", EntryType::Block, 8, 0)
            .bytes(),
        "a/sda".into(),
    ));
    c.push((
        "pax-path-with-nul",
        t.pax(&[("path", b"ok\0/../../x")])
            .file("innocent", 0o644, b"evil")
            .bytes(),
        "NUL".into(),
    ));
    c.push((
        "pax-path-dot-dot",
        t.pax(&[("path", b"../pax-escaped")])
            .file("innocent", 0o644, b"evil")
            .bytes(),
        "../pax-escaped".into(),
    ));
    let long_nul = b"long/name/with/a/nul/\0/../../../../../../../../../../../../../../../../../../../../../../../../../../x";
    {
        let h = Tar::header(EntryType::Regular, 0o644, 4);
        t.raw(h, long_nul, None, b"evil");
    }
    c.push((
        "gnu-long-name-with-nul",
        t.bytes(),
        "long/name/with/a/nul".into(),
    ));
    let very_long = format!("{}/", "d".repeat(200)).repeat(25) + "f";
    c.push((
        "path-over-path-max",
        t.file(&very_long, 0o644, b"x").bytes(),
        "dddddddddd".into(),
    ));
    let component = "n".repeat(300);
    c.push((
        "name-over-name-max",
        t.file(&component, 0o644, b"x").bytes(),
        component.clone(),
    ));
    c.push((
        "file-where-dir-needed",
        t.file("f", 0o644, b"x").file("f/x", 0o644, b"y").bytes(),
        "f/x".into(),
    ));
    c.push((
        "sparse-10-gb",
        t.sparse("var/log/huge", 10 << 30).bytes(),
        "var/log/huge".into(),
    ));
    {
        // A plain file claiming 10 GB, in an archive of a few KB.
        let h = Tar::header(EntryType::Regular, 0o644, 10 << 30);
        t.raw(h, b"huge", None, &[]);
    }
    let mut claims = t.bytes();
    claims.truncate(2048);
    c.push(("size-10-gb-in-2-kb", claims, "huge".into()));
    // Broken streams: a good archive of 600 kB of data, cut in the middle.
    let good = t
        .file("a", 0o644, &noise(300_000, 0x9e37_79b9_7f4a_7c15))
        .file("b", 0o644, &noise(300_000, 0x9e37_79b9_7f4a_7c15))
        .bytes();
    let gz = gzip(&good);
    let xzd = xz(&good);
    let zst = zstd::encode_all(&good[..], 3).unwrap();
    c.push((
        "truncated-gzip",
        gz[..gz.len() / 2].to_vec(),
        "corrupt or truncated".into(),
    ));
    c.push((
        "truncated-xz",
        xzd[..xzd.len() / 2].to_vec(),
        "corrupt or truncated".into(),
    ));
    c.push((
        "truncated-zstd",
        zst[..zst.len() / 2].to_vec(),
        "corrupt or truncated".into(),
    ));
    c.push((
        "truncated-zstd-trailer",
        zst[..zst.len() - 3].to_vec(),
        "corrupt or truncated".into(),
    ));
    c
}

#[test]
fn hostile_archives_are_refused_by_load_baseos() {
    let tag = std::process::id().to_string();
    let mut tried = 0;
    for r in common::everyone_with_busybox() {
        let who = r.who;
        let top = r.store.parent().unwrap().to_path_buf();
        let outside = top.join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        // Writable by anyone: an escape must not be stopped by permissions alone.
        std::fs::set_permissions(&outside, std::fs::Permissions::from_mode(0o777)).unwrap();
        let dir = archive_dir(&format!("{who:?}"));
        let before = snapshot(&top);
        let base = common::hash_tree(&r.store.join("baseos"));
        for (name, bytes, must_name) in corpus(&outside, &tag) {
            let path = dir.join(format!("{name}.tar"));
            std::fs::write(&path, &bytes).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            let started = Instant::now();
            let out = r.run(&["load-baseos", path.to_str().unwrap(), "--name", "evil"]);
            let msg = stderr(&out);
            assert_eq!(out.status.code(), Some(2), "[{who:?}] {name}: {msg}");
            let named = if must_name == "corrupt or truncated" {
                msg.contains(&must_name) && msg.contains(path.to_str().unwrap())
            } else {
                msg.contains(&must_name)
            };
            assert!(
                named,
                "[{who:?}] {name}: the message names {must_name:?}: {msg}"
            );
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "[{who:?}] {name}: took {:?}",
                started.elapsed()
            );
            assert_eq!(
                snapshot(&top),
                before,
                "[{who:?}] {name}: the store or outside changed"
            );
            for host in [
                format!("/etc/pookie-ns-abs-{tag}"),
                format!("/etc/pookie-ns-through-{tag}"),
                format!("/tmp/pookie-ns-escaped-{tag}"),
                "/pax-escaped".to_string(),
            ] {
                assert!(!Path::new(&host).exists(), "[{who:?}] {name}: wrote {host}");
            }
            tried += 1;
        }
        assert_eq!(common::hash_tree(&r.store.join("baseos")), base, "{who:?}");
        let list: serde_json::Value = serde_json::from_str(&r.ok(&["--json", "list"])).unwrap();
        assert_eq!(list["baseos"].as_array().unwrap().len(), 1, "{list}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
    eprintln!("hostile archives tried through load-baseos: {tried}");
}

/// wait4(2): the exit code and the peak RSS (KiB) of the child and everything it waited for.
fn wait_with_rusage(child: &std::process::Child) -> (Option<i32>, i64) {
    let mut status = 0;
    // SAFETY: rusage is plain data the kernel fills in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waiting for our own child; both out-pointers are valid.
    let r = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert_eq!(r, child.id() as i32);
    let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
    (code, usage.ru_maxrss)
}

#[test]
fn a_tar_bomb_of_a_million_files_stops_at_max_archive_entries() {
    let who_list = everyone();
    if who_list.is_empty() {
        return;
    }
    // One million empty files: 512 MB of tar headers, a few hundred KB compressed.
    let dir = archive_dir("bomb");
    let bomb = dir.join("bomb.tar.zst");
    let started = Instant::now();
    {
        // Headers written by hand (a template, the name and checksum patched in) and compressed
        // by the zstd tool: the debug build's tar and zstd code would take a quarter of a minute.
        let f = std::fs::File::create(&bomb).unwrap();
        let mut zstd = std::process::Command::new("zstd")
            .args(["-q", "-1", "-c"])
            .stdin(Stdio::piped())
            .stdout(f)
            .spawn()
            .expect("the zstd tool (scripts/setup-host installs it)");
        let mut template = Header::new_gnu();
        template.set_entry_type(EntryType::Regular);
        template.set_mode(0o644);
        template.set_size(0);
        template.set_mtime(1_600_000_000);
        let mut block = *template.as_bytes();
        block[148..156].fill(b' ');
        let base: u32 = block.iter().map(|b| *b as u32).sum();
        let mut out = std::io::BufWriter::with_capacity(1 << 20, zstd.stdin.take().unwrap());
        for i in 0..1_000_000u32 {
            let name = format!("bomb/f{i}");
            block[..100].fill(0);
            block[..name.len()].copy_from_slice(name.as_bytes());
            let sum = base + name.bytes().map(|b| b as u32).sum::<u32>();
            block[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
            out.write_all(&block).unwrap();
        }
        out.write_all(&[0; 1024]).unwrap();
        drop(out.into_inner().unwrap());
        assert!(zstd.wait().unwrap().success());
    }
    std::fs::set_permissions(&bomb, std::fs::Permissions::from_mode(0o644)).unwrap();
    eprintln!(
        "tar bomb: {} bytes, made in {:.1?}",
        std::fs::metadata(&bomb).unwrap().len(),
        started.elapsed()
    );
    for who in who_list {
        let r = Runner::new(who);
        r.write_config("max_archive_entries = 20000\n");
        r.ok(&["list"]);
        let before = snapshot(r.store.parent().unwrap());
        let started = Instant::now();
        let err_file = dir.join(format!("stderr-{who:?}"));
        let child = r
            .command(&["load-baseos", bomb.to_str().unwrap(), "--name", "bomb"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&err_file).unwrap())
            .spawn()
            .unwrap();
        // Reaped by wait4 here; dropping the Child afterwards does not wait again.
        let (code, rss_kib) = wait_with_rusage(&child);
        // Already reaped: std's wait then reports ECHILD, which is all it can do.
        let _ = { child }.wait();
        let msg = std::fs::read_to_string(&err_file).unwrap();
        let took = started.elapsed();
        eprintln!("[{who:?}] tar bomb refused in {took:.1?}, peak RSS {rss_kib} KiB: {msg}");
        assert_eq!(code, Some(2), "[{who:?}] {msg}");
        assert!(
            msg.contains("more than 20000 entries") && msg.contains("\"bomb/f20000\""),
            "[{who:?}] {msg}"
        );
        assert!(msg.contains("max_archive_entries"), "{msg}");
        assert!(took < Duration::from_secs(60), "[{who:?}] took {took:?}");
        assert!(rss_kib < 200 * 1024, "[{who:?}] peak RSS {rss_kib} KiB");
        assert_eq!(snapshot(r.store.parent().unwrap()), before, "{who:?}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn setuid_bits_are_kept_only_for_root() {
    let who_list = everyone();
    if who_list.is_empty() {
        return;
    }
    let dir = archive_dir("setuid");
    let archive = dir.join("setuid.tar");
    let st = std::process::Command::new("sh")
        .arg("-ec")
        .arg(format!(
            "cp {fixture} {a}; mkdir -p {d}/t/usr/bin; printf x > {d}/t/usr/bin/su; chmod 4755 {d}/t/usr/bin/su
             mkdir -m 2775 {d}/t/shared; tar -rf {a} --numeric-owner -C {d}/t ./usr ./shared; chmod 644 {a}",
            fixture = fixtures().archive("tar").display(),
            a = archive.display(),
            d = dir.display()
        ))
        .status()
        .unwrap();
    assert!(st.success());
    for who in who_list {
        let r = Runner::new(who);
        r.ok(&["load-baseos", archive.to_str().unwrap(), "--name", "s"]);
        let rootfs = r.store.join("baseos/s/amd64/rootfs");
        let mode = |p: &str| std::fs::symlink_metadata(rootfs.join(p)).unwrap().mode() & 0o7777;
        let (su, shared) = (mode("usr/bin/su"), mode("shared"));
        match who {
            Who::Root => assert_eq!((su, shared), (0o4755, 0o2775), "{who:?}"),
            _ => assert_eq!((su & 0o6000, shared & 0o6000), (0, 0), "{who:?}"),
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
