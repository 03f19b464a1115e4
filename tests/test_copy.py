"""The copy engine's scheduling of layer transfers, with in-memory stores.

containerd and registries are real in integration/; here the stores are small fakes so that the
order and the times at which the engine starts and feeds blobs can be observed exactly."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Iterable, Sequence
from types import SimpleNamespace

import pytest

from pyctl import copy as copy_module
from pyctl.containerd.store import ContainerdStore
from pyctl.copy import (
    CopyStats,
    NoProgress,
    Plan,
    PlatformFilter,
    Progress,
    Written,
    _transfer,
    copy,
    plan,
)
from pyctl.errors import PyctlError
from pyctl.oci import Descriptor

LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
CONFIG = "application/vnd.oci.image.config.v1+json"
PIECE = 1000


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _layers(n: int, size: int = 10 * PIECE) -> list[Descriptor]:
    return [Descriptor(LAYER, f"sha256:{i:064x}", size) for i in range(n)]


class _Source:
    """Serves documents whole and blobs in PIECE-sized pieces, ``delay`` seconds apart; with a
    ``barrier``, every blob's first piece waits for the others to start too."""

    def __init__(
        self,
        documents: dict[str, bytes] | None = None,
        delay: float = 0.002,
        barrier: threading.Barrier | None = None,
    ) -> None:
        self.documents = documents or {}
        self.delay = delay
        self.barrier = barrier

    def read(self, desc: Descriptor) -> bytes:
        return self.documents[desc.digest]

    def open(self, desc: Descriptor, offset: int) -> Iterable[bytes]:
        for i in range(offset, desc.size, PIECE):
            if i == offset and self.barrier is not None:
                self.barrier.wait(timeout=3)
            time.sleep(self.delay)  # let the other transfers run in between
            yield b"x" * PIECE


class _Dest:
    """Records, per blob, when its write started and how many bytes the others had by then."""

    def __init__(self, in_order: bool, fail: str | None = None) -> None:
        self.in_order = in_order
        self.fail = fail
        self.lock = threading.Lock()
        self.written: dict[str, int] = {}
        self.begun: list[tuple[str, dict[str, int], float]] = []
        self.running = 0
        self.max_running = 0
        self.ready: list[str] = []
        self.documents: list[str] = []
        self.committed = False

    def write_blob(self, desc: Descriptor, source: _Source, progress: Progress) -> Written:
        with self.lock:
            self.begun.append((desc.digest, dict(self.written), time.monotonic()))
            self.running += 1
            self.max_running = max(self.max_running, self.running)
        try:
            for piece in source.open(desc, 0):
                if self.fail == desc.digest:
                    raise PyctlError(f"blob {desc.digest}: connection reset")
                with self.lock:
                    self.written[desc.digest] = self.written.get(desc.digest, 0) + len(piece)
                progress.advance(desc, len(piece))
        finally:
            with self.lock:
                self.running -= 1
        return Written.COPIED

    def missing(self, descs: Sequence[Descriptor]) -> set[str]:
        return {d.digest for d in descs}

    def write_document(self, desc: Descriptor, data: bytes) -> None:
        self.documents.append(desc.digest)

    def commit(self, plan: Plan) -> None:
        self.committed = True

    # as the observer

    def started(self, plan: Plan) -> None:
        pass

    def landed(self, desc: Descriptor) -> None:
        self.ready.append(desc.digest)

    def finishing(self) -> None:
        pass

    def failed(self) -> None:
        pass


def _image(layers: int, size: int) -> tuple[Descriptor, dict[str, bytes], list[Descriptor]]:
    """A one-platform image: its manifest descriptor, its documents by digest, its layers."""
    descs = _layers(layers, size)
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [f"sha256:{i:064x}" for i in range(layers)]},
        }
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST,
            "config": {"mediaType": CONFIG, "digest": _digest(config), "size": len(config)},
            "layers": [{"mediaType": LAYER, "digest": d.digest, "size": d.size} for d in descs],
        }
    ).encode()
    root = Descriptor(MANIFEST, _digest(manifest), len(manifest))
    return root, {root.digest: manifest, _digest(config): config}, descs


