//! Waiting for children and passing signals on. pookie-ns sits between the user and the sandboxed
//! command in a chain of processes (pookie-ns → user-namespace helper → pid 1 of the sandbox →
//! command); each link waits for the next with the same loop, which forwards the signals another
//! process sent it and returns the child's status.
//!
//! Signals from the terminal (Ctrl-C) reach every process of the foreground process group at once,
//! the command included, so they are *not* forwarded (the command would see Ctrl-C twice); only
//! signals sent with kill(2) (`si_code` SI_USER / SI_QUEUE) are.

use std::sync::atomic::{AtomicI32, Ordering};

use nix::errno::Errno;
use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::sys::{SysError, SysResult};

/// Signals passed on to the child.
pub const FORWARDED: [Signal; 6] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
];

extern "C" fn ignore_signal(_: libc::c_int) {}

fn signal_set() -> SigSet {
    let mut set = SigSet::empty();
    for s in FORWARDED {
        set.add(s);
    }
    set.add(Signal::SIGCHLD);
    set
}

/// Blocks the forwarded signals and SIGCHLD so that they queue until [`wait_forwarding`] takes them.
/// A handler is installed as well: pid 1 of a pid namespace only receives signals it handles.
pub fn block_signals() -> SysResult<()> {
    let set = signal_set();
    let action = SigAction::new(
        SigHandler::Handler(ignore_signal),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for s in set.iter() {
        // SAFETY: the handler does nothing, so it is async-signal-safe.
        unsafe { sigaction(s, &action) }
            .map_err(|e| SysError::new(format!("sigaction({s})"), None, e))?;
    }
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None)
        .map_err(|e| SysError::new("sigprocmask", None, e))
}

/// Undoes [`block_signals`] in a process that is about to exec the user's command.
pub fn reset_signals() {
    let dfl = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    for s in signal_set().iter() {
        // SAFETY: restoring the default disposition.
        let _ = unsafe { sigaction(s, &dfl) };
    }
    let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
}

/// Exit status as a shell reports it: the code, or 128+N for death by signal N.
pub fn status_code(status: WaitStatus) -> Option<i32> {
    match status {
        WaitStatus::Exited(_, code) => Some(code),
        WaitStatus::Signaled(_, sig, _) => Some(128 + sig as i32),
        _ => None,
    }
}

/// Waits for `child` while forwarding signals sent to this process. With `reap_all` (pid 1 of a
/// sandbox) every other child that exits is reaped too.
pub fn wait_for(child: Pid, reap_all: bool) -> SysResult<i32> {
    block_signals()?;
    let set = signal_set();
    loop {
        let target = if reap_all { None } else { Some(child) };
        loop {
            match waitpid(target, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) => break,
                Ok(st) => {
                    if st.pid() == Some(child) {
                        if let Some(code) = status_code(st) {
                            return Ok(code);
                        }
                    }
                }
                Err(Errno::EINTR) => continue,
                Err(Errno::ECHILD) => {
                    return Err(SysError::new(
                        format!("waitpid({child})"),
                        None,
                        Errno::ECHILD,
                    ))
                }
                Err(e) => return Err(SysError::new(format!("waitpid({child})"), None, e)),
            }
        }
        let (signo, code) = wait_signal(&set)?;
        if signo == libc::SIGCHLD {
            continue;
        }
        if code == libc::SI_USER || code == libc::SI_QUEUE {
            if let Ok(sig) = Signal::try_from(signo) {
                tracing::debug!(signal = %sig, child = %child, "forwarding signal");
                let _ = nix::sys::signal::kill(child, sig);
            }
        }
    }
}

/// Waits for `child`, forwarding signals; see [`wait_for`].
pub fn wait_forwarding(child: Pid) -> SysResult<i32> {
    wait_for(child, false)
}

/// sigwaitinfo(2): the next pending signal of `set` with its `si_code`.
fn wait_signal(set: &SigSet) -> SysResult<(i32, i32)> {
    loop {
        // SAFETY: siginfo_t is plain data that the kernel fills in.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: `set` is a valid sigset and `info` a valid out-pointer.
        let r = unsafe { libc::sigwaitinfo(set.as_ref(), &mut info) };
        if r < 0 {
            let e = Errno::last();
            if e == Errno::EINTR {
                continue;
            }
            return Err(SysError::new("sigwaitinfo", None, e));
        }
        return Ok((r, info.si_code));
    }
}

/// The signal (SIGINT or SIGTERM) that asked a `build` to stop, 0 until one came.
static INTERRUPT: AtomicI32 = AtomicI32::new(0);

extern "C" fn record_interrupt(signo: libc::c_int) {
    // An atomic store is async-signal-safe.
    INTERRUPT.store(signo, Ordering::SeqCst);
}

/// Makes SIGINT and SIGTERM set a flag instead of ending the process, for a parent that must stop
/// its workers and report before it exits (`build`). Children get the default dispositions back
/// when they exec.
pub fn catch_interrupts() -> SysResult<()> {
    let action = SigAction::new(
        SigHandler::Handler(record_interrupt),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for s in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: the handler only stores to an atomic.
        unsafe { sigaction(s, &action) }
            .map_err(|e| SysError::new(format!("sigaction({s})"), None, e))?;
    }
    Ok(())
}

/// Gives SIGINT and SIGTERM back their default dispositions (they end the process), after a
/// [`catch_interrupts`] for one step.
pub fn default_interrupts() -> SysResult<()> {
    let action = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    for s in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: restoring the default disposition installs no code.
        unsafe { sigaction(s, &action) }
            .map_err(|e| SysError::new(format!("sigaction({s})"), None, e))?;
    }
    Ok(())
}

/// Ends this process by `sig`, as its default disposition would have (a shell then sees 128 +
/// the signal): for a process that caught the signal to stop a child first.
pub fn die_of(sig: Signal) -> ! {
    let _ = default_interrupts();
    let _ = nix::sys::signal::raise(sig);
    // Not reached for SIGINT or SIGTERM, whose default is to end the process.
    std::process::exit(128 + sig as i32)
}

/// The interrupting signal [`catch_interrupts`] recorded, if any.
pub fn interrupted() -> Option<Signal> {
    match INTERRUPT.load(Ordering::SeqCst) {
        0 => None,
        n => Signal::try_from(n).ok(),
    }
}

/// The number of threads of this process (`Threads:` of /proc/self/status).
pub fn thread_count() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|n| n.trim().parse().ok())
        })
        .unwrap_or(1)
}

/// pookie-ns forks without exec (user-namespace helpers, sandboxes): the child is a copy of the
/// calling thread only, and a lock another thread held (the allocator's, stdout's) stays locked
/// there for ever. So nothing may fork while a second thread lives — a progress bar's ticker
/// included. Checked in debug builds at every such fork.
pub fn debug_assert_single_threaded(at: &str) {
    if cfg!(debug_assertions) {
        let n = thread_count();
        assert!(
            n == 1,
            "fork at {at} with {n} threads alive: a progress bar still ticking? (process.rs)"
        );
    }
}
