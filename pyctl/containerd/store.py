"""containerd as a store of the copy engine.

As a source (push, export) it reads blobs from the content service. As a destination (pull,
import) it writes blobs through the Write stream, labels parents so the garbage collector
keeps their children (``containerd.io/gc.ref.content.*``), records where blobs came from
(``containerd.io/distribution.source.<host>``) and registers the image record last. As the
copy's observer it holds every blob of the image under the caller's lease before looking
for any, and unpacks layers into the snapshotter while later layers are still arriving.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from pyctl.containerd import content, images, snapshots
from pyctl.containerd.client import Client, ContainerdNotFound
from pyctl.containerd.images import ImageRecord
from pyctl.copy import ManifestNode, Plan, Progress, Source, Written
from pyctl.errors import PyctlError
from pyctl.oci import (
    Descriptor,
    Index,
    Manifest,
    host_platform,
    is_config,
    is_index,
    is_layer,
    is_manifest,
    platform_matches,
)

SOURCE_LABEL_PREFIX = "containerd.io/distribution.source."
MAX_LABEL = 4096


def ingest_ref(desc: Descriptor) -> str:
    """containerd's ingest key for a descriptor (``remotes.MakeRefKey``)."""
    key = desc.digest
    name = desc.annotations.get("org.opencontainers.image.ref.name")
    if name:
        key = f"{name}@{key}"
    if is_manifest(desc.media_type):
        return "manifest-" + key
    if is_index(desc.media_type):
        return "index-" + key
    if is_layer(desc.media_type):
        return "layer-" + key
    if is_config(desc.media_type):
        return "config-" + key
    return "unknown-" + key


def gc_labels_for(parent: Descriptor, children: Sequence[Descriptor]) -> dict[str, str]:
    """``containerd.io/gc.ref.content.*`` labels a parent carries for its children."""
    labels: dict[str, str] = {}
    counters: dict[str, int] = {}
    for child in children:
        if is_config(child.media_type):
            key = "containerd.io/gc.ref.content.config"
        elif is_manifest(child.media_type):
            key = "containerd.io/gc.ref.content.m."
        elif is_layer(child.media_type):
            key = "containerd.io/gc.ref.content.l."
        else:
            key = "containerd.io/gc.ref.content."
        n = counters.get(key, 0)
        counters[key] = n + 1
        if n > 0 or key.endswith("."):
            key = f"{key}{n}"
        labels[key] = child.digest
    return labels


def merge_source(existing: str | None, repo: str) -> str:
    repos = {r for r in (existing or "").split(",") if r}
    repos.add(repo)
    return ",".join(sorted(repos))


class _Aborted(Exception):
    pass


_UNASKED = object()


class LocalFirstSource:
    """The source of a pull: the small documents (index, manifests, configs) that containerd
    already holds are read from there, verified against their descriptors, instead of being
    fetched again (a re-pull of an unchanged image costs one manifest HEAD); everything else,
    and anything missing or damaged locally, comes from ``remote``."""

    def __init__(self, client: Client, remote: Source) -> None:
        self.client = client
        self.remote = remote

    def read(self, desc: Descriptor) -> bytes:
        from pyctl.oci import sha256_digest

        buf = bytearray()
        try:
            for chunk in content.read_chunks(self.client, desc.digest):
                buf += chunk
                if len(buf) > desc.size:
                    break
        except ContainerdNotFound:
            return self.remote.read(desc)
        data = bytes(buf)
        if len(data) != desc.size or sha256_digest(data) != desc.digest:
            return self.remote.read(desc)
        return data

    def open(self, desc: Descriptor, offset: int) -> Iterable[bytes]:
        return self.remote.open(desc, offset)


