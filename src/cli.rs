//! The command line (clap derive only; no behaviour here).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::arch::Arch;

#[derive(Debug, Parser)]
#[command(
    name = "pookie-ns",
    version,
    about = "Build and test native Python wheels for many Linux architectures, rootless and without a daemon",
    after_help = "Exit status: 0 success; `run` returns the command's own status; 1 a failure; 2 a usage, config or input error."
)]
pub struct Cli {
    /// Config directory (default: $XDG_CONFIG_HOME/pookie-ns if it exists, else /etc/pookie-ns)
    #[arg(short = 'c', long = "config-dir", value_name = "DIR", global = true)]
    pub config_dir: Option<PathBuf>,

    /// Store directory (default: ~/.local/share/pookie-ns, or /var/lib/pookie-ns for root)
    #[arg(long, value_name = "DIR", global = true)]
    pub work_dir: Option<PathBuf>,

    /// More output (-v debug, -vv trace)
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

    /// Only errors
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,

    /// Machine-readable output on stdout
    #[arg(long, global = true)]
    pub json: bool,

    /// As root through sudo: keep root's own store instead of working for the invoking user
    #[arg(long, global = true)]
    pub system: bool,

    /// Through sudo: give the invoking user a /etc/subuid + /etc/subgid range if they lack one
    #[arg(long, global = true)]
    pub add_subuid: bool,

    #[command(subcommand)]
    pub command: Command,
}

// Parsed once per process: the size of its largest variant (build's) costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Import a root filesystem archive (tar, .gz, .xz, .zst) or an OCI image as a base OS
    LoadBaseos(LoadBaseosArgs),
    /// Rebuild base OSes from their recipes (pull images again if their tag moved), swap them in,
    /// and refresh their instances
    UpdateBaseos(UpdateBaseosArgs),
    /// Build and test a Python package's wheels for every target, in parallel, into dist/
    Build(Box<BuildArgs>),
    /// Run a command in a fresh workspace on a base OS (the workspace is removed afterwards)
    Run(RunArgs),
    /// List base OSes, instances and workspaces with their sizes
    List,
    /// Remove all|baseos|workspaces or one instance (BRANCH/NAME/ARCH)
    Cleanup {
        /// all, baseos, workspaces, or an instance written BRANCH/NAME/ARCH
        what: String,
        /// With `all`: also remove the per-user cache, built base OS tarballs and toolchain
        /// caches ($XDG_CACHE_HOME/pookie-ns or ~/.cache/pookie-ns)
        #[arg(long)]
        cache: bool,
    },
    /// Reports of builds: merge the report.json files of several jobs into one
    #[command(subcommand)]
    Report(ReportCommand),
    /// Host-wide QEMU registration in binfmt_misc (needs root; only for kernels before 6.7)
    #[command(subcommand)]
    Binfmt(BinfmtCommand),
    /// A build service over HTTP: aoinb's REST API, tasks kept in the store, each task a
    /// `build --json` child process (see README, "Serving builds over HTTP")
    Serve(ServeArgs),
    /// Send a project to a `pookie-ns serve`, follow its build, fetch its wheels, and exit with
    /// the build's status
    Submit(Box<SubmitArgs>),
    /// Print a shell completion script: `source <(pookie-ns completions bash)`, or save it
    /// where the shell loads completions from (see README, "Shell completions and man page")
    Completions {
        /// bash, zsh, fish, elvish or powershell
        #[arg(value_name = "SHELL")]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) of pookie-ns, or write one per subcommand into a directory
    Man {
        /// Write pookie-ns.1, pookie-ns-build.1 ... into this directory instead of printing
        /// pookie-ns.1 to stdout
        #[arg(long, value_name = "DIR")]
        out_dir: Option<PathBuf>,
    },
    /// One target of a build (started by `build` itself, one process per target)
    #[command(name = "__build-target", hide = true)]
    BuildTarget {
        /// The job file `build` wrote
        job: PathBuf,
    },
}

