"""Tab completion in real bash, zsh and fish (interactive, in tmux), of image names that hold
``host:port`` and ``:tag`` — bash splits its words at ``:`` — and of global options after
the command."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from integration.conftest import BUSYBOX_NAME, PyctlRunner
from integration.images import Archive
from integration.terminal import Terminal
from integration.testbed import Containerd

NAMES = (
    "harbor.local:8443/library/app:1",
    "harbor.local:8443/library/app:2",
    "harbor.local:8443/team/web:1.0",
)


@pytest.fixture
def shell_env(
    containerd: Containerd, namespace: str, busybox_image: Archive, pyctl: PyctlRunner
) -> dict[str, str]:
    containerd.import_image(busybox_image, namespace=namespace)
    for name in NAMES:
        containerd.ctr("images", "tag", BUSYBOX_NAME, name, namespace=namespace)
    env = pyctl.env(namespace)
    # `pyctl` as the shell finds it: this interpreter's console script
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["TERM"] = "xterm"
    return env


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_tab_completes_names_with_colons(shell: str, shell_env: dict[str, str]) -> None:
    with Terminal(shell, shell_env) as t:
        t.load_completion()
        # one candidate, after host:port
        t.type("pyctl rmi harbor.local:8443/t", tab=True)
        t.wait_for("$ pyctl rmi harbor.local:8443/team/web:1.0")
        t.clear_line()
        # two candidates: their common part, up to the ':' of the tag; then one more digit
        t.type("pyctl rmi harbor.local:8443/library/a", tab=True)
        t.wait_for("$ pyctl rmi harbor.local:8443/library/app:")
        t.type("2", tab=True)
        t.wait_for("$ pyctl rmi harbor.local:8443/library/app:2")
        t.clear_line()
        # right after a ':' (the host's, then the tag's)
        t.type("pyctl inspect harbor.local:", tab=True)
        t.wait_for("$ pyctl inspect harbor.local:8443/")
        t.clear_line()
        t.type("pyctl tag harbor.local:8443/team/web:", tab=True)
        t.wait_for("$ pyctl tag harbor.local:8443/team/web:1.0")
        t.clear_line()
        # names without a colon still complete
        t.type("pyctl rmi busy", tab=True)
        t.wait_for("$ pyctl rmi busybox:latest")
        t.clear_line()
        # a global option after the command
        t.type("pyctl images --insec", tab=True)
        t.wait_for("$ pyctl images --insecure-registry")
