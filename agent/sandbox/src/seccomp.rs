//! The seccomp filters every sandbox runs under: what a process with no capabilities could still
//! use against the kernel or its neighbours, refused.
//!
//! Two programs, because one seccomp program has one answer for what it matches: the first
//! answers `EPERM` (mounts, namespaces, reading files by handle, tracing other processes, BPF,
//! kernel keyrings, perf, module loading, raw and packet sockets, terminal injection, ...); the
//! second answers `ENOSYS` for `clone3` and `io_uring`, which a filter cannot look inside (their
//! arguments live in memory), so that C libraries fall back to `clone` and plain reads, which
//! the first filter does see. On x86-64 the x32 system call numbers (another way to name every
//! call) are refused outright.

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch, sock_filter,
};

use crate::SandboxError;

/// Calls refused whatever their arguments.
const REFUSED: &[libc::c_long] = &[
    libc::SYS_mount,
    libc::SYS_umount2,
    libc::SYS_pivot_root,
    libc::SYS_chroot,
    libc::SYS_unshare,
    libc::SYS_setns,
    libc::SYS_open_by_handle_at,
    libc::SYS_name_to_handle_at,
    libc::SYS_ptrace,
    libc::SYS_process_vm_readv,
    libc::SYS_process_vm_writev,
    libc::SYS_pidfd_getfd,
    libc::SYS_kcmp,
    libc::SYS_bpf,
    libc::SYS_keyctl,
    libc::SYS_add_key,
    libc::SYS_request_key,
    libc::SYS_perf_event_open,
    libc::SYS_userfaultfd,
    libc::SYS_kexec_load,
    libc::SYS_kexec_file_load,
    libc::SYS_init_module,
    libc::SYS_finit_module,
    libc::SYS_delete_module,
    libc::SYS_reboot,
    libc::SYS_swapon,
    libc::SYS_swapoff,
    libc::SYS_acct,
    libc::SYS_syslog,
    libc::SYS_quotactl,
    libc::SYS_fsopen,
    libc::SYS_fsconfig,
    libc::SYS_fsmount,
    libc::SYS_fspick,
    libc::SYS_move_mount,
    libc::SYS_open_tree,
    libc::SYS_mount_setattr,
    libc::SYS_vhangup,
    libc::SYS_settimeofday,
    libc::SYS_clock_settime,
    libc::SYS_clock_adjtime,
    libc::SYS_adjtimex,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_iopl,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_ioperm,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_lookup_dcookie,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_uselib,
];

/// Answered `ENOSYS`: callers fall back to calls the first filter can inspect.
const UNSUPPORTED: &[libc::c_long] = &[
    libc::SYS_clone3,
    libc::SYS_io_uring_setup,
    libc::SYS_io_uring_enter,
    libc::SYS_io_uring_register,
];

/// `clone` flags that make a namespace.
const NAMESPACE_FLAGS: [u64; 8] = [
    libc::CLONE_NEWNS as u64,
    libc::CLONE_NEWCGROUP as u64,
    libc::CLONE_NEWUTS as u64,
    libc::CLONE_NEWIPC as u64,
    libc::CLONE_NEWUSER as u64,
    libc::CLONE_NEWPID as u64,
    libc::CLONE_NEWNET as u64,
    0x80, // CLONE_NEWTIME
];

/// The two programs as bubblewrap reads them (`--seccomp FD`, `--add-seccomp-fd FD`): raw
/// `struct sock_filter` arrays in this machine's byte order.
#[derive(Debug, Clone)]
pub struct SeccompPrograms {
    pub refuse: Vec<u8>,
    pub unsupported: Vec<u8>,
}

impl SeccompPrograms {
    pub fn build() -> Result<SeccompPrograms, SandboxError> {
        let arch = target_arch()?;
        let mut refuse: BpfProgram = filter(refused_rules()?, libc::EPERM, arch)?;
        guard_x32(&mut refuse);
        let unsupported = UNSUPPORTED.iter().map(|&nr| (nr, Vec::new())).collect();
        let unsupported: BpfProgram = filter(unsupported, libc::ENOSYS, arch)?;
        Ok(SeccompPrograms {
            refuse: bytes(&refuse),
            unsupported: bytes(&unsupported),
        })
    }
}

