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


def _imported_with(modules: list[str]) -> set[str]:
    """Every module (full names) that importing ``modules`` imports."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {', '.join(modules)}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    full = {ln.rsplit("|", 1)[-1].strip() for ln in proc.stderr.splitlines() if "|" in ln}
    assert set(modules) <= full
    return full


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


def test_the_short_commands_import_neither_protobuf_nor_dataclasses() -> None:
    """What `images` and `ps` import talks to containerd with hand-encoded messages
    (protobuf's runtime and the generated classes cost ~66M instructions to import, a sixth
    of the interpreter, click and grpc together), defines its records as NamedTuples (a frozen
    dataclass costs ~5M instructions to define, at every start), and nothing the transfers
    need."""
    modules = [
        "pyctl.cli.images",
        "pyctl.ops.images",
        "pyctl.cli.containers",
        "pyctl.ops.containers",
        "pyctl.config",
    ]
    full = _imported_with(modules)
    unwanted = {"dataclasses", "pyctl.results.transfers", "pyctl._api.services.diff.v1.diff_pb2"}
    assert not full & unwanted, sorted(full & unwanted)
    assert not [m for m in full if m.startswith("google") or m.endswith("_pb2")]


def test_pull_and_push_import_nothing_of_the_hosts_check() -> None:
    """The operations of pull and push leave the `hosts` command's report, lint and probes
    unimported (its report types alone are ~10 ms of frozen dataclasses)."""
    modules = ["pyctl.cli.registry", "pyctl.ops.registry"]
    full = _imported_with(modules)
    unwanted = [
        m
        for m in full
        if m in ("pyctl.results.check", "pyctl.ops.hosts")
        or m.startswith(("pyctl.registry.lint", "pyctl.registry.probes"))
    ]
    assert not unwanted, sorted(unwanted)
