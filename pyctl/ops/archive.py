"""import / load and export / save: the copy engine between an image archive and containerd."""

from __future__ import annotations

import contextlib
import os
import stat
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import IO, cast

from pyctl.archive.layout import Layout, read_layout
from pyctl.archive.names import Naming
from pyctl.archive.reader import FileArchive, StreamArchive, mismatch, missing_blob
from pyctl.archive.tarball import compression_of, open_stream
from pyctl.archive.writer import ArchiveWriter
from pyctl.containerd import images
from pyctl.containerd.client import Client
from pyctl.containerd.content import ContentMismatch
from pyctl.containerd.images import ImageRecord
from pyctl.containerd.store import SOURCE_LABEL_PREFIX, ContainerdStore
from pyctl.copy import NoProgress, Plan, PlatformFilter, Progress, copy, default_filter, plan
from pyctl.errors import PyctlError
from pyctl.oci import Descriptor, Index, Platform, host_platform, is_index, is_manifest
from pyctl.results.transfers import Imported

# import -----------------------------------------------------------------------------------------


class ImportSource:
    """What import reads: a file (seekable unless it is a pipe or compressed), or a stream
    (``stdin``: sys.stdin for ``-``, or any binary file object), read once."""

    def __init__(self, path: str, stdin: IO[bytes] | None = None) -> None:
        self.path = path
        self.label = "stdin" if path == "-" else path
        self._stdin = stdin

    @contextlib.contextmanager
    def open(self) -> Iterator[tuple[IO[bytes], bytes, int | None]]:
        """(raw stream, its first bytes, size if it is a seekable file). The first bytes
        are consumed from a stream and not from a seekable file."""
        if self.path == "-" or self._stdin is not None:
            raw = self._stdin or sys.stdin.buffer
            yield raw, raw.read(8), None
            return
        try:
            f = open(self.path, "rb")  # noqa: SIM115 - closed below
        except OSError as exc:
            raise PyctlError(f"cannot open {self.path}: {exc.strerror}") from None
        with f:
            st = os.fstat(f.fileno())
            head = f.read(8)
            if stat.S_ISREG(st.st_mode):
                f.seek(0)
                yield f, head, st.st_size
            else:
                yield f, head, None


def import_archive(
    client: Client,
    source: ImportSource,
    naming: Naming,
    *,
    platforms: Sequence[str] = (),
    all_platforms: bool = False,
    unpack: bool = True,
    snapshotter: str = "overlayfs",
    progress: Progress | None = None,
    note: Callable[[str], None] = lambda _text: None,
    concurrency: int = 2,
) -> list[Imported]:
    """Copy every image of the archive into containerd, then name them. Nothing is named
    unless everything was copied (and unpacked): a failed import leaves no image record.

    Two layers at a time: writing is bound by containerd (it hashes and stores every byte),
    so more streams do not write faster; fewer let the first layer land, and its unpack
    start, sooner, and leave fewer layers to unpack once the last one is in."""
    progress = progress or NoProgress()
    filt = default_filter(platforms, all_platforms)
    with source.open() as (raw, head, size), client.lease_context():
        compression = compression_of(head)
        if compression == "none" and size is not None:
            archive: FileArchive | StreamArchive = FileArchive(raw)
        else:
            if size is not None:
                head = b""  # a seekable file was rewound
            shown = Descriptor("", os.path.basename(source.label), size or 0)
            counted = _Counted(raw, head, progress, shown)
            stream = open_stream(cast(IO[bytes], counted), compression)
            archive = StreamArchive(client, stream)
            counted.finish()
        layout = read_layout(archive)
        archive.layout = layout
        roots = _roots(layout, naming, note)
        done: list[Imported] = []
        records: list[ImageRecord] = []
        for desc, named in roots:
            the_plan = _plan(archive, desc, filt)
            # ctr unpacks what it imports; --all-platforms unpacks what runs here
            mode = "auto" if all_platforms and is_index(desc.media_type) else "true"
            store = ContainerdStore(
                client, snapshotter=snapshotter, unpack=mode if unpack else "false"
            )
            # a streamed archive showed its progress while it was read: its blobs are in
            blobs = progress if isinstance(archive, FileArchive) else None
            try:
                copy(
                    archive,
                    store,
                    the_plan,
                    concurrency=concurrency,
                    progress=blobs,
                    observer=store,  # leases and unpacking
                )
            except ContentMismatch as exc:
                raise mismatch(layout.path_of(exc.digest), exc.digest) from None
            if isinstance(archive, FileArchive):  # a streamed archive checks every blob itself
                archive.check_unstreamed(the_plan.layers())
            for name, entry in named:
                records.append(ImageRecord(name=name, target=entry))
                done.append(Imported(name, entry.digest, bool(store.unpacked)))
        for record in records:
            images.put(client, record)
    return done


def _roots(
    layout: Layout, naming: Naming, note: Callable[[str], None]
) -> list[tuple[Descriptor, list[tuple[str, Descriptor]]]]:
    """The distinct targets of the archive's index entries, each with its record names (and
    the entry each name comes from: the record's target, annotations included)."""
    if not layout.entries:
        raise PyctlError("the archive holds no images")
    roots: dict[str, tuple[Descriptor, list[tuple[str, Descriptor]]]] = {}
    unnamed: list[str] = []
    for entry in layout.entries:
        names = naming.names(entry.annotations, entry.digest)
        if not names:
            unnamed.append(entry.digest)
            continue
        _, named = roots.setdefault(entry.digest, (entry, []))
        for n in names:
            if n not in (x for x, _ in named):
                named.append((n, entry))
    if not roots:
        raise PyctlError("the archive names no image to import (use --digests)")
    for digest in dict.fromkeys(unnamed):
        if digest not in roots:
            note(f"skipping image {digest}: the archive gives it no name (use --digests)")
    return list(roots.values())


