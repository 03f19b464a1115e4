"""What every benchmark shares: a pip-installed pyctl, timing, medians, the result table."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from integration.dockerd import DockerEngine
    from integration.testbed import Containerd

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


def install_pyctl(target: Path) -> list[str]:
    """Install this checkout as `pip install .` does (no editable finder) into ``target``;
    returns the command that runs it the way the `pyctl` console script does. The caller
    puts ``target`` on PYTHONPATH."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--target",
            str(target),
            str(ROOT),
        ],
        check=True,
    )
    # -P: not the current directory first on sys.path, as for the `pyctl` console script (from
    # the checkout, the sources would run instead, compiled at every start when
    # PYTHONDONTWRITEBYTECODE is set, as it is on these machines)
    return [sys.executable, "-P", "-c", "from pyctl.cli.main import main; main()"]


def empty_namespace(cd: Containerd, namespace: str) -> None:
    """Remove every image, then let GC take content and snapshots; check nothing is left."""
    names = cd.lines("images", "ls", "-q", namespace=namespace)
    if names:
        cd.ctr("images", "rm", "--sync", *names, namespace=namespace)
    left = cd.lines("content", "ls", "-q", namespace=namespace)
    left += cd.lines("snapshots", "ls", namespace=namespace)[1:]  # (no -q; a header line)
    if left:
        raise SystemExit(f"bench: content or snapshots left after cleanup: {left[:3]}")


def empty_engine(engine: DockerEngine) -> None:
    """Remove every container and image from a private Docker engine; check that its layer
    store is empty too, so the next pull downloads and extracts every layer again. (The
    graph-driver store of dockerd 20.10 keeps no blobs: removing the last image that uses a
    layer deletes the layer's directory and then its layerdb entry, so nothing is left for
    ``docker image prune`` or ``docker builder prune``.)"""
    engine.reset()
    left = engine.lines("images", "-aq")
    layerdb = engine.data_root / "image" / engine.storage_driver / "layerdb" / "sha256"
    left += [p.name for p in layerdb.iterdir()] if layerdb.is_dir() else []
    if left:
        raise SystemExit(f"bench: images or layers left in the docker engine: {left[:3]}")


def timed(cmd: Sequence[str], env: dict[str, str] | None = None) -> float:
    start = time.perf_counter()
    proc = subprocess.run(list(cmd), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"bench: {' '.join(cmd)} failed: {proc.stderr.decode().strip()}")
    return elapsed


def cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) process ``pid`` has used so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed_cpu(
    cmd: Sequence[str], env: dict[str, str] | None, daemons: dict[str, int]
) -> tuple[float, dict[str, float]]:
    """:func:`timed`, plus the CPU seconds the command itself (``client``) and each of the
    ``daemons`` (name: pid) used while it ran."""
    before = {name: cpu_seconds(pid) for name, pid in daemons.items()}
    start = os.times()
    elapsed = timed(cmd, env)
    end = os.times()
    cpu = {"client": end.children_user + end.children_system}
    cpu["client"] -= start.children_user + start.children_system
    cpu.update({name: cpu_seconds(pid) - before[name] for name, pid in daemons.items()})
    return elapsed, cpu


def cores() -> int:
    """CPUs this process may run on: what the processes of one command share."""
    return len(os.sched_getaffinity(0))


def peak_rss_mib(cmd: Sequence[str], env: dict[str, str]) -> float:
    """Run ``cmd`` once under /usr/bin/time; its peak resident set size in MiB."""
    proc = subprocess.run(
        ["/usr/bin/time", "-f", "%M", *cmd], env=env, capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise SystemExit(f"bench: {' '.join(cmd)} failed: {proc.stderr.strip()}")
    return int(proc.stderr.strip().splitlines()[-1]) / 1024


def instructions(cmd: Sequence[str], env: dict[str, str]) -> float | None:
    """Instructions ``cmd`` executes (its own process, not containerd's), counted by
    valgrind's callgrind: the same count for the same run whatever else the machine does,
    where wall times of short commands drift by tens of milliseconds on a shared machine.
    None without valgrind."""
    if shutil.which("valgrind") is None:
        return None
    proc = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *cmd],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    found = re.search(r"Collected : (\d+)", proc.stderr)
    if proc.returncode != 0 or found is None:
        raise SystemExit(f"bench: {' '.join(cmd)} under valgrind failed: {proc.stderr[-500:]}")
    return float(found.group(1))


def alternate(
    runs: int,
    steps: dict[str, Callable[[], float]],
    *,
    between: Callable[[], None] | None = None,
    warmup: bool = True,
) -> dict[str, float]:
    """Run each step ``runs`` times, alternating; ``between`` runs after every step (cleanup).
    Returns the median seconds per step."""
    if warmup:
        for step in steps.values():
            step()
            if between:
                between()
    samples: dict[str, list[float]] = {k: [] for k in steps}
    for _ in range(runs):
        for key, step in steps.items():
            samples[key].append(step())
            if between:
                between()
    return {k: statistics.median(v) for k, v in samples.items()}


def _cell(value: Any, spec: str) -> str:
    """``format(value, spec)``; None or NaN (nothing measured in that column) prints as
    ``-``."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return format(value, spec)


def print_table(rows: list[dict[str, Any]], columns: list[tuple[str, str, str]]) -> None:
    """columns: (key, header, format spec)."""
    widths = [max(len(h), *(len(_cell(r[k], f)) for r in rows)) for k, h, f in columns]
    print("  ".join(h.ljust(w) for (_, h, _), w in zip(columns, widths, strict=True)))
    for r in rows:
        print(
            "  ".join(_cell(r[k], f).ljust(w) for (k, _, f), w in zip(columns, widths, strict=True))
        )


def save(name: str, rows: list[dict[str, Any]]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(rows, indent=2) + "\n")
    return path


RATIO_COLUMNS = [
    ("scenario", "scenario", ""),
    ("ctr_s", "ctr s", ".2f"),
    ("pyctl_s", "pyctl s", ".2f"),
    ("ratio", "pyctl/ctr", ".2f"),
]


def ratio_row(scenario: str, med: dict[str, float]) -> dict[str, Any]:
    """A result row from the medians of an ``alternate`` run with steps "ctr" and "pyctl"."""
    return {
        "scenario": scenario,
        "ctr_s": med["ctr"],
        "pyctl_s": med["pyctl"],
        "ratio": med["pyctl"] / med["ctr"],
    }
