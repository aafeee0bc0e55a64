//! Shared test harness: busybox root filesystem fixtures (built once per machine from Debian's
//! busybox-static, under a lock), and a runner that executes the real `pookie-ns` binary as root,
//! as a user with a subordinate id range, or as a user without one (single-uid mode), each with
//! its own temporary store.
//!
//! Tests that need something the machine lacks (root, the test users) skip with a message
//! locally and fail under `CI=true`.

#![allow(dead_code)]

pub mod archive;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Output, Stdio};
use std::sync::OnceLock;

/// Where the shared fixtures live (world-readable so that the test users can import them).
pub const FIXTURES: &str = "/tmp/pookie-ns-test-fixtures";

/// Static busybox binaries of foreign arches and cached Debian tarballs (scripts/setup-host).
pub const FOREIGN_CACHE: &str = "/var/cache/pookie-ns-test";

/// The user with a /etc/subuid range, and the one without (created by .ci/run).
pub const SUB_USER: &str = "pookie-sub";
pub const SINGLE_USER: &str = "pookie-single";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Who {
    Root,
    SubUser,
    SingleUser,
}

impl Who {
    pub fn user(self) -> Option<&'static str> {
        match self {
            Who::Root => None,
            Who::SubUser => Some(SUB_USER),
            Who::SingleUser => Some(SINGLE_USER),
        }
    }
}

pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Skips (locally) or fails (CI) when a prerequisite is missing. Returns false to skip.
pub fn require(ok: bool, what: &str) -> bool {
    if ok {
        return true;
    }
    if in_ci() {
        panic!("prerequisite missing under CI=true: {what}");
    }
    eprintln!("SKIPPED: {what}");
    false
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Whether the user `name` exists (the test users come from scripts/setup-host).
pub fn user_exists(name: &str) -> bool {
    nix::unistd::User::from_name(name).ok().flatten().is_some()
}

/// The identities a sandbox test runs as: root, a subuid user and a single-uid user. Each missing
/// one goes through [`require`]: a failure under `CI=true`, a SKIPPED line locally (never a silent
/// empty list).
pub fn everyone() -> Vec<Who> {
    let mut out = Vec::new();
    if !require(
        is_root(),
        "the sandbox tests run as root (and switch to the test users)",
    ) {
        return out;
    }
    out.push(Who::Root);
    for (who, name) in [(Who::SubUser, SUB_USER), (Who::SingleUser, SINGLE_USER)] {
        if require(
            user_exists(name),
            &format!("test user {name} (created by .ci/run / scripts/setup-host)"),
        ) {
            out.push(who);
        }
    }
    out
}

/// The arguments of `run --baseos NAME --commit -- sh -c SCRIPT`.
pub fn commit_args<'a>(name: &'a str, script: &'a str) -> [&'a str; 8] {
    [
        "run", "--baseos", name, "--commit", "--", "/bin/sh", "-c", script,
    ]
}

/// A runner for each identity of [`everyone`] in turn, the busybox fixture loaded as `bb`.
pub fn everyone_with_busybox() -> impl Iterator<Item = Runner> {
    everyone().into_iter().map(|who| {
        let r = Runner::new(who);
        r.load_busybox("tar.zst", "bb");
        r
    })
}

/// A copy of the binary under test that every test user can execute.
pub fn binary() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let src = PathBuf::from(env!("CARGO_BIN_EXE_pookie-ns"));
        if !is_root() {
            return src;
        }
        // One copy per build of the binary, shared by every test process (a test runner that
        // starts a process per test would otherwise leave one 150 MB copy per test).
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(&src).unwrap();
        let dir = PathBuf::from(format!(
            "/tmp/pookie-ns-test-bin-{}-{}.{}",
            m.size(),
            m.mtime(),
            m.mtime_nsec()
        ));
        let dst = dir.join("pookie-ns");
        if !dst.exists() {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
            let partial = dir.join(format!(".pookie-ns.{}", std::process::id()));
            std::fs::copy(&src, &partial).unwrap();
            std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o755)).unwrap();
            // A link, not a rename: a process that lost the race must not replace the file
            // another one's pookie-ns already runs from (its workers start from /proc/self/exe).
            match std::fs::hard_link(&partial, &dst) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => panic!("link {} to {}: {e}", partial.display(), dst.display()),
            }
            std::fs::remove_file(&partial).unwrap();
        }
        dst
    })
    .clone()
}

