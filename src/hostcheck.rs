//! Host policies that stop unprivileged user namespaces, read from `/proc/sys`, each with the
//! exact command that lifts it. pookie-ns cannot do anything rootless without a user namespace,
//! so the advice is given up front (a warning) and again where `unshare(2)` fails.
//!
//! * Ubuntu 23.10+ (`kernel.apparmor_restrict_unprivileged_userns=1`, the default on 24.04):
//!   an unconfined process may create a user namespace but gets no capabilities in it, so the
//!   first mount fails with EPERM. The fix is an AppArmor profile granting `userns,`
//!   (contrib/apparmor/pookie-ns), or the sysctl host-wide.
//! * `user.max_user_namespaces=0`: every `unshare(CLONE_NEWUSER)` fails with ENOSPC, root's too.
//! * Debian's older `kernel.unprivileged_userns_clone=0`: EPERM for non-root callers.

use std::path::Path;

/// The AppArmor profile shipped in the repository, and where it is installed.
pub const PROFILE_IN_REPO: &str = "contrib/apparmor/pookie-ns";
pub const PROFILE_INSTALLED: &str = "/etc/apparmor.d/pookie-ns";

/// The `/proc` files the detection reads (relative to `/proc`).
pub const APPARMOR_RESTRICT: &str = "sys/kernel/apparmor_restrict_unprivileged_userns";
pub const MAX_USER_NAMESPACES: &str = "sys/user/max_user_namespaces";
pub const UNPRIVILEGED_USERNS_CLONE: &str = "sys/kernel/unprivileged_userns_clone";
/// This process's AppArmor label (`unconfined`, or `pookie-ns (unconfined)` under the profile).
pub const APPARMOR_LABEL: &str = "self/attr/apparmor/current";
pub const APPARMOR_LABEL_OLD: &str = "self/attr/current";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Restriction {
    /// AppArmor restricts unprivileged user namespaces and this process has no profile.
    AppArmor,
    /// `user.max_user_namespaces` is 0.
    NoUserNamespaces,
    /// Debian's `kernel.unprivileged_userns_clone` is 0.
    UnprivilegedCloneOff,
}

/// What restricts user namespaces for a caller with effective uid `euid`, given a reader of
/// `/proc` files (relative paths as in the constants above; None when a file is missing).
pub fn detect(euid: u32, read: impl Fn(&str) -> Option<String>) -> Vec<Restriction> {
    let value = |f: &str| read(f).map(|v| v.trim().to_string());
    let mut out = Vec::new();
    if value(MAX_USER_NAMESPACES).as_deref() == Some("0") {
        out.push(Restriction::NoUserNamespaces);
    }
    if euid == 0 {
        // Root keeps its capabilities whatever the two policies below say.
        return out;
    }
    if value(UNPRIVILEGED_USERNS_CLONE).as_deref() == Some("0") {
        out.push(Restriction::UnprivilegedCloneOff);
    }
    if value(APPARMOR_RESTRICT).as_deref() == Some("1") {
        let label = value(APPARMOR_LABEL).or_else(|| value(APPARMOR_LABEL_OLD));
        // Under a profile (ours or another) the label names it; only "unconfined" is restricted.
        let unconfined = label
            .as_deref()
            .map(|l| l.trim_end_matches('\0').trim() == "unconfined")
            .unwrap_or(true);
        if unconfined {
            out.push(Restriction::AppArmor);
        }
    }
    out
}

/// The restrictions on this host for this process.
pub fn current() -> Vec<Restriction> {
    let euid = nix::unistd::geteuid().as_raw();
    detect(euid, |f| {
        std::fs::read_to_string(Path::new("/proc").join(f)).ok()
    })
}

impl Restriction {
    /// The exact fix, for a caller with effective uid `euid` (root is not told to use sudo).
    pub fn fix(&self, euid: u32) -> String {
        let sudo = if euid == 0 { "" } else { "sudo " };
        match self {
            Restriction::AppArmor => {
                let exe = std::env::current_exe()
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|_| "pookie-ns".into());
                format!(
                    "AppArmor restricts unprivileged user namespaces \
                     (kernel.apparmor_restrict_unprivileged_userns=1) and pookie-ns has no profile: \
                     install the one in the repository with `{sudo}install -m 644 {PROFILE_IN_REPO} \
                     {PROFILE_INSTALLED} && {sudo}apparmor_parser -r {PROFILE_INSTALLED}` (it \
                     covers /usr/bin, /usr/local/bin, ~/.cargo/bin and target/*/ of a checkout; \
                     this binary is {exe}), or lift the restriction host-wide with \
                     `{sudo}sysctl -w kernel.apparmor_restrict_unprivileged_userns=0`"
                )
            }
            Restriction::NoUserNamespaces => format!(
                "user namespaces are disabled (user.max_user_namespaces=0): enable them with \
                 `{sudo}sysctl -w user.max_user_namespaces=15000` (and keep it with `echo \
                 user.max_user_namespaces=15000 | {sudo}tee /etc/sysctl.d/90-pookie-ns.conf`)"
            ),
            Restriction::UnprivilegedCloneOff => format!(
                "unprivileged user namespaces are disabled (kernel.unprivileged_userns_clone=0): \
                 enable them with `{sudo}sysctl -w kernel.unprivileged_userns_clone=1` (and keep \
                 it with `echo kernel.unprivileged_userns_clone=1 | {sudo}tee \
                 /etc/sysctl.d/90-pookie-ns.conf`)"
            ),
        }
    }
}

