//! The sandbox: runs one command in a root filesystem made of overlay layers, inside new user,
//! mount, pid, uts, ipc (and, without networking, net) namespaces, and passes its exit status back.
//! [`run`] reads top to bottom in the order the kernel requires.
//!
//! Processes:
//! ```text
//! pookie-ns (host)             waits, forwards signals, removes the workspace at the end
//!  └ helper (new user ns)      unshare(NEWPID); waits; commits or empties the upper dir
//!     └ init, pid 1            new mount/uts/ipc/net ns; mounts; pivot_root; reaps; forwards
//!        └ command             execve with a clean environment
//! ```
//! The mount namespace belongs to pid 1 alone, so when it exits every mount vanishes with it: a
//! killed sandbox cannot leave a mount behind on the host.

use std::ffi::CString;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use nix::mount::MsFlags;
use nix::sched::CloneFlags;
use nix::sys::signal::Signal;
use nix::unistd::{fork, ForkResult};

use crate::arch::Arch;
use crate::error::{Error, Result};
use crate::overlay::Layers;
use crate::process;
use crate::sys::{self, SysError};
use crate::syscall::{Kernel, Syscall};
use crate::userns::{self, IdMap};

/// A host path made visible inside the sandbox.
#[derive(Debug, Clone)]
pub struct Bind {
    pub src: PathBuf,
    /// Absolute path inside the sandbox.
    pub dst: PathBuf,
    pub readonly: bool,
}

/// Read-only layers stacked at a path inside the sandbox: a cross build's sysroot (the target's
/// base OS with its instance layers).
#[derive(Debug, Clone)]
pub struct LowerMount {
    /// Topmost first, like [`Layers::lower`]; relative to the store root.
    pub lower: Vec<PathBuf>,
    /// Absolute path inside the sandbox.
    pub dst: PathBuf,
}

/// Everything one sandboxed command needs.
#[derive(Debug, Clone)]
pub struct Spec {
    /// The overlay is mounted from here; `layers` may be relative to it.
    pub store_root: PathBuf,
    pub layers: Layers,
    /// Absolute path of the (empty) directory the overlay is mounted on.
    pub merged: PathBuf,
    pub binds: Vec<Bind>,
    /// Read-only layer stacks mounted inside (a cross build's `/sysroot`).
    pub lower_mounts: Vec<LowerMount>,
    /// Share the host's network (and its DNS and CA configuration); otherwise only loopback.
    pub network: bool,
    pub hostname: String,
    /// Working directory inside (default: /root if the root filesystem has it, else /).
    pub cwd: Option<PathBuf>,
    pub env: Vec<(String, String)>,
    pub argv: Vec<String>,
    /// Foreign architectures to register in a private binfmt_misc instance: (arch, interpreter).
    pub binfmt: Vec<(Arch, PathBuf)>,
    /// When the command succeeds, move the upper dir here (run --commit).
    pub commit_to: Option<PathBuf>,
    /// Send the command's stdout and stderr to this host file instead of ours.
    pub log: Option<PathBuf>,
    /// Write here (a host file) the bytes the command left in the workspace's upper dir, measured
    /// before the upper dir is emptied or committed: the build report's "disk used" figure.
    pub upper_usage: Option<PathBuf>,
    /// When the command fails, leave the upper dir as it is, for inspection (`--keep-failed`).
    pub keep_upper_on_failure: bool,
    /// Run the command as this user of the root filesystem (an image's `User`: `name`, `uid`,
    /// `name:group`, `uid:gid`), resolved as Docker resolves it ([`parse_user`]); `None`: root.
    pub user: Option<String>,
    /// Paths inside given to [`Spec::user`] (recursively) before the command starts: what the
    /// command must write (a build's `/buildroot`).
    pub user_owns: Vec<PathBuf>,
}

impl Spec {
    /// A command in the workspace `ws` over `layers`, with the defaults: no network, no binds,
    /// the base environment, the hostname `pookie-ns`, nothing committed or logged.
    pub fn new(
        store: &crate::store::Store,
        layers: Layers,
        ws: &crate::store::Workspace,
        argv: Vec<String>,
    ) -> Spec {
        Spec {
            store_root: store.root.clone(),
            layers,
            merged: ws.merged(),
            binds: Vec::new(),
            lower_mounts: Vec::new(),
            network: false,
            hostname: "pookie-ns".into(),
            cwd: None,
            env: base_env(false),
            argv,
            binfmt: Vec::new(),
            commit_to: None,
            log: None,
            upper_usage: None,
            keep_upper_on_failure: false,
            user: None,
            user_owns: Vec::new(),
        }
    }
}

/// Where the host's CA bundle appears inside a networked sandbox (see [`ca_env`]).
const HOST_CA_INSIDE: &str = "/run/pookie-ns/host-ca-certificates.crt";