/// Busybox root filesystem archives in every format, built once per machine.
pub struct Fixtures {
    pub dir: PathBuf,
    /// The unpacked tree the archives were made from.
    pub tree: PathBuf,
}

impl Fixtures {
    pub fn archive(&self, ext: &str) -> PathBuf {
        self.dir.join(format!("busybox.{ext}"))
    }
    /// A busybox rootfs archive of a foreign arch, made from the static busybox that
    /// scripts/setup-host caches in [`FOREIGN_CACHE`]; None if that binary is missing.
    pub fn foreign(&self, debian_arch: &str) -> Option<PathBuf> {
        let binary = Path::new(FOREIGN_CACHE).join(format!("busybox-{debian_arch}"));
        if !binary.exists() {
            return None;
        }
        let archive = self.dir.join(format!("busybox-{debian_arch}.tar.zst"));
        let lock = std::fs::File::create(self.dir.join(".lock")).unwrap();
        let _guard = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive).unwrap();
        if !archive.exists() {
            let t = self.dir.join(format!("tree-{debian_arch}"));
            let t = t.display();
            sh(&format!(
                "rm -rf {t} && mkdir -p {t}/bin {t}/etc {t}/root {t}/tmp
                 cp {} {t}/bin/busybox
                 for a in $(/bin/busybox --list); do [ \"$a\" = busybox ] || ln -sf busybox {t}/bin/$a; done
                 echo 'root:x:0:0:root:/root:/bin/sh' > {t}/etc/passwd
                 tar -C {t} --numeric-owner -c . | zstd -q -o {a}.tmp && mv {a}.tmp {a} && chmod 644 {a}",
                binary.display(),
                a = archive.display()
            ));
        }
        Some(archive)
    }
}

pub fn fixtures() -> Fixtures {
    static F: OnceLock<Fixtures> = OnceLock::new();
    F.get_or_init(build_fixtures).clone_ref()
}

impl Fixtures {
    fn clone_ref(&self) -> Fixtures {
        Fixtures {
            dir: self.dir.clone(),
            tree: self.tree.clone(),
        }
    }
}

fn sh(cmd: &str) {
    let st = Command::new("sh").arg("-ec").arg(cmd).status().unwrap();
    assert!(st.success(), "fixture command failed: {cmd}");
}

