"""Archives: `pyctl import` against `ctr images import` (an OCI archive of one image with 8
random 32 MiB gzip layers, unpack included, everything garbage-collected between runs) and
`pyctl export` against `ctr images export` of the same image."""

from __future__ import annotations

import os
import shlex
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from bench.common import (
    RATIO_COLUMNS,
    alternate,
    empty_namespace,
    install_pyctl,
    peak_rss_mib,
    print_table,
    ratio_row,
    save,
    timed,
)
from bench.transfer import LAYER_MIB, LAYERS, build_layout  # the image pull/push use
from integration.testbed import Containerd

NS = "bench-archive"
BASE = "bench/app"  # the layout names its image "1" only: both tools make bench/app:1


def _tar_layout(layout: Path, out: Path) -> None:
    """The layout as an archive, in the order ctr writes one (sorted names)."""
    with tarfile.open(out, "w") as tf:
        for p in sorted(layout.rglob("*")):
            tf.add(p, arcname=str(p.relative_to(layout)), recursive=False)


def run(runs: int) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    with (
        tempfile.TemporaryDirectory(prefix="pyctl-bench-") as tmpname,
        Containerd(cri=False) as cd,
    ):
        tmp = Path(tmpname)
        pyctl = install_pyctl(tmp / "site")
        env = dict(os.environ, PYTHONPATH=str(tmp / "site"), CONTAINERD_ADDRESS=cd.address)
        build_layout(tmp / "layout", LAYERS, LAYER_MIB, compress=True)
        archive = tmp / "app.tar"
        _tar_layout(tmp / "layout", archive)
        ctr = [cd.binaries.ctr, "-a", cd.address, "-n", NS]
        size = f"{LAYERS} x {LAYER_MIB} MiB gzip layers"

        med = alternate(
            runs,
            {
                "ctr": lambda: timed([*ctr, "images", "import", "--base-name", BASE, str(archive)]),
                "pyctl": lambda: timed(
                    [*pyctl, "-n", NS, "import", "--base-name", BASE, str(archive)], env
                ),
            },
            between=lambda: empty_namespace(cd, NS),
        )
        results.append(ratio_row(f"import + unpack, {size}", med))

        # the same archive on stdin: one pass, nothing buffered whole
        def from_stdin(cmd: list[str]) -> list[str]:
            return ["sh", "-c", f"exec {shlex.join(cmd)} < {shlex.quote(str(archive))}"]

        ctr_stdin = from_stdin([*ctr, "images", "import", "--base-name", BASE, "-"])
        pyctl_stdin = from_stdin([*pyctl, "-n", NS, "import", "--base-name", BASE, "-"])
        med = alternate(
            runs,
            {"ctr": lambda: timed(ctr_stdin), "pyctl": lambda: timed(pyctl_stdin, env)},
            between=lambda: empty_namespace(cd, NS),
        )
        results.append(ratio_row(f"import + unpack from stdin, {size}", med))
        rss = peak_rss_mib(pyctl_stdin, env)
        empty_namespace(cd, NS)

        cd.ctr("images", "import", "--base-name", BASE, str(archive), namespace=NS)
        out = tmp / "out.tar"

        def export_with(tool: str) -> float:
            try:
                if tool == "ctr":
                    return timed([*ctr, "images", "export", str(out), f"{BASE}:1"])
                return timed([*pyctl, "-n", NS, "export", str(out), f"{BASE}:1"], env)
            finally:
                out.unlink(missing_ok=True)

        med = alternate(
            runs, {"ctr": lambda: export_with("ctr"), "pyctl": lambda: export_with("pyctl")}
        )
        results.append(ratio_row(f"export, {size}", med))
        empty_namespace(cd, NS)
    print_table(results, RATIO_COLUMNS)
    print(f"pyctl import from stdin, peak RSS: {rss:.0f} MiB")
    results.append(
        {
            "scenario": f"pyctl import from stdin peak RSS, {size}",
            "ctr_s": float("nan"),
            "pyctl_s": float("nan"),
            "ratio": float("nan"),
            "peak_rss_mib": rss,
        }
    )
    save("archive", results)
    return results
