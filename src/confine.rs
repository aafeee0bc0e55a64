//! What the sandboxed command may not do, beyond what its namespaces already prevent: the
//! capabilities it keeps, the parts of `/proc` it may not write or read, and how many processes it
//! may start. SECURITY.md explains why each rule exists.
//!
//! The command runs as uid 0 of its own user namespace. Its capabilities count only there — but
//! that still lets it remount what pookie-ns mounted (a read-only bundle bind can be made
//! writable with `mount -o remount,rw`), and when pookie-ns runs as root the namespace maps uid 0
//! to the host's root, so root-owned files of the host that stay visible (`/proc/sys/...`) pass the
//! ordinary permission checks. Hence: a bounding set without `CAP_SYS_ADMIN` (Docker's default
//! set), `/proc/sys` and friends read-only, and a limit on the number of processes.

use std::path::{Path, PathBuf};

use caps::Capability;
use nix::errno::Errno;
use nix::mount::MsFlags;

use crate::sys::{SysError, SysResult};
use crate::syscall::Syscall;

/// The capabilities the command keeps (in its user namespace only): the default set of Docker
/// and Podman, which package managers and builds need (`chown`, `setuid` to `_apt`, ...).
/// Everything else — `CAP_SYS_ADMIN` (mount, remount), `CAP_NET_ADMIN`, `CAP_SYS_PTRACE`,
/// `CAP_SYS_MODULE` ... — leaves the bounding set before the command starts.
pub const KEPT_CAPABILITIES: [Capability; 14] = [
    Capability::CAP_CHOWN,
    Capability::CAP_DAC_OVERRIDE,
    Capability::CAP_FOWNER,
    Capability::CAP_FSETID,
    Capability::CAP_KILL,
    Capability::CAP_SETGID,
    Capability::CAP_SETUID,
    Capability::CAP_SETPCAP,
    Capability::CAP_NET_BIND_SERVICE,
    Capability::CAP_NET_RAW,
    Capability::CAP_SYS_CHROOT,
    Capability::CAP_MKNOD,
    Capability::CAP_AUDIT_WRITE,
    Capability::CAP_SETFCAP,
];

/// The bounding set as `/proc/self/status` shows it (`CapBnd`), in hex.
pub fn kept_capability_mask() -> u64 {
    KEPT_CAPABILITIES.iter().fold(0, |m, c| m | c.bitmask())
}

/// Drops every capability but [`KEPT_CAPABILITIES`] from the bounding set and clears the ambient
/// set. The command is exec'd as uid 0, so execve(2) gives it exactly the bounding set; no later
/// exec can gain more (no_new_privs is set too).
///
/// By number, not through `caps::drop`: the `caps` crate names only the capabilities it knows
/// (up to `CAP_CHECKPOINT_RESTORE`), and one that a newer kernel adds must leave the bounding set
/// too; the loop runs until the kernel's last one (`EINVAL`). The errors keep their errno, which
/// `caps`'s string errors do not.
pub fn drop_capabilities() -> SysResult<()> {
    let keep = kept_capability_mask();
    for cap in 0..64u32 {
        if keep & (1 << cap) != 0 {
            continue;
        }
        // SAFETY: prctl with integer arguments only.
        let r = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
        match Errno::result(r) {
            Ok(_) => {}
            // Past the kernel's last capability (/proc/sys/kernel/cap_last_cap): done.
            Err(Errno::EINVAL) => break,
            Err(e) => {
                return Err(SysError::new(
                    format!("prctl(PR_CAPBSET_DROP, {cap})"),
                    None,
                    e,
                ))
            }
        }
    }
    // SAFETY: prctl with integer arguments only.
    let r = unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    Errno::result(r)
        .map(drop)
        .map_err(|e| SysError::new("prctl(PR_CAP_AMBIENT_CLEAR_ALL)", None, e))
}

/// Paths under `/proc` made read-only: kernel tunables (`sys`: `kernel.core_pattern` would run a
/// program as the host's root), the magic SysRq key, IRQ affinities, bus and filesystem knobs.
/// The same list as Docker's `readonlyPaths`.
pub const PROC_READ_ONLY: [&str; 5] = ["sys", "sysrq-trigger", "irq", "bus", "fs"];

