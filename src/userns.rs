//! User namespaces and their id maps. pookie-ns does everything that touches the store's files
//! (unpacking, running, removing) inside a user namespace with the same map, so that the files a
//! sandbox creates under subordinate ids can be read and removed again by the same user.
//!
//! Three maps, chosen once per run:
//! * `Root`: pookie-ns runs as real root; the whole id range maps to itself.
//! * `SubId`: a normal user with a `/etc/subuid` + `/etc/subgid` range and the setuid helpers
//!   `newuidmap`/`newgidmap` (Debian's `uidmap`): 0 → the user, 1..=N → the range, so that package
//!   managers can chown to their system users.
//! * `Single`: only 0 → the user. Every file belongs to the user; chown to another id fails.

use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Command;

use nix::sched::CloneFlags;
use nix::sys::signal::Signal;
use nix::sys::wait::waitpid;
use nix::unistd::{fork, ForkResult, Gid, Pid, Uid};
use serde::{Deserialize, Serialize};

use crate::config::IdMapChoice;
use crate::error::{Error, Result};
use crate::process;
use crate::sys::{self, SysError};

/// How container ids map to host ids.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "lowercase")]
pub enum IdMap {
    Root,
    SubId {
        uid: u32,
        gid: u32,
        subuid: (u32, u32),
        subgid: (u32, u32),
    },
    Single {
        uid: u32,
        gid: u32,
    },
}

impl IdMap {
    /// Picks the map for the calling user: root, a subordinate range, or the single-uid fallback.
    pub fn detect(choice: IdMapChoice) -> IdMap {
        let uid = Uid::current().as_raw();
        let gid = Gid::current().as_raw();
        if uid == 0 {
            return IdMap::Root;
        }
        if choice == IdMapChoice::Single {
            return IdMap::Single { uid, gid };
        }
        let name = user_name(uid);
        let sub = |file: &str| {
            let text = std::fs::read_to_string(file).ok()?;
            subid_range(&text, name.as_deref(), uid)
        };
        match (sub("/etc/subuid"), sub("/etc/subgid"), helpers_present()) {
            (Some(subuid), Some(subgid), true) => IdMap::SubId {
                uid,
                gid,
                subuid,
                subgid,
            },
            (su, sg, helpers) => {
                tracing::debug!(
                    subuid = ?su,
                    subgid = ?sg,
                    newuidmap = helpers,
                    "no usable subordinate id range: single-uid mode"
                );
                IdMap::Single { uid, gid }
            }
        }
    }

    /// Short description for `list` and logs.
    pub fn describe(&self) -> String {
        match self {
            IdMap::Root => "root (ids kept)".into(),
            IdMap::SubId { subuid, .. } => {
                format!("subuid range {}+{} (ids kept)", subuid.0, subuid.1)
            }
            IdMap::Single { uid, .. } => format!("single-uid (all files owned by uid {uid})"),
        }
    }

    pub fn mode_name(&self) -> &'static str {
        match self {
            IdMap::Root => "root",
            IdMap::SubId { .. } => "subuid",
            IdMap::Single { .. } => "single-uid",
        }
    }

    /// True when files keep their in-archive owners under this map.
    pub fn keeps_owners(&self) -> bool {
        !matches!(self, IdMap::Single { .. })
    }

    /// Writes this map for the process `pid`, which has just entered a new user namespace.
    fn apply(&self, pid: Pid) -> Result<()> {
        let proc_file = |name: &str| PathBuf::from(format!("/proc/{pid}/{name}"));
        match self {
            IdMap::Root => {
                sys::write_file(&proc_file("uid_map"), b"0 0 4294967295\n")?;
                sys::write_file(&proc_file("gid_map"), b"0 0 4294967295\n")?;
            }
            IdMap::SubId {
                uid,
                gid,
                subuid,
                subgid,
            } => {
                // Both helpers at once: each is a fork and exec of a setuid binary, the
                // largest part of a rootless sandbox's start.
                let uids = start_map_helper("newuidmap", pid, *uid, *subuid)?;
                let gids = start_map_helper("newgidmap", pid, *gid, *subgid);
                let uids = uids.finish();
                gids?.finish()?;
                uids?;
            }
            IdMap::Single { uid, gid } => {
                // An unprivileged process may write a one-line gid map only after giving up
                // setgroups(2) (user_namespaces(7), "Interaction with system calls changing
                // process GIDs").
                sys::write_file(&proc_file("setgroups"), b"deny\n")?;
                sys::write_file(&proc_file("uid_map"), format!("0 {uid} 1\n").as_bytes())?;
                sys::write_file(&proc_file("gid_map"), format!("0 {gid} 1\n").as_bytes())?;
            }
        }
        Ok(())
    }
}

