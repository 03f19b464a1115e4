"""Transfers: `pyctl pull` against `ctr images pull` (8 random 32 MiB gzip layers from a local
registry, unpack included, everything garbage-collected between runs) and `pyctl push`
against `ctr images push` (each run into a fresh, empty registry), plus pyctl's peak RSS
while pulling one 1 GiB layer."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
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
from integration.testbed import Containerd, Registry, skopeo

LAYERS = 8
LAYER_MIB = 32
BIG_MIB = 1024
NS = "bench-transfer"


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

        med = alternate(
            runs,
            {
                "ctr": lambda: timed([*ctr, "images", "pull", "--plain-http", ref]),
                "pyctl": lambda: timed([*pyctl, "-n", NS, "pull", "-q", ref], env),
            },
            between=lambda: empty_namespace(cd, NS),
        )
        size = f"{LAYERS} x {LAYER_MIB} MiB gzip layers"
        results.append(ratio_row(f"pull, {size}", med))

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
        results.append(ratio_row(f"push, {size}", med))
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
                "peak_rss_mib": rss,
            }
        )
    print_table([r for r in results if "peak_rss_mib" not in r], RATIO_COLUMNS)
    for r in results:
        if "peak_rss_mib" in r:
            print(f"{r['scenario']}: {r['peak_rss_mib']:.0f} MiB")
    save("transfer", results)
    return results
