"""The copy engine: move an image's graph of content-addressed descriptors from a source store
to a destination store.

pull, push, import and export are all ``plan`` + ``copy`` with different stores:

1. ``plan`` walks index → manifests (filtered by platform) → config + layers, reading the small
   documents from the source once and verifying each against its descriptor.
2. ``copy`` asks the destination which blobs it lacks, writes configs, then the layers
   concurrently (bounded pool, earliest layers first, each one streamed and verified by the
   destination), then the manifests and the index, children first, and finally lets the
   destination ``commit`` (register the image, tag it).

A destination needs four methods (:class:`Destination`). One that also wants to watch the copy
(containerd's store: it holds the blobs under its lease and unpacks each layer as it lands,
while later layers are still moving) is passed as the ``observer`` too (:class:`Observer`);
the layers are then staggered so that they land in order.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Sequence
from enum import StrEnum
from typing import NamedTuple, Protocol

from pyctl.errors import PyctlError
from pyctl.oci import (
    Descriptor,
    ImageConfig,
    Index,
    Manifest,
    Platform,
    is_index,
    is_manifest,
    normalize_platform,
    platform_matches,
    platform_rank,
    sha256_digest,
)


class Written(StrEnum):
    """What a destination did with a blob (the values are the words progress shows)."""

    COPIED = "done"
    EXISTED = "exists"  # the destination had it already
    UPLOADED = "pushed"
    MOUNTED = "mounted"  # a registry took it from another repository of its own
    QUEUED = "queued"  # noted, to be written later (an archive writes its tar at the end)


class Progress(Protocol):
    def start(self, desc: Descriptor, what: str) -> None: ...
    def advance(self, desc: Descriptor, n: int) -> None: ...
    def done(self, desc: Descriptor, status: str) -> None: ...
    def note(self, text: str) -> None: ...


class NoProgress:
    def start(self, desc: Descriptor, what: str) -> None:
        pass

    def advance(self, desc: Descriptor, n: int) -> None:
        pass

    def done(self, desc: Descriptor, status: str) -> None:
        pass

    def note(self, text: str) -> None:
        pass


class Source(Protocol):
    def read(self, desc: Descriptor) -> bytes:
        """A small document (index, manifest, config), whole and verified."""
        ...

    def open(self, desc: Descriptor, offset: int) -> Iterable[bytes]:
        """The blob's bytes from ``offset`` on."""
        ...


class ManifestNode(NamedTuple):
    desc: Descriptor
    data: bytes
    manifest: Manifest
    config_data: bytes
    config: ImageConfig

    @property
    def platform(self) -> Platform:
        if self.desc.platform is not None and self.desc.platform.os:
            return self.desc.platform
        return self.config.platform


class Plan(NamedTuple):
    """What to copy: the root (index or manifest), its bytes, and the selected manifests."""

    root: Descriptor
    root_data: bytes
    root_index: Index | None  # the root parsed, when it is an index
    manifests: tuple[ManifestNode, ...]
    skipped: tuple[Descriptor, ...] = ()  # index entries left out by the platform filter

    def layers(self) -> list[Descriptor]:
        seen: dict[str, Descriptor] = {}
        for node in self.manifests:
            for layer in node.manifest.layers:
                seen.setdefault(layer.digest, layer)
        return list(seen.values())

    def configs(self) -> list[tuple[Descriptor, bytes]]:
        seen: dict[str, tuple[Descriptor, bytes]] = {}
        for node in self.manifests:
            seen.setdefault(node.manifest.config.digest, (node.manifest.config, node.config_data))
        return list(seen.values())

    def blob_size(self) -> int:
        return sum(d.size for d in self.layers()) + sum(d.size for d, _ in self.configs())

    def documents(self) -> list[tuple[Descriptor, bytes]]:
        """The manifests, then the index (when the root is one): children first."""
        docs = [(n.desc, n.data) for n in self.manifests]
        if self.root_index is not None:
            docs.append((self.root, self.root_data))
        return docs

    def descriptors(self) -> list[Descriptor]:
        """Everything the image is made of: configs, layers, manifests, the index."""
        return [d for d, _ in self.configs()] + self.layers() + [d for d, _ in self.documents()]


class PlatformFilter(NamedTuple):
    """Which manifests of an index to take: all, the best match for each wanted platform, or
    exactly those of ``digests`` (an export's present manifests of the wanted platforms)."""

    platforms: tuple[Platform, ...] = ()
    all: bool = False
    digests: frozenset[str] | None = None

    def select(self, entries: Sequence[Descriptor]) -> list[Descriptor]:
        if self.digests is not None:
            return [e for e in entries if e.digest in self.digests]
        manifests = [e for e in entries if is_manifest(e.media_type)]
        if self.all:
            return manifests
        chosen: dict[str, Descriptor] = {}
        for want in self.platforms:
            matching = [
                e
                for e in manifests
                if e.platform is not None and platform_matches(want, e.platform)
            ]
            if not matching:
                continue
            best = min(matching, key=lambda e: platform_rank(want, e.platform or want))
            chosen.setdefault(best.digest, best)
        return list(chosen.values())

    def describe(self) -> str:
        if self.all:
            return "all platforms"
        return ", ".join(str(p) for p in self.platforms)


