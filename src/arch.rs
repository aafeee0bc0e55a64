//! CPU architectures pookie-ns knows, under each of the names the outside world uses for them:
//! Debian's (`arm64`), the kernel's `uname -m` (`aarch64`), the wheel platform tag's, and the ELF
//! header's `e_machine`. One table, so that no module invents its own spelling.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum Arch {
    Amd64,
    I386,
    Arm64,
    Armhf,
    Ppc64el,
    S390x,
    Riscv64,
}

/// ELF identification of an executable, enough to tell the architectures apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ElfId {
    /// `EI_CLASS`: 1 = 32-bit, 2 = 64-bit.
    pub class: u8,
    /// `EI_DATA`: 1 = little endian, 2 = big endian.
    pub data: u8,
    pub machine: u16,
}

impl Arch {
    pub const ALL: [Arch; 7] = [
        Arch::Amd64,
        Arch::I386,
        Arch::Arm64,
        Arch::Armhf,
        Arch::Ppc64el,
        Arch::S390x,
        Arch::Riscv64,
    ];

    /// Debian's architecture name (`dpkg --print-architecture`); also the store's directory name.
    pub fn debian(self) -> &'static str {
        match self {
            Arch::Amd64 => "amd64",
            Arch::I386 => "i386",
            Arch::Arm64 => "arm64",
            Arch::Armhf => "armhf",
            Arch::Ppc64el => "ppc64el",
            Arch::S390x => "s390x",
            Arch::Riscv64 => "riscv64",
        }
    }

    /// What `uname -m` prints on this architecture (and the suffix of wheel platform tags).
    pub fn uname(self) -> &'static str {
        match self {
            Arch::Amd64 => "x86_64",
            Arch::I386 => "i686",
            Arch::Arm64 => "aarch64",
            Arch::Armhf => "armv7l",
            Arch::Ppc64el => "ppc64le",
            Arch::S390x => "s390x",
            Arch::Riscv64 => "riscv64",
        }
    }

    /// The name QEMU gives its user-mode emulator: `qemu-<name>-static`.
    pub fn qemu(self) -> &'static str {
        match self {
            Arch::Amd64 => "x86_64",
            Arch::I386 => "i386",
            Arch::Arm64 => "aarch64",
            Arch::Armhf => "arm",
            Arch::Ppc64el => "ppc64le",
            Arch::S390x => "s390x",
            Arch::Riscv64 => "riscv64",
        }
    }

    /// Debian's multiarch triplet (`dpkg-architecture -qDEB_HOST_MULTIARCH`): the prefix of its
    /// cross compilers (`aarch64-linux-gnu-gcc`), its library and header subdirectories, and the
    /// name zig takes for the target.
    pub fn multiarch(self) -> &'static str {
        match self {
            Arch::Amd64 => "x86_64-linux-gnu",
            Arch::I386 => "i386-linux-gnu",
            Arch::Arm64 => "aarch64-linux-gnu",
            Arch::Armhf => "arm-linux-gnueabihf",
            Arch::Ppc64el => "powerpc64le-linux-gnu",
            Arch::S390x => "s390x-linux-gnu",
            Arch::Riscv64 => "riscv64-linux-gnu",
        }
    }

    /// Rust's target triple (`CARGO_BUILD_TARGET`).
    pub fn rust_target(self) -> &'static str {
        match self {
            Arch::Amd64 => "x86_64-unknown-linux-gnu",
            Arch::I386 => "i686-unknown-linux-gnu",
            Arch::Arm64 => "aarch64-unknown-linux-gnu",
            Arch::Armhf => "armv7-unknown-linux-gnueabihf",
            Arch::Ppc64el => "powerpc64le-unknown-linux-gnu",
            Arch::S390x => "s390x-unknown-linux-gnu",
            Arch::Riscv64 => "riscv64gc-unknown-linux-gnu",
        }
    }

    /// The ELF identification of this architecture's executables (see elf(5)).
    pub fn elf(self) -> ElfId {
        let (class, data, machine) = match self {
            Arch::Amd64 => (2, 1, 62),
            Arch::I386 => (1, 1, 3),
            Arch::Arm64 => (2, 1, 183),
            Arch::Armhf => (1, 1, 40),
            Arch::Ppc64el => (2, 1, 21),
            Arch::S390x => (2, 2, 22),
            Arch::Riscv64 => (2, 1, 243),
        };
        ElfId {
            class,
            data,
            machine,
        }
    }

    pub fn from_elf(id: ElfId) -> Option<Arch> {
        Arch::ALL.into_iter().find(|a| a.elf() == id)
    }

    /// The architecture this binary runs on.
    pub fn host() -> Arch {
        match std::env::consts::ARCH {
            "x86_64" => Arch::Amd64,
            "x86" => Arch::I386,
            "aarch64" => Arch::Arm64,
            "arm" => Arch::Armhf,
            "powerpc64" => Arch::Ppc64el,
            "s390x" => Arch::S390x,
            "riscv64" => Arch::Riscv64,
            other => panic!("pookie-ns was built for an unsupported architecture: {other}"),
        }
    }

    /// True when code of this architecture runs on the host without emulation.
    pub fn is_native(self) -> bool {
        let host = Arch::host();
        self == host || (host == Arch::Amd64 && self == Arch::I386)
    }

    pub fn names() -> String {
        Arch::ALL
            .iter()
            .map(|a| format!("{} ({})", a.debian(), a.uname()))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Reads the ELF identification from the first bytes of a file (at least 20 bytes).
pub fn parse_elf_header(head: &[u8]) -> Option<ElfId> {
    if head.len() < 20 || &head[..4] != b"\x7fELF" {
        return None;
    }
    let class = head[4];
    let data = head[5];
    let machine = match data {
        1 => u16::from_le_bytes([head[18], head[19]]),
        2 => u16::from_be_bytes([head[18], head[19]]),
        _ => return None,
    };
    Some(ElfId {
        class,
        data,
        machine,
    })
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.debian())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unknown architecture {0:?}; known: {names}", names = Arch::names())]
pub struct UnknownArch(pub String);

impl FromStr for Arch {
    type Err = UnknownArch;

    /// Accepts Debian names, `uname -m` names and the usual aliases.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let a = match s.to_ascii_lowercase().as_str() {
            "amd64" | "x86_64" | "x86-64" => Arch::Amd64,
            "i386" | "i686" | "x86" => Arch::I386,
            "arm64" | "aarch64" => Arch::Arm64,
            "armhf" | "armv7l" | "armv7" | "arm" => Arch::Armhf,
            "ppc64el" | "ppc64le" => Arch::Ppc64el,
            "s390x" => Arch::S390x,
            "riscv64" => Arch::Riscv64,
            _ => return Err(UnknownArch(s.to_string())),
        };
        Ok(a)
    }
}

