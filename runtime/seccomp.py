"""The RuntimeDefault seccomp profile: containerd 1.6's default, built for the host's architecture.

Everything not listed fails with EPERM (SCMP_ACT_ERRNO). What is allowed beyond the base list depends on the
container's bounding capabilities (a container that may mount gets mount(2)), so the profile must be built after
the capabilities are final. Without CAP_SYS_ADMIN, clone(2) may not create namespaces and clone3(2) fails with
ENOSYS, which makes glibc fall back to clone(2) where the flags can be checked.
"""

from __future__ import annotations

import errno
import json
import os
import platform
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import errdefs

__all__ = ["default_profile", "load_profile"]

ALLOW = "SCMP_ACT_ALLOW"
ERRNO = "SCMP_ACT_ERRNO"

# Allowed whatever the capabilities.
BASE_SYSCALLS = (
    "accept", "accept4", "access", "adjtimex", "alarm", "bind", "brk", "capget", "capset", "chdir", "chmod",
    "chown", "chown32", "clock_adjtime", "clock_adjtime64", "clock_getres", "clock_getres_time64", "clock_gettime",
    "clock_gettime64", "clock_nanosleep", "clock_nanosleep_time64", "close", "close_range", "connect",
    "copy_file_range", "creat", "dup", "dup2", "dup3", "epoll_create", "epoll_create1", "epoll_ctl",
    "epoll_ctl_old", "epoll_pwait", "epoll_pwait2", "epoll_wait", "epoll_wait_old", "eventfd", "eventfd2",
    "execve", "execveat", "exit", "exit_group", "faccessat", "faccessat2", "fadvise64", "fadvise64_64",
    "fallocate", "fanotify_mark", "fchdir", "fchmod", "fchmodat", "fchown", "fchown32", "fchownat", "fcntl",
    "fcntl64", "fdatasync", "fgetxattr", "flistxattr", "flock", "fork", "fremovexattr", "fsetxattr", "fstat",
    "fstat64", "fstatat64", "fstatfs", "fstatfs64", "fsync", "ftruncate", "ftruncate64", "futex", "futex_time64",
    "futex_waitv", "futimesat", "getcpu", "getcwd", "getdents", "getdents64", "getegid", "getegid32", "geteuid",
    "geteuid32", "getgid", "getgid32", "getgroups", "getgroups32", "getitimer", "getpeername", "getpgid",
    "getpgrp", "getpid", "getppid", "getpriority", "getrandom", "getresgid", "getresgid32", "getresuid",
    "getresuid32", "getrlimit", "get_robust_list", "getrusage", "getsid", "getsockname", "getsockopt",
    "get_thread_area", "gettid", "gettimeofday", "getuid", "getuid32", "getxattr", "inotify_add_watch",
    "inotify_init", "inotify_init1", "inotify_rm_watch", "io_cancel", "ioctl", "io_destroy", "io_getevents",
    "io_pgetevents", "io_pgetevents_time64", "ioprio_get", "ioprio_set", "io_setup", "io_submit", "io_uring_enter",
    "io_uring_register", "io_uring_setup", "ipc", "kill", "landlock_add_rule", "landlock_create_ruleset",
    "landlock_restrict_self", "lchown", "lchown32", "lgetxattr", "link", "linkat", "listen", "listxattr",
    "llistxattr", "_llseek", "lremovexattr", "lseek", "lsetxattr", "lstat", "lstat64", "madvise", "membarrier",
    "memfd_create", "memfd_secret", "mincore", "mkdir", "mkdirat", "mknod", "mknodat", "mlock", "mlock2",
    "mlockall", "mmap", "mmap2", "mprotect", "mq_getsetattr", "mq_notify", "mq_open", "mq_timedreceive",
    "mq_timedreceive_time64", "mq_timedsend", "mq_timedsend_time64", "mq_unlink", "mremap", "msgctl", "msgget",
    "msgrcv", "msgsnd", "msync", "munlock", "munlockall", "munmap", "nanosleep", "newfstatat", "_newselect",
    "open", "openat", "openat2", "pause", "pidfd_open", "pidfd_send_signal", "pipe", "pipe2", "pkey_alloc",
    "pkey_free", "pkey_mprotect", "poll", "ppoll", "ppoll_time64", "prctl", "pread64", "preadv", "preadv2",
    "prlimit64", "process_mrelease", "pselect6", "pselect6_time64", "pwrite64", "pwritev", "pwritev2", "read",
    "readahead", "readlink", "readlinkat", "readv", "recv", "recvfrom", "recvmmsg", "recvmmsg_time64", "recvmsg",
    "remap_file_pages", "removexattr", "rename", "renameat", "renameat2", "restart_syscall", "rmdir", "rseq",
    "rt_sigaction", "rt_sigpending", "rt_sigprocmask", "rt_sigqueueinfo", "rt_sigreturn", "rt_sigsuspend",
    "rt_sigtimedwait", "rt_sigtimedwait_time64", "rt_tgsigqueueinfo", "sched_getaffinity", "sched_getattr",
    "sched_getparam", "sched_get_priority_max", "sched_get_priority_min", "sched_getscheduler",
    "sched_rr_get_interval", "sched_rr_get_interval_time64", "sched_setaffinity", "sched_setattr",
    "sched_setparam", "sched_setscheduler", "sched_yield", "seccomp", "select", "semctl", "semget", "semop",
    "semtimedop", "semtimedop_time64", "send", "sendfile", "sendfile64", "sendmmsg", "sendmsg", "sendto",
    "setfsgid", "setfsgid32", "setfsuid", "setfsuid32", "setgid", "setgid32", "setgroups", "setgroups32",
    "setitimer", "setpgid", "setpriority", "setregid", "setregid32", "setresgid", "setresgid32", "setresuid",
    "setresuid32", "setreuid", "setreuid32", "setrlimit", "set_robust_list", "setsid", "setsockopt",
    "set_thread_area", "set_tid_address", "setuid", "setuid32", "setxattr", "shmat", "shmctl", "shmdt", "shmget",
    "shutdown", "sigaltstack", "signalfd", "signalfd4", "sigprocmask", "sigreturn", "socket", "socketcall",
    "socketpair", "splice", "stat", "stat64", "statfs", "statfs64", "statx", "symlink", "symlinkat", "sync",
    "sync_file_range", "syncfs", "sysinfo", "tee", "tgkill", "time", "timer_create", "timer_delete",
    "timer_getoverrun", "timer_gettime", "timer_gettime64", "timer_settime", "timer_settime64", "timerfd_create",
    "timerfd_gettime", "timerfd_gettime64", "timerfd_settime", "timerfd_settime64", "times", "tkill", "truncate",
    "truncate64", "ugetrlimit", "umask", "uname", "unlink", "unlinkat", "utime", "utimensat", "utimensat_time64",
    "utimes", "vfork", "vmsplice", "wait4", "waitid", "waitpid", "write", "writev",
)

