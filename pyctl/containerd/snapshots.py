"""Snapshots and unpack: apply an image's layers into a snapshotter, the way containerd's
pull-time unpacker does (chain IDs, ``containerd.io/snapshot.ref`` labels, Diff.Apply,
diffID verification, ``containerd.io/uncompressed`` and ``gc.ref.snapshot`` labels)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple

from pyctl.containerd import content, wire
from pyctl.containerd.client import Client, ContainerdAlreadyExists, ContainerdNotFound, random_id
from pyctl.errors import PyctlError
from pyctl.oci import Descriptor, ImageConfig, Manifest, chain_ids, is_layer

SNAPSHOT_REF_LABEL = "containerd.io/snapshot.ref"
UNCOMPRESSED_LABEL = "containerd.io/uncompressed"


def gc_snapshot_label(snapshotter: str) -> str:
    return f"containerd.io/gc.ref.snapshot.{snapshotter}"


class SnapshotInfo(NamedTuple):
    name: str
    parent: str
    kind: int
    labels: dict[str, str]


def stat(client: Client, snapshotter: str, key: str) -> SnapshotInfo | None:
    from pyctl._api.services.snapshots.v1 import snapshots_pb2

    try:
        resp = client.call(
            "snapshots", "Stat", snapshots_pb2.StatSnapshotRequest(snapshotter=snapshotter, key=key)
        )
    except ContainerdNotFound:
        return None
    i = resp.info
    return SnapshotInfo(name=i.name, parent=i.parent, kind=i.kind, labels=dict(i.labels))


def usage_future(client: Client, snapshotter: str, key: str) -> object:
    return client.future_raw("snapshots.Usage", (1, "snapshotter", snapshotter), (2, "key", key))


def usage_sizes(client: Client, snapshotter: str, keys: Iterable[str]) -> dict[str, int]:
    """Disk usage of many snapshots at once (concurrent calls); missing ones are left out."""
    futures = {key: usage_future(client, snapshotter, key) for key in set(keys)}
    out: dict[str, int] = {}
    for key, fut in futures.items():
        try:
            answer = client.result(fut, key)
        except ContainerdNotFound:
            continue
        out[key] = wire.message(answer, {1: wire.integer}).get(1, 0)  # size; inodes (2)
    return out


def remove(client: Client, snapshotter: str, key: str) -> None:
    from pyctl._api.services.snapshots.v1 import snapshots_pb2

    client.call(
        "snapshots", "Remove", snapshots_pb2.RemoveSnapshotRequest(snapshotter=snapshotter, key=key)
    )


def layers_with_diff_ids(manifest: Manifest, config: ImageConfig) -> list[tuple[Descriptor, str]]:
    layers = [layer for layer in manifest.layers if is_layer(layer.media_type)]
    if len(layers) != len(config.diff_ids):
        raise PyctlError(
            f"image config lists {len(config.diff_ids)} diff IDs for {len(layers)} layers"
        )
    return list(zip(layers, config.diff_ids, strict=True))


def unpack_layer(
    client: Client,
    snapshotter: str,
    layer: Descriptor,
    diff_id: str,
    parent: str,
    chain_id: str,
    later: list[tuple[str, Any]],
) -> bool:
    """Apply one layer on top of ``parent`` as snapshot ``chain_id``. False if it existed.

    The call that labels the layer with its uncompressed digest is started, not waited for: it
    goes into ``later`` (digest, call) for the caller to resolve, so the next layer's snapshot
    does not wait on it."""
    from pyctl._api.services.diff.v1 import diff_pb2  # unpacking only: not for listings
    from pyctl._api.services.snapshots.v1 import snapshots_pb2
    from pyctl._api.types import descriptor_pb2

    labels = {SNAPSHOT_REF_LABEL: chain_id}
    for _attempt in range(3):
        key = f"extract-{random_id()} {chain_id}"
        try:
            prepared = client.call(
                "snapshots",
                "Prepare",
                snapshots_pb2.PrepareSnapshotRequest(
                    snapshotter=snapshotter, key=key, parent=parent, labels=labels
                ),
                what=f"prepare snapshot for layer {layer.digest}",
            )
        except ContainerdAlreadyExists:
            if stat(client, snapshotter, chain_id) is not None:
                return False
            continue
        try:
            applied = client.call(
                "diff",
                "Apply",
                diff_pb2.ApplyRequest(
                    diff=descriptor_pb2.Descriptor(
                        media_type=layer.media_type,
                        digest=layer.digest,
                        size=layer.size,
                        annotations=dict(layer.annotations),
                    ),
                    mounts=list(prepared.mounts),
                ),
                what=f"apply layer {layer.digest}",
            ).applied
            if applied.digest != diff_id:
                raise PyctlError(
                    f"layer {layer.digest}: wrong diff ID after extraction "
                    f"({applied.digest}, image config says {diff_id})"
                )
            try:
                client.call(
                    "snapshots",
                    "Commit",
                    snapshots_pb2.CommitSnapshotRequest(
                        snapshotter=snapshotter, name=chain_id, key=key, labels=labels
                    ),
                    what=f"commit snapshot {chain_id}",
                )
            except ContainerdAlreadyExists:
                with contextlib.suppress(PyctlError):
                    remove(client, snapshotter, key)
                return False
        except BaseException:
            with contextlib.suppress(PyctlError):
                remove(client, snapshotter, key)
            raise
        label = {UNCOMPRESSED_LABEL: diff_id}
        later.append((layer.digest, content.update_labels_future(client, layer.digest, label)))
        return True
    raise PyctlError(f"could not prepare a snapshot for layer {layer.digest} after 3 attempts")


def unpack(
    client: Client,
    snapshotter: str,
    manifest: Manifest,
    config: ImageConfig,
    *,
    wait_for_layer: Callable[[int], None] | None = None,
) -> str:
    """Unpack all layers (skipping those already unpacked); returns the top chain ID.

    ``wait_for_layer(i)``, when given, blocks until layer ``i`` is in the content store, so a
    caller can unpack while later layers are still being written.
    """
    pairs = layers_with_diff_ids(manifest, config)
    chain = chain_ids(config.diff_ids)
    if not chain:
        raise PyctlError("image has no layers to unpack")
    if stat(client, snapshotter, chain[-1]) is None:
        # Find the deepest layer already present, then apply the rest in order.
        start = _first_missing(client, snapshotter, chain)
        labelled: list[tuple[str, Any]] = []
        for i in range(start, len(pairs)):
            if wait_for_layer is not None:
                wait_for_layer(i)
            layer, diff_id = pairs[i]
            parent = chain[i - 1] if i else ""
            unpack_layer(client, snapshotter, layer, diff_id, parent, chain[i], labelled)
        for digest, fut in labelled:
            client.result(fut, f"label {digest}")
    content.update_labels(
        client, manifest.config.digest, {gc_snapshot_label(snapshotter): chain[-1]}
    )
    return chain[-1]


def _first_missing(client: Client, snapshotter: str, chain: Sequence[str]) -> int:
    lo = 0
    for i in range(len(chain) - 1, -1, -1):
        if stat(client, snapshotter, chain[i]) is not None:
            lo = i + 1
            break
    return lo
