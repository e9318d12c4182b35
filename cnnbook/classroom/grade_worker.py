"""One submission's run: its notebook executed cell by cell in a kernel inside a sandbox.

``python -m cnnbook.classroom.grade_worker JOB.json`` is started by `cnnbook.classroom.grade`, one process per
submission, outside the sandbox. It starts the student's kernel inside the sandbox
(`cnnbook.classroom.sandbox`), sends it the cells one by one through Jupyter's messaging protocol
(over Unix sockets: the kernel has no network), and records how each cell ended, from the
kernel's replies. Only this process decides and writes results, into a file the kernel
cannot see, atomically. The kernel's own stdout and stderr go nowhere.

When the run ends, however it ends, the sandbox is killed: its first process dies, and
with it every process the submission started. `cnnbook.classroom.grade` starts this process in a
mount namespace of its own (``unshare --mount``), so the small tmpfs that holds the
kernel's sockets (`private_runtime`) exists for this process alone and vanishes with it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import nbformat
import zmq
from jupyter_client.asynchronous.client import AsyncKernelClient
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient
from nbclient.exceptions import DeadKernelError

from cnnbook.classroom.sandbox import SANDBOX_HOME, Sandbox, SandboxLimits
from cnnbook.classroom.seccomp import filter_fd
from cnnbook.files import write_text_atomically

MESSAGE_LIMIT = 4 * 2**20  # bytes per message from the kernel; a larger one cuts the kernel off
QUEUED_MESSAGES = 256  # messages waiting per socket: with MESSAGE_LIMIT, at most 1 GB held
RUNTIME_SIZE = "size=8m,nr_inodes=256"  # the kernel's socket folder: a few sockets, nothing more
SOCKET_WAIT = 120  # seconds for a kernel to make its sockets
# Inside the sandbox the kernel starts in "/", so no file of the submission can stand in for a
# module the kernel imports as it starts; then it moves to the submission's folder, which
# becomes the first place imports look, as in any notebook.
ENTER_HOME = f"import os, sys; os.chdir({str(SANDBOX_HOME)!r}); sys.path[0] = {str(SANDBOX_HOME)!r}"


class OutputLimitExceeded(RuntimeError):
    """The notebook printed more than its output budget."""


class QuietClient(AsyncKernelClient):
    """A kernel client without the heartbeat channel, which would make a new socket (and so a new
    connection, to wherever the path then leads) each time the kernel misses a beat. The
    kernel's liveness is its process's, which the manager watches."""

    def start_channels(self, shell=True, iopub=True, stdin=True, hb=False, control=True):
        super().start_channels(shell=shell, iopub=iopub, stdin=stdin, hb=False, control=control)


class SandboxedKernelManager(AsyncKernelManager):
    """A kernel manager whose kernel command runs inside ``self.sandbox`` (None: unconfined).

    Interrupts go as messages: a signal would reach only the sandbox's outer process. The
    clients' sockets connect once and never again (`careful_sockets`, `QuietClient`): once
    connected to the kernel's sockets (checked to be sockets, before any student code ran), a
    kernel that swaps them for links to other sockets on this machine is cut off instead of
    being followed. A message over `MESSAGE_LIMIT` cuts its channel: the kernel's later output
    is lost, and its cells still run and are graded.
    """

    sandbox: Sandbox | None = None
    kernel_env: dict[str, str] = {}
    seccomp_fd: int = -1

    def format_kernel_cmd(self, extra_arguments=None):
        argv = super().format_kernel_cmd(extra_arguments)
        if self.sandbox is None:
            return argv
        argv = [*argv, f"--IPKernelApp.exec_lines={ENTER_HOME}"]
        self.seccomp_fd = filter_fd()
        return self.sandbox.command(argv, self.kernel_env, self.seccomp_fd, cwd="/")

    async def _async_launch_kernel(self, kernel_cmd, **kw):
        kw["env"] = self.kernel_env  # bwrap too gets only the allow-list, not the grader's variables
        if self.sandbox is not None:  # the connection file, written 0600 by us, is for the kernel's user
            os.chown(self.connection_file, self.sandbox.uid, self.sandbox.uid)
            kw["pass_fds"] = [self.seccomp_fd]  # for bwrap to read the filter from
        try:
            await super()._async_launch_kernel(kernel_cmd, **kw)
        finally:
            if self.sandbox is not None:
                os.close(self.seccomp_fd)
        await self._sockets_made()  # connect once they exist: our sockets never reconnect

    async def _sockets_made(self) -> None:
        """Wait until the kernel has made its five sockets (and they are sockets, not links)."""
        ports = [self.shell_port, self.iopub_port, self.stdin_port, self.control_port, self.hb_port]
        paths = [Path(f"{self.ip}-{port}") for port in ports]
        for _ in range(SOCKET_WAIT * 10):
            if all(path.exists() and stat.S_ISSOCK(path.lstat().st_mode) for path in paths):
                return
            if self.provisioner.process.poll() is not None:
                return  # the kernel died: nbclient says so
            await asyncio.sleep(0.1)

    def client(self, **kwargs):
        kc = super().client(**kwargs)
        careful_sockets(kc.context)
        return kc


def careful_sockets(context: zmq.Context) -> None:
    """Make every socket of ``context`` connect once, never again, and take bounded messages."""
    context.setsockopt(zmq.RECONNECT_IVL, -1)
    context.setsockopt(zmq.MAXMSGSIZE, MESSAGE_LIMIT)
    context.setsockopt(zmq.RCVHWM, QUEUED_MESSAGES)


class GradingClient(NotebookClient):
    """nbclient's executor, counting the bytes of every message from the kernel as it arrives
    (an update of a display counts once per output it rewrites) against ``output_limit``."""

    def __init__(self, nb, output_limit: int, **kwargs):
        super().__init__(nb, **kwargs)
        self.output_limit, self.output_bytes = output_limit, 0

    def process_message(self, msg, cell, cell_index):
        content = msg.get("content", {})
        transient = content.get("transient") or {}
        copies = sum(
            len(outputs) for outputs in self._display_id_map.get(transient.get("display_id"), {}).values()
        )
        self.output_bytes += len(json.dumps(content)) * max(1, copies)
        if self.output_bytes > self.output_limit:
            raise OutputLimitExceeded(f"the notebook printed more than {self.output_limit // 2**20} MB")
        return super().process_message(msg, cell, cell_index)


def private_runtime(runtime: Path, uid: int) -> None:
    """Mount a small tmpfs on ``runtime``, in this worker's own mount namespace (see `main`), and
    give it to the sandbox's user: its kernel can make sockets there and fill nothing else."""
    options = f"{RUNTIME_SIZE},mode=0700"
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "cnnbook-runtime", str(runtime)], check=True)
    os.chown(runtime, uid, uid)