/// Runs the command of `spec` and returns its exit status (128+N if killed by signal N).
///
/// Must be called while the process is single-threaded (it forks).
pub fn run(map: &IdMap, spec: &Spec) -> Result<i32> {
    spawn(map, spec)?.wait()
}

/// Starts the sandbox and returns without waiting: the caller may start threads (a progress
/// display) once the fork is behind it, then [`userns::Child::wait`]s.
pub fn spawn(map: &IdMap, spec: &Spec) -> Result<userns::Child> {
    // The host side only waits: everything else happens in a child inside the user namespace,
    // where the id map makes the store's files ours.
    let single_uid = matches!(map, IdMap::Single { .. });
    userns::spawn(map, |errors| helper_main(spec, single_uid, errors))
}

/// The helper: first process of the user namespace.
fn helper_main(spec: &Spec, single_uid: bool, errors: &OwnedFd) -> Result<i32> {
    if let Some(log) = &spec.log {
        // Opened here, on the host's filesystem; init and the command inherit it as 1 and 2.
        let f = std::fs::File::create(log).map_err(|e| SysError::io("create log", log, &e))?;
        for target in [1, 2] {
            nix::unistd::dup2(std::os::fd::AsRawFd::as_raw_fd(&f), target)
                .map_err(|e| SysError::new("dup2 onto the log", Some(log), e))?;
        }
    }
    // A pids cgroup for the whole sandbox where the host allows one (root): the fork-bomb limit
    // that RLIMIT_NPROC cannot give the host's root (see confine).
    let _ = crate::confine::enter_pids_cgroup();
    // A new pid namespace applies to the children of the caller: the next fork is its pid 1.
    sys::unshare(CloneFlags::CLONE_NEWPID)?;
    // SAFETY: this process is single-threaded (a fresh fork of a single-threaded pookie-ns).
    let init = match unsafe { fork() }.map_err(|e| SysError::new("fork", None, e))? {
        ForkResult::Child => {
            let code = match init_main(spec, single_uid) {
                Ok(code) => code,
                Err(e) => {
                    userns::report_error(errors, &e);
                    userns::CHILD_FAILED
                }
            };
            // SAFETY: _exit ends this process without unwinding into the parent's frames.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => child,
    };
    let code = process::wait_forwarding(init)?;

    // The mount namespace died with init; the upper dir is a plain directory again.
    let upper = spec.store_root.join(&spec.layers.upper);
    let work = spec.store_root.join(&spec.layers.work);
    if let Some(report) = &spec.upper_usage {
        // Measured here, where the id map lets us read files of every mapped owner.
        let (bytes, _) = crate::store::disk_usage(&upper);
        std::fs::write(report, format!("{bytes}\n"))
            .map_err(|e| Error::io("write the workspace's size to", report, e))?;
    }
    if let (Some(dest), 0) = (&spec.commit_to, code) {
        if let Some(parent) = dest.parent() {
            sys::mkdir_p(parent, 0o755)?;
        }
        crate::fault::point("commit-before-rename");
        // One rename: the instance gains the whole layer or nothing.
        std::fs::rename(&upper, dest).map_err(|e| Error::io("commit layer", dest, e))?;
        crate::fault::point("commit-after-rename");
        tracing::debug!(layer = %dest.display(), "committed");
    }
    if code != 0 && spec.keep_upper_on_failure {
        return Ok(code);
    }
    // Empty the workspace here, where the id map lets us delete files of any mapped owner. One
    // after the other: after unshare(CLONE_NEWPID) this process can start no thread (EINVAL),
    // and with init gone no process either.
    for dir in [&upper, &work] {
        if let Err(e) = userns::remove_in_place(dir) {
            tracing::debug!("emptying {}: {e}", dir.display());
        }
    }
    Ok(code)
}

/// Pid 1 of the sandbox: builds the root filesystem, starts the command, reaps, and exits with the
/// command's status. `single_uid`: the user namespace maps one id (see [`crate::single_uid`]).
fn init_main(spec: &Spec, single_uid: bool) -> Result<i32> {
    // If the helper dies (pookie-ns was killed), so does the sandbox: pid 1 exiting kills every
    // process of its pid namespace.
    sys::set_parent_death_signal(Signal::SIGKILL)?;

    // New namespaces, the mounts, pivot_root: through the kernel, in the order set_up_root
    // reads (unit-tested with a recording fake).
    set_up_root(&Kernel, spec, single_uid)?;
    // From here on the host's filesystem is gone: errors travel back through the error pipe.

    // setuid binaries and file capabilities grant nothing inside.
    sys::set_no_new_privs()?;

    let program = resolve_program(&spec.argv[0], &spec.env)?;
    // The image's User, read from the root filesystem's own /etc/passwd and /etc/group.
    let user = match &spec.user {
        Some(u) => image_user(u, single_uid, &spec.user_owns)?,
        None => None,
    };
    // SAFETY: single-threaded process (pid 1 of a fresh namespace).
    match unsafe { fork() }.map_err(|e| SysError::new("fork", None, e))? {
        ForkResult::Child => {
            let code = exec_command(spec, &program, single_uid, user.as_ref());
            // SAFETY: exec failed; leave without running anything of the parent.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => {
            crate::fault::point("command-running");
            Ok(process::wait_for(child, true)?)
        }
    }
}

/// In pid 1, before the command: the new mount, uts, ipc (and net) namespaces, the root
/// filesystem mounted piece by piece, `pivot_root` into it, the old root detached. Every
/// privileged call goes through `os`, so that the order and flags are unit-tested.
fn set_up_root(os: &dyn Syscall, spec: &Spec, single_uid: bool) -> Result<()> {
    let mut flags = CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWUTS | CloneFlags::CLONE_NEWIPC;
    if !spec.network {
        // A new network namespace has only a loopback device, down: we bring it up below.
        flags |= CloneFlags::CLONE_NEWNET;
    }
    os.unshare(flags)?;

    // Mount events must not propagate back to the host's namespace, and pivot_root refuses a
    // shared root (EINVAL): make the whole tree private first.
    os.make_mounts_private()?;

    // The overlay: base OS at the bottom, instance layers, workspace upper on top. Mounted from
    // the store root so that the layer paths are short and relative.
    os.chdir(&spec.store_root)?;
    let options = spec.layers.options()?;
    os.mount(
        Some("overlay"),
        &spec.merged,
        Some("overlay"),
        MsFlags::empty(),
        Some(&options),
    )?;
    let root = spec.merged.as_path();

    // Read-only stacks (a cross build's sysroot), mounted like the overlay, from the store root
    // (still our cwd); a single layer is bind-mounted read-only (overlayfs needs two without an
    // upper dir).
    for m in &spec.lower_mounts {
        let target = mount_point(root, &m.dst, true)?;
        match crate::overlay::read_only_options(&m.lower)? {
            Some(options) => os.mount(
                Some("overlay"),
                &target,
                Some("overlay"),
                MsFlags::MS_RDONLY,
                Some(&options),
            )?,
            None => os.bind(&spec.store_root.join(&m.lower[0]), &target, true)?,
        }
    }

    // /proc of the new pid namespace: shows the sandbox's processes only.
    let proc_dir = mount_point(root, "/proc", true)?;
    os.mount(
        Some("proc"),
        &proc_dir,
        Some("proc"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None,
    )?;

    // Foreign binaries: a private binfmt_misc instance, registered before pivot_root because
    // the instance dies with its last mount and the interpreter is opened now (flag F) from the
    // host's filesystem.
    if !spec.binfmt.is_empty() {
        crate::binfmt::setup_private(os, &root.join("proc/sys/fs/binfmt_misc"), &spec.binfmt)?;
    }
    // Kernel tunables read-only, kernel internals hidden (after binfmt: it is kept below).
    crate::confine::harden_proc(os, &proc_dir)?;
    crate::fault::point("overlay-mounted");

    // A private /tmp, gone when the sandbox ends.
    let tmp = mount_point(root, "/tmp", true)?;
    os.mount(
        Some("tmpfs"),
        &tmp,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=1777"),
    )?;

    setup_dev(os, root)?;

    // /run is expected to be empty at boot; it also carries the host CA bundle when networked.
    let run_dir = mount_point(root, "/run", true)?;
    os.mount(
        Some("tmpfs"),
        &run_dir,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=0755"),
    )?;
    if single_uid {
        // apt stays uid 0 (APT_CONFIG points here; see exec_command).
        let conf = mount_point(root, crate::single_uid::APT_CONFIG, false)?;
        std::fs::write(&conf, crate::single_uid::APT_CONFIG_TEXT)
            .map_err(|e| SysError::io("write", &conf, &e))?;
    }

    for b in &spec.binds {
        let is_dir = std::fs::metadata(&b.src)
            .map_err(|e| SysError::io("bind source", &b.src, &e))?
            .is_dir();
        let target = mount_point(root, &b.dst, is_dir)?;
        os.bind(&b.src, &target, b.readonly)?;
    }

    if spec.network {
        // DNS and TLS as the host has them (pip behind a TLS-inspecting proxy needs the host's
        // extra CA certificates).
        let resolv = Path::new("/etc/resolv.conf");
        if resolv.exists() {
            let target = mount_point(root, "/etc/resolv.conf", false)?;
            os.bind(resolv, &target, true)?;
        }
        let ca = Path::new("/etc/ssl/certs/ca-certificates.crt");
        if ca.exists() {
            let target = mount_point(root, HOST_CA_INSIDE, false)?;
            os.bind(ca, &target, true)?;
        }
    } else {
        os.loopback_up()?;
    }

    os.sethostname(&spec.hostname)?;

    // pivot_root(".", "."): the old root is stacked under the new one and detached at once, so
    // no host path stays reachable (pivot_root(2), NOTES).
    os.chdir(root)?;
    os.pivot_root(Path::new("."), Path::new("."))?;
    os.umount_detach(Path::new("."))?;
    os.chdir(Path::new("/"))?;
    Ok(())
}

/// Replaces this process with the command. Returns only on failure, with the shell's status for
/// it (126 not executable, 127 not found).
fn exec_command(spec: &Spec, program: &Path, single_uid: bool, user: Option<&ImageUser>) -> i32 {
    process::reset_signals();
    let cwd = match &spec.cwd {
        Some(dir) => dir.as_path(),
        None if Path::new("/root").is_dir() => Path::new("/root"),
        None => Path::new("/"),
    };
    if let Err(e) = sys::chdir(cwd) {
        eprintln!("pookie-ns: {e}");
        return 126;
    }
    // Nothing of pookie-ns (lock files, pipes) may leak into the command.
    if let Err(e) = sys::close_fds_from(3) {
        eprintln!("pookie-ns: {e}");
        return 126;
    }
    // No CAP_SYS_ADMIN (no remounting the bundle writable), a bounded number of processes.
    if let Err(e) =
        crate::confine::drop_capabilities().and_then(|_| crate::confine::limit_processes())
    {
        eprintln!("pookie-ns: {e}");
        return 126;
    }
    // Single-uid mode: changes of owner to unmapped ids succeed as no-ops (dpkg installs
    // `root:shadow` files), and apt does not try to become _apt.
    let mut env = spec.env.clone();
    if single_uid {
        if let Err(e) = crate::single_uid::install_chown_filter() {
            eprintln!("pookie-ns: {e}");
            return 126;
        }
        if !env.iter().any(|(k, _)| k == "APT_CONFIG") {
            env.push(("APT_CONFIG".into(), crate::single_uid::APT_CONFIG.into()));
        }
    }
    if let Some(u) = user {
        // Last: setuid to another id clears the capabilities left.
        if let Err(e) = sys::become_ids(u.uid, u.gid, false) {
            eprintln!("pookie-ns: cannot become the image's user {}: {e}", u.spec);
            return 126;
        }
        // As Docker: HOME from the passwd entry unless the image's Env set one.
        for (k, v) in env.iter_mut() {
            match (k.as_str(), &u.home, &u.name) {
                ("HOME", Some(home), _) if v == "/root" => *v = home.clone(),
                ("USER", _, Some(name)) if v == "root" => *v = name.clone(),
                _ => {}
            }
        }
    }
    let to_c = |s: &[u8]| CString::new(s).unwrap_or_default();
    let path = to_c(program.as_os_str().as_bytes());
    let argv: Vec<CString> = spec.argv.iter().map(|a| to_c(a.as_bytes())).collect();
    let env: Vec<CString> = env
        .iter()
        .map(|(k, v)| to_c(format!("{k}={v}").as_bytes()))
        .collect();
    let err = nix::unistd::execve(&path, &argv, &env).unwrap_err();
    eprintln!(
        "pookie-ns: cannot execute {} in the sandbox: {}{}",
        program.display(),
        err.desc(),
        if err == nix::errno::Errno::ENOEXEC {
            " (a binary of another architecture? is its QEMU interpreter registered?)"
        } else {
            ""
        }
    );
    if err == nix::errno::Errno::ENOENT {
        127
    } else {
        126
    }
}

/// An image's `User`, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageUser {
    /// As the image wrote it.
    pub spec: String,
    pub uid: u32,
    pub gid: u32,
    pub name: Option<String>,
    pub home: Option<String>,
}

/// Resolves an image's `User` as Docker does, against the texts of the root filesystem's
/// `/etc/passwd` and `/etc/group`: `name` or `uid`, optionally `:group` or `:gid`. A name must
/// exist; a number need not (its group is then its passwd entry's, else 0).
pub fn parse_user(spec: &str, passwd: &str, group: &str) -> std::result::Result<ImageUser, String> {
    let (user, grp) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let entries = |text: &str| -> Vec<Vec<String>> {
        text.lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
            .map(|l| l.split(':').map(str::to_string).collect())
            .collect()
    };
    let users = entries(passwd);
    let entry = users
        .iter()
        .filter(|f| f.len() >= 6)
        .find(|f| f[0] == user || f[2] == user);
    let uid = match (user.parse::<u32>(), entry) {
        (Ok(n), _) => n,
        (Err(_), Some(f)) => f[2]
            .parse()
            .map_err(|_| format!("{user}: bad uid in /etc/passwd"))?,
        (Err(_), None) => return Err(format!("no user {user:?} in the image's /etc/passwd")),
    };
    let gid = match grp {
        Some(g) => match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => entries(group)
                .iter()
                .find(|f| f.len() >= 3 && f[0] == g)
                .and_then(|f| f[2].parse().ok())
                .ok_or_else(|| format!("no group {g:?} in the image's /etc/group"))?,
        },
        None => entry.and_then(|f| f[3].parse().ok()).unwrap_or(0),
    };
    Ok(ImageUser {
        spec: spec.to_string(),
        uid,
        gid,
        name: entry.map(|f| f[0].clone()),
        home: entry.map(|f| f[5].clone()).filter(|h| !h.is_empty()),
    })
}

