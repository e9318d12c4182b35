"""A sandbox for untrusted code: a command (a student's Jupyter kernel) under bubblewrap.

`cnnbook.classroom.grade` runs every submission's kernel through `Sandbox.command`. The sandbox is
made by `bubblewrap <https://github.com/containers/bubblewrap>`_ (``bwrap``, the tool Flatpak
uses), not by hand, and stacks five independent walls:

* **Namespaces.** Its own process, network, IPC and hostname namespaces: the kernel sees
  only its own processes (not the grader, not other submissions), has no network at all
  (its loopback is its own), and when the sandbox's first process dies the kernel kills
  every process inside, whatever it did to escape (``setsid``, double forks, ignored
  signals).
* **A file system built from an allow-list.** An empty root holding, read-only, the system
  (``/usr``, ``/etc``), the Python installation and environment, the ``cnnbook`` package
  and the datasets; writable, a private ``/home/student`` holding the submission's files
  (each read-only), the kernel's socket folder, ``/tmp`` and ``/dev/shm``, the private
  folders each of a fixed size, so that no submission fills a disk. Nothing else exists
  inside: no instructor notebook, no other submission, no report folder, no home folder.
* **An unprivileged user.** ``bwrap`` starts as root, builds the mounts, and then
  ``setpriv`` turns the kernel into a user id that no account uses (one per grading slot),
  with every capability dropped and ``no_new_privs`` set. That user cannot remount
  anything, write a file it does not own, read a file that is not world-readable, or
  signal any process outside.
* **A seccomp filter** (`cnnbook.classroom.seccomp`): no new namespaces or mounts, no key store, no
  ptrace, bpf or io_uring.
* **Resource limits** (``prlimit``): memory (``RLIMIT_DATA``: importing torch maps about
  3 GB of address space, so ``RLIMIT_AS`` cannot cap real use), processes and threads,
  CPU seconds, file size, no core dumps; the tmpfs folders have a size.

The environment inside is built from an allow-list too (`Sandbox.command`'s ``env``).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from cnnbook.classroom.seccomp import filter_fd

SANDBOX_HOME = Path("/home/student")  # where the working copy appears inside
FIRST_SANDBOX_UID = 2_000_000_000  # far above every account's uid; sandboxes use this and the next ones
SANDBOX_UIDS = 4096  # how many may run at once on one machine
UID_CLAIMS = Path("/run/cnnbook-sandbox-uids")  # one fixed place for every grader on the machine
TOOLS = ("bwrap", "setpriv", "prlimit", "unshare", "mount")
ACCEPT_RISK_FLAG = "--unsafe-no-sandbox"


@contextmanager
def sandbox_uid():
    """An unused uid for one sandbox, held until the block ends, so that no two sandboxes on this
    machine (from one grader or several) ever share a uid, and with it a process limit or a
    `Sandbox.kill_leftovers`. The claim is an flock, which the kernel drops if the grader dies."""
    UID_CLAIMS.mkdir(mode=0o700, exist_ok=True)
    if UID_CLAIMS.stat().st_uid != os.geteuid() or UID_CLAIMS.is_symlink():
        raise SandboxUnavailable(f"{UID_CLAIMS} belongs to someone else: remove it and grade again")
    for uid in range(FIRST_SANDBOX_UID, FIRST_SANDBOX_UID + SANDBOX_UIDS):
        with open(UID_CLAIMS / str(uid), "w") as claim:
            try:
                fcntl.flock(claim, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue
            yield uid
            return
    raise SandboxUnavailable(f"all {SANDBOX_UIDS} sandbox uids are in use")


class SandboxUnavailable(RuntimeError):
    """No sandbox can be made on this machine; the message says why and what to do."""


@dataclass(frozen=True)
class SandboxLimits:
    """What one submission may use. Memory and file sizes in bytes."""

    memory: int = 3 * 2**30  # RLIMIT_DATA: heap and anonymous mappings (the chapters need ~1.5 GB)
    processes: int = 512  # RLIMIT_NPROC for the sandbox's uid; threads count (torch starts several)
    cpu_seconds: int = 3600  # RLIMIT_CPU, per process
    file_size: int = 2**30  # RLIMIT_FSIZE: the largest file it may write
    scratch: int = 512 * 2**20  # size of each of /tmp and /dev/shm inside
    home: int = 2**30  # size of /home/student, where the notebook runs


@dataclass
class Sandbox:
    """One submission's sandbox: the files of ``workdir`` appear read-only in a private, writable
    ``/home/student``; ``runtime`` (the kernel's connection file and sockets) is writable at its
    own path; ``readable`` folders (datasets) are read-only at theirs; it all runs as ``uid``."""

    workdir: Path
    runtime: Path
    uid: int = FIRST_SANDBOX_UID
    limits: SandboxLimits = SandboxLimits()
    readable: list[Path] = field(default_factory=list)

    def kill_leftovers(self) -> None:
        """SIGKILL every process still running as the sandbox's user (there should be none:
        killing the sandbox ends its pid namespace; this is the second lock on the door)."""
        for _ in range(10):
            pids = processes_of(self.uid)
            if not pids:
                return
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.1)

    def command(
        self, argv: list[str], env: dict[str, str], seccomp_fd: int, cwd: str = str(SANDBOX_HOME)
    ) -> list[str]:
        """``argv`` wrapped to run inside the sandbox, in ``cwd``, with exactly the variables ``env``,
        under the seccomp filter that ``seccomp_fd`` reads (`cnnbook.classroom.seccomp.filter_fd`)."""
        args = Mounts()
        args.add("--proc", "/proc", "--dev", "/dev")
        args.scratch(Path("/tmp"), self.limits.scratch)  # first: what follows may live under /tmp
        args.scratch(Path("/dev/shm"), self.limits.scratch)
        args.read_only(Path("/usr"))
        args.read_only(Path("/etc"))
        for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):  # /bin -> usr/bin, or a folder
            path = Path("/") / name
            if path.is_symlink():
                args.add("--symlink", os.readlink(path), str(path))
            elif path.is_dir():
                args.read_only(path)
        for path in python_folders():
            args.read_only(path)
        for path in self.readable:
            args.read_only(path)
        args.writable(self.runtime)
        args.scratch(SANDBOX_HOME, self.limits.home)
        for path in sorted(self.workdir.iterdir()):
            if path.is_file() and not path.is_symlink():
                args.read_only(path, SANDBOX_HOME / path.name)
        args.add("--chdir", cwd, "--seccomp", str(seccomp_fd), "--clearenv")
        for key, value in env.items():
            args.add("--setenv", key, value)
        limits = self.limits
        return [
            "bwrap",
            "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
            "--hostname", "sandbox", "--die-with-parent", "--new-session",
            # bwrap keeps only what setpriv needs to become the sandbox's user and empty its bounding set
            "--cap-drop", "ALL",
            "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID", "--cap-add", "CAP_SETPCAP",
            *args.args,
            "setpriv", f"--reuid={self.uid}", f"--regid={self.uid}", "--clear-groups",
            "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs",
            "prlimit", f"--data={limits.memory}", f"--nproc={limits.processes}",
            f"--cpu={limits.cpu_seconds}", f"--fsize={limits.file_size}", "--core=0", "--",
            *argv,
        ]  # fmt: skip


class Mounts:
    """bwrap's mount arguments, creating each mount point's parents world-readable (bwrap's
    own parents would be 0700 and so closed to the sandbox's user)."""

    def __init__(self):
        self.args: list[str] = []
        self.made = {Path("/"), Path("/proc"), Path("/dev")}

    def add(self, *args: str) -> None:
        """Append raw bwrap arguments."""
        self.args += args

    def _parents(self, path: Path) -> None:
        for parent in reversed(path.parents):
            if parent not in self.made:
                self.add("--perms", "0755", "--dir", str(parent))
                self.made.add(parent)
        self.made.add(path)

    def read_only(self, source: Path, target: Path | None = None) -> None:
        """Bind ``source`` read-only at ``target`` (by default the same place)."""
        target = target or source
        self._parents(target)
        self.add("--ro-bind", str(source), str(target))

    def writable(self, path: Path) -> None:
        """Bind ``path`` writable at the same place."""
        self._parents(path)
        self.add("--bind", str(path), str(path))

    def scratch(self, path: Path, size: int) -> None:
        """A private, world-writable tmpfs of ``size`` bytes at ``path``."""
        self._parents(path)
        self.add("--perms", "1777", "--size", str(size), "--tmpfs", str(path))


def processes_of(uid: int) -> list[int]:
    """The pids of the processes whose real user is ``uid``."""
    pids = [int(name) for name in os.listdir("/proc") if name.isdigit()]
    return [pid for pid in pids if _real_uid(pid) == uid]


def _real_uid(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("Uid:"):
                    return int(line.split()[1])
    except OSError:  # the process ended meanwhile
        return None
    return None


def python_folders() -> list[Path]:
    """What the kernel needs to run this Python: the installation, the environment and the
    ``cnnbook`` package (an editable install lives outside the environment; its repository,
    with the instructor's chapters, stays outside the sandbox)."""
    package = Path(__file__).resolve().parent.parent  # cnnbook/, not only its classroom wing
    folders = [Path(sys.base_prefix).resolve(), Path(sys.prefix).resolve(), package]
    unique = []
    for folder in folders:
        if not any(folder == u or u in folder.parents for u in unique):
            unique.append(folder)
    return unique


def sandbox_problem() -> str | None:
    """None when sandboxes can be made here, else why not, in a sentence that says what to do."""
    if sys.platform != "linux":
        return f"sandboxes need Linux namespaces, and this is {sys.platform}"
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        return (
            f"{', '.join(missing)} not found: install Debian's bubblewrap and util-linux "
            "(apt-get install bubblewrap util-linux)"
        )
    if os.geteuid() != 0:
        return (
            "making a sandbox needs root (bwrap builds the mounts as root, then drops to an unused "
            "uid): grade as root in a container or VM"
        )
    probe = Path(tempfile.mkdtemp(prefix="cnnbook-sandbox-probe-"))
    try:
        box, seccomp_fd = Sandbox(workdir=probe, runtime=probe), filter_fd()
        command = box.command(["true"], {"PATH": "/usr/bin"}, seccomp_fd)
        result = subprocess.run(command, capture_output=True, text=True, timeout=60, pass_fds=[seccomp_fd])
        os.close(seccomp_fd)
    finally:
        shutil.rmtree(probe, ignore_errors=True)
    if result.returncode != 0:
        return (
            f"bwrap could not make a sandbox here ({result.stderr.strip() or result.returncode}); "
            "some containers forbid new namespaces (Docker: run with --privileged or a seccomp "
            "profile that allows unshare)"
        )
    return None


def require_sandbox() -> None:
    """Raise `SandboxUnavailable` unless sandboxes can be made here."""
    problem = sandbox_problem()
    if problem:
        raise SandboxUnavailable(
            f"cannot grade untrusted notebooks safely: {problem}. To grade without a sandbox anyway "
            f"(only for submissions you trust), pass {ACCEPT_RISK_FLAG}."
        )