def run_job(job: dict) -> dict:
    """Execute the job's notebook; returns ``{"cells": {index: {...}}, "stopped": why or ""}``."""
    workdir, runtime = Path(job["workdir"]), Path(job["runtime"])
    nb = nbformat.read(job["notebook"], as_version=4)  # outside workdir: hidden tests stay off its disk
    sandbox = None
    if job["sandbox"] is not None:
        spec = job["sandbox"]
        sandbox = Sandbox(
            workdir=workdir,
            runtime=runtime,
            uid=spec["uid"],
            limits=SandboxLimits(**spec["limits"]),
            readable=[Path(p) for p in spec["readable"]],
        )
        private_runtime(runtime, sandbox.uid)
    km = SandboxedKernelManager(
        kernel_name="python3", transport="ipc", ip=str(runtime / "kernel"),
        connection_file=str(runtime / "kernel.json"),
    )  # fmt: skip
    km.client_factory = QuietClient
    km.sandbox, km.kernel_env = sandbox, job["env"]
    km.kernel_spec.interrupt_mode = "message"
    careful_sockets(km.context)  # the manager's own control socket, used to shut the kernel down

    cells: dict[int, dict] = {}
    current = {"index": None}

    def executed(cell, cell_index, execute_reply):
        content = execute_reply["content"]
        cells[cell_index] = {
            "ok": content.get("status") == "ok",
            "ename": str(content.get("ename", ""))[:200],
            "evalue": str(content.get("evalue", ""))[:1000],
        }

    timeout_error = {
        "ename": "Timeout",
        "evalue": f"the cell ran longer than {job['cell_timeout']} s and was interrupted",
        "traceback": [],
    }
    client = GradingClient(
        nb, job["output_limit"], km=km, timeout=job["cell_timeout"], allow_errors=True,
        interrupt_on_timeout=True, error_on_timeout=timeout_error,
        resources={"metadata": {"path": str(workdir)}},
        on_cell_start=lambda cell, cell_index: current.update(index=cell_index),
        on_cell_executed=executed, startup_timeout=120,
    )  # fmt: skip
    stopped = ""
    try:
        # the kernel's own stdout and stderr go nowhere: only the messages it sends count
        run = client.async_execute(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        asyncio.run(asyncio.wait_for(run, job["time_limit"]))
    except TimeoutError:
        stopped = f"the notebook ran past its time limit of {job['time_limit']} s and was stopped"
    except DeadKernelError:
        stopped = (
            f"the kernel died in cell {current['index']} (the notebook crashed it, exited or ran out "
            "of memory)"
        )
    except OutputLimitExceeded as err:
        stopped = f"{err} and was stopped"
    except Exception as err:
        stopped = f"execution failed in cell {current['index']}: {type(err).__name__}: {err}"
    finally:
        end_sandbox(km)
    if job.get("executed"):
        nbformat.write(nb, job["executed"])
    return {"cells": cells, "stopped": stopped}


def end_sandbox(km: AsyncKernelManager) -> None:
    """Kill the sandbox's outer process: its pid namespace, and every process in it, go too."""
    provisioner = getattr(km, "provisioner", None)
    process = getattr(provisioner, "process", None)
    if process is None:
        return
    try:
        os.kill(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        process.wait(timeout=30)
    except (subprocess.TimeoutExpired, ChildProcessError):
        pass


def main(argv: list[str] | None = None) -> int:
    """Run the job file given on the command line and write its result file."""
    parser = argparse.ArgumentParser(prog="python -m cnnbook.classroom.grade_worker", description=__doc__)
    parser.add_argument("job", help="the job file that cnnbook.classroom.grade wrote")
    job = json.loads(Path(parser.parse_args(argv).job).read_text())
    write_text_atomically(Path(job["result"]), json.dumps(run_job(job)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