fn build_fixtures() -> Fixtures {
    let dir = PathBuf::from(FIXTURES);
    std::fs::create_dir_all(&dir).unwrap();
    let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755));
    let lock = std::fs::File::create(dir.join(".lock")).unwrap();
    let _guard = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive).unwrap();
    let tree = dir.join("tree");
    let done = dir.join(".complete-v2");
    if !done.exists() {
        let busybox = ["/bin/busybox", "/usr/bin/busybox"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("busybox-static is not installed (apt-get install busybox-static)");
        let t = tree.display();
        let d = dir.display();
        sh(&format!(
            "rm -rf {t} && mkdir -p {t}/bin {t}/sbin {t}/usr/bin {t}/usr/sbin {t}/etc {t}/root {t}/tmp {t}/home/www {t}/var/empty
             cp {busybox} {t}/bin/busybox
             for a in $({busybox} --list); do [ \"$a\" = busybox ] || ln -sf busybox {t}/bin/$a; done
             printf 'root:x:0:0:root:/root:/bin/sh\\nwww-data:x:33:33:www:/home/www:/bin/sh\\n' > {t}/etc/passwd
             printf 'root:x:0:\\nwww-data:x:33:\\n' > {t}/etc/group
             echo 'hello from the base' > {t}/etc/motd
             echo 'www' > {t}/home/www/index.html
             chmod 700 {t}/root; chmod 1777 {t}/tmp
             chown -R 33:33 {t}/home/www
             tar -C {t} --numeric-owner -cf {d}/busybox.tar .
             gzip -c {d}/busybox.tar > {d}/busybox.tar.gz
             xz -c {d}/busybox.tar > {d}/busybox.tar.xz
             zstd -q -f -o {d}/busybox.tar.zst {d}/busybox.tar
             chmod 644 {d}/busybox.tar*"
        ));
        std::fs::write(&done, b"").unwrap();
    }
    Fixtures { dir, tree }
}

/// Runs `pookie-ns` as one identity against its own temporary store.
pub struct Runner {
    pub who: Who,
    pub store: PathBuf,
    pub config: PathBuf,
    /// The runner's own `XDG_CACHE_HOME`: a test never reads or writes its user's real
    /// `~/.cache/pookie-ns` (tests/user_caches.rs checks that for the whole suite).
    pub cache: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Runner {
    pub fn new(who: Who) -> Runner {
        let tmp = tempfile::Builder::new()
            .prefix("pookie-ns-test-")
            .tempdir_in("/tmp")
            .unwrap();
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let store = tmp.path().join("store");
        let config = tmp.path().join("config");
        let cache = tmp.path().join("cache");
        for p in [&store, &config, &cache] {
            std::fs::create_dir_all(p).unwrap();
        }
        let owner = who
            .user()
            .map(|user| nix::unistd::User::from_name(user).unwrap().unwrap());
        if let Some(u) = &owner {
            for p in [tmp.path(), &store, &config, &cache] {
                nix::unistd::chown(p, Some(u.uid), Some(u.gid)).unwrap();
            }
        }
        // The runner's cache is its own, but for the toolchains' caches (zig's libc and libc++
        // per target, pip's downloads: what a user's builds share between stores), which every
        // runner of the same identity shares for the whole suite, and between runs on one
        // machine, as the Debian tarballs are.
        let shared = Path::new(FOREIGN_CACHE)
            .join("toolchains")
            .join(who.user().unwrap_or("root"));
        if std::fs::create_dir_all(&shared).is_ok() {
            if let Some(u) = &owner {
                nix::unistd::chown(&shared, Some(u.uid), Some(u.gid)).unwrap();
            }
            let ours = cache.join("pookie-ns");
            std::fs::create_dir_all(&ours).unwrap();
            if let Some(u) = &owner {
                nix::unistd::chown(&ours, Some(u.uid), Some(u.gid)).unwrap();
            }
            std::os::unix::fs::symlink(&shared, ours.join("toolchains")).unwrap();
        }
        Runner {
            who,
            store,
            config,
            cache,
            _tmp: tmp,
        }
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = match self.who.user() {
            None => Command::new(binary()),
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(binary());
                c
            }
        };
        c.arg("-c")
            .arg(&self.config)
            .arg("--work-dir")
            .arg(&self.store);
        c.args(args);
        c.current_dir("/tmp");
        c.env_remove("XDG_CONFIG_HOME")
            .env_remove("XDG_DATA_HOME")
            .env("XDG_CACHE_HOME", &self.cache);
        c.stdin(Stdio::null());
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        let out = self.command(args).output().unwrap();
        eprintln!(
            "[{:?}] pookie-ns {}\n  status: {:?}\n  stdout: {}\n  stderr: {}",
            self.who,
            args.join(" "),
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).trim_end(),
            String::from_utf8_lossy(&out.stderr).trim_end()
        );
        out
    }

    /// Runs and asserts success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "[{:?}] pookie-ns {} failed: {}",
            self.who,
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Loads the busybox fixture in the given format under `name`.
    pub fn load_busybox(&self, ext: &str, name: &str) {
        let archive = fixtures().archive(ext);
        self.ok(&["load-baseos", archive.to_str().unwrap(), "--name", name]);
    }

    /// The command `run --baseos NAME -- /bin/sh -c SCRIPT`, to spawn.
    /// A bundle (project directory) for `run --bundle`: `bundle/setup.py` next to the store,
    /// world-readable, owned by the runner's user.
    pub fn bundle(&self) -> PathBuf {
        let bundle = self.store.parent().unwrap().join("bundle");
        std::fs::create_dir_all(&bundle).unwrap();
        std::fs::write(bundle.join("setup.py"), "print('hi')\n").unwrap();
        std::fs::set_permissions(&bundle, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(
            bundle.join("setup.py"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        if let Some(user) = self.who.user() {
            let u = nix::unistd::User::from_name(user).unwrap().unwrap();
            for p in [bundle.clone(), bundle.join("setup.py")] {
                nix::unistd::chown(&p, Some(u.uid), Some(u.gid)).unwrap();
            }
        }
        bundle
    }

    pub fn sh_command(&self, name: &str, script: &str) -> Command {
        self.command(&["run", "--baseos", name, "--", "/bin/sh", "-c", script])
    }

    /// `run -- sh -c SCRIPT` on the base OS `name`.
    pub fn sh(&self, name: &str, script: &str) -> Output {
        self.run(&["run", "--baseos", name, "--", "/bin/sh", "-c", script])
    }

    pub fn sh_ok(&self, name: &str, script: &str) -> String {
        let out = self.sh(name, script);
        assert!(
            out.status.success(),
            "[{:?}] {script} failed ({:?}): {}",
            self.who,
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// `run ARGS -- sh -c "BEFORE; echo ready; read go; AFTER"`: the test waits until the command
    /// says "ready" from inside its sandbox, which then waits for [`Held::release`]. The run holds
    /// its instance (shared) and its workspace meanwhile, with no sleep on either side.
    pub fn hold(&self, args: &[&str], before: &str, after: &str) -> Held {
        let script = format!("{before}\necho ready; read go\n{after}");
        let mut child = self
            .command(&[&["run"], args, &["--", "/bin/sh", "-c", &script]].concat())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut printed = Vec::new();
        loop {
            let mut line = String::new();
            if stdout.read_line(&mut line).unwrap() == 0 {
                let mut err = String::new();
                let _ = child.stderr.take().unwrap().read_to_string(&mut err);
                let _ = child.wait();
                panic!(
                    "[{:?}] the held run ended before it was ready: {err}",
                    self.who
                );
            }
            if line == "ready\n" {
                break;
            }
            printed.extend_from_slice(line.as_bytes());
        }
        Held {
            child,
            stdin,
            stdout,
            printed,
        }
    }

    /// `run --baseos NAME --commit -- sh -c SCRIPT`, asserting success.
    pub fn commit(&self, name: &str, script: &str) -> String {
        self.ok(&commit_args(name, script))
    }

    pub fn write_config(&self, text: &str) {
        let p = self.config.join("config.toml");
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
}

/// A run started by [`Runner::hold`], up and waiting.
pub struct Held {
    pub child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    /// What the command printed before "ready".
    printed: Vec<u8>,
}

impl Held {
    /// Lets the held command go on and waits for it; `stdout` is all it printed but "ready".
    pub fn release(mut self) -> Output {
        writeln!(self.stdin, "go").unwrap();
        drop(self.stdin);
        let mut stdout = self.printed;
        self.stdout.read_to_end(&mut stdout).unwrap();
        let mut out = self.child.wait_with_output().unwrap();
        out.stdout = stdout;
        out
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        // Remove the store the way a user would: through pookie-ns (the temporary directory
        // goes after it). Whether that leaves anything the user cannot delete is the business of
        // tests/sandbox.rs `cleanup_all_leaves_nothing_the_user_cannot_delete`, not of every
        // test's teardown (one failing here would hide the test's own failure).
        let _ = self.command(&["cleanup", "all"]).output();
    }
}

/// A digest of a tree: paths, types, modes, owners, sizes, link targets and contents.
/// One line per path under `root` (itself included), as `line` writes it from the path and its
/// metadata (links not followed), sorted: a tree listing to compare before and after.
pub fn tree_lines(root: &Path, line: impl Fn(&Path, &std::fs::Metadata) -> String) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let m = std::fs::symlink_metadata(&p).unwrap();
        out.push(line(&p, &m));
        if m.is_dir() {
            stack.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        }
    }
    out.sort();
    out
}

pub fn hash_tree(root: &Path) -> String {
    use sha2::{Digest, Sha256};
    use std::os::unix::fs::MetadataExt;
    let mut h = Sha256::new();
    let mut stack = vec![root.to_path_buf()];
    let mut entries = Vec::new();
    while let Some(p) = stack.pop() {
        let m = std::fs::symlink_metadata(&p).unwrap();
        entries.push(p.clone());
        if m.is_dir() {
            for e in std::fs::read_dir(&p).unwrap() {
                stack.push(e.unwrap().path());
            }
        }
    }
    entries.sort();
    for p in entries {
        let m = std::fs::symlink_metadata(&p).unwrap();
        h.update(p.strip_prefix(root).unwrap().as_os_str().as_encoded_bytes());
        h.update(format!(
            "|{:o}|{}|{}|{}|{}|",
            m.mode(),
            m.uid(),
            m.gid(),
            m.size(),
            m.mtime()
        ));
        if m.file_type().is_symlink() {
            h.update(
                std::fs::read_link(&p)
                    .unwrap()
                    .as_os_str()
                    .as_encoded_bytes(),
            );
        } else if m.is_file() {
            h.update(std::fs::read(&p).unwrap());
        }
    }
    format!("{:x}", h.finalize())
}

/// `run --network --commit -- apt-get install hello`: a package into an instance, rootless.
pub const INSTALL_HELLO: &[&str] = &[
    "run",
    "--network",
    "--commit",
    "--",
    "apt-get",
    "install",
    "-y",
    "--no-install-recommends",
    "hello",
];

/// Lines of the host's mount table that mention `needle`.
pub fn host_mounts_containing(needle: &str) -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.contains(needle))
        .map(str::to_string)
        .collect()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A store of `who` holding the cached Debian tarballs `names` (`debian-bookworm-amd64`,
/// `debian-forky-arm64` ...; scripts/build-test-rootfs makes them) as
/// `work_dir/baseos-<name>.tar.zst`, where `load-baseos` and `build` import them (with their
/// recipe's metadata) instead of running mmdebstrap. None (locally) when one is missing.
pub fn runner_with_debian(who: Who, names: &[&str]) -> Option<Runner> {
    let r = Runner::new(who);
    for name in names {
        let tarball = Path::new(FOREIGN_CACHE).join(format!("{name}.tar.zst"));
        if !require(
            tarball.exists(),
            &format!("{} (scripts/build-test-rootfs)", tarball.display()),
        ) {
            return None;
        }
        std::os::unix::fs::symlink(&tarball, r.store.join(format!("baseos-{name}.tar.zst")))
            .unwrap();
    }
    Some(r)
}

/// [`runner_with_debian`] for a test that runs as root (`why` says which, through [`require`]).
pub fn root_runner_with_debian(why: &str, names: &[&str]) -> Option<Runner> {
    if !require(is_root(), why) {
        return None;
    }
    runner_with_debian(Who::Root, names)
}

/// [`runner_with_debian`] with bookworm amd64 loaded: the cached tarball imported, not rebuilt.
pub fn debian_runner(who: Who) -> Option<Runner> {
    let r = runner_with_debian(who, &["debian-bookworm-amd64"])?;
    let out = r.run(&["load-baseos"]);
    assert!(out.status.success(), "{who:?}: {}", stderr(&out));
    assert!(
        stderr(&out).contains("importing the existing tarball"),
        "the cached tarball is used, not a rebuild: {}",
        stderr(&out)
    );
    Some(r)
}

/// Runs `build ... --json` and returns (exit code, report, stderr).
pub fn build_json(r: &Runner, args: &[&str]) -> (i32, serde_json::Value, String) {
    let mut all = vec!["--json", "build"];
    all.extend_from_slice(args);
    let out = r.run(&all);
    let report = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    (out.status.code().unwrap_or(-1), report, stderr(&out))
}

/// The wheel files in `dir`, sorted (none when it does not exist).
pub fn wheels(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".whl"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// `build PROJECT --branch stable --target TARGETS... EXTRA... --out OUT --json`: (exit code,
/// report, stderr).
pub fn build_in(
    r: &Runner,
    project: &Path,
    targets: &[&str],
    extra: &[&str],
    out: &Path,
) -> (i32, serde_json::Value, String) {
    let mut args = vec![project.to_str().unwrap(), "--branch", "stable", "--target"];
    args.extend_from_slice(targets);
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--out", out.to_str().unwrap()]);
    build_json(r, &args)
}

/// A copy of `examples/NAME` at `DEST` beside the runner's store, owned by the runner's user
/// (the checkout may not be readable by the test users).
pub fn example_copy(r: &Runner, name: &str, dest: &str) -> PathBuf {
    let to = r.store.parent().unwrap().join(dest);
    let from = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(name);
    let st = Command::new("cp")
        .arg("-r")
        .arg(&from)
        .arg(&to)
        .status()
        .unwrap();
    assert!(st.success(), "copy {}", from.display());
    if let Some(user) = r.who.user() {
        let st = Command::new("chown")
            .args(["-R", &format!("{user}:{user}")])
            .arg(&to)
            .status()
            .unwrap();
        assert!(st.success());
    }
    to
}

/// The host's binfmt_misc entries, each with what the kernel says about it.
pub fn host_binfmt_entries() -> Vec<(String, String)> {
    let dir = Path::new(pookie_ns::binfmt::HOST_DIR);
    pookie_ns::binfmt::list_entries(dir)
        .into_iter()
        .map(|n| {
            let text = std::fs::read_to_string(dir.join(&n)).unwrap_or_default();
            (n, text)
        })
        .collect()
}

/// What a rootless emulated build needs of the machine, each checked through [`require`]: root
/// (the tests switch to [`SUB_USER`], who must exist), a kernel with private binfmt_misc
/// instances, QEMU for each of `foreign`, and the host's binfmt_misc mounted (its entries are
/// taken away for the test).
pub fn rootless_emulation(foreign: &[pookie_ns::arch::Arch]) -> bool {
    use pookie_ns::binfmt;
    require(is_root(), "root (the test switches to pookie-sub)")
        && require(
            pookie_ns::sys::kernel_version() >= binfmt::PRIVATE_MIN_KERNEL,
            "Linux >= 6.7 (private binfmt_misc instances)",
        )
        && foreign.iter().all(|a| {
            require(
                binfmt::find_interpreter(*a, None).is_ok(),
                &format!("the QEMU interpreter for {a} (apt-get install qemu-user-static)"),
            )
        })
        && require(
            Path::new(binfmt::HOST_DIR).join("register").exists(),
            "the host's binfmt_misc mounted at /proc/sys/fs/binfmt_misc",
        )
        && require(user_exists(SUB_USER), "the test user pookie-sub")
}

/// Serializes the tests that take the host's binfmt_misc registrations away or add their own
/// (other test binaries, other checkouts on a shared machine): hold it while comparing listings.
pub const HOST_BINFMT_LOCK: &str = "/tmp/pookie-ns-test-host-binfmt.lock";

/// Takes [`HOST_BINFMT_LOCK`] (exclusive), waiting for whoever holds it.
pub fn host_binfmt_lock() -> nix::fcntl::Flock<std::fs::File> {
    let lock = std::fs::File::create(HOST_BINFMT_LOCK).unwrap();
    let _ = std::fs::set_permissions(HOST_BINFMT_LOCK, std::fs::Permissions::from_mode(0o666));
    nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .unwrap()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("\\x{b:02x}")).collect()
}

/// Host registrations taken away for the guard's lifetime — every `qemu-*` entry and every
/// entry that serves one of `arches` — and registered again (same name, offset, magic, mask,
/// interpreter, flags, enabled state) when it is dropped, on a panic too.
pub struct HostEntriesRemoved(Vec<pookie_ns::binfmt::Registration>);

impl HostEntriesRemoved {
    pub fn take(arches: &[pookie_ns::arch::Arch]) -> HostEntriesRemoved {
        use pookie_ns::binfmt;
        let dir = Path::new(binfmt::HOST_DIR);
        let mut removed = Vec::new();
        for name in binfmt::list_entries(dir) {
            let text = std::fs::read_to_string(dir.join(&name)).unwrap_or_default();
            let r = binfmt::parse_registration(&name, &text);
            if name.starts_with("qemu-") || arches.iter().any(|a| r.serves(*a)) {
                // Pushed first: should the removal fail half-way, Drop still tries to restore.
                removed.push(r);
                std::fs::write(dir.join(&name), "-1").unwrap();
                eprintln!("removed the host's {name} for the test");
            }
        }
        HostEntriesRemoved(removed)
    }

    /// Nothing taken (the entries stay registered).
    pub fn none() -> HostEntriesRemoved {
        HostEntriesRemoved(Vec::new())
    }
}

impl Drop for HostEntriesRemoved {
    fn drop(&mut self) {
        let dir = Path::new(pookie_ns::binfmt::HOST_DIR);
        for r in &self.0 {
            if dir.join(&r.name).exists() {
                continue; // registered again meanwhile (another test's own registration)
            }
            let line = format!(
                ":{}:M:{}:{}:{}:{}:{}",
                r.name,
                r.offset,
                hex(&r.magic),
                r.mask.as_deref().map(hex).unwrap_or_default(),
                r.interpreter.display(),
                r.flags
            );
            if let Err(e) = std::fs::write(dir.join("register"), &line) {
                eprintln!("could not restore the host's {}: {e} ({line})", r.name);
                continue;
            }
            if !r.enabled {
                let _ = std::fs::write(dir.join(&r.name), "0");
            }
            eprintln!("restored the host's {}", r.name);
        }
    }
}

/// `auditwheel show` (auditwheel 6.4.2) of every wheel in `dist`, run natively in a sandbox on
/// the amd64 base OS `baseos`: (wheel, the policy its symbols are consistent with).
pub fn auditwheel_show(r: &Runner, baseos: &str, dist: &Path) -> Vec<(String, String)> {
    let out = r.run(&[
        "run",
        "--network",
        "--baseos",
        baseos,
        "--arch",
        "amd64",
        "--bundle",
        dist.to_str().unwrap(),
        "--",
        "sh",
        "-c",
        "python3 -m pip install --quiet --break-system-packages auditwheel==6.4.2 >&2 && \
         for w in /buildroot/src/*.whl; do echo \"== $(basename $w)\"; auditwheel show $w; done",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    text.split("== ")
        .filter(|s| !s.is_empty())
        .map(|part| {
            let wheel = part.split(' ').next().unwrap().to_string();
            let tag = part
                .split("consistent with the following platform tag: \"")
                .nth(1)
                .and_then(|t| t.split('"').next())
                .unwrap_or_else(|| panic!("auditwheel show of {wheel}: {part}"))
                .to_string();
            (wheel, tag)
        })
        .collect()
}

/// A Debian mirror that is not there: an HTTP server on 127.0.0.1 that answers every request
/// with 404 Not Found, for the life of the test process. Returns its URL
/// (`http://127.0.0.1:PORT/debian`) and the number of requests it has answered.
pub fn mirror_answering_404() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let count = std::sync::Arc::new(AtomicUsize::new(0));
    let answered = count.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut stream = stream;
            // The request's head (apt sends no body), then the answer; one request a connection.
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).is_ok_and(|n| n == 1) {
                head.push(byte[0]);
            }
            let body = "no such file on this mirror\n";
            let _ = write!(
                stream,
                "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n{body}",
                body.len()
            );
            answered.fetch_add(1, Ordering::SeqCst);
        }
    });
    (format!("http://127.0.0.1:{port}/debian"), count)
}

/// The compile commands a build log shows (`-v` to the frontend, verbose CMake and ninja): the
/// lines that compile (`-c`) a C or C++ source file.
pub fn compile_commands(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            words.contains(&"-c")
                && words.iter().any(|w| {
                    [".c", ".cc", ".cpp", ".cxx"]
                        .iter()
                        .any(|suffix| w.ends_with(suffix))
                })
        })
        .collect()
}

