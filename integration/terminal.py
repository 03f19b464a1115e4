"""A real interactive shell in a private tmux server, for what only a terminal shows: Tab
completion as bash, zsh and fish do it, prompts.

    with Terminal("bash", env) as t:
        t.run("source <(pyctl completion bash)")
        t.type("pyctl rmi harbor.local:8443/t", tab=True)
        t.wait_for("pyctl rmi harbor.local:8443/team/web:1.0 ")
"""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from collections.abc import Mapping
from typing import Self

from integration.testbed import Service

SHELLS = {
    # shell -> (command line, how to load pyctl's completion)
    "bash": (["bash", "--norc", "--noprofile", "-i"], "source <(pyctl completion bash)"),
    "zsh": (
        ["zsh", "-f", "-i"],
        "autoload -U compinit && compinit -u && source <(pyctl completion zsh)",
    ),
    "fish": (["fish", "--no-config", "-i"], "pyctl completion fish | source"),
}


class Terminal(Service):
    """``shell`` in a tmux server of its own (``with``: started, then the server killed)."""

    def __init__(self, shell: str, env: Mapping[str, str], width: int = 220) -> None:
        if shutil.which("tmux") is None or shutil.which(shell) is None:
            raise AssertionError(
                f"tmux and {shell} are needed (scripts/dev.sh setup installs them)"
            )
        self.shell = shell
        self.socket = f"pyctl-test-{uuid.uuid4().hex[:8]}"
        self.env = dict(env)
        self.env.pop("TMUX", None)
        self.env["PS1"] = "$ "
        self.width = width
        self._started = False

    def tmux(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["tmux", "-L", self.socket, "-f", "/dev/null", *args],
            capture_output=True,
            text=True,
            env=self.env,
            check=check,
            timeout=30,
        )

    @property
    def running(self) -> bool:
        return self._started

    def start(self) -> Self:
        argv, _ = SHELLS[self.shell]
        self._started = True
        self.tmux("new-session", "-d", "-s", "t", "-x", str(self.width), "-y", "50", "--", *argv)
        if self.shell == "fish":
            self.run("set -g fish_greeting ''; function fish_prompt; echo -n '$ '; end")
        elif self.shell == "zsh":
            self.run("PROMPT='$ '")
        self.run("clear")
        return self

    def _teardown(self) -> None:
        self.tmux("kill-server", check=False)

    def load_completion(self) -> None:
        self.run(SHELLS[self.shell][1])
        self.run("clear")

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", "t").stdout

    def type(self, text: str, *, tab: bool = False, enter: bool = False) -> None:
        self.tmux("send-keys", "-t", "t", "-l", text)
        if tab:
            self.tmux("send-keys", "-t", "t", "Tab")
        if enter:
            self.tmux("send-keys", "-t", "t", "Enter")

    def run(self, command: str, timeout: float = 20.0) -> None:
        """Type ``command`` and Enter; returns once the shell prompts again."""
        marker = f"done-{uuid.uuid4().hex[:8]}"
        self.type(f"{command}; echo {marker}", enter=True)
        deadline = time.monotonic() + timeout
        while marker not in [ln.strip() for ln in self.screen().splitlines()]:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{command!r} did not finish in {self.shell}:\n{self.screen()}"
                )
            time.sleep(0.1)

    def clear_line(self) -> None:
        self.tmux("send-keys", "-t", "t", "C-u")  # bash, zsh and fish: kill to line start

    def wait_for(self, text: str, timeout: float = 20.0) -> str:
        """The screen once it holds ``text`` (an AssertionError with the screen if it does not
        within ``timeout``)."""
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            if text in screen:
                return screen
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} not on the {self.shell} screen:\n{screen}")
            time.sleep(0.1)

    def line(self) -> str:
        """The last non-empty line on the screen (where the cursor is, after typing)."""
        lines = [ln for ln in self.screen().splitlines() if ln.strip()]
        return lines[-1] if lines else ""
