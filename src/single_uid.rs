//! What single-uid mode flattens, and how the sandbox keeps package managers working under it.
//!
//! With only `0 → the caller` mapped, every file in the sandbox belongs to uid 0 / gid 0 (the
//! caller on the host), and the kernel refuses a change of owner to any other id with `EINVAL`
//! (the id has no mapping) and `setgroups(2)` with `EPERM` (an unprivileged single-id map must
//! deny it). Packages carry files of other owners — `/sbin/unix_chkpwd` is `root:shadow`,
//! `/var/cache/apt/archives/partial` is `_apt`'s — so dpkg's `chown` fails and the whole upgrade
//! with it. Two measures, the ones rootless container stacks take for single-id maps (Podman's
//! `ignore_chown_errors`, crun's seccomp answer):
//!
//! * [`install_chown_filter`]: a seccomp filter makes `chown`, `fchown`, `lchown` and `fchownat`
//!   to an id outside the map succeed without doing anything. Nothing is lost that the map could
//!   have kept: the file would have been the caller's either way. Changes to ids inside the map
//!   (0, or -1 for "unchanged") still reach the kernel.
//! * [`APT_CONFIG`]: apt drops privileges to `_apt` for downloads (`seteuid 42 failed` here);
//!   `APT::Sandbox::User "root"` tells it to stay uid 0, through the `APT_CONFIG` file apt reads
//!   before its own configuration, so nothing is written into the root filesystem.
//!
//! What stays flattened: owners and groups (a package's `root:shadow` file is `root:root`),
//! setuid/setgid programs switching to another user (`su`, `runuser`, `setpriv --reuid`), and
//! supplementary groups. A subordinate id range (`/etc/subuid`) keeps all of them, which is why
//! it is the better set-up.

use nix::errno::Errno;

use crate::sys::{SysError, SysResult};

/// Where the apt configuration for single-uid mode is written inside the sandbox (on its `/run`
/// tmpfs) and what `APT_CONFIG` points to.
pub const APT_CONFIG: &str = "/run/pookie-ns/apt-single-uid.conf";

/// The text of [`APT_CONFIG`].
pub const APT_CONFIG_TEXT: &str =
    "// pookie-ns, single-uid mode: no _apt user can be switched to\n\
                                   APT::Sandbox::User \"root\";\n";

/// `AUDIT_ARCH_*` values (linux/audit.h): the architecture a system call was made for.
const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
const AUDIT_ARCH_I386: u32 = 0x4000_0003;
/// The x32 ABI's system calls are the x86_64 numbers with this bit set.
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// The change-of-owner calls of one ABI: (number, index of the uid argument). The gid is the
/// argument after it.
const X86_64_CHOWN_CALLS: [(u32, u32); 4] = [
    (92, 1),  // chown(path, uid, gid)
    (93, 1),  // fchown(fd, uid, gid)
    (94, 1),  // lchown(path, uid, gid)
    (260, 2), // fchownat(dirfd, path, uid, gid, flags)
];
/// i386 (a 32-bit base OS runs natively on x86_64): the 32-bit-id calls glibc uses.
const I386_CHOWN_CALLS: [(u32, u32); 4] = [
    (198, 1), // lchown32
    (207, 1), // fchown32
    (212, 1), // chown32
    (298, 2), // fchownat
];

/// Offsets in `struct seccomp_data` (linux/seccomp.h): nr, arch, instruction_pointer, args[6].
const DATA_NR: u32 = 0;
const DATA_ARCH: u32 = 4;
/// The low 32 bits of `args[i]` (little-endian): ids are 32-bit.
fn data_arg_low(i: u32) -> u32 {
    16 + 8 * i
}

const RET_ALLOW: u32 = libc::SECCOMP_RET_ALLOW;
/// `SECCOMP_RET_ERRNO` with errno 0: the call returns 0 without running.
const RET_SUCCEED: u32 = libc::SECCOMP_RET_ERRNO;

