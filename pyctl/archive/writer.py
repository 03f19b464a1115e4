"""An image archive as a destination of the copy engine: an OCI image layout that also carries
a Docker ``manifest.json``, in one tar that ``ctr import``, ``docker load`` and skopeo read.

The copy engine hands over what to write (blobs to stream from the source, documents whole);
:meth:`ArchiveWriter.finish` then writes the tar in one deterministic pass: entries sorted by
name, fixed owner, modes and mtimes, each blob once, so the same images exported twice give
byte-identical archives.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

from pyctl.archive.layout import (
    DOCKER_MANIFEST_FILE,
    INDEX_FILE,
    LAYOUT_FILE,
    LAYOUT_VERSION,
    blob_path,
)
from pyctl.archive.names import docker_repo_tag, ref_object
from pyctl.archive.tarball import ArchiveError
from pyctl.copy import ManifestNode, Plan, Progress, Source, Written
from pyctl.oci import (
    ANNOTATION_IMAGE_NAME,
    ANNOTATION_REF_NAME,
    OCI_INDEX,
    Descriptor,
    Platform,
    is_layer,
    platform_matches,
    platform_rank,
)

BLOCK = 512
MTIME = 0  # every entry: the archive depends on its content only
FILE_MODE = 0o444
DIR_MODE = 0o755


def _json(doc: Any) -> bytes:
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


def tar_header(name: str, size: int, *, directory: bool = False) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = 0 if directory else size
    info.mtime = MTIME
    info.mode = DIR_MODE if directory else FILE_MODE
    info.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def padding(size: int) -> bytes:
    return b"\0" * (-size % BLOCK)


END_OF_ARCHIVE = b"\0" * (2 * BLOCK)


@dataclass(frozen=True)
class _DockerImage:
    config: str
    layers: tuple[str, ...]
    tags: list[str] = field(default_factory=list)


class ArchiveWriter:
    """Collects an export's images (the copy engine's destination), then writes the tar."""

    def __init__(self, *, docker_manifest: bool = True) -> None:
        self.docker_manifest = docker_manifest
        self.blobs: dict[str, Descriptor] = {}  # streamed from the source in finish()
        self.documents: dict[str, bytes] = {}
        self.entries: list[Descriptor] = []
        self._docker: dict[str, _DockerImage] = {}  # by manifest digest, in export order

    # Destination ------------------------------------------------------------------------------

    def missing(self, descs: Sequence[Descriptor]) -> set[str]:
        have = self.blobs.keys() | self.documents.keys()
        return {d.digest for d in descs if d.digest not in have}

    def write_blob(self, desc: Descriptor, source: Source, progress: Progress) -> Written:
        self.blobs[desc.digest] = desc
        return Written.QUEUED

    def write_document(self, desc: Descriptor, data: bytes) -> None:
        self.documents[desc.digest] = data

    def commit(self, plan: Plan) -> None:
        pass  # the tar is written by finish(), once every image is added

    # what index.json and manifest.json say ----------------------------------------------------

    def add_image(
        self,
        name: str,
        target: Descriptor,
        plan: Plan,
        annotations: dict[str, str],
        want: Sequence[Platform],
    ) -> None:
        """Name ``target`` (the root of ``plan``, already copied) in index.json and, with the
        manifest of the best platform in ``want``, in manifest.json."""
        notes = {**target.annotations, **annotations}
        notes[ANNOTATION_IMAGE_NAME] = name
        notes[ANNOTATION_REF_NAME] = ref_object(name)
        entry = Descriptor(target.media_type, target.digest, target.size, notes)
        if entry not in self.entries:
            self.entries.append(entry)
        node = _best(plan.manifests, want)
        if node is None:
            return
        image = self._docker.get(node.desc.digest)
        if image is None:
            image = _DockerImage(
                blob_path(node.manifest.config.digest),
                tuple(blob_path(x.digest) for x in node.manifest.layers if is_layer(x.media_type)),
            )
            self._docker[node.desc.digest] = image
        tag = docker_repo_tag(name)
        if tag and tag not in image.tags:
            image.tags.append(tag)

    def index_json(self) -> bytes:
        manifests = []
        for e in self.entries:
            d = e.to_json()
            d["annotations"] = dict(sorted(e.annotations.items()))
            manifests.append(d)
        return _json({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests})

    def manifest_json(self) -> bytes:
        return _json(
            [
                {"Config": i.config, "RepoTags": i.tags, "Layers": list(i.layers)}
                for i in self._docker.values()
            ]
        )

    # the tar ----------------------------------------------------------------------------------

    def files(self) -> list[tuple[str, Descriptor | bytes]]:
        """Every file of the archive, sorted by name: a blob to stream, or bytes."""
        out: dict[str, Descriptor | bytes] = {
            LAYOUT_FILE: _json({"imageLayoutVersion": LAYOUT_VERSION}),
            INDEX_FILE: self.index_json(),
        }
        if self.docker_manifest:
            out[DOCKER_MANIFEST_FILE] = self.manifest_json()
        for digest, data in self.documents.items():
            out[blob_path(digest)] = data
        for digest, desc in self.blobs.items():
            out.setdefault(blob_path(digest), desc)
        return sorted(out.items())

    def finish(
        self,
        out: IO[bytes],
        source: Source,
        progress: Progress,
        *,
        opener: Callable[[Descriptor], Iterable[bytes]] | None = None,
    ) -> None:
        """Write the archive to ``out``; each blob is streamed from ``source`` (or ``opener``)
        and checked against its digest on the way."""
        files = self.files()
        dirs = sorted({p.rsplit("/", 1)[0] + "/" for p, _ in files if "/" in p} | {"blobs/"})
        for d in dirs:
            out.write(tar_header(d, 0, directory=True))
        for path, item in files:
            if isinstance(item, bytes):
                out.write(tar_header(path, len(item)))
                out.write(item + padding(len(item)))
                continue
            out.write(tar_header(path, item.size))
            progress.start(item, "blob")
            chunks = opener(item) if opener else source.open(item, 0)
            problem = f"content {item.digest} in containerd does not match its digest"
            for chunk in verified(chunks, item, problem):
                out.write(chunk)
                progress.advance(item, len(chunk))
            out.write(padding(item.size))
            progress.done(item, "done")
        out.write(END_OF_ARCHIVE)


def verified(chunks: Iterable[bytes], desc: Descriptor, problem: str) -> Iterator[bytes]:
    """Pass ``chunks`` through, failing with ``problem`` before the last one goes if they are
    not ``desc.size`` bytes hashing to ``desc.digest`` (so that nothing bad is committed)."""
    h = hashlib.sha256()
    n = 0
    pending: bytes | None = None
    for chunk in chunks:
        if pending is not None:
            yield pending
        h.update(chunk)
        n += len(chunk)
        if n > desc.size:
            break
        pending = chunk
    if n != desc.size or "sha256:" + h.hexdigest() != desc.digest:
        raise ArchiveError(problem)
    if pending is not None:
        yield pending


def _best(nodes: Sequence[ManifestNode], want: Sequence[Platform]) -> ManifestNode | None:
    """The manifest docker would load: the best match for the first wanted platform that has
    one, else the first."""
    for p in want:
        matching = [n for n in nodes if platform_matches(p, n.platform)]
        if matching:
            return min(matching, key=lambda n: platform_rank(p, n.platform))
    return nodes[0] if nodes else None
