//! `sudo pookie-ns ...`: the documented workflow loads base OSes with sudo and builds without it,
//! so a call through sudo works for the user who typed it. pookie-ns does what needs root in that
//! same call (a host-wide binfmt registration that mmdebstrap needs for a foreign arch, a
//! subordinate id range with `--add-subuid`), says so once, and then becomes that user for
//! everything else: their store, their id map, files owned exactly as their rootless runs expect.
//! `--system` (or `--work-dir`) keeps root's own store instead.

use std::ffi::CString;
use std::path::PathBuf;
use std::process::Command;

use nix::unistd::{Gid, Uid, User};

use crate::error::{Error, Result};
use crate::sys::SysError;
use crate::userns::subid_range;

/// The user who ran `sudo pookie-ns`.
#[derive(Debug, Clone)]
pub struct Invoker {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
}

/// The invoking user when pookie-ns runs as root through sudo (SUDO_UID set, not root itself).
pub fn invoker() -> Option<Invoker> {
    if !nix::unistd::geteuid().is_root() {
        return None;
    }
    let uid: u32 = std::env::var("SUDO_UID").ok()?.parse().ok()?;
    if uid == 0 {
        return None;
    }
    let user = User::from_uid(Uid::from_raw(uid)).ok().flatten()?;
    if let Ok(name) = std::env::var("SUDO_USER") {
        if name != user.name {
            tracing::warn!(
                "SUDO_USER={name} does not match SUDO_UID={uid} ({}): using the uid",
                user.name
            );
        }
    }
    Some(Invoker {
        name: user.name,
        uid,
        gid: user.gid.as_raw(),
        home: user.dir,
    })
}

/// Gives the user a subordinate uid and gid range if they lack one, with `usermod`; returns what
/// changed, line by line.
pub fn add_subuid(inv: &Invoker) -> Result<Vec<String>> {
    let read = |f: &str| std::fs::read_to_string(f).unwrap_or_default();
    let (subuid, subgid) = (read("/etc/subuid"), read("/etc/subgid"));
    let has_uid = subid_range(&subuid, Some(&inv.name), inv.uid).is_some();
    let has_gid = subid_range(&subgid, Some(&inv.name), inv.uid).is_some();
    if has_uid && has_gid {
        return Ok(vec![format!(
            "{} already has subordinate id ranges in /etc/subuid and /etc/subgid: nothing changed",
            inv.name
        )]);
    }
    let start = next_free_start(&subuid).max(next_free_start(&subgid));
    let range = format!("{start}-{}", start + 65535);
    let mut args = vec![];
    if !has_uid {
        args.extend(["--add-subuids".to_string(), range.clone()]);
    }
    if !has_gid {
        args.extend(["--add-subgids".to_string(), range.clone()]);
    }
    args.push(inv.name.clone());
    let out = Command::new("usermod")
        .args(&args)
        .output()
        .map_err(|e| Error::io("run", "usermod", e))?;
    if !out.status.success() {
        return Err(Error::Command {
            command: format!("usermod {}", args.join(" ")),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    let mut changed = Vec::new();
    if !has_uid {
        changed.push(format!("added {}:{start}:65536 to /etc/subuid", inv.name));
    }
    if !has_gid {
        changed.push(format!("added {}:{start}:65536 to /etc/subgid", inv.name));
    }
    Ok(changed)
}

/// The first id after every range in an /etc/subuid-format text (at least 100000).
pub fn next_free_start(text: &str) -> u32 {
    text.lines()
        .filter_map(|l| {
            let mut f = l.trim().split(':');
            let _ = f.next()?;
            let start: u64 = f.next()?.parse().ok()?;
            let count: u64 = f.next()?.parse().ok()?;
            Some(start + count)
        })
        .max()
        .map_or(100_000, |end| {
            end.clamp(100_000, u32::MAX as u64 - 65536) as u32
        })
}

/// Becomes the invoking user for good: groups, gid, uid; the environment says who we are.
pub fn become_user(inv: &Invoker) -> Result<()> {
    let name =
        CString::new(inv.name.clone()).map_err(|_| Error::internal("user name with a NUL byte"))?;
    nix::unistd::initgroups(&name, Gid::from_raw(inv.gid))
        .map_err(|e| SysError::new(format!("initgroups({})", inv.name), None, e))?;
    let gid = Gid::from_raw(inv.gid);
    nix::unistd::setresgid(gid, gid, gid).map_err(|e| SysError::new("setresgid", None, e))?;
    let uid = Uid::from_raw(inv.uid);
    nix::unistd::setresuid(uid, uid, uid).map_err(|e| SysError::new("setresuid", None, e))?;
    // Changing the effective uid made the process non-dumpable, which would leave its /proc
    // files (and its children's: the uid_map newuidmap writes) owned by root.
    nix::sys::prctl::set_dumpable(true)
        .map_err(|e| SysError::new("prctl(PR_SET_DUMPABLE)", None, e))?;
    // Single-threaded at this point (nothing has started a thread yet).
    std::env::set_var("HOME", &inv.home);
    std::env::set_var("USER", &inv.name);
    std::env::set_var("LOGNAME", &inv.name);
    // Root's XDG dirs (if sudo kept any) are not the user's.
    std::env::remove_var("XDG_DATA_HOME");
    std::env::remove_var("XDG_CONFIG_HOME");
    std::env::remove_var("XDG_CACHE_HOME");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ranges_start_after_the_last_one() {
        assert_eq!(next_free_start(""), 100_000);
        assert_eq!(next_free_start("a:100000:65536\nb:165536:65536\n"), 231_072);
        assert_eq!(next_free_start("a:300000:10\nb:100000:65536\n"), 300_010);
        assert_eq!(next_free_start("garbage\n"), 100_000);
    }
}
