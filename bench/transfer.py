"""Transfers: `pyctl pull` against `ctr images pull` (8 random 32 MiB gzip layers from a local
registry, unpack included, everything garbage-collected between runs) and against `docker pull`
of the same image into a private Debian docker.io engine (every image and layer removed
between runs), `pyctl push` against `ctr images push` (each run into a fresh, empty
registry), plus pyctl's peak RSS while pulling one 1 GiB layer. For the pulls of ctr and
pyctl, the CPU seconds of the client, containerd and the registry are counted too: their sum
over the machine's cores is the pull's floor, the time no client can beat here.

Every timed pull is checked against the registry's access log: each blob of the image was
sent in full during that run, so no run is served from something a previous one left."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import shutil
import statistics
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import (
    RATIO_COLUMNS,
    alternate,
    cores,
    empty_engine,
    empty_namespace,
    install_pyctl,
    instructions,
    peak_rss_mib,
    print_table,
    ratio_row,
    save,
    timed,
    timed_cpu,
)
from integration.dockerd import DockerEngine
from integration.testbed import Containerd, Registry, skopeo

LAYERS = 8
LAYER_MIB = 32
BIG_MIB = 1024
NS = "bench-transfer"
# the registry's access log (combined format): "GET /v2/<repo>/blobs/<digest> HTTP/1.1" 200 <bytes>
BLOB_GET = re.compile(r'"GET /v2/\S+/blobs/(sha256:[0-9a-f]{64}) HTTP/[\d.]+" (200|206) (\d+)')
PEER_COLUMNS = [
    *RATIO_COLUMNS,
    ("docker_s", "docker s", ".2f"),
    ("docker_ratio", "pyctl/docker", ".2f"),
    ("floor_s", "floor s", ".2f"),
    ("pyctl_over_floor", "pyctl/floor", ".2f"),
    ("pyctl_over_floor_instructions", "pyctl/floor instr", ".2f"),
]
# What a registry command costs before its first request: the interpreter, click, grpc and
# urllib3 imported (the `import click, grpc` floor of `bench listing`, plus the HTTP client).
# A push whose blobs are all mounted is little more than that.
FLOOR = [sys.executable, "-P", "-c", "import click, grpc, urllib3"]
NO_FLOOR = {
    "floor_s": float("nan"),
    "pyctl_over_floor": float("nan"),
    "pyctl_over_floor_instructions": float("nan"),
}


def _pid(pid: int | None) -> int:
    if pid is None:
        raise SystemExit("bench: a daemon of the test bed is not running")
    return pid


def _median_cpu(samples: list[dict[str, float]]) -> dict[str, float]:
    """Per process, the median of its CPU seconds over ``samples`` (one dict per run)."""
    return {name: statistics.median(s[name] for s in samples) for name in samples[0]}


def _blob(layout: Path, data_path: Path) -> tuple[str, int]:
    h = hashlib.sha256()
    with data_path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    digest = "sha256:" + h.hexdigest()
    target = layout / "blobs" / "sha256" / h.hexdigest()
    shutil.move(data_path, target)
    return digest, target.stat().st_size


def _json_blob(layout: Path, doc: dict[str, Any]) -> tuple[str, int]:
    data = json.dumps(doc, separators=(",", ":")).encode()
    tmp = layout / "tmp.json"
    tmp.write_bytes(data)
    return _blob(layout, tmp)


def build_layout(layout: Path, layers: int, mib: int, *, compress: bool) -> None:
    """An OCI layout with ``layers`` layers, each one file of ``mib`` MiB of random bytes."""
    (layout / "blobs" / "sha256").mkdir(parents=True)
    descs, diff_ids = [], []
    for i in range(layers):
        raw = layout / f"layer{i}.tar"
        with tarfile.open(raw, "w") as tf:
            data_file = layout / f"data{i}"
            with data_file.open("wb") as fh:
                for _ in range(mib):
                    fh.write(os.urandom(1 << 20))
            tf.add(data_file, arcname=f"data/file{i}.bin")
            data_file.unlink()
        diff_ids.append("sha256:" + hashlib.sha256(raw.read_bytes()).hexdigest())
        if compress:
            gz = layout / f"layer{i}.tar.gz"
            with (
                raw.open("rb") as src,
                gz.open("wb") as out,
                gzip.GzipFile(fileobj=out, mode="wb", compresslevel=1, mtime=0) as dst,
            ):
                shutil.copyfileobj(src, dst, 1 << 20)
            raw.unlink()
            digest, size = _blob(layout, gz)
            media = "application/vnd.oci.image.layer.v1.tar+gzip"
        else:
            digest, size = _blob(layout, raw)
            media = "application/vnd.oci.image.layer.v1.tar"
        descs.append({"mediaType": media, "digest": digest, "size": size})
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, os.uname().machine)
    config = {
        "architecture": arch,
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "config": {"Cmd": ["/bin/sh"]},
    }
    cdigest, csize = _json_blob(layout, config)
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": cdigest,
            "size": csize,
        },
        "layers": descs,
    }
    mdigest, msize = _json_blob(layout, manifest)
    (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": mdigest,
                "size": msize,
                "annotations": {"org.opencontainers.image.ref.name": "1"},
            }
        ],
    }
    (layout / "index.json").write_text(json.dumps(index))


def image_blobs(reg: Registry, repo: str, tag: str) -> dict[str, int]:
    """Digest -> size of the config and every layer of ``repo:tag`` (a single manifest)."""
    manifest = reg.manifest(repo, tag).json()
    return {d["digest"]: d["size"] for d in [manifest["config"], *manifest["layers"]]}


def check_downloaded(reg: Registry, since: int, blobs: dict[str, int], tool: str) -> None:
    """Check that the registry sent every blob in ``blobs`` in full after byte ``since`` of
    its access log (a line is written once the response is sent; wait a moment for the last)."""
    deadline = time.monotonic() + 5.0
    while True:
        with reg.log_path.open("rb") as fh:
            fh.seek(since)
            log = fh.read().decode(errors="replace")
        sent: dict[str, int] = {}
        for digest, _status, size in BLOB_GET.findall(log):
            sent[digest] = sent.get(digest, 0) + int(size)
        short = [d for d, size in blobs.items() if sent.get(d, 0) < size]
        if not short:
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"bench: {tool} did not download {len(short)} blob(s): {short[:2]}")
        time.sleep(0.1)


REQUEST = re.compile(r'"(POST|PUT|PATCH) (\S+) HTTP/[0-9.]+" (\d{3})')


def check_mounted(reg: Registry, since: int, blobs: dict[str, int], tool: str) -> None:
    """Every blob of the image was mounted (a POST with ?mount= answered 201) and none was
    uploaded, per the registry's access log after byte ``since`` (lines come when the answer
    is sent: wait a moment for the last)."""
    from urllib.parse import parse_qs, urlsplit

    deadline = time.monotonic() + 5.0
    while True:
        with reg.log_path.open("rb") as fh:
            fh.seek(since)
            log = fh.read().decode(errors="replace")
        mounted, uploads = set(), 0
        for method, target, status in REQUEST.findall(log):
            query = parse_qs(urlsplit(target).query)
            if method == "POST" and "mount" in query and status == "201":
                mounted.add(query["mount"][0])
            elif method in ("PUT", "PATCH") and "/blobs/uploads/" in target:
                uploads += 1
        if uploads:
            raise SystemExit(f"bench: {tool} uploaded {uploads} blob(s) instead of mounting")
        if not set(blobs) - mounted:
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"bench: {tool} mounted {len(mounted)} of {len(blobs)} blobs")
        time.sleep(0.1)


def run(runs: int) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    with (
        tempfile.TemporaryDirectory(prefix="pyctl-bench-") as tmpname,
        Containerd(cri=False) as cd,
        Registry() as reg,
    ):
        tmp = Path(tmpname)
        pyctl = install_pyctl(tmp / "site")
        env = dict(os.environ, PYTHONPATH=str(tmp / "site"), CONTAINERD_ADDRESS=cd.address)
        build_layout(tmp / "layout", LAYERS, LAYER_MIB, compress=True)
        skopeo(
            "copy",
            "--dest-tls-verify=false",
            f"oci:{tmp / 'layout'}:1",
            f"docker://{reg.host}/bench/app:1",
        )
        ref = f"{reg.host}/bench/app:1"
        ctr = [cd.binaries.ctr, "-a", cd.address, "-n", NS]

        blobs = image_blobs(reg, "bench/app", "1")

        # CPU seconds per process of each timed ctr and pyctl pull: the client, containerd
        # (ingest and unpack) and the registry. Their sum over the cores is the floor no
        # client's pull can beat on this machine.
        daemons = {"containerd": _pid(cd.pid), "registry": _pid(reg.pid)}
        cpu: dict[str, list[dict[str, float]]] = {"ctr": [], "pyctl": []}

        def pull_with(tool: str, cmd: list[str], cmd_env: dict[str, str] | None) -> float:
            mark = reg.log_path.stat().st_size
            if tool in cpu:
                elapsed, used = timed_cpu(cmd, cmd_env, daemons)
                cpu[tool].append(used)
            else:
                elapsed = timed(cmd, cmd_env)
            check_downloaded(reg, mark, blobs, tool)
            return elapsed

        # docker: Debian's dockerd 20.10 with its defaults (3 concurrent downloads; overlay2
        # if it works here; layers decompressed by unpigz if it is on PATH, else Go's gzip).
        # It pulls from the plain-HTTP registry unconfigured: 127.0.0.0/8 is in its
        # insecure-registry CIDRs by default (`docker info`: Insecure Registries). Its pull
        # returns only after every layer is extracted and registered in the layer store
        # ("Pull complete" is reported after layerStore.Register) and the image is tagged:
        # when it returns, `docker run` can start the image, as after ctr's and pyctl's unpack.
        with DockerEngine() as engine:
            docker_env = engine.client_env()
            version = engine.docker("version", "--format", "{{.Server.Version}}").stdout

            def clean() -> None:
                empty_namespace(cd, NS)
                empty_engine(engine)

            med = alternate(
                runs,
                {
                    "ctr": lambda: pull_with(
                        "ctr", [*ctr, "images", "pull", "--plain-http", ref], None
                    ),
                    "pyctl": lambda: pull_with("pyctl", [*pyctl, "-n", NS, "pull", "-q", ref], env),
                    "docker": lambda: pull_with(
                        "docker", engine.argv("pull", "-q", ref), docker_env
                    ),
                },
                between=clean,
            )
            gunzip = "unpigz" if shutil.which("unpigz") else "Go gzip"
            docker_engine = f"dockerd {version.strip()}, {engine.storage_driver}, {gunzip}"
        size = f"{LAYERS} x {LAYER_MIB} MiB gzip layers"
        pull_cpu = {tool: _median_cpu(samples[-runs:]) for tool, samples in cpu.items()}
        floor = sum(pull_cpu["pyctl"].values()) / cores()
        results.append(
            {
                **ratio_row(f"pull, {size}", med),
                "docker_s": med["docker"],
                "docker_ratio": med["pyctl"] / med["docker"],
                "floor_s": floor,
                "pyctl_over_floor": med["pyctl"] / floor,
                "pyctl_over_floor_instructions": float("nan"),
                "docker_engine": docker_engine,
                "cpu_s": pull_cpu,
                "cores": cores(),
            }
        )

        # push: the image is local; each run pushes into a brand-new registry.
        cd.ctr("images", "pull", "--plain-http", ref, namespace=NS)

        def push_with(tool: str) -> float:
            with Registry() as target:
                dest = f"{target.host}/bench/app:1"
                cd.ctr("images", "tag", ref, dest, namespace=NS)
                try:
                    if tool == "ctr":
                        return timed([*ctr, "images", "push", "--plain-http", dest])
                    return timed([*pyctl, "-n", NS, "push", "-q", dest], env)
                finally:
                    cd.ctr("images", "rm", dest, namespace=NS)

        med = alternate(
            runs, {"ctr": lambda: push_with("ctr"), "pyctl": lambda: push_with("pyctl")}
        )
        nan = float("nan")  # no docker push line
        results.append(
            {**ratio_row(f"push, {size}", med), "docker_s": nan, "docker_ratio": nan, **NO_FLOOR}
        )

        # push of the same image into another repository of the registry it came from: every
        # blob is a cross-repository mount (both tools read containerd's distribution.source
        # label); each run into a repository of its own.
        runs_done = [0]

        def push_mounting(tool: str, measure: Callable[..., float] = timed) -> float:
            """``measure`` (timed, or counted instructions) one push into a new repository."""
            runs_done[0] += 1
            dest = f"{reg.host}/bench/mount-{runs_done[0]}:1"
            cd.ctr("images", "tag", ref, dest, namespace=NS)
            mark = reg.log_path.stat().st_size
            try:
                if tool == "ctr":
                    value = measure([*ctr, "images", "push", "--plain-http", dest], None)
                else:
                    value = measure([*pyctl, "-n", NS, "push", "-q", dest], env)
            finally:
                cd.ctr("images", "rm", dest, namespace=NS)
            check_mounted(reg, mark, blobs, tool)
            return value

        def counted(cmd: list[str], cmd_env: dict[str, str] | None) -> float:
            return instructions(cmd, cmd_env or {}) or nan

        med = alternate(
            runs,
            {
                "ctr": lambda: push_mounting("ctr"),
                "pyctl": lambda: push_mounting("pyctl"),
                "floor": lambda: timed(FLOOR, env),
            },
        )
        # and the instructions of one such push against the floor's (callgrind: the same count
        # however busy the machine is)
        floor_ir = instructions(FLOOR, env)
        pyctl_ir = push_mounting("pyctl", counted) if floor_ir else nan
        results.append(
            {
                **ratio_row(f"push with mounts, {size}", med),
                "docker_s": nan,
                "docker_ratio": nan,
                "floor_s": med["floor"],
                "pyctl_over_floor": med["pyctl"] / med["floor"],
                "pyctl_over_floor_instructions": pyctl_ir / (floor_ir or nan),
            }
        )
        empty_namespace(cd, NS)

        build_layout(tmp / "big", 1, BIG_MIB, compress=False)
        skopeo(
            "copy",
            "--dest-tls-verify=false",
            f"oci:{tmp / 'big'}:1",
            f"docker://{reg.host}/bench/big:1",
        )
        shutil.rmtree(tmp / "big")
        rss = peak_rss_mib([*pyctl, "-n", NS, "pull", "-q", f"{reg.host}/bench/big:1"], env)
        empty_namespace(cd, NS)
        results.append(
            {
                "scenario": f"pyctl pull peak RSS, one {BIG_MIB} MiB layer",
                "ctr_s": float("nan"),
                "pyctl_s": float("nan"),
                "ratio": float("nan"),
                "docker_s": float("nan"),
                "docker_ratio": float("nan"),
                **NO_FLOOR,
                "peak_rss_mib": rss,
            }
        )
    print_table([r for r in results if "peak_rss_mib" not in r], PEER_COLUMNS)
    for r in results:
        if "cpu_s" in r:
            print(f"{r['scenario']}: CPU seconds per process (medians), floor = sum / {r['cores']}")
            for tool, used in r["cpu_s"].items():
                parts = ", ".join(f"{name} {sec:.2f}" for name, sec in used.items())
                print(f"  {tool}: {parts}; floor {sum(used.values()) / r['cores']:.2f} s")
    for r in results:
        if "peak_rss_mib" in r:
            print(f"{r['scenario']}: {r['peak_rss_mib']:.0f} MiB")
    save("transfer", results)
    return results
