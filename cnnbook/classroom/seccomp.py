"""A seccomp filter for the grading sandbox: the system calls a notebook never needs, refused.

bubblewrap loads it (``bwrap --seccomp FD``) just before it starts the kernel, so it binds
the kernel and everything the kernel starts. It refuses, with ``EPERM``:

* making namespaces (``unshare``, ``setns``, ``clone`` with a namespace flag) and mounting
  anything: an unprivileged user may otherwise make a user namespace of its own and mount
  tmpfs folders there, beyond the sandbox's size limits;
* the kernel's key store (``add_key``, ``keyctl``, ``request_key``): keys outlive the
  processes of a uid, so two submissions graded one after the other could talk through it;
* ``ptrace``, ``bpf``, ``userfaultfd``, ``io_uring_setup``, loading kernel code: much of the
  kernel's attack surface, none of a notebook's business.

``clone3`` answers ``ENOSYS`` instead (its flags sit in memory a filter cannot read), which
makes the C library fall back to ``clone``, whose flags it can read. Calls in another
architecture's numbering (the 32-bit ABI on x86-64, say) are refused as a whole.

A filter is a small program for the kernel's BPF machine; this module writes it by hand,
eight bytes an instruction, so that it needs no library.
"""

from __future__ import annotations

import errno
import os
import platform
import struct

# struct seccomp_data: int nr; __u32 arch; __u64 instruction_pointer; __u64 args[6]
NR, ARCH, ARG0 = 0, 4, 16
LOAD, JUMP_EQUAL, JUMP_GREATER_EQUAL, JUMP_ANY_BIT, RETURN = 0x20, 0x15, 0x35, 0x45, 0x06
ALLOW, ERRNO = 0x7FFF0000, 0x00050000
X32_SYSCALL_BIT = 0x40000000
NAMESPACE_FLAGS = 0x7E020000  # CLONE_NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET

# (audit architecture, clone, clone3, the refused calls) per machine
SYSCALLS = {
    "x86_64": (0xC000003E, 56, 435, {
        "unshare": 272, "setns": 308, "mount": 165, "umount2": 166, "pivot_root": 155, "chroot": 161,
        "open_tree": 428, "move_mount": 429, "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433,
        "mount_setattr": 442, "add_key": 248, "request_key": 249, "keyctl": 250, "ptrace": 101,
        "bpf": 321, "userfaultfd": 323, "io_uring_setup": 425, "kexec_load": 246, "init_module": 175,
        "finit_module": 313, "delete_module": 176,
    }),
    "aarch64": (0xC00000B7, 220, 435, {
        "unshare": 97, "setns": 268, "mount": 40, "umount2": 39, "pivot_root": 41, "chroot": 51,
        "open_tree": 428, "move_mount": 429, "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433,
        "mount_setattr": 442, "add_key": 217, "request_key": 218, "keyctl": 219, "ptrace": 117,
        "bpf": 280, "userfaultfd": 282, "io_uring_setup": 425, "kexec_load": 104, "init_module": 105,
        "finit_module": 273, "delete_module": 106,
    }),
}  # fmt: skip


def instruction(code: int, k: int, if_true: int = 0, if_false: int = 0) -> bytes:
    """One BPF instruction: an operation, its jumps (instructions to skip) and its constant."""
    return struct.pack("=HBBI", code, if_true, if_false, k)


def filter_program(machine: str | None = None) -> bytes:
    """The filter for ``machine`` (default: this one) as the bytes ``bwrap --seccomp`` reads."""
    machine = machine or platform.machine()
    if machine not in SYSCALLS:
        raise ValueError(f"no seccomp filter for {machine}; known: {', '.join(SYSCALLS)}")
    arch, clone, clone3, refused = SYSCALLS[machine]
    calls = sorted(refused.values())
    # Jumps count the instructions to skip. With n refused calls, the program's last three
    # instructions (allow, ENOSYS, EPERM) stand at n + 8, n + 9 and n + 10.
    n = len(calls)
    body = [instruction(JUMP_EQUAL, nr, if_true=n + 5 - i) for i, nr in enumerate(calls)]
    program = [
        instruction(LOAD, ARCH),
        instruction(JUMP_EQUAL, arch, if_false=n + 8),  # another ABI: refused
        instruction(LOAD, NR),
        instruction(JUMP_GREATER_EQUAL, X32_SYSCALL_BIT, if_true=n + 6),  # x32 numbering: refused
        *body,  # 4 .. n + 3
        instruction(JUMP_EQUAL, clone3, if_true=4),
        instruction(JUMP_EQUAL, clone, if_false=2),
        instruction(LOAD, ARG0),
        instruction(JUMP_ANY_BIT, NAMESPACE_FLAGS, if_true=2),
        instruction(RETURN, ALLOW),
        instruction(RETURN, ERRNO | errno.ENOSYS),
        instruction(RETURN, ERRNO | errno.EPERM),
    ]
    return b"".join(program)


def filter_fd() -> int:
    """A file descriptor that reads the filter (a pipe, inheritable by the sandbox's launcher)."""
    read, write = os.pipe()
    os.write(write, filter_program())
    os.close(write)
    os.set_inheritable(read, True)
    return read