def plan(
    source: Source,
    root: Descriptor,
    platforms: PlatformFilter,
    *,
    require_all: bool = False,
) -> Plan:
    """Read the root and the selected manifests and configs from ``source``."""
    data = source.read(root)
    _verify(root, data)
    if is_index(root.media_type):
        index = Index.parse(data, root.media_type)
        selected = platforms.select(index.manifests)
        if not selected:
            available = ", ".join(
                str(e.platform) for e in index.manifests if e.platform is not None and e.platform.os
            )
            raise PyctlError(
                f"no manifest for {platforms.describe()} in this image "
                f"(it has: {available or 'no platform entries'}); use --platform or --all-platforms"
            )
        skipped = tuple(e for e in index.manifests if e not in selected)
        nodes = tuple(_manifest_node(source, desc) for desc in selected)
        if require_all and skipped:
            raise PyctlError("image index lists manifests that were not selected")
        return Plan(root, data, index, nodes, skipped)
    if is_manifest(root.media_type):
        node = _manifest_node(source, root, data)
        if (
            not platforms.all
            and platforms.platforms
            and not any(platform_matches(p, node.platform) for p in platforms.platforms)
        ):
            raise PyctlError(
                f"image is for {node.platform}, not {platforms.describe()} "
                "(use --platform to choose another one)"
            )
        return Plan(root, data, None, (node,))
    raise PyctlError(f"unsupported media type {root.media_type or '(none)'} for {root.digest}")


def _manifest_node(source: Source, desc: Descriptor, data: bytes | None = None) -> ManifestNode:
    if data is None:
        data = source.read(desc)
        _verify(desc, data)
    manifest = Manifest.parse(data, desc.media_type)
    config_data = source.read(manifest.config)
    _verify(manifest.config, config_data)
    return ManifestNode(desc, data, manifest, config_data, ImageConfig.parse(config_data))


def _verify(desc: Descriptor, data: bytes) -> None:
    if len(data) != desc.size or sha256_digest(data) != desc.digest:
        raise PyctlError(
            f"content for {desc.digest} does not match its descriptor "
            f"(got {len(data)} bytes with digest {sha256_digest(data)}, expected {desc.size} bytes)"
        )


class Destination(Protocol):
    def missing(self, descs: Sequence[Descriptor]) -> set[str]:
        """Digests among ``descs`` the destination does not have yet."""
        ...

    def write_blob(self, desc: Descriptor, source: Source, progress: Progress) -> Written:
        """Copy one blob (a layer) from the source, verified."""
        ...

    def write_document(self, desc: Descriptor, data: bytes) -> None:
        """Store a small document (config, manifest, index) given whole."""
        ...

    def commit(self, plan: Plan) -> None:
        """Everything is copied: register / tag."""
        ...


class Observer(Protocol):
    """Watches a copy as it goes (optional; containerd's store is one)."""

    @property
    def in_order(self) -> bool:
        """Whether layers are used in order as they land (unpack): the engine then staggers
        their starts so that they land in order."""
        ...

    def started(self, plan: Plan) -> None:
        """Before anything is looked up or moved (hold the blobs, start background work)."""
        ...

    def landed(self, desc: Descriptor) -> None:
        """``desc`` is now in the destination (written or there already)."""
        ...

    def finishing(self) -> None:
        """Everything is copied, the destination is about to commit: finish background work
        (its failure fails the copy)."""
        ...

    def failed(self) -> None:
        """The copy failed: stop background work."""
        ...


class _NoObserver:
    in_order = False

    def started(self, plan: Plan) -> None:
        pass

    def landed(self, desc: Descriptor) -> None:
        pass

    def finishing(self) -> None:
        pass

    def failed(self) -> None:
        pass


class CopyStats:
    """The digests a copy wrote, and those the destination had already."""

    __slots__ = ("existing", "written")

    def __init__(self) -> None:
        self.written: list[str] = []
        self.existing: list[str] = []


def copy(
    source: Source,
    dest: Destination,
    the_plan: Plan,
    *,
    concurrency: int = 3,
    progress: Progress | None = None,
    observer: Observer | None = None,
) -> CopyStats:
    progress = progress or NoProgress()
    watch: Observer = observer or _NoObserver()
    stats = CopyStats()
    layers = the_plan.layers()
    try:
        watch.started(the_plan)
        missing = dest.missing(the_plan.descriptors())
        for desc, data in the_plan.configs():
            if desc.digest in missing:
                progress.start(desc, "config")
                dest.write_document(desc, data)
                stats.written.append(desc.digest)
                progress.done(desc, Written.COPIED)
            watch.landed(desc)
        for desc in layers:
            if desc.digest not in missing:
                stats.existing.append(desc.digest)
                progress.done(desc, Written.EXISTED)
                watch.landed(desc)
        todo = [d for d in layers if d.digest in missing]
        _transfer(source, dest, todo, concurrency, progress, stats, watch)
        for desc, data in the_plan.documents():
            if desc.digest in missing:
                dest.write_document(desc, data)
            watch.landed(desc)
        watch.finishing()
        dest.commit(the_plan)
    except BaseException:
        watch.failed()
        raise
    return stats