fn stmt(code: u32, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jeq(k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter {
        code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
        jt,
        jf,
        k,
    }
}

fn load(offset: u32) -> libc::sock_filter {
    stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, offset)
}

fn ret(value: u32) -> libc::sock_filter {
    stmt(libc::BPF_RET | libc::BPF_K, value)
}

/// The checks for one ABI's calls: for each call, "if nr matches, judge its id arguments".
/// Falls through (past its end) when no call matched.
fn abi_block(calls: &[(u32, u32)]) -> Vec<libc::sock_filter> {
    let mut out = Vec::new();
    for &(nr, uid_arg) in calls {
        let judge = id_judge(uid_arg);
        // Not this call: jump over its judge.
        out.push(jeq(nr, 0, judge.len() as u8));
        out.extend(judge);
    }
    out
}

/// Allows the call when both ids are 0 or -1 (mapped, or "unchanged"), makes it succeed
/// untouched otherwise. Always returns. Jump offsets count from the next instruction.
fn id_judge(uid_arg: u32) -> Vec<libc::sock_filter> {
    vec![
        load(data_arg_low(uid_arg)),     // 0
        jeq(0, 1, 0),                    // 1: uid 0 → 3
        jeq(u32::MAX, 0, 4),             // 2: uid -1 → 3, else → 7
        load(data_arg_low(uid_arg + 1)), // 3
        jeq(0, 1, 0),                    // 4: gid 0 → 6
        jeq(u32::MAX, 0, 1),             // 5: gid -1 → 6, else → 7
        ret(RET_ALLOW),                  // 6
        ret(RET_SUCCEED),                // 7
    ]
}

/// The whole filter program.
pub fn chown_filter() -> Vec<libc::sock_filter> {
    let x86_64 = {
        let mut b = vec![
            load(DATA_NR),
            stmt(
                libc::BPF_ALU | libc::BPF_AND | libc::BPF_K,
                !X32_SYSCALL_BIT,
            ),
        ];
        b.extend(abi_block(&X86_64_CHOWN_CALLS));
        b.push(ret(RET_ALLOW));
        b
    };
    let i386 = {
        let mut b = vec![load(DATA_NR)];
        b.extend(abi_block(&I386_CHOWN_CALLS));
        b.push(ret(RET_ALLOW));
        b
    };
    let mut prog = vec![
        load(DATA_ARCH),
        jeq(AUDIT_ARCH_X86_64, 2, 0), // → the x86_64 block
        jeq(AUDIT_ARCH_I386, x86_64.len() as u8 + 1, 0), // → the i386 block
        ret(RET_ALLOW),               // another arch: nothing to judge
    ];
    prog.extend(x86_64);
    prog.extend(i386);
    prog
}

/// Installs [`chown_filter`] for this process and everything it starts. Needs `no_new_privs`
/// (set by the sandbox before) since the process lacks `CAP_SYS_ADMIN` in the host's namespace.
pub fn install_chown_filter() -> SysResult<()> {
    let mut prog = chown_filter();
    let fprog = libc::sock_fprog {
        len: prog.len() as u16,
        filter: prog.as_mut_ptr(),
    };
    // SAFETY: fprog points to a valid program that outlives the call (the kernel copies it).
    let r = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            0,
            &fprog as *const libc::sock_fprog,
        )
    };
    Errno::result(r)
        .map(drop)
        .map_err(|e| SysError::new("seccomp(SECCOMP_SET_MODE_FILTER) for chown", None, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny classic-BPF interpreter for the instructions the filter uses, to check its
    /// decisions without installing it.
    fn run(prog: &[libc::sock_filter], nr: u32, arch: u32, args: [u64; 6]) -> u32 {
        let mut data = [0u8; 64];
        data[0..4].copy_from_slice(&nr.to_le_bytes());
        data[4..8].copy_from_slice(&arch.to_le_bytes());
        for (i, a) in args.iter().enumerate() {
            data[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_le_bytes());
        }
        let mut acc = 0u32;
        let mut pc = 0usize;
        loop {
            let insn = prog[pc];
            let code = insn.code as u32;
            pc += 1;
            match code {
                c if c == libc::BPF_LD | libc::BPF_W | libc::BPF_ABS => {
                    let o = insn.k as usize;
                    acc = u32::from_le_bytes(data[o..o + 4].try_into().unwrap());
                }
                c if c == libc::BPF_ALU | libc::BPF_AND | libc::BPF_K => acc &= insn.k,
                c if c == libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K => {
                    pc += if acc == insn.k { insn.jt } else { insn.jf } as usize;
                }
                c if c == libc::BPF_RET | libc::BPF_K => return insn.k,
                other => panic!("unexpected instruction {other:#x}"),
            }
        }
    }

    const M1: u64 = u32::MAX as u64;

    #[test]
    fn chown_to_an_unmapped_id_succeeds_without_running() {
        let p = chown_filter();
        let x = AUDIT_ARCH_X86_64;
        // chown(path, 0, 42): gid 42 (shadow) is outside the map.
        assert_eq!(run(&p, 92, x, [0, 0, 42, 0, 0, 0]), RET_SUCCEED);
        // fchownat(dirfd, path, 42, -1, flags): uid outside.
        assert_eq!(run(&p, 260, x, [0, 0, 42, M1, 0, 0]), RET_SUCCEED);
        // lchown(path, -1, 100)
        assert_eq!(run(&p, 94, x, [0, M1, 100, 0, 0, 0]), RET_SUCCEED);
        // fchown(fd, 1000, 1000)
        assert_eq!(run(&p, 93, x, [3, 1000, 1000, 0, 0, 0]), RET_SUCCEED);
        // x32: the same numbers with the x32 bit.
        assert_eq!(
            run(&p, 92 | X32_SYSCALL_BIT, x, [0, 0, 42, 0, 0, 0]),
            RET_SUCCEED
        );
        // i386 chown32 and fchownat.
        assert_eq!(
            run(&p, 212, AUDIT_ARCH_I386, [0, 5, 0, 0, 0, 0]),
            RET_SUCCEED
        );
        assert_eq!(
            run(&p, 298, AUDIT_ARCH_I386, [0, 0, 0, 7, 0, 0]),
            RET_SUCCEED
        );
    }

    #[test]
    fn mapped_ids_and_other_calls_reach_the_kernel() {
        let p = chown_filter();
        let x = AUDIT_ARCH_X86_64;
        assert_eq!(run(&p, 92, x, [0, 0, 0, 0, 0, 0]), RET_ALLOW);
        assert_eq!(run(&p, 92, x, [0, M1, 0, 0, 0, 0]), RET_ALLOW);
        assert_eq!(run(&p, 260, x, [0, 0, 0, M1, 0, 0]), RET_ALLOW);
        assert_eq!(run(&p, 260, x, [0, 0, M1, M1, 0, 0]), RET_ALLOW);
        // fchownat's args 1 (a path pointer) is not mistaken for an id.
        assert_eq!(run(&p, 260, x, [5, 0x7fff_0000, 0, 0, 0, 0]), RET_ALLOW);
        // open(2), setuid(2): untouched.
        assert_eq!(run(&p, 2, x, [0, 42, 42, 0, 0, 0]), RET_ALLOW);
        assert_eq!(run(&p, 105, x, [42, 0, 0, 0, 0, 0]), RET_ALLOW);
        // i386's number 92 is truncate: not a chown there.
        assert_eq!(run(&p, 92, AUDIT_ARCH_I386, [0, 0, 42, 0, 0, 0]), RET_ALLOW);
        // aarch64 (never seen on an x86_64 host, QEMU translates to x86_64): allowed.
        assert_eq!(run(&p, 55, 0xc000_00b7, [0, 42, 42, 0, 0, 0]), RET_ALLOW);
    }
}