/// In init, after pivot_root: the image's `User` resolved, and `owns` given to it. None for root
/// and, in single-uid mode, for any other user: one id is mapped, so the command runs as root
/// (said on its stderr).
fn image_user(spec: &str, single_uid: bool, owns: &[PathBuf]) -> Result<Option<ImageUser>> {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let u = parse_user(spec, &read("/etc/passwd"), &read("/etc/group"))
        .map_err(|e| Error::usage(format!("the image's User {spec:?}: {e}")))?;
    if u.uid == 0 && u.gid == 0 {
        return Ok(None);
    }
    if single_uid {
        eprintln!(
            "pookie-ns: the image's User {spec:?} is not mapped in single-uid mode (one id): \
             running as root"
        );
        return Ok(None);
    }
    for p in owns.iter().filter(|p| p.exists()) {
        sys::chown_tree(p, u.uid, u.gid)?;
    }
    Ok(Some(u))
}

/// Finds `name` on the sandbox's PATH (the host's PATH means nothing inside).
fn resolve_program(name: &str, env: &[(String, String)]) -> Result<PathBuf> {
    if name.contains('/') {
        return Ok(PathBuf::from(name));
    }
    let path = env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.as_str())
        .unwrap_or("/usr/bin:/bin");
    for dir in path.split(':').filter(|d| !d.is_empty()) {
        let candidate = Path::new(dir).join(name);
        if let Ok(meta) = std::fs::metadata(&candidate) {
            use std::os::unix::fs::PermissionsExt;
            if meta.is_file() && meta.permissions().mode() & 0o111 != 0 {
                return Ok(candidate);
            }
        }
    }
    Err(Error::Child {
        message: format!("{name}: command not found in the sandbox (PATH={path})"),
        exit_code: 127,
    })
}

