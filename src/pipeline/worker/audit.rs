//! The audit step after the repair, as cibuildwheel 4 runs it: `audit-command` (by default
//! `abi3audit --strict --report {wheel}`) on each repaired abi3 wheel, after `audit-requires`
//! is installed, in the build step's sandbox where the repair ran (scripts/audit.sh). Its
//! failure fails the target; an empty `audit-command` turns the step off.

use super::scripts::fragment;
use super::WHEELHOUSE_INSIDE;
use crate::shell::scripts::AUDIT;

/// The audit step's script, or nothing when `command` is empty.
pub(super) fn audit_script(command: &str, requires: &[String]) -> String {
    let command = command.trim();
    if command.is_empty() {
        return String::new();
    }
    let cmd = crate::project::placeholders(command, &[("wheel", "\"$w\"")]);
    fragment(
        &[
            ("POOKIE_NS_WHEELHOUSE", WHEELHOUSE_INSIDE),
            ("POOKIE_NS_AUDIT_REQUIRES", &requires.join(" ")),
            ("POOKIE_NS_AUDIT_COMMAND", &cmd),
            ("POOKIE_NS_AUDIT_SHOWN", command),
        ],
        AUDIT,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// The script run by sh on a wheelhouse holding `wheels`, `python3` a stand-in that logs
    /// what pip would install: (succeeded, output, wheels left).
    fn run(command: &str, requires: &[String], wheels: &[&str]) -> (bool, String, Vec<String>) {
        let dir = tempfile::tempdir().unwrap();
        let house = dir.path().join("wheelhouse");
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&house).unwrap();
        std::fs::create_dir_all(&bin).unwrap();
        for w in wheels {
            std::fs::write(house.join(w), "").unwrap();
        }
        let python = bin.join("python3");
        std::fs::write(&python, "#!/bin/sh\necho \"python3 $*\"\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&python, std::fs::Permissions::from_mode(0o755)).unwrap();
        let script =
            audit_script(command, requires).replace(WHEELHOUSE_INSIDE, house.to_str().unwrap());
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!("set -e\n{script}"))
            .env(
                "PATH",
                format!("{}:{}", bin.display(), std::env::var("PATH").unwrap()),
            )
            .output()
            .unwrap();
        let mut left: Vec<String> = std::fs::read_dir(&house)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text, left)
    }

    const ABI3: &str = "m-1.0-cp39-abi3-manylinux_2_17_x86_64.whl";
    const CP311: &str = "m-1.0-cp311-cp311-manylinux_2_17_x86_64.whl";

    #[test]
    fn abi3_wheels_are_audited_and_a_failed_audit_fails_the_target() {
        let req = vec!["abi3audit==0.0.26".to_string()];
        // The default: the requirements installed once, the command on the abi3 wheel only.
        let (ok, log, left) = run("echo audited {wheel}", &req, &[ABI3, CP311]);
        assert!(ok, "{log}");
        assert!(
            log.contains("python3 -m pip install --quiet abi3audit==0.0.26"),
            "{log}"
        );
        assert!(log.contains(&format!("wheelhouse/{ABI3}\n")), "{log}");
        assert!(!log.contains(&format!("wheelhouse/{CP311}\n")), "{log}");
        assert_eq!(left, [CP311, ABI3]);
        // No abi3 wheel: nothing installed, nothing run.
        let (ok, log, _) = run("echo audited {wheel}", &req, &[CP311]);
        assert!(
            ok && !log.contains("pip install") && !log.contains("audited"),
            "{log}"
        );
        // A failing command: the target fails, the wheel is not delivered, the fix said.
        let (ok, log, left) = run("echo bad-symbol >&2; false", &[], &[ABI3]);
        assert!(!ok, "{log}");
        assert!(
            log.contains("bad-symbol") && log.contains("audit-command = \"\""),
            "{log}"
        );
        assert!(left.is_empty(), "{left:?}");
        // An empty command: no step at all.
        assert_eq!(audit_script("  ", &req), "");
    }
}
