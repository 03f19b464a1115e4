"""Reading an image archive's own tar tree safely: input opening (plain, gzip or zstd, from a
file or a stream), entry checks, and the two ways of walking it.

The archive's tree is pyctl's business: entries with absolute paths or ``..`` components,
devices, FIFOs, sparse files and links that leave the tree are refused, as are duplicate files.
Links inside the tree are followed (``docker save`` before Docker 25 links repeated layers to
their first copy). Layer tars inside the archive are opaque blobs: their contents are
containerd's to apply.
"""

from __future__ import annotations

import os
import posixpath
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any, Self, cast

from pyctl.errors import PyctlError

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_OTHER_MAGIC = {b"BZh": "bzip2", b"\xfd7zXZ\x00": "xz"}
CHUNK = 1 << 20


class ArchiveError(PyctlError):
    """The archive is damaged, unsafe or not an image archive."""


class UnexpectedEnd(ArchiveError):
    def __init__(self) -> None:
        super().__init__("unexpected end of archive")


def compression_of(head: bytes) -> str:
    """``gzip``, ``zstd`` or ``none`` from an archive's first bytes."""
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    if head.startswith(ZSTD_MAGIC):
        return "zstd"
    for magic, name in _OTHER_MAGIC.items():
        if head.startswith(magic):
            raise ArchiveError(f"{name}-compressed archives are not supported (use gzip or zstd)")
    return "none"


# Entry checks -----------------------------------------------------------------------------------


def clean_path(name: str) -> str:
    """The entry's path inside the tree (``./a//b/`` → ``a/b``), or an error when it is
    absolute or climbs out with ``..``. The root itself is ``""``."""
    if "\x00" in name:
        raise ArchiveError(f"unsafe entry {name!r}: NUL in its name")
    if name.startswith("/"):
        raise ArchiveError(f"unsafe entry {name!r}: absolute path")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ArchiveError(f"unsafe entry {name!r}: '..' in its path")
    return "/".join(parts)


def link_target(path: str, linkname: str, *, symbolic: bool) -> str:
    """Where a link entry points, as a path inside the tree; links that leave it are refused.
    Symbolic links are relative to their directory, hard links to the archive's root."""
    if not linkname or linkname.startswith("/"):
        raise ArchiveError(f"unsafe entry {path!r}: link to {linkname!r} outside the archive")
    if not symbolic:
        return clean_path(linkname)
    joined = posixpath.normpath(posixpath.join(posixpath.dirname(path), linkname))
    if joined == ".." or joined.startswith("../") or joined == ".":
        raise ArchiveError(f"unsafe entry {path!r}: link to {linkname!r} outside the archive")
    return joined


# what reading a damaged archive raises: tarfile's errors, a cut-off or corrupt gzip stream
_READ_ERRORS = (tarfile.TarError, EOFError, OSError, zlib.error)
_REGULAR = {tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE}


def classify(info: tarfile.TarInfo) -> tuple[str, str, str]:
    """``(kind, path, link)`` of a tar entry: kind is ``file``, ``dir`` or ``link`` (link is the
    target path); anything else is refused."""
    path = clean_path(info.name)
    if info.type in _REGULAR and info.sparse is None:
        if not path:
            raise ArchiveError(f"unsafe entry {info.name!r}: a file without a name")
        return "file", path, ""
    if info.type == tarfile.DIRTYPE:
        return "dir", path, ""
    if info.type in (tarfile.SYMTYPE, tarfile.LNKTYPE):
        target = link_target(path, info.linkname, symbolic=info.type == tarfile.SYMTYPE)
        return "link", path, target
    kinds = {
        tarfile.CHRTYPE: "character device",
        tarfile.BLKTYPE: "block device",
        tarfile.FIFOTYPE: "FIFO",
        tarfile.GNUTYPE_SPARSE: "sparse file",
    }
    what = kinds.get(info.type, f"entry of type {info.type!r}")
    if info.sparse is not None:
        what = "sparse file"
    raise ArchiveError(f"unsafe entry {info.name!r}: {what}")


# The tree ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Member:
    path: str
    size: int
    offset: int = -1  # where its data starts in a seekable tar; -1 in a stream


@dataclass
class Tree:
    """The regular files of an archive (and its links, resolved on lookup)."""

    files: dict[str, Member] = field(default_factory=dict)
    links: dict[str, str] = field(default_factory=dict)

    def add(self, kind: str, path: str, link: str, size: int, offset: int = -1) -> None:
        if kind == "dir":
            return
        if path in self.files or path in self.links:
            raise ArchiveError(f"duplicate entry {path!r}")
        if kind == "link":
            self.links[path] = link
        else:
            self.files[path] = Member(path, size, offset)

    def resolve(self, path: str) -> Member | None:
        """The file at ``path``, following links (at most 16); None if there is none."""
        seen = 0
        while path not in self.files:
            target = self.links.get(path)
            if target is None or seen > 16:
                return None
            path, seen = target, seen + 1
        return self.files[path]

    def check_links(self) -> None:
        for path, target in self.links.items():
            if self.resolve(path) is None:
                raise ArchiveError(f"link {path!r} points to {target!r}, not a file in the archive")


