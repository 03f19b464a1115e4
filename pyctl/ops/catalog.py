"""A namespace's images as operators see them: records resolved to platforms, configs and sizes.

All reads are batched: one Images.List, one Content.List, then each distinct index, manifest
and config blob read once (concurrently), then every snapshot's usage in one concurrent sweep.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import NamedTuple

from pyctl.containerd import content, images, snapshots
from pyctl.containerd.client import Client
from pyctl.containerd.images import ImageRecord
from pyctl.errors import NotFoundError, PyctlError
from pyctl.oci import (
    Descriptor,
    ImageConfig,
    Index,
    Manifest,
    Platform,
    chain_ids,
    host_platform,
    is_digest,
    is_index,
    is_manifest,
    platform_matches,
    platform_rank,
)

_HEX = frozenset("0123456789abcdef")
CRI_NAMESPACE = "k8s.io"


class PlatformImage(NamedTuple):
    """One platform of an image whose manifest, config and layers are all present locally."""

    platform: Platform
    manifest_desc: Descriptor
    manifest: Manifest
    config: ImageConfig
    blob_size: int  # manifest + config + layers, as declared
    chain: tuple[str, ...]


class ResolvedImage:
    """An image record with the platforms present locally, and (set later) the unpacked size
    of its default platform."""

    def __init__(self, record: ImageRecord, platforms: Sequence[PlatformImage]) -> None:
        self.record = record
        self.platforms = tuple(platforms)
        self.size = 0
        self._default = best_platform(self.platforms, host_platform())
        # when the image was built (this machine's platform), else when its record was made
        self.created = created_of(self._default, record)

    @property
    def id(self) -> str:
        return self.record.target.digest

    def default(self) -> PlatformImage | None:
        """This machine's platform of the image (the best match), else its first one."""
        return self._default


def created_of(p: PlatformImage | None, record: ImageRecord) -> datetime | None:
    """When platform ``p`` of an image was built, else when ``record`` was made."""
    built = p.config.created_at if p is not None else None
    return built or record.created_at


def best_platform(platforms: Sequence[PlatformImage], want: Platform) -> PlatformImage | None:
    matching = [p for p in platforms if platform_matches(want, p.platform)]
    if matching:
        return min(matching, key=lambda p: platform_rank(want, p.platform))
    return platforms[0] if platforms else None


