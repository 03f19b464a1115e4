"""containerd's content store: read blobs, list/update their info, and the Write stream.

The Write protocol (STAT / WRITE / COMMIT in lockstep on one bidi stream) is containerd's
``content/proxy`` client: the STAT answer carries the resume offset of an earlier ingest,
ALREADY_EXISTS means the blob is there (success), UNAVAILABLE means another writer holds the
ingest ref and is retried with backoff.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any, NamedTuple

import grpc

from pyctl.containerd import wire
from pyctl.containerd.client import (
    Client,
    ContainerdAlreadyExists,
    ContainerdError,
    ContainerdUnavailable,
    retry_unavailable,
)
from pyctl.errors import PyctlError
from pyctl.oci import MAX_MANIFEST_SIZE, sha256_digest

CHUNK = 1 << 20
WINDOW = 4


class ContentInfo(NamedTuple):
    digest: str
    size: int
    created_at: datetime | None
    labels: Mapping[str, str]


def content_info(buf: bytes) -> ContentInfo:
    """An encoded ``Info`` (content service)."""
    m = wire.message(buf, _INFO)
    return ContentInfo(m.get(1, ""), m.get(2, 0), m.get(3), m.get(5, {}))


# field number -> reader: digest, size, created_at, labels
_INFO = {1: wire.text, 2: wire.integer, 3: wire.timestamp, 5: wire.entry}


def _infos(answer: bytes) -> list[ContentInfo]:
    """The ``Info`` of each ListContentResponse (field 1)."""
    return wire.repeated(answer, 1, content_info)


def info(client: Client, digest: str) -> ContentInfo:
    return info_answer(client.call_raw("content.Info", (1, "digest", digest), what=digest))


def info_future(client: Client, digest: str) -> Any:
    """:func:`info` started; read the answer of ``client.result`` with :func:`info_answer`."""
    return client.future_raw("content.Info", (1, "digest", digest))


def info_answer(answer: bytes) -> ContentInfo:
    """The ``Info`` of an encoded InfoResponse."""
    return wire.only(answer, 1, content_info, "an InfoResponse")


def list_infos(client: Client, filters: Iterable[str] = ()) -> list[ContentInfo]:
    answers = client.stream_raw("content.List", *((1, "filters", f) for f in filters))
    return [i for answer in answers for i in _infos(answer)]


def _label_update(digest: str, labels: Mapping[str, str]) -> tuple[wire.Field, ...]:
    """An UpdateRequest that sets (or, with an empty value, deletes) just these labels of a
    blob: the Info with them, and an update mask naming each (``labels.KEY``)."""
    blob = ((1, "digest", digest), *wire.string_map(5, "labels", labels))
    mask = tuple((1, "paths", f"labels.{key}") for key in labels)
    return (1, "info", blob), (2, "update_mask", mask)


def update_labels(client: Client, digest: str, labels: Mapping[str, str]) -> None:
    """Set (or, with an empty value, delete) individual labels on a blob."""
    if labels:
        client.call_raw("content.Update", *_label_update(digest, labels), what=f"label {digest}")


def update_labels_future(client: Client, digest: str, labels: Mapping[str, str]) -> Any:
    """:func:`update_labels` started without waiting; resolve it with ``client.result``."""
    return client.future_raw("content.Update", *_label_update(digest, labels))


def read_chunks(client: Client, digest: str, offset: int = 0, size: int = 0) -> Iterator[bytes]:
    fields = (1, "digest", digest), (2, "offset", offset), (3, "size", size)
    for answer in client.stream_raw("content.Read", *fields, what=f"read {digest}"):
        yield wire.message(answer, _DATA).get(2, b"")


_DATA = {2: wire.data}  # ReadContentResponse: offset (1), data (2)


# Reading committed blobs from containerd's own directory ---------------------------------------
#
# A blob that containerd has committed lies, complete and never changed again, under its local
# content store's root (``blobs/sha256/<hex>``), and containerd names that root through its
# introspection API. On the machine containerd runs on, a reader that may open it sends the
# bytes on from the page cache instead of through containerd's Read stream, which costs
# containerd and this process a gRPC message per MiB. The file is only a faster road to bytes
# containerd vouches for: the caller first asks containerd whether the namespace holds the blob,
# the size must match, and where the bytes go (a registry, an archive) checks the digest.


def local_root(client: Client) -> str | None:
    """The directory of containerd's local content store (the content plugin's ``root``
    export), or None when containerd names none (a proxied content store)."""
    answer = client.call_raw(
        "introspection.Plugins",
        (1, "filters", "type==io.containerd.content.v1"),
        what="the content plugin",
    )
    for plugin in wire.repeated(answer, 1, _plugin):
        root = plugin.get(5, {}).get("root")
        if plugin.get(2) == "content" and root:
            return str(root)
    return None


def _plugin(buf: bytes) -> dict[int, Any]:
    return wire.message(buf, _PLUGIN)


_PLUGIN = {2: wire.text, 5: wire.entry}  # Plugin: id (2), exports (5)


def open_committed(root: str, digest: str, size: int) -> tuple[int, str] | None:
    """A descriptor of the committed blob ``digest`` under ``root``, opened for reading, and
    its path; None when it cannot be opened or is not a regular file of ``size`` bytes."""
    algorithm, _, hex_part = digest.partition(":")
    if algorithm != "sha256" or len(hex_part) != 64 or hex_part.strip(_HEX):
        return None
    path = os.path.join(root, "blobs", algorithm, hex_part)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    found = os.fstat(fd)
    if not stat.S_ISREG(found.st_mode) or found.st_size != size:
        os.close(fd)
        return None
    return fd, path


_HEX = "0123456789abcdef"


def file_chunks(fd: int, path: str, offset: int = 0) -> Iterator[bytes]:
    """The bytes of an opened blob file from ``offset`` on, in CHUNK pieces; closes ``fd``."""
    try:
        while chunk := os.pread(fd, CHUNK, offset):
            offset += len(chunk)
            yield chunk
    except OSError as exc:
        raise PyctlError(f"read {path}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)


def read_blob(client: Client, digest: str, limit: int = MAX_MANIFEST_SIZE) -> bytes:
    """A small blob (manifest, index, config) whole, verified against its digest."""
    buf = bytearray()
    for chunk in read_chunks(client, digest):
        buf += chunk
        if len(buf) > limit:
            raise PyctlError(f"blob {digest} is larger than {limit} bytes")
    data = bytes(buf)
    if digest.startswith("sha256:") and sha256_digest(data) != digest:
        raise PyctlError(f"content {digest} in containerd does not match its digest")
    return data


def delete(client: Client, digest: str) -> None:
    from pyctl._api.services.content.v1 import content_pb2

    client.call("content", "Delete", content_pb2.DeleteContentRequest(digest=digest))


# Write ------------------------------------------------------------------------------------------


_WRITE_ACTION = b"\x08\x01"  # field 1 (action), varint: WriteAction.WRITE


def _write_frame(offset: int, pieces: list[bytes], length: int) -> bytes:
    """A serialized ``WriteContentRequest{action: WRITE, offset, data}``, built by joining the
    data pieces once behind a hand-made header (field 5 offset, field 6 data) instead of
    copying them into a message and serializing it again."""
    header = _WRITE_ACTION
    if offset:
        header += b"\x28" + wire.encode_varint(offset)  # field 5, varint
    header += b"\x32" + wire.encode_varint(length)  # field 6, length-delimited
    return b"".join([header, *pieces])


def _serialize(msg: Any) -> bytes:
    """Request serializer for the Write stream: frames are bytes already."""
    if isinstance(msg, bytes):
        return msg
    data: bytes = msg.SerializeToString()
    return data


class _Lockstep:
    """Request iterator for a bidi stream driven one message at a time."""

    def __init__(self) -> None:
        import queue

        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()

    def send(self, msg: Any) -> None:
        self._queue.put(msg)

    def close(self) -> None:
        self._queue.put(None)

    def __iter__(self) -> Iterator[Any]:
        while True:
            item = self._queue.get()
            if item is None:
                return
            yield item


# opener(offset) -> chunks of the blob starting at ``offset``
Opener = Callable[[int], Iterable[bytes]]


def write_blob(
    client: Client,
    ref: str,
    digest: str,
    size: int,
    opener: Opener,
    *,
    labels: Mapping[str, str] | None = None,
    progress: Callable[[int], None] | None = None,
) -> bool:
    """Write one blob through containerd's Write stream. Returns False if it already existed.

    Resumes an earlier ingest of the same ``ref`` from containerd's offset; containerd verifies
    size and digest at commit. Content that fails that check is not left behind: the ingest is
    aborted (else the next attempt would resume from it, find it complete and fail again), and
    when the bad bytes may have come from an earlier, interrupted attempt (we resumed), the blob
    is written once more from the start.
    """
    for attempt in (1, 2):
        try:
            return retry_unavailable(
                lambda: _write_once(client, ref, digest, size, opener, labels or {}, progress),
                progress=lambda: ingest_offset(client, ref),
            )
        except ContainerdUnavailable as exc:
            raise PyctlError(
                f"blob {digest}: another client is writing it and made no progress for a minute "
                f"({exc})"
            ) from None
        except _BadContent as bad:
            with contextlib.suppress(PyctlError):
                abort(client, ref)
            if bad.resumed and attempt == 1:
                continue
            raise ContentMismatch(digest) from None
    raise AssertionError("unreachable")


class ContentMismatch(PyctlError):
    """containerd refused a blob: the bytes written do not have its digest."""

    def __init__(self, digest: str) -> None:
        super().__init__(f"blob {digest}: content does not match its digest (corrupted download?)")
        self.digest = digest


class _BadContent(Exception):
    """containerd refused the commit: the bytes written do not have the expected digest."""

    def __init__(self, resumed: bool) -> None:
        super().__init__("unexpected commit digest")
        self.resumed = resumed


def _write_once(
    client: Client,
    ref: str,
    digest: str,
    size: int,
    opener: Opener,
    labels: Mapping[str, str],
    progress: Callable[[int], None] | None,
    hasher: Any = None,
) -> bool:
    """One attempt. With ``hasher`` (a sha256 object fed by ``opener``) the digest is not
    known in advance: ``digest`` is empty, an earlier ingest is restarted from zero (its bytes
    were never hashed) and the commit expects what ``hasher`` computed."""
    from pyctl._api.services.content.v1 import content_pb2

    requests = _Lockstep()
    responses = client.bidi_raw(
        "/containerd.services.content.v1.Content/Write",
        _serialize,
        content_pb2.WriteContentResponse.FromString,
        iter(requests),
    )

    def roundtrip(msg: Any) -> Any:
        requests.send(msg)
        return next(responses)

    resumed = False
    try:
        status = roundtrip(
            content_pb2.WriteContentRequest(
                action=content_pb2.STAT, ref=ref, total=size, expected=digest
            )
        )
        offset = int(status.offset)
        if offset > size or (hasher is not None and offset):
            offset = 0  # stale, oversize or unhashed ingest: restart it (offset 0 truncates)
        resumed = offset > 0
        if progress and offset:
            progress(offset)
        if offset < size:
            # Keep up to WINDOW writes in flight instead of waiting for each answer: the
            # network, this process and containerd's disk then work at the same time.
            in_flight: list[int] = []  # offsets containerd must report, oldest first

            def ack() -> None:
                want = in_flight.pop(0)
                resp = next(responses)
                if resp.offset != want:
                    raise ContainerdError(
                        f"short write of {ref}: containerd at {resp.offset}, expected {want}"
                    )

            def flush(pieces: list[bytes], length: int) -> None:
                nonlocal offset
                requests.send(_write_frame(offset, pieces, length))
                offset += length
                in_flight.append(offset)
                if progress:
                    progress(length)
                if len(in_flight) >= WINDOW:
                    ack()

            # Source pieces (any size) are gathered into frames of about CHUNK bytes.
            pending: list[bytes] = []
            pending_len = 0
            for piece in opener(offset):
                while len(piece) > CHUNK:  # a big piece: send it in CHUNK slices
                    if pending:
                        flush(pending, pending_len)
                        pending, pending_len = [], 0
                    flush([piece[:CHUNK]], CHUNK)
                    piece = piece[CHUNK:]
                if not piece:
                    continue
                pending.append(piece)
                pending_len += len(piece)
                if pending_len >= CHUNK:
                    flush(pending, pending_len)
                    pending, pending_len = [], 0
            if pending:
                flush(pending, pending_len)
            while in_flight:
                ack()
            if offset != size:
                raise PyctlError(
                    f"blob {digest or ref}: got {offset} bytes, expected {size} "
                    "(source ended early)"
                )
        if hasher is not None:
            digest = "sha256:" + hasher.hexdigest()
        resp = roundtrip(
            content_pb2.WriteContentRequest(
                action=content_pb2.COMMIT,
                offset=offset,
                total=size,
                expected=digest,
                labels=dict(labels),
            )
        )
        if resp.digest and resp.digest != digest:
            raise PyctlError(f"blob {digest}: containerd computed {resp.digest}")
        return True
    except grpc.RpcError as err:
        translated = client.translate(err, f"write {digest}")
        if isinstance(translated, ContainerdAlreadyExists):
            if labels:
                update_labels(client, digest, labels)
            return False
        if isinstance(translated, ContainerdUnavailable):
            raise translated from None
        if translated.__class__ is ContainerdError and "unexpected commit digest" in str(
            translated
        ):
            raise _BadContent(resumed) from None
        raise translated from None
    finally:
        requests.close()
        if hasattr(responses, "cancel"):
            responses.cancel()


def write_unknown(
    client: Client,
    ref: str,
    size: int,
    chunks: Iterable[bytes],
    *,
    progress: Callable[[int], None] | None = None,
) -> str:
    """Write a blob whose digest is not known beforehand (a file of a docker-save archive read
    from a stream), computing sha256 while the bytes go out; containerd checks it at commit.
    ``chunks`` is read once. Returns the digest (the blob may have existed already)."""
    import hashlib

    hasher = hashlib.sha256()

    def opener(offset: int) -> Iterator[bytes]:
        for chunk in chunks:
            hasher.update(chunk)
            yield chunk

    try:
        retry_unavailable(lambda: _write_once(client, ref, "", size, opener, {}, progress, hasher))
    except _BadContent:
        with contextlib.suppress(PyctlError):
            abort(client, ref)
        raise PyctlError(f"{ref}: containerd received other bytes than were sent") from None
    return "sha256:" + hasher.hexdigest()


def ingest_offset(client: Client, ref: str) -> int:
    """How many bytes the ingest ``ref`` holds (whoever writes it)."""
    from pyctl._api.services.content.v1 import content_pb2

    resp = client.call("content", "Status", content_pb2.StatusRequest(ref=ref), what=ref)
    return int(resp.status.offset)


def abort(client: Client, ref: str) -> None:
    from pyctl._api.services.content.v1 import content_pb2

    client.call("content", "Abort", content_pb2.AbortRequest(ref=ref))
