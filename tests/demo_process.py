"""`vpnshop demo` as a real subprocess, for tests that need the product exactly as a user starts it."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

VPNSHOP = shutil.which("vpnshop", path=str(Path(sys.executable).parent)) or "vpnshop"


def clean_env(**extra: str) -> dict[str, str]:
    # Whatever the developer's shell has (DATABASE_URL, REDIS_URL...) must not leak into the demo.
    return {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"), **extra}


def start_demo(workdir: Path, port: int, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [VPNSHOP, "demo", "--port", str(port)],
        cwd=workdir,
        env=clean_env(**env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_healthy(base: str, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"demo exited early:\n{process.stdout.read() if process.stdout else ''}")
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError("demo did not answer /healthz within 60 s")


def stop(process: subprocess.Popen[str]) -> str:
    process.send_signal(signal.SIGINT)
    try:
        output, _ = process.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
    return output