class Catalog:
    def __init__(self, client: Client, snapshotter: str = "") -> None:
        """``snapshotter``: where unpacked sizes are read (not needed for lookups)."""
        self.client = client
        self.snapshotter = snapshotter
        self._present: set[str] | None = None
        self._blobs: dict[str, bytes] = {}
        self._configs: dict[str, frozenset[str]] = {}

    # content ----------------------------------------------------------------------------------

    @property
    def present(self) -> set[str]:
        if self._present is None:
            self._present = {i.digest for i in content.list_infos(self.client)}
        return self._present

    def read_many(self, digests: Iterable[str]) -> None:
        todo = [d for d in dict.fromkeys(digests) if d not in self._blobs and d in self.present]
        if not todo:
            return
        if len(todo) == 1:
            self._blobs[todo[0]] = content.read_blob(self.client, todo[0])
            return
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=min(8, len(todo))) as pool:
            for digest, data in zip(
                todo, pool.map(lambda d: content.read_blob(self.client, d), todo), strict=True
            ):
                self._blobs[digest] = data

    def blob(self, digest: str) -> bytes | None:
        if digest not in self._blobs:
            self.read_many([digest])
        return self._blobs.get(digest)

    # resolution -------------------------------------------------------------------------------

    def _manifests(
        self, records: Sequence[ImageRecord]
    ) -> tuple[dict[str, list[Descriptor]], dict[str, Descriptor], dict[str, Manifest]]:
        """For each record target: its manifest descriptors (an index's entries, or itself);
        every such descriptor by digest; and the manifests present here, parsed."""
        targets = {r.target.digest: r.target for r in records}
        self.read_many(
            d for d, t in targets.items() if is_index(t.media_type) or is_manifest(t.media_type)
        )

        manifests_of: dict[str, list[Descriptor]] = {}
        for digest, desc in targets.items():
            if is_index(desc.media_type):
                data = self._blobs.get(digest)
                if data is None:
                    manifests_of[digest] = []
                    continue
                try:
                    index = Index.parse(data, desc.media_type)
                except PyctlError:
                    manifests_of[digest] = []
                    continue
                manifests_of[digest] = [m for m in index.manifests if is_manifest(m.media_type)]
            elif is_manifest(desc.media_type):
                manifests_of[digest] = [desc]
            else:
                manifests_of[digest] = []

        all_manifests = {m.digest: m for ms in manifests_of.values() for m in ms}
        self.read_many(all_manifests)
        parsed: dict[str, Manifest] = {}
        for digest, desc in all_manifests.items():
            data = self._blobs.get(digest)
            if data is None:
                continue
            try:
                parsed[digest] = Manifest.parse(data, desc.media_type)
            except PyctlError:
                continue
        return manifests_of, all_manifests, parsed

    def config_digests(self, records: Sequence[ImageRecord]) -> dict[str, frozenset[str]]:
        """Target digest -> the config digests of its manifests present here: the IMAGE ID
        that ``crictl images`` and ``docker images`` show."""
        todo = [r for r in records if r.target.digest not in self._configs]
        if todo:
            manifests_of, _, parsed = self._manifests(todo)
            for target, ms in manifests_of.items():
                self._configs[target] = frozenset(
                    parsed[m.digest].config.digest for m in ms if m.digest in parsed
                )
        return {r.target.digest: self._configs[r.target.digest] for r in records}

    def resolve(self, records: Sequence[ImageRecord], *, sizes: bool = True) -> list[ResolvedImage]:
        manifests_of, all_manifests, parsed = self._manifests(records)
        self.read_many(m.config.digest for m in parsed.values())

        per_manifest: dict[str, PlatformImage] = {}
        for digest, manifest in parsed.items():
            data = self._blobs.get(manifest.config.digest)
            if data is None or not all(layer.digest in self.present for layer in manifest.layers):
                continue
            try:
                config = ImageConfig.parse(data)
            except PyctlError:
                continue
            desc = all_manifests[digest]
            plat = (
                desc.platform if desc.platform is not None and desc.platform.os else config.platform
            )
            per_manifest[digest] = PlatformImage(
                platform=plat,
                manifest_desc=desc,
                manifest=manifest,
                config=config,
                blob_size=desc.size + manifest.config.size + sum(x.size for x in manifest.layers),
                chain=tuple(chain_ids(config.diff_ids)),
            )

        out = []
        for record in records:
            plats = [
                per_manifest[m.digest]
                for m in manifests_of.get(record.target.digest, [])
                if m.digest in per_manifest
            ]
            out.append(ResolvedImage(record=record, platforms=plats))
        if sizes:
            self.fill_sizes(out)
        return out

    def usage(self, chains: Iterable[str]) -> dict[str, int]:
        return snapshots.usage_sizes(self.client, self.snapshotter, chains)

    def fill_sizes(self, resolved: Sequence[ResolvedImage]) -> dict[str, int]:
        usage = self.usage(c for r in resolved for p in r.platforms for c in p.chain)
        for r in resolved:
            d = r.default()
            r.size = sum(usage.get(c, 0) for c in d.chain) if d else 0
        return usage

    # lookup -----------------------------------------------------------------------------------

    def records(self) -> list[ImageRecord]:
        return images.list_records(self.client)