/// One line of advice per restriction, or None when nothing restricts user namespaces.
pub fn advice(restrictions: &[Restriction], euid: u32) -> Option<String> {
    if restrictions.is_empty() {
        return None;
    }
    Some(
        restrictions
            .iter()
            .map(|r| r.fix(euid))
            .collect::<Vec<_>>()
            .join("; "),
    )
}

/// The advice for this host and process, if any.
pub fn current_advice() -> Option<String> {
    advice(&current(), nix::unistd::geteuid().as_raw())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `/proc` recorded as (file, content) pairs.
    fn recorded<'a>(files: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |f| {
            files
                .iter()
                .find(|(name, _)| *name == f)
                .map(|(_, v)| v.to_string())
        }
    }

    /// Ubuntu 24.04's defaults, as read there.
    const UBUNTU_2404: [(&str, &str); 4] = [
        (APPARMOR_RESTRICT, "1\n"),
        (MAX_USER_NAMESPACES, "63457\n"),
        (UNPRIVILEGED_USERNS_CLONE, "1\n"),
        (APPARMOR_LABEL, "unconfined\n"),
    ];

    /// Debian 12's defaults (no AppArmor restriction sysctl, no label file without AppArmor).
    const DEBIAN_12: [(&str, &str); 2] = [
        (MAX_USER_NAMESPACES, "7823\n"),
        (UNPRIVILEGED_USERNS_CLONE, "1\n"),
    ];

    #[test]
    fn ubuntu_2404_is_restricted_by_apparmor_for_users_only() {
        assert_eq!(
            detect(1000, recorded(&UBUNTU_2404)),
            vec![Restriction::AppArmor]
        );
        assert_eq!(detect(0, recorded(&UBUNTU_2404)), vec![]);
        let fix = advice(&[Restriction::AppArmor], 1000).unwrap();
        assert!(fix
            .contains("sudo install -m 644 contrib/apparmor/pookie-ns /etc/apparmor.d/pookie-ns"));
        assert!(fix.contains("sudo apparmor_parser -r /etc/apparmor.d/pookie-ns"));
        assert!(fix.contains("kernel.apparmor_restrict_unprivileged_userns=0"));
    }

    #[test]
    fn the_profile_lifts_the_apparmor_restriction() {
        let mut files = UBUNTU_2404.to_vec();
        files[3] = (APPARMOR_LABEL, "pookie-ns (unconfined)\n");
        assert_eq!(detect(1000, recorded(&files)), vec![]);
        // Kernels without the per-LSM attr dir: the old file.
        let old = [
            (APPARMOR_RESTRICT, "1\n"),
            (APPARMOR_LABEL_OLD, "pookie-ns (unconfined)\0"),
        ];
        assert_eq!(detect(1000, recorded(&old)), vec![]);
        let old_unconfined = [
            (APPARMOR_RESTRICT, "1\n"),
            (APPARMOR_LABEL_OLD, "unconfined\0"),
        ];
        assert_eq!(
            detect(1000, recorded(&old_unconfined)),
            vec![Restriction::AppArmor]
        );
    }

    #[test]
    fn debian_12_is_not_restricted() {
        assert_eq!(detect(1000, recorded(&DEBIAN_12)), vec![]);
        assert_eq!(advice(&[], 1000), None);
    }

    #[test]
    fn disabled_namespaces_restrict_root_too_and_root_is_not_told_sudo() {
        let files = [
            (MAX_USER_NAMESPACES, "0\n"),
            (UNPRIVILEGED_USERNS_CLONE, "0\n"),
        ];
        assert_eq!(
            detect(1000, recorded(&files)),
            vec![
                Restriction::NoUserNamespaces,
                Restriction::UnprivilegedCloneOff
            ]
        );
        assert_eq!(
            detect(0, recorded(&files)),
            vec![Restriction::NoUserNamespaces]
        );
        let root = advice(&detect(0, recorded(&files)), 0).unwrap();
        assert!(root.contains("`sysctl -w user.max_user_namespaces=15000`"));
        assert!(!root.contains("sudo"));
        let user = advice(&detect(1000, recorded(&files)), 1000).unwrap();
        assert!(user.contains("sudo sysctl -w kernel.unprivileged_userns_clone=1"));
    }
}