class ContainerdStore:
    """Source, destination and observer of a copy over one containerd namespace (``client``
    carries the lease)."""

    def __init__(
        self,
        client: Client,
        *,
        snapshotter: str = "overlayfs",
        unpack: str = "auto",
        source_hostname: str | None = None,
        source_repo: str | None = None,
        names: Sequence[str] = (),
        record_labels: Mapping[str, str] | None = None,
    ) -> None:
        self.client = client
        self.snapshotter = snapshotter
        self.unpack_mode = unpack
        self.source_label = (
            (source_label_key(source_hostname), source_repo)
            if source_hostname and source_repo
            else None
        )
        self.names = list(names)
        self.record_labels = dict(record_labels or {})
        self._labels: dict[str, dict[str, str]] = {}  # existing blobs' labels
        self._ready: dict[str, threading.Event] = {}
        self._lock = threading.Lock()
        self._abort = threading.Event()
        self._unpackers: list[threading.Thread] = []
        self._unpack_errors: list[BaseException] = []
        self.unpacked: list[str] = []
        self.wrote = False  # a blob write began: content (maybe partial) worth keeping
        self._root: object = _UNASKED  # containerd's content directory, once asked

    # source -----------------------------------------------------------------------------------

    def read(self, desc: Descriptor) -> bytes:
        try:
            return content.read_blob(self.client, desc.digest)
        except ContainerdNotFound:
            raise PyctlError(f"content {desc.digest} is not in containerd") from None

    def open(self, desc: Descriptor, offset: int) -> Iterator[bytes]:
        """The blob from ``offset`` on: from containerd's own file when this process can open
        it (see :func:`content.open_committed`), else through the Read stream."""
        root = self._content_root()
        if root is not None:
            content.info(self.client, desc.digest)  # the namespace holds it, or NotFound
            opened = content.open_committed(root, desc.digest, desc.size)
            if opened is not None:
                fd, path = opened
                if self.client.debug:
                    sys.stderr.write(f"debug: read {path} from byte {offset}\n")
                yield from content.file_chunks(fd, path, offset)
                return
        yield from content.read_chunks(self.client, desc.digest, offset)

    def _content_root(self) -> str | None:
        with self._lock:
            if self._root is _UNASKED:
                try:
                    self._root = content.local_root(self.client)
                except PyctlError:  # an old or restricted containerd: the Read stream it is
                    self._root = None
            return self._root if isinstance(self._root, str) else None

    def info_labels(self, digests: Iterable[str]) -> dict[str, dict[str, str]]:
        """Labels of the given blobs (absent ones left out), fetched concurrently."""
        futures = {d: content.info_future(self.client, d) for d in dict.fromkeys(digests)}
        out: dict[str, dict[str, str]] = {}
        for d, fut in futures.items():
            try:
                out[d] = dict(content.info_answer(self.client.result(fut, d)).labels)
            except ContainerdNotFound:
                continue
        return out

    # observer ---------------------------------------------------------------------------------

    @property
    def in_order(self) -> bool:
        return bool(self._unpackers)

    def started(self, plan: Plan) -> None:
        """Hold the image's blobs under the lease, then start the unpack workers for the
        manifests to unpack."""
        if self.client.lease:
            # Lease first, look second: a blob found present is then already held, so a
            # garbage collection (an `rmi` of another image sharing it) cannot take it
            # between the look and the image record.
            self._lease_add(list(dict.fromkeys(d.digest for d in plan.descriptors())))
        for node in self._to_unpack(plan):
            t = threading.Thread(target=self._unpack, args=(node,), daemon=True, name="unpack")
            self._unpackers.append(t)
            t.start()

    def landed(self, desc: Descriptor) -> None:
        self._event(desc.digest).set()

    def finishing(self) -> None:
        for t in self._unpackers:
            while t.is_alive():
                t.join(timeout=0.5)
        if self._unpack_errors:
            raise self._unpack_errors[0]

    def failed(self) -> None:
        self._abort.set()
        for t in self._unpackers:
            t.join(timeout=5)

    def _to_unpack(self, plan: Plan) -> list[ManifestNode]:
        if self.unpack_mode == "false":
            return []
        if self.unpack_mode == "true":
            return list(plan.manifests)
        host = host_platform()
        return [n for n in plan.manifests if platform_matches(host, n.platform)]

    def _event(self, digest: str) -> threading.Event:
        with self._lock:
            ev = self._ready.get(digest)
            if ev is None:
                ev = self._ready[digest] = threading.Event()
            return ev

    def _wait_ready(self, digest: str) -> None:
        ev = self._event(digest)
        while not ev.wait(0.5):
            if self._abort.is_set():
                raise _Aborted
        if self._abort.is_set():
            raise _Aborted

    def _unpack(self, node: ManifestNode) -> None:
        def wait(i: int) -> None:
            self._wait_ready(node.manifest.layers[i].digest)

        try:
            # The config gets the gc.ref.snapshot label at the end: it must be written first.
            self._wait_ready(node.manifest.config.digest)
            snapshots.unpack(
                self.client, self.snapshotter, node.manifest, node.config, wait_for_layer=wait
            )
            self.unpacked.append(str(node.platform))
        except _Aborted:
            pass
        except BaseException as exc:  # reported by commit()
            self._unpack_errors.append(exc)

    # destination ------------------------------------------------------------------------------

    def missing(self, descs: Sequence[Descriptor]) -> set[str]:
        present = self.info_labels(d.digest for d in descs)
        self._labels.update(present)
        return {d.digest for d in descs if d.digest not in present}

    def _lease_add(self, digests: list[str]) -> None:
        """Hold blobs under our lease (absent ones too: the lease then holds them once they
        are written), so GC cannot take them before the image record exists."""
        lease = self.client.lease or ""
        futures = [
            self.client.future_raw(
                "leases.AddResource",
                (1, "id", lease),
                (2, "resource", ((1, "id", d), (2, "type", "content"))),
            )
            for d in digests
        ]
        for fut in futures:
            self.client.result(fut)

    def _commit_labels(self, desc: Descriptor, data: bytes | None = None) -> dict[str, str]:
        labels = _gc_labels(desc, data) if data is not None else {}
        if self.source_label is not None:
            key, repo = self.source_label
            labels[key] = merge_source(None, repo)
        return labels

    def write_blob(self, desc: Descriptor, source: Source, progress: Progress) -> Written:
        self.wrote = True
        progress.start(desc, "layer" if is_layer(desc.media_type) else "blob")
        written = content.write_blob(
            self.client,
            ingest_ref(desc),
            desc.digest,
            desc.size,
            lambda offset: source.open(desc, offset),
            labels=self._commit_labels(desc),
            progress=lambda n: progress.advance(desc, n),
        )
        return Written.COPIED if written else Written.EXISTED

    def write_document(self, desc: Descriptor, data: bytes) -> None:
        self.wrote = True
        content.write_blob(
            self.client,
            ingest_ref(desc),
            desc.digest,
            desc.size,
            lambda offset: [data[offset:]],
            labels=self._commit_labels(desc, data),
        )

    def commit(self, plan: Plan) -> None:
        self._label_existing(plan)
        for name in self.names:
            images.put(
                self.client,
                ImageRecord(name=name, target=plan.root, labels=self.record_labels),
            )

    def _label_existing(self, plan: Plan) -> None:
        """Blobs that were already present get the labels new ones got at commit."""
        wanted: dict[str, dict[str, str]] = {}
        documents = {d.digest: data for d, data in plan.documents()}
        for desc in plan.descriptors():
            have = self._labels.get(desc.digest)
            if have is None:
                continue
            gc = _gc_labels(desc, documents[desc.digest]) if desc.digest in documents else {}
            update = {k: v for k, v in gc.items() if have.get(k) != v}
            if self.source_label is not None:
                key, repo = self.source_label
                merged = merge_source(have.get(key), repo)
                if merged != have.get(key) and len(key) + len(merged) <= MAX_LABEL:
                    update[key] = merged
            if update:
                wanted[desc.digest] = update
        _update_many(self.client, wanted)

    def add_source(self, have: Mapping[str, Mapping[str, str]], hostname: str, repo: str) -> None:
        """After a push: remember that these blobs (digest: their labels, as read before the
        push) are now also in ``repo`` of the registry on ``hostname``."""
        key = source_label_key(hostname)
        wanted = {}
        for d, labels in have.items():
            merged = merge_source(labels.get(key), repo)
            if merged != labels.get(key) and len(key) + len(merged) <= MAX_LABEL:
                wanted[d] = {key: merged}
        _update_many(self.client, wanted)


def _gc_labels(desc: Descriptor, data: bytes) -> dict[str, str]:
    """The gc.ref labels a manifest or an index carries for the children it names."""
    if is_index(desc.media_type):
        return gc_labels_for(desc, Index.parse(data, desc.media_type).manifests)
    if is_manifest(desc.media_type):
        return gc_labels_for(desc, Manifest.parse(data, desc.media_type).children())
    return {}


def _update_many(client: Client, wanted: Mapping[str, Mapping[str, str]]) -> None:
    """content.update_labels for many blobs at once (concurrent calls)."""
    futures: list[Any] = [
        content.update_labels_future(client, digest, labels) for digest, labels in wanted.items()
    ]
    for fut in futures:
        with contextlib.suppress(ContainerdNotFound):
            client.result(fut)


def source_label_key(hostname: str) -> str:
    """``containerd.io/distribution.source.<hostname>``: containerd names the registry by its
    host name alone, without the port (``myreg`` for ``myreg:5000``)."""
    return SOURCE_LABEL_PREFIX + hostname
