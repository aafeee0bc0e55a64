//! The binary's edge: parse the command line, set up logging, run the command, and turn its result
//! into an exit status (0 success, 1 failure, 2 usage/config/input error, 75 busy, `run`: the
//! command's). The library's one error type picks the status ([`pookie_ns::Error::exit_code`]), so
//! this edge needs no `anyhow`: erasing the type would only mean downcasting it back.

use std::io::IsTerminal;

use clap::Parser;

use pookie_ns::cli::Cli;

fn main() {
    // Rust starts with SIGPIPE ignored; a shell tool dies of it quietly instead (`list | head`),
    // and the sandboxed command must not inherit the ignored disposition across execve.
    // SAFETY: setting a signal's disposition to its default before any thread exists.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let cli = Cli::parse();
    let level = match (cli.quiet, cli.verbose) {
        (true, _) => "error",
        (false, 0) => "warn,pookie_ns=info",
        (false, 1) => "debug",
        (false, _) => "trace",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("POOKIE_NS_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .without_time()
        .init();
    let code = match pookie_ns::commands::dispatch(&cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("pookie-ns: error: {e}");
            e.exit_code()
        }
    };
    std::process::exit(code);
}
