"""One submission's run: its notebook executed cell by cell in a kernel inside a sandbox.

``python -m cnnbook.grade_worker JOB.json`` is started by `cnnbook.grade`, one process per
submission, outside the sandbox. It starts the student's kernel inside the sandbox
(`cnnbook.sandbox`), sends it the cells one by one through Jupyter's messaging protocol
(over Unix sockets: the kernel has no network), and records how each cell ended, from the
kernel's replies. Only this process decides and writes results, into a file the kernel
cannot see, atomically. The kernel's own stdout and stderr go nowhere.

When the run ends, however it ends, the sandbox is killed: its first process dies, and
with it every process the submission started.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import nbformat
import zmq
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient
from nbclient.exceptions import DeadKernelError

from cnnbook.grade_report import write_atomically
from cnnbook.sandbox import Sandbox, SandboxLimits

MESSAGE_LIMIT = 32 * 2**20  # bytes per message from the kernel; a larger one cuts the kernel off


class OutputLimitExceeded(RuntimeError):
    """The notebook printed more than its output budget."""


class SandboxedKernelManager(AsyncKernelManager):
    """A kernel manager whose kernel command runs inside ``self.sandbox`` (None: unconfined).

    Interrupts go as messages: a signal would reach only the sandbox's outer process.
    """

    sandbox: Sandbox | None = None
    kernel_env: dict[str, str] = {}

    def format_kernel_cmd(self, extra_arguments=None):
        argv = super().format_kernel_cmd(extra_arguments)
        return self.sandbox.command(argv, self.kernel_env) if self.sandbox else argv

    async def _async_launch_kernel(self, kernel_cmd, **kw):
        kw["env"] = self.kernel_env  # bwrap too gets only the allow-list, not the grader's variables
        if self.sandbox is not None:  # the connection file, written 0600 by us, is for the kernel's user
            os.chown(self.connection_file, self.sandbox.uid, self.sandbox.uid)
        return await super()._async_launch_kernel(kernel_cmd, **kw)


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
    km = SandboxedKernelManager(
        kernel_name="python3", transport="ipc", ip=str(runtime / "kernel"),
        connection_file=str(runtime / "kernel.json"),
    )  # fmt: skip
    km.sandbox, km.kernel_env = sandbox, job["env"]
    km.kernel_spec.interrupt_mode = "message"
    km.context.setsockopt(zmq.MAXMSGSIZE, MESSAGE_LIMIT)

    cells: dict[int, dict] = {}
    current = {"index": None, "output_bytes": 0}

    def executed(cell, cell_index, execute_reply):
        content = execute_reply["content"]
        cells[cell_index] = {
            "ok": content.get("status") == "ok",
            "ename": str(content.get("ename", ""))[:200],
            "evalue": str(content.get("evalue", ""))[:1000],
        }
        current["output_bytes"] += len(json.dumps(cell.get("outputs", [])))
        if current["output_bytes"] > job["output_limit"]:
            raise OutputLimitExceeded(f"the notebook printed more than {job['output_limit'] // 2**20} MB")

    timeout_error = {
        "ename": "Timeout",
        "evalue": f"the cell ran longer than {job['cell_timeout']} s and was interrupted",
        "traceback": [],
    }
    client = NotebookClient(
        nb, km=km, timeout=job["cell_timeout"], allow_errors=True, interrupt_on_timeout=True,
        error_on_timeout=timeout_error, resources={"metadata": {"path": str(workdir)}},
        on_cell_start=lambda cell, cell_index: current.update(index=cell_index),
        on_cell_executed=executed, startup_timeout=120,
    )  # fmt: skip
    stopped = ""
    try:
        asyncio.run(asyncio.wait_for(client.async_execute(), job["time_limit"]))
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
    parser = argparse.ArgumentParser(prog="python -m cnnbook.grade_worker", description=__doc__)
    parser.add_argument("job", help="the job file that cnnbook.grade wrote")
    job = json.loads(Path(parser.parse_args(argv).job).read_text())
    write_atomically(Path(job["result"]), json.dumps(run_job(job)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
