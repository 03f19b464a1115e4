"""An image archive as a source of the copy engine, in the two ways it can be read.

* :class:`FileArchive` — an uncompressed tar in a seekable file: only the headers are read up
  front; blobs are then read by offset, several at once, while the copy engine streams them
  into containerd and unpacks as layers land.
* :class:`StreamArchive` — stdin, or a gzip/zstd-compressed archive: one pass, front to back.
  Each file is written into containerd as it streams by (its digest taken from its
  ``blobs/sha256/<hex>`` name, or computed on the way for docker-save files), small ones are
  kept in memory, and the copy afterwards only adds what was made up (docker manifests),
  labels, unpacks and registers. Nothing is buffered whole: a 2 GiB archive on stdin costs
  a few MiB.

What they hand out is verified: small documents by the copy engine, blobs by containerd when
it commits them (against the digest the archive names or pyctl computed).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable, Iterator
from typing import IO

from pyctl.archive.layout import METADATA_FILES, Layout, digest_in_path
from pyctl.archive.tarball import (
    CHUNK,
    ArchiveError,
    Member,
    StreamEntry,
    Tree,
    UnexpectedEnd,
    scan_file,
    walk_stream,
)
from pyctl.containerd import content
from pyctl.containerd.client import Client
from pyctl.errors import PyctlError
from pyctl.oci import MAX_MANIFEST_SIZE, Descriptor

SMALL_FILE = 512 << 10  # stream mode: files up to this size stay in memory...
MEMORY_BUDGET = 64 << 20  # ...as long as they add up to no more than this


def missing_blob(desc: Descriptor, path: str) -> ArchiveError:
    return ArchiveError(f"blob {desc.digest} ({path}) is missing from the archive")


def mismatch(path: str, digest: str) -> ArchiveError:
    return ArchiveError(f"{path} does not match its digest {digest}")


def _too_big(path: str, size: int, limit: int) -> ArchiveError:
    return ArchiveError(f"{path} is too large ({size} bytes, limit {limit})")


class FileArchive:
    """A plain tar in a seekable file: headers scanned once, data read by offset."""

    def __init__(self, fileobj: IO[bytes]) -> None:
        self._fd = fileobj.fileno()
        self.tree: Tree = scan_file(fileobj)
        self.layout: Layout | None = None
        self._streamed: set[str] = set()  # blobs whose every byte :meth:`open` handed out

    # Files ------------------------------------------------------------------------------------

    def size(self, path: str) -> int | None:
        member = self.tree.resolve(path)
        return member.size if member is not None else None

    def _pread(self, member: Member, offset: int, n: int) -> bytes:
        data = os.pread(self._fd, n, member.offset + offset)
        if len(data) != n:
            raise UnexpectedEnd
        return data

    def small(self, path: str, limit: int = MAX_MANIFEST_SIZE) -> bytes | None:
        member = self.tree.resolve(path)
        if member is None:
            return None
        if member.size > limit:
            raise _too_big(path, member.size, limit)
        return self._pread(member, 0, member.size)

    def head(self, path: str) -> bytes:
        member = self.tree.resolve(path)
        assert member is not None
        return self._pread(member, 0, min(8, member.size))

    def digest(self, path: str) -> str:
        member = self.tree.resolve(path)
        assert member is not None
        h = hashlib.sha256()
        for chunk in self._chunks(member, 0):
            h.update(chunk)
        return "sha256:" + h.hexdigest()

    def _chunks(self, member: Member, offset: int) -> Iterator[bytes]:
        while offset < member.size:
            n = min(CHUNK, member.size - offset)
            yield self._pread(member, offset, n)
            offset += n

    # Source -----------------------------------------------------------------------------------

    def _member(self, desc: Descriptor) -> Member:
        assert self.layout is not None
        path = self.layout.path_of(desc.digest)
        member = self.tree.resolve(path)
        if member is None:
            raise missing_blob(desc, path)
        if member.size != desc.size:
            raise ArchiveError(
                f"{path} has {member.size} bytes, its descriptor says {desc.size} ({desc.digest})"
            )
        return member

    def has(self, desc: Descriptor) -> bool:
        assert self.layout is not None
        return desc.digest in self.layout.documents or self._member_or_none(desc) is not None

    def _member_or_none(self, desc: Descriptor) -> Member | None:
        assert self.layout is not None
        return self.tree.resolve(self.layout.path_of(desc.digest))

    def read(self, desc: Descriptor) -> bytes:
        assert self.layout is not None
        doc = self.layout.documents.get(desc.digest)
        if doc is not None:
            return doc
        member = self._member(desc)
        if member.size > MAX_MANIFEST_SIZE:
            raise _too_big(member.path, member.size, MAX_MANIFEST_SIZE)
        return self._pread(member, 0, member.size)

    def open(self, desc: Descriptor, offset: int) -> Iterable[bytes]:
        # containerd checks size and digest at commit (see import_archive for the message)
        yield from self._chunks(self._member(desc), offset)
        if offset == 0:
            self._streamed.add(desc.digest)

    def check_unstreamed(self, blobs: Iterable[Descriptor]) -> None:
        """Hash the archive's copy of each of ``blobs`` that :meth:`open` did not hand out
        whole (containerd had it — shared from another namespace, or an ingest resumed — so
        its commit checked bytes that did not come from here): a corrupt archive is refused
        whatever containerd holds."""
        for desc in blobs:
            if desc.digest in self._streamed or self._member_or_none(desc) is None:
                continue
            assert self.layout is not None
            path = self.layout.path_of(desc.digest)
            if self.digest(path) != desc.digest:
                raise mismatch(path, desc.digest)


class StreamArchive:
    """An archive read once, front to back, into containerd (under the caller's lease)."""

    def __init__(
        self,
        client: Client,
        stream: IO[bytes],
        *,
        on_file: Callable[[str, int], None] | None = None,
    ) -> None:
        self.client = client
        self.tree = Tree()
        self.memory: dict[str, bytes] = {}  # path -> bytes (small files)
        self.written: dict[str, str] = {}  # path -> digest (files now in containerd)
        self.heads: dict[str, bytes] = {}
        self.layout: Layout | None = None
        self._kept = 0
        for entry in walk_stream(stream):
            self.tree.add(entry.kind, entry.path, entry.link, entry.size)
            if entry.kind == "file":
                self._take(entry)
                if on_file is not None:
                    on_file(entry.path, entry.size)
        self.tree.check_links()

    def _take(self, entry: StreamEntry) -> None:
        path, size = entry.path, entry.size
        if path in METADATA_FILES:
            self.memory[path] = entry.read_all(MAX_MANIFEST_SIZE)
            return
        if size <= SMALL_FILE and self._kept + size <= MEMORY_BUDGET:
            self.memory[path] = entry.read_all(SMALL_FILE)
            self._kept += size
            return
        ref = "tar-" + path
        chunks = self._heading(path, entry.chunks())
        digest = digest_in_path(path)
        if digest is None:
            digest = content.write_unknown(self.client, ref, size, chunks)
        else:
            entry_bytes = _Once(chunks, path)
            try:
                content.write_blob(self.client, ref, digest, size, entry_bytes.open)
            except content.ContentMismatch:
                raise mismatch(path, digest) from None
            if not entry_bytes.verified_by_containerd() and entry_bytes.digest() != digest:
                # containerd had the blob (or part of it) already, so its commit checked
                # bytes that did not come from this archive: the archive's copy is refused
                raise mismatch(path, digest)
        self.written[path] = digest

    def _heading(self, path: str, chunks: Iterator[bytes]) -> Iterator[bytes]:
        for chunk in chunks:
            if path not in self.heads:
                self.heads[path] = chunk[:8]
            yield chunk

    # Files ------------------------------------------------------------------------------------

    def _path(self, path: str) -> str | None:
        member = self.tree.resolve(path)
        return member.path if member is not None else None

    def size(self, path: str) -> int | None:
        member = self.tree.resolve(path)
        return member.size if member is not None else None

    def small(self, path: str, limit: int = MAX_MANIFEST_SIZE) -> bytes | None:
        real = self._path(path)
        if real is None:
            return None
        data = self.memory.get(real)
        if data is None:
            member = self.tree.files[real]
            if member.size > limit:
                raise _too_big(real, member.size, limit)
            data = content.read_blob(self.client, self.written[real], limit)
        return data

    def head(self, path: str) -> bytes:
        real = self._path(path)
        assert real is not None
        data = self.memory.get(real)
        if data is not None:
            return data[:8]
        if real not in self.heads:  # not read: containerd had it already
            self.heads[real] = b"".join(content.read_chunks(self.client, self.written[real], 0, 8))
        return self.heads[real]

    def digest(self, path: str) -> str:
        real = self._path(path)
        assert real is not None
        if real in self.written:
            return self.written[real]
        return "sha256:" + hashlib.sha256(self.memory[real]).hexdigest()

    # Source -----------------------------------------------------------------------------------

    def _locate(self, desc: Descriptor) -> tuple[str, bytes | None]:
        assert self.layout is not None
        path = self.layout.path_of(desc.digest)
        real = self._path(path)
        if real is None:
            raise missing_blob(desc, path)
        data = self.memory.get(real)
        if data is None and self.written.get(real) != desc.digest:
            raise mismatch(path, desc.digest)
        return real, data

    def has(self, desc: Descriptor) -> bool:
        assert self.layout is not None
        return (
            desc.digest in self.layout.documents
            or self._path(self.layout.path_of(desc.digest)) is not None
        )

    def read(self, desc: Descriptor) -> bytes:
        assert self.layout is not None
        doc = self.layout.documents.get(desc.digest)
        if doc is not None:
            return doc
        _, data = self._locate(desc)
        if data is not None:
            return data
        return content.read_blob(self.client, desc.digest)

    def open(self, desc: Descriptor, offset: int) -> Iterable[bytes]:
        _, data = self._locate(desc)
        if data is not None:
            return [data[offset:]]
        return content.read_chunks(self.client, desc.digest, offset)


class _Once:
    """The bytes of one streamed archive entry, for content.write_blob, which may open them
    only once: a resumed ingest skips what containerd already has, and a blob containerd
    already holds is not opened at all. Unless containerd received the entry whole, every
    byte is hashed here so that the archive's copy can be checked (:meth:`digest`)."""

    def __init__(self, chunks: Iterator[bytes], path: str) -> None:
        self._chunks = chunks
        self._path = path
        self._opened_at: int | None = None
        self._hash = hashlib.sha256()

    def open(self, offset: int) -> Iterator[bytes]:
        if self._opened_at is not None:
            raise PyctlError(f"{self._path}: cannot read a streamed archive entry twice")
        self._opened_at = offset
        skip = offset
        for chunk in self._chunks:
            if offset:
                self._hash.update(chunk)
            if skip >= len(chunk):
                skip -= len(chunk)
                continue
            yield chunk[skip:] if skip else chunk
            skip = 0

    def verified_by_containerd(self) -> bool:
        """containerd's commit saw every byte of this entry (written from offset 0)."""
        return self._opened_at == 0

    def digest(self) -> str:
        """The digest of the whole entry, reading what containerd did not need."""
        for chunk in self._chunks:
            self._hash.update(chunk)
        return "sha256:" + self._hash.hexdigest()
