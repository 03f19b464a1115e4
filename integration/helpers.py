"""Assertions shared by the CLI integration tests: what a user sees, and what ctr sees."""

from __future__ import annotations

import json
import re
import subprocess
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from integration.testbed import Containerd

ERROR_PREFIX = "pyctl: error: "


def assert_ok(proc: subprocess.CompletedProcess[str]) -> str:
    """Exit 0, nothing on stderr; returns stdout."""
    assert proc.returncode == 0, (
        f"exit {proc.returncode}\n--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}"
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr == "", proc.stderr
    return proc.stdout


def error_lines(proc: subprocess.CompletedProcess[str]) -> list[str]:
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stdout, proc.stdout
    return proc.stderr.splitlines()


def assert_error(
    proc: subprocess.CompletedProcess[str],
    *fragments: str,
    code: int = 1,
    stdout: str | None = "",
) -> str:
    """Exit ``code``, exactly one stderr line ``pyctl: error: …`` holding every fragment;
    ``stdout`` (if not None) is the exact expected stdout. Returns the message."""
    assert proc.returncode == code, (
        f"exit {proc.returncode} (wanted {code})\n--- stdout ---\n{proc.stdout}\n"
        f"--- stderr ---\n{proc.stderr}"
    )
    lines = error_lines(proc)
    assert len(lines) == 1, f"want one stderr line, got:\n{proc.stderr}"
    (line,) = lines
    assert line.startswith(ERROR_PREFIX), line
    for fragment in fragments:
        assert fragment in line, f"{fragment!r} not in {line!r}"
    if stdout is not None:
        assert proc.stdout == stdout, proc.stdout
    return line[len(ERROR_PREFIX) :]


# --- tables -------------------------------------------------------------------------------------

_HEADER_CELL = re.compile(r"\S+(?: \S+)*")  # header cells are separated by 2+ spaces


@dataclass(frozen=True)
class Table:
    header: list[str]
    rows: list[dict[str, str]]

    def column(self, name: str) -> list[str]:
        return [r[name] for r in self.rows]


def parse_table(text: str) -> Table:
    """Parse tabwriter output: column starts come from the header line."""
    lines = text.splitlines()
    assert lines, "no output (a table always has a header)"
    header_line = lines[0]
    spans = [(m.start(), m.group()) for m in _HEADER_CELL.finditer(header_line)]
    assert re.fullmatch(r"\S+(?: \S+)*(?: {2,}\S+(?: \S+)*)*", header_line), header_line
    names = [name for _, name in spans]
    rows = []
    for line in lines[1:]:
        cells = {}
        for i, (start, name) in enumerate(spans):
            end = spans[i + 1][0] if i + 1 < len(spans) else None
            if i + 1 < len(spans):
                # a cell never runs into the next column's start
                assert line[start:end].endswith(" ") or len(line) <= start, (line, name)
            cells[name] = line[start:end].strip()
        rows.append(cells)
    return Table(names, rows)


def header_re(*names: str) -> str:
    """Regex for a header line with exactly these cells separated by runs (≥2) of spaces."""
    return r"^" + r" {2,}".join(re.escape(n) for n in names) + r"$"


def completion_env(words: str, shell: str = "bash") -> dict[str, str]:
    """What pyctl's bash/zsh completion scripts pass: the words so far and the index of the
    current one."""
    cword = len(words.split()) - (0 if words.endswith(" ") else 1)
    return {"_PYCTL_COMPLETE": f"{shell}_complete", "COMP_WORDS": words, "COMP_CWORD": str(cword)}


def json_lines(text: str) -> list[dict[str, Any]]:
    out = []
    for line in text.splitlines():
        obj = json.loads(line)
        assert isinstance(obj, dict), line
        out.append(obj)
    return out


# --- ctr cross-checks ---------------------------------------------------------------------------


def ctr_image_digests(containerd: Containerd, namespace: str) -> dict[str, str]:
    """``ctr images ls``: name -> target digest (the DIGEST column)."""
    out: dict[str, str] = {}
    for line in containerd.lines("images", "ls", namespace=namespace)[1:]:
        fields = line.split()
        digest = next(f for f in fields[1:] if f.startswith("sha256:") and len(f) == 71)
        out[fields[0]] = digest
    return out


def ctr_task_status(containerd: Containerd, namespace: str) -> dict[str, str]:
    """``ctr tasks ls``: container id -> STATUS."""
    out = {}
    for line in containerd.lines("tasks", "ls", namespace=namespace)[1:]:
        fields = line.split()
        out[fields[0]] = fields[-1]
    return out


def wait_until(what: str, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    delay = 0.02
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not true after {timeout}s")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.2)


def kill_and_wait(containerd: Containerd, namespace: str, cid: str) -> None:
    """SIGKILL the task and wait until ctr reports it STOPPED (the task is kept)."""
    containerd.ctr("tasks", "kill", "-s", "SIGKILL", cid, namespace=namespace)
    wait_until(
        f"task {cid} stopped",
        lambda: ctr_task_status(containerd, namespace).get(cid) == "STOPPED",
    )


def write(path: Path, text: str) -> Path:
    """``path`` holding ``text`` (its directory made as needed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def unique_id(prefix: str) -> str:
    """A container ID longer than 12 characters (so truncation shows)."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def short(digest: str) -> str:
    return digest.split(":", 1)[1][:12]


def names_of(lines: Iterable[str]) -> set[str]:
    return {ln.strip() for ln in lines if ln.strip()}


def finish(proc: subprocess.Popen[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Wait for ``proc`` (killed after ``timeout``); its exit status and output."""
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


# --- many invocations at once ---------------------------------------------------------------------


def run_all(
    run: Callable[..., subprocess.CompletedProcess[str]],
    commands: Iterable[Sequence[str]],
    **kwargs: Any,
) -> list[subprocess.CompletedProcess[str]]:
    """``run(*args, **kwargs)`` for every command concurrently (the CLI's start-up dominates,
    not containerd); results in order. Only for commands that do not change anything."""
    todo = list(commands)
    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(lambda args: run(*args, **kwargs), todo))


def run_many(
    run: Callable[..., subprocess.CompletedProcess[str]],
    cases: Iterable[tuple[Any, Sequence[str]]],
    check: Callable[[Any, subprocess.CompletedProcess[str]], object],
    **kwargs: Any,
) -> None:
    """:func:`run_all` for ``(case, args)`` pairs, then ``check(case, proc)`` each; reports
    every failing case."""
    todo = list(cases)
    procs = run_all(run, (args for _, args in todo), **kwargs)
    failures = []
    for (case, args), proc in zip(todo, procs, strict=True):
        try:
            check(case, proc)
        except AssertionError as exc:
            failures.append(f"--- {case!r}: pyctl {' '.join(args)}\n{exc}")
    assert not failures, f"{len(failures)} of {len(todo)} cases failed:\n" + "\n".join(failures)
