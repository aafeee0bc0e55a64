//! Host-wide registrations root makes for the time of one command, where no private binfmt_misc
//! instance serves and the host has no entry ([`super::policy::Decision::RegisterForCommand`]).
//!
//! A command that may emulate holds a [`CommandScope`] for its whole duration (`commands` does,
//! for `run`, `build`, `load-baseos` and `update-baseos`; `baseos::load_recipe` holds one of its
//! own around mmdebstrap). Registrations made inside it are recorded here, in this process, and
//! taken back when the outermost scope is dropped: on success, on error and on a panic's unwind.
//! A path that ends the process without unwinding (dying of a signal's default disposition)
//! calls [`take_back_now`] first. Worker processes of `build` hold no scope: the registration
//! their parent made serves them, and only the parent takes it back.

use std::sync::{Mutex, MutexGuard};

use crate::arch::Arch;

use super::error::{BinfmtError, Result};

/// What this process registered host-wide, and how many scopes are open.
#[derive(Debug, Default)]
struct Registry {
    depth: usize,
    made: Vec<Arch>,
}

impl Registry {
    const fn new() -> Self {
        Registry {
            depth: 0,
            made: Vec::new(),
        }
    }

    fn enter(&mut self) {
        self.depth += 1;
    }

    /// Leaves a scope: what to take back when it was the outermost one.
    fn leave(&mut self) -> Vec<Arch> {
        self.depth = self.depth.saturating_sub(1);
        if self.depth == 0 {
            std::mem::take(&mut self.made)
        } else {
            Vec::new()
        }
    }

    /// Records a registration; refused outside every scope (nobody would take it back).
    fn record(&mut self, arch: Arch) -> bool {
        if self.depth == 0 {
            return false;
        }
        if !self.made.contains(&arch) {
            self.made.push(arch);
        }
        true
    }
}

static HOST: Mutex<Registry> = Mutex::new(Registry::new());

fn registry() -> MutexGuard<'static, Registry> {
    // Nothing panics while holding the lock; a poisoned one still holds the right list.
    HOST.lock().unwrap_or_else(|e| e.into_inner())
}

/// While one is alive, root's commands may register QEMU host-wide for their own duration;
/// the outermost one takes every such registration back when dropped.
#[must_use = "the scope ends, and its registrations are taken back, when it is dropped"]
#[derive(Debug)]
pub struct CommandScope {
    _private: (),
}

impl CommandScope {
    pub fn enter() -> CommandScope {
        registry().enter();
        CommandScope { _private: () }
    }
}

impl Drop for CommandScope {
    fn drop(&mut self) {
        let made = registry().leave();
        take_back(&made, super::host::unregister_host);
    }
}

/// Takes back now what this process registered for its command (before dying of a signal,
/// where no destructor runs). The scopes stay open; later registrations are recorded anew.
pub fn take_back_now() {
    let made = std::mem::take(&mut registry().made);
    take_back(&made, super::host::unregister_host);
}

fn take_back(arches: &[Arch], unregister: fn(&[Arch]) -> Result<Vec<String>>) {
    if arches.is_empty() {
        return;
    }
    match unregister(arches) {
        Ok(messages) => {
            for m in messages {
                tracing::info!("{m}: it was registered for this command only");
            }
        }
        Err(e) => tracing::warn!(
            "could not take back the host-wide QEMU registration made for this command: {e}; \
             remove it with `pookie-ns binfmt unregister{}`",
            arches
                .iter()
                .map(|a| format!(" --arch {}", a.uname()))
                .collect::<String>()
        ),
    }
}

/// Registers `interpreter` for `arch` host-wide until the outermost [`CommandScope`] ends.
pub(super) fn register_for_command(arch: Arch, interpreter: &std::path::Path) -> Result<()> {
    let mut registry = registry();
    if registry.depth == 0 {
        return Err(BinfmtError::NoCommandScope(arch));
    }
    let message = super::host::register_temporary(arch, interpreter)?;
    registry.record(arch);
    tracing::info!("{message} for this command; it is removed when the command ends");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_outermost_scope_takes_back_what_any_scope_registered() {
        let mut r = Registry::new();
        assert!(
            !r.record(Arch::Arm64),
            "no scope: nothing may be registered"
        );
        r.enter();
        r.enter();
        assert!(r.record(Arch::Arm64));
        assert!(r.record(Arch::Arm64));
        assert_eq!(r.leave(), [], "an inner scope leaves the registration on");
        assert!(r.record(Arch::Armhf));
        assert_eq!(r.leave(), [Arch::Arm64, Arch::Armhf]);
        assert_eq!(r.leave(), [], "nothing twice");
        assert!(!r.record(Arch::Arm64));
    }

    static TAKEN_BACK: Mutex<Vec<Arch>> = Mutex::new(Vec::new());

    fn recorder(arches: &[Arch]) -> Result<Vec<String>> {
        TAKEN_BACK.lock().unwrap().extend_from_slice(arches);
        Ok(vec!["unregistered".into()])
    }

    /// A guard of the registry with the recorder for taking back: [`CommandScope`]'s drop, on
    /// a test registry.
    struct TestScope<'a>(&'a Mutex<Registry>);

    impl Drop for TestScope<'_> {
        fn drop(&mut self) {
            let made = self.0.lock().unwrap_or_else(|e| e.into_inner()).leave();
            take_back(&made, recorder);
        }
    }

    #[test]
    fn a_panic_in_the_command_still_takes_the_registration_back() {
        let registry = Mutex::new(Registry::new());
        let outcome = std::panic::catch_unwind(|| {
            registry.lock().unwrap().enter();
            let _scope = TestScope(&registry);
            assert!(registry.lock().unwrap().record(Arch::S390x));
            panic!("the command fails half-way");
        });
        assert!(outcome.is_err());
        assert_eq!(*TAKEN_BACK.lock().unwrap(), [Arch::S390x]);
        assert_eq!(registry.lock().unwrap().depth, 0);
    }

    #[test]
    fn registering_outside_any_scope_is_refused() {
        // No test of this crate's unit tests opens the process's real scope.
        let e =
            register_for_command(Arch::Arm64, std::path::Path::new("/nonexistent")).unwrap_err();
        assert!(matches!(e, BinfmtError::NoCommandScope(Arch::Arm64)), "{e}");
    }
}
