"""pyctl as an unprivileged user runs it, wherever the checkout lies.

A test that runs pyctl as ``nobody`` cannot use the checkout's ``.venv``: a clone under
``/root`` (0700 on Debian) or in a ``mktemp -d`` directory is closed to other users, and so
may be the interpreter the venv was made from (pyenv's under ``/root/.pyenv``).
:func:`install_readable_pyctl` copies pyctl and the distributions it imports into a
world-readable directory and finds an interpreter of the same Python version that the user
can run with its own standard library; :class:`ReadablePyctl` runs it as that user.
No pytest dependency (as testbed.py).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from .testbed import TestbedError, run

NOBODY = 65534
ROOT = Path(__file__).resolve().parent.parent

# what the interpreter reports about itself: version, where its standard library is
_PROBE = "import json, os, sys; print(json.dumps([list(sys.version_info[:2]), os.__file__]))"


def as_user(uid: int, gid: int, argv: Sequence[str]) -> list[str]:
    """``argv`` run as ``uid:gid`` with no supplementary groups."""
    return ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", *argv]


def _probe(python: str, uid: int | None, gid: int) -> list[object] | None:
    argv = [python, "-I", "-c", _PROBE]
    if uid is not None:
        argv = as_user(uid, gid, argv)
    try:
        proc = subprocess.run(
            argv, capture_output=True, text=True, timeout=30, cwd="/", stdin=subprocess.DEVNULL
        )
    except OSError:
        return None
    if proc.returncode != 0:
        return None
    answer: list[object] = json.loads(proc.stdout)
    return answer


def readable_python(uid: int = NOBODY, gid: int = NOBODY) -> str:
    """An interpreter of this Python's major.minor version that ``uid`` can run *with its own
    standard library* (pyenv's Python under a closed ``/root`` still starts as another user,
    but then picks up whatever standard library it finds elsewhere: not good enough).
    Candidates: the interpreter this one's venv was made from, then the system's."""
    major, minor = sys.version_info[:2]
    base = getattr(sys, "_base_executable", sys.executable)
    candidates = [os.path.realpath(base)]
    for d in ("/usr/bin", "/usr/local/bin", "/bin"):
        candidates.append(os.path.realpath(f"{d}/python{major}.{minor}"))
    tried: list[str] = []
    for python in dict.fromkeys(candidates):
        if not os.path.isfile(python):
            continue
        tried.append(python)
        own = _probe(python, None, gid)
        if own is None or own[0] != [major, minor]:
            continue
        if _probe(python, uid, gid) == own:
            return python
    raise TestbedError(
        f"no Python {major}.{minor} that uid {uid} can run with its own standard library "
        f"(tried: {', '.join(tried) or 'none'}): install Debian's python{major}.{minor} or run "
        f"the tests with an interpreter outside a private directory"
    )


def _runtime_distributions(name: str) -> list[metadata.Distribution]:
    """``name``'s installed distribution and, recursively, those its requirements name
    (extras and markers that do not apply here are left out)."""
    found: dict[str, metadata.Distribution] = {}
    todo = [name]
    while todo:
        key = canonicalize_name(todo.pop())
        if key in found:
            continue
        dist = metadata.distribution(key)
        found[key] = dist
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return list(found.values())


def _copy_distribution(dist: metadata.Distribution, site: Path) -> None:
    for rel in dist.files or []:
        if rel.parts[0] == ".." or "__pycache__" in rel.parts:
            continue  # console scripts, bytecode
        src = Path(str(dist.locate_file(rel)))
        if src.is_file():
            dest = site / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest)


@dataclass(frozen=True)
class ReadablePyctl:
    """pyctl in a world-readable ``directory``: ``site`` for PYTHONPATH, ``python`` to run
    it. :meth:`run` runs it as ``uid``; :meth:`remove` deletes the directory."""

    directory: Path
    site: Path
    python: str
    uid: int = NOBODY
    gid: int = NOBODY

    def argv(self, *args: str) -> list[str]:
        return as_user(self.uid, self.gid, [self.python, "-s", "-m", "pyctl", *args])

    def run(
        self, *args: str, env: Mapping[str, str], timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """``pyctl ARGS`` as the user, in ``/``, with ``env`` (plus PYTHONPATH) only."""
        return subprocess.run(
            self.argv(*args),
            capture_output=True,
            text=True,
            env={**env, "PYTHONPATH": str(self.site)},
            cwd="/",
            stdin=subprocess.DEVNULL,
            timeout=timeout,
        )

    def remove(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


def install_readable_pyctl(uid: int = NOBODY, gid: int = NOBODY) -> ReadablePyctl:
    """Copy this checkout's pyctl and the distributions it needs at run time (as installed
    in the running environment: no network) into a fresh 0755 directory under the system
    temp dir, byte-compile them, and check that ``uid`` can import pyctl from there."""
    python = readable_python(uid, gid)
    directory = Path(tempfile.mkdtemp(prefix="pyctl-readable-"))
    try:
        directory.chmod(0o755)
        site = directory / "site"
        for dist in _runtime_distributions("pyctl"):
            if canonicalize_name(dist.metadata["Name"]) != "pyctl":
                _copy_distribution(dist, site)
        # pyctl itself from the checkout (the venv's install of it is an editable finder)
        shutil.copytree(
            ROOT / "pyctl", site / "pyctl", ignore=shutil.ignore_patterns("__pycache__")
        )
        run([python, "-m", "compileall", "-q", str(site)], timeout=300)
        for path in (directory, *directory.rglob("*")):
            path.chmod(0o755 if path.is_dir() else path.stat().st_mode | 0o444)
        pyctl = ReadablePyctl(directory, site, python, uid, gid)
        check = pyctl.run("--version", env={"PATH": os.defpath})
        if check.returncode != 0 or not check.stdout.startswith("pyctl version "):
            raise TestbedError(
                f"uid {uid} cannot run pyctl from {site} with {python}: {check.stderr.strip()}"
            )
        return pyctl
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise
