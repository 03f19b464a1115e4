"""Listing benchmarks: pyctl against ctr on the same private containerd, in the same run.

    bash scripts/dev.sh bench            # or: .venv/bin/python -m bench.run [--runs N]

Scenarios: `images` with 10 and 1,000 image records (tags of one image), `ps -a` with 300
created containers. Each command runs alternately with its ctr counterpart and with the
interpreter floor (`python -c 'import click, grpc'`); the table shows medians and ratios.
Results are also written to bench/results/listing.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from integration.images import build_image, write_oci_archive
from integration.testbed import Containerd

ROOT = Path(__file__).resolve().parent.parent
IMAGE = "docker.io/library/busybox:bench"


def install_pyctl(target: Path) -> list[str]:
    """Install this checkout like `pip install .` does (no editable finder) into ``target`` and
    return the command that runs it the way the `pyctl` console script does."""
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
    return [sys.executable, "-c", "from pyctl.cli.main import main; main()"]


def _time(cmd: list[str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"bench: {' '.join(cmd)} failed: {proc.stderr.decode().strip()}")
    return elapsed


def measure(commands: dict[str, list[str]], runs: int) -> dict[str, float]:
    """Median wall time of each command, running them alternately ``runs`` times."""
    for cmd in commands.values():  # warm caches
        _time(cmd)
    samples: dict[str, list[float]] = {k: [] for k in commands}
    for _ in range(runs):
        for key, cmd in commands.items():
            samples[key].append(_time(cmd))
    return {k: statistics.median(v) for k, v in samples.items()}


def seed_tags(cd: Containerd, namespace: str, count: int) -> None:
    from pyctl.containerd import images
    from pyctl.containerd.client import Client

    with Client(cd.address, namespace) as client:
        base = images.get(client, IMAGE)
        for i in range(count - 1):
            images.put(
                client,
                images.ImageRecord(name=f"docker.io/bench/app:{i:04d}", target=base.target),
            )


def seed_containers(cd: Containerd, namespace: str, count: int) -> None:
    def create(i: int) -> None:
        cd.ctr("containers", "create", IMAGE, f"bench-{i:03d}", "sleep", "1", namespace=namespace)

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(create, range(count)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="timed runs per command")
    args = parser.parse_args()

    floor = [sys.executable, "-c", "import click, grpc"]
    results = []
    with tempfile.TemporaryDirectory(prefix="pyctl-bench-") as tmp, Containerd(cri=False) as cd:
        site = Path(tmp) / "site"
        pyctl = install_pyctl(site)
        os.environ["PYTHONPATH"] = str(site)
        archive = write_oci_archive(Path(tmp) / "busybox.tar", build_image(), IMAGE)
        scenarios = [
            ("images", 10, "bench10"),
            ("images", 1000, "bench1000"),
            ("ps", 300, "benchps"),
        ]
        for kind, count, ns in scenarios:
            cd.ctr("images", "import", str(archive.path), namespace=ns)
            if kind == "images":
                seed_tags(cd, ns, count)
                commands = {
                    "ctr": ["ctr", "-a", cd.address, "-n", ns, "images", "ls"],
                    "pyctl": [*pyctl, "-a", cd.address, "-n", ns, "images"],
                }
                label = f"images, {count} images"
            else:
                seed_containers(cd, ns, count)
                commands = {
                    "ctr": ["ctr", "-a", cd.address, "-n", ns, "containers", "ls"],
                    "pyctl": [*pyctl, "-a", cd.address, "-n", ns, "ps", "-a"],
                }
                label = f"ps -a, {count} containers"
            commands["floor"] = floor
            med = measure(commands, args.runs)
            results.append(
                {
                    "scenario": label,
                    "ctr_s": round(med["ctr"], 4),
                    "pyctl_s": round(med["pyctl"], 4),
                    "floor_s": round(med["floor"], 4),
                    "pyctl_over_ctr": round(med["pyctl"] / med["ctr"], 2),
                    "floor_over_ctr": round(med["floor"] / med["ctr"], 2),
                    "pyctl_minus_floor_s": round(med["pyctl"] - med["floor"], 4),
                }
            )
            cd.clean_namespace(ns)

    cols = ("ctr", "pyctl", "floor")
    print(
        f"{'scenario':<26}" + "".join(f"{c:>9}" for c in cols) + f"{'pyctl/ctr':>11}"
        f"{'floor/ctr':>11}{'pyctl-floor':>13}"
    )
    for r in results:
        print(
            f"{r['scenario']:<26}{r['ctr_s']:>8.3f}s{r['pyctl_s']:>8.3f}s{r['floor_s']:>8.3f}s"
            f"{r['pyctl_over_ctr']:>10.2f}x{r['floor_over_ctr']:>10.2f}x{r['pyctl_minus_floor_s']:>12.3f}s"
        )
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "listing.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