def _plan(archive: FileArchive | StreamArchive, desc: Descriptor, filt: PlatformFilter) -> Plan:
    """The copy plan for one target; every blob it needs must be in the archive."""
    if not (is_index(desc.media_type) or is_manifest(desc.media_type)):
        raise PyctlError(f"unsupported media type {desc.media_type or '(none)'} for {desc.digest}")
    _require(archive, desc)
    the_plan = plan(archive, desc, filt if is_index(desc.media_type) else PlatformFilter(all=True))
    for layer in the_plan.layers():
        _require(archive, layer)
    return the_plan


def _require(archive: FileArchive | StreamArchive, desc: Descriptor) -> None:
    if not archive.has(desc):
        assert archive.layout is not None
        raise missing_blob(desc, archive.layout.path_of(desc.digest))


class _Counted:
    """The archive's bytes as they are read (compressed, if it is), shown as progress."""

    def __init__(self, raw: IO[bytes], head: bytes, progress: Progress, desc: Descriptor) -> None:
        self._raw = raw
        self._head = head  # already read from ``raw`` (to tell the compression)
        self._progress = progress
        self._desc = desc
        progress.start(desc, "archive")

    def read(self, size: int = -1) -> bytes:
        if self._head:
            data = self._head if size < 0 else self._head[:size]
            self._head = self._head[len(data) :]
        else:
            data = self._raw.read(size)
        self._progress.advance(self._desc, len(data))
        return data

    def readable(self) -> bool:
        return True

    def finish(self) -> None:
        self._progress.done(self._desc, "done")


# export -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Wanted:
    name: str
    target: Descriptor


def _wanted(client: Client, queries: Sequence[str]) -> list[_Wanted]:
    from pyctl.ops.catalog import Catalog, require_records

    catalog = Catalog(client)
    records = catalog.records()
    out: list[_Wanted] = []
    for q in queries:
        for rec in require_records(records, q, catalog):
            w = _Wanted(rec.name, rec.target)
            if w not in out:
                out.append(w)
    return out


def _absent(store: ContainerdStore, desc: Descriptor) -> str | None:
    """The first blob of a manifest (itself, its config, its layers) containerd lacks."""
    if not store.info_labels([desc.digest]):
        return desc.digest
    from pyctl.oci import Manifest

    manifest = Manifest.parse(store.read(desc), desc.media_type)
    children = manifest.children()
    present = store.info_labels(c.digest for c in children)
    return next((c.digest for c in children if c.digest not in present), None)


def _export_plan(
    store: ContainerdStore,
    w: _Wanted,
    filt: PlatformFilter,
    all_platforms: bool,
    note: Callable[[str], None],
) -> Plan:
    target = w.target
    if not is_index(target.media_type):
        missing = _absent(store, target)
        if missing is not None:
            raise PyctlError(f"{w.name}: content {missing} is not in containerd")
        return plan(store, target, PlatformFilter(all=True))
    if not store.info_labels([target.digest]):
        raise PyctlError(f"{w.name}: content {target.digest} is not in containerd")
    index = Index.parse(store.read(target), target.media_type)
    chosen = filt.select(index.manifests)
    present: set[str] = set()
    for m in chosen:
        missing = _absent(store, m)
        if missing is None:
            present.add(m.digest)
            continue
        where = f"{m.platform} ({m.digest})" if m.platform else m.digest
        if all_platforms:
            raise PyctlError(
                f"{w.name}: content {missing} of {where} is not in containerd "
                "(pull the image with --all-platforms, or export the platforms it has)"
            )
        note(f"skipping {where} of {w.name}: its content is not in containerd")
    if not present:
        raise PyctlError(
            f"{w.name}: no content for {filt.describe()} in containerd (see --platform)"
        )
    return plan(store, target, PlatformFilter(digests=frozenset(present)))


def export_images(
    client: Client,
    queries: Sequence[str],
    out: IO[bytes],
    *,
    platforms: Sequence[str] = (),
    all_platforms: bool = False,
    docker_manifest: bool = True,
    progress: Progress | None = None,
    note: Callable[[str], None] = lambda _text: None,
) -> ArchiveWriter:
    """Write the named images into ``out`` as one archive."""
    progress = progress or NoProgress()
    filt = default_filter(platforms, all_platforms)
    want: list[Platform] = list(filt.platforms) or [host_platform()]
    wanted = _wanted(client, queries)
    store = ContainerdStore(client)
    writer = ArchiveWriter(docker_manifest=docker_manifest)
    sources = store.info_labels(w.target.digest for w in wanted)
    for w in wanted:
        the_plan = _export_plan(store, w, filt, all_platforms, note)
        copy(store, writer, the_plan, concurrency=1)
        labels = sources.get(w.target.digest, {})
        annotations = {k: v for k, v in labels.items() if k.startswith(SOURCE_LABEL_PREFIX)}
        writer.add_image(w.name, w.target, the_plan, annotations, want)
    writer.finish(out, store, progress)
    return writer


@contextlib.contextmanager
def output_file(path: str) -> Iterator[IO[bytes]]:
    """A file written whole or not at all: a temporary beside ``path``, renamed at the end."""
    import tempfile

    directory = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix=".pyctl-export-", dir=directory)
    except OSError as exc:
        raise PyctlError(f"cannot write {path}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "wb", buffering=1 << 20) as f:
            yield f
        os.chmod(tmp, 0o644 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