/// A running `newuidmap` or `newgidmap`.
struct MapHelper {
    command: String,
    helper: &'static str,
    child: std::process::Child,
}

fn start_map_helper(
    helper: &'static str,
    pid: Pid,
    own: u32,
    range: (u32, u32),
) -> Result<MapHelper> {
    let args = [
        pid.to_string(),
        "0".into(),
        own.to_string(),
        "1".into(),
        "1".into(),
        range.0.to_string(),
        range.1.to_string(),
    ];
    let command = format!("{helper} {}", args.join(" "));
    tracing::debug!(command = %command, "writing id map");
    let child = Command::new(helper)
        .args(&args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| Error::io("run", helper, e))?;
    Ok(MapHelper {
        command,
        helper,
        child,
    })
}

impl MapHelper {
    /// Waits for the helper; its failure names the command, the status, stderr and the fix.
    fn finish(self) -> Result<()> {
        let out = self
            .child
            .wait_with_output()
            .map_err(|e| Error::io("wait for", self.helper, e))?;
        if !out.status.success() {
            return Err(Error::Command {
                command: self.command,
                status: out.status.to_string(),
                stderr: format!(
                    "{}\n  hint: check the range in /etc/sub{}id, or set id_map = \"single\" in config.toml",
                    String::from_utf8_lossy(&out.stderr).trim_end(),
                    if self.helper == "newuidmap" { "u" } else { "g" }
                ),
            });
        }
        Ok(())
    }
}

fn helpers_present() -> bool {
    ["newuidmap", "newgidmap"].iter().all(|h| {
        std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).any(|d| d.join(h).is_file()))
            .unwrap_or(false)
    })
}

fn user_name(uid: u32) -> Option<String> {
    nix::unistd::User::from_uid(Uid::from_raw(uid))
        .ok()
        .flatten()
        .map(|u| u.name)
}

/// The first range in an `/etc/subuid`-format text for the user (by name or by number), as
/// `(start, count)`. Ranges shorter than 65536 are still used; `apt` needs ids up to 65534.
pub fn subid_range(text: &str, name: Option<&str>, id: u32) -> Option<(u32, u32)> {
    let id_s = id.to_string();
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let mut f = l.split(':');
            let (who, start, count) = (f.next()?, f.next()?, f.next()?);
            let matches = Some(who) == name || who == id_s;
            let range = (start.parse().ok()?, count.parse().ok()?);
            (matches && range.1 > 0).then_some(range)
        })
        .next()
}

/// A process forked into a new user namespace with a map applied.
pub struct Child {
    pub pid: Pid,
    errors: OwnedFd,
}

/// Exit status a child uses when it failed and wrote its error to the error pipe.
pub const CHILD_FAILED: i32 = 125;

