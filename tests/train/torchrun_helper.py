"""The distributed tests' launcher: a script or module under torchrun (2 ranks, gloo on the CPU), or alone."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

ENV = {"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(*args: str, nproc: int = 2, timeout: int = 300) -> subprocess.CompletedProcess:
    """`python -m torch.distributed.run --nproc_per_node N <args>` on a free port; asserts that it succeeded."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--master_port",
           str(free_port()), *args]
    proc = subprocess.run(cmd, env={**os.environ, **ENV}, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def alone(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    """`python <args>` in one process with the same environment; asserts that it succeeded."""
    proc = subprocess.run([sys.executable, *args], env={**os.environ, **ENV}, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc
