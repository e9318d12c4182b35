"""The grading sandbox's seccomp filter (`cnnbook.classroom.seccomp`), run here by a small BPF interpreter:
what it answers for each system call, on each machine it knows. (`tests/test_grade.py` checks
the same filter inside a real sandbox.)"""

import errno
import struct

import pytest

from cnnbook.classroom.seccomp import ALLOW, ERRNO, SYSCALLS, filter_program

CLONE_NEWUSER, CLONE_THREAD = 0x10000000, 0x00010000


def run(program: bytes, nr: int, arch: int, arg0: int = 0) -> int:
    """What the kernel's BPF machine returns for one call: the loads, jumps and returns the filter uses."""
    data = struct.pack("=iIQ6Q", nr, arch, 0, arg0, 0, 0, 0, 0, 0)
    code = [struct.unpack("=HBBI", program[i : i + 8]) for i in range(0, len(program), 8)]
    accumulator, pc = 0, 0
    for _ in range(len(code)):
        op, if_true, if_false, k = code[pc]
        if op == 0x20:  # load a 32-bit word of seccomp_data
            accumulator = struct.unpack_from("=I", data, k)[0]
            pc += 1
        elif op == 0x06:
            return k
        else:
            taken = {0x15: accumulator == k, 0x35: accumulator >= k, 0x45: bool(accumulator & k)}[op]
            pc += 1 + (if_true if taken else if_false)
    raise AssertionError("the filter ran off its end")


@pytest.mark.parametrize("machine", sorted(SYSCALLS))
def test_the_filter_refuses_what_a_notebook_never_needs(machine):
    arch, clone, clone3, refused = SYSCALLS[machine]
    program = filter_program(machine)
    deny, missing = ERRNO | errno.EPERM, ERRNO | errno.ENOSYS
    for name, nr in refused.items():
        assert run(program, nr, arch) == deny, name
    assert run(program, clone, arch, CLONE_NEWUSER) == deny, "clone into a new user namespace"
    assert run(program, clone, arch, CLONE_THREAD) == ALLOW, "threads and forks"
    assert run(program, clone3, arch) == missing, "clone3, so that the C library falls back to clone"
    for ordinary in (0, 1, 3, 9, 60, 231):  # read/write/close/mmap/exit... whatever they are here
        if ordinary not in refused.values() and ordinary not in (clone, clone3):
            assert run(program, ordinary, arch) == ALLOW, ordinary
    assert run(program, 0, 0x40000003) == deny, "another architecture's numbering (i386)"
    assert run(program, 0x40000000 | 1, arch) == deny, "the x32 numbering"


def test_an_unknown_machine_is_named():
    with pytest.raises(ValueError, match="no seccomp filter for riscv64; known: x86_64, aarch64"):
        filter_program("riscv64")