#[derive(Debug, Clone, Args)]
pub struct BuildArgs {
    /// What to build: project directories (with pyproject.toml or setup.py; never written to),
    /// sdist files (NAME-VERSION.tar.gz), or requirements resolved on the index to one sdist
    /// (msgpack==1.1.0, 'markupsafe>=2,<3'); several are built as one group
    #[arg(value_name = "BUNDLE", required_unless_present = "wheels_file")]
    pub bundles: Vec<String>,
    /// A wheels file: the packages of a group build, each with its own settings (see README)
    #[arg(short = 'r', long = "wheels-file", value_name = "FILE")]
    pub wheels_file: Option<PathBuf>,
    /// The package index requirements are resolved on: its PEP 691 JSON simple API (default:
    /// https://pypi.org/simple)
    #[arg(long, value_name = "URL")]
    pub index_url: Option<String>,
    /// Resolve requirements from the store's cache of sdists only; never ask the index
    #[arg(long)]
    pub offline: bool,
    /// Build only the wheels this package index lacks: its simple API (PEP 691 JSON, or PEP
    /// 503 HTML) is asked for the release's files, and each target whose wheel (name, version,
    /// CPython and ABI tags, a compatible platform tag) is there is skipped, with the file named
    /// in the plan and the report (e.g. https://pypi.org/simple)
    #[arg(long, value_name = "URL")]
    pub skip_existing_on: Option<String>,
    /// Branch whose instance layers the builds use: stable, testing, or B for a
    /// source_lists/B.list of the config dir
    #[arg(long, value_name = "BRANCH", default_value = crate::store::DEFAULT_BRANCH)]
    pub branch: String,
    /// Platform tags or arch names: manylinux_2_17_aarch64, musllinux_1_2_x86_64, aarch64, x86_64,
    /// armv7l ... (default: `archs` in pyproject.toml, else the host's arch only, as cibuildwheel)
    #[arg(long, num_args = 1.., value_name = "TAG")]
    pub target: Vec<String>,
    /// cibuildwheel's --archs: arch names, auto, auto64, auto32, native, all (comma or space
    /// separated); overrides CIBW_ARCHS and `archs` in pyproject.toml
    #[arg(long, value_name = "ARCHS", conflicts_with = "target")]
    pub archs: Option<String>,
    /// Build only this identifier (cp311-manylinux_aarch64): overrides build, skip and archs
    #[arg(long, value_name = "IDENTIFIER", conflicts_with_all = ["target", "archs", "python"])]
    pub only: Option<String>,
    /// Print the identifiers the build would build, one a line (for CI matrices), and exit
    #[arg(long)]
    pub print_build_identifiers: bool,
    /// cibuildwheel's --platform: only linux (or auto) is built here
    #[arg(long, value_name = "PLATFORM")]
    pub platform: Option<String>,
    /// Read the cibuildwheel/pookie-ns configuration from this TOML file instead of the bundle's
    /// pyproject.toml ({package} stands for the bundle)
    #[arg(long, value_name = "FILE")]
    pub config_file: Option<String>,
    /// Exit 0 when the selectors leave nothing to build
    #[arg(long)]
    pub allow_empty: bool,
    /// CPython versions (3.9, 3.11, 3.13 ...): picks the base OSes that provide them, loading
    /// them on first use (default: the versions of the loaded base OSes, else the default recipe's)
    #[arg(long, num_args = 1.., value_name = "X.Y")]
    pub python: Vec<String>,
    /// Build command (default: python3 -m pip wheel --no-deps -w /buildroot/out /buildroot/src)
    #[arg(long, value_name = "CMD")]
    pub build: Option<String>,
    /// Test command, run outside the source tree after installing the wheel (default:
    /// `test-command` in pyproject.toml; none: no test step)
    #[arg(long, value_name = "CMD")]
    pub test: Option<String>,
    /// Packages pip installs beside the wheel before the tests
    #[arg(long, num_args = 1.., value_name = "PKG")]
    pub test_requires: Vec<String>,
    /// Runs once per instance layer and is cached (e.g. apt-get install -y libffi-dev)
    #[arg(long, value_name = "CMD")]
    pub before_all: Option<String>,
    /// How non-native targets build: cross (natively, with a cross toolchain and the target's
    /// base OS as sysroot; the default where a toolchain exists) or emulate (whole build under
    /// QEMU). Tests always run on the target's own base OS.
    #[arg(long, value_name = "MODE")]
    pub mode: Option<crate::project::Mode>,
    /// The toolchain: gcc (Debian's cross gcc; the base OS's own gcc natively), clang, or zig
    /// (targets an old glibc: manylinux_2_17 wheels)
    #[arg(long, value_name = "COMPILER")]
    pub compiler: Option<crate::toolchain::Compiler>,
    /// Where each identifier's CPython comes from: auto (a Debian base OS that provides it,
    /// else the image cibuildwheel would use), image (that image always, as cibuildwheel), or
    /// base-os (Debian's only; no image pulled). Overrides `python-source` in pyproject.toml
    #[arg(long, value_name = "SOURCE")]
    pub python_source: Option<crate::cibw::PythonSource>,
    /// Where the wheels go (default: CIBW_OUTPUT_DIR, else ./dist)
    #[arg(long, value_name = "DIR", visible_alias = "output-dir")]
    pub out: Option<PathBuf>,
    /// Targets built at the same time (default: the number of CPUs)
    #[arg(long, value_name = "N")]
    pub jobs: Option<usize>,
    /// Keep the workspace of a failed build or test for inspection (`list` shows it,
    /// `cleanup workspaces` removes it)
    #[arg(long)]
    pub keep_failed: bool,
    /// Speak plain HTTP to this registry when pulling the image of a `manylinux-<arch>-image`
    /// option (HOST[:PORT]; e.g. a test registry on loopback)
    #[arg(long, value_name = "HOST")]
    pub insecure_registry: Vec<String>,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on; a non-loopback one needs --tokens
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8420")]
    pub listen: String,
    /// Tasks built at the same time; the others wait in the queue
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub jobs: usize,
    /// Bearer tokens: lines `ROLE SHA256-OF-TOKEN [NAME]`, ROLE `read` or `submit` (without it,
    /// every request is allowed and only a loopback address may be used)
    #[arg(long, value_name = "FILE")]
    pub tokens: Option<PathBuf>,
    /// Largest bundle upload accepted, in MiB
    #[arg(long, value_name = "MIB", default_value_t = 64)]
    pub max_bundle_mib: u64,
    /// Finished tasks kept (older ones are removed with their logs, reports and wheels)
    #[arg(long, value_name = "N", default_value_t = 200)]
    pub keep_tasks: usize,
    /// Finished tasks older than this many days are removed
    #[arg(long, value_name = "DAYS", default_value_t = 30)]
    pub keep_days: u64,
    /// On SIGTERM or SIGINT, what happens to running builds: `cancel` stops them (they read
    /// cancelled), `finish` lets them end; queued tasks stay queued for the next start
    #[arg(long, value_name = "WHAT", default_value = "cancel", value_parser = ["cancel", "finish"])]
    pub on_stop: String,
}

