//! What particular build backends need in a toolchain build beyond the toolchain's environment:
//! Meson a cross file (meson-python ignores `CC` & co. for a foreign host machine without one),
//! Rust a compiler with the target's standard library. Each is a shell script of `crate::shell::scripts`
//! (checked by shellcheck in CI), parameterised through environment variables set here.

use crate::arch::Arch;
use crate::toolchain::SYSROOT;

use crate::shell::quote as sh_quote;
use crate::shell::scripts::{MESON_CROSS as MESON_CROSS_SH, RUST_SETUP as RUST_SETUP_SH};

/// Where a meson-python build in cross mode finds its cross file.
pub const MESON_CROSS_FILE: &str = "/buildroot/cross/meson-cross.ini";

/// The config setting that hands the cross file to meson-python (`-Csetup-args=...`).
pub fn meson_setup_args() -> (String, String) {
    (
        "setup-args".into(),
        format!("--cross-file={MESON_CROSS_FILE}"),
    )
}

/// Meson's `[host_machine]` of an arch: (cpu_family, cpu, endian), as Meson's reference tables
/// name them.
fn meson_machine(arch: Arch) -> (&'static str, &'static str, &'static str) {
    match arch {
        Arch::Amd64 => ("x86_64", "x86_64", "little"),
        Arch::I386 => ("x86", "i686", "little"),
        Arch::Arm64 => ("aarch64", "aarch64", "little"),
        Arch::Armhf => ("arm", "armv7l", "little"),
        Arch::Ppc64el => ("ppc64", "ppc64le", "little"),
        Arch::S390x => ("s390x", "s390x", "big"),
        Arch::Riscv64 => ("riscv64", "riscv64", "little"),
    }
}

/// The build-step lines that write the Meson cross file for `arch`, after the toolchain's
/// environment is exported (the script reads `CC`, `CFLAGS` ... from it).
pub fn meson_cross_step(arch: Arch) -> String {
    let (family, cpu, endian) = meson_machine(arch);
    let vars = [
        ("POOKIE_NS_MESON_CROSS_FILE", MESON_CROSS_FILE),
        ("POOKIE_NS_MESON_CPU_FAMILY", family),
        ("POOKIE_NS_MESON_CPU", cpu),
        ("POOKIE_NS_MESON_ENDIAN", endian),
        ("POOKIE_NS_SYSROOT", SYSROOT),
        ("POOKIE_NS_TRIPLET", arch.multiarch()),
    ];
    script_call(&vars, MESON_CROSS_SH)
}

/// The setup script of a Rust project's toolchain build: rustc, cargo and the target's standard
/// library from the build machine's suite, run once and cached as a layer over the toolchain's.
pub fn rust_setup(arch: Arch) -> String {
    let vars = [
        ("POOKIE_NS_RUST_DEBARCH", arch.debian()),
        ("POOKIE_NS_RUST_TARGET", arch.rust_target()),
    ];
    script_call(&vars, RUST_SETUP_SH)
}

/// `script` run by `sh -c` with `vars` in its environment and the caller's `set -e` in force.
fn script_call(vars: &[(&str, &str)], script: &str) -> String {
    let assignments: Vec<String> = vars
        .iter()
        .map(|(k, v)| format!("{k}={}", sh_quote(v)))
        .collect();
    format!(
        "# shellcheck disable=SC2016,SC1003 # the fragment, quoted; checked as a file on its own\n\
         env {} sh -c {} pookie-ns\n",
        assignments.join(" "),
        sh_quote(script)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::toolchain::CROSS_DIR;

    #[test]
    fn the_scripts_are_called_with_their_parameters() {
        let m = meson_cross_step(Arch::Arm64);
        assert!(
            m.contains("\nenv POOKIE_NS_MESON_CROSS_FILE=/buildroot/cross/meson-cross.ini "),
            "{m}"
        );
        assert!(m.contains("POOKIE_NS_MESON_CPU_FAMILY=aarch64 "), "{m}");
        assert!(m.contains("POOKIE_NS_TRIPLET=aarch64-linux-gnu "), "{m}");
        assert!(MESON_CROSS_FILE.starts_with(CROSS_DIR));
        let r = rust_setup(Arch::Arm64);
        assert!(r.contains("POOKIE_NS_RUST_DEBARCH=arm64 "), "{r}");
        assert!(
            r.contains("POOKIE_NS_RUST_TARGET=aarch64-unknown-linux-gnu "),
            "{r}"
        );
        assert_eq!(meson_machine(Arch::S390x).2, "big");
    }

    #[test]
    fn the_scripts_parse() {
        for (name, text) in [
            ("meson-cross.sh", MESON_CROSS_SH),
            ("rust-setup.sh", RUST_SETUP_SH),
        ] {
            crate::shell::output_ok(
                name,
                std::process::Command::new("sh").args(["-n", "-c", text]),
            );
        }
    }
}