def _transfer(
    source: Source,
    dest: Destination,
    todo: Sequence[Descriptor],
    concurrency: int,
    progress: Progress,
    stats: CopyStats,
    watch: Observer,
) -> None:
    """Write ``todo`` with at most ``concurrency`` blobs in flight, earliest first.

    When the observer uses the layers in order (unpack), a blob starts only once the one
    before it is half written (or done), so the blobs land in order instead of all at the end
    together: the observer can start on the first one early and keep pace, rather than
    unpacking everything after the last byte arrived. On a busy machine that is the shorter
    pull; on a slow network it still keeps several downloads going."""
    if not todo:
        return
    if concurrency <= 1 or len(todo) == 1:
        for desc in todo:
            _one(source, dest, desc, progress, stats, watch)
        return
    from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait

    lock = threading.Lock()
    cancelled = threading.Event()
    gate = _Stagger(todo, progress, cancelled) if watch.in_order else None
    counting: Progress = gate if gate is not None else progress

    def work(index: int, desc: Descriptor) -> None:
        if gate is not None:
            gate.wait_turn(index)
        if cancelled.is_set():
            return
        try:
            status = dest.write_blob(desc, source, counting)
        except BaseException:
            cancelled.set()  # before the blobs waiting on this one are let go
            raise
        finally:
            if gate is not None:
                gate.finished(index)
        with lock:
            (stats.existing if status is Written.EXISTED else stats.written).append(desc.digest)
        progress.done(desc, status)
        watch.landed(desc)

    def cancel() -> None:
        cancelled.set()
        if gate is not None:
            gate.wake()

    pool = ThreadPoolExecutor(max_workers=min(concurrency, len(todo)), thread_name_prefix="copy")
    try:
        futures = [pool.submit(work, i, d) for i, d in enumerate(todo)]
        done, pending = wait(futures, return_when=FIRST_EXCEPTION)
        for fut in done:
            exc = fut.exception()
            if exc is not None:
                cancel()
                for p in pending:
                    p.cancel()
                raise exc
    except BaseException:
        cancel()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


STAGGER_MAX_WAIT = 0.5  # seconds a blob waits at most for the one before it


class _Stagger:
    """Counts each blob's bytes as they are written (passing them on to the real progress) and
    holds blob ``i`` back until blob ``i - 1`` is half written or finished, or has been going
    for ``STAGGER_MAX_WAIT``: on a slow network the downloads then still all run at once
    (their number is what limits the speed there), while on a fast one, where the machine's
    CPU is the limit, they land in order."""

    def __init__(
        self, todo: Sequence[Descriptor], progress: Progress, cancelled: threading.Event
    ) -> None:
        self._sizes = [d.size for d in todo]
        self._index = {d.digest: i for i, d in enumerate(todo)}
        self._written = [0] * len(todo)
        self._finished = [False] * len(todo)
        self._started: list[float | None] = [None] * len(todo)
        self._progress = progress
        self._cancelled = cancelled
        self._cond = threading.Condition()

    def wait_turn(self, index: int) -> None:
        with self._cond:
            if index:
                prev = index - 1
                self._cond.wait_for(
                    lambda: self._started[prev] is not None or self._cancelled.is_set()
                )
                started = self._started[prev] or 0.0
                while not (
                    self._finished[prev]
                    or self._cancelled.is_set()
                    or 2 * self._written[prev] >= self._sizes[prev]
                ):
                    left = started + STAGGER_MAX_WAIT - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
            self._started[index] = time.monotonic()
            self._cond.notify_all()

    def finished(self, index: int) -> None:
        with self._cond:
            self._finished[index] = True
            self._cond.notify_all()

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    # Progress, counting on the way through
    def start(self, desc: Descriptor, what: str) -> None:
        self._progress.start(desc, what)

    def advance(self, desc: Descriptor, n: int) -> None:
        self._progress.advance(desc, n)
        i = self._index.get(desc.digest)
        if i is not None:
            with self._cond:
                self._written[i] += n
                if 2 * self._written[i] >= self._sizes[i]:
                    self._cond.notify_all()

    def done(self, desc: Descriptor, status: str) -> None:
        self._progress.done(desc, status)

    def note(self, text: str) -> None:
        self._progress.note(text)


def _one(
    source: Source,
    dest: Destination,
    desc: Descriptor,
    progress: Progress,
    stats: CopyStats,
    watch: Observer,
) -> None:
    status = dest.write_blob(desc, source, progress)
    (stats.existing if status is Written.EXISTED else stats.written).append(desc.digest)
    progress.done(desc, status)
    watch.landed(desc)


def default_filter(platforms: Sequence[str], all_platforms: bool) -> PlatformFilter:
    from pyctl.oci import host_platform, parse_platform

    if all_platforms:
        return PlatformFilter(all=True)
    if platforms:
        return PlatformFilter(tuple(normalize_platform(parse_platform(p)) for p in platforms))
    return PlatformFilter((host_platform(),))