/// The build options a task takes, as `build` spells them.
#[derive(Debug, Clone, Default, Args)]
pub struct TaskBuildArgs {
    /// Branch whose instance layers the build uses
    #[arg(long, default_value = crate::store::DEFAULT_BRANCH)]
    pub branch: String,
    /// Platform tags or arch names (as `build --target`)
    #[arg(long, num_args = 1.., value_name = "TAG")]
    pub target: Vec<String>,
    /// CPython versions (as `build --python`)
    #[arg(long, num_args = 1.., value_name = "X.Y")]
    pub python: Vec<String>,
    /// cibuildwheel's --archs (as `build --archs`)
    #[arg(long, value_name = "ARCHS")]
    pub archs: Option<String>,
    /// Only this identifier (as `build --only`)
    #[arg(long, value_name = "IDENTIFIER")]
    pub only: Option<String>,
    /// Build command (as `build --build`)
    #[arg(long, value_name = "CMD")]
    pub build: Option<String>,
    /// Test command (as `build --test`)
    #[arg(long, value_name = "CMD")]
    pub test: Option<String>,
    /// Packages installed beside the wheel before the tests
    #[arg(long, num_args = 1.., value_name = "PKG")]
    pub test_requires: Vec<String>,
    /// Runs once per instance layer (as `build --before-all`)
    #[arg(long, value_name = "CMD")]
    pub before_all: Option<String>,
    /// cross or emulate (as `build --mode`)
    #[arg(long, value_name = "MODE")]
    pub mode: Option<String>,
    /// gcc, clang or zig (as `build --compiler`)
    #[arg(long, value_name = "COMPILER")]
    pub compiler: Option<String>,
    /// Targets built at the same time inside the task (as `build --jobs`)
    #[arg(long, value_name = "N")]
    pub jobs: Option<usize>,
}

