"""Listing: `pyctl images` (10 and 1,000 images) and `pyctl ps -a` (300 containers) against
`ctr images ls` / `ctr containers ls` on the same private containerd, plus the floor every
Python gRPC CLI pays (`python -c 'import click, grpc'`): wall times, and for the short
commands the instructions pyctl executes against the floor's (callgrind; repeatable on a
busy machine)."""

from __future__ import annotations

import functools
import os
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.common import alternate, install_pyctl, instructions, print_table, save, timed
from integration.images import build_image, write_oci_archive
from integration.testbed import Containerd

IMAGE = "docker.io/library/busybox:bench"


def seed_tags(cd: Containerd, namespace: str, count: int) -> None:
    from pyctl.containerd import images
    from pyctl.containerd.client import Client

    with Client(cd.address, namespace) as client:
        base = images.get(client, IMAGE)
        for i in range(count - 1):
            images.put(
                client, images.ImageRecord(name=f"docker.io/bench/app:{i:04d}", target=base.target)
            )


def seed_containers(cd: Containerd, namespace: str, count: int) -> None:
    def create(i: int) -> None:
        cd.ctr("containers", "create", IMAGE, f"bench-{i:03d}", "sleep", "1", namespace=namespace)

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(create, range(count)))


def run(runs: int) -> list[dict[str, Any]]:
    floor = [sys.executable, "-P", "-c", "import click, grpc"]
    results = []
    with tempfile.TemporaryDirectory(prefix="pyctl-bench-") as tmp, Containerd(cri=False) as cd:
        site = Path(tmp) / "site"
        pyctl = install_pyctl(site)
        env = dict(os.environ, PYTHONPATH=str(site))
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
                ctr_cmd = [cd.binaries.ctr, "-a", cd.address, "-n", ns, "images", "ls"]
                py_cmd = [*pyctl, "-a", cd.address, "-n", ns, "images"]
                label = f"images, {count} images"
            else:
                seed_containers(cd, ns, count)
                ctr_cmd = [cd.binaries.ctr, "-a", cd.address, "-n", ns, "containers", "ls"]
                py_cmd = [*pyctl, "-a", cd.address, "-n", ns, "ps", "-a"]
                label = f"ps -a, {count} containers"
            med = alternate(
                runs,
                {
                    "ctr": functools.partial(timed, ctr_cmd),
                    "pyctl": functools.partial(timed, py_cmd, env),
                    "floor": functools.partial(timed, floor, env),
                },
            )
            # Short commands: their instruction counts against the floor's, too (one run each).
            floor_ir = instructions(floor, env) if count < 1000 else None
            pyctl_ir = instructions(py_cmd, env) if floor_ir else None
            results.append(
                {
                    "scenario": label,
                    "ctr_s": med["ctr"],
                    "pyctl_s": med["pyctl"],
                    "floor_s": med["floor"],
                    "pyctl_over_ctr": med["pyctl"] / med["ctr"],
                    "floor_over_ctr": med["floor"] / med["ctr"],
                    "pyctl_minus_floor_s": med["pyctl"] - med["floor"],
                    "pyctl_over_floor": med["pyctl"] / med["floor"],
                    "pyctl_over_floor_instructions": (
                        pyctl_ir / floor_ir if pyctl_ir and floor_ir else None
                    ),
                }
            )
            cd.clean_namespace(ns)
    print_table(
        results,
        [
            ("scenario", "scenario", ""),
            ("ctr_s", "ctr s", ".3f"),
            ("pyctl_s", "pyctl s", ".3f"),
            ("floor_s", "floor s", ".3f"),
            ("pyctl_over_ctr", "pyctl/ctr", ".2f"),
            ("floor_over_ctr", "floor/ctr", ".2f"),
            ("pyctl_minus_floor_s", "pyctl-floor s", ".3f"),
            ("pyctl_over_floor", "pyctl/floor", ".2f"),
            ("pyctl_over_floor_instructions", "pyctl/floor instr", ".2f"),
        ],
    )
    save("listing", results)
    return results