/// Paths under `/proc` hidden (`/dev/null` over files, an empty read-only tmpfs over
/// directories): kernel memory, keyrings, timer and scheduler internals (Docker's `maskedPaths`).
pub const PROC_MASKED: [&str; 9] = [
    "kcore",
    "keys",
    "latency_stats",
    "timer_list",
    "timer_stats",
    "sched_debug",
    "acpi",
    "scsi",
    "asound",
];

/// Makes the dangerous parts of the freshly mounted `proc` (at `proc`, on the new root, before
/// pivot_root) read-only or hidden. The command cannot undo this without `CAP_SYS_ADMIN`, and
/// in a nested user namespace these mounts are locked; the kernel also refuses a new `proc`
/// mount while parts of the existing one are covered (mount_too_revealing).
pub fn harden_proc(os: &dyn Syscall, proc: &Path) -> SysResult<()> {
    for name in PROC_READ_ONLY {
        let p = proc.join(name);
        if std::fs::symlink_metadata(&p).is_ok() {
            // Recursive: keeps a private binfmt_misc instance mounted below /proc/sys.
            os.bind(&p, &p, true)?;
        }
    }
    for name in PROC_MASKED {
        let p = proc.join(name);
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.is_dir() => os.mount(
                Some("tmpfs"),
                &p,
                Some("tmpfs"),
                MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
                Some("size=0,mode=0555"),
            )?,
            Ok(_) => os.bind(Path::new("/dev/null"), &p, true)?,
            Err(_) => {}
        }
    }
    Ok(())
}

/// The most processes (threads included) one sandbox may run at a time: enough for `make -j`
/// with every core busy, few enough that a fork bomb stops long before the host's limits.
pub fn max_processes() -> u64 {
    processes_for(std::thread::available_parallelism().map_or(1, |n| n.get()) as u64)
}

/// 64 a core (a parallel build's compilers and their helpers), at least 4096.
fn processes_for(cpus: u64) -> u64 {
    (64 * cpus).max(4096)
}

/// `RLIMIT_NPROC` for the command and all it starts. Since Linux 5.14 the count is kept per
/// user namespace and uid, so it counts this sandbox's processes only, not the user's others.
/// The kernel does not apply it to the host's root (uid 0 is exempt): for root the pids cgroup
/// of [`enter_pids_cgroup`] sets the limit instead.
pub fn limit_processes() -> SysResult<()> {
    let max = max_processes();
    let (soft, hard) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NPROC)
        .map_err(|e| SysError::new("getrlimit(RLIMIT_NPROC)", None, e))?;
    nix::sys::resource::setrlimit(
        nix::sys::resource::Resource::RLIMIT_NPROC,
        soft.min(max),
        hard.min(max),
    )
    .map_err(|e| SysError::new("setrlimit(RLIMIT_NPROC)", None, e))
}

/// Where a `pookie-ns-<pid>` pids cgroup can be made: the cgroup v1 `pids` hierarchy at this
/// process's own place in it, or the cgroup v2 root when the `pids` controller is enabled there
/// (a v2 cgroup with processes in it cannot have controlled children). Both are writable only
/// by root, or where an administrator delegated them.
fn pids_cgroup_parents() -> Vec<PathBuf> {
    let mut out = Vec::new();
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    for line in own.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = match (parts.next(), parts.next(), parts.next()) {
            (Some(id), Some(c), Some(p)) => (id, c, p),
            _ => continue,
        };
        if controllers.split(',').any(|c| c == "pids") {
            let dir = Path::new("/sys/fs/cgroup/pids").join(path.trim_start_matches('/'));
            if dir.join("cgroup.procs").exists() {
                out.push(dir);
            }
        }
    }
    let v2 = Path::new("/sys/fs/cgroup");
    let enabled = std::fs::read_to_string(v2.join("cgroup.subtree_control")).unwrap_or_default();
    if enabled.split_whitespace().any(|c| c == "pids") {
        out.push(v2.to_path_buf());
    }
    out
}