/// The `pookie-ns-<pid>` pids cgroups (cgroup v1's pids hierarchy, or v2's root) whose helper
/// has exited (a zombie counts, as for pookie-ns's own sweep in `confine`).
pub fn stale_pids_cgroups() -> Vec<PathBuf> {
    ["/sys/fs/cgroup/pids", "/sys/fs/cgroup"]
        .iter()
        .flat_map(|d| std::fs::read_dir(d).into_iter().flatten().flatten())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let pid: u32 = name.strip_prefix("pookie-ns-")?.parse().ok()?;
            let gone = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map_or(true, |st| st.contains(") Z ") || st.contains(") X "));
            gone.then(|| e.path())
        })
        .collect()
}

/// The Python of a venv with `packages` from PyPI, cached under
/// `FOREIGN_CACHE/<name>/venv` once per machine: one installer at a time (a lock), built beside
/// its final place and renamed, so that a half-made venv is never used.
#[allow(dead_code)]
pub fn cached_venv(name: &str, packages: &[&str]) -> Result<PathBuf, String> {
    let root = Path::new(FOREIGN_CACHE).join(name);
    let python = root.join("venv/bin/python");
    let done = root.join("venv/.complete");
    std::fs::create_dir_all(&root).map_err(|e| format!("{}: {e}", root.display()))?;
    let lock = std::fs::File::create(root.join("lock")).map_err(|e| e.to_string())?;
    let _lock = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| e.to_string())?;
    if done.exists() {
        return Ok(python);
    }
    let tmp = root.join(format!("venv.tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let run = |c: &mut Command, what: &str| -> Result<(), String> {
        let out = c.output().map_err(|e| format!("{what}: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!("{what}: {}", stderr(&out)))
        }
    };
    run(
        Command::new("python3").args(["-m", "venv"]).arg(&tmp),
        "python3 -m venv (install python3-venv)",
    )?;
    run(
        Command::new(tmp.join("bin/python"))
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .args(packages),
        &format!(
            "pip install {} (PyPI must be reachable once per machine)",
            packages.join(" ")
        ),
    )?;
    let _ = std::fs::remove_dir_all(root.join("venv"));
    std::fs::rename(&tmp, root.join("venv")).map_err(|e| e.to_string())?;
    std::fs::write(&done, "").map_err(|e| e.to_string())?;
    Ok(python)
}