#[derive(Debug, Clone, Args)]
pub struct SubmitArgs {
    /// The project directory (packed as a tar.gz, without build/, dist/, .git and caches) or an
    /// sdist file (NAME-VERSION.tar.gz, sent as it is)
    #[arg(value_name = "BUNDLE")]
    pub bundle: PathBuf,
    /// The server's base URL, e.g. http://127.0.0.1:8420 (default: $POOKIE_NS_SERVER)
    #[arg(long, value_name = "URL", env = "POOKIE_NS_SERVER")]
    pub server: String,
    /// A file holding the bearer token (default: $POOKIE_NS_TOKEN, else none)
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    #[command(flatten)]
    pub options: TaskBuildArgs,
    /// Stream the build's log to stderr while it runs
    #[arg(long)]
    pub follow: bool,
    /// Where the wheels go
    #[arg(long, value_name = "DIR", default_value = "dist")]
    pub out: PathBuf,
    /// Also write the task's report.json here (for `report merge` across CI jobs)
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct LoadBaseosArgs {
    /// A recipe name (default: debian-bookworm), the path of an archive to import, or an OCI
    /// image: docker://[REGISTRY/]REPO[:TAG|@sha256:DIGEST], oci:DIR[:REF], oci-archive:FILE,
    /// docker-archive:FILE
    #[arg(value_name = "RECIPE|PATH|IMAGE")]
    pub source: Option<String>,
    /// Name of the base OS (default: the recipe's, or the archive's file name without extensions)
    #[arg(long)]
    pub name: Option<String>,
    /// Architecture(s) to build (default: the host's); for an archive, its arch (default: read
    /// from the rootfs's own ELF binaries)
    #[arg(long, num_args = 1..)]
    pub arch: Vec<Arch>,
    /// Keep the tarball a recipe build made (one --arch only)
    #[arg(long, value_name = "PATH")]
    pub save_tarball: Option<PathBuf>,
    /// Speak plain HTTP to this registry (HOST[:PORT]; e.g. a test registry on loopback)
    #[arg(long, value_name = "HOST")]
    pub insecure_registry: Vec<String>,
}

#[derive(Debug, Args)]
pub struct UpdateBaseosArgs {
    /// Only the base OSes built from this recipe (default: all built from a recipe)
    #[arg(value_name = "RECIPE")]
    pub recipe: Option<String>,
    /// Only the base OS of this name
    #[arg(long)]
    pub name: Option<String>,
    /// Only these architectures
    #[arg(long, num_args = 1..)]
    pub arch: Vec<Arch>,
    /// Speak plain HTTP to this registry (HOST[:PORT])
    #[arg(long, value_name = "HOST")]
    pub insecure_registry: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Base OS to run on (default: the only one loaded for the arch)
    #[arg(long, value_name = "NAME")]
    pub baseos: Option<String>,
    /// Architecture (default: the host's, or the base OS's only one)
    #[arg(long)]
    pub arch: Option<Arch>,
    /// Branch whose instance layer is used: stable, testing, or B for a source_lists/B.list
    /// of the config dir
    #[arg(long, value_name = "BRANCH", default_value = crate::store::DEFAULT_BRANCH)]
    pub branch: String,
    /// Project directory, visible read-only at /buildroot/src
    #[arg(long, value_name = "DIR")]
    pub bundle: Option<PathBuf>,
    /// Share the host's network (default: only loopback)
    #[arg(long)]
    pub network: bool,
    /// Keep the changes in the instance layer (only when the command succeeds)
    #[arg(long)]
    pub commit: bool,
    /// Extra environment variable for the command
    #[arg(short, long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Working directory inside (default: /buildroot/src with --bundle, else /root)
    #[arg(long, value_name = "DIR")]
    pub cwd: Option<PathBuf>,
    /// The command and its arguments
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum ReportCommand {
    /// Combine the report.json files of builds of the same project and branch (e.g. one CI job
    /// per identifier, `build --only ID`) into one report, as one build of them all would write
    Merge {
        /// The report.json files
        #[arg(required = true, value_name = "REPORT")]
        reports: Vec<PathBuf>,
        /// Write the merged report here (default: stdout)
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum BinfmtCommand {
    /// Register qemu-<arch>-static host-wide with the F flag (idempotent)
    Register {
        #[arg(long, required = true)]
        arch: Vec<Arch>,
    },
    /// Remove host-wide registrations
    Unregister {
        #[arg(long, required = true)]
        arch: Vec<Arch>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build_args(argv: &[&str]) -> BuildArgs {
        match Cli::try_parse_from(argv).unwrap().command {
            Command::Build(a) => *a,
            other => panic!("not a build: {other:?}"),
        }
    }

    #[test]
    fn branch_defaults_to_stable_and_can_still_be_named() {
        assert_eq!(build_args(&["pookie-ns", "build", "."]).branch, "stable");
        assert_eq!(
            build_args(&["pookie-ns", "build", ".", "--branch", "stable"]).branch,
            "stable"
        );
        assert_eq!(
            build_args(&["pookie-ns", "build", ".", "--branch", "testing"]).branch,
            "testing"
        );
        match Cli::try_parse_from(["pookie-ns", "run", "--", "true"])
            .unwrap()
            .command
        {
            Command::Run(a) => assert_eq!(a.branch, "stable"),
            other => panic!("not a run: {other:?}"),
        }
    }

    #[test]
    fn the_command_line_is_consistent() {
        // clap's own checks: conflicting names, defaults that are not possible values ...
        <Cli as clap::CommandFactory>::command().debug_assert();
    }
}
