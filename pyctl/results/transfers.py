"""Transfers: what `pull`, `push` and `import` return."""

from __future__ import annotations

from typing import NamedTuple


class PullResult(NamedTuple):
    reference: str  # the full, normalized name the image got
    digest: str
    written: int  # blobs fetched
    existing: int  # blobs containerd had
    unpacked: tuple[str, ...]  # platforms unpacked


class PushResult(NamedTuple):
    reference: str
    tag: str
    digest: str
    size: int
    uploaded: int
    mounted: int
    existing: int


class Imported(NamedTuple):
    """An image record an import made."""

    name: str
    digest: str
    unpacked: bool
