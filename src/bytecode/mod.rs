//! Byte-compilation of a foreign base OS, done natively.
//!
//! mmdebstrap builds a foreign arch (arm64 on an x86_64 host) by running its maintainer scripts
//! under QEMU, and the biggest of them byte-compile Python: every CPython package's postinst
//! compiles its whole stdlib (`python3.X py_compile.py FILES`), and every `python3-*` package's
//! runs py3compile (`python3.X -m py_compile -`). Emulated, that is most of a foreign build
//! (minutes per CPython version). A `.pyc` depends on the interpreter's version, not on the CPU,
//! so the same bytes come out of the same Debian package version running natively.
//!
//! Two mmdebstrap hooks do it, with no change to the packages or to what ends up installed:
//!
//! 1. the essential hook (before the recipe's packages are installed) diverts each version's
//!    `/usr/lib/python3.X/py_compile.py` aside with dpkg-divert and puts a stand-in there
//!    (`py_compile_stub.py`) that records the files it is asked to compile;
//! 2. the customize hook (once everything is installed) removes the stand-in and the diversion,
//!    which puts the real file back, and compiles the recorded files (`compile.py`) with an
//!    interpreter of the *same Debian package version* that runs natively: the host-arch base OS
//!    of the same recipe when the store has one (run through its own dynamic loader, no chroot
//!    needed), else the host's own `/usr/bin/python3.X`; and in the chroot under QEMU when
//!    neither has that version, so the result is always what the postinsts would have made.
//!
//! The hooks are POSIX sh (`defer.sh`, `compile.sh`) with their parameters set as shell
//! variables before them; `scripts/test` runs shellcheck on them.

use std::path::Path;

use crate::arch::Arch;
use crate::shell;

const STUB: &str = include_str!("py_compile_stub.py");
const COMPILER: &str = include_str!("compile.py");
const DEFER: &str = include_str!("defer.sh");
const COMPILE: &str = include_str!("compile.sh");

/// The host arch's dynamic loader, relative to a root (merged-/usr layout).
fn loader(host: Arch) -> String {
    let name = match host {
        Arch::Amd64 => "ld-linux-x86-64.so.2",
        Arch::I386 => "ld-linux.so.2",
        Arch::Arm64 => "ld-linux-aarch64.so.1",
        Arch::Armhf => "ld-linux-armhf.so.3",
        Arch::Ppc64el => "ld64.so.2",
        Arch::S390x => "ld64.so.1",
        Arch::Riscv64 => "ld-linux-riscv64-lp64d.so.1",
    };
    format!("usr/lib/{}/{name}", host.multiarch())
}

