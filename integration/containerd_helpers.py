"""Helpers for tests that hand configuration files to the test bed's own containerd build
(``PYCTL_TEST_CONTAINERD_BIN``, else Debian's: CI runs the suite against each release): which
binary it is, ``containerd config dump`` of a file, and a pull through containerd's CRI."""

from __future__ import annotations

import os
import subprocess
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from pyctl.registry.hosts.containerd_config import Rules


@dataclass(frozen=True)
class Binary:
    """A containerd binary: ``label`` (which release of the test matrix), ``path``, ``version``."""

    label: str
    path: str
    version: tuple[int, int, int]

    @property
    def rules(self) -> Rules:
        return Rules.CONTAINERD_1 if self.version[0] == 1 else Rules.CONTAINERD_2

    @property
    def relative_globs_fixed(self) -> bool:
        """containerd 1.6.29 / 1.7.16 / 2.0 glob relative imports against the importing file's
        directory; older ones against their working directory (containerd PR #9834)."""
        v = self.version
        return v >= (1, 7, 16) or (1, 6, 29) <= v < (1, 7, 0)


def dump(binary: Binary, main: Path, cwd: Path) -> tuple[int, dict[str, Any], str]:
    """``containerd --config MAIN config dump`` run in ``cwd``: (exit status, the CRI plugin's
    registry section as containerd decoded it, stderr). Reads files, writes and binds nothing."""
    proc = subprocess.run(
        [binary.path, "--config", str(main), "config", "dump"],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=60,
        env={**os.environ, "CONTAINERD_SUPPRESS_DEPRECATION_WARNINGS": "1"},
    )
    if proc.returncode != 0:
        return proc.returncode, {}, proc.stderr
    plugins = tomllib.loads(proc.stdout)["plugins"]
    plugin = (
        "io.containerd.grpc.v1.cri" if binary.version[0] == 1 else "io.containerd.cri.v1.images"
    )
    return 0, plugins[plugin]["registry"], proc.stderr


def cri_pull(address: str, image: str) -> str:
    """CRI ``runtime.v1.ImageService/PullImage`` (what the kubelet calls); returns image_ref.

    PullImageRequest{image: ImageSpec{image: IMAGE}} encoded by hand: field 1, length-delimited."""

    def field1(payload: bytes) -> bytes:
        n, length = len(payload), b""
        while True:
            byte, n = n & 0x7F, n >> 7
            length += bytes([byte | (0x80 if n else 0)])
            if not n:
                return b"\x0a" + length + payload

    with grpc.insecure_channel(f"unix://{address}") as channel:
        call = channel.unary_unary("/runtime.v1.ImageService/PullImage")
        response: bytes = call(field1(field1(image.encode())), timeout=120)
    assert response[:1] == b"\x0a", response
    return response[2 : 2 + response[1]].decode()
