"""The copy engine's scheduling of layer transfers, with in-memory stores.

containerd and registries are real in integration/; here the stores are small fakes so that the
order in which the engine starts and feeds blobs can be observed exactly."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Sequence

import pytest

from pyctl import copy as copy_module
from pyctl.copy import CopyStats, NoProgress, Progress, _transfer
from pyctl.errors import PyctlError
from pyctl.oci import Descriptor

LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
PIECE = 1000


def _layers(n: int, size: int = 10 * PIECE) -> list[Descriptor]:
    return [Descriptor(LAYER, f"sha256:{i:064x}", size) for i in range(n)]


class _Source:
    def read(self, desc: Descriptor) -> bytes:
        raise AssertionError("not used")

    def open(self, desc: Descriptor, offset: int) -> Iterable[bytes]:
        for _ in range(offset, desc.size, PIECE):
            time.sleep(0.002)  # let the other transfers run in between
            yield b"x" * PIECE


class _Dest:
    """Records, per blob, when its write started and how many bytes others had by then."""

    def __init__(self, in_order: bool, fail: str | None = None) -> None:
        self.in_order = in_order
        self.fail = fail
        self.lock = threading.Lock()
        self.written: dict[str, int] = {}
        self.started: list[tuple[str, dict[str, int]]] = []
        self.running = 0
        self.max_running = 0
        self.ready: list[str] = []

    def consumes_in_order(self) -> bool:
        return self.in_order

    def write_blob(self, desc: Descriptor, source: _Source, progress: Progress) -> str:
        with self.lock:
            self.started.append((desc.digest, dict(self.written)))
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
        return "done"

    def blob_ready(self, desc: Descriptor) -> None:
        self.ready.append(desc.digest)

    # the rest of the Destination protocol is not used by _transfer
    def prepare(self, plan: object) -> None: ...
    def missing(self, descs: Sequence[Descriptor]) -> set[str]: ...
    def write_document(self, desc: Descriptor, data: bytes) -> None: ...
    def commit(self, plan: object) -> None: ...
    def abort(self) -> None: ...


def test_in_order_destination_gets_staggered_starts() -> None:
    todo = _layers(6)
    dest = _Dest(in_order=True)
    stats = CopyStats()
    _transfer(_Source(), dest, todo, 3, NoProgress(), stats, staggered=True)  # type: ignore[arg-type]
    assert [d for d, _ in dest.started] == [d.digest for d in todo]
    for i, (_digest, seen) in enumerate(dest.started[1:], start=1):
        prev = todo[i - 1]
        assert seen.get(prev.digest, 0) * 2 >= prev.size, f"blob {i} started too early: {seen}"
    assert sorted(stats.written) == sorted(d.digest for d in todo)
    assert dest.max_running <= 3
    assert dest.max_running >= 2  # staggered, not serialized


def test_other_destinations_start_all_slots_at_once() -> None:
    todo = _layers(3)
    dest = _Dest(in_order=False)
    _transfer(_Source(), dest, todo, 3, NoProgress(), CopyStats(), staggered=False)  # type: ignore[arg-type]
    # the third blob started before the first had half its bytes
    _, seen = dest.started[2]
    assert seen.get(todo[0].digest, 0) * 2 < todo[0].size
    assert dest.max_running == 3


def test_a_slow_blob_holds_the_next_one_back_only_so_long(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # a slow network: half of a blob takes longer than STAGGER_MAX_WAIT, so the next ones
    # start anyway and all slots are busy
    monkeypatch.setattr(copy_module, "STAGGER_MAX_WAIT", 0.05)
    todo = _layers(3, size=100 * PIECE)  # some 0.2 s each
    dest = _Dest(in_order=True)
    _transfer(_Source(), dest, todo, 3, NoProgress(), CopyStats(), staggered=True)  # type: ignore[arg-type]
    assert [d for d, _ in dest.started] == [d.digest for d in todo]
    _, seen = dest.started[2]
    assert seen.get(todo[0].digest, 0) * 2 < todo[0].size  # did not wait for half of it
    assert dest.max_running == 3


def test_failure_while_later_blobs_wait_their_turn_is_raised() -> None:
    todo = _layers(5)
    dest = _Dest(in_order=True, fail=todo[0].digest)
    with pytest.raises(PyctlError, match="connection reset"):
        _transfer(_Source(), dest, todo, 3, NoProgress(), CopyStats(), staggered=True)  # type: ignore[arg-type]
    assert todo[0].digest not in dest.ready
    assert len(dest.started) == 1  # nobody started after the first failed at its first byte