# personality(2) personas that are harmless: PER_LINUX, PER_LINUX32, UNAME26, UNAME26|PER_LINUX32, and the query.
PERSONALITIES = (0x0, 0x0008, 0x20000, 0x20008, 0xFFFFFFFF)

# machine() -> (seccomp architectures, syscalls only that architecture has)
ARCHES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "x86_64": (("SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"), ("arch_prctl", "modify_ldt")),
    "aarch64": (
        ("SCMP_ARCH_ARM", "SCMP_ARCH_AARCH64"),
        ("arm_fadvise64_64", "arm_sync_file_range", "sync_file_range2", "breakpoint", "cacheflush", "set_tls"),
    ),
    "ppc64le": (("SCMP_ARCH_PPC64LE",), ("sync_file_range2", "swapcontext")),
    "s390x": (
        ("SCMP_ARCH_S390", "SCMP_ARCH_S390X"),
        ("s390_pci_mmio_read", "s390_pci_mmio_write", "s390_runtime_instr"),
    ),
    "riscv64": (("SCMP_ARCH_RISCV64",), ("riscv_flush_icache",)),
}

# Syscalls a capability in the bounding set unlocks.
CAPABILITY_SYSCALLS: dict[str, tuple[str, ...]] = {
    "CAP_DAC_READ_SEARCH": ("open_by_handle_at",),
    "CAP_SYS_ADMIN": (
        "bpf", "clone", "clone3", "fanotify_init", "fsconfig", "fsmount", "fsopen", "fspick", "lookup_dcookie",
        "mount", "mount_setattr", "move_mount", "name_to_handle_at", "open_tree", "perf_event_open", "quotactl",
        "quotactl_fd", "setdomainname", "sethostname", "setns", "syslog", "umount", "umount2", "unshare",
    ),
    "CAP_SYS_BOOT": ("reboot",),
    "CAP_SYS_CHROOT": ("chroot",),
    "CAP_SYS_MODULE": ("delete_module", "init_module", "finit_module"),
    "CAP_SYS_PACCT": ("acct",),
    "CAP_SYS_PTRACE": ("kcmp", "pidfd_getfd", "process_madvise", "process_vm_readv", "process_vm_writev", "ptrace"),
    "CAP_SYS_RAWIO": ("iopl", "ioperm"),
    "CAP_SYS_TIME": ("settimeofday", "stime", "clock_settime", "clock_settime64"),
    "CAP_SYS_TTY_CONFIG": ("vhangup",),
    "CAP_SYS_NICE": ("get_mempolicy", "mbind", "set_mempolicy"),
    "CAP_SYSLOG": ("syslog",),
    "CAP_BPF": ("bpf",),
    "CAP_PERFMON": ("perf_event_open",),
}

# CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET
NAMESPACE_FLAGS = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000

# ptrace(2) can bypass seccomp before kernel 4.8, so it is allowed only from then on.
PTRACE_SAFE_KERNEL = (4, 8)

# The keys of the OCI spec's linux.seccomp (and of its syscall entries) that runc reads; a profile in docker's
# richer format carries others, which containerd drops when it decodes the file.
PROFILE_KEYS = ("defaultAction", "defaultErrnoRet", "architectures", "flags", "listenerPath", "listenerMetadata",
                "syscalls")
SYSCALL_KEYS = ("names", "action", "errnoRet", "args")


def default_profile(
    bounding_caps: Iterable[str], machine: str | None = None, kernel: tuple[int, int] | None = None
) -> dict[str, Any]:
    """The profile for a container whose bounding set is ``bounding_caps``.

    ``machine`` and ``kernel`` default to the host's.
    """
    machine = machine or platform.machine()
    kernel = kernel or kernel_version()
    arches, arch_syscalls = ARCHES.get(machine, ((), ()))
    syscalls: list[dict[str, Any]] = [_allow(BASE_SYSCALLS)]
    syscalls += [_allow(["personality"], [_arg(0, persona, "SCMP_CMP_EQ")]) for persona in PERSONALITIES]
    if kernel >= PTRACE_SAFE_KERNEL:
        syscalls.append(_allow(["ptrace"]))
    if arch_syscalls:
        syscalls.append(_allow(arch_syscalls))
    caps = list(bounding_caps)
    syscalls += [_allow(CAPABILITY_SYSCALLS[cap]) for cap in caps if cap in CAPABILITY_SYSCALLS]
    if "CAP_SYS_ADMIN" not in caps:
        # s390 passes clone's flags as the second argument.
        flags_index = 1 if machine.startswith("s390") else 0
        syscalls.append(_allow(["clone"], [_arg(flags_index, NAMESPACE_FLAGS, "SCMP_CMP_MASKED_EQ")]))
        syscalls.append({"names": ["clone3"], "action": ERRNO, "errnoRet": errno.ENOSYS})
    return {"defaultAction": ERRNO, "architectures": list(arches), "syscalls": syscalls}


def load_profile(path: str) -> dict[str, Any]:
    """A Localhost profile: the JSON file at ``path`` on the host, as an OCI linux.seccomp object."""
    if not os.path.isabs(path):
        raise errdefs.InvalidArgument(f"seccomp profile path {path!r} is not absolute")
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise errdefs.InvalidArgument(f"cannot load seccomp profile {path!r}: {exc.strerror}") from exc
    try:
        profile = json.loads(text)
    except ValueError as exc:
        raise errdefs.InvalidArgument(f"decoding seccomp profile {path!r} failed: {exc}") from exc
    except RecursionError:
        raise errdefs.InvalidArgument(f"decoding seccomp profile {path!r} failed: nested too deeply") from None
    if not isinstance(profile, dict) or not isinstance(profile.get("syscalls", []), list):
        raise errdefs.InvalidArgument(f"seccomp profile {path!r} is not a JSON object with a syscalls list")
    out = {key: profile[key] for key in PROFILE_KEYS if key in profile}
    if "syscalls" in out:
        out["syscalls"] = [_known_keys(entry, path) for entry in out["syscalls"]]
    return out


def kernel_version() -> tuple[int, int]:
    """The running kernel's major.minor ((0, 0) when the release string is not numeric)."""
    parts = os.uname().release.split(".")
    try:
        return int(parts[0]), int("".join(ch for ch in parts[1] if ch.isdigit()) or 0)
    except (IndexError, ValueError):
        return 0, 0


def _known_keys(entry: object, path: str) -> dict[str, Any]:
    if not isinstance(entry, dict):
        raise errdefs.InvalidArgument(f"seccomp profile {path!r} has a syscall entry that is not an object")
    return {key: entry[key] for key in SYSCALL_KEYS if key in entry}


def _allow(names: Iterable[str], args: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {"names": list(names), "action": ALLOW}
    if args:
        entry["args"] = args
    return entry


def _arg(index: int, value: int, op: str) -> dict[str, Any]:
    return {"index": index, "value": value, "op": op}