def _copy(dest: _Dest, source: _Source, root: Descriptor) -> CopyStats:
    the_plan = plan(source, root, PlatformFilter(all=True))
    return copy(source, dest, the_plan, concurrency=3, observer=dest)  # type: ignore[arg-type]


def test_copy_staggers_layers_for_a_destination_that_unpacks() -> None:
    root, docs, layers = _image(6, 10 * PIECE)
    dest = _Dest(in_order=True)
    stats = _copy(dest, _Source(docs), root)
    assert [d for d, _, _ in dest.begun] == [d.digest for d in layers]
    for i, (_, seen, _) in enumerate(dest.begun[1:], start=1):
        prev = layers[i - 1]
        assert seen.get(prev.digest, 0) * 2 >= prev.size, f"layer {i} started too early: {seen}"
    assert set(stats.written) >= {d.digest for d in layers}
    assert 2 <= dest.max_running <= 3  # staggered, not one after the other
    assert dest.committed and dest.ready[-1] == root.digest


def test_copy_starts_every_slot_at_once_for_other_destinations(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the three first blobs must all be running together to get past the barrier: a
    # staggered start would wait for the first one, which waits at the barrier, and fail
    monkeypatch.setattr(copy_module, "STAGGER_MAX_WAIT", 30.0)
    root, docs, layers = _image(3, 10 * PIECE)
    dest = _Dest(in_order=False)
    _copy(dest, _Source(docs, barrier=threading.Barrier(3)), root)
    assert dest.max_running == 3
    assert sorted(d for d, _, _ in dest.begun) == sorted(d.digest for d in layers)


def test_containerd_store_consumes_in_order_only_while_it_unpacks() -> None:
    root, docs, _ = _image(2, PIECE)
    the_plan = plan(_Source(docs), root, PlatformFilter(all=True))
    no_lease = SimpleNamespace(lease=None)  # no calls made
    lazy = ContainerdStore(no_lease, unpack="false")  # type: ignore[arg-type]
    lazy.started(the_plan)
    assert lazy.in_order is False
    unpacking = ContainerdStore(no_lease, unpack="true")  # type: ignore[arg-type]
    unpacking.started(the_plan)  # starts the unpacker, which waits for the config
    try:
        assert unpacking.in_order is True
    finally:
        unpacking.failed()


def test_a_slow_blob_holds_the_next_one_back_only_so_long(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # a slow network: half of a blob takes far longer than STAGGER_MAX_WAIT, so each next
    # blob starts once that wait is over, and every slot gets busy
    monkeypatch.setattr(copy_module, "STAGGER_MAX_WAIT", 0.1)
    todo = _layers(3, size=200 * PIECE)  # some 0.4 s each
    dest = _Dest(in_order=True)
    _transfer(_Source(), dest, todo, 3, NoProgress(), CopyStats(), dest)  # type: ignore[arg-type]
    assert [d for d, _, _ in dest.begun] == [d.digest for d in todo]
    (_, _, t0), (_, _, t1), (_, seen, t2) = dest.begun
    assert t1 - t0 >= 0.09 and t2 - t1 >= 0.09  # held back ...
    assert seen.get(todo[0].digest, 0) * 2 < todo[0].size  # ... but not until half was there
    assert dest.max_running == 3


def test_failure_while_later_blobs_wait_their_turn_is_raised() -> None:
    todo = _layers(5)
    dest = _Dest(in_order=True, fail=todo[0].digest)
    with pytest.raises(PyctlError, match="connection reset"):
        _transfer(_Source(), dest, todo, 3, NoProgress(), CopyStats(), dest)  # type: ignore[arg-type]
    assert todo[0].digest not in dest.ready
    assert len(dest.begun) == 1  # nobody started after the first failed at its first byte