def find_records(
    records: Sequence[ImageRecord], query: str, catalog: Catalog | None = None
) -> list[ImageRecord]:
    """Records an operator means by ``query``: a name (normalized like docker), a digest, or a
    unique short ID (at least 4 hex digits, ``sha256:`` optional) of the target digest or —
    given the ``catalog`` to read manifests from — of the config digest (the IMAGE ID that
    crictl and docker print)."""
    from pyctl.errors import InvalidReferenceError
    from pyctl.reference import parse_docker_ref

    by_name = {r.name: r for r in records}
    if query in by_name:
        return [by_name[query]]
    q = query.lower()
    hexpart = q[len("sha256:") :] if q.startswith("sha256:") else q
    if len(hexpart) >= 4 and set(hexpart) <= _HEX and len(hexpart) <= 64:
        prefix = "sha256:" + hexpart
        targets = {r.target.digest for r in records if r.target.digest.startswith(prefix)}
        if catalog is not None:
            configs = catalog.config_digests(records)
            targets.update(t for t, cs in configs.items() if any(c.startswith(prefix) for c in cs))
        if len(targets) > 1:
            raise PyctlError(
                f'"{query}" matches {len(targets)} different images; give more digits of the ID'
            )
        if targets:
            return [r for r in records if r.target.digest in targets]
    try:
        ref = parse_docker_ref(query)
    except InvalidReferenceError:
        return []
    rec = by_name.get(str(ref))
    return [rec] if rec is not None else []


def require_records(
    records: Sequence[ImageRecord], query: str, catalog: Catalog | None = None
) -> list[ImageRecord]:
    found = find_records(records, query, catalog)
    if not found:
        raise NotFoundError(f'no such image "{query}" (see pyctl images)')
    return found


# the CRI plugin's extra records ------------------------------------------------------------------
#
# In k8s.io the CRI plugin keeps, beside each tagged image, a record named ``sha256:<config>``
# (the image ID crictl shows) and one named ``repo@sha256:<target>``. They are part of the
# image, not names of their own: listings fold them into the tagged row, and removing the
# image's last tag removes them too.


def is_config_name(name: str) -> bool:
    """A record named by a config digest (``sha256:<64 hex>``): never a repository."""
    return is_digest(name)


def is_cri_alias(name: str) -> bool:
    """The extra records the CRI plugin keeps: ``sha256:<config>`` and ``repo@sha256:…``."""
    if is_config_name(name):
        return True
    from pyctl.errors import InvalidReferenceError
    from pyctl.reference import parse_normalized_named

    try:
        ref = parse_normalized_named(name)
    except InvalidReferenceError:
        return False
    return ref.digest is not None and ref.tag is None


def is_companion(namespace: str, name: str) -> bool:
    """A record that is one of the CRI plugin's extra records of an image (only in k8s.io:
    elsewhere a ``repo@sha256:…`` record is a name of its own)."""
    return namespace == CRI_NAMESPACE and is_cri_alias(name)


def fold_cri_aliases(records: Sequence[ImageRecord]) -> list[ImageRecord]:
    """Hide CRI alias records whose target also has a better name (a tag, or ``repo@digest``
    for a ``sha256:<config>`` record)."""
    tagged = {r.target.digest for r in records if not is_cri_alias(r.name)}
    by_digest = {
        r.target.digest for r in records if is_cri_alias(r.name) and not is_config_name(r.name)
    }
    out = []
    for r in records:
        if is_cri_alias(r.name):
            if r.target.digest in tagged:
                continue
            if is_config_name(r.name) and r.target.digest in by_digest:
                continue
        out.append(r)
    return out


def visible_records(records: Sequence[ImageRecord], namespace: str) -> list[ImageRecord]:
    """The records an operator sees as images of ``namespace`` (CRI extras folded in k8s.io)."""
    return fold_cri_aliases(records) if namespace == CRI_NAMESPACE else list(records)


def whole_image(
    records: Sequence[ImageRecord], found: Sequence[ImageRecord], namespace: str
) -> list[ImageRecord]:
    """``found``, or — when it is only CRI extra records (``sha256:<config>`` names the
    image like an ID) — every record of the images they belong to."""
    if found and all(is_companion(namespace, r.name) for r in found):
        targets = {r.target.digest for r in found}
        return [r for r in records if r.target.digest in targets]
    return list(found)
