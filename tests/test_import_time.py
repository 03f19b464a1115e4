"""What start-up imports: ``pyctl --help`` and the help of the commands that talk to
registries need neither gRPC nor urllib3; ``import pyctl`` alone pulls in neither gRPC nor
click (scripts that use the engine pay for what they use)."""

from __future__ import annotations

import subprocess
import sys

import pytest


def _imported(*args: str) -> list[str]:
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", *args],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    modules = [ln.rsplit("|", 1)[-1].strip() for ln in proc.stderr.splitlines() if "|" in ln]
    assert "encodings" in modules  # the importtime output is there
    return [m.split(".")[0] for m in modules]


@pytest.mark.parametrize(
    "args",
    [["--help"], ["pull", "--help"], ["push", "--help"], ["login", "--help"], ["hosts", "--help"]],
)
def test_help_imports_neither_grpc_nor_urllib3(args: list[str]) -> None:
    top = set(_imported("-m", "pyctl", *args))
    assert "click" in top
    assert not top & {"grpc", "google", "urllib3", "requests", "rich"}, sorted(top)


def test_import_pyctl_imports_neither_grpc_nor_click() -> None:
    top = set(_imported("-c", "import pyctl"))
    assert "pyctl" in top
    assert not top & {"grpc", "google", "click", "urllib3"}, sorted(top)