fn refused_rules() -> Result<BTreeMap<i64, Vec<SeccompRule>>, SandboxError> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> =
        REFUSED.iter().map(|&nr| (nr, Vec::new())).collect();
    // Packet sockets, and raw IPv4/IPv6 sockets (the type's low bits; flags ride above them).
    let raw = libc::SOCK_RAW as u64;
    let socket = vec![
        rule(&[(0, SeccompCmpOp::Eq, libc::AF_PACKET as u64)])?,
        rule(&[
            (0, SeccompCmpOp::Eq, libc::AF_INET as u64),
            (1, SeccompCmpOp::MaskedEq(0xf), raw),
        ])?,
        rule(&[
            (0, SeccompCmpOp::Eq, libc::AF_INET6 as u64),
            (1, SeccompCmpOp::MaskedEq(0xf), raw),
        ])?,
    ];
    rules.insert(libc::SYS_socket, socket);
    let clone = NAMESPACE_FLAGS
        .iter()
        .map(|&flag| rule(&[(0, SeccompCmpOp::MaskedEq(flag), flag)]))
        .collect::<Result<Vec<_>, _>>()?;
    rules.insert(libc::SYS_clone, clone);
    // Typing into a terminal another process reads (the kernel compares 32 bits of the request).
    let ioctl = [libc::TIOCSTI, libc::TIOCLINUX]
        .iter()
        .map(|&request| rule(&[(1, SeccompCmpOp::Eq, request)]))
        .collect::<Result<Vec<_>, _>>()?;
    rules.insert(libc::SYS_ioctl, ioctl);
    Ok(rules)
}

fn rule(conditions: &[(u8, SeccompCmpOp, u64)]) -> Result<SeccompRule, SandboxError> {
    let conditions = conditions
        .iter()
        .map(|(arg, op, value)| {
            SeccompCondition::new(*arg, SeccompCmpArgLen::Dword, op.clone(), *value)
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(seccomp_error)?;
    SeccompRule::new(conditions).map_err(seccomp_error)
}

fn filter(
    rules: BTreeMap<i64, Vec<SeccompRule>>,
    errno: i32,
    arch: TargetArch,
) -> Result<BpfProgram, SandboxError> {
    let errno = u32::try_from(errno).map_err(|_| seccomp_error("negative errno"))?;
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(errno),
        arch,
    )
    .map_err(seccomp_error)?;
    filter.try_into().map_err(seccomp_error)
}

/// On x86-64, after the architecture check: a system call number with the x32 bit set is
/// refused before any rule looks at it (otherwise every refused call has a second name).
fn guard_x32(program: &mut BpfProgram) {
    if cfg!(not(target_arch = "x86_64")) {
        return;
    }
    const LOAD_NR: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
    const JGE: u16 = 0x35; // BPF_JMP | BPF_JGE | BPF_K
    const RET: u16 = 0x06; // BPF_RET | BPF_K
    const X32_BIT: u32 = 0x4000_0000;
    let refuse = 0x0005_0000 | libc::EPERM as u32; // SECCOMP_RET_ERRNO
    let guard = [
        sock_filter {
            code: LOAD_NR,
            jt: 0,
            jf: 0,
            k: 0,
        },
        sock_filter {
            code: JGE,
            jt: 0,
            jf: 1,
            k: X32_BIT,
        },
        sock_filter {
            code: RET,
            jt: 0,
            jf: 0,
            k: refuse,
        },
    ];
    // seccompiler's program opens with the three-instruction architecture check; the rules that
    // follow load the number again themselves.
    let at = 3.min(program.len());
    program.splice(at..at, guard);
}

fn bytes(program: &BpfProgram) -> Vec<u8> {
    let mut out = Vec::with_capacity(program.len() * 8);
    for instruction in program {
        out.extend_from_slice(&instruction.code.to_ne_bytes());
        out.push(instruction.jt);
        out.push(instruction.jf);
        out.extend_from_slice(&instruction.k.to_ne_bytes());
    }
    out
}

fn target_arch() -> Result<TargetArch, SandboxError> {
    TargetArch::try_from(std::env::consts::ARCH).map_err(|_| {
        SandboxError::Unsupported(format!("no seccomp filter for {}", std::env::consts::ARCH))
    })
}

fn seccomp_error(e: impl std::fmt::Display) -> SandboxError {
    SandboxError::Seccomp(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_programs_are_whole_instructions_and_guard_x32_first() {
        let programs = SeccompPrograms::build().unwrap();
        assert_eq!(programs.refuse.len() % 8, 0);
        assert_eq!(programs.unsupported.len() % 8, 0);
        // Far below the kernel's 4096-instruction limit.
        assert!(
            programs.refuse.len() / 8 < 512,
            "{}",
            programs.refuse.len() / 8
        );
        if cfg!(target_arch = "x86_64") {
            // Instruction 4 compares the number with the x32 bit.
            let fourth = &programs.refuse[32..40];
            assert_eq!(u16::from_ne_bytes([fourth[0], fourth[1]]), 0x35);
            assert_eq!(
                u32::from_ne_bytes([fourth[4], fourth[5], fourth[6], fourth[7]]),
                0x4000_0000
            );
        }
    }
}