/// A minimal /dev: a tmpfs holding the host's harmless character devices (bind-mounted: a user
/// namespace cannot mknod), a private devpts instance, /dev/shm and the usual symlinks.
fn setup_dev(os: &dyn Syscall, root: &Path) -> Result<()> {
    let dev = mount_point(root, "/dev", true)?;
    os.mount(
        Some("tmpfs"),
        &dev,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("mode=0755"),
    )?;
    for name in ["null", "zero", "full", "random", "urandom", "tty"] {
        let host = Path::new("/dev").join(name);
        if !host.exists() {
            continue;
        }
        let target = dev.join(name);
        sys::touch(&target)?;
        os.bind(&host, &target, false)?;
    }
    let pts = dev.join("pts");
    sys::mkdir_p(&pts, 0o755)?;
    os.mount(
        Some("devpts"),
        &pts,
        Some("devpts"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=0620"),
    )?;
    let shm = dev.join("shm");
    sys::mkdir_p(&shm, 0o1777)?;
    os.mount(
        Some("tmpfs"),
        &shm,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=1777"),
    )?;
    for (link, target) in [
        ("ptmx", "pts/ptmx"),
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        let p = dev.join(link);
        std::os::unix::fs::symlink(target, &p).map_err(|e| SysError::io("symlink", &p, &e))?;
    }
    Ok(())
}

/// The path under `root` for the absolute in-sandbox path `inside`, created if missing (a
/// directory, or an empty file for a file bind). No component may be a symlink: a link in the
/// root filesystem (`/etc/resolv.conf -> /run/...`) would otherwise be followed on the host.
/// A symlink in the final place is replaced (the change lands in the workspace only).
pub fn mount_point(root: &Path, inside: impl AsRef<Path>, dir: bool) -> Result<PathBuf> {
    let inside = inside.as_ref();
    let mut path = root.to_path_buf();
    let comps: Vec<Component> = inside.components().collect();
    for (i, c) in comps.iter().enumerate() {
        let name = match c {
            Component::RootDir | Component::CurDir => continue,
            Component::Normal(n) => n,
            _ => {
                return Err(Error::usage(format!(
                    "mount point {} must be an absolute path without '..'",
                    inside.display()
                )))
            }
        };
        path.push(name);
        let last = i + 1 == comps.len();
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.file_type().is_symlink() => {
                if !last {
                    return Err(Error::usage(format!(
                        "cannot mount on {}: {} is a symlink in the root filesystem",
                        inside.display(),
                        path.strip_prefix(root).unwrap_or(&path).display()
                    )));
                }
                std::fs::remove_file(&path)
                    .map_err(|e| SysError::io("replace symlink", &path, &e))?;
                create(&path, dir)?;
            }
            Ok(m) if !last && !m.is_dir() => {
                return Err(Error::usage(format!(
                    "cannot mount on {}: {} is not a directory",
                    inside.display(),
                    path.display()
                )))
            }
            Ok(_) => {}
            Err(_) => create(&path, dir || !last)?,
        }
    }
    Ok(path)
}