class _HeaderWatch(tarfile.TarInfo):
    """tarfile ends an archive silently at a damaged or cut-off header; this records why the
    last header could not be read, so that a truncated archive is told from a finished one."""

    last_problem: str | None = None

    @classmethod
    def fromtarfile(cls, tarfile_: tarfile.TarFile) -> Self:
        try:
            info = super().fromtarfile(tarfile_)
        except tarfile.HeaderError as exc:
            # tarfile's own classes: EOF/Empty = a clean end, Truncated = cut off, else damage
            kind = type(exc).__name__
            ends = {"EOFHeaderError": None, "EmptyHeaderError": None}
            _problem(tarfile_, ends.get(kind, "truncated" if "Truncated" in kind else str(exc)))
            raise
        _problem(tarfile_, None)
        return info


def _problem(tf: tarfile.TarFile, what: str | None) -> None:
    tf.pyctl_problem = what  # type: ignore[attr-defined]


def _raise_problem(tf: tarfile.TarFile) -> None:
    problem = getattr(tf, "pyctl_problem", None)
    if problem == "truncated":
        raise UnexpectedEnd
    if problem:
        raise ArchiveError(f"not a valid tar archive ({problem} at byte {tf.offset})")


def _tar_error(exc: BaseException) -> ArchiveError:
    text = str(exc)
    if isinstance(exc, EOFError) or "unexpected end" in text or "truncated" in text:
        return UnexpectedEnd()
    if isinstance(exc, zlib.error):
        return ArchiveError(f"invalid gzip data ({exc})")
    if isinstance(exc, OSError) and not isinstance(exc, tarfile.TarError):
        return ArchiveError(f"cannot read the archive: {exc.strerror or exc}")
    return ArchiveError(f"not a valid tar archive ({text or type(exc).__name__})")


def scan_file(fileobj: IO[bytes]) -> Tree:
    """Read only the headers of an uncompressed, seekable tar (data is skipped by seeking):
    every entry checked, every file's data offset recorded."""
    total = os.fstat(fileobj.fileno()).st_size
    tree = Tree()
    try:
        with tarfile.open(fileobj=fileobj, mode="r:", tarinfo=_HeaderWatch) as tf:
            for info in tf:
                kind, path, link = classify(info)
                if kind == "file" and info.offset_data + info.size > total:
                    raise UnexpectedEnd
                tree.add(kind, path, link, info.size, info.offset_data)
            _raise_problem(tf)
    except ArchiveError:
        raise
    except _READ_ERRORS as exc:
        raise _tar_error(exc) from None
    tree.check_links()
    return tree


@dataclass
class StreamEntry:
    kind: str
    path: str
    link: str
    size: int
    reader: IO[bytes] | None

    def chunks(self) -> Iterator[bytes]:
        """The file's bytes in pieces of at most CHUNK; a short file is a truncated archive."""
        assert self.reader is not None
        left = self.size
        while left:
            try:
                data = self.reader.read(min(CHUNK, left))
            except _READ_ERRORS as exc:
                raise _tar_error(exc) from None
            if not data:
                raise UnexpectedEnd
            left -= len(data)
            yield data

    def read_all(self, limit: int) -> bytes:
        if self.size > limit:
            raise ArchiveError(f"{self.path} is too large ({self.size} bytes, limit {limit})")
        return b"".join(self.chunks())


def walk_stream(stream: IO[bytes]) -> Iterator[StreamEntry]:
    """The entries of a tar read front to back, checked; the caller reads each file's data
    before asking for the next entry (data left unread is skipped)."""
    try:
        with tarfile.open(fileobj=stream, mode="r|", tarinfo=_HeaderWatch, bufsize=CHUNK) as tf:
            for info in tf:
                kind, path, link = classify(info)
                reader = tf.extractfile(info) if kind == "file" else None
                yield StreamEntry(kind, path, link, info.size, reader)
            _raise_problem(tf)
    except ArchiveError:
        raise
    except _READ_ERRORS as exc:
        raise _tar_error(exc) from None


def open_stream(raw: IO[bytes], compression: str) -> IO[bytes]:
    """A decompressing reader over ``raw`` (itself when uncompressed)."""
    if compression == "gzip":
        import gzip

        return cast(IO[bytes], gzip.GzipFile(fileobj=raw, mode="rb"))
    if compression == "zstd":
        return cast(IO[bytes], _ZstdReader(raw))
    return raw


class _ZstdReader:
    """zstd frames decompressed one after another; input that ends inside a frame is a
    truncated archive (zstandard's own stream reader just stops there)."""

    def __init__(self, raw: IO[bytes]) -> None:
        import zstandard

        self._raw = raw
        self._dctx = zstandard.ZstdDecompressor()
        self._obj: Any = self._dctx.decompressobj()
        self._buf = bytearray()
        self._in_frame = False
        self._eof = False

    def read(self, size: int = -1) -> bytes:
        while not self._eof and (size < 0 or len(self._buf) < size):
            data = self._raw.read(CHUNK)
            if not data:
                if self._in_frame:
                    raise UnexpectedEnd
                self._eof = True
                break
            self._feed(data)
        n = len(self._buf) if size < 0 else min(size, len(self._buf))
        out = bytes(self._buf[:n])
        del self._buf[:n]
        return out

    def _feed(self, data: bytes) -> None:
        import zstandard

        while data:
            self._in_frame = True
            try:
                self._buf += self._obj.decompress(data)
            except zstandard.ZstdError as exc:
                raise ArchiveError(f"invalid zstd data: {exc}") from None
            if not self._obj.eof:
                return
            data = self._obj.unused_data
            self._obj = self._dctx.decompressobj()
            self._in_frame = False

    def readable(self) -> bool:
        return True
