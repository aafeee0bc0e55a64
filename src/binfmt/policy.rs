//! The one emulation policy: how a foreign arch gets emulated, as a pure function of what the
//! kernel, the configuration, the caller, the host's binfmt_misc and the QEMU search found.
//! `run`, `build` (its sandbox steps and instance refreshes) and mmdebstrap (`load-baseos` of a
//! foreign recipe) all go through it, by way of [`super::choose`] and [`super::emulation_for`].
//!
//! | private instances (kernel ≥ 6.7 and not `binfmt = "host"`) | QEMU found | host entry (enabled, `F`) | root | decision |
//! | --- | --- | --- | --- | --- |
//! | yes | yes | (not read) | any | [`Decision::Private`] |
//! | any | any | yes | any | [`Decision::Host`] |
//! | yes | no | no | any | [`Decision::NoInterpreter`]: install the package |
//! | no | yes | no, and no entry of pookie-ns's name | yes | [`Decision::RegisterForCommand`] |
//! | no | any | no | any other case | [`Decision::Unavailable`]: the one command that fixes it |

use super::registration::Registration;

/// What the host's binfmt_misc offers for one arch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum HostState {
    /// An enabled entry with the `F` flag serves the arch.
    Usable(Registration),
    /// No entry serves it usably; `own_name_taken` when an entry named `qemu-<arch>` exists all
    /// the same (disabled, or without `F`): registering would replace it, so only the explicit
    /// `pookie-ns binfmt register` does that, never a command for its own duration.
    Unusable { own_name_taken: bool },
}

/// The facts the decision rests on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Facts {
    /// The kernel mounts binfmt_misc in a user namespace (Linux ≥ 6.7).
    pub kernel_has_private: bool,
    /// Not disabled by `binfmt = "host"` or `POOKIE_NS_BINFMT=host`.
    pub allow_private: bool,
    /// The caller may change the host's binfmt_misc (euid 0).
    pub root: bool,
    /// A usable `qemu-<arch>-static` was found.
    pub qemu_found: bool,
}

impl Facts {
    pub fn private_possible(&self) -> bool {
        self.kernel_has_private && self.allow_private
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Decision {
    /// Register QEMU in a private binfmt_misc instance of the sandbox (or of mmdebstrap's helper).
    Private,
    /// The host's registration serves as it is.
    Host(Registration),
    /// Root registers QEMU host-wide for the time of the command ([`super::CommandScope`]) and
    /// takes it back when the command ends.
    RegisterForCommand,
    /// Private instances would serve; only the interpreter is missing.
    NoInterpreter,
    /// Nothing serves: the error names the reason and the one command that fixes it.
    Unavailable,
}

/// The policy (see the module's table). `host` is read only when a private instance cannot
/// serve, so a run on Linux ≥ 6.7 never looks at the host's binfmt_misc.
pub(super) fn decide(facts: Facts, host: impl FnOnce() -> HostState) -> Decision {
    if facts.private_possible() && facts.qemu_found {
        return Decision::Private;
    }
    match host() {
        HostState::Usable(entry) => Decision::Host(entry),
        _ if facts.private_possible() => Decision::NoInterpreter,
        HostState::Unusable {
            own_name_taken: false,
        } if facts.root && facts.qemu_found => Decision::RegisterForCommand,
        HostState::Unusable { .. } => Decision::Unavailable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::binfmt::parse_registration;
    use crate::binfmt::tests::KERNEL_TEXT;

    fn usable() -> HostState {
        HostState::Usable(parse_registration("qemu-aarch64", KERNEL_TEXT))
    }
    const NONE: HostState = HostState::Unusable {
        own_name_taken: false,
    };
    const TAKEN: HostState = HostState::Unusable {
        own_name_taken: true,
    };

    fn facts(kernel_has_private: bool, allow_private: bool, root: bool, qemu_found: bool) -> Facts {
        Facts {
            kernel_has_private,
            allow_private,
            root,
            qemu_found,
        }
    }

    #[test]
    fn a_private_instance_first_and_the_host_left_unread() {
        let unread = || panic!("the host's binfmt_misc is not read when a private instance serves");
        for root in [false, true] {
            assert_eq!(
                decide(facts(true, true, root, true), unread),
                Decision::Private
            );
        }
    }

    #[test]
    fn the_host_entry_serves_whoever_asks_when_no_private_instance_does() {
        let host = |r| match decide(r, usable) {
            Decision::Host(e) => e.name,
            d => panic!("{r:?}: {d:?}"),
        };
        for root in [false, true] {
            for qemu in [false, true] {
                // An old kernel, private instances disabled, or no QEMU for a private one.
                assert_eq!(host(facts(false, true, root, qemu)), "qemu-aarch64");
                assert_eq!(host(facts(true, false, root, qemu)), "qemu-aarch64");
            }
            assert_eq!(host(facts(true, true, root, false)), "qemu-aarch64");
        }
    }

    #[test]
    fn root_registers_for_the_command_where_nothing_else_serves() {
        // Old kernel, or private instances disabled: root, QEMU found, the name free.
        assert_eq!(
            decide(facts(false, true, true, true), || NONE),
            Decision::RegisterForCommand
        );
        assert_eq!(
            decide(facts(true, false, true, true), || NONE),
            Decision::RegisterForCommand
        );
        // Never over an entry of its own name (it would be lost when taken back), never
        // without QEMU, never for a user.
        assert_eq!(
            decide(facts(false, true, true, true), || TAKEN),
            Decision::Unavailable
        );
        assert_eq!(
            decide(facts(false, true, true, false), || NONE),
            Decision::Unavailable
        );
        for host in [NONE, TAKEN] {
            assert_eq!(
                decide(facts(false, true, false, true), || host.clone()),
                Decision::Unavailable
            );
            assert_eq!(
                decide(facts(true, false, false, true), || host.clone()),
                Decision::Unavailable
            );
        }
    }

    #[test]
    fn where_a_private_instance_would_serve_only_the_package_is_missing() {
        for root in [false, true] {
            for host in [NONE, TAKEN] {
                assert_eq!(
                    decide(facts(true, true, root, false), || host.clone()),
                    Decision::NoInterpreter
                );
            }
        }
    }
}