impl From<Arch> for String {
    fn from(a: Arch) -> String {
        a.debian().to_string()
    }
}

impl TryFrom<String> for Arch {
    type Error = UnknownArch;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_parses_back() {
        for a in Arch::ALL {
            assert_eq!(a.debian().parse::<Arch>().unwrap(), a);
            assert_eq!(a.uname().parse::<Arch>().unwrap(), a);
            assert_eq!(Arch::from_elf(a.elf()), Some(a));
        }
        assert!("sparc".parse::<Arch>().is_err());
    }

    #[test]
    fn elf_headers_are_read_in_their_own_byte_order() {
        // A 64-bit header with EI_DATA `data` and e_machine's two bytes as in the file.
        let arch_of = |data: u8, machine: [u8; 2]| {
            let mut h = [0u8; 20];
            h[..4].copy_from_slice(b"\x7fELF");
            h[4] = 2;
            h[5] = data;
            h[18..20].copy_from_slice(&machine);
            Arch::from_elf(parse_elf_header(&h).unwrap())
        };
        assert_eq!(arch_of(2, [0, 22]), Some(Arch::S390x));
        assert_eq!(arch_of(1, [183, 0]), Some(Arch::Arm64));
        assert_eq!(parse_elf_header(b"#!/bin/sh\n0123456789"), None);
    }
}