/// mmdebstrap's `--essential-hook` and `--customize-hook` arguments that defer the
/// byte-compilation of the CPython `versions` and do it natively after the build; `native` is
/// the root of a base OS of the same recipe for the host's arch, if the store has one. Nothing
/// when there are no versions.
pub fn hook_args(versions: &[String], native: Option<&Path>, host: Arch) -> Vec<String> {
    if versions.is_empty() {
        return Vec::new();
    }
    let versions = versions.join(" ");
    let native = native.map(|p| p.display().to_string()).unwrap_or_default();
    let ldso = loader(host);
    let libdir = format!("lib/{}", host.multiarch());
    let defer = shell::assignments(&[("versions", &versions), ("stub", STUB)]) + DEFER;
    let compile = shell::assignments(&[
        ("versions", &versions),
        ("native", &native),
        ("ldso", &ldso),
        ("libdir", &libdir),
        ("compiler", COMPILER),
    ]) + COMPILE;
    vec![
        format!("--essential-hook={defer}"),
        format!("--customize-hook={compile}"),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn sh_ok(script: &str, root: &Path) -> String {
        crate::shell::output_ok(
            "sh -c",
            Command::new("sh")
                .arg("-c")
                .arg(script)
                .arg("exec")
                .arg(root),
        )
    }

    #[test]
    fn no_versions_no_hooks() {
        assert!(hook_args(&[], None, Arch::Amd64).is_empty());
    }

    #[test]
    fn the_hooks_name_the_versions_and_the_native_root() {
        let args = hook_args(
            &["3.13".into(), "3.14".into()],
            Some(Path::new("/s/baseos/debian-forky/amd64/rootfs")),
            Arch::Amd64,
        );
        assert_eq!(args.len(), 2);
        assert!(args[0].starts_with("--essential-hook=versions='3.13 3.14'\n"));
        assert!(args[1].starts_with("--customize-hook=versions='3.13 3.14'\n"));
        assert!(args[1].contains("native=/s/baseos/debian-forky/amd64/rootfs\n"));
        assert!(args[1].contains("ldso=usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2\n"));
    }

    /// The stand-in records what it is asked, in both of the ways Debian asks (arguments from a
    /// postinst, stdin from py3compile, `-O` in a list of its own), and compile.py then writes
    /// each .pyc beside its source under a root, named by its path inside, as py_compile does.
    #[test]
    fn the_stand_in_records_and_compile_py_compiles_under_a_root() {
        let python = "/usr/bin/python3";
        if !Path::new(python).exists() {
            panic!("{python} is needed for this test (Debian's python3)");
        }
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        std::fs::create_dir_all(root.join("usr/lib/demo")).unwrap();
        std::fs::write(root.join("usr/lib/demo/a.py"), "x = 1\n").unwrap();
        std::fs::write(root.join("usr/lib/demo/b.py"), "y = 2\n").unwrap();
        let stub = root.join("stub.py");
        let lists = root.join("lists");
        std::fs::create_dir_all(&lists).unwrap();
        std::fs::write(
            &stub,
            STUB.replace("/var/lib/pookie-ns-bytecode", &lists.display().to_string()),
        )
        .unwrap();
        let run = |args: &[&str], stdin: &str| {
            use std::io::Write;
            let mut c = Command::new(python)
                .args(args)
                .stdin(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            c.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
            assert!(c.wait().unwrap().success());
        };
        let stub = stub.display().to_string();
        run(&[&stub, "/usr/lib/demo/a.py"], "");
        run(&[&stub, "-"], "/usr/lib/demo/b.py\n/usr/lib/demo/gone.py\n");
        run(&["-O", &stub, "/usr/lib/demo/a.py"], "");
        let version = sh_ok(
            &format!("{python} -c 'import sys; print(\"%d.%d\" % sys.version_info[:2])'"),
            root,
        );
        let version = version.trim();
        let listed = std::fs::read_to_string(lists.join(format!("{version}.list"))).unwrap();
        assert_eq!(
            listed,
            "/usr/lib/demo/a.py\n/usr/lib/demo/b.py\n/usr/lib/demo/gone.py\n"
        );
        let optimized = std::fs::read_to_string(lists.join(format!("{version}-O.list"))).unwrap();
        assert_eq!(optimized, "/usr/lib/demo/a.py\n");

        let compiler = root.join("compile.py");
        std::fs::write(&compiler, COMPILER).unwrap();
        let compiler = compiler.display().to_string();
        let root_s = root.display().to_string();
        run(&[&compiler, &root_s, "0"], &listed);
        run(&[&compiler, &root_s, "1"], &optimized);
        let tag = format!("cpython-{}", version.replace('.', ""));
        let pyc = root.join(format!("usr/lib/demo/__pycache__/a.{tag}.pyc"));
        assert!(pyc.exists());
        assert!(root
            .join(format!("usr/lib/demo/__pycache__/b.{tag}.pyc"))
            .exists());
        assert!(root
            .join(format!("usr/lib/demo/__pycache__/a.{tag}.opt-1.pyc"))
            .exists());
        // The code object names the file as the chroot sees it.
        let shown = sh_ok(
            &format!(
                "{python} -c 'import marshal,sys; f=open(sys.argv[1],\"rb\"); f.read(16); print(marshal.load(f).co_filename)' {}",
                pyc.display()
            ),
            root,
        );
        assert_eq!(shown.trim(), "/usr/lib/demo/a.py");
    }

    /// A source that is an absolute symbolic link (Debian's sitecustomize.py points to
    /// /etc/python3.X/) is read from inside the root, not from the host, and its .pyc sits
    /// beside the link, as inside the chroot.
    #[test]
    fn links_are_followed_inside_the_root() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        std::fs::create_dir_all(root.join("etc/pookie-ns-bytecode-test")).unwrap();
        std::fs::create_dir_all(root.join("usr/lib/demo")).unwrap();
        std::fs::write(
            root.join("etc/pookie-ns-bytecode-test/site.py"),
            "z = 'inside'\n",
        )
        .unwrap();
        std::os::unix::fs::symlink(
            "/etc/pookie-ns-bytecode-test/site.py",
            root.join("usr/lib/demo/site.py"),
        )
        .unwrap();
        std::fs::write(root.join("compile.py"), COMPILER).unwrap();
        crate::shell::output_ok(
            "the byte-compiler",
            Command::new("/usr/bin/python3")
                .arg(root.join("compile.py"))
                .arg(root)
                .arg("0")
                .stdin(
                    std::fs::File::open({
                        let l = root.join("list");
                        std::fs::write(&l, "/usr/lib/demo/site.py\n").unwrap();
                        l
                    })
                    .unwrap(),
                ),
        );
        let pyc: Vec<_> = std::fs::read_dir(root.join("usr/lib/demo/__pycache__"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(pyc.len(), 1, "{pyc:?}");
        let header = std::fs::read(&pyc[0]).unwrap();
        // Bytes 12..16: the size of the source it was compiled from.
        let size = u32::from_le_bytes(header[12..16].try_into().unwrap());
        assert_eq!(size as usize, "z = 'inside'\n".len());
    }

    /// A source that does not compile fails compile.py, as it fails py_compile in a postinst.
    #[test]
    fn a_syntax_error_fails_the_compile() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("bad.py"), "def (:\n").unwrap();
        std::fs::write(d.path().join("compile.py"), COMPILER).unwrap();
        let out = Command::new("/usr/bin/python3")
            .arg(d.path().join("compile.py"))
            .arg(d.path())
            .arg("0")
            .stdin(
                std::fs::File::open({
                    let l = d.path().join("list");
                    std::fs::write(&l, "/bad.py\n").unwrap();
                    l
                })
                .unwrap(),
            )
            .output()
            .unwrap();
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("bad.py"));
    }
}