/// Moves this process (the sandbox's helper, before it forks pid 1) into a new pids cgroup
/// limited to [`max_processes`], where the host lets us make one. Best effort: without one the
/// `RLIMIT_NPROC` of [`limit_processes`] is the limit. Removed by [`remove_pids_cgroup`] when the
/// helper has exited, or by the next sandbox if pookie-ns was killed.
pub fn enter_pids_cgroup() -> Option<PathBuf> {
    let pid = std::process::id();
    for parent in pids_cgroup_parents() {
        sweep_pids_cgroups(&parent);
        let dir = parent.join(format!("pookie-ns-{pid}"));
        if std::fs::create_dir(&dir).is_err() {
            continue;
        }
        // The helper is single-threaded, so moving its one thread moves the process. cgroup v1's
        // `tasks` does that without the global threadgroup lock that a write to `cgroup.procs`
        // takes, whose write side waits for an RCU grace period (measured on Linux 6.18: 0.3 ms
        // against 5-20 ms on a loaded host, every sandbox). v2 has only `cgroup.procs`.
        let file = if dir.join("tasks").exists() {
            "tasks"
        } else {
            "cgroup.procs"
        };
        let joined = std::fs::write(dir.join("pids.max"), max_processes().to_string())
            .and_then(|_| std::fs::write(dir.join(file), "0"));
        match joined {
            Ok(()) => {
                tracing::debug!(cgroup = %dir.display(), "sandbox in its own pids cgroup");
                return Some(dir);
            }
            Err(e) => {
                tracing::debug!("joining the pids cgroup {}: {e}", dir.display());
                let _ = std::fs::remove_dir(&dir);
            }
        }
    }
    None
}

/// Removes the pids cgroup of the sandbox helper `pid` (which has exited: the cgroup is empty).
pub fn remove_pids_cgroup(pid: nix::unistd::Pid) {
    for parent in pids_cgroup_parents() {
        let dir = parent.join(format!("pookie-ns-{pid}"));
        if dir.exists() {
            if let Err(e) = std::fs::remove_dir(&dir) {
                tracing::debug!("removing the pids cgroup {}: {e}", dir.display());
            }
        }
    }
}

/// Removes the `pookie-ns-<pid>` cgroups whose helper is gone (pookie-ns was killed): those whose
/// pid is free, and — since a pid may have been given to another process since — those older
/// than a minute. rmdir refuses a cgroup that still has processes (EBUSY), so a live sandbox
/// keeps its own.
fn sweep_pids_cgroups(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("pookie-ns-"))
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        // A killed helper may stay a zombie for a while (its parent died too; the host's init
        // reaps it when it gets to it): that counts as gone.
        let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|st| {
                st.rsplit_once(')')
                    .map(|(_, rest)| rest.trim_start().starts_with(['Z', 'X']))
            })
            .unwrap_or(false);
        let gone = zombie
            || nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) == Err(Errno::ESRCH);
        let stale = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > std::time::Duration::from_secs(60));
        if gone || stale {
            // An empty cgroup is removed with rmdir; one still in use refuses (EBUSY).
            let _ = std::fs::remove_dir(e.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kept_set_has_no_admin_capabilities() {
        let mask = kept_capability_mask();
        assert_eq!(mask, 0x00000000a80425fb);
        for admin in [
            Capability::CAP_NET_ADMIN,
            Capability::CAP_SYS_MODULE,
            Capability::CAP_SYS_PTRACE,
            Capability::CAP_SYS_ADMIN,
        ] {
            assert_eq!(mask & admin.bitmask(), 0, "{admin} kept");
        }
    }

    #[test]
    fn the_process_limit_grows_with_the_cores_and_stays_below_the_hosts() {
        assert_eq!(processes_for(1), 4096);
        assert_eq!(processes_for(64), 4096);
        assert_eq!(processes_for(128), 8192);
        // A fork bomb inside must stop before the host runs out of pids or threads.
        for file in ["/proc/sys/kernel/pid_max", "/proc/sys/kernel/threads-max"] {
            let host: u64 = std::fs::read_to_string(file)
                .expect(file)
                .trim()
                .parse()
                .expect(file);
            assert!(
                max_processes() < host / 2,
                "{} processes leave too little of {file} = {host}",
                max_processes()
            );
        }
    }
}