fn create(path: &Path, dir: bool) -> Result<()> {
    if dir {
        sys::mkdir_p(path, 0o755)?;
    } else {
        sys::touch(path)?;
    }
    Ok(())
}

/// The environment of a sandboxed command: a clean one, not the host's.
pub fn base_env(network: bool) -> Vec<(String, String)> {
    let mut env = vec![
        (
            "PATH".to_string(),
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string(),
        ),
        ("HOME".into(), "/root".into()),
        ("USER".into(), "root".into()),
        ("LANG".into(), "C.UTF-8".into()),
        ("container".into(), "pookie-ns".into()),
    ];
    if let Ok(term) = std::env::var("TERM") {
        env.push(("TERM".into(), term));
    }
    if network && Path::new("/etc/ssl/certs/ca-certificates.crt").exists() {
        env.extend(ca_env());
    }
    env
}

/// Tells TLS clients (OpenSSL, pip, requests, curl, git, cargo) to trust the host's CA bundle, which a
/// networked sandbox sees at [`HOST_CA_INSIDE`] (the rootfs's own bundle stays untouched, so a
/// committed `apt-get install ca-certificates` still works).
fn ca_env() -> Vec<(String, String)> {
    [
        "SSL_CERT_FILE",
        "PIP_CERT",
        "REQUESTS_CA_BUNDLE",
        "CURL_CA_BUNDLE",
        "GIT_SSL_CAINFO",
        // cargo's libcurl is built with a default CA file that outranks SSL_CERT_FILE.
        "CARGO_HTTP_CAINFO",
    ]
    .iter()
    .map(|k| (k.to_string(), HOST_CA_INSIDE.to_string()))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_points_never_follow_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("evil")).unwrap();
        std::os::unix::fs::symlink("/nonexistent/x", root.join("etc/resolv.conf")).unwrap();

        assert!(mount_point(&root, "/evil/x", true).is_err());
        assert!(std::fs::read_dir(&outside).unwrap().next().is_none());

        let p = mount_point(&root, "/etc/resolv.conf", false).unwrap();
        assert!(std::fs::symlink_metadata(&p).unwrap().is_file());

        let p = mount_point(&root, "/buildroot/src", true).unwrap();
        assert!(p.is_dir() && p.starts_with(&root));
        assert!(mount_point(&root, "/a/../b", true).is_err());
    }

    #[test]
    fn image_users_resolve_as_docker_resolves_them() {
        let passwd = "root:x:0:0:root:/root:/bin/sh\nwww-data:x:33:33:www:/var/www:/bin/sh\n";
        let group = "root:x:0:\nwww-data:x:33:\nbuild:x:1500:\n";
        let p = |s: &str| parse_user(s, passwd, group);
        let u = p("www-data").unwrap();
        assert_eq!(
            (u.uid, u.gid, u.home.as_deref()),
            (33, 33, Some("/var/www"))
        );
        assert_eq!((p("33").unwrap().uid, p("33").unwrap().gid), (33, 33));
        assert_eq!((p("1000").unwrap().uid, p("1000").unwrap().gid), (1000, 0));
        assert_eq!(p("www-data:build").unwrap().gid, 1500);
        assert_eq!(p("1000:1000").unwrap().gid, 1000);
        assert_eq!(p("0:0").unwrap().uid, 0);
        assert!(p("nobody").unwrap_err().contains("no user \"nobody\""));
        assert!(p("root:wheel").unwrap_err().contains("no group"));
    }

    /// A spec over a store in `dir`: one base layer, the workspace `w`, no network.
    fn spec_in(dir: &Path) -> Spec {
        Spec {
            store_root: dir.to_path_buf(),
            layers: Layers {
                lower: vec!["baseos/bb/amd64/rootfs".into()],
                upper: "workspaces/w/upper".into(),
                work: "workspaces/w/work".into(),
            },
            merged: dir.join("workspaces/w"),
            binds: Vec::new(),
            lower_mounts: Vec::new(),
            network: false,
            hostname: "pookie-ns".into(),
            cwd: None,
            env: base_env(false),
            argv: vec!["/bin/true".into()],
            binfmt: Vec::new(),
            commit_to: None,
            log: None,
            upper_usage: None,
            keep_upper_on_failure: false,
            user: None,
            user_owns: Vec::new(),
        }
    }

    /// What the kernel shows in a fresh /proc of the entries harden_proc handles: some of each
    /// kind (directory, file, missing).
    fn fake_proc(root: &Path) {
        for d in ["proc/sys", "proc/irq", "proc/acpi"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        for f in ["proc/sysrq-trigger", "proc/kcore"] {
            std::fs::write(root.join(f), "").unwrap();
        }
    }

    /// The calls of `set_up_root` for `spec`, through the recording fake. The locked flags of
    /// every mount are nosuid,nodev,noexec (as /proc's are).
    fn recorded(dir: &Path, spec: &Spec, single_uid: bool) -> Vec<String> {
        let locked = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
        let fake = crate::syscall::Recorder::new(dir, locked);
        set_up_root(&fake, spec, single_uid).unwrap();
        fake.calls()
    }

    #[test]
    fn the_root_is_built_in_this_order_with_these_flags() {
        let dir = tempfile::tempdir().unwrap();
        let spec = spec_in(dir.path());
        fake_proc(&spec.merged);
        let devices: Vec<String> = ["null", "zero", "full", "random", "urandom", "tty"]
            .iter()
            .filter(|d| Path::new("/dev").join(d).exists())
            .map(|d| format!("mount /dev/{d} on ROOT/workspaces/w/dev/{d} type - flags MS_BIND|MS_REC data -"))
            .collect();
        let ro = |p: &str| {
            [
                format!("mount ROOT/workspaces/w/proc/{p} on ROOT/workspaces/w/proc/{p} type - flags MS_BIND|MS_REC data -"),
                format!("mount - on ROOT/workspaces/w/proc/{p} type - flags MS_RDONLY|MS_NOSUID|MS_NODEV|MS_NOEXEC|MS_REMOUNT|MS_BIND data -"),
            ]
        };
        let mut want: Vec<String> = vec![
            "unshare CLONE_NEWNS|CLONE_NEWUTS|CLONE_NEWIPC|CLONE_NEWNET".into(),
            // Private before anything is mounted.
            "mount - on / type - flags MS_REC|MS_PRIVATE data -".into(),
            "chdir ROOT".into(),
            "mount overlay on ROOT/workspaces/w type overlay flags - data lowerdir=baseos/bb/amd64/rootfs,upperdir=workspaces/w/upper,workdir=workspaces/w/work,userxattr".into(),
            "mount proc on ROOT/workspaces/w/proc type proc flags MS_NOSUID|MS_NODEV|MS_NOEXEC data -".into(),
        ];
        // /proc hardened: tunables read-only (bind, then remount keeping the locked flags),
        // internals hidden (/dev/null over a file, an empty tmpfs over a directory).
        want.extend(ro("sys"));
        want.extend(ro("sysrq-trigger"));
        want.extend(ro("irq"));
        want.extend([
            "mount /dev/null on ROOT/workspaces/w/proc/kcore type - flags MS_BIND|MS_REC data -".to_string(),
            "mount - on ROOT/workspaces/w/proc/kcore type - flags MS_RDONLY|MS_NOSUID|MS_NODEV|MS_NOEXEC|MS_REMOUNT|MS_BIND data -".into(),
            "mount tmpfs on ROOT/workspaces/w/proc/acpi type tmpfs flags MS_RDONLY|MS_NOSUID|MS_NODEV|MS_NOEXEC data size=0,mode=0555".into(),
            "mount tmpfs on ROOT/workspaces/w/tmp type tmpfs flags MS_NOSUID|MS_NODEV data mode=1777".into(),
            "mount tmpfs on ROOT/workspaces/w/dev type tmpfs flags MS_NOSUID|MS_NOEXEC data mode=0755".into(),
        ]);
        want.extend(devices);
        want.extend([
            "mount devpts on ROOT/workspaces/w/dev/pts type devpts flags MS_NOSUID|MS_NOEXEC data newinstance,ptmxmode=0666,mode=0620".to_string(),
            "mount tmpfs on ROOT/workspaces/w/dev/shm type tmpfs flags MS_NOSUID|MS_NODEV data mode=1777".into(),
            "mount tmpfs on ROOT/workspaces/w/run type tmpfs flags MS_NOSUID|MS_NODEV data mode=0755".into(),
            // No network: only lo, brought up.
            "loopback up".into(),
            "sethostname pookie-ns".into(),
            // Into the new root; the old one stacked under it and detached.
            "chdir ROOT/workspaces/w".into(),
            "pivot_root . .".into(),
            "umount . flags MNT_DETACH".into(),
            "chdir /".into(),
        ]);
        let got = recorded(dir.path(), &spec, false);
        assert_eq!(got, want, "\ngot:\n{}", got.join("\n"));
        // The mount points were made inside the root, the devices' as files.
        assert!(spec.merged.join("dev").is_dir() && spec.merged.join("run").is_dir());
        assert!(std::fs::symlink_metadata(spec.merged.join("dev/null"))
            .unwrap()
            .is_file());
    }

    #[test]
    fn stacks_binds_and_the_network_come_in_their_places() {
        let dir = tempfile::tempdir().unwrap();
        let mut spec = spec_in(dir.path());
        spec.network = true;
        spec.lower_mounts = vec![
            LowerMount {
                lower: vec!["a/0001".into(), "baseos/x/arm64/rootfs".into()],
                dst: "/sysroot".into(),
            },
            LowerMount {
                lower: vec!["baseos/y/arm64/rootfs".into()],
                dst: "/opt/y".into(),
            },
        ];
        let bundle = dir.path().join("bundle");
        let out = dir.path().join("out");
        std::fs::create_dir_all(&bundle).unwrap();
        std::fs::create_dir_all(&out).unwrap();
        spec.binds = vec![
            Bind {
                src: bundle,
                dst: "/buildroot/src".into(),
                readonly: true,
            },
            Bind {
                src: out,
                dst: "/buildroot/out".into(),
                readonly: false,
            },
        ];
        let got = recorded(dir.path(), &spec, true);
        let at = |line: &str| {
            got.iter()
                .position(|l| l == line)
                .unwrap_or_else(|| panic!("no {line:?} in\n{}", got.join("\n")))
        };
        // The network is shared: no new net namespace, lo left alone.
        assert_eq!(got[0], "unshare CLONE_NEWNS|CLONE_NEWUTS|CLONE_NEWIPC");
        assert!(!got.iter().any(|l| l == "loopback up"));
        // The stacks right after the overlay, before /proc: two layers as a read-only overlay,
        // one as a read-only bind.
        let overlay = at("mount overlay on ROOT/workspaces/w type overlay flags - data lowerdir=baseos/bb/amd64/rootfs,upperdir=workspaces/w/upper,workdir=workspaces/w/work,userxattr");
        let sysroot = at("mount overlay on ROOT/workspaces/w/sysroot type overlay flags MS_RDONLY data lowerdir=a/0001:baseos/x/arm64/rootfs,userxattr");
        let single = at("mount ROOT/baseos/y/arm64/rootfs on ROOT/workspaces/w/opt/y type - flags MS_BIND|MS_REC data -");
        assert_eq!(got[single + 1], "mount - on ROOT/workspaces/w/opt/y type - flags MS_RDONLY|MS_NOSUID|MS_NODEV|MS_NOEXEC|MS_REMOUNT|MS_BIND data -");
        let proc = at("mount proc on ROOT/workspaces/w/proc type proc flags MS_NOSUID|MS_NODEV|MS_NOEXEC data -");
        assert!(overlay < sysroot && sysroot < single && single < proc);
        // The binds after /run, the read-only one remounted, the other not.
        let run = at("mount tmpfs on ROOT/workspaces/w/run type tmpfs flags MS_NOSUID|MS_NODEV data mode=0755");
        let ro = at("mount ROOT/bundle on ROOT/workspaces/w/buildroot/src type - flags MS_BIND|MS_REC data -");
        assert_eq!(got[ro + 1], "mount - on ROOT/workspaces/w/buildroot/src type - flags MS_RDONLY|MS_NOSUID|MS_NODEV|MS_NOEXEC|MS_REMOUNT|MS_BIND data -");
        let rw = at(
            "mount ROOT/out on ROOT/workspaces/w/buildroot/out type - flags MS_BIND|MS_REC data -",
        );
        assert!(!got[rw + 1].contains("buildroot/out"), "{}", got[rw + 1]);
        assert!(run < ro && ro < rw);
        // The host's DNS and CA bundle, read-only, after the binds.
        for (host, inside) in [
            ("/etc/resolv.conf", "/etc/resolv.conf"),
            ("/etc/ssl/certs/ca-certificates.crt", HOST_CA_INSIDE),
        ] {
            if Path::new(host).exists() {
                let i = at(&format!(
                    "mount {host} on ROOT/workspaces/w{inside} type - flags MS_BIND|MS_REC data -"
                ));
                assert!(i > rw && got[i + 1].contains("MS_RDONLY"), "{}", got[i + 1]);
            }
        }
        // Single-uid mode writes apt's configuration into the new /run.
        assert!(spec
            .merged
            .join(&crate::single_uid::APT_CONFIG[1..])
            .is_file());
        // pivot_root last.
        assert_eq!(
            got[got.len() - 4..],
            [
                "chdir ROOT/workspaces/w",
                "pivot_root . .",
                "umount . flags MNT_DETACH",
                "chdir /"
            ]
        );
    }

    #[test]
    fn environment_is_clean() {
        let env = base_env(false);
        assert!(env
            .iter()
            .any(|(k, v)| k == "PATH" && v.contains("/usr/bin")));
        assert!(!env.iter().any(|(k, _)| k == "SSL_CERT_FILE"));
    }
}