/// Forks a child that enters a new user namespace; the parent writes the id map, then the child
/// runs `body` as uid 0 of the namespace. The child's `Err` is sent back over a pipe and becomes
/// the parent's error in [`Child::wait`].
///
/// Must be called while the process has a single thread (fork(2) copies only the caller).
pub fn spawn(map: &IdMap, body: impl FnOnce(&OwnedFd) -> Result<i32>) -> Result<Child> {
    process::debug_assert_single_threaded("userns::spawn");
    let (ready_r, ready_w) = pipe()?;
    let (go_r, go_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    // SAFETY: pookie-ns is single-threaded here (no progress threads run while sandboxes are
    // spawned), so the child may allocate and use std freely.
    match unsafe { fork() }.map_err(|e| SysError::new("fork", None, e))? {
        ForkResult::Child => {
            drop((ready_r, go_w, err_r));
            let status = (|| -> Result<i32> {
                // If pookie-ns dies, nothing it started may outlive it.
                sys::set_parent_death_signal(Signal::SIGKILL)?;
                sys::unshare(CloneFlags::CLONE_NEWUSER)?;
                write_byte(&ready_w)?;
                drop(ready_w);
                // Wait for the parent to write the map: EOF means it failed and gave up.
                if !read_byte(&go_r) {
                    return Ok(CHILD_FAILED);
                }
                // setgroups is denied in single-uid mode; elsewhere drop the host's
                // supplementary groups, which are unmapped (nogroup) inside.
                let _ = nix::unistd::setgroups(&[]);
                body(&err_w)
            })();
            let code = match status {
                Ok(code) => code,
                Err(e) => {
                    report_error(&err_w, &e);
                    CHILD_FAILED
                }
            };
            // Exit without running the parent's atexit handlers or flushing its buffers twice.
            // SAFETY: _exit never returns and is async-signal-safe.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => {
            drop((ready_w, go_r, err_w));
            let child_handle = Child {
                pid: child,
                errors: err_r,
            };
            if !read_byte(&ready_r) {
                // The child failed before unsharing; its error is in the pipe.
                child_handle.wait()?;
                return Err(Error::Child {
                    message: "the user-namespace helper process exited early".into(),
                    exit_code: 1,
                });
            }
            if let Err(e) = map.apply(child) {
                let _ = nix::sys::signal::kill(child, Signal::SIGKILL);
                let _ = waitpid(child, None);
                return Err(e);
            }
            write_byte(&go_w)?;
            Ok(child_handle)
        }
    }
}

impl Child {
    /// Waits for the child, forwarding INT/TERM/HUP/QUIT sent to pookie-ns by another process.
    /// Returns its exit status (128+N when killed by signal N), or the error it reported.
    pub fn wait(self) -> Result<i32> {
        let code = process::wait_forwarding(self.pid)?;
        crate::confine::remove_pids_cgroup(self.pid);
        let mut msg = String::new();
        let mut f = std::fs::File::from(self.errors);
        let _ = f.read_to_string(&mut msg);
        if let Some(rest) = msg.strip_prefix("E") {
            let (class, message) = rest.split_once(':').unwrap_or(("1", rest));
            return Err(Error::Child {
                message: message.to_string(),
                exit_code: class.parse().unwrap_or(1),
            });
        }
        Ok(code)
    }
}

/// Sends an error over the child's error pipe in the form `E<exit code>:<message>`.
pub fn report_error(pipe: &OwnedFd, e: &Error) {
    let msg = format!("E{}:{e}", e.exit_code());
    let _ = nix::unistd::write(pipe, msg.as_bytes());
}

/// Runs `body` in a child inside a user namespace with `map`, and waits for it.
pub fn run(map: &IdMap, body: impl FnOnce() -> Result<()>) -> Result<()> {
    let child = spawn(map, |_| body().map(|()| 0))?;
    match child.wait()? {
        0 => Ok(()),
        code => Err(Error::Child {
            message: format!("helper process exited with status {code}"),
            exit_code: 1,
        }),
    }
}

/// Removes a tree written by sandboxes (files owned by mapped ids the caller may not delete
/// directly). As root it is removed in place; otherwise inside a user namespace with the map.
pub fn remove_tree(map: &IdMap, path: &Path) -> Result<()> {
    if std::fs::symlink_metadata(path).is_err() {
        return Ok(());
    }
    let remove = || remove_in_place(path);
    match map {
        IdMap::Root => remove(),
        _ => run(map, remove),
    }
}

/// Removes `path` from inside a user namespace that maps its owners (no further helper process).
pub fn remove_in_place(path: &Path) -> Result<()> {
    make_writable_and_remove(path).map_err(|e| Error::io("remove", path, e))
}

/// `remove_dir_all`, after giving the owner write+search permission on directories that lack it
/// (overlayfs leaves `work/work` at mode 000).
fn make_writable_and_remove(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(_) => {
            chmod_dirs(path);
            match std::fs::remove_dir_all(path) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                r => r,
            }
        }
    }
}

fn chmod_dirs(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return;
    };
    if !meta.is_dir() {
        return;
    }
    let mode = meta.permissions().mode();
    if mode & 0o700 != 0o700 {
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode | 0o700));
    }
    if let Ok(rd) = std::fs::read_dir(path) {
        for e in rd.flatten() {
            chmod_dirs(&e.path());
        }
    }
}

fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    Ok(nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| SysError::new("pipe2", None, e))?)
}

fn write_byte(fd: &OwnedFd) -> Result<()> {
    nix::unistd::write(fd, b"1").map_err(|e| SysError::new("write to sync pipe", None, e))?;
    Ok(())
}

fn read_byte(fd: &OwnedFd) -> bool {
    let mut b = [0u8; 1];
    loop {
        match nix::unistd::read(fd.as_raw_fd(), &mut b) {
            Ok(1) => return true,
            Err(nix::errno::Errno::EINTR) => continue,
            // EOF: the other side closed the pipe without a word (it failed or gave up).
            Ok(_) | Err(_) => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subid_range_by_name_or_number() {
        let text = "# comment\nalice:100000:65536\n1001:200000:1000\nbob:300000:0\n";
        assert_eq!(
            subid_range(text, Some("alice"), 1000),
            Some((100000, 65536))
        );
        assert_eq!(subid_range(text, Some("carol"), 1001), Some((200000, 1000)));
        assert_eq!(
            subid_range(text, Some("bob"), 1002),
            None,
            "empty ranges are ignored"
        );
        assert_eq!(subid_range("garbage\n:::\n", Some("alice"), 1), None);
    }
}
