"""What an image archive holds: the OCI image layout (``oci-layout``, ``index.json``,
``blobs/``), preferred when present (Docker ≥ 25 writes both), or a ``docker save`` tree
(``manifest.json``; ``repositories`` is ignored) whose entries become docker v2 manifests the
way containerd's importer builds them.

The result is a :class:`Layout`: the archive's index entries (descriptors with their name
annotations) and, for docker archives, the manifests made for them. How the bytes are reached
(by offset in a file, or already streamed into containerd) is the caller's :class:`Files`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from pyctl.archive.names import ref_object, repo_tag
from pyctl.archive.tarball import ArchiveError, clean_path, compression_of
from pyctl.oci import (
    ANNOTATION_IMAGE_NAME,
    ANNOTATION_REF_NAME,
    DOCKER_CONFIG,
    DOCKER_LAYER,
    DOCKER_LAYER_GZIP,
    DOCKER_MANIFEST,
    MAX_MANIFEST_SIZE,
    OCI_LAYER_ZSTD,
    Descriptor,
    ImageConfig,
    Index,
    sha256_digest,
)

LAYOUT_FILE = "oci-layout"
INDEX_FILE = "index.json"
DOCKER_MANIFEST_FILE = "manifest.json"
METADATA_FILES = frozenset({LAYOUT_FILE, INDEX_FILE, DOCKER_MANIFEST_FILE, "repositories"})
LAYOUT_VERSION = "1.0.0"
_BLOB_PATH = re.compile(r"blobs/sha256/([a-f0-9]{64})")


def blob_path(digest: str) -> str:
    algorithm, _, encoded = digest.partition(":")
    return f"blobs/{algorithm}/{encoded}"


def digest_in_path(path: str) -> str | None:
    """``blobs/sha256/<hex>`` names its own digest (checked when the blob is written)."""
    m = _BLOB_PATH.fullmatch(path)
    return f"sha256:{m.group(1)}" if m else None


class Files(Protocol):
    """The archive's files, however they are reached."""

    def size(self, path: str) -> int | None:
        """A file's size (links followed), or None if the archive has no such file."""
        ...

    def small(self, path: str, limit: int = MAX_MANIFEST_SIZE) -> bytes | None:
        """A small file whole (links followed), or None if the archive has no such file."""
        ...

    def head(self, path: str) -> bytes:
        """The first bytes of a file (for compression magic)."""
        ...

    def digest(self, path: str) -> str:
        """The sha256 digest of a file's bytes."""
        ...


@dataclass
class Layout:
    kind: str  # "oci" or "docker"
    entries: list[Descriptor]
    documents: dict[str, bytes] = field(default_factory=dict)  # made-up manifests by digest
    paths: dict[str, str] = field(default_factory=dict)  # digest -> file, docker archives

    def path_of(self, digest: str) -> str:
        return self.paths.get(digest) or blob_path(digest)


def read_layout(files: Files) -> Layout:
    layout = files.small(LAYOUT_FILE, 4096)
    if layout is not None:
        try:
            version = json.loads(layout).get("imageLayoutVersion")
        except (ValueError, AttributeError):
            raise ArchiveError("oci-layout is not valid JSON") from None
        if version != LAYOUT_VERSION:
            raise ArchiveError(f"unsupported OCI layout version {version!r}")
        index = files.small(INDEX_FILE)
        if index is None:
            raise ArchiveError("the OCI layout has no index.json")
        return Layout("oci", list(Index.parse(index).manifests))
    manifest = files.small(DOCKER_MANIFEST_FILE)
    if manifest is None:
        raise ArchiveError(
            "not an image archive: it has neither an OCI layout (oci-layout, index.json) "
            "nor a docker manifest.json"
        )
    return _docker_layout(files, manifest)


# docker save ------------------------------------------------------------------------------------


def _docker_entries(data: bytes) -> list[dict[str, Any]]:
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ArchiveError(f"manifest.json is not valid JSON: {exc}") from None
    if not isinstance(doc, list) or not all(isinstance(e, dict) for e in doc):
        raise ArchiveError("manifest.json is not a list of images")
    for e in doc:
        if not isinstance(e.get("Config"), str) or not isinstance(e.get("Layers"), list):
            raise ArchiveError("manifest.json: an image without Config or Layers")
        if not all(isinstance(x, str) for x in e["Layers"]):
            raise ArchiveError("manifest.json: Layers must be file names")
        if not isinstance(e.get("RepoTags") or [], list):
            raise ArchiveError("manifest.json: RepoTags must be a list")
    return doc


_LAYER_TYPES = {"none": DOCKER_LAYER, "gzip": DOCKER_LAYER_GZIP, "zstd": OCI_LAYER_ZSTD}


def _docker_layer(files: Files, path: str, diff_id: str | None) -> Descriptor:
    head = files.head(path)
    try:
        compression = compression_of(head)
    except ArchiveError as exc:
        raise ArchiveError(f"layer {path}: {exc}") from None
    if compression == "none" and diff_id:
        digest = diff_id  # an uncompressed layer is its diff ID (checked when written)
    else:
        digest = digest_in_path(path) or files.digest(path)
    return Descriptor(_LAYER_TYPES[compression], digest, files.size(path) or 0)


def manifest_json(config: Descriptor, layers: Sequence[Descriptor]) -> bytes:
    """A docker v2 manifest, serialized as containerd's importer does (Go's field order,
    compact), so the same archive gives the same manifest digest."""

    def d(x: Descriptor) -> dict[str, Any]:
        return {"mediaType": x.media_type, "digest": x.digest, "size": x.size}

    doc = {
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": d(config),
        "layers": [d(x) for x in layers],
    }
    return json.dumps(doc, separators=(",", ":")).encode()


def _docker_layout(files: Files, data: bytes) -> Layout:
    out = Layout("docker", [])
    for entry in _docker_entries(data):
        config_path = clean_path(entry["Config"])
        config_data = files.small(config_path)
        if config_data is None:
            raise ArchiveError(f"manifest.json names config {config_path}, not in the archive")
        config = Descriptor(DOCKER_CONFIG, sha256_digest(config_data), len(config_data))
        image = ImageConfig.parse(config_data)
        out.paths[config.digest] = config_path
        layers = []
        for i, name in enumerate(entry["Layers"]):
            path = clean_path(name)
            if files.size(path) is None:
                raise ArchiveError(f"manifest.json names layer {path}, not in the archive")
            diff_id = image.diff_ids[i] if i < len(image.diff_ids) else None
            layer = _docker_layer(files, path, diff_id)
            out.paths.setdefault(layer.digest, path)
            layers.append(layer)
        manifest = manifest_json(config, layers)
        digest = sha256_digest(manifest)
        out.documents[digest] = manifest
        platform = image.platform if image.platform.os else None
        desc = Descriptor(DOCKER_MANIFEST, digest, len(manifest), platform=platform)
        tags = entry.get("RepoTags") or []
        if not tags:
            out.entries.append(desc)
        for tag in tags:
            name = repo_tag(str(tag))
            annotations = {ANNOTATION_IMAGE_NAME: name, ANNOTATION_REF_NAME: ref_object(name)}
            out.entries.append(
                Descriptor(desc.media_type, digest, desc.size, annotations, platform)
            )
    return out
