"""A JupyterLab server for browser and configuration tests: started on a free port with a
token, waited for, and always shut down with everything it started."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def jupyterlab(command, cwd: Path, env: dict, log_path: Path):
    """Run ``command(port, token)`` (an argv list, or a shell line) and yield (base url, token)
    once the server answers; on leaving, shut it down and kill what is left of its process group."""
    port, token = free_port(), secrets.token_hex(16)
    argv = command(port, token)
    log = open(log_path, "w")
    process = subprocess.Popen(
        ["bash", "-c", argv] if isinstance(argv, str) else argv,
        cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2)
                break
            except OSError:
                assert process.poll() is None, log_path.read_text()[-3000:]
                assert time.monotonic() < deadline, "JupyterLab did not start in 90 s"
                time.sleep(0.5)
        yield base, token
    finally:
        try:  # a clean shutdown first (it also stops the kernels), then whatever is left
            request = urllib.request.Request(f"{base}/api/shutdown?token={token}", method="POST")
            urllib.request.urlopen(request, timeout=5)
            process.wait(timeout=20)
        except Exception:
            pass
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()
        log.close()
