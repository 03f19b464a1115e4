"""A registry repository as a store of the copy engine: the source of pull, the destination of
push (HEAD → cross-repository mount → upload for blobs, then manifests children first, then
the tag)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

from pyctl.copy import Plan, Progress, Source, Written
from pyctl.errors import RegistryError
from pyctl.oci import Descriptor, is_index, is_manifest
from pyctl.registry.distribution import Repository
from pyctl.registry.hosts.model import RegistryHost


class RegistrySource:
    """A repository as the copy's source: each endpoint in turn, or ``endpoint`` alone (as
    ``hosts --check`` reads one endpoint's image)."""

    def __init__(self, registry: Repository, endpoint: RegistryHost | None = None) -> None:
        self.registry = registry
        self.endpoint = endpoint

    def read(self, desc: Descriptor) -> bytes:
        if self.endpoint is not None:
            return self.registry.fetch_at(self.endpoint, desc)
        return self.registry.fetch_bytes(desc)

    def open(self, desc: Descriptor, offset: int) -> Iterable[bytes]:
        return self.registry.open_blob(desc, offset)


class RegistryDestination:
    """Push ``root`` (and what it names) into ``registry``'s repository; ``tag`` names the
    root (None: by digest only).

    ``mount_from`` maps a blob digest to repositories of the same registry that already hold
    it (from containerd's ``distribution.source`` labels; this repository among them when the
    blob came from here).
    """

    def __init__(
        self,
        registry: Repository,
        root: Descriptor,
        tag: str | None,
        *,
        mount_from: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        self.registry = registry
        self.host = registry.push_host()
        self.root = root
        self.tag = tag
        self.mount_from = dict(mount_from or {})
        self.uploaded: list[str] = []
        self.mounted: list[str] = []
        self._root_tagged = False

    def missing(self, descs: Sequence[Descriptor]) -> set[str]:
        """Manifests are looked up here; blobs (layers and configs) are reported missing and
        looked up by the writer instead: a blob another repository of the registry holds is
        mounted at once (a mount that answers 201 needs no HEAD first), any other one gets its
        HEAD just before its upload rather than in a round of HEADs for every blob."""
        from concurrent.futures import ThreadPoolExecutor

        unique = list({d.digest: d for d in descs}.values())
        docs = [d for d in unique if is_manifest(d.media_type) or is_index(d.media_type)]
        blobs = {d.digest for d in unique} - {d.digest for d in docs}

        def absent(desc: Descriptor) -> bool:
            return not self.registry.manifest_exists(self.host, desc.digest, desc.digest)

        with ThreadPoolExecutor(max_workers=max(1, min(8, len(docs)))) as pool:
            flags = list(pool.map(absent, docs))
        return blobs | {d.digest for d, gone in zip(docs, flags, strict=True) if gone}

    def _mount(self, desc: Descriptor) -> bool:
        """Cross-repository mount from a repository the blob is known to be in."""
        for repo in self.mount_from.get(desc.digest, ()):
            if repo == self.registry.repository:
                continue
            try:
                if self.registry.mount_blob(self.host, desc.digest, repo):
                    self.mounted.append(desc.digest)
                    return True
            except RegistryError:
                continue
        return False

    def _put_blob(self, desc: Descriptor, opener: Callable[[], Iterable[bytes]]) -> Written:
        """Keep what is there (HEAD), else mount, else upload. A blob known to come from
        another repository of the registry (and not from this one) is mounted first: a
        mount that answers 201 needs no HEAD before it."""
        sources = self.mount_from.get(desc.digest, ())
        if self.registry.repository not in sources and self._mount(desc):
            return Written.MOUNTED
        if self.registry.blob_exists(self.host, desc.digest):
            return Written.EXISTED
        if self.registry.repository in sources and self._mount(desc):
            return Written.MOUNTED
        self.registry.upload_blob(self.host, desc, opener)
        self.uploaded.append(desc.digest)
        return Written.UPLOADED

    def write_blob(self, desc: Descriptor, source: Source, progress: Progress) -> Written:
        progress.start(desc, "layer")

        def chunks() -> Iterator[bytes]:
            for chunk in source.open(desc, 0):
                progress.advance(desc, len(chunk))
                yield chunk

        written = self._put_blob(desc, chunks)
        if written is Written.MOUNTED:
            progress.advance(desc, desc.size)
        return written

    def write_document(self, desc: Descriptor, data: bytes) -> None:
        if is_manifest(desc.media_type) or is_index(desc.media_type):
            reference = desc.digest
            if self.tag and desc.digest == self.root.digest:
                reference = self.tag
                self._root_tagged = True
            self.registry.put_manifest(self.host, reference, desc, data)
            return
        self._put_blob(desc, lambda: [data])  # a config: like the layers

    def commit(self, plan: Plan) -> None:
        if (
            self.tag
            and not self._root_tagged
            and not self.registry.manifest_exists(self.host, self.tag, plan.root.digest)
        ):
            self.registry.put_manifest(self.host, self.tag, plan.root, plan.root_data)
